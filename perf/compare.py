#!/usr/bin/env python3
"""Side by side, in one run on one machine: each workload under no tracer, `perf record
-a -z`, a bpftrace one-liner and the engine, all capturing the same events.

    sudo perf/compare.py [--seconds S] [--workloads syscalls,files,exec,tcp] [--out perf/results]

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
        "bpftrace": "tracepoint:raw_syscalls:sys_enter /args->id == 110 && comm == \"loadgen\"/ { @n = count(); }",
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
    missing = [p for p, b in (("linux-perf", "perf"), ("bpftrace", "bpftrace")) if not shutil.which(b)]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-qq"], env=env)
        sh(["apt-get", "install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)
    if not os.path.ismount("/sys/kernel/tracing"):
        sh(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"])
    sh(["cargo", "build", "--release", "-q", "-p", "engine", "-p", "bench", "--bin", "engine", "--bin", "loadgen"],
       cwd=ROOT)


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
    stop(p)
    out = p.stdout.read()
    m = re.search(r"@n:\s*(\d+)", out)
    return dict(ops=ops, rate=rate, cpu_s=cpu, peak_rss_kib=rss, captured=int(m.group(1)) if m else 0, lost=0)


def engine_config(name, work):
    sel = WORKLOADS[name]["engine"]
    hp = open(os.path.join(ROOT, "configs", "high-perf.toml")).read()
    ring = re.search(r"^ring_bytes\s*=\s*(\d+)", hp, re.M).group(1)
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
    stop(p)
    err = p.stderr.read()
    acct = next((l for l in err.splitlines() if l.startswith("accounting:")), "")
    dropped = int(re.search(r"dropped (\d+)", acct).group(1)) if acct else -1
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
                lost=dropped, identity_holds=holds, bytes=size, bytes_per_event=size / max(total, 1),
                replay_json_s=replay_json_s, replay_text_s=replay_text_s,
                replay_json_events_per_s=total / max(replay_json_s, 1e-9),
                replay_text_events_per_s=total / max(replay_text_s, 1e-9))


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
    ap.add_argument("--workloads", default="syscalls,files,exec")
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "results"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("perf/compare.py: run as root (perf -a, bpftrace and the engine need it)")
    ensure_tools()
    work = tempfile.mkdtemp(prefix="compare-")
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": f"{os.cpu_count()} CPUs, kernel {os.uname().release}",
           "command": " ".join(["perf/compare.py", *sys.argv[1:]]), "seconds": a.seconds, "workloads": {}}
    try:
        for w in a.workloads.split(","):
            print(f"compare: {w}", file=sys.stderr)
            ops, rate = run_loadgen(w, a.seconds)
            r = {"none": {"ops": ops, "rate": rate, "generated_per_op": WORKLOADS[w]["events_per_op"]}}
            r["perf"] = run_perf(w, a.seconds, work)
            r["bpftrace"] = run_bpftrace(w, a.seconds, work)
            r["engine"] = run_engine(w, a.seconds, work)
            gen = WORKLOADS[w]["events_per_op"]
            e_add = added_ns(rate, r["engine"]["rate"], gen)
            p_add = added_ns(rate, r["perf"]["rate"], gen)
            r["ratios"] = {
                "overhead": (e_add / p_add) if e_add and p_add and p_add > 0 else float("nan"),
                "bytes_per_event": r["engine"]["bytes_per_event"] / max(r["perf"]["bytes_per_event"], 1e-9),
                "replay_json_speed": r["engine"]["replay_json_events_per_s"] / max(r["perf"]["replay_events_per_s"], 1e-9),
            }
            res["workloads"][w] = r
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    stamp = res["date"].replace(":", "").replace("-", "")
    for name in (f"compare-{stamp}.json", "latest.json"):
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(res, f, indent=1)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(res))
    with open(os.path.join(a.out, "latest.svg"), "w") as f:
        f.write(svg(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
