#!/bin/sh
# Builds the container image of deploy/Containerfile FROM scratch: the engine (built here
# with cargo unless a binary is given), the shared libraries it links (from this
# machine's Debian packages, found with ldd), the presets under /etc/kevent, and a passwd
# entry for the unprivileged user it runs as (uid 65532, "kevent"). Nothing is pulled.
#
#   deploy/build-image.sh [TAG] [ENGINE_BINARY]
#
# TAG defaults to localhost/kevent:VERSION. Needs podman (or buildah).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/engine/Cargo.toml" | head -n1)
tag=${1:-localhost/kevent:$version}
bin=${2:-}
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release -p engine --bin engine)
    bin=${CARGO_TARGET_DIR:-$root/target}/release/engine
fi
[ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/usr/bin" "$ctx/etc/kevent" "$ctx/var/lib/kevent" "$ctx/tmp"
cp "$bin" "$ctx/usr/bin/engine"
# The loader and every library ldd names, at the paths the binary looks for them.
ldd "$bin" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
    mkdir -p "$ctx$(dirname "$lib")"
    cp -L "$lib" "$ctx$lib"
done
cp "$root/configs/default.toml" "$root/configs/high-perf.toml" "$root/configs/security.toml" "$ctx/etc/kevent/"
printf 'root:x:0:0:root:/:/sbin/nologin\nkevent:x:65532:65532:kevent:/var/lib/kevent:/sbin/nologin\n' >"$ctx/etc/passwd"
printf 'root:x:0:\nkevent:x:65532:\n' >"$ctx/etc/group"
chown -R 65532:65532 "$ctx/var/lib/kevent"
chmod 1777 "$ctx/tmp"
if command -v podman >/dev/null; then
    podman build --quiet -f "$root/deploy/Containerfile" -t "$tag" "$ctx"
else
    buildah bud --quiet -f "$root/deploy/Containerfile" -t "$tag" "$ctx"
fi
echo "$tag"
