//! Correlations: small state machines over the notable events, in the order the
//! summary writes them (window by window; in a window by timestamp, core, sequence),
//! with their enrichment; and over each window's merged facts. Live and offline run
//! them on the same sequence with the same thresholds (recorded in the window
//! markers), so they fire identically. Every state is bounded.
//!
//! | rule | fires when |
//! | --- | --- |
//! | `crash_loop` | one executable dies by a crash signal (SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS) `crash_loop_count` times within `crash_loop_ms` |
//! | `priv_exec` | a process makes itself uid or gid 0 (setuid/setgid family, succeeded) and then executes, within `priv_exec_ms`; or a process that is not root executes an image that runs as root (set-uid/set-gid root), or one the kernel marks as gaining privileges (`AT_SECURE`: file capabilities, set-id bits) |
//! | `exec_connect_write` | a process executes, then its process tree connects out, then writes or renames a file, within `chain_ms` (needs connects and writes notable: `min_importance` at most 0.7, as in the security preset) |
//! | `tcp_trouble` | in one window, failed connects + retransmits + resets to one peer reach `tcp_trouble_count` |
//! | `oom_kill` | an OOM kill, with its container and the window's reclaim stalls |

use std::collections::{BTreeMap, VecDeque};

use bpf::abi::{cstr_bytes, str_bytes};
use bpf::{Event, Kind, Payload};

use super::partial::{Partial, PeerKey};
use crate::enrich::container::Placement;
use crate::enrich::tables::Enrichment;

/// The thresholds (config `[semantic]`, recorded in the window markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub crash_loop_count: u32,
    pub crash_loop_ms: u32,
    pub tcp_trouble_count: u32,
    pub priv_exec_ms: u32,
    pub chain_ms: u32,
}

/// A notable event's id in the summary: the core and its sequence there.
pub(crate) type Id = (u32, u64);

/// A correlation that fired.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    pub rule: &'static str,
    /// The time of the event that completed it.
    pub wall_ns: i128,
    pub members: Vec<Id>,
    pub description: String,
}

/// Entries each rule's state holds at most (the oldest goes first).
const STATE_MAX: usize = 4096;
/// Crash signals (a process killed by its own fault, not by someone's SIGKILL/SIGTERM).
const CRASH_SIGNALS: [u32; 6] = [4, 6, 7, 8, 11, 31];
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;

struct Chain {
    start_ns: u64,
    exe: String,
    members: Vec<Id>,
    peer: Option<String>,
}

/// See the module docs.
pub(crate) struct Correlator {
    t: Thresholds,
    crashes: BTreeMap<String, VecDeque<(u64, Id)>>,
    became_root: BTreeMap<u32, (u64, Id, &'static str)>,
    chains: BTreeMap<u32, Chain>,
    /// Notable TCP events of the current window by peer, for `tcp_trouble` members.
    window_peers: BTreeMap<PeerKey, Vec<Id>>,
}

impl std::fmt::Debug for Correlator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Correlator").field("t", &self.t).finish()
    }
}

fn ms(v: u32) -> u64 {
    u64::from(v) * 1_000_000
}

/// Drops the entry with the smallest `age` when `map` is at its bound.
fn bound<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, age: impl Fn(&V) -> u64) {
    if map.len() < STATE_MAX {
        return;
    }
    if let Some(k) = map
        .iter()
        .min_by_key(|(_, v)| age(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&k);
    }
}

fn container_of(e: &Enrichment<'_>) -> String {
    match e.container {
        Some(Placement::Container(c)) => {
            format!("container {} ({})", &c.id[..12], c.runtime.name())
        }
        Some(Placement::Host) => "the host".to_string(),
        None => "an unknown cgroup".to_string(),
    }
}

fn peer_name(k: &PeerKey) -> String {
    match crate::output::ip(k.family, &k.addr) {
        Some(ip) => format!("{ip}:{}", k.port),
        None => format!("?:{}", k.port),
    }
}

