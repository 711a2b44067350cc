//! The live sources of enrichment: a `/proc` scan (processes that started before the
//! engine, or whose start it missed) and a walk of the cgroup2 mount. Only the live
//! engine reads these; what they find is written into the stream.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{Cgroup, FLAG_FROM_PROC, FLAG_TRUNCATED, Process, STRING_BYTES_MAX};
use super::users::Names;

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one), from `/proc/self/mountinfo`.
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // "36 25 0:31 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw,..."
        let (left, right) = line.split_once(" - ")?;
        (right.split(' ').next()? == "cgroup2")
            .then(|| left.split(' ').nth(4).map(unescape_mount))
            .flatten()
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Every cgroup under `root` (depth first, at most `limit`), with its id (the
/// directory's inode number, which is what the kernel reports as the cgroup id) and its
/// path relative to `root` (`/` for the root).
pub(crate) fn scan_cgroups(root: &Path, limit: usize, mut out: impl FnMut(Cgroup)) -> usize {
    let mut stack = vec![PathBuf::from("/")];
    let mut n = 0;
    while let Some(rel) = stack.pop() {
        if n >= limit {
            break;
        }
        let dir = root.join(rel.strip_prefix("/").unwrap_or(&rel));
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        out(Cgroup {
            id: meta.ino(),
            removed_ns: 0,
            path: Arc::from(rel.to_string_lossy().as_ref()),
        });
        n += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs: Vec<_> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| rel.join(e.file_name()))
            .collect();
        subdirs.sort();
        stack.extend(subdirs.into_iter().rev());
    }
    n
}

/// The pids under `/proc`, ascending.
pub(crate) fn list_pids(proc: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// ns per clock tick of `/proc/PID/stat`'s times.
fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

fn link(path: &Path) -> Arc<str> {
    std::fs::read_link(path)
        .map(|p| Arc::from(p.to_string_lossy().as_ref()))
        .unwrap_or_else(|_| Arc::from(""))
}

fn ids(status: &str, key: &str) -> Option<(u32, u32)> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut it = line[key.len()..].split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Reads process `pid` from `proc` (`/proc`); `None` if it is gone or unreadable (a
/// kernel thread reads with an empty exe). `cgroup_root` is the cgroup2 mount, to turn
/// the process's cgroup path into the id events carry.
pub(crate) fn read_process(
    proc: &Path,
    pid: u32,
    cgroup_root: Option<&Path>,
    names: &Names,
) -> Option<Process> {
    let dir = proc.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // "pid (comm) S ppid ... starttime(22) ...": comm may hold spaces and ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let (uid, euid) = ids(&status, "Uid:")?;
    let (gid, egid) = ids(&status, "Gid:")?;
    let mut flags = FLAG_FROM_PROC;
    let mut cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    while cmdline.last() == Some(&0) {
        cmdline.pop();
    }
    if cmdline.len() > STRING_BYTES_MAX {
        cmdline.truncate(STRING_BYTES_MAX);
        flags |= FLAG_TRUNCATED;
    }
    let cgroup_id = std::fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|s| {
            let rel = s.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
            let root = cgroup_root?;
            let meta = std::fs::metadata(root.join(rel.trim_start_matches('/'))).ok()?;
            Some(meta.ino())
        })
        .unwrap_or(0);
    Some(Process {
        pid,
        ppid,
        uid,
        gid,
        euid,
        egid,
        flags,
        start_ns: start_ticks.saturating_mul(tick_ns()),
        parent_start_ns: 0,
        exit_ns: 0,
        cgroup_id,
        comm: Arc::from(comm),
        exe: link(&dir.join("exe")),
        argv: Arc::from(String::from_utf8_lossy(&cmdline).as_ref()),
        cwd: link(&dir.join("cwd")),
        user: names.user(uid),
        group: names.group(gid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_from_proc() {
        let names = Names::load(Path::new("/"));
        let root = cgroup2_mount();
        let me = std::process::id();
        let p = read_process(Path::new("/proc"), me, root.as_deref(), &names).expect("self");
        assert_eq!(p.pid, me);
        assert_eq!(
            &*p.exe,
            std::env::current_exe().unwrap().to_string_lossy().as_ref()
        );
        assert_eq!(
            &*p.cwd,
            std::env::current_dir().unwrap().to_string_lossy().as_ref()
        );
        // SAFETY: getppid has no preconditions.
        assert_eq!(p.ppid, unsafe { libc::getppid() } as u32);
        // SAFETY: getuid has no preconditions.
        assert_eq!(p.uid, unsafe { libc::getuid() });
        assert!(p.start_ns > 0);
        assert!(p.argv.contains('\0') || !p.argv.is_empty());
        if root.is_some() {
            assert_ne!(p.cgroup_id, 0, "the cgroup path resolves to an id");
        }
        assert!(list_pids(Path::new("/proc")).contains(&me));
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount("/a\\040b\\134c"), PathBuf::from("/a b\\c"));
    }

    #[test]
    fn cgroup_walk_is_bounded() {
        let dir = std::env::temp_dir().join(format!("cgwalk-{}", std::process::id()));
        for d in ["a/b", "a/c", "d"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let mut seen = Vec::new();
        assert_eq!(
            scan_cgroups(&dir, 100, |c| seen.push(c.path.to_string())),
            5
        );
        assert_eq!(seen, ["/", "/a", "/a/b", "/a/c", "/d"]);
        assert_eq!(scan_cgroups(&dir, 2, |_| {}), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
