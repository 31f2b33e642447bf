//! Per-user per-minute quotas, enforced with Google's own error bodies: Calendar 403 (or 429)
//! `rateLimitExceeded` in domain `usageLimits`, People 429 `RESOURCE_EXHAUSTED` with ErrorInfo
//! `RATE_LIMIT_EXCEEDED`. Windows are fixed emulated-clock minutes, counted per quota key and
//! API. The key is, as Google accounts it: the `quotaUser` parameter (or `x-goog-quota-user`
//! header) when given; else, for tokens from domain-wide delegation, the service account (all
//! impersonated users share it); else the token's user.

use crate::errors::{Api, ApiError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Mutex;

/// Limits set by `PUT /_emulator/quotas`. `None` = unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// Calendar requests per user per minute (Google's default is 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_per_user_per_minute: Option<u64>,
    /// People requests per user per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub people_per_user_per_minute: Option<u64>,
    /// Status for Calendar rate limiting: 403 (default) or 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_status: Option<u16>,
}

/// A user's counters for the current minute.
#[derive(Debug, Default)]
pub struct QuotaCounters {
    inner: Mutex<[(i64, u64); 2]>,
}

impl QuotaCounters {
    /// Counts one request; returns an error when over the limit.
    pub fn check(&self, api: Api, quotas: &Quotas, now: DateTime<Utc>) -> Result<(), ApiError> {
        let limit = match api {
            Api::Calendar => quotas.calendar_per_user_per_minute,
            Api::People => quotas.people_per_user_per_minute,
        };
        let Some(limit) = limit else {
            return Ok(());
        };
        let minute = now.timestamp().div_euclid(60);
        let idx = match api {
            Api::Calendar => 0,
            Api::People => 1,
        };
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut c[idx];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        if slot.1 >= limit {
            return Err(rate_limited(api, quotas.calendar_status.unwrap_or(403)));
        }
        slot.1 += 1;
        Ok(())
    }

    pub fn reset(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = [(0, 0); 2];
    }
}

/// Google's rate-limit error for `api`.
pub fn rate_limited(api: Api, calendar_status: u16) -> ApiError {
    match api {
        Api::Calendar => ApiError::new(
            if calendar_status == 429 { 429 } else { 403 },
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        )
        .domain("usageLimits"),
        Api::People => ApiError::new(
            429,
            "RATE_LIMIT_EXCEEDED",
            "Quota exceeded for quota metric 'Critical read requests (Contact and Profile Reads)' and limit 'Critical read requests (Contact and Profile Reads) per minute per user' of service 'people.googleapis.com' for consumer 'project_number:000000000000'.",
        )
        .status("RESOURCE_EXHAUSTED")
        .domain("googleapis.com")
        .metadata(json!({
            "quota_limit": "CriticalReadsPerMinutePerProjectPerUser",
            "quota_metric": "people.googleapis.com/critical_read_requests",
            "service": "people.googleapis.com",
            "consumer": "projects/000000000000"
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_minute_windows_per_api() {
        let q = Quotas {
            calendar_per_user_per_minute: Some(2),
            people_per_user_per_minute: None,
            calendar_status: Some(429),
        };
        let c = QuotaCounters::default();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 5).unwrap();
        assert!(c.check(Api::Calendar, &q, t).is_ok());
        assert!(c.check(Api::Calendar, &q, t).is_ok());
        let e = c.check(Api::Calendar, &q, t).unwrap_err();
        assert_eq!(
            (e.code, e.detail.reason.as_deref()),
            (429, Some("rateLimitExceeded"))
        );
        assert!(c.check(Api::People, &q, t).is_ok());
        assert!(c
            .check(Api::Calendar, &q, t + chrono::Duration::seconds(60))
            .is_ok());
    }
}
