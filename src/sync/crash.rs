//! Named crash points (sync-testing-plan B7.1): places where a test can make a run stop dead, as
//! if the process were killed there, to check that the next run converges with no duplicate and
//! no lost edit. Production uses [`NoCrashes`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Where a run can be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashPoint {
    /// Intents (pending links) are committed, the Google write is not sent yet.
    BeforeRemoteWrite,
    /// Google applied a write; the local commit (links, CRM, journal) has not happened.
    AfterRemoteWriteBeforeLocalCommit,
    /// Everything is committed locally; the cursors (sync token, CRM cursor) are not stored.
    AfterLocalCommitBeforeTokenStore,
    /// Between two pages of a Google listing.
    MidPagination,
    /// During the reconciliation that follows a full re-listing.
    DuringFullResync,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 5] = [
        CrashPoint::BeforeRemoteWrite,
        CrashPoint::AfterRemoteWriteBeforeLocalCommit,
        CrashPoint::AfterLocalCommitBeforeTokenStore,
        CrashPoint::MidPagination,
        CrashPoint::DuringFullResync,
    ];
}

/// A fired crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash(pub CrashPoint);

/// Decides whether a run stops at a point.
pub trait CrashPlan: Send + Sync + std::fmt::Debug {
    fn check(&self, point: CrashPoint) -> Result<(), Crash>;
}

/// Never crashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCrashes;

impl CrashPlan for NoCrashes {
    fn check(&self, _point: CrashPoint) -> Result<(), Crash> {
        Ok(())
    }
}

/// Crashes the `nth` time (1-based) `point` is reached, once.
#[derive(Debug, Clone)]
pub struct CrashAt {
    pub point: CrashPoint,
    pub nth: u32,
    seen: Arc<AtomicU32>,
}

impl CrashAt {
    pub fn new(point: CrashPoint, nth: u32) -> Self {
        CrashAt {
            point,
            nth: nth.max(1),
            seen: Arc::new(AtomicU32::new(0)),
        }
    }

    /// How many times the point was reached.
    pub fn hits(&self) -> u32 {
        self.seen.load(Ordering::SeqCst)
    }
}

impl CrashPlan for CrashAt {
    fn check(&self, point: CrashPoint) -> Result<(), Crash> {
        if point != self.point {
            return Ok(());
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.nth {
            tracing::warn!(?point, "simulated crash");
            Err(Crash(point))
        } else {
            Ok(())
        }
    }
}
