//! Admin jobs of the page (SPEC 6.5) that no other route does:
//!
//! - the check of the domain's service account for one chosen user
//!   (`POST /google/service-account/check`): for each scope the sync uses, a read-only Google
//!   call made with a token for that scope alone, so the answer names exactly the scopes the
//!   Admin console has not authorized yet;
//! - the domain-wide pause switch (`GET`/`PUT /sync-pause`): while paused no worker claims a run
//!   (scheduled or started by hand; started ones wait in the queue until the switch is turned
//!   back), see [`sync_paused`], which the scheduler reads before each claim;
//! - a user's sync health (`GET /users/{id}/sync-health`): per kind how many records are linked,
//!   await Google's confirmation, are out of scope (one side left: the pair is remembered), and
//!   fail, with the failing records and why;
//! - the preview of a schedule (`GET /schedule-preview`): checks an interval or a cron expression
//!   as the settings route does and answers its next three run times in a time zone, so the page
//!   validates as the admin types, before anything is saved;
//! - a user's sync reset (`POST /users/{id}/sync-reset/{kind}`): `?dry_run=true` first (the
//!   engine plans the first run after a reset against Google and the CRM and writes nothing),
//!   then the reset itself (merge bases, cursor and failing records forgotten, a run queued).

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::extract::{ApiPath, ApiQuery};
use super::validate;
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use crmsync_connectors::{
    ClientOptions, Credentials, ErrorKind, GoogleAccount, GoogleError, RetryPolicy, SCOPE_CALENDAR,
    SCOPE_CONTACTS,
};
use crmsync_engine::ids::{SyncKind, UserId};
use crmsync_engine::planner::LinkState;
use crmsync_schema::parked::FailingItem;
use crmsync_schema::{app_settings, connections, sync_state, users, AnyConnection, StoreResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

/// The app setting that holds the pause switch.
const PAUSE_SETTING: &str = "sync_pause";

/// The stored pause switch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PauseSetting {
    paused: bool,
    changed_at: DateTime<Utc>,
}

/// Whether the admin paused all sync for the domain (no run is claimed while it is).
pub fn sync_paused(c: &mut AnyConnection) -> StoreResult<bool> {
    Ok(app_settings::get_setting::<PauseSetting>(c, PAUSE_SETTING)?.is_some_and(|p| p.paused))
}

/// Which user to check the service account for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckServiceAccount {
    /// The user whose Google account the service account impersonates for the check.
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
}

/// One scope's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeCheck {
    pub scope: String,
    /// Google gave a token for this scope and answered a read with it.
    pub ok: bool,
    /// What Google said, when it refused.
    pub error: Option<String>,
}

/// The outcome of a service-account check.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountCheck {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The Google account impersonated (the user's Google alias).
    pub subject: String,
    pub client_id: String,
    /// Every scope worked.
    pub ok: bool,
    pub scopes: Vec<ScopeCheck>,
    /// The scopes Google refused as not authorized: the ones to authorize in the Admin console.
    pub missing: Vec<String>,
    /// What the check found and what to do, in plain words.
    pub message: String,
}

/// A check's Google call for one scope: `Ok` when Google answered the read.
async fn try_scope(account: &GoogleAccount, scope: &str) -> Result<(), GoogleError> {
    if scope == SCOPE_CONTACTS {
        account
            .people()
            .find_group("crmsync scope check")
            .await
            .map(drop)
    } else {
        account
            .calendar()
            .get_event("primary", "crmsyncscopecheck")
            .await
            .map(drop)
    }
}

