//! Calendar v3: `events.{list,get,insert,update,patch,delete,instances,watch}`,
//! `calendarList.get` and `channels.stop` on each user's primary calendar, with sync tokens,
//! soft-cancel deletes, etags and `If-Match`, client-chosen ids, recurrence expansion and
//! exceptions, whole-series changes and "this and following" splits ([`series`]), and
//! mirroring of events into the calendars of emulated attendees.

pub mod events;
pub mod notify;
pub mod series;
pub mod store;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use crate::api::{Reply, Req};
use crate::clock::fmt_millis;
use crate::errors::{Api, ApiError};
use crate::recurrence;
use crate::state::{Emulator, UserState};
use crate::stats::WriteRecord;
use crate::sync_tokens::{user_tag, PageToken, SyncToken};
use events::*;
use series::is_master_body;
use store::{CalendarStore, Channel, StoredEvent};

/// How far ahead open-ended series are expanded when no `timeMax` is given.
pub const EXPANSION_HORIZON_DAYS: i64 = 730;
/// Most instances produced for one series in one request.
pub const MAX_INSTANCES: usize = 5000;
/// The time zone of every emulated primary calendar.
pub const CALENDAR_TIME_ZONE: &str = "UTC";

/// Routes a classified Calendar request.
pub fn dispatch(req: &Req) -> Result<Reply, ApiError> {
    match req.route.method {
        "calendar.events.list" => list(req),
        "calendar.events.get" => get(req),
        "calendar.events.insert" => insert(req),
        "calendar.events.update" => update(req, false),
        "calendar.events.patch" => update(req, true),
        "calendar.events.delete" => delete(req),
        "calendar.events.instances" => instances(req),
        "calendar.events.watch" => watch(req),
        "calendar.calendarList.get" => calendar_list_get(req),
        "calendar.channels.stop" => channels_stop(req),
        _ => Err(ApiError::cal_not_found()),
    }
}

fn check_calendar(req: &Req, cal: &str) -> Result<(), ApiError> {
    if cal == "primary" || cal.eq_ignore_ascii_case(&req.user.email) {
        Ok(())
    } else {
        Err(ApiError::cal_not_found())
    }
}

fn send_updates(req: &Req) -> Result<Option<String>, ApiError> {
    match req.query.get("sendUpdates") {
        None => Ok(None),
        Some(v @ ("all" | "externalOnly" | "none")) => Ok(Some(v.to_string())),
        Some(v) => Err(ApiError::new(
            400,
            "invalidParameter",
            format!("Invalid value '{v}' for sendUpdates."),
        )
        .location("parameter", "sendUpdates")),
    }
}

fn record_write(req: &Req, id: &str) -> Result<(), ApiError> {
    let send = send_updates(req)?;
    req.emu.inner().obs.record_write(WriteRecord {
        method: req.route.method.to_string(),
        user: req.user.email.clone(),
        event_id: id.to_string(),
        send_updates: send,
        send_notifications: req.query.get("sendNotifications").map(str::to_string),
    });
    Ok(())
}

fn parse_time_param(req: &Req, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match req.query.get(key) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::cal_bad_request("Bad Request")),
    }
}

fn max_results(req: &Req, default: i64) -> Result<usize, ApiError> {
    let n = req
        .query
        .int("maxResults", Api::Calendar)?
        .unwrap_or(default);
    if n < 1 {
        return Err(
            ApiError::new(400, "invalid", "Invalid value for maxResults")
                .location("parameter", "maxResults"),
        );
    }
    Ok(n.min(2500) as usize)
}

fn full_sync_required() -> ApiError {
    ApiError::new(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
    )
    .domain("calendar")
    .location("parameter", "syncToken")
}

fn bad_page_token() -> ApiError {
    ApiError::new(400, "invalid", "Invalid Value").location("parameter", "pageToken")
}

fn precondition_failed() -> ApiError {
    ApiError::new(412, "conditionNotMet", "Precondition Failed").location("header", "If-Match")
}

fn check_if_match(req: &Req, etag: &str) -> Result<(), ApiError> {
    match req.if_match() {
        None => Ok(()),
        Some("*") => Ok(()),
        Some(v) => {
            let ok = v.split(',').any(|e| {
                let e = e.trim().trim_start_matches("W/");
                e == etag || e.trim_matches('"') == etag.trim_matches('"')
            });
            if ok {
                Ok(())
            } else {
                Err(precondition_failed())
            }
        }
    }
}

