//! `Breaker`: the circuit breaker of one run's remote cache.
//!
//! In: the outcome of every backend call. Out: whether to call the remote at all. After
//! `threshold` consecutive failures (outages: connection refused, 5xx — not a rejected
//! object) the breaker opens and stays open for the rest of the run; a success in between
//! resets the count. A timeout opens it at once ([`Breaker::trip`]): a server that stalls once
//! would cost every later call the same wait, one after another along a chain of tasks. It also remembers the first failure's cause and the number of
//! failures, for the one [`Warning::Unavailable`](crate::Warning::Unavailable) of the run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Consecutive failures after which the remote is given up on (default).
pub const DEFAULT_THRESHOLD: u32 = 3;

/// A circuit breaker that never closes again once open.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    consecutive: AtomicU32,
    failures: AtomicU64,
    open: AtomicBool,
    first_cause: Mutex<Option<String>>,
}

/// What went wrong with the remote during the run, for the one warning about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The first failure's cause (scrubbed).
    pub cause: String,
    /// How many calls failed.
    pub failures: u64,
    /// Whether the breaker opened (the remote was not called again).
    pub gave_up: bool,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures (at least 1).
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            consecutive: AtomicU32::new(0),
            failures: AtomicU64::new(0),
            open: AtomicBool::new(false),
            first_cause: Mutex::new(None),
        }
    }

    /// Whether calls should be skipped.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// A call succeeded.
    pub fn success(&self) {
        self.consecutive.store(0, Ordering::Release);
    }

    /// A call failed with `cause`; returns whether this failure opened the breaker.
    pub fn failure(&self, cause: &str) -> bool {
        self.failures.fetch_add(1, Ordering::AcqRel);
        self.first_cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| cause.to_owned());
        let consecutive = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        consecutive >= self.threshold && !self.open.swap(true, Ordering::AcqRel)
    }

    /// A call failed in a way that will not get better within the run (it timed out: the
    /// server stalls): counted as a failure, and the breaker opens at once.
    pub fn trip(&self, cause: &str) {
        self.failure(cause);
        self.open.store(true, Ordering::Release);
    }

    /// The run's outage, if any call failed.
    pub fn outage(&self) -> Option<Outage> {
        let failures = self.failures.load(Ordering::Acquire);
        let cause = self
            .first_cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(Outage {
            cause,
            failures,
            gave_up: self.is_open(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = Breaker::new(3);
        assert!(breaker.outage().is_none());
        assert!(!breaker.failure("refused"));
        assert!(!breaker.failure("503"));
        breaker.success();
        assert!(!breaker.failure("again"));
        assert!(!breaker.failure("again"));
        assert!(!breaker.is_open());
        assert!(breaker.failure("again"), "the third in a row opens it");
        assert!(breaker.is_open());
        assert!(!breaker.failure("later"), "it opens once");
        breaker.success();
        assert!(breaker.is_open(), "and stays open");
        assert_eq!(
            breaker.outage(),
            Some(Outage {
                cause: "refused".into(),
                failures: 6,
                gave_up: true
            })
        );
    }

    #[test]
    fn a_timeout_opens_it_at_once() {
        let breaker = Breaker::new(3);
        breaker.trip("no answer within 5 s");
        assert!(breaker.is_open());
        assert_eq!(
            breaker.outage(),
            Some(Outage {
                cause: "no answer within 5 s".into(),
                failures: 1,
                gave_up: true
            })
        );
    }
}
