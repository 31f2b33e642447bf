//! Sync routes: "Start synchronization" (`POST /users/{id}/sync/{kind}`, queued for the
//! scheduler; `?wait=true` answers with the finished run), run detail and history
//! (`/sync-runs`), the per-kind status of a user (`/users/{id}/sync-status`) and of every user
//! (`/sync-status`, paged), and the journal of what the engine changed (`/journal`).

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use super::page::{self, Page};
use super::AppState;
use crate::scheduler::status::{self, UserSyncStatus};
use crate::scheduler::{self, parse_mass_untag};
use crate::sync::{MassUntag, RunOptions};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use crmsync_engine::model::ConnectionState;
use crmsync_schema::runs::{self, SyncRun};
use crmsync_schema::sync_state::{self, JournalFilter, StoredJournalEntry};
use crmsync_schema::{connections, users};
use serde::{Deserialize, Serialize};
use serde_json::json;

fn parse_kind(kind: &str) -> ApiResult<SyncKind> {
    kind.parse().map_err(|e: crmsync_engine::ids::UnknownKind| {
        ApiError::bad_request(format!("{e} (start each kind with its own request)"))
    })
}

/// `mass_untag` values.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MassUntagParam {
    Confirm,
    Restore,
    Guard,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StartQuery {
    /// Block until the run has finished and answer with it.
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    wait: bool,
    /// For a run the mass-untag guard stopped: `confirm` carries the untags out, `restore`
    /// puts everything back.
    #[serde(default)]
    #[param(inline, value_type = Option<MassUntagParam>)]
    mass_untag: Option<String>,
}

/// `POST /users/{id}/sync/{kind}`: 202 `{run_id, state: "queued", coalesced, after_run_id}`; with
/// `?wait=true` 200 and the finished run (202 with the run if it is still going on when the
/// server's wait limit is reached).
#[utoipa::path(
    post, path = "/users/{id}/sync/{kind}", tag = "sync",
    operation_id = "sync_start",
    summary = "Start synchronization",
    description = "Queues a run of one kind for the user (coalesced with one already queued) and \
                   wakes the scheduler. With `?wait=true` the answer is the finished run.",
    params(
        ("id" = uuid::Uuid, Path, description = "the user's id"),
        ("kind" = super::openapi::SyncKindDoc, Path, description = "`contacts` or `activities`"),
        StartQuery,
    ),
    responses(
        (status = 200, description = "`?wait=true`: the finished run", body = super::openapi::SyncRunDoc),
        (status = 202, description = "queued (or, with `?wait=true`, still going on at the wait limit)", body = super::openapi::RunAccepted),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "the user has no sync settings for this kind, or its connection is disabled (`conflict`, `connection_disabled`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn start(
    State(st): State<AppState>,
    ApiPath((user, kind)): ApiPath<(UserId, String)>,
    ApiQuery(q): ApiQuery<StartQuery>,
) -> ApiResult<Response> {
    let kind = parse_kind(&kind)?;
    let mass_untag = match q.mass_untag.as_deref() {
        None => MassUntag::Guard,
        Some(v) => parse_mass_untag(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "mass_untag must be confirm (carry the untags out) or restore (put everything back), not {v:?}"
            ))
        })?,
    };
    let connection = st
        .read_async(move |c| {
            users::get_user(c, user)?;
            connections::get_connection(c, user)
        })
        .await?;
    if connection.is_some_and(|c| c.state == ConnectionState::Disabled) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "connection_disabled",
            format!("the Google connection of user {user} is disabled; it is not synchronized"),
        ));
    }
    let req =
        scheduler::request_run(&st.store, st.now(), user, kind, RunOptions { mass_untag }).await?;
    if let Some(s) = &st.scheduler {
        s.wake();
    }
    if !q.wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "run_id": req.run_id,
                "state": "queued",
                "coalesced": req.coalesced,
                "after_run_id": req.running_run_id,
            })),
        )
            .into_response());
    }
    let run = scheduler::wait_for_run(&st.store, req.run_id, st.wait_limit, st.scheduler.as_ref())
        .await?;
    match run {
        Some(r) if r.finished_at.is_some() => Ok((StatusCode::OK, Json(r)).into_response()),
        Some(r) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "run_id": r.id,
                "state": r.state,
                "coalesced": req.coalesced,
                "message": format!(
                    "the run has not finished yet (waited at most {} seconds); follow it with GET /api/v1/sync-runs/{}",
                    st.wait_limit.as_secs(),
                    r.id
                ),
            })),
        )
            .into_response()),
        None => Err(ApiError::not_found(format!("sync run {} was not found", req.run_id))),
    }
}

