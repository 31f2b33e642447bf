//! The admin page's jobs (issue 14, SPEC 6.5), each in Debian's headless Chromium against a
//! server, its scheduler and the Google emulator, and the routes added for them on both backends:
//!
//! - connect Google: upload a service-account key file, see its client id and scopes, and
//!   "Check" fail while a scope is not delegated (naming it) and pass once it is; save the OAuth
//!   client and get a user's "Connect Google" link;
//! - per user: create a sync tag in place, set an interval (a wrong one is refused as typed),
//!   save, press "Start synchronization" and see the last sync time change;
//! - a webhook added on the page, and its delivery of the run listed;
//! - a run stopped by the mass-untag guard undone, and one carried out, from the page;
//! - a user in `auth_error` resumed; the domain-wide pause switch turned on and off;
//! - a user's reset previewed (the dry run lists what the first run after it would do and
//!   writes nothing), cancelled, then carried out and followed to the end of its run; the
//!   reset route's refusals;
//! - the pause switch stops every claim of the scheduler (scheduled and started runs) until
//!   it is turned off; the service-account check route answers per scope;
//! - a schedule checked as typed, with its next three run times (`GET /schedule-preview`);
//! - a user's health (linked / awaiting / out of scope / failing) on the page and by the route;
//! - 2,000 users: the first screen makes a bounded number of API requests (counted) and the
//!   render time is printed; the next page is one more request; the phone layout;
//! - a user named `<img src=x onerror=alert(1)>` shows as text.
//!
//! The browser tests take screenshots of the main screens; with `CRMSYNC_SCREENSHOTS=1` they are
//! saved under `docs/screenshots/` (shown in the admin guide).

