//! Resetting a user's sync of one kind (SPEC 6.5): the engine forgets what it remembered of each
//! pair (the merge base, i.e. the values both sides last agreed on, the Google etag, record and
//! time, the CRM change it last saw), where it was in both change streams (the cursor: the next run lists
//! everything) and the records that kept failing (parked items). The next run is a first sync
//! again: it reads every record on both sides, merges each pair as a first pairing (a value on one
//! side only is copied, differing values go to the later writer), and pairs records not paired
//! yet by the CRM id the Google record carries, else (contacts) by e-mail.
//!
//! Which Google record belongs to which CRM record is kept (active, ended and pending links stay
//! links): a record imported from Google carries no CRM id and may have no e-mail, so forgetting
//! its pair would import it again as a duplicate. Nothing in the CRM or in Google is touched by
//! the reset itself: no record is deleted, untagged or changed.
//!
//! The reset takes the job row's lock and is refused while a run holds the lease (its commits
//! would write a base back behind the reset); it queues a manual run in the same transaction, so
//! the re-merge starts at once. Journal entries of earlier runs are kept: a record's history stays
//! readable.

use crate::db::{require_transaction, AnyConnection};
use crate::error::{StoreError, StoreResult};
use crate::jobs::{self, RunRequest};
use crate::schema::{cursors, links, parked_items};
use crate::sync_state::Link;
use crate::util::to_db_time;
use chrono::{DateTime, Utc};
use crmsync_engine::fields::{self, Fields};
use crmsync_engine::ids::{SyncKind, UserId};
use crmsync_engine::planner::LinkState;
use diesel::prelude::*;
use serde::Serialize;

/// What a reset forgot, and the run that re-merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResetOutcome {
    /// Pairs whose merge base was forgotten (active links; the pairs themselves are kept).
    pub bases_forgotten: u64,
    /// Whether a cursor (sync token and CRM position) was forgotten.
    pub cursor_forgotten: bool,
    /// Failing and parked records forgotten (they are read again by the full listing).
    pub failing_forgotten: u64,
    /// The queued run that re-merges.
    pub run: RunRequest,
}

/// A link as a reset leaves it: an active pair keeps its ids and forgets its merge base, etag,
/// Google time and the CRM change it saw; other states are kept as they are. The dry run of a
/// reset reads links through this, so it plans exactly what the run after the reset will.
pub fn as_after_reset(mut l: Link) -> Link {
    if l.state == LinkState::Active {
        l.snapshot = Fields::new();
        l.snapshot_hash = fields::hash(&l.snapshot);
        l.etag = None;
        l.google_record = None;
        l.google_updated = None;
        l.crm_change_seq = 0;
    }
    l
}

/// Whether a link is an active pair whose merge base a reset forgot: the next run reads its
/// Google record before planning it.
pub fn base_forgotten(l: &Link) -> bool {
    l.state == LinkState::Active && l.snapshot.is_empty()
}

/// Forgets the merge bases of the pairs, the cursor and the failing records of (user, kind) and
/// queues a manual run.
/// [`StoreError::Conflict`] while a run holds the job's lease, or when the user has no sync
/// settings of this kind.
pub fn reset_sync(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    now: DateTime<Utc>,
) -> StoreResult<ResetOutcome> {
    require_transaction(conn)?;
    jobs::ensure_job(conn, user, kind, now)?;
    jobs::lock_job(conn, user, kind)?;
    if let Some(job) = jobs::get_job(conn, user, kind)? {
        if job.is_leased(now) {
            return Err(StoreError::Conflict(format!(
                "a {kind} run of user {user} is in progress{}; reset when it has finished",
                job.running_run_id
                    .map(|r| format!(" (run {r})"))
                    .unwrap_or_default()
            )));
        }
    }
    let (u, k) = (user.to_string(), kind.as_str());
    let empty = Fields::new();
    let bases_forgotten = diesel::update(
        links::table
            .filter(links::user_id.eq(&u))
            .filter(links::kind.eq(k))
            .filter(links::state.eq("active")),
    )
    .set((
        links::snapshot.eq(fields::to_json(&empty)),
        links::snapshot_hash.eq(fields::hash(&empty)),
        links::etag.eq(None::<String>),
        links::google_record.eq(None::<String>),
        links::google_updated.eq(None::<chrono::NaiveDateTime>),
        links::crm_change_seq.eq(0),
        links::updated_at.eq(to_db_time(now)),
    ))
    .execute(conn)? as u64;
    let cursor_forgotten = diesel::delete(
        cursors::table
            .filter(cursors::user_id.eq(&u))
            .filter(cursors::kind.eq(k)),
    )
    .execute(conn)?
        > 0;
    let failing_forgotten = diesel::delete(
        parked_items::table
            .filter(parked_items::user_id.eq(&u))
            .filter(parked_items::kind.eq(k)),
    )
    .execute(conn)? as u64;
    let run = jobs::request_run(conn, user, kind, None, now)?;
    Ok(ResetOutcome {
        bases_forgotten,
        cursor_forgotten,
        failing_forgotten,
        run,
    })
}
