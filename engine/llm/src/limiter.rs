//! Per-provider request limits shared by every node: a requests-per-minute token bucket and a
//! concurrency cap.
//!
//! A [`Limiter`] is a cheap cloneable handle; [`LimiterRegistry::get`] gives every node that
//! talks to the same provider and endpoint (`openai` at `https://api.openai.com/v1`, or one
//! command line) the same limiter, created from the first config that asks. The bucket holds
//! at most ten seconds' worth of requests (`rpm / 6`, at least one) and refills continuously at
//! `rpm / 60` per second, so a burst of parallel nodes is smoothed rather than fired at once.
//! Waiters reserve tokens in arrival order (the balance may go negative), so nobody starves.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::LlmConfig;

/// A shared limiter for one provider endpoint.
#[derive(Clone, Debug)]
pub struct Limiter {
    semaphore: Arc<Semaphore>,
    bucket: Option<Arc<Mutex<Bucket>>>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens available; negative when callers have reserved future tokens.
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

/// Held while a request is in flight; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
}

impl Limiter {
    /// At most `max_concurrent` requests at once and, when given, `requests_per_minute`
    /// (burst of `rpm / 6`).
    pub fn new(requests_per_minute: Option<u32>, max_concurrent: u32) -> Limiter {
        let burst = requests_per_minute.map(|rpm| (rpm / 6).max(1));
        Limiter::with_burst(requests_per_minute, burst.unwrap_or(1), max_concurrent)
    }

    /// Like [`Limiter::new`] with an explicit bucket size.
    pub fn with_burst(
        requests_per_minute: Option<u32>,
        burst: u32,
        max_concurrent: u32,
    ) -> Limiter {
        let bucket = requests_per_minute.filter(|rpm| *rpm > 0).map(|rpm| {
            Arc::new(Mutex::new(Bucket {
                tokens: f64::from(burst.max(1)),
                capacity: f64::from(burst.max(1)),
                per_second: f64::from(rpm) / 60.0,
                last: Instant::now(),
            }))
        });
        Limiter {
            semaphore: Arc::new(Semaphore::new(max_concurrent.max(1) as usize)),
            bucket,
        }
    }

    /// No limits at all.
    pub fn unlimited() -> Limiter {
        Limiter::new(None, Semaphore::MAX_PERMITS as u32)
    }

    /// Wait for a concurrency slot, then for a rate token.
    pub async fn acquire(&self) -> Permit {
        // The semaphore is never closed, so acquiring cannot fail; if it ever were, that
        // would mean "no limit" rather than a crash.
        let slot = Arc::clone(&self.semaphore).acquire_owned().await.ok();
        if let Some(bucket) = &self.bucket {
            let wait = {
                let mut bucket = bucket
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(bucket.last).as_secs_f64() * bucket.per_second;
                bucket.tokens = (bucket.tokens + refill).min(bucket.capacity);
                bucket.last = now;
                bucket.tokens -= 1.0;
                if bucket.tokens >= 0.0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(-bucket.tokens / bucket.per_second)
                }
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Permit { _slot: slot }
    }

    /// Free concurrency slots right now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

/// One [`Limiter`] per provider and endpoint, shared by all nodes of a run.
#[derive(Clone, Debug, Default)]
pub struct LimiterRegistry {
    limiters: Arc<Mutex<BTreeMap<(String, String), Limiter>>>,
}

impl LimiterRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        LimiterRegistry::default()
    }

    /// The limiter for `config`'s provider and endpoint, created from `config`'s
    /// `requests-per-minute` and `max-concurrent` on first use.
    pub fn get(&self, config: &LlmConfig) -> Limiter {
        let key = (config.provider.to_string(), config.endpoint().to_owned());
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        limiters
            .entry(key)
            .or_insert_with(|| Limiter::new(config.requests_per_minute, config.max_concurrent))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::Settings;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_cap_is_observed() {
        let limiter = Limiter::new(None, 2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (limiter, running, peak) =
                (limiter.clone(), Arc::clone(&running), Arc::clone(&peak));
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire().await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(limiter.available(), 2);
    }

    #[tokio::test]
    async fn rate_limit_spaces_requests() {
        // 600 rpm = one token per 100 ms; a bucket of one: four requests need ≥ 300 ms.
        let limiter = Limiter::with_burst(Some(600), 1, 10);
        let started = Instant::now();
        for _ in 0..4 {
            drop(limiter.acquire().await);
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn registry_shares_one_limiter_per_endpoint() {
        let registry = LimiterRegistry::new();
        let a = Settings {
            model: Some("a".into()),
            max_concurrent: Some(3),
            ..Settings::default()
        }
        .resolve("t")
        .unwrap();
        let b = Settings {
            model: Some("b".into()),
            ..Settings::default()
        }
        .resolve("t")
        .unwrap();
        let local = Settings {
            model: Some("a".into()),
            base_url: Some("http://localhost:1/v1".into()),
            ..Settings::default()
        }
        .resolve("t")
        .unwrap();
        let first = registry.get(&a);
        let same = registry.get(&b);
        assert!(Arc::ptr_eq(&first.semaphore, &same.semaphore));
        assert_eq!(same.available(), 3);
        assert!(!Arc::ptr_eq(
            &first.semaphore,
            &registry.get(&local).semaphore
        ));
    }
}
