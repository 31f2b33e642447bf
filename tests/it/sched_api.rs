//! The sync routes of the API with the scheduler running in the same process, on both backends:
//! `POST /users/{id}/sync/{kind}` (202 queued, 200 with `?wait=true`, coalesced starts), run
//! detail, history with paging, the per-kind status, and their errors.

use crate::sched_support::{eventually, runs_of, ApiWorld};
use crate::support::{assert_error, read};
use crate::sync_support::SyncWorld;
use crmsync_engine::ids::SyncKind::Contacts;
use crmsync_schema::db_test;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

db_test!(async fn start_queues_a_run_the_scheduler_carries_out_at_once(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let alice = app.world.alice.id;
    app.world.crm_contact("Ann", "Able", "ann@clients.test");

    let (s, v) = app.post(&format!("/users/{alice}/sync/contacts")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "queued");
    let run_id = v["run_id"].as_str().expect("run_id").to_string();
    // The scheduler was woken: the run finishes without waiting for a tick.
    let run = {
        let mut last = Value::Null;
        for _ in 0..400 {
            let (s, r) = app.get(&format!("/sync-runs/{run_id}")).await;
            assert_eq!(s, StatusCode::OK, "{r}");
            if r["finished_at"].is_string() {
                last = r;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        last
    };
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["kind"], "contacts");
    assert_eq!(run["user_id"], alice.to_string());
    assert_eq!(run["worker"], "api-worker");
    assert_eq!(run["counts"]["google"]["created"], 1, "{run}");
    assert!(run["errors"].as_array().is_some_and(|e| e.is_empty()));

    // ?wait=true answers with the finished run.
    app.world.crm_contact("Bob", "Baker", "bob@clients.test");
    let (s, run2) = app.post(&format!("/users/{alice}/sync/contacts?wait=true")).await;
    assert_eq!(s, StatusCode::OK, "{run2}");
    assert_eq!(run2["state"], "succeeded");
    assert!(run2["finished_at"].is_string() && run2["started_at"].is_string());
    assert_eq!(run2["counts"]["google"]["created"], 1, "{run2}");
    assert_eq!(app.world.google_contacts().len(), 2);

    // History, newest first, filtered and paged.
    let (s, h) = app.get(&format!("/sync-runs?user_id={alice}")).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], run2["id"]);
    assert_eq!(items[1]["id"], run_id.as_str());
    let (_, h) = app.get(&format!("/sync-runs?user_id={alice}&kind=activities")).await;
    assert_eq!(h["items"].as_array().map(Vec::len), Some(0));
    let (_, p1) = app.get(&format!("/sync-runs?user_id={alice}&kind=contacts&limit=1")).await;
    assert_eq!(p1["items"][0]["id"], run2["id"]);
    let cursor = p1["next_cursor"].as_str().expect("a full page has a cursor");
    let (_, p2) = app.get(&format!("/sync-runs?limit=1&cursor={cursor}")).await;
    assert_eq!(p2["items"][0]["id"], run_id.as_str());
    let (_, p3) = app.get(&format!("/sync-runs?limit=1&cursor={}", p2["next_cursor"].as_str().unwrap())).await;
    assert_eq!(p3["items"].as_array().map(Vec::len), Some(0));

    // Status per kind.
    let (s, st) = app.get(&format!("/users/{alice}/sync-status")).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["connection"]["method"], "service_account");
    assert_eq!(st["connection"]["state"], "active");
    let c = &st["kinds"]["contacts"];
    assert_eq!(c["state"], "idle", "{st}");
    assert!(c["last_success_at"].is_string());
    assert_eq!(c["last_error"], Value::Null);
    assert_eq!(c["auto_sync"], false);
    assert_eq!(c["next_due_at"], Value::Null, "auto-sync is off");
    assert_eq!(c["last_run"]["id"], run2["id"]);
    let a = &st["kinds"]["activities"];
    assert_eq!(a["state"], "not_configured");
    assert!(a["message"].as_str().unwrap().contains("sync-settings/activities"), "{a}");

    app.stop().await;
});

