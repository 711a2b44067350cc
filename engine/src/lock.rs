//! One engine per data directory: an exclusive `flock` on `DIR/engine.lock`, held for
//! the life of the process (the kernel releases it when the process dies, even by
//! SIGKILL, so a crash never leaves a stale lock). The file holds the owner's pid, for
//! the message a second engine prints. Offline tools (replay, inspect, verify) take no
//! lock: they only read, and an unsealed `.open` segment is read up to its last sound
//! block.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub(crate) use storage::LOCK_FILE_NAME;

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "storage.data_dir {dir}: another engine{} is using it (it holds the lock on {lock}); stop it, or give this one another --data-dir",
        owner.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy {
        dir: PathBuf,
        lock: PathBuf,
        owner: Option<u32>,
    },
    #[error(
        "storage.data_dir {dir}: {lock} is not a regular file of its own (a symlink, a FIFO, a hard link, or it keeps being replaced); remove it"
    )]
    NotALockFile { dir: PathBuf, lock: PathBuf },
    #[error("storage.data_dir {dir}: cannot {op} the lock file {lock}: {source}")]
    Io {
        dir: PathBuf,
        lock: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Tries to lock the file the name holds before giving up (it only fails again when
/// the name is replaced between the open and the lock, each time).
const LOCK_ATTEMPTS: usize = 8;

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the exclusive lock on `dir` without waiting.
    pub(crate) fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let lock = dir.join(LOCK_FILE_NAME);
        let io = |op, source| LockError::Io {
            dir: dir.to_path_buf(),
            lock: lock.clone(),
            op,
            source,
        };
        // The lock is held on a read-only descriptor, so the engine keeps no file of the
        // data directory open for writing between segments (a read-only remount of the
        // directory then takes effect, and shows at the next segment). Never through a
        // symlink, never blocking on a FIFO: only a regular file of ours is locked.
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags(libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .mode(0o644)
                .open(&lock)
        };
        for _ in 0..LOCK_ATTEMPTS {
            let mut file = open(false).map_err(|e| io("open", e))?;
            let meta = file.metadata().map_err(|e| io("stat", e))?;
            if !meta.file_type().is_file() || meta.nlink() != 1 {
                return Err(LockError::NotALockFile {
                    dir: dir.to_path_buf(),
                    lock,
                });
            }
            // SAFETY: flock on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Busy {
                        dir: dir.to_path_buf(),
                        lock,
                        owner: text.trim().parse().ok(),
                    });
                }
                return Err(io("lock", e));
            }
            // The name may have been unlinked or replaced between the open and the lock:
            // then a second engine could lock a different file. Lock the file the name
            // holds now.
            match std::fs::symlink_metadata(&lock) {
                Ok(now) if now.ino() == meta.ino() && now.dev() == meta.dev() => {}
                _ => continue,
            }
            // Ours: record the pid (only for the message a second engine prints; a full
            // disk must not stop this one), through a descriptor checked to be the same
            // file, closed at once.
            let recorded = open(true).and_then(|mut w| {
                let m = w.metadata()?;
                if m.ino() != meta.ino() || m.dev() != meta.dev() {
                    return Err(std::io::Error::other("the lock file was replaced"));
                }
                w.set_len(0)?;
                w.write_all(format!("{}\n", std::process::id()).as_bytes())
            });
            if let Err(e) = recorded {
                eprintln!(
                    "engine: {}: cannot record our pid ({e}); the lock is held all the same",
                    lock.display()
                );
            }
            return Ok(DataDirLock { _file: file });
        }
        Err(LockError::NotALockFile {
            dir: dir.to_path_buf(),
            lock,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_and_names_the_owner() {
        let dir = std::env::temp_dir().join(format!("engine-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = DataDirLock::acquire(&dir).unwrap();
        // flock locks belong to the open file description: a second open in the same
        // process conflicts just as another process would.
        let e = DataDirLock::acquire(&dir).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LockError::Busy { owner: Some(p), .. } if p == std::process::id()));
        assert!(msg.contains("another engine") && msg.contains(&std::process::id().to_string()));
        drop(first);
        let again = DataDirLock::acquire(&dir);
        assert!(again.is_ok(), "released on drop: {again:?}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn symlinks_and_fifos_are_refused_and_their_targets_untouched() {
        let dir = std::env::temp_dir().join(format!("engine-lock-evil-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let lock = dir.join(LOCK_FILE_NAME);
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let e = DataDirLock::acquire(&dir).unwrap_err();
        assert!(e.to_string().contains("engine.lock"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        // A dangling link creates nothing.
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(dir.join("nologin"), &lock).unwrap();
        assert!(DataDirLock::acquire(&dir).is_err());
        assert!(!dir.join("nologin").exists());
        // A FIFO: refused at once, not a hang.
        std::fs::remove_file(&lock).unwrap();
        let c = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = DataDirLock::acquire(&dir).unwrap_err();
        assert!(matches!(e, LockError::NotALockFile { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