/// `POST /google/service-account/check` `{user_id}`: tries the domain's service account for the
/// user, scope by scope, and says which scopes are missing.
#[utoipa::path(
    post, path = "/google/service-account/check", tag = "google",
    operation_id = "google_check_service_account",
    summary = "Check the service account for a user",
    description = "Asks Google for a token for each scope the sync uses (as the user, through the \
                   domain's service account) and makes one read-only call with it. Nothing is \
                   written. The answer names the scopes the Admin console has not authorized.",
    request_body = CheckServiceAccount,
    responses(
        (status = 200, description = "the outcome per scope (`ok` false names what is missing)", body = ServiceAccountCheck),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "no service-account key is stored for the user's domain (`conflict`)", body = super::openapi::ErrorBody),
        (status = 502, description = "Google could not be reached, or answered with an error that is not about authorization (`google_unavailable`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn check_service_account(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CheckServiceAccount>,
) -> ApiResult<Json<ServiceAccountCheck>> {
    let user_id = body.user_id;
    let found = st
        .run(move |s| {
            s.read(|c| {
                let user = users::get_user(c, user_id)?;
                let domain = crate::sync::google::domain_of(&user.google_alias).to_string();
                let sa = connections::get_service_account(c, &domain)?;
                let key = match &sa {
                    Some(_) => Some(connections::service_account_key(s, c, &domain)?),
                    None => None,
                };
                Ok((user, domain, sa.map(|sa| sa.client_id), key))
            })
        })
        .await?;
    let (user, domain, client_id, key) = found;
    let (Some(client_id), Some(key)) = (client_id, key) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "no service-account key is stored for {domain} (the domain of {}); upload the domain's \
                 JSON key first, or connect the user with OAuth",
                user.google_alias
            ),
        ));
    };
    let key: crmsync_connectors::yup_oauth2::ServiceAccountKey = serde_json::from_str(&key)
        .map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("the stored service-account key of {domain} cannot be read ({e}); upload the JSON key again"),
            )
        })?;
    let mut scopes = Vec::new();
    // A refusal that is not about scopes (the account unknown to Google, a deleted key): the first
    // one, said as it is instead of as a missing scope.
    let mut other_refusal: Option<String> = None;
    let mut missing: Vec<String> = Vec::new();
    for scope in [SCOPE_CONTACTS, SCOPE_CALENDAR] {
        // A fresh account per scope: each asks for a token of its own scope only.
        let account = GoogleAccount::connect(
            &st.google,
            Credentials::ServiceAccount {
                key: key.clone(),
                subject: user.google_alias.clone(),
            },
            ClientOptions {
                retry: RetryPolicy::fast(1),
                request_timeout: Duration::from_secs(20),
                user_label: Some(user.google_alias.clone()),
                ..ClientOptions::default()
            },
        )
        .await;
        let outcome = match account {
            Ok(account) => try_scope(&account, scope).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => scopes.push(ScopeCheck {
                scope: scope.into(),
                ok: true,
                error: None,
            }),
            Err(e) if e.kind == ErrorKind::Auth => {
                let about_scopes = matches!(
                    e.reason.as_deref(),
                    Some("unauthorized_client" | "access_denied" | "invalid_scope")
                );
                if about_scopes {
                    missing.push(scope.to_string());
                } else if other_refusal.is_none() {
                    other_refusal = Some(e.to_string());
                }
                scopes.push(ScopeCheck {
                    scope: scope.into(),
                    ok: false,
                    error: Some(e.to_string()),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, user = %user.id, "service-account check: Google unavailable");
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "google_unavailable",
                    format!("Google could not answer the check ({e}); try again in a minute"),
                ));
            }
        }
    }
    let message = if let Some(refusal) = other_refusal {
        format!(
            "Google refused the service account for {} for another reason than the scopes: {refusal}",
            user.google_alias
        )
    } else if missing.is_empty() {
        format!(
            "the service account works for {}: every scope is authorized",
            user.google_alias
        )
    } else {
        format!(
            "missing scope(s) for {}: {}. In the Google Admin console (Security > Access and data control > \
             API controls > Domain-wide delegation) authorize client id {client_id} for {}; changes can take \
             up to 24 hours",
            user.google_alias,
            missing.join(", "),
            crmsync_connectors::ALL_SCOPES.join(",")
        )
    };
    Ok(Json(ServiceAccountCheck {
        user_id: user.id,
        subject: user.google_alias,
        client_id,
        ok: scopes.iter().all(|s| s.ok),
        scopes,
        missing,
        message,
    }))
}

/// The pause switch as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncPause {
    /// No run is claimed while paused (scheduled or started by hand).
    pub paused: bool,
    /// When the switch was last turned (`null`: never).
    pub changed_at: Option<DateTime<Utc>>,
    pub message: String,
}