fn envelope(store: &CalendarStore, items: Vec<Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kind".into(), json!("calendar#events"));
    m.insert(
        "etag".into(),
        json!(format!("\"p{}e{}\"", store.current_seq(), store.epoch)),
    );
    m.insert("summary".into(), json!(store.owner));
    m.insert("description".into(), json!(""));
    m.insert("updated".into(), json!(fmt_millis(store.updated)));
    m.insert("timeZone".into(), json!(CALENDAR_TIME_ZONE));
    m.insert("accessRole".into(), json!("owner"));
    m.insert(
        "defaultReminders".into(),
        json!([{"method": "popup", "minutes": 10}]),
    );
    m.insert("items".into(), Value::Array(items));
    m
}

/// Filters of an events.list call.
struct ListOpts {
    incremental: bool,
    show_deleted: bool,
    single: bool,
    time_min: Option<DateTime<Utc>>,
    time_max: Option<DateTime<Utc>>,
    q: Option<String>,
    ical_uid: Option<String>,
    private_props: Vec<(String, String)>,
    shared_props: Vec<(String, String)>,
    updated_min: Option<DateTime<Utc>>,
    event_types: Vec<String>,
    horizon: DateTime<Utc>,
}

fn prop_filter(req: &Req, key: &str) -> Result<Vec<(String, String)>, ApiError> {
    req.query
        .all(key)
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    ApiError::new(400, "invalid", "Invalid extended property filter.")
                        .location("parameter", key)
                })
        })
        .collect()
}

fn matches_filters(b: &Map<String, Value>, o: &ListOpts) -> bool {
    if let Some(q) = &o.q {
        let q = q.to_lowercase();
        let hay = ["summary", "description", "location"]
            .iter()
            .filter_map(|k| b.get(*k).and_then(Value::as_str))
            .map(str::to_lowercase)
            .chain(attendee_emails(b))
            .collect::<Vec<_>>()
            .join("\n");
        if !q.split_whitespace().all(|w| hay.contains(w)) {
            return false;
        }
    }
    if let Some(uid) = &o.ical_uid {
        if b.get("iCalUID").and_then(Value::as_str) != Some(uid.as_str()) {
            return false;
        }
    }
    for (kind, filters) in [("private", &o.private_props), ("shared", &o.shared_props)] {
        for (k, v) in filters {
            let have = b
                .get("extendedProperties")
                .and_then(|e| e.get(kind))
                .and_then(|p| p.get(k))
                .and_then(Value::as_str);
            if have != Some(v.as_str()) {
                return false;
            }
        }
    }
    if !o.event_types.is_empty() {
        let t = b
            .get("eventType")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if !o.event_types.iter().any(|x| x == t) {
            return false;
        }
    }
    true
}

/// The instances of a master (without those replaced by stored exceptions).
fn expand_master(
    store: &CalendarStore,
    ev: &StoredEvent,
    min: Option<DateTime<Utc>>,
    max: Option<DateTime<Utc>>,
    horizon: DateTime<Utc>,
) -> Vec<Map<String, Value>> {
    let Ok(start) = series_start(&ev.body) else {
        return Vec::new();
    };
    let limit = max.map(|m| m.min(horizon)).unwrap_or(horizon);
    let duration = match (parse_when(&ev.body, "start"), parse_when(&ev.body, "end")) {
        (Ok(s), Ok(e)) => e.instant() - s.instant(),
        _ => Duration::zero(),
    };
    let from = min.map(|m| m - duration);
    let Ok(occ) = recurrence::expand(
        &start,
        &recurrence_lines(&ev.body),
        from,
        limit,
        MAX_INSTANCES,
    ) else {
        return Vec::new();
    };
    occ.iter()
        .filter_map(|o| {
            let inst = instance_body(&ev.body, o);
            let id = inst.get("id").and_then(Value::as_str).unwrap_or("");
            if store.get_attached(id).is_some() || !overlaps(&inst, min, max) {
                return None;
            }
            Some(inst)
        })
        .collect()
}