impl Correlator {
    pub(crate) fn new(t: Thresholds) -> Correlator {
        Correlator {
            t,
            crashes: BTreeMap::new(),
            became_root: BTreeMap::new(),
            chains: BTreeMap::new(),
            window_peers: BTreeMap::new(),
        }
    }

    /// The chain a process belongs to: its own, or its nearest ancestor's.
    fn chain_of(&self, pid: u32, e: &Enrichment<'_>) -> Option<u32> {
        std::iter::once(pid)
            .chain(e.ancestors().iter().map(|(p, _)| *p))
            .find(|p| self.chains.contains_key(p))
    }

    /// One notable event, in summary order; what it completes goes to `out`.
    pub(crate) fn notable(
        &mut self,
        id: Id,
        ev: &Event<'_>,
        e: &Enrichment<'_>,
        wall_ns: i128,
        window: &Partial,
        out: &mut Vec<Fired>,
    ) {
        let h = ev.header;
        let ts = h.ts_ns;
        let comm = String::from_utf8_lossy(cstr_bytes(&h.comm)).into_owned();
        let exe = e.exe.map_or_else(|| comm.clone(), str::to_string);
        // Expire what is too old to complete, whatever this event is.
        let chain_ns = ms(self.t.chain_ms);
        self.chains
            .retain(|_, c| ts.saturating_sub(c.start_ns) <= chain_ns);
        match ev.payload {
            Payload::ProcessExit(x) if CRASH_SIGNALS.contains(&x.signal) => {
                let window = ms(self.t.crash_loop_ms);
                if !self.crashes.contains_key(&exe) {
                    bound(&mut self.crashes, |q| q.back().map_or(0, |b| b.0));
                }
                let q = self.crashes.entry(exe.clone()).or_default();
                q.push_back((ts, id));
                while q.front().is_some_and(|f| ts.saturating_sub(f.0) > window) {
                    q.pop_front();
                }
                if q.len() >= self.t.crash_loop_count.max(1) as usize {
                    let members: Vec<Id> = q.drain(..).map(|(_, id)| id).collect();
                    out.push(Fired {
                        rule: "crash_loop",
                        wall_ns,
                        description: format!(
                            "{exe} died by a crash signal {} times within {} s (last: signal {})",
                            members.len(),
                            self.t.crash_loop_ms / 1000,
                            x.signal
                        ),
                        members,
                    });
                }
            }
            Payload::CredChange(c) if c.ret == 0 => {
                let to_root = match ev.kind {
                    Kind::SecuritySetuid => (c.new_uid == 0 || c.new_euid == 0).then_some("uid"),
                    _ => (c.new_gid == 0 || c.new_egid == 0).then_some("gid"),
                };
                if let Some(what) = to_root {
                    bound(&mut self.became_root, |v| v.0);
                    self.became_root.insert(h.pid, (ts, id, what));
                }
            }
            Payload::ProcessExec(x) => {
                // The new image (the tables still hold the one before the exec).
                let exe = String::from_utf8_lossy(str_bytes(&x.exe, x.exe_len)).into_owned();
                // The exec itself grants root: a set-uid/set-gid-root image run by
                // someone else.
                let granted = if x.euid == 0 && h.uid != 0 {
                    Some("uid")
                } else if x.egid == 0 && h.gid != 0 {
                    Some("gid")
                } else if x.secure != 0 {
                    Some("privileges")
                } else {
                    None
                };
                if let Some(what) = granted {
                    let how = if what == "privileges" {
                        "which the kernel marked as gaining privileges (file capabilities or set-id bits)".to_string()
                    } else {
                        format!("which runs with effective {what} 0")
                    };
                    out.push(Fired {
                        rule: "priv_exec",
                        wall_ns,
                        members: vec![id],
                        description: format!(
                            "pid {} (uid {}) executed {exe}, {how}",
                            h.pid, h.uid
                        ),
                    });
                }
                if let Some((at, setid, what)) = self.became_root.remove(&h.pid)
                    && ts.saturating_sub(at) <= ms(self.t.priv_exec_ms)
                {
                    out.push(Fired {
                        rule: "priv_exec",
                        wall_ns,
                        members: vec![setid, id],
                        description: format!(
                            "pid {} became {what} 0, then executed {exe} ({:.3} s later)",
                            h.pid,
                            ts.saturating_sub(at) as f64 / 1e9
                        ),
                    });
                }
                bound(&mut self.chains, |c| c.start_ns);
                self.chains.insert(
                    h.pid,
                    Chain {
                        start_ns: ts,
                        exe,
                        members: vec![id],
                        peer: None,
                    },
                );
            }
            Payload::Tcp(t) => {
                let peer = PeerKey {
                    family: t.family,
                    addr: t.daddr,
                    port: t.dport,
                };
                self.window_peers.entry(peer).or_default().push(id);
                if ev.kind == Kind::NetTcpConnect
                    && let Some(root) = self.chain_of(h.pid, e)
                    && let Some(c) = self.chains.get_mut(&root)
                    && c.peer.is_none()
                {
                    c.peer = Some(peer_name(&peer));
                    c.members.push(id);
                }
            }
            Payload::FileOp(f)
                if ev.kind == Kind::FileOpen
                    && f.ret >= 0
                    && f.flags & (O_WRONLY | O_RDWR | O_CREAT) != 0 =>
            {
                let path = String::from_utf8_lossy(str_bytes(&f.path, f.path_len)).into_owned();
                self.wrote(h.pid, id, e, &path, wall_ns, out);
            }
            Payload::FileRename(r) if r.ret >= 0 => {
                let path =
                    String::from_utf8_lossy(str_bytes(&r.new_path, r.new_path_len)).into_owned();
                self.wrote(h.pid, id, e, &path, wall_ns, out);
            }
            Payload::OomKill(o) => out.push(Fired {
                rule: "oom_kill",
                wall_ns,
                members: vec![id],
                description: format!(
                    "{} (pid {}) was killed by the OOM killer, in {}; {} direct reclaim stalls ({} ms) in the window",
                    String::from_utf8_lossy(cstr_bytes(&o.victim_comm)),
                    o.victim_pid,
                    container_of(e),
                    window.reclaim_stalls,
                    window.reclaim_ns / 1_000_000
                ),
            }),
            _ => {}
        }
    }

