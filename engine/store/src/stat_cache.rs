//! `StatCache`: remembers the content hash of files by their `stat`, so an unchanged file is
//! never read twice.
//!
//! In: a file path and its metadata. Out: its blake3 `Digest`, from the cache when the file's
//! size, mtime, ctime and inode all match the entry and the entry is not racy, else by hashing
//! the file (files of `MMAP_THRESHOLD` bytes or more through blake3's mmap + rayon path).
//!
//! Persistence lives in the store (`stat_cache` table of `cache.db`, see [`crate::db`]):
//! `Store::stat_cache()` loads it once, `Store::flush_stat_cache()` writes the new and changed
//! entries back in one transaction. Entries are keyed by absolute path, so two projects that
//! share one `CLAB_CACHE_DIR` never trust each other's entries.
//!
//! The racy-git rule. A file written in the same clock tick as (or after) the moment we hashed
//! it can change again without its size or mtime changing, so its stat proves nothing. Each
//! entry therefore records `written_ns`: the wall-clock time taken *before* the file was
//! stat'ed and read, minus `RACY_MARGIN_NS` (1 s), because the kernel stamps mtimes with a
//! coarse clock that can lag the fine one by a tick. An entry is trusted only if the file's
//! mtime is strictly older than `written_ns`; otherwise ("racily clean") it is rehashed on the
//! next lookup. A file edited a moment before a run is thus hashed again on the next run, which
//! costs one read of a recently touched file and never serves a stale hash.
//!
//! Invariants: the cache is safe to share between threads (`&self` methods); lookups never
//! return a hash for a file whose stat differs from the entry.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::Digest;
use crate::parent_dir::{ParentDir, open_unstamped};

/// Files this large or larger are hashed with blake3's mmap + rayon path; smaller ones are read
/// into memory (measured in `docs/cache.md`: below ~1 MiB the thread fan-out costs more than it
/// saves).
pub const MMAP_THRESHOLD: u64 = 1 << 20;

/// The largest file whose bytes [`StatCache::hash_files_keeping`] keeps.
pub const KEEP_FILE_MAX: u64 = 256 * 1024;

/// The most bytes [`StatCache::hash_files_keeping`] keeps in one call.
pub const KEEP_TOTAL_MAX: u64 = 256 * 1024 * 1024;

/// A file hashed by [`StatCache::hash_files_keeping`].
#[derive(Debug)]
pub struct Hashed {
    /// Its content hash.
    pub hash: Digest,
    /// Its stat when hashed.
    pub stat: FileStat,
    /// What is kept of a file whose bytes were asked for and read: the bytes (within the
    /// limits), or the sieve's verdict that nothing needs them. `None` when not read.
    pub kept: Option<KeptText>,
}

/// What hashing kept of a file whose text was asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum KeptText {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Only the sieve's verdict: nothing needs its text (see [`Sieve`]).
    Unneeded,
}

/// Tells, from the bytes of a file read and asked to be kept, whether they are needed after
/// all (see [`StatCache::hash_files_keeping`]).
pub type Sieve<'a> = dyn Fn(&[u8]) -> bool + Sync + 'a;

/// Fewer files than this are stat'ed and hashed on the calling thread.
const PARALLEL_MIN: usize = 64;

/// The most files of one directory stat'ed and hashed as one piece of parallel work: a
/// directory of 10,000 files is still spread over the threads.
const RUN_MAX: usize = 32;

/// Fewer files of one directory than this are looked up by path: opening the directory
/// costs about a path lookup.
const PARENT_DIR_MIN: usize = 3;

/// Safety margin subtracted from the entry's write time for the racy-git rule.
pub const RACY_MARGIN_NS: i64 = 1_000_000_000;

/// The parts of a file's `stat` that decide whether a cached hash still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode change time, nanoseconds since the Unix epoch (not settable by `touch`).
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Permission bits and file type (`st_mode`).
    pub mode: u32,
}

