//! Activity mapping, the Google half: a Calendar [`Event`] to and from the canonical [`Fields`] of
//! `crmsync_engine::activity_map` (whose table gives each field's Calendar path): the fields of an
//! event, the bodies of `events.patch`, `events.update` and `events.insert`, and what the executor
//! reads off an event (CRM marker, organizer, presence, attendee addresses). It lives here,
//! beside the client crate that owns the wire types, so that the engine stays free of I/O crates;
//! the canonical rules (`when`, participants, the [`Directory`] of CRM people) stay in the engine.
//!
//! Writes patch only mapped fields; attendees that match no CRM person, the organizer's own
//! entry, resources, conference data, reminders, colors and attachments are kept.

use crmsync_engine::activity_map::{
    canonical_text, event_id, parse_when, participants_of, participants_value, when_value,
    CalendarContext, Directory,
};
use crmsync_engine::fields::Fields;
use crmsync_engine::ids::ActivityId;
use crmsync_engine::model::{normalize_email, ActivityTime, ResponseStatus};
use crmsync_engine::planner::Presence;
use google_calendar3::api::{Event, EventAttendee, EventDateTime, EventExtendedProperties};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The private extended property under which an event carries its CRM activity id.
pub const CRM_ID_PROPERTY: &str = "crmsyncActivityId";

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
    if let Some(t) = canonical_text(&e.summary) {
        f.insert("title".into(), t);
    }
    if let Some(w) = event_when(e, &ctx.default_time_zone) {
        f.insert("when".into(), w);
    }
    if let Some(v) = canonical_text(&e.location) {
        f.insert("location".into(), v);
    }
    if let Some(v) = canonical_text(&e.description) {
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

/// Attendee addresses of an event (normalized), for building the [`Directory`].
pub fn attendee_emails(e: &Event) -> Vec<String> {
    e.attendees
        .iter()
        .flatten()
        .filter_map(|a| a.email.as_deref().map(normalize_email))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use crmsync_engine::activity_map::{
        activity_fields, apply_to_activity, directory_from, PersonRef,
    };
    use crmsync_engine::activity_policy::start_date;
    use crmsync_engine::ids::{ContactId, UserId};
    use crmsync_engine::model::{ActivityData, ActivityStatus, Participant};
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
        /// CRM does not know: every case has at least one stranger on the event and a CRM edit
        /// that changes the participants (a known person added or removed), so the attendee list
        /// is rebuilt in every case.
        #[test]
        fn google_crm_google_keeps_unmatched_attendees(a in arb_activity(), strangers in proptest::collection::vec("[a-z]{3,8}@elsewhere\\.test", 1..4)) {
            let id = ActivityId(uuid::Uuid::from_u128(8));
            let f = activity_fields(&a, &ctx());
            let mut event = as_google_returns(event_for_insert(id, &f, &directory(), &ctx()));
            for s in &strangers {
                event.attendees.get_or_insert_with(Vec::new).push(EventAttendee { email: Some(s.clone()), response_status: Some("accepted".into()), ..Default::default() });
            }
            let g = event_fields(&event, &directory(), &ctx());
            prop_assert_eq!(&g, &f, "unmatched attendees are not participants");
            // A CRM-side edit of the title and the participants: Bob leaves if he was invited,
            // else joins.
            let mut edited = a.clone();
            edited.title = format!("{} (moved)", a.title);
            if edited.participants.iter().any(|p| p.email == PEOPLE[0]) {
                edited.participants.retain(|p| p.email != PEOPLE[0]);
            } else {
                edited.participants.insert(0, Participant {
                    user_id: Some(UserId(uuid::Uuid::from_u128(10))),
                    contact_id: None,
                    email: PEOPLE[0].into(),
                    response_status: ResponseStatus::NeedsAction,
                });
            }
            let ef = activity_fields(&edited, &ctx());
            let changed = crmsync_engine::fields::changed(&g, &ef);
            prop_assert!(changed.iter().any(|c| c == "participants"), "the edit changes the participants: {:?}", changed);
            let patch = event_patch(&ef, &changed, Some(&event), &directory(), &ctx());
            let emails: Vec<String> = patch.attendees.iter().flatten().filter_map(|a| a.email.clone()).collect();
            for s in &strangers {
                prop_assert!(emails.contains(s), "stranger {} stripped", s);
            }
            prop_assert_eq!(emails.contains(&PEOPLE[0].to_string()), edited.participants.iter().any(|p| p.email == PEOPLE[0]), "the participants' change is in the patch");
        }
    }
}
