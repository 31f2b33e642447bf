//! The scheduler's job table (`sync_jobs`): one row per (user, kind) with sync settings. A row
//! says when the next scheduled run is due (`next_due_at`, computed by the scheduler from the
//! settings and the last run), whether a manual "Start synchronization" is waiting
//! (`requested_run_id`, at most one: further requests are coalesced into it), and who is running
//! it (`lease_owner` until `lease_expires_at`, `running_run_id`).
//!
//! Claiming is the only way a run starts, so two runs of one (user, kind) never overlap:
//! [`claim_due`] takes due, unleased rows in one transaction — `SELECT … FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, so many workers share the table without waiting on each other; on SQLite the
//! write transaction (`BEGIN IMMEDIATE`) is exclusive. A worker renews its lease while the run
//! goes on ([`renew_lease`]) and gives the row back with the next due time ([`release`]). A
//! worker that dies keeps its lease until it expires; the next claimer then carries out the same
//! run again (the engine is crash-safe, so the re-run converges without duplicates).
//!
//! Push (SPEC 5): [`request_push`] marks a (user, kind) for a debounced run (`push_due_at`);
//! the claimers take it like a scheduled run once the time has come, with trigger `push`, and any
//! run claimed after a request covers it (the columns are cleared).
//!
//! Every function takes `&mut AnyConnection` inside the caller's write transaction.

use crate::db::{require_transaction, AnyConnection};
use crate::error::{StoreError, StoreResult};
use crate::schema::{google_connections, sync_jobs, sync_runs, sync_settings};
use crate::util::{from_db_time, parse_col, to_db_time};
use crate::{runs, settings};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use diesel::prelude::*;
use serde::Serialize;

/// A job row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub user_id: UserId,
    pub kind: SyncKind,
    /// When the next scheduled run is due (`None`: auto-sync is off, or not scheduled yet).
    pub next_due_at: Option<DateTime<Utc>>,
    /// When the queued manual request was made.
    pub requested_at: Option<DateTime<Utc>>,
    /// The queued manual run (state `queued` in `sync_runs`).
    pub requested_run_id: Option<RunId>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The run being carried out under the lease (or left behind by a worker that died).
    pub running_run_id: Option<RunId>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The error (or guard message) of the last run that did not succeed; cleared by a success.
    pub last_error: Option<String>,
    /// When the last run started (the anchor of interval schedules).
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_run_id: Option<RunId>,
    /// The `updated_at` of the settings `next_due_at` was computed from.
    pub settings_version: Option<DateTime<Utc>>,
    /// When the current lease was taken.
    pub claimed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// When a requested push run falls due (debounced).
    pub push_due_at: Option<DateTime<Utc>>,
    /// The first push request of the current burst (the debounce never waits longer than
    /// [`PushSettings::max_wait_ms`] from it).
    pub push_requested_at: Option<DateTime<Utc>>,
}

impl Job {
    /// Whether a live lease is held at `now`.
    pub fn is_leased(&self, now: DateTime<Utc>) -> bool {
        self.lease_owner.is_some() && self.lease_expires_at.is_some_and(|t| t >= now)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = sync_jobs)]
struct JobRow {
    user_id: String,
    kind: String,
    next_due_at: Option<NaiveDateTime>,
    requested_at: Option<NaiveDateTime>,
    requested_run_id: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<NaiveDateTime>,
    running_run_id: Option<String>,
    last_success_at: Option<NaiveDateTime>,
    last_error: Option<String>,
    updated_at: NaiveDateTime,
    settings_version: Option<NaiveDateTime>,
    last_run_at: Option<NaiveDateTime>,
    last_run_id: Option<String>,
    claimed_at: Option<NaiveDateTime>,
    push_due_at: Option<NaiveDateTime>,
    push_requested_at: Option<NaiveDateTime>,
}

fn opt_id<T: std::str::FromStr>(v: Option<String>, col: &'static str) -> StoreResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    v.as_deref().map(|s| parse_col(s, col)).transpose()
}

