//! Activities through the API: timed and all-day, participants resolved from users, contacts and
//! e-mails, list by organizer with pagination, change, delete.

use crate::support::{assert_error, id_of, TestApp};
use crmsync_schema::db_test;
use reqwest::StatusCode;
use serde_json::json;

db_test!(async fn activities_crud_with_participants(db) {
    let app = TestApp::start(&db).await;
    let org = app.user("org@example.com").await;
    let colleague = app.user("colleague@example.com").await;
    let (_, contact) = app
        .post("/contacts", json!({"given_name": "Cee", "family_name": "Contact", "emails": [{"address": "cee@client.example", "kind": "work", "primary": true}]}))
        .await;
    let contact = id_of(&contact);
    let (s, a) = app
        .post(
            "/activities",
            json!({
                "title": "Kick-off", "start": "2026-03-29T00:30:00+01:00", "end": "2026-03-29T03:30:00+02:00",
                "time_zone": "Europe/Berlin", "location": "Room 1", "display_in_calendar": true,
                "organizer_user_id": org,
                "participants": [
                    {"user_id": colleague},
                    {"contact_id": contact, "response_status": "accepted"},
                    {"email": "CEE@client.example"},
                    {"email": "stranger@else.example", "response_status": "tentative"}
                ]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id = id_of(&a);
    assert_eq!(a["start"], "2026-03-28T23:30:00Z");
    assert_eq!(a["end"], "2026-03-29T01:30:00Z");
    assert_eq!(a["all_day"], false);
    assert_eq!(a["status"], "planned");
    let p = a["participants"].as_array().unwrap();
    assert_eq!(p[0]["user_id"], colleague.as_str());
    assert_eq!(p[0]["email"], "colleague@example.com");
    assert_eq!(p[0]["response_status"], "needs_action");
    assert_eq!(p[1]["contact_id"], contact.as_str());
    assert_eq!(p[1]["email"], "cee@client.example");
    assert_eq!(p[1]["response_status"], "accepted");
    assert_eq!(p[2]["contact_id"], contact.as_str(), "an e-mail matching a contact links to it");
    assert!(p[3].get("contact_id").is_none() && p[3].get("user_id").is_none());

    let (s, got) = app.get(&format!("/activities/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, a);

    // All-day: dates, end exclusive.
    let (s, d) = app
        .post(
            "/activities",
            json!({"title": "Offsite", "start": "2026-03-02", "end": "2026-03-04", "all_day": true,
                   "time_zone": "America/Los_Angeles", "display_in_calendar": false, "organizer_user_id": org}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["start"], "2026-03-02");
    assert_eq!(d["end"], "2026-03-04");
    assert_eq!(d["all_day"], true);

    // PATCH: move it, change status, drop participants, clear location.
    let (s, p) = app
        .patch(&format!("/activities/{id}"), json!({"end": "2026-03-29T04:00:00Z", "status": "completed", "participants": [], "location": null}))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["start"], "2026-03-28T23:30:00Z");
    assert_eq!(p["end"], "2026-03-29T04:00:00Z");
    assert_eq!(p["status"], "completed");
    assert_eq!(p["participants"], json!([]));
    assert!(p.get("location").is_none());
    // Switch the all-day one to timed (needs both ends).
    let did = id_of(&d);
    let (s, t) = app
        .patch(&format!("/activities/{did}"), json!({"all_day": false, "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["all_day"], false);

    // List by organizer, one per page, in start order.
    let mut titles = Vec::new();
    let mut path = format!("/activities?organizer_user_id={org}&limit=1");
    loop {
        let (s, page) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        titles.extend(page["items"].as_array().unwrap().iter().map(|a| a["title"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/activities?organizer_user_id={org}&limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(titles, vec!["Offsite", "Kick-off"]);
    let (_, none) = app.get(&format!("/activities?organizer_user_id={colleague}")).await;
    assert_eq!(none["items"], json!([]));

    // Delete.
    let (s, _) = app.delete(&format!("/activities/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = app.get(&format!("/activities/{id}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "deleted activity");
    let (_, all) = app.get("/activities").await;
    assert_eq!(all["items"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![did]);
});
