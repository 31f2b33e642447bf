//! Whole-series changes of recurring events (SPEC 4): moving / re-timing the master, changing
//! its RRULE, shortening it (COUNT, UNTIL), a "this and following" split, deleting the master;
//! observed through `events.instances`, `events.get` and incremental listings with
//! `singleEvents` false and true. Exceptions whose occurrence no longer exists disappear
//! (reported once as cancelled); exceptions that still match an occurrence survive.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};

const EVENTS: &str = "/calendar/v3/calendars/primary/events";

/// Weekly on Mondays 10:00 Paris (09:00Z, no DST in January-February), six instances:
/// Jan 5, 12, 19, 26, Feb 2, Feb 9 2026.
fn weekly() -> Value {
    json!({
        "summary": "Weekly",
        "start": {"dateTime": "2026-01-05T10:00:00+01:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-01-05T10:30:00+01:00", "timeZone": "Europe/Paris"},
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"],
    })
}

struct Cal<'a> {
    env: &'a Env,
    token: String,
}

impl Cal<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self
            .env
            .raw(method.clone(), path, &self.token, body, &[])
            .await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }

    async fn insert(&self, body: Value) -> String {
        let v = self.call(Method::POST, EVENTS, Some(body)).await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn patch(&self, id: &str, body: Value) -> Value {
        self.call(Method::PATCH, &format!("{EVENTS}/{id}"), Some(body))
            .await
    }

    async fn get(&self, id: &str) -> Value {
        self.call(Method::GET, &format!("{EVENTS}/{id}"), None)
            .await
    }

    /// Every page of a listing; returns the items and the sync token.
    async fn list(&self, query: &str) -> (Vec<Value>, String) {
        let mut items = Vec::new();
        let mut page = String::new();
        loop {
            let v = self
                .call(Method::GET, &format!("{EVENTS}?{query}{page}"), None)
                .await;
            items.extend(v["items"].as_array().cloned().unwrap_or_default());
            match v["nextPageToken"].as_str() {
                Some(p) => page = format!("&pageToken={p}"),
                None => return (items, v["nextSyncToken"].as_str().unwrap().to_string()),
            }
        }
    }

    /// Full listings with singleEvents false and true: their sync tokens.
    async fn tokens(&self) -> (String, String) {
        (
            self.list("maxResults=3").await.1,
            self.list("singleEvents=true&maxResults=3").await.1,
        )
    }

    async fn changes(&self, tokens: &(String, String)) -> (Vec<Value>, Vec<Value>) {
        (
            self.list(&format!("maxResults=3&syncToken={}", tokens.0))
                .await
                .0,
            self.list(&format!(
                "singleEvents=true&maxResults=3&syncToken={}",
                tokens.1
            ))
            .await
            .0,
        )
    }

    async fn instances(&self, id: &str, extra: &str) -> Vec<Value> {
        self.call(
            Method::GET,
            &format!("{EVENTS}/{id}/instances?{extra}"),
            None,
        )
        .await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap_or("").to_string())
        .collect()
}

fn find<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {:?}", ids(items)))
}

fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("confirmed")
}

async fn setup(env: &Env) -> (Cal<'_>, String) {
    let token = env.user("alice@example.com").await;
    let cal = Cal { env, token };
    let id = cal.insert(weekly()).await;
    (cal, id)
}

/// An exception (renamed instance) on Jan 12 and a cancelled instance on Jan 19.
async fn exceptions(cal: &Cal<'_>, id: &str) -> (String, String) {
    let renamed = format!("{id}_20260112T090000Z");
    cal.patch(&renamed, json!({"summary": "Special"})).await;
    let cancelled = format!("{id}_20260119T090000Z");
    cal.call(Method::DELETE, &format!("{EVENTS}/{cancelled}"), None)
        .await;
    (renamed, cancelled)
}

