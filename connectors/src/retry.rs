//! Retry policy: truncated exponential backoff with full jitter, `Retry-After`, People's
//! per-minute quota windows, and the idempotency rules that decide whether a failed attempt may
//! be sent again (facts 1.10 retry matrix).
//!
//! | failure                                   | idempotent call | non-idempotent create   |
//! |-------------------------------------------|-----------------|-------------------------|
//! | nothing sent (token fetch, connect error) | retry           | retry                   |
//! | 429, 403 `rateLimitExceeded`              | retry           | retry (rejected unread) |
//! | 500/502/503/504, transport after sending  | retry           | `Indeterminate`, stop   |
//! | 401                                       | refresh token once, retry | same          |
//! | anything else                             | stop            | stop                    |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How hard to retry. The defaults follow Google's guidance: 0.5 s base, 32 s cap, 6 attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per call, including the first (1 = never retry).
    pub max_attempts: u32,
    /// Backoff ceiling of the first retry; doubles per retry.
    pub base_delay: Duration,
    /// Upper bound of the backoff ceiling (truncation).
    pub max_delay: Duration,
    /// Upper bound applied to a server's `Retry-After` and to People's minute-window wait.
    pub max_server_delay: Duration,
    /// On a People 429 without `Retry-After`, wait at least until the next wall-clock minute
    /// (People quotas are per-minute windows; retrying inside the same window fails again).
    pub people_minute_windows: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(32),
            max_server_delay: Duration::from_secs(120),
            people_minute_windows: true,
        }
    }
}

impl RetryPolicy {
    /// Never retry (one attempt per call).
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// A fast policy for tests: `attempts` attempts, 10 ms base, 200 ms cap.
    pub fn fast(attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: attempts.max(1),
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            max_server_delay: Duration::from_secs(61),
            people_minute_windows: true,
        }
    }

    /// The backoff ceiling before retry number `retry` (1-based): `min(cap, base * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        self.base_delay
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Full jitter: a uniformly random delay in `[0, ceiling(retry)]`, `unit` in `[0, 1)`.
    pub fn jittered(&self, retry: u32, unit: f64) -> Duration {
        self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The delay before retry number `retry`, given what the server said.
    pub(crate) fn delay(
        &self,
        retry: u32,
        hint: &RetryHint,
        unit: f64,
        now: SystemTime,
    ) -> Duration {
        let backoff = self.jittered(retry, unit);
        if let Some(after) = hint.retry_after {
            return after.min(self.max_server_delay);
        }
        if hint.minute_window && self.people_minute_windows {
            // Into the next minute window, plus up to a second of jitter so a domain's users
            // do not all come back in the same instant.
            let wait = until_next_minute(now) + Duration::from_millis((unit * 1000.0) as u64);
            return wait.max(backoff).min(self.max_server_delay);
        }
        backoff
    }
}

/// What a failed response said about when to come back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RetryHint {
    /// `Retry-After` header.
    pub retry_after: Option<Duration>,
    /// A People per-minute quota rejection (429).
    pub minute_window: bool,
}

/// Whether resending a call that may have reached Google is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Lists, gets, deletes, same-body updates, member changes, Calendar inserts with a
    /// client-chosen id (a repeat yields 409 = already applied).
    Idempotent,
    /// People creates: a resend after the request may have been processed could duplicate.
    NonIdempotent,
}

/// Time until the next wall-clock minute boundary.
pub(crate) fn until_next_minute(now: SystemTime) -> Duration {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let into_minute = Duration::from_nanos((since.as_nanos() % 60_000_000_000) as u64);
    Duration::from_secs(60) - into_minute
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(at.timestamp()).ok()?))?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_and_truncates() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(500));
        assert_eq!(p.ceiling(2), Duration::from_secs(1));
        assert_eq!(p.ceiling(3), Duration::from_secs(2));
        assert_eq!(p.ceiling(7), Duration::from_secs(32));
        assert_eq!(p.ceiling(8), Duration::from_secs(32));
        assert_eq!(p.ceiling(200), Duration::from_secs(32));
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let p = RetryPolicy::default();
        assert_eq!(p.jittered(3, 0.0), Duration::ZERO);
        assert_eq!(p.jittered(3, 0.5), Duration::from_secs(1));
        assert!(p.jittered(3, 0.999_999) <= Duration::from_secs(2));
        assert_eq!(p.jittered(3, 7.0), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let p = RetryPolicy::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hint = RetryHint {
            retry_after: Some(Duration::from_secs(7)),
            minute_window: true,
        };
        assert_eq!(p.delay(1, &hint, 0.9, now), Duration::from_secs(7));
        let huge = RetryHint {
            retry_after: Some(Duration::from_secs(3600)),
            minute_window: false,
        };
        assert_eq!(p.delay(1, &huge, 0.1, now), Duration::from_secs(120));
    }

    #[test]
    fn people_429_waits_into_next_minute() {
        let p = RetryPolicy::default();
        // 45 s into a minute: at least 15 s.
        let now = UNIX_EPOCH + Duration::from_secs(60 * 1000 + 45);
        let hint = RetryHint {
            retry_after: None,
            minute_window: true,
        };
        let d = p.delay(1, &hint, 0.5, now);
        assert_eq!(d, Duration::from_millis(15_500));
        let mut off = p.clone();
        off.people_minute_windows = false;
        assert_eq!(off.delay(1, &hint, 0.5, now), Duration::from_millis(250));
    }

    #[test]
    fn next_minute_boundary() {
        let now = UNIX_EPOCH + Duration::from_millis(120_000 + 59_250);
        assert_eq!(until_next_minute(now), Duration::from_millis(750));
        let on = UNIX_EPOCH + Duration::from_secs(180);
        assert_eq!(until_next_minute(on), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_formats() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        // 2015-10-21 07:28:00 GMT = 1445412480; 10 s later.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
