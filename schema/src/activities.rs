//! CRM activities and their participants. Like contacts, every write runs in the caller's write
//! transaction, takes the next change sequence number and sets `modified_at`; deletes are soft.
//! All-day activities keep their date range (end exclusive) and, for ordering, the instants of
//! midnight of those dates in the activity's time zone.

use crate::changes::{self, Action, Made, Origin, RecordKind};
use crate::db::{require_transaction, AnyConnection};
use crate::error::{StoreError, StoreResult};
use crate::schema::{activities, activity_participants, contacts, users};
use crate::util::{from_db_time, next_change_seq, page_limit, parse_col, to_db_time};
use crate::{contacts as contact_store, users as user_store};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use crmsync_engine::ids::{ActivityId, ContactId, UserId};
use crmsync_engine::model::{
    normalize_email, Activity, ActivityData, ActivityTime, Participant, ResponseStatus,
};
use diesel::prelude::*;
use std::collections::HashMap;

#[derive(Queryable, Selectable)]
#[diesel(table_name = activities)]
struct ActivityRow {
    id: String,
    title: String,
    start_at: NaiveDateTime,
    end_at: NaiveDateTime,
    time_zone: String,
    all_day: bool,
    start_date: Option<String>,
    end_date: Option<String>,
    location: Option<String>,
    notes: Option<String>,
    status: String,
    display_in_calendar: bool,
    organizer_user_id: String,
    created_at: NaiveDateTime,
    modified_at: NaiveDateTime,
    change_seq: i64,
    deleted_at: Option<NaiveDateTime>,
    external_id: Option<String>,
}

/// Who a participant is, as a caller names them; resolved by [`resolve_participants`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantRef {
    User(UserId),
    Contact(ContactId),
    Email(String),
}

/// The instant of midnight starting `date` in `tz` (the first instant of the day, also when
/// midnight falls in a DST gap): the engine's one rule, [`crmsync_engine::time::start_of_day`].
pub use crmsync_engine::time::start_of_day;

fn parse_tz(name: &str) -> StoreResult<Tz> {
    name.parse::<Tz>().map_err(|_| {
        StoreError::Invalid(format!(
            "{name:?} is not an IANA time zone (for example Europe/Berlin)"
        ))
    })
}

/// The stored time columns: (start_at, end_at, all_day, start_date, end_date).
type TimeColumns = (
    NaiveDateTime,
    NaiveDateTime,
    bool,
    Option<String>,
    Option<String>,
);

/// The stored columns for a time.
fn time_columns(time: &ActivityTime, tz: Tz) -> StoreResult<TimeColumns> {
    match *time {
        ActivityTime::Timed { start, end } => {
            if end < start {
                return Err(StoreError::Invalid(
                    "the activity ends before it starts".into(),
                ));
            }
            Ok((to_db_time(start), to_db_time(end), false, None, None))
        }
        ActivityTime::AllDay { start, end } => {
            if end <= start {
                return Err(StoreError::Invalid(
                    "an all-day activity's end date must be after its start date (the end is exclusive)".into(),
                ));
            }
            Ok((
                to_db_time(start_of_day(start, tz)),
                to_db_time(start_of_day(end, tz)),
                true,
                Some(start.to_string()),
                Some(end.to_string()),
            ))
        }
    }
}