#[tokio::test]
async fn retiming_the_master_drops_exceptions_of_vanished_instances() {
    let env = Env::new().await;
    let (cal, id) = setup(&env).await;
    let (renamed, cancelled) = exceptions(&cal, &id).await;
    assert_eq!(cal.instances(&id, "").await.len(), 5);
    let tokens = cal.tokens().await;

    // Re-time the whole series: 10:00 → 11:30 Paris.
    cal.patch(
        &id,
        json!({"start": {"dateTime": "2026-01-05T11:30:00+01:00", "timeZone": "Europe/Paris"},
               "end": {"dateTime": "2026-01-05T12:00:00+01:00", "timeZone": "Europe/Paris"}}),
    )
    .await;
    let inst = cal.instances(&id, "").await;
    assert_eq!(
        ids(&inst),
        [
            "20260105T103000Z",
            "20260112T103000Z",
            "20260119T103000Z",
            "20260126T103000Z",
            "20260202T103000Z",
            "20260209T103000Z"
        ]
        .map(|s| format!("{id}_{s}"))
    );
    assert!(inst
        .iter()
        .all(|i| i["summary"] == "Weekly" && status(i) == "confirmed"));
    // The renamed exception left the series (cancelled); so did the cancelled one.
    let old = cal.get(&renamed).await;
    assert_eq!(status(&old), "cancelled");
    assert_eq!(cal.instances(&id, "showDeleted=true").await.len(), 6);
    // The old instance ids are no longer occurrences.
    let (s, _) = env
        .raw(
            Method::GET,
            &format!("{EVENTS}/{id}_20260126T090000Z"),
            &cal.token,
            None,
            &[],
        )
        .await;
    assert_eq!(s, 404);

    let (masters, singles) = cal.changes(&tokens).await;
    // singleEvents=false: the master and the exception that vanished (cancelled stub).
    assert_eq!(masters.len(), 2, "{masters:?}");
    assert_eq!(
        find(&masters, &id)["start"]["dateTime"],
        "2026-01-05T11:30:00+01:00"
    );
    let stub = find(&masters, &renamed);
    assert_eq!(stub["status"], "cancelled");
    assert_eq!(stub["recurringEventId"], json!(id));
    assert!(stub.get("summary").is_none(), "a minimal stub: {stub}");
    // singleEvents=true: every instance of the new timing plus the vanished exception. The
    // generated instances of the old timing are not reported (as in Google: re-read them with
    // events.instances).
    assert_eq!(singles.len(), 7, "{:?}", ids(&singles));
    assert_eq!(status(find(&singles, &renamed)), "cancelled");
    assert!(!ids(&singles).contains(&cancelled));

    // Moving back: the occurrences of the first timing come back as plain instances, the old
    // exceptions do not hide them any more.
    cal.patch(
        &id,
        json!({"start": {"dateTime": "2026-01-05T10:00:00+01:00", "timeZone": "Europe/Paris"},
               "end": {"dateTime": "2026-01-05T10:30:00+01:00", "timeZone": "Europe/Paris"}}),
    )
    .await;
    let inst = cal.instances(&id, "").await;
    assert_eq!(inst.len(), 6);
    assert_eq!(find(&inst, &renamed)["summary"], "Weekly");
    assert_eq!(status(&cal.get(&renamed).await), "confirmed");
    assert_eq!(status(&cal.get(&cancelled).await), "confirmed");
    env.finish().await;
}

#[tokio::test]
async fn rule_change_keeps_exceptions_that_still_match() {
    let env = Env::new().await;
    let (cal, id) = setup(&env).await;
    let (renamed, cancelled) = exceptions(&cal, &id).await;
    // A Wednesday exception to drop later.
    let wed_series = cal
        .patch(
            &id,
            json!({"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=12"]}),
        )
        .await;
    assert_eq!(
        wed_series["recurrence"][0],
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=12"
    );
    // Mondays still occur: the exceptions survive (renamed, and still cancelled).
    let inst = cal.instances(&id, "").await;
    assert_eq!(inst.len(), 11, "{:?}", ids(&inst));
    assert_eq!(find(&inst, &renamed)["summary"], "Special");
    assert!(!ids(&inst).contains(&cancelled));
    let wednesday = format!("{id}_20260107T090000Z");
    assert!(ids(&inst).contains(&wednesday));
    cal.patch(&wednesday, json!({"summary": "Wednesday special"}))
        .await;
    let tokens = cal.tokens().await;

    // Back to Mondays only: the Wednesday exception vanishes, the Monday ones stay.
    cal.patch(
        &id,
        json!({"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"]}),
    )
    .await;
    let inst = cal.instances(&id, "").await;
    assert_eq!(inst.len(), 5);
    assert_eq!(find(&inst, &renamed)["summary"], "Special");
    assert_eq!(status(&cal.get(&wednesday).await), "cancelled");
    assert_eq!(status(&cal.get(&cancelled).await), "cancelled");
    let (masters, singles) = cal.changes(&tokens).await;
    assert_eq!(ids(&masters).len(), 2);
    assert_eq!(status(find(&masters, &wednesday)), "cancelled");
    assert_eq!(status(find(&singles, &wednesday)), "cancelled");
    assert!(
        !ids(&singles).contains(&renamed),
        "unchanged exception not re-reported"
    );
    env.finish().await;
}

