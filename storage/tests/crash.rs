//! A stream cut at many byte offsets across its last blocks (as a crash leaves it):
//! each cut reopens, recovers, and yields every complete block, with a clear report of
//! what was truncated and no panic.

mod common;

use common::*;
use storage::recovery::recover_stream_dir;
use storage::{IoBackend, ReadOptions, Reader, Segment, StreamWriter};

#[test]
fn every_cut_recovers_every_complete_block() {
    let dir = TempDir::new("crash");
    let mut cfg = config(dir.path(), 0, IoBackend::Uring);
    cfg.segment_bytes_max = 1 << 30; // one segment
    let mut w = StreamWriter::create(cfg).unwrap();
    write(&mut w, 0, 0..4000);
    w.flush().unwrap();
    // The process "dies": the writer is dropped without sealing.
    drop(w);
    let sdir = dir.path().join("stream-000");
    let segs = segments(&sdir);
    assert_eq!(segs.len(), 1);
    let open = &segs[0];
    assert_eq!(open.extension().unwrap(), "open");
    let original = std::fs::read(open).unwrap();
    let full = Segment::open(open).unwrap();
    assert!(!full.sealed());
    let blocks = full.blocks().to_vec();
    assert!(blocks.len() >= 5, "{} blocks", blocks.len());
    drop(full);

    // Cut points: every byte across the last two blocks, plus a spread over the rest.
    let last_two = blocks[blocks.len() - 2].offset as usize;
    let mut cuts: Vec<usize> = (last_two..original.len()).step_by(7).collect();
    cuts.extend((0..last_two).step_by(997));
    cuts.push(original.len());
    let name = open.file_name().unwrap().to_owned();
    for cut in cuts {
        let case = TempDir::new("cut");
        let s = case.path().join("stream-000");
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(s.join(&name), &original[..cut]).unwrap();

        let complete: Vec<_> = blocks
            .iter()
            .filter(|b| (b.offset + b.total_len()) as usize <= cut)
            .collect();
        let records: u64 = complete.iter().map(|b| b.count as u64).sum();

        let report = recover_stream_dir(&s).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        if cut < 256 {
            // Not even a header: nothing was ever acknowledged; the file goes.
            assert!(report.is_empty(), "cut {cut}");
            assert!(segments(&s).is_empty());
            continue;
        }
        assert_eq!(report.len(), 1, "cut {cut}");
        let r = &report[0];
        assert_eq!(r.blocks, complete.len(), "cut {cut}");
        assert_eq!(r.records, records, "cut {cut}");
        let end = complete.last().map_or(256, |b| b.offset + b.total_len()) as usize;
        assert_eq!(r.truncated_bytes as usize, cut - end, "cut {cut}");
        assert_eq!(r.reason.is_some(), cut != end, "cut {cut}: {r}");
        assert!(r.to.extension().unwrap() == "seg");

        // Sealed now; replay gives exactly the records of the complete blocks.
        let mut reader = Reader::open(case.path(), &ReadOptions::default()).unwrap();
        let mut n = 0u64;
        while let Some(rec) = reader.next_record().unwrap() {
            let (ts, kind, weight, bytes) = record(n, 0);
            assert_eq!(
                (rec.ts_ns, rec.kind, rec.weight, rec.bytes),
                (ts, kind, weight, &bytes[..])
            );
            n += 1;
        }
        assert_eq!(n, records, "cut {cut}");
        // A second recovery finds nothing to do.
        assert!(recover_stream_dir(&s).unwrap().is_empty());
    }
}

#[test]
fn a_new_writer_recovers_what_a_crash_left() {
    let dir = TempDir::new("crash-restart");
    let mut w = StreamWriter::create(config(dir.path(), 0, IoBackend::Uring)).unwrap();
    write(&mut w, 0, 0..1000);
    w.flush().unwrap();
    drop(w);
    let mut w = StreamWriter::create(config(dir.path(), 0, IoBackend::Uring)).unwrap();
    assert!(!w.recovered().is_empty(), "the .open segment was recovered");
    write(&mut w, 0, 1000..1500);
    w.close().unwrap();
    let mut r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 1500, "nothing flushed before the crash was lost");
}
