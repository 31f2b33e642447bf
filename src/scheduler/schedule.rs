//! When a (user, kind) is due next: a pure function of the sync settings, the start of the last
//! run, the current time and a seed, so it is the same in every worker and tests drive it with a
//! controllable clock.
//!
//! - `auto_sync = false`: never (manual starts only).
//! - `interval_minutes = N`: the last run's start + N minutes, moved by a jitter in
//!   `[-b, +b]`; never synced: now + a jitter in `[0, b]` (a domain set up at once does not
//!   sync in the same second). `b = min(N minutes × fraction, max)`.
//! - `cron`: the first occurrence after the last run's start (after now when never synced), in
//!   the user's time zone, delayed by a jitter in `[0, b]` — a cron run never fires before its
//!   time. `b = min(gap to the following occurrence × fraction, max)`. An occurrence missed
//!   while no worker ran is run once, not once per missed occurrence.
//!
//! Cron expressions use the `cron` crate's syntax: six or seven fields, **seconds first**
//! (`sec min hour day-of-month month day-of-week [year]`), e.g. `0 */15 * * * *` (every 15
//! minutes), `0 0 8-18 * * Mon-Fri` (hourly in office hours), `0 30 7 * * *` (07:30 daily).

use chrono::{DateTime, Duration, TimeZone, Utc};
use crmsync_engine::ids::{SyncKind, UserId};
use crmsync_engine::model::{SyncSchedule, SyncSettings};
use sha2::{Digest, Sha256};
use std::str::FromStr;

/// How much the due time of a run may move (spreads a domain's runs over time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterPolicy {
    /// Share of the interval (or of the gap between cron occurrences), e.g. 0.1 = 10%.
    pub fraction: f64,
    /// Upper bound of the jitter, whatever the interval.
    pub max: Duration,
}

impl Default for JitterPolicy {
    fn default() -> Self {
        JitterPolicy {
            fraction: 0.1,
            max: Duration::minutes(5),
        }
    }
}

impl JitterPolicy {
    /// No jitter at all.
    pub fn none() -> Self {
        JitterPolicy {
            fraction: 0.0,
            max: Duration::zero(),
        }
    }

    /// The jitter bound for a period.
    pub fn bound(&self, period: Duration) -> Duration {
        let fraction = if self.fraction.is_finite() {
            self.fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let scaled = Duration::milliseconds((period.num_milliseconds() as f64 * fraction) as i64);
        scaled.min(self.max).max(Duration::zero())
    }
}

/// Why no due time could be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("the cron expression {expr:?} is not valid ({reason}); set six or seven fields with seconds first, e.g. \"0 */15 * * * *\"")]
    BadCron { expr: String, reason: String },
    #[error("the cron expression {0:?} never fires again; set a schedule that does")]
    CronNeverFires(String),
}

/// A seed for the jitter of one due time: the same for every worker (it depends only on the
/// job and the last run), different between jobs and between runs.
pub fn seed_for(user: UserId, kind: SyncKind, anchor: Option<DateTime<Utc>>) -> u64 {
    let mut h = Sha256::new();
    h.update(user.to_string().as_bytes());
    h.update(kind.as_str().as_bytes());
    h.update(anchor.map_or(0, |a| a.timestamp_micros()).to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A jitter in `[0, bound]` (or `[-bound, bound]` when `symmetric`) picked by `seed`.
pub fn jitter(bound: Duration, seed: u64, symmetric: bool) -> Duration {
    let b = bound.num_milliseconds().max(0) as u64;
    if b == 0 {
        return Duration::zero();
    }
    if symmetric {
        let off = (seed % (2 * b + 1)) as i64 - b as i64;
        Duration::milliseconds(off)
    } else {
        Duration::milliseconds((seed % (b + 1)) as i64)
    }
}

/// When (user, kind) is next due. `last_run` is when the last run (of any trigger) started;
/// `tz` is the user's time zone (cron expressions are read in it). `None`: auto-sync is off.
pub fn next_due<Z: TimeZone>(
    settings: &SyncSettings,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    seed: u64,
    jitter_policy: &JitterPolicy,
    tz: &Z,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    if !settings.auto_sync {
        return Ok(None);
    }
    match &settings.schedule {
        SyncSchedule::IntervalMinutes(m) => {
            let period = Duration::minutes(i64::from((*m).max(1)));
            let bound = jitter_policy.bound(period);
            Ok(Some(match last_run {
                Some(last) => last + period + jitter(bound, seed, true),
                None => now + jitter(bound, seed, false),
            }))
        }
        SyncSchedule::Cron(expr) => {
            let schedule = cron::Schedule::from_str(expr).map_err(|e| ScheduleError::BadCron {
                expr: expr.clone(),
                reason: e.to_string(),
            })?;
            let from = last_run.unwrap_or(now).with_timezone(tz);
            let mut upcoming = schedule.after(&from);
            let first = upcoming
                .next()
                .ok_or_else(|| ScheduleError::CronNeverFires(expr.clone()))?
                .with_timezone(&Utc);
            let gap = upcoming
                .next()
                .map(|second| second.with_timezone(&Utc) - first)
                .unwrap_or_else(Duration::zero);
            Ok(Some(first + jitter(jitter_policy.bound(gap), seed, false)))
        }
    }
}

/// A one-line description of a schedule ("every 15 minutes", "cron 0 */15 * * * *").
pub fn describe(settings: &SyncSettings) -> String {
    let what = match &settings.schedule {
        SyncSchedule::IntervalMinutes(1) => "every minute".to_string(),
        SyncSchedule::IntervalMinutes(m) => format!("every {m} minutes"),
        SyncSchedule::Cron(c) => format!("cron {c}"),
    };
    if settings.auto_sync {
        what
    } else {
        format!("manual only (auto-sync off; {what} when on)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bound() {
        let b = Duration::seconds(90);
        for seed in [0u64, 1, 2, 179_999, 180_000, u64::MAX, 12_345_678_901] {
            let s = jitter(b, seed, true);
            assert!(s >= -b && s <= b, "{s}");
            let p = jitter(b, seed, false);
            assert!(p >= Duration::zero() && p <= b, "{p}");
        }
        assert_eq!(jitter(Duration::zero(), 42, true), Duration::zero());
    }

    #[test]
    fn bound_is_a_capped_share() {
        let j = JitterPolicy::default();
        assert_eq!(j.bound(Duration::minutes(10)), Duration::minutes(1));
        assert_eq!(j.bound(Duration::hours(24)), Duration::minutes(5));
        assert_eq!(
            JitterPolicy::none().bound(Duration::hours(1)),
            Duration::zero()
        );
        let weird = JitterPolicy {
            fraction: f64::NAN,
            max: Duration::minutes(1),
        };
        assert_eq!(weird.bound(Duration::hours(1)), Duration::zero());
    }
}
