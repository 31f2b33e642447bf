//! The binary end to end: `crmsync admin-token create` prints a token, `crmsync serve` starts
//! (migrating the database) and answers the API with it, with no configuration on SQLite;
//! `crmsync demo --no-serve` and `crmsync bench contacts` run end to end.

use crate::support::read;
use crmsync_schema::db_test;
use reqwest::StatusCode;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crmsync");

fn crmsync(dir: &Path, database_url: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CRMSYNC_LISTEN")
        .env("RUST_LOG", "warn");
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    cmd
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn create_token_serve_and_call(dir: &Path, database_url: Option<&str>) {
    let out = crmsync(dir, database_url)
        .args(["admin-token", "create", "--label", "cli-test"])
        .output()
        .expect("run crmsync");
    assert!(
        out.status.success(),
        "admin-token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(token.starts_with("crm_"), "{token}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        crmsync(dir, database_url)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve"),
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/users");
    let deadline = Instant::now() + Duration::from_secs(30);
    let resp = loop {
        match client.get(&url).bearer_auth(&token).send().await {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("serve did not answer: {e}"),
        }
    };
    let (status, body) = read(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], serde_json::json!([]));
    let (status, _) = read(client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn serve_runs_on_sqlite_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    create_token_serve_and_call(dir.path(), None).await;
    assert!(
        dir.path().join("crmsync.db").exists(),
        "the default database is ./crmsync.db"
    );
}

db_test!(async fn serve_uses_the_database_url(db) {
    let dir = tempfile::tempdir().unwrap();
    create_token_serve_and_call(dir.path(), Some(db.url())).await;
});

/// The README's first command without the serving part: `crmsync demo --no-serve` seeds both
/// sides, syncs for real through the built-in emulator, prints both sides and leaves no database
/// behind in the working folder.
#[test]
fn demo_seeds_syncs_and_prints_both_sides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = crmsync(dir.path(), None)
        .args(["demo", "--no-serve", "--emulator-listen", "127.0.0.1:0"])
        .output()
        .expect("run crmsync demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "alice@example.com contacts: succeeded",
        "alice@example.com activities: succeeded",
        "bob@example.com activities: succeeded",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // Contacts made on either side are on both; the untagged one stays in the CRM only.
    let google = stdout
        .split("Google Contacts of alice@example.com")
        .nth(1)
        .and_then(|s| s.split("CRM contacts:").next())
        .expect("the Google contacts section");
    for name in [
        "Ada Lovelace",
        "Grace Hopper",
        "Katherine Johnson",
        "Linus Pauling",
    ] {
        assert!(google.contains(name), "{name} not in Google:\n{google}");
    }
    assert!(
        !google.contains("Una Tagged"),
        "an untagged contact reached Google"
    );
    // The organizer's meeting is on the participant's calendar too, once.
    let bob = stdout
        .split("Google Calendar of bob@example.com")
        .nth(1)
        .and_then(|s| s.split("CRM activities:").next())
        .expect("bob's calendar section");
    assert_eq!(bob.matches("Quarterly review with Ada").count(), 1, "{bob}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the demo left files behind: {left:?}");
}

/// `crmsync bench contacts` measures a real initial sync against the SPEC 8 call budget (API
/// calls are counted, not timed): at most 1.05 x the minimum, one list call when nothing
/// changed, and two (the listing, one batch update) for ten edits on each side (issue 18).
#[test]
fn bench_contacts_stays_within_the_call_budget() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = crmsync(dir.path(), None)
        .args(["bench", "contacts", "--contacts", "1000"])
        .output()
        .expect("run crmsync bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number_after = |text: &str, key: &str| -> Vec<u64> {
        text.match_indices(key)
            .filter_map(|(i, _)| {
                text[i + key.len()..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .collect()
    };
    let calls = number_after(&stdout, "API calls:");
    assert_eq!(
        calls.len(),
        4,
        "initial run, two unchanged runs and the small-change round:\n{stdout}"
    );
    let minimum = number_after(&stdout, "one group create):");
    assert_eq!(minimum, vec![5 + 1 + 2], "{stdout}");
    assert!(
        calls[0] as f64 <= 1.05 * minimum[0] as f64,
        "{} calls for a minimum of {}:\n{stdout}",
        calls[0],
        minimum[0]
    );
    assert_eq!(&calls[1..], &[1, 1, 2], "{stdout}");
    assert!(
        stdout.contains("small-change round (10 CRM edits, 10 Google edits)"),
        "{stdout}"
    );
    assert_eq!(
        number_after(&stdout, "one batch update):"),
        vec![2],
        "{stdout}"
    );
    assert!(stdout.contains("created in Google: 1000"), "{stdout}");
}
