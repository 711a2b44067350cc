#!/usr/bin/env bash
# The semantic path under a sustained storm: the engine (release) on the default
# preset with the summary stream on (min_importance 0.3, so that every file open is
# notable and the semantic thread has the most to do), a python open/exec storm on
# every CPU for DURATION seconds; RSS sampled every 30 s; at the end, windows
# emitted, notable lines, semantic_queue_full losses, and the accounting.
#
#   perf/semantic-storm.sh [DURATION_S]      (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
cargo build --release -q -p engine
work=$(mktemp -d /tmp/semantic-storm.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
target/release/engine -o semantic.jsonl_path="$work/summary.jsonl" -o semantic.min_importance=0.3 \
    -o semantic.notable_bytes_max=1048576 -o storage.data_dir="$work/data" \
    -o storage.retention_bytes_max=2147483648 --duration "$duration" --quiet 2>"$work/report" &
engine=$!
sleep 3
storm() {
    python3 - "$work" <<'PY'
import os, subprocess, sys, time
d = sys.argv[1]
p = os.path.join(d, "storm-%d" % os.getpid())
open(p, "w").close()
n = 0
while True:
    for _ in range(2000):
        open(p).close()
    subprocess.run(["/bin/true"])
    n += 1
PY
}
for _ in $(seq "$(nproc)"); do storm & done
echo "t_s rss_kib"
start=$(date +%s)
while kill -0 "$engine" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' /proc/$engine/status 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss"
    sleep 30
done
wait "$engine" || true
kill $(jobs -p) 2>/dev/null || true
grep -E "accounting|semantic:|enrichment:" "$work/report"
echo "windows: $(grep -c '"type":"window"' "$work/summary.jsonl")"
echo "notable lines: $(grep -c '"type":"notable"' "$work/summary.jsonl")"
echo "windows with a lost partial: $(grep '"type":"window"' "$work/summary.jsonl" | grep -vc '"cores_lost":0')"
echo "notables dropped (arena full): $(grep -o '"notables_dropped":[0-9]*' "$work/summary.jsonl" | awk -F: '{s+=$2} END {print s+0}')"
