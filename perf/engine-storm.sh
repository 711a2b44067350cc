#!/usr/bin/env bash
# Live engine under a getppid storm on this machine: events/s kept, losses, engine CPU
# and RSS over the run. As root, from the repository root:
#
#   perf/engine-storm.sh [SECONDS] [CALLS_PER_SEC|max]
#
# The storm is one python process calling getppid, paced to CALLS_PER_SEC (or as fast as
# it can with "max"). The engine keeps only the syscall category (getppid) with no
# sampling budget, so every call is either written or counted as lost.
set -euo pipefail
secs="${1:-60}"
rate="${2:-100000}"
cargo build --release -q -p engine
engine="$PWD/target/release/engine"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/storm.toml" <<TOML
[capture]
categories = ["syscall"]
syscalls = [110]
ring_bytes = 16777216
wakeup_bytes = 262144
[sampling]
bulk_per_sec = 0
[engine]
status_interval_ms = 0
[storage]
data_dir = "$work/data"
durability = "none"
TOML
"$engine" validate "$work/storm.toml" >/dev/null
"$engine" --config "$work/storm.toml" --duration "$((secs + 2))" 2> "$work/engine.err" &
pid=$!
sleep 1.5
python3 - "$secs" "$rate" > "$work/storm.out" <<'PY' &
import os, sys, time
secs, rate = float(sys.argv[1]), sys.argv[2]
end = time.time() + secs
n = 0
if rate == "max":
    while time.time() < end:
        for _ in range(10000): os.getppid()
        n += 10000
else:
    rate = int(rate); batch = max(1, rate // 1000)
    start = time.time()
    while time.time() < end:
        for _ in range(batch): os.getppid()
        n += batch
        ahead = n / rate - (time.time() - start)
        if ahead > 0: time.sleep(ahead)
print(n)
PY
storm=$!
hz=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
rss_min=999999999; rss_max=0; samples=0
for ((i = 0; i < secs; i++)); do
    sleep 1
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    (( i >= 5 )) && { (( rss < rss_min )) && rss_min=$rss; (( rss > rss_max )) && rss_max=$rss; }
    samples=$((samples + 1))
done
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
wait $storm
wait $pid
calls=$(cat "$work/storm.out")
acct=$(grep '^accounting:' "$work/engine.err")
written=$(sed -E 's/.*written ([0-9]+).*/\1/' <<<"$acct")
ring_full=$(sed -E 's/.*ring_full ([0-9]+).*/\1/' <<<"$acct")
cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / s }')
echo "storm: $calls getppid calls in ${secs}s (target ${rate}/s): $((calls / secs))/s"
echo "engine: written $written, lost to a full ring $ring_full; CPU ${cpu}% of one core"
echo "engine RSS after warm-up: min ${rss_min} KiB, max ${rss_max} KiB over $samples samples"
echo "$acct"
