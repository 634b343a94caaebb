//! `ParentDir`: a directory held open so that the files in it are stat'ed and opened by name
//! (`fstatat`, `openat`) instead of by their absolute paths.
//!
//! Why: hashing the 40,000 inputs of a fresh checkout spent 28% of its time in `openat`,
//! most of it walking each path's seven components again (`__d_lookup_rcu`,
//! `link_path_walk`, copying the path in: `perf record` of the 2,000-task benchmark's remote
//! restore); a run that finds its inputs in the stat cache stats each by path the same way.
//! One open of the directory per run of files in it, and each file is then one component
//! away.
//!
//! The names are followed as the paths would be: symlinks in the directory's own path when
//! it is opened, the file's own symlink when it is stat'ed or opened. Elsewhere than Linux,
//! or when the directory cannot be opened, the paths are used as before (and give the
//! errors they always gave).

use std::fs;
use std::io;
use std::path::Path;

use crate::stat_cache::FileStat;

/// A directory, open for looking up its files by name (see the module documentation).
#[derive(Debug)]
pub(crate) struct ParentDir {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl ParentDir {
    /// The directory `dir`, open if it can be (`O_PATH`: for lookups only, nothing read).
    pub(crate) fn open(dir: &Path) -> ParentDir {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            ParentDir {
                fd: rustix::fs::open(dir, flags, Mode::empty()).ok(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = dir;
            ParentDir {}
        }
    }

    /// A directory not opened: every call uses the whole path.
    pub(crate) fn none() -> ParentDir {
        ParentDir {
            #[cfg(target_os = "linux")]
            fd: None,
        }
    }

    /// The stat of `path` (a file in this directory), following a symlink.
    pub(crate) fn stat(&self, path: &Path) -> io::Result<FileStat> {
        #[cfg(target_os = "linux")]
        if let (Some(fd), Some(name)) = (&self.fd, path.file_name()) {
            let stat = rustix::fs::statat(fd, name, rustix::fs::AtFlags::empty())?;
            return Ok(FileStat::from_stat(&stat));
        }
        Ok(FileStat::from_metadata(&fs::metadata(path)?))
    }

    /// `path` (a file in this directory) opened for reading, without stamping its access
    /// time where the kernel allows (`O_NOATIME`, see [`open_unstamped`]).
    pub(crate) fn open_unstamped(&self, path: &Path) -> io::Result<fs::File> {
        #[cfg(target_os = "linux")]
        if let (Some(fd), Some(name)) = (&self.fd, path.file_name()) {
            use rustix::fs::{Mode, OFlags};
            let read = OFlags::RDONLY | OFlags::CLOEXEC;
            let open = |flags| rustix::fs::openat(fd, name, flags, Mode::empty());
            let opened = if unstamped::refused() {
                open(read)
            } else {
                match open(read | OFlags::NOATIME) {
                    Err(rustix::io::Errno::PERM) => {
                        unstamped::refuse();
                        open(read)
                    }
                    opened => opened,
                }
            };
            return Ok(fs::File::from(opened?));
        }
        open_unstamped(path)
    }
}

/// Opens a file to read it for its hash without stamping its access time (`O_NOATIME`), as
/// git opens its objects: a fresh checkout's files have an access time no later than their
/// modification time, so under `relatime` the first read of each would write its inode —
/// `touch_atime` was ~4% of a 40,000-input remote restore's CPU (`perf record`). The kernel
/// allows the flag only to the file's owner (or with `CAP_FOWNER`); after one refusal
/// (`EPERM`) this process opens plainly, as before.
pub(crate) fn open_unstamped(path: &Path) -> io::Result<fs::File> {
    #[cfg(target_os = "linux")]
    if !unstamped::refused() {
        use std::os::unix::fs::OpenOptionsExt;
        match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOATIME)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => unstamped::refuse(),
            opened => return opened,
        }
    }
    fs::File::open(path)
}

/// Whether the kernel refused `O_NOATIME` to this process once (then it is not asked again).
#[cfg(target_os = "linux")]
mod unstamped {
    use std::sync::atomic::{AtomicBool, Ordering};

    static REFUSED: AtomicBool = AtomicBool::new(false);

    pub(super) fn refused() -> bool {
        REFUSED.load(Ordering::Relaxed)
    }

    pub(super) fn refuse() {
        REFUSED.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_stated_and_opened_by_name_as_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, "hello").unwrap();
        let parent = ParentDir::open(dir.path());
        let stat = parent.stat(&file).unwrap();
        assert_eq!(stat, FileStat::from_metadata(&fs::metadata(&file).unwrap()));
        let text = io::read_to_string(parent.open_unstamped(&file).unwrap()).unwrap();
        assert_eq!(text, "hello");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_followed_and_a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("target.txt"), "abc").unwrap();
        std::os::unix::fs::symlink("target.txt", dir.path().join("link.txt")).unwrap();
        for parent in [ParentDir::open(dir.path()), ParentDir::none()] {
            let link = dir.path().join("link.txt");
            assert_eq!(parent.stat(&link).unwrap().size, 3);
            let text = io::read_to_string(parent.open_unstamped(&link).unwrap()).unwrap();
            assert_eq!(text, "abc");
            let missing = dir.path().join("missing.txt");
            let stat = parent.stat(&missing).unwrap_err();
            assert_eq!(stat.kind(), io::ErrorKind::NotFound);
            let open = parent.open_unstamped(&missing).unwrap_err();
            assert_eq!(open.kind(), io::ErrorKind::NotFound);
        }
    }

    #[test]
    fn a_directory_that_cannot_be_opened_falls_back_to_the_paths() {
        let dir = tempfile::tempdir().unwrap();
        let parent = ParentDir::open(&dir.path().join("gone"));
        let file = dir.path().join("a.txt");
        fs::write(&file, "x").unwrap();
        // The file is not in the directory asked for: the path is used.
        assert_eq!(parent.stat(&file).unwrap().size, 1);
    }
}
