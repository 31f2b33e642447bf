//! Reading sync runs (the executor, in `sync_state.rs`, writes them): one run's record, the
//! recent runs of a (user, kind), and the history the API lists.

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::sync_runs;
use crate::util::{from_db_time, parse_col};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use diesel::prelude::*;
use serde::Serialize;

/// One sync run as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyncRun {
    pub id: RunId,
    pub user_id: UserId,
    pub kind: SyncKind,
    /// `schedule` | `manual` | `push`.
    pub trigger: String,
    /// `queued` | `running` | `succeeded` | `failed` | `blocked` | `skipped`.
    pub state: String,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: serde_json::Value,
    pub conflicts: i32,
    pub errors: serde_json::Value,
    pub options: serde_json::Value,
    pub message: Option<String>,
    pub worker: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = sync_runs)]
struct RunRow {
    id: String,
    user_id: String,
    kind: String,
    trigger: String,
    state: String,
    requested_at: NaiveDateTime,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
    counts: String,
    conflicts: i32,
    errors: String,
    options: String,
    message: Option<String>,
    worker: Option<String>,
}

fn json(s: &str, col: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

impl RunRow {
    fn into_run(self) -> StoreResult<SyncRun> {
        Ok(SyncRun {
            id: parse_col(&self.id, "sync_runs.id")?,
            user_id: parse_col(&self.user_id, "sync_runs.user_id")?,
            kind: parse_col(&self.kind, "sync_runs.kind")?,
            trigger: self.trigger,
            state: self.state,
            requested_at: from_db_time(self.requested_at),
            started_at: self.started_at.map(from_db_time),
            finished_at: self.finished_at.map(from_db_time),
            counts: json(&self.counts, "sync_runs.counts")?,
            conflicts: self.conflicts,
            errors: json(&self.errors, "sync_runs.errors")?,
            options: json(&self.options, "sync_runs.options")?,
            message: self.message,
            worker: self.worker,
        })
    }
}

/// A run by id.
pub fn get_run(conn: &mut AnyConnection, id: RunId) -> StoreResult<Option<SyncRun>> {
    sync_runs::table
        .find(id.to_string())
        .select(RunRow::as_select())
        .first(conn)
        .optional()?
        .map(RunRow::into_run)
        .transpose()
}

/// The most recent runs of (user, kind), newest first.
pub fn recent_runs(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    limit: usize,
) -> StoreResult<Vec<SyncRun>> {
    sync_runs::table
        .filter(sync_runs::user_id.eq(user.to_string()))
        .filter(sync_runs::kind.eq(kind.as_str()))
        .order(sync_runs::requested_at.desc())
        .limit(limit.clamp(1, 1000) as i64)
        .select(RunRow::as_select())
        .load(conn)?
        .into_iter()
        .map(RunRow::into_run)
        .collect()
}

/// Run history, newest first: every run, or a user's, or a user's of one kind; after the run
/// `before` (keyset pagination: the last run of the previous page).
pub fn list_runs(
    conn: &mut AnyConnection,
    user: Option<UserId>,
    kind: Option<SyncKind>,
    before: Option<RunId>,
    limit: usize,
) -> StoreResult<Vec<SyncRun>> {
    let mut q = sync_runs::table
        .order((sync_runs::requested_at.desc(), sync_runs::id.desc()))
        .limit(limit.clamp(1, 1000) as i64)
        .select(RunRow::as_select())
        .into_boxed();
    if let Some(u) = user {
        q = q.filter(sync_runs::user_id.eq(u.to_string()));
    }
    if let Some(k) = kind {
        q = q.filter(sync_runs::kind.eq(k.as_str()));
    }
    if let Some(b) = before {
        let at: NaiveDateTime = sync_runs::table
            .find(b.to_string())
            .select(sync_runs::requested_at)
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::Invalid(format!("cursor: run {b} does not exist")))?;
        q = q.filter(
            sync_runs::requested_at.lt(at).or(sync_runs::requested_at
                .eq(at)
                .and(sync_runs::id.lt(b.to_string()))),
        );
    }
    q.load(conn)?.into_iter().map(RunRow::into_run).collect()
}

/// How many runs each (user, kind) has, by state (for tests and benchmarks).
pub fn count_runs(conn: &mut AnyConnection) -> StoreResult<Vec<(UserId, SyncKind, String, i64)>> {
    let rows: Vec<(String, String, String, i64)> = sync_runs::table
        .group_by((sync_runs::user_id, sync_runs::kind, sync_runs::state))
        .select((
            sync_runs::user_id,
            sync_runs::kind,
            sync_runs::state,
            diesel::dsl::count_star(),
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(u, k, s, n)| {
            Ok((
                parse_col(&u, "sync_runs.user_id")?,
                parse_col(&k, "sync_runs.kind")?,
                s,
                n,
            ))
        })
        .collect()
}
