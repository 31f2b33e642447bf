//! Every validation case answers a 4xx JSON error and leaves the database unchanged: malformed
//! e-mails, unknown time zones, end before start, bad all-day dates, unknown ids, a public,
//! corporate or foreign tag as a sync tag, bad schedules, unknown enum values, wrong content
//! type, bad JSON, oversized bodies, bad path ids and bad pagination.

use crate::support::{assert_error, id_of, read, TestApp};
use crmsync_schema::db_test;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NOBODY: &str = "00000000-0000-4000-8000-000000000000";

db_test!(async fn invalid_requests_get_4xx_json_and_change_nothing(db) {
    let app = TestApp::start(&db).await;
    let owner = app.user("owner@example.com").await;
    let other = app.user("other@example.com").await;
    let private = app.tag("mine", "private", Some(&owner)).await;
    let foreign = app.tag("theirs", "private", Some(&other)).await;
    let public = app.tag("pub", "public", None).await;
    let corporate = app.tag("corp", "corporate", None).await;
    let (_, contact) = app.post("/contacts", json!({"given_name": "C", "family_name": "D", "emails": [{"address": "c@d.example", "kind": "work"}]})).await;
    let contact = id_of(&contact);
    let (_, nomail) = app.post("/contacts", json!({"given_name": "No", "family_name": "Mail"})).await;
    let nomail = id_of(&nomail);
    let timed = |extra: Value| {
        let mut base = json!({"title": "T", "start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00Z",
            "time_zone": "UTC", "display_in_calendar": true, "organizer_user_id": owner});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let (_, activity) = app.post("/activities", timed(json!({}))).await;
    let activity = id_of(&activity);
    let settings = |extra: Value| {
        let mut base = json!({"auto_sync": true, "interval_minutes": 15, "tag_id": private});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() { base.as_object_mut().unwrap().remove(k); } else { base[k] = v.clone(); }
        }
        base
    };
    let contacts_settings = format!("/users/{owner}/sync-settings/contacts");
    let activities_settings = format!("/users/{owner}/sync-settings/activities");
    let before = app.snapshot();

    let u422 = StatusCode::UNPROCESSABLE_ENTITY;
    let cases: Vec<(&str, Method, String, Option<Value>, StatusCode)> = vec![
        // Users.
        ("malformed email", Method::POST, "/users".into(), Some(json!({"email": "not-an-email", "display_name": "X"})), u422),
        ("email with spaces", Method::POST, "/users".into(), Some(json!({"email": "a b@example.com", "display_name": "X"})), u422),
        ("malformed alias", Method::POST, "/users".into(), Some(json!({"email": "x@example.com", "display_name": "X", "google_alias": "x@"})), u422),
        ("unknown time zone", Method::POST, "/users".into(), Some(json!({"email": "x@example.com", "display_name": "X", "time_zone": "Mars/Olympus"})), u422),
        ("empty display name", Method::POST, "/users".into(), Some(json!({"email": "x@example.com", "display_name": " "})), u422),
        ("duplicate email", Method::POST, "/users".into(), Some(json!({"email": "OWNER@example.com", "display_name": "X"})), StatusCode::CONFLICT),
        ("missing field", Method::POST, "/users".into(), Some(json!({"email": "x@example.com"})), u422),
        ("unknown field", Method::POST, "/users".into(), Some(json!({"email": "x@example.com", "display_name": "X", "admin": true})), u422),
        ("wrong type", Method::POST, "/users".into(), Some(json!({"email": 5, "display_name": "X"})), u422),
        ("patch unknown tz", Method::PATCH, format!("/users/{owner}"), Some(json!({"time_zone": "Nowhere/City"})), u422),
        ("patch unknown user", Method::PATCH, format!("/users/{NOBODY}"), Some(json!({"display_name": "Y"})), StatusCode::NOT_FOUND),
        ("unknown user", Method::GET, format!("/users/{NOBODY}"), None, StatusCode::NOT_FOUND),
        ("bad uuid in path", Method::GET, "/users/not-a-uuid".into(), None, StatusCode::BAD_REQUEST),
        // Tags.
        ("private tag without owner", Method::POST, "/tags".into(), Some(json!({"name": "x", "visibility": "private"})), u422),
        ("public tag with owner", Method::POST, "/tags".into(), Some(json!({"name": "x", "visibility": "public", "owner_user_id": owner})), u422),
        ("tag owner unknown", Method::POST, "/tags".into(), Some(json!({"name": "x", "visibility": "private", "owner_user_id": NOBODY})), u422),
        ("unknown visibility", Method::POST, "/tags".into(), Some(json!({"name": "x", "visibility": "secret"})), u422),
        ("empty tag name", Method::POST, "/tags".into(), Some(json!({"name": "", "visibility": "public"})), u422),
        ("delete unknown tag", Method::DELETE, format!("/tags/{NOBODY}"), None, StatusCode::NOT_FOUND),
        ("delete sync-less tag in use? unknown id", Method::GET, format!("/tags/{NOBODY}"), None, StatusCode::NOT_FOUND),
        // Contacts.
        ("contact malformed email", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "emails": [{"address": "nope", "kind": "work"}]})), u422),
        ("contact unknown email kind", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "emails": [{"address": "a@b.example", "kind": "pager"}]})), u422),
        ("contact unknown phone kind", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "phones": [{"number": "123", "kind": "fax"}]})), u422),
        ("contact phone without digits", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "phones": [{"number": "call me", "kind": "work"}]})), u422),
        ("contact two primaries", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "emails": [{"address": "a@b.example", "primary": true}, {"address": "c@b.example", "primary": true}]})), u422),
        ("contact without a name", Method::POST, "/contacts".into(), Some(json!({"given_name": "", "family_name": ""})), u422),
        ("contact bad birthday", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "birthday": "1999-02-30"})), u422),
        ("contact unknown tag", Method::POST, "/contacts".into(), Some(json!({"given_name": "A", "family_name": "B", "tags": [NOBODY]})), u422),
        ("contact missing family_name", Method::POST, "/contacts".into(), Some(json!({"given_name": "A"})), u422),
        ("patch contact malformed email", Method::PATCH, format!("/contacts/{contact}"), Some(json!({"emails": [{"address": "x@@y"}]})), u422),
        ("patch contact to no name", Method::PATCH, format!("/contacts/{contact}"), Some(json!({"given_name": "", "family_name": ""})), u422),
        ("patch unknown contact", Method::PATCH, format!("/contacts/{NOBODY}"), Some(json!({"notes": "x"})), StatusCode::NOT_FOUND),
        ("get unknown contact", Method::GET, format!("/contacts/{NOBODY}"), None, StatusCode::NOT_FOUND),
        ("contact bad uuid", Method::GET, "/contacts/123".into(), None, StatusCode::BAD_REQUEST),
        ("delete unknown contact", Method::DELETE, format!("/contacts/{NOBODY}"), None, StatusCode::NOT_FOUND),
        ("tag with unknown tag", Method::PUT, format!("/contacts/{contact}/tags/{NOBODY}"), None, StatusCode::NOT_FOUND),
        ("tag unknown contact", Method::PUT, format!("/contacts/{NOBODY}/tags/{private}"), None, StatusCode::NOT_FOUND),
        ("untag unknown contact", Method::DELETE, format!("/contacts/{NOBODY}/tags/{private}"), None, StatusCode::NOT_FOUND),
        ("tag bad uuid", Method::PUT, format!("/contacts/{contact}/tags/xyz"), None, StatusCode::BAD_REQUEST),
        ("list by unknown tag", Method::GET, format!("/contacts?tag_id={NOBODY}"), None, StatusCode::NOT_FOUND),
        ("list by malformed tag", Method::GET, "/contacts?tag_id=abc".into(), None, StatusCode::BAD_REQUEST),
        ("limit 0", Method::GET, "/contacts?limit=0".into(), None, StatusCode::BAD_REQUEST),
        ("limit too large", Method::GET, "/contacts?limit=100000".into(), None, StatusCode::BAD_REQUEST),
        ("bad cursor", Method::GET, "/contacts?cursor=zzz".into(), None, StatusCode::BAD_REQUEST),
        // Activities.
        ("end before start", Method::POST, "/activities".into(), Some(timed(json!({"end": "2026-03-01T09:00:00Z"}))), u422),
        ("activity unknown tz", Method::POST, "/activities".into(), Some(timed(json!({"time_zone": "Europe/Atlantis"}))), u422),
        ("activity bad instant", Method::POST, "/activities".into(), Some(timed(json!({"start": "yesterday"}))), u422),
        ("activity instant without offset", Method::POST, "/activities".into(), Some(timed(json!({"start": "2026-03-01T10:00:00"}))), u422),
        ("all-day with instants", Method::POST, "/activities".into(), Some(timed(json!({"all_day": true}))), u422),
        ("all-day empty range", Method::POST, "/activities".into(), Some(timed(json!({"all_day": true, "start": "2026-03-02", "end": "2026-03-02"}))), u422),
        ("all-day end before start", Method::POST, "/activities".into(), Some(timed(json!({"all_day": true, "start": "2026-03-05", "end": "2026-03-02"}))), u422),
        ("all-day bad date", Method::POST, "/activities".into(), Some(timed(json!({"all_day": true, "start": "2026-02-30", "end": "2026-03-02"}))), u422),
        ("unknown organizer", Method::POST, "/activities".into(), Some(timed(json!({"organizer_user_id": NOBODY}))), u422),
        ("unknown participant user", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"user_id": NOBODY}]}))), u422),
        ("unknown participant contact", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"contact_id": NOBODY}]}))), u422),
        ("participant contact without email", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"contact_id": nomail}]}))), u422),
        ("participant two keys", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"user_id": owner, "email": "a@b.example"}]}))), u422),
        ("participant no key", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"response_status": "accepted"}]}))), u422),
        ("participant malformed email", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"email": "nobody"}]}))), u422),
        ("participant unknown response", Method::POST, "/activities".into(), Some(timed(json!({"participants": [{"email": "a@b.example", "response_status": "maybe"}]}))), u422),
        ("unknown status", Method::POST, "/activities".into(), Some(timed(json!({"status": "postponed"}))), u422),
        ("empty title", Method::POST, "/activities".into(), Some(timed(json!({"title": "  "}))), u422),
        ("patch end before start", Method::PATCH, format!("/activities/{activity}"), Some(json!({"end": "2026-03-01T08:00:00Z"})), u422),
        ("patch unknown tz", Method::PATCH, format!("/activities/{activity}"), Some(json!({"time_zone": "Moon/Base"})), u422),
        ("patch unknown organizer", Method::PATCH, format!("/activities/{activity}"), Some(json!({"organizer_user_id": NOBODY})), u422),
        ("patch to all-day without dates", Method::PATCH, format!("/activities/{activity}"), Some(json!({"all_day": true})), u422),
        ("patch unknown activity", Method::PATCH, format!("/activities/{NOBODY}"), Some(json!({"title": "x"})), StatusCode::NOT_FOUND),
        ("delete unknown activity", Method::DELETE, format!("/activities/{NOBODY}"), None, StatusCode::NOT_FOUND),
        ("list by unknown organizer", Method::GET, format!("/activities?organizer_user_id={NOBODY}"), None, StatusCode::NOT_FOUND),
        ("bad organizer cursor", Method::GET, format!("/activities?organizer_user_id={owner}&cursor=1_x"), None, StatusCode::BAD_REQUEST),
        // Sync settings.
        ("public tag as sync tag", Method::PUT, contacts_settings.clone(), Some(settings(json!({"tag_id": public}))), u422),
        ("corporate tag as sync tag", Method::PUT, contacts_settings.clone(), Some(settings(json!({"tag_id": corporate}))), u422),
        ("another user's private tag", Method::PUT, contacts_settings.clone(), Some(settings(json!({"tag_id": foreign}))), u422),
        ("unknown sync tag", Method::PUT, contacts_settings.clone(), Some(settings(json!({"tag_id": NOBODY}))), u422),
        ("contacts without tag", Method::PUT, contacts_settings.clone(), Some(settings(json!({"tag_id": null}))), u422),
        ("interval 0", Method::PUT, contacts_settings.clone(), Some(settings(json!({"interval_minutes": 0}))), u422),
        ("interval negative", Method::PUT, contacts_settings.clone(), Some(settings(json!({"interval_minutes": -5}))), u422),
        ("interval and cron", Method::PUT, contacts_settings.clone(), Some(settings(json!({"cron": "0 * * * * *"}))), u422),
        ("neither interval nor cron", Method::PUT, contacts_settings.clone(), Some(settings(json!({"interval_minutes": null}))), u422),
        ("invalid cron", Method::PUT, contacts_settings.clone(), Some(settings(json!({"interval_minutes": null, "cron": "every day at noon"}))), u422),
        ("trigger words on contacts", Method::PUT, contacts_settings.clone(), Some(settings(json!({"trigger_words": ["x"]}))), u422),
        ("tag on activities", Method::PUT, activities_settings.clone(), Some(settings(json!({}))), u422),
        ("empty trigger word", Method::PUT, activities_settings.clone(), Some(settings(json!({"tag_id": null, "trigger_words": [""]}))), u422),
        ("bad synchronize_from", Method::PUT, activities_settings.clone(), Some(settings(json!({"tag_id": null, "synchronize_from": "soon"}))), u422),
        ("unknown kind", Method::PUT, format!("/users/{owner}/sync-settings/emails"), Some(settings(json!({}))), StatusCode::BAD_REQUEST),
        ("settings of unknown user", Method::PUT, format!("/users/{NOBODY}/sync-settings/contacts"), Some(settings(json!({}))), StatusCode::NOT_FOUND),
        ("auto_sync not a bool", Method::PUT, contacts_settings.clone(), Some(settings(json!({"auto_sync": "yes"}))), u422),
        // Routes and methods.
        ("unknown route", Method::GET, "/nope".into(), None, StatusCode::NOT_FOUND),
        ("method not allowed", Method::DELETE, "/users".into(), None, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (what, method, path, body, expected) in cases {
        let (status, resp) = app.call(method, &path, body).await;
        assert_error(status, &resp, expected, what);
        assert_eq!(app.snapshot(), before, "{what}: the database changed");
    }

    // Raw bodies: wrong or missing content type, bad JSON, oversized, empty.
    let url = format!("{}/users", app.base);
    let ok_json = r#"{"email": "raw@example.com", "display_name": "Raw"}"#;
    let big = format!(r#"{{"email": "big@example.com", "display_name": "{}"}}"#, "x".repeat(300 * 1024));
    let raw: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        ("text/plain", app.client.post(&url).header("content-type", "text/plain").body(ok_json), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("no content type", app.client.post(&url).body(ok_json), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("form", app.client.post(&url).header("content-type", "application/x-www-form-urlencoded").body("email=a"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("bad JSON", app.client.post(&url).header("content-type", "application/json").body("{\"email\": "), StatusCode::BAD_REQUEST),
        ("not an object", app.client.post(&url).header("content-type", "application/json").body("[1,2]"), u422),
        ("empty body", app.client.post(&url).header("content-type", "application/json"), StatusCode::BAD_REQUEST),
        ("oversized body", app.client.post(&url).header("content-type", "application/json").body(big), StatusCode::PAYLOAD_TOO_LARGE),
        ("binary junk", app.client.post(&url).header("content-type", "application/json").body(vec![0xff, 0xfe, 0x00, 0x01]), StatusCode::BAD_REQUEST),
    ];
    for (what, req, expected) in raw {
        let (status, resp) = read(req.bearer_auth(&app.token).send().await.unwrap()).await;
        assert_error(status, &resp, expected, what);
        assert_eq!(app.snapshot(), before, "{what}: the database changed");
    }
});

db_test!(async fn strict_input_is_refused_and_changes_nothing(db) {
    let app = TestApp::start(&db).await;
    let owner = app.user("owner@example.com").await;
    let tag = app.tag("mine", "private", Some(&owner)).await;
    let (_, contact) = app.post("/contacts", json!({"given_name": "C", "family_name": "D", "emails": [{"address": "c@d.example", "kind": "work"}]})).await;
    let contact = id_of(&contact);
    let timed = |extra: Value| {
        let mut base = json!({"title": "T", "start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00Z",
            "time_zone": "UTC", "display_in_calendar": true, "organizer_user_id": owner});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let (_, activity) = app.post("/activities", timed(json!({}))).await;
    let activity = id_of(&activity);
    let user_path = format!("/users/{owner}");
    let contact_path = format!("/contacts/{contact}");
    let activity_path = format!("/activities/{activity}");
    let settings_path = format!("/users/{owner}/sync-settings/contacts");
    let new_contact = |extra: Value| {
        let mut base = json!({"given_name": "A", "family_name": "B"});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let garbage_key = json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": "-----BEGIN PRIVATE KEY-----\nR2FyYmFnZSwgbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n",
        "client_email": "sync@p.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let before = app.snapshot();

    let u422 = StatusCode::UNPROCESSABLE_ENTITY;
    // (what, method, path, body, the text the message must contain)
    let cases: Vec<(&str, Method, String, Value, &str)> = vec![
        // A JSON array where an object is expected.
        ("array as a new user", Method::POST, "/users".into(), json!(["x@example.com", "Name"]), "object"),
        ("empty array as a contact change", Method::PATCH, contact_path.clone(), json!([]), "object"),
        ("array as a user change", Method::PATCH, user_path.clone(), json!([]), "object"),
        ("string as a tag", Method::POST, "/tags".into(), json!("x"), "object"),
        // An empty change.
        ("empty user change", Method::PATCH, user_path.clone(), json!({}), "nothing to change"),
        ("empty contact change", Method::PATCH, contact_path.clone(), json!({}), "nothing to change"),
        ("empty activity change", Method::PATCH, activity_path.clone(), json!({}), "nothing to change"),
        // null on a field that cannot be null.
        ("null display_name", Method::PATCH, user_path.clone(), json!({"display_name": null}), "display_name"),
        ("null time_zone", Method::PATCH, user_path.clone(), json!({"time_zone": null}), "time_zone"),
        ("null given_name", Method::PATCH, contact_path.clone(), json!({"given_name": null}), "given_name"),
        ("null emails", Method::PATCH, contact_path.clone(), json!({"emails": null}), "emails"),
        ("null title", Method::PATCH, activity_path.clone(), json!({"title": null}), "title"),
        ("null all_day", Method::PATCH, activity_path.clone(), json!({"all_day": null}), "all_day"),
        ("null start", Method::PATCH, activity_path.clone(), json!({"start": null}), "start"),
        // Unknown fields inside nested objects.
        ("unknown address field", Method::POST, "/contacts".into(), new_contact(json!({"addresses": [{"city": "Berlin", "zip": "10115"}]})), "zip"),
        ("unknown address field in a change", Method::PATCH, contact_path.clone(), json!({"addresses": [{"city": "Berlin", "zip": "10115"}]}), "addresses[0]"),
        ("unknown email field", Method::PATCH, contact_path.clone(), json!({"emails": [{"address": "a@b.example", "label": "x"}]}), "emails[0]"),
        ("unknown phone field", Method::POST, "/contacts".into(), new_contact(json!({"phones": [{"number": "123", "ext": "4"}]})), "phones[0]"),
        ("unknown participant field", Method::POST, "/activities".into(), timed(json!({"participants": [{"email": "a@b.example", "role": "x"}]})), "participants[0]"),
        // Impossible dates.
        ("birthday year -1", Method::POST, "/contacts".into(), new_contact(json!({"birthday": "-0001-05-06"})), "birthday"),
        ("birthday year 0", Method::POST, "/contacts".into(), new_contact(json!({"birthday": "0000-05-06"})), "birthday"),
        ("birthday year -1 in a change", Method::PATCH, contact_path.clone(), json!({"birthday": "-0001-05-06"}), "birthday"),
        ("birthday without a day", Method::POST, "/contacts".into(), new_contact(json!({"birthday": "--02-30"})), "birthday"),
        ("start in year 0", Method::POST, "/activities".into(), timed(json!({"start": "0000-03-01T10:00:00Z"})), "start"),
        ("end in year 9999", Method::POST, "/activities".into(), timed(json!({"end": "9999-03-01T11:00:00Z"})), "end"),
        ("change start to year 0", Method::PATCH, activity_path.clone(), json!({"start": "0000-03-01T10:00:00Z"}), "start"),
        ("change end to year 9999", Method::PATCH, activity_path.clone(), json!({"end": "9999-03-01T11:00:00Z"}), "end"),
        ("all-day in year 0", Method::POST, "/activities".into(), timed(json!({"all_day": true, "start": "0000-03-01", "end": "2026-03-02"})), "start"),
        ("leap second", Method::POST, "/activities".into(), timed(json!({"start": "2026-06-30T23:59:60Z", "end": "2026-07-01T01:00:00Z"})), "start"),
        ("leap second in a change", Method::PATCH, activity_path.clone(), json!({"end": "2026-06-30T23:59:60Z"}), "end"),
        // Control characters in names.
        ("NUL in given_name", Method::POST, "/contacts".into(), new_contact(json!({"given_name": "A\u{0}B"})), "given_name"),
        ("BEL in given_name", Method::PATCH, contact_path.clone(), json!({"given_name": "A\u{7}"}), "given_name"),
        ("newline in family_name", Method::PATCH, contact_path.clone(), json!({"family_name": "A\nB"}), "family_name"),
        ("NUL in a street", Method::POST, "/contacts".into(), new_contact(json!({"addresses": [{"street": "Main St\u{0}"}]})), "addresses[0].street"),
        ("BEL in notes", Method::PATCH, contact_path.clone(), json!({"notes": "ring\u{7}"}), "notes"),
        ("NUL in display_name", Method::POST, "/users".into(), json!({"email": "x@example.com", "display_name": "X\u{0}"}), "display_name"),
        ("BEL in display_name", Method::PATCH, user_path.clone(), json!({"display_name": "X\u{7}"}), "display_name"),
        ("NUL in title", Method::POST, "/activities".into(), timed(json!({"title": "T\u{0}"})), "title"),
        ("BEL in title", Method::PATCH, activity_path.clone(), json!({"title": "T\u{7}"}), "title"),
        ("ESC in location", Method::PATCH, activity_path.clone(), json!({"location": "\u{1b}[31mRoom"}), "location"),
        ("BEL in a tag name", Method::POST, "/tags".into(), json!({"name": "t\u{7}", "visibility": "public"}), "name"),
        // Schedules that fire every second or never.
        ("cron every second", Method::PUT, settings_path.clone(), json!({"auto_sync": true, "cron": "* * * * * *", "tag_id": tag}), "cron"),
        ("cron twice a minute", Method::PUT, settings_path.clone(), json!({"auto_sync": true, "cron": "0,30 0 9 * * *", "tag_id": tag}), "cron"),
        ("cron never", Method::PUT, settings_path.clone(), json!({"auto_sync": true, "cron": "0 0 0 30 2 *", "tag_id": tag}), "cron"),
        ("cron in the past", Method::PUT, settings_path.clone(), json!({"auto_sync": true, "cron": "0 0 0 1 1 * 2020", "tag_id": tag}), "cron"),
        // A service-account key that does not parse.
        ("garbage private key", Method::PUT, "/google/service-account".into(), json!({"domain": "example.com", "key": garbage_key}), "key.private_key"),
    ];
    for (what, method, path, body, names) in cases {
        let (status, resp) = app.call(method, &path, Some(body)).await;
        assert_error(status, &resp, u422, what);
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{what}: the message does not name {names:?}: {message}");
        assert_eq!(app.snapshot(), before, "{what}: the database changed");
    }
    let stored = app
        .store
        .read(|c| crmsync_schema::connections::get_service_account(c, "example.com"))
        .unwrap();
    assert!(stored.is_none(), "a key that does not parse was stored");

    // Lenient where Google is: a birthday without a year (Feb 29 too), line breaks and tabs in
    // notes and streets, a schedule that fires once a year; `null` clears what may be cleared.
    let (s, v) = app.post("/contacts", new_contact(json!({"birthday": "--02-29", "notes": "line 1\r\nline 2\tend",
        "addresses": [{"street": "Main St 1\nBack house", "city": "Berlin"}]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["birthday"], "--02-29");
    let (s, v) = app.patch(&contact_path, json!({"birthday": "--12-10"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["birthday"], "--12-10");
    let (s, v) = app.patch(&contact_path, json!({"birthday": null, "notes": "x"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("birthday").is_none_or(Value::is_null), "{v}");
    let (s, v) = app.patch(&activity_path, json!({"location": null})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.put(&settings_path, Some(json!({"auto_sync": true, "cron": "0 0 9 1 1 *", "tag_id": tag}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
});
