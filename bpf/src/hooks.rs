//! Which kernel hook supplies each kind: every source of events with its candidate hooks
//! in order of preference, and the report of what was chosen on this kernel.
//!
//! Kernels differ: a tracepoint appears in one release (`capability:cap_capable`, 6.15),
//! changes its arguments in another (`sched_process_exit` gained `group_dead`), and a
//! stricter verifier refuses what an older one took. So each source lists the programs
//! that can supply it, best first (a typed tracepoint, then the function it sits in,
//! through fexit/fentry), and the loader keeps the first that loads and attaches. A source
//! with no candidate left costs its kinds, never the rest of the capture.

use std::fmt;

use crate::abi::Category;
use crate::loader::{CaptureConfig, IdFilter};

/// How a program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A BTF-typed tracepoint (`tp_btf/NAME`).
    TpBtf(&'static str),
    /// The return of a kernel function (`fexit/NAME`).
    FExit(&'static str),
    /// The entry of a kernel function (`fentry/NAME`).
    FEntry(&'static str),
}

impl Attach {
    /// The tracepoint or function attached to.
    pub fn target(self) -> &'static str {
        match self {
            Attach::TpBtf(t) | Attach::FExit(t) | Attach::FEntry(t) => t,
        }
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attach::TpBtf(t) => write!(f, "tp_btf/{t}"),
            Attach::FExit(t) => write!(f, "fexit/{t}"),
            Attach::FEntry(t) => write!(f, "fentry/{t}"),
        }
    }
}

/// One program of the object and where it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prog {
    /// The program's name in the object.
    pub program: &'static str,
    /// Where it is attached.
    pub attach: Attach,
    /// The tracepoint arguments it reads (`ctx[0..args]`; 0 for fexit/fentry): a
    /// kernel whose prototype has fewer does not get it.
    pub args: u32,
}

/// One way to supply a source: programs that must all load and attach.
pub type Candidate = &'static [Prog];

/// A source of events: the kinds it supplies and its candidate hooks, best first.
pub struct Source {
    /// The kinds (and perf signals) it supplies, as reported.
    pub kinds: &'static [&'static str],
    /// Its category (for messages).
    pub category: Category,
    /// Whether the config needs it (fork/exit also keep the tgid filter current).
    pub needed: fn(&CaptureConfig) -> bool,
    /// Candidates in order of preference.
    pub candidates: &'static [Candidate],
}

const fn tp(program: &'static str, tracepoint: &'static str, args: u32) -> Prog {
    Prog {
        program,
        attach: Attach::TpBtf(tracepoint),
        args,
    }
}

const fn fexit(program: &'static str, function: &'static str) -> Prog {
    Prog {
        program,
        attach: Attach::FExit(function),
        args: 0,
    }
}

const fn fentry(program: &'static str, function: &'static str) -> Prog {
    Prog {
        program,
        attach: Attach::FEntry(function),
        args: 0,
    }
}

fn on(c: &CaptureConfig, cat: Category) -> bool {
    c.categories.contains(&cat)
}

/// Whether the raw programs carry the file and security calls (no per-syscall events).
pub(crate) fn raw_classified(c: &CaptureConfig) -> bool {
    !c.syscall_events && (on(c, Category::File) || on(c, Category::Security))
}

fn perf_sched(c: &CaptureConfig) -> bool {
    on(c, Category::Perf) && c.perf_signals.sched
}

fn perf_block(c: &CaptureConfig) -> bool {
    on(c, Category::Perf) && c.perf_signals.block
}

fn perf_net(c: &CaptureConfig) -> bool {
    on(c, Category::Perf) && c.perf_signals.net
}

macro_rules! by_category {
    ($cat:ident) => {
        |c| on(c, Category::$cat)
    };
}

