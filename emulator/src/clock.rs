//! The emulated clock: real UTC time plus an offset that tests move forward with
//! `advance_clock` (token expiry, the 7-day People sync-token lifetime, propagation delays).

use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

/// Real time plus a test-controlled offset (milliseconds).
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// The emulated "now".
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the emulated clock by `d` (may be negative, though tests should only move forward).
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.num_milliseconds(), Ordering::Relaxed);
    }

    /// Back to real time.
    pub fn reset(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }
}

/// RFC 3339 with millisecond precision and `Z`, as Calendar's `updated`/`created`.
pub fn fmt_millis(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// RFC 3339 with microsecond precision and `Z`, as People's `updateTime`.
pub fn fmt_micros(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
