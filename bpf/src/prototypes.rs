//! The argument count of every tracepoint, read from the kernel's BTF: the typedef
//! `btf_trace_NAME` is a pointer to a function prototype whose first parameter is the
//! tracepoint's `void *__data`, then its arguments.
//!
//! Why it is needed: a `tp_btf` program that reads one argument more than the kernel's
//! prototype has is not always refused (the verifier of 6.1 takes `ctx[nr_args]` as the
//! "return value" of a void prototype), it reads whatever lies there. So the loader picks
//! the program of a prototype by its argument count, not by trial. aya's `Btf` keeps its
//! types private, hence this small reader of the type section (every length bounded
//! before use: the file is the kernel's, but the reader never trusts a length).

use std::collections::HashMap;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_PTR: u32 = 2;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// The bytes that follow a type's 12-byte common part, by kind.
fn extra(kind: u32, vlen: u32) -> Option<usize> {
    let vlen = vlen as usize;
    Some(match kind {
        1 => 4,                         // INT
        3 => 12,                        // ARRAY
        4 | 5 => vlen.checked_mul(12)?, // STRUCT, UNION
        6 => vlen.checked_mul(8)?,      // ENUM
        13 => vlen.checked_mul(8)?,     // FUNC_PROTO
        14 => 4,                        // VAR
        15 => vlen.checked_mul(12)?,    // DATASEC
        17 => 4,                        // DECL_TAG
        19 => vlen.checked_mul(12)?,    // ENUM64
        2 | 7..=12 | 16 | 18 => 0,      // PTR, FWD, TYPEDEF, modifiers, FUNC, FLOAT, TYPE_TAG
        _ => return None,
    })
}

/// Argument counts of the tracepoints in the BTF blob `data`, by tracepoint name.
/// `None` when the blob is not BTF this reader understands.
pub(crate) fn tracepoint_args(data: &[u8]) -> Option<HashMap<String, u32>> {
    if u16::from_le_bytes(data.get(0..2)?.try_into().ok()?) != BTF_MAGIC {
        return None;
    }
    let hdr_len = u32_at(data, 4)? as usize;
    let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
    let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
    let types = data.get(
        hdr_len.checked_add(type_off)?..hdr_len.checked_add(type_off)?.checked_add(type_len)?,
    )?;
    let strings = data
        .get(hdr_len.checked_add(str_off)?..hdr_len.checked_add(str_off)?.checked_add(str_len)?)?;
    let name = |off: u32| -> Option<&str> {
        let s = strings.get(off as usize..)?;
        let end = s.iter().position(|&c| c == 0)?;
        std::str::from_utf8(&s[..end]).ok()
    };
    // (kind, vlen, type) of every type, by id (ids start at 1).
    let mut all: Vec<(u32, u32, u32)> = vec![(0, 0, 0)];
    let mut typedefs: Vec<(u32, u32)> = Vec::new();
    let mut at = 0usize;
    while at < types.len() {
        let name_off = u32_at(types, at)?;
        let info = u32_at(types, at + 4)?;
        let size_or_type = u32_at(types, at + 8)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, info & 0xffff);
        if kind == KIND_TYPEDEF {
            typedefs.push((name_off, all.len() as u32));
        }
        all.push((kind, vlen, size_or_type));
        at = at.checked_add(12)?.checked_add(extra(kind, vlen)?)?;
    }
    let mut out = HashMap::new();
    for (name_off, id) in typedefs {
        let Some(tp) = name(name_off).and_then(|n| n.strip_prefix("btf_trace_")) else {
            continue;
        };
        let (_, _, ptr) = all[id as usize];
        let Some(&(KIND_PTR, _, proto)) = all.get(ptr as usize) else {
            continue;
        };
        let Some(&(KIND_FUNC_PROTO, vlen, _)) = all.get(proto as usize) else {
            continue;
        };
        // The first parameter is `void *__data`.
        out.insert(tp.to_string(), vlen.saturating_sub(1));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernels_prototypes_are_read() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
            return;
        };
        let args = tracepoint_args(&data).expect("vmlinux BTF parses");
        // Stable prototypes: sched_process_fork(parent, child), sched_switch(preempt,
        // prev, next, prev_state), inet_sock_set_state(sk, old, new).
        assert_eq!(args.get("sched_process_fork"), Some(&2));
        assert_eq!(args.get("sched_switch"), Some(&4));
        assert_eq!(args.get("inet_sock_set_state"), Some(&3));
        assert!(args.len() > 300, "{} tracepoints", args.len());
    }

    #[test]
    fn anything_that_is_not_btf_is_refused_without_a_panic() {
        assert!(tracepoint_args(b"").is_none());
        assert!(tracepoint_args(&[0x9f, 0xeb, 1, 0]).is_none());
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        for n in [24, 100, 4096, data.len() / 2] {
            let _ = tracepoint_args(&data[..n.min(data.len())]);
        }
    }
}
