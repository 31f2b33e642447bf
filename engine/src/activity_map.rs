//! Activity mapping: a CRM [`ActivityData`] and a Calendar [`Event`] to and from the canonical
//! [`Fields`] the planner merges, plus the activity policies (scope, organizer fallback, trigger
//! words, deterministic event ids). Canonical activity fields:
//!
//! | field | CRM | Calendar |
//! |---|---|---|
//! | `title` | title | `summary` |
//! | `when` | timed: start/end instants + IANA zone; all-day: date range (end exclusive) | `start`/`end` (`dateTime` + `timeZone`, or `date`) |
//! | `location`, `notes` | location, notes | `location`, `description` |
//! | `show_as` | status tentative -> `tentative`, planned/completed -> `confirmed` | `status` |
//! | `participants` | participants except the organizer, `{email, response}` sorted by e-mail | attendees matched to CRM people (see [`Directory`]) |
//!
//! `when` is one field so that a start from one side and an end from the other are never mixed.
//! Writes to Google patch only mapped fields; attendees that match no CRM person, the organizer's
//! own entry, resources, conference data, reminders, colors and attachments are kept.

use crate::fields::Fields;
use crate::ids::{ActivityId, ContactId, UserId};
use crate::model::{
    normalize_email, ActivityData, ActivityStatus, ActivityTime, Participant, ResponseStatus,
};
use crate::planner::Presence;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use google_calendar3::api::{Event, EventAttendee, EventDateTime, EventExtendedProperties};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// The private extended property under which an event carries its CRM activity id.
pub const CRM_ID_PROPERTY: &str = "crmsyncActivityId";

/// Who an e-mail address is in the CRM, for matching attendees to participants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersonRef {
    User(UserId),
    Contact(ContactId),
    /// A bare address the CRM activity lists (no user or contact).
    Email,
}

/// The CRM people an item's attendees may be: normalized e-mail -> who. Built by the executor
/// from CRM users (e-mail and Google alias) and contacts matching the attendees, plus the
/// addresses the CRM activity and the last snapshot list.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    pub people: HashMap<String, PersonRef>,
}

impl Directory {
    pub fn contains(&self, email: &str) -> bool {
        self.people.contains_key(&normalize_email(email))
    }
    pub fn get(&self, email: &str) -> Option<&PersonRef> {
        self.people.get(&normalize_email(email))
    }
}

/// Context of one user's calendar.
#[derive(Clone, Debug)]
pub struct CalendarContext {
    /// The organizer's addresses (CRM e-mail and Google alias), normalized.
    pub organizer_emails: Vec<String>,
    /// Zone for events that carry none (the calendar's or the user's).
    pub default_time_zone: String,
}

impl CalendarContext {
    fn is_organizer(&self, email: &str) -> bool {
        let e = normalize_email(email);
        self.organizer_emails.contains(&e)
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn when_value(time: &ActivityTime, tz: &str) -> Value {
    match time {
        ActivityTime::Timed { start, end } => {
            json!({"start": rfc3339(start), "end": rfc3339(end), "time_zone": tz})
        }
        ActivityTime::AllDay { start, end } => {
            json!({"start_date": start.format("%Y-%m-%d").to_string(), "end_date": end.format("%Y-%m-%d").to_string()})
        }
    }
}

fn text(s: &Option<String>) -> Option<Value> {
    s.as_ref()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(Value::from)
}

fn participants_value(mut list: Vec<(String, ResponseStatus)>) -> Option<Value> {
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list.dedup_by(|a, b| a.0 == b.0);
    (!list.is_empty()).then(|| {
        Value::Array(
            list.into_iter()
                .map(|(e, r)| json!({"email": e, "response": r.as_str()}))
                .collect(),
        )
    })
}

/// `show_as` of a CRM status.
pub fn show_as(status: ActivityStatus) -> &'static str {
    match status {
        ActivityStatus::Tentative => "tentative",
        _ => "confirmed",
    }
}

/// The canonical fields of a CRM activity.
pub fn activity_fields(a: &ActivityData, ctx: &CalendarContext) -> Fields {
    let mut f = Fields::new();
    if let Some(t) = text(&Some(a.title.clone())) {
        f.insert("title".into(), t);
    }
    f.insert("when".into(), when_value(&a.time, &a.time_zone));
    if let Some(v) = text(&a.location) {
        f.insert("location".into(), v);
    }
    if let Some(v) = text(&a.notes) {
        f.insert("notes".into(), v);
    }
    f.insert("show_as".into(), json!(show_as(a.status)));
    let participants = a
        .participants
        .iter()
        .filter(|p| !p.email.trim().is_empty() && !ctx.is_organizer(&p.email))
        .map(|p| (normalize_email(&p.email), p.response_status))
        .collect();
    if let Some(v) = participants_value(participants) {
        f.insert("participants".into(), v);
    }
    f
}

fn response_from_google(s: &Option<String>) -> ResponseStatus {
    match s.as_deref() {
        Some("accepted") => ResponseStatus::Accepted,
        Some("declined") => ResponseStatus::Declined,
        Some("tentative") => ResponseStatus::Tentative,
        _ => ResponseStatus::NeedsAction,
    }
}

fn response_to_google(r: ResponseStatus) -> &'static str {
    match r {
        ResponseStatus::NeedsAction => "needsAction",
        ResponseStatus::Accepted => "accepted",
        ResponseStatus::Declined => "declined",
        ResponseStatus::Tentative => "tentative",
    }
}

