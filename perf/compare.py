#!/usr/bin/env python3
"""Side by side, in one run on one machine: each workload under no tracer, `perf record
-a -z`, a bpftrace one-liner and the engine, all capturing the same events.

    sudo perf/compare.py [--seconds S] [--workloads syscalls,files,exec,tcp,redis] [--out perf/results]

Installs its peers from the Debian archive when missing (linux-perf, bpftrace), mounts
tracefs when needed, builds the engine and the load generator in release mode. Writes
perf/results/compare-<timestamp>.json, latest.json, latest.md and latest.svg.

Method, per workload (the load generator, `bench/src/bin/loadgen.rs`, reports how many
operations it did):
  none      the workload alone: its throughput is the baseline.
  perf      `perf record -a -z` on the equivalent tracepoints, started first, stopped
            after the workload; events captured = samples of the workload's comm in
            `perf script`; loss = perf's LOST records; bytes/event = perf.data size over
            all samples; replay = `perf script` over the file.
  bpftrace  a one-liner counting the same tracepoint in the kernel (no storage).
  engine    `engine --config` with configs/high-perf.toml's storage and ring settings,
            the same events selected, sampling off; events captured = replayed events of
            the workload's comm; loss = the accounting line's drops; bytes/event = segment
            bytes over all stored events; replay = `engine replay --format json|text`.
The tracer's CPU seconds and peak RSS come from /proc/<pid> of the tracer process just
before it is stopped (children excluded).
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "target", "release", "engine")
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")
HZ = os.sysconf("SC_CLK_TCK")

# Syscall ids (x86_64) for the file workload: open family, rename family, unlink family.
FILE_IDS = [2, 257, 437, 85, 82, 264, 316, 87, 263, 84]

WORKLOADS = {
    # name: (loadgen args, events per operation, perf events, perf filter, bpftrace probe,
    #        engine categories, engine kinds, engine syscalls)
    "syscalls": {
        "loadgen": ["syscalls"],
        "events_per_op": 1,
        "perf": ["-e", "raw_syscalls:sys_enter", "--filter", "id == 110"],
        # Only counts the same calls: the floor for "a BPF program that touches a map".
        "bpftrace": "tracepoint:raw_syscalls:sys_enter /args->id == 110/ { @n = count(); }",
        # Like perf's raw_syscalls:sys_enter: recorded at entry, no result pairing.
        "engine": {"categories": ["syscall"], "syscalls": [110], "kinds": ["syscall.call"],
                   "syscall_results": False},
    },
    "files": {
        "loadgen": ["files"],
        "events_per_op": 3,  # open (create), rename, unlink
        "perf": ["-e", "raw_syscalls:sys_enter", "--filter",
                 " || ".join(f"id == {i}" for i in FILE_IDS)],
        "bpftrace": "tracepoint:raw_syscalls:sys_enter /comm == \"loadgen\" && ("
                    + " || ".join(f"args->id == {i}" for i in FILE_IDS)
                    + ")/ { @n = count(); }",
        "engine": {"categories": ["file"], "kinds": ["file.open", "file.rename", "file.unlink"]},
    },
    "exec": {
        "loadgen": ["exec"],
        "events_per_op": 1,
        "perf": ["-e", "sched:sched_process_exec"],
        "bpftrace": "tracepoint:sched:sched_process_exec /comm == \"true\"/ { @n = count(); }",
        "engine": {"categories": ["process"], "kinds": ["process.exec"], "comm": "true"},
    },
    "tcp": {
        "loadgen": ["tcp"],
        "events_per_op": 6,  # 2 x SYN/established transitions + closes, see docs
        "perf": ["-e", "sock:inet_sock_set_state"],
        "bpftrace": "tracepoint:sock:inet_sock_set_state /comm == \"loadgen\"/ { @n = count(); }",
        "engine": {"categories": ["net"], "kinds": ["net.tcp_connect", "net.tcp_established",
                                                    "net.tcp_accept", "net.tcp_close"]},
    },
}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [p for p, b in (("linux-perf", "perf"), ("bpftrace", "bpftrace"), ("bpftool", "bpftool"))
               if not shutil.which(b)]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-qq"], env=env)
        sh(["apt-get", "install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)
    if not os.path.ismount("/sys/kernel/tracing"):
        sh(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"])
    sh(["cargo", "build", "--release", "-q", "-p", "engine", "-p", "bench", "--bin", "engine", "--bin", "loadgen"],
       cwd=ROOT)


def bpf_stats(on):
    """kernel.bpf_stats_enabled: run_cnt and run_time_ns per program (costs a clock read
    per run while on, for every program alike)."""
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1" if on else "0")


def prog_costs(names):
    """{program name: {"runs", "ns_per_run"}} of loaded programs whose name is in `names`
    (bpftool prog show; the programs of this run only, they are loaded fresh)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True)
    res = {}
    for p in json.loads(out.stdout or "[]"):
        n, runs = p.get("name", ""), p.get("run_cnt", 0)
        if n in names and runs:
            r = res.setdefault(n, {"runs": 0, "ns": 0})
            r["runs"] += runs
            r["ns"] += p.get("run_time_ns", 0)
    return {n: {"runs": r["runs"], "ns_per_run": r["ns"] / r["runs"]} for n, r in res.items()}


