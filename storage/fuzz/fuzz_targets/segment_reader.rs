//! Arbitrary bytes as a segment file, sealed and unsealed, in a data directory: open,
//! scan, read every block, replay (Reader), inspect (Stats), verify, recover. Must never
//! panic, hang or allocate without bound (`-rss_limit_mb`, `-malloc_limit_mb`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage::{DecodedBlock, ReadOptions, Reader, Segment, Stats, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("segfuzz-{}", std::process::id()));
    let dir = storage::stream_dir(&root, 0);
    let _ = std::fs::create_dir_all(&dir);
    for name in ["00000000000000000001-0000000001.seg", "00000000000000000001-0000000002.open"] {
        let path = dir.join(name);
        std::fs::write(&path, data).expect("temp file");
        for seg in [Segment::open(&path), Segment::open_scan(&path)].into_iter().flatten() {
            let mut buf = Vec::new();
            let mut decoded = DecodedBlock::new();
            for meta in seg.blocks() {
                let _ = seg.read_block(meta, &mut buf, &mut decoded);
            }
        }
        for wall_clock in [false, true] {
            let opts = ReadOptions { wall_clock, ..ReadOptions::default() };
            if let Ok(mut r) = Reader::open(&root, &opts) {
                while let Ok(Some(_)) = r.next_record() {}
            }
        }
        if let Ok(s) = Stats::collect(&root) {
            let _ = s.total();
        }
        if let Ok(report) = storage::verify_dir(&root, &VerifyOptions::default(), &mut |_| Ok(())) {
            assert!(report.problems.len() <= storage::PROBLEMS_PER_FILE_MAX);
        }
        if name.ends_with(".open") {
            let _ = storage::recovery::recover_segment(&path);
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("seg"));
    }
});