impl JobRow {
    fn into_job(self) -> StoreResult<Job> {
        Ok(Job {
            user_id: parse_col(&self.user_id, "sync_jobs.user_id")?,
            kind: parse_col(&self.kind, "sync_jobs.kind")?,
            next_due_at: self.next_due_at.map(from_db_time),
            requested_at: self.requested_at.map(from_db_time),
            requested_run_id: opt_id(self.requested_run_id, "sync_jobs.requested_run_id")?,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at.map(from_db_time),
            running_run_id: opt_id(self.running_run_id, "sync_jobs.running_run_id")?,
            last_success_at: self.last_success_at.map(from_db_time),
            last_error: self.last_error,
            last_run_at: self.last_run_at.map(from_db_time),
            last_run_id: opt_id(self.last_run_id, "sync_jobs.last_run_id")?,
            settings_version: self.settings_version.map(from_db_time),
            claimed_at: self.claimed_at.map(from_db_time),
            updated_at: from_db_time(self.updated_at),
            push_due_at: self.push_due_at.map(from_db_time),
            push_requested_at: self.push_requested_at.map(from_db_time),
        })
    }
}

/// The query selecting one job row.
type JobKey = diesel::dsl::Filter<
    diesel::dsl::Filter<sync_jobs::table, diesel::dsl::Eq<sync_jobs::user_id, String>>,
    diesel::dsl::Eq<sync_jobs::kind, &'static str>,
>;

fn key(user: UserId, kind: SyncKind) -> JobKey {
    sync_jobs::table
        .filter(sync_jobs::user_id.eq(user.to_string()))
        .filter(sync_jobs::kind.eq(kind.as_str()))
}

/// The job of (user, kind), if it exists.
pub fn get_job(conn: &mut AnyConnection, user: UserId, kind: SyncKind) -> StoreResult<Option<Job>> {
    key(user, kind)
        .select(JobRow::as_select())
        .first(conn)
        .optional()?
        .map(JobRow::into_job)
        .transpose()
}

/// Every job of one user.
pub fn jobs_of_user(conn: &mut AnyConnection, user: UserId) -> StoreResult<Vec<Job>> {
    sync_jobs::table
        .filter(sync_jobs::user_id.eq(user.to_string()))
        .order(sync_jobs::kind)
        .select(JobRow::as_select())
        .load(conn)?
        .into_iter()
        .map(JobRow::into_job)
        .collect()
}

/// Every job (for `crmsync status` and tests), ordered by user and kind.
pub fn all_jobs(conn: &mut AnyConnection) -> StoreResult<Vec<Job>> {
    sync_jobs::table
        .order((sync_jobs::user_id, sync_jobs::kind))
        .select(JobRow::as_select())
        .load(conn)?
        .into_iter()
        .map(JobRow::into_job)
        .collect()
}

/// Creates the job row of (user, kind) if it is missing (never fails on a concurrent insert).
pub fn ensure_job(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let values = (
        sync_jobs::user_id.eq(user.to_string()),
        sync_jobs::kind.eq(kind.as_str()),
        sync_jobs::updated_at.eq(to_db_time(now)),
    );
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::insert_into(sync_jobs::table)
                .values(values)
                .on_conflict_do_nothing()
                .execute(pg)?;
        }
        AnyConnection::Sqlite(lite) => {
            diesel::insert_or_ignore_into(sync_jobs::table)
                .values(values)
                .execute(lite)?;
        }
    }
    Ok(())
}

/// Locks the job row until the transaction ends (a no-op update: the portable `FOR UPDATE`).
pub(crate) fn lock_job(conn: &mut AnyConnection, user: UserId, kind: SyncKind) -> StoreResult<()> {
    diesel::update(key(user, kind))
        .set(sync_jobs::kind.eq(sync_jobs::kind))
        .execute(conn)?;
    Ok(())
}

/// What a manual request led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RunRequest {
    /// The queued run that will carry the request out.
    pub run_id: RunId,
    /// `true` when a queued, not yet started run of this (user, kind) already existed and the
    /// request was folded into it.
    pub coalesced: bool,
    /// A run of this (user, kind) in progress at the time (the queued run follows it).
    pub running_run_id: Option<RunId>,
}