#[tokio::test]
async fn shortening_with_count_or_until_cancels_later_exceptions() {
    let env = Env::new().await;
    let (cal, id) = setup(&env).await;
    let (renamed, _) = exceptions(&cal, &id).await;
    let late = format!("{id}_20260202T090000Z");
    cal.patch(&late, json!({"summary": "Late special"})).await;
    let tokens = cal.tokens().await;

    cal.patch(
        &id,
        json!({"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4"]}),
    )
    .await;
    let inst = cal.instances(&id, "").await;
    assert_eq!(
        ids(&inst),
        [
            format!("{id}_20260105T090000Z"),
            renamed.clone(),
            format!("{id}_20260126T090000Z")
        ]
    );
    assert_eq!(status(&cal.get(&late).await), "cancelled");
    let (masters, singles) = cal.changes(&tokens).await;
    assert_eq!(ids(&masters).len(), 2);
    assert_eq!(status(find(&masters, &late)), "cancelled");
    assert_eq!(status(find(&singles, &late)), "cancelled");

    // UNTIL: end after Jan 12.
    cal.patch(
        &id,
        json!({"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260118T000000Z"]}),
    )
    .await;
    let inst = cal.instances(&id, "").await;
    assert_eq!(
        ids(&inst),
        [format!("{id}_20260105T090000Z"), renamed.clone()]
    );
    // No longer recurring at all: every exception leaves.
    cal.call(
        Method::PUT,
        &format!("{EVENTS}/{id}"),
        Some(json!({"summary": "Once", "start": {"dateTime": "2026-01-05T10:00:00+01:00", "timeZone": "Europe/Paris"},
                    "end": {"dateTime": "2026-01-05T10:30:00+01:00", "timeZone": "Europe/Paris"}})),
    )
    .await;
    assert_eq!(status(&cal.get(&renamed).await), "cancelled");
    assert!(cal.instances(&id, "").await.is_empty());
    env.finish().await;
}

