//! `crmsync bench soak` (what `scripts/soak --api` runs): SPEC 7's soak. A real `crmsync serve`
//! (its own process, SQLite, its scheduler with push and Calendar watch channels) against the
//! emulator (its own process) for a given time, while:
//! - N clients write through the HTTP API (contacts created, job titles changed, tagged and
//!   untagged, deleted; activities created, renamed, deleted), each keeping what the server
//!   acknowledged;
//! - a Google actor edits the other side as the users do (contacts' phone numbers in Google,
//!   events' locations, new events in the calendar), keeping what Google acknowledged;
//! - faults are injected into the emulator every 20 s (5xx, 429, answers lost after the write,
//!   expired sync tokens).
//!
//! Then the faults stop, every user's runs are started until one writes nothing, and it checks
//! what must hold: no 5xx answer, no "database is locked", no panic in the server's log, every
//! acknowledged CRM write readable, every acknowledged Google edit in the CRM, both sides
//! converged (each tagged contact in the group with the same values, each activity shown in the
//! calendar as its event with the same title and location, no duplicate, no orphan), the run
//! after the settled one quiet, and the server's resident memory flat (sampled every 5 s: the
//! last tenth of the load against its middle, once the clients keep their number of records). It prints the figures and returns whether all held.

use crate::bench::world;
use anyhow::{bail, Context};
use chrono::{Duration as Span, Utc};
use crmsync_engine::activity_map::event_id;
use crmsync_engine::ids::{SyncKind, TagId, UserId};
use crmsync_engine::model::{SyncSchedule, TagVisibility, User};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{activities, admin_tokens, contacts, settings, tags, users, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Live records a client keeps at most: once there, it edits, tags and deletes (and creates only
/// after a delete), so the data stops growing and memory can be judged at a steady size.
const CONTACTS_PER_CLIENT: usize = 150;
const ACTIVITIES_PER_CLIENT: usize = 80;

/// What the soak is asked to do.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub minutes: f64,
    pub clients: usize,
    pub users: usize,
    pub seed: u64,
    pub faults: bool,
}

/// What the server acknowledged of one contact.
#[derive(Clone, Debug, Default)]
struct ContactAck {
    job_title: Option<String>,
    tagged: bool,
    deleted: bool,
}

/// What the server acknowledged of one activity.
#[derive(Clone, Debug, Default)]
struct ActivityAck {
    title: String,
    deleted: bool,
}

/// Counts every client shares.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    acknowledged: u64,
    client_errors: u64,
    server_errors: u64,
    locked: u64,
    examples: Vec<String>,
    contacts: HashMap<String, ContactAck>,
    activities: HashMap<String, ActivityAck>,
    google_edits: u64,
    google_edit_errors: u64,
    /// Resource name -> the last phone number Google acknowledged.
    phones: HashMap<String, String>,
    /// (user e-mail, event id) -> the last location Google acknowledged.
    locations: HashMap<(String, String), String>,
    /// (user e-mail, title) of events the actor created.
    google_events: Vec<(String, String)>,
    faults_injected: u64,
    tokens_expired: u64,
}

impl Tally {
    fn note(&mut self, what: String) {
        if self.examples.len() < 20 {
            self.examples.push(what);
        }
    }
}

