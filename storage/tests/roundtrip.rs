//! Writer to reader: exact bytes, merged order, filters, rotation, losses, weights,
//! file modes and names, both I/O backends.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use storage::{IoBackend, Loss, LossReason, ReadOptions, Reader, Stats, StreamWriter};

fn roundtrip(io: IoBackend) {
    let dir = TempDir::new("roundtrip");
    let n = 8000u64;
    for stream in 0..3u32 {
        let mut w = StreamWriter::create(config(dir.path(), stream, io)).unwrap();
        write(&mut w, stream, 0..n);
        w.append_loss(&Loss {
            stream,
            cpu: stream,
            kind: 10,
            reason: LossReason::KernelRingFull as u16,
            count: 42,
            start_ns: 5,
            end_ns: 1_000_000 + n * 1000,
        })
        .unwrap();
        let stats = w.close().unwrap();
        assert!(stats.segments_sealed >= 3, "rotation by size: {stats:?}");
    }
    // Names sort in creation order; files are 0640; all sealed.
    let sdir = dir.path().join("stream-001");
    let segs = segments(&sdir);
    assert!(segs.iter().all(|p| p.extension().unwrap() == "seg"));
    for p in &segs {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}", p.display());
    }

    let mut r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
    let mut last = 0;
    let mut seen = [0u64; 3];
    let mut losses = 0;
    while let Some((stream, rec)) = r.next_with_stream().unwrap() {
        assert!(rec.ts_ns >= last, "merged in timestamp order");
        last = rec.ts_ns;
        if rec.kind == storage::KIND_LOSS {
            let l = Loss::decode(rec.bytes).unwrap();
            assert_eq!((l.stream, l.count), (stream, 42));
            losses += 1;
            continue;
        }
        let i = seen[stream as usize];
        let (ts, kind, weight, bytes) = record(i, stream);
        assert_eq!(
            (rec.ts_ns, rec.kind, rec.weight, rec.bytes),
            (ts, kind, weight, &bytes[..])
        );
        seen[stream as usize] += 1;
    }
    assert_eq!(seen, [n; 3]);
    assert_eq!(losses, 3);

    let stats = Stats::collect(dir.path()).unwrap();
    let t = stats.total();
    assert_eq!(t.events, 3 * n);
    assert_eq!(t.loss_records, 3);
    assert_eq!(t.lost.get(&(LossReason::KernelRingFull as u16)), Some(&126));
    let sampled = (0..n).filter(|i| i.is_multiple_of(7)).count() as u64;
    assert_eq!(t.sampled_records, 3 * sampled);
    assert_eq!(t.weighted_events, 3 * (n - sampled + 10 * sampled));
    assert!(
        t.compression_ratio() > 2.0,
        "ratio {}",
        t.compression_ratio()
    );
    assert_eq!(t.min_ts, 1_000_000);
}

#[test]
fn roundtrip_uring() {
    roundtrip(IoBackend::Uring);
}

#[test]
fn roundtrip_portable() {
    roundtrip(IoBackend::Portable);
}

#[test]
fn time_and_kind_filters_skip_blocks() {
    let dir = TempDir::new("filters");
    let mut w = StreamWriter::create(config(dir.path(), 0, IoBackend::Uring)).unwrap();
    write(&mut w, 0, 0..20_000);
    w.close().unwrap();
    let from = 1_000_000 + 5000 * 1000;
    let to = 1_000_000 + 6000 * 1000;
    let opts = ReadOptions {
        from_ns: from,
        to_ns: to,
        kinds: Some(vec![20]),
        ..ReadOptions::default()
    };
    let mut r = Reader::open(dir.path(), &opts).unwrap();
    let mut n = 0;
    while let Some(rec) = r.next_record().unwrap() {
        assert!(rec.ts_ns >= from && rec.ts_ns < to && rec.kind == 20);
        n += 1;
    }
    assert_eq!(n, 200, "every fifth record of 1000");
    let c = r.block_counts();
    assert!(c.skipped > 10 * c.read, "blocks skipped by metadata: {c:?}");
}

