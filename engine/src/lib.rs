//! The collector engine. For now: live capture from the per-CPU kernel rings and the
//! text formatting of events (`engine` runs a live tail). The thread-per-core pipeline
//! to segment files comes with the storage crate.

pub mod format;
pub mod tail;
