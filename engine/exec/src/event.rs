//! Events: the engine's only way to reach a terminal.
//!
//! The engine never prints. Every stage reports what happens as an [`Event`] to a
//! [`Reporter`]; the cli renders them as progress bars, prefixed lines, GitHub Actions groups,
//! NDJSON (`--json`, schema in `schemas/events.schema.json`) or a Chrome trace. Events carry
//! display ids, never paths to secrets or keys.

use serde::Serialize;

/// Something that happened during a run.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run begins.
    RunStarted {
        /// The targets asked for.
        targets: Vec<String>,
        /// How many nodes the run covers (aggregates excluded).
        total: usize,
        /// The parallelism.
        jobs: usize,
    },
    /// A node starts executing (cache hits never start).
    TaskStarted {
        /// The node's display id.
        task: String,
        /// Why it runs although it ran before, in a few words (`src/a.py changed`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<clab_plan::Reason>,
    },
    /// A line a running node printed (stdout and stderr, interleaved as written).
    TaskOutput {
        /// The node's display id.
        task: String,
        /// The line, without its newline.
        line: String,
    },
    /// A node is done, one way or another.
    TaskFinished {
        /// The node's display id.
        task: String,
        /// How it ended.
        status: Status,
        /// Time spent, in milliseconds (for a cache hit: the time the original run took).
        duration_ms: u64,
        /// The captured output: for failures, and for cache hits (replayed).
        #[serde(skip_serializing_if = "Option::is_none")]
        log: Option<String>,
    },
    /// A node did not run.
    TaskSkipped {
        /// The node's display id.
        task: String,
        /// Why: a failed dependency, fail-fast, an interrupt.
        reason: String,
    },
    /// A task's JUnit report, read after it ran (or was restored): totals, failures (file
    /// paths relative to the root when inside it) and the slowest tests, as data; the cli
    /// renders them (`ReportSummary::render`).
    TestReport {
        /// The node's display id.
        task: String,
        /// The report.
        #[serde(flatten)]
        report: clab_reports::junit::ReportSummary,
    },
    /// A task's coverage report, read after it ran (or was restored).
    CoverageReport {
        /// The node's display id.
        task: String,
        /// Total line coverage, in percent.
        percent: f64,
        /// The gate, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        fail_under: Option<f64>,
        /// The per-file table, as data (the cli renders it: `Table::render`).
        table: clab_reports::coverage::Table,
    },
    /// A rule check found something in a file.
    Finding {
        /// The node's display id (`rule:NAME`).
        task: String,
        /// The rule's name.
        rule: String,
        /// The file, relative to the root.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What to tell the user.
        message: String,
        /// `error` (a `reject` action: the node fails) or `warning`.
        severity: String,
    },
    /// Something the user should know that is not a failure.
    Warning {
        /// The message.
        message: String,
    },
    /// The run ends.
    RunFinished(Summary),
}

/// How a node ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// It ran and succeeded.
    Succeeded,
    /// Its result came from the cache.
    Cached {
        /// It came from the shared remote cache (and is now in the local one too).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remote: bool,
    },
    /// It ran and failed.
    Failed {
        /// What went wrong, in a few words: `exit 2`, `timed out after 5s`.
        message: String,
    },
    /// It was stopped by Ctrl-C or by fail-fast.
    Interrupted,
}

/// The totals of a run, the one place its counts are defined: every node of the run (aggregates
/// excluded) is in exactly one of `succeeded`, `failed`, `failed_before_start`, `cached`,
/// `skipped` and `interrupted_tasks`, and [`ran`](Self::ran) is `succeeded + failed`. The
/// terminal's summary line and `--json` both render this type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Nodes that ran and succeeded.
    pub succeeded: usize,
    /// Nodes restored from the cache.
    pub cached: usize,
    /// Of the cached nodes, those restored from the shared remote cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub remote: usize,
    /// Nodes that ran and failed.
    pub failed: usize,
    /// Nodes that failed before anything was started for them: an input missing, an LLM
    /// step needing a call with AI off or `--offline`.
    pub failed_before_start: usize,
    /// Nodes that did not run: a dependency did not succeed, the run stopped first.
    pub skipped: usize,
    /// Nodes that were running when Ctrl-C (or fail-fast) stopped them.
    pub interrupted_tasks: usize,
    /// Whether Ctrl-C stopped the run.
    pub interrupted: bool,
    /// Wall time of the run, in milliseconds.
    pub wall_ms: u64,
    /// Time the cache saved: the recorded durations of the cache hits, in milliseconds.
    pub saved_ms: u64,
    /// Prompt tokens sent to LLM providers.
    pub tokens_in: u64,
    /// Answer tokens received from LLM providers.
    pub tokens_out: u64,
    /// What the shared remote cache did: hits, misses by reason, bytes and time each way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_cache: Option<clab_remote::RemoteStats>,
    /// Nothing had changed since a run in which everything was cached: the run was answered
    /// from its snapshot (`exec::snapshot`) without hashing anything.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_snapshot: bool,
    /// Nodes the no-op snapshot vouched for when it could not answer the whole run: settled
    /// as hits without walking, hashing or keying them (issue 20).
    #[serde(skip_serializing_if = "is_zero")]
    pub snapshot_known: usize,
}

impl Summary {
    /// Nodes that ran to an end: `succeeded + failed`.
    pub fn ran(&self) -> usize {
        self.succeeded + self.failed
    }

    /// Every node the run covered (aggregates excluded).
    pub fn total(&self) -> usize {
        self.ran() + self.failed_before_start + self.cached + self.skipped + self.interrupted_tasks
    }

    /// Nodes that failed, whether or not they had started.
    pub fn failures(&self) -> usize {
        self.failed + self.failed_before_start
    }

    /// Whether every node succeeded or was restored: nothing failed, was skipped or stopped.
    pub fn is_success(&self) -> bool {
        self.total() == self.succeeded + self.cached && !self.interrupted
    }
}

/// Receives events. Called from many tasks at once, so it must be cheap and thread-safe.
pub trait Reporter: Send + Sync {
    /// Handle one event.
    fn report(&self, event: &Event);
}

/// A reporter that drops everything, for callers that do not watch.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: &Event) {}
}

/// For `skip_serializing_if`: a count of none is left out.
fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_is_counted_once_and_ran_is_succeeded_plus_failed() {
        let summary = Summary {
            succeeded: 1,
            cached: 2,
            failed: 3,
            failed_before_start: 4,
            skipped: 5,
            interrupted_tasks: 6,
            ..Summary::default()
        };
        assert_eq!(summary.ran(), 4);
        assert_eq!(summary.total(), 21);
        assert_eq!(summary.failures(), 7);
        assert!(!summary.is_success());
        let clean = Summary {
            succeeded: 1,
            cached: 2,
            ..Summary::default()
        };
        assert!(clean.is_success());
        assert!(
            !Summary {
                skipped: 1,
                ..clean.clone()
            }
            .is_success()
        );
        assert!(
            !Summary {
                interrupted: true,
                ..clean
            }
            .is_success()
        );
    }
}
