//! The guard that refuses an input too large to merge in the memory this
//! process may use: the machine's available memory, or less where a cgroup
//! (a container's memory limit) allows less.

use super::ImportError;
use std::path::{Path, PathBuf};

/// Peak resident memory a load and merge need per byte of input, as
/// measured: 2.4-3.2 on 1,000,000 employees and teams (374 MiB of files;
/// the least with mimalloc returning freed memory after 10 ms, the most
/// with its defaults, 2.8 with the system allocator) and 3.4-4.2 on
/// 2 x 100,000 (60 MiB, mimalloc's defaults); rounded up.
pub const MEMORY_PER_INPUT_BYTE: u64 = 5;

/// Limits at or above this are how cgroup v1 writes "no limit".
const UNLIMITED: u64 = 1 << 60;

/// Refuses an input whose merge would need more memory than is available,
/// with an error that says so, instead of being killed by the kernel midway.
///
/// ```
/// use hr_core::fits_in_memory;
/// assert!(fits_in_memory(100 << 20, 8 << 30).is_ok());
/// let err = fits_in_memory(1 << 30, 4 << 30).unwrap_err();
/// assert!(err.to_string().contains("needs about 5120 MiB"));
/// ```
pub fn fits_in_memory(input_bytes: u64, available_bytes: u64) -> Result<(), ImportError> {
    let needed_bytes = input_bytes.saturating_mul(MEMORY_PER_INPUT_BYTE);
    if needed_bytes > available_bytes {
        return Err(ImportError::TooLarge { input_bytes, needed_bytes, available_bytes });
    }
    Ok(())
}

/// Memory this process may still use: the smaller of the machine's
/// `MemAvailable` and its cgroup's headroom; `None` where neither is known.
pub(crate) fn available_memory() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| mem_available(&info));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|membership| cgroup_headroom(&membership, Path::new("/sys/fs/cgroup")));
    match (machine, cgroup) {
        (Some(machine), Some(cgroup)) => Some(machine.min(cgroup)),
        (machine, cgroup) => machine.or(cgroup),
    }
}

/// `MemAvailable` in bytes from the text of /proc/meminfo.
fn mem_available(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Limit minus usage of the process's memory cgroup and of every ancestor
/// (a parent's limit binds its children), the smallest of them; `None`
/// when no level sets a limit. Usage leaves out the inactive page cache,
/// which the kernel reclaims before it runs out (reading a large export
/// fills it). `membership` is the text of /proc/self/cgroup; `root` is
/// where the cgroup file systems are mounted.
fn cgroup_headroom(membership: &str, root: &Path) -> Option<u64> {
    let mut smallest: Option<u64> = None;
    for (dir, files) in cgroup_dirs(membership, root) {
        for level in dir.ancestors().take_while(|d| d.starts_with(root)) {
            let limit = read_bytes(&level.join(files.limit));
            let cache = std::fs::read_to_string(level.join("memory.stat")).ok().and_then(|stat| stat_value(&stat, files.inactive_cache)).unwrap_or(0);
            let usage = read_bytes(&level.join(files.usage)).unwrap_or(0).saturating_sub(cache);
            if let Some(limit) = limit.filter(|l| *l < UNLIMITED) {
                let headroom = limit.saturating_sub(usage);
                smallest = Some(smallest.map_or(headroom, |s| s.min(headroom)));
            }
        }
    }
    smallest
}

/// Where one cgroup version keeps a cgroup's limit, usage and reclaimable cache.
struct MemoryFiles {
    limit: &'static str,
    usage: &'static str,
    /// The `memory.stat` key of the inactive page cache.
    inactive_cache: &'static str,
}

const V2: MemoryFiles = MemoryFiles { limit: "memory.max", usage: "memory.current", inactive_cache: "inactive_file" };
const V1: MemoryFiles = MemoryFiles { limit: "memory.limit_in_bytes", usage: "memory.usage_in_bytes", inactive_cache: "total_inactive_file" };

/// One value of a `memory.stat` file.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The process's memory cgroup directories with their files: the unified
/// (v2) hierarchy and the v1 memory controller.
fn cgroup_dirs(membership: &str, root: &Path) -> Vec<(PathBuf, MemoryFiles)> {
    let mut dirs = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            let unified = if root.join("unified").is_dir() { root.join("unified") } else { root.to_path_buf() };
            dirs.push((unified.join(relative), V2));
        } else if controllers.split(',').any(|c| c == "memory") {
            dirs.push((root.join("memory").join(relative), V1));
        }
    }
    dirs
}

/// A file holding one number of bytes; `None` if absent or "max" (no limit).
fn read_bytes(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        assert_eq!(mem_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n"), Some(2 << 20));
        assert_eq!(mem_available("MemTotal: 100 kB\n"), None);
    }

    #[test]
    fn a_cgroup_v2_limit_leaves_its_headroom() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("app/memory.max"), "1073741824\n");
        write(&root.path().join("app/memory.current"), "268435456\n");
        write(&root.path().join("memory.max"), "max\n");
        assert_eq!(cgroup_headroom("0::/app\n", root.path()), Some(768 << 20));
    }

    #[test]
    fn inactive_page_cache_counts_as_free() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("app/memory.max"), "1073741824\n");
        write(&root.path().join("app/memory.current"), "805306368\n");
        write(&root.path().join("app/memory.stat"), "anon 268435456\nfile 536870912\ninactive_file 536870912\nactive_file 0\n");
        assert_eq!(cgroup_headroom("0::/app\n", root.path()), Some(768 << 20));
    }

    #[test]
    fn a_parent_cgroup_with_less_headroom_binds() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("pod/memory.max"), "536870912");
        write(&root.path().join("pod/memory.current"), "402653184");
        write(&root.path().join("pod/app/memory.max"), "max");
        write(&root.path().join("pod/app/memory.current"), "1000");
        assert_eq!(cgroup_headroom("0::/pod/app\n", root.path()), Some(128 << 20));
    }

    #[test]
    fn a_cgroup_v1_memory_controller_is_read_and_its_no_limit_ignored() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("memory/job/memory.limit_in_bytes"), "9223372036854771712");
        write(&root.path().join("memory/job/memory.usage_in_bytes"), "4096");
        let membership = "5:cpu,cpuacct:/job\n4:memory:/job\n0::/\n";
        assert_eq!(cgroup_headroom(membership, root.path()), None, "v1's no-limit value and an absent v2 file set no limit");
        write(&root.path().join("memory/job/memory.limit_in_bytes"), "1048576");
        assert_eq!(cgroup_headroom(membership, root.path()), Some(1_048_576 - 4096));
    }
}
