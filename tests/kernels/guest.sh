#!/bin/sh
# One kernel's round of the kernel matrix (tests/kernels/matrix.py): for every preset,
# `engine doctor`, the main job with capture.require = "all" under a scripted workload,
# then `engine replay` and `engine summarize` of what it wrote. Everything lands in $OUT
# for the host to check. Runs under busybox sh inside a QEMU guest, or on the host.
#
#   ENGINE     the engine binary
#   CONFIGS    folder with the presets (default.toml, ...)
#   PRESETS    presets to run, space separated
#   OUT        results folder
#   BLOCK_DEV  a block device to read with O_DIRECT (block I/O); WRITE_DEV one to write
#   CGROOT     the cgroup2 mount
#   WORK       scratch folder for the workload
set -u
: "${PRESETS:=default high-perf security}"
: "${WORK:=/tmp/kevent-matrix-work}"
: "${WRITE_DEV:=}"
mkdir -p "$OUT" "$WORK"
# The workload's tools are busybox's, on the host too (which may lack nc or netstat).
bb=""
command -v busybox >/dev/null 2>&1 && bb=busybox

log() { echo "@@KM $*"; }

# Polls for "$2" in file "$1" for at most $3 seconds; 0 when seen.
wait_for() {
    n=0
    while [ "$n" -lt $(($3 * 10)) ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        # Stop waiting for a process that is gone.
        [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null && return 1
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

workload() {
    w="$WORK/$1"
    rm -rf "$w"
    mkdir -p "$w"
    # process: exec, fork, exit (one with a code)
    log "workload $1 process"
    for i in 1 2 3; do /bin/true; sh -c 'exit 3'; done
    # file: create/open, rename, chmod, unlink
    log "workload $1 file"
    echo data >"$w/f1"
    cat "$w/f1" >/dev/null
    mv "$w/f1" "$w/f2"
    chmod 600 "$w/f2"
    rm "$w/f2"
    # net: a TCP connect/accept/close with loopback traffic, and a refused connect
    log "workload $1 net"
    # The listener's stdin stays open (a background job's is /dev/null, whose EOF makes
    # busybox nc close the connection before the data is in): it ends on the client's EOF.
    sleep 8 | $bb timeout 10 $bb nc -l -p 7411 >"$w/recv" &
    lp=$!
    n=0
    while ! $bb netstat -ltn 2>/dev/null | grep -q ':7411 ' && [ $n -lt 100 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    dd if=/dev/zero bs=16k count=64 2>/dev/null | $bb timeout 5 $bb nc 127.0.0.1 7411
    wait $lp
    $bb timeout 5 $bb nc 127.0.0.1 7412 </dev/null 2>/dev/null
    # security: a signal, a setuid, a denied capability (sethostname as nobody)
    log "workload $1 security"
    sleep 60 &
    sp=$!
    kill -TERM $sp
    wait $sp 2>/dev/null
    su -s /bin/sh nobody -c 'hostname kevent-denied' 2>/dev/null
    # container: a cgroup made, joined, removed
    log "workload $1 container"
    cg="$CGROOT/kevent-matrix-$1"
    if mkdir "$cg" 2>/dev/null; then
        sh -c "echo \$\$ >'$cg/cgroup.procs'; /bin/true"
        rmdir "$cg"
    fi
    # memory: page faults
    log "workload $1 memory"
    dd if=/dev/zero of="$w/big" bs=1M count=8 2>/dev/null
    rm -f "$w/big"
    # perf: run-queue contention (a dozen spinners: waits of 10 ms and more), block I/O
    log "workload $1 perf"
    spin=""
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
        $bb timeout 2 sh -c 'while :; do :; done' &
        spin="$spin $!"
    done
    # Only the spinners: a bare `wait` would wait for the engine too.
    wait $spin
    dd if="$BLOCK_DEV" of=/dev/null bs=64k count=256 iflag=direct 2>/dev/null
    if [ -n "$WRITE_DEV" ]; then
        dd if=/dev/zero of="$WRITE_DEV" bs=64k count=64 oflag=direct 2>/dev/null
    fi
    # and once more after the spinners, so that short runs have every kind
    /bin/true
}

for p in $PRESETS; do
    cfg="$CONFIGS/$p.toml"
    "$ENGINE" doctor --config "$cfg" --format json >"$OUT/doctor-$p.json" 2>"$OUT/doctor-$p.err"
    log "doctor $p rc=$?"
    "$ENGINE" doctor --config "$cfg" >"$OUT/doctor-$p.txt" 2>&1
    data="$WORK/data-$p"
    rm -rf "$data"
    "$ENGINE" --config "$cfg" -o capture.require=all -o "storage.data_dir=$data" \
        -o semantic.jsonl_path="$OUT/live-$p.jsonl" -o engine.status_interval_ms=60000 \
        2>"$OUT/engine-$p.err" >/dev/null &
    ep=$!
    if wait_for "$OUT/engine-$p.err" "core thread(s) on CPUs" 300 $ep; then
        log "started $p"
        workload "$p"
        # The last events reach the rings, then the stop drains them.
        sleep 2
        kill -INT $ep
    else
        log "no start $p"
        kill -KILL $ep 2>/dev/null
    fi
    wait $ep
    log "engine $p rc=$?"
    "$ENGINE" replay "$data" --format json >"$OUT/replay-$p.jsonl" 2>"$OUT/replay-$p.err"
    log "replay $p rc=$?"
    "$ENGINE" summarize "$data" >"$OUT/summarize-$p.jsonl" 2>"$OUT/summarize-$p.err"
    log "summarize $p rc=$?"
    "$ENGINE" inspect "$data" >"$OUT/inspect-$p.txt" 2>&1
    rm -rf "$data"
done
uname -r >"$OUT/uname"
log "done"
