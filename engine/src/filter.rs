//! User-space filters: what the kernel could not filter itself. Compiled once from the
//! config; [`Filter::keep`] allocates nothing.

use bpf::abi::{cstr_bytes, str_bytes};
use bpf::{Event, Kind, Payload};

use crate::cidr::{Cidr, parse_cidr};
use crate::config;

enum CommPattern {
    Exact([u8; 16], usize),
    Prefix([u8; 16], usize),
}

impl CommPattern {
    fn parse(s: &str) -> CommPattern {
        let (base, prefix) = match s.strip_suffix('*') {
            Some(b) => (b, true),
            None => (s, false),
        };
        let mut buf = [0u8; 16];
        let n = base.len().min(15);
        buf[..n].copy_from_slice(&base.as_bytes()[..n]);
        if prefix {
            CommPattern::Prefix(buf, n)
        } else {
            CommPattern::Exact(buf, n)
        }
    }

    fn matches(&self, comm: &[u8]) -> bool {
        match self {
            CommPattern::Exact(b, n) => comm == &b[..*n],
            CommPattern::Prefix(b, n) => comm.starts_with(&b[..*n]),
        }
    }
}

/// The compiled user-space filter.
pub struct Filter {
    /// Bit per kind id (< 128) to keep.
    kinds: u128,
    pids: Vec<u32>,
    exclude_pids: Vec<u32>,
    comms: Vec<CommPattern>,
    exclude_comms: Vec<CommPattern>,
    uids: Vec<u32>,
    cgroups: Vec<u64>,
    path_prefixes: Vec<Vec<u8>>,
    nets: Vec<Cidr>,
    ports: Vec<u16>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("kinds", &format_args!("{:#x}", self.kinds))
            .finish()
    }
}

/// The kinds a config keeps (bit per kind id).
pub fn kind_mask(f: &config::Filter) -> u128 {
    let bit = |name: &String| Kind::from_name(name).map_or(0, |k| 1u128 << (k as u16));
    let keep = if f.kinds.is_empty() {
        u128::MAX
    } else {
        f.kinds.iter().map(bit).fold(0, |a, b| a | b)
    };
    keep & !f.exclude_kinds.iter().map(bit).fold(0, |a, b| a | b)
}

impl Filter {
    /// Compiles a validated config section.
    pub fn new(f: &config::Filter) -> Filter {
        Filter {
            kinds: kind_mask(f),
            pids: f.pids.clone(),
            exclude_pids: f.exclude_pids.clone(),
            comms: f.comms.iter().map(|s| CommPattern::parse(s)).collect(),
            exclude_comms: f
                .exclude_comms
                .iter()
                .map(|s| CommPattern::parse(s))
                .collect(),
            uids: f.uids.clone(),
            cgroups: f.cgroups.clone(),
            path_prefixes: f
                .path_prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            nets: f.addresses.iter().filter_map(|a| parse_cidr(a)).collect(),
            ports: f.ports.clone(),
        }
    }

    /// The kinds (bit per kind id) that no rule here can reject: every event of those
    /// kinds that reaches user space is kept. Only those can be sampled in the kernel, which
    /// must not spend the sampling budget on events this filter would throw away.
    pub fn passes_all(&self) -> u128 {
        let any_event = !self.pids.is_empty()
            || !self.exclude_pids.is_empty()
            || !self.comms.is_empty()
            || !self.exclude_comms.is_empty()
            || !self.uids.is_empty()
            || !self.cgroups.is_empty();
        if any_event {
            return 0;
        }
        let mut mask = self.kinds;
        if !self.path_prefixes.is_empty() {
            mask &= !(1u128 << Kind::FileOpen as u16
                | 1u128 << Kind::FileUnlink as u16
                | 1u128 << Kind::FileChmod as u16
                | 1u128 << Kind::FileRename as u16);
        }
        if !self.nets.is_empty() || !self.ports.is_empty() {
            for &k in Kind::ALL {
                if k.category() == bpf::Category::Net {
                    mask &= !(1u128 << k as u16);
                }
            }
        }
        mask
    }