#[test]
fn bad_config_names_every_problem() {
    let dir = TempDir::new("badcfg");
    let mut c = config(dir.path(), 0, IoBackend::Portable);
    c.block_bytes = 10;
    c.zstd_level = 99;
    c.inflight_max = 0;
    let e = StreamWriter::create(c).unwrap_err().to_string();
    for field in ["block_bytes", "zstd_level", "inflight_max"] {
        assert!(e.contains(field), "{e}");
    }
    let missing = config(&dir.path().join("nope"), 0, IoBackend::Portable);
    let e = StreamWriter::create(missing).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("not a directory"), "{e}");
}

#[test]
fn retention_deletes_oldest_sealed_segments_first() {
    let dir = TempDir::new("retention");
    let mut c = config(dir.path(), 0, IoBackend::Portable);
    c.retention_bytes_max = 100 << 10;
    let mut w = StreamWriter::create(c).unwrap();
    write(&mut w, 0, 0..30_000);
    let stats = w.close().unwrap();
    assert!(stats.segments_deleted > 0, "{stats:?}");
    let sdir = dir.path().join("stream-000");
    let total: u64 = segments(&sdir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 100 << 10, "kept {total} bytes");
    // What is left is the newest data, contiguous up to the last record.
    let mut r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
    let mut last = None;
    let mut first = None;
    while let Some(rec) = r.next_record().unwrap() {
        first.get_or_insert(rec.ts_ns);
        last = Some(rec.ts_ns);
    }
    assert_eq!(last, Some(record(29_999, 0).0));
    assert!(first.unwrap() > record(0, 0).0, "oldest data went first");
}

#[test]
fn a_new_writer_continues_the_sequence() {
    let dir = TempDir::new("continue");
    let mut w = StreamWriter::create(config(dir.path(), 0, IoBackend::Uring)).unwrap();
    write(&mut w, 0, 0..100);
    w.close().unwrap();
    let mut w = StreamWriter::create(config(dir.path(), 0, IoBackend::Uring)).unwrap();
    write(&mut w, 0, 100..200);
    w.close().unwrap();
    let segs = segments(&dir.path().join("stream-000"));
    assert_eq!(segs.len(), 2);
    let mut r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 200);
}

#[test]
fn rotation_by_age_and_interval_syncs() {
    let dir = TempDir::new("age");
    let mut c = config(dir.path(), 0, IoBackend::Uring);
    c.segment_age_max = std::time::Duration::from_millis(50);
    c.durability = storage::Durability::IntervalMs(10);
    let mut w = StreamWriter::create(c).unwrap();
    write(&mut w, 0, 0..10);
    w.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&mut w, 0, 10..20);
    w.flush().unwrap();
    assert!(
        w.stats().syncs >= 1,
        "interval sync after a block: {:?}",
        w.stats()
    );
    std::thread::sleep(std::time::Duration::from_millis(60));
    w.tick().unwrap();
    assert_eq!(w.stats().segments_sealed, 1, "sealed by age on tick");
    let segs = segments(&dir.path().join("stream-000"));
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].extension().unwrap(), "seg");
    write(&mut w, 0, 20..30);
    let stats = w.close().unwrap();
    assert_eq!(stats.segments_sealed, 2);
    assert_eq!(stats.records, 30);
}

