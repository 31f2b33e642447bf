//! Fixtures for scheduler tests: a `SyncWorld` (test database, in-process emulator, Alice with a
//! sync tag) plus a scheduler over an engine with a chosen clock, and optionally the API server
//! with that scheduler running in the background (as `crmsync serve` does).

use crate::support::read;
use crate::sync_support::SyncWorld;
use chrono::{DateTime, Utc};
use crmsync::api::AppState;
use crmsync::clock::{SharedClock, SystemClock, TestClock};
use crmsync::scheduler::schedule::JitterPolicy;
use crmsync::scheduler::{Scheduler, SchedulerConfig, SchedulerHandle};
use crmsync::sync::google::AccountProvider;
use crmsync::sync::SyncEngine;
use crmsync_connectors::GoogleEndpoints;
use crmsync_engine::ids::{SyncKind, UserId};
use crmsync_engine::model::{SyncSchedule, User};
use crmsync_schema::jobs::{self, Job};
use crmsync_schema::runs::{self, SyncRun};
use crmsync_schema::settings::{self, NewSyncSettings};
use crmsync_schema::{admin_tokens, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// An engine like the world's, reading time from `clock`.
pub fn engine_with_clock(world: &SyncWorld, clock: SharedClock) -> SyncEngine {
    let accounts = AccountProvider::new(
        world.store.clone(),
        world.engine.accounts().options().clone(),
    );
    SyncEngine::new(
        world.store.clone(),
        accounts,
        world.engine.config().clone(),
        clock,
    )
}

/// A scheduler config for tests: a long lease, a short tick, the given jitter.
pub fn config(worker: &str, jitter: JitterPolicy) -> SchedulerConfig {
    SchedulerConfig {
        worker_id: worker.into(),
        concurrency: 4,
        tick: Duration::from_millis(50),
        lease: chrono::Duration::seconds(60),
        jitter,
        shutdown_grace: Duration::from_secs(30),
    }
}

/// A scheduler over the world with a controllable clock starting at `start`.
pub fn clocked(
    world: &SyncWorld,
    start: DateTime<Utc>,
    jitter: JitterPolicy,
) -> (Scheduler, TestClock) {
    let clock = TestClock::new(start);
    let engine = engine_with_clock(world, Arc::new(clock.clone()));
    (Scheduler::new(engine, config("test-worker", jitter)), clock)
}

/// Sets the sync settings of (user, kind) with a schedule.
pub fn set_schedule(
    world: &SyncWorld,
    user: &User,
    kind: SyncKind,
    auto_sync: bool,
    schedule: SyncSchedule,
    now: DateTime<Utc>,
) {
    let existing = world
        .store
        .read(|c| settings::get_sync_settings(c, user.id, kind))
        .expect("read settings");
    // Contacts need the user's own private tag: keep the one set, else Alice's.
    let tag_id = existing
        .and_then(|s| s.tag_id)
        .or((kind == SyncKind::Contacts).then_some(world.tag.id));
    world
        .store
        .write(|c| {
            settings::put_sync_settings(
                c,
                &NewSyncSettings {
                    user_id: user.id,
                    kind,
                    auto_sync,
                    schedule,
                    tag_id,
                    synchronize_from: None,
                    trigger_words: vec![],
                },
                now,
            )
        })
        .expect("sync settings");
}

pub fn job(store: &Store, user: UserId, kind: SyncKind) -> Job {
    store
        .read(|c| jobs::get_job(c, user, kind))
        .expect("read job")
        .expect("job exists")
}

/// Every run of (user, kind), newest first.
pub fn runs_of(store: &Store, user: UserId, kind: SyncKind) -> Vec<SyncRun> {
    store
        .read(|c| runs::list_runs(c, Some(user), Some(kind), None, 1000))
        .expect("runs")
}

/// Polls `f` (real time) until it returns `Some`, failing after `secs` seconds.
pub async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The API server with a scheduler running in the background, over a `SyncWorld` (wall clock).
pub struct ApiWorld {
    pub world: SyncWorld,
    pub base: String,
    pub root: String,
    pub client: reqwest::Client,
    pub token: String,
    pub handle: SchedulerHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiWorld {
    pub async fn start(world: SyncWorld) -> ApiWorld {
        Self::start_with(world, Arc::new(SystemClock), |s, _| s).await
    }

    /// Like [`ApiWorld::start`], on `clock`, with the scheduler adjusted by `adjust` (given the
    /// server's root URL, e.g. for Calendar watch channels).
    pub async fn start_with(
        world: SyncWorld,
        clock: SharedClock,
        adjust: impl FnOnce(Scheduler, &str) -> Scheduler,
    ) -> ApiWorld {
        let (_, token) = world
            .store
            .write(|c| admin_tokens::create_admin_token(c, "test", Utc::now()))
            .expect("token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let engine = engine_with_clock(&world, clock.clone());
        let scheduler = adjust(
            Scheduler::new(engine.clone(), config("api-worker", JitterPolicy::none())),
            &format!("http://{addr}"),
        );
        let handle = scheduler.handle();
        let state = AppState::new(world.store.clone(), clock)
            .with_google(GoogleEndpoints::emulator(world.emu.base_url()))
            .with_engine(engine)
            .with_scheduler(handle.clone())
            .with_wait_limit(Duration::from_secs(60));
        tokio::spawn(crmsync::server::serve(
            state,
            listener,
            std::future::pending(),
        ));
        let task = tokio::spawn(async move {
            scheduler.run().await.expect("scheduler runs");
        });
        ApiWorld {
            world,
            base: format!("http://{addr}/api/v1"),
            root: format!("http://{addr}"),
            client: reqwest::Client::new(),
            token,
            handle,
            task: Some(task),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, None).await
    }

    /// Stops the scheduler gracefully and waits for it.
    pub async fn stop(mut self) -> SyncWorld {
        self.handle.shutdown();
        if let Some(t) = self.task.take() {
            t.await.expect("scheduler task");
        }
        self.world
    }
}