/// The list items one stored event contributes.
fn items_for(store: &CalendarStore, ev: &StoredEvent, o: &ListOpts) -> Vec<Value> {
    let b = &ev.body;
    // A detached exception whose occurrence exists again (the series came back to that time)
    // gives way to it, as `events.get` does: an id names one event, listed with its series
    // (changed after the exception was detached), never also as the old cancelled exception.
    if ev.detached
        && b.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| generated_instance(store, id).is_some())
    {
        return Vec::new();
    }
    let cancelled = ev.is_cancelled();
    let include_deleted = o.incremental || o.show_deleted || o.updated_min.is_some();
    if let Some(um) = o.updated_min {
        let updated = b
            .get("updated")
            .and_then(Value::as_str)
            .and_then(|u| DateTime::parse_from_rfc3339(u).ok());
        if updated.is_some_and(|u| u < um) {
            return Vec::new();
        }
    }
    if cancelled && !include_deleted {
        return Vec::new();
    }
    if !cancelled && !matches_filters(b, o) {
        return Vec::new();
    }
    let stub = o.incremental && !o.show_deleted;
    if o.single && ev.is_recurring_master() {
        return expand_master(store, ev, o.time_min, o.time_max, o.horizon)
            .into_iter()
            .map(|mut inst| {
                if cancelled {
                    inst.insert("status".into(), json!("cancelled"));
                    if stub {
                        inst = cancelled_stub(&inst);
                    }
                }
                Value::Object(inst)
            })
            .collect();
    }
    let window_ok = if ev.is_recurring_master() {
        match (o.time_max, parse_when(b, "start")) {
            (Some(max), Ok(s)) => s.instant() < max,
            _ => true,
        }
    } else {
        overlaps(b, o.time_min, o.time_max)
    };
    if !(window_ok || (cancelled && o.incremental)) {
        return Vec::new();
    }
    if cancelled && stub {
        return vec![Value::Object(cancelled_stub(b))];
    }
    vec![Value::Object(b.clone())]
}