fn pause_view(p: Option<PauseSetting>) -> SyncPause {
    let paused = p.as_ref().is_some_and(|p| p.paused);
    SyncPause {
        paused,
        changed_at: p.map(|p| p.changed_at),
        message: if paused {
            "all sync is paused: no scheduled run starts, and started runs wait until sync is resumed".into()
        } else {
            "sync runs as scheduled".into()
        },
    }
}

/// `GET /sync-pause`.
#[utoipa::path(
    get, path = "/sync-pause", tag = "sync",
    operation_id = "sync_pause_get",
    summary = "Whether all sync is paused",
    responses((status = 200, description = "the switch", body = SyncPause))
)]
pub async fn get_pause(State(st): State<AppState>) -> ApiResult<Json<SyncPause>> {
    let p = st
        .read_async(|c| app_settings::get_setting::<PauseSetting>(c, PAUSE_SETTING))
        .await?;
    Ok(Json(pause_view(p)))
}

/// The switch's new position.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPause {
    /// `true` pauses all sync of the domain, `false` resumes it.
    paused: bool,
}

/// `PUT /sync-pause` `{paused}`.
#[utoipa::path(
    put, path = "/sync-pause", tag = "sync",
    operation_id = "sync_pause_put",
    summary = "Pause or resume all sync",
    description = "While paused no worker claims a run: scheduled runs do not start and started \
                   runs wait in the queue until sync is resumed.",
    request_body = PutPause,
    responses((status = 200, description = "the switch afterwards", body = SyncPause))
)]
pub async fn put_pause(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<PutPause>,
) -> ApiResult<Json<SyncPause>> {
    let now = st.now();
    let setting = PauseSetting {
        paused: body.paused,
        changed_at: now,
    };
    let stored = setting.clone();
    st.write_async(move |c| app_settings::put_setting(c, PAUSE_SETTING, &stored, now))
        .await?;
    tracing::info!(paused = body.paused, "domain-wide sync pause switched");
    if !body.paused {
        if let Some(s) = &st.scheduler {
            s.wake();
        }
    }
    Ok(Json(pause_view(Some(setting))))
}

/// One kind's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindHealth {
    /// Records linked to their Google counterpart.
    #[schema(format = Int64)]
    pub linked: i64,
    /// Sent to Google, not yet seen back.
    #[schema(format = Int64)]
    pub awaiting_confirmation: i64,
    /// Pairs whose one side left the scope (untagged, deleted, out of the date range); kept so
    /// that they can come back.
    #[schema(format = Int64)]
    pub out_of_scope: i64,
    /// Records failing in recent runs (the list below holds at most 20).
    #[schema(format = Int64)]
    pub failing: i64,
    /// Of those, how many are parked (they no longer hold the sync back).
    #[schema(format = Int64)]
    pub parked: i64,
    /// The failing records and why.
    #[schema(value_type = Vec<super::openapi::FailingItemDoc>)]
    pub failing_records: Vec<FailingItem>,
}

/// A user's sync health.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncHealth {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// Keyed by kind (`contacts`, `activities`).
    pub kinds: BTreeMap<String, KindHealth>,
}

/// `GET /users/{id}/sync-health`.
#[utoipa::path(
    get, path = "/users/{id}/sync-health", tag = "sync",
    operation_id = "sync_health",
    summary = "A user's sync health: linked, awaiting, out of scope, failing",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "per kind the counts and the failing records", body = SyncHealth),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn health(
    State(st): State<AppState>,
    ApiPath(user_id): ApiPath<UserId>,
) -> ApiResult<Json<SyncHealth>> {
    let now = st.now();
    let health = st
        .read_async(move |c| {
            let user = users::get_user(c, user_id)?;
            let status = crate::scheduler::status::user_status(c, &user, now)?;
            let mut kinds = BTreeMap::new();
            for kind in [SyncKind::Contacts, SyncKind::Activities] {
                let count = |c: &mut AnyConnection, s| sync_state::count_links(c, user_id, kind, s);
                let linked = count(c, LinkState::Active)?;
                let awaiting_confirmation = count(c, LinkState::Pending)?;
                let out_of_scope = count(c, LinkState::Ended)?;
                let (failing_records, parked) = status
                    .kinds
                    .get(kind.as_str())
                    .map(|k| (k.failing.clone(), k.parked))
                    .unwrap_or_default();
                kinds.insert(
                    kind.as_str().to_string(),
                    KindHealth {
                        linked,
                        awaiting_confirmation,
                        out_of_scope,
                        failing: i64::try_from(failing_records.len()).unwrap_or(i64::MAX),
                        parked,
                        failing_records,
                    },
                );
            }
            Ok(SyncHealth { user_id, kinds })
        })
        .await?;
    Ok(Json(health))
}

