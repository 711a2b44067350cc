//! Text and JSON writers shared by `replay` and `tail`, and the wall-clock time format
//! they use.

pub mod json;
pub mod text;
pub mod time;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bpf::Kind;
use storage::LossReason;

/// An address from a record's 16-byte buffer and its family (`AF_INET` = 2, `AF_INET6` = 10).
pub fn ip(family: u16, addr: &[u8; 16]) -> Option<IpAddr> {
    match family {
        2 => Some(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        ))),
        10 => Some(IpAddr::V6(Ipv6Addr::from(*addr))),
        _ => None,
    }
}

/// The name of an event kind id, `kind_<id>` when unknown.
pub fn kind_name(id: u16) -> Cow<'static, str> {
    Kind::from_id(id).map_or_else(|| format!("kind_{id}").into(), |k| k.name().into())
}

/// The name of a stored record's kind: an event kind, `loss`, or the enrichment
/// stream's `enrich.process` and `enrich.cgroup`.
pub fn record_kind_name(id: u16) -> Cow<'static, str> {
    match id {
        storage::KIND_LOSS => "loss".into(),
        crate::enrich::record::KIND_PROCESS => "enrich.process".into(),
        crate::enrich::record::KIND_CGROUP => "enrich.cgroup".into(),
        crate::semantic::marker::KIND_WINDOW => "semantic.window".into(),
        crate::unavailable::KIND_UNAVAILABLE => crate::unavailable::NAME.into(),
        _ => crate::perf::Aggregate::name_of(id).map_or_else(|| kind_name(id), Into::into),
    }
}

/// The name of a loss reason id, `reason_<id>` when unknown.
pub fn reason_name(id: u16) -> Cow<'static, str> {
    LossReason::from_id(id).map_or_else(|| format!("reason_{id}").into(), |r| r.name().into())
}
