//! The binary's scheduler commands end to end, on both backends: `crmsync sync` goes through the
//! job queue and leases (and skips kinds without settings under `--kind all`), and
//! `crmsync status` prints per user and kind the state, last successful sync, next due time and
//! last error (the API's data; `--json` is the API's shape).

use crate::sync_support::SCOPES;
use chrono::Utc;
use crmsync_emulator::EmulatorServer;
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{SyncSchedule, TagVisibility};
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{
    connections, contacts, db_test, runs, settings, tags, users, SecretKeySource, Store,
    StoreOptions,
};
use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_crmsync");

fn crmsync(db_url: &str, key: &str, google: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--google-endpoint")
        .arg(google)
        .env("DATABASE_URL", db_url)
        .env("CRMSYNC_SECRET_KEY", key)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run crmsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

db_test!(async fn sync_and_status_commands_use_the_job_queue_and_show_the_status(db) {
    let key = generate_key();
    let store = Store::open_with(
        db.url(),
        StoreOptions {
            max_connections: Some(2),
            secret_key: SecretKeySource::Key(SecretBox::from_base64(&key).unwrap()),
        },
    )
    .unwrap();
    let emu = EmulatorServer::start_local().await.unwrap();
    let sa = emu.emulator().create_service_account("example.com", emu.base_url());
    emu.emulator().authorize_delegation(sa["client_id"].as_str().unwrap(), &SCOPES.map(String::from));
    emu.emulator().create_user("alice@example.com").unwrap();
    let sa_json = sa.to_string();
    let now = Utc::now();
    let alice = store
        .write(|c| {
            connections::put_service_account(&store, c, "example.com", &sa_json, now)?;
            let alice = users::create_user(
                c,
                &NewUser {
                    external_id: None,
                    email: "alice@example.com".into(),
                    display_name: "Alice".into(),
                    google_alias: None,
                    time_zone: None,
                },
                now,
            )?;
            let tag = tags::create_tag(
                c,
                &NewTag { external_id: None, name: "Clients".into(), visibility: TagVisibility::Private, owner_user_id: Some(alice.id) },
                now,
            )?;
            settings::put_sync_settings(
                c,
                &NewSyncSettings {
                    user_id: alice.id,
                    kind: SyncKind::Contacts,
                    auto_sync: true,
                    schedule: SyncSchedule::IntervalMinutes(30),
                    tag_id: Some(tag.id),
                    synchronize_from: None,
                    trigger_words: vec![],
                },
                now,
            )?;
            contacts::create_contact(
                c,
                &crate::sync_support::contact_data("Ann", "Able", "ann@clients.test"),
                &[tag.id],
                None,
                crmsync_schema::changes::Origin::Api,
                now,)?;
            Ok(alice)
        })
        .unwrap();
    let google = emu.base_url().to_string();

    let (ok, out, err) = crmsync(db.url(), &key, &google, &["sync", "--user", "alice@example.com"]);
    assert!(ok, "sync failed: {out}\n{err}");
    assert!(out.contains("contacts sync for alice@example.com: succeeded"), "{out}");
    assert!(out.contains("activities sync for alice@example.com: skipped (no activities sync settings)"), "{out}");
    assert_eq!(emu.emulator().contacts("alice@example.com").len(), 1);
    // The run went through the job table: it is the job's last run, with a worker name.
    let history = store.read(|c| runs::list_runs(c, Some(alice.id), None, None, 10)).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].trigger, "manual");
    assert!(history[0].worker.is_some());
    let job = store
        .read(|c| crmsync_schema::jobs::get_job(c, alice.id, SyncKind::Contacts))
        .unwrap()
        .expect("job");
    assert_eq!(job.last_run_id, Some(history[0].id));
    assert!(job.lease_owner.is_none());

    // An explicit kind without settings is an error that says what to do.
    let (ok, _, err) = crmsync(db.url(), &key, &google, &["sync", "--user", "alice@example.com", "--kind", "activities"]);
    assert!(!ok);
    assert!(err.contains("no activities sync settings") && err.contains("sync-settings/activities"), "{err}");

    let (ok, out, err) = crmsync(db.url(), &key, &google, &["status", "--user", "alice@example.com"]);
    assert!(ok, "{err}");
    assert!(out.contains("<alice@example.com>") && out.contains("connection: active (service_account)"), "{out}");
    let contacts_line = out.lines().find(|l| l.trim_start().starts_with("contacts")).expect("a contacts line");
    assert!(contacts_line.contains("idle") && contacts_line.contains("every 30 minutes"), "{contacts_line}");
    assert!(!contacts_line.contains("last success: -"), "{contacts_line}");
    let activities_line = out.lines().find(|l| l.trim_start().starts_with("activities")).expect("an activities line");
    assert!(activities_line.contains("not_configured"), "{activities_line}");

    let (ok, out, err) = crmsync(db.url(), &key, &google, &["status", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["email"], "alice@example.com");
    assert_eq!(v[0]["kinds"]["contacts"]["state"], "idle");
    assert!(v[0]["kinds"]["contacts"]["last_success_at"].is_string());

    // A run that fails shows its error and what to do on the status; the next success clears it.
    emu.emulator().set_faults(vec![crmsync_emulator::FaultRule::error("people.people.connections.list", 404, 1)]);
    let (ok, out, err) = crmsync(db.url(), &key, &google, &["sync", "--user", "alice@example.com", "--kind", "contacts"]);
    emu.emulator().clear_faults();
    assert!(!ok, "a failed run is a failed command: {out}\n{err}");
    let (ok, out, err) = crmsync(db.url(), &key, &google, &["status", "--user", "alice@example.com"]);
    assert!(ok, "{err}");
    let error_line = out.lines().find(|l| l.trim_start().starts_with("last error:")).unwrap_or_else(|| panic!("no last error line: {out}"));
    assert!(error_line.contains("404") || error_line.to_lowercase().contains("not found"), "{error_line}");
    let contacts_line = out.lines().find(|l| l.trim_start().starts_with("contacts")).expect("a contacts line");
    assert!(!contacts_line.contains("last success: -"), "the earlier success is still shown: {contacts_line}");
    let (ok, out, err) = crmsync(db.url(), &key, &google, &["sync", "--user", "alice@example.com", "--kind", "contacts"]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = crmsync(db.url(), &key, &google, &["status", "--user", "alice@example.com"]);
    assert!(ok, "{err}");
    assert!(!out.contains("last error:"), "a success clears the error: {out}");

    let (ok, _, err) = crmsync(db.url(), &key, &google, &["status", "--user", "nobody@example.com"]);
    assert!(!ok && err.contains("no CRM user has the e-mail nobody@example.com"), "{err}");
    emu.shutdown().await;
});