struct Server {
    child: Child,
    root: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// Users (the world's Alice and more), each with a private sync tag and both kinds on auto-sync
/// every two minutes.
async fn users_with_settings(
    w: &crate::bench::World,
    n: usize,
) -> anyhow::Result<Vec<(User, TagId)>> {
    let now = w.clock.now();
    let mut out = Vec::new();
    for i in 0..n.max(1) {
        let user = if i == 0 {
            w.alice.clone()
        } else {
            let email = format!("user{i}@example.com");
            w.emulator
                .call(reqwest::Method::POST, "/users", json!({ "email": email }))
                .await?;
            w.store.write(|c| {
                users::create_user(
                    c,
                    &NewUser {
                        external_id: None,
                        email: email.clone(),
                        display_name: format!("User {i}"),
                        google_alias: None,
                        time_zone: Some("Europe/London".into()),
                    },
                    now,
                )
            })?
        };
        let tag = w.store.write(|c| {
            tags::create_tag(
                c,
                &NewTag {
                    external_id: None,
                    name: format!("Sync {}", user.email),
                    visibility: TagVisibility::Private,
                    owner_user_id: Some(user.id),
                },
                now,
            )
        })?;
        for (kind, tag_id) in [
            (SyncKind::Contacts, Some(tag.id)),
            (SyncKind::Activities, None),
        ] {
            w.store.write(|c| {
                settings::put_sync_settings(
                    c,
                    &NewSyncSettings {
                        user_id: user.id,
                        kind,
                        auto_sync: true,
                        schedule: SyncSchedule::IntervalMinutes(2),
                        tag_id,
                        synchronize_from: None,
                        trigger_words: vec![],
                    },
                    now,
                )
            })?;
        }
        out.push((user, tag.id));
    }
    Ok(out)
}

async fn start_server(w: &crate::bench::World, dir: &std::path::Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let root = format!("http://127.0.0.1:{port}");
    let log = dir.join("serve.log");
    let out = std::fs::File::create(&log)?;
    let exe = std::env::current_exe().context("find the crmsync executable")?;
    let child = Command::new(exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &w.database_url)
        .env("CRMSYNC_SECRET_KEY", &w.secret_key)
        .env("CRMSYNC_GOOGLE_ENDPOINT", &w.emulator.base)
        .env("CRMSYNC_PUBLIC_URL", &root)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .context("start `crmsync serve`")?;
    let server = Server { child, root, log };
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = http.get(format!("{}/readyz", server.root)).send().await {
            if r.status().is_success() {
                return Ok(server);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "crmsync serve did not become ready; its log: {}",
        log_tail(&server.log)
    )
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One API client: writes until `until`, recording what the server acknowledged.
async fn client(
    i: usize,
    base: String,
    token: String,
    user: (UserId, TagId),
    seed: u64,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let http = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64 * 7919));
    let (uid, tag) = user;
    let mut mine: Vec<String> = Vec::new();
    let mut my_acts: Vec<String> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let roll = rng.gen_range(0..100);
        let (method, path, body, what): (reqwest::Method, String, Option<Value>, &str) = if (roll
            < 25
            && mine.len() < CONTACTS_PER_CLIENT)
            || mine.is_empty()
        {
            let email = format!("c{i}-{n}@clients.example");
            (
                reqwest::Method::POST,
                "/contacts".into(),
                Some(
                    json!({"given_name": format!("C{i}"), "family_name": format!("N{n}"),
                        "emails": [{"address": email}], "job_title": format!("t{i}-{n}"), "tags": [tag]}),
                ),
                "create_contact",
            )
        } else if roll < 55 {
            let id = mine[rng.gen_range(0..mine.len())].clone();
            (
                reqwest::Method::PATCH,
                format!("/contacts/{id}"),
                Some(json!({"job_title": format!("t{i}-{n}")})),
                "title",
            )
        } else if roll < 65 {
            let id = mine[rng.gen_range(0..mine.len())].clone();
            let tagged = tally
                .lock()
                .map(|t| t.contacts.get(&id).is_some_and(|c| c.tagged))
                .unwrap_or(true);
            let m = if tagged {
                reqwest::Method::DELETE
            } else {
                reqwest::Method::PUT
            };
            (m, format!("/contacts/{id}/tags/{tag}"), None, "tag")
        } else if roll < 68 {
            let id = mine.swap_remove(rng.gen_range(0..mine.len()));
            (
                reqwest::Method::DELETE,
                format!("/contacts/{id}"),
                None,
                "delete_contact",
            )
        } else if (roll < 83 && my_acts.len() < ACTIVITIES_PER_CLIENT) || my_acts.is_empty() {
            let start = Utc::now() + Span::hours(rng.gen_range(1..24 * 30));
            (
                reqwest::Method::POST,
                "/activities".into(),
                Some(
                    json!({"title": format!("a{i}-{n}"), "start": start.to_rfc3339(),
                        "end": (start + Span::minutes(30)).to_rfc3339(), "time_zone": "Europe/London",
                        "display_in_calendar": true, "organizer_user_id": uid}),
                ),
                "create_activity",
            )
        } else if roll < 98 {
            let id = my_acts[rng.gen_range(0..my_acts.len())].clone();
            (
                reqwest::Method::PATCH,
                format!("/activities/{id}"),
                Some(json!({"title": format!("a{i}-{n}")})),
                "rename",
            )
        } else {
            let id = my_acts.swap_remove(rng.gen_range(0..my_acts.len()));
            (
                reqwest::Method::DELETE,
                format!("/activities/{id}"),
                None,
                "delete_activity",
            )
        };
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(60));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let (status, v) = match req.send().await {
            Ok(r) => {
                let status = r.status();
                (Some(status), r.json::<Value>().await.unwrap_or(Value::Null))
            }
            Err(e) => (None, json!(e.to_string())),
        };
        let pause = Duration::from_millis(rng.gen_range(50..250));
        {
            let Ok(mut t) = tally.lock() else { return };
            t.requests += 1;
            record(&mut t, what, &path, status, v, &mut mine, &mut my_acts);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Books one answer of a client.
fn record(
    t: &mut Tally,
    what: &str,
    path: &str,
    status: Option<reqwest::StatusCode>,
    v: Value,
    mine: &mut Vec<String>,
    my_acts: &mut Vec<String>,
) {
    let Some(status) = status else {
        t.server_errors += 1;
        t.note(format!("{what} {path}: no answer: {v}"));
        return;
    };
    if status.is_server_error() {
        t.server_errors += 1;
        if v.to_string().contains("locked") {
            t.locked += 1;
        }
        t.note(format!("{what} {path}: {status} {v}"));
        return;
    }
    if !status.is_success() {
        t.client_errors += 1;
        t.note(format!("{what} {path}: {status} {v}"));
        return;
    }
    t.acknowledged += 1;
    let id = v["id"].as_str().unwrap_or_default().to_string();
    match what {
        "create_contact" => {
            t.contacts.insert(
                id.clone(),
                ContactAck {
                    job_title: v["job_title"].as_str().map(String::from),
                    tagged: true,
                    deleted: false,
                },
            );
            mine.push(id);
        }
        "title" => {
            if let Some(c) = t.contacts.get_mut(&id) {
                c.job_title = v["job_title"].as_str().map(String::from);
            }
        }
        "tag" => {
            let id = path.split('/').nth(2).unwrap_or_default().to_string();
            if let Some(c) = t.contacts.get_mut(&id) {
                c.tagged = !c.tagged;
            }
        }
        "delete_contact" => {
            let id = path.trim_start_matches("/contacts/").to_string();
            if let Some(c) = t.contacts.get_mut(&id) {
                c.deleted = true;
            }
        }
        "create_activity" => {
            t.activities.insert(
                id.clone(),
                ActivityAck {
                    title: v["title"].as_str().unwrap_or_default().to_string(),
                    deleted: false,
                },
            );
            my_acts.push(id);
        }
        "rename" => {
            if let Some(a) = t.activities.get_mut(&id) {
                a.title = v["title"].as_str().unwrap_or_default().to_string();
            }
        }
        _ => {
            let id = path.trim_start_matches("/activities/").to_string();
            if let Some(a) = t.activities.get_mut(&id) {
                a.deleted = true;
            }
        }
    }
}

/// The emulator's view of a user (control plane: no quota, no faults).
async fn google_view(emulator: &str, email: &str, what: &str) -> anyhow::Result<Value> {
    Ok(
        reqwest::get(format!("{emulator}/_emulator/users/{email}/{what}"))
            .await?
            .json()
            .await?,
    )
}

/// The Google actor: edits as the users do, until `until`.
async fn google_actor(
    engine: crate::sync::SyncEngine,
    emulator: String,
    people: Vec<User>,
    seed: u64,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1200))).await;
        let u = &people[rng.gen_range(0..people.len())];
        let account = match engine.accounts().account_for(u).await {
            Ok(a) => a,
            Err(_) => continue,
        };
        let roll = rng.gen_range(0..100);
        let outcome: Result<(), String> = if roll < 45 {
            let list = google_view(&emulator, &u.email, "contacts").await?;
            let names: Vec<String> = list["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["memberships"].as_array().is_some_and(|m| !m.is_empty()))
                .filter_map(|p| p["resourceName"].as_str().map(String::from))
                .collect();
            if names.is_empty() {
                continue;
            }
            let rn = names[rng.gen_range(0..names.len())].clone();
            let phone = format!("+44 20 7946 {:04}", n % 10_000);
            match account.people().get(&rn).await {
                Ok(Some(mut p)) => {
                    p.phone_numbers = Some(vec![crmsync_connectors::people1::api::PhoneNumber {
                        value: Some(phone.clone()),
                        type_: Some("work".into()),
                        ..Default::default()
                    }]);
                    match account.people().update_contact(p, "phoneNumbers").await {
                        Ok(_) => {
                            if let Ok(mut t) = tally.lock() {
                                t.phones.insert(rn, phone);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(None) => continue,
                Err(e) => Err(e.to_string()),
            }
        } else if roll < 80 {
            let list = google_view(&emulator, &u.email, "events").await?;
            let ids: Vec<String> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["status"] != "cancelled")
                .filter(|e| e["organizer"]["email"] == u.email.as_str())
                .filter_map(|e| e["id"].as_str().map(String::from))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let id = ids[rng.gen_range(0..ids.len())].clone();
            let location = format!("Room {n}");
            let patch = crmsync_connectors::Event {
                location: Some(location.clone()),
                ..Default::default()
            };
            match account.calendar().patch_event("primary", &id, patch).await {
                Ok(_) => {
                    if let Ok(mut t) = tally.lock() {
                        t.locations.insert((u.email.clone(), id), location);
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        } else {
            let start = Utc::now() + Span::hours(rng.gen_range(1..24 * 30));
            let title = format!("Google meeting {n}");
            let event = crmsync_connectors::Event {
                summary: Some(title.clone()),
                start: Some(crmsync_connectors::calendar3::api::EventDateTime {
                    date_time: Some(start),
                    ..Default::default()
                }),
                end: Some(crmsync_connectors::calendar3::api::EventDateTime {
                    date_time: Some(start + Span::minutes(45)),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match account.calendar().insert_event("primary", event).await {
                Ok(crmsync_connectors::InsertOutcome::Created(_)) => {
                    if let Ok(mut t) = tally.lock() {
                        t.google_events.push((u.email.clone(), title));
                    }
                    Ok(())
                }
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        if let Ok(mut t) = tally.lock() {
            match outcome {
                Ok(()) => t.google_edits += 1,
                Err(_) => t.google_edit_errors += 1,
            }
        }
    }
    Ok(())
}

/// Every 20 s: a burst of faults, and now and then expired sync tokens.
async fn fault_injector(
    emulator: String,
    emails: Vec<String>,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut round = 0u64;
    while Instant::now() + Duration::from_secs(20) < until {
        tokio::time::sleep(Duration::from_secs(20)).await;
        round += 1;
        let rules = json!({"rules": [
            {"match": "people.people.connections.list", "status": 503, "times": 2},
            {"match": "calendar.events.list", "status": 429, "reason": "rateLimitExceeded", "times": 2},
            {"match": "people.people.batchUpdateContacts", "status": 500, "times": 1, "applied": true},
            {"match": "calendar.events.insert", "status": 503, "times": 1, "applied": true},
            {"match": "calendar.events.patch", "status": 0, "times": 1, "applied": true},
        ]});
        http.post(format!("{emulator}/_emulator/faults"))
            .json(&rules)
            .send()
            .await?;
        let mut expired = 0;
        if round.is_multiple_of(3) {
            let email = &emails[(round as usize / 3) % emails.len()];
            for api in ["calendar", "people"] {
                http.post(format!("{emulator}/_emulator/expire-sync-tokens"))
                    .json(&json!({"email": email, "api": api}))
                    .send()
                    .await?;
                expired += 1;
            }
        }
        if let Ok(mut t) = tally.lock() {
            t.faults_injected += 7;
            t.tokens_expired += expired;
        }
    }
    Ok(())
}

/// Waits (at most a minute) until no run is going on or due by push.
async fn wait_idle(store: &Store) -> anyhow::Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let busy = store.read(|c| {
            Ok(crmsync_schema::jobs::all_jobs(c)?
                .iter()
                .any(|j| j.running_run_id.is_some() || j.push_due_at.is_some()))
        })?;
        if !busy {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Starts a run of every user and kind through the API and waits for it; the writes of all.
async fn run_everyone(
    base: &str,
    token: &str,
    people: &[User],
) -> anyhow::Result<(u64, Vec<String>)> {
    let http = reqwest::Client::new();
    let mut writes = 0;
    let mut failures = Vec::new();
    for u in people {
        for kind in ["contacts", "activities"] {
            let run: Value = http
                .post(format!("{base}/users/{}/sync/{kind}?wait=true", u.id))
                .bearer_auth(token)
                .timeout(Duration::from_secs(300))
                .send()
                .await?
                .json()
                .await?;
            let sum = |m: &Value| -> u64 {
                m.as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            };
            writes += sum(&run["counts"]["crm"]) + sum(&run["counts"]["google"]);
            if run["state"] != "succeeded" {
                failures.push(format!(
                    "{} {kind}: {} {}",
                    u.email, run["state"], run["message"]
                ));
            }
        }
    }
    Ok((writes, failures))
}

/// A record read back through the API: its status and body.
async fn read_back(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let r = http.get(url).bearer_auth(token).send().await?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// What must be zero, counted.
#[derive(Debug, Default)]
struct Zero {
    lost_writes: u64,
    lost_google_edits: u64,
    duplicates: u64,
    orphans: u64,
    wrong_values: u64,
    non_quiet: u64,
    failed_runs: u64,
}

fn all_tagged(store: &Store, tag: TagId) -> anyhow::Result<Vec<crmsync_engine::model::Contact>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.read(|c| contacts::contacts_with_tag(c, tag, after, 1000))?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        out.extend(page);
    }
    Ok(out)
}

fn all_organized(
    store: &Store,
    user: UserId,
) -> anyhow::Result<Vec<crmsync_engine::model::Activity>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.read(|c| activities::activities_by_organizer(c, user, after, 1000))?;
        let Some(last) = page.last() else { break };
        after = Some(activities::ActivityCursor {
            start: match last.data.time {
                crmsync_engine::model::ActivityTime::Timed { start, .. } => start,
                crmsync_engine::model::ActivityTime::AllDay { start, .. } => {
                    crmsync_engine::time::start_of_day(start, chrono_tz::UTC)
                }
            },
            id: last.id,
        });
        out.extend(page);
    }
    Ok(out)
}

/// Compares both sides after the settled runs.
async fn check(
    store: &Store,
    emulator: &str,
    base: &str,
    token: &str,
    people: &[(User, TagId)],
    tally: &Tally,
    z: &mut Zero,
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let http = reqwest::Client::new();
    let mut note = |z: &mut u64, what: String| {
        *z += 1;
        if notes.len() < 30 {
            notes.push(what);
        }
    };
    // Every acknowledged CRM write, read back through the API.
    for (id, ack) in &tally.contacts {
        let (status, v) = read_back(&http, &format!("{base}/contacts/{id}"), token).await?;
        let ok = if ack.deleted {
            status == reqwest::StatusCode::NOT_FOUND || v["deleted_at"].is_string()
        } else {
            let tagged = v["tags"].as_array().is_some_and(|t| {
                t.iter().any(|x| {
                    x["id"]
                        .as_str()
                        .or(x.as_str())
                        .is_some_and(|s| people.iter().any(|(_, tag)| tag.to_string() == s))
                })
            });
            status.is_success()
                && v["job_title"].as_str().map(String::from) == ack.job_title
                && tagged == ack.tagged
        };
        if !ok {
            note(
                &mut z.lost_writes,
                format!("contact {id}: acknowledged {ack:?}, reads {status} {v}"),
            );
        }
    }
    for (id, ack) in &tally.activities {
        let (status, v) = read_back(&http, &format!("{base}/activities/{id}"), token).await?;
        let ok = if ack.deleted {
            status == reqwest::StatusCode::NOT_FOUND || v["deleted_at"].is_string()
        } else {
            status.is_success() && v["title"] == ack.title.as_str()
        };
        if !ok {
            note(
                &mut z.lost_writes,
                format!("activity {id}: acknowledged {ack:?}, reads {status} {v}"),
            );
        }
    }
    for (user, tag) in people {
        // Contacts: the tagged CRM contacts and the group's members, paired by the CRM id each
        // Google contact carries.
        let crm = all_tagged(store, *tag)?;
        let groups = google_view(emulator, &user.email, "contact-groups").await?;
        let group = groups["contactGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == "CRM")
            .and_then(|g| g["resourceName"].as_str())
            .unwrap_or_default()
            .to_string();
        let google = google_view(emulator, &user.email, "contacts").await?;
        let mut members: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for p in google["connections"].as_array().into_iter().flatten() {
            let member =
                p["memberships"].as_array().into_iter().flatten().any(|m| {
                    m["contactGroupMembership"]["contactGroupResourceName"] == group.as_str()
                });
            if !member {
                continue;
            }
            let marker = p["clientData"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|d| {
                    d["value"]
                        .as_str()
                        .filter(|_| d["key"] == crmsync_connectors::contact_wire::CRM_ID_KEY)
                })
                .unwrap_or_default()
                .to_string();
            members.entry(marker).or_default().push(p.clone());
        }
        for c in &crm {
            match members.remove(&c.id.to_string()) {
                None => note(
                    &mut z.orphans,
                    format!("{}: tagged contact {} not in the group", user.email, c.id),
                ),
                Some(ps) if ps.len() > 1 => note(
                    &mut z.duplicates,
                    format!(
                        "{}: contact {} in the group {} times",
                        user.email,
                        c.id,
                        ps.len()
                    ),
                ),
                Some(ps) => {
                    let p = &ps[0];
                    let title = p["organizations"][0]["title"].as_str().map(String::from);
                    let phone = p["phoneNumbers"][0]["value"].as_str().map(String::from);
                    let crm_phone = c.data.phones.first().map(|x| x.number.clone());
                    if title != c.data.job_title || phone != crm_phone {
                        note(
                            &mut z.wrong_values,
                            format!(
                                "{}: contact {}: CRM {:?}/{:?}, Google {title:?}/{phone:?}",
                                user.email, c.id, c.data.job_title, crm_phone
                            ),
                        );
                    }
                    let rn = p["resourceName"].as_str().unwrap_or_default();
                    if let Some(acked) = tally.phones.get(rn) {
                        if phone.as_deref() != Some(acked.as_str()) {
                            note(
                                &mut z.lost_google_edits,
                                format!(
                                    "{}: {rn}: phone {acked} acknowledged by Google, now {phone:?}",
                                    user.email
                                ),
                            );
                        }
                    }
                }
            }
        }
        for (marker, ps) in members {
            note(
                &mut z.orphans,
                format!(
                    "{}: {} group member(s) with CRM id {marker:?} and no tagged CRM contact",
                    user.email,
                    ps.len()
                ),
            );
        }
        // Activities: each shown activity as its event (same title and location); each live
        // event the user organizes as an activity.
        let acts = all_organized(store, user.id)?;
        let events = google_view(emulator, &user.email, "events").await?;
        let live: HashMap<String, Value> = events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["status"] != "cancelled" && e["organizer"]["email"] == user.email.as_str()
            })
            .filter_map(|e| Some((e["id"].as_str()?.to_string(), e.clone())))
            .collect();
        let by_marker: HashMap<String, String> = live
            .values()
            .filter_map(|e| {
                Some((
                    e["extendedProperties"]["private"]["crmsyncActivityId"]
                        .as_str()?
                        .to_string(),
                    e["id"].as_str()?.to_string(),
                ))
            })
            .collect();
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut titles: HashMap<String, u32> = HashMap::new();
        for a in acts.iter().filter(|a| a.data.display_in_calendar) {
            *titles.entry(a.data.title.clone()).or_default() += 1;
            let id = by_marker.get(&a.id.to_string()).cloned().or_else(|| {
                let own = event_id(a.id);
                live.contains_key(&own).then_some(own)
            });
            let imported = live.values().find(|e| {
                e["summary"] == a.data.title.as_str()
                    && e["extendedProperties"]["private"]["crmsyncActivityId"].is_null()
            });
            let e = id.as_ref().and_then(|i| live.get(i)).or(imported);
            match e {
                None => note(
                    &mut z.orphans,
                    format!(
                        "{}: activity {} ({}) has no event",
                        user.email, a.id, a.data.title
                    ),
                ),
                Some(e) => {
                    let eid = e["id"].as_str().unwrap_or_default().to_string();
                    *seen.entry(eid.clone()).or_default() += 1;
                    if e["summary"] != a.data.title.as_str()
                        || e["location"].as_str() != a.data.location.as_deref()
                    {
                        note(
                            &mut z.wrong_values,
                            format!(
                                "{}: activity {}: CRM {:?}/{:?}, Google {}/{}",
                                user.email,
                                a.id,
                                a.data.title,
                                a.data.location,
                                e["summary"],
                                e["location"]
                            ),
                        );
                    }
                    if let Some(acked) = tally.locations.get(&(user.email.clone(), eid.clone())) {
                        if a.data.location.as_deref() != Some(acked.as_str()) {
                            note(&mut z.lost_google_edits, format!("{}: event {eid}: location {acked} acknowledged by Google, CRM has {:?}", user.email, a.data.location));
                        }
                    }
                }
            }
        }
        for (id, n) in &seen {
            if *n > 1 {
                note(
                    &mut z.duplicates,
                    format!("{}: event {id} matched {n} activities", user.email),
                );
            }
        }
        for id in live.keys() {
            if !seen.contains_key(id) {
                note(
                    &mut z.orphans,
                    format!(
                        "{}: event {id} ({}) has no activity",
                        user.email, live[id]["summary"]
                    ),
                );
            }
        }
        for (email, title) in tally.google_events.iter().filter(|(e, _)| *e == user.email) {
            match titles.get(title) {
                Some(1) => {}
                Some(n) => note(
                    &mut z.duplicates,
                    format!("{email}: {title:?} imported {n} times"),
                ),
                None => note(
                    &mut z.orphans,
                    format!("{email}: {title:?} made in Google never reached the CRM"),
                ),
            }
        }
    }
    Ok(notes)
}

/// Runs the soak; `Ok(true)` when every count that must be zero is.
pub async fn run(o: SoakOptions) -> anyhow::Result<bool> {
    let w = world(None).await?;
    let people = users_with_settings(&w, o.users).await?;
    let now = w.clock.now();
    let (_, token) = w
        .store
        .write(|c| admin_tokens::create_admin_token(c, "soak", now))?;
    let dir = tempfile::tempdir()?;
    let server = start_server(&w, dir.path()).await?;
    let pid = server.child.id();
    let base = format!("{}/api/v1", server.root);
    let users: Vec<User> = people.iter().map(|(u, _)| u.clone()).collect();
    println!(
        "crmsync bench soak: {} min, {} API clients, {} users, faults {}, seed {} (serve pid {pid}, emulator {})",
        o.minutes,
        o.clients,
        users.len(),
        if o.faults { "on" } else { "off" },
        o.seed,
        w.emulator.base
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(o.minutes * 60.0);
    let mut tasks = Vec::new();
    for i in 0..o.clients {
        let (u, tag) = &people[i % people.len()];
        tasks.push(tokio::spawn(client(
            i,
            base.clone(),
            token.clone(),
            (u.id, *tag),
            o.seed,
            until,
            tally.clone(),
        )));
    }
    let actor = tokio::spawn(google_actor(
        crate::bench::engine(&w),
        w.emulator.base.clone(),
        users.clone(),
        o.seed,
        until,
        tally.clone(),
    ));
    let faults = o.faults.then(|| {
        tokio::spawn(fault_injector(
            w.emulator.base.clone(),
            users.iter().map(|u| u.email.clone()).collect(),
            until,
            tally.clone(),
        ))
    });
    let mut rss: Vec<(f64, f64)> = Vec::new();
    while Instant::now() < until {
        if let Some(m) = rss_mib(pid) {
            rss.push((started.elapsed().as_secs_f64(), m));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    actor.await.context("the Google actor")??;
    if let Some(f) = faults {
        f.await.context("the fault injector")??;
    }
    reqwest::Client::new()
        .delete(format!("{}/_emulator/faults", w.emulator.base))
        .send()
        .await?;
    let load_secs = started.elapsed().as_secs_f64();

    // Settle: runs of everyone until one round writes nothing, then one more must be quiet.
    let mut z = Zero::default();
    let mut notes = Vec::new();
    let mut settled = false;
    let mut rounds = 0;
    for _ in 0..8 {
        rounds += 1;
        wait_idle(&w.store).await?;
        let (writes, failures) = run_everyone(&base, &token, &users).await?;
        if writes == 0 && failures.is_empty() {
            settled = true;
            break;
        }
        if rounds >= 6 {
            z.failed_runs += failures.len() as u64;
            notes.extend(failures);
        }
    }
    if !settled {
        z.non_quiet += 1;
        notes.push("the runs did not settle within 8 rounds".into());
    }
    wait_idle(&w.store).await?;
    let (writes, failures) = run_everyone(&base, &token, &users).await?;
    if writes > 0 {
        z.non_quiet += 1;
        notes.push(format!(
            "the run after the settled one wrote {writes} time(s)"
        ));
    }
    z.failed_runs += failures.len() as u64;
    notes.extend(failures);
    // The clients and the actor are done: the tally is taken out of its lock.
    let t = std::mem::take(
        &mut *tally
            .lock()
            .map_err(|_| anyhow::anyhow!("a client panicked"))?,
    );
    notes.extend(
        check(
            &w.store,
            &w.emulator.base,
            &base,
            &token,
            &people,
            &t,
            &mut z,
        )
        .await?,
    );
    if let Some(m) = rss_mib(pid) {
        rss.push((started.elapsed().as_secs_f64(), m));
    }

    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    let locked_in_log = log.matches("database is locked").count() as u64;
    let panics = log.matches("panicked").count() as u64;
    // Memory at a steady data size: the middle of the load (the clients reached their record
    // caps) against its last tenth.
    let window = |from: f64, to: f64| -> Vec<f64> {
        rss.iter()
            .filter(|(t, _)| *t >= load_secs * from && *t < load_secs * to)
            .map(|(_, m)| *m)
            .collect()
    };
    let (middle, last) = (window(0.4, 0.5), window(0.9, 1.0));
    let (rss_middle, rss_last) = (median(&middle), median(&last));
    let rss_flat = middle.is_empty() || rss_last <= rss_middle * 1.15 + 8.0;
    let per_minute: Vec<String> = (0..)
        .map(|m| m as f64 * 60.0)
        .take_while(|t| *t < load_secs)
        .filter_map(|t| {
            rss.iter()
                .find(|(s, _)| *s >= t)
                .map(|(_, m)| format!("{m:.0}"))
        })
        .collect();
    let google_calls = crate::bench_push::api_calls(&w.emulator.stats().await?);
    let runs = w.store.read(crmsync_schema::runs::count_runs)?;
    let runs_by_state = runs
        .iter()
        .fold(BTreeMap::<String, i64>::new(), |mut m, (_, _, s, n)| {
            *m.entry(s.clone()).or_default() += n;
            m
        });

    println!("  load: {load_secs:.0} s; API requests {} ({:.1}/s), acknowledged {}, refused 4xx {}, 5xx {}", t.requests, t.requests as f64 / load_secs, t.acknowledged, t.client_errors, t.server_errors);
    println!("  records: {} contacts and {} activities written through the API; Google edits {} (refused or failed {})", t.contacts.len(), t.activities.len(), t.google_edits, t.google_edit_errors);
    println!("  faults injected {}, sync tokens expired {}; Google API calls {google_calls}; runs by state {runs_by_state:?}; settled after {rounds} round(s)", t.faults_injected, t.tokens_expired);
    println!("  serve RSS (MiB) each minute: {}; middle of the load {rss_middle:.1}, last tenth {rss_last:.1}, max {:.1} ({} samples) -> {}", per_minute.join(" "), rss.iter().map(|(_, m)| *m).fold(0.0, f64::max), rss.len(), if rss_flat { "flat" } else { "GROWING" });
    println!("  must be zero: 5xx {}, database locked {} (log {locked_in_log}), panics {panics}, lost writes {}, lost Google edits {}, duplicates {}, orphans {}, wrong values {}, non-quiet runs {}, failed settle runs {}", t.server_errors, t.locked, z.lost_writes, z.lost_google_edits, z.duplicates, z.orphans, z.wrong_values, z.non_quiet, z.failed_runs);
    for e in t.examples.iter().take(10) {
        println!("    request: {e}");
    }
    for n in notes.iter().take(30) {
        println!("    check: {n}");
    }
    let ok = t.server_errors == 0
        && t.locked == 0
        && locked_in_log == 0
        && panics == 0
        && z.lost_writes == 0
        && z.lost_google_edits == 0
        && z.duplicates == 0
        && z.orphans == 0
        && z.wrong_values == 0
        && z.non_quiet == 0
        && z.failed_runs == 0
        && rss_flat;
    println!(
        "  {}",
        if ok {
            "PASS: every count that must be zero is zero"
        } else {
            "FAIL"
        }
    );
    Ok(ok)
}