    fn wrote(
        &mut self,
        pid: u32,
        id: Id,
        e: &Enrichment<'_>,
        path: &str,
        wall_ns: i128,
        out: &mut Vec<Fired>,
    ) {
        let Some(root) = self.chain_of(pid, e) else {
            return;
        };
        if self.chains.get(&root).is_some_and(|c| c.peer.is_some())
            && let Some(mut c) = self.chains.remove(&root)
        {
            c.members.push(id);
            out.push(Fired {
                rule: "exec_connect_write",
                wall_ns,
                description: format!(
                    "{} (pid {root}) executed, connected to {}, then wrote {path}",
                    c.exe,
                    c.peer.as_deref().unwrap_or("?")
                ),
                members: c.members,
            });
        }
    }

    /// The window's end: `tcp_trouble` from its merged facts.
    pub(crate) fn end_window(&mut self, merged: &Partial, wall_ns: i128, out: &mut Vec<Fired>) {
        let mut trouble: BTreeMap<PeerKey, (u64, u64, u64)> = BTreeMap::new();
        for (k, n) in &merged.failed_connects.counts {
            trouble.entry(*k).or_default().0 += n;
        }
        for (k, n) in &merged.retransmits.counts {
            trouble.entry(*k).or_default().1 += n;
        }
        for (k, n) in &merged.resets.counts {
            trouble.entry(*k).or_default().2 += n;
        }
        for (peer, (f, r, s)) in trouble {
            if f + r + s >= u64::from(self.t.tcp_trouble_count.max(1)) {
                out.push(Fired {
                    rule: "tcp_trouble",
                    wall_ns,
                    members: self.window_peers.get(&peer).cloned().unwrap_or_default(),
                    description: format!(
                        "{}: {f} failed connects, {r} retransmits, {s} resets in the window",
                        peer_name(&peer)
                    ),
                });
            }
        }
        self.window_peers.clear();
    }
}
