//! `/activities`: create (201), list (all, or `?organizer_user_id=`; paginated), read, change
//! (PATCH), delete (a tombstone). Timed activities take RFC 3339 instants; all-day ones
//! (`all_day: true`) take `YYYY-MM-DD` dates, end exclusive. Participants are given as
//! `{user_id}`, `{contact_id}` or `{email}` (plus an optional `response_status`) and resolved to
//! users and contacts with their e-mail filled in.

use super::contacts::double_option;
use super::error::{ApiError, ApiResult};
use super::extract::{non_null, ApiPath, ApiQuery, JsonBody, PatchBody};
use super::page::{self, Page};
use super::validate::{self, Check, Invalid, LONG_TEXT, SHORT_TEXT};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use crmsync_engine::ids::{ActivityId, ContactId, UserId};
use crmsync_engine::model::{
    Activity, ActivityData, ActivityStatus, ActivityTime, Participant, ResponseStatus,
};
use crmsync_schema::activities::{self as store, ActivityCursor, ParticipantRef};
use crmsync_schema::{users as user_store, AnyConnection, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A participant as a client names it: exactly one of `user_id`, `contact_id`, `email`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantInput {
    /// A CRM user.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    user_id: Option<UserId>,
    /// A CRM contact.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    contact_id: Option<ContactId>,
    /// An e-mail address (matched to a user or contact when one has it).
    #[serde(default)]
    #[schema(format = Email, max_length = 320)]
    email: Option<String>,
    #[serde(default)]
    #[schema(value_type = super::openapi::ResponseStatusDoc)]
    response_status: ResponseStatus,
}

/// A new activity. Timed: `start`/`end` are RFC 3339 instants; all-day (`all_day: true`):
/// `YYYY-MM-DD` dates, end exclusive.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateActivity {
    #[schema(min_length = 1, max_length = 1000, example = "Kick-off")]
    title: String,
    #[schema(example = "2026-03-02T09:00:00Z")]
    start: String,
    #[schema(example = "2026-03-02T10:00:00Z")]
    end: String,
    #[schema(value_type = super::openapi::TimeZone)]
    time_zone: String,
    #[serde(default)]
    all_day: bool,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    #[schema(value_type = super::openapi::ActivityStatusDoc)]
    status: ActivityStatus,
    /// Whether the activity goes to the organizer's Google Calendar.
    display_in_calendar: bool,
    /// The organizer (a CRM user): the activity syncs with this user's calendar.
    #[schema(value_type = uuid::Uuid)]
    organizer_user_id: UserId,
    #[serde(default)]
    #[schema(max_items = 500)]
    participants: Vec<ParticipantInput>,
}

/// The fields to change (at least one). Absent fields stay; `null` clears location and notes
/// and is refused elsewhere. Changing `all_day` needs both `start` and `end` in the new form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchActivity {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, min_length = 1, max_length = 1000)]
    title: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    start: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    end: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, value_type = Option<super::openapi::TimeZone>)]
    time_zone: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    all_day: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    location: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    notes: Option<Option<String>>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, value_type = Option<super::openapi::ActivityStatusDoc>)]
    status: Option<ActivityStatus>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    display_in_calendar: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, value_type = Option<uuid::Uuid>)]
    organizer_user_id: Option<UserId>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, max_items = 500)]
    participants: Option<Vec<ParticipantInput>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this user's activities, by start time.
    #[param(value_type = Option<uuid::Uuid>)]
    organizer_user_id: Option<UserId>,
}

/// An activity as the API shows it: `start`/`end` are RFC 3339 instants, or dates when `all_day`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Activity)]
pub struct ActivityView {
    #[schema(value_type = uuid::Uuid)]
    pub id: ActivityId,
    pub title: String,
    /// An RFC 3339 instant, or a `YYYY-MM-DD` date when `all_day`.
    pub start: String,
    /// An RFC 3339 instant, or a `YYYY-MM-DD` date (exclusive) when `all_day`.
    pub end: String,
    pub all_day: bool,
    pub time_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub notes: Option<String>,
    #[schema(value_type = super::openapi::ActivityStatusDoc)]
    pub status: ActivityStatus,
    pub display_in_calendar: bool,
    #[schema(value_type = uuid::Uuid)]
    pub organizer_user_id: UserId,
    #[schema(value_type = Vec<super::openapi::ParticipantDoc>)]
    pub participants: Vec<Participant>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub change_seq: i64,
}