/// `GET /users/{id}/sync-status`.
#[utoipa::path(
    get, path = "/users/{id}/sync-status", tag = "sync",
    operation_id = "sync_status",
    summary = "A user's sync status per kind",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "state, last success, next due time, last error, last run, failing records", body = crate::scheduler::status::UserSyncStatus),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn status(
    State(st): State<AppState>,
    ApiPath(user): ApiPath<UserId>,
) -> ApiResult<Json<UserSyncStatus>> {
    let now = st.now();
    Ok(Json(
        st.read_async(move |c| {
            let u = users::get_user(c, user)?;
            status::user_status(c, &u, now)
        })
        .await?,
    ))
}

/// The schema of `state` in `GET /sync-status`: a state, or empty for every user.
fn state_filter() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let mut values = vec![""];
    values.extend(status::SyncState::ALL.map(|s| s.as_str()));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "only users having some kind in this state; empty or absent: every user",
        ))
        .enum_values(Some(values))
        .build()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    /// Only users having some kind in this state (`idle`, `queued`, `running`, `auth_error`,
    /// `disabled`, `not_configured`); empty or absent: every user.
    #[serde(default)]
    #[param(schema_with = state_filter)]
    state: Option<String>,
    /// Only users whose kind `contacts` or `activities` passes the other filters.
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(contacts|activities)?$")]
    kind: Option<String>,
    /// `true`: only users with a last error or failing records (of `kind`, when given).
    #[serde(default)]
    errors: Option<bool>,
    /// `true`: only users whose scheduled run is more than a minute past due.
    #[serde(default)]
    overdue: Option<bool>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// One user of `GET /sync-status`: the user's name next to the same object as
/// `GET /users/{id}/sync-status`.
#[derive(Debug, Serialize)]
pub struct FleetItem {
    pub display_name: String,
    #[serde(flatten)]
    pub status: UserSyncStatus,
}

/// `GET /sync-status?state=&limit=&cursor=`: every user's per-kind status in one paged answer
/// (ordered by user id, `next_cursor` continues as in `GET /users`). With `state`, a page covers a
/// bounded stretch of users and may hold fewer than `limit` items while `next_cursor` is set:
/// follow `next_cursor` until it is null.
#[utoipa::path(
    get, path = "/sync-status", tag = "sync",
    operation_id = "sync_fleet_status",
    summary = "Every user's sync status, paged",
    params(FleetQuery),
    responses((status = 200, description = "a page of users' sync status", body = super::openapi::FleetPage))
)]
pub async fn fleet_status(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<FleetQuery>,
) -> ApiResult<Json<Page<FleetItem>>> {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(name) => Some(status::SyncState::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state must be one of {}, not {name:?}",
                status::SyncState::ALL.map(|s| s.as_str()).join(", ")
            ))
        })?),
    };
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(k.parse::<SyncKind>().map_err(|_| {
            ApiError::bad_request(format!("kind must be contacts or activities, not {k:?}"))
        })?),
    };
    let filter = status::FleetFilter {
        state,
        kind,
        errors: q.errors.unwrap_or(false),
        overdue: q.overdue.unwrap_or(false),
    };
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<UserId>(q.cursor.as_deref())?;
    let now = st.now();
    let found = st
        .read_async(move |c| status::fleet_page(c, after, limit, &filter, now))
        .await?;
    Ok(Json(Page {
        items: found
            .items
            .into_iter()
            .map(|(u, status)| FleetItem {
                display_name: u.display_name,
                status,
            })
            .collect(),
        next_cursor: found.next_after.map(|u| u.to_string()),
    }))
}

