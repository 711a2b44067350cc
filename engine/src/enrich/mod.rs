//! Enrichment: every event knows its process (executable, ancestry, user, group) and
//! its container, live and in offline replay.
//!
//! - Core threads copy the lifecycle events (exec, fork, exit, cgroup mkdir and rmdir)
//!   into a queue per core ([`tap`]), before filtering and sampling, so the tables do
//!   not depend on what the raw path keeps.
//! - The enrichment thread ([`enricher`]) applies them in time order to a process table
//!   (keyed by pid, each entry with its start time, so a reused pid is another process)
//!   and a cgroup table ([`tracker`], [`tables`]), both bounded ([`table`]); it starts
//!   from a `/proc` and cgroup2 scan ([`scan`]), names users and groups ([`users`]), and
//!   reads a container's id, runtime and pod from its cgroup path ([`container`]).
//! - Every table update is written as a record ([`record`]) into the enrichment stream,
//!   with a full snapshot at the head of each segment. Replay rebuilds the tables from
//!   those records alone (from the head of the segment covering `--from`), so the same
//!   segments enrich the same way on any machine, with no `/proc`.

pub(crate) mod container;
pub(crate) mod enricher;
pub(crate) mod record;
pub(crate) mod scan;
pub(crate) mod table;
pub(crate) mod tables;
pub(crate) mod tap;
pub(crate) mod tracker;
pub(crate) mod users;

use bpf::{Event, Kind, Payload};

/// Whether `ev` changes a table (so a core thread copies it to the enrichment thread).
pub(crate) fn is_lifecycle(ev: &Event<'_>) -> bool {
    match ev.kind {
        Kind::ProcessExec
        | Kind::ProcessExit
        | Kind::ContainerCgroupMkdir
        | Kind::ContainerCgroupRmdir => true,
        Kind::ProcessFork => matches!(ev.payload, Payload::ProcessFork(f) if f.is_thread == 0),
        _ => false,
    }
}
