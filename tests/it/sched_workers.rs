//! Scale-out on a real PostgreSQL (a PostgreSQL feature: `FOR UPDATE SKIP LOCKED` and leases, so
//! this test exists only as `_postgres`): three `crmsync worker` processes share one database and
//! an emulator in this process. 50 users with both kinds due: every due run happens exactly once.
//! A worker killed with SIGKILL in the middle of a run, after some of its event inserts reached
//! Google and before it recorded them, has that run taken over (the same run id) after its lease
//! expires, with no duplicate in Google and no lost change; every run finishes exactly once across
//! the three workers' logs; the others stop gracefully on SIGTERM.

use crate::sync_support::{meeting, SCOPES};
use chrono::{Duration, Utc};
use crmsync_emulator::{EmulatorServer, FaultRule};
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{SyncSchedule, TagVisibility, User};
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::test_support::TestDb;
use crmsync_schema::users::NewUser;
use crmsync_schema::{
    activities, connections, contacts, jobs, runs, settings, tags, users, SecretKeySource, Store,
    StoreOptions,
};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_crmsync");
const USERS: usize = 50;
const VICTIM_ACTIVITIES: usize = 6;
/// How many of the victim's inserts reach Google before its worker is killed.
const FAST_INSERTS: usize = 3;

struct Worker {
    name: String,
    child: Child,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_worker(name: &str, db_url: &str, key: &str, google: &str, logs: &Path) -> Worker {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
    let child = Command::new(BIN)
        .args([
            "worker",
            "--worker-id",
            name,
            "--concurrency",
            "4",
            "--lease-secs",
            "3",
            "--tick-ms",
            "100",
            "--max-jitter-secs",
            "0",
            "--shutdown-grace-secs",
            "20",
            "--google-endpoint",
            google,
        ])
        .env("DATABASE_URL", db_url)
        .env("CRMSYNC_SECRET_KEY", key)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start crmsync worker");
    Worker {
        name: name.to_string(),
        child,
    }
}

fn email(i: usize) -> String {
    format!("u{i:02}@example.com")
}

/// A user with a private sync tag, both kinds on auto-sync every hour, two tagged contacts and
/// activities on the CRM side, one event of their own on the Google side.
fn seed_user(store: &Store, i: usize, activities_count: usize) -> User {
    let now = Utc::now();
    store
        .write(|c| {
            let user = users::create_user(
                c,
                &NewUser {
                    external_id: None,
                    email: email(i),
                    display_name: format!("User {i}"),
                    google_alias: None,
                    time_zone: Some("Europe/Berlin".into()),
                },
                now,
            )?;
            let tag = tags::create_tag(
                c,
                &NewTag {
                    external_id: None,
                    name: format!("Clients of {i}"),
                    visibility: TagVisibility::Private,
                    owner_user_id: Some(user.id),
                },
                now,
            )?;
            for kind in SyncKind::ALL {
                settings::put_sync_settings(
                    c,
                    &NewSyncSettings {
                        user_id: user.id,
                        kind,
                        auto_sync: true,
                        schedule: SyncSchedule::IntervalMinutes(60),
                        tag_id: (kind == SyncKind::Contacts).then_some(tag.id),
                        synchronize_from: None,
                        trigger_words: vec![],
                    },
                    now,
                )?;
            }
            for n in 0..2 {
                let data = crate::sync_support::contact_data(
                    &format!("Client{n}"),
                    &format!("Of{i}"),
                    &format!("client{n}.of{i}@clients.test"),
                );
                contacts::create_contact(
                    c,
                    &data,
                    &[tag.id],
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now,
                )?;
            }
            for n in 0..activities_count {
                let start = now + Duration::days(1) + Duration::hours(n as i64);
                let data = meeting(
                    &format!("Meeting {n} of {i}"),
                    &user,
                    start,
                    30,
                    "Europe/Berlin",
                    vec![],
                );
                activities::create_activity(
                    c,
                    &data,
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now,
                )?;
            }
            Ok(user)
        })
        .expect("seed a user")
}

async fn google_event(emu: &EmulatorServer, i: usize) {
    let token = emu
        .emulator()
        .mint_access_token(&email(i), &SCOPES.map(String::from))
        .expect("token");
    let start = Utc::now() + Duration::days(2);
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/calendar/v3/calendars/primary/events?sendUpdates=none",
            emu.base_url()
        ))
        .bearer_auth(token)
        .json(&json!({
            "summary": format!("Google event of {i}"),
            "start": {"dateTime": start.to_rfc3339(), "timeZone": "Europe/Berlin"},
            "end": {"dateTime": (start + Duration::hours(1)).to_rfc3339(), "timeZone": "Europe/Berlin"},
        }))
        .send()
        .await
        .expect("insert sent");
    assert!(resp.status().is_success(), "{}", resp.status());
}

async fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_every_due_run_once_and_take_over_a_killed_one_postgres() {
    let db = TestDb::postgres();
    let key = generate_key();
    let store = Store::open_with(
        db.url(),
        StoreOptions {
            max_connections: Some(6),
            secret_key: SecretKeySource::Key(SecretBox::from_base64(&key).expect("key")),
        },
    )
    .expect("open the test database");
    let emu = EmulatorServer::start_local().await.expect("emulator");
    let sa = emu
        .emulator()
        .create_service_account("example.com", emu.base_url());
    emu.emulator()
        .authorize_delegation(sa["client_id"].as_str().unwrap(), &SCOPES.map(String::from));
    let sa_json = sa.to_string();
    store
        .write(|c| {
            connections::put_service_account(&store, c, "example.com", &sa_json, Utc::now())
                .map(|_| ())
        })
        .expect("service account");
    let mut people = Vec::new();
    for i in 0..USERS {
        emu.emulator()
            .create_user(&email(i))
            .expect("Workspace user");
        people.push(seed_user(
            &store,
            i,
            if i == 0 { VICTIM_ACTIVITIES } else { 1 },
        ));
        google_event(&emu, i).await;
    }
    let victim = people[0].clone();
    // The victim's first inserts go through at once and the rest are slow, so its worker is killed
    // after it has written to Google and before it has recorded those writes as done: the takeover
    // must adopt what is already there, not insert it again.
    let pass = FaultRule {
        status: None,
        times: Some(FAST_INSERTS as u64),
        ..FaultRule::error("calendar.events.insert", 500, 0).for_user(&email(0))
    };
    emu.emulator().set_faults(vec![
        pass,
        FaultRule {
            status: None,
            times: None,
            ..FaultRule::error("calendar.events.insert", 500, 0)
                .for_user(&email(0))
                .delay_ms(2500)
        },
    ]);

    let logs = tempfile::tempdir().expect("log dir");
    let mut workers: Vec<Worker> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| spawn_worker(n, db.url(), &key, emu.base_url(), logs.path()))
        .collect();

    // Wait until the victim's activities run is under way, then kill its worker.
    let (owner, run_id) = until(60, "the victim's activities run to start", || {
        let j = store
            .read(|c| jobs::get_job(c, victim.id, SyncKind::Activities))
            .ok()??;
        let (owner, run) = (j.lease_owner.clone()?, j.running_run_id?);
        let r = store.read(|c| runs::get_run(c, run)).ok()??;
        r.started_at.map(|_| (owner, run))
    })
    .await;
    // Its first inserts are in Google (besides the event made in Google) while the run goes on.
    until(30, "the victim's first inserts to reach Google", || {
        (emu.emulator().calendar_events(&email(0)).len() > FAST_INSERTS).then_some(())
    })
    .await;
    let idx = workers
        .iter()
        .position(|w| w.name == owner)
        .expect("a known worker");
    let mut killed = workers.remove(idx);
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    let killed_at = Utc::now();
    // Make the retried inserts quick again (the takeover still has to adopt or redo them).
    emu.emulator().clear_faults();

    // Every job has run and been released.
    until(90, "every job to be released after its run", || {
        let all = store.read(jobs::all_jobs).ok()?;
        (all.len() == USERS * 2
            && all
                .iter()
                .all(|j| j.last_run_id.is_some() && j.lease_owner.is_none()))
        .then_some(())
    })
    .await;

    // Exactly one run per (user, kind), every one succeeded.
    let counts = store.read(runs::count_runs).expect("count runs");
    let mut per_job: HashMap<(String, SyncKind), Vec<(String, i64)>> = HashMap::new();
    for (u, k, state, n) in counts {
        per_job
            .entry((u.to_string(), k))
            .or_default()
            .push((state, n));
    }
    assert_eq!(per_job.len(), USERS * 2);
    for (job, states) in &per_job {
        assert_eq!(
            states,
            &vec![("succeeded".to_string(), 1)],
            "runs of {job:?}"
        );
    }
    // The victim's run was taken over by another worker after the lease expired: same run id.
    let run = store
        .read(|c| runs::get_run(c, run_id))
        .unwrap()
        .expect("the run");
    assert_eq!(run.state, "succeeded");
    let finisher = run.worker.clone().unwrap_or_default();
    assert!(
        finisher != owner && !finisher.is_empty(),
        "finished by {finisher}, killed {owner}"
    );
    assert!(run.finished_at.is_some_and(|t| t > killed_at));
    let took_over = workers.iter().any(|w| {
        std::fs::read_to_string(logs.path().join(format!("{}.log", w.name)))
            .unwrap_or_default()
            .contains("taking over a run")
    });
    assert!(took_over, "no surviving worker logged the takeover");

    // Google: no duplicate, nothing lost. CRM: every Google event imported once.
    for (i, u) in people.iter().enumerate() {
        let google_contacts = emu.emulator().contacts(&email(i));
        assert_eq!(google_contacts.len(), 2, "contacts of {}", email(i));
        let live: Vec<_> = emu
            .emulator()
            .calendar_events(&email(i))
            .into_iter()
            .filter(|e| e["status"] != "cancelled")
            .collect();
        let expected = if i == 0 { VICTIM_ACTIVITIES } else { 1 } + 1;
        assert_eq!(live.len(), expected, "events of {}: {live:#?}", email(i));
        let mut titles: Vec<String> = live
            .iter()
            .map(|e| e["summary"].as_str().unwrap_or("").to_string())
            .collect();
        titles.sort();
        titles.dedup();
        assert_eq!(
            titles.len(),
            expected,
            "a duplicated event for {}",
            email(i)
        );
        let crm = store
            .read(|c| activities::list_activities(c, None, 1000))
            .expect("activities")
            .into_iter()
            .filter(|a| a.data.organizer_user_id == u.id)
            .count();
        assert_eq!(crm, expected, "CRM activities of {}", email(i));
    }

    // The surviving workers stop gracefully on SIGTERM.
    for w in &mut workers {
        let st = Command::new("kill")
            .args(["-TERM", &w.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
    }
    for w in &mut workers {
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(s) = w.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                w.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert!(status.success(), "{} exited with {status}", w.name);
    }
    let busy: Vec<(String, usize)> = workers
        .iter()
        .map(|w| {
            let log = std::fs::read_to_string(logs.path().join(format!("{}.log", w.name)))
                .unwrap_or_default();
            (w.name.clone(), log.matches("run done").count())
        })
        .collect();
    // Every run finished exactly once across all three workers, the killed one included: no run
    // was carried out twice (the runs table alone would not show a run finished by two workers).
    // The survivors stopped gracefully, so their logs are complete; the killed worker may have
    // committed a run (it runs several at once) and died before logging it, so its share is
    // what the runs table says it finished (at least what it logged).
    let killed_logged = std::fs::read_to_string(logs.path().join(format!("{owner}.log")))
        .unwrap_or_default()
        .matches("run done")
        .count();
    let killed_done = store
        .read(|c| runs::list_runs(c, None, None, None, 1000))
        .expect("runs")
        .iter()
        .filter(|r| r.worker.as_deref() == Some(owner.as_str()) && r.finished_at.is_some())
        .count();
    assert!(
        killed_logged <= killed_done,
        "{owner} logged {killed_logged} runs done, finished {killed_done}"
    );
    let total_done: usize = busy.iter().map(|(_, n)| n).sum::<usize>() + killed_done;
    assert_eq!(
        total_done,
        USERS * 2,
        "runs finished: {busy:?} and {killed_done} by the killed {owner} ({killed_logged} logged)"
    );
    eprintln!("runs finished per surviving worker: {busy:?} (killed: {owner})");
    assert!(
        busy.iter().all(|(_, n)| *n > 0),
        "a worker did no work: {busy:?}"
    );
}