fn start_key(v: &Value) -> DateTime<Utc> {
    v.as_object()
        .and_then(|b| parse_when(b, "start").ok())
        .map(|w| w.instant())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn list(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    let q = &req.query;
    let sync_token = q.get("syncToken");
    if sync_token.is_some() {
        for p in [
            "iCalUID",
            "orderBy",
            "privateExtendedProperty",
            "q",
            "sharedExtendedProperty",
            "timeMin",
            "timeMax",
            "updatedMin",
        ] {
            if q.has(p) {
                return Err(ApiError::new(
                    400,
                    "invalid",
                    format!("The parameter {p} cannot be used together with syncToken."),
                )
                .location("parameter", p));
            }
        }
    }
    let max = max_results(req, 250)?;
    let single = q.bool("singleEvents", Api::Calendar)?.unwrap_or(false);
    let order = q.get("orderBy");
    match order {
        None | Some("updated") => {}
        Some("startTime") if single => {}
        Some("startTime") => {
            return Err(ApiError::new(
                400,
                "badRequest",
                "The requested ordering is not available for the particular query.",
            ))
        }
        Some(_) => {
            return Err(
                ApiError::new(400, "invalidParameter", "Invalid value for orderBy")
                    .location("parameter", "orderBy"),
            )
        }
    }
    let time_min = parse_time_param(req, "timeMin")?;
    let time_max = parse_time_param(req, "timeMax")?;
    if let (Some(a), Some(b)) = (time_min, time_max) {
        if a >= b {
            return Err(
                ApiError::new(400, "timeRangeEmpty", "The specified time range is empty.")
                    .location("parameter", "timeMax"),
            );
        }
    }
    let opts_base = |incremental: bool| -> Result<ListOpts, ApiError> {
        Ok(ListOpts {
            incremental,
            show_deleted: q.bool("showDeleted", Api::Calendar)?.unwrap_or(false),
            single,
            time_min,
            time_max,
            q: q.get("q").map(str::to_string),
            ical_uid: q.get("iCalUID").map(str::to_string),
            private_props: prop_filter(req, "privateExtendedProperty")?,
            shared_props: prop_filter(req, "sharedExtendedProperty")?,
            updated_min: parse_time_param(req, "updatedMin")?,
            event_types: q
                .all("eventTypes")
                .into_iter()
                .map(str::to_string)
                .collect(),
            horizon: req.now + Duration::days(EXPANSION_HORIZON_DAYS),
        })
    };
    let tag = user_tag(&req.user.email);
    let params = q.fingerprint(&["pageToken", "maxResults"]);
    let store = req.user.calendar();

    let from = match sync_token {
        Some(t) => {
            let t = SyncToken::decode(t).ok_or_else(full_sync_required)?;
            if t.api != 'c'
                || t.user_tag != tag
                || t.epoch != store.epoch
                || t.seq > store.current_seq()
            {
                return Err(full_sync_required());
            }
            Some(t.seq)
        }
        None => None,
    };
    let opts = opts_base(from.is_some())?;
    let (snapshot, cursor, skip) = match q.get("pageToken") {
        Some(p) => {
            let p = PageToken::decode(p).ok_or_else(bad_page_token)?;
            if p.api != 'c' || p.user_tag != tag || p.params != params {
                return Err(bad_page_token());
            }
            if p.epoch != store.epoch {
                return Err(full_sync_required());
            }
            (p.snapshot, p.cursor, p.skip)
        }
        None => (store.current_seq(), from.map(|s| s + 1).unwrap_or(1), 0),
    };
    let page_token = |cursor: u64, skip: u64| PageToken {
        user_tag: tag,
        api: 'c',
        epoch: store.epoch,
        snapshot,
        cursor,
        skip,
        params,
        full_sync_ms: 0,
    };
    let sync = SyncToken {
        user_tag: tag,
        api: 'c',
        epoch: store.epoch,
        seq: snapshot,
        full_sync_ms: 0,
    };

    let mut items = Vec::new();
    let mut next: Option<PageToken> = None;
    if order == Some("startTime") {
        // Sorted listing: gather everything up to the snapshot, sort, page by offset.
        let floor = from.map(|s| s + 1).unwrap_or(1);
        let mut all: Vec<Value> = store
            .changes(floor, snapshot)
            .flat_map(|(_, ev)| items_for(&store, ev, &opts))
            .collect();
        all.sort_by_key(start_key);
        let offset = if q.has("pageToken") {
            cursor as usize
        } else {
            0
        };
        let end = (offset + max).min(all.len());
        items = all
            .get(offset..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        if end < all.len() {
            next = Some(page_token(end as u64, 0));
        }
    } else {
        let mut skip = skip;
        for (seq, ev) in store.changes(cursor, snapshot) {
            let produced = items_for(&store, ev, &opts);
            let n = produced.len() as u64;
            let start = if seq == cursor { skip.min(n) } else { 0 };
            skip = 0;
            for (i, it) in produced.into_iter().enumerate().skip(start as usize) {
                if items.len() == max {
                    next = Some(page_token(seq, i as u64));
                    break;
                }
                items.push(it);
            }
            if next.is_some() {
                break;
            }
            if items.len() == max {
                if store.has_changes(seq + 1, snapshot) {
                    next = Some(page_token(seq + 1, 0));
                }
                break;
            }
        }
    }
    let mut out = envelope(&store, items);
    match next {
        Some(p) => {
            out.insert("nextPageToken".into(), json!(p.encode()));
        }
        None => {
            out.insert("nextSyncToken".into(), json!(sync.encode()));
        }
    }
    Ok(Reply::Json(Value::Object(out)))
}

/// The current body of an event or of a not-yet-materialized instance.
fn current_body(store: &CalendarStore, id: &str) -> Option<(Map<String, Value>, bool)> {
    if let Some(ev) = store.get_attached(id) {
        return Some((ev.body.clone(), true));
    }
    // A detached exception gives way to the occurrence of the same id, if there is one again.
    generated_instance(store, id).or_else(|| store.get(id).map(|ev| (ev.body.clone(), true)))
}

/// The generated (not stored) instance `id` = `<master>_<stamp>` of a recurring master.
fn generated_instance(store: &CalendarStore, id: &str) -> Option<(Map<String, Value>, bool)> {
    let (master_id, when, _) = parse_instance_id(id)?;
    let master = store.get(master_id)?;
    if !master.is_recurring_master() {
        return None;
    }
    let start = series_start(&master.body).ok()?;
    let occ =
        recurrence::expand(&start, &recurrence_lines(&master.body), Some(when), when, 1).ok()?;
    let o = occ.iter().find(|o| o.utc == when)?;
    let mut b = instance_body(&master.body, o);
    if master.is_cancelled() {
        b.insert("status".into(), json!("cancelled"));
    }
    (b.get("id").and_then(Value::as_str) == Some(id)).then_some((b, false))
}

fn get(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    let store = req.user.calendar();
    let (b, _) = current_body(&store, req.param(1)).ok_or_else(ApiError::cal_not_found)?;
    let etag = b.get("etag").and_then(Value::as_str).unwrap_or("");
    let not_modified = req
        .headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim() == etag || e.trim() == "*"));
    if not_modified {
        return Ok(Reply::NotModified);
    }
    Ok(Reply::Json(Value::Object(b)))
}

