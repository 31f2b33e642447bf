//! `crmsync bench`: measures the sync engine against SPEC section 8 and prints API calls, wall
//! time, engine time (wall time minus the time a Google call was in flight) and peak memory.
//! The emulator runs as a separate `crmsync emulator` process so its memory and CPU are not
//! counted as the engine's; the database is a temporary SQLite file unless `--database-url` is
//! given. Benchmarks print figures; they never assert a time.
//!
//! - `bench contacts --contacts N`: an initial sync of N tagged contacts, then a run with nothing
//!   changed, against the minimum number of People calls: one batchCreate per 200 contacts (the
//!   sync group's membership travels in each created person, so no members.modify is needed), the
//!   connections list (one page per 1000 contacts already in Google, at least one), and one
//!   contactGroups list plus one create for the sync group; then a small-change round (ten edits
//!   on each side) against its minimum of two calls (the listing and one batch update).
//! - `bench activities --activities N --quota Q`: pushing N new activities while the emulator
//!   enforces Q Calendar requests per minute per user, against the quota-bound time, with the
//!   number of rate-limit answers seen.
//! - `bench webhooks --changes N`: webhook delivery to a healthy local endpoint: a backlog of N
//!   sync-made changes in deliveries per second, then 100 changes per second with the time from
//!   commit to arrival ([`webhooks`]).