db_test!(async fn status_shows_auto_sync_schedule_and_next_due_time(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let alice = app.world.alice.id;
    let tag = app.world.tag.id;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/users/{alice}/sync-settings/contacts"),
            Some(json!({"auto_sync": true, "interval_minutes": 60, "tag_id": tag})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The scheduler picks the new settings up, runs the never-synced job and schedules the next.
    let store = app.world.store.clone();
    eventually(30, "the first scheduled run", || {
        let runs = runs_of(&store, alice, Contacts);
        runs.iter().any(|r| r.state == "succeeded").then_some(())
    })
    .await;
    let mut st = Value::Null;
    for _ in 0..400 {
        st = app.get(&format!("/users/{alice}/sync-status")).await.1;
        // Wait for the next due time computed after the run (not the one that made it due).
        let c = &st["kinds"]["contacts"];
        let time = |v: &Value| v.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let (Some(next), Some(started)) = (time(&c["next_due_at"]), time(&c["last_run"]["started_at"])) {
            if next > started {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let c = &st["kinds"]["contacts"];
    assert_eq!(c["auto_sync"], true);
    assert_eq!(c["schedule"], "every 60 minutes");
    assert_eq!(c["last_run"]["trigger"], "schedule");
    let last = chrono::DateTime::parse_from_rfc3339(c["last_run"]["started_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(c["next_due_at"].as_str().unwrap()).unwrap();
    // No jitter in this test's scheduler: one interval after the run was claimed (just before
    // it started).
    let gap = next - last;
    assert!(gap <= chrono::Duration::minutes(60) && gap > chrono::Duration::minutes(59), "{gap}");
    app.stop().await;
});

db_test!(async fn sync_routes_refuse_bad_requests_clearly(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let alice = app.world.alice.id;
    let nobody = uuid::Uuid::new_v4();

    let (s, v) = app.post(&format!("/users/{alice}/sync/everything")).await;
    assert_eq!(assert_error(s, &v, StatusCode::BAD_REQUEST, "bad kind"), "bad_request");
    let (s, v) = app.post(&format!("/users/{nobody}/sync/contacts")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "unknown user");
    let (s, v) = app.post("/users/not-a-uuid/sync/contacts").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad id");
    let (s, v) = app.post(&format!("/users/{alice}/sync/contacts?mass_untag=yes")).await;
    let code = assert_error(s, &v, StatusCode::BAD_REQUEST, "bad mass_untag");
    assert_eq!(code, "bad_request");
    let (s, v) = app.post(&format!("/users/{alice}/sync/contacts?wait=maybe")).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad wait");
    // No activities settings: nothing to synchronize, and the answer says what to do.
    let (s, v) = app.post(&format!("/users/{alice}/sync/activities")).await;
    assert_error(s, &v, StatusCode::CONFLICT, "no settings");
    assert!(v["error"]["message"].as_str().unwrap().contains("PUT /api/v1/users/"), "{v}");
    assert!(runs_of(&app.world.store, alice, crmsync_engine::ids::SyncKind::Activities).is_empty());

    let (s, v) = app.get(&format!("/sync-runs/{nobody}")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "unknown run");
    let (s, v) = app.get("/sync-runs/xyz").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad run id");
    let (s, v) = app.get(&format!("/sync-runs?user_id={nobody}")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "history of an unknown user");
    let (s, v) = app.get("/sync-runs?kind=all").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad kind filter");
    let (s, v) = app.get("/sync-runs?limit=0").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad limit");
    let (s, v) = app.get(&format!("/sync-runs?cursor={nobody}")).await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "unknown cursor");
    let (s, v) = app.get(&format!("/users/{nobody}/sync-status")).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "status of an unknown user");

    // Every new route needs the admin token.
    for (method, path) in [
        (Method::POST, format!("/users/{alice}/sync/contacts")),
        (Method::GET, format!("/users/{alice}/sync-status")),
        (Method::GET, "/sync-runs".to_string()),
        (Method::GET, format!("/sync-runs/{nobody}")),
        (Method::PUT, "/google/service-account".to_string()),
        (Method::PUT, "/google/oauth-client".to_string()),
        (Method::POST, format!("/users/{alice}/google/oauth/start")),
        (Method::DELETE, format!("/users/{alice}/google/connection")),
    ] {
        let resp = app.client.request(method.clone(), format!("{}{path}", app.base)).send().await.unwrap();
        let (s, v) = read(resp).await;
        assert_error(s, &v, StatusCode::UNAUTHORIZED, &format!("{method} {path} without token"));
    }
    assert!(runs_of(&app.world.store, alice, Contacts).is_empty(), "a refused start queued a run");
    app.stop().await;
});

db_test!(async fn service_account_upload_is_validated_and_never_answers_the_key(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let key = app.world.emu.emulator().create_service_account("other.test", app.world.emu.base_url());
    let put = |body: Value| {
        let app = &app;
        async move { app.call(Method::PUT, "/google/service-account", Some(body)).await }
    };
    let (s, v) = put(json!({"domain": "other.test", "key": key})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["domain"], "other.test");
    assert_eq!(v["client_id"], key["client_id"]);
    assert_eq!(v["client_email"], key["client_email"]);
    let text = v.to_string();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("private_key"), "{text}");
    assert!(v["message"].as_str().unwrap().contains("Domain-wide delegation"));
    // The key as a string holding the JSON file works too.
    let (s, _) = put(json!({"domain": "Other.Test", "key": key.to_string()})).await;
    assert_eq!(s, StatusCode::OK);
    // Stored encrypted.
    let raw: String = app
        .world
        .store
        .read(|c| {
            use crmsync_schema::diesel::prelude::*;
            use crmsync_schema::schema::service_accounts;
            Ok(service_accounts::table
                .find("other.test")
                .select(service_accounts::key_ciphertext)
                .first::<String>(c)?)
        })
        .unwrap();
    assert!(!raw.contains("PRIVATE KEY") && !raw.contains(key["client_email"].as_str().unwrap()));

    let mut no_email = key.clone();
    no_email.as_object_mut().unwrap().remove("client_email");
    let mut not_sa = key.clone();
    not_sa["type"] = json!("authorized_user");
    let mut bad_pem = key.clone();
    bad_pem["private_key"] = json!("hello");
    for (body, what) in [
        (json!({"domain": "other.test", "key": no_email}), "client_email"),
        (json!({"domain": "other.test", "key": not_sa}), "service_account"),
        (json!({"domain": "other.test", "key": bad_pem}), "PEM"),
        (json!({"domain": "other.test", "key": "{not json"}), "not JSON"),
        (json!({"domain": "other.test", "key": 42}), "JSON key file"),
        (json!({"domain": "not a domain", "key": key}), "domain"),
    ] {
        let (s, v) = put(body).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, what);
        assert!(v["error"]["message"].as_str().unwrap().contains(what), "{what}: {v}");
    }
    let (s, v) = put(json!({"domain": "other.test"})).await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "missing key");

    let (s, v) = app
        .call(Method::PUT, "/google/oauth-client", Some(json!({"client_id": "c", "client_secret": "s", "redirect_uri": "not a url"})))
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "bad redirect_uri");
    let (s, v) = app.post(&format!("/users/{}/google/oauth/start", app.world.alice.id)).await;
    assert_error(s, &v, StatusCode::CONFLICT, "no OAuth client yet");
    assert!(v["error"]["message"].as_str().unwrap().contains("/google/oauth-client"));
    app.stop().await;
});