impl FileStat {
    /// Reads the fields from `metadata`.
    pub fn from_metadata(metadata: &Metadata) -> FileStat {
        FileStat {
            size: metadata.size(),
            mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
            ctime_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            inode: metadata.ino(),
            mode: metadata.mode(),
        }
    }

    /// Reads the fields from `stat` (as `fstatat` gives them).
    #[cfg(target_os = "linux")]
    pub(crate) fn from_stat(stat: &rustix::fs::Stat) -> FileStat {
        FileStat {
            size: stat.st_size as u64,
            mtime_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
            ctime_ns: stat.st_ctime * 1_000_000_000 + stat.st_ctime_nsec as i64,
            inode: stat.st_ino,
            mode: stat.st_mode,
        }
    }

    /// Whether any execute bit is set.
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// One remembered hash and the stat it was taken with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatEntry {
    /// Size in bytes when hashed.
    pub size: u64,
    /// mtime when hashed (ns).
    pub mtime_ns: i64,
    /// ctime when hashed (ns).
    pub ctime_ns: i64,
    /// Inode when hashed.
    pub inode: u64,
    /// The content hash.
    pub hash: Digest,
    /// When the entry was taken, already reduced by `RACY_MARGIN_NS` (ns since the epoch).
    pub written_ns: i64,
}

impl StatEntry {
    /// Whether this entry proves that a file with `stat` has `self.hash` (the racy-git rule).
    pub fn matches(&self, stat: &FileStat) -> bool {
        self.size == stat.size
            && self.mtime_ns == stat.mtime_ns
            && self.ctime_ns == stat.ctime_ns
            && self.inode == stat.inode
            && stat.mtime_ns < self.written_ns
    }
}

/// Counters of one cache's work, to prove that unchanged files are not read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatCounts {
    /// Files whose contents were read and hashed.
    pub hashed: u64,
    /// Files whose hash came from an entry.
    pub reused: u64,
}

/// The stat cache: persisted entries plus the ones recorded during this run.
#[derive(Debug, Default)]
pub struct StatCache {
    /// Keyed by the path's bytes: hashing a `Path` goes component by component, and a no-op
    /// run of 40,000 inputs looks up every one.
    entries: RwLock<Entries>,
    /// Entries recorded since the last `take_dirty`, in order (a path may repeat: the last
    /// one counts). A list, not a map: a cold run records every file, once.
    dirty: Mutex<Vec<(PathBuf, StatEntry)>>,
    hashed: AtomicU64,
    reused: AtomicU64,
}

impl StatCache {
    /// An empty cache (nothing is trusted, every file is hashed once).
    pub fn new() -> StatCache {
        StatCache::default()
    }

    /// A cache holding `entries` (as loaded from `cache.db`).
    pub fn from_entries(entries: impl IntoIterator<Item = (PathBuf, StatEntry)>) -> StatCache {
        StatCache::from_keyed(
            entries
                .into_iter()
                .map(|(path, entry)| (key(&path), entry))
                .collect(),
        )
    }

    /// A cache holding `entries` keyed by path bytes (see [`key`]).
    pub(crate) fn from_keyed(entries: Entries) -> StatCache {
        StatCache {
            entries: RwLock::new(entries),
            ..StatCache::default()
        }
    }