/// Every source, in attach order (sys_enter before sys_exit so that pairs are not
/// reported unpaired at start-up). The per-syscall tracefs events of the file and
/// security calls are chosen apart (`loader::syscall_events`), before these.
pub const SOURCES: &[Source] = &[
    Source {
        kinds: &["process.exec"],
        category: Category::Process,
        needed: by_category!(Process),
        candidates: &[&[tp("handle_exec", "sched_process_exec", 3)]],
    },
    Source {
        kinds: &["process.fork"],
        category: Category::Process,
        needed: |c| {
            on(c, Category::Process)
                || (c.follow_children && matches!(c.tgid_filter, IdFilter::Include(_)))
        },
        candidates: &[&[tp("handle_fork", "sched_process_fork", 2)]],
    },
    Source {
        kinds: &["process.exit"],
        category: Category::Process,
        needed: |c| on(c, Category::Process) || c.tgid_filter != IdFilter::Off,
        candidates: &[
            // sched_process_exit(task, group_dead), 6.16+; then (task).
            &[tp("handle_exit", "sched_process_exit", 2)],
            &[tp("handle_exit_task", "sched_process_exit", 1)],
        ],
    },
    Source {
        kinds: &["syscall.call"],
        category: Category::Syscall,
        needed: |c| raw_classified(c) || on(c, Category::Syscall),
        candidates: &[&[tp("handle_sys_enter", "sys_enter", 2)]],
    },
    Source {
        kinds: &["syscall.call"],
        category: Category::Syscall,
        needed: |c| raw_classified(c) || (on(c, Category::Syscall) && !c.syscall_enter_only),
        candidates: &[&[tp("handle_sys_exit", "sys_exit", 2)]],
    },
    Source {
        kinds: &["security.capability"],
        category: Category::Security,
        needed: by_category!(Security),
        candidates: &[
            // capability:cap_capable, 6.15+; then the functions it sits in.
            &[tp("handle_cap_capable", "cap_capable", 5)],
            &[fexit("handle_cap_capable_fexit", "cap_capable")],
            &[fexit("handle_cap_capable_fexit", "security_capable")],
        ],
    },
    Source {
        kinds: &["security.signal"],
        category: Category::Security,
        needed: by_category!(Security),
        candidates: &[&[tp("handle_signal_generate", "signal_generate", 5)]],
    },
    Source {
        kinds: &[
            "net.tcp_connect",
            "net.tcp_accept",
            "net.tcp_established",
            "net.tcp_close",
        ],
        category: Category::Net,
        needed: by_category!(Net),
        candidates: &[&[tp("handle_inet_sock_set_state", "inet_sock_set_state", 3)]],
    },
    Source {
        kinds: &["net.tcp_retransmit"],
        category: Category::Net,
        needed: by_category!(Net),
        candidates: &[&[tp("handle_tcp_retransmit_skb", "tcp_retransmit_skb", 1)]],
    },
    Source {
        kinds: &["net.tcp_reset_sent"],
        category: Category::Net,
        needed: by_category!(Net),
        candidates: &[
            // tcp_send_reset(sk, skb, reason), 6.10+; then (sk, skb).
            &[tp("handle_tcp_send_reset", "tcp_send_reset", 3)],
            &[tp("handle_tcp_send_reset_v1", "tcp_send_reset", 2)],
        ],
    },
    Source {
        kinds: &["net.tcp_reset_received"],
        category: Category::Net,
        needed: by_category!(Net),
        candidates: &[&[tp("handle_tcp_receive_reset", "tcp_receive_reset", 1)]],
    },
    Source {
        kinds: &["net.packet_drop"],
        category: Category::Net,
        needed: by_category!(Net),
        candidates: &[&[tp("handle_kfree_skb", "kfree_skb", 3)]],
    },
    Source {
        kinds: &["container.cgroup_mkdir"],
        category: Category::Container,
        needed: by_category!(Container),
        candidates: &[&[tp("handle_cgroup_mkdir", "cgroup_mkdir", 2)]],
    },
    Source {
        kinds: &["container.cgroup_rmdir"],
        category: Category::Container,
        needed: by_category!(Container),
        candidates: &[&[tp("handle_cgroup_rmdir", "cgroup_rmdir", 2)]],
    },
    Source {
        kinds: &["container.cgroup_attach"],
        category: Category::Container,
        needed: by_category!(Container),
        candidates: &[&[tp("handle_cgroup_attach_task", "cgroup_attach_task", 4)]],
    },
    Source {
        kinds: &["memory.oom_kill"],
        category: Category::Memory,
        needed: by_category!(Memory),
        candidates: &[
            // mark_victim(task, uid), 6.8+; then the victim chosen in oom_kill_process;
            // then mark_victim(pid): the pid alone.
            &[tp("handle_mark_victim", "mark_victim", 2)],
            &[fentry("handle_oom_kill_process", "oom_kill_process")],
            &[tp("handle_mark_victim_pid", "mark_victim", 1)],
        ],
    },
    Source {
        kinds: &["memory.direct_reclaim"],
        category: Category::Memory,
        needed: by_category!(Memory),
        candidates: &[&[
            tp("handle_reclaim_begin", "mm_vmscan_direct_reclaim_begin", 2),
            tp("handle_reclaim_end", "mm_vmscan_direct_reclaim_end", 1),
        ]],
    },
    Source {
        kinds: &["memory.page_fault"],
        category: Category::Memory,
        needed: by_category!(Memory),
        candidates: &[&[tp("handle_page_fault_user", "page_fault_user", 3)]],
    },
    Source {
        kinds: &["perf.runq_latency", "perf.task_sched", "perf.runq_wait"],
        category: Category::Perf,
        needed: perf_sched,
        candidates: &[&[
            tp("handle_sched_wakeup", "sched_wakeup", 1),
            tp("handle_sched_wakeup_new", "sched_wakeup_new", 1),
            tp("handle_sched_switch", "sched_switch", 4),
            tp("handle_perf_exec", "sched_process_exec", 1),
        ]],
    },
    Source {
        kinds: &["perf.io_latency", "perf.io_slow"],
        category: Category::Perf,
        needed: perf_block,
        candidates: &[&[
            tp("handle_block_rq_insert", "block_rq_insert", 1),
            tp("handle_block_rq_issue", "block_rq_issue", 1),
            tp("handle_block_rq_complete", "block_rq_complete", 3),
        ]],
    },
    Source {
        kinds: &["perf.net_traffic"],
        category: Category::Perf,
        needed: perf_net,
        candidates: &[
            // sock:sock_{send,recv}_length, 6.3+; then the returns of the functions
            // they sit in.
            &[
                tp("handle_sock_send_length", "sock_send_length", 2),
                tp("handle_sock_recv_length", "sock_recv_length", 3),
            ],
            &[
                fexit("handle_sock_sendmsg_fexit", "sock_sendmsg"),
                fexit("handle_sock_recvmsg_fexit", "sock_recvmsg"),
            ],
        ],
    },
    Source {
        kinds: &["perf.tcp_life"],
        category: Category::Perf,
        needed: perf_net,
        candidates: &[&[tp("handle_tcp_life", "inet_sock_set_state", 3)]],
    },
];