db_test!(async fn the_journal_shows_each_runs_changes_and_the_overwritten_value(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let alice = app.world.alice.id;
    let ada = app.world.crm_contact("Ada", "Lovelace", "ada@example.org");
    let (s, run1) = app.post(&format!("/users/{alice}/sync/contacts?wait=true")).await;
    assert_eq!(s, StatusCode::OK, "{run1}");
    let run1_id = run1["id"].as_str().unwrap().to_string();
    let (s, j) = app.get(&format!("/journal?run_id={run1_id}")).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let created: Vec<&Value> = j["items"].as_array().unwrap().iter().filter(|e| e["side"] == "google" && e["action"] == "create").collect();
    assert_eq!(created.len(), 1, "{j}");
    assert_eq!(created[0]["crm_id"], ada.id.to_string());
    assert_eq!(created[0]["run_id"], run1_id.as_str());

    // The same field changed on both sides, Google later: the CRM's value is overwritten, and the
    // journal of the contact says so, with the value.
    app.world.crm_update(ada.id, |d| d.job_title = Some("Analyst".into()));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let g = app.world.google_as("alice@example.com").await;
    let rn = app.world.google_contacts()[0]["resourceName"].as_str().unwrap().to_string();
    let mut p = g.people().get(&rn).await.unwrap().unwrap();
    p.organizations = Some(vec![crmsync_connectors::people1::api::Organization { title: Some("Programmer".into()), ..Default::default() }]);
    g.people().update_contact(p, "organizations").await.unwrap();
    let (_, run2) = app.post(&format!("/users/{alice}/sync/contacts?wait=true")).await;
    assert_eq!(run2["conflicts"], 1, "{run2}");
    let (s, h) = app.get(&format!("/journal?record_id={}", ada.id)).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let items = h["items"].as_array().unwrap();
    assert!(items.iter().all(|e| e["crm_id"] == ada.id.to_string()), "{h}");
    assert!(items.iter().any(|e| e["run_id"] == run1_id.as_str()), "the history spans runs: {h}");
    let conflict = items.iter().find(|e| e["action"] == "conflict").expect("a conflict entry");
    assert_eq!(conflict["field"], "job_title");
    assert_eq!(conflict["winner"], "google");
    assert_eq!(conflict["before"]["crm"], "Analyst", "{conflict}");
    let overwrite = items.iter().find(|e| e["side"] == "crm" && e["action"] == "update").expect("the CRM overwrite");
    assert_eq!(overwrite["before"], "Analyst");
    assert_eq!(overwrite["after"], "Programmer");

    // Paging, oldest first, and both filters at once.
    let (_, p1) = app.get(&format!("/journal?record_id={}&limit=1", ada.id)).await;
    assert_eq!(p1["items"][0]["id"], items[0]["id"]);
    let (_, p2) = app.get(&format!("/journal?record_id={}&limit=1&cursor={}", ada.id, p1["next_cursor"].as_str().unwrap())).await;
    assert_eq!(p2["items"][0]["id"], items[1]["id"]);
    let (_, both) = app.get(&format!("/journal?record_id={}&run_id={}", ada.id, run2["id"].as_str().unwrap())).await;
    assert!(both["items"].as_array().unwrap().iter().all(|e| e["run_id"] == run2["id"]), "{both}");

    // Errors.
    let (s, v) = app.get("/journal").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "no filter");
    let (s, v) = app.get("/journal?record_id=ada").await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "record_id not a UUID");
    let (s, v) = app.get(&format!("/journal?run_id={}", uuid::Uuid::new_v4())).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "unknown run");
    let (s, v) = app.get(&format!("/journal?record_id={}&cursor=x", ada.id)).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad cursor");
    let (s, v) = app.get(&format!("/journal?record_id={}&colour=red", ada.id)).await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "unknown parameter");
    app.stop().await;
});
