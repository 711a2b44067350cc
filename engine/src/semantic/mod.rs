//! The semantic path: per-core window partials folded on the core threads, merged per
//! window by the semantic thread into the summary stream; and the same computed
//! offline from the segments (`engine summarize`), byte for byte (docs/semantic.md).
//!
//! - [`partial`]: one core's aggregate of one window (bounded maps, no allocation per
//!   record).
//! - [`windows`]: a core's open windows and the lateness rule, the same state machine
//!   live and offline.
//! - [`marker`]: the in-band record that says where a core closed a window.
//! - [`core`]: the core thread's side (fold, close on the clock, hand over, mark).
//! - [`summary`]: merged windows and their JSON lines.
//! - [`tables`]: the enrichment tables notable events are looked up in, live and
//!   offline.
//! - [`correlate`]: correlations over notable events and window facts.
//! - [`thread`]: the semantic thread.
//! - [`rate`]: the semantic thread measured alone (for the benchmarks).

pub(crate) mod core;
pub(crate) mod correlate;
pub(crate) mod marker;
pub(crate) mod partial;
pub(crate) mod rate;
pub(crate) mod summary;
pub(crate) mod tables;
pub(crate) mod thread;
pub(crate) mod windows;