    /// The cached hash of `path` if its entry still matches `stat`.
    pub fn lookup(&self, path: &Path, stat: &FileStat) -> Option<Digest> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(path.as_os_str().as_encoded_bytes())
            .filter(|entry| entry.matches(stat))
            .map(|entry| entry.hash)
    }

    /// The entry of `path`, matching or not.
    fn entry_of(&self, path: &Path) -> Option<StatEntry> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(path.as_os_str().as_encoded_bytes()).copied()
    }

    /// Remembers that `path`, with `stat`, hashed to `hash`; `started_ns` is the wall-clock time
    /// taken before the file was stat'ed.
    pub fn record(&self, path: &Path, stat: &FileStat, hash: Digest, started_ns: i64) {
        self.insert(vec![(path.to_owned(), self.entry(stat, hash, started_ns))]);
    }

    fn entry(&self, stat: &FileStat, hash: Digest, started_ns: i64) -> StatEntry {
        StatEntry {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            inode: stat.inode,
            hash,
            written_ns: started_ns - RACY_MARGIN_NS,
        }
    }

    /// Adds entries, marking the new or changed ones dirty.
    fn insert(&self, new: Vec<(PathBuf, StatEntry)>) {
        if new.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        // Sized once: a cold run records 40,000 entries in one call, and growing the list
        // by doubling touched (and the kernel zeroed) fresh memory on every step.
        entries.reserve(new.len());
        dirty.reserve(new.len());
        for (path, entry) in new {
            let key = key(&path);
            if entries.get(&key) != Some(&entry) {
                entries.insert(key, entry);
                dirty.push((path, entry));
            }
        }
    }

    /// Stats and hashes the file at `path` (following symlinks), using and updating the cache.
    pub fn hash_file(&self, path: &Path) -> io::Result<(Digest, FileStat)> {
        let started_ns = now_ns();
        let stat = FileStat::from_metadata(&fs::metadata(path)?);
        self.hash_stated(path, stat, started_ns)
    }

    /// [`hash_file`](Self::hash_file) for a file the caller has just stat'ed (`stat`, taken
    /// no earlier than `started_ns`).
    pub fn hash_stated(
        &self,
        path: &Path,
        stat: FileStat,
        started_ns: i64,
    ) -> io::Result<(Digest, FileStat)> {
        if let Some(hash) = self.lookup(path, &stat) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok((hash, stat));
        }
        let hash = hash_contents(path, stat.size)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        self.record(path, &stat, hash, started_ns);
        Ok((hash, stat))
    }

    /// Stats and hashes many files in parallel (rayon), then records the new entries under one
    /// lock; results are in the order of `paths`.
    pub fn hash_files(&self, paths: &[&Path]) -> Vec<io::Result<(Digest, FileStat)>> {
        self.hash_files_keeping(paths, &[], None)
            .into_iter()
            .map(|r| r.map(|hashed| (hashed.hash, hashed.stat)))
            .collect()
    }

    /// [`hash_files`](Self::hash_files), also keeping the bytes of the files marked in `keep`
    /// that had to be read (no matching entry), up to [`KEEP_FILE_MAX`] bytes each and
    /// [`KEEP_TOTAL_MAX`] in all: a caller that reads them next (a rule scan) reads nothing.
    /// A `sieve` answering `false` for a file's bytes drops them on the spot
    /// ([`KeptText::Unneeded`]).
    pub fn hash_files_keeping(
        &self,
        paths: &[&Path],
        keep: &[bool],
        sieve: Option<&Sieve<'_>>,
    ) -> Vec<io::Result<Hashed>> {
        let started_ns = now_ns();
        let kept_total = AtomicU64::new(0);
        let one = |dir: &ParentDir, i: usize, path: &Path| {
            let keeping = keep.get(i).copied().unwrap_or(false);
            let (hash, stat, bytes) = if let Some(entry) = self.entry_of(path) {
                let stat = dir.stat(path)?;
                if entry.matches(&stat) {
                    return Ok((
                        Hashed {
                            hash: entry.hash,
                            stat,
                            kept: None,
                        },
                        false,
                    ));
                }
                if stat.size < MMAP_THRESHOLD {
                    let bytes = read_small(&mut dir.open_unstamped(path)?, stat.size)?;
                    (Digest::of_bytes(&bytes), stat, keeping.then_some(bytes))
                } else {
                    (hash_contents(path, stat.size)?, stat, None)
                }
            } else {
                stat_and_hash(dir, path, keeping)?
            };
            // Dropped here, on the thread that read them, when nothing needs them: a cold rule
            // run keeps 20 texts instead of 10,000.
            let kept = bytes.and_then(|bytes| {
                if sieve.is_some_and(|sieve| !sieve(&bytes)) {
                    return Some(KeptText::Unneeded);
                }
                let fits = bytes.len() as u64 <= KEEP_FILE_MAX
                    && kept_total.fetch_add(bytes.len() as u64, Ordering::Relaxed)
                        + bytes.len() as u64
                        <= KEEP_TOTAL_MAX;
                fits.then_some(KeptText::Bytes(bytes))
            });
            Ok((Hashed { hash, stat, kept }, true))
        };
        // The files of a run share their directory, opened once (`ParentDir`).
        let run = |run: Range<usize>| -> Vec<io::Result<(Hashed, bool)>> {
            let dir = match paths[run.start].parent() {
                Some(parent) if run.len() >= PARENT_DIR_MIN => ParentDir::open(parent),
                _ => ParentDir::none(),
            };
            run.map(|i| one(&dir, i, paths[i])).collect()
        };
        let runs = runs_by_parent(paths);
        // Starting rayon's threads costs more than a few stats.
        let results: Vec<io::Result<(Hashed, bool)>> = if paths.len() < PARALLEL_MIN {
            runs.into_iter().flat_map(run).collect()
        } else {
            let runs: Vec<Vec<_>> = runs.into_par_iter().map(run).collect();
            runs.into_iter().flatten().collect()
        };
        let mut fresh = Vec::with_capacity(paths.len());
        let mut reused = 0;
        for (path, result) in paths.iter().zip(&results) {
            match result {
                Ok((hashed, true)) => fresh.push((
                    path.to_path_buf(),
                    self.entry(&hashed.stat, hashed.hash, started_ns),
                )),
                Ok((_, false)) => reused += 1,
                Err(_) => {}
            }
        }
        self.hashed.fetch_add(fresh.len() as u64, Ordering::Relaxed);
        self.reused.fetch_add(reused, Ordering::Relaxed);
        self.insert(fresh);
        results
            .into_iter()
            .map(|r| r.map(|(hashed, _)| hashed))
            .collect()
    }

    /// How many files were hashed and how many were served from entries so far.
    pub fn counts(&self) -> StatCounts {
        StatCounts {
            hashed: self.hashed.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
        }
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the entries recorded since the last call, sorted by path, for persisting.
    pub fn take_dirty(&self) -> Vec<(PathBuf, StatEntry)> {
        let mut taken = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        // Newest first, and a stable sort keeps that order among a path's entries: the first
        // of each path is the one to keep. Byte order is enough for SQLite's B-tree (and far
        // cheaper than comparing paths component by component).
        taken.reverse();
        taken.sort_by(|a, b| {
            a.0.as_os_str()
                .as_encoded_bytes()
                .cmp(b.0.as_os_str().as_encoded_bytes())
        });
        taken.dedup_by(|later, first| later.0.as_os_str() == first.0.as_os_str());
        taken
    }

    /// Forgets every entry (after `clab cache clean`).
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Entries by path bytes, with a fast hash: the keys are the project's own paths.
pub(crate) type Entries = HashMap<Box<[u8]>, StatEntry, foldhash::fast::RandomState>;

/// The key of `path` in a cache's entries: its bytes.
pub(crate) fn key(path: &Path) -> Box<[u8]> {
    path.as_os_str().as_encoded_bytes().into()
}

/// Hashes a file's contents: through mmap + rayon when `size >= MMAP_THRESHOLD`, else with one
/// buffered read.
pub fn hash_contents(path: &Path, size: u64) -> io::Result<Digest> {
    if size >= MMAP_THRESHOLD {
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(path)?;
        return Ok(Digest::from(hasher.finalize()));
    }
    hash_small(&mut open_unstamped(path)?, size)
}

/// Runs of consecutive `paths` in one directory, each at most [`RUN_MAX`] long (as indexes
/// into `paths`): a walk lists a directory's files together.
fn runs_by_parent(paths: &[&Path]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut parent = None;
    for (i, path) in paths.iter().enumerate() {
        let this = path.parent();
        match runs.last_mut() {
            Some(run) if this == parent && run.len() < RUN_MAX => run.end = i + 1,
            _ => {
                runs.push(i..i + 1);
                parent = this;
            }
        }
    }
    runs
}

/// Stats a file through its descriptor and hashes it: for a file without an entry, which is
/// read anyway (one path lookup instead of two). With `keep`, a small file's bytes come back.
fn stat_and_hash(
    dir: &ParentDir,
    path: &Path,
    keep: bool,
) -> io::Result<(Digest, FileStat, Option<Vec<u8>>)> {
    let mut file = dir.open_unstamped(path)?;
    let stat = FileStat::from_metadata(&file.metadata()?);
    if stat.size >= MMAP_THRESHOLD {
        return Ok((hash_contents(path, stat.size)?, stat, None));
    }
    let bytes = read_small(&mut file, stat.size)?;
    let hash = Digest::of_bytes(&bytes);
    Ok((hash, stat, keep.then_some(bytes)))
}

/// Hashes an open file of about `size` bytes read into one buffer (`update_reader` would zero
/// a 64 KiB buffer per file, which costs more than hashing a 4 KiB file).
fn hash_small(file: &mut fs::File, size: u64) -> io::Result<Digest> {
    Ok(Digest::of_bytes(&read_small(file, size)?))
}

/// Reads an open file of about `size` bytes into one buffer. A file that has grown or shrunk
/// since it was stat'ed is still read to its end.
fn read_small(file: &mut fs::File, size: u64) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; size as usize + 1];
    let mut filled = 0;
    // One read usually does: asking for a byte more than the file holds, a regular file
    // answers with exactly its size at its end.
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled as u64 == size {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buffer.truncate(filled);
    if filled > size as usize {
        file.read_to_end(&mut buffer)?;
    }
    Ok(buffer)
}

