//! The collector engine: kernel capture joined to segment storage by a share-nothing,
//! thread-per-core pipeline (decode in place, filter, sample, write), the control thread
//! that turns kernel drop counters into in-band loss records, and the offline tools
//! (replay, inspect, verify).

mod cidr;
pub mod cli;
pub mod config;
pub mod core;
pub mod filter;
mod lock;
pub mod offline;
mod outage;
pub mod output;
pub mod pipeline;
pub mod run;
pub mod sampler;
mod signals;
pub mod tail;
