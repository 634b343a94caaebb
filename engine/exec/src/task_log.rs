//! [`TaskLog`]: what a task printed, kept whole for the cache without being held in memory
//! whole (issue 18: a 100 MB log cost twice its size).
//!
//! In: the bytes of a task's output as they arrive. Out: a tail for the terminal and the
//! failure report ([`TaskLog::tail_text`]), and — when the run stores results — the whole log
//! in the CAS ([`TaskLog::store`]).
//!
//! Invariants:
//! - Memory is bounded: up to [`MEMORY_BYTES`] is kept in memory; past that the log goes to
//!   a temp file in the cache directory (named `TEMP_PREFIX…`, which output globs skip and
//!   a run's start sweeps when stale), and only the last [`TAIL_BYTES`] stay in memory.
//! - A log that nothing will store (no cache, or a cache not written) is never spilled: only
//!   its tail is kept.
//! - A log read back from the cache for the terminal is read as a tail too
//!   ([`read_tail`]), through the CAS's verifying copy.

use std::{
    io::{self, Read, Seek, Write},
    path::{Path, PathBuf},
};

use clab_store::{Digest, Store};

/// How much of a log is kept in memory before it goes to a file.
pub const MEMORY_BYTES: usize = 1 << 20;

/// How much of a log's end is kept for the terminal once the rest is in a file.
pub const TAIL_BYTES: usize = 256 << 10;

/// A task's log as it is written.
#[derive(Debug, Default)]
pub struct TaskLog {
    /// The whole log while it is short; the tail once spilled or cut.
    memory: Vec<u8>,
    /// Bytes in the log.
    len: u64,
    /// Bytes dropped from the front (only the tail is kept).
    dropped: u64,
    /// Where a long log goes; `None`: keep only the tail.
    spill: Option<Box<Spill>>,
}

/// Where a long log goes.
#[derive(Debug)]
struct Spill {
    /// The directory of its temp file (the cache directory).
    dir: PathBuf,
    /// The whole log, once it outgrew memory.
    file: Option<tempfile::NamedTempFile>,
    /// Writing the file failed: the log is only a tail now.
    failed: bool,
}

impl From<Vec<u8>> for TaskLog {
    fn from(bytes: Vec<u8>) -> TaskLog {
        TaskLog {
            len: bytes.len() as u64,
            memory: bytes,
            ..TaskLog::default()
        }
    }
}

impl TaskLog {
    /// An empty log that spills to `spill_dir` when long (`None`: only its tail is kept).
    pub fn new(spill_dir: Option<&Path>) -> TaskLog {
        TaskLog {
            spill: spill_dir.map(|dir| {
                Box::new(Spill {
                    dir: dir.to_path_buf(),
                    file: None,
                    failed: false,
                })
            }),
            ..TaskLog::default()
        }
    }

    /// Start over (a retry), keeping where to spill.
    pub fn clear(&mut self) {
        let dir = self.spill.as_ref().map(|spill| spill.dir.clone());
        *self = TaskLog::new(dir.as_deref());
    }

    /// The file the log went to, once it did.
    fn file(&self) -> Option<&tempfile::NamedTempFile> {
        self.spill.as_ref()?.file.as_ref()
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the whole log is kept (in memory or in its file).
    pub fn is_whole(&self) -> bool {
        self.dropped == 0 && !self.spill.as_ref().is_some_and(|spill| spill.failed)
    }

    /// Append `bytes`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if let Some(spill) = &mut self.spill
            && let Some(file) = &mut spill.file
        {
            if file.write_all(bytes).is_err() {
                spill.failed = true;
                spill.file = None;
            }
            self.keep_tail(bytes);
            return;
        }
        if self.memory.len() + bytes.len() <= MEMORY_BYTES {
            self.memory.extend_from_slice(bytes);
            return;
        }
        // Too long for memory: to a file, or (nothing will store it) only the tail.
        if let Some(spill) = &mut self.spill
            && !spill.failed
        {
            match spill_file(&spill.dir, &self.memory, bytes) {
                Ok(file) => spill.file = Some(file),
                Err(_) => spill.failed = true,
            }
        }
        self.keep_tail(bytes);
    }

    /// Keep `bytes` at the end of `memory`, cut to [`TAIL_BYTES`] (amortized: cut when twice).
    fn keep_tail(&mut self, bytes: &[u8]) {
        self.memory.extend_from_slice(bytes);
        if self.memory.len() > 2 * TAIL_BYTES.max(MEMORY_BYTES / 2) {
            let cut = self.memory.len() - TAIL_BYTES;
            self.memory.drain(..cut);
            if self.file().is_none() {
                self.dropped += cut as u64;
            }
        }
    }

