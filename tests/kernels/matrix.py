#!/usr/bin/env python3
"""The kernel matrix: the engine on the kernels our users run.

Each kernel is a Debian package (fetched with `apt-get download`, unpacked with
`dpkg-deb -x`) booted under QEMU (TCG: nested KVM does not work on these machines) with
an initramfs of busybox-static, the engine, the libraries `ldd` lists, the virtio block
modules, and tests/kernels/guest.sh, which runs, for every preset, `engine doctor`, the
main job with capture.require = "all" under a scripted workload, and `engine replay` and
`engine summarize`. The host kernel runs guest.sh directly. Results come back on a
second virtio disk (a tar archive) and are checked here: every preset starts, doctor
says it runs fully, and every kind it promises that the workload provokes is in the
replay and in the summary windows; the summary recomputed offline is the live one.

    tests/kernels/matrix.py [--engine target/debug/engine]
        [--kernel 'linux-image-6.1.0-*-amd64' --kernel 'linux-image-6.12.*+deb12-amd64']
        [--vmlinuz PATH [--modules DIR]] [--no-host] [--presets default,high-perf,security]

A --kernel is a Debian package name or a shell pattern of names (the newest that
downloads is taken, `-unsigned` variants included). A failure names the kernel, the
preset, the kind, and the verifier's log (from doctor). Exit 0 when every cell passes.
"""

import argparse
import glob
import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_KERNELS = ["linux-image-6.1.0-*-amd64", "linux-image-6.12.*+deb12-amd64"]
PRESETS = ["default", "high-perf", "security"]