ENGINE_PROGS = {"handle_sys_enter", "handle_sys_exit", "handle_exec", "handle_fork", "handle_exit",
                "handle_inet_sock_set_state", "handle_page_fault_user", "handle_cap_capable"}
BPFTRACE_PROGS = {"sys_enter", "sched_process_exec", "inet_sock_set_state", "sys_exit"}


def proc_usage(pid):
    """(cpu seconds, peak RSS KiB) of one process, children excluded."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / HZ
    peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cpu, peak


def run_loadgen(name, seconds):
    out = subprocess.run([LOADGEN, *WORKLOADS[name]["loadgen"], "--seconds", str(seconds)],
                         check=True, capture_output=True, text=True).stdout
    res = json.loads(out)
    key = name if name in res else next(k for k in res if isinstance(res[k], dict))
    return res[key]["count"], res[key]["per_sec"]


def stop(proc, sig=signal.SIGINT, timeout=120):
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def timed(cmd, stdout=subprocess.DEVNULL):
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def run_perf(name, seconds, work):
    data = os.path.join(work, f"{name}.perf.data")
    p = subprocess.Popen(["perf", "record", "-a", "-z", "-o", data, *WORKLOADS[name]["perf"]],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    ops, rate = run_loadgen(name, seconds)
    cpu, rss = proc_usage(p.pid)
    stop(p)
    err = p.stderr.read()
    # Replay speed, and what was captured, from perf script.
    replay_s = timed(["perf", "script", "-i", data])
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm"], check=True,
                            capture_output=True, text=True).stdout.split("\n")
    total = sum(1 for l in script if l.strip())
    want = "true" if name == "exec" else "loadgen"
    captured = sum(1 for l in script if l.strip() == want)
    stats = subprocess.run(["perf", "report", "-i", data, "--stats"], capture_output=True, text=True).stdout
    lost = sum(int(m) for m in re.findall(r"LOST\s+events:\s+(\d+)", stats))
    lost += sum(int(m) for m in re.findall(r"LOST_SAMPLES\s+events:\s+(\d+)", stats))
    size = os.path.getsize(data)
    os.remove(data)
    return dict(ops=ops, rate=rate, cpu_s=cpu, peak_rss_kib=rss, captured=captured, total_events=total,
                lost=lost, bytes=size, bytes_per_event=size / max(total, 1), replay_s=replay_s,
                replay_events_per_s=total / max(replay_s, 1e-9), note=err.strip().splitlines()[-1:])


def run_bpftrace(name, seconds, work):
    p = subprocess.Popen(["bpftrace", "-e", WORKLOADS[name]["bpftrace"]], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    # Wait until the probes are attached (warnings may come first).
    seen = []
    while True:
        line = p.stdout.readline()
        seen.append(line)
        if "Attaching" in line:
            break
        if not line or len(seen) > 20:
            raise RuntimeError(f"bpftrace did not start: {''.join(seen)}")
    time.sleep(0.5)
    ops, rate = run_loadgen(name, seconds)
    time.sleep(0.2)
    cpu, rss = proc_usage(p.pid)
    progs = prog_costs(BPFTRACE_PROGS)
    stop(p)
    out = p.stdout.read()
    m = re.search(r"@n:\s*(\d+)", out)
    return dict(ops=ops, rate=rate, cpu_s=cpu, peak_rss_kib=rss, captured=int(m.group(1)) if m else 0, lost=0,
                bpf_progs=progs)


def engine_config(name, work):
    sel = WORKLOADS[name]["engine"]
    hp = open(os.path.join(ROOT, "configs", "high-perf.toml")).read()
    ring = re.search(r"^ring_bytes\s*=\s*(\d+)", hp, re.M).group(1)
    ring_total = re.search(r"^ring_bytes_total\s*=\s*(\d+)", hp, re.M)
    ring_total = ring_total.group(1) if ring_total else "0"
    level = re.search(r"^zstd_level\s*=\s*(-?\d+)", hp, re.M).group(1)
    block = re.search(r"^block_bytes\s*=\s*(\d+)", hp, re.M).group(1)
    data = os.path.join(work, f"{name}.engine")
    os.makedirs(data)
    cfg = os.path.join(work, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[capture]
categories = {json.dumps(sel["categories"])}
syscalls = {json.dumps(sel.get("syscalls", []))}
syscall_results = {"true" if sel.get("syscall_results", True) else "false"}
ring_bytes = {ring}
ring_bytes_total = {ring_total}
wakeup_bytes = 1048576
[filter]
kinds = {json.dumps(sel["kinds"])}
[sampling]
high_per_sec = 0
normal_per_sec = 0
bulk_per_sec = 0
[engine]
status_interval_ms = 0
[storage]
data_dir = "{data}"
block_bytes = {block}
zstd_level = {level}
durability = "none"
""")
    return cfg, data


