//! Throughput benchmark (`cargo bench -p crmsync-emulator`): requests per second the emulator
//! serves on loopback for small gets and lists, with several concurrent keep-alive clients
//! (hyper's HTTP/1.1 client, in the same process, so client work shares the cores).

// A measurement program run by hand: a failed setup step stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use crmsync_emulator::EmulatorServer;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const SECONDS: u64 = 3;

async fn run(base: &str, token: &str, path: &str) -> (f64, u64) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CLIENTS)
        .build_http();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        let url: hyper::Uri = match format!("{base}{path}").parse() {
            Ok(u) => u,
            Err(e) => panic!("bad url: {e}"),
        };
        let auth = format!("Bearer {token}");
        let done = done.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let req = hyper::Request::get(url.clone())
                    .header("authorization", auth.as_str())
                    .body(Empty::new())
                    .expect("request builds");
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        errors.load(Ordering::Relaxed),
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = EmulatorServer::start_local().await.expect("emulator starts");
        let emu = server.emulator().clone();
        let base = server.base_url().to_string();
        emu.create_user("bench@example.com").expect("user");
        let token = emu
            .mint_access_token("bench@example.com", &["calendar".into(), "contacts".into()])
            .expect("token");
        // Seed: 200 events and 1000 contacts through the HTTP API.
        let http = reqwest::Client::new();
        let mut event_id = String::new();
        for i in 0..200 {
            let v: serde_json::Value = http
                .post(format!("{base}/calendar/v3/calendars/primary/events"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"summary": format!("E{i}"),
                    "start": {"dateTime": "2026-03-02T09:00:00Z"}, "end": {"dateTime": "2026-03-02T10:00:00Z"}}))
                .send().await.expect("insert").json().await.expect("json");
            event_id = v["id"].as_str().unwrap_or_default().to_string();
        }
        let mut contact = String::new();
        for chunk in 0..5 {
            let contacts: Vec<_> = (0..200)
                .map(|i| serde_json::json!({"contactPerson": {"names": [{"givenName": format!("P{chunk}-{i}")}],
                    "emailAddresses": [{"value": format!("p{chunk}-{i}@x.com")}]}}))
                .collect();
            let v: serde_json::Value = http
                .post(format!("{base}/v1/people:batchCreateContacts"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"contacts": contacts, "readMask": "names"}))
                .send().await.expect("create").json().await.expect("json");
            contact = v["createdPeople"][0]["person"]["resourceName"].as_str().unwrap_or_default().to_string();
        }
        println!("crmsync-emulator throughput: {CLIENTS} concurrent keep-alive clients, {SECONDS} s per case, 2 runtime workers");
        let cases = [
            ("calendar events.get", format!("/calendar/v3/calendars/primary/events/{event_id}?alt=json")),
            ("calendar events.list (maxResults=10)", "/calendar/v3/calendars/primary/events?alt=json&maxResults=10".to_string()),
            ("calendar calendarList.get", "/calendar/v3/users/me/calendarList/primary?alt=json".to_string()),
            ("people people.get", format!("/v1/{contact}?alt=json&personFields=names%2CemailAddresses%2Cmetadata")),
            ("people connections.list (pageSize=10)", "/v1/people/me/connections?alt=json&personFields=names%2Cmetadata&pageSize=10".to_string()),
            ("people contactGroups.list", "/v1/contactGroups?alt=json".to_string()),
        ];
        let mut total = 0.0;
        for (name, path) in &cases {
            let (rps, errors) = run(&base, &token, path).await;
            total += rps;
            println!("{name:<42} {rps:>10.0} requests/s  ({errors} errors)");
        }
        println!("{:<42} {:>10.0} requests/s", "mean over cases", total / cases.len() as f64);
        server.shutdown().await;
    });
}
