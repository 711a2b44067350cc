//! `verify_dir`: storage checks every structure and its own loss records; the caller's
//! callback checks event records; the report is bounded and names file and offset.

mod common;

use common::*;
use storage::{
    IoBackend, KIND_LOSS, Loss, LossReason, StorageError, StreamWriter, VerifyOptions, verify_dir,
};

fn data_dir(dir: &std::path::Path, abi_version: u32) {
    let mut cfg = config(dir, 0, IoBackend::Portable);
    cfg.abi_version = abi_version;
    let mut w = StreamWriter::create(cfg).unwrap();
    write(&mut w, 0, 0..5000);
    w.append_loss(&Loss {
        stream: 0,
        cpu: 1,
        kind: 10,
        reason: LossReason::KernelRingFull as u16,
        count: 3,
        start_ns: 1,
        end_ns: 2,
    })
    .unwrap();
    w.close().unwrap();
}

#[test]
fn a_sound_dir_counts_everything_and_the_callback_sees_every_event() {
    let dir = TempDir::new("verify-sound");
    data_dir(dir.path(), 7);
    let mut events = 0;
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |r| {
        assert_ne!(r.kind, KIND_LOSS, "loss records are storage's own");
        events += 1;
        Ok(())
    })
    .unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!(events, 5000);
    assert_eq!(report.records, 5001);
    assert!(report.files >= 2 && report.blocks >= report.files);
    assert!(report.skipped.is_empty());
}

#[test]
fn record_problems_name_file_and_block_and_are_bounded_per_file() {
    let dir = TempDir::new("verify-bad");
    data_dir(dir.path(), 7);
    let opts = VerifyOptions {
        problems_per_file_max: 2,
        ..VerifyOptions::default()
    };
    let report = verify_dir(dir.path(), &opts, &mut |r| {
        if r.kind == 10 {
            Err(format!("kind 10 is {} bytes, no good", r.bytes.len()))
        } else {
            Ok(())
        }
    })
    .unwrap();
    assert_eq!(
        report.problem_count(),
        1000,
        "every fifth record is kind 10"
    );
    let files = segments(&storage::stream_dir(dir.path(), 0));
    for p in &report.problems {
        assert!(files.contains(&p.path), "{p}");
        let shown = p.to_string();
        assert!(
            shown.starts_with(&format!(
                "{}: at offset {}: record ",
                p.path.display(),
                p.offset.unwrap()
            )) && shown.contains("(kind 10")
                && shown.contains("no good"),
            "{shown}"
        );
    }
    // Two kept per file, the rest counted per file.
    for f in &files {
        let kept = report.problems.iter().filter(|p| &p.path == f).count();
        assert!(kept <= 2, "{}: {kept}", f.display());
    }
    let omitted: u64 = report.omitted.iter().map(|o| o.count).sum();
    assert_eq!(report.problems.len() as u64 + omitted, 1000);

    // And a bound on the files listed.
    let opts = VerifyOptions {
        problems_per_file_max: 2,
        files_listed_max: 1,
        ..VerifyOptions::default()
    };
    let report = verify_dir(dir.path(), &opts, &mut |r| {
        if r.kind == 10 {
            Err("bad".into())
        } else {
            Ok(())
        }
    })
    .unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.path == report.problems[0].path)
    );
    assert_eq!(report.unlisted_files as usize, files.len() - 1);
    assert_eq!(report.problem_count(), 1000);
}

#[test]
fn abi_mismatch_and_torn_tails_are_problems() {
    let dir = TempDir::new("verify-abi");
    data_dir(dir.path(), 7);
    let report = verify_dir(
        dir.path(),
        &VerifyOptions {
            abi_version: Some(8),
            ..VerifyOptions::default()
        },
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(report.problems.len() as u64, report.files);
    assert_eq!(report.records, 0, "records of another ABI are not decoded");
    let p = &report.problems[0];
    assert!(
        p.message.contains("ABI version 7") && p.message.contains("built for ABI 7"),
        "{p}"
    );

    // A segment cut mid-block: the torn tail, at the offset where it starts.
    let files = segments(&storage::stream_dir(dir.path(), 0));
    let last = files.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    let open = last.with_extension("open");
    std::fs::remove_file(last).unwrap();
    std::fs::write(&open, &bytes[..bytes.len() - 200]).unwrap();
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| Ok(())).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.path, open);
    assert!(p.message.starts_with("unsealed, "), "{p}");

    // Replay with an expected ABI refuses, naming the file and what to do.
    let opts = storage::ReadOptions::default();
    let e = storage::Reader::open_expecting_abi(dir.path(), &opts, Some(8)).unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::AbiMismatch {
                found: 7,
                expected: 8,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.path().is_some_and(|p| p.starts_with(dir.path())), "{e}");
    assert!(storage::Reader::open_expecting_abi(dir.path(), &opts, Some(7)).is_ok());
    assert!(storage::Reader::open_expecting_abi(dir.path(), &opts, None).is_ok());
    // And inspect.
    let e = storage::Stats::collect_expecting_abi(dir.path(), Some(8)).unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::AbiMismatch {
                found: 7,
                expected: 8,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("replay it with an engine built for ABI 7"),
        "{e}"
    );
}

#[test]
fn a_segment_in_the_wrong_stream_is_a_problem() {
    let dir = TempDir::new("verify-stream");
    data_dir(dir.path(), 1);
    let from = storage::stream_dir(dir.path(), 0);
    let to = storage::stream_dir(dir.path(), 5);
    std::fs::rename(&from, &to).unwrap();
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| Ok(())).unwrap();
    assert_eq!(report.problems.len() as u64, report.files);
    assert!(
        report.problems[0].message.contains("header says stream 0"),
        "{}",
        report.problems[0]
    );
}

#[test]
fn an_unreadable_data_dir_is_an_error() {
    let e = verify_dir(
        std::path::Path::new("/nonexistent/data"),
        &VerifyOptions::default(),
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/data"), "{e}");
}
