//! A progress bar with ETA for long offline reads (`engine replay`, `engine summarize`):
//! blocks read of the data directory's total, on stderr, only when both stdout and stderr
//! are terminals (never in a pipe, a file or a log). The output's writes go through
//! [`Suspend`], which lifts the bar while they land, so lines and bar do not mix.

use std::io::{IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// See the module docs; off (every call a no-op) unless both streams are terminals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar over the blocks of `dir` (from its segments' indexes), labelled `what`; off
    /// when stdout or stderr is not a terminal, or the count cannot be had.
    pub(crate) fn new(what: &'static str, dir: &Path) -> Bar {
        Bar::of_streams(what, dir, |_| true)
    }

    /// [`Bar::new`] over the blocks of the streams `counted` keeps (those the progress
    /// is reported for).
    pub(crate) fn of_streams(what: &'static str, dir: &Path, counted: impl Fn(u32) -> bool) -> Bar {
        if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
            return Bar(None);
        }
        let total: u64 = storage::Stats::collect(dir).map_or(0, |s| {
            s.streams
                .iter()
                .filter(|st| counted(st.id))
                .map(|st| st.blocks)
                .sum()
        });
        if total == 0 {
            return Bar(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{prefix}: [{bar:30}] {pos}/{len} blocks ({percent}%), {elapsed} elapsed, ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(what);
        Bar(Some(bar))
    }

    /// Blocks read so far.
    pub(crate) fn set(&self, blocks: u64) {
        if let Some(b) = &self.0 {
            b.set_position(blocks);
        }
    }

    /// The bar's handle, for [`Suspend`].
    pub(crate) fn handle(&self) -> Option<ProgressBar> {
        self.0.clone()
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A writer whose writes lift the bar first (`ProgressBar::suspend`); put it under the
/// output's buffer, so the bar moves once per buffer, not per line.
#[derive(Debug)]
pub(crate) struct Suspend<W> {
    inner: W,
    bar: Option<ProgressBar>,
}

impl<W: Write> Suspend<W> {
    pub(crate) fn new(inner: W, bar: Option<ProgressBar>) -> Suspend<W> {
        Suspend { inner, bar }
    }
}

impl<W: Write> Write for Suspend<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.bar {
            Some(b) => b.suspend(|| self.inner.write_all(buf).map(|()| buf.len())),
            None => self.inner.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.bar {
            Some(b) => b.suspend(|| self.inner.flush()),
            None => self.inner.flush(),
        }
    }
}
