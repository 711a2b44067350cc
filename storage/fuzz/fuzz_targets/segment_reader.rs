//! Arbitrary bytes as a segment file, sealed and unsealed: open, scan, read every block,
//! recover. Must never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage::{DecodedBlock, Segment};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("segfuzz-{}", std::process::id()));
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
        if name.ends_with(".open") {
            let _ = storage::recovery::recover_segment(&path);
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("seg"));
    }
});
