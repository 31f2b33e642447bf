//! `/activities`: create (201), list (all, or `?organizer_user_id=`; paginated), read, change
//! (PATCH), delete (a tombstone). Timed activities take RFC 3339 instants; all-day ones
//! (`all_day: true`) take `YYYY-MM-DD` dates, end exclusive. Participants are given as
//! `{user_id}`, `{contact_id}` or `{email}` (plus an optional `response_status`) and resolved to
//! users and contacts with their e-mail filled in.
//!
//! For a CRM that keeps its own records (SPEC 6.4): `PUT/GET/DELETE
//! /activities/by-external-id/{external_id}`, `POST /activities/batch`, references by the CRM's
//! ids (`organizer_external_id`, participants `{user_external_id}` / `{contact_external_id}`),
//! and `version` / `ETag` / `If-Match` as for contacts.

use super::contacts::double_option;
use super::error::{ApiError, ApiResult};
use super::extract::{non_null, ApiPath, ApiQuery, JsonBody, PatchBody};
use super::page::{self, Page};
use super::upsert::{self, BatchBody, BatchResults, Outcome, Resolver};
use super::validate::{self, Check, Invalid, LONG_TEXT, SHORT_TEXT};
use super::versions::{IfMatch, Versioned};
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
use crmsync_schema::changes::Origin;
use crmsync_schema::contacts as contact_store;
use crmsync_schema::{users as user_store, AnyConnection, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A participant as a client names it: exactly one of `user_id`, `contact_id`, `email`,
/// `user_external_id`, `contact_external_id`.
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
    /// A CRM user, by the CRM's id.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    user_external_id: Option<String>,
    /// A CRM contact, by the CRM's id.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    contact_external_id: Option<String>,
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
    /// The organizer (a CRM user): the activity syncs with this user's calendar. Give this or
    /// `organizer_external_id`.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    organizer_user_id: Option<UserId>,
    /// The organizer, by the CRM's id of the user.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    organizer_external_id: Option<String>,
    #[serde(default)]
    #[schema(max_items = 500)]
    participants: Vec<ParticipantInput>,
    /// The CRM's id of the activity (1 to 255 characters, unique). In a PUT by external id it
    /// may be omitted, and must equal the path's when sent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
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
    #[schema(nullable = false, min_length = 1, max_length = 255)]
    organizer_external_id: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, max_items = 500)]
    participants: Option<Vec<ParticipantInput>>,
    /// Gives the record the CRM's id (for one the sync brought from Google); `null` takes it away.
    /// Not a change in the feed.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    external_id: Option<Option<String>>,
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
    #[schema(format = Int64)]
    pub change_seq: i64,
    /// The CRM's id of the activity.
    pub external_id: Option<String>,
    /// Grows on every change; send it back in `If-Match` to write only over this version.
    #[schema(format = Int64)]
    pub version: i64,
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
            external_id: a.external_id,
            version: a.change_seq,
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

/// Who a participant is, as sent: a store reference, or a CRM id still to resolve.
#[derive(Clone, Debug)]
enum Who {
    Ref(ParticipantRef),
    UserExternal(String),
    ContactExternal(String),
}

/// Participant references with their response status, as sent.
type ParticipantRefs = Vec<(Who, ResponseStatus)>;

/// The CRM ids an activity body refers to, resolved in one lookup per kind.
struct Refs {
    users: Resolver<UserId>,
    contacts: Resolver<ContactId>,
}

impl Refs {
    fn load<'a>(
        c: &mut AnyConnection,
        bodies: impl IntoIterator<Item = (Option<&'a str>, &'a ParticipantRefs)>,
    ) -> StoreResult<Self> {
        let (mut users, mut contacts) = (Vec::new(), Vec::new());
        for (organizer, parts) in bodies {
            users.extend(organizer.map(str::to_string));
            for (who, _) in parts {
                match who {
                    Who::UserExternal(x) => users.push(x.clone()),
                    Who::ContactExternal(x) => contacts.push(x.clone()),
                    Who::Ref(_) => {}
                }
            }
        }
        Ok(Refs {
            users: Resolver::load(c, "user", users, user_store::user_ids_by_external_ids)?,
            contacts: Resolver::load(
                c,
                "contact",
                contacts,
                contact_store::contact_ids_by_external_ids,
            )?,
        })
    }

    /// The organizer: by id, or by the CRM's id.
    fn organizer(&self, id: Option<UserId>, external: Option<&str>) -> StoreResult<UserId> {
        match (id, external) {
            (Some(id), None) => Ok(id),
            (None, Some(x)) => self.users.get("organizer_external_id", x),
            _ => Err(StoreError::Invalid(
                "give exactly one of organizer_user_id and organizer_external_id".into(),
            )),
        }
    }

    /// The participants as the store takes them.
    fn participants(
        &self,
        refs: &ParticipantRefs,
    ) -> StoreResult<Vec<(ParticipantRef, ResponseStatus)>> {
        refs.iter()
            .enumerate()
            .map(|(i, (who, status))| {
                let r = match who {
                    Who::Ref(r) => r.clone(),
                    Who::UserExternal(x) => ParticipantRef::User(
                        self.users
                            .get(&format!("participants[{i}].user_external_id"), x)?,
                    ),
                    Who::ContactExternal(x) => ParticipantRef::Contact(
                        self.contacts
                            .get(&format!("participants[{i}].contact_external_id"), x)?,
                    ),
                };
                Ok((r, *status))
            })
            .collect()
    }
}

