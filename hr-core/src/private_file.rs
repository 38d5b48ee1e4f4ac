//! Files that hold HR data or the hub's state: created readable and
//! writable by their owner only, written whole or not at all, and locked
//! against a second writer.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Opens `options` for a file only its owner may read (mode 0600 where
/// the platform has modes; a file that exists keeps its own).
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Creates `path` empty and private if it does not exist; an existing file
/// is left as it is. What SQLite opens next (and its `-wal` and `-shm`
/// files, which take the database file's mode) is then private.
pub fn create_private(path: &Path) -> io::Result<()> {
    private(OpenOptions::new().write(true).create(true).truncate(false)).open(path).map(drop)
}

/// Why a lock could not be taken.
pub(crate) enum LockError {
    /// Another holder has it: what its lock file says about it.
    Held(String),
    /// The lock file could not be opened.
    Io(io::Error),
}

/// Takes the exclusive lock of `<path>.lock` and writes who holds it
/// (process id, host, since when) into it; the lock lasts as long as the
/// returned file is open, and ends with the process whatever happens to it.
pub(crate) fn lock_beside(path: &Path) -> Result<File, LockError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let mut file = private(OpenOptions::new().read(true).write(true).create(true).truncate(false)).open(&lock_path).map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held(if holder.is_empty() { "another process".into() } else { holder.chars().take(200).collect() }));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "this host".into());
    let holder = format!("process {} on {host} since {}", std::process::id(), chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
    file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(holder.as_bytes())).map_err(LockError::Io)?;
    Ok(file)
}

/// Writes `bytes` to `path` whole or not at all, readable by its owner
/// only: into a new file beside it, then renamed over it. A symbolic link
/// at `path` is replaced, never followed, so nobody can point a report
/// at another file.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let report = dir.path().join("report.json");
/// hr_core::write_private(&report, b"{}").unwrap();
/// assert_eq!(std::fs::read(&report).unwrap(), b"{}");
/// ```
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut temporary = PathBuf::from(parent);
    temporary.push(format!(".{}.{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4().simple()));
    let written = private(OpenOptions::new().write(true).create_new(true)).open(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    #[cfg(unix)]
    fn files_are_created_private_and_a_report_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.sqlite3");
        create_private(&store).unwrap();
        assert_eq!(mode(&store), 0o600);

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let report = dir.path().join("report.json");
        std::os::unix::fs::symlink(&victim, &report).unwrap();
        write_private(&report, b"{\"ok\":true}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "the report followed the link");
        assert_eq!(std::fs::read_to_string(&report).unwrap(), "{\"ok\":true}");
        assert_eq!(mode(&report), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "store, victim and report only: no temporary file left behind");
    }

    #[test]
    fn a_second_lock_names_the_first_holder_and_is_free_once_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let first = lock_beside(&path).ok().expect("the first lock is taken");
        match lock_beside(&path) {
            Err(LockError::Held(holder)) => assert!(holder.contains(&format!("process {}", std::process::id())), "{holder}"),
            _ => panic!("a second lock was taken while the first is held"),
        }
        drop(first);
        assert!(lock_beside(&path).is_ok(), "the lock outlived its holder");
    }
}