/// `GET /sync-runs/{id}`.
#[utoipa::path(
    get, path = "/sync-runs/{id}", tag = "sync",
    operation_id = "sync_run_detail",
    summary = "One sync run",
    params(("id" = uuid::Uuid, Path, description = "the run's id")),
    responses(
        (status = 200, description = "the run", body = super::openapi::SyncRunDoc),
        (status = 404, description = "no such run (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn run_detail(
    State(st): State<AppState>,
    ApiPath(run): ApiPath<RunId>,
) -> ApiResult<Json<SyncRun>> {
    st.read_async(move |c| runs::get_run(c, run))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("sync run {run} was not found")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this user's runs.
    #[serde(default)]
    #[param(value_type = Option<uuid::Uuid>)]
    user_id: Option<UserId>,
    /// Only runs of this kind.
    #[serde(default)]
    #[param(value_type = Option<super::openapi::SyncKindDoc>)]
    kind: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /sync-runs?user_id=&kind=&limit=&cursor=`: runs, newest first.
#[utoipa::path(
    get, path = "/sync-runs", tag = "sync",
    operation_id = "sync_history",
    summary = "Sync runs, newest first",
    params(HistoryQuery),
    responses(
        (status = 200, description = "a page of runs", body = super::openapi::SyncRunPage),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn history(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Page<SyncRun>>> {
    let kind = q.kind.as_deref().map(parse_kind).transpose()?;
    let limit = page::limit(q.limit)?;
    let before = page::cursor::<RunId>(q.cursor.as_deref())?;
    let user = q.user_id;
    let items = st
        .read_async(move |c| {
            if let Some(u) = user {
                users::get_user(c, u)?;
            }
            runs::list_runs(c, user, kind, before, limit)
        })
        .await?;
    Ok(Json(Page::new(items, limit, |r| r.id.to_string())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JournalQuery {
    /// The changes of one run.
    #[serde(default)]
    #[param(value_type = Option<uuid::Uuid>)]
    run_id: Option<RunId>,
    /// The history of one CRM contact or activity (its id).
    #[serde(default)]
    #[param(value_type = Option<uuid::Uuid>)]
    record_id: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /journal?run_id=&record_id=&limit=&cursor=`: what the engine changed, oldest first: each
/// entry with its side, action, the rule that decided, the field, the winning side and the values
/// before and after (a value overwritten by the other side's later edit is here). At least one of
/// `run_id` and `record_id` is required.
#[utoipa::path(
    get, path = "/journal", tag = "sync",
    operation_id = "sync_journal",
    summary = "What the engine changed, oldest first",
    description = "Each entry with its side, action, the rule that decided, the field, the winning \
                   side and the values before and after. Give `run_id` or `record_id`.",
    params(JournalQuery),
    responses(
        (status = 200, description = "a page of journal entries", body = super::openapi::JournalPage),
        (status = 404, description = "no such run (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn journal(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<JournalQuery>,
) -> ApiResult<Json<Page<StoredJournalEntry>>> {
    if q.run_id.is_none() && q.record_id.is_none() {
        return Err(ApiError::bad_request(
            "give run_id (the changes of one run) or record_id (the history of one contact or activity)",
        ));
    }
    let record = match q.record_id.as_deref() {
        Some(r) => Some(
            r.parse::<uuid::Uuid>()
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "record_id must be the UUID of a contact or an activity, not {r:?}"
                    ))
                })?
                .to_string(),
        ),
        None => None,
    };
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<i64>(q.cursor.as_deref())?;
    let run = q.run_id;
    let filter = JournalFilter {
        run,
        crm_id: record,
    };
    let items = st
        .read_async(move |c| {
            if let Some(r) = run {
                if runs::get_run(c, r)?.is_none() {
                    return Ok(None);
                }
            }
            sync_state::journal_page(c, &filter, after, limit).map(Some)
        })
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "sync run {} was not found",
                q.run_id.map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
    Ok(Json(Page::new(items, limit, |e| e.id.to_string())))
}