/// True for attendee entries crmsync never maps: the organizer's and calendar owner's own entries
/// and resources (rooms).
fn is_unmapped_attendee(a: &EventAttendee, ctx: &CalendarContext) -> bool {
    a.organizer == Some(true)
        || a.self_ == Some(true)
        || a.resource == Some(true)
        || a.email
            .as_deref()
            .map(|e| ctx.is_organizer(e))
            .unwrap_or(true)
}

/// The `when` of an event, if it has a well-formed start and end.
fn event_when(e: &Event, default_tz: &str) -> Option<Value> {
    let start = e.start.as_ref()?;
    let end = e.end.as_ref()?;
    if let (Some(sd), Some(ed)) = (start.date, end.date) {
        return Some(when_value(
            &ActivityTime::AllDay { start: sd, end: ed },
            default_tz,
        ));
    }
    let (s, en) = (start.date_time?, end.date_time?);
    let tz = start
        .time_zone
        .clone()
        .filter(|z| !z.is_empty())
        .unwrap_or_else(|| default_tz.to_string());
    Some(when_value(&ActivityTime::Timed { start: s, end: en }, &tz))
}

/// The canonical fields of a Calendar event.
pub fn event_fields(e: &Event, directory: &Directory, ctx: &CalendarContext) -> Fields {
    let mut f = Fields::new();
    if let Some(t) = text(&e.summary) {
        f.insert("title".into(), t);
    }
    if let Some(w) = event_when(e, &ctx.default_time_zone) {
        f.insert("when".into(), w);
    }
    if let Some(v) = text(&e.location) {
        f.insert("location".into(), v);
    }
    if let Some(v) = text(&e.description) {
        f.insert("notes".into(), v);
    }
    let show = match e.status.as_deref() {
        Some("tentative") => "tentative",
        _ => "confirmed",
    };
    f.insert("show_as".into(), json!(show));
    let participants = e
        .attendees
        .iter()
        .flatten()
        .filter(|a| !is_unmapped_attendee(a, ctx))
        .filter_map(|a| {
            let email = a.email.as_deref()?;
            directory.contains(email).then(|| {
                (
                    normalize_email(email),
                    response_from_google(&a.response_status),
                )
            })
        })
        .collect();
    if let Some(v) = participants_value(participants) {
        f.insert("participants".into(), v);
    }
    f
}

