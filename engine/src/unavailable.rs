//! The in-band record of what the kernel does not give: "from this time, these kinds
//! are not captured, and why". Written at start into the first core's stream when a
//! configured kind has no hook on this kernel, so that `replay`, `inspect` and
//! `summarize` tell "not captured" from "nothing happened".
//!
//! Storage kind [`KIND_UNAVAILABLE`], little-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | version (1) |
//! | 2 | entry count, at most [`ENTRIES_MAX`] |
//! | per entry: 1 | reason: 1 no_hook, 2 verifier, 3 attach, 4 refused |
//! | per entry: 1 + n | kind name length, then the name (at most 64 bytes) |
//! | per entry: 2 + n | detail length, then the detail (at most [`DETAIL_MAX`] bytes) |
//!
//! Every length is checked against what is left before it is used.

/// Storage kind id of the record (engine-written kinds: 61 window markers, 62/63
/// enrichment tables, 64 this, 75-78 perf aggregates).
pub(crate) const KIND_UNAVAILABLE: u16 = 64;
/// Its name in output.
pub(crate) const NAME: &str = "capture.unavailable";
/// Entries in one record at most.
pub(crate) const ENTRIES_MAX: usize = 256;
/// Bytes of detail per entry at most (the verifier's last lines, cut).
pub(crate) const DETAIL_MAX: usize = 2048;
const KIND_NAME_MAX: usize = 64;

/// One kind not captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: String,
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

const REASONS: [&str; 4] = ["no_hook", "verifier", "attach", "refused"];

/// The record's bytes for `report`'s unavailable kinds (`None`: all are captured).
pub(crate) fn encode(report: &bpf::CaptureReport) -> Option<Vec<u8>> {
    if report.unavailable.is_empty() {
        return None;
    }
    let entries = &report.unavailable[..report.unavailable.len().min(ENTRIES_MAX)];
    let mut b = vec![1u8];
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for u in entries {
        let reason = REASONS
            .iter()
            .position(|r| *r == u.reason.name())
            .map_or(0, |i| i + 1) as u8;
        b.push(reason);
        let kind = &u.kind.as_bytes()[..u.kind.len().min(KIND_NAME_MAX)];
        b.push(kind.len() as u8);
        b.extend_from_slice(kind);
        let mut cut = u.detail.len().min(DETAIL_MAX);
        while !u.detail.is_char_boundary(cut) {
            cut -= 1;
        }
        let detail = &u.detail.as_bytes()[..cut];
        b.extend_from_slice(&(detail.len() as u16).to_le_bytes());
        b.extend_from_slice(detail);
    }
    Some(b)
}

/// The entries of a stored record, or what is wrong with it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let bad = |what: &str| format!("a {NAME} record of {} bytes: {what}", bytes.len());
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|&e| e <= bytes.len());
        let end = end.ok_or_else(|| bad("cut short"))?;
        let s = &bytes[at..end];
        at = end;
        Ok(s)
    };
    if take(1)?[0] != 1 {
        return Err(bad("unknown version"));
    }
    let n = u16::from_le_bytes(take(2)?.try_into().map_err(|_| bad("count"))?) as usize;
    if n > ENTRIES_MAX {
        return Err(bad("more entries than allowed"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let reason = take(1)?[0];
        let reason = reason
            .checked_sub(1)
            .and_then(|i| REASONS.get(i as usize))
            .copied()
            .unwrap_or("unknown");
        let kl = take(1)?[0] as usize;
        if kl > KIND_NAME_MAX {
            return Err(bad("kind name too long"));
        }
        let kind = String::from_utf8_lossy(take(kl)?).into_owned();
        let dl = u16::from_le_bytes(take(2)?.try_into().map_err(|_| bad("detail"))?) as usize;
        if dl > DETAIL_MAX {
            return Err(bad("detail too long"));
        }
        let detail = String::from_utf8_lossy(take(dl)?).into_owned();
        out.push(Entry {
            kind,
            reason,
            detail,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> bpf::CaptureReport {
        let mut r = bpf::CaptureReport::default();
        r.unavailable.push(bpf::Unavailable {
            kind: "security.capability",
            reason: bpf::Reason::Verifier,
            detail: "tp_btf/cap_capable: not in this kernel\nfexit/cap_capable: R3 invalid".into(),
        });
        r.unavailable.push(bpf::Unavailable {
            kind: "perf.net_traffic",
            reason: bpf::Reason::NoHook,
            detail: "x".repeat(DETAIL_MAX + 10),
        });
        r
    }

    #[test]
    fn round_trips_with_details_cut() {
        let b = encode(&report()).expect("a record");
        let e = decode(&b).expect("decodes");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].kind, "security.capability");
        assert_eq!(e[0].reason, "verifier");
        assert!(e[0].detail.contains("R3 invalid"));
        assert_eq!(e[1].reason, "no_hook");
        assert_eq!(e[1].detail.len(), DETAIL_MAX);
        assert_eq!(encode(&bpf::CaptureReport::default()), None);
    }

    #[test]
    fn every_cut_and_flip_is_an_error_or_a_value_never_a_panic() {
        let b = encode(&report()).expect("a record");
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "cut at {n} decoded");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0xff;
            let _ = decode(&c);
        }
    }
}
