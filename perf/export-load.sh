#!/usr/bin/env bash
# The raw path with 20 gRPC subscribers against none, in one run of this script: a
# getppid storm paced to CALLS_PER_SEC under the engine with the gRPC API on, first
# with no subscriber, then with 20 (Python grpcio, each asking for every raw event,
# notable event, summary and correlation, and reading as fast as it can). Prints, per
# phase, the events written per second, what was lost, and the engine's resident
# memory over the phase. As root, from the repository root:
#
#   perf/export-load.sh [SECONDS] [CALLS_PER_SEC] [grpc|nats]
#
# With "nats" the phases are: no export, the summary stream published to a local
# nats-server -js (windows of 100 ms and every file open notable, so that it has lines
# to publish), and the same with no server listening.
#
# Needs python3 with grpcio and grpcio-tools, and nats-server (what .ci/run installs).
set -euo pipefail
secs="${1:-30}"
rate="${2:-100000}"
mode="${3:-grpc}"
cargo build --release -q -p engine
engine="$PWD/target/release/engine"
proto="$PWD/engine/proto"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m grpc_tools.protoc -I"$proto" --python_out="$work" --grpc_python_out="$work" kevent.proto

cat > "$work/subscribers.py" <<'PY'
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import grpc, kevent_pb2 as pb, kevent_pb2_grpc as rpc
addr, n, secs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
counts = [0] * n
drops = [0] * n
def one(i):
    stub = rpc.CollectorStub(grpc.insecure_channel(addr))
    sub = pb.Subscription(raw_events=True, notable_events=True, summaries=True,
                          correlations=True, credits=1 << 40, max_batch=4096)
    def reqs():
        yield pb.ClientMessage(subscribe=sub)
        time.sleep(secs + 5)
    call = stub.Subscribe(reqs())
    end = time.time() + secs
    try:
        for m in call:
            k = m.WhichOneof("msg")
            if k == "events":
                counts[i] += len(m.events.events)
            elif k == "drops":
                drops[i] += m.drops.total
            if time.time() > end:
                break
    except grpc.RpcError:
        pass
    call.cancel()
ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join(secs + 10)
print("subscribers %d: raw events received %d (min %d, max %d), told of %d dropped" % (
    n, sum(counts), min(counts), max(counts), sum(drops)))
PY

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# phase SUBSCRIBERS [EXTRA_TOML]
phase() {
    local subs="$1" extra="${2:-}" port
    port=$(free_port)
    rm -rf "$work/data"
    cat > "$work/load.toml" <<TOML
[capture]
categories = ["syscall", "process"]
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
[export.grpc]
listen = "127.0.0.1:$port"
$extra
TOML
    "$engine" --config "$work/load.toml" --duration "$((secs + 4))" 2> "$work/engine.err" &
    local pid=$!
    sleep 2
    if [ "$subs" -gt 0 ]; then
        python3 "$work/subscribers.py" "$work" "127.0.0.1:$port" "$subs" "$((secs + 1))" > "$work/subs.out" &
        sleep 1
    fi
    python3 - "$secs" "$rate" > "$work/storm.out" <<'PY' &
import os, sys, time
secs, rate = float(sys.argv[1]), int(sys.argv[2])
end = time.time() + secs
n, batch, start = 0, max(1, int(sys.argv[2]) // 1000), time.time()
while time.time() < end:
    for _ in range(batch): os.getppid()
    n += batch
    ahead = n / rate - (time.time() - start)
    if ahead > 0: time.sleep(ahead)
print(n)
PY
    local storm=$!
    local rss_min=999999999 rss_max=0 series=""
    for ((i = 0; i < secs; i++)); do
        sleep 1
        local rss
        rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
        [ "$rss" -gt 0 ] && { [ "$rss" -lt "$rss_min" ] && rss_min=$rss; [ "$rss" -gt "$rss_max" ] && rss_max=$rss; }
        (( (i + 1) % 10 == 0 )) && series="$series $((rss / 1024))"
    done
    wait "$storm"
    wait "$pid" || true
    [ "$subs" -gt 0 ] && { wait || true; cat "$work/subs.out"; }
    local calls written
    calls=$(cat "$work/storm.out")
    written=$(awk '/^syscall/ {print $3}' "$work/engine.err" | head -1)
    echo "phase $subs subscribers${extra:+ ($(echo "$extra" | head -2 | tr '\n' ' '))}: $calls getppid calls in ${secs} s; $(grep '^accounting' "$work/engine.err")"
    grep 'engine: nats:' "$work/engine.err" | tail -1 || true
    echo "  syscall events written ${written:-?} ($(( ${written:-0} / secs ))/s); engine RSS ${rss_min}..${rss_max} KiB; every 10 s (MiB):$series"
}

if [ "$mode" = nats ]; then
    nport=$(free_port)
    nats-server -js -a 127.0.0.1 -p "$nport" -sd "$work/js" > "$work/nats.log" 2>&1 &
    nats=$!
    sleep 1
    busy="[semantic]
window_ms = 100
lateness_ms = 100
min_importance = 0.3"
    phase 0 "$busy"
    phase 0 "$busy
[export.nats]
url = \"nats://127.0.0.1:$nport\""
    kill "$nats"
    phase 0 "$busy
[export.nats]
url = \"nats://127.0.0.1:$(free_port)\""
else
    phase 0
    phase 20
fi
