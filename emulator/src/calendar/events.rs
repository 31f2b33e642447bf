//! Event resource rules: trimming request bodies to the discovery `Event` schema, validating
//! start/end/ids/recurrence, patch merging, `self` flags per calendar, and rendering of
//! recurring instances (ids `<id>_<YYYYMMDDTHHMMSSZ>` / `_<YYYYMMDD>`).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};

use crate::discovery;
use crate::errors::ApiError;
use crate::recurrence::{self, Occurrence, SeriesStart};

/// Fields only the server sets (ignored when a client sends them).
const READ_ONLY: &[&str] = &[
    "kind",
    "etag",
    "created",
    "updated",
    "htmlLink",
    "creator",
    "organizer",
    "hangoutLink",
    "recurringEventId",
    "originalStartTime",
    "privateCopy",
    "locked",
    "endTimeUnspecified",
    "attendeesOmitted",
];

/// Whether `id` is a valid client-chosen event id (base32hex, 5–1024 chars).
pub fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

/// A random server-chosen id (26 base32hex chars).
pub fn random_event_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::thread_rng();
    (0..26)
        .map(|_| CHARS[rng.gen_range(0..32)] as char)
        .collect()
}

/// Keeps only `Event` schema properties and drops read-only ones.
pub fn sanitize(body: Map<String, Value>) -> Map<String, Value> {
    body.into_iter()
        .filter(|(k, v)| {
            !v.is_null()
                && discovery::has_property("calendar.Event", k)
                && !READ_ONLY.contains(&k.as_str())
        })
        .collect()
}

/// Merge-patch: objects merge recursively, arrays and scalars replace, `null` deletes.
pub fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(p) => match target.get_mut(&k) {
                Some(Value::Object(t)) => merge_patch(t, p),
                _ => {
                    let mut t = Map::new();
                    merge_patch(&mut t, p);
                    target.insert(k, Value::Object(t));
                }
            },
            other => {
                target.insert(k, other);
            }
        }
    }
}

/// A parsed `EventDateTime`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    Date(NaiveDate),
    DateTime { utc: DateTime<Utc>, tz: Option<Tz> },
}

impl When {
    /// The instant (all-day: midnight UTC of the date).
    pub fn instant(&self) -> DateTime<Utc> {
        match self {
            When::Date(d) => Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)),
            When::DateTime { utc, .. } => *utc,
        }
    }
}

fn time_error(which: &str, what: &str) -> ApiError {
    ApiError::new(400, "invalid", format!("Invalid {what} for {which} time."))
}

/// Parses `start`/`end` of an event body.
pub fn parse_when(body: &Map<String, Value>, which: &str) -> Result<When, ApiError> {
    let label = if which == "start" { "start" } else { "end" };
    let v = body
        .get(which)
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::new(400, "required", format!("Missing {label} time.")))?;
    let tz = match v.get("timeZone").and_then(Value::as_str) {
        Some(name) => Some(
            name.parse::<Tz>()
                .map_err(|_| time_error(label, "time zone definition"))?,
        ),
        None => None,
    };
    match (
        v.get("date").and_then(Value::as_str),
        v.get("dateTime").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => Err(ApiError::cal_bad_request("Bad Request")),
        (Some(d), None) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(When::Date)
            .map_err(|_| time_error(label, "date value")),
        (None, Some(dt)) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(dt) {
                Ok(When::DateTime {
                    utc: t.with_timezone(&Utc),
                    tz,
                })
            } else if let (Ok(local), Some(tz)) =
                (NaiveDateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S"), tz)
            {
                Ok(When::DateTime {
                    utc: recurrence::resolve_local(tz, local),
                    tz: Some(tz),
                })
            } else {
                Err(ApiError::new(
                    400,
                    "invalid",
                    format!("Invalid {label} time."),
                ))
            }
        }
        (None, None) => Err(ApiError::new(
            400,
            "required",
            format!("Missing {label} time."),
        )),
    }
}

