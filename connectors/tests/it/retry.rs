//! Retries on injected faults, no blind retry of non-idempotent creates, timeouts, the
//! client-side rate limiter against an enforced quota, quotaUser.

use crate::common::{fast, person, Env};
use crmsync_connectors::{ClientOptions, ErrorKind, EventListQuery, InsertOutcome, RetryPolicy};
use crmsync_emulator::{FaultRule, Quotas};
use futures::StreamExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn injected_503_and_429_are_retried_and_counted() {
    let env = Env::new().await;
    let account = env.account("alice@example.com").await;
    env.emu().set_faults(vec![
        FaultRule::error("calendar.events.list", 503, 2),
        FaultRule::error("people.people.connections.list", 429, 1).reason("RATE_LIMIT_EXCEEDED"),
        FaultRule::error("calendar.events.get", 403, 1).reason("userRateLimitExceeded"),
    ]);
    account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap();
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    assert!(account
        .calendar()
        .get_event("primary", "nothere01")
        .await
        .unwrap()
        .is_none());
    let m = account.metrics();
    assert_eq!(m.calls, 3);
    assert_eq!(m.retries, 4);
    assert_eq!(m.attempts, 7);
    assert_eq!(m.rate_limited, 2);
    // The get's final 404 (turned into `None`) is the only failed call.
    assert_eq!(m.failures, 1);
    assert_eq!(env.count("calendar.events.list"), 3);
}

#[tokio::test]
async fn persistent_503_gives_up_after_max_attempts() {
    let env = Env::new().await;
    let account = env.account("bob@example.com").await;
    env.emu()
        .set_faults(vec![FaultRule::error("calendar.events.list", 503, 100)]);
    let err = account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(err.status, Some(503));
    assert_eq!(err.attempts, 4);
    assert_eq!(env.count("calendar.events.list"), 4);
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}

#[tokio::test]
async fn create_with_lost_response_is_indeterminate_and_not_retried() {
    let env = Env::new().await;
    let account = env.account("carol@example.com").await;
    env.emu().set_faults(vec![FaultRule::error(
        "people.people.batchCreateContacts",
        503,
        1,
    )
    .applied()]);
    let err = account
        .people()
        .batch_create(vec![person(1)])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Indeterminate, "{err}");
    assert_eq!(env.count("people.people.batchCreateContacts"), 1);
    // It was applied: the executor adopts it through clientData on the next run.
    assert_eq!(env.emu().contacts("carol@example.com").len(), 1);

    // A dropped connection after applying: same.
    env.emu().set_faults(vec![
        FaultRule::error("people.people.createContact", 0, 1).applied()
    ]);
    let err = account
        .people()
        .create_contact(person(2))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Indeterminate, "{err}");
    assert_eq!(env.count("people.people.createContact"), 1);
    assert_eq!(env.emu().contacts("carol@example.com").len(), 2);
    assert_eq!(account.metrics().retries, 0);
}

#[tokio::test]
async fn rate_limited_create_is_retried_because_it_was_not_processed() {
    let env = Env::new().await;
    let account = env.account("dan@example.com").await;
    env.emu().set_faults(vec![FaultRule::error(
        "people.people.batchCreateContacts",
        429,
        2,
    )
    .reason("RATE_LIMIT_EXCEEDED")]);
    let created = account
        .people()
        .batch_create(vec![person(1)])
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(env.emu().contacts("dan@example.com").len(), 1);
    assert_eq!(account.metrics().retries, 2);
}

/// A rule that only delays one request of `method`.
fn delay(method: &str, ms: u64) -> FaultRule {
    let mut rule = FaultRule::error(method, 0, 1).delay_ms(ms);
    rule.status = None;
    rule
}