    /// The end of the log as text, at most about [`TAIL_BYTES`] (cut at a line), with a
    /// first line saying how much was left out.
    pub fn tail_text(&self) -> String {
        let start = self.memory.len().saturating_sub(TAIL_BYTES);
        // Where `memory` does not begin with the log's first byte, it begins mid-line.
        let mid_line = start > 0 || self.len > self.memory.len() as u64;
        let start = if mid_line {
            self.memory[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(start, |n| start + n + 1)
        } else {
            start
        };
        let text = String::from_utf8_lossy(&self.memory[start..]);
        let left_out = self.len - (self.memory.len() - start) as u64;
        if left_out == 0 {
            text.into_owned()
        } else {
            format!("… ({left_out} earlier bytes of this log not shown)\n{text}")
        }
    }

    /// Put the log in the store's CAS: the whole log, or — if it could not be kept whole —
    /// what is left, with a first line saying so.
    pub fn store(&mut self, store: &Store) -> Result<Digest, clab_store::Error> {
        if let Some(spill) = &mut self.spill
            && let Some(file) = &mut spill.file
        {
            let written = file.as_file_mut().flush();
            if written.is_ok() {
                return store.cas().put_file(file.path()).map(|(digest, _)| digest);
            }
        }
        if self.is_whole() && self.file().is_none() {
            return store.put_log(&self.memory);
        }
        store.put_log(self.tail_text().as_bytes())
    }

    /// The whole log, read back (tests, small logs).
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        match self.file() {
            Some(file) => {
                let mut reader = file.reopen()?;
                reader.rewind()?;
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
            None => Ok(self.memory.clone()),
        }
    }
}

/// A temp file in `dir` holding `head`, then `more`.
fn spill_file(dir: &Path, head: &[u8], more: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix(&format!("{}log-", clab_model::atomic_write::TEMP_PREFIX))
        .tempfile_in(dir)?;
    file.write_all(head)?;
    file.write_all(more)?;
    Ok(file)
}

/// A writer that keeps only the last [`TAIL_BYTES`] of what it is given.
#[derive(Default)]
struct Tail(TaskLog);

impl Write for Tail {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The end of the stored log `digest`, as text (see [`TaskLog::tail_text`]): read through
/// the CAS's verifying copy, so a long log is never in memory whole. `None` when it cannot be
/// read or is damaged.
pub fn read_tail(store: &Store, digest: &Digest) -> Option<String> {
    let mut tail = Tail::default();
    let path = store.cas().path_of(digest);
    store.cas().copy_to(digest, &mut tail, &path).ok()?;
    Some(tail.0.tail_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_log_stays_in_memory_whole() {
        let mut log = TaskLog::new(None);
        log.push(b"one\n");
        log.push(b"two\n");
        assert_eq!(log.tail_text(), "one\ntwo\n");
        assert!(log.is_whole());
        assert_eq!(log.to_bytes().unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn a_long_log_goes_to_a_file_and_keeps_a_bounded_tail_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TaskLog::new(Some(dir.path()));
        let line = b"0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\n";
        let lines = 100_000; // 6.4 MB
        for _ in 0..lines {
            log.push(line);
        }
        assert_eq!(log.len(), (line.len() * lines) as u64);
        assert!(log.is_whole());
        assert!(log.memory.len() <= 2 * MEMORY_BYTES, "{}", log.memory.len());
        let tail = log.tail_text();
        assert!(tail.starts_with("… ("), "{}", &tail[..40]);
        assert!(tail.len() <= TAIL_BYTES + 100);
        assert!(tail.ends_with("01234\n"));
        let spilled: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(spilled.len(), 1);
        let name = spilled[0].file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with(clab_model::atomic_write::TEMP_PREFIX),
            "{name}"
        );
        assert_eq!(log.to_bytes().unwrap().len(), line.len() * lines);
        // Into the CAS whole, and read back as a tail.
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path()).unwrap().store;
        let digest = log.store(&store).unwrap();
        assert_eq!(digest, Digest::of_bytes(&line.repeat(lines)));
        assert!(
            read_tail(&store, &digest).unwrap() == tail,
            "the stored log's tail"
        );
        drop(log);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp removed"
        );
    }

    #[test]
    fn without_a_store_only_the_tail_is_kept() {
        let mut log = TaskLog::new(None);
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..100 {
            log.push(&chunk);
        }
        assert!(!log.is_whole());
        assert!(log.memory.len() <= 2 * MEMORY_BYTES);
        assert!(log.tail_text().starts_with("… ("));
    }
}
