//! Sinks of the summary stream. Each takes whole JSON lines; the semantic thread calls
//! them in order, and a sink never blocks the data plane (only the semantic thread).

pub(crate) mod grpc;
pub(crate) mod hub;
pub(crate) mod jsonl;
pub(crate) mod lines;
pub(crate) mod metrics;
pub(crate) mod nats;
pub(crate) mod raw;

/// The export API's messages and service, generated from `engine/proto/kevent.proto`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub(crate) mod proto {
    tonic::include_proto!("kevent.v1");
}

/// A consumer of summary lines.
pub(crate) trait Sink: Send {
    /// One JSON line, with its newline.
    fn line(&mut self, line: &[u8]) -> std::io::Result<()>;
    /// Pushes out what is buffered.
    fn flush(&mut self) -> std::io::Result<()>;
}