#[tokio::test]
async fn timeouts_retry_reads_and_make_creates_indeterminate() {
    let env = Env::new().await;
    let account = env
        .account_with(
            "erin@example.com",
            ClientOptions {
                request_timeout: Duration::from_millis(300),
                ..fast()
            },
        )
        .await;
    // The first attempt hangs past the timeout; the second succeeds.
    env.emu()
        .set_faults(vec![delay("people.people.connections.list", 1000)]);
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    assert_eq!(account.metrics().retries, 1);

    env.emu()
        .set_faults(vec![delay("people.people.createContact", 1000)]);
    let err = account
        .people()
        .create_contact(person(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Indeterminate, "{err}");
}

#[tokio::test]
async fn calendar_insert_after_dropped_connection_is_retried_safely() {
    let env = Env::new().await;
    let account = env.account("frank@example.com").await;
    env.emu().set_faults(vec![
        FaultRule::error("calendar.events.insert", 0, 1).applied()
    ]);
    let ev = crmsync_connectors::Event {
        id: Some("c0ffee0001".into()),
        summary: Some("x".into()),
        start: Some(crmsync_connectors::calendar3::api::EventDateTime {
            date: chrono::NaiveDate::from_ymd_opt(2026, 5, 1),
            ..Default::default()
        }),
        end: Some(crmsync_connectors::calendar3::api::EventDateTime {
            date: chrono::NaiveDate::from_ymd_opt(2026, 5, 2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let out = account
        .calendar()
        .insert_event("primary", ev)
        .await
        .unwrap();
    assert!(
        matches!(out, InsertOutcome::AlreadyExists { .. }),
        "{out:?}"
    );
    assert_eq!(env.emu().calendar_events("frank@example.com").len(), 1);
}

#[tokio::test]
async fn quota_user_is_sent_on_every_call() {
    let env = Env::new().await;
    let long = "crm-user-0123456789-0123456789-0123456789-xyz";
    let account = env
        .account_with(
            "gina@example.com",
            ClientOptions {
                quota_user: Some(long.into()),
                ..fast()
            },
        )
        .await;
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    account.people().ensure_group("CRM").await.unwrap();
    account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap();
    let expected = format!("quotaUser={}", &long[..40]);
    let reqs: Vec<_> = env
        .emu()
        .recent_requests()
        .into_iter()
        .filter(|r| r.method != "oauth2.token")
        .collect();
    assert!(reqs.len() >= 4);
    for r in &reqs {
        assert!(r.url.contains(&expected), "{}", r.url);
    }
}

/// Fires `n` concurrent gets and returns how many ended rate-limited.
async fn burst(account: &crmsync_connectors::GoogleAccount, n: usize) -> usize {
    let cal = account.calendar();
    futures::stream::iter(0..n)
        .map(|i| async move { cal.get_event("primary", &format!("missing{i:05}")).await })
        .buffer_unordered(32)
        .filter(|r| futures::future::ready(matches!(r, Err(e) if e.kind == ErrorKind::RateLimited)))
        .count()
        .await
}

#[tokio::test]
async fn rate_limiter_keeps_a_burst_under_the_enforced_quota() {
    // A minute-long test: exceeding a per-minute quota takes more than a minute.
    let env = Env::new().await;
    env.emu().set_quotas(Quotas {
        calendar_per_user_per_minute: Some(120),
        ..Default::default()
    });

    // Control: without the client-side limiter the burst is throttled by the emulator.
    let unlimited = env
        .account_with(
            "henry@example.com",
            ClientOptions {
                retry: RetryPolicy::no_retries(),
                calendar_rate_per_minute: Some(0),
                ..fast()
            },
        )
        .await;
    let rejected = burst(&unlimited, 130).await;
    assert!(rejected >= 10, "only {rejected} rejected");

    // With the limiter a little under the quota: 125 calls spread over a minute, none refused.
    let limited = env
        .account_with(
            "ivy@example.com",
            ClientOptions {
                retry: RetryPolicy::no_retries(),
                calendar_rate_per_minute: Some(117),
                ..fast()
            },
        )
        .await;
    let t0 = Instant::now();
    let rejected = burst(&limited, 125).await;
    let elapsed = t0.elapsed();
    assert_eq!(rejected, 0);
    let m = limited.metrics();
    assert_eq!(m.rate_limited, 0);
    assert_eq!(m.calls, 125);
    assert!(elapsed >= Duration::from_secs(60), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(70), "{elapsed:?}");
    assert!(m.throttled > Duration::from_secs(60));
}
