//! The admin page: served without a token as HTML that calls the API; and, in a real browser
//! (Debian's headless chromium driven through chromedriver over WebDriver), the token from the
//! link is used, users and their per-kind status are listed, "Start synchronization" runs a sync
//! and shows its outcome, the run appears in the history, its changes open from it, and a wrong
//! token shows the API's error instead of an empty page. Every answer carries the security
//! headers (the page its strict CSP), and `/api/v1/sync-status` pages and filters by state. The
//! admin jobs of the page (issue 14) are tested in `web_admin.rs`, with this file's browser
//! helpers.

use crate::sched_support::ApiWorld;
use crate::support::{assert_error, id_of, read, TestApp};
use crate::sync_support::SyncWorld;
use crmsync_schema::db_test;
use crmsync_schema::test_support::TestDb;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_admin_page_is_served() {
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let resp = reqwest::get(format!("{root}/")).await.expect("GET /");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    let body = resp.text().await.expect("body");
    assert!(body.contains("Start synchronization") && body.contains("/sync-status"));
    // The script is a file of its own (the CSP allows no inline script).
    let script = reqwest::get(format!("{root}/app.js"))
        .await
        .expect("GET /app.js")
        .text()
        .await
        .expect("script");
    assert!(script.contains("Start synchronization") && script.contains("/sync-status"));
}

/// A chromedriver process on a free loopback port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver runs in its own process group: take the browser it started down with it
        // (a failed test never reaches the session's close).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(env: &str, candidates: &[&str]) -> String {
    if let Ok(p) = std::env::var(env) {
        return p;
    }
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| {
            panic!(
                "{} not found (looked in {candidates:?}; set {env} to its path). Install Debian's \
                 browser for the admin page test: apt-get install -y chromium chromium-driver \
                 (bash .ci/run does).",
                candidates[0]
            )
        })
}

pub(crate) async fn start_driver() -> Driver {
    let program = find_program(
        "CRMSYNC_CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not answer on {}", driver.url);
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    let chromium = find_program(
        "CRMSYNC_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session through chromedriver")
}

/// Waits until the element's text satisfies `ok`, and returns it.
pub(crate) async fn text_when(b: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(e) = b.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never showed what was expected; last text: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_starts_a_sync_and_shows_runs_and_changes_in_a_browser() {
    let app = ApiWorld::start(SyncWorld::new(TestDb::sqlite()).await).await;
    app.world.crm_contact("Ada", "Lovelace", "ada@example.org");
    let driver = start_driver().await;
    let b = browser(&driver).await;

    // A wrong token: the API's message, not an empty page.
    b.goto(&format!("{}/#token=crm_wrong", app.root))
        .await
        .expect("open the page");
    let msg = text_when(&b, "#message", |t| t.contains("token")).await;
    assert!(!msg.contains("user(s)"), "{msg}");

    // The admin's link carries the token; it is kept and removed from the address bar.
    b.goto(&format!("{}/#token={}", app.root, app.token))
        .await
        .expect("open the page");
    text_when(&b, "#message", |t| t == "1 user(s).").await;
    let url = b.current_url().await.expect("url");
    assert!(
        !url.as_str().contains("token"),
        "token left in the URL: {url}"
    );
    let users = text_when(&b, "#users tbody", |t| t.contains("alice@example.com")).await;
    assert!(
        users.contains("not_configured") && users.contains("No sync settings yet: press Settings"),
        "activities have no settings, and the page says how to fix it on the page: {users}"
    );
    assert!(!users.contains("PUT /api"), "no curl instructions: {users}");
    assert_eq!(users.matches("last success: —").count(), 1, "{users}");

    // Start synchronization (contacts): the outcome, then the run in the history.
    b.find(Locator::Css("button[data-kind=contacts][data-user]"))
        .await
        .expect("the contacts button")
        .click()
        .await
        .expect("click");
    text_when(&b, "#message", |t| t.starts_with("contacts: succeeded")).await;
    let runs = text_when(&b, "#runs tbody", |t| t.contains("succeeded")).await;
    assert!(
        runs.contains("manual") && runs.contains("created 1"),
        "{runs}"
    );
    assert_eq!(
        app.world.google_contacts().len(),
        1,
        "the click really synced"
    );
    // The status was reloaded: the contacts column now has a last successful sync time.
    text_when(&b, "#users tbody", |t| {
        t.matches("last success: —").count() == 0
    })
    .await;

    // The run's changes, from the history.
    b.find(Locator::Css("#runs a[data-run]"))
        .await
        .expect("a run link")
        .click()
        .await
        .expect("click");
    let changes = text_when(&b, "#journal tbody", |t| t.contains("new_in_crm")).await;
    assert!(
        changes.contains("create") && changes.contains("ada@example.org"),
        "{changes}"
    );
    text_when(&b, "#journal-title", |t| t.contains("change(s)")).await;
    // A record's history, from its id in the changes.
    b.find(Locator::Css("#journal a[data-record]"))
        .await
        .expect("a record link")
        .click()
        .await
        .expect("click");
    text_when(&b, "#journal-title", |t| t.starts_with("History of record")).await;
    let history = text_when(&b, "#journal tbody", |t| t.contains("ada@example.org")).await;
    assert!(history.contains("create"), "{history}");

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}

/// The headers every answer carries: not cached, not sniffed, no referrer, not framed.
fn assert_security_headers(h: &HeaderMap, what: &str) {
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name} header in {h:?}"))
            .to_string()
    };
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}: {h:?}"
    );
}

