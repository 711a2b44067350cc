//! The live side: turns kernel lifecycle events (exec, fork, exit, cgroup mkdir and
//! rmdir) and the `/proc` and cgroup2 scans into table updates, applies them to its own
//! [`Tables`], and queues each update as a record to write, so a reader that applies
//! the same records rebuilds the same tables.

use std::path::PathBuf;
use std::sync::Arc;

use bpf::abi::{FLAG_TRUNCATED as EVF_TRUNCATED, str_bytes};
use bpf::{Event, Payload};

use super::record::{Cgroup, FLAG_FROM_PROC, FLAG_TRUNCATED, Op, Process};
use super::scan::{list_pids, read_process, scan_cgroups};
use super::tables::Tables;
use super::users::Names;

/// `hierarchy_id` of the cgroup v2 hierarchy in cgroup events (the default root is
/// the first hierarchy the kernel sets up); v1 hierarchies have other ids.
pub(crate) const CGROUP2_HIERARCHY_ID: u32 = 0;

/// One table update, to apply and to write.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    Process(Op, Process),
    Cgroup(Op, Cgroup),
}

/// Where the live sources are (tests point them elsewhere).
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// `/proc`.
    pub proc: Option<PathBuf>,
    /// The cgroup2 mount.
    pub cgroup2: Option<PathBuf>,
    /// The root holding `etc/passwd` and `etc/group`.
    pub etc_root: PathBuf,
}

impl Sources {
    /// This host's.
    pub(crate) fn host() -> Sources {
        Sources {
            proc: Some(PathBuf::from("/proc")),
            cgroup2: super::scan::cgroup2_mount(),
            etc_root: PathBuf::from("/"),
        }
    }
}

/// What the tracker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TrackerStats {
    /// Entries dropped to make room in a full table.
    pub processes_evicted: u64,
    pub cgroups_evicted: u64,
    /// Processes read from `/proc` after the start scan (a parent the table did not
    /// know).
    pub proc_lookups: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub tables: Tables,
    names: Names,
    sources: Sources,
    grace_ns: u64,
    updates: Vec<(u64, Update)>,
    pub stats: TrackerStats,
    /// Pids `/proc` did not have when looked up ([`Tracker::ensure`]).
    missing: std::collections::HashSet<u32>,
}

/// Unknown pids remembered at most (then the set starts over).
const MISSING_MAX: usize = 65_536;

fn lossy(b: &[u8]) -> Arc<str> {
    Arc::from(String::from_utf8_lossy(b).as_ref())
}

impl Tracker {
    /// Tables bounded at `processes_max` and `cgroups_max` entries; exited processes and
    /// removed cgroups are forgotten `grace_ns` after they went.
    pub(crate) fn new(
        processes_max: usize,
        cgroups_max: usize,
        grace_ns: u64,
        sources: Sources,
    ) -> Tracker {
        Tracker {
            tables: Tables::new(processes_max, cgroups_max),
            names: Names::load(&sources.etc_root),
            sources,
            grace_ns,
            updates: Vec::new(),
            stats: TrackerStats::default(),
            missing: std::collections::HashSet::new(),
        }
    }