fn participant_refs(inputs: &[ParticipantInput]) -> Check<ParticipantRefs> {
    if inputs.len() > 500 {
        return Err(Invalid("an activity has at most 500 participants".into()));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let named = [
                p.user_id.is_some(),
                p.contact_id.is_some(),
                p.email.is_some(),
                p.user_external_id.is_some(),
                p.contact_external_id.is_some(),
            ];
            if named.iter().filter(|n| **n).count() != 1 {
                return Err(Invalid(format!(
                    "participants[{i}] must have exactly one of user_id, contact_id, email, \
                     user_external_id or contact_external_id"
                )));
            }
            let r = if let Some(u) = p.user_id {
                Who::Ref(ParticipantRef::User(u))
            } else if let Some(c) = p.contact_id {
                Who::Ref(ParticipantRef::Contact(c))
            } else if let Some(e) = &p.email {
                validate::email(&format!("participants[{i}].email"), e)?;
                Who::Ref(ParticipantRef::Email(e.clone()))
            } else if let Some(x) = &p.user_external_id {
                upsert::check_external_id(&format!("participants[{i}].user_external_id"), x)?;
                Who::UserExternal(x.clone())
            } else if let Some(x) = &p.contact_external_id {
                upsert::check_external_id(&format!("participants[{i}].contact_external_id"), x)?;
                Who::ContactExternal(x.clone())
            } else {
                return Err(Invalid(format!("participants[{i}] names nobody")));
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
        (status = 409, description = "the external id is taken by another activity (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateActivity>,
) -> ApiResult<(StatusCode, Versioned<Json<ActivityView>>)> {
    let checked = body.checked()?;
    let now = st.now();
    let activity = st
        .write_async(move |c| {
            let refs = Refs::load(c, [checked.references()])?;
            let data = checked.complete(c, &refs)?;
            store::create_activity(c, &data, checked.external_id.as_deref(), Origin::Api, now)
        })
        .await?;
    Ok((StatusCode::CREATED, versioned(activity)))
}

/// An activity answered with its `ETag`.
fn versioned(activity: Activity) -> Versioned<Json<ActivityView>> {
    Versioned {
        version: activity.change_seq,
        body: Json(activity.into()),
    }
}

/// A create or upsert body, checked as far as it can be without the store.
struct CheckedActivity {
    /// The data, organizer and participants still to resolve.
    data: ActivityData,
    organizer: Option<UserId>,
    organizer_external_id: Option<String>,
    participants: ParticipantRefs,
    external_id: Option<String>,
}

impl CreateActivity {
    fn checked(self) -> ApiResult<CheckedActivity> {
        check_input_text(
            Some(&self.title),
            self.location.as_deref(),
            self.notes.as_deref(),
        )?;
        let time = parse_time(self.all_day, &self.start, &self.end)?;
        let participants = participant_refs(&self.participants)?;
        if let Some(x) = &self.organizer_external_id {
            upsert::check_external_id("organizer_external_id", x)?;
        }
        if self.organizer_user_id.is_some() == self.organizer_external_id.is_some() {
            return Err(ApiError::invalid(
                "give exactly one of organizer_user_id and organizer_external_id",
            ));
        }
        if let Some(x) = &self.external_id {
            upsert::check_external_id("external_id", x)?;
        }
        let data = ActivityData {
            title: self.title,
            time,
            time_zone: self.time_zone,
            location: self.location,
            notes: self.notes,
            status: self.status,
            display_in_calendar: self.display_in_calendar,
            organizer_user_id: UserId(uuid::Uuid::nil()),
            participants: Vec::new(),
        };
        check_fields(&data)?;
        Ok(CheckedActivity {
            data,
            organizer: self.organizer_user_id,
            organizer_external_id: self.organizer_external_id,
            participants,
            external_id: self.external_id,
        })
    }
}

impl CheckedActivity {
    /// The CRM ids it names, for [`Refs::load`].
    fn references(&self) -> (Option<&str>, &ParticipantRefs) {
        (self.organizer_external_id.as_deref(), &self.participants)
    }

    /// The data with its organizer and participants resolved.
    fn complete(&self, c: &mut AnyConnection, refs: &Refs) -> StoreResult<ActivityData> {
        let mut data = self.data.clone();
        data.organizer_user_id =
            refs.organizer(self.organizer, self.organizer_external_id.as_deref())?;
        require_organizer(c, data.organizer_user_id)?;
        data.participants =
            store::resolve_participants(c, &refs.participants(&self.participants)?)?;
        Ok(data)
    }
}

/// Creates or replaces the activity with the CRM's `external_id`: unchanged (nothing written)
/// when it already is as sent; `If-Match` checked against the current version.
fn upsert_activity(
    c: &mut AnyConnection,
    external_id: &str,
    data: &ActivityData,
    if_match: &IfMatch,
    now: DateTime<Utc>,
) -> StoreResult<(Outcome, Activity)> {
    let Some(id) = store::activity_id_by_external_id(c, external_id)? else {
        if_match.check("activity", None)?;
        let a = store::create_activity(c, data, Some(external_id), Origin::Api, now)?;
        return Ok((Outcome::Created, a));
    };
    store::lock_activity(c, id)?;
    let current = store::get_activity(c, id)?;
    if_match.check("activity", Some(current.change_seq))?;
    if current.data == *data {
        return Ok((Outcome::Unchanged, current));
    }
    let a = store::update_activity(c, current.id, data, Origin::Api, now)?;
    Ok((Outcome::Updated, a))
}

/// `PUT /activities/by-external-id/{external_id}`.
#[utoipa::path(
    put, path = "/activities/by-external-id/{external_id}", tag = "integration",
    operation_id = "activities_put_by_external_id",
    summary = "Create or replace an activity under the CRM's id (idempotent)",
    params(
        ("external_id" = String, Path, description = "the CRM's id of the activity"),
        ("If-Match" = Option<String>, Header, description = "the ETag the write must replace"),
    ),
    request_body = CreateActivity,
    responses(
        (status = 201, description = "created", body = ActivityView),
        (status = 200, description = "replaced, or already as sent (nothing written)", body = ActivityView),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
        (status = 409, description = "the external id was taken concurrently (`conflict`); retry", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
    if_match: IfMatch,
    JsonBody(body): JsonBody<CreateActivity>,
) -> ApiResult<(StatusCode, Versioned<Json<ActivityView>>)> {
    super::upsert::put_external_id(&external_id, body.external_id.as_deref())?;
    let checked = body.checked()?;
    let now = st.now();
    let (outcome, activity) = st
        .write_async(move |c| {
            let refs = Refs::load(c, [checked.references()])?;
            let data = checked.complete(c, &refs)?;
            upsert_activity(c, &external_id, &data, &if_match, now)
        })
        .await?;
    Ok((outcome.status(), versioned(activity)))
}

/// `GET /activities/by-external-id/{external_id}`.
#[utoipa::path(
    get, path = "/activities/by-external-id/{external_id}", tag = "integration",
    operation_id = "activities_get_by_external_id",
    summary = "Read an activity by the CRM's id",
    params(("external_id" = String, Path, description = "the CRM's id of the activity")),
    responses(
        (status = 200, description = "the activity", body = ActivityView),
        (status = 404, description = "no live activity has this external id (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
) -> ApiResult<Versioned<Json<ActivityView>>> {
    upsert::path_external_id(&external_id)?;
    let x = external_id.clone();
    st.read_async(move |c| store::activity_by_external_id(c, &x))
        .await?
        .map(versioned)
        .ok_or_else(|| ApiError::not_found(format!("no activity has external id {external_id:?}")))
}

/// `DELETE /activities/by-external-id/{external_id}`.
#[utoipa::path(
    delete, path = "/activities/by-external-id/{external_id}", tag = "integration",
    operation_id = "activities_delete_by_external_id",
    summary = "Delete an activity by the CRM's id",
    params(
        ("external_id" = String, Path, description = "the CRM's id of the activity"),
        ("If-Match" = Option<String>, Header, description = "the ETag the delete must replace"),
    ),
    responses(
        (status = 204, description = "deleted (a tombstone; the external id is free again)"),
        (status = 404, description = "no live activity has this external id (`not_found`)", body = super::openapi::ErrorBody),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<StatusCode> {
    upsert::path_external_id(&external_id)?;
    let now = st.now();
    st.write_async(move |c| {
        let id = store::activity_id_by_external_id(c, &external_id)?.ok_or_else(|| {
            upsert::unknown_external_id("activity with external id", &external_id)
        })?;
        delete_checked(c, id, &if_match, now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a live activity after checking `If-Match` under its row lock.
fn delete_checked(
    c: &mut AnyConnection,
    id: ActivityId,
    if_match: &IfMatch,
    now: DateTime<Utc>,
) -> StoreResult<Activity> {
    store::lock_activity(c, id)?;
    let current = store::get_activity(c, id)?;
    if current.deleted_at.is_none() {
        if_match.check("activity", Some(current.change_seq))?;
    }
    store::delete_activity(c, id, Origin::Api, now)
}

/// `POST /activities/batch`.
#[utoipa::path(
    post, path = "/activities/batch", tag = "integration",
    operation_id = "activities_batch",
    summary = "Upsert up to 1,000 activities by the CRM's ids, in one transaction",
    request_body(content = BatchBody, description = "`items`: each an activity body (as for PUT by external id) with its `external_id`"),
    responses(
        (status = 200, description = "one result per item, in item order; invalid items are reported and never block the others", body = BatchResults),
    )
)]
pub async fn batch(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult<Json<BatchResults>> {
    let items: Vec<upsert::Parsed<CheckedActivity>> =
        upsert::parse_batch::<CreateActivity>(body, |b| b.external_id.as_deref())?
            .into_iter()
            .map(|p| {
                // Each item's fields are checked before the transaction.
                p.and_then(|(x, b)| match b.checked() {
                    Ok(checked) => Ok((x, checked)),
                    Err(e) => Err((Some(x), e)),
                })
            })
            .collect();
    let now = st.now();
    let results = st
        .write_async(move |c| {
            let refs = Refs::load(c, upsert::valid_bodies(&items).map(|b| b.references()))?;
            upsert::write_batch(c, items, |c, x, checked| {
                let data = checked.complete(c, &refs)?;
                let (outcome, a) = upsert_activity(c, x, &data, &IfMatch::default(), now)?;
                Ok((outcome, a.id.to_string(), a.change_seq))
            })
        })
        .await?;
    Ok(Json(BatchResults { results }))
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
) -> ApiResult<Versioned<Json<ActivityView>>> {
    let a = st.read_async(move |c| store::get_activity(c, id)).await?;
    if a.deleted_at.is_some() {
        return Err(ApiError::not_found(format!("activity {id} was deleted")));
    }
    Ok(versioned(a))
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
    params(
        ("id" = uuid::Uuid, Path, description = "the activity's id"),
        ("If-Match" = Option<String>, Header, description = "the ETag the write must replace"),
    ),
    request_body = PatchActivity,
    responses(
        (status = 200, description = "the changed activity", body = ActivityView),
        (status = 404, description = "no such activity, or it was deleted (`not_found`)", body = super::openapi::ErrorBody),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ActivityId>,
    if_match: IfMatch,
    PatchBody(body): PatchBody<PatchActivity>,
) -> ApiResult<Versioned<Json<ActivityView>>> {
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
    if let Some(Some(x)) = &body.external_id {
        upsert::check_external_id("external_id", x)?;
    }
    if let Some(x) = &body.organizer_external_id {
        upsert::check_external_id("organizer_external_id", x)?;
        if body.organizer_user_id.is_some() {
            return Err(ApiError::invalid(
                "give at most one of organizer_user_id and organizer_external_id",
            ));
        }
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
            if_match.check("activity", Some(current.change_seq))?;
            let organizer_external_id = body.organizer_external_id.clone();
            let external_id = body.external_id.clone();
            let (mut data, parts) = merge(current.data.clone(), body)?;
            let refs = Refs::load(
                c,
                [(
                    organizer_external_id.as_deref(),
                    parts.as_ref().unwrap_or(&NO_PARTS),
                )],
            )?;
            if let Some(x) = &organizer_external_id {
                data.organizer_user_id = refs.organizer(None, Some(x))?;
            }
            require_organizer(c, data.organizer_user_id)?;
            if let Some(parts) = parts {
                data.participants = store::resolve_participants(c, &refs.participants(&parts)?)?;
            }
            if let Some(x) = &external_id {
                store::set_activity_external_id(c, id, x.as_deref())?;
                if data == current.data {
                    // Only the external id: not a change of the activity.
                    return store::get_activity(c, id);
                }
            }
            store::update_activity(c, id, &data, Origin::Api, now)
        })
        .await?;
    Ok(versioned(activity))
}

/// No participants (for looking up an organizer alone).
static NO_PARTS: ParticipantRefs = Vec::new();

/// `DELETE /activities/{id}`: the activity becomes a tombstone (204).
#[utoipa::path(
    delete, path = "/activities/{id}", tag = "activities",
    operation_id = "activities_delete",
    summary = "Delete an activity",
    params(
        ("id" = uuid::Uuid, Path, description = "the activity's id"),
        ("If-Match" = Option<String>, Header, description = "the ETag the delete must replace"),
    ),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such activity (`not_found`)", body = super::openapi::ErrorBody),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ActivityId>,
    if_match: IfMatch,
) -> ApiResult<StatusCode> {
    let now = st.now();
    st.write_async(move |c| delete_checked(c, id, &if_match, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
