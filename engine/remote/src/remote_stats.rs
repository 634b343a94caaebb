//! `RemoteStats`: what the remote cache did during a run, for the summary line, `--json`,
//! `--profile` and `clab cache stats`.
//!
//! In: counts kept by [`RemoteCache`](crate::RemoteCache) as it fetches and uploads. Out: a
//! plain, serializable snapshot (times in milliseconds, misses by
//! [`MissReason::code`](crate::MissReason::code)).

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts and times of one run's remote cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RemoteStats {
    /// Fetches that returned an entry.
    pub hits: u64,
    /// Fetches that did not, by reason code (`not_found`, `blob_mismatch`, …).
    pub misses: BTreeMap<String, u64>,
    /// Bytes downloaded (manifests and blobs).
    pub bytes_down: u64,
    /// Blobs downloaded and verified (those carried in manifests included).
    pub blobs_down: u64,
    /// Time spent in fetches, summed over fetches (they may overlap).
    pub fetch_ms: u64,
    /// Entries uploaded (manifest written).
    pub entries_up: u64,
    /// Blobs uploaded (those carried in manifests included).
    pub blobs_up: u64,
    /// Blobs not uploaded because the remote already had them.
    pub blobs_present: u64,
    /// Bytes uploaded (manifests and blobs).
    pub bytes_up: u64,
    /// Entries whose upload failed (nothing is retried).
    pub upload_failed: u64,
    /// Entries still uploading when `finish`'s deadline passed, or handed over after it.
    pub upload_abandoned: u64,
    /// Entries not uploaded because the remote is read-only.
    pub upload_skipped_read_only: u64,
    /// Time spent uploading, summed over entries (in the background).
    pub upload_ms: u64,
    /// Time `finish` waited for uploads (on the run's critical path).
    pub flush_ms: u64,
    /// Backend calls that failed (outages).
    pub failures: u64,
    /// Whether the circuit breaker opened (the remote was given up on).
    pub circuit_open: bool,
}

impl RemoteStats {
    /// All misses, whatever the reason.
    pub fn misses_total(&self) -> u64 {
        self.misses.values().sum()
    }

    /// Misses with one reason code.
    pub fn misses_of(&self, code: &str) -> u64 {
        self.misses.get(code).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_add_up_and_serialize() {
        let mut stats = RemoteStats::default();
        stats.misses.insert("not_found".into(), 2);
        stats.misses.insert("unsigned".into(), 1);
        assert_eq!(stats.misses_total(), 3);
        assert_eq!(stats.misses_of("unsigned"), 1);
        assert_eq!(stats.misses_of("bad_signature"), 0);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["misses"]["not_found"], 2);
        assert_eq!(json["circuit_open"], false);
    }
}
