//! The control plane over plain HTTP (what a test in another language does): users,
//! tokens, reset, clock, readers of stored data, response recording, bad input.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn control_plane_is_complete_over_http() {
    let env = Env::new().await;
    let (s, _) = env
        .post("/users", json!({"email": "Alice@Example.com"}))
        .await;
    assert_eq!(s, 201);
    let (s, v) = env.post("/users", json!({"email": "not-an-email"})).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].is_string());
    let (s, _) = env.post("/users", json!({})).await;
    assert_eq!(s, 400);
    let (_, v) = env.get("/users").await;
    assert_eq!(v["users"], json!(["alice@example.com"]));
    let (s, v) = env
        .post(
            "/access-tokens",
            json!({"email": "alice@example.com", "scopes": ["calendar", "contacts"]}),
        )
        .await;
    assert_eq!(s, 200);
    let token = v["access_token"].as_str().unwrap().to_string();
    let (s, _) = env
        .post(
            "/access-tokens",
            json!({"email": "ghost@example.com", "scopes": ["calendar"]}),
        )
        .await;
    assert_eq!(s, 404);
    // Create data over the wire and read it back through the readers.
    let (s, _) = env.raw(reqwest::Method::POST, "/calendar/v3/calendars/primary/events", &token, Some(json!({"summary": "Wire", "start": {"date": "2026-01-02"}, "end": {"date": "2026-01-03"}})), &[]).await;
    assert_eq!(s, 200);
    let (s, _) = env
        .raw(
            reqwest::Method::POST,
            "/v1/people:createContact",
            &token,
            Some(json!({"names": [{"givenName": "Wire"}]})),
            &[],
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = env.get("/users/alice@example.com/events").await;
    assert_eq!(v["items"][0]["summary"], "Wire");
    let (_, v) = env.get("/users/alice@example.com/contacts").await;
    assert_eq!(v["connections"][0]["names"][0]["givenName"], "Wire");
    let (_, v) = env.get("/users/alice@example.com/contact-groups").await;
    assert!(v["contactGroups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["resourceName"] == "contactGroups/myContacts" && g["memberCount"] == 1));
    let (s, _) = env.get("/users/ghost@example.com/events").await;
    assert_eq!(s, 404);
    // Recorded responses are readable over HTTP.
    let (_, v) = env.get("/responses").await;
    assert!(v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["method"] == "calendar.events.insert"));
    // Clock.
    let (_, before) = env.get("/clock").await;
    let (s, after) = env.post("/clock/advance", json!({"seconds": 3600})).await;
    assert_eq!(s, 200);
    assert!(after["now"].as_str().unwrap() > before["now"].as_str().unwrap());
    let (s, _) = env
        .raw(
            reqwest::Method::GET,
            "/calendar/v3/users/me/calendarList/primary",
            &token,
            None,
            &[],
        )
        .await;
    assert_eq!(s, 401, "tokens expire on the emulated clock");
    // Unknown API paths get Google's 404 envelopes.
    let token = env
        .emu()
        .mint_access_token("alice@example.com", &["calendar".to_string()])
        .unwrap();
    let (s, v) = env
        .raw(
            reqwest::Method::GET,
            "/calendar/v3/colors",
            &token,
            None,
            &[],
        )
        .await;
    assert_eq!(
        (s, v["error"]["errors"][0]["reason"].as_str()),
        (404, Some("notFound"))
    );
    let (s, v) = env
        .raw(reqwest::Method::GET, "/v1/otherContacts", &token, None, &[])
        .await;
    assert_eq!((s, v["error"]["status"].as_str()), (404, Some("NOT_FOUND")));
    // Malformed bodies are Google errors, never panics.
    let (s, v) = env
        .raw(
            reqwest::Method::POST,
            "/calendar/v3/calendars/primary/events",
            &token,
            Some(json!([1, 2])),
            &[],
        )
        .await;
    assert_eq!(
        (s, v["error"]["errors"][0]["reason"].as_str()),
        (400, Some("parseError"))
    );
    let (s, _) = env
        .raw(
            reqwest::Method::GET,
            "/calendar/v3/calendars/primary/events?maxResults=abc",
            &token,
            None,
            &[],
        )
        .await;
    assert_eq!(s, 400);
    // Reset empties everything.
    let (s, _) = env.post("/reset", json!({})).await;
    assert_eq!(s, 200);
    let (_, v) = env.get("/users").await;
    assert_eq!(v["users"], json!([]));
    let (_, v) = env.get("/stats").await;
    assert_eq!(v["total"], 0);
    env.finish().await;
}

#[tokio::test]
async fn emulators_bind_loopback_and_shut_down() {
    let server = crmsync_emulator::EmulatorServer::start_local()
        .await
        .unwrap();
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    assert!(!server.base_url().ends_with('/'));
    let url = format!("{}/_emulator/users", server.base_url());
    server.shutdown().await;
    assert!(reqwest::get(url).await.is_err());
}