/// What to preview: exactly one of `interval_minutes` and `cron`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// Every N minutes, 1 to 525600.
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 525600)]
    interval_minutes: Option<String>,
    /// A cron expression (seconds first), read in `time_zone`.
    #[serde(default)]
    cron: Option<String>,
    /// The IANA time zone to read the cron expression and show the times in (default UTC).
    #[serde(default)]
    time_zone: Option<String>,
}

/// A schedule's next run times.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulePreview {
    /// "every 15 minutes", "cron 0 0 8 * * *".
    pub schedule: String,
    pub time_zone: String,
    /// The next three run times (from now; a first scheduled run may come earlier, spread over
    /// the interval).
    pub next: Vec<DateTime<Utc>>,
    /// The same times in `time_zone`, with its offset (RFC 3339).
    pub next_local: Vec<String>,
}

/// `GET /schedule-preview?interval_minutes=|cron=&time_zone=`.
#[utoipa::path(
    get, path = "/schedule-preview", tag = "sync",
    operation_id = "schedule_preview",
    summary = "Check a schedule and show its next three run times",
    description = "Checks an interval or a cron expression as `PUT /users/{id}/sync-settings/{kind}` \
                   does and answers its next three run times in the time zone. Nothing is written.",
    params(PreviewQuery),
    responses(
        (status = 200, description = "the next run times", body = SchedulePreview),
        (status = 422, description = "neither or both of interval_minutes and cron, or one that is not valid, or an unknown time zone (`validation_failed`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn schedule_preview(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> ApiResult<Json<SchedulePreview>> {
    let now = st.now();
    let zone_name = q
        .time_zone
        .as_deref()
        .map(str::trim)
        .filter(|z| !z.is_empty())
        .unwrap_or("UTC")
        .to_string();
    let tz = validate::time_zone("time_zone", &zone_name)?;
    let cron = q.cron.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let interval = q
        .interval_minutes
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty());
    let (schedule, next): (String, Vec<DateTime<Utc>>) = match (interval, cron) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "set either interval_minutes or cron, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "set interval_minutes (1 to 525600) or cron",
            ))
        }
        (Some(i), None) => {
            let minutes = i
                .parse::<i64>()
                .ok()
                .filter(|m| (1..=525_600).contains(m))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "interval_minutes: {i:?} is not a whole number of minutes from 1 to 525600"
                    ))
                })?;
            let step = chrono::Duration::minutes(minutes);
            (
                format!("every {minutes} minutes"),
                (1..=3).map(|n| now + step * n).collect(),
            )
        }
        (None, Some(c)) => {
            validate::cron_expression(c, now)?;
            let parsed = <cron::Schedule as std::str::FromStr>::from_str(c).map_err(|e| {
                ApiError::invalid(format!("cron: {c:?} is not a valid cron expression ({e})"))
            })?;
            (
                format!("cron {c}"),
                parsed
                    .after(&now.with_timezone(&tz))
                    .take(3)
                    .map(|t| t.with_timezone(&Utc))
                    .collect(),
            )
        }
    };
    let next_local = next
        .iter()
        .map(|t| t.with_timezone(&tz).to_rfc3339())
        .collect();
    Ok(Json(SchedulePreview {
        schedule,
        time_zone: zone_name,
        next,
        next_local,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResetQuery {
    /// Only say what the first run after the reset would do (values written on either side,
    /// records paired, created or untagged); nothing is forgotten or written.
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    dry_run: bool,
}

/// What a reset forgot, and the run queued to re-merge.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetDone {
    /// Pairs whose merge base was forgotten (the pairs themselves are kept).
    pub bases_forgotten: u64,
    /// Whether a sync token and CRM position were forgotten.
    pub cursor_forgotten: bool,
    /// Failing and parked records forgotten (the full listing reads them again).
    pub failing_forgotten: u64,
    /// The queued run: a first sync (everything listed and read, each pair merged as a first
    /// pairing, records not paired yet paired by the CRM id a Google record carries and, for
    /// contacts, by e-mail).
    #[schema(value_type = uuid::Uuid)]
    pub run_id: crmsync_engine::ids::RunId,
    /// Another queued run of this user and kind was reused.
    pub coalesced: bool,
}

/// `POST /users/{id}/sync-reset/{kind}`: with `?dry_run=true` 200 and what the first run after
/// a reset would do; else the merge bases of the user's pairs, the cursor and the failing
/// records are forgotten (the pairs are kept; nothing in the CRM or Google is touched) and a run
/// is queued: 202.
#[utoipa::path(
    post, path = "/users/{id}/sync-reset/{kind}", tag = "sync",
    operation_id = "sync_reset",
    summary = "Reset a user's sync of one kind (dry run first)",
    description = "Forgets what the engine remembered of each pair (the values both sides last \
                   agreed on, etags), the sync token and CRM position, and the failing records, \
                   then queues a run: a first sync that reads everything on both sides, merges \
                   each pair as a first pairing and pairs records not paired yet by the CRM id a \
                   Google record carries and, for contacts, by e-mail. Which Google record \
                   belongs to which CRM record is kept (an imported record carries no CRM id: \
                   forgetting it would import it twice). Nothing is deleted, untagged or changed \
                   by the reset itself. With `?dry_run=true` nothing is forgotten: the answer is \
                   what that first run would do, planned by the engine against Google and the \
                   CRM as they are now.",
    params(
        ("id" = uuid::Uuid, Path, description = "the user's id"),
        ("kind" = super::openapi::SyncKindDoc, Path, description = "`contacts` or `activities`"),
        ResetQuery,
    ),
    responses(
        (status = 200, description = "`?dry_run=true`: what the first run after a reset would do", body = crate::sync::PreviewReport),
        (status = 202, description = "forgotten; the run that re-pairs is queued", body = ResetDone),
        (status = 400, description = "unknown kind (`bad_request`)", body = super::openapi::ErrorBody),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "a run of this kind is in progress, or the user has no sync settings or no working Google connection for it (`conflict`, `not_configured`)", body = super::openapi::ErrorBody),
        (status = 502, description = "the dry run could not read Google (`google_error`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn reset(
    State(st): State<AppState>,
    ApiPath((user, kind)): ApiPath<(UserId, String)>,
    ApiQuery(q): ApiQuery<ResetQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let kind = super::sync_settings::parse_kind(&kind)?;
    st.read_async(move |c| users::get_user(c, user)).await?;
    if q.dry_run {
        let report = st
            .sync_engine()
            .preview(user, kind, true)
            .await
            .map_err(preview_error)?;
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    let now = st.now();
    let done = st
        .write_async(move |c| crmsync_schema::reset::reset_sync(c, user, kind, now))
        .await?;
    tracing::info!(
        user = %user,
        kind = kind.as_str(),
        pairs = done.bases_forgotten,
        run = %done.run.run_id,
        "sync reset: merge bases, cursor and failing records forgotten; a first run is queued"
    );
    if let Some(s) = &st.scheduler {
        s.wake();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ResetDone {
            bases_forgotten: done.bases_forgotten,
            cursor_forgotten: done.cursor_forgotten,
            failing_forgotten: done.failing_forgotten,
            run_id: done.run.run_id,
            coalesced: done.run.coalesced,
        }),
    )
        .into_response())
}

/// A dry run that could not plan, in the API's words.
fn preview_error(e: crate::sync::error::SyncError) -> ApiError {
    use crate::sync::error::SyncError;
    match e {
        SyncError::NotConfigured(m) => ApiError::new(StatusCode::CONFLICT, "not_configured", m),
        SyncError::Auth { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "not_configured",
            format!("{e}; connect the user's Google account (or check the service account), then preview again"),
        ),
        SyncError::Google(g) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "google_error",
            format!("the dry run could not read Google: {g}; try again in a moment"),
        ),
        SyncError::Store(s) => s.into(),
        other => {
            tracing::error!(error = %other, "the dry run stopped");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the dry run stopped on an internal error; the server log has the details",
            )
        }
    }
}