/// The hook that supplies a kind on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindHook {
    /// The kind (`process.exit`, or a perf aggregate such as `perf.runq_latency`).
    pub kind: &'static str,
    /// The hook, e.g. `tp_btf/sched_process_exit` or `fexit/cap_capable`.
    pub hook: String,
}

/// Why a kind is not captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No candidate hook exists in this kernel (no tracepoint or function in its BTF).
    NoHook,
    /// The verifier refused the program of every candidate that exists.
    Verifier,
    /// A program loaded but could not be attached.
    Attach,
    /// The kernel refused to load the program without a verifier verdict (EPERM: e.g.
    /// fentry/fexit where the kernel forbids them).
    Refused,
}

impl Reason {
    /// The label value (`kevent_capture_unavailable{reason}`).
    pub fn name(self) -> &'static str {
        match self {
            Reason::NoHook => "no_hook",
            Reason::Verifier => "verifier",
            Reason::Attach => "attach",
            Reason::Refused => "refused",
        }
    }
}

/// A kind this kernel does not give us, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The kind or perf signal.
    pub kind: &'static str,
    /// The class of the last failure.
    pub reason: Reason,
    /// Each candidate tried and what happened to it (for a verifier refusal, the last
    /// lines of its log), one per line.
    pub detail: String,
}

