//! The admin page: served without a token as HTML that calls the API; and, in a real browser
//! (Debian's headless chromium driven through chromedriver over WebDriver), the token from the
//! link is used, users and their per-kind status are listed, "Start synchronization" runs a sync
//! and shows its outcome, the run appears in the history, its changes open from it, and a wrong
//! token shows the API's error instead of an empty page.

use crate::sched_support::ApiWorld;
use crate::support::TestApp;
use crate::sync_support::SyncWorld;
use crmsync_schema::test_support::TestDb;
use fantoccini::{Client, ClientBuilder, Locator};
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
}

/// A chromedriver process on a free loopback port, killed on drop.
struct Driver {
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

async fn start_driver() -> Driver {
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

async fn browser(driver: &Driver) -> Client {
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
async fn text_when(b: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
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
        users.contains("not_configured") && users.contains("sync-settings/activities"),
        "activities have no settings, and the page says how to fix it: {users}"
    );
    assert_eq!(users.matches("last success: —").count(), 2, "{users}");

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
        t.matches("last success: —").count() == 1
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

    b.close().await.expect("close the browser");
    drop(driver);
    app.stop().await;
}