fn parse_when(v: &Value) -> Option<ActivityTime> {
    if let (Some(s), Some(e)) = (
        v.get("start_date").and_then(Value::as_str),
        v.get("end_date").and_then(Value::as_str),
    ) {
        return Some(ActivityTime::AllDay {
            start: NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?,
            end: NaiveDate::parse_from_str(e, "%Y-%m-%d").ok()?,
        });
    }
    let s = DateTime::parse_from_rfc3339(v.get("start")?.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    let e = DateTime::parse_from_rfc3339(v.get("end")?.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    Some(ActivityTime::Timed { start: s, end: e })
}

fn participants_of(f: &Fields) -> Vec<(String, ResponseStatus)> {
    f.get("participants")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    let email = p.get("email")?.as_str()?.to_string();
                    let response = p
                        .get("response")
                        .and_then(Value::as_str)
                        .and_then(|r| r.parse().ok())
                        .unwrap_or_default();
                    Some((email, response))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes canonical fields into a CRM activity built on `base` (what the canonical form does not
/// carry, like the organizer, `display_in_calendar` and a completed status, is kept).
pub fn apply_to_activity(
    f: &Fields,
    base: &ActivityData,
    directory: &Directory,
    ctx: &CalendarContext,
) -> ActivityData {
    let mut a = base.clone();
    a.title = f
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(w) = f.get("when") {
        if let Some(time) = parse_when(w) {
            a.time = time;
        }
        if let Some(tz) = w.get("time_zone").and_then(Value::as_str) {
            a.time_zone = tz.to_string();
        }
    }
    a.location = f
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_string);
    a.notes = f.get("notes").and_then(Value::as_str).map(str::to_string);
    a.status = match (f.get("show_as").and_then(Value::as_str), base.status) {
        (Some("tentative"), _) => ActivityStatus::Tentative,
        (_, ActivityStatus::Tentative) => ActivityStatus::Planned,
        (_, other) => other,
    };
    // Participants: the organizer's own entries stay as they were; everyone else follows the
    // canonical list, keeping each known participant's user/contact reference.
    let canonical = participants_of(f);
    let mut kept: Vec<Participant> = base
        .participants
        .iter()
        .filter(|p| {
            canonical
                .iter()
                .all(|(e, _)| *e != normalize_email(&p.email))
        })
        .filter(|p| p.user_id == Some(base.organizer_user_id) || ctx.is_organizer(&p.email))
        .cloned()
        .collect();
    for (email, response) in canonical {
        let existing = base
            .participants
            .iter()
            .find(|p| normalize_email(&p.email) == email);
        let (user_id, contact_id) = match (existing, directory.get(&email)) {
            (Some(p), _) => (p.user_id, p.contact_id),
            (None, Some(PersonRef::User(u))) => (Some(*u), None),
            (None, Some(PersonRef::Contact(c))) => (None, Some(*c)),
            (None, _) => (None, None),
        };
        let address = existing.map(|p| p.email.clone()).unwrap_or(email);
        kept.push(Participant {
            user_id,
            contact_id,
            email: address,
            response_status: response,
        });
    }
    a.participants = kept;
    a
}

fn date_time_of(time: &ActivityTime, tz: &str) -> (EventDateTime, EventDateTime) {
    match time {
        ActivityTime::Timed { start, end } => (
            EventDateTime {
                date: None,
                date_time: Some(*start),
                time_zone: Some(tz.to_string()),
            },
            EventDateTime {
                date: None,
                date_time: Some(*end),
                time_zone: Some(tz.to_string()),
            },
        ),
        ActivityTime::AllDay { start, end } => (
            EventDateTime {
                date: Some(*start),
                date_time: None,
                time_zone: None,
            },
            EventDateTime {
                date: Some(*end),
                date_time: None,
                time_zone: None,
            },
        ),
    }
}

/// The attendee list for `participants`, keeping every attendee of `base` crmsync does not map
/// (unmatched addresses, the organizer's entry, resources) and each kept attendee's extra data.
fn attendees_for(
    participants: &[(String, ResponseStatus)],
    base: Option<&Event>,
    directory: &Directory,
    ctx: &CalendarContext,
) -> Vec<EventAttendee> {
    let base_attendees: Vec<EventAttendee> =
        base.and_then(|b| b.attendees.clone()).unwrap_or_default();
    let mut out: Vec<EventAttendee> = base_attendees
        .iter()
        .filter(|a| {
            is_unmapped_attendee(a, ctx)
                || !a
                    .email
                    .as_deref()
                    .map(|e| directory.contains(e))
                    .unwrap_or(false)
        })
        .filter(|a| {
            // An unmatched attendee the CRM now lists is replaced by the CRM's entry below.
            a.email
                .as_deref()
                .map(|e| participants.iter().all(|(p, _)| *p != normalize_email(e)))
                .unwrap_or(true)
        })
        .cloned()
        .collect();
    for (email, response) in participants {
        let mut a = base_attendees
            .iter()
            .find(|b| b.email.as_deref().map(normalize_email).as_deref() == Some(email.as_str()))
            .cloned()
            .unwrap_or_default();
        a.email = Some(a.email.unwrap_or_else(|| email.clone()));
        a.response_status = Some(response_to_google(*response).to_string());
        a.self_ = None;
        a.organizer = None;
        out.push(a);
    }
    out
}

/// The body of an `events.patch` writing the `changed` canonical fields of `f` onto `base`.
pub fn event_patch(
    f: &Fields,
    changed: &[String],
    base: Option<&Event>,
    directory: &Directory,
    ctx: &CalendarContext,
) -> Event {
    let mut e = Event::default();
    for name in changed {
        match name.as_str() {
            "title" => {
                e.summary = Some(
                    f.get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            "location" => {
                e.location = Some(
                    f.get("location")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            "notes" => {
                e.description = Some(
                    f.get("notes")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            "show_as" => {
                e.status = Some(
                    f.get("show_as")
                        .and_then(Value::as_str)
                        .unwrap_or("confirmed")
                        .to_string(),
                )
            }
            "when" => {
                if let Some(w) = f.get("when") {
                    if let Some(time) = parse_when(w) {
                        let tz = w
                            .get("time_zone")
                            .and_then(Value::as_str)
                            .unwrap_or(&ctx.default_time_zone);
                        let (s, en) = date_time_of(&time, tz);
                        e.start = Some(s);
                        e.end = Some(en);
                    }
                }
            }
            "participants" => {
                e.attendees = Some(attendees_for(&participants_of(f), base, directory, ctx))
            }
            _ => {}
        }
    }
    e
}

/// Whether changing `when` from `old` to `new` switches between timed and all-day (a patch
/// cannot clear `dateTime`/`date`, so such a change needs a full update).
pub fn switches_all_day(old: &Fields, new: &Fields) -> bool {
    let all_day = |f: &Fields| {
        f.get("when")
            .map(|w| w.get("start_date").is_some())
            .unwrap_or(false)
    };
    all_day(old) != all_day(new)
}

/// A full event for `events.update`: `base` with every mapped field replaced by `f`.
pub fn event_update(
    f: &Fields,
    base: &Event,
    directory: &Directory,
    ctx: &CalendarContext,
) -> Event {
    let names: Vec<String> = [
        "title",
        "location",
        "notes",
        "show_as",
        "when",
        "participants",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let patch = event_patch(f, &names, Some(base), directory, ctx);
    let mut e = base.clone();
    e.summary = patch.summary;
    e.location = patch.location.filter(|s| !s.is_empty());
    e.description = patch.description.filter(|s| !s.is_empty());
    e.status = patch.status;
    e.start = patch.start;
    e.end = patch.end;
    e.attendees = patch.attendees;
    e
}

/// A new event for a CRM activity, with the deterministic id and the CRM id property.
pub fn event_for_insert(
    activity: ActivityId,
    f: &Fields,
    directory: &Directory,
    ctx: &CalendarContext,
) -> Event {
    let names: Vec<String> = f.keys().cloned().collect();
    let mut e = event_patch(f, &names, None, directory, ctx);
    e.id = Some(event_id(activity));
    e.extended_properties = Some(EventExtendedProperties {
        private: Some(HashMap::from([(
            CRM_ID_PROPERTY.to_string(),
            activity.to_string(),
        )])),
        shared: None,
    });
    e
}

/// The deterministic event id of an activity: its UUID in lowercase hex (32 characters of
/// `[0-9a-f]`, a subset of base32hex as Google requires), so a retried insert cannot duplicate.
pub fn event_id(activity: ActivityId) -> String {
    activity.as_uuid().simple().to_string()
}

/// The CRM activity id an event carries.
pub fn event_crm_marker(e: &Event) -> Option<String> {
    e.extended_properties
        .as_ref()?
        .private
        .as_ref()?
        .get(CRM_ID_PROPERTY)
        .cloned()
}

/// Whether the user this calendar belongs to organizes the event.
pub fn event_is_organized_by_owner(e: &Event, ctx: &CalendarContext) -> bool {
    match &e.organizer {
        Some(o) => {
            o.self_ == Some(true)
                || o.email
                    .as_deref()
                    .map(|m| ctx.is_organizer(m))
                    .unwrap_or(false)
        }
        None => true,
    }
}

/// Presence of an event in a user's sync: cancelled = deleted; organized by someone else = out of
/// scope; otherwise in scope.
pub fn event_presence(e: &Event, ctx: &CalendarContext) -> Presence {
    if e.status.as_deref() == Some("cancelled") {
        Presence::Deleted
    } else if !event_is_organized_by_owner(e, ctx) {
        Presence::OutOfScope
    } else {
        Presence::InScope
    }
}

/// The e-mail addresses a set of canonical fields lists as participants.
pub fn participant_emails(f: &Fields) -> Vec<String> {
    participants_of(f).into_iter().map(|(e, _)| e).collect()
}

/// Attendee addresses of an event (normalized), for building the [`Directory`].
pub fn attendee_emails(e: &Event) -> Vec<String> {
    e.attendees
        .iter()
        .flatten()
        .filter_map(|a| a.email.as_deref().map(normalize_email))
        .collect()
}

/// Parses `when` (exposed for executors and tests).
pub fn when_of(f: &Fields) -> Option<ActivityTime> {
    f.get("when").and_then(parse_when)
}

/// Builds a directory from `(email, who)` pairs.
pub fn directory_from(entries: impl IntoIterator<Item = (String, PersonRef)>) -> Directory {
    let mut people = HashMap::new();
    for (e, who) in entries {
        // A user or contact beats a bare address.
        let key = normalize_email(&e);
        match (people.get(&key), &who) {
            (Some(PersonRef::User(_)), _) | (Some(PersonRef::Contact(_)), PersonRef::Email) => {}
            _ => {
                people.insert(key, who);
            }
        }
    }
    Directory { people }
}

/// Sorted map view of fields (for debugging output).
pub fn describe(f: &Fields) -> BTreeMap<String, String> {
    f.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity_policy::start_date;
    use chrono::{Duration, TimeZone};
    use google_calendar3::api::EventOrganizer;
    use proptest::prelude::*;

    const ZONES: [&str; 10] = [
        "UTC",
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Auckland",
        "Europe/London",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/St_Johns",
        "Pacific/Kiritimati",
    ];
    const PEOPLE: [&str; 4] = [
        "bob@example.com",
        "carol@acme.test",
        "dan@acme.test",
        "erin@example.com",
    ];

    fn organizer() -> UserId {
        UserId(uuid::Uuid::from_u128(1))
    }

    fn ctx() -> CalendarContext {
        CalendarContext {
            organizer_emails: vec!["alice@example.com".into()],
            default_time_zone: "Europe/Paris".into(),
        }
    }

    fn directory() -> Directory {
        directory_from(PEOPLE.iter().enumerate().map(|(i, e)| {
            let who = if i % 2 == 0 {
                PersonRef::User(UserId(uuid::Uuid::from_u128(10 + i as u128)))
            } else {
                PersonRef::Contact(ContactId(uuid::Uuid::from_u128(20 + i as u128)))
            };
            (e.to_string(), who)
        }))
    }

    /// What Google sends back for an inserted event, as the client crate decodes it.
    fn as_google_returns(mut e: Event) -> Event {
        e.status = e.status.or(Some("confirmed".into()));
        e.organizer = Some(EventOrganizer {
            email: Some("alice@example.com".into()),
            self_: Some(true),
            ..Default::default()
        });
        e
    }

    fn arb_time() -> impl Strategy<Value = (ActivityTime, String)> {
        let timed = (
            0usize..ZONES.len(),
            0i64..(3 * 365 * 24 * 4),
            0i64..(12 * 4),
        )
            .prop_map(|(z, quarter_hours, len)| {
                let start = Utc
                    .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .single()
                    .unwrap_or_default()
                    + Duration::minutes(15 * quarter_hours);
                (
                    ActivityTime::Timed {
                        start,
                        end: start + Duration::minutes(15 * len),
                    },
                    ZONES[z].to_string(),
                )
            });
        let all_day = (0usize..ZONES.len(), 0i64..(3 * 365), 1i64..6).prop_map(|(z, day, len)| {
            let start =
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default() + Duration::days(day);
            (
                ActivityTime::AllDay {
                    start,
                    end: start + Duration::days(len),
                },
                ZONES[z].to_string(),
            )
        });
        prop_oneof![timed, all_day]
    }

    fn arb_activity() -> impl Strategy<Value = ActivityData> {
        (
            arb_time(),
            "[A-Za-z][A-Za-z ]{0,20}",
            proptest::option::of("[A-Za-z0-9 ]{1,12}"),
            proptest::option::of("[A-Za-z0-9 ]{1,12}"),
            prop_oneof![
                Just(ActivityStatus::Planned),
                Just(ActivityStatus::Tentative),
                Just(ActivityStatus::Completed)
            ],
            proptest::collection::vec((0usize..PEOPLE.len(), 0usize..4), 0..4),
        )
            .prop_map(|((time, tz), title, location, notes, status, parts)| {
                let responses = [
                    ResponseStatus::NeedsAction,
                    ResponseStatus::Accepted,
                    ResponseStatus::Declined,
                    ResponseStatus::Tentative,
                ];
                let mut participants: Vec<Participant> = Vec::new();
                for (p, r) in parts {
                    if participants.iter().any(|x| x.email == PEOPLE[p]) {
                        continue;
                    }
                    participants.push(Participant {
                        user_id: None,
                        contact_id: None,
                        email: PEOPLE[p].into(),
                        response_status: responses[r],
                    });
                }
                // The organizer's own entry, which is never synced as an attendee.
                participants.push(Participant {
                    user_id: Some(organizer()),
                    contact_id: None,
                    email: "alice@example.com".into(),
                    response_status: ResponseStatus::Accepted,
                });
                ActivityData {
                    title: title.trim().to_string(),
                    time,
                    time_zone: tz,
                    location: location
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                    notes: notes
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                    status,
                    display_in_calendar: true,
                    organizer_user_id: organizer(),
                    participants,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000)
        ))]

        /// CRM -> Google -> CRM is the identity on every mapped field, in every zone, across DST
        /// changes and for all-day ranges.
        #[test]
        fn crm_google_crm_round_trip(a in arb_activity()) {
            let id = ActivityId(uuid::Uuid::from_u128(7));
            let f = activity_fields(&a, &ctx());
            let event = as_google_returns(event_for_insert(id, &f, &directory(), &ctx()));
            prop_assert_eq!(event_crm_marker(&event), Some(id.to_string()));
            let back = event_fields(&event, &directory(), &ctx());
            prop_assert_eq!(&back, &f);
            let crm = apply_to_activity(&back, &a, &directory(), &ctx());
            prop_assert_eq!(activity_fields(&crm, &ctx()), f);
            prop_assert_eq!(crm.time, a.time);
            prop_assert_eq!(&crm.time_zone, &a.time_zone);
            prop_assert_eq!(start_date(&crm), start_date(&a));
        }

        /// Google -> CRM -> Google keeps the event's mapped fields and never strips attendees the
        /// CRM does not know.
        #[test]
        fn google_crm_google_keeps_unmatched_attendees(a in arb_activity(), strangers in proptest::collection::vec("[a-z]{3,8}@elsewhere\\.test", 0..3)) {
            let id = ActivityId(uuid::Uuid::from_u128(8));
            let f = activity_fields(&a, &ctx());
            let mut event = as_google_returns(event_for_insert(id, &f, &directory(), &ctx()));
            for s in &strangers {
                event.attendees.get_or_insert_with(Vec::new).push(EventAttendee { email: Some(s.clone()), response_status: Some("accepted".into()), ..Default::default() });
            }
            let g = event_fields(&event, &directory(), &ctx());
            prop_assert_eq!(&g, &f, "unmatched attendees are not participants");
            // A CRM-side edit of every field patches the event without losing the strangers.
            let mut edited = a.clone();
            edited.title = format!("{} (moved)", a.title);
            edited.participants.retain(|p| p.email != PEOPLE[0]);
            let ef = activity_fields(&edited, &ctx());
            let changed = crate::fields::changed(&g, &ef);
            let patch = event_patch(&ef, &changed, Some(&event), &directory(), &ctx());
            if changed.iter().any(|c| c == "participants") {
                let emails: Vec<String> = patch.attendees.iter().flatten().filter_map(|a| a.email.clone()).collect();
                for s in &strangers {
                    prop_assert!(emails.contains(s), "stranger {} stripped", s);
                }
            }
        }
    }

    #[test]
    fn event_ids_are_base32hex() {
        let id = event_id(ActivityId(uuid::Uuid::new_v4()));
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='v')));
    }

}