use crate::app::{self, GoogleSettings};
use crate::clock::{SharedClock, SystemClock};
use crate::sync::{RunOptions, RunReport, SyncConfig, Trigger};
use anyhow::Context;
use chrono::{Duration, Utc};
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{
    ActivityData, ActivityStatus, ActivityTime, ContactData, Email, EmailKind, SyncSchedule,
    TagVisibility, User,
};
use crmsync_schema::db::{SecretKeySource, StoreOptions};
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{activities, connections, contacts, settings, tags, users, Store};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// The emulator in its own process, killed on drop.
pub(crate) struct EmulatorProcess {
    child: Child,
    pub(crate) base: String,
    http: reqwest::Client,
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EmulatorProcess {
    async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe().context("find the crmsync executable")?;
        let child = Command::new(exe)
            .args(["emulator", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start `crmsync emulator`")?;
        let me = EmulatorProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if me
                .http
                .get(format!("{}/_emulator/stats", me.base))
                .send()
                .await
                .is_ok()
            {
                return Ok(me);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("the emulator did not start on {}", me.base)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let resp = self
            .http
            .request(method, format!("{}/_emulator{}", self.base, path))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("emulator control {path}: {status} {v}");
        }
        Ok(v)
    }

    pub(crate) async fn stats(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/_emulator/stats", self.base))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// One manual contacts run of `user`, with its wall time and the calls per method it made.
async fn measured_contacts_run(
    w: &World,
    engine: &crate::sync::SyncEngine,
    user: crmsync_engine::ids::UserId,
) -> anyhow::Result<(RunReport, std::time::Duration, Vec<(String, u64, u64)>)> {
    let before = w.emulator.stats().await?;
    let t = Instant::now();
    let r = engine
        .sync(
            user,
            SyncKind::Contacts,
            Trigger::Manual,
            RunOptions::default(),
        )
        .await?;
    let wall = t.elapsed();
    Ok((r, wall, calls_between(&before, &w.emulator.stats().await?)))
}

/// Calls per method between two stats snapshots.
fn calls_between(before: &Value, after: &Value) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let count = |v: &Value, m: &str, errors_only: bool| -> u64 {
        v["methods"][m]
            .as_object()
            .map(|by_status| {
                by_status
                    .iter()
                    .filter(|(s, _)| !errors_only || !s.starts_with('2'))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    let methods = after["methods"].as_object();
    for m in methods
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if m.starts_with("oauth2") {
            continue;
        }
        let n = count(after, &m, false).saturating_sub(count(before, &m, false));
        let e = count(after, &m, true).saturating_sub(count(before, &m, true));
        if n > 0 {
            out.push((m, n, e));
        }
    }
    out.sort();
    out
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) struct World {
    pub(crate) store: Store,
    /// The database's URL and its CRMSYNC_SECRET_KEY (for a `crmsync serve` child process).
    pub(crate) database_url: String,
    pub(crate) secret_key: String,
    pub(crate) emulator: EmulatorProcess,
    pub(crate) alice: User,
    _dir: Option<tempfile::TempDir>,
    pub(crate) clock: SharedClock,
}

pub(crate) async fn world(database_url: Option<&str>) -> anyhow::Result<World> {
    let (url, dir) = match database_url {
        Some(u) => (u.to_string(), None),
        None => {
            let d = tempfile::tempdir()?;
            (
                format!("sqlite://{}", d.path().join("bench.db").display()),
                Some(d),
            )
        }
    };
    let secret_key = generate_key();
    let key = SecretBox::from_base64(&secret_key)?;
    let store = Store::open_with(
        &url,
        StoreOptions {
            max_connections: None,
            secret_key: SecretKeySource::Key(key),
        },
    )?;
    store.run_migrations()?;
    let emulator = EmulatorProcess::start().await?;
    emulator
        .call(
            reqwest::Method::POST,
            "/users",
            json!({"email": "alice@example.com"}),
        )
        .await?;
    let sa = emulator
        .call(
            reqwest::Method::POST,
            "/service-accounts",
            json!({"domain": "example.com"}),
        )
        .await?;
    let client_id = sa["client_id"].as_str().unwrap_or_default().to_string();
    emulator
        .call(
            reqwest::Method::POST,
            "/domain-wide-delegation",
            json!({"client_id": client_id, "scopes": crmsync_connectors::ALL_SCOPES}),
        )
        .await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.now();
    let sa_json = sa.to_string();
    let s2 = store.clone();
    store.write(|c| {
        connections::put_service_account(&s2, c, "example.com", &sa_json, now).map(|_| ())
    })?;
    let alice = store.write(|c| {
        users::create_user(
            c,
            &NewUser {
                external_id: None,
                email: "alice@example.com".into(),
                display_name: "Alice".into(),
                google_alias: None,
                time_zone: Some("Europe/London".into()),
            },
            now,
        )
    })?;
    Ok(World {
        store,
        database_url: url,
        secret_key,
        emulator,
        alice,
        _dir: dir,
        clock,
    })
}

pub(crate) fn engine(w: &World) -> crate::sync::SyncEngine {
    app::engine(
        &w.store,
        w.clock.clone(),
        &GoogleSettings {
            endpoint: Some(w.emulator.base.clone()),
            send_updates: None,
        },
        SyncConfig::default(),
    )
}

fn print_run(label: &str, r: &RunReport, wall: std::time::Duration, calls: &[(String, u64, u64)]) {
    let total: u64 = calls.iter().map(|(_, n, _)| n).sum();
    let engine_ms = wall.as_secs_f64() * 1000.0 - r.api_time_ms as f64;
    println!(
        "{label}: {} in {:.2} s wall, {:.1} ms engine time (wall minus Google calls in flight)",
        r.state.as_str(),
        wall.as_secs_f64(),
        engine_ms.max(0.0)
    );
    println!("  API calls: {total}");
    for (m, n, e) in calls {
        println!(
            "    {m:<45} {n:>6}{}",
            if *e > 0 {
                format!("  ({e} errors)")
            } else {
                String::new()
            }
        );
    }
}

/// `crmsync bench contacts`.
pub async fn contacts(count: usize, database_url: Option<&str>) -> anyhow::Result<()> {
    let w = world(database_url).await?;
    let now = w.clock.now();
    let alice = w.alice.clone();
    let tag = w.store.write(|c| {
        tags::create_tag(
            c,
            &NewTag {
                external_id: None,
                name: "Clients".into(),
                visibility: TagVisibility::Private,
                owner_user_id: Some(alice.id),
            },
            now,
        )
    })?;
    w.store.write(|c| {
        settings::put_sync_settings(
            c,
            &NewSyncSettings {
                user_id: alice.id,
                kind: SyncKind::Contacts,
                auto_sync: false,
                schedule: SyncSchedule::IntervalMinutes(15),
                tag_id: Some(tag.id),
                synchronize_from: None,
                trigger_words: vec![],
            },
            now,
        )
    })?;
    let seed = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        w.store.write(|c| {
            for i in chunk {
                let data = ContactData {
                    given_name: format!("Given{i}"),
                    family_name: format!("Family{i}"),
                    emails: vec![Email {
                        address: format!("person{i}@example.org"),
                        kind: EmailKind::Work,
                        primary: true,
                    }],
                    organization: Some(format!("Org {}", i % 97)),
                    job_title: Some("Buyer".into()),
                    ..Default::default()
                };
                contacts::create_contact(
                    c,
                    &data,
                    &[tag.id],
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now,
                )?;
            }
            Ok(())
        })?;
    }
    println!(
        "seeded {count} tagged CRM contacts in {:.1} s ({} database)",
        seed.elapsed().as_secs_f64(),
        w.store.kind().as_str()
    );
    let engine = engine(&w);
    let before = w.emulator.stats().await?;
    let t = Instant::now();
    let r = engine
        .sync(
            alice.id,
            SyncKind::Contacts,
            Trigger::Manual,
            RunOptions::default(),
        )
        .await?;
    let wall = t.elapsed();
    let after = w.emulator.stats().await?;
    let calls = calls_between(&before, &after);
    print_run(
        &format!("initial sync of {count} contacts"),
        &r,
        wall,
        &calls,
    );
    let total: u64 = calls.iter().map(|(_, n, _)| n).sum();
    let minimum = initial_contacts_minimum(count, 0);
    println!(
        "  minimum (SPEC 8: batchCreate by 200, one connections list page, one group list, one group create): {minimum}; ratio {:.2} (target <= 1.05)",
        total as f64 / minimum as f64
    );
    println!(
        "  created in Google: {}",
        r.counts.google.get("created").copied().unwrap_or(0)
    );
    if let Some(m) = peak_rss_mib() {
        println!("  peak memory (this process, without the emulator): {m:.0} MiB (target < 200 MiB at 100,000)");
    }
    // Nothing changed.
    for round in 1..=2 {
        let (r, wall, calls) = measured_contacts_run(&w, &engine, alice.id).await?;
        print_run(
            &format!("run {round} with nothing changed at {count} links"),
            &r,
            wall,
            &calls,
        );
    }
    println!("  target: one list call, engine time independent of the number of links (<= 10 ms at 100,000)");
    if let Some(m) = peak_rss_mib() {
        println!("  peak memory after the no-change runs: {m:.0} MiB");
    }
    small_change_round(&w, &engine, tag.id, count).await
}

/// Edits on each side in [`small_change_round`].
const SMALL_CHANGE_EDITS: usize = 10;
/// The fewest People calls of a run carrying a few edits on each side after a settled sync: the
/// connections listing (which shows the Google edits) and one batch update (the CRM edits, with
/// the etags and records kept with the links).
pub const SMALL_CHANGE_MINIMUM: u64 = 2;

/// The small-change round of `bench contacts` (issue 18): after the settled runs, ten CRM edits
/// (job titles of person0..9) and ten Google edits (phones of person10..19, made as the user over
/// the People API), then one run, its calls against [`SMALL_CHANGE_MINIMUM`].
async fn small_change_round(
    w: &World,
    engine: &crate::sync::SyncEngine,
    tag: crmsync_engine::ids::TagId,
    count: usize,
) -> anyhow::Result<()> {
    let n = SMALL_CHANGE_EDITS;
    if count < 2 * n {
        println!(
            "small-change round: skipped (needs at least {} contacts)",
            2 * n
        );
        return Ok(());
    }
    let now = w.clock.now();
    let emails: Vec<String> = (0..n).map(|i| format!("person{i}@example.org")).collect();
    w.store.write(|c| {
        for mut x in crmsync_schema::sync_state::tagged_contacts_with_emails(c, tag, &emails)? {
            x.data.job_title = Some("Curator".into());
            contacts::update_contact(c, x.id, &x.data, crmsync_schema::changes::Origin::Api, now)?;
        }
        Ok(())
    })?;
    let token = w
        .emulator
        .call(
            reqwest::Method::POST,
            "/access-tokens",
            json!({"email": "alice@example.com", "scopes": [crmsync_connectors::SCOPE_CONTACTS]}),
        )
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let listed = w
        .emulator
        .http
        .get(format!(
            "{}/_emulator/users/alice@example.com/contacts",
            w.emulator.base
        ))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let wanted: Vec<String> = (n..2 * n)
        .map(|i| format!("person{i}@example.org"))
        .collect();
    let names: Vec<String> = listed["connections"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|p| {
            p["emailAddresses"][0]["value"]
                .as_str()
                .is_some_and(|e| wanted.iter().any(|x| x == e))
        })
        .filter_map(|p| p["resourceName"].as_str().map(String::from))
        .collect();
    for (i, rn) in names.iter().enumerate() {
        let people = format!("{}/v1/{rn}", w.emulator.base);
        let current: Value = w
            .emulator
            .http
            .get(format!("{people}?personFields=metadata"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let resp = w
            .emulator
            .http
            .patch(format!(
                "{people}:updateContact?updatePersonFields=phoneNumbers"
            ))
            .bearer_auth(&token)
            .json(&json!({
                "etag": current["etag"],
                "phoneNumbers": [{"value": format!("+44 20 7946 {i:04}"), "type": "mobile"}],
            }))
            .send()
            .await?;
        if !resp.status().is_success() {
            anyhow::bail!("editing {rn} in Google: {}", resp.status());
        }
    }
    let (r, wall, calls) = measured_contacts_run(w, engine, w.alice.id).await?;
    print_run(
        &format!(
            "small-change round ({n} CRM edits, {} Google edits) at {count} links",
            names.len()
        ),
        &r,
        wall,
        &calls,
    );
    let total: u64 = calls.iter().map(|(_, n, _)| n).sum();
    println!(
        "  minimum (the connections listing, one batch update): {SMALL_CHANGE_MINIMUM}; {total} calls, ratio {:.2}",
        total as f64 / SMALL_CHANGE_MINIMUM as f64
    );
    Ok(())
}

/// The fewest People calls an initial sync of `new_in_crm` tagged contacts can make when Google
/// already holds `in_google` contacts: batchCreate takes 200 people and each carries its
/// membership of the sync group, connections.list returns 1000 per page (one page even when
/// empty), and the sync group must be looked up once and created once.
pub fn initial_contacts_minimum(new_in_crm: usize, in_google: usize) -> usize {
    let creates = new_in_crm.div_ceil(200);
    let list_pages = in_google.div_ceil(1000).max(1);
    creates + list_pages + 2
}

/// `crmsync bench activities`.
pub async fn activities(
    count: usize,
    quota: u64,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let w = world(database_url).await?;
    w.emulator
        .call(
            reqwest::Method::PUT,
            "/quotas",
            json!({"calendar_per_user_per_minute": quota}),
        )
        .await?;
    let now = w.clock.now();
    let alice = w.alice.clone();
    w.store.write(|c| {
        settings::put_sync_settings(
            c,
            &NewSyncSettings {
                user_id: alice.id,
                kind: SyncKind::Activities,
                auto_sync: false,
                schedule: SyncSchedule::IntervalMinutes(15),
                tag_id: None,
                synchronize_from: None,
                trigger_words: vec![],
            },
            now,
        )
    })?;
    let start = Utc::now() + Duration::days(2);
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        w.store.write(|c| {
            for i in chunk {
                let s = start + Duration::minutes(30 * *i as i64);
                let data = ActivityData {
                    title: format!("Meeting {i}"),
                    time: ActivityTime::Timed {
                        start: s,
                        end: s + Duration::minutes(30),
                    },
                    time_zone: "Europe/London".into(),
                    location: None,
                    notes: None,
                    status: ActivityStatus::Planned,
                    display_in_calendar: true,
                    organizer_user_id: alice.id,
                    participants: vec![],
                };
                activities::create_activity(
                    c,
                    &data,
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now,
                )?;
            }
            Ok(())
        })?;
    }
    let engine = engine(&w);
    let before = w.emulator.stats().await?;
    let t = Instant::now();
    let r = engine
        .sync(
            alice.id,
            SyncKind::Activities,
            Trigger::Manual,
            RunOptions::default(),
        )
        .await?;
    let wall = t.elapsed();
    let calls = calls_between(&before, &w.emulator.stats().await?);
    print_run(
        &format!("pushing {count} new activities at {quota} requests/min/user"),
        &r,
        wall,
        &calls,
    );
    let total: u64 = calls.iter().map(|(_, n, _)| n).sum();
    let bound = total as f64 / quota as f64 * 60.0;
    println!(
        "  quota-bound time for {total} requests: {bound:.1} s; ratio {:.2} (target <= 1.2); rate-limit answers seen: {} (emulator errors: {})",
        wall.as_secs_f64() / bound,
        r.api_rate_limited,
        calls.iter().map(|(_, _, e)| e).sum::<u64>()
    );
    if let Some(m) = peak_rss_mib() {
        println!("  peak memory: {m:.0} MiB");
    }
    Ok(())
}

/// What the benchmark's webhook receiver got: when each record's event arrived (first time).
#[derive(Default)]
struct Received {
    at: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    bad_signatures: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

/// A healthy endpoint: verifies the signature as a receiver would, answers 204 at once.
async fn bench_receive(
    axum::extract::State((secret, got)): axum::extract::State<(Arc<String>, Arc<Received>)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let verified = standardwebhooks::Webhook::new(&secret)
        .map(|w| w.verify(&body, &headers).is_ok())
        .unwrap_or(false);
    if !verified {
        got.bad_signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let record = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["data"]["id"].as_str().map(str::to_string))
        .unwrap_or_default();
    if let Ok(mut at) = got.at.lock() {
        at.entry(record).or_insert_with(Instant::now);
    }
    got.arrived.notify_waiters();
    axum::http::StatusCode::NO_CONTENT
}

/// Waits until the receiver has `n` distinct records (at most `limit`).
async fn wait_received(got: &Received, n: usize, limit: std::time::Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let have = got.at.lock().map(|m| m.len()).unwrap_or(0);
        if have >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the receiver got {have} of {n} deliveries within {} s",
                limit.as_secs()
            );
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            got.arrived.notified(),
        )
        .await;
    }
}

/// `crmsync bench webhooks --changes N`: webhook delivery to a healthy endpoint on this machine
/// (SPEC 8: it must keep up with 100 changes per second). First N changes made by the sync
/// engine (origin sync, each written with its outbox row as a run writes it) wait in the outbox
/// and a delivery worker with the default settings sends them: deliveries per second until the
/// receiver has them all. Then changes are committed at 100 per second for 10 s while the worker
/// runs: the time from each commit to its arrival (p50, p95, max; the worker looks for new work
/// once a second).
pub async fn webhooks(changes: usize, database_url: Option<&str>) -> anyhow::Result<()> {
    use crate::webhooks::{DeliveryConfig, DeliveryWorker};
    use crmsync_schema::webhooks::{self as outbox, NewWebhook};
    let (url, _dir) = match database_url {
        Some(u) => (u.to_string(), None),
        None => {
            let d = tempfile::tempdir()?;
            (
                format!("sqlite://{}", d.path().join("bench.db").display()),
                Some(d),
            )
        }
    };
    let store = Store::open_with(
        &url,
        StoreOptions {
            max_connections: None,
            secret_key: SecretKeySource::Key(SecretBox::from_base64(&generate_key())?),
        },
    )?;
    store.run_migrations()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let secret = outbox::generate_secret();
    let got = Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(bench_receive))
        .with_state((Arc::new(secret.clone()), got.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let now = clock.now();
    let new = NewWebhook {
        url: format!("http://{addr}/hook"),
        event_types: outbox::EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        secret,
    };
    store.write(|c| outbox::create_webhook(&store, c, &new, now).map(|_| ()))?;
    let user = store.write(|c| {
        users::create_user(
            c,
            &NewUser {
                external_id: None,
                email: "alice@example.com".into(),
                display_name: "Alice".into(),
                google_alias: None,
                time_zone: None,
            },
            now,
        )
    })?;
    let origin = crmsync_schema::changes::Origin::Sync {
        run: crmsync_engine::ids::RunId::new_random(),
        user: user.id,
    };
    let contact = |i: usize| ContactData {
        given_name: format!("Client{i}"),
        family_name: "Synced".into(),
        emails: vec![Email {
            address: format!("client{i}@clients.test"),
            kind: EmailKind::Work,
            primary: true,
        }],
        ..Default::default()
    };
    println!("webhook delivery to a healthy endpoint on 127.0.0.1 ({}; the receiver verifies every signature)", store.kind().as_str());

    // 1. A backlog of N changes.
    let t = Instant::now();
    for chunk in (0..changes).collect::<Vec<_>>().chunks(100) {
        store.write(|c| {
            for i in chunk {
                contacts::create_contact(c, &contact(*i), &[], None, origin, clock.now())?;
            }
            Ok(())
        })?;
    }
    println!(
        "  {changes} sync-made changes written with their outbox rows in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let worker = DeliveryWorker::new(store.clone(), clock.clone(), DeliveryConfig::new("bench"))?;
    let handle = worker.handle();
    let task = tokio::spawn(worker.run());
    let t = Instant::now();
    wait_received(&got, changes, std::time::Duration::from_secs(600)).await?;
    let drain = t.elapsed().as_secs_f64();
    println!(
        "  backlog delivered in {drain:.2} s: {:.0} deliveries per second (target: keep up with 100 changes per second)",
        changes as f64 / drain.max(1e-9)
    );

    // 2. 100 changes per second for 10 s while the worker runs.
    let paced = 1000;
    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(paced);
    let start = Instant::now();
    for i in 0..paced {
        let due = start + std::time::Duration::from_millis(10 * i as u64);
        tokio::time::sleep_until(due.into()).await;
        let (c, data, now) = (origin, contact(changes + i), clock.now());
        let made = store
            .write_async(move |conn| contacts::create_contact(conn, &data, &[], None, c, now))
            .await?;
        committed.push((made.id.to_string(), Instant::now()));
    }
    let offered = start.elapsed().as_secs_f64();
    wait_received(&got, changes + paced, std::time::Duration::from_secs(600)).await?;
    let mut lags: Vec<f64> = {
        let at = got
            .at
            .lock()
            .map_err(|_| anyhow::anyhow!("the receiver's record is poisoned"))?;
        committed
            .iter()
            .filter_map(|(id, t)| {
                at.get(id)
                    .map(|r| r.saturating_duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "  {paced} changes offered at {:.0} per second: all delivered; commit to arrival p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        paced as f64 / offered,
        pct(0.5),
        pct(0.95),
        lags.last().copied().unwrap_or(0.0)
    );
    let bad = got
        .bad_signatures
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("  signatures that did not verify: {bad}");
    handle.shutdown();
    task.await??;
    server.abort();
    if let Some(m) = peak_rss_mib() {
        println!("  peak memory: {m:.0} MiB");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::initial_contacts_minimum;

    #[test]
    fn the_minimum_counts_create_batches_list_pages_and_the_group() {
        assert_eq!(initial_contacts_minimum(10_000, 0), 50 + 1 + 2);
        assert_eq!(initial_contacts_minimum(100_000, 0), 500 + 1 + 2);
        assert_eq!(initial_contacts_minimum(201, 0), 2 + 1 + 2);
        assert_eq!(initial_contacts_minimum(0, 2_500), 3 + 2);
    }
}