use crate::sched_support::{clocked, set_schedule, ApiWorld};
use crate::support::{assert_error, read, t0, TestApp};
use crate::sync_support::{SyncWorld, DOMAIN, SCOPES};
use crate::web::{browser, start_driver, text_when};
use chrono::{Duration as Span, SubsecRound, Utc};
use crmsync::api::AppState;
use crmsync::clock::SystemClock;
use crmsync::scheduler::schedule::JitterPolicy;
use crmsync_connectors::{GoogleAccount, GoogleEndpoints};
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::SyncSchedule;
use crmsync_engine::planner::LinkState;
use crmsync_schema::sync_state::{self, LinkWrite};
use crmsync_schema::test_support::TestDb;
use crmsync_schema::users::{self, NewUser};
use crmsync_schema::{admin_tokens, connections, db_test};
use fantoccini::{Client, Locator};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Scrolls the element `css` to the top of the window and takes a screenshot of the window; with
/// `CRMSYNC_SCREENSHOTS=1` it is saved as `docs/screenshots/{name}.png` (the admin guide's
/// pictures: `CRMSYNC_SCREENSHOTS=1 bash scripts/test -E 'test(/web_admin/)'` renews them, so an
/// ordinary test run leaves the tree alone).
async fn screenshot(b: &Client, css: &str, name: &str) {
    b.execute(
        "document.querySelector(arguments[0]).scrollIntoView({block: 'start'}); return true;",
        vec![json!(css)],
    )
    .await
    .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
    let png = b.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if std::env::var("CRMSYNC_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(b: &Client, css: &str, text: &str) {
    let e = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("clear");
    e.send_keys(text).await.expect("type");
}

/// Answers every confirmation dialog of the page with OK.
async fn accept_confirms(b: &Client) {
    b.execute("window.confirm = () => true; return true;", vec![])
        .await
        .expect("confirm");
}

async fn open_page(b: &Client, root: &str, token: &str) {
    b.goto(&format!("{root}/#token={token}"))
        .await
        .expect("open the page");
}

fn client_id(world: &SyncWorld) -> String {
    world
        .store
        .read(|c| connections::get_service_account(c, DOMAIN))
        .expect("read")
        .expect("a service account")
        .client_id
}

fn all_scopes() -> Vec<String> {
    SCOPES.map(String::from).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_connects_google_and_checks_the_scopes_in_a_browser() {
    let app = ApiWorld::start(SyncWorld::new(TestDb::sqlite()).await).await;
    let alice = app.world.alice.id;
    // A new key, as Google gives it, in a file the admin chooses.
    let key = app
        .world
        .emu
        .emulator()
        .create_service_account(DOMAIN, app.world.emu.base_url());
    let new_client = key["client_id"].as_str().expect("client_id").to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("service-account.json");
    std::fs::write(&path, key.to_string()).expect("the key file");

    let driver = start_driver().await;
    let b = browser(&driver).await;
    open_page(&b, &app.root, &app.token).await;
    text_when(&b, "#message", |t| t == "1 user(s).").await;
    // The setup is folded away once users can reach Google; a click (or Enter) opens it.
    click(&b, "#google-details > summary").await;
    let open = b
        .execute(
            "return document.querySelector('#google-details').open;",
            vec![],
        )
        .await
        .expect("open?");
    assert_eq!(open, json!(true));
    type_into(&b, "#sa-domain", DOMAIN).await;
    b.find(Locator::Css("#sa-key"))
        .await
        .expect("the file input")
        .send_keys(path.to_str().expect("a path"))
        .await
        .expect("choose the file");
    click(&b, "#sa-upload").await;
    let stored = text_when(&b, "#sa-result", |t| t.contains(&new_client)).await;
    for scope in SCOPES {
        assert!(stored.contains(scope), "the scopes to authorize: {stored}");
    }
    let sa = app
        .world
        .store
        .read(|c| connections::get_service_account(c, DOMAIN))
        .expect("read")
        .expect("stored");
    assert_eq!(sa.client_id, new_client, "the upload replaced the key");

    // Not delegated yet: the check fails and names both scopes.
    b.find(Locator::Css("#check-user"))
        .await
        .expect("the user choice")
        .select_by_value(&alice.to_string())
        .await
        .expect("choose alice");
    click(&b, "#sa-check").await;
    let failed = text_when(&b, "#check-result", |t| t.contains("Check failed")).await;
    assert!(
        failed.contains("missing scope(s) for alice@example.com")
            && failed.contains(SCOPES[0])
            && failed.contains(SCOPES[1])
            && failed.contains(&new_client),
        "{failed}"
    );
    // Only contacts delegated: the calendar scope is the one missing.
    app.world
        .emu
        .emulator()
        .authorize_delegation(&new_client, &[SCOPES[0].to_string()]);
    click(&b, "#sa-check").await;
    let one = text_when(&b, "#check-result", |t| {
        t.contains("Check failed") && !t.contains(&format!("alice@example.com: {}", SCOPES[0]))
    })
    .await;
    assert!(
        one.contains(&format!(
            "missing scope(s) for alice@example.com: {}.",
            SCOPES[1]
        )),
        "{one}"
    );
    screenshot(&b, "#google", "connect-google-check-failed").await;
    // Everything delegated: the check passes.
    app.world
        .emu
        .emulator()
        .authorize_delegation(&new_client, &all_scopes());
    click(&b, "#sa-check").await;
    let passed = text_when(&b, "#check-result", |t| t.contains("Check passed")).await;
    assert!(passed.contains("every scope is authorized"), "{passed}");
    screenshot(&b, "#google", "connect-google").await;

    // Or per-user OAuth: the client saved on the page, then "Connect Google" gives the link.
    let (oauth_id, oauth_secret) = app.world.emu.emulator().create_oauth_client();
    type_into(&b, "#oauth-id", &oauth_id).await;
    type_into(&b, "#oauth-secret", &oauth_secret).await;
    let redirect = b
        .find(Locator::Css("#oauth-redirect"))
        .await
        .expect("redirect")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(
        redirect.as_deref(),
        Some(format!("{}/oauth/callback", app.root).as_str())
    );
    click(&b, "#oauth-form button[type=submit]").await;
    text_when(&b, "#oauth-result", |t| {
        t.contains(&format!("OAuth client {oauth_id} stored"))
    })
    .await;
    click(&b, &format!("button[data-connect=\"{alice}\"]")).await;
    let note = format!("#users tbody tr[data-user-id=\"{alice}\"] .note");
    text_when(&b, &note, |t| {
        t.contains("Send alice@example.com this link")
    })
    .await;
    let href = b
        .find(Locator::Css(&format!("{note} a")))
        .await
        .expect("the link")
        .attr("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert!(href.contains(&format!("client_id={oauth_id}")), "{href}");
    let secret_left = b
        .find(Locator::Css("#oauth-secret"))
        .await
        .expect("secret field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(
        secret_left.as_deref(),
        Some(""),
        "the secret is cleared once saved"
    );

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_sets_tag_and_interval_starts_a_sync_and_lists_a_webhook_delivery_in_a_browser(
) {
    let app = ApiWorld::start(SyncWorld::new(TestDb::sqlite()).await).await;
    let bob = app.world.user("bob@example.com").await;
    let driver = start_driver().await;
    let b = browser(&driver).await;
    open_page(&b, &app.root, &app.token).await;
    text_when(&b, "#message", |t| t == "2 user(s).").await;
    let row = format!("#users tbody tr[data-user-id=\"{}\"]", bob.id);
    let before = text_when(&b, &row, |t| t.contains("bob@example.com")).await;
    assert_eq!(
        before.matches("No sync settings yet").count(),
        2,
        "{before}"
    );

    // A webhook for run events, added on the page: its secret is shown once.
    type_into(&b, "#webhook-url", "http://127.0.0.1:9/hooks/crmsync").await;
    type_into(&b, "#webhook-events", "sync_run.finished").await;
    click(&b, "#webhook-form button[type=submit]").await;
    text_when(&b, "#webhook-result", |t| t.contains("whsec_")).await;
    text_when(&b, "#webhook-list tbody", |t| {
        t.contains("http://127.0.0.1:9/hooks/crmsync") && t.contains("sync_run.finished")
    })
    .await;

    // Bob's settings: a new private tag made in place, an interval checked as typed.
    click(
        &b,
        &format!("button[data-settings=\"{}\"][data-kind=contacts]", bob.id),
    )
    .await;
    text_when(&b, "#settings-title", |t| t.contains("bob@example.com")).await;
    type_into(&b, "#new-tag", "Bob's clients").await;
    click(&b, "#create-tag").await;
    text_when(&b, "form[data-kind=contacts] .form-result", |t| {
        t.contains("Bob's clients created")
    })
    .await;
    click(&b, "#auto-contacts").await;
    type_into(&b, "#interval-contacts", "0").await;
    let hint = text_when(&b, "form[data-kind=contacts] .hint", |t| {
        t.contains("whole number")
    })
    .await;
    assert!(hint.contains("1 to 525600"), "{hint}");
    let save = b
        .find(Locator::Css("form[data-kind=contacts] button[type=submit]"))
        .await
        .expect("save");
    assert!(
        !save.is_enabled().await.expect("enabled?"),
        "a bad interval cannot be saved"
    );
    type_into(&b, "#interval-contacts", "30").await;
    let hint = text_when(&b, "form[data-kind=contacts] .hint", |t| {
        t.starts_with("Next runs")
    })
    .await;
    assert_eq!(hint.matches(';').count(), 2, "three run times: {hint}");
    assert!(hint.contains("Europe/London"), "in the user's zone: {hint}");
    screenshot(&b, "#settings", "user-settings").await;
    save.click().await.expect("save");
    text_when(&b, "form[data-kind=contacts] .form-result", |t| {
        t.contains("contacts settings saved")
    })
    .await;
    let (s, settings) = app
        .get(&format!("/users/{}/sync-settings/contacts", bob.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{settings}");
    assert_eq!(settings["auto_sync"], false);
    assert_eq!(settings["interval_minutes"], 30);
    let tag = settings["tag_id"].as_str().expect("a sync tag").to_string();
    let (_, tag) = app.get(&format!("/tags/{tag}")).await;
    assert_eq!(tag["name"], "Bob's clients");
    assert_eq!(tag["owner_user_id"], bob.id.to_string());

    // Activities: a cron expression, checked by the server as it is typed, with trigger words.
    b.find(Locator::Css("#mode-activities"))
        .await
        .expect("the schedule choice")
        .select_by_value("cron")
        .await
        .expect("cron");
    type_into(&b, "#cron-activities", "0 0 8 * *").await;
    text_when(&b, "form[data-kind=activities] .hint", |t| {
        t.contains("6 or 7 fields")
    })
    .await;
    type_into(&b, "#cron-activities", "0 0 25 * * *").await;
    let bad = text_when(&b, "form[data-kind=activities] .hint", |t| {
        t.contains("not a valid cron expression")
    })
    .await;
    assert!(bad.contains("0 0 25 * * *"), "{bad}");
    let save_activities = b
        .find(Locator::Css(
            "form[data-kind=activities] button[type=submit]",
        ))
        .await
        .expect("save");
    assert!(!save_activities.is_enabled().await.expect("enabled?"));
    type_into(&b, "#cron-activities", "0 0 8 * * *").await;
    let next = text_when(&b, "form[data-kind=activities] .hint", |t| {
        t.starts_with("Next runs (Europe/London)")
    })
    .await;
    assert_eq!(
        next.matches("8:00").count(),
        3,
        "three mornings at 8 in London: {next}"
    );
    type_into(&b, "#words-activities", "meeting, call").await;
    save_activities.click().await.expect("save");
    text_when(&b, "form[data-kind=activities] .form-result", |t| {
        t.contains("activities settings saved")
    })
    .await;
    let (s, act) = app
        .get(&format!("/users/{}/sync-settings/activities", bob.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{act}");
    assert_eq!(act["cron"], "0 0 8 * * *");
    assert_eq!(act["trigger_words"], json!(["meeting", "call"]));

    // Start synchronization: the last sync time changes from "—".
    let contacts = format!("{row} td[data-label=Contacts]");
    let shown = text_when(&b, &contacts, |t| t.contains("Start synchronization")).await;
    assert!(shown.contains("last success: —"), "{shown}");
    click(
        &b,
        &format!(
            "button[data-kind=contacts][data-user=\"{}\"]:not([data-guard])",
            bob.id
        ),
    )
    .await;
    text_when(&b, "#message", |t| t.starts_with("contacts: succeeded")).await;
    let after = text_when(&b, &contacts, |t| {
        t.contains("last success:") && !t.contains("last success: —")
    })
    .await;
    assert!(after.contains("idle"), "{after}");
    // Auto-sync is off here: the page claims no push (CRM edits wait for a start).
    assert!(!after.contains("push:"), "{after}");

    // The run's event, in the webhook's deliveries.
    click(&b, "button[data-deliveries]").await;
    text_when(&b, "#deliveries tbody", |t| t.contains("sync_run.finished")).await;
    // "Retry now": the delivery is due at once.
    click(&b, "#deliveries button[data-retry]").await;
    text_when(&b, "#webhook-result", |t| t.contains("is due now")).await;
    screenshot(&b, "#webhooks", "webhooks").await;

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}

/// Removes every member from the user's Google group and syncs through the API: the guard
/// stops the run.
async fn empty_group_and_sync(app: &ApiWorld, g: &GoogleAccount, group: &str, members: &[String]) {
    g.people()
        .modify_members(group, &[], members)
        .await
        .expect("empty the group");
    let alice = app.world.alice.id;
    let (s, run) = app
        .post(&format!("/users/{alice}/sync/contacts?wait=true"))
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "blocked", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_undoes_and_carries_out_blocked_runs_in_a_browser() {
    let app = ApiWorld::start(SyncWorld::new(TestDb::sqlite()).await).await;
    let w = &app.world;
    let alice = w.alice.id;
    for i in 0..12 {
        w.crm_contact("P", &format!("N{i}"), &format!("p{i}@example.org"));
    }
    let (s, run) = app
        .post(&format!("/users/{alice}/sync/contacts?wait=true"))
        .await;
    assert_eq!(
        (s, run["state"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{run}"
    );
    let g = w.google_as("alice@example.com").await;
    let group = w.group().expect("the sync group");
    let members: Vec<String> = w
        .group_members()
        .iter()
        .map(|p| p["resourceName"].as_str().expect("a name").to_string())
        .collect();
    assert_eq!(members.len(), 12);
    let row = format!("#users tbody tr[data-user-id=\"{alice}\"]");

    // Undo: the contacts go back into the Google group.
    empty_group_and_sync(&app, &g, &group, &members).await;
    let driver = start_driver().await;
    let b = browser(&driver).await;
    open_page(&b, &app.root, &app.token).await;
    let blocked = text_when(&b, &row, |t| t.contains("Stopped by the mass-untag guard")).await;
    assert!(
        blocked.contains("12 of 12"),
        "the guard's numbers: {blocked}"
    );
    // The user's health: every contact still linked.
    click(&b, &format!("button[data-health=\"{alice}\"]")).await;
    let health = text_when(&b, &format!("{row} .health"), |t| t.contains("contacts:")).await;
    assert!(
        health.contains("contacts: 12 linked, 0 awaiting Google, 0 out of scope, 0 failing"),
        "{health}"
    );
    screenshot(&b, "#fleet", "blocked-run").await;
    accept_confirms(&b).await;
    click(&b, "button[data-guard=restore]").await;
    text_when(&b, "#message", |t| t.starts_with("contacts: succeeded")).await;
    text_when(&b, &row, |t| !t.contains("Stopped by the mass-untag guard")).await;
    assert_eq!(w.group_members().len(), 12, "undone: back in the group");
    assert!(
        w.crm_all().iter().all(|c| c.tags.contains(&w.tag.id)),
        "nothing untagged"
    );

    // Carry out: the CRM contacts lose the tag (and keep their data).
    empty_group_and_sync(&app, &g, &group, &members).await;
    open_page(&b, &app.root, &app.token).await;
    text_when(&b, &row, |t| t.contains("Stopped by the mass-untag guard")).await;
    accept_confirms(&b).await;
    click(&b, "button[data-guard=confirm]").await;
    text_when(&b, "#message", |t| t.starts_with("contacts: succeeded")).await;
    let all = w.crm_all();
    assert_eq!(all.len(), 12, "no contact deleted");

    // The kind filter: alice's activities are not set up, her contacts are.
    b.find(Locator::Css("#kind-filter"))
        .await
        .expect("the kind filter")
        .select_by_value("activities")
        .await
        .expect("activities");
    text_when(&b, "#users tbody", |t| t == "No user matches.").await;
    b.find(Locator::Css("#kind-filter"))
        .await
        .expect("the kind filter")
        .select_by_value("contacts")
        .await
        .expect("contacts");
    text_when(&b, "#users tbody", |t| t.contains("alice@example.com")).await;
    assert!(
        all.iter().all(|c| !c.tags.contains(&w.tag.id)),
        "carried out: untagged"
    );

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_previews_a_reset_then_resets_in_a_browser() {
    let app = ApiWorld::start(SyncWorld::new(TestDb::sqlite()).await).await;
    let w = &app.world;
    let alice = w.alice.id;
    w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let bob = w.crm_contact("Bob", "Babbage", "bob@example.org");
    let (s, run) = app
        .post(&format!("/users/{alice}/sync/contacts?wait=true"))
        .await;
    assert_eq!(run["state"], "succeeded", "{s} {run}");
    // Bob drifts apart where no run sees it (his link takes the edit for the engine's own).
    let drifted = w.crm_update(bob.id, |d| d.job_title = Some("Drifted".into()));
    w.store
        .write(|c| {
            let l =
                sync_state::links_by_crm_ids(c, alice, SyncKind::Contacts, &[bob.id.to_string()])?
                    .remove(0);
            sync_state::set_link_crm_seq(c, l.id, drifted.change_seq)
        })
        .expect("drift");
    let writes = w.people_writes();

    // The route's refusals change nothing.
    let (s, body) = app
        .post(&format!("/users/{alice}/sync-reset/calendars"))
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, "unknown kind");
    let nobody = uuid::Uuid::new_v4();
    let (s, body) = app
        .post(&format!("/users/{nobody}/sync-reset/contacts?dry_run=true"))
        .await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "unknown user");
    let (s, body) = app
        .post(&format!(
            "/users/{alice}/sync-reset/activities?dry_run=true"
        ))
        .await;
    assert_error(s, &body, StatusCode::CONFLICT, "no activities settings");
    let (s, body) = app
        .post(&format!("/users/{alice}/sync-reset/activities"))
        .await;
    assert_error(s, &body, StatusCode::CONFLICT, "no activities settings");

    let driver = start_driver().await;
    let b = browser(&driver).await;
    open_page(&b, &app.root, &app.token).await;
    let row = format!("#users tbody tr[data-user-id=\"{alice}\"]");
    text_when(&b, &row, |t| t.contains("alice@example.com")).await;
    click(
        &b,
        &format!("button[data-reset-sync=\"{alice}\"][data-kind=contacts]"),
    )
    .await;
    let preview = text_when(&b, &format!("{row} [data-reset-preview=contacts]"), |t| {
        t.contains("would do")
    })
    .await;
    assert!(preview.contains("1 updated in Google"), "{preview}");
    assert!(
        preview.contains("Bob Babbage: updated in Google"),
        "{preview}"
    );
    assert!(
        !preview.contains("Ada"),
        "Ada agrees on both sides: {preview}"
    );
    screenshot(&b, &row, "reset-preview").await;
    assert_eq!(w.people_writes(), writes, "the dry run wrote to Google");
    // Cancel leaves everything as it was; the reset itself follows its run to the end.
    click(&b, "button[data-reset-cancel]").await;
    click(
        &b,
        &format!("button[data-reset-sync=\"{alice}\"][data-kind=contacts]"),
    )
    .await;
    text_when(&b, &format!("{row} [data-reset-preview=contacts]"), |t| {
        t.contains("would do")
    })
    .await;
    click(&b, "button[data-reset-go]").await;
    let said = text_when(&b, "#message", |t| t.contains("reset (")).await;
    assert!(
        said.contains("reset (2 pairs merged again)")
            && said.contains("succeeded")
            && said.contains("1 updated in Google"),
        "{said}"
    );
    let bob_title = w
        .google_contacts()
        .into_iter()
        .find(|p| p["emailAddresses"][0]["value"] == "bob@example.org")
        .expect("Bob in Google")["organizations"][0]["title"]
        .clone();
    assert_eq!(bob_title, "Drifted");
    assert_eq!(w.google_contacts().len(), 2, "no duplicate");

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_resumes_an_auth_error_user_and_pauses_the_domain_in_a_browser() {
    let app = ApiWorld::start(SyncWorld::new(TestDb::sqlite()).await).await;
    let alice = app.world.alice.id;
    let client = client_id(&app.world);
    // The grant is withdrawn in the Admin console: the run fails, alice is in auth_error.
    app.world.emu.emulator().authorize_delegation(&client, &[]);
    let (s, run) = app
        .post(&format!("/users/{alice}/sync/contacts?wait=true"))
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "failed", "{run}");
    let row = format!("#users tbody tr[data-user-id=\"{alice}\"]");

    let driver = start_driver().await;
    let b = browser(&driver).await;
    open_page(&b, &app.root, &app.token).await;
    let shown = text_when(&b, &row, |t| t.contains("Resume")).await;
    assert!(
        shown.contains("auth_error") && shown.contains("unauthorized_client"),
        "the state and Google's words: {shown}"
    );
    assert!(shown.contains("then press Resume"), "what to do: {shown}");
    assert!(
        !shown.contains("/api/v1"),
        "no API routes to call by hand: {shown}"
    );
    screenshot(&b, "#fleet", "auth-error").await;
    // The admin fixes the grant and presses Resume.
    app.world
        .emu
        .emulator()
        .authorize_delegation(&client, &all_scopes());
    click(&b, "button[data-resume]").await;
    let msg = text_when(&b, "#message", |t| t.starts_with("Resume")).await;
    assert!(msg.contains("contacts: succeeded"), "{msg}");
    text_when(&b, &row, |t| !t.contains("auth_error")).await;
    let (_, st) = app.get(&format!("/users/{alice}/sync-status")).await;
    assert_eq!(st["connection"]["state"], "active", "{st}");

    // The domain-wide switch: paused, the start buttons say so; then resumed.
    click(&b, "#pause").await;
    text_when(&b, "#message", |t| t == "All sync is paused.").await;
    text_when(&b, &row, |t| t.contains("Paused")).await;
    let (_, p) = app.get("/sync-pause").await;
    assert_eq!(p["paused"], true, "{p}");
    let start = b
        .find(Locator::Css("button[data-kind=contacts][data-user]"))
        .await
        .expect("the start button");
    assert!(!start.is_enabled().await.expect("enabled?"));
    screenshot(&b, "body", "paused").await;
    click(&b, "#pause").await;
    text_when(&b, "#message", |t| t == "Sync resumed.").await;
    text_when(&b, &row, |t| t.contains("Start synchronization")).await;
    let (_, p) = app.get("/sync-pause").await;
    assert_eq!(p["paused"], false, "{p}");

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}

/// An API server over the world's store without a scheduler of its own (the test steps one).
async fn api_without_scheduler(world: &SyncWorld) -> (String, String) {
    let (_, token) = world
        .store
        .write(|c| admin_tokens::create_admin_token(c, "test", Utc::now()))
        .expect("token");
    let state = AppState::new(world.store.clone(), Arc::new(SystemClock))
        .with_google(GoogleEndpoints::emulator(world.emu.base_url()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(crmsync::server::serve(
        state,
        listener,
        std::future::pending(),
    ));
    (format!("http://{addr}/api/v1"), token)
}

async fn call(
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.expect("request")).await
}

db_test!(async fn the_pause_switch_stops_every_claim_until_turned_off(db) {
    let world = SyncWorld::new(db).await;
    world.crm_contact("Ann", "Able", "ann@clients.test");
    let (base, token) = api_without_scheduler(&world).await;
    let (s, p) = call(&base, &token, Method::GET, "/sync-pause", None).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p, json!({"paused": false, "changed_at": null, "message": "sync runs as scheduled"}));

    let (s, p) = call(&base, &token, Method::PUT, "/sync-pause", Some(json!({"paused": true}))).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["paused"], true);
    assert!(p["message"].as_str().unwrap().contains("paused"), "{p}");
    let (_, again) = call(&base, &token, Method::GET, "/sync-pause", None).await;
    assert_eq!(again["paused"], true);

    // Due on a schedule, and started by hand: nothing is claimed while paused.
    let start = Utc::now().trunc_subsecs(0);
    let (sched, clock) = clocked(&world, start, JitterPolicy::none());
    set_schedule(&world, &world.alice, SyncKind::Contacts, true, SyncSchedule::IntervalMinutes(5), start);
    assert!(sched.run_pending().await.unwrap().is_empty(), "a scheduled run while paused");
    clock.set(start + Span::days(1));
    assert!(sched.run_pending().await.unwrap().is_empty(), "a scheduled run while paused");
    let (s, queued) = call(&base, &token, Method::POST, &format!("/users/{}/sync/contacts", world.alice.id), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    assert!(sched.run_pending().await.unwrap().is_empty(), "a started run while paused");

    // Bad input changes nothing.
    for bad in [json!({}), json!({"paused": "no"}), json!({"paused": false, "colour": 1}), json!([])] {
        let (s, v) = call(&base, &token, Method::PUT, "/sync-pause", Some(bad.clone())).await;
        assert!(s.is_client_error(), "{bad}: {s} {v}");
        assert_error(s, &v, s, "bad pause body");
    }
    let (_, still) = call(&base, &token, Method::GET, "/sync-pause", None).await;
    assert_eq!(still["paused"], true, "bad input changed the switch");

    // Resumed: the waiting run goes.
    let (s, p) = call(&base, &token, Method::PUT, "/sync-pause", Some(json!({"paused": false}))).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["paused"], false);
    let run_id = queued["run_id"].as_str().unwrap().to_string();
    let mut passes = 0;
    loop {
        let done = sched.run_pending().await.unwrap();
        assert!(!done.is_empty() || passes > 0, "nothing ran after the pause");
        let (_, run) = call(&base, &token, Method::GET, &format!("/sync-runs/{run_id}"), None).await;
        if run["state"] == "succeeded" {
            break;
        }
        passes += 1;
        assert!(passes < 3, "the run waiting since the pause never ran: {run}");
    }
});

db_test!(async fn the_service_account_check_names_the_missing_scopes(db) {
    let world = SyncWorld::new(db).await;
    let (base, token) = api_without_scheduler(&world).await;
    let alice = world.alice.id;
    let client = client_id(&world);
    let check = |user: String| {
        let (base, token) = (base.clone(), token.clone());
        async move {
            call(&base, &token, Method::POST, "/google/service-account/check", Some(json!({"user_id": user}))).await
        }
    };
    let (s, ok) = check(alice.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{ok}");
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["missing"], json!([]));
    assert_eq!(ok["subject"], "alice@example.com");
    assert_eq!(ok["client_id"], client.as_str());
    assert_eq!(ok["scopes"].as_array().map(Vec::len), Some(2));

    world.emu.emulator().authorize_delegation(&client, &[SCOPES[1].to_string()]);
    let (s, v) = check(alice.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["missing"], json!([SCOPES[0]]));
    let scope0 = v["scopes"].as_array().unwrap().iter().find(|s| s["scope"] == SCOPES[0]).cloned().unwrap();
    assert!(scope0["error"].as_str().unwrap_or("").contains("unauthorized_client"), "{scope0}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(SCOPES[0]) && msg.contains(&client) && msg.contains("Domain-wide delegation"), "{msg}");

    world.emu.emulator().authorize_delegation(&client, &[]);
    let (_, none) = check(alice.to_string()).await;
    assert_eq!(none["missing"], json!(SCOPES));

    // Bad input: a clear 4xx.
    let (s, v) = check(uuid::Uuid::new_v4().to_string()).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "no such user");
    let (s, v) = check("not-a-uuid".into()).await;
    assert!(s.is_client_error(), "{s} {v}");
    assert_error(s, &v, s, "bad id");
    let (s, v) = call(&base, &token, Method::POST, "/google/service-account/check", Some(json!({}))).await;
    assert!(s.is_client_error(), "{s} {v}");
    // A user Google does not know (not in the Workspace): said as it is, not as missing scopes.
    world.emu.emulator().authorize_delegation(&client, &SCOPES.map(String::from));
    let ghost = world.store.write(|c| users::create_user(c, &NewUser {
        external_id: None,
        email: "ghost@example.com".into(),
        display_name: "Ghost".into(),
        google_alias: None,
        time_zone: None,
    }, Utc::now())).unwrap();
    let (s, v) = check(ghost.id.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["missing"], json!([]), "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("another reason than the scopes") && msg.contains("invalid_grant"), "{msg}");

    // A user of a domain without a key: 409 saying what to do.
    let other = world.store.write(|c| users::create_user(c, &NewUser {
        external_id: None,
        email: "olga@other.test".into(),
        display_name: "Olga".into(),
        google_alias: None,
        time_zone: None,
    }, Utc::now())).unwrap();
    let (s, v) = check(other.id.to_string()).await;
    assert_eq!(assert_error(s, &v, StatusCode::CONFLICT, "no key for the domain"), "conflict");
    assert!(v["error"]["message"].as_str().unwrap().contains("other.test"), "{v}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_stays_quick_with_2000_users_in_a_browser() {
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let first = app
        .store
        .write(|c| {
            // The list is in id order: the smallest id is on the first screen.
            let mut first: Option<crmsync_engine::ids::UserId> = None;
            for i in 0..2000 {
                let u = users::create_user(
                    c,
                    &NewUser {
                        external_id: None,
                        email: format!("user{i:04}@example.com"),
                        display_name: format!("User {i:04}"),
                        google_alias: None,
                        time_zone: None,
                    },
                    t0(),
                )?;
                if first.is_none_or(|f| u.id.to_string() < f.to_string()) {
                    first = Some(u.id);
                }
            }
            Ok(first.expect("a user"))
        })
        .expect("2,000 users");
    // Two contacts of the first user were sent to Google and await its confirmation.
    app.store
        .write(|c| {
            for _ in 0..2 {
                let w = LinkWrite {
                    crm_id: uuid::Uuid::new_v4().to_string(),
                    google_id: None,
                    state: LinkState::Pending,
                    snapshot: Default::default(),
                    etag: None,
                    google_updated: None,
                    crm_change_seq: 0,
                    pending_since: Some(t0()),
                    end_reason: None,
                    google_record: None,
                };
                sync_state::insert_link(c, first, SyncKind::Contacts, &w, t0())?;
            }
            Ok(())
        })
        .expect("pending links");
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let driver = start_driver().await;
    let b = browser(&driver).await;
    let started = Instant::now();
    open_page(&b, &root, &app.token).await;
    text_when(&b, "#message", |t| t == "Users 1–100.").await;
    let rows = b
        .find_all(Locator::Css("#users tbody tr"))
        .await
        .expect("rows");
    let waited = started.elapsed();
    assert_eq!(rows.len(), 100, "one page of users");
    // The page's own measure: from navigation start to the table filled.
    let rendered = b
        .execute("return Number(document.body.dataset.renderedMs);", vec![])
        .await
        .expect("the page's render mark");
    println!(
        "2,000 users: first screen rendered {:.0} ms after navigation (page clock), {} ms as seen by the test",
        rendered.as_f64().unwrap_or(f64::NAN),
        waited.as_millis()
    );
    let row = text_when(
        &b,
        &format!("#users tbody tr[data-user-id=\"{first}\"]"),
        |t| t.contains("@example.com"),
    )
    .await;
    assert!(row.contains("2 records await"), "{row}");
    text_when(&b, "#page-info", |t| t.contains("more on the next page")).await;

    // The requests of the first screen: a bounded few, none per user.
    let urls = api_requests(&b).await;
    println!("first screen: {} API requests: {urls:?}", urls.len());
    assert!(urls.len() <= 5, "{urls:?}");
    let count = |needle: &str| urls.iter().filter(|u| u.contains(needle)).count();
    assert_eq!(count("/api/v1/sync-status?"), 1, "{urls:?}");
    assert_eq!(
        count("/api/v1/users"),
        0,
        "no user list besides the status page: {urls:?}"
    );
    screenshot(&b, "#fleet", "fleet").await;

    // The next page: one more request.
    let first_screen = text_when(&b, "#users tbody", |t| !t.is_empty()).await;
    click(&b, "#next-page").await;
    text_when(&b, "#message", |t| t == "Users 101–200.").await;
    let second = text_when(&b, "#users tbody", |t| t != first_screen).await;
    assert!(!second.contains(&row), "the next page shows other users");
    assert_eq!(
        b.find_all(Locator::Css("#users tbody tr"))
            .await
            .expect("rows")
            .len(),
        100
    );
    let after = api_requests(&b).await;
    assert_eq!(
        after
            .iter()
            .filter(|u| u.contains("/api/v1/sync-status?"))
            .count(),
        2,
        "{after:?}"
    );

    // A phone: the table becomes one card per user, nothing wider than the screen.
    b.set_window_size(390, 844).await.expect("phone size");
    let width = b
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await
        .expect("widths");
    let (scroll, inner) = (
        width[0].as_i64().unwrap_or(0),
        width[1].as_i64().unwrap_or(0),
    );
    assert!(
        scroll <= inner + 1,
        "the page scrolls sideways on a phone: {width}"
    );
    screenshot(&b, "#fleet", "fleet-phone").await;

    // The token is kept for the session only.
    let stored = b
        .execute(
            "return [sessionStorage.getItem('crmsync.token'), localStorage.getItem('crmsync.token')];",
            vec![],
        )
        .await
        .expect("storage");
    assert_eq!(stored, json!([app.token, null]));

    b.close().await.expect("close the browser");
    drop(driver);
}

/// The API requests the page made so far.
async fn api_requests(b: &Client) -> Vec<String> {
    let urls = b
        .execute(
            "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('/api/v1/'));",
            vec![],
        )
        .await
        .expect("resource timing");
    serde_json::from_value(urls).expect("urls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_hostile_values_as_text_in_a_browser() {
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let (s, u) = app
        .post(
            "/users",
            json!({"email": "mallory@example.com", "display_name": hostile}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let driver = start_driver().await;
    let b = browser(&driver).await;
    open_page(&b, &root, &app.token).await;
    let rows = text_when(&b, "#users tbody", |t| t.contains("mallory@example.com")).await;
    assert!(rows.contains(hostile), "the name shows as text: {rows}");
    let found = b
        .execute(
            "return [document.querySelectorAll('img').length, \
                     Array.from(document.querySelectorAll('#check-user option')).map((o) => o.textContent)];",
            vec![],
        )
        .await
        .expect("inspect");
    assert_eq!(found[0], json!(0), "an element was made from a value");
    assert!(
        found[1].to_string().contains("onerror=alert(1)"),
        "the user choice shows it as text: {found}"
    );
    // No dialog opened.
    assert!(b.get_alert_text().await.is_err(), "an alert ran");
    // Its settings title, too.
    click(&b, "button[data-settings][data-kind=contacts]").await;
    let title = text_when(&b, "#settings-title", |t| t.starts_with("Settings of")).await;
    assert_eq!(title, format!("Settings of {hostile}"));

    // Every control has a label (the settings forms open), and the page works by keyboard: Enter
    // in the token field applies it.
    let unlabelled = b
        .execute(
            "return Array.from(document.querySelectorAll('input, select, textarea')) \
                 .filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id || e.outerHTML);",
            vec![],
        )
        .await
        .expect("labels");
    assert_eq!(unlabelled, json!([]), "controls without a label");
    let token = b.find(Locator::Css("#token")).await.expect("token field");
    token.clear().await.expect("clear");
    token
        .send_keys("crm_wrong\u{E007}")
        .await
        .expect("type and Enter");
    text_when(&b, "#message", |t| t.contains("token")).await;

    b.close().await.expect("close the browser");
    drop(driver);
}

db_test!(async fn the_health_route_counts_linked_and_failing_records(db) {
    let world = SyncWorld::new(db).await;
    world.crm_contact("Ann", "Able", "ann@clients.test");
    world.crm_contact("Bea", "Best", "bea@clients.test");
    world.sync_contacts().await;
    let (base, token) = api_without_scheduler(&world).await;
    let alice = world.alice.id;
    let (s, h) = call(&base, &token, Method::GET, &format!("/users/{alice}/sync-health"), None).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["user_id"], alice.to_string());
    let c = &h["kinds"]["contacts"];
    assert_eq!(
        (c["linked"].as_i64(), c["awaiting_confirmation"].as_i64(), c["out_of_scope"].as_i64(), c["failing"].as_i64()),
        (Some(2), Some(0), Some(0), Some(0)),
        "{h}"
    );
    assert_eq!(c["failing_records"], json!([]));
    assert_eq!(h["kinds"]["activities"]["linked"], 0);

    let (s, v) = call(&base, &token, Method::GET, &format!("/users/{}/sync-health", uuid::Uuid::new_v4()), None).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "no such user");
    let (s, v) = call(&base, &token, Method::GET, "/users/not-a-user/sync-health", None).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad id");
});

db_test!(async fn the_schedule_preview_checks_a_schedule_and_shows_its_next_runs(db) {
    let app = TestApp::start(&db).await;
    let (s, v) = app.get("/schedule-preview?interval_minutes=15").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["schedule"], "every 15 minutes");
    assert_eq!(v["time_zone"], "UTC");
    let next: Vec<chrono::DateTime<Utc>> = serde_json::from_value(v["next"].clone()).unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(next[1] - next[0], Span::minutes(15));
    assert_eq!(next[0], t0() + Span::minutes(15), "from the server's clock");

    let (s, v) = app.get("/schedule-preview?cron=0%200%208%20*%20*%20*&time_zone=Europe/London").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["schedule"], "cron 0 0 8 * * *");
    let local: Vec<String> = serde_json::from_value(v["next_local"].clone()).unwrap();
    assert_eq!(local.len(), 3);
    assert!(local.iter().all(|t| t.contains("T08:00:00")), "{local:?}");

    for (bad, what) in [
        ("/schedule-preview", "neither"),
        ("/schedule-preview?interval_minutes=5&cron=0%200%208%20*%20*%20*", "both"),
        ("/schedule-preview?interval_minutes=0", "interval 0"),
        ("/schedule-preview?interval_minutes=ten", "interval not a number"),
        ("/schedule-preview?cron=0%200%2025%20*%20*%20*", "hour 25"),
        ("/schedule-preview?cron=*%20*%20*%20*%20*%20*", "every second"),
        ("/schedule-preview?interval_minutes=5&time_zone=Mars/Olympus", "unknown zone"),
    ] {
        let (s, v) = app.get(bad).await;
        assert_eq!(assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, what), "validation_failed", "{what}");
    }
    let (s, v) = app.get("/schedule-preview?interval_minutes=5&colour=red").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "unknown parameter");
});
