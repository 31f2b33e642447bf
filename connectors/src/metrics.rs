//! Call accounting per account: logical calls, HTTP attempts, retries, rate-limit responses seen,
//! time spent in backoff and in the client-side rate limiter. Lock-free atomic counters, read as
//! a [`CallMetrics`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of an account's counters since it connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallMetrics {
    /// Logical calls (one per API method invocation of a chunk, whatever the retries).
    pub calls: u64,
    /// HTTP requests sent (first attempts and retries).
    pub attempts: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Rate-limit responses seen (429, 403 `rateLimitExceeded`/`userRateLimitExceeded`).
    pub rate_limited: u64,
    /// Calls that finally failed (including a 404 that `get` turns into `None`).
    pub failures: u64,
    /// Total time slept in backoff before retries.
    pub backoff: Duration,
    /// Total time waited for the client-side rate limiter.
    pub throttled: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct MetricsRecorder {
    calls: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    failures: AtomicU64,
    backoff_us: AtomicU64,
    throttled_us: AtomicU64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl MetricsRecorder {
    pub fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    pub fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }
    pub fn retry(&self, backoff: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.backoff_us
            .fetch_add(micros(backoff), Ordering::Relaxed);
    }
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    pub fn throttled(&self, waited: Duration) {
        if !waited.is_zero() {
            self.throttled_us
                .fetch_add(micros(waited), Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> CallMetrics {
        CallMetrics {
            calls: self.calls.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            backoff: Duration::from_micros(self.backoff_us.load(Ordering::Relaxed)),
            throttled: Duration::from_micros(self.throttled_us.load(Ordering::Relaxed)),
        }
    }
}

impl CallMetrics {
    /// The counters accumulated since `earlier` (for per-run accounting).
    pub fn since(&self, earlier: &CallMetrics) -> CallMetrics {
        CallMetrics {
            calls: self.calls.saturating_sub(earlier.calls),
            attempts: self.attempts.saturating_sub(earlier.attempts),
            retries: self.retries.saturating_sub(earlier.retries),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
            failures: self.failures.saturating_sub(earlier.failures),
            backoff: self.backoff.saturating_sub(earlier.backoff),
            throttled: self.throttled.saturating_sub(earlier.throttled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_diffs() {
        let m = MetricsRecorder::default();
        m.call();
        m.attempt();
        m.attempt();
        m.retry(Duration::from_millis(300));
        m.rate_limited();
        m.throttled(Duration::from_millis(5));
        let a = m.snapshot();
        assert_eq!(
            (a.calls, a.attempts, a.retries, a.rate_limited),
            (1, 2, 1, 1)
        );
        assert_eq!(a.backoff, Duration::from_millis(300));
        m.call();
        m.failure();
        let b = m.snapshot().since(&a);
        assert_eq!((b.calls, b.failures, b.retries), (1, 1, 0));
    }
}
