//! Whole-series changes of recurring events: what happens to exceptions when a master is
//! moved, re-timed, shortened or gets another rule (exceptions whose occurrence no longer
//! exists are cancelled and detached; those whose occurrence still exists survive), and the
//! "this and following" split Google Calendar's UI performs (the old series ends with `UNTIL`
//! before the split instance, a new series with a new id starts there).

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use super::events::{
    apply_people, instance_body, merge_patch, normalize_times, organizer_email, parse_instance_id,
    parse_when, recurrence_lines, sanitize, series_start, validate, When,
};
use super::store::CalendarStore;
use crate::errors::{ApiError, EmulatorError};
use crate::recurrence::{self, Occurrence};

/// Whether `body` is a recurring master (has recurrence lines and is not an instance).
pub fn is_master_body(body: &Map<String, Value>) -> bool {
    body.get("recurringEventId").is_none()
        && body
            .get("recurrence")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// The instant of an exception's `originalStartTime` and whether it is a date (all-day).
pub fn original_start_of(body: &Map<String, Value>) -> Option<(DateTime<Utc>, bool)> {
    let ost = body.get("originalStartTime")?.as_object()?.clone();
    let mut wrap = Map::new();
    wrap.insert("start".into(), Value::Object(ost));
    let w = parse_when(&wrap, "start").ok()?;
    Some((w.instant(), matches!(w, When::Date(_))))
}

/// The occurrence of master `body` that starts at `t` (all-day: midnight UTC of the date).
pub fn occurrence_at(
    body: &Map<String, Value>,
    t: DateTime<Utc>,
    all_day: bool,
) -> Option<Occurrence> {
    if !is_master_body(body) {
        return None;
    }
    let start = series_start(body).ok()?;
    let occ = recurrence::expand(&start, &recurrence_lines(body), Some(t), t, 1).ok()?;
    occ.into_iter().find(|o| o.utc == t && o.all_day == all_day)
}

/// After master `master_id` changed: every exception whose `originalStartTime` is no longer an
/// occurrence of the series (or every exception, when the master is no longer recurring) is
/// cancelled (a new version, so incremental listings report it) and detached from the series.
/// Exceptions whose occurrence still exists are left as they are, and so is everything of a
/// cancelled master. Returns the ids written.
pub fn reconcile_exceptions(
    store: &mut CalendarStore,
    master_id: &str,
    now: DateTime<Utc>,
) -> Vec<String> {
    let Some(master) = store.get(master_id) else {
        return Vec::new();
    };
    if master.is_cancelled() {
        // A cancelled series keeps its exceptions as they are (see `events.delete`).
        return Vec::new();
    }
    let body = master.body.clone();
    let live_series = is_master_body(&body);
    let exceptions: Vec<(String, Map<String, Value>, bool)> = store
        .exceptions_of(master_id)
        .map(|e| {
            (
                e.body
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                e.body.clone(),
                e.is_cancelled(),
            )
        })
        .filter(|(id, _, _)| !id.is_empty())
        .collect();
    let mut written = Vec::new();
    for (id, mut b, cancelled) in exceptions {
        let still = live_series
            && original_start_of(&b)
                .is_some_and(|(t, all_day)| occurrence_at(&body, t, all_day).is_some());
        if still {
            continue;
        }
        if !cancelled {
            b.insert("status".into(), json!("cancelled"));
            store.put(&id, b, now);
            written.push(id.clone());
        }
        store.detach(&id);
        tracing::debug!(master = master_id, exception = %id, "exception left its series");
    }
    written
}

/// Replaces `COUNT` / `UNTIL` of an `RRULE:` line with `UNTIL=until` (other lines unchanged).
fn with_until(line: &str, until: &str) -> String {
    let Some(rule) = line
        .strip_prefix("RRULE:")
        .or_else(|| line.strip_prefix("rrule:"))
    else {
        return line.to_string();
    };
    let mut parts: Vec<String> = rule
        .split(';')
        .filter(|p| {
            let k = p.split('=').next().unwrap_or("").to_ascii_uppercase();
            !p.is_empty() && k != "COUNT" && k != "UNTIL"
        })
        .map(str::to_string)
        .collect();
    parts.push(format!("UNTIL={until}"));
    format!("RRULE:{}", parts.join(";"))
}

/// `COUNT` of an `RRULE:` line.
fn rule_count(line: &str) -> Option<u32> {
    let rule = line.get(6..)?;
    if !line[..6].eq_ignore_ascii_case("RRULE:") {
        return None;
    }
    rule.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case("COUNT")
            .then(|| v.parse().ok())
            .flatten()
    })
}

/// Sets `COUNT=n` on an `RRULE:` line.
fn with_count(line: &str, n: u32) -> String {
    let rule = &line[6..];
    let parts: Vec<String> = rule
        .split(';')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("COUNT") => format!("COUNT={n}"),
            _ => p.to_string(),
        })
        .collect();
    format!("RRULE:{}", parts.join(";"))
}

