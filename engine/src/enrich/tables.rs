//! The process and cgroup tables as a reader of the stream rebuilds them, and what they
//! say about one event. Replay builds them from the enrichment records alone; the live
//! tracker ([`super::tracker`]) keeps the same tables and writes those records.

use std::sync::Arc;

use bpf::abi::EventHeader;

use super::container::{Placement, classify};
use super::record::{Cgroup, KIND_CGROUP, KIND_PROCESS, Op, Process, RecordError};
use super::table::Bounded;
use crate::semantic::partial::FoldMap;

/// Ancestors named on an event (parent first).
pub(crate) const ANCESTORS_MAX: usize = 4;
/// Distinct user and group names kept (each).
const NAMES_MAX: usize = 65_536;
/// Entries a reader keeps at most, whatever the writer's bound was: the writer's own
/// evictions arrive as forget records, so this only bounds hostile input.
pub(crate) const READER_PROCESSES_MAX: usize = 1 << 20;
pub(crate) const READER_CGROUPS_MAX: usize = 1 << 18;

/// A cgroup and what its path says.
#[derive(Debug, Clone)]
pub(crate) struct CgroupEntry {
    pub cgroup: Cgroup,
    pub placement: Placement,
}

/// What is known of an event's process, its ancestry, its user and its container.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Enrichment<'a> {
    /// The process's executable (absolute).
    pub exe: Option<&'a str>,
    /// Parent first: pid and executable (`None` when the ancestor's entry is unknown;
    /// the chain stops there).
    pub ancestors: [(u32, Option<&'a str>); ANCESTORS_MAX],
    pub ancestors_len: usize,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub container: Option<&'a Placement>,
}

impl<'a> Enrichment<'a> {
    pub(crate) fn ancestors(&self) -> &[(u32, Option<&'a str>)] {
        &self.ancestors[..self.ancestors_len]
    }
}

/// The two tables and the user and group names seen in process records.
#[derive(Debug)]
pub(crate) struct Tables {
    processes: Bounded<u32, Process>,
    cgroups: Bounded<u64, CgroupEntry>,
    users: FoldMap<u32, Arc<str>>,
    groups: FoldMap<u32, Arc<str>>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl Tables {
    pub(crate) fn new(processes_max: usize, cgroups_max: usize) -> Tables {
        Tables {
            processes: Bounded::new(processes_max),
            cgroups: Bounded::new(cgroups_max),
            users: FoldMap::default(),
            groups: FoldMap::default(),
        }
    }

    /// Tables for a reader (bounds against hostile input only).
    pub(crate) fn for_reader() -> Tables {
        Tables::new(READER_PROCESSES_MAX, READER_CGROUPS_MAX)
    }

    /// Applies one stored record of kind [`KIND_PROCESS`] or [`KIND_CGROUP`]; other
    /// kinds are not enrichment records (false).
    pub(crate) fn apply_record(&mut self, kind: u16, bytes: &[u8]) -> Result<bool, RecordError> {
        match kind {
            KIND_PROCESS => {
                let (op, p) = Process::decode(bytes)?;
                self.apply_process(op, p);
            }
            KIND_CGROUP => {
                let (op, c) = Cgroup::decode(bytes)?;
                self.apply_cgroup(op, c);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Upsert or forget; returns the entry evicted to make room, if any.
    pub(crate) fn apply_process(&mut self, op: Op, p: Process) -> Option<Process> {
        match op {
            Op::Upsert => {
                remember(&mut self.users, p.uid, &p.user);
                remember(&mut self.groups, p.gid, &p.group);
                self.processes
                    .insert(p.pid, p.start_ns, p.exit_ns, p)
                    .map(|(_, v)| v)
            }
            Op::Reset => {
                let (pm, cm) = (self.processes.limit(), self.cgroups.limit());
                self.processes = Bounded::new(pm);
                self.cgroups = Bounded::new(cm);
                None
            }
            Op::Forget => {
                // Only the same process: a reused pid's new entry stays.
                if self
                    .processes
                    .get(&p.pid)
                    .is_some_and(|old| old.start_ns == p.start_ns)
                {
                    self.processes.remove(&p.pid);
                }
                None
            }
        }
    }

    /// Upsert or forget; returns the entry evicted to make room, if any.
    pub(crate) fn apply_cgroup(&mut self, op: Op, c: Cgroup) -> Option<Cgroup> {
        match op {
            Op::Upsert => {
                let placement = classify(&c.path);
                let (id, removed) = (c.id, c.removed_ns);
                self.cgroups
                    .insert(
                        id,
                        0,
                        removed,
                        CgroupEntry {
                            cgroup: c,
                            placement,
                        },
                    )
                    .map(|(_, e)| e.cgroup)
            }
            Op::Forget => {
                self.cgroups.remove(&c.id);
                None
            }
            // Not a cgroup record's op (refused when decoding).
            Op::Reset => None,
        }
    }

    pub(crate) fn process(&self, pid: u32) -> Option<&Process> {
        self.processes.get(&pid)
    }

    pub(crate) fn cgroup(&self, id: u64) -> Option<&CgroupEntry> {
        self.cgroups.get(&id)
    }

    pub(crate) fn processes(&self) -> &Bounded<u32, Process> {
        &self.processes
    }

    pub(crate) fn cgroups(&self) -> &Bounded<u64, CgroupEntry> {
        &self.cgroups
    }

    /// What the tables say about the event with header `h`.
    pub(crate) fn lookup(&self, h: &EventHeader) -> Enrichment<'_> {
        let mut e = Enrichment {
            user: self.users.get(&h.uid).map(|s| &**s),
            group: self.groups.get(&h.gid).map(|s| &**s),
            container: self.cgroups.get(&h.cgroup_id).map(|c| &c.placement),
            ..Enrichment::default()
        };
        let Some(mut p) = self.processes.get(&h.pid) else {
            return e;
        };
        e.exe = non_empty(&p.exe);
        while e.ancestors_len < ANCESTORS_MAX && p.ppid != 0 && p.ppid != p.pid {
            let parent = self
                .processes
                .get(&p.ppid)
                // A parent entry that started after the child's parent did is a reused
                // pid, not the parent.
                .filter(|q| p.parent_start_ns == 0 || q.start_ns == p.parent_start_ns);
            e.ancestors[e.ancestors_len] = (p.ppid, parent.and_then(|q| non_empty(&q.exe)));
            e.ancestors_len += 1;
            match parent {
                Some(q) => p = q,
                None => break,
            }
        }
        e
    }
}

fn remember(names: &mut FoldMap<u32, Arc<str>>, id: u32, name: &Arc<str>) {
    if name.is_empty() || names.get(&id).is_some_and(|n| n == name) {
        return;
    }
    if names.len() < NAMES_MAX || names.contains_key(&id) {
        names.insert(id, name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ppid: u32, start: u64, parent_start: u64, exe: &str) -> Process {
        Process {
            pid,
            ppid,
            start_ns: start,
            parent_start_ns: parent_start,
            exe: exe.into(),
            user: "root".into(),
            ..Process::default()
        }
    }

    fn header(pid: u32, cgroup_id: u64) -> EventHeader {
        EventHeader {
            pid,
            cgroup_id,
            ..bytemuck::Zeroable::zeroed()
        }
    }

    #[test]
    fn ancestry_stops_at_a_reused_pid_and_at_the_bound() {
        let mut t = Tables::new(100, 100);
        t.apply_process(Op::Upsert, proc(1, 0, 1, 0, "/sbin/init"));
        t.apply_process(Op::Upsert, proc(10, 1, 10, 1, "/bin/sh"));
        t.apply_process(Op::Upsert, proc(20, 10, 20, 10, "/bin/sleep"));
        let e = t.lookup(&header(20, 0));
        assert_eq!(e.exe, Some("/bin/sleep"));
        assert_eq!(
            e.ancestors(),
            &[(10, Some("/bin/sh")), (1, Some("/sbin/init"))]
        );
        assert_eq!(e.user, Some("root"));
        // pid 10 exits and is reused by another process: 20's parent is unknown now.
        t.apply_process(Op::Upsert, proc(10, 1, 30, 1, "/bin/other"));
        assert_eq!(t.lookup(&header(20, 0)).ancestors(), &[(10, None)]);
        // A forget of the old pid 10 does not drop the new one.
        t.apply_process(Op::Forget, proc(10, 0, 10, 0, ""));
        assert_eq!(t.process(10).map(|p| &*p.exe), Some("/bin/other"));
        // A long chain is cut at ANCESTORS_MAX.
        for pid in 100..110 {
            t.apply_process(Op::Upsert, proc(pid + 1, pid, 0, 0, "/x"));
        }
        assert_eq!(t.lookup(&header(110, 0)).ancestors().len(), ANCESTORS_MAX);
        // A reset drops everything (a snapshot follows it).
        let mut buf = Vec::new();
        Process::default().encode(Op::Reset, &mut buf);
        assert_eq!(t.apply_record(KIND_PROCESS, &buf), Ok(true));
        assert!(t.process(1).is_none() && t.processes().len() == 0);
        // A cycle (hostile input) ends at the bound too.
        t.apply_process(Op::Upsert, proc(200, 201, 0, 0, "/a"));
        t.apply_process(Op::Upsert, proc(201, 200, 0, 0, "/b"));
        assert_eq!(t.lookup(&header(200, 0)).ancestors().len(), ANCESTORS_MAX);
    }

    /// What the docs say an entry costs: about 0.5 KiB for a process with typical
    /// strings (its own exe, argv and cwd, as after an exec).
    #[test]
    fn a_process_entry_costs_about_half_a_kibibyte() {
        let n = 20_000u32;
        let before = crate::test_alloc::live_bytes();
        let mut t = Tables::new(n as usize, 16);
        for pid in 1..=n {
            let mut p = proc(pid, 1, u64::from(pid), 1, &format!("/usr/bin/prog{pid}"));
            p.argv = format!("prog{pid}\0--config\0/etc/prog/prog.conf\0-v").into();
            p.cwd = format!("/var/lib/prog/{pid}").into();
            p.comm = "prog".into();
            t.apply_process(Op::Upsert, p);
        }
        let per_entry = (crate::test_alloc::live_bytes() - before) / i64::from(n);
        assert!(
            (200..=640).contains(&per_entry),
            "{per_entry} bytes per process entry"
        );
        drop(t);
    }

    /// What the docs say a cgroup entry costs: about 0.5 KiB for a container's in a
    /// kubelet pod slice (its long path, id and pod uid), less for the host's.
    #[test]
    fn a_container_cgroup_entry_costs_about_half_a_kibibyte() {
        let n = 20_000u64;
        let before = crate::test_alloc::live_bytes();
        let mut t = Tables::new(16, n as usize);
        for i in 0..n {
            let id = format!("{i:064x}");
            t.apply_cgroup(
                Op::Upsert,
                Cgroup {
                    id: i,
                    removed_ns: 0,
                    path: format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/cri-containerd-{id}.scope"
                    )
                    .into(),
                },
            );
        }
        let per_entry = (crate::test_alloc::live_bytes() - before) / n as i64;
        assert!(
            (300..=700).contains(&per_entry),
            "{per_entry} bytes per container cgroup entry"
        );
        drop(t);
    }

    #[test]
    fn containers_come_from_the_cgroup_path() {
        let mut t = Tables::new(10, 10);
        let id = "a".repeat(64);
        t.apply_cgroup(
            Op::Upsert,
            Cgroup {
                id: 5,
                removed_ns: 0,
                path: format!("/system.slice/docker-{id}.scope").into(),
            },
        );
        t.apply_cgroup(
            Op::Upsert,
            Cgroup {
                id: 6,
                removed_ns: 0,
                path: "/user.slice".into(),
            },
        );
        match t.lookup(&header(1, 5)).container {
            Some(Placement::Container(c)) => assert_eq!(c.id, id),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.lookup(&header(1, 6)).container, Some(&Placement::Host));
        assert_eq!(t.lookup(&header(1, 7)).container, None);
        let mut buf = Vec::new();
        Cgroup {
            id: 6,
            ..Cgroup::default()
        }
        .encode(Op::Forget, &mut buf);
        assert_eq!(t.apply_record(KIND_CGROUP, &buf), Ok(true));
        assert_eq!(t.lookup(&header(1, 6)).container, None);
        assert_eq!(t.apply_record(5, &buf), Ok(false));
    }
}
