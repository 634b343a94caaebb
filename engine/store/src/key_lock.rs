//! `KeyLock`: an advisory, exclusive, cross-process lock on one cache key.
//!
//! In: the locks directory (`<cache dir>/locks/`) and a cache key. Out: a guard that holds an
//! exclusive lock on the key until dropped, so two clab processes (or two threads) never run
//! the same task for the same key at once; the second waits and then finds the first one's
//! result in the cache.
//!
//! On Linux every key is one byte of a single file, `locks/keys`, at an offset taken from the
//! key's hash, locked with an open-file-description lock (`F_OFD_SETLK`). Each guard opens the
//! file itself, so guards exclude each other within a process as well as across processes,
//! and a cold build of thousands of tasks creates no file per key (creating inodes was a
//! tenth of clab's own CPU time in such a build). Two keys whose offsets collide (a chance
//! of one in 2^62 per pair) only wait for each other. Elsewhere each key has its own file,
//! `locks/<key>`, locked with `flock`.
//!
//! Invariants:
//! - The lock is released when the guard drops or the process dies (the kernel drops both
//!   kinds of lock with the file description), so a crashed clab never leaves a key locked.
//! - Lock files may be deleted while held (`rm -rf .clab`). To stay correct when that happens,
//!   after locking we check that the path still names the inode we locked; if not, we locked a
//!   deleted file and try again.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::Error;

/// An exclusive lock on one cache key; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    path: PathBuf,
    /// The open file description the lock belongs to; closing it releases the lock.
    _held: Held,
}

/// Where a key's lock lives: a file, and on Linux the byte of it.
struct Site {
    path: PathBuf,
    byte: Option<i64>,
}

#[derive(Debug)]
enum Held {
    #[cfg(target_os = "linux")]
    Range(File),
    #[cfg(not(target_os = "linux"))]
    Whole(nix::fcntl::Flock<File>),
}

impl KeyLock {
    /// The file holding the lock.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock on `key`: first without waiting; if another holder has it, calls
    /// `on_wait` once (to report "waiting for another clab") and then blocks.
    pub fn acquire(locks_dir: &Path, key: &str, on_wait: impl FnOnce()) -> Result<KeyLock, Error> {
        let site = site_of(locks_dir, key)?;
        if let Some(lock) = Self::attempt(&site, false)? {
            return Ok(lock);
        }
        on_wait();
        loop {
            if let Some(lock) = Self::attempt(&site, true)? {
                return Ok(lock);
            }
        }
    }

    /// Takes the lock if it is free right now; `None` if another holder has it.
    pub fn try_acquire(locks_dir: &Path, key: &str) -> Result<Option<KeyLock>, Error> {
        Self::attempt(&site_of(locks_dir, key)?, false)
    }

    /// One attempt: `Ok(None)` when a non-blocking lock is busy or the file was replaced.
    fn attempt(site: &Site, wait: bool) -> Result<Option<KeyLock>, Error> {
        let path = &site.path;
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|source| Error::io("open the lock file", path, source))?;
            let held = match lock(file, site.byte, wait) {
                Ok(held) => held,
                Err(Errno::EWOULDBLOCK | Errno::EACCES) if !wait => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(Error::Lock {
                        path: path.to_owned(),
                        source: errno,
                    });
                }
            };
            let locked = held
                .file()
                .metadata()
                .map_err(|source| Error::io("stat the lock file", path, source))?;
            match fs::metadata(path) {
                Ok(current) if current.ino() == locked.ino() && current.dev() == locked.dev() => {
                    return Ok(Some(KeyLock {
                        path: path.to_owned(),
                        _held: held,
                    }));
                }
                // Deleted or replaced while we waited: lock the new file instead.
                _ => continue,
            }
        }
    }
}

impl Held {
    fn file(&self) -> &File {
        match self {
            #[cfg(target_os = "linux")]
            Held::Range(file) => file,
            #[cfg(not(target_os = "linux"))]
            Held::Whole(flock) => flock,
        }
    }
}