fn html_link(id: &str, owner: &str) -> String {
    use base64::Engine;
    let eid = base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("{id} {owner}"));
    format!("https://www.google.com/calendar/event?eid={eid}")
}

fn strip_nulls(body: Map<String, Value>) -> Map<String, Value> {
    body.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

fn insert(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    send_updates(req)?;
    let owner = req.user.email.clone();
    let mut body = strip_nulls(sanitize(req.json_object()?));
    let id = match body.get("id") {
        Some(Value::String(s)) if valid_event_id(s) => s.clone(),
        Some(_) => {
            return Err(ApiError::new(400, "invalid", "Invalid resource id value."));
        }
        None => random_event_id(),
    };
    validate(&body)?;
    normalize_times(&mut body);
    let result = {
        let mut store = req.user.calendar();
        if store.get(&id).is_some() {
            return Err(ApiError::new(
                409,
                "duplicate",
                "The requested identifier already exists.",
            ));
        }
        body.insert("kind".into(), json!("calendar#event"));
        body.insert("id".into(), json!(id));
        body.entry("status").or_insert(json!("confirmed"));
        body.insert("htmlLink".into(), json!(html_link(&id, &owner)));
        body.entry("iCalUID")
            .or_insert(json!(format!("{id}@google.com")));
        body.entry("sequence").or_insert(json!(0));
        body.entry("reminders")
            .or_insert(json!({"useDefault": true}));
        body.entry("eventType").or_insert(json!("default"));
        apply_people(&mut body, &owner, &owner);
        store.put(&id, body, req.now).body.clone()
    };
    record_write(req, &id)?;
    mirror(req.emu, &req.user, &id, req.now);
    notify::changed(req.emu, &req.user);
    Ok(Reply::Json(Value::Object(result)))
}

fn update(req: &Req, patch: bool) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    send_updates(req)?;
    let id = req.param(1).to_string();
    let owner = req.user.email.clone();
    let input = sanitize(req.json_object()?);
    let (result, touched) = {
        let mut store = req.user.calendar();
        let (current, _) = current_body(&store, &id).ok_or_else(ApiError::cal_not_found)?;
        let was_master = is_master_body(&current);
        let etag = current
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        check_if_match(req, &etag)?;
        let mut body = if patch {
            let mut merged = current.clone();
            merge_patch(&mut merged, input);
            merged
        } else {
            let mut b = strip_nulls(input);
            b.entry("status").or_insert(json!("confirmed"));
            b.entry("reminders").or_insert(json!({"useDefault": true}));
            b.entry("eventType").or_insert(json!("default"));
            b
        };
        for k in [
            "kind",
            "id",
            "created",
            "creator",
            "iCalUID",
            "recurringEventId",
            "originalStartTime",
            "htmlLink",
        ] {
            match current.get(k) {
                Some(v) => body.insert(k.into(), v.clone()),
                None => body.remove(k),
            };
        }
        if body.get("recurringEventId").is_some() {
            body.remove("recurrence");
        }
        body.entry("sequence")
            .or_insert(json!(current.get("sequence").cloned().unwrap_or(json!(0))));
        validate(&body)?;
        normalize_times(&mut body);
        let organizer = organizer_email(&current);
        let organizer = if organizer.is_empty() {
            owner.clone()
        } else {
            organizer
        };
        apply_people(&mut body, &organizer, &owner);
        let result = store.put(&id, body, req.now).body.clone();
        // A changed series drops the exceptions whose occurrence no longer exists.
        let touched = if was_master || is_master_body(&result) {
            series::reconcile_exceptions(&mut store, &id, req.now)
        } else {
            Vec::new()
        };
        (result, touched)
    };
    record_write(req, &id)?;
    mirror(req.emu, &req.user, &id, req.now);
    for t in &touched {
        mirror(req.emu, &req.user, t, req.now);
    }
    notify::changed(req.emu, &req.user);
    Ok(Reply::Json(Value::Object(result)))
}

