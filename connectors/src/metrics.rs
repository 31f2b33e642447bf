//! Call accounting per account: logical calls, HTTP attempts, retries, rate-limit responses seen,
//! time spent in backoff and in the client-side rate limiter. Lock-free atomic counters, read as
//! a [`CallMetrics`] snapshot.
//!
//! The same events also go, process-wide, to the [`metrics`] facade under the names in
//! [`names`] (labelled by API method and HTTP status only: never a user, an e-mail or an id), so
//! that a recorder installed by the binary (the Prometheus exporter behind `GET /metrics`) counts
//! every Google call of the process. Without a recorder the facade does nothing.

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
    /// Wall time during which at least one call of this account was in flight (the union of
    /// call durations; concurrent calls count once). Run time minus this is the caller's own time.
    pub busy: Duration,
}

/// Tracks the union of in-flight call intervals.
#[derive(Debug, Default)]
struct Busy {
    in_flight: u32,
    since: Option<std::time::Instant>,
    total: Duration,
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
    busy: std::sync::Mutex<Busy>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

    /// A call starts (see [`CallMetrics::busy`]).
    pub fn enter(&self) {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if b.in_flight == 0 {
            b.since = Some(std::time::Instant::now());
        }
        b.in_flight += 1;
    }

    /// A call ends.
    pub fn leave(&self) {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        b.in_flight = b.in_flight.saturating_sub(1);
        if b.in_flight == 0 {
            if let Some(since) = b.since.take() {
                b.total += since.elapsed();
            }
        }
    }

    fn busy_total(&self) -> Duration {
        let b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        b.total + b.since.map(|s| s.elapsed()).unwrap_or_default()
    }

    pub fn snapshot(&self) -> CallMetrics {
        CallMetrics {
            busy: self.busy_total(),
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
            busy: self.busy.saturating_sub(earlier.busy),
        }
    }
}

/// Names of the process-wide metrics (see the module documentation).
pub mod names {
    /// Counter `{method, status}`: HTTP requests sent to a Google API (first attempts and
    /// retries); `status` is the HTTP status code, `timeout` or `transport_error`.
    pub const REQUESTS: &str = "crmsync_google_requests_total";
    /// Counter `{method, result}`: logical calls (whatever the retries), `result` = `ok` | `error`.
    pub const CALLS: &str = "crmsync_google_calls_total";
    /// Counter `{method}`: retries (after a rate limit, a transient failure or a refused token).
    pub const RETRIES: &str = "crmsync_google_retries_total";
    /// Counter `{method}`: rate-limit answers (429, 403 `rateLimitExceeded` /
    /// `userRateLimitExceeded`).
    pub const RATE_LIMITED: &str = "crmsync_google_rate_limited_total";
    /// Counter `{method}`: milliseconds slept in backoff before retries.
    pub const BACKOFF_MS: &str = "crmsync_google_backoff_milliseconds_total";
    /// Counter `{api}`: milliseconds calls waited for the client-side rate limiter (`calendar`,
    /// `people`).
    pub const THROTTLED_MS: &str = "crmsync_google_throttled_milliseconds_total";
}

/// Process-wide counting through the [`metrics`] facade.
pub(crate) mod export {
    use super::names;
    use std::time::Duration;

    /// How an attempt that reached the wire ended.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Status {
        Http(u16),
        Timeout,
        Transport,
    }

    pub(crate) fn request(method: &'static str, status: Status) {
        let status = match status {
            Status::Http(code) => code.to_string(),
            Status::Timeout => "timeout".to_string(),
            Status::Transport => "transport_error".to_string(),
        };
        metrics::counter!(names::REQUESTS, "method" => method, "status" => status).increment(1);
    }

    pub(crate) fn call(method: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        metrics::counter!(names::CALLS, "method" => method, "result" => result).increment(1);
    }

    pub(crate) fn retry(method: &'static str, backoff: Duration) {
        metrics::counter!(names::RETRIES, "method" => method).increment(1);
        if !backoff.is_zero() {
            metrics::counter!(names::BACKOFF_MS, "method" => method)
                .increment(super::millis(backoff));
        }
    }

    pub(crate) fn rate_limited(method: &'static str) {
        metrics::counter!(names::RATE_LIMITED, "method" => method).increment(1);
    }

    pub(crate) fn throttled(api: &'static str, waited: Duration) {
        if !waited.is_zero() {
            metrics::counter!(names::THROTTLED_MS, "api" => api).increment(super::millis(waited));
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
