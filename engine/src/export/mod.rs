//! Sinks of the summary stream. Each takes whole JSON lines; the semantic thread calls
//! them in order, and a sink never blocks the data plane (only the semantic thread).

pub(crate) mod jsonl;

/// A consumer of summary lines.
pub(crate) trait Sink: Send {
    /// One JSON line, with its newline.
    fn line(&mut self, line: &[u8]) -> std::io::Result<()>;
    /// Pushes out what is buffered.
    fn flush(&mut self) -> std::io::Result<()>;
}
