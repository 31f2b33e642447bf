//! Operations routes outside `/api/v1`, without a token: `GET /metrics` counts a sync started
//! through the API (the run by kind, trigger and state, its duration, the scheduling lag, and the
//! Google calls by method and status) without personal data in any label; `GET /healthz`
//! answers 200; `GET /readyz` answers 200, and 503 with a JSON reason when migrations are
//! pending or the database is gone; `crmsync worker --metrics-listen` serves the three.

// Test code: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::sched_support::ApiWorld;
use crate::support::{read, TestApp};
use crate::sync_support::SyncWorld;
use crmsync_schema::db_test;
use crmsync_schema::diesel::connection::SimpleConnection;
use crmsync_schema::diesel::Connection;
use crmsync_schema::test_support::{revert_last_migration, TEST_POSTGRES_ENV};
use crmsync_schema::DbKind;
use reqwest::StatusCode;
use std::collections::BTreeMap;

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            Sample {
                name,
                labels,
                value: value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {l:?}")),
            }
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include `labels`.
fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(client: &reqwest::Client, root: &str) -> (String, Vec<Sample>) {
    let resp = client
        .get(format!("{root}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

db_test!(async fn metrics_count_a_sync_started_through_the_api(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let alice = app.world.alice.id;
    app.world.crm_contact("Ann", "Able", "ann@clients.test");
    // The scrape needs no token (counters are process-wide: compare before and after).
    let (_, before) = scrape(&app.client, &app.root).await;

    let (s, run) = app.post(&format!("/users/{alice}/sync/contacts?wait=true")).await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "succeeded", "{run}");
    let (text, after) = scrape(&app.client, &app.root).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        total(&after, name, labels) - total(&before, name, labels)
    };

    // The run, by kind, trigger and state; its duration; the scheduling lag.
    let run_labels = [("kind", "contacts"), ("trigger", "manual"), ("state", "succeeded")];
    assert_eq!(grew("crmsync_sync_runs_total", &run_labels), 1.0, "{text}");
    assert_eq!(
        grew("crmsync_sync_run_duration_seconds_count", &[("kind", "contacts"), ("state", "succeeded")]),
        1.0,
        "{text}"
    );
    assert!(
        total(&after, "crmsync_sync_run_duration_seconds_bucket", &[("kind", "contacts"), ("le", "+Inf")]) >= 1.0,
        "a histogram with buckets: {text}"
    );
    assert_eq!(grew("crmsync_scheduler_lag_seconds_count", &[("trigger", "manual")]), 1.0, "{text}");
    assert_eq!(total(&after, "crmsync_sync_runs_in_progress", &[("kind", "contacts")]), 0.0);

    // The Google calls of the run, by method and status: the contacts listing, the group, and
    // the create of Ann.
    assert!(grew("crmsync_google_requests_total", &[("method", "people.people.connections.list"), ("status", "200")]) >= 1.0, "{text}");
    let created: f64 = after
        .iter()
        .filter(|s| s.name == "crmsync_google_requests_total")
        .filter(|s| s.labels["method"].contains("atchCreateContacts") || s.labels["method"].contains("createContact"))
        .filter(|s| s.labels["status"] == "200")
        .map(|s| s.value)
        .sum();
    assert!(created >= 1.0, "the create of Ann is counted: {text}");
    assert!(grew("crmsync_google_calls_total", &[("result", "ok")]) >= 3.0, "{text}");
    // Every Google request has a method and a status label, and they agree with the per-run
    // count of the run's report.
    for s in after.iter().filter(|s| s.name == "crmsync_google_requests_total") {
        assert!(s.labels.contains_key("method") && s.labels.contains_key("status"), "{s:?}");
    }
    assert!(text.contains("# TYPE crmsync_google_rate_limited_total counter") || !text.contains("crmsync_google_rate_limited_total"));

    // Overdue jobs are read from the database at scrape time.
    assert!(text.contains("crmsync_jobs_overdue{trigger=\"schedule\"}"), "{text}");
    assert!(text.contains("crmsync_jobs_oldest_overdue_seconds"), "{text}");
    assert!(text.contains("crmsync_build_info{version="), "{text}");
    assert!(text.contains("# HELP crmsync_sync_runs_total"), "{text}");

    // No personal data: no e-mail address, no user, run or record id anywhere.
    assert!(!text.contains('@'), "an e-mail address in the metrics: {text}");
    for id in [alice.to_string(), run["id"].as_str().unwrap().to_string()] {
        assert!(!text.contains(&id), "an id in the metrics: {text}");
    }
    let uuid_like = text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')).any(|w| uuid::Uuid::parse_str(w).is_ok());
    assert!(!uuid_like, "a UUID in the metrics: {text}");
    app.stop().await;
});

db_test!(async fn health_and_readiness_answer_without_a_token(db) {
    let app = TestApp::start(&db).await;
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let get = |path: &str| {
        let url = format!("{root}{path}");
        let client = app.client.clone();
        async move { read(client.get(url).send().await.expect("request")).await }
    };
    let (s, v) = get("/healthz").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    let (s, v) = get("/readyz").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    // Only GET.
    let resp = app.client.post(format!("{root}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A migration pending: not ready, and the reason says what to do.
    let store = db.store();
    revert_last_migration(&store).expect("revert the last migration");
    let (s, v) = get("/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "not_ready");
    let reason = v["reason"].as_str().expect("a reason");
    assert!(reason.contains("migration") && reason.contains("crmsync migrate"), "{reason}");
    let (s, _) = get("/healthz").await;
    assert_eq!(s, StatusCode::OK, "the process still answers");
    store.run_migrations().expect("migrate again");
    let (s, v) = get("/readyz").await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The database gone: a PostgreSQL database dropped, or the SQLite file removed.
    match store.kind() {
        DbKind::Postgres => {
            let admin = std::env::var(TEST_POSTGRES_ENV).expect("the PostgreSQL server");
            let name = db.url().rsplit('/').next().unwrap().to_string();
            let mut c = crmsync_schema::diesel::PgConnection::establish(&admin).expect("connect as admin");
            c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).expect("drop the database");
        }
        DbKind::Sqlite => {
            let path = db.url().strip_prefix("sqlite://").unwrap().to_string();
            std::fs::remove_file(&path).expect("remove the SQLite file");
        }
    }
    let started = std::time::Instant::now();
    let (s, v) = get("/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "not_ready");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("database")), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "answered within seconds");
    let (s, _) = get("/healthz").await;
    assert_eq!(s, StatusCode::OK, "the process still answers");
    // The answer names no host, path or credentials.
    let text = v.to_string();
    assert!(!text.contains("127.0.0.1") && !text.contains("/tmp") && !text.contains("postgres@"), "{text}");
});

/// Kills the child process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

db_test!(async fn a_worker_serves_health_readiness_and_metrics_when_asked(db) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _worker = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_crmsync"))
            .args(["--database-url", db.url(), "worker", "--metrics-listen", &format!("127.0.0.1:{port}")])
            .env_remove("DATABASE_URL")
            .env_remove("CRMSYNC_METRICS_LISTEN")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn crmsync worker"),
    );
    let root = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        match client.get(format!("{root}/healthz")).send().await {
            Ok(r) => break r,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("the worker's metrics address did not answer: {e}"),
        }
    };
    assert_eq!(health.status(), StatusCode::OK);
    let (s, v) = read(client.get(format!("{root}/readyz")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (text, _) = scrape(&client, &root).await;
    assert!(text.contains("crmsync_build_info"), "{text}");
    assert!(text.contains("crmsync_jobs_overdue"), "{text}");
    // Only the operations routes: no API on this address.
    let resp = client.get(format!("{root}/api/v1/users")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
});

#[test]
fn the_grafana_dashboard_uses_only_metrics_crmsync_exports() {
    use crmsync::telemetry;
    use crmsync_connectors::metrics::names;
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .expect("docs/grafana-dashboard.json");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let exported = [
        telemetry::RUNS,
        telemetry::RUN_DURATION,
        telemetry::RUNS_IN_PROGRESS,
        telemetry::SCHEDULING_LAG,
        telemetry::JOBS_OVERDUE,
        telemetry::OLDEST_OVERDUE,
        telemetry::BUILD_INFO,
        names::REQUESTS,
        names::CALLS,
        names::RETRIES,
        names::RATE_LIMITED,
        names::BACKOFF_MS,
        names::THROTTLED_MS,
    ];
    let mut used = std::collections::BTreeSet::new();
    let mut rest = dashboard.as_str();
    while let Some(i) = rest.find("crmsync_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        if name != "crmsync_" {
            used.insert(name);
        }
    }
    for name in &used {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(
            exported.contains(&base),
            "the dashboard uses {name}, which crmsync does not export"
        );
    }
    for name in exported {
        assert!(
            used.iter().any(|u| u.starts_with(name)),
            "the dashboard does not show {name}"
        );
    }
}