/// The recurrence lines of the old series (ending before `o`) and of the new one (starting at
/// `o`, `COUNT`s reduced by the occurrences the old series keeps; `RDATE`s stay with the old
/// series).
fn split_lines(
    master: &Map<String, Value>,
    o: &Occurrence,
) -> Result<(Vec<String>, Vec<String>), EmulatorError> {
    let start = series_start(master).map_err(|e| EmulatorError::BadRequest(e.message))?;
    let until = if o.all_day {
        (o.local.date() - Duration::days(1))
            .format("%Y%m%d")
            .to_string()
    } else {
        (o.utc - Duration::seconds(1))
            .format("%Y%m%dT%H%M%SZ")
            .to_string()
    };
    let lines = recurrence_lines(master);
    let mut old = Vec::new();
    let mut new = Vec::new();
    for line in &lines {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("RRULE:") {
            old.push(with_until(line, &until));
            match rule_count(line) {
                Some(c) => {
                    let before = recurrence::expand(
                        &start,
                        std::slice::from_ref(line),
                        None,
                        o.utc - Duration::seconds(1),
                        100_000,
                    )
                    .map(|v| v.len() as u32)
                    .unwrap_or(0);
                    new.push(with_count(line, c.saturating_sub(before).max(1)));
                }
                None => new.push(line.clone()),
            }
        } else if upper.starts_with("EXDATE") {
            old.push(line.clone());
            new.push(line.clone());
        } else {
            old.push(line.clone());
        }
    }
    Ok((old, new))
}

/// What [`split_series`] wrote.
#[derive(Debug, Clone)]
pub struct Split {
    /// The old master, now ending before the split instance.
    pub old: Map<String, Value>,
    /// The new master, starting at the split instance.
    pub new: Map<String, Value>,
    /// Ids written in the calendar (old master, exceptions that left it, new master).
    pub written: Vec<String>,
}

/// "This and following" as Google Calendar's UI does it, in `store` (the organizer's
/// calendar): the series of `instance_id` gets `UNTIL` just before that instance (exceptions
/// from there on leave it), and a new series `<masterId>_R<local start>` starts at the instance
/// with the master's fields, `changes` merged in (a partial Event: new times, summary,
/// recurrence …). The instance must be an occurrence of a live series other than its first.
pub fn split_series(
    store: &mut CalendarStore,
    instance_id: &str,
    changes: Map<String, Value>,
    now: DateTime<Utc>,
    html_link: impl Fn(&str) -> String,
) -> Result<Split, EmulatorError> {
    let bad = |m: String| EmulatorError::BadRequest(m);
    let (master_id, when, all_day) = parse_instance_id(instance_id).ok_or_else(|| {
        bad(format!(
            "{instance_id:?} is not an instance id (<event id>_<start>)"
        ))
    })?;
    let master = store
        .get(master_id)
        .filter(|m| !m.is_cancelled() && is_master_body(&m.body))
        .ok_or_else(|| EmulatorError::NotFound(format!("no live recurring event {master_id}")))?;
    let body = master.body.clone();
    if organizer_email(&body) != store.owner {
        return Err(bad(format!(
            "{} does not organize {master_id}: only the organizer splits a series",
            store.owner
        )));
    }
    let o = occurrence_at(&body, when, all_day)
        .ok_or_else(|| EmulatorError::NotFound(format!("{instance_id} is not an occurrence")))?;
    let first = series_start(&body)
        .ok()
        .and_then(|s| recurrence::expand(&s, &recurrence_lines(&body), None, when, 1).ok())
        .and_then(|v| v.first().copied());
    if first.is_some_and(|f| f.utc == o.utc) {
        return Err(bad(format!(
            "{instance_id} is the first instance: change the whole series instead"
        )));
    }
    let (old_lines, new_lines) = split_lines(&body, &o)?;

    // The new series: the instance's times and the master's fields, then the changes.
    let stamp = if o.all_day {
        o.local.format("%Y%m%d").to_string()
    } else {
        o.local.format("%Y%m%dT%H%M%S").to_string()
    };
    let new_id = format!("{master_id}_R{stamp}");
    if store.get(&new_id).is_some() {
        return Err(bad(format!(
            "the series was already split at {instance_id}"
        )));
    }
    let mut new = instance_body(&body, &o);
    for k in [
        "recurringEventId",
        "originalStartTime",
        "created",
        "etag",
        "updated",
    ] {
        new.remove(k);
    }
    new.insert("id".into(), json!(new_id));
    new.insert("iCalUID".into(), json!(format!("{new_id}@google.com")));
    new.insert("htmlLink".into(), json!(html_link(&new_id)));
    new.insert("sequence".into(), json!(0));
    new.insert("recurrence".into(), json!(new_lines));
    merge_patch(&mut new, sanitize(changes));
    validate(&new)
        .map_err(|e: ApiError| bad(format!("the new series is invalid: {}", e.message)))?;
    normalize_times(&mut new);
    let owner = store.owner.clone();
    apply_people(&mut new, &owner, &owner);

    let mut old = body;
    old.insert("recurrence".into(), json!(old_lines));
    let seq = old.get("sequence").and_then(Value::as_i64).unwrap_or(0);
    old.insert("sequence".into(), json!(seq + 1));
    let old = store.put(master_id, old, now).body.clone();
    let mut written = vec![master_id.to_string()];
    written.extend(reconcile_exceptions(store, master_id, now));
    let new = store.put(&new_id, new, now).body.clone();
    written.push(new_id);
    Ok(Split { old, new, written })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_rewriting() {
        assert_eq!(
            with_until("RRULE:FREQ=WEEKLY;COUNT=10;BYDAY=MO", "20260308T235959Z"),
            "RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260308T235959Z"
        );
        assert_eq!(
            with_until("RRULE:FREQ=DAILY;UNTIL=20270101", "20260101"),
            "RRULE:FREQ=DAILY;UNTIL=20260101"
        );
        assert_eq!(with_until("EXDATE:20260101", "x"), "EXDATE:20260101");
        assert_eq!(rule_count("RRULE:FREQ=DAILY;COUNT=7"), Some(7));
        assert_eq!(rule_count("RRULE:FREQ=DAILY"), None);
        assert_eq!(
            with_count("RRULE:FREQ=DAILY;COUNT=7;INTERVAL=2", 3),
            "RRULE:FREQ=DAILY;COUNT=3;INTERVAL=2"
        );
    }
}