/// Locks one byte of `file` (Linux) with an open-file-description lock.
#[cfg(target_os = "linux")]
fn lock(file: File, byte: Option<i64>, wait: bool) -> Result<Held, Errno> {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;

    let range = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: byte.unwrap_or(0),
        l_len: 1,
        // Must be 0 for open-file-description locks.
        l_pid: 0,
    };
    let arg = if wait {
        FcntlArg::F_OFD_SETLKW(&range)
    } else {
        FcntlArg::F_OFD_SETLK(&range)
    };
    fcntl(&file, arg)?;
    Ok(Held::Range(file))
}

/// Locks the whole `file` with `flock`.
#[cfg(not(target_os = "linux"))]
fn lock(file: File, _byte: Option<i64>, wait: bool) -> Result<Held, Errno> {
    use nix::fcntl::{Flock, FlockArg};

    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    Flock::lock(file, arg)
        .map(Held::Whole)
        .map_err(|(_, errno)| errno)
}

fn site_of(locks_dir: &Path, key: &str) -> Result<Site, Error> {
    let safe = !key.is_empty()
        && key.len() <= 200
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !key.starts_with('.');
    if !safe {
        return Err(Error::BadKey {
            key: key.to_owned(),
        });
    }
    fs::create_dir_all(locks_dir).map_err(|source| Error::io("create", locks_dir, source))?;
    Ok(if cfg!(target_os = "linux") {
        Site {
            path: locks_dir.join(SHARED_FILE),
            byte: Some(byte_of(key)),
        }
    } else {
        Site {
            path: locks_dir.join(key),
            byte: None,
        }
    })
}

/// The file holding every key's byte (Linux).
const SHARED_FILE: &str = "keys";

/// A key's byte in the shared file: 62 bits of its hash, so offset + 1 fits in an `off_t`.
fn byte_of(key: &str) -> i64 {
    let hash = blake3::hash(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 2) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn second_holder_is_excluded_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let first = KeyLock::acquire(&locks, "abc123", || panic!("must not wait")).unwrap();
        assert!(KeyLock::try_acquire(&locks, "abc123").unwrap().is_none());
        // Another key is independent.
        assert!(KeyLock::try_acquire(&locks, "other").unwrap().is_some());

        let (tx, rx) = mpsc::channel();
        let locks2 = locks.clone();
        let waiter = std::thread::spawn(move || {
            let tx_wait = tx.clone();
            let lock = KeyLock::acquire(&locks2, "abc123", move || {
                tx_wait.send("waiting").unwrap();
            })
            .unwrap();
            tx.send("acquired").unwrap();
            drop(lock);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "waiting");
        // Still held by `first`: the waiter must not get it.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "acquired");
        waiter.join().unwrap();
        assert!(KeyLock::try_acquire(&locks, "abc123").unwrap().is_some());
    }

    #[test]
    fn deleted_lock_file_is_relocked() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let first = KeyLock::acquire(&locks, "k", || {}).unwrap();
        fs::remove_file(first.path()).unwrap();
        // The old inode is still locked by `first`, but a new holder gets a fresh file.
        let second = KeyLock::try_acquire(&locks, "k").unwrap();
        assert!(second.is_some());
        drop(first);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn all_keys_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let held: Vec<KeyLock> = (0..100)
            .map(|i| {
                KeyLock::acquire(&locks, &format!("key{i}"), || panic!("key{i} waits")).unwrap()
            })
            .collect();
        assert_eq!(fs::read_dir(&locks).unwrap().count(), 1);
        assert!(
            held.iter()
                .all(|lock| lock.path() == locks.join(SHARED_FILE))
        );
        assert!(KeyLock::try_acquire(&locks, "key7").unwrap().is_none());
        drop(held);
        assert!(KeyLock::try_acquire(&locks, "key7").unwrap().is_some());
    }

    #[test]
    fn rejects_keys_that_are_not_file_names() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["", "../x", "a/b", ".hidden"] {
            let err = KeyLock::try_acquire(dir.path(), key).unwrap_err();
            assert!(matches!(err, Error::BadKey { .. }), "{key}");
        }
    }
}
