//! The binary end to end: `crmsync admin-token create` prints a token, `crmsync serve` starts
//! (migrating the database) and answers the API with it, with no configuration on SQLite.

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
