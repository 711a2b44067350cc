//! The window marker: a record a core thread writes into its own stream when it closes
//! a window ("core k closed window W, and handed its partial over / could not"), and
//! when it starts ("windows open from W"). Offline, the markers say exactly where each
//! window ended in the core's write order, so a record written after its window closed
//! is late by the same rule live and offline.
//!
//! Storage kind [`KIND_WINDOW`], 80 bytes, little-endian:
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 1 | version (1) |
//! | 1 | 1 | op: 1 start (windows open from `window`), 2 close |
//! | 2 | 1 | flags: 0x1 the partial was handed to the semantic thread |
//! | 3 | 1 | zero |
//! | 4 | 4 | top_n in force |
//! | 8 | 8 | window index (wall-clock ns / window_ns) |
//! | 16 | 8 | window_ns |
//! | 24 | 8 | records folded into the window |
//! | 32 | 8 | of which late |
//! | 40 | 8 | min_importance in force (f64 bits; notable events are at or above it) |
//! | 48 | 8 | notable_bytes: room for notable events per window and core |
//! | 56 | 4 | crash_loop_count |
//! | 60 | 4 | crash_loop_ms |
//! | 64 | 4 | tcp_trouble_count |
//! | 68 | 4 | priv_exec_ms |
//! | 72 | 4 | chain_ms |
//! | 76 | 4 | zero |

use super::correlate::Thresholds;

/// Storage kind of window markers (below the enrichment records' 62 and 63).
pub(crate) const KIND_WINDOW: u16 = 61;
/// Bytes of an encoded marker.
pub(crate) const MARKER_LEN: usize = 80;
const VERSION: u8 = 1;

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkerOp {
    Start = 1,
    Close = 2,
}

/// A window marker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Marker {
    pub op: MarkerOp,
    pub delivered: bool,
    pub top_n: u32,
    pub window: u64,
    pub window_ns: u64,
    pub records: u64,
    pub late: u64,
    pub min_importance: f64,
    pub notable_bytes: u64,
    pub thresholds: Thresholds,
}

impl Marker {
    pub(crate) fn encode(&self) -> [u8; MARKER_LEN] {
        let mut b = [0u8; MARKER_LEN];
        b[0] = VERSION;
        b[1] = self.op as u8;
        b[2] = u8::from(self.delivered);
        b[4..8].copy_from_slice(&self.top_n.to_le_bytes());
        b[8..16].copy_from_slice(&self.window.to_le_bytes());
        b[16..24].copy_from_slice(&self.window_ns.to_le_bytes());
        b[24..32].copy_from_slice(&self.records.to_le_bytes());
        b[32..40].copy_from_slice(&self.late.to_le_bytes());
        b[40..48].copy_from_slice(&self.min_importance.to_bits().to_le_bytes());
        b[48..56].copy_from_slice(&self.notable_bytes.to_le_bytes());
        let t = &self.thresholds;
        for (i, v) in [
            t.crash_loop_count,
            t.crash_loop_ms,
            t.tcp_trouble_count,
            t.priv_exec_ms,
            t.chain_ms,
        ]
        .into_iter()
        .enumerate()
        {
            b[56 + 4 * i..60 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses a marker; `None` if the bytes are not one this version knows.
    pub(crate) fn decode(b: &[u8]) -> Option<Marker> {
        if b.len() != MARKER_LEN || b[0] != VERSION || b[2] > 1 {
            return None;
        }
        let op = match b[1] {
            1 => MarkerOp::Start,
            2 => MarkerOp::Close,
            _ => return None,
        };
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let window_ns = u64_at(16);
        let min_importance = f64::from_bits(u64_at(40));
        if window_ns == 0 || !(0.0..=1.0).contains(&min_importance) {
            return None;
        }
        Some(Marker {
            op,
            delivered: b[2] == 1,
            top_n: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            window: u64_at(8),
            window_ns,
            records: u64_at(24),
            late: u64_at(32),
            min_importance,
            notable_bytes: u64_at(48),
            thresholds: Thresholds {
                crash_loop_count: u32_at(56),
                crash_loop_ms: u32_at(60),
                tcp_trouble_count: u32_at(64),
                priv_exec_ms: u32_at(68),
                chain_ms: u32_at(72),
            },
        })
    }
}

/// The window index of a wall-clock time (ns since the epoch; before 1970 is window 0).
pub(crate) fn window_of(wall_ns: i128, window_ns: u64) -> u64 {
    (wall_ns.max(0) as u128 / u128::from(window_ns.max(1))).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_bad_ones_are_refused() {
        let m = Marker {
            op: MarkerOp::Close,
            delivered: true,
            top_n: 10,
            window: 177_000_000,
            window_ns: 10_000_000_000,
            records: 5,
            late: 1,
            min_importance: 0.8,
            notable_bytes: 65536,
            thresholds: Thresholds {
                crash_loop_count: 3,
                crash_loop_ms: 60_000,
                tcp_trouble_count: 5,
                priv_exec_ms: 10_000,
                chain_ms: 60_000,
            },
        };
        assert_eq!(Marker::decode(&m.encode()), Some(m));
        let mut b = m.encode();
        b[1] = 3;
        assert_eq!(Marker::decode(&b), None);
        let mut b = m.encode();
        b[16..24].fill(0);
        assert_eq!(Marker::decode(&b), None, "window_ns 0");
        assert_eq!(Marker::decode(&b[..79]), None);
        let mut b = m.encode();
        b[40..48].copy_from_slice(&f64::NAN.to_bits().to_le_bytes());
        assert_eq!(Marker::decode(&b), None, "min_importance NaN");
        assert_eq!(window_of(25_000_000_000, 10_000_000_000), 2);
        assert_eq!(window_of(-5, 10), 0);
    }
}