    /// Whether to keep `ev`.
    pub fn keep(&self, ev: &Event<'_>) -> bool {
        let h = ev.header;
        if self.kinds & (1u128 << (ev.kind as u16)) == 0 {
            return false;
        }
        if !self.pids.is_empty() && !self.pids.contains(&h.pid) {
            return false;
        }
        if self.exclude_pids.contains(&h.pid) {
            return false;
        }
        if !self.comms.is_empty() || !self.exclude_comms.is_empty() {
            let comm = cstr_bytes(&h.comm);
            if !self.comms.is_empty() && !self.comms.iter().any(|c| c.matches(comm)) {
                return false;
            }
            if self.exclude_comms.iter().any(|c| c.matches(comm)) {
                return false;
            }
        }
        if !self.uids.is_empty() && !self.uids.contains(&h.uid) {
            return false;
        }
        if !self.cgroups.is_empty() && !self.cgroups.contains(&h.cgroup_id) {
            return false;
        }
        if !self.path_prefixes.is_empty() {
            let matches = |p: &[u8]| self.path_prefixes.iter().any(|pre| p.starts_with(pre));
            match ev.payload {
                Payload::FileOp(p) if !matches(str_bytes(&p.path, p.path_len)) => return false,
                Payload::FileRename(p)
                    if !matches(str_bytes(&p.old_path, p.old_path_len))
                        && !matches(str_bytes(&p.new_path, p.new_path_len)) =>
                {
                    return false;
                }
                _ => {}
            }
        }
        if !self.nets.is_empty() || !self.ports.is_empty() {
            let (family, saddr, daddr, sport, dport) = match ev.payload {
                Payload::Tcp(t) => (t.family, &t.saddr, &t.daddr, t.sport, t.dport),
                Payload::PacketDrop(d) => (d.family, &d.saddr, &d.daddr, d.sport, d.dport),
                _ => return true,
            };
            if !self.nets.is_empty()
                && !self
                    .nets
                    .iter()
                    .any(|c| c.contains(family, saddr) || c.contains(family, daddr))
            {
                return false;
            }
            if !self.ports.is_empty()
                && !self.ports.contains(&sport)
                && !self.ports.contains(&dport)
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, fill: impl FnOnce(&mut bpf::abi::EventHeader, &mut [u8])) -> Vec<u64> {
        let len = kind.record_len();
        let mut words = vec![0u64; len / 8];
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let (head, body) = b.split_at_mut(64);
        let h: &mut bpf::abi::EventHeader = bytemuck::from_bytes_mut(head);
        h.kind = kind as u16;
        h.len = len as u32;
        h.pid = 10;
        h.uid = 1000;
        h.comm[..5].copy_from_slice(b"nginx");
        fill(h, body);
        words
    }

    #[test]
    fn passes_all_names_the_kinds_no_rule_can_reject() {
        let bit = |k: Kind| 1u128 << k as u16;
        let all = Filter::new(&config::Filter::default()).passes_all();
        assert_ne!(all & bit(Kind::Syscall), 0);
        assert_ne!(all & bit(Kind::FileOpen), 0);
        let comms = Filter::new(&config::Filter {
            comms: vec!["nginx".into()],
            ..config::Filter::default()
        });
        assert_eq!(comms.passes_all(), 0, "a comm rule can reject any event");
        let paths = Filter::new(&config::Filter {
            path_prefixes: vec!["/var".into()],
            ..config::Filter::default()
        })
        .passes_all();
        assert_eq!(paths & bit(Kind::FileOpen), 0);
        assert_eq!(paths & bit(Kind::FileRename), 0);
        assert_ne!(paths & bit(Kind::Syscall), 0);
        let ports = Filter::new(&config::Filter {
            ports: vec![443],
            ..config::Filter::default()
        })
        .passes_all();
        assert_eq!(ports & bit(Kind::NetTcpConnect), 0);
        assert_ne!(ports & bit(Kind::FileOpen), 0);
        let kinds = Filter::new(&config::Filter {
            exclude_kinds: vec!["syscall.call".into()],
            ..config::Filter::default()
        })
        .passes_all();
        assert_eq!(kinds & bit(Kind::Syscall), 0);
    }

    #[test]
    fn keep_applies_every_rule() {
        let open = record(Kind::FileOpen, |_, body| {
            let p: &mut bpf::abi::FileOp = bytemuck::from_bytes_mut(body);
            p.path[..12].copy_from_slice(b"/var/log/app");
            p.path_len = 12;
        });
        let tcp = record(Kind::NetTcpConnect, |_, body| {
            let t: &mut bpf::abi::TcpSockEvent = bytemuck::from_bytes_mut(body);
            t.family = 2;
            t.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
            t.dport = 443;
        });
        fn ev(w: &[u64]) -> bpf::Event<'_> {
            bpf::decode(bytemuck::cast_slice(w)).unwrap()
        }
        let f = |cfg: config::Filter| Filter::new(&cfg);
        let all = f(config::Filter::default());
        assert!(all.keep(&ev(&open)) && all.keep(&ev(&tcp)));
        let kinds = f(config::Filter {
            kinds: vec!["net.tcp_connect".into()],
            ..Default::default()
        });
        assert!(!kinds.keep(&ev(&open)) && kinds.keep(&ev(&tcp)));
        let excl = f(config::Filter {
            exclude_kinds: vec!["file.open".into()],
            ..Default::default()
        });
        assert!(!excl.keep(&ev(&open)));
        let comm = f(config::Filter {
            comms: vec!["ngi*".into()],
            ..Default::default()
        });
        assert!(comm.keep(&ev(&open)));
        let comm = f(config::Filter {
            exclude_comms: vec!["nginx".into()],
            ..Default::default()
        });
        assert!(!comm.keep(&ev(&open)));
        let uid = f(config::Filter {
            uids: vec![0],
            ..Default::default()
        });
        assert!(!uid.keep(&ev(&open)));
        let path = f(config::Filter {
            path_prefixes: vec!["/var/log".into()],
            ..Default::default()
        });
        assert!(
            path.keep(&ev(&open)) && path.keep(&ev(&tcp)),
            "path rules leave net alone"
        );
        let path = f(config::Filter {
            path_prefixes: vec!["/etc".into()],
            ..Default::default()
        });
        assert!(!path.keep(&ev(&open)));
        let net = f(config::Filter {
            addresses: vec!["10.1.0.0/16".into()],
            ports: vec![443],
            ..Default::default()
        });
        assert!(
            net.keep(&ev(&tcp)) && net.keep(&ev(&open)),
            "net rules leave files alone"
        );
        let net = f(config::Filter {
            ports: vec![80],
            ..Default::default()
        });
        assert!(!net.keep(&ev(&tcp)));
        let pids = f(config::Filter {
            exclude_pids: vec![10],
            ..Default::default()
        });
        assert!(!pids.keep(&ev(&tcp)));
    }

    #[test]
    fn comm_patterns() {
        assert!(CommPattern::parse("bash").matches(b"bash"));
        assert!(!CommPattern::parse("bash").matches(b"bash2"));
        assert!(CommPattern::parse("kworker*").matches(b"kworker/0:1"));
        assert!(!CommPattern::parse("kworker*").matches(b"kwork"));
    }
}