    /// Updates queued since the last call, in the order they were applied.
    pub(crate) fn take_updates(&mut self) -> std::vec::Drain<'_, (u64, Update)> {
        self.updates.drain(..)
    }

    /// Queued updates not yet taken.
    pub(crate) fn pending_updates(&self) -> usize {
        self.updates.len()
    }

    fn process(&mut self, ts: u64, p: Process) {
        if let Some(old) = self.tables.apply_process(Op::Upsert, p.clone()) {
            self.stats.processes_evicted += 1;
            self.updates
                .push((ts, Update::Process(Op::Forget, forget_process(&old))));
        }
        self.updates.push((ts, Update::Process(Op::Upsert, p)));
    }

    fn cgroup(&mut self, ts: u64, c: Cgroup) {
        if let Some(old) = self.tables.apply_cgroup(Op::Upsert, c.clone()) {
            self.stats.cgroups_evicted += 1;
            self.updates
                .push((ts, Update::Cgroup(Op::Forget, forget_cgroup(&old))));
        }
        self.updates.push((ts, Update::Cgroup(Op::Upsert, c)));
    }

    /// Reads every cgroup and process there is now, stamping the updates `ts`; they
    /// start with a reset (a reader forgets what an earlier run left).
    pub(crate) fn scan(&mut self, ts: u64) {
        self.updates
            .push((ts, Update::Process(Op::Reset, Process::default())));
        if let Some(root) = self.sources.cgroup2.clone() {
            let limit = self.tables.cgroups().limit();
            let mut found = Vec::new();
            scan_cgroups(&root, limit, |c| found.push(c));
            for c in found {
                self.cgroup(ts, c);
            }
        }
        let Some(proc) = self.sources.proc.clone() else {
            return;
        };
        let mut found: Vec<Process> = list_pids(&proc)
            .into_iter()
            .filter_map(|pid| {
                read_process(&proc, pid, self.sources.cgroup2.as_deref(), &self.names)
            })
            .collect();
        let starts: std::collections::HashMap<u32, u64> =
            found.iter().map(|p| (p.pid, p.start_ns)).collect();
        for p in &mut found {
            p.parent_start_ns = starts.get(&p.ppid).copied().unwrap_or(0);
        }
        // Parents first (lower start), so a full table keeps the oldest.
        found.sort_by_key(|p| (p.start_ns, p.pid));
        for p in found {
            self.process(ts, p);
        }
    }

    /// Adds the cgroups under the cgroup2 mount that the table does not know (missed
    /// mkdir events: the container category off, a kernel cgroup filter, a full queue),
    /// stamped `ts`. Returns how many were added.
    pub(crate) fn rescan_cgroups(&mut self, ts: u64) -> usize {
        let Some(root) = self.sources.cgroup2.clone() else {
            return 0;
        };
        let mut found = Vec::new();
        let limit = self.tables.cgroups().limit();
        scan_cgroups(&root, limit, |c| found.push(c));
        // Only into free room: a rescan never evicts (a full table would churn).
        let room = limit - self.tables.cgroups().len();
        let mut added = 0;
        for c in found {
            if added >= room {
                break;
            }
            if self.tables.cgroup(c.id).is_none() {
                self.cgroup(ts, c);
                added += 1;
            }
        }
        added
    }

    /// Adds the processes in `/proc` that the table does not know (missed forks: the
    /// process category off, a kernel pid filter, a full queue), stamped `ts`, as long
    /// as the table has room.
    pub(crate) fn rescan_processes(&mut self, ts: u64) -> usize {
        let Some(proc) = self.sources.proc.clone() else {
            return 0;
        };
        // Only into free room: a rescan never evicts (a full table would churn).
        let room = self.tables.processes().limit() - self.tables.processes().len();
        let mut added = 0;
        for pid in list_pids(&proc) {
            if added >= room {
                break;
            }
            if self.tables.process(pid).is_none() && self.look_up(ts, pid).is_some() {
                added += 1;
            }
        }
        added
    }

    /// A process the table does not know, read from `/proc` now (live only).
    fn look_up(&mut self, ts: u64, pid: u32) -> Option<Process> {
        let proc = self.sources.proc.as_deref()?;
        let mut p = read_process(proc, pid, self.sources.cgroup2.as_deref(), &self.names)?;
        self.stats.proc_lookups += 1;
        p.parent_start_ns = self.tables.process(p.ppid).map_or(0, |q| q.start_ns);
        self.process(ts, p.clone());
        Some(p)
    }

    /// Live: makes sure process `pid` is in the table, reading `/proc` when it is not
    /// (once per unknown pid until it is forgotten: a pid `/proc` does not have is
    /// remembered as unknown).
    pub(crate) fn ensure(&mut self, pid: u32, ts: u64) {
        if pid == 0 || self.tables.process(pid).is_some() || !self.missing.insert(pid) {
            return;
        }
        if self.missing.len() > MISSING_MAX {
            self.missing.clear();
        }
        if self.look_up(ts, pid).is_some() {
            self.missing.remove(&pid);
        }
    }

    /// Applies a kernel event; kinds that change no table are ignored.
    pub(crate) fn event(&mut self, ev: &Event<'_>) {
        let h = ev.header;
        let ts = h.ts_ns;
        let truncated = if h.flags & EVF_TRUNCATED != 0 {
            FLAG_TRUNCATED
        } else {
            0
        };
        match ev.payload {
            Payload::ProcessExec(x) => {
                let old = self
                    .tables
                    .process(h.pid)
                    .filter(|p| p.exit_ns == 0)
                    .cloned();
                let mut p = old.unwrap_or_else(|| Process {
                    pid: h.pid,
                    start_ns: ts,
                    ..Process::default()
                });
                if p.ppid != x.ppid || p.parent_start_ns == 0 {
                    p.parent_start_ns = self.tables.process(x.ppid).map_or(0, |q| q.start_ns);
                }
                p.ppid = x.ppid;
                p.uid = h.uid;
                p.gid = h.gid;
                p.euid = x.euid;
                p.egid = x.egid;
                p.cgroup_id = h.cgroup_id;
                p.flags = (p.flags & !(FLAG_FROM_PROC | FLAG_TRUNCATED)) | truncated;
                p.comm = lossy(bpf::abi::cstr_bytes(&h.comm));
                p.exe = lossy(str_bytes(&x.exe, x.exe_len));
                p.argv = lossy(str_bytes(&x.argv, x.argv_len));
                if x.cwd_len > 0 {
                    p.cwd = lossy(str_bytes(&x.cwd, x.cwd_len));
                }
                p.user = self.names.user(h.uid);
                p.group = self.names.group(h.gid);
                self.process(ts, p);
            }
            Payload::ProcessFork(f) if f.is_thread == 0 => {
                let parent = match self.tables.process(f.parent_pid) {
                    Some(p) => Some(p.clone()),
                    None => self.look_up(ts, f.parent_pid),
                };
                let mut child = match parent {
                    Some(p) => Process {
                        pid: f.child_pid,
                        ppid: f.parent_pid,
                        start_ns: ts,
                        parent_start_ns: p.start_ns,
                        exit_ns: 0,
                        flags: p.flags & !FLAG_FROM_PROC,
                        ..p
                    },
                    None => Process {
                        pid: f.child_pid,
                        ppid: f.parent_pid,
                        start_ns: ts,
                        uid: h.uid,
                        gid: h.gid,
                        comm: lossy(bpf::abi::cstr_bytes(&h.comm)),
                        user: self.names.user(h.uid),
                        group: self.names.group(h.gid),
                        ..Process::default()
                    },
                };
                child.cgroup_id = h.cgroup_id;
                self.process(ts, child);
            }
            Payload::ProcessExit(x) => {
                let mut p = match self.tables.process(h.pid).filter(|p| p.exit_ns == 0) {
                    Some(p) => p.clone(),
                    None => Process {
                        pid: h.pid,
                        start_ns: ts.saturating_sub(x.lifetime_ns),
                        uid: h.uid,
                        gid: h.gid,
                        cgroup_id: h.cgroup_id,
                        comm: lossy(bpf::abi::cstr_bytes(&h.comm)),
                        user: self.names.user(h.uid),
                        group: self.names.group(h.gid),
                        ..Process::default()
                    },
                };
                p.exit_ns = ts.max(1);
                self.process(ts, p);
            }
            Payload::Cgroup(c) if c.hierarchy_id == CGROUP2_HIERARCHY_ID => {
                let path = lossy(str_bytes(&c.path, c.path_len));
                match ev.kind {
                    bpf::Kind::ContainerCgroupMkdir => self.cgroup(
                        ts,
                        Cgroup {
                            id: c.cgroup_id,
                            removed_ns: 0,
                            path,
                        },
                    ),
                    bpf::Kind::ContainerCgroupRmdir => self.cgroup(
                        ts,
                        Cgroup {
                            id: c.cgroup_id,
                            removed_ns: ts.max(1),
                            path,
                        },
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Forgets what exited or was removed more than the grace period before `now_ns`
    /// (the forget records are stamped `now_ns`), and re-reads the user and group
    /// names if their files changed.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        self.names.refresh();
        let cutoff = now_ns.saturating_sub(self.grace_ns);
        let gone: Vec<u32> = self.tables.processes().retired_before(cutoff).collect();
        for pid in gone {
            if let Some(p) = self.tables.process(pid).map(forget_process) {
                self.tables.apply_process(Op::Forget, p.clone());
                self.updates.push((now_ns, Update::Process(Op::Forget, p)));
            }
        }
        let gone: Vec<u64> = self.tables.cgroups().retired_before(cutoff).collect();
        for id in gone {
            if let Some(c) = self.tables.cgroup(id).map(|e| forget_cgroup(&e.cgroup)) {
                self.tables.apply_cgroup(Op::Forget, c.clone());
                self.updates.push((now_ns, Update::Cgroup(Op::Forget, c)));
            }
        }
    }

    /// A reset, then every entry as an upsert (cgroups, then processes, each in key
    /// order): what a reader starting here needs, and all it keeps.
    pub(crate) fn snapshot(&self) -> Vec<Update> {
        let mut out = vec![Update::Process(Op::Reset, Process::default())];
        out.extend(
            self.tables
                .cgroups()
                .sorted()
                .into_iter()
                .map(|(_, e)| Update::Cgroup(Op::Upsert, e.cgroup.clone())),
        );
        out.extend(
            self.tables
                .processes()
                .sorted()
                .into_iter()
                .map(|(_, p)| Update::Process(Op::Upsert, p.clone())),
        );
        out
    }
}

/// A forget record needs only the key (pid and start).
fn forget_process(p: &Process) -> Process {
    Process {
        pid: p.pid,
        start_ns: p.start_ns,
        ..Process::default()
    }
}

fn forget_cgroup(c: &Cgroup) -> Cgroup {
    Cgroup {
        id: c.id,
        ..Cgroup::default()
    }
}

#[cfg(test)]
mod tests {
    use bpf::Kind;
    use bpf::abi::{EventHeader, ProcessExec, ProcessExit, ProcessFork};

    use super::*;

    /// A record of `kind` by `pid` at `ts`, its payload set by `fill`.
    fn record<P: bytemuck::Pod>(
        kind: Kind,
        pid: u32,
        ts: u64,
        fill: impl FnOnce(&mut P),
    ) -> Vec<u64> {
        let len = kind.record_len();
        let mut words = vec![0u64; len / 8];
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let (head, body) = b.split_at_mut(size_of::<EventHeader>());
        let h: &mut EventHeader = bytemuck::from_bytes_mut(head);
        h.ts_ns = ts;
        h.kind = kind as u16;
        h.len = len as u32;
        h.pid = pid;
        h.tid = pid;
        h.comm[..4].copy_from_slice(b"test");
        fill(bytemuck::from_bytes_mut(body));
        words
    }

    fn apply(t: &mut Tracker, words: &[u64]) {
        let ev = bpf::decode(bytemuck::cast_slice(words)).expect("decodes");
        t.event(&ev);
    }

    fn fork(t: &mut Tracker, parent: u32, child: u32, ts: u64) {
        apply(
            t,
            &record(Kind::ProcessFork, parent, ts, |f: &mut ProcessFork| {
                f.parent_pid = parent;
                f.child_pid = child;
                f.child_tid = child;
            }),
        );
    }

    fn exec(t: &mut Tracker, pid: u32, ppid: u32, ts: u64, exe: &str) {
        apply(
            t,
            &record(Kind::ProcessExec, pid, ts, |x: &mut ProcessExec| {
                x.ppid = ppid;
                x.exe[..exe.len()].copy_from_slice(exe.as_bytes());
                x.exe_len = exe.len() as u32;
                x.cwd[..4].copy_from_slice(b"/srv");
                x.cwd_len = 4;
            }),
        );
    }

    fn offline(processes_max: usize) -> Tracker {
        Tracker::new(
            processes_max,
            16,
            1_000,
            Sources {
                proc: None,
                cgroup2: None,
                etc_root: PathBuf::from("/nonexistent"),
            },
        )
    }

    /// A reader applying every update the tracker queued holds the same tables.
    fn replayed(t: &mut Tracker) -> Tables {
        let mut r = Tables::for_reader();
        for (_, u) in t.take_updates() {
            match u {
                Update::Process(op, p) => {
                    r.apply_process(op, p);
                }
                Update::Cgroup(op, c) => {
                    r.apply_cgroup(op, c);
                }
            }
        }
        r
    }

    #[test]
    fn fork_exec_exit_and_expiry_as_a_reader_sees_them() {
        let mut t = offline(100);
        exec(&mut t, 10, 1, 100, "/bin/sh");
        fork(&mut t, 10, 11, 200);
        // The child inherits until it execs.
        assert_eq!(&*t.tables.process(11).unwrap().exe, "/bin/sh");
        exec(&mut t, 11, 10, 300, "/bin/cat");
        let child = t.tables.process(11).unwrap().clone();
        assert_eq!((&*child.exe, &*child.cwd), ("/bin/cat", "/srv"));
        assert_eq!(child.start_ns, 200, "exec keeps the start");
        assert_eq!(child.parent_start_ns, 100);
        apply(
            &mut t,
            &record(Kind::ProcessExit, 11, 400, |x: &mut ProcessExit| {
                x.lifetime_ns = 200;
            }),
        );
        assert_eq!(t.tables.process(11).unwrap().exit_ns, 400);
        // Within the grace period it stays; after it, it is forgotten.
        t.expire(1_399);
        assert!(t.tables.process(11).is_some());
        t.expire(1_400);
        assert!(t.tables.process(11).is_none());
        let r = replayed(&mut t);
        assert!(r.process(11).is_none());
        assert_eq!(&*r.process(10).unwrap().exe, "/bin/sh");
    }

    #[test]
    fn a_reused_pid_is_a_new_entry_and_evictions_are_written() {
        let mut t = offline(16);
        exec(&mut t, 10, 1, 100, "/bin/sh");
        fork(&mut t, 10, 20, 200);
        exec(&mut t, 20, 10, 210, "/bin/cat");
        apply(
            &mut t,
            &record(Kind::ProcessExit, 20, 300, |_: &mut ProcessExit| {}),
        );
        // pid 20 again, forked later by the shell: a new process, not the exited cat.
        fork(&mut t, 10, 20, 500);
        let p = t.tables.process(20).unwrap();
        assert_eq!((p.start_ns, p.exit_ns, &*p.exe), (500, 0, "/bin/sh"));
        // A storm beyond the bound: evictions counted, and the reader follows them.
        for pid in 100..200 {
            fork(&mut t, 10, pid, 1_000 + u64::from(pid));
        }
        assert_eq!(t.tables.processes().len(), 16);
        assert!(t.stats.processes_evicted >= 100 - 14);
        assert!(t.tables.process(10).is_some(), "the ancestor stays");
        let r = replayed(&mut t);
        assert_eq!(
            r.processes().len(),
            16,
            "the reader holds what the tracker held"
        );
        for (pid, p) in t.tables.processes().sorted() {
            assert_eq!(r.process(*pid), Some(p));
        }
    }
}