/// Resolves participant references: a user or a contact gets its e-mail (a contact's primary,
/// else its first); a bare e-mail is matched to a user, else to a live contact, else kept bare.
/// Unknown ids are `Invalid`.
pub fn resolve_participants(
    conn: &mut AnyConnection,
    refs: &[(ParticipantRef, ResponseStatus)],
) -> StoreResult<Vec<Participant>> {
    let mut out = Vec::with_capacity(refs.len());
    for (r, response_status) in refs {
        let response_status = *response_status;
        let p = match r {
            ParticipantRef::User(id) => {
                let user = user_store::find_user(conn, *id)?.ok_or_else(|| {
                    StoreError::Invalid(format!("participant user {id} does not exist"))
                })?;
                Participant {
                    user_id: Some(user.id),
                    contact_id: None,
                    email: user.email,
                    response_status,
                }
            }
            ParticipantRef::Contact(id) => {
                let contact = contact_store::find_contact(conn, *id)?
                    .filter(|c| c.deleted_at.is_none())
                    .ok_or_else(|| {
                        StoreError::Invalid(format!("participant contact {id} does not exist"))
                    })?;
                let email = contact
                    .data
                    .emails
                    .iter()
                    .find(|e| e.primary)
                    .or_else(|| contact.data.emails.first())
                    .map(|e| e.address.clone())
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "participant contact {id} has no e-mail address; add one to the contact first"
                        ))
                    })?;
                Participant {
                    user_id: None,
                    contact_id: Some(contact.id),
                    email,
                    response_status,
                }
            }
            ParticipantRef::Email(address) => {
                if let Some(user) = user_store::user_by_email(conn, address)? {
                    Participant {
                        user_id: Some(user.id),
                        contact_id: None,
                        email: address.clone(),
                        response_status,
                    }
                } else {
                    let contact = contact_store::contacts_by_email(conn, address)?
                        .into_iter()
                        .next();
                    Participant {
                        user_id: None,
                        contact_id: contact.map(|c| c.id),
                        email: address.clone(),
                        response_status,
                    }
                }
            }
        };
        out.push(p);
    }
    Ok(out)
}

fn check_references(conn: &mut AnyConnection, data: &ActivityData) -> StoreResult<Tz> {
    let tz = parse_tz(&data.time_zone)?;
    if user_store::find_user(conn, data.organizer_user_id)?.is_none() {
        return Err(StoreError::Invalid(format!(
            "organizer user {} does not exist",
            data.organizer_user_id
        )));
    }
    for p in &data.participants {
        if let Some(u) = p.user_id {
            let n: i64 = users::table.find(u.to_string()).count().get_result(conn)?;
            if n == 0 {
                return Err(StoreError::Invalid(format!(
                    "participant user {u} does not exist"
                )));
            }
        }
        if let Some(c) = p.contact_id {
            let n: i64 = contacts::table
                .find(c.to_string())
                .count()
                .get_result(conn)?;
            if n == 0 {
                return Err(StoreError::Invalid(format!(
                    "participant contact {c} does not exist"
                )));
            }
        }
    }
    Ok(tz)
}

