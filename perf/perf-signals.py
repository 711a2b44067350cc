#!/usr/bin/env python3
"""What the perf category costs the workloads it watches, against the libbpf-tools that
measure the same thing (the budgets of docs/events.md, "perf"):

- scheduler: `perf bench sched messaging` (a context-switch storm; seconds, lower is
  better) under no tracer, `runqlat`, and the engine with only the perf category and
  only its `sched` signals (`perf.signals`; likewise `block` and `net` below);
- block I/O: fio 4 KiB direct random reads on a file of the real disk (IOPS) under no
  tracer, `biolatency`, and the engine;
- network: iperf3 over loopback (bits/s) under no tracer, `tcplife` (per-connection
  lifetimes and bytes; libbpf-tools' `tcptop` needs kprobes, which this kernel lacks),
  and the engine.

Rounds interleave the tracers so the machine's drift hits them alike; medians are
reported, with every round's figure. Run as root:

    sudo perf/perf-signals.py [--rounds 3] [--seconds 4] [--out perf/results]

Needs linux-perf, libbpf-tools, fio and iperf3 (installed when missing) and builds the
engine (release).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "target", "release", "engine")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    need = [pkg for pkg, exe in (("linux-perf", "perf"), ("libbpf-tools", "runqlat"),
                                 ("fio", "fio"), ("iperf3", "iperf3"))
            if not shutil.which(exe) and not os.path.exists(f"/usr/sbin/{exe}")]
    if need:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-qq"], env=env)
        sh(["apt-get", "install", "-y", "-qq", *need], env=env, stdout=subprocess.DEVNULL)
    sh(["cargo", "build", "--release", "-q", "-p", "engine", "--bin", "engine"], cwd=ROOT)


class Tracer:
    """A tracer running beside a workload: started, attached, stopped."""

    def __init__(self, name, work, signal):
        self.name, self.work, self.signal, self.p = name, work, signal, None

    def __enter__(self):
        if self.name == "none":
            return self
        if self.name == "engine":
            data = tempfile.mkdtemp(dir=self.work)
            self.p = subprocess.Popen(
                [ENGINE, "--data-dir", data, "-o", 'capture.categories=["perf"]',
                 "-o", f'perf.signals=["{self.signal}"]', "-o", "engine.status_interval_ms=0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for line in self.p.stderr:
                if "attached" in line:
                    break
            else:
                raise RuntimeError(f"engine exited: {self.p.wait()}")
        else:
            self.p = subprocess.Popen([f"/usr/sbin/{self.name}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            time.sleep(2.0)  # its programs load and attach
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.p.returncode}")
        return self

    def __exit__(self, *exc):
        if self.p:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def sched(seconds):
    """perf bench sched messaging: seconds for a fixed amount of messaging."""
    out = sh(["perf", "bench", "sched", "messaging", "-g", "10", "-l", "1000"],
             capture_output=True, text=True).stdout
    return next(float(l.split()[2]) for l in out.splitlines() if "Total time" in l)


def block(seconds, work):
    path = os.path.join(work, "fio.data")
    if not os.path.exists(path):
        sh(["fio", "--name=layout", "--rw=write", "--bs=1M", "--size=256M", "--direct=1",
            f"--filename={path}"], stdout=subprocess.DEVNULL)
    out = sh(["fio", "--name=r", "--rw=randread", "--bs=4k", "--size=256M", "--direct=1",
              "--ioengine=psync", f"--runtime={seconds}", "--time_based",
              "--output-format=json", f"--filename={path}"], capture_output=True).stdout
    return json.loads(out)["jobs"][0]["read"]["iops"]


def net(seconds):
    port = 15999
    server = subprocess.Popen(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds),
                                "-J"], capture_output=True)
            end = json.loads(r.stdout or b"{}").get("end", {}) if r.returncode == 0 else {}
            if "sum_received" in end:
                return end["sum_received"]["bits_per_second"]
            time.sleep(0.2)
        raise RuntimeError("iperf3 did not run")
    finally:
        server.kill()
        server.wait()


WORKLOADS = {
    # name (also the engine's perf.signals entry): (run, peer tool, "higher is better")
    "sched": (lambda s, w: sched(s), "runqlat", False),
    "block": (lambda s, w: block(s, w), "biolatency", True),
    "net": (lambda s, w: net(s), "tcplife", True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--workloads", default="sched,block,net")
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "results"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("perf-signals: run as root (BPF tracers)")
    ensure_tools()
    work = tempfile.mkdtemp(prefix="perf-signals-", dir="/var/tmp")
    results = {}
    try:
        for name in args.workloads.split(","):
            run, peer, higher = WORKLOADS[name]
            rounds = {t: [] for t in ("none", peer, "engine")}
            for _ in range(args.rounds):
                for t in rounds:
                    with Tracer(t, work, name):
                        rounds[t].append(run(args.seconds, work))
            med = {t: statistics.median(v) for t, v in rounds.items()}
            # The cost of a tracer: the fraction of the workload's speed it takes.
            if higher:
                cost = {t: 1 - med[t] / med["none"] for t in med}
            else:
                cost = {t: med[t] / med["none"] - 1 for t in med}
            ratio = cost["engine"] / cost[peer] if cost[peer] > 0 else None
            results[name] = dict(peer=peer, rounds=rounds, median=med, cost=cost,
                                 engine_vs_peer=ratio)
            print(f"{name}: " + ", ".join(f"{t} {med[t]:.4g} ({cost[t] * 100:+.1f}%)" for t in med)
                  + (f"; engine/{peer} cost {ratio:.2f}x" if ratio is not None else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(args.out, f"perf-signals-{stamp}.json")
    with open(path, "w") as f:
        json.dump(dict(command=" ".join(sys.argv), rounds=args.rounds, seconds=args.seconds,
                       results=results), f, indent=1)
    print(f"perf-signals: wrote {path}")


if __name__ == "__main__":
    main()