def run_engine(name, seconds, work):
    cfg, data = engine_config(name, work)
    p = subprocess.Popen([ENGINE, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            raise RuntimeError(f"engine exited: {p.wait()}")
        if "attached" in line:
            break
    time.sleep(0.5)
    ops, rate = run_loadgen(name, seconds)
    time.sleep(0.5)
    cpu, rss = proc_usage(p.pid)
    progs = prog_costs(ENGINE_PROGS)
    stop(p)
    err = p.stderr.read()
    acct = next((l for l in err.splitlines() if l.startswith("accounting:")), "")
    dropped = int(re.search(r"dropped (\d+)", acct).group(1)) if acct else -1
    produced = int(re.search(r"produced (\d+)", acct).group(1)) if acct else 0
    holds = "[holds]" in acct
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
    replay_json_s = timed([ENGINE, "replay", data, "--format", "json"])
    replay_text_s = timed([ENGINE, "replay", data, "--format", "text"])
    comm = WORKLOADS[name]["engine"].get("comm", "loadgen")
    out = subprocess.run([ENGINE, "replay", data, "--format", "json", "--comm", comm],
                         check=True, capture_output=True, text=True).stdout
    captured = out.count("\n")
    total = int(re.search(r"written (\d+)", acct).group(1)) if acct else 0
    shutil.rmtree(data)
    return dict(ops=ops, rate=rate, cpu_s=cpu, peak_rss_kib=rss, captured=captured, total_events=total,
                produced=produced, cpu_s_per_million=cpu / max(produced / 1e6, 1e-9), bpf_progs=progs,
                lost=dropped, identity_holds=holds, bytes=size, bytes_per_event=size / max(total, 1),
                replay_json_s=replay_json_s, replay_text_s=replay_text_s,
                replay_json_events_per_s=total / max(replay_json_s, 1e-9),
                replay_text_events_per_s=total / max(replay_text_s, 1e-9))


def start_engine_preset(preset, data, extra=()):
    """The engine on configs/<preset>.toml as a user runs it (sampling in force), writing to
    `data`; returns the process once attached."""
    p = subprocess.Popen([ENGINE, "--config", os.path.join(ROOT, "configs", f"{preset}.toml"),
                          "--data-dir", data, "-o", "engine.status_interval_ms=0", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            raise RuntimeError(f"engine exited: {p.wait()}")
        if "attached" in line:
            return p


def stop_engine_preset(p):
    """Stops it; (cpu s, peak RSS KiB, per-program costs, accounting numbers)."""
    cpu, rss = proc_usage(p.pid)
    progs = prog_costs(ENGINE_PROGS)
    stop(p)
    acct = next((l for l in p.stderr.read().splitlines() if l.startswith("accounting:")), "")
    num = lambda key: int(re.search(key + r" (\d+)", acct).group(1)) if re.search(key + r" (\d+)", acct) else 0
    return cpu, rss, progs, dict(produced=num("produced"), written=num("written"), sampled_kernel=num(r"\(kernel"),
                                 sampled_engine=num("engine"), dropped=num("dropped"), holds="[holds]" in acct)


def run_engine_hp(name, seconds, work):
    """The syscall storm under the full high-perf preset (every category, every syscall,
    bulk kinds sampled in the kernel): what a user actually runs."""
    data = os.path.join(work, f"{name}.hp")
    p = start_engine_preset("high-perf", data)
    time.sleep(0.5)
    ops, rate = run_loadgen(name, seconds)
    time.sleep(0.5)
    cpu, rss, progs, acct = stop_engine_preset(p)
    out = subprocess.run([ENGINE, "replay", data, "--format", "json", "--comm", "loadgen", "--kind", "syscall.call"],
                         check=True, capture_output=True, text=True).stdout
    estimate = 0
    for line in out.splitlines():
        ev = json.loads(line)
        if ev.get("id") == 110:
            estimate += ev.get("weight", 1)
    shutil.rmtree(data)
    return dict(ops=ops, rate=rate, cpu_s=cpu, peak_rss_kib=rss, bpf_progs=progs, lost=acct["dropped"],
                captured=estimate, identity_holds=acct["holds"], **acct,
                cpu_s_per_million=cpu / max(acct["produced"] / 1e6, 1e-9))


REDIS_PORT = 16379
REDIS_PERF = ["-e", "raw_syscalls:sys_enter", "-e", "raw_syscalls:sys_exit", "-e", "sched:sched_process_exec",
              "-e", "sched:sched_process_exit", "-e", "sock:inet_sock_set_state"]


def redis_bench(requests):
    """redis-benchmark, a fixed mix (SET and GET, 50 clients, no pipelining): (requests/s
    over both, worst p99 ms)."""
    out = subprocess.run(["redis-benchmark", "-p", str(REDIS_PORT), "-t", "set,get", "-n", str(requests),
                          "-c", "50", "--csv"], check=True, capture_output=True, text=True).stdout
    rows = [l.replace('"', "").split(",") for l in out.splitlines() if l.startswith('"SET"') or l.startswith('"GET"')]
    rps = len(rows) / sum(1 / float(r[1]) for r in rows)  # requests over total time
    return rps, max(float(r[6]) for r in rows)


def redis_round(t, requests, work):
    """One redis-benchmark run under tracer `t`."""
    if t == "none":
        rps, p99 = redis_bench(requests)
        return dict(rate=rps, p99_ms=p99)
    if t == "perf":
        data = os.path.join(work, "redis.perf.data")
        p = subprocess.Popen(["perf", "record", "-a", "-z", "-o", data, *REDIS_PERF],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)
        rps, p99 = redis_bench(requests)
        cpu, rss = proc_usage(p.pid)
        stop(p)
        stats = subprocess.run(["perf", "report", "-i", data, "--stats"], capture_output=True, text=True).stdout
        lost = sum(int(m) for m in re.findall(r"LOST(?:_SAMPLES)?\s+events:\s+(\d+)", stats))
        size = os.path.getsize(data)
        os.remove(data)
        return dict(rate=rps, p99_ms=p99, cpu_s=cpu, peak_rss_kib=rss, lost=lost, bytes=size)
    if t == "bpftrace":
        p = subprocess.Popen(["bpftrace", "-e", "tracepoint:raw_syscalls:sys_enter { @n = count(); }"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while "Attaching" not in (p.stdout.readline() or "Attaching"):
            pass
        time.sleep(0.5)
        rps, p99 = redis_bench(requests)
        cpu, rss = proc_usage(p.pid)
        stop(p)
        return dict(rate=rps, p99_ms=p99, cpu_s=cpu, peak_rss_kib=rss, lost=0)
    preset = t.removeprefix("engine-")
    data = os.path.join(work, f"redis.{preset}")
    p = start_engine_preset(preset, data)
    time.sleep(0.5)
    rps, p99 = redis_bench(requests)
    cpu, rss, _, acct = stop_engine_preset(p)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
    shutil.rmtree(data)
    return dict(rate=rps, p99_ms=p99, cpu_s=cpu, peak_rss_kib=rss, lost=acct["dropped"], bytes=size, **acct)


def run_redis(seconds, work, rounds=5):
    """The application benchmark: redis-server under redis-benchmark, with no tracer, perf
    record on the tracepoints high-perf attaches for syscalls and processes, a bpftrace
    counter of every syscall, and the engine with each preset."""
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "install", "-y", "-qq", "redis-server", "redis-tools"], env=env, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(["redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        # Size the run to about `seconds` per test, from a first untraced run.
        rps, _ = redis_bench(20000)
        requests = max(int(rps * seconds), 20000)
        tracers = ("none", "perf", "bpftrace", "engine-default", "engine-high-perf")
        runs = {t: [] for t in tracers}
        # Rounds, each tracer once per round, so that the machine's drift hits all alike;
        # the median of each is reported.
        for _ in range(rounds):
            for t in tracers:
                runs[t].append(redis_round(t, requests, work))
        res = {"requests": requests, "rounds": rounds}
        for t in tracers:
            xs = sorted(runs[t], key=lambda x: x["rate"])
            med = dict(xs[len(xs) // 2])
            med["p99_ms"] = sorted(x["p99_ms"] for x in xs)[len(xs) // 2]
            med["rates"] = [round(x["rate"]) for x in runs[t]]
            res[t] = med
        for t in tracers[1:]:
            res[t]["rps_lost_pct"] = 100 * (1 - res[t]["rate"] / res["none"]["rate"])
            res[t]["p99_added_ms"] = res[t]["p99_ms"] - res["none"]["p99_ms"]
        return res
    finally:
        server.terminate()
        server.wait()


def added_ns(base_rate, rate, per_op):
    if not rate or not base_rate:
        return None
    return (1e9 / rate - 1e9 / base_rate) / per_op


def markdown(res):
    lines = [f"# Side-by-side run ({res['date']}, {res['machine']})", "",
             f"Command: `{res['command']}`; {res['seconds']} s per workload.", "",
             "| workload | tracer | ops/s | added ns/event | captured / generated | lost | tracer CPU s | peak RSS MiB | bytes/event | replay events/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w, r in res["workloads"].items():
        base = r["none"]["rate"]
        gen = r["none"]["generated_per_op"]
        for t in ("none", "perf", "bpftrace", "engine"):
            x = r[t]
            generated = x["ops"] * gen
            add = added_ns(base, x["rate"], gen) if t != "none" else 0
            cap = f"{x.get('captured', 0)} / {generated}" if t != "none" else "-"
            rep = "-"
            if t == "perf":
                rep = f"{x['replay_events_per_s']:,.0f}"
            elif t == "engine":
                rep = f"{x['replay_json_events_per_s']:,.0f} json, {x['replay_text_events_per_s']:,.0f} text"
            bpe = f"{x['bytes_per_event']:.1f}" if "bytes_per_event" in x else "-"
            lines.append(f"| {w} | {t} | {x['rate']:,.0f} | {add:,.0f} | {cap} | {x.get('lost', 0) if t != 'none' else '-'} | "
                         f"{x.get('cpu_s', 0):.2f} | {x.get('peak_rss_kib', 0) / 1024:.0f} | {bpe} | {rep} |")
    lines += ["", "Ratios (engine / perf):", ""]
    lines += ["| workload | overhead ns/event | bytes/event | replay json speed (engine/perf script) | loss engine vs perf |",
              "| --- | ---: | ---: | ---: | --- |"]
    for w, r in res["workloads"].items():
        q = r["ratios"]
        lines.append(f"| {w} | {q['overhead']:.2f}x | {q['bytes_per_event']:.2f}x | {q['replay_json_speed']:.1f}x | "
                     f"{r['engine']['lost']} vs {r['perf']['lost']} |")
    for w, r in res["workloads"].items():
        if "engine-hp" not in r:
            continue
        h, q = r["engine-hp"], r["ratios"]
        base, gen = r["none"]["rate"], r["none"]["generated_per_op"]
        lines += ["", f"High-perf preset as shipped (every category, every syscall, sampled in the kernel), {w}:", "",
                  f"- ops/s {h['rate']:,.0f}, added ns/event {added_ns(base, h['rate'], gen):,.0f}: "
                  f"{q.get('hp_overhead_vs_perf', float('nan')):.2f}x perf's, {q.get('hp_overhead_vs_bpftrace', float('nan')):.2f}x bpftrace's counter",
                  f"- produced {h['produced']:,}, written {h['written']:,}, sampled out in the kernel {h['sampled_kernel']:,}, "
                  f"in the engine {h['sampled_engine']:,}, dropped {h['dropped']:,}, identity {'holds' if h['identity_holds'] else 'BROKEN'}",
                  f"- weighted estimate of the workload's getppid calls {h['captured']:,} of {h['ops'] * gen:,} made",
                  f"- engine CPU {h['cpu_s']:.2f} s ({h['cpu_s_per_million']:.3f} s per million events produced), peak RSS {h['peak_rss_kib'] / 1024:.0f} MiB"]
    costs = []
    for w, r in res["workloads"].items():
        for t in ("bpftrace", "engine", "engine-hp"):
            for name, c in sorted(r.get("prog_costs", {}).get(t, {}).items()):
                costs.append(f"| {w} | {t} | {name} | {c['runs']:,} | {c['ns_per_run']:.0f} |")
    if costs:
        lines += ["", "Per-program kernel cost (`kernel.bpf_stats_enabled`, run_time_ns / run_cnt; 2 s runs of their own,"
                  " since the statistics add two clock reads to every program run):", "",
                  "| workload | tracer | program | runs | ns/run |", "| --- | --- | --- | ---: | ---: |", *costs]
        for w, r in res["workloads"].items():
            q = r["ratios"]
            if "prog_kept_vs_bpftrace" in q:
                lines.append(f"\n{w}: sys_enter, kept record vs the bpftrace counter {q['prog_kept_vs_bpftrace']:.2f}x; "
                             f"high-perf (mostly sampled out) {q.get('prog_hp_vs_bpftrace', float('nan')):.2f}x")
    if "redis" in res:
        rd = res["redis"]
        lines += ["", f"Application: redis-server under redis-benchmark (SET and GET, 50 clients, {rd['requests']:,} requests each; "
                      f"median of {rd['rounds']} interleaved rounds):", "",
                  "| tracer | requests/s | lost | p99 ms | p99 added ms | tracer CPU s | peak RSS MiB | dropped | rounds (requests/s) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for t in ("none", "perf", "bpftrace", "engine-default", "engine-high-perf"):
            x = rd[t]
            lines.append(f"| {t} | {x['rate']:,.0f} | {x.get('rps_lost_pct', 0):.1f}% | {x['p99_ms']:.3f} | "
                         f"{x.get('p99_added_ms', 0):.3f} | {x.get('cpu_s', 0):.2f} | {x.get('peak_rss_kib', 0) / 1024:.0f} | {x.get('lost', 0):,} | "
                         f"{', '.join(f'{v:,}' for v in x['rates'])} |")
    return "\n".join(lines) + "\n"


def svg(res):
    """Three bar groups per workload: overhead, bytes/event, replay speed (engine vs perf)."""
    metrics = [("added ns/event", "overhead_ns"), ("bytes/event on disk", "bpe"), ("replay events/s (M)", "replay")]
    ws = list(res["workloads"])
    width, row_h = 900, 40
    height = 60 + len(metrics) * (len(ws) * row_h + 50)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
           f'<text x="10" y="24" font-size="16" font-weight="bold">engine (blue) vs perf record (grey), {res["date"]}</text>']
    y = 50
    for title, key in metrics:
        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{title}</text>')
        y += 24
        vals = []
        for w in ws:
            r = res["workloads"][w]
            base, gen = r["none"]["rate"], r["none"]["generated_per_op"]
            if key == "overhead_ns":
                vals.append((w, added_ns(base, r["engine"]["rate"], gen) or 0, added_ns(base, r["perf"]["rate"], gen) or 0))
            elif key == "bpe":
                vals.append((w, r["engine"]["bytes_per_event"], r["perf"]["bytes_per_event"]))
            else:
                vals.append((w, r["engine"]["replay_json_events_per_s"] / 1e6, r["perf"]["replay_events_per_s"] / 1e6))
        top = max([max(a, b) for _, a, b in vals] + [1e-9])
        for w, e, p in vals:
            scale = 600 / top
            out.append(f'<text x="10" y="{y + 14}">{w}</text>')
            out.append(f'<rect x="110" y="{y}" width="{max(e, 0) * scale:.1f}" height="15" fill="#2b6cb0"/>')
            out.append(f'<text x="{115 + max(e, 0) * scale:.1f}" y="{y + 12}">{e:,.1f}</text>')
            out.append(f'<rect x="110" y="{y + 17}" width="{max(p, 0) * scale:.1f}" height="15" fill="#a0aec0"/>')
            out.append(f'<text x="{115 + max(p, 0) * scale:.1f}" y="{y + 29}">{p:,.1f}</text>')
            y += row_h
        y += 26
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--workloads", default="syscalls,files,exec,redis")
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "results"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("perf/compare.py: run as root (perf -a, bpftrace and the engine need it)")
    ensure_tools()
    work = tempfile.mkdtemp(prefix="compare-")
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": f"{os.cpu_count()} CPUs, kernel {os.uname().release}",
           "command": " ".join(["perf/compare.py", *sys.argv[1:]]), "seconds": a.seconds, "workloads": {}}
    bpf_stats(False)
    try:
        for w in a.workloads.split(","):
            print(f"compare: {w}", file=sys.stderr)
            if w == "redis":
                res["redis"] = run_redis(a.seconds, work)
                continue
            ops, rate = run_loadgen(w, a.seconds)
            r = {"none": {"ops": ops, "rate": rate, "generated_per_op": WORKLOADS[w]["events_per_op"]}}
            r["perf"] = run_perf(w, a.seconds, work)
            r["bpftrace"] = run_bpftrace(w, a.seconds, work)
            r["engine"] = run_engine(w, a.seconds, work)
            if w == "syscalls":
                r["engine-hp"] = run_engine_hp(w, a.seconds, work)
                # Per-program kernel cost, in runs of their own: bpf_stats adds two clock
                # reads to every program run, which the throughput runs above must not pay.
                bpf_stats(True)
                try:
                    r["prog_costs"] = {"bpftrace": run_bpftrace(w, 2, work)["bpf_progs"],
                                       "engine": run_engine(w, 2, work)["bpf_progs"],
                                       "engine-hp": run_engine_hp(w, 2, work)["bpf_progs"]}
                finally:
                    bpf_stats(False)
            gen = WORKLOADS[w]["events_per_op"]
            e_add = added_ns(rate, r["engine"]["rate"], gen)
            p_add = added_ns(rate, r["perf"]["rate"], gen)
            b_add = added_ns(rate, r["bpftrace"]["rate"], gen)
            r["ratios"] = {
                "overhead": (e_add / p_add) if e_add and p_add and p_add > 0 else float("nan"),
                "bytes_per_event": r["engine"]["bytes_per_event"] / max(r["perf"]["bytes_per_event"], 1e-9),
                "replay_json_speed": r["engine"]["replay_json_events_per_s"] / max(r["perf"]["replay_events_per_s"], 1e-9),
            }
            if "engine-hp" in r:
                h_add = added_ns(rate, r["engine-hp"]["rate"], gen)
                r["ratios"]["hp_overhead_vs_perf"] = (h_add / p_add) if h_add and p_add and p_add > 0 else float("nan")
                r["ratios"]["hp_overhead_vs_bpftrace"] = (h_add / b_add) if h_add and b_add and b_add > 0 else float("nan")
            pc = r.get("prog_costs", {})
            bt = pc.get("bpftrace", {}).get("sys_enter", {}).get("ns_per_run")
            en = pc.get("engine", {}).get("handle_sys_enter", {}).get("ns_per_run")
            if bt and en:
                r["ratios"]["prog_kept_vs_bpftrace"] = en / bt
                hp = pc.get("engine-hp", {}).get("handle_sys_enter", {}).get("ns_per_run")
                if hp:
                    r["ratios"]["prog_hp_vs_bpftrace"] = hp / bt
            res["workloads"][w] = r
    finally:
        bpf_stats(False)
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    stamp = res["date"].replace(":", "").replace("-", "")
    for name in (f"compare-{stamp}.json", "latest.json"):
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(res, f, indent=1)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(res))
    if res["workloads"]:
        with open(os.path.join(a.out, "latest.svg"), "w") as f:
            f.write(svg(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