#[test]
fn each_record_carries_its_own_segments_clock_offset() {
    // Two runs of one stream, as across a reboot: the monotonic clock starts over (same
    // timestamps) and maps to wall time through a different offset.
    let dir = TempDir::new("boots");
    let boots = [1_000_000_000_000i64, 9_000_000_000_000];
    for offset in boots {
        let mut c = config(dir.path(), 0, IoBackend::Portable);
        c.mono_to_wall_ns = offset;
        let mut w = StreamWriter::create(c).unwrap();
        write(&mut w, 0, 0..100);
        w.close().unwrap();
    }
    let mut r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
    let mut offsets = std::collections::BTreeMap::new();
    while let Some(loc) = r.next_located().unwrap() {
        *offsets.entry(loc.mono_to_wall_ns).or_insert(0) += 1;
    }
    assert_eq!(
        offsets.into_iter().collect::<Vec<_>>(),
        vec![(boots[0], 100), (boots[1], 100)]
    );

    // A wall-clock window inside the second boot: only its records, though the first
    // boot has records with the very same monotonic timestamps.
    let (lo, hi) = (record(60, 0).0, record(100, 0).0);
    let opts = ReadOptions {
        from_ns: (lo as i64 + boots[1]) as u64,
        to_ns: (hi as i64 + boots[1]) as u64,
        wall_clock: true,
        ..ReadOptions::default()
    };
    let mut r = Reader::open(dir.path(), &opts).unwrap();
    let mut n = 0;
    while let Some(loc) = r.next_located().unwrap() {
        assert_eq!(loc.mono_to_wall_ns, boots[1], "a record of the other boot");
        assert!(loc.record.ts_ns >= lo && loc.record.ts_ns < hi);
        n += 1;
    }
    assert_eq!(n, 40, "records 60..100 of the second boot");
}

#[test]
fn each_record_carries_its_file_block_offset_and_index() {
    // Two segments of stream 0 (two runs) and one of stream 1, in small blocks, so that
    // the merge interleaves blocks of three files.
    let dir = TempDir::new("located");
    for (stream, range) in [(0, 0..400), (0, 400..900), (1, 0..700)] {
        let mut c = config(dir.path(), stream, IoBackend::Portable);
        c.block_bytes = 4096;
        c.segment_bytes_max = 64 << 20;
        let mut w = StreamWriter::create(c).unwrap();
        write(&mut w, stream, range);
        w.close().unwrap();
    }
    let mut files = segments(&dir.path().join("stream-000"));
    assert_eq!(files.len(), 2);
    files.extend(segments(&dir.path().join("stream-001")));
    // Every block of every file, with its records decoded independently of the reader.
    let mut expected = std::collections::BTreeMap::new();
    let (mut buf, mut decoded) = (Vec::new(), storage::DecodedBlock::new());
    for f in &files {
        let seg = storage::Segment::open(f).unwrap();
        assert!(seg.blocks().len() > 3, "small blocks: {:?}", seg.blocks());
        for meta in seg.blocks() {
            seg.read_block(meta, &mut buf, &mut decoded).unwrap();
            for i in 0..decoded.len() {
                let r = decoded.record(i);
                expected.insert(
                    (f.clone(), meta.offset, i as u32),
                    (r.ts_ns, r.kind, r.weight, r.bytes.to_vec()),
                );
            }
        }
    }
    assert_eq!(expected.len(), 1600);

    // All records, and only some kinds (the index is the record's place in its block,
    // whatever was filtered out around it).
    for kinds in [None, Some(vec![10, 33])] {
        let opts = ReadOptions {
            kinds: kinds.clone(),
            ..ReadOptions::default()
        };
        let mut r = Reader::open(dir.path(), &opts).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(loc) = r.next_located().unwrap() {
            let key = (loc.path.to_path_buf(), loc.block_offset, loc.index);
            let want = expected
                .get(&key)
                .unwrap_or_else(|| panic!("no such record: {key:?}"));
            let rec = loc.record;
            assert_eq!(
                (rec.ts_ns, rec.kind, rec.weight, rec.bytes),
                (want.0, want.1, want.2, &want.3[..])
            );
            assert!(
                loc.path
                    .starts_with(dir.path().join(format!("stream-{:03}", loc.stream))),
                "{key:?} in stream {}",
                loc.stream
            );
            assert!(seen.insert(key), "each record once");
        }
        let wanted = expected
            .values()
            .filter(|v| kinds.as_ref().is_none_or(|k| k.contains(&v.1)))
            .count();
        assert_eq!(seen.len(), wanted, "kinds {kinds:?}");
    }
}