/// The value of one directive of a Content-Security-Policy.
fn csp_directive(csp: &str, name: &str) -> Option<String> {
    csp.split(';').map(str::trim).find_map(|d| {
        d.strip_prefix(name)
            .filter(|rest| rest.starts_with(' '))
            .map(|rest| rest.trim().to_string())
    })
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let client = reqwest::Client::new();

    // The page: a strict CSP without inline script, and never framed.
    let resp = client.get(format!("{root}/")).send().await.expect("GET /");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_security_headers(resp.headers(), "GET /");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    let script_src = csp_directive(&csp, "script-src").expect("a script-src directive");
    assert_eq!(script_src, "'self'", "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(
        csp_directive(&csp, "default-src").as_deref(),
        Some("'none'"),
        "{csp}"
    );
    assert_eq!(
        csp_directive(&csp, "frame-ancestors").as_deref(),
        Some("'none'"),
        "{csp}"
    );
    let html = resp.text().await.expect("page");
    for (i, _) in html.match_indices("<script") {
        assert!(
            html[i..].starts_with("<script src="),
            "an inline script in the page: {}",
            &html[i..(i + 60).min(html.len())]
        );
    }
    assert!(
        !html.contains(" style=") && !html.contains("<style"),
        "inline styles in the page"
    );
    let lower = html.to_lowercase();
    assert!(
        !lower.contains(" onclick=") && !lower.contains(" onload="),
        "inline handlers"
    );

    // Its script and style sheet.
    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let resp = client
            .get(format!("{root}{path}"))
            .send()
            .await
            .expect(path);
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_security_headers(resp.headers(), path);
        let ct = resp.headers()["content-type"].to_str().unwrap_or("");
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let text = resp.text().await.expect("body");
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage.setItem",
        ] {
            assert!(!text.contains(banned), "{path} uses {banned}");
        }
    }

    // An answer carrying contact data, and API errors (not found, no token, bad JSON).
    let (s, c) = app
        .post(
            "/contacts",
            json!({"given_name": "Grace", "family_name": "Hopper",
                   "emails": [{"address": "grace@navy.example", "kind": "work"}], "phones": []}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = id_of(&c);
    let resp = client
        .get(format!("{}/contacts/{id}", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("GET contact");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_security_headers(resp.headers(), "GET /api/v1/contacts/{id}");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("application/json"));
    let missing = format!("{}/contacts/{}", app.base, uuid::Uuid::new_v4());
    for (what, req) in [
        (
            "a missing contact",
            client.get(&missing).bearer_auth(&app.token),
        ),
        (
            "no token",
            client.get(format!("{}/contacts/{id}", app.base)),
        ),
        (
            "bad JSON",
            client
                .post(format!("{}/contacts", app.base))
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .body("{"),
        ),
        (
            "an unknown API route",
            client
                .get(format!("{}/nope", app.base))
                .bearer_auth(&app.token),
        ),
        ("an unknown route", client.get(format!("{root}/nope"))),
    ] {
        let resp = req.send().await.expect(what);
        assert_security_headers(resp.headers(), what);
        let (s, body) = read(resp).await;
        assert!(s.is_client_error(), "{what}: {s} {body}");
        assert_error(s, &body, s, what);
    }

    // The OAuth callback page, even when it can only say what went wrong.
    let resp = client
        .get(format!("{root}/oauth/callback"))
        .send()
        .await
        .expect("GET /oauth/callback");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_security_headers(resp.headers(), "GET /oauth/callback");
    let resp = client
        .get(format!("{root}/oauth/callback?code=x&state=nope"))
        .send()
        .await
        .expect("GET /oauth/callback?state");
    assert_security_headers(resp.headers(), "GET /oauth/callback?code&state");

    // An unsupported method on a page route: a JSON 405 saying what is allowed.
    for (method, path) in [
        (Method::POST, "/"),
        (Method::DELETE, "/"),
        (Method::PUT, "/app.js"),
        (Method::POST, "/oauth/callback"),
    ] {
        let what = format!("{method} {path}");
        let resp = client
            .request(method, format!("{root}{path}"))
            .send()
            .await
            .expect("request");
        assert_security_headers(resp.headers(), &what);
        let allow = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(allow.contains("GET"), "{what}: Allow {allow:?}");
        let (s, body) = read(resp).await;
        let code = assert_error(s, &body, StatusCode::METHOD_NOT_ALLOWED, &what);
        assert_eq!(code, "method_not_allowed", "{what}");
    }
}

db_test!(async fn the_bulk_status_route_pages_and_filters_by_state(db) {
    let app = TestApp::start(&db).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.user(&format!("user{i}@example.com")).await);
    }
    ids.sort();
    // Two users have a contacts sync waiting for a worker (no scheduler here): `queued`.
    for id in [&ids[1], &ids[3]] {
        let tag = app.tag(&format!("sync {id}"), "private", Some(id)).await;
        let (s, v) = app
            .put(
                &format!("/users/{id}/sync-settings/contacts"),
                Some(json!({"auto_sync": false, "interval_minutes": 60, "tag_id": tag})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = app.post(&format!("/users/{id}/sync/contacts"), json!({})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }

    // Every user, in id order, over pages of 2, 2 and 1.
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/sync-status?limit=2&cursor={c}"),
            None => "/sync-status?limit=2".to_string(),
        };
        let (s, page) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    let order: Vec<&str> = seen.iter().map(|i| i["user_id"].as_str().expect("user_id")).collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // Each item: the user's name next to exactly what GET /users/{id}/sync-status answers.
    for item in &seen {
        let id = item["user_id"].as_str().unwrap();
        let (s, single) = app.get(&format!("/users/{id}/sync-status")).await;
        assert_eq!(s, StatusCode::OK, "{single}");
        assert!(item["email"].as_str().is_some_and(|e| e.ends_with("@example.com")), "{item}");
        assert_eq!(item["display_name"], item["email"], "{item}");
        let mut without_name = item.clone();
        without_name.as_object_mut().unwrap().remove("display_name");
        assert_eq!(without_name, single);
    }
    let states: Vec<&str> = seen
        .iter()
        .map(|i| i["kinds"]["contacts"]["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        states,
        ["not_configured", "queued", "not_configured", "queued", "not_configured"]
    );

    // Only the users with a kind in a state; paged the same way.
    let (s, q) = app.get("/sync-status?state=queued").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let queued: Vec<&str> = q["items"].as_array().unwrap().iter().map(|i| i["user_id"].as_str().unwrap()).collect();
    assert_eq!(queued, [ids[1].as_str(), ids[3].as_str()]);
    assert_eq!(q["next_cursor"], Value::Null);
    let (_, p1) = app.get("/sync-status?state=queued&limit=1").await;
    assert_eq!(p1["items"][0]["user_id"], ids[1].as_str());
    let c1 = p1["next_cursor"].as_str().expect("a full page continues");
    let (_, p2) = app.get(&format!("/sync-status?state=queued&limit=1&cursor={c1}")).await;
    assert_eq!(p2["items"][0]["user_id"], ids[3].as_str());
    assert_eq!(p2["items"].as_array().map(Vec::len), Some(1));
    let c2 = p2["next_cursor"].as_str().expect("a full page continues");
    let (_, p3) = app.get(&format!("/sync-status?state=queued&limit=1&cursor={c2}")).await;
    assert_eq!(p3["items"], json!([]));
    assert_eq!(p3["next_cursor"], Value::Null);
    let (_, all) = app.get("/sync-status?state=not_configured").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(5), "every user has activities not configured");
    let (_, none) = app.get("/sync-status?state=auth_error").await;
    assert_eq!(none["items"], json!([]));
    let (_, empty) = app.get("/sync-status?state=").await;
    assert_eq!(empty["items"].as_array().map(Vec::len), Some(5), "an empty state is no filter");
    // By kind: queued contacts are two users; no user has queued activities.
    let (_, k) = app.get("/sync-status?state=queued&kind=contacts").await;
    assert_eq!(k["items"].as_array().map(Vec::len), Some(2), "{k}");
    let (_, k) = app.get("/sync-status?state=queued&kind=activities").await;
    assert_eq!(k["items"], json!([]));
    // With errors: user 3's contacts runs failed (a stored last error); overdue: user 1's
    // contacts were due an hour ago with auto-sync on.
    app.store
        .write(|c| {
            let id3: crmsync_engine::ids::UserId = ids[3].parse().expect("id");
            let id1: crmsync_engine::ids::UserId = ids[1].parse().expect("id");
            use crmsync::clock::Clock;
            use crmsync_schema::diesel::prelude::*;
            use crmsync_schema::schema::{sync_jobs, sync_settings};
            crmsync_schema::diesel::update(sync_jobs::table.filter(sync_jobs::user_id.eq(id3.to_string())))
                .set(sync_jobs::last_error.eq(Some("Google said no")))
                .execute(c)?;
            crmsync_schema::diesel::update(sync_settings::table.filter(sync_settings::user_id.eq(id1.to_string())))
                .set(sync_settings::auto_sync.eq(true))
                .execute(c)?;
            crmsync_schema::diesel::update(sync_jobs::table.filter(sync_jobs::user_id.eq(id1.to_string())))
                .set(sync_jobs::next_due_at.eq(Some((app.clock.now() - chrono::Duration::hours(1)).naive_utc())))
                .execute(c)?;
            Ok(())
        })
        .expect("an error and an overdue job");
    let (_, e) = app.get("/sync-status?errors=true").await;
    let with_errors: Vec<&str> = e["items"].as_array().expect("items").iter().filter_map(|i| i["user_id"].as_str()).collect();
    assert_eq!(with_errors, [ids[3].as_str()], "{e}");
    let (_, o) = app.get("/sync-status?overdue=true&kind=contacts").await;
    let overdue: Vec<&str> = o["items"].as_array().expect("items").iter().filter_map(|i| i["user_id"].as_str()).collect();
    assert_eq!(overdue, [ids[1].as_str()], "{o}");
    let (s, v) = app.get("/sync-status?kind=calendar").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Bad input: a clear 400, never a crash.
    for bad in [
        "/sync-status?state=sleeping",
        "/sync-status?limit=0",
        "/sync-status?limit=501",
        "/sync-status?cursor=not-a-user",
        "/sync-status?colour=red",
    ] {
        let (s, v) = app.get(bad).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, bad);
    }
    // And a token, as every API route.
    let resp = reqwest::get(format!("{}/sync-status", app.base)).await.expect("no token");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
});
