//! `RunRecord`: one invocation of clab, as kept in the `runs` table.
//!
//! In: filled by the scheduler at the end of a run. Out: `clab history` and `clab stats`.

use serde::{Deserialize, Serialize};

/// One invocation of clab, for `clab history` and `clab stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run started (Unix ms).
    pub started_ms: i64,
    /// The targets asked for.
    pub targets: Vec<String>,
    /// Tasks that ran.
    pub ran: u32,
    /// Tasks served from the cache.
    pub cached: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Optional totals (tests passed/failed, coverage percent) as JSON.
    pub extra: Option<serde_json::Value>,
}