/// Creates an activity (organizer and participants must exist), under the CRM's `external_id`
/// if any (a taken one is a `Conflict`).
pub fn create_activity(
    conn: &mut AnyConnection,
    data: &ActivityData,
    external_id: Option<&str>,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Activity> {
    require_transaction(conn)?;
    let tz = check_references(conn, data)?;
    let (start_at, end_at, all_day, start_date, end_date) = time_columns(&data.time, tz)?;
    let seq = next_change_seq(conn)?;
    let id = ActivityId::new_random();
    let ts = to_db_time(now);
    diesel::insert_into(activities::table)
        .values((
            activities::id.eq(id.to_string()),
            activities::title.eq(&data.title),
            activities::start_at.eq(start_at),
            activities::end_at.eq(end_at),
            activities::time_zone.eq(&data.time_zone),
            activities::all_day.eq(all_day),
            activities::start_date.eq(start_date),
            activities::end_date.eq(end_date),
            activities::location.eq(&data.location),
            activities::notes.eq(&data.notes),
            activities::status.eq(data.status.as_str()),
            activities::display_in_calendar.eq(data.display_in_calendar),
            activities::organizer_user_id.eq(data.organizer_user_id.to_string()),
            activities::created_at.eq(ts),
            activities::modified_at.eq(ts),
            activities::change_seq.eq(seq),
            activities::deleted_at.eq(None::<NaiveDateTime>),
            activities::external_id.eq(external_id),
        ))
        .execute(conn)
        .map_err(|e| crate::contacts::taken_external_id(e, external_id))?;
    write_participants(conn, id, &data.participants)?;
    let activity = get_activity(conn, id)?;
    record(conn, &activity, None, seq, Action::Created, origin, now)?;
    Ok(activity)
}

/// Records a change of `activity` (`before`: its data before an update).
fn record(
    conn: &mut AnyConnection,
    activity: &Activity,
    before: Option<&ActivityData>,
    seq: i64,
    action: Action,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let id = activity.id.to_string();
    // The users whose calendars show it, before or after the change.
    let mut concerns = Vec::new();
    for d in std::iter::once(&activity.data).chain(before) {
        if activity.data.display_in_calendar || before.is_some_and(|b| b.display_in_calendar) {
            concerns.push(d.organizer_user_id);
            concerns.extend(d.participants.iter().filter_map(|p| p.user_id));
        }
    }
    let made = Made {
        cursor: seq,
        kind: RecordKind::Activity,
        id: &id,
        external_id: activity.external_id.as_deref(),
        action,
        tag: None,
        concerns,
    };
    changes::record(conn, made, origin, now)
}

/// A live activity by its external id.
pub fn activity_by_external_id(
    conn: &mut AnyConnection,
    external_id: &str,
) -> StoreResult<Option<Activity>> {
    let rows: Vec<ActivityRow> = activities::table
        .filter(activities::external_id.eq(external_id))
        .filter(activities::deleted_at.is_null())
        .select(ActivityRow::as_select())
        .load(conn)?;
    Ok(hydrate(conn, rows)?.pop())
}

/// The id of the live activity with `external_id` (one indexed lookup, no hydration: for
/// writers that lock the row before reading it).
pub fn activity_id_by_external_id(
    conn: &mut AnyConnection,
    external_id: &str,
) -> StoreResult<Option<ActivityId>> {
    let id: Option<String> = activities::table
        .filter(activities::external_id.eq(external_id))
        .filter(activities::deleted_at.is_null())
        .select(activities::id)
        .first(conn)
        .optional()?;
    id.map(|i| parse_col(&i, "activities.id")).transpose()
}

/// Live activities (with their data) by external ids, for a batch of upserts.
pub fn activities_by_external_ids(
    conn: &mut AnyConnection,
    external_ids: &[String],
) -> StoreResult<Vec<Activity>> {
    let mut out = Vec::new();
    for chunk in external_ids.chunks(500) {
        let rows = activities::table
            .filter(activities::external_id.eq_any(chunk))
            .filter(activities::deleted_at.is_null())
            .select(ActivityRow::as_select())
            .load(conn)?;
        out.extend(hydrate(conn, rows)?);
    }
    Ok(out)
}

/// Gives a live activity the CRM's `external_id`; not a change in the feed.
pub fn set_activity_external_id(
    conn: &mut AnyConnection,
    id: ActivityId,
    external_id: Option<&str>,
) -> StoreResult<()> {
    require_live(conn, id)?;
    diesel::update(activities::table.find(id.to_string()))
        .set(activities::external_id.eq(external_id))
        .execute(conn)
        .map_err(|e| crate::contacts::taken_external_id(e, external_id))?;
    Ok(())
}

/// Replaces a live activity's data, participants included.
pub fn update_activity(
    conn: &mut AnyConnection,
    id: ActivityId,
    data: &ActivityData,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Activity> {
    require_live(conn, id)?;
    let before = get_activity(conn, id)?.data;
    let tz = check_references(conn, data)?;
    let (start_at, end_at, all_day, start_date, end_date) = time_columns(&data.time, tz)?;
    let seq = next_change_seq(conn)?;
    diesel::update(activities::table.find(id.to_string()))
        .set((
            activities::title.eq(&data.title),
            activities::start_at.eq(start_at),
            activities::end_at.eq(end_at),
            activities::time_zone.eq(&data.time_zone),
            activities::all_day.eq(all_day),
            activities::start_date.eq(start_date),
            activities::end_date.eq(end_date),
            activities::location.eq(&data.location),
            activities::notes.eq(&data.notes),
            activities::status.eq(data.status.as_str()),
            activities::display_in_calendar.eq(data.display_in_calendar),
            activities::organizer_user_id.eq(data.organizer_user_id.to_string()),
            activities::modified_at.eq(to_db_time(now)),
            activities::change_seq.eq(seq),
        ))
        .execute(conn)?;
    write_participants(conn, id, &data.participants)?;
    let activity = get_activity(conn, id)?;
    record(
        conn,
        &activity,
        Some(&before),
        seq,
        Action::Updated,
        origin,
        now,
    )?;
    Ok(activity)
}

/// Locks an activity's row until the transaction ends (see `contacts::lock_contact`).
pub fn lock_activity(conn: &mut AnyConnection, id: ActivityId) -> StoreResult<()> {
    require_transaction(conn)?;
    diesel::update(activities::table.find(id.to_string()))
        .set(activities::id.eq(activities::id))
        .execute(conn)?;
    Ok(())
}

/// Locks an activity's row and answers its change sequence (`None`: no such activity); see
/// `contacts::locked_change_seq`.
pub fn locked_change_seq(conn: &mut AnyConnection, id: ActivityId) -> StoreResult<Option<i64>> {
    lock_activity(conn, id)?;
    Ok(activities::table
        .find(id.to_string())
        .select(activities::change_seq)
        .first::<i64>(conn)
        .optional()?)
}

/// Soft-deletes a live activity (a tombstone keeps its data and gives up its external id).
pub fn delete_activity(
    conn: &mut AnyConnection,
    id: ActivityId,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Activity> {
    require_live(conn, id)?;
    let seq = next_change_seq(conn)?;
    let ts = to_db_time(now);
    diesel::update(activities::table.find(id.to_string()))
        .set((
            activities::deleted_at.eq(Some(ts)),
            activities::modified_at.eq(ts),
            activities::change_seq.eq(seq),
        ))
        .execute(conn)?;
    let mut activity = get_activity(conn, id)?;
    record(conn, &activity, None, seq, Action::Deleted, origin, now)?;
    if activity.external_id.is_some() {
        diesel::update(activities::table.find(id.to_string()))
            .set(activities::external_id.eq(None::<String>))
            .execute(conn)?;
        activity.external_id = None;
    }
    Ok(activity)
}

fn require_live(conn: &mut AnyConnection, id: ActivityId) -> StoreResult<()> {
    require_transaction(conn)?;
    let deleted: Option<Option<NaiveDateTime>> = activities::table
        .find(id.to_string())
        .select(activities::deleted_at)
        .first(conn)
        .optional()?;
    match deleted {
        None => Err(StoreError::not_found("activity", id)),
        Some(Some(_)) => Err(StoreError::NotFound {
            what: "activity (deleted)",
            id: id.to_string(),
        }),
        Some(None) => Ok(()),
    }
}

fn write_participants(
    conn: &mut AnyConnection,
    id: ActivityId,
    participants: &[Participant],
) -> StoreResult<()> {
    let aid = id.to_string();
    diesel::delete(
        activity_participants::table.filter(activity_participants::activity_id.eq(&aid)),
    )
    .execute(conn)?;
    for (i, p) in participants.iter().enumerate() {
        diesel::insert_into(activity_participants::table)
            .values((
                activity_participants::activity_id.eq(&aid),
                activity_participants::position.eq(i as i32),
                activity_participants::user_id.eq(p.user_id.map(|u| u.to_string())),
                activity_participants::contact_id.eq(p.contact_id.map(|c| c.to_string())),
                activity_participants::email.eq(&p.email),
                activity_participants::email_norm.eq(normalize_email(&p.email)),
                activity_participants::response_status.eq(p.response_status.as_str()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// An activity by id, tombstones included.
pub fn get_activity(conn: &mut AnyConnection, id: ActivityId) -> StoreResult<Activity> {
    find_activity(conn, id)?.ok_or_else(|| StoreError::not_found("activity", id))
}

/// An activity by id (tombstones included), `None` when missing.
pub fn find_activity(conn: &mut AnyConnection, id: ActivityId) -> StoreResult<Option<Activity>> {
    let rows = activities::table
        .find(id.to_string())
        .select(ActivityRow::as_select())
        .load(conn)?;
    Ok(hydrate(conn, rows)?.pop())
}

/// Activities by ids (tombstones included); missing ids are skipped.
pub fn activities_by_ids(
    conn: &mut AnyConnection,
    ids: &[ActivityId],
) -> StoreResult<Vec<Activity>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        let rows = activities::table
            .filter(activities::id.eq_any(keys))
            .select(ActivityRow::as_select())
            .load(conn)?;
        out.extend(hydrate(conn, rows)?);
    }
    Ok(out)
}

/// The change feed: activities (tombstones included) with `change_seq > seq`, in order.
pub fn activities_changed_since(
    conn: &mut AnyConnection,
    seq: i64,
    limit: usize,
) -> StoreResult<Vec<Activity>> {
    let rows = activities::table
        .filter(activities::change_seq.gt(seq))
        .order(activities::change_seq)
        .limit(page_limit(limit))
        .select(ActivityRow::as_select())
        .load(conn)?;
    hydrate(conn, rows)
}

/// Position in the organizer listing: (start instant, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivityCursor {
    pub start: DateTime<Utc>,
    pub id: ActivityId,
}

/// Live activities organized by `organizer`, ordered by (start, id), after `after`.
pub fn activities_by_organizer(
    conn: &mut AnyConnection,
    organizer: UserId,
    after: Option<ActivityCursor>,
    limit: usize,
) -> StoreResult<Vec<Activity>> {
    let mut q = activities::table
        .filter(activities::organizer_user_id.eq(organizer.to_string()))
        .filter(activities::deleted_at.is_null())
        .order((activities::start_at, activities::id))
        .limit(page_limit(limit))
        .select(ActivityRow::as_select())
        .into_boxed();
    if let Some(c) = after {
        let start = to_db_time(c.start);
        q = q.filter(
            activities::start_at.gt(start).or(activities::start_at
                .eq(start)
                .and(activities::id.gt(c.id.to_string()))),
        );
    }
    let rows = q.load(conn)?;
    hydrate(conn, rows)
}

/// Live activities ordered by id, after `after`.
pub fn list_activities(
    conn: &mut AnyConnection,
    after: Option<ActivityId>,
    limit: usize,
) -> StoreResult<Vec<Activity>> {
    let mut q = activities::table
        .filter(activities::deleted_at.is_null())
        .order(activities::id)
        .limit(page_limit(limit))
        .select(ActivityRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(activities::id.gt(after.to_string()));
    }
    let rows = q.load(conn)?;
    hydrate(conn, rows)
}

/// Number of live activities.
pub fn count_activities(conn: &mut AnyConnection) -> StoreResult<i64> {
    Ok(activities::table
        .filter(activities::deleted_at.is_null())
        .count()
        .get_result(conn)?)
}

fn hydrate(conn: &mut AnyConnection, rows: Vec<ActivityRow>) -> StoreResult<Vec<Activity>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    type PRow = (String, Option<String>, Option<String>, String, String);
    let mut parts: HashMap<String, Vec<Participant>> = HashMap::new();
    for (aid, user_id, contact_id, email, status) in activity_participants::table
        .filter(activity_participants::activity_id.eq_any(&ids))
        .order((
            activity_participants::activity_id,
            activity_participants::position,
        ))
        .select((
            activity_participants::activity_id,
            activity_participants::user_id,
            activity_participants::contact_id,
            activity_participants::email,
            activity_participants::response_status,
        ))
        .load::<PRow>(conn)?
    {
        parts.entry(aid).or_default().push(Participant {
            user_id: user_id
                .as_deref()
                .map(|u| parse_col(u, "activity_participants.user_id"))
                .transpose()?,
            contact_id: contact_id
                .as_deref()
                .map(|c| parse_col(c, "activity_participants.contact_id"))
                .transpose()?,
            email,
            response_status: parse_col(&status, "activity_participants.response_status")?,
        });
    }
    rows.into_iter()
        .map(|r| {
            let time = if r.all_day {
                let date = |d: &Option<String>| -> StoreResult<NaiveDate> {
                    d.as_deref()
                        .ok_or_else(|| StoreError::Corrupt("all-day activity without dates".into()))
                        .and_then(|s| parse_col(s, "activities.start_date/end_date"))
                };
                ActivityTime::AllDay {
                    start: date(&r.start_date)?,
                    end: date(&r.end_date)?,
                }
            } else {
                ActivityTime::Timed {
                    start: from_db_time(r.start_at),
                    end: from_db_time(r.end_at),
                }
            };
            Ok(Activity {
                id: parse_col(&r.id, "activities.id")?,
                data: ActivityData {
                    title: r.title,
                    time,
                    time_zone: r.time_zone,
                    location: r.location,
                    notes: r.notes,
                    status: parse_col(&r.status, "activities.status")?,
                    display_in_calendar: r.display_in_calendar,
                    organizer_user_id: parse_col(
                        &r.organizer_user_id,
                        "activities.organizer_user_id",
                    )?,
                    participants: parts.remove(&r.id).unwrap_or_default(),
                },
                created_at: from_db_time(r.created_at),
                modified_at: from_db_time(r.modified_at),
                change_seq: r.change_seq,
                deleted_at: r.deleted_at.map(from_db_time),
                external_id: r.external_id,
            })
        })
        .collect()
}
