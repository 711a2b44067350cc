//! From a cgroup v2 path to the container it belongs to: its full id (64 lowercase hex
//! characters, never cut), its runtime and its Kubernetes pod uid. A path that names no
//! container is the host's, never a guess. A pure function of the path, so replay on
//! any machine classifies exactly as the live engine did.
//!
//! The path's components are read from the deepest up; the deepest one that carries a
//! container id decides (deeper ones without an id, such as podman's nested
//! `libpod-<id>/container` or a runtime's `init` subgroup, are passed over):
//!
//! | component | runtime |
//! | --- | --- |
//! | `docker-<id>.scope`; `<id>` under `docker` | docker |
//! | `cri-containerd-<id>.scope`; `<id>` with a `kubepods*` ancestor | containerd |
//! | `crio-<id>.scope`, `crio-<id>` | cri-o |
//! | `libpod-<id>.scope`, `libpod-<id>` | podman |
//! | any other `<id>` | runc |
//! | any other `<prefix>-<id>.scope` | systemd |
//! | `crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope` (the monitor, on the host) | not a container |
//!
//! The pod uid comes from an ancestor `kubepods-<qos>-pod<uid>.slice` or
//! `kubepods-pod<uid>.slice` (systemd driver: the uid's dashes spelled `_`) or
//! `pod<uid>` (cgroupfs driver), and is given with dashes.

/// Who runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    Systemd,
    Runc,
}

impl Runtime {
    /// The stable name used in output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Systemd => "systemd",
            Runtime::Runc => "runc",
        }
    }
}

/// A container as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Container {
    /// 64 lowercase hex characters.
    pub id: String,
    pub runtime: Runtime,
    /// The Kubernetes pod uid, with dashes.
    pub pod_uid: Option<String>,
}

/// Where a cgroup is: on the host or in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    Host,
    Container(Container),
}

/// Length of a container id.
const ID_LEN: usize = 64;

fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id and runtime a single component names, if any; `parent` is the component
/// above it and `kubepods` whether some ancestor starts with `kubepods`.
fn component<'a>(c: &'a str, parent: Option<&str>, kubepods: bool) -> Option<(&'a str, Runtime)> {
    if is_id(c) {
        let runtime = if parent == Some("docker") {
            Runtime::Docker
        } else if kubepods {
            Runtime::Containerd
        } else {
            Runtime::Runc
        };
        return Some((c, runtime));
    }
    let (stem, scope) = match c.strip_suffix(".scope") {
        Some(stem) => (stem, true),
        None => (c, false),
    };
    if stem.len() <= ID_LEN + 1 {
        return None;
    }
    let (prefix, id) = stem.split_at(stem.len() - ID_LEN);
    let prefix = prefix.strip_suffix('-')?;
    if !is_id(id) {
        return None;
    }
    let runtime = match prefix {
        "crio-conmon" | "libpod-conmon" => return None,
        "docker" if scope => Runtime::Docker,
        "cri-containerd" if scope => Runtime::Containerd,
        "crio" => Runtime::CriO,
        "libpod" => Runtime::Podman,
        _ if scope => Runtime::Systemd,
        _ => return None,
    };
    Some((id, runtime))
}

/// A pod uid in a component, with dashes; `None` if the component names no pod.
fn pod_uid(c: &str) -> Option<String> {
    let raw = if let Some(stem) = c.strip_suffix(".slice") {
        // kubepods-pod<uid>.slice, kubepods-<qos>-pod<uid>.slice
        let rest = stem.strip_prefix("kubepods-")?;
        let at = rest.rfind("pod")?;
        let qos = &rest[..at];
        if !(qos.is_empty() || qos.ends_with('-')) {
            return None;
        }
        rest[at + 3..].replace('_', "-")
    } else {
        c.strip_prefix("pod")?.to_string()
    };
    let uid = raw.to_ascii_lowercase();
    let groups: Vec<&str> = uid.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    (groups.len() == shape.len()
        && groups
            .iter()
            .zip(shape)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit())))
    .then_some(uid)
}

