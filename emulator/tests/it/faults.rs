//! Fault injection (status and reason, times, delay, applied-but-lost, dropped connections,
//! matching by user and HTTP method), quotas with Google's bodies, stats and the request log.

use crate::calendar::timed;
use crate::common::*;
use crate::people::person;
use serde_json::json;

#[tokio::test]
async fn error_faults_use_each_apis_envelope_and_count_down() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let ppl = env.people(&t);
    let (s, v) = env.post("/faults", json!({"rules": [
        {"match": "calendar.events.list", "status": 503, "times": 2},
        {"match": "people.people.createContact", "status": 429, "reason": "RATE_LIMIT_EXCEEDED", "times": 1},
        {"match": {"method": "calendar.events.insert"}, "status": 403, "reason": "rateLimitExceeded", "times": 1}
    ]})).await;
    assert_eq!(s, 200, "{v}");
    for _ in 0..2 {
        let err = cal.events().list("primary").doit().await.unwrap_err();
        assert_eq!(reason(&err), (503, "backendError".into()));
    }
    cal.events().list("primary").doit().await.unwrap();
    let err = ppl
        .people()
        .create_contact(person("A", "B", "a@b.c"))
        .doit()
        .await
        .unwrap_err();
    let (code, r, status) = people_reason(&err);
    assert_eq!(
        (code, r.as_str(), status.as_str()),
        (429, "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED")
    );
    let err = cal
        .events()
        .insert(timed("A", 9), "primary")
        .doit()
        .await
        .unwrap_err();
    if let google_calendar3::Error::BadRequest(v) = &err {
        assert_eq!(v["error"]["errors"][0]["domain"], "usageLimits");
        assert_eq!(v["error"]["code"], 403);
    }
    // All rules used up.
    let (_, v) = env.get("/faults").await;
    assert!(v["rules"].as_array().unwrap().is_empty());
    cal.events()
        .insert(timed("A", 9), "primary")
        .doit()
        .await
        .unwrap();
    let stats = env.emu().stats();
    assert_eq!(stats.count_status("calendar.events.list", 503), 2);
    assert_eq!(stats.count_status("calendar.events.list", 200), 1);
    env.finish().await;
}

#[tokio::test]
async fn applied_faults_carry_the_request_out_then_lose_the_response() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let ppl = env.people(&t);
    env.emu()
        .set_faults(vec![crmsync_emulator::FaultRule::error(
            "people.people.batchCreateContacts",
            500,
            1,
        )
        .applied()]);
    let req = google_people1::api::BatchCreateContactsRequest {
        contacts: Some(vec![google_people1::api::ContactToCreate {
            contact_person: Some(person("Lost", "Reply", "l@r.c")),
        }]),
        read_mask: Some(google_people1::FieldMask::new(&["names"])),
        sources: None,
    };
    let err = ppl
        .people()
        .batch_create_contacts(req)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).0, 500);
    assert_eq!(
        env.emu().contacts("alice@example.com").len(),
        1,
        "the write happened"
    );
    // status 0: the connection is dropped without a response (a transport error).
    env.post("/faults", json!({"rules": [{"match": "calendar.events.insert user=alice@example.com http=POST", "status": 0, "times": 1, "applied": true}]})).await;
    let mut ev = timed("Dropped", 9);
    ev.id = Some("dropped0001".into());
    let err = cal
        .events()
        .insert(ev.clone(), "primary")
        .doit()
        .await
        .unwrap_err();
    assert!(
        !matches!(err, google_calendar3::Error::BadRequest(_)),
        "expected a transport error, got {err:?}"
    );
    assert!(
        env.emu()
            .calendar_event("alice@example.com", "dropped0001")
            .is_some(),
        "applied before the drop"
    );
    // The retry is a 409 duplicate: the client can treat it as already created.
    let err = cal.events().insert(ev, "primary").doit().await.unwrap_err();
    assert_eq!(reason(&err), (409, "duplicate".into()));
    // Not applied + status 0: dropped and not carried out.
    env.post(
        "/faults",
        json!({"rules": [{"match": "calendar.events.insert", "status": 0, "times": 1}]}),
    )
    .await;
    let mut ev = timed("Never", 9);
    ev.id = Some("never00001".into());
    cal.events().insert(ev, "primary").doit().await.unwrap_err();
    assert!(env
        .emu()
        .calendar_event("alice@example.com", "never00001")
        .is_none());
    assert_eq!(
        env.emu().stats().count_status("calendar.events.insert", 0),
        2
    );
    env.finish().await;
}