# What the workload of guest.sh provokes, by category: each kind the preset captures
# (doctor) in these must appear in its replay.
WORKLOAD_KINDS = {
    "process": ["process.exec", "process.fork", "process.exit"],
    "file": ["file.open", "file.rename", "file.chmod", "file.unlink"],
    "net": [
        "net.tcp_connect",
        "net.tcp_accept",
        "net.tcp_close",
        "net.tcp_reset_received",
    ],
    "security": ["security.setuid", "security.capability", "security.signal"],
    "container": [
        "container.cgroup_mkdir",
        "container.cgroup_attach",
        "container.cgroup_rmdir",
    ],
    "memory": ["memory.page_fault"],
    "syscall": ["syscall.call"],
    "perf": [
        "perf.runq_latency",
        "perf.task_sched",
        "perf.runq_wait",
        "perf.io_latency",
        "perf.net_traffic",
        "perf.tcp_life",
    ],
}
# Records the engine derives (perf aggregates) are not in the windows' kind counts.
NOT_IN_WINDOWS = {"perf.runq_latency", "perf.task_sched", "perf.io_latency", "perf.net_traffic"}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def natural(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def resolve_package(spec, cache):
    """The newest package matching `spec` that downloads, unpacked: (name, root)."""
    names = subprocess.run(
        ["apt-cache", "pkgnames", "linux-image-"], capture_output=True, text=True, check=True
    ).stdout.split()
    # A `*` stands for a version part (digits and dots), not a flavour: the pattern
    # linux-image-6.1.0-*-amd64 is not linux-image-6.1.0-57-rt-amd64.
    rx = re.compile(
        "^" + ".*".join(re.escape(part) for part in spec.split("*")).replace(".*", "[0-9.]+")
        + "(-unsigned)?$"
    )
    matches = sorted(
        {n for n in names if rx.match(n)},
        key=lambda n: (natural(n.removesuffix("-unsigned")), n.endswith("-unsigned")),
        reverse=True,
    )
    if not matches:
        raise SystemExit(f"matrix: no Debian package matches {spec!r} (apt-get update?)")
    for name in matches:
        root = os.path.join(cache, name)
        if os.path.isdir(os.path.join(root, "boot")):
            return name, root
        debs = glob.glob(os.path.join(cache, name + "_*.deb"))
        if not debs:
            r = subprocess.run(
                ["apt-get", "download", "-q", name], cwd=cache, capture_output=True, text=True
            )
            debs = glob.glob(os.path.join(cache, name + "_*.deb"))
            if r.returncode != 0 or not debs:
                print(f"matrix: {name} does not download, trying the next", file=sys.stderr)
                continue
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        sh(["dpkg-deb", "-x", debs[0], tmp])
        os.replace(tmp, root)
        os.remove(debs[0])
        return name, root
    raise SystemExit(f"matrix: no package matching {spec!r} could be downloaded")


def module_files(modroot, wanted):
    """The module files (relative to `modroot`) for `wanted` and what they depend on
    (the `depends=` of their .modinfo: packages carry no modules.dep), dependencies
    first; a module built into the kernel has no file and is skipped."""
    by_name = {}
    for dirpath, _, files in os.walk(modroot):
        for f in files:
            m = re.match(r"(.+)\.ko(\.(xz|gz|zst))?$", f)
            if m:
                by_name[m.group(1).replace("-", "_")] = os.path.relpath(os.path.join(dirpath, f), modroot)
    order = []

    def add(name):
        rel = by_name.get(name)
        if rel is None or rel in order:
            return
        info = re.search(rb"depends=([^\0]*)", read_module(os.path.join(modroot, rel)))
        for d in (info.group(1).decode().split(",") if info else []):
            if d:
                add(d.replace("-", "_"))
        order.append(rel)

    for name in wanted:
        add(name)
    return order


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    return data


INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
for m in $(cat /modules.order); do insmod /modules/$m; done
n=0; while [ ! -b /dev/vdb ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
echo "@@KM booted $(uname -r)"
mkdir -p /out
ENGINE=/engine CONFIGS=/configs OUT=/out BLOCK_DEV=/dev/vda WRITE_DEV=/dev/vda \\
    CGROOT=/sys/fs/cgroup PRESETS="{presets}" sh /guest.sh
tar cf /dev/vdb -C /out .
sync
echo "@@KM end"
poweroff -f
"""


def modules_dir(kroot):
    """The lib/modules/VERSION folder of a kernel package unpacked at `kroot`."""
    mods = glob.glob(os.path.join(kroot, "lib/modules/*")) + glob.glob(
        os.path.join(kroot, "usr/lib/modules/*")
    )
    return mods[0] if mods else None


def build_initramfs(engine, modroot, presets, work):
    """The initramfs: a gzip'd newc cpio, with the virtio modules of `modroot` (the
    kernel's lib/modules/VERSION; None: built in or absent)."""
    tree = os.path.join(work, "initramfs")
    shutil.rmtree(tree, ignore_errors=True)
    for d in ["bin", "etc", "modules", "configs"]:
        os.makedirs(os.path.join(tree, d))
    shutil.copy("/bin/busybox", os.path.join(tree, "bin/busybox"))
    shutil.copy(engine, os.path.join(tree, "engine"))
    # The libraries the engine links, at their paths.
    for line in subprocess.run(["ldd", engine], capture_output=True, text=True).stdout.splitlines():
        m = re.search(r"(/\S+)", line)
        if not m or not os.path.exists(m.group(1)):
            continue
        lib = m.group(1)
        dst = os.path.join(tree, lib.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(lib, dst)
    for p in presets:
        shutil.copy(os.path.join(ROOT, "configs", p + ".toml"), os.path.join(tree, "configs"))
    shutil.copy(os.path.join(HERE, "guest.sh"), os.path.join(tree, "guest.sh"))
    with open(os.path.join(tree, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(os.path.join(tree, "etc/group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    with open(os.path.join(tree, "etc/shells"), "w") as f:
        f.write("/bin/sh\n")
    order = []
    if modroot:
        for rel in module_files(modroot, ["virtio_pci", "virtio_blk"]):
            name = re.sub(r"\.(xz|gz|zst)$", "", os.path.basename(rel))
            with open(os.path.join(tree, "modules", name), "wb") as f:
                f.write(read_module(os.path.join(modroot, rel)))
            order.append(name)
    with open(os.path.join(tree, "modules.order"), "w") as f:
        f.write("\n".join(order) + "\n")
    with open(os.path.join(tree, "init"), "w") as f:
        f.write(INIT.replace("{presets}", " ".join(presets)))
    os.chmod(os.path.join(tree, "init"), 0o755)
    out = os.path.join(work, "initrd.gz")
    files = subprocess.run(
        ["find", ".", "-mindepth", "1"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        cwd=tree,
        input=files.encode(),
        capture_output=True,
        check=True,
    ).stdout
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(cpio)
    return out


def boot(name, vmlinuz, initrd, work, timeout_s):
    """Boots the kernel; returns (console text, results folder or None)."""
    scratch = os.path.join(work, "scratch.img")
    outimg = os.path.join(work, "out.img")
    for img, size in [(scratch, 64 << 20), (outimg, 512 << 20)]:
        with open(img, "wb") as f:
            f.truncate(size)
    cmd = [
        "qemu-system-x86_64",
        # One host thread for both vCPUs: with multi-threaded TCG, the kernel's live
        # patching of its own text (int3 + text_poke, as when a tracepoint's static key
        # flips on attach) raced and oopsed 6.12 in __schedule once in CI.
        "-accel", "tcg,thread=single", "-cpu", "max", "-smp", "2", "-m", "2048",
        "-kernel", vmlinuz, "-initrd", initrd,
        "-append", "console=ttyS0 panic=-1 quiet loglevel=4",
        "-drive", f"file={scratch},format=raw,if=virtio",
        "-drive", f"file={outimg},format=raw,if=virtio",
        "-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
    ]
    console_path = os.path.join(work, "console.log")
    t0 = time.monotonic()
    with open(console_path, "wb") as console:
        try:
            subprocess.run(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=timeout_s)
        except subprocess.TimeoutExpired:
            console.write(f"\n@@KM timeout after {timeout_s} s\n".encode())
    print(f"matrix: {name}: guest ran {time.monotonic() - t0:.0f} s", file=sys.stderr)
    with open(console_path, "rb") as f:
        text = f.read().decode(errors="replace")
    results = os.path.join(work, "results")
    shutil.rmtree(results, ignore_errors=True)
    os.makedirs(results)
    try:
        with tarfile.open(outimg) as t:
            t.extractall(results, filter="data")
    except (tarfile.TarError, OSError) as e:
        print(f"matrix: {name}: no results on the output disk ({e})", file=sys.stderr)
        return text, None
    return text, results


def run_host(engine, presets, work):
    results = os.path.join(work, "results")
    shutil.rmtree(results, ignore_errors=True)
    os.makedirs(results)
    mounts = open("/proc/self/mounts").read().splitlines()
    cgroot = next((l.split()[1] for l in mounts if l.split()[2] == "cgroup2"), "/sys/fs/cgroup")
    root_dev = next((l.split()[0] for l in mounts if l.split()[1] == "/" and l.startswith("/dev/")), "")
    env = dict(os.environ, ENGINE=os.path.abspath(engine), CONFIGS=os.path.join(ROOT, "configs"),
               OUT=results, BLOCK_DEV=root_dev or "/dev/null", WRITE_DEV="", CGROOT=cgroot,
               PRESETS=" ".join(presets), WORK=os.path.join(work, "work"))
    r = subprocess.run(["sh", os.path.join(HERE, "guest.sh")], env=env, capture_output=True,
                       text=True, timeout=900)
    return r.stdout + r.stderr, results


def kinds_of_replay(path):
    counts = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = re.search(r'"kind":"([^"]+)"', line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def check(name, console, results, presets):
    """Failures of one kernel, each a line naming kernel, preset and kind."""
    fails = []
    status = dict(re.findall(r"@@KM (\w+ [\w-]+) rc=(\d+)", console))
    if results is None:
        return [f"{name}: the guest gave no results; console:\n{console[-3000:]}"]
    for p in presets:
        cell = f"{name} / {p}"
        def read(f):
            path = os.path.join(results, f)
            return open(path, errors="replace").read() if os.path.exists(path) else ""
        doctor_txt = read(f"doctor-{p}.txt")
        try:
            doctor = json.loads(read(f"doctor-{p}.json"))
        except json.JSONDecodeError:
            fails.append(f"{cell}: doctor printed no JSON: {read(f'doctor-{p}.err')[-2000:]}")
            continue
        if status.get(f"doctor {p}") != "0" or doctor.get("verdict") != "full":
            fails.append(f"{cell}: doctor verdict {doctor.get('verdict')} (exit "
                         f"{status.get(f'doctor {p}')}):\n{doctor_txt}")
        for u in doctor.get("unavailable", []):
            fails.append(f"{cell}: kind {u['kind']} not captured ({u['reason']}): {u['detail']}")
        captured = {k["kind"] for k in doctor.get("kinds", [])}
        cats = doctor.get("categories", [])
        promised = [k for c in cats for k in WORKLOAD_KINDS.get(c, [])]
        for k in promised:
            if k not in captured:
                fails.append(f"{cell}: doctor does not promise {k} (category {k.split('.')[0]})")
        err = read(f"engine-{p}.err")
        if status.get(f"engine {p}") != "0":
            fails.append(f"{cell}: the main job exited {status.get(f'engine {p}')}:\n{err[-3000:]}")
            continue
        hooks = re.search(r"; hooks ([^\n]*)", err)
        if not hooks:
            fails.append(f"{cell}: the start line names no hooks:\n{err[-2000:]}")
        counts = kinds_of_replay(os.path.join(results, f"replay-{p}.jsonl"))
        if status.get(f"replay {p}") != "0":
            fails.append(f"{cell}: replay exited {status.get(f'replay {p}')}: {read(f'replay-{p}.err')[-1000:]}")
        for k in promised:
            if k in captured and counts.get(k, 0) == 0:
                fails.append(f"{cell}: kind {k} ({doctor_hook(doctor, k)}) promised, not in the replay")
        summary = read(f"summarize-{p}.jsonl")
        if status.get(f"summarize {p}") != "0":
            fails.append(f"{cell}: summarize exited {status.get(f'summarize {p}')}: {read(f'summarize-{p}.err')[-1000:]}")
        windows = [json.loads(l) for l in summary.splitlines() if l.startswith('{"type":"window"')]
        in_windows = set()
        for w in windows:
            in_windows.update(w.get("kinds", {}).keys())
        if not windows:
            fails.append(f"{cell}: summarize wrote no window")
        for k in promised:
            if k in captured and k not in NOT_IN_WINDOWS and k not in in_windows:
                fails.append(f"{cell}: kind {k} not counted in any summary window")
        live = read(f"live-{p}.jsonl")
        if live != summary:
            fails.append(f"{cell}: engine summarize differs from the live summary stream "
                         f"({len(live)} vs {len(summary)} bytes)")
        print(f"matrix: {cell}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in promised),
              file=sys.stderr)
    return fails


def doctor_hook(doctor, kind):
    return next((k["hook"] for k in doctor.get("kinds", []) if k["kind"] == kind), "no hook")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default=os.path.join(ROOT, "target/debug/engine"))
    ap.add_argument("--kernel", action="append", help="Debian package name or pattern")
    ap.add_argument("--vmlinuz", action="append", default=[], help="a kernel image to boot")
    ap.add_argument("--modules", help="lib/modules/VERSION folder for --vmlinuz")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--no-host", action="store_true", help="skip the host kernel")
    ap.add_argument("--host-only", action="store_true", help="only the host kernel")
    ap.add_argument("--out", default=os.path.join(ROOT, "target/kernel-matrix"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per guest")
    a = ap.parse_args()
    presets = a.presets.split(",")
    if not os.access(a.engine, os.X_OK):
        raise SystemExit(f"matrix: no engine binary at {a.engine} (cargo build -p engine)")
    cache = os.path.join(a.out, "cache")
    os.makedirs(cache, exist_ok=True)
    kernels = []
    for spec in [] if a.host_only else (a.kernel or DEFAULT_KERNELS):
        name, root = resolve_package(spec, cache)
        vmlinuz = sorted(glob.glob(os.path.join(root, "boot/vmlinuz-*")))[0]
        kernels.append((name, vmlinuz, modules_dir(root)))
    for v in a.vmlinuz:
        kernels.append((os.path.basename(v), v, a.modules))
    fails = []
    cells = []
    if not a.no_host:
        work = os.path.join(a.out, "host")
        os.makedirs(work, exist_ok=True)
        console, results = run_host(a.engine, presets, work)
        name = "host " + os.uname().release
        f = check(name, console, results, presets)
        fails += f
        cells.append((name, not f))
    for name, vmlinuz, modroot in kernels:
        work = os.path.join(a.out, name)
        os.makedirs(work, exist_ok=True)
        initrd = build_initramfs(a.engine, modroot, presets, work)
        console, results = boot(name, vmlinuz, initrd, work, a.timeout)
        f = check(name, console, results, presets)
        fails += f
        cells.append((name, not f))
    print("\nkernel matrix (presets: " + ", ".join(presets) + ")")
    for name, ok in cells:
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}")
    for f in fails:
        print("FAIL " + f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