/// See the module docs.
pub(crate) fn classify(path: &str) -> Placement {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for i in (0..parts.len()).rev() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        let kubepods = parts[..i].iter().any(|a| a.starts_with("kubepods"));
        if let Some((id, runtime)) = component(parts[i], parent, kubepods) {
            let pod_uid = parts[..i].iter().rev().find_map(|a| pod_uid(a));
            return Placement::Container(Container {
                id: id.to_string(),
                runtime,
                pod_uid,
            });
        }
    }
    Placement::Host
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const POD: &str = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
    const POD_: &str = "1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d";

    fn container(path: &str) -> (String, &'static str, Option<String>) {
        match classify(path) {
            Placement::Container(c) => (c.id, c.runtime.name(), c.pod_uid),
            Placement::Host => panic!("{path}: host"),
        }
    }

    #[test]
    fn runtimes_and_pods_from_every_shape() {
        let pod = Some(POD.to_string());
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), "docker", None),
            (format!("/docker/{ID}"), "docker", None),
            (format!("/{ID}"), "runc", None),
            (format!("/libpod_parent/libpod-{ID}"), "podman", None),
            (
                format!("/libpod_parent/libpod-{ID}/container"),
                "podman",
                None,
            ),
            (format!("/machine.slice/libpod-{ID}.scope"), "podman", None),
            (format!("/system.slice/crio-{ID}.scope"), "cri-o", None),
            (format!("/system.slice/foo-{ID}.scope"), "systemd", None),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/cri-containerd-{ID}.scope"
                ),
                "containerd",
                pod.clone(),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/crio-{ID}.scope"
                ),
                "cri-o",
                pod.clone(),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{POD_}.slice/cri-containerd-{ID}.scope"),
                "containerd",
                pod.clone(),
            ),
            (
                format!("/kubepods/burstable/pod{POD}/{ID}"),
                "containerd",
                pod.clone(),
            ),
            (
                format!("/kubepods/pod{POD}/{ID}"),
                "containerd",
                pod.clone(),
            ),
            (
                format!("/kubepods/besteffort/pod{POD}/crio-{ID}"),
                "cri-o",
                pod,
            ),
        ];
        for (path, runtime, pod) in cases {
            assert_eq!(container(&path), (ID.to_string(), runtime, pod), "{path}");
        }
    }

    #[test]
    fn the_host_and_near_misses_are_not_containers() {
        let upper = ID.to_uppercase();
        let short = &ID[1..];
        let long = format!("{ID}0");
        for path in [
            String::new(),
            "/".into(),
            "//".into(),
            "/init.scope".into(),
            "/user.slice/user-0.slice/session-3.scope".into(),
            "/system.slice/sshd.service".into(),
            "/kubepods.slice".into(),
            format!("/kubepods/burstable/pod{POD}"),
            format!("/{upper}"),
            format!("/{short}"),
            format!("/{long}"),
            format!("/docker-{short}.scope"),
            "/docker-.scope".into(),
            "/pod.slice".into(),
            format!("/system.slice/crio-conmon-{ID}.scope"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/docker-{ID}.service"),
            format!("/x/{}", "a/".repeat(5000)),
        ] {
            assert_eq!(classify(&path), Placement::Host, "{path}");
        }
    }

    #[test]
    fn the_deepest_id_decides_and_bad_pod_uids_are_left_out() {
        let other = "f".repeat(64);
        assert_eq!(
            container(&format!("/docker/{other}/{ID}")).0,
            ID,
            "the deepest id"
        );
        assert_eq!(
            container(&format!("/{ID}/")),
            (ID.to_string(), "runc", None),
            "a trailing slash"
        );
        assert_eq!(
            container(&format!("/kubepods/burstable/podnot-a-uid/{ID}")).2,
            None
        );
        assert_eq!(
            container(&format!(
                "/kubepods/burstable/pod{}/{ID}",
                POD.to_uppercase()
            ))
            .2,
            Some(POD.to_string())
        );
    }
}