fn delete(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    send_updates(req)?;
    let id = req.param(1).to_string();
    let owner = req.user.email.clone();
    let mut touched = vec![id.clone()];
    {
        let mut store = req.user.calendar();
        let (mut body, stored) = current_body(&store, &id).ok_or_else(ApiError::cal_not_found)?;
        if stored && store.get(&id).is_some_and(StoredEvent::is_cancelled) {
            return Err(ApiError::new(410, "deleted", "Resource has been deleted"));
        }
        let etag = body
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        check_if_match(req, &etag)?;
        body.insert("status".into(), json!("cancelled"));
        let is_organizer = organizer_email(&body) == owner;
        let is_master = body.get("recurrence").is_some();
        store.put(&id, body, req.now);
        if !is_organizer {
            if let Some(ev) = store.get_mut(&id) {
                ev.removed_by_owner = true;
            }
        }
        if is_master {
            let exc: Vec<(String, Map<String, Value>)> = store
                .exceptions_of(&id)
                .filter(|e| !e.is_cancelled())
                .map(|e| {
                    (
                        e.body
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        e.body.clone(),
                    )
                })
                .collect();
            for (eid, mut b) in exc {
                b.insert("status".into(), json!("cancelled"));
                store.put(&eid, b, req.now);
                touched.push(eid);
            }
        }
    }
    record_write(req, &id)?;
    for t in &touched {
        mirror(req.emu, &req.user, t, req.now);
    }
    notify::changed(req.emu, &req.user);
    Ok(Reply::Empty)
}

/// "This and following" as Google Calendar's UI does it (control plane): see
/// [`series::split_series`]. Returns the old and the new master; attendee copies follow.
pub fn split_series(
    emu: &Emulator,
    user: &UserState,
    instance_id: &str,
    changes: Map<String, Value>,
) -> Result<(Value, Value), crate::errors::EmulatorError> {
    let now = emu.now();
    let owner = user.email.clone();
    let split = {
        let mut store = user.calendar();
        series::split_series(&mut store, instance_id, changes, now, |id| {
            html_link(id, &owner)
        })?
    };
    for id in &split.written {
        mirror(emu, user, id, now);
    }
    notify::changed(emu, user);
    Ok((Value::Object(split.old), Value::Object(split.new)))
}

