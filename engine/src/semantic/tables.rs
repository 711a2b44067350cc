//! The enrichment tables the semantic path looks notable events up in: rebuilt from
//! the enrichment stream's records, in their order, applying those stamped before an
//! event (at equal times the event first, as replay merges), so that live and
//! `engine summarize` enrich every notable event the same way.
//!
//! Live, the enrichment thread hands every record it writes to the semantic thread
//! ([`FedTables`]); offline they are read from `stream-1000000` ([`StoredTables`]).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use storage::{ReadOptions, Reader};

use crate::enrich::enricher::{ENRICH_STREAM_ID, EnrichShared};
use crate::enrich::tables::Tables;
use crate::enrich::tap::TapConsumer;

/// Tables as of a time.
pub(crate) trait TablesAt {
    /// The tables with every record stamped before `ts` applied.
    fn at(&mut self, ts: u64) -> &Tables;
}

/// Tables the semantic thread reads live: [`TablesAt`], and how far they have been fed.
pub(crate) trait LiveTables: TablesAt + Send {
    /// Every record stamped before this has been fed (`u64::MAX`: all of them).
    fn fed_through(&self) -> u64;
}

/// Live: the records the enrichment thread fed, applied as far as asked.
pub(crate) struct FedTables {
    feed: TapConsumer,
    shared: Arc<EnrichShared>,
    tables: Tables,
    held: VecDeque<(u64, u16, Vec<u8>)>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for FedTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FedTables")
            .field("held", &self.held.len())
            .finish()
    }
}

impl FedTables {
    pub(crate) fn new(feed: TapConsumer, shared: Arc<EnrichShared>) -> FedTables {
        FedTables {
            feed,
            shared,
            tables: Tables::for_reader(),
            held: VecDeque::new(),
            buf: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while self.feed.pop_into(&mut self.buf) {
            if self.buf.len() < 10 {
                continue;
            }
            let ts = u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"));
            let kind = u16::from_le_bytes([self.buf[8], self.buf[9]]);
            self.held.push_back((ts, kind, self.buf[10..].to_vec()));
        }
    }
}

impl LiveTables for FedTables {
    fn fed_through(&self) -> u64 {
        self.shared.written_through.load(Ordering::Acquire)
    }
}

impl TablesAt for FedTables {
    fn at(&mut self, ts: u64) -> &Tables {
        self.drain();
        while self.held.front().is_some_and(|r| r.0 < ts) {
            if let Some((_, kind, bytes)) = self.held.pop_front() {
                // A record that does not decode changes nothing (replay skips it too).
                let _ = self.tables.apply_record(kind, &bytes);
            }
        }
        &self.tables
    }
}

/// Offline: the enrichment stream of a data directory, read as far as asked.
pub(crate) struct StoredTables {
    reader: Option<Reader>,
    next: Option<(u64, u16, Vec<u8>)>,
    tables: Tables,
}

impl std::fmt::Debug for StoredTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTables").finish()
    }
}

impl StoredTables {
    /// `None` when the directory has no enrichment stream.
    pub(crate) fn open(dir: &Path) -> crate::error::Result<Option<StoredTables>> {
        if !storage::stream_dir(dir, ENRICH_STREAM_ID).is_dir() {
            return Ok(None);
        }
        let opts = ReadOptions {
            streams: Some(vec![ENRICH_STREAM_ID]),
            file_order: true,
            ..ReadOptions::default()
        };
        let reader = Reader::open_expecting_abi(dir, &opts, Some(bpf::abi::ABI_VERSION))?;
        Ok(Some(StoredTables {
            reader: Some(reader),
            next: None,
            tables: Tables::for_reader(),
        }))
    }

    fn fetch(&mut self) {
        if self.next.is_some() {
            return;
        }
        let Some(r) = &mut self.reader else {
            return;
        };
        match r.next_record() {
            Ok(Some(rec)) => self.next = Some((rec.ts_ns, rec.kind, rec.bytes.to_vec())),
            // The end, or a block that does not read: the tables stay as they are.
            _ => self.reader = None,
        }
    }
}

impl TablesAt for StoredTables {
    fn at(&mut self, ts: u64) -> &Tables {
        loop {
            self.fetch();
            match &self.next {
                Some((t, _, _)) if *t < ts => {
                    if let Some((_, kind, bytes)) = self.next.take() {
                        let _ = self.tables.apply_record(kind, &bytes);
                    }
                }
                _ => break,
            }
        }
        &self.tables
    }
}
