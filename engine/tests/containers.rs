//! Container attribution with real runtimes from the Debian archive (nothing pulled: a
//! busybox rootfs) and with cgroups made in the exact path shapes of docker, cri-o and
//! kubelet: the events of the processes inside carry the container's full id, its
//! runtime and its pod uid; the host's own events say "host".

use std::process::Command;

use serde_json::Value;

mod common;

use common::runtimes::{
    CgroupPath, busybox_rootfs, container_id, podman_image, podman_run, runc_run,
};
use common::{
    ENRICH_CONFIG, KillOnDrop, data_dir_and_config, privileged, replay_json, start_engine,
    stop_engine,
};

const POD: &str = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";

/// What one case expects of the exec whose argv holds its token.
struct Case {
    name: &'static str,
    token: String,
    id: String,
    runtime: &'static str,
    pod: Option<&'static str>,
}

#[test]
fn containers_of_every_runtime_and_shape_are_named_with_full_id_runtime_and_pod() {
    if !privileged("containers_of_every_runtime_and_shape_are_named_with_full_id_runtime_and_pod") {
        return;
    }
    let (dir, cfg) = data_dir_and_config("containers", ENRICH_CONFIG);
    let work = std::env::temp_dir().join(format!("containers-work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let rootfs = busybox_rootfs(&work);
    let image = podman_image(&rootfs);
    let tag = |name: &str| format!("kev-{name}-{}", std::process::id());

    let (engine, lines) = start_engine(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());
    let mut cases = Vec::new();

    // runc with its cgroupfs default: /<id>.
    let id = container_id("runc");
    let token = tag("runc");
    runc_run(
        &work,
        &id,
        None,
        &["/bin/sh", "-c", &format!("echo {token} >/dev/null")],
    );
    cases.push(Case {
        name: "runc at /<id>",
        token,
        id,
        runtime: "runc",
        pod: None,
    });

    // runc placed at a kubelet pod slice (systemd driver shape) as containerd would be.
    let id = container_id("runc-kube");
    let token = tag("runc-kube");
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
        POD.replace('-', "_")
    );
    let _slices = CgroupPath::adopt(&path);
    runc_run(
        &work,
        &id,
        Some(&path),
        &["/bin/sh", "-c", &format!("echo {token} >/dev/null")],
    );
    cases.push(Case {
        name: "runc in a kubelet pod slice",
        token,
        id,
        runtime: "containerd",
        pod: Some(POD),
    });

    // podman: /libpod_parent/libpod-<id>.
    let token = tag("podman");
    let id = podman_run(
        image,
        &["/bin/sh", "-c", &format!("echo {token} >/dev/null")],
    );
    assert_eq!(id.len(), 64, "podman's id: {id}");
    cases.push(Case {
        name: "podman",
        token,
        id,
        runtime: "podman",
        pod: None,
    });

    // Plain cgroups in the shapes of docker, cri-o under a pod slice, and kubelet's
    // cgroupfs driver.
    for (name, runtime, pod, shape) in [
        (
            "docker scope",
            "docker",
            None,
            "/system.slice/docker-{id}.scope",
        ),
        (
            "cri-o in a besteffort pod slice",
            "cri-o",
            Some(POD),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/crio-{id}.scope",
        ),
        (
            "kubelet cgroupfs driver",
            "containerd",
            Some(POD),
            "/kubepods/burstable/pod{pod}/{id}",
        ),
    ] {
        let id = container_id(name);
        let token = tag(&name.replace(' ', "-"));
        let path = shape
            .replace("{id}", &id)
            .replace("{pod_}", &POD.replace('-', "_"))
            .replace("{pod}", POD);
        let cg = CgroupPath::make(&path);
        cg.run(&format!("exec /bin/sh -c 'echo {token} >/dev/null'"), &[]);
        drop(cg);
        cases.push(Case {
            name,
            token,
            id,
            runtime,
            pod,
        });
    }
    // A host process.
    let host_token = tag("host");
    assert!(
        Command::new("/bin/sh")
            .args(["-c", &format!("echo {host_token} >/dev/null")])
            .status()
            .unwrap()
            .success()
    );

    stop_engine(engine, lines);
    let events: Vec<Value> = replay_json(&dir, &["--kind", "process.exec"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The last exec naming the token is the innermost one: for podman and the plain
    // cgroups, the command that started the container names it too, from the host.
    let exec_of = |token: &str| -> &Value {
        events
            .iter()
            .rfind(|e| {
                e["argv"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x.as_str().is_some_and(|s| s.contains(token)))
                })
            })
            .unwrap_or_else(|| panic!("no exec with {token} in its argv"))
    };
    let mut failures = Vec::new();
    for c in &cases {
        let e = exec_of(&c.token);
        let got = &e["container"];
        let want_pod = c.pod.map_or(Value::Null, Value::from);
        if got["id"] != c.id.as_str() || got["runtime"] != c.runtime || got["pod_uid"] != want_pod {
            failures.push(format!(
                "{}: expected id {} runtime {} pod {:?}, got {got} (cgroup_id {})",
                c.name, c.id, c.runtime, c.pod, e["cgroup_id"]
            ));
        }
    }
    let host = exec_of(&host_token);
    if host["container"] != serde_json::json!({"id": "host"}) {
        failures.push(format!("host: got {}", host["container"]));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&dir);
}