/// Copies an organizer's event into each emulated attendee's calendar (and cancels the
/// copies of attendees who were removed or when the event is cancelled).
fn mirror(emu: &Emulator, organizer: &UserState, id: &str, now: DateTime<Utc>) {
    let owner = organizer.email.as_str();
    let (body, old, detached) = {
        let s = organizer.calendar();
        let Some(ev) = s.get(id) else { return };
        if organizer_email(&ev.body) != owner {
            return;
        }
        let mut old = ev.mirrored_to.clone();
        // An exception of a shared series reaches the calendars holding the series, even
        // when it is a cancelled instance that was never mirrored by itself.
        if let Some(m) = ev
            .body
            .get("recurringEventId")
            .and_then(Value::as_str)
            .and_then(|m| s.get(m))
        {
            old.extend(m.mirrored_to.iter().cloned());
        }
        (ev.body.clone(), old, ev.detached)
    };
    let master_id = body
        .get("recurringEventId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let cancelled = body.get("status").and_then(Value::as_str) == Some("cancelled");
    let new: BTreeSet<String> = if cancelled {
        BTreeSet::new()
    } else {
        attendee_emails(&body)
            .into_iter()
            .filter(|e| e != owner && emu.user_exists(e))
            .collect()
    };
    for email in new.iter().chain(old.difference(&new)) {
        let Some(att) = emu.user(email) else { continue };
        let mut s = att.calendar();
        let existing = s.get(id).cloned();
        if existing.as_ref().is_some_and(|e| e.removed_by_owner) {
            continue;
        }
        let mut copy = body.clone();
        if !new.contains(email) {
            let holds_series = master_id
                .as_deref()
                .and_then(|m| s.get(m))
                .is_some_and(|m| !m.removed_by_owner);
            match existing {
                Some(e) if !e.is_cancelled() => {
                    copy = e.body.clone();
                    copy.insert("status".into(), json!("cancelled"));
                }
                // A cancelled instance of a series this attendee holds: cancel it there too.
                None if cancelled && holds_series => {
                    if let Some(Value::Object(ep)) = copy.get_mut("extendedProperties") {
                        ep.remove("private");
                    }
                    apply_people(&mut copy, owner, email);
                }
                _ => continue,
            }
        } else {
            let private = existing
                .as_ref()
                .and_then(|e| e.body.get("extendedProperties"))
                .and_then(|p| p.get("private"))
                .cloned();
            if let Some(Value::Object(ep)) = copy.get_mut("extendedProperties") {
                match private {
                    Some(p) => {
                        ep.insert("private".into(), p);
                    }
                    None => {
                        ep.remove("private");
                    }
                }
            }
            if let Some(r) = existing.as_ref().and_then(|e| e.body.get("reminders")) {
                copy.insert("reminders".into(), r.clone());
            }
            apply_people(&mut copy, owner, email);
        }
        let master = is_master_body(&copy)
            && copy.get("status").and_then(Value::as_str) != Some("cancelled");
        s.put(id, copy, now);
        if detached {
            s.detach(id);
        }
        if master {
            // The attendee's copies of exceptions follow the series change too.
            series::reconcile_exceptions(&mut s, id, now);
        }
        drop(s);
        notify::changed(emu, &att);
    }
    let mut s = organizer.calendar();
    if let Some(ev) = s.get_mut(id) {
        ev.mirrored_to = new;
    }
}

fn instances(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    let max = max_results(req, 250)?;
    let show_deleted = req
        .query
        .bool("showDeleted", Api::Calendar)?
        .unwrap_or(false);
    let time_min = parse_time_param(req, "timeMin")?;
    let time_max = parse_time_param(req, "timeMax")?;
    let original_start = parse_time_param(req, "originalStart")?;
    let tag = user_tag(&req.user.email);
    let params = req.query.fingerprint(&["pageToken", "maxResults"]);
    let store = req.user.calendar();
    let id = req.param(1);
    let master = store.get(id).ok_or_else(ApiError::cal_not_found)?;
    let horizon = req.now + Duration::days(EXPANSION_HORIZON_DAYS);
    let mut all: Vec<Value> = Vec::new();
    if master.is_recurring_master() && (!master.is_cancelled() || show_deleted) {
        for mut inst in expand_master(&store, master, time_min, time_max, horizon) {
            if master.is_cancelled() {
                inst.insert("status".into(), json!("cancelled"));
            }
            all.push(Value::Object(inst));
        }
        for e in store.exceptions_of(id) {
            if (!e.is_cancelled() || show_deleted) && overlaps(&e.body, time_min, time_max) {
                all.push(Value::Object(e.body.clone()));
            }
        }
    }
    if let Some(os) = original_start {
        all.retain(|v| {
            v.get("originalStartTime")
                .and_then(Value::as_object)
                .map(|m| {
                    let mut wrap = Map::new();
                    wrap.insert("start".into(), Value::Object(m.clone()));
                    parse_when(&wrap, "start")
                        .map(|w| w.instant() == os)
                        .unwrap_or(false)
                })
                .unwrap_or(false)
        });
    }
    all.sort_by_key(start_key);
    let offset = match req.query.get("pageToken") {
        Some(p) => {
            let p = PageToken::decode(p).ok_or_else(bad_page_token)?;
            if p.api != 'i' || p.user_tag != tag || p.params != params {
                return Err(bad_page_token());
            }
            p.cursor as usize
        }
        None => 0,
    };
    let end = (offset + max).min(all.len());
    let page = all
        .get(offset.min(end)..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut out = envelope(&store, page);
    if end < all.len() {
        let p = PageToken {
            user_tag: tag,
            api: 'i',
            epoch: store.epoch,
            snapshot: 0,
            cursor: end as u64,
            skip: 0,
            params,
            full_sync_ms: 0,
        };
        out.insert("nextPageToken".into(), json!(p.encode()));
    }
    Ok(Reply::Json(Value::Object(out)))
}

fn calendar_list_get(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    let store = req.user.calendar();
    Ok(Reply::Json(json!({
        "kind": "calendar#calendarListEntry",
        "etag": format!("\"{}\"", 1_000_000 + store.epoch),
        "id": store.owner,
        "summary": store.owner,
        "timeZone": CALENDAR_TIME_ZONE,
        "colorId": "14",
        "backgroundColor": "#9fe1e7",
        "foregroundColor": "#000000",
        "selected": true,
        "accessRole": "owner",
        "defaultReminders": [{"method": "popup", "minutes": 10}],
        "notificationSettings": {"notifications": [
            {"type": "eventCreation", "method": "email"},
            {"type": "eventChange", "method": "email"},
            {"type": "eventCancellation", "method": "email"},
            {"type": "eventResponse", "method": "email"}
        ]},
        "primary": true,
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}
    })))
}

fn watch(req: &Req) -> Result<Reply, ApiError> {
    check_calendar(req, req.param(0))?;
    let body = req.json_object()?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::new(
            400,
            "required",
            "Channel id is required and must have at most 64 characters.",
        ));
    }
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    if !matches!(kind, "web_hook" | "webhook") {
        return Err(ApiError::new(
            400,
            "push.webhookInvalidType",
            "Unknown channel type.",
        ));
    }
    let address = body
        .get("address")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let parsed = url::Url::parse(&address).ok();
    let loopback = parsed.as_ref().and_then(|u| u.host_str()).is_some_and(|h| {
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || h == "[::1]"
    });
    let scheme = parsed
        .as_ref()
        .map(|u| u.scheme().to_string())
        .unwrap_or_default();
    if !(scheme == "https" || (scheme == "http" && loopback)) {
        return Err(ApiError::new(
            400,
            "push.webhookUrlNotHttps",
            format!("WebHook callback must be HTTPS: {address}"),
        ));
    }
    let expiration_ms = body
        .get("expiration")
        .and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| v.as_i64())
        })
        .unwrap_or_else(|| (req.now + Duration::days(7)).timestamp_millis());
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut store = req.user.calendar();
    if store.channels.contains_key(&id) {
        return Err(ApiError::new(
            400,
            "channelIdNotUnique",
            "Channel id not unique.",
        ));
    }
    let resource_id = random_event_id();
    let base = req.emu.base_url();
    let resource_uri = format!(
        "{base}/calendar/v3/calendars/{}/events?alt=json",
        store.owner
    );
    let ch = Channel {
        id: id.clone(),
        resource_id: resource_id.clone(),
        resource_uri: resource_uri.clone(),
        address,
        token: token.clone(),
        expiration_ms,
        message_number: 1,
    };
    store.channels.insert(id.clone(), ch.clone());
    drop(store);
    notify::send(ch, "sync");
    let mut out = json!({
        "kind": "api#channel",
        "id": id,
        "resourceId": resource_id,
        "resourceUri": resource_uri,
        "expiration": expiration_ms.to_string(),
    });
    if let Some(t) = token {
        out["token"] = json!(t);
    }
    Ok(Reply::Json(out))
}

fn channels_stop(req: &Req) -> Result<Reply, ApiError> {
    let body = req.json_object()?;
    let id = body.get("id").and_then(Value::as_str).unwrap_or("");
    let rid = body.get("resourceId").and_then(Value::as_str);
    let mut store = req.user.calendar();
    match store.channels.get(id) {
        Some(ch) if rid.is_none_or(|r| r == ch.resource_id) => {
            store.channels.remove(id);
            Ok(Reply::Empty)
        }
        _ => Err(ApiError::new(
            404,
            "notFound",
            format!("Channel '{id}' not found for project '000000000000'"),
        )),
    }
}