/// "Start synchronization": queues a manual run of (user, kind) for the scheduler. If a run is
/// already queued and not started, returns it (coalesced: never two queued, never dropped); if
/// one is running, the new run is queued to follow it. `options` (the run options as JSON)
/// replace those of a coalesced run when given. Fails with `Conflict` when (user, kind) has no
/// sync settings.
pub fn request_run(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    options: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> StoreResult<RunRequest> {
    require_transaction(conn)?;
    if settings::get_sync_settings(conn, user, kind)?.is_none() {
        return Err(StoreError::Conflict(format!(
            "user {user} has no {kind} sync settings, so there is nothing to synchronize; set them \
             first with PUT /api/v1/users/{user}/sync-settings/{kind}"
        )));
    }
    ensure_job(conn, user, kind, now)?;
    lock_job(conn, user, kind)?;
    let job = get_job(conn, user, kind)?
        .ok_or_else(|| StoreError::not_found("sync job", format!("{user}/{kind}")))?;
    if let Some(queued) = job.requested_run_id {
        let still_queued = runs::get_run(conn, queued)?.is_some_and(|r| r.state == "queued");
        if still_queued {
            if let Some(o) = options {
                diesel::update(sync_runs::table.find(queued.to_string()))
                    .set(sync_runs::options.eq(o.to_string()))
                    .execute(conn)?;
            }
            return Ok(RunRequest {
                run_id: queued,
                coalesced: true,
                running_run_id: job.running_run_id,
            });
        }
    }
    let default = serde_json::json!({});
    let run_id = runs::create_run(conn, user, kind, "manual", options.unwrap_or(&default), now)?;
    diesel::update(key(user, kind))
        .set((
            sync_jobs::requested_at.eq(Some(to_db_time(now))),
            sync_jobs::requested_run_id.eq(Some(run_id.to_string())),
            sync_jobs::updated_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    Ok(RunRequest {
        run_id,
        coalesced: false,
        running_run_id: job.running_run_id,
    })
}

/// How writes start runs (SPEC 5 "Push"), kept in the app settings so that `serve` and every
/// `worker` agree (`serve` and `worker` write it at startup from `CRMSYNC_PUSH` and
/// `--push-debounce-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PushSettings {
    pub enabled: bool,
    /// A request waits this long for more (a burst of edits makes one run).
    pub debounce_ms: i64,
    /// A burst never delays its run longer than this from its first request.
    pub max_wait_ms: i64,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            enabled: true,
            debounce_ms: 2000,
            max_wait_ms: 10_000,
        }
    }
}

const PUSH_SETTINGS_KEY: &str = "push";

/// The push settings (the defaults until a process stored its own).
pub fn push_settings(conn: &mut AnyConnection) -> StoreResult<PushSettings> {
    Ok(crate::app_settings::get_setting(conn, PUSH_SETTINGS_KEY)?.unwrap_or_default())
}

/// Stores the push settings (at `serve` / `worker` startup).
pub fn put_push_settings(
    conn: &mut AnyConnection,
    push: &PushSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    crate::app_settings::put_setting(conn, PUSH_SETTINGS_KEY, push, now)
}

/// Requests a push run of (user, kind), debounced: due `debounce` from now, never later than
/// `max_wait` after the burst's first request. Nothing is requested (`false`) when the user has
/// no such sync settings or auto-sync off, when the Google connection is in `auth_error` or
/// `disabled`, or when a manual start is already queued (it covers the change).
pub fn request_push(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    push: &PushSettings,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    require_transaction(conn)?;
    if !push.enabled {
        return Ok(false);
    }
    match settings::get_sync_settings(conn, user, kind)? {
        Some(s) if s.auto_sync => {}
        _ => return Ok(false),
    }
    let state: Option<String> = google_connections::table
        .find(user.to_string())
        .select(google_connections::state)
        .first(conn)
        .optional()?;
    if state.is_some_and(|s| s != "active") {
        return Ok(false);
    }
    ensure_job(conn, user, kind, now)?;
    lock_job(conn, user, kind)?;
    let job = get_job(conn, user, kind)?
        .ok_or_else(|| StoreError::not_found("sync job", format!("{user}/{kind}")))?;
    if job.requested_run_id.is_some() {
        return Ok(false);
    }
    let first = job.push_requested_at.unwrap_or(now);
    let due = (now + Duration::milliseconds(push.debounce_ms))
        .min(first + Duration::milliseconds(push.max_wait_ms));
    diesel::update(key(user, kind))
        .set((
            sync_jobs::push_due_at.eq(Some(to_db_time(due))),
            sync_jobs::push_requested_at.eq(Some(to_db_time(first))),
        ))
        .execute(conn)?;
    tracing::debug!(%user, %kind, due = %due, "push run requested");
    Ok(true)
}

