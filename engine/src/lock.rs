//! One engine per data directory: an exclusive `flock` on `DIR/engine.lock`, held for
//! the life of the process (the kernel releases it when the process dies, even by
//! SIGKILL, so a crash never leaves a stale lock). The file holds the owner's pid, for
//! the message a second engine prints. Offline tools (replay, inspect, verify) take no
//! lock: they only read, and an unsealed `.open` segment is read up to its last sound
//! block.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
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
    #[error("storage.data_dir {dir}: cannot {op} the lock file {lock}: {source}")]
    Io {
        dir: PathBuf,
        lock: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

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
        // directory then takes effect, and shows at the next segment).
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(false)
            .custom_flags(libc::O_CREAT)
            .mode(0o644)
            .open(&lock)
            .or_else(|_| {
                // O_CREAT with read-only access needs the mode: create it first.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&lock)?;
                std::fs::File::open(&lock)
            })
            .map_err(|e| io("open", e))?;
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
        // Ours now: record the pid through a short-lived descriptor. The pid is only
        // for the message a second engine prints: a full disk must not stop this one.
        if let Err(e) = std::fs::write(&lock, format!("{}\n", std::process::id())) {
            eprintln!(
                "engine: {}: cannot record our pid ({e}); the lock is held all the same",
                lock.display()
            );
        }
        Ok(DataDirLock { _file: file })
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
}
