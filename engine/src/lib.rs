//! The collector engine: kernel capture joined to segment storage by a share-nothing,
//! thread-per-core pipeline (decode in place, filter, sample, write), the control thread
//! that turns kernel drop counters into in-band loss records, and the offline tools
//! (replay, inspect, verify).
//!
//! The public surface is small on purpose: the config model ([`config`], [`Config`]),
//! the error type ([`Error`]) and the command line ([`cli`], which the `engine` binary
//! runs), and the library API: [`Collector`] runs the collector inside a program and
//! hands its subscribers enriched events, notable events, window summaries and
//! correlations ([`Message`]; docs/api.md). Everything else is crate-private.
//! [`internals`] re-exports what this workspace's benchmarks and allocation tests drive
//! directly; it is not a stable API.

pub mod caps;
mod cidr;
pub mod cli;
mod collector;
pub mod config;
mod core;
mod doctor;
mod enrich;
mod error;
mod export;
mod filter;
mod lock;
mod offline;
mod outage;
mod output;
mod perf;
mod pipeline;
mod run;
mod sampler;
mod semantic;
mod signals;
mod tail;
mod telemetry;
#[cfg(test)]
mod test_alloc;
mod top;
mod unavailable;

pub use collector::{Collector, Message, Report, Subscriber, api};
pub use config::{Config, ConfigError};
pub use error::{Error, Result};

/// The per-event pipeline and output writers, for the benchmarks in `bench/` and the
/// counting-allocator tests. Not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::enrich::tap::{TapConsumer, TapProducer, tap as enrich_tap};
    pub use crate::filter::Filter;
    pub use crate::output::json::JsonWriter;
    pub use crate::output::text::write_text;
    pub use crate::output::time::Rfc3339;
    pub use crate::pipeline::Pipeline;
    pub use crate::run::writer_config;
    pub use crate::sampler::{Sampler, class_of};
    pub use crate::semantic::rate::{SemanticRate, measure as semantic_rate};

    /// The semantic thread's end of a pipeline's window queue (for the benchmarks).
    pub struct SemanticDrain(rtrb::Consumer<Box<crate::semantic::partial::Partial>>);

    impl std::fmt::Debug for SemanticDrain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SemanticDrain").finish()
        }
    }

    impl SemanticDrain {
        /// Drops the partials handed over so far; how many.
        pub fn drain(&mut self) -> usize {
            let mut n = 0;
            while self.0.pop().is_ok() {
                n += 1;
            }
            n
        }
    }

    /// Turns on `config`'s semantic path in `p` (windows from the one holding `now_ns`).
    pub fn attach_semantic(p: &mut Pipeline, config: &crate::Config, now_ns: u64) -> SemanticDrain {
        let s = &config.semantic;
        let (tx, rx) = rtrb::RingBuffer::new(s.queue_windows);
        let core = crate::semantic::core::SemanticCore::new(
            s.window_settings(),
            p.writer.mono_to_wall_ns(),
            tx,
            std::sync::Arc::default(),
            0,
        );
        p.set_semantic(core, now_ns);
        SemanticDrain(rx)
    }
}
