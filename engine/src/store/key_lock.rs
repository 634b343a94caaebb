//! `KeyLock`: an advisory, exclusive, cross-process lock on one cache key.
//!
//! In: the locks directory (`<cache dir>/locks/`) and a cache key. Out: a guard that holds
//! `flock(LOCK_EX)` on `locks/<key>` until dropped, so two clab processes (or two threads with
//! their own file descriptions) never run the same task for the same key at once; the second
//! waits and then finds the first one's result in the cache.
//!
//! Invariants:
//! - The lock is released when the guard drops or the process dies (the kernel drops `flock`
//!   locks with the file description), so a crashed clab never leaves a key locked.
//! - Lock files may be deleted by whoever holds their lock (`clean`). To stay correct when that
//!   happens, after locking we check that the path still names the inode we locked; if not,
//!   we locked a deleted file and try again.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::Error;

/// An exclusive lock on one cache key; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    path: PathBuf,
    _flock: Flock<File>,
}

impl KeyLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock on `locks_dir/<key>`: first without waiting; if another holder has it,
    /// calls `on_wait` once (to report "waiting for another clab") and then blocks.
    pub fn acquire(locks_dir: &Path, key: &str, on_wait: impl FnOnce()) -> Result<KeyLock, Error> {
        let path = lock_path(locks_dir, key)?;
        if let Some(lock) = Self::attempt(&path, FlockArg::LockExclusiveNonblock)? {
            return Ok(lock);
        }
        on_wait();
        loop {
            if let Some(lock) = Self::attempt(&path, FlockArg::LockExclusive)? {
                return Ok(lock);
            }
        }
    }

    /// Takes the lock if it is free right now; `None` if another holder has it.
    pub fn try_acquire(locks_dir: &Path, key: &str) -> Result<Option<KeyLock>, Error> {
        let path = lock_path(locks_dir, key)?;
        Self::attempt(&path, FlockArg::LockExclusiveNonblock)
    }

    /// One attempt: `Ok(None)` when a non-blocking lock is busy or the file was replaced.
    fn attempt(path: &Path, arg: FlockArg) -> Result<Option<KeyLock>, Error> {
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|source| Error::io("open the lock file", path, source))?;
            let flock = match Flock::lock(file, arg) {
                Ok(flock) => flock,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, Errno::EINTR)) => continue,
                Err((_, errno)) => {
                    return Err(Error::Lock {
                        path: path.to_owned(),
                        source: errno,
                    });
                }
            };
            let locked = flock
                .metadata()
                .map_err(|source| Error::io("stat the lock file", path, source))?;
            match fs::metadata(path) {
                Ok(current) if current.ino() == locked.ino() && current.dev() == locked.dev() => {
                    return Ok(Some(KeyLock {
                        path: path.to_owned(),
                        _flock: flock,
                    }));
                }
                // Deleted or replaced while we waited: lock the new file instead.
                _ => continue,
            }
        }
    }
}

fn lock_path(locks_dir: &Path, key: &str) -> Result<PathBuf, Error> {
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
    Ok(locks_dir.join(key))
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

    #[test]
    fn rejects_keys_that_are_not_file_names() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["", "../x", "a/b", ".hidden"] {
            let err = KeyLock::try_acquire(dir.path(), key).unwrap_err();
            assert!(matches!(err, Error::BadKey { .. }), "{key}");
        }
    }
}
