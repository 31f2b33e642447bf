//! Every route needs a live admin token: none, a wrong one, a malformed header or a revoked one
//! get a 401 JSON error; sync routes answer 501 until the executor lands.

use crate::support::{assert_error, read, t0, TestApp};
use crmsync_schema::{admin_tokens, db_test};
use reqwest::{Method, StatusCode};
use serde_json::json;

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/00000000-0000-0000-0000-000000000001"),
    ("GET", "/tags"),
    ("POST", "/contacts"),
    ("GET", "/contacts"),
    ("PATCH", "/contacts/00000000-0000-0000-0000-000000000001"),
    ("DELETE", "/contacts/00000000-0000-0000-0000-000000000001"),
    (
        "PUT",
        "/contacts/00000000-0000-0000-0000-000000000001/tags/00000000-0000-0000-0000-000000000002",
    ),
    ("GET", "/activities"),
    ("POST", "/activities"),
    (
        "PUT",
        "/users/00000000-0000-0000-0000-000000000001/sync-settings/contacts",
    ),
    (
        "POST",
        "/users/00000000-0000-0000-0000-000000000001/sync/contacts",
    ),
    ("GET", "/sync-runs/00000000-0000-0000-0000-000000000001"),
    (
        "GET",
        "/users/00000000-0000-0000-0000-000000000001/sync-status",
    ),
    ("GET", "/no-such-route"),
];

db_test!(async fn requests_without_a_valid_token_get_401(db) {
    let app = TestApp::start(&db).await;
    let (revoked_record, revoked) = app.store.write(|c| admin_tokens::create_admin_token(c, "old", t0())).unwrap();
    app.store.write(|c| admin_tokens::revoke_admin_token(c, revoked_record.id, t0())).unwrap();
    let before = app.snapshot();
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        let url = format!("{}{path}", app.base);
        let attempts = [
            app.client.request(method.clone(), &url),
            app.client.request(method.clone(), &url).bearer_auth("crm_not-a-real-token"),
            app.client.request(method.clone(), &url).header("Authorization", format!("Basic {}", app.token)),
            app.client.request(method.clone(), &url).header("Authorization", app.token.clone()),
            app.client.request(method.clone(), &url).bearer_auth(&revoked),
        ];
        for (i, req) in attempts.into_iter().enumerate() {
            let resp = req.json(&json!({"email": "x@example.com", "display_name": "X"})).send().await.unwrap();
            assert_eq!(resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
            let (status, body) = read(resp).await;
            let code = assert_error(status, &body, StatusCode::UNAUTHORIZED, &format!("{method} {path} attempt {i}"));
            assert_eq!(code, "unauthorized");
        }
    }
    assert_eq!(app.snapshot(), before, "nothing was written");
    // The valid token works.
    let (status, _) = app.get("/users").await;
    assert_eq!(status, StatusCode::OK);
});

db_test!(async fn sync_routes_answer_without_a_scheduler_in_the_process(db) {
    // The sync routes are served (tests/it/sched_api.rs covers them with a scheduler running).
    let app = TestApp::start(&db).await;
    let user = app.user("s@example.com").await;
    let (status, body) = app.call(Method::POST, &format!("/users/{user}/sync/contacts"), None).await;
    assert_eq!(assert_error(status, &body, StatusCode::CONFLICT, "no settings"), "conflict");
    let (status, body) = app.get(&format!("/users/{user}/sync-status")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kinds"]["contacts"]["state"], "not_configured");
    let (status, body) = app.get("/sync-runs/00000000-0000-0000-0000-000000000001").await;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND, "unknown run"), "not_found");
});
