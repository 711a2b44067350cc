//! The data-directory walk (issue 8, defect 9): a FIFO named like a segment never blocks
//! a reader, and everything passed over is reported, except the engine's lock file.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use storage::{
    IoBackend, LOCK_FILE_NAME, ReadOptions, Reader, SkipReason, Stats, StreamWriter, VerifyOptions,
    stream_dir, verify_dir,
};

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread and fails the test if it does not finish within 10 s (a FIFO
/// opened for reading without O_NONBLOCK waits for a writer forever).
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} hung (blocked on a FIFO?)"))
}

/// A data dir with one stream of 300 records, plus: a FIFO named like a sealed segment,
/// a stray file in the stream dir, a `stream-` directory with a bad name, a `stream-NNN`
/// regular file, a segment outside any stream, the lock file and an unrelated file.
fn messy_dir(dir: &Path) -> Vec<PathBuf> {
    let mut w = StreamWriter::create(config(dir, 0, IoBackend::Portable)).unwrap();
    write(&mut w, 0, 0..300);
    w.close().unwrap();
    let s = stream_dir(dir, 0);
    let fifo = s.join("00000000000000000009-0000000999.seg");
    mkfifo(&fifo);
    let stray = s.join("notes.txt");
    std::fs::write(&stray, b"hello").unwrap();
    let bad_stream = dir.join("stream-abc");
    std::fs::create_dir(&bad_stream).unwrap();
    let file_stream = dir.join("stream-007");
    std::fs::write(&file_stream, b"").unwrap();
    let loose = dir.join("00000000000000000001-0000000001.seg");
    std::fs::write(&loose, b"").unwrap();
    std::fs::write(dir.join(LOCK_FILE_NAME), b"").unwrap();
    std::fs::write(dir.join("README"), b"not ours").unwrap();
    vec![fifo, stray, bad_stream, file_stream, loose]
}

fn assert_reported(skipped: &storage::SkipList, expected: &[PathBuf]) {
    let mut got: Vec<&Path> = skipped.entries().iter().map(|s| s.path.as_path()).collect();
    got.sort();
    let mut want: Vec<&Path> = expected.iter().map(|p| p.as_path()).collect();
    want.sort();
    assert_eq!(got, want, "every skipped entry reported, the lock file not");
    let fifo = skipped
        .entries()
        .iter()
        .find(|s| s.path == expected[0])
        .unwrap();
    assert_eq!(
        fifo.reason,
        SkipReason::WrongType {
            found: "fifo",
            expected: "regular file"
        }
    );
    assert!(
        fifo.to_string().contains("a fifo, not a regular file"),
        "{fifo}"
    );
}

#[test]
fn a_fifo_named_seg_never_blocks_and_everything_skipped_is_reported() {
    let dir = TempDir::new("fifo");
    let expected = messy_dir(dir.path());
    let d = dir.path().to_path_buf();

    let (n, skipped) = within_deadline("replay", move || {
        let mut r = Reader::open(&d, &ReadOptions::default()).unwrap();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        (n, r.skipped().clone())
    });
    assert_eq!(n, 300);
    assert_reported(&skipped, &expected);

    let d = dir.path().to_path_buf();
    let stats = within_deadline("inspect", move || Stats::collect(&d).unwrap());
    assert_eq!(stats.total().events + stats.total().loss_records, 300);
    assert_reported(&stats.skipped, &expected);

    let d = dir.path().to_path_buf();
    let report = within_deadline("verify", move || {
        verify_dir(&d, &VerifyOptions::default(), &mut |_| Ok(())).unwrap()
    });
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!((report.files, report.records), (1, 300));
    assert_reported(&report.skipped, &expected);

    // Opened directly, the FIFO is an error naming it, not a hang.
    let fifo = expected[0].clone();
    let err = within_deadline("Segment::open", move || {
        storage::Segment::open(&fifo).unwrap_err()
    });
    assert!(
        matches!(
            err,
            storage::StorageError::NotRegularFile { found: "fifo", .. }
        ),
        "{err}"
    );
    // Recovery of a FIFO named `.open` neither blocks nor touches it.
    let open_fifo = stream_dir(dir.path(), 0).join("00000000000000000009-0000000998.open");
    mkfifo(&open_fifo);
    let d = dir.path().to_path_buf();
    let w = within_deadline("writer start-up recovery", move || {
        StreamWriter::create(config(&d, 0, IoBackend::Portable)).map(|w| w.recovered().len())
    });
    assert_eq!(w.unwrap(), 0);
    assert!(open_fifo.exists());
}

#[test]
fn a_clean_dir_with_the_lock_file_reports_nothing_skipped() {
    let dir = TempDir::new("lockfile");
    let mut w = StreamWriter::create(config(dir.path(), 3, IoBackend::Portable)).unwrap();
    write(&mut w, 3, 0..10);
    w.close().unwrap();
    std::fs::write(dir.path().join(LOCK_FILE_NAME), b"").unwrap();
    let r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
    assert!(r.skipped().is_empty(), "{:?}", r.skipped());
    assert!(Stats::collect(dir.path()).unwrap().skipped.is_empty());
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| Ok(())).unwrap();
    assert!(report.skipped.is_empty() && report.is_sound());
}
