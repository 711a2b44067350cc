#!/usr/bin/env python3
"""Reads deploy/daemonset.yaml, checks what a node agent's manifest must have, and prints
(as JSON) the podman run arguments that run its engine container as the kubelet would:
its user, capabilities, seccomp profile, host PID namespace and network, read-only root,
memory limit, host paths, and args. Exit 1 with the reasons when the manifest lacks
something.

    daemonset_podman.py MANIFEST IMAGE DATA_DIR
"""
import json
import sys

import yaml

manifest, image, data_dir = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
ds = [d for d in docs if d.get("kind") == "DaemonSet"]
problems = []
if len(ds) != 1:
    sys.exit(f"{manifest}: expected one DaemonSet, found {len(ds)}")
ds = ds[0]
if ds.get("apiVersion") != "apps/v1":
    problems.append("apiVersion is not apps/v1")
spec = ds["spec"]
pod = spec["template"]["spec"]
if spec["selector"]["matchLabels"].items() > spec["template"]["metadata"]["labels"].items():
    problems.append("the selector does not match the template's labels")
engine = [c for c in pod["containers"] if c["name"] == "engine"]
if len(engine) != 1:
    sys.exit(f"{manifest}: no container named engine")
c = engine[0]
sc = c.get("securityContext", {})
if sc.get("privileged", False):
    problems.append("the engine must not be privileged")
caps = sc.get("capabilities", {})
if caps.get("drop") != ["ALL"]:
    problems.append("capabilities.drop must be [ALL]")
want = {"BPF", "PERFMON", "DAC_READ_SEARCH", "SYS_PTRACE"}
if set(caps.get("add", [])) != want:
    problems.append(f"capabilities.add must be exactly {sorted(want)}, is {caps.get('add')}")
if not pod.get("hostPID"):
    problems.append("hostPID must be true (events carry host pids; /proc as the host's)")
if sc.get("runAsUser", 0) == 0 or not sc.get("runAsNonRoot"):
    problems.append("the engine must run as a non-root user")
if sc.get("allowPrivilegeEscalation", True):
    problems.append("allowPrivilegeEscalation must be false")
limits = c.get("resources", {}).get("limits", {})
if "memory" not in limits or "cpu" not in limits:
    problems.append("resources.limits must set memory and cpu")
volumes = {v["name"]: v for v in pod.get("volumes", [])}
mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
need = {"/sys/kernel/btf": True, "/sys/fs/cgroup": True, "/sys/kernel/tracing": True,
        "/var/lib/kevent": False}
for path, ro in need.items():
    m = mounts.get(path)
    if not m:
        problems.append(f"no volumeMount at {path}")
        continue
    host = volumes.get(m["name"], {}).get("hostPath", {}).get("path")
    if host != path:
        problems.append(f"{path} is not the host's {path} (hostPath {host})")
    if bool(m.get("readOnly", False)) != ro:
        problems.append(f"{path}: readOnly should be {ro}")
if problems:
    sys.exit("\n".join(f"{manifest}: {p}" for p in problems))


def quantity(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for u, n in units.items():
        if str(q).endswith(u):
            return int(str(q)[: -len(u)]) * n
    return int(q)


args = ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}",
        "--cap-drop", "all", "--cap-add", ",".join(c.lower() for c in caps["add"]),
        "--pid", "host", "--cgroupns", "host",
        "--memory", str(quantity(limits["memory"])), "--cpus", str(limits["cpu"])]
if pod.get("hostNetwork"):
    args += ["--network", "host"]
if sc.get("readOnlyRootFilesystem"):
    args.append("--read-only")
if sc.get("seccompProfile", {}).get("type") == "Unconfined":
    args += ["--security-opt", "seccomp=unconfined"]
if not sc.get("allowPrivilegeEscalation", True):
    args += ["--security-opt", "no-new-privileges"]
for path, m in mounts.items():
    host = data_dir if path == "/var/lib/kevent" else volumes[m["name"]]["hostPath"]["path"]
    args += ["-v", f"{host}:{path}" + (":ro" if m.get("readOnly") else "")]
args.append(image)
args += c.get("args", [])
print(json.dumps(args))
