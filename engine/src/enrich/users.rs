//! User and group names from `/etc/passwd` and `/etc/group` (the files, not NSS: the
//! engine must not block on a directory service), re-read when they change. Live only:
//! the names found go into the process records, so replay needs neither file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Lines read from each file at most.
const LINES_MAX: usize = 1 << 20;

#[derive(Debug, Default)]
struct NameFile {
    path: PathBuf,
    modified: Option<SystemTime>,
    names: HashMap<u32, Arc<str>>,
}

impl NameFile {
    fn new(path: PathBuf) -> NameFile {
        let mut f = NameFile {
            path,
            ..NameFile::default()
        };
        f.refresh();
        f
    }

    /// Re-reads the file if its modification time changed (or it appeared or went).
    fn refresh(&mut self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified && (modified.is_some() || self.names.is_empty()) {
            return;
        }
        self.modified = modified;
        self.names = std::fs::read(&self.path)
            .map(|b| parse(&b))
            .unwrap_or_default();
    }
}

/// `name:x:id:...` lines: the first name for each id wins (as `getpwuid` does).
fn parse(bytes: &[u8]) -> HashMap<u32, Arc<str>> {
    let mut names = HashMap::new();
    for line in bytes.split(|&b| b == b'\n').take(LINES_MAX) {
        let mut fields = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with(b"#") || name.starts_with(b"+") {
            continue;
        }
        let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) else {
            continue;
        };
        names
            .entry(id)
            .or_insert_with(|| Arc::from(String::from_utf8_lossy(name).as_ref()));
    }
    names
}

/// Names of users and groups by id.
#[derive(Debug)]
pub(crate) struct Names {
    users: NameFile,
    groups: NameFile,
}

impl Names {
    /// From `/etc/passwd` and `/etc/group` under `root` (`/` on a host).
    pub(crate) fn load(root: &std::path::Path) -> Names {
        Names {
            users: NameFile::new(root.join("etc/passwd")),
            groups: NameFile::new(root.join("etc/group")),
        }
    }

    pub(crate) fn refresh(&mut self) {
        self.users.refresh();
        self.groups.refresh();
    }

    /// The user's name, empty when the id has none.
    pub(crate) fn user(&self, uid: u32) -> Arc<str> {
        self.users.names.get(&uid).cloned().unwrap_or_else(empty)
    }

    pub(crate) fn group(&self, gid: u32) -> Arc<str> {
        self.groups.names.get(&gid).cloned().unwrap_or_else(empty)
    }
}

fn empty() -> Arc<str> {
    Arc::from("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_and_odd_lines_are_passed_over() {
        let n = parse(
            b"root:x:0:0:root:/root:/bin/bash\n# comment\n+nis\nbroken\nbad:x:notanumber:\n\
              alice:x:1000:1000::/home/alice:/bin/sh\nalias:x:1000:1000::/:/bin/sh\n",
        );
        assert_eq!(n.get(&0).map(|s| &**s), Some("root"));
        assert_eq!(n.get(&1000).map(|s| &**s), Some("alice"));
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn names_are_reread_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("names-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), "a:x:5:5::/:/bin/sh\n").unwrap();
        let mut names = Names::load(&dir);
        assert_eq!(&*names.user(5), "a");
        assert_eq!(&*names.group(5), "");
        std::fs::write(dir.join("etc/group"), "g:x:5:\n").unwrap();
        names.refresh();
        assert_eq!(&*names.group(5), "g");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