/// The series start of a recurring event (requires `start.timeZone` for timed series).
pub fn series_start(body: &Map<String, Value>) -> Result<SeriesStart, ApiError> {
    match parse_when(body, "start")? {
        When::Date(d) => Ok(SeriesStart::Date(d)),
        When::DateTime { utc, tz } => {
            let tz = tz.ok_or_else(|| {
                ApiError::new(
                    400,
                    "required",
                    "Missing time zone definition for start time.",
                )
            })?;
            Ok(SeriesStart::DateTime {
                local: utc.with_timezone(&tz).naive_local(),
                tz,
            })
        }
    }
}

pub fn recurrence_lines(body: &Map<String, Value>) -> Vec<String> {
    body.get("recurrence")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Rewrites `start`/`end` `dateTime` values the way Google returns them: RFC 3339 with the offset
/// of the event's `timeZone` (a local time without offset is resolved in that zone), so clients
/// that require an offset can always read them back.
pub fn normalize_times(body: &mut Map<String, Value>) {
    for which in ["start", "end"] {
        let Ok(When::DateTime { utc, tz: Some(tz) }) = parse_when(body, which) else {
            continue;
        };
        if let Some(obj) = body.get_mut(which).and_then(Value::as_object_mut) {
            obj.insert(
                "dateTime".into(),
                json!(utc
                    .with_timezone(&tz)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
            );
        }
    }
}

/// Validates a body about to be stored.
pub fn validate(body: &Map<String, Value>) -> Result<(), ApiError> {
    let start = parse_when(body, "start")?;
    let end = parse_when(body, "end")?;
    match (start, end) {
        (When::Date(_), When::DateTime { .. }) | (When::DateTime { .. }, When::Date(_)) => {
            return Err(ApiError::cal_bad_request("Bad Request"))
        }
        _ => {}
    }
    if end.instant() < start.instant()
        || (matches!(start, When::Date(_)) && end.instant() <= start.instant())
    {
        return Err(
            ApiError::new(400, "timeRangeEmpty", "The specified time range is empty.")
                .location("parameter", "timeMax"),
        );
    }
    let lines = recurrence_lines(body);
    if !lines.is_empty() {
        let s = series_start(body)?;
        recurrence::validate(&lines, &s)
            .map_err(|_| ApiError::new(400, "invalid", "Invalid recurrence rule."))?;
    }
    if let Some(att) = body.get("attendees") {
        let arr = att
            .as_array()
            .ok_or_else(|| ApiError::cal_bad_request("Bad Request"))?;
        for a in arr {
            let email = a.get("email").and_then(Value::as_str).unwrap_or("");
            if email.is_empty() && a.get("id").is_none() {
                return Err(ApiError::new(400, "required", "Missing attendee email."));
            }
            if !email.is_empty() && !email.contains('@') {
                return Err(ApiError::new(400, "invalid", "Invalid attendee email."));
            }
        }
    }
    if let Some(s) = body.get("status").and_then(Value::as_str) {
        if !matches!(s, "confirmed" | "tentative" | "cancelled") {
            return Err(ApiError::new(400, "invalid", "Invalid Value"));
        }
    }
    Ok(())
}

/// Normalizes attendees (lower-case emails, default `needsAction`, organizer entry) and
/// sets `self` flags for the calendar of `owner`, given the organizer's email.
pub fn apply_people(body: &mut Map<String, Value>, organizer: &str, owner: &str) {
    body.insert("organizer".into(), json!({"email": organizer}));
    if organizer.eq_ignore_ascii_case(owner) {
        body.insert(
            "organizer".into(),
            json!({"email": organizer, "self": true}),
        );
    }
    let creator_email = body
        .get("creator")
        .and_then(|c| c.get("email"))
        .and_then(Value::as_str)
        .unwrap_or(organizer)
        .to_string();
    let mut creator = json!({"email": creator_email});
    if creator_email.eq_ignore_ascii_case(owner) {
        creator["self"] = json!(true);
    }
    body.insert("creator".into(), creator);
    if let Some(Value::Array(atts)) = body.get_mut("attendees") {
        for a in atts.iter_mut() {
            let Some(obj) = a.as_object_mut() else {
                continue;
            };
            let email = obj
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            if !email.is_empty() {
                obj.insert("email".into(), json!(email));
            }
            obj.remove("self");
            obj.remove("organizer");
            if !email.is_empty() && email.eq_ignore_ascii_case(organizer) {
                obj.insert("organizer".into(), json!(true));
            }
            if !email.is_empty() && email.eq_ignore_ascii_case(owner) {
                obj.insert("self".into(), json!(true));
            }
            if !obj.contains_key("responseStatus") {
                let default = if email.eq_ignore_ascii_case(organizer) {
                    "accepted"
                } else {
                    "needsAction"
                };
                obj.insert("responseStatus".into(), json!(default));
            }
        }
    }
}

/// Emails of the attendees of an event body.
pub fn attendee_emails(body: &Map<String, Value>) -> Vec<String> {
    body.get("attendees")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("email").and_then(Value::as_str))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

pub fn organizer_email(body: &Map<String, Value>) -> String {
    body.get("organizer")
        .and_then(|o| o.get("email"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The instance-id suffix of an occurrence.
pub fn instance_stamp(o: &Occurrence) -> String {
    if o.all_day {
        o.local.format("%Y%m%d").to_string()
    } else {
        o.utc.format("%Y%m%dT%H%M%SZ").to_string()
    }
}

fn when_json(o_utc: DateTime<Utc>, all_day: bool, tz: Option<Tz>) -> Value {
    if all_day {
        json!({"date": o_utc.date_naive().format("%Y-%m-%d").to_string()})
    } else {
        match tz {
            Some(tz) => json!({
                "dateTime": o_utc.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                "timeZone": tz.name(),
            }),
            None => json!({"dateTime": o_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        }
    }
}

/// `originalStartTime` of an occurrence.
pub fn original_start(o: &Occurrence, tz: Option<Tz>) -> Value {
    when_json(o.utc, o.all_day, tz)
}

/// Renders one occurrence of a master.
pub fn instance_body(master: &Map<String, Value>, o: &Occurrence) -> Map<String, Value> {
    let mut b = master.clone();
    b.remove("recurrence");
    let master_id = master
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let start = parse_when(master, "start").ok();
    let end = parse_when(master, "end").ok();
    let tz = match start {
        Some(When::DateTime { tz, .. }) => tz,
        _ => None,
    };
    let end_tz = match end {
        Some(When::DateTime { tz: Some(t), .. }) => Some(t),
        _ => tz,
    };
    let duration = match (start, end) {
        (Some(s), Some(e)) => e.instant() - s.instant(),
        _ => Duration::zero(),
    };
    b.insert(
        "id".into(),
        json!(format!("{master_id}_{}", instance_stamp(o))),
    );
    b.insert("recurringEventId".into(), json!(master_id));
    b.insert("originalStartTime".into(), original_start(o, tz));
    b.insert("start".into(), when_json(o.utc, o.all_day, tz));
    b.insert("end".into(), when_json(o.utc + duration, o.all_day, end_tz));
    b
}

/// A minimal cancelled stub as incremental sync returns it.
pub fn cancelled_stub(body: &Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    for k in [
        "kind",
        "etag",
        "id",
        "status",
        "recurringEventId",
        "originalStartTime",
        "updated",
    ] {
        if let Some(v) = body.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    m
}

/// Splits an instance id `<master>_<stamp>` and parses the stamp.
pub fn parse_instance_id(id: &str) -> Option<(&str, DateTime<Utc>, bool)> {
    let (master, stamp) = id.rsplit_once('_')?;
    if let Some(t) = stamp
        .to_ascii_uppercase()
        .strip_suffix('Z')
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").ok())
    {
        return Some((master, Utc.from_utc_datetime(&t), false));
    }
    let d = NaiveDate::parse_from_str(stamp, "%Y%m%d").ok()?;
    Some((
        master,
        Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)),
        true,
    ))
}

/// Whether the event (or instance) overlaps [min, max).
pub fn overlaps(
    body: &Map<String, Value>,
    min: Option<DateTime<Utc>>,
    max: Option<DateTime<Utc>>,
) -> bool {
    let (Ok(s), Ok(e)) = (parse_when(body, "start"), parse_when(body, "end")) else {
        return true;
    };
    min.is_none_or(|m| e.instant() > m) && max.is_none_or(|m| s.instant() < m)
}
