//! How long to wait between tries: exponential backoff with jitter, or the server's
//! `Retry-After`.
//!
//! Try `n` (0-based retry count) waits `base · 2ⁿ`, capped at `max_delay`, with "equal
//! jitter": a uniformly random point in the upper half of that interval, so parallel nodes that
//! failed together do not retry together. A `Retry-After` header (seconds or an HTTP date)
//! replaces the computed delay, capped at `max_retry_after`.

use std::time::{Duration, SystemTime};

/// Retry settings for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: u32,
    /// The first backoff.
    pub base_delay: Duration,
    /// The largest computed backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 retries, 500 ms doubling up to 30 s, `Retry-After` honoured up to 2 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The default policy with `max_retries` retries.
    pub fn with_max_retries(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let factor = 2u32.saturating_pow(retry.min(20));
        let backoff = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = backoff / 2;
        half + half.mul_f64(random_unit())
    }
}

/// A random number in `[0, 1)` from the standard library's randomly keyed hasher (jitter needs
/// no better randomness, and this needs no dependency).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parse a `Retry-After` value: delay-seconds (`"1"`, also `"1.5"`) or an HTTP date, relative
/// to `now` (a date in the past is zero). `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 2.5 ", now),
            Some(Duration::from_millis(2500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        };
        for retry in 0..8 {
            let full =
                Duration::from_millis(100 * 2u64.pow(retry)).min(Duration::from_millis(1000));
            for _ in 0..20 {
                let d = policy.delay(retry, None);
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {retry}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
        let distinct: std::collections::BTreeSet<_> =
            (0..20).map(|_| policy.delay(3, None)).collect();
        assert!(distinct.len() > 1, "no jitter");
    }
}
