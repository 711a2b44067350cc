#!/usr/bin/env python3
"""Kernel time of the scheduler programs: the engine's (`perf.signals = ["sched"]`)
against libbpf-tools' `runqlat`, per `bpf_stats` (run_time_ns and run_cnt of each program,
from `bpftool prog show`), over one `perf bench sched messaging -g 10 -l 1000` each,
rounds interleaved. The budget (docs/events.md, "perf"): the engine's scheduler signals
cost no more than runqlat. Run as root:

    sudo perf/sched-cost.py [--rounds 3]

Needs linux-perf, libbpf-tools and bpftool; builds the engine (release).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "target", "release", "engine")
CONFIG = """
[capture]
categories = ["perf"]
[perf]
signals = ["sched"]
[semantic]
enabled = false
[enrich]
enabled = false
[engine]
status_interval_ms = 0
[storage]
durability = "none"
"""


def progs():
    """{id: (name, run_time_ns, run_cnt)} of every loaded program."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True,
                         capture_output=True, text=True).stdout
    return {p["id"]: (p.get("name", ""), p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out)}


def run(tracer, work):
    before = progs()
    if tracer == "runqlat":
        p = subprocess.Popen(["runqlat", "30", "1"], stdout=subprocess.DEVNULL)
    else:
        cfg = os.path.join(work, "sched.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        p = subprocess.Popen([ENGINE, "--config", cfg, "--data-dir",
                              os.path.join(work, "data"), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Attached once the start line is out.
        for line in p.stderr:
            if "core thread(s)" in line:
                break
    # Attached: new programs appear.
    deadline = time.time() + 20
    while time.time() < deadline and not (set(progs()) - set(before)):
        time.sleep(0.1)
    time.sleep(0.5)
    mid = progs()
    subprocess.run(["perf", "bench", "sched", "messaging", "-g", "10", "-l", "1000"],
                   check=True, stdout=subprocess.DEVNULL)
    after = progs()
    p.send_signal(2)
    p.wait()
    rows = {}
    for pid, (name, t, n) in after.items():
        if pid in before or pid not in mid or not n:
            continue
        dt, dn = t - mid[pid][1], n - mid[pid][2]
        if dn and ("sched" in name or "wakeup" in name):
            rows[name] = (dn, dt)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "engine", "--bin", "engine"],
                   cwd=ROOT, check=True)
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    totals = {"runqlat": [], "engine": []}
    try:
        with tempfile.TemporaryDirectory() as work:
            for r in range(args.rounds):
                for tracer in ("runqlat", "engine"):
                    rows = run(tracer, work)
                    ms = sum(t for _, t in rows.values()) / 1e6
                    totals[tracer].append(ms)
                    detail = ", ".join(f"{k} {n} runs x {t / n:.0f} ns"
                                       for k, (n, t) in sorted(rows.items()))
                    print(f"round {r + 1} {tracer:8} {ms:7.1f} ms  ({detail})", flush=True)
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
    a, b = statistics.median(totals["engine"]), statistics.median(totals["runqlat"])
    print(f"median kernel time: engine {a:.1f} ms, runqlat {b:.1f} ms: {a / b:.2f}x")


if __name__ == "__main__":
    main()
