//! How long one scan may search: the time bound on backtracking (`fancy-regex`) patterns.
//!
//! In: a duration chosen by the caller (or the default). Out: a deadline for one
//! [`CompiledRule::try_scan_selected`](crate::CompiledRule::try_scan_selected) call, which
//! covers every pattern of the rule over one file. Linear-time (`regex`) patterns finish on
//! their own and are not timed; a backtracking search still running at the deadline makes
//! the scan a [`ScanError`](crate::ScanError), never a pass.

use std::time::{Duration, Instant};

/// The default time one rule may spend on one file with backtracking patterns.
pub const DEFAULT_FILE_SCAN_TIME: Duration = Duration::from_secs(1);

/// The time one rule may spend searching one file with backtracking patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanBudget {
    /// The limit per (rule, file) scan.
    pub per_file: Duration,
}

impl Default for ScanBudget {
    fn default() -> Self {
        ScanBudget {
            per_file: DEFAULT_FILE_SCAN_TIME,
        }
    }
}

impl ScanBudget {
    /// A budget of `per_file` for each (rule, file) scan.
    pub fn new(per_file: Duration) -> Self {
        ScanBudget { per_file }
    }

    /// The deadline of a scan that starts now (`None` if it would not fit in an `Instant`).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Instant::now().checked_add(self.per_file)
    }
}
