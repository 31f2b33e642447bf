//! Activity mapping, the CRM half: a CRM [`ActivityData`] to and from the canonical [`Fields`] the
//! planner merges, the [`Directory`] of CRM people that attendees are matched against, the
//! [`CalendarContext`] of one user's calendar and the deterministic event id of an activity. The
//! Google half (a Calendar `Event` to and from the same fields, patches, updates and inserts)
//! lives in `crmsync_connectors::event_wire`, next to the client crate that owns the wire types,
//! so the engine needs no I/O crate. Canonical activity fields:
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
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

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
    /// Whether `email` is one of the organizer's own addresses.
    pub fn is_organizer(&self, email: &str) -> bool {
        let e = normalize_email(email);
        self.organizer_emails.contains(&e)
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The canonical `when` of a time in zone `tz` (the zone is kept for timed activities only).
pub fn when_value(time: &ActivityTime, tz: &str) -> Value {
    match time {
        ActivityTime::Timed { start, end } => {
            json!({"start": rfc3339(start), "end": rfc3339(end), "time_zone": tz})
        }
        ActivityTime::AllDay { start, end } => {
            json!({"start_date": start.format("%Y-%m-%d").to_string(), "end_date": end.format("%Y-%m-%d").to_string()})
        }
    }
}

/// A canonical text value: trimmed, and absent when empty.
pub fn canonical_text(s: &Option<String>) -> Option<Value> {
    s.as_ref()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(Value::from)
}

/// The canonical `participants` of `(normalized e-mail, response)` pairs: sorted by e-mail, one
/// entry per address, absent when empty.
pub fn participants_value(mut list: Vec<(String, ResponseStatus)>) -> Option<Value> {
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
    if let Some(t) = canonical_text(&Some(a.title.clone())) {
        f.insert("title".into(), t);
    }
    f.insert("when".into(), when_value(&a.time, &a.time_zone));
    if let Some(v) = canonical_text(&a.location) {
        f.insert("location".into(), v);
    }
    if let Some(v) = canonical_text(&a.notes) {
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

/// The time a canonical `when` value holds (`None` if malformed).
pub fn parse_when(v: &Value) -> Option<ActivityTime> {
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

/// The `(e-mail, response)` pairs of the canonical `participants` in `f`.
pub fn participants_of(f: &Fields) -> Vec<(String, ResponseStatus)> {
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

/// The deterministic event id of an activity: its UUID in lowercase hex (32 characters of
/// `[0-9a-f]`, a subset of base32hex as Google requires), so a retried insert cannot duplicate.
pub fn event_id(activity: ActivityId) -> String {
    activity.as_uuid().simple().to_string()
}

/// The e-mail addresses a set of canonical fields lists as participants.
pub fn participant_emails(f: &Fields) -> Vec<String> {
    participants_of(f).into_iter().map(|(e, _)| e).collect()
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

    #[test]
    fn event_ids_are_base32hex() {
        let id = event_id(ActivityId(uuid::Uuid::new_v4()));
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='v')));
    }
}