#[tokio::test]
async fn faults_match_by_user_and_method_and_can_delay() {
    let env = Env::new().await;
    let ta = env.user("alice@example.com").await;
    let tb = env.user("bob@example.com").await;
    env.post(
        "/faults",
        json!({"rules": [
            {"match": "calendar.* user=bob@example.com", "status": 500},
            {"match": "people.contactGroups.list", "delay_ms": 300, "times": 1}
        ]}),
    )
    .await;
    env.calendar(&ta)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    for _ in 0..3 {
        let err = env
            .calendar(&tb)
            .events()
            .list("primary")
            .doit()
            .await
            .unwrap_err();
        assert_eq!(reason(&err).0, 500);
    }
    let started = std::time::Instant::now();
    env.people(&ta)
        .contact_groups()
        .list()
        .doit()
        .await
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    // Bad match syntax is a 400 from the control plane.
    let (s, _) = env
        .post(
            "/faults",
            json!({"rules": [{"match": "calendar.* owner=x", "status": 500}]}),
        )
        .await;
    assert_eq!(s, 400);
    let r = env
        .http
        .delete(format!("{}/_emulator/faults", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    env.calendar(&tb)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    env.finish().await;
}

#[tokio::test]
async fn quotas_per_user_per_minute_with_googles_bodies() {
    let env = Env::new().await;
    let ta = env.user("alice@example.com").await;
    let tb = env.user("bob@example.com").await;
    let (s, _) = env
        .put(
            "/quotas",
            json!({"calendar_per_user_per_minute": 3, "people_per_user_per_minute": 2}),
        )
        .await;
    assert_eq!(s, 200);
    let cal = env.calendar(&ta);
    for _ in 0..3 {
        cal.events().list("primary").doit().await.unwrap();
    }
    let err = cal.events().list("primary").doit().await.unwrap_err();
    if let google_calendar3::Error::BadRequest(v) = &err {
        assert_eq!(
            v,
            &json!({"error": {"errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}], "code": 403, "message": "Rate Limit Exceeded"}})
        );
    } else {
        panic!("{err:?}");
    }
    // Per user: bob is not limited by alice's use.
    env.calendar(&tb)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    let ppl = env.people(&ta);
    ppl.contact_groups().list().doit().await.unwrap();
    ppl.contact_groups().list().doit().await.unwrap();
    let err = ppl.contact_groups().list().doit().await.unwrap_err();
    let (code, r, status) = people_reason(&err);
    assert_eq!(
        (code, r.as_str(), status.as_str()),
        (429, "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED")
    );
    // The next minute has a fresh window.
    env.emu().advance_clock(chrono::Duration::seconds(61));
    cal.events().list("primary").doit().await.unwrap();
    // 429 flavour for Calendar.
    env.put(
        "/quotas",
        json!({"calendar_per_user_per_minute": 0, "calendar_status": 429}),
    )
    .await;
    let err = cal.events().list("primary").doit().await.unwrap_err();
    assert_eq!(reason(&err), (429, "rateLimitExceeded".into()));
    let (s, _) = env.put("/quotas", json!({"calendar_status": 500})).await;
    assert_eq!(s, 400);
    env.finish().await;
}

#[tokio::test]
async fn stats_and_request_log() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    cal.events()
        .insert(timed("A", 9), "primary")
        .doit()
        .await
        .unwrap();
    cal.events()
        .list("primary")
        .max_results(5)
        .doit()
        .await
        .unwrap();
    cal.events()
        .get("primary", "missing00")
        .doit()
        .await
        .unwrap_err();
    let (_, v) = env.get("/stats").await;
    assert_eq!(v["methods"]["calendar.events.insert"]["200"], 1);
    assert_eq!(v["methods"]["calendar.events.get"]["404"], 1);
    assert_eq!(v["total"], 3);
    let (_, v) = env.get("/requests").await;
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1]["method"], "calendar.events.list");
    assert_eq!(reqs[1]["http_method"], "GET");
    assert_eq!(reqs[1]["user"], "alice@example.com");
    assert_eq!(reqs[1]["status"], 200);
    let url = reqs[1]["url"].as_str().unwrap();
    assert!(
        url.starts_with("/calendar/v3/calendars/primary/events?")
            && url.contains("maxResults=5")
            && url.contains("alt=json"),
        "{url}"
    );
    env.finish().await;
}

#[tokio::test]
async fn delegated_calls_share_the_service_account_quota_unless_quota_user_is_set() {
    let env = Env::new().await;
    for u in ["ann@example.com", "ben@example.com"] {
        env.post("/users", json!({"email": u})).await;
    }
    let (_, key) = env
        .post("/service-accounts", json!({"domain": "example.com"}))
        .await;
    env.post(
        "/domain-wide-delegation",
        json!({"client_id": key["client_id"], "scopes": [CAL]}),
    )
    .await;
    let key = yup_oauth2::parse_service_account_key(key.to_string()).unwrap();
    let mut tokens = Vec::new();
    for u in ["ann@example.com", "ben@example.com"] {
        let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key.clone())
            .subject(u)
            .build()
            .await
            .unwrap();
        tokens.push(
            auth.token(&[CAL])
                .await
                .unwrap()
                .token()
                .unwrap()
                .to_string(),
        );
    }
    env.put("/quotas", json!({"calendar_per_user_per_minute": 2}))
        .await;
    let (ann, ben) = (env.calendar(&tokens[0]), env.calendar(&tokens[1]));
    ann.events().list("primary").doit().await.unwrap();
    ben.events().list("primary").doit().await.unwrap();
    // Both users consumed the service account's window.
    let err = ann.events().list("primary").doit().await.unwrap_err();
    assert_eq!(reason(&err), (403, "rateLimitExceeded".into()));
    // quotaUser gives each impersonated user their own window.
    ann.events()
        .list("primary")
        .param("quotaUser", "ann")
        .doit()
        .await
        .unwrap();
    ben.events()
        .list("primary")
        .param("quotaUser", "ben")
        .doit()
        .await
        .unwrap();
    ben.events()
        .list("primary")
        .param("quotaUser", "ben")
        .doit()
        .await
        .unwrap();
    let err = ben
        .events()
        .list("primary")
        .param("quotaUser", "ben")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).1, "rateLimitExceeded");
    env.finish().await;
}

#[tokio::test]
async fn if_none_match_gives_304() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let (_, e) = env
        .calendar(&t)
        .events()
        .insert(timed("A", 9), "primary")
        .doit()
        .await
        .unwrap();
    let path = format!("/calendar/v3/calendars/primary/events/{}", e.id.unwrap());
    let (s, _) = env
        .raw(
            reqwest::Method::GET,
            &path,
            &t,
            None,
            &[("If-None-Match", e.etag.as_deref().unwrap())],
        )
        .await;
    assert_eq!(s, 304);
    let (s, _) = env
        .raw(
            reqwest::Method::GET,
            &path,
            &t,
            None,
            &[("If-None-Match", "\"1\"")],
        )
        .await;
    assert_eq!(s, 200);
    env.finish().await;
}