/// The wall-clock time in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sets a file's mtime `seconds` back (out of the racy window).
    fn backdate(path: &Path, seconds: u64) {
        let file = fs::File::options().append(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds))
            .unwrap();
    }

    #[test]
    fn small_files_are_hashed_whole_whatever_their_stat_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        let text = "x".repeat(5000);
        fs::write(&path, &text).unwrap();
        let whole = Digest::of_bytes(text.as_bytes());
        // Stat'ed size right, then grown (stat said less), then shrunk (stat said more).
        for said in [5000, 4999, 0, 1, 6000, 1 << 19] {
            let mut file = fs::File::open(&path).unwrap();
            assert_eq!(
                hash_small(&mut file, said).unwrap(),
                whole,
                "stat said {said}"
            );
        }
        for parent in [ParentDir::open(dir.path()), ParentDir::none()] {
            fs::write(&path, &text).unwrap();
            let (hash, stat, bytes) = stat_and_hash(&parent, &path, true).unwrap();
            assert_eq!((hash, stat.size), (whole, 5000));
            assert_eq!(bytes.as_deref(), Some(text.as_bytes()));
            fs::write(&path, "").unwrap();
            assert_eq!(
                stat_and_hash(&parent, &path, false).unwrap().0,
                Digest::of_bytes(b"")
            );
        }
    }

    #[test]
    fn unchanged_file_is_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        fs::write(&path, "alpha").unwrap();
        backdate(&path, 3600);
        let cache = StatCache::new();
        let (h1, _) = cache.hash_file(&path).unwrap();
        let (h2, _) = cache.hash_file(&path).unwrap();
        assert_eq!(h1, Digest::of_bytes(b"alpha"));
        assert_eq!(h1, h2);
        assert_eq!(
            cache.counts(),
            StatCounts {
                hashed: 1,
                reused: 1
            }
        );
        // Survives a round trip through persisted entries.
        let reloaded = StatCache::from_entries(cache.take_dirty());
        reloaded.hash_file(&path).unwrap();
        assert_eq!(
            reloaded.counts(),
            StatCounts {
                hashed: 0,
                reused: 1
            }
        );
    }

    #[test]
    fn changed_file_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        fs::write(&path, "alpha").unwrap();
        backdate(&path, 3600);
        let cache = StatCache::new();
        cache.hash_file(&path).unwrap();
        // Same size, different content, mtime moved: must not be served from the entry.
        fs::write(&path, "bravo").unwrap();
        backdate(&path, 1800);
        let (hash, _) = cache.hash_file(&path).unwrap();
        assert_eq!(hash, Digest::of_bytes(b"bravo"));
        assert_eq!(cache.counts().hashed, 2);
    }

    #[test]
    fn racily_clean_entry_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.txt");
        // Written just now: its mtime is not older than the entry's write time.
        fs::write(&path, "fresh").unwrap();
        let cache = StatCache::new();
        cache.hash_file(&path).unwrap();
        cache.hash_file(&path).unwrap();
        assert_eq!(
            cache.counts(),
            StatCounts {
                hashed: 2,
                reused: 0
            }
        );
        // Once the file is old relative to a new entry, the entry is trusted.
        backdate(&path, 60);
        cache.hash_file(&path).unwrap();
        cache.hash_file(&path).unwrap();
        assert_eq!(
            cache.counts(),
            StatCounts {
                hashed: 3,
                reused: 1
            }
        );
    }

    #[test]
    fn entry_rule_is_strict() {
        let stat = FileStat {
            size: 1,
            mtime_ns: 100,
            ctime_ns: 100,
            inode: 7,
            mode: 0o644,
        };
        let mut entry = StatEntry {
            size: 1,
            mtime_ns: 100,
            ctime_ns: 100,
            inode: 7,
            hash: Digest([0; 32]),
            written_ns: 101,
        };
        assert!(entry.matches(&stat));
        entry.written_ns = 100;
        assert!(!entry.matches(&stat), "mtime equal to write time is racy");
        entry.written_ns = 101;
        assert!(!entry.matches(&FileStat { inode: 8, ..stat }));
        assert!(!entry.matches(&FileStat { size: 2, ..stat }));
        assert!(!entry.matches(&FileStat {
            ctime_ns: 99,
            ..stat
        }));
    }

    #[test]
    fn large_file_uses_mmap_path_with_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data: Vec<u8> = (0..(MMAP_THRESHOLD as usize + 4097))
            .map(|i| (i % 253) as u8)
            .collect();
        fs::write(&path, &data).unwrap();
        let hash = hash_contents(&path, data.len() as u64).unwrap();
        assert_eq!(hash, Digest::of_bytes(&data));
    }

    #[test]
    fn runs_follow_the_directories_and_are_cut_at_their_bound() {
        let owned: Vec<PathBuf> = (0..RUN_MAX + 2)
            .map(|i| PathBuf::from(format!("/p/a/{i}")))
            .chain(["/p/b/x", "/p/a/y", "/p/a/z", "/top"].map(PathBuf::from))
            .collect();
        let paths: Vec<&Path> = owned.iter().map(PathBuf::as_path).collect();
        let n = RUN_MAX;
        assert_eq!(
            runs_by_parent(&paths),
            [0..n, n..n + 2, n + 2..n + 3, n + 3..n + 5, n + 5..n + 6]
        );
    }

    #[test]
    fn many_files_in_many_directories_hash_in_order_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut owned = Vec::new();
        // A directory with more files than a run, one with one, a missing file, a symlink, and
        // the first directory again: enough files for the parallel path.
        for (sub, count) in [("big", RUN_MAX * 2 + 5), ("one", 1), ("big2", 40)] {
            fs::create_dir(dir.path().join(sub)).unwrap();
            for i in 0..count {
                let path = dir.path().join(sub).join(format!("f{i}"));
                fs::write(&path, format!("{sub} {i}")).unwrap();
                backdate(&path, 3600);
                owned.push(path);
            }
        }
        owned.push(dir.path().join("big/missing"));
        #[cfg(unix)]
        {
            let link = dir.path().join("big/link");
            std::os::unix::fs::symlink("f0", &link).unwrap();
            owned.push(link);
        }
        owned.push(dir.path().join("big/f1"));
        let paths: Vec<&Path> = owned.iter().map(PathBuf::as_path).collect();
        assert!(paths.len() >= PARALLEL_MIN);
        let expected: Vec<Option<Digest>> = paths
            .iter()
            .map(|path| fs::read(path).ok().map(|bytes| Digest::of_bytes(&bytes)))
            .collect();
        let cache = StatCache::new();
        for pass in 0..2 {
            let got: Vec<Option<Digest>> = cache
                .hash_files(&paths)
                .into_iter()
                .map(|result| result.ok().map(|(hash, _)| hash))
                .collect();
            assert_eq!(got, expected, "pass {pass}");
        }
        let found = expected.iter().flatten().count() as u64;
        assert_eq!(
            cache.counts(),
            StatCounts {
                hashed: found,
                reused: found
            }
        );
    }

    #[test]
    fn hash_files_batches_and_reports_errors_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        backdate(&a, 3600);
        backdate(&b, 3600);
        let missing = dir.path().join("missing");
        let cache = StatCache::new();
        let results = cache.hash_files(&[&a, &missing, &b]);
        assert_eq!(results[0].as_ref().unwrap().0, Digest::of_bytes(b"a"));
        assert!(results[1].is_err());
        assert_eq!(results[2].as_ref().unwrap().0, Digest::of_bytes(b"b"));
        assert_eq!(
            cache.counts(),
            StatCounts {
                hashed: 2,
                reused: 0
            }
        );
        cache.hash_files(&[&a, &b]);
        assert_eq!(
            cache.counts(),
            StatCounts {
                hashed: 2,
                reused: 2
            }
        );
        assert_eq!(cache.take_dirty().len(), 2);
    }

    #[test]
    fn dirty_entries_come_out_once_per_path_sorted_newest_kept() {
        let cache = StatCache::new();
        let stat = |size| FileStat {
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            inode: 1,
            mode: 0o644,
        };
        cache.record(Path::new("/p/b"), &stat(1), Digest::of_bytes(b"old"), 0);
        cache.record(Path::new("/p/a"), &stat(2), Digest::of_bytes(b"a"), 0);
        cache.record(Path::new("/p/b"), &stat(3), Digest::of_bytes(b"new"), 0);
        let dirty = cache.take_dirty();
        let found: Vec<(&Path, Digest)> =
            dirty.iter().map(|(p, e)| (p.as_path(), e.hash)).collect();
        assert_eq!(
            found,
            [
                (Path::new("/p/a"), Digest::of_bytes(b"a")),
                (Path::new("/p/b"), Digest::of_bytes(b"new")),
            ]
        );
        assert!(cache.take_dirty().is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_leaves_the_access_time_of_an_owned_file_alone() {
        use std::fs::FileTimes;
        let dir = tempfile::tempdir().unwrap();
        // Access times an hour before the modification: `relatime` stamps such a file on
        // its next read, as it does a fresh checkout's.
        let old = |name: &str| {
            let path = dir.path().join(name);
            fs::write(&path, "some input").unwrap();
            let now = SystemTime::now();
            let times = FileTimes::new()
                .set_accessed(now - Duration::from_secs(7200))
                .set_modified(now - Duration::from_secs(3600));
            fs::File::options()
                .append(true)
                .open(&path)
                .unwrap()
                .set_times(times)
                .unwrap();
            path
        };
        let atime = |path: &Path| fs::metadata(path).unwrap().atime();
        let (plain, hashed) = (old("plain.txt"), old("hashed.txt"));
        let before = atime(&hashed);
        fs::read(&plain).unwrap();
        if atime(&plain) == before {
            eprintln!("this file system does not stamp reads (noatime): nothing to compare");
            return;
        }
        let cache = StatCache::new();
        let results = cache.hash_files(&[hashed.as_path()]);
        assert_eq!(
            results[0].as_ref().unwrap().0,
            Digest::of_bytes(b"some input")
        );
        assert_eq!(atime(&hashed), before, "hashing stamped the access time");
        // Hashed again after a change (the entry no longer matches): still unstamped.
        fs::write(&hashed, "other input").unwrap();
        let before = atime(&hashed);
        cache.hash_files(&[hashed.as_path()]);
        assert_eq!(atime(&hashed), before);
    }
}