/// The earliest push due time (a scheduler sleeps no longer than until then).
pub fn next_push_due(conn: &mut AnyConnection) -> StoreResult<Option<DateTime<Utc>>> {
    let next: Option<NaiveDateTime> = sync_jobs::table
        .filter(sync_jobs::push_due_at.is_not_null())
        .select(diesel::dsl::min(sync_jobs::push_due_at))
        .first(conn)?;
    Ok(next.map(from_db_time))
}

/// A run a worker has claimed and must carry out under its lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub user_id: UserId,
    pub kind: SyncKind,
    pub run_id: RunId,
    /// `schedule` | `manual` | `push` (the run's trigger).
    pub trigger: String,
    /// The run's options (JSON).
    pub options: serde_json::Value,
    /// When the claim was made (the run's start, the anchor of the next interval).
    pub claimed_at: DateTime<Utc>,
    /// When the run fell due: the scheduled time, the manual request, or the expiry of the lease
    /// of the worker it is taken over from (`claimed_at` minus this is the scheduling lag).
    pub due_at: Option<DateTime<Utc>>,
    pub lease_expires_at: DateTime<Utc>,
    /// Set when this claim takes over a run whose worker stopped renewing its lease.
    pub taken_over_from: Option<String>,
}

/// Claims up to `limit` due jobs for `worker` with a lease until `now + lease`.
///
/// Due means: a manual request is queued, or the scheduled time has come (`next_due_at <=
/// now`), or a run was left behind by a worker whose lease expired. Only rows without a live
/// lease are taken. Scheduled runs of users whose Google connection is not `active`
/// (`auth_error`, `disabled`) are skipped until a manual start. A scheduled claim creates its run
/// (trigger `schedule`); a manual one takes the queued run; a takeover carries out the same run
/// again. On PostgreSQL the rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent
/// claimers take disjoint rows without waiting.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    worker: &str,
    lease: Duration,
    limit: usize,
) -> StoreResult<Vec<Claim>> {
    claim(conn, now, worker, lease, limit, None)
}

/// Claims the job of (user, kind) alone, if it is due and free (see [`claim_due`]); for
/// `crmsync sync`, which carries out a manual start itself when no worker is quicker.
pub fn claim_job(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    now: DateTime<Utc>,
    worker: &str,
    lease: Duration,
) -> StoreResult<Option<Claim>> {
    Ok(claim(conn, now, worker, lease, 1, Some((user, kind)))?.pop())
}