#[tokio::test]
async fn this_and_following_split() {
    let env = Env::new().await;
    let (cal, id) = setup(&env).await;
    let (renamed, _) = exceptions(&cal, &id).await;
    let late = format!("{id}_20260202T090000Z");
    cal.patch(&late, json!({"summary": "Late special"})).await;
    let tokens = cal.tokens().await;

    // The user moves "this and following" from Jan 26 to 14:00 and renames them.
    let (s, v) = env
        .post(
            "/split-series",
            json!({"email": "alice@example.com", "instance_id": format!("{id}_20260126T090000Z"),
                   "changes": {"summary": "Weekly (new time)",
                               "start": {"dateTime": "2026-01-26T14:00:00+01:00", "timeZone": "Europe/Paris"},
                               "end": {"dateTime": "2026-01-26T14:30:00+01:00", "timeZone": "Europe/Paris"}}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let new_id = v["new"]["id"].as_str().unwrap().to_string();
    assert_eq!(new_id, format!("{id}_R20260126T100000"));
    assert_eq!(
        v["old"]["recurrence"],
        json!(["RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260126T085959Z"])
    );
    assert_eq!(
        v["new"]["recurrence"],
        json!(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3"])
    );
    assert_ne!(v["new"]["iCalUID"], v["old"]["iCalUID"]);
    // Old series: Jan 5, 12 (still renamed), 19 (still cancelled).
    let old = cal.instances(&id, "").await;
    assert_eq!(
        ids(&old),
        [format!("{id}_20260105T090000Z"), renamed.clone()]
    );
    assert_eq!(status(&cal.get(&late).await), "cancelled");
    // New series: Jan 26, Feb 2, Feb 9 at 14:00 Paris (13:00Z).
    let new = cal.instances(&new_id, "").await;
    assert_eq!(
        ids(&new),
        ["20260126T130000Z", "20260202T130000Z", "20260209T130000Z"]
            .map(|s| format!("{new_id}_{s}"))
    );
    assert!(new.iter().all(|i| i["summary"] == "Weekly (new time)"));

    let (masters, singles) = cal.changes(&tokens).await;
    let mut m = ids(&masters);
    m.sort();
    let mut want = vec![id.clone(), late.clone(), new_id.clone()];
    want.sort();
    assert_eq!(m, want);
    assert_eq!(status(find(&masters, &late)), "cancelled");
    // singleEvents=true: the old series' remaining instances, the vanished exception and the
    // new series' instances; the old Jan 26 / Feb 9 instances are not reported.
    assert_eq!(status(find(&singles, &late)), "cancelled");
    for i in &new {
        find(&singles, i["id"].as_str().unwrap());
    }
    assert!(!ids(&singles).contains(&format!("{id}_20260209T090000Z")));

    // Refused: the first instance, a non-occurrence, a second split at the same place.
    for (instance, status) in [
        (format!("{id}_20260105T090000Z"), 400),
        (format!("{id}_20260106T090000Z"), 404),
        (format!("{id}_20260126T090000Z"), 404),
        ("nope".to_string(), 400),
    ] {
        let (s, v) = env
            .post(
                "/split-series",
                json!({"email": "alice@example.com", "instance_id": instance}),
            )
            .await;
        assert_eq!(s, status, "{instance}: {v}");
    }
    // The same through the Rust helper, on the new series.
    let (old2, new2) = env
        .emu()
        .split_series(
            "alice@example.com",
            &format!("{new_id}_20260209T130000Z"),
            Value::Null,
        )
        .unwrap();
    assert_eq!(old2["id"], json!(new_id));
    assert_eq!(
        new2["recurrence"],
        json!(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=1"])
    );
    assert_eq!(cal.instances(&new_id, "").await.len(), 2);
    env.finish().await;
}

#[tokio::test]
async fn deleting_the_master_cancels_every_instance() {
    let env = Env::new().await;
    let (cal, id) = setup(&env).await;
    let (renamed, cancelled) = exceptions(&cal, &id).await;
    let tokens = cal.tokens().await;
    cal.call(Method::DELETE, &format!("{EVENTS}/{id}"), None)
        .await;
    assert!(cal.instances(&id, "").await.is_empty());
    let all = cal.instances(&id, "showDeleted=true").await;
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|i| status(i) == "cancelled"));
    assert_eq!(
        status(&cal.get(&format!("{id}_20260126T090000Z")).await),
        "cancelled"
    );
    assert_eq!(status(&cal.get(&renamed).await), "cancelled");
    let (masters, singles) = cal.changes(&tokens).await;
    let mut m = ids(&masters);
    m.sort();
    let mut want = vec![id.clone(), renamed.clone()];
    want.sort();
    assert_eq!(m, want);
    assert!(masters.iter().all(|v| status(v) == "cancelled"));
    // Every instance as a cancelled stub (the one cancelled before is not repeated).
    assert_eq!(singles.len(), 5, "{:?}", ids(&singles));
    assert!(singles.iter().all(|v| status(v) == "cancelled"));
    assert!(!ids(&singles).contains(&cancelled));
    // Full listings no longer show it.
    assert!(cal.list("singleEvents=true").await.0.is_empty());
    assert!(cal.list("").await.0.is_empty());
    env.finish().await;
}

#[tokio::test]
async fn attendee_copies_follow_a_series_change() {
    let env = Env::new().await;
    let (cal, _) = setup(&env).await;
    let bob = Cal {
        env: &env,
        token: env.user("bob@example.com").await,
    };
    let mut body = weekly();
    body["attendees"] = json!([{"email": "bob@example.com"}]);
    let id = cal.insert(body).await;
    let (renamed, _) = exceptions(&cal, &id).await;
    assert_eq!(bob.get(&renamed).await["summary"], "Special");
    assert_eq!(bob.instances(&id, "").await.len(), 5);
    let tokens = bob.tokens().await;

    cal.patch(
        &id,
        json!({"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6;INTERVAL=2"]}),
    )
    .await;
    // Every other Monday: Jan 5, 19 (cancelled), Feb 2, 16, Mar 2, 16; Jan 12 is gone.
    let inst = bob.instances(&id, "").await;
    assert_eq!(inst.len(), 5, "{:?}", ids(&inst));
    assert!(!ids(&inst).contains(&renamed));
    assert_eq!(status(&bob.get(&renamed).await), "cancelled");
    let (masters, _) = bob.changes(&tokens).await;
    assert_eq!(status(find(&masters, &renamed)), "cancelled");
    assert_eq!(
        find(&masters, &id)["recurrence"][0],
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6;INTERVAL=2"
    );
    env.finish().await;
}
