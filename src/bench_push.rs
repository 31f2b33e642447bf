//! `crmsync bench push`: the push latency of SPEC section 8 against the emulator (its own
//! process) on an idle in-process server with its scheduler and Calendar watch channels:
//! N CRM edits of a tagged contact through the API, each timed until the emulator's People store
//! shows it, then N Google Calendar edits, each timed until the CRM has it. Edits go one at a
//! time (each waits for the last to arrive), so every figure includes the whole debounce.
//! Prints p50, p95 and the maximum, and the Google API calls per edit; asserts nothing.

use crate::api::AppState;
use crate::bench::{engine, world};
use crate::scheduler::{Scheduler, SchedulerConfig};
use anyhow::{bail, Context};
use chrono::Utc;
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{SyncSchedule, TagVisibility};
use crmsync_schema::changes::Origin;
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::{activities, admin_tokens, channels, contacts, jobs, settings, tags};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(label: &str, mut ms: Vec<f64>, calls: u64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  {label}: {} edits, p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; {:.1} Google API calls per edit",
        ms.len(),
        percentile(&ms, 0.50),
        percentile(&ms, 0.95),
        ms.last().copied().unwrap_or(0.0),
        calls as f64 / ms.len().max(1) as f64
    );
}

/// All Google API calls the emulator served so far (OAuth token calls left out).
pub(crate) fn api_calls(stats: &Value) -> u64 {
    stats["methods"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(name, _)| !name.starts_with("oauth2"))
                .flat_map(|(_, by_status)| by_status.as_object().into_iter().flatten())
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Measures `edits` CRM edits and `edits` Google Calendar edits with a `debounce_ms` push
/// debounce.
pub async fn run(edits: usize, debounce_ms: u64, database_url: Option<&str>) -> anyhow::Result<()> {
    let w = world(database_url).await?;
    let (store, alice, clock) = (w.store.clone(), w.alice.clone(), w.clock.clone());
    let now = clock.now();
    let tag = store.write(|c| {
        tags::create_tag(
            c,
            &NewTag {
                external_id: None,
                name: "CRM sync".into(),
                visibility: TagVisibility::Private,
                owner_user_id: Some(alice.id),
            },
            now,
        )
    })?;
    for (kind, tag_id) in [
        (SyncKind::Contacts, Some(tag.id)),
        (SyncKind::Activities, None),
    ] {
        store.write(|c| {
            settings::put_sync_settings(
                c,
                &NewSyncSettings {
                    user_id: alice.id,
                    kind,
                    auto_sync: true,
                    schedule: SyncSchedule::IntervalMinutes(24 * 60),
                    tag_id,
                    synchronize_from: None,
                    trigger_words: vec![],
                },
                now,
            )
        })?;
    }
    let push = jobs::PushSettings {
        enabled: true,
        debounce_ms: debounce_ms as i64,
        max_wait_ms: (debounce_ms as i64 * 5).max(10_000),
    };
    store.write(|c| jobs::put_push_settings(c, &push, now))?;
    let data = crmsync_engine::model::ContactData {
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        emails: vec![crmsync_engine::model::Email {
            address: "ada@clients.example".into(),
            kind: Default::default(),
            primary: true,
        }],
        ..Default::default()
    };
    let ada =
        store.write(|c| contacts::create_contact(c, &data, &[tag.id], None, Origin::Api, now))?;
    let (_, token) = store.write(|c| admin_tokens::create_admin_token(c, "bench", now))?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let root = format!("http://{}", listener.local_addr()?);
    let keeper = crate::push::ChannelKeeper::new(&root).map_err(anyhow::Error::msg)?;
    let engine = engine(&w);
    let scheduler = Scheduler::new(
        engine.clone(),
        SchedulerConfig {
            worker_id: "bench".into(),
            jitter: crate::scheduler::schedule::JitterPolicy::none(),
            ..SchedulerConfig::default()
        },
    )
    .with_channels(keeper);
    let handle = scheduler.handle();
    let state = AppState::new(store.clone(), clock.clone())
        .with_google(crmsync_connectors::GoogleEndpoints::emulator(
            &w.emulator.base,
        ))
        .with_scheduler(handle.clone());
    let server = tokio::spawn(crate::server::serve(
        state,
        listener,
        std::future::pending(),
    ));
    let scheduler_task = tokio::spawn(scheduler.run());

    // The first scheduled runs, and the watch channel.
    let ready = Instant::now();
    loop {
        let (idle, channel) = store.read(|c| {
            let idle = SyncKind::ALL.iter().all(|k| {
                jobs::get_job(c, alice.id, *k)
                    .ok()
                    .flatten()
                    .is_some_and(|j| j.last_run_id.is_some() && j.running_run_id.is_none())
            });
            Ok((idle, channels::channel_of(c, alice.id)?))
        })?;
        if idle && channel.is_some_and(|ch| ch.channel_id.is_some()) {
            break;
        }
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("the first runs or the watch channel did not come within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let http = reqwest::Client::new();
    let base = format!("{root}/api/v1");
    let stats = |e: &crate::bench::EmulatorProcess| {
        let e_base = e.base.clone();
        async move {
            let v: Value = reqwest::get(format!("{e_base}/_emulator/stats"))
                .await?
                .json()
                .await?;
            Ok::<u64, anyhow::Error>(api_calls(&v))
        }
    };

    // CRM edit → Google.
    let before = stats(&w.emulator).await?;
    let mut crm_to_google = Vec::with_capacity(edits);
    for i in 0..edits {
        let title = format!("Title {i}");
        let resp = http
            .patch(format!("{base}/contacts/{}", ada.id))
            .bearer_auth(&token)
            .json(&json!({"job_title": title}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("PATCH: {}", resp.status());
        }
        let t = Instant::now();
        loop {
            let people: Value = reqwest::get(format!(
                "{}/_emulator/users/alice@example.com/contacts",
                w.emulator.base
            ))
            .await?
            .json()
            .await?;
            let seen = people["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["organizations"][0]["title"] == title.as_str());
            if seen {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("edit {i} did not reach Google within a minute");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        crm_to_google.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let crm_calls = stats(&w.emulator).await?.saturating_sub(before);

    // Google Calendar edit → CRM: one event, its title changed each time.
    let account = engine
        .accounts()
        .account_for(&alice)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let calendar = account.calendar().clone();
    let start = Utc::now() + chrono::Duration::days(2);
    let event = crmsync_connectors::Event {
        summary: Some("Planning 0".into()),
        start: Some(crmsync_connectors::calendar3::api::EventDateTime {
            date_time: Some(start),
            ..Default::default()
        }),
        end: Some(crmsync_connectors::calendar3::api::EventDateTime {
            date_time: Some(start + chrono::Duration::hours(1)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let made = calendar
        .insert_event("primary", event)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let event_id = match made {
        crmsync_connectors::InsertOutcome::Created(e) => e.id.context("the event's id")?,
        other => bail!("events.insert: {other:?}"),
    };
    let wait_for = |title: String| {
        let store = store.clone();
        async move {
            let t = Instant::now();
            loop {
                let list =
                    store.read(|c| activities::activities_by_organizer(c, alice.id, None, 500))?;
                if list.iter().any(|a| a.data.title == title) {
                    return Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0);
                }
                if t.elapsed() > Duration::from_secs(60) {
                    bail!("{title:?} did not reach the CRM within a minute");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for("Planning 0".into()).await?;
    let before = stats(&w.emulator).await?;
    let mut google_to_crm = Vec::with_capacity(edits);
    for i in 1..=edits {
        let title = format!("Planning {i}");
        let patch = crmsync_connectors::Event {
            summary: Some(title.clone()),
            ..Default::default()
        };
        calendar
            .patch_event("primary", &event_id, patch)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        google_to_crm.push(wait_for(title).await?);
    }
    // Less the bench's own events.patch per edit.
    let google_calls = stats(&w.emulator)
        .await?
        .saturating_sub(before)
        .saturating_sub(edits as u64);

    handle.shutdown();
    let _ = scheduler_task.await;
    server.abort();
    println!("crmsync bench push ({edits} edits each way, debounce {debounce_ms} ms, idle server, emulator in its own process)");
    report("CRM edit -> Google", crm_to_google, crm_calls);
    report("Google Calendar edit -> CRM", google_to_crm, google_calls);
    println!("  SPEC 8 target: both within 3 s at the 95th percentile, debounce included");
    Ok(())
}