impl From<Activity> for ActivityView {
    fn from(a: Activity) -> Self {
        let (start, end, all_day) = match a.data.time {
            ActivityTime::Timed { start, end } => (instant(start), instant(end), false),
            ActivityTime::AllDay { start, end } => (start.to_string(), end.to_string(), true),
        };
        ActivityView {
            id: a.id,
            title: a.data.title,
            start,
            end,
            all_day,
            time_zone: a.data.time_zone,
            location: a.data.location,
            notes: a.data.notes,
            status: a.data.status,
            display_in_calendar: a.data.display_in_calendar,
            organizer_user_id: a.data.organizer_user_id,
            participants: a.data.participants,
            created_at: a.created_at,
            modified_at: a.modified_at,
            change_seq: a.change_seq,
        }
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An RFC 3339 instant in `validate::YEARS`, not a leap second.
fn parse_instant(field: &str, s: &str) -> Check<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Invalid(format!(
            "{field}: {s:?} is not an RFC 3339 instant (e.g. 2026-03-01T09:00:00Z); for all-day \
             activities set all_day to true and use YYYY-MM-DD dates"
        ))
        })?;
    validate::instant(field, &t)?;
    Ok(t)
}

/// A `YYYY-MM-DD` date in `validate::YEARS`.
fn parse_date(field: &str, s: &str) -> Check<NaiveDate> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        Invalid(format!(
            "{field}: {s:?} is not a date; an all-day activity takes YYYY-MM-DD dates"
        ))
    })?;
    validate::date(field, &d)?;
    Ok(d)
}

/// Rules on the text a client sends (not on stored values, which may have come from Google): no
/// control characters in the title and location; notes may have line breaks and tabs.
fn check_input_text(title: Option<&str>, location: Option<&str>, notes: Option<&str>) -> Check {
    if let Some(t) = title {
        validate::line("title", t)?;
    }
    if let Some(l) = location {
        validate::line("location", l)?;
    }
    if let Some(n) = notes {
        validate::multiline("notes", n)?;
    }
    Ok(())
}

/// The activity's time from its `start`/`end` strings.
fn parse_time(all_day: bool, start: &str, end: &str) -> Check<ActivityTime> {
    let time = if all_day {
        ActivityTime::AllDay {
            start: parse_date("start", start)?,
            end: parse_date("end", end)?,
        }
    } else {
        ActivityTime::Timed {
            start: parse_instant("start", start)?,
            end: parse_instant("end", end)?,
        }
    };
    check_time(&time)?;
    Ok(time)
}

fn check_time(time: &ActivityTime) -> Check {
    match time {
        ActivityTime::Timed { start, end } if end < start => {
            Err(Invalid(format!("end ({}) is before start ({})", instant(*end), instant(*start))))
        }
        ActivityTime::AllDay { start, end } if end <= start => Err(Invalid(format!(
            "end ({end}) must be after start ({start}): the end date of an all-day activity is exclusive"
        ))),
        _ => Ok(()),
    }
}

fn check_fields(d: &ActivityData) -> Check {
    validate::required_text("title", &d.title, SHORT_TEXT)?;
    validate::time_zone("time_zone", &d.time_zone)?;
    validate::opt_text("location", &d.location, SHORT_TEXT)?;
    validate::opt_text("notes", &d.notes, LONG_TEXT)?;
    check_time(&d.time)
}

/// Participant references with their response status, as the store resolves them.
type ParticipantRefs = Vec<(ParticipantRef, ResponseStatus)>;

fn participant_refs(inputs: &[ParticipantInput]) -> Check<ParticipantRefs> {
    if inputs.len() > 500 {
        return Err(Invalid("an activity has at most 500 participants".into()));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = match (p.user_id, p.contact_id, &p.email) {
                (Some(u), None, None) => ParticipantRef::User(u),
                (None, Some(c), None) => ParticipantRef::Contact(c),
                (None, None, Some(e)) => {
                    validate::email(&format!("participants[{i}].email"), e)?;
                    ParticipantRef::Email(e.clone())
                }
                _ => {
                    return Err(Invalid(format!(
                        "participants[{i}] must have exactly one of user_id, contact_id or email"
                    )))
                }
            };
            Ok((r, p.response_status))
        })
        .collect()
}

