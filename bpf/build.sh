#!/usr/bin/env bash
# Compiles the BPF C sources into the committed object bpf/collector.bpf.o.
#
#   bpf/build.sh           rebuild the object in place
#   bpf/build.sh --check   exit 1 when the committed object differs from what the sources build to
#
# Needs clang 19 (Debian: apt-get install -y clang-19). The output must not depend on the
# folder it is built in: source paths are mapped to "bpf/c" in debug info and BTF.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
clang="${CLANG:-clang-19}"
out="$here/collector.bpf.o"
src="$here/c/collector.bpf.c"

if ! command -v "$clang" >/dev/null 2>&1; then
    echo "bpf/build.sh: $clang not found (apt-get install -y clang-19, or set CLANG)" >&2
    exit 2
fi

build() {
    "$clang" -O2 -g -target bpf -mcpu=v3 -std=gnu11 \
        -Wall -Wextra -Werror -Wno-unused-parameter -Wno-unused-function \
        -ffile-prefix-map="$here=bpf" -fdebug-compilation-dir=. \
        -fno-ident \
        -c "$src" -o "$1"
}

case "${1:-}" in
    --check)
        tmp="$(mktemp --suffix=.bpf.o)"
        trap 'rm -f "$tmp"' EXIT
        build "$tmp"
        if cmp -s "$tmp" "$out"; then
            echo "bpf/build.sh: collector.bpf.o is up to date"
        else
            echo "bpf/build.sh: collector.bpf.o is stale: run bpf/build.sh and commit the result" >&2
            exit 1
        fi
        ;;
    "")
        build "$out"
        echo "bpf/build.sh: wrote $out ($(stat -c %s "$out") bytes)"
        ;;
    *)
        echo "usage: bpf/build.sh [--check]" >&2
        exit 2
        ;;
esac
