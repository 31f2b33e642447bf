//! Sync runs: their life cycle as the executor writes it (queued, running, finished with its
//! outcome) and what is read back: one run's record, the recent runs of a (user, kind), the last
//! success, and the history the API lists.

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::sync_runs;
use crate::util::{from_db_time, parse_col, to_db_time};
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
    /// While it goes on (and after): records handled, of `items_known` read so far.
    pub items_done: Option<i64>,
    pub items_known: Option<i64>,
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
    items_done: Option<i64>,
    items_known: Option<i64>,
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
            items_done: self.items_done,
            items_known: self.items_known,
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

/// Creates a run in state `queued`.
pub fn create_run(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    trigger: &str,
    options: &serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<RunId> {
    let id = RunId::new_random();
    diesel::insert_into(sync_runs::table)
        .values((
            sync_runs::id.eq(id.to_string()),
            sync_runs::user_id.eq(user.to_string()),
            sync_runs::kind.eq(kind.as_str()),
            sync_runs::trigger.eq(trigger),
            sync_runs::state.eq("queued"),
            sync_runs::requested_at.eq(to_db_time(now)),
            sync_runs::counts.eq("{}"),
            sync_runs::conflicts.eq(0),
            sync_runs::errors.eq("[]"),
            sync_runs::options.eq(options.to_string()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Marks a run as running.
pub fn start_run(
    conn: &mut AnyConnection,
    id: RunId,
    worker: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(sync_runs::table.find(id.to_string()))
        .set((
            sync_runs::state.eq("running"),
            sync_runs::started_at.eq(Some(to_db_time(now))),
            sync_runs::worker.eq(worker),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a running run's progress: `done` records handled of `known` read so far.
pub fn set_progress(conn: &mut AnyConnection, id: RunId, done: i64, known: i64) -> StoreResult<()> {
    diesel::update(sync_runs::table.find(id.to_string()))
        .set((
            sync_runs::items_done.eq(Some(done)),
            sync_runs::items_known.eq(Some(known)),
        ))
        .execute(conn)?;
    Ok(())
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// `succeeded` | `failed` | `blocked` | `skipped`.
    pub state: String,
    pub counts: serde_json::Value,
    pub conflicts: i32,
    pub errors: serde_json::Value,
    pub message: Option<String>,
}

/// Records how a run ended, and in the same transaction puts the webhook events
/// `sync_run.finished` (every run) and `sync_run.blocked` (a run the mass-untag guard stopped)
/// in the outbox of the subscribed webhooks.
pub fn finish_run(
    conn: &mut AnyConnection,
    id: RunId,
    o: &RunOutcome,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(sync_runs::table.find(id.to_string()))
        .set((
            sync_runs::state.eq(&o.state),
            sync_runs::finished_at.eq(Some(to_db_time(now))),
            sync_runs::counts.eq(o.counts.to_string()),
            sync_runs::conflicts.eq(o.conflicts),
            sync_runs::errors.eq(o.errors.to_string()),
            sync_runs::message.eq(&o.message),
        ))
        .execute(conn)?;
    if let Some(run) = get_run(conn, id)? {
        let data = RunEvent::of(&run);
        crate::webhooks::enqueue(conn, "sync_run.finished", &data, None, now)?;
        if run.state == "blocked" {
            crate::webhooks::enqueue(conn, "sync_run.blocked", &data, None, now)?;
        }
    }
    Ok(())
}

/// The `data` of the webhook events `sync_run.finished` and `sync_run.blocked`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEvent {
    pub run_id: RunId,
    pub user_id: UserId,
    pub kind: SyncKind,
    /// `schedule` | `manual` | `push`.
    pub trigger: String,
    /// `succeeded` | `failed` | `blocked` | `skipped`.
    pub state: String,
    /// What the run did, per side and action (as in `GET /sync-runs/{id}`).
    pub counts: serde_json::Value,
    pub conflicts: i32,
    /// How many records failed.
    pub error_count: usize,
    /// What went wrong, or what the mass-untag guard stopped and how to confirm or undo it.
    pub message: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunEvent {
    pub fn of(run: &SyncRun) -> Self {
        RunEvent {
            run_id: run.id,
            user_id: run.user_id,
            kind: run.kind,
            trigger: run.trigger.clone(),
            state: run.state.clone(),
            counts: run.counts.clone(),
            conflicts: run.conflicts,
            error_count: run.errors.as_array().map_or(0, Vec::len),
            message: run.message.clone(),
            requested_at: run.requested_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
        }
    }
}

/// When (user, kind) last synced successfully.
pub fn last_success(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
) -> StoreResult<Option<DateTime<Utc>>> {
    let t: Option<Option<NaiveDateTime>> = sync_runs::table
        .filter(sync_runs::user_id.eq(user.to_string()))
        .filter(sync_runs::kind.eq(kind.as_str()))
        .filter(sync_runs::state.eq("succeeded"))
        .order(sync_runs::finished_at.desc())
        .select(sync_runs::finished_at)
        .first(conn)
        .optional()?;
    Ok(t.flatten().map(from_db_time))
}