fn require_organizer(c: &mut AnyConnection, id: UserId) -> StoreResult<()> {
    match user_store::find_user(c, id)? {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid(format!(
            "organizer_user_id: user {id} does not exist"
        ))),
    }
}

/// `POST /activities`.
#[utoipa::path(
    post, path = "/activities", tag = "activities",
    operation_id = "activities_create",
    summary = "Create an activity",
    request_body = CreateActivity,
    responses(
        (status = 201, description = "created", body = ActivityView),
        (status = 404, description = "a participant's user or contact does not exist (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateActivity>,
) -> ApiResult<(StatusCode, Json<ActivityView>)> {
    check_input_text(
        Some(&body.title),
        body.location.as_deref(),
        body.notes.as_deref(),
    )?;
    let time = parse_time(body.all_day, &body.start, &body.end)?;
    let refs = participant_refs(&body.participants)?;
    let mut data = ActivityData {
        title: body.title,
        time,
        time_zone: body.time_zone,
        location: body.location,
        notes: body.notes,
        status: body.status,
        display_in_calendar: body.display_in_calendar,
        organizer_user_id: body.organizer_user_id,
        participants: Vec::new(),
    };
    check_fields(&data)?;
    let now = st.now();
    let activity = st
        .write_async(move |c| {
            require_organizer(c, data.organizer_user_id)?;
            data.participants = store::resolve_participants(c, &refs)?;
            store::create_activity(c, &data, now)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(activity.into())))
}

/// `GET /activities` and `GET /activities?organizer_user_id=`.
#[utoipa::path(
    get, path = "/activities", tag = "activities",
    operation_id = "activities_list",
    summary = "List activities (all, by id; or one organizer's, by start)",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of activities", body = super::openapi::ActivityPage),
        (status = 404, description = "no such organizer (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<ActivityView>>> {
    let limit = page::limit(q.limit)?;
    let bad_cursor =
        || ApiError::bad_request("cursor is not valid: pass next_cursor from the previous page");
    let activities = match q.organizer_user_id {
        Some(organizer) => {
            let after = match q.cursor.as_deref() {
                None => None,
                Some(c) => {
                    let (micros, id) = c.split_once('_').ok_or_else(bad_cursor)?;
                    let micros: i64 = micros.parse().map_err(|_| bad_cursor())?;
                    let start =
                        DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad_cursor)?;
                    Some(ActivityCursor {
                        start,
                        id: id.parse().map_err(|_| bad_cursor())?,
                    })
                }
            };
            let list = st
                .read_async(move |c| {
                    user_store::get_user(c, organizer)?;
                    store::activities_by_organizer(c, organizer, after, limit)
                })
                .await?;
            let cursor = |a: &Activity| {
                let start = match a.data.time {
                    ActivityTime::Timed { start, .. } => start,
                    ActivityTime::AllDay { start, .. } => {
                        let tz = a.data.time_zone.parse().unwrap_or(chrono_tz::UTC);
                        store::start_of_day(start, tz)
                    }
                };
                format!("{}_{}", start.timestamp_micros(), a.id)
            };
            let next = if list.len() == limit {
                list.last().map(cursor)
            } else {
                None
            };
            return Ok(Json(Page {
                items: list.into_iter().map(Into::into).collect(),
                next_cursor: next,
            }));
        }
        None => {
            let after = page::cursor::<ActivityId>(q.cursor.as_deref())?;
            st.read_async(move |c| store::list_activities(c, after, limit))
                .await?
        }
    };
    let page = Page::new(activities, limit, |a| a.id.to_string());
    Ok(Json(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /activities/{id}`.
#[utoipa::path(
    get, path = "/activities/{id}", tag = "activities",
    operation_id = "activities_get_one",
    summary = "Read an activity",
    params(("id" = uuid::Uuid, Path, description = "the activity's id")),
    responses(
        (status = 200, description = "the activity", body = ActivityView),
        (status = 404, description = "no such activity, or it was deleted (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ActivityId>,
) -> ApiResult<Json<ActivityView>> {
    let a = st.read_async(move |c| store::get_activity(c, id)).await?;
    if a.deleted_at.is_some() {
        return Err(ApiError::not_found(format!("activity {id} was deleted")));
    }
    Ok(Json(a.into()))
}

fn merge(
    current: ActivityData,
    p: PatchActivity,
) -> Check<(ActivityData, Option<ParticipantRefs>)> {
    let was_all_day = matches!(current.time, ActivityTime::AllDay { .. });
    let all_day = p.all_day.unwrap_or(was_all_day);
    let time = if all_day != was_all_day {
        match (&p.start, &p.end) {
            (Some(s), Some(e)) => parse_time(all_day, s, e)?,
            _ => {
                return Err(Invalid(
                    "changing all_day needs both start and end in the new form".into(),
                ))
            }
        }
    } else {
        let time = match current.time {
            ActivityTime::Timed { start, end } => ActivityTime::Timed {
                start: p
                    .start
                    .as_deref()
                    .map(|s| parse_instant("start", s))
                    .transpose()?
                    .unwrap_or(start),
                end: p
                    .end
                    .as_deref()
                    .map(|s| parse_instant("end", s))
                    .transpose()?
                    .unwrap_or(end),
            },
            ActivityTime::AllDay { start, end } => ActivityTime::AllDay {
                start: p
                    .start
                    .as_deref()
                    .map(|s| parse_date("start", s))
                    .transpose()?
                    .unwrap_or(start),
                end: p
                    .end
                    .as_deref()
                    .map(|s| parse_date("end", s))
                    .transpose()?
                    .unwrap_or(end),
            },
        };
        check_time(&time)?;
        time
    };
    let refs = p
        .participants
        .as_deref()
        .map(participant_refs)
        .transpose()?;
    let data = ActivityData {
        title: p.title.unwrap_or(current.title),
        time,
        time_zone: p.time_zone.unwrap_or(current.time_zone),
        location: p.location.unwrap_or(current.location),
        notes: p.notes.unwrap_or(current.notes),
        status: p.status.unwrap_or(current.status),
        display_in_calendar: p.display_in_calendar.unwrap_or(current.display_in_calendar),
        organizer_user_id: p.organizer_user_id.unwrap_or(current.organizer_user_id),
        participants: current.participants,
    };
    check_fields(&data)?;
    Ok((data, refs))
}

/// `PATCH /activities/{id}`: merged, validated and written in one write transaction.
#[utoipa::path(
    patch, path = "/activities/{id}", tag = "activities",
    operation_id = "activities_update",
    summary = "Change an activity",
    params(("id" = uuid::Uuid, Path, description = "the activity's id")),
    request_body = PatchActivity,
    responses(
        (status = 200, description = "the changed activity", body = ActivityView),
        (status = 404, description = "no such activity, or it was deleted (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ActivityId>,
    PatchBody(body): PatchBody<PatchActivity>,
) -> ApiResult<Json<ActivityView>> {
    // Check what needs no stored data first.
    check_input_text(
        body.title.as_deref(),
        body.location.as_ref().and_then(Option::as_deref),
        body.notes.as_ref().and_then(Option::as_deref),
    )?;
    if let Some(tz) = &body.time_zone {
        validate::time_zone("time_zone", tz)?;
    }
    if let Some(parts) = &body.participants {
        participant_refs(parts)?;
    }
    let now = st.now();
    let activity = st
        .write_async(move |c| {
            store::lock_activity(c, id)?;
            let current = store::get_activity(c, id)?;
            if current.deleted_at.is_some() {
                return Err(StoreError::NotFound {
                    what: "activity (deleted)",
                    id: id.to_string(),
                });
            }
            let (mut data, refs) = merge(current.data, body)?;
            require_organizer(c, data.organizer_user_id)?;
            if let Some(refs) = refs {
                data.participants = store::resolve_participants(c, &refs)?;
            }
            store::update_activity(c, id, &data, now)
        })
        .await?;
    Ok(Json(activity.into()))
}

/// `DELETE /activities/{id}`: the activity becomes a tombstone (204).
#[utoipa::path(
    delete, path = "/activities/{id}", tag = "activities",
    operation_id = "activities_delete",
    summary = "Delete an activity",
    params(("id" = uuid::Uuid, Path, description = "the activity's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such activity (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ActivityId>,
) -> ApiResult<StatusCode> {
    let now = st.now();
    st.write_async(move |c| store::delete_activity(c, id, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