/// What the capture got from this kernel: the hook of every kind it captures, and the
/// kinds it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureReport {
    /// Kinds captured, in source order.
    pub hooks: Vec<KindHook>,
    /// Kinds configured and not captured.
    pub unavailable: Vec<Unavailable>,
}

impl CaptureReport {
    /// Records `kind` as supplied by `hook` (a kind two sources supply is listed once,
    /// with both hooks).
    pub(crate) fn hooked(&mut self, kind: &'static str, hook: String) {
        if let Some(h) = self.hooks.iter_mut().find(|h| h.kind == kind) {
            if !h.hook.split('+').any(|x| x == hook) {
                h.hook = format!("{}+{hook}", h.hook);
            }
            return;
        }
        self.unavailable.retain(|u| u.kind != kind);
        self.hooks.push(KindHook { kind, hook });
    }

    /// Records `kind` as not captured (unless another source supplies it).
    pub(crate) fn missing(&mut self, kind: &'static str, reason: Reason, detail: String) {
        if self.hooks.iter().any(|h| h.kind == kind)
            || self.unavailable.iter().any(|u| u.kind == kind)
        {
            return;
        }
        self.unavailable.push(Unavailable {
            kind,
            reason,
            detail,
        });
    }

    /// The hook of `kind`, if it is captured.
    pub fn hook(&self, kind: &str) -> Option<&str> {
        self.hooks
            .iter()
            .find(|h| h.kind == kind)
            .map(|h| h.hook.as_str())
    }

    /// `kind=hook, ...` for a log line.
    pub fn hooks_line(&self) -> String {
        self.hooks
            .iter()
            .map(|h| format!("{}={}", h.kind, h.hook))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The last `n` non-empty lines of a verifier log, joined by " | ".
pub(crate) fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_two_sources_supply_is_listed_once_with_both_hooks() {
        let mut r = CaptureReport::default();
        r.hooked("syscall.call", "tp_btf/sys_enter".into());
        r.hooked("syscall.call", "tp_btf/sys_exit".into());
        r.hooked("syscall.call", "tp_btf/sys_exit".into());
        assert_eq!(r.hooks.len(), 1);
        assert_eq!(
            r.hook("syscall.call"),
            Some("tp_btf/sys_enter+tp_btf/sys_exit")
        );
    }

    #[test]
    fn a_kind_captured_is_never_also_unavailable() {
        let mut r = CaptureReport::default();
        r.missing("perf.net_traffic", Reason::NoHook, "x".into());
        r.hooked("perf.net_traffic", "fexit/sock_sendmsg".into());
        assert!(r.unavailable.is_empty());
        r.missing("perf.net_traffic", Reason::Verifier, "y".into());
        assert!(r.unavailable.is_empty());
    }

    #[test]
    fn every_program_of_the_object_is_in_a_source() {
        let obj = aya_obj::Object::parse(crate::OBJECT).expect("object parses");
        let known: Vec<&str> = SOURCES
            .iter()
            .flat_map(|s| s.candidates.iter())
            .flat_map(|c| c.iter())
            .map(|p| p.program)
            .collect();
        for name in obj.programs.keys() {
            let per_syscall = name.starts_with("handle_sc_");
            assert!(
                per_syscall || known.contains(&name.as_str()),
                "program {name} is in no source"
            );
        }
        for p in &known {
            assert!(
                obj.programs.contains_key(*p),
                "no program {p} in the object"
            );
        }
        // A program is loaded once: it may serve several candidates of one source
        // (one hook after the other), never two sources.
        for (i, a) in SOURCES.iter().enumerate() {
            for b in &SOURCES[i + 1..] {
                for pa in a.candidates.iter().flat_map(|c| c.iter()) {
                    assert!(
                        !b.candidates
                            .iter()
                            .flat_map(|c| c.iter())
                            .any(|pb| pb.program == pa.program),
                        "program {} is in two sources",
                        pa.program
                    );
                }
            }
        }
    }

    #[test]
    fn verifier_logs_are_cut_to_their_last_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(last_lines("", 3), "");
    }
}
