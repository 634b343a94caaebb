//! `CachedResult`: a successful task result with its output manifest, as the store keeps it.
//!
//! In and out of `Store`; serializes as plain data. Paths in an output manifest are
//! relative to the project root with `/` separators; modes are the permission bits
//! (`st_mode & 0o7777`).

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// One output file of a task, as stored in the CAS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutputEntry {
    /// Path relative to the project root, `/`-separated.
    pub path: String,
    /// Digest of its content (the CAS address).
    pub hash: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o644`, `0o755`, …).
    pub mode: u32,
}

/// A successful task result, keyed by its cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResult {
    /// Display id of the node (`gen-tests[src/pkg/a.py]`).
    pub task: String,
    /// The caller's label for the outcome (e.g. `ok`); failures are not cached.
    pub status: String,
    /// How long the task ran.
    pub duration_ms: u64,
    /// Its outputs (the store sorts them by path).
    pub outputs: Vec<OutputEntry>,
    /// The captured log, if any.
    pub log: Option<Digest>,
    /// When the entry was saved (Unix ms); set by the store, ignored by `save_result`.
    pub created_ms: i64,
    /// When the entry was last loaded (Unix ms); set by the store, ignored by `save_result`.
    pub last_used_ms: i64,
}

impl CachedResult {
    /// A result with no timestamps yet (the store fills them in).
    pub fn new(
        task: impl Into<String>,
        status: impl Into<String>,
        duration_ms: u64,
        outputs: Vec<OutputEntry>,
        log: Option<Digest>,
    ) -> CachedResult {
        CachedResult {
            task: task.into(),
            status: status.into(),
            duration_ms,
            outputs,
            log,
            created_ms: 0,
            last_used_ms: 0,
        }
    }

    /// Every blob this result references: its outputs and its log.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        self.outputs.iter().map(|o| o.hash).chain(self.log)
    }
}

/// What `Store::restore_outputs` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Outputs already present with the recorded hash and mode, left alone.
    pub kept: Vec<String>,
    /// Outputs written from the CAS (missing, changed, or with another mode).
    pub restored: Vec<String>,
}
