//! `/users/{id}/sync-settings[/{kind}]`: read and set a user's per-kind sync settings. Exactly
//! one of `interval_minutes` (>= 1) and `cron` (the `cron` crate's syntax); for contacts a
//! `tag_id` that is a private tag of the user; for activities `synchronize_from` and
//! `trigger_words`.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, JsonBody};
use super::validate::{self, Check, Invalid};
use super::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use crmsync_engine::ids::{SyncKind, TagId, UserId};
use crmsync_engine::model::{SyncSchedule, SyncSettings};
use crmsync_schema::settings::{self as store, NewSyncSettings};
use crmsync_schema::users as user_store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's settings for one kind: exactly one of `interval_minutes` and `cron`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    /// Sync on a schedule (`false`: manual starts only).
    auto_sync: bool,
    /// Every N minutes, 1 to 525600.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 525600, example = 15)]
    interval_minutes: Option<i64>,
    /// A cron expression (seconds first, the `cron` crate's syntax), e.g. `0 */15 * * * *`,
    /// read in the user's time zone.
    #[serde(default)]
    #[schema(example = "0 */15 * * * *")]
    cron: Option<String>,
    /// Contacts: the contact sync tag, a private tag of the user.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    tag_id: Option<TagId>,
    /// Activities: only activities starting on or after this date go out.
    #[serde(default)]
    synchronize_from: Option<NaiveDate>,
    /// Activities: import only Google events whose title contains one of these words.
    #[serde(default)]
    #[schema(max_items = 100)]
    trigger_words: Vec<String>,
}

/// Sync settings as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SyncSettings)]
pub struct SettingsView {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    #[schema(value_type = super::openapi::SyncKindDoc)]
    pub kind: SyncKind,
    pub auto_sync: bool,
    pub interval_minutes: Option<u32>,
    pub cron: Option<String>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub tag_id: Option<TagId>,
    pub synchronize_from: Option<NaiveDate>,
    pub trigger_words: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl From<SyncSettings> for SettingsView {
    fn from(s: SyncSettings) -> Self {
        let (interval_minutes, cron) = match s.schedule {
            SyncSchedule::IntervalMinutes(m) => (Some(m), None),
            SyncSchedule::Cron(c) => (None, Some(c)),
        };
        SettingsView {
            user_id: s.user_id,
            kind: s.kind,
            auto_sync: s.auto_sync,
            interval_minutes,
            cron,
            tag_id: s.tag_id,
            synchronize_from: s.synchronize_from,
            trigger_words: s.trigger_words,
            updated_at: s.updated_at,
        }
    }
}

pub(super) fn parse_kind(kind: &str) -> ApiResult<SyncKind> {
    kind.parse()
        .map_err(|e: crmsync_engine::ids::UnknownKind| ApiError::bad_request(e.to_string()))
}

fn schedule(body: &PutSettings, now: DateTime<Utc>) -> Check<SyncSchedule> {
    match (body.interval_minutes, &body.cron) {
        (Some(_), Some(_)) => Err(Invalid(
            "set either interval_minutes or cron, not both".into(),
        )),
        (None, None) => Err(Invalid("set interval_minutes (at least 1) or cron".into())),
        (Some(m), None) if m < 1 => Err(Invalid(format!(
            "interval_minutes must be at least 1, not {m}"
        ))),
        (Some(m), None) => u32::try_from(m)
            .ok()
            .filter(|m| *m <= 525_600)
            .map(SyncSchedule::IntervalMinutes)
            .ok_or_else(|| Invalid("interval_minutes must be at most 525600 (a year)".into())),
        (None, Some(c)) => {
            validate::cron_expression(c, now)?;
            Ok(SyncSchedule::Cron(c.clone()))
        }
    }
}

fn check_words(words: &[String]) -> Check {
    if words.len() > 100 {
        return Err(Invalid("at most 100 trigger words".into()));
    }
    for (i, w) in words.iter().enumerate() {
        validate::required_text(&format!("trigger_words[{i}]"), w, 100)?;
        validate::line(&format!("trigger_words[{i}]"), w)?;
    }
    Ok(())
}

/// `PUT /users/{id}/sync-settings/{kind}`.
#[utoipa::path(
    put, path = "/users/{id}/sync-settings/{kind}", tag = "sync",
    operation_id = "sync_settings_put_one",
    summary = "Set a user's sync settings for one kind",
    params(
        ("id" = uuid::Uuid, Path, description = "the user's id"),
        ("kind" = super::openapi::SyncKindDoc, Path, description = "`contacts` or `activities`"),
    ),
    request_body = PutSettings,
    responses(
        (status = 200, description = "the settings", body = SettingsView),
        (status = 404, description = "no such user or tag (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_one(
    State(st): State<AppState>,
    ApiPath((user, kind)): ApiPath<(UserId, String)>,
    JsonBody(body): JsonBody<PutSettings>,
) -> ApiResult<Json<SettingsView>> {
    let kind = parse_kind(&kind)?;
    let now = st.now();
    let schedule = schedule(&body, now)?;
    check_words(&body.trigger_words)?;
    if let Some(d) = &body.synchronize_from {
        validate::date("synchronize_from", d)?;
    }
    let new = NewSyncSettings {
        user_id: user,
        kind,
        auto_sync: body.auto_sync,
        schedule,
        tag_id: body.tag_id,
        synchronize_from: body.synchronize_from,
        trigger_words: body.trigger_words,
    };
    let saved = st
        .write_async(move |c| store::put_sync_settings(c, &new, now))
        .await?;
    Ok(Json(saved.into()))
}

/// `GET /users/{id}/sync-settings/{kind}`.
#[utoipa::path(
    get, path = "/users/{id}/sync-settings/{kind}", tag = "sync",
    operation_id = "sync_settings_get_one",
    summary = "Read a user's sync settings for one kind",
    params(
        ("id" = uuid::Uuid, Path, description = "the user's id"),
        ("kind" = super::openapi::SyncKindDoc, Path, description = "`contacts` or `activities`"),
    ),
    responses(
        (status = 200, description = "the settings", body = SettingsView),
        (status = 404, description = "no such user, or no settings for this kind yet (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath((user, kind)): ApiPath<(UserId, String)>,
) -> ApiResult<Json<SettingsView>> {
    let kind = parse_kind(&kind)?;
    let found = st
        .read_async(move |c| {
            user_store::get_user(c, user)?;
            store::get_sync_settings(c, user, kind)
        })
        .await?;
    found.map(|s| Json(s.into())).ok_or_else(|| {
        ApiError::not_found(format!(
            "user {user} has no {kind} sync settings yet; PUT them first"
        ))
    })
}

/// `GET /users/{id}/sync-settings`: every kind that is set.
#[utoipa::path(
    get, path = "/users/{id}/sync-settings", tag = "sync",
    operation_id = "sync_settings_list",
    summary = "Read a user's sync settings of every kind that is set",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the settings", body = Vec<SettingsView>),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    ApiPath(user): ApiPath<UserId>,
) -> ApiResult<Json<Vec<SettingsView>>> {
    let all = st
        .read_async(move |c| {
            user_store::get_user(c, user)?;
            store::sync_settings_of_user(c, user)
        })
        .await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}