fn claim(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    worker: &str,
    lease: Duration,
    limit: usize,
    only: Option<(UserId, SyncKind)>,
) -> StoreResult<Vec<Claim>> {
    require_transaction(conn)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let ts = to_db_time(now);
    let limit = limit.min(10_000) as i64;
    // Loads rows locked for this transaction: `FOR UPDATE SKIP LOCKED` on PostgreSQL (rows
    // another claimer holds are skipped, not waited for); SQLite's write transaction is
    // exclusive already.
    macro_rules! locked_load {
        ($q:expr) => {
            match &mut *conn {
                AnyConnection::Postgresql(pg) => {
                    $q.for_update().skip_locked().load::<JobRow>(pg)?
                }
                AnyConnection::Sqlite(lite) => $q.load::<JobRow>(lite)?,
            }
        };
    }
    let lease_free = || {
        sync_jobs::lease_owner
            .is_null()
            .or(sync_jobs::lease_expires_at.lt(ts))
    };
    let not_connected = || {
        google_connections::table
            .filter(google_connections::state.ne("active"))
            .select(google_connections::user_id)
    };
    let rows: Vec<JobRow> = match only {
        Some((u, k)) => locked_load!(sync_jobs::table
            .filter(sync_jobs::user_id.eq(u.to_string()))
            .filter(sync_jobs::kind.eq(k.as_str()))
            .filter(lease_free())
            .filter(
                sync_jobs::requested_at
                    .is_not_null()
                    .or(sync_jobs::running_run_id.is_not_null())
                    .or(sync_jobs::next_due_at
                        .le(ts)
                        .or(sync_jobs::push_due_at.le(ts))
                        .and(diesel::dsl::not(sync_jobs::user_id.eq_any(not_connected())))),
            )
            .select(JobRow::as_select())),
        None => {
            // Three disjoint index range scans, each stopping at its limit (no sort of every
            // due row): runs left by dead workers, manual requests (oldest first), then
            // scheduled runs (most overdue first).
            let mut rows = locked_load!(sync_jobs::table
                .filter(sync_jobs::running_run_id.is_not_null())
                .filter(lease_free())
                .limit(limit)
                .select(JobRow::as_select()));
            let left = limit - rows.len() as i64;
            if left > 0 {
                rows.extend(locked_load!(sync_jobs::table
                    .filter(sync_jobs::requested_at.is_not_null())
                    .filter(sync_jobs::running_run_id.is_null())
                    .filter(lease_free())
                    .order(sync_jobs::requested_at)
                    .limit(left)
                    .select(JobRow::as_select())));
            }
            let left = limit - rows.len() as i64;
            if left > 0 {
                rows.extend(locked_load!(sync_jobs::table
                    .filter(sync_jobs::next_due_at.le(ts))
                    .filter(sync_jobs::requested_at.is_null())
                    .filter(sync_jobs::running_run_id.is_null())
                    .filter(lease_free())
                    .filter(diesel::dsl::not(sync_jobs::user_id.eq_any(not_connected())))
                    .order(sync_jobs::next_due_at)
                    .limit(left)
                    .select(JobRow::as_select())));
            }
            let left = limit - rows.len() as i64;
            if left > 0 {
                // Push requests whose debounce is over (a row also due by schedule was taken
                // above and is skipped here).
                rows.extend(locked_load!(sync_jobs::table
                    .filter(sync_jobs::push_due_at.le(ts))
                    .filter(
                        sync_jobs::next_due_at
                            .is_null()
                            .or(sync_jobs::next_due_at.gt(ts))
                    )
                    .filter(sync_jobs::requested_at.is_null())
                    .filter(sync_jobs::running_run_id.is_null())
                    .filter(lease_free())
                    .filter(diesel::dsl::not(sync_jobs::user_id.eq_any(not_connected())))
                    .order(sync_jobs::push_due_at)
                    .limit(left)
                    .select(JobRow::as_select())));
            }
            rows
        }
    };
    let expires = now + lease;
    let mut claims = Vec::with_capacity(rows.len());
    for row in rows {
        let job = row.into_job()?;
        let (user, kind) = (job.user_id, job.kind);
        let mut taken_over_from = None;
        let mut from_request = false;
        let pushed = job.push_due_at.filter(|d| *d <= now);
        let scheduled = job.next_due_at.is_some_and(|d| d <= now);
        let due_at = if job.running_run_id.is_some() {
            job.lease_expires_at
        } else {
            job.requested_at
                .or(pushed.filter(|_| !scheduled))
                .or(job.next_due_at)
        };
        let mut run = None;
        if let Some(left) = job.running_run_id {
            match runs::get_run(conn, left)? {
                Some(r) if r.finished_at.is_none() => {
                    taken_over_from = Some(job.lease_owner.clone().unwrap_or_default());
                    run = Some(r);
                }
                finished => {
                    // The worker finished the run but died before giving the job back: record
                    // the run and let the scheduler compute the next due time afresh.
                    forget_finished_run(conn, &job, finished.as_ref(), now)?;
                    if job.requested_run_id.is_none() {
                        continue;
                    }
                }
            }
        }
        if run.is_none() {
            if let Some(queued) = job.requested_run_id {
                from_request = true;
                run = runs::get_run(conn, queued)?;
            }
        }
        let run = match run {
            Some(r) => r,
            None => {
                let trigger = if from_request {
                    "manual"
                } else if pushed.is_some() && !scheduled {
                    "push"
                } else {
                    "schedule"
                };
                let id = runs::create_run(conn, user, kind, trigger, &serde_json::json!({}), now)?;
                runs::get_run(conn, id)?.ok_or_else(|| StoreError::not_found("sync run", id))?
            }
        };
        let lease_cols = (
            sync_jobs::lease_owner.eq(Some(worker)),
            sync_jobs::lease_expires_at.eq(Some(to_db_time(expires))),
            sync_jobs::running_run_id.eq(Some(run.id.to_string())),
            sync_jobs::claimed_at.eq(Some(ts)),
            sync_jobs::updated_at.eq(ts),
        );
        // A new or queued run starts after every push request so far: it covers them. (A run
        // taken over from a dead worker may have started before them: they stay.)
        let covers_push = taken_over_from.is_none();
        if from_request {
            diesel::update(key(user, kind))
                .set((
                    lease_cols,
                    sync_jobs::requested_at.eq(None::<NaiveDateTime>),
                    sync_jobs::requested_run_id.eq(None::<String>),
                    sync_jobs::push_due_at.eq(None::<NaiveDateTime>),
                    sync_jobs::push_requested_at.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
        } else if covers_push {
            diesel::update(key(user, kind))
                .set((
                    lease_cols,
                    sync_jobs::push_due_at.eq(None::<NaiveDateTime>),
                    sync_jobs::push_requested_at.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
        } else {
            diesel::update(key(user, kind))
                .set(lease_cols)
                .execute(conn)?;
        }
        claims.push(Claim {
            user_id: user,
            kind,
            run_id: run.id,
            trigger: run.trigger,
            options: run.options,
            claimed_at: now,
            due_at,
            lease_expires_at: expires,
            taken_over_from,
        });
    }
    Ok(claims)
}

/// A run left in `running_run_id` that already finished: record it as the last run, free the
/// lease, and clear the schedule so that the scheduler computes it from this run.
fn forget_finished_run(
    conn: &mut AnyConnection,
    job: &Job,
    run: Option<&runs::SyncRun>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ts = to_db_time(now);
    let cols = (
        sync_jobs::lease_owner.eq(None::<String>),
        sync_jobs::lease_expires_at.eq(None::<NaiveDateTime>),
        sync_jobs::running_run_id.eq(None::<String>),
        sync_jobs::claimed_at.eq(None::<NaiveDateTime>),
        sync_jobs::next_due_at.eq(None::<NaiveDateTime>),
        sync_jobs::settings_version.eq(None::<NaiveDateTime>),
        sync_jobs::updated_at.eq(ts),
    );
    match run {
        Some(r) => {
            let started = r.started_at.unwrap_or(r.requested_at);
            let (success, error) = match r.state.as_str() {
                "succeeded" => (r.finished_at, None),
                _ => (job.last_success_at, r.message.clone()),
            };
            diesel::update(key(job.user_id, job.kind))
                .set((
                    cols,
                    sync_jobs::last_run_at.eq(Some(to_db_time(started))),
                    sync_jobs::last_run_id.eq(Some(r.id.to_string())),
                    sync_jobs::last_success_at.eq(success.map(to_db_time)),
                    sync_jobs::last_error.eq(error),
                ))
                .execute(conn)?;
        }
        None => {
            diesel::update(key(job.user_id, job.kind))
                .set(cols)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Jobs that are due and that no live lease holds: what the workers have not claimed yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overdue {
    /// Scheduled runs whose time has come (users whose connection is not `active` are skipped
    /// by the scheduler and not counted).
    pub scheduled: i64,
    /// Manual starts waiting for a worker.
    pub manual: i64,
    /// The earliest due time (or request time) among them.
    pub oldest: Option<DateTime<Utc>>,
}

/// Counts the due, unclaimed jobs at `now` (for the `/metrics` gauges).
pub fn overdue(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<Overdue> {
    use diesel::dsl::{count_star, min};
    let ts = to_db_time(now);
    let lease_free = || {
        sync_jobs::lease_owner
            .is_null()
            .or(sync_jobs::lease_expires_at.lt(ts))
    };
    let not_connected = google_connections::table
        .filter(google_connections::state.ne("active"))
        .select(google_connections::user_id);
    let (scheduled, oldest_due): (i64, Option<NaiveDateTime>) = sync_jobs::table
        .filter(sync_jobs::next_due_at.le(ts))
        .filter(sync_jobs::requested_at.is_null())
        .filter(sync_jobs::running_run_id.is_null())
        .filter(lease_free())
        .filter(diesel::dsl::not(sync_jobs::user_id.eq_any(not_connected)))
        .select((count_star(), min(sync_jobs::next_due_at)))
        .first(conn)?;
    let (manual, oldest_request): (i64, Option<NaiveDateTime>) = sync_jobs::table
        .filter(sync_jobs::requested_at.is_not_null())
        .filter(lease_free())
        .select((count_star(), min(sync_jobs::requested_at)))
        .first(conn)?;
    let oldest = [oldest_due, oldest_request]
        .into_iter()
        .flatten()
        .min()
        .map(from_db_time);
    Ok(Overdue {
        scheduled,
        manual,
        oldest,
    })
}

/// Extends `worker`'s lease on (user, kind) to `expires_at`. `false` when the lease is no longer
/// the worker's (it expired and another worker took the run over): the run must stop.
pub fn renew_lease(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    worker: &str,
    run: RunId,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let n = diesel::update(
        key(user, kind)
            .filter(sync_jobs::lease_owner.eq(worker))
            .filter(sync_jobs::running_run_id.eq(run.to_string())),
    )
    .set((
        sync_jobs::lease_expires_at.eq(Some(to_db_time(expires_at))),
        sync_jobs::updated_at.eq(to_db_time(now)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// How a claimed run ended, for [`release`].
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// When the run started (the claim time).
    pub started_at: DateTime<Utc>,
    /// Whether the run succeeded (sets `last_success_at`, clears `last_error`).
    pub succeeded: bool,
    /// What went wrong (failed or blocked runs).
    pub error: Option<String>,
    /// The next scheduled time, computed from the settings of `settings_version`.
    pub next_due_at: Option<DateTime<Utc>>,
    pub settings_version: Option<DateTime<Utc>>,
}

/// Gives a job back after its run: frees the lease and records the outcome and the next due time.
/// `false` (and nothing changes) when the lease is no longer `worker`'s.
pub fn release(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    worker: &str,
    run: RunId,
    r: &Release,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let ts = to_db_time(now);
    let target = key(user, kind)
        .filter(sync_jobs::lease_owner.eq(worker))
        .filter(sync_jobs::running_run_id.eq(run.to_string()));
    let cols = (
        sync_jobs::lease_owner.eq(None::<String>),
        sync_jobs::lease_expires_at.eq(None::<NaiveDateTime>),
        sync_jobs::running_run_id.eq(None::<String>),
        sync_jobs::claimed_at.eq(None::<NaiveDateTime>),
        sync_jobs::last_run_at.eq(Some(to_db_time(r.started_at))),
        sync_jobs::last_run_id.eq(Some(run.to_string())),
        sync_jobs::next_due_at.eq(r.next_due_at.map(to_db_time)),
        sync_jobs::settings_version.eq(r.settings_version.map(to_db_time)),
        sync_jobs::updated_at.eq(ts),
    );
    let n = if r.succeeded {
        diesel::update(target)
            .set((
                cols,
                sync_jobs::last_success_at.eq(Some(ts)),
                sync_jobs::last_error.eq(None::<String>),
            ))
            .execute(conn)?
    } else {
        diesel::update(target)
            .set((cols, sync_jobs::last_error.eq(r.error.as_deref())))
            .execute(conn)?
    };
    Ok(n == 1)
}

/// Gives up a run without finishing it (shutdown after the grace period): the lease expires now,
/// so the next claimer carries the same run out again.
pub fn abandon(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    worker: &str,
    run: RunId,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let ts = to_db_time(now);
    let n = diesel::update(
        key(user, kind)
            .filter(sync_jobs::lease_owner.eq(worker))
            .filter(sync_jobs::running_run_id.eq(run.to_string())),
    )
    .set((
        sync_jobs::lease_expires_at.eq(Some(ts - chrono::Duration::microseconds(1))),
        sync_jobs::updated_at.eq(ts),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// A (user, kind) whose due time must be (re)computed: its settings changed since, or it was
/// never scheduled.
#[derive(Clone, Debug, PartialEq)]
pub struct Unscheduled {
    pub settings: crmsync_engine::model::SyncSettings,
    /// When the last run started (the anchor), as read.
    pub last_run_at: Option<DateTime<Utc>>,
}

/// A cheap fingerprint of all sync settings (newest `updated_at`, count): when it has not changed,
/// no settings were added or changed, and [`unscheduled`] need not run.
pub fn settings_watermark(conn: &mut AnyConnection) -> StoreResult<(Option<DateTime<Utc>>, i64)> {
    let (newest, count): (Option<NaiveDateTime>, i64) = sync_settings::table
        .select((
            diesel::dsl::max(sync_settings::updated_at),
            diesel::dsl::count_star(),
        ))
        .first(conn)?;
    Ok((newest.map(from_db_time), count))
}

/// Up to `limit` settings whose job is missing or was scheduled from other settings.
pub fn unscheduled(conn: &mut AnyConnection, limit: usize) -> StoreResult<Vec<Unscheduled>> {
    let keys: Vec<(String, String, Option<NaiveDateTime>)> = sync_settings::table
        .left_join(
            sync_jobs::table.on(sync_jobs::user_id
                .eq(sync_settings::user_id)
                .and(sync_jobs::kind.eq(sync_settings::kind))),
        )
        .filter(
            sync_jobs::user_id
                .nullable()
                .is_null()
                .or(sync_jobs::settings_version.is_null())
                .or(sync_jobs::settings_version.ne(sync_settings::updated_at.nullable())),
        )
        .order((sync_settings::user_id, sync_settings::kind))
        .limit(limit.clamp(1, 10_000) as i64)
        .select((
            sync_settings::user_id,
            sync_settings::kind,
            sync_jobs::last_run_at.nullable(),
        ))
        .load(conn)?;
    let mut out = Vec::with_capacity(keys.len());
    for (user, kind, last_run_at) in keys {
        let user: UserId = parse_col(&user, "sync_settings.user_id")?;
        let kind: SyncKind = parse_col(&kind, "sync_settings.kind")?;
        if let Some(settings) = settings::get_sync_settings(conn, user, kind)? {
            out.push(Unscheduled {
                settings,
                last_run_at: last_run_at.map(from_db_time),
            });
        }
    }
    Ok(out)
}

/// Stores the due time computed for (user, kind) from the settings of `settings_version` and the
/// last run started at `anchor`. Writes nothing (and returns `false`) when the job was scheduled
/// from these settings already or ran since `anchor` was read (its release set the due time).
pub fn set_schedule(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    next_due_at: Option<DateTime<Utc>>,
    settings_version: DateTime<Utc>,
    anchor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    ensure_job(conn, user, kind, now)?;
    let version = to_db_time(settings_version);
    let cols = (
        sync_jobs::next_due_at.eq(next_due_at.map(to_db_time)),
        sync_jobs::settings_version.eq(Some(version)),
        sync_jobs::updated_at.eq(to_db_time(now)),
    );
    let stale = key(user, kind).filter(
        sync_jobs::settings_version
            .is_null()
            .or(sync_jobs::settings_version.ne(version)),
    );
    let n = match anchor {
        Some(a) => diesel::update(stale.filter(sync_jobs::last_run_at.eq(to_db_time(a))))
            .set(cols)
            .execute(conn)?,
        None => diesel::update(stale.filter(sync_jobs::last_run_at.is_null()))
            .set(cols)
            .execute(conn)?,
    };
    Ok(n == 1)
}
