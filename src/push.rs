//! Calendar watch channels (SPEC 5 "Push"): with a public URL (`CRMSYNC_PUBLIC_URL`), every
//! user with activity auto-sync gets an `events.watch` channel on their primary calendar, so a
//! Google Calendar edit reaches the CRM within seconds: Google POSTs to
//! `{public URL}/google/notifications` (`api/notifications.rs`), which requests a debounced push
//! run. The [`ChannelKeeper`] makes the channels, renews them before they expire (a new channel,
//! then `channels.stop` of the old one), makes them again when they are gone (after a restart, or
//! when Google stopped them) and stops them when the user's activity auto-sync is turned off.
//! Each user's work is leased in the database, so several workers keep one channel per user.
//! A channel that cannot be made leaves the user on intervals, with the reason in the status.

use crate::sync::SyncEngine;
use chrono::{DateTime, Duration, Utc};
use crmsync_engine::ids::UserId;
use crmsync_schema::channels::{self, ChannelWork, WatchChannel};
use crmsync_schema::users;

/// The calendar that is watched (the one activities sync with).
const CALENDAR: &str = "primary";

/// Keeps the watch channels of every user with activity auto-sync.
#[derive(Clone, Debug)]
pub struct ChannelKeeper {
    address: String,
    /// The channel lifetime asked of Google (it may give less).
    pub ttl: Duration,
    /// Channels expiring sooner than this are renewed.
    pub renew_before: Duration,
    /// A channel that could not be made is tried again after this.
    pub retry_after: Duration,
    /// How often the keeper looks (real time).
    pub every: std::time::Duration,
}

impl ChannelKeeper {
    /// A keeper whose channels notify `{public_url}/google/notifications`. Google only sends to
    /// `https://` addresses (the emulator also to `http://` on loopback, for tests).
    pub fn new(public_url: &str) -> Result<ChannelKeeper, String> {
        let base = public_url.trim_end_matches('/');
        let url = reqwest::Url::parse(base).map_err(|e| {
            format!("CRMSYNC_PUBLIC_URL {public_url:?} is not a URL ({e}); give the https:// address Google can reach crmsync at")
        })?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(format!(
                "CRMSYNC_PUBLIC_URL {public_url:?}: Google only sends notifications to https:// \
                 addresses; give crmsync's public https:// URL (push stays off, intervals go on)"
            ));
        }
        Ok(ChannelKeeper {
            address: format!("{base}/google/notifications"),
            ttl: Duration::days(7),
            renew_before: Duration::hours(6),
            retry_after: Duration::minutes(10),
            every: std::time::Duration::from_secs(60),
        })
    }

    /// Where Google sends the notifications.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// One look: makes, renews and stops the channels that need it; returns how many it handled.
    pub async fn tick(&self, engine: &SyncEngine, worker: &str) -> usize {
        let now = engine.clock().now();
        let (renew, retry) = (self.renew_before, self.retry_after);
        let work = engine
            .store()
            .run(move |s| s.read(|c| channels::channel_work(c, now, renew, retry, 100)))
            .await;
        let work = match work {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the watch channels; trying again later");
                return 0;
            }
        };
        let mut done = 0;
        for w in work {
            let (user, expected) = match &w {
                ChannelWork::Watch { user, old } => {
                    (*user, old.as_ref().and_then(|o| o.channel_id.clone()))
                }
                ChannelWork::Stop(c) => (c.user_id, c.channel_id.clone()),
            };
            let (worker_id, lease) = (worker.to_string(), Duration::seconds(60));
            let claimed = engine
                .store()
                .run(move |s| {
                    s.write(|c| {
                        channels::claim(c, user, expected.as_deref(), &worker_id, now, lease)
                    })
                })
                .await;
            match claimed {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::debug!(%user, error = %e, "another worker took this channel's work");
                    continue;
                }
            }
            match w {
                ChannelWork::Watch { user, old } => self.watch(engine, user, old, now).await,
                ChannelWork::Stop(c) => self.stop(engine, c).await,
            }
            done += 1;
        }
        done
    }

    async fn watch(
        &self,
        engine: &SyncEngine,
        user: UserId,
        old: Option<WatchChannel>,
        now: DateTime<Utc>,
    ) {
        let outcome = self.make(engine, user).await;
        let store = engine.store().clone();
        let saved = match outcome {
            Ok((id, resource, token, expires)) => {
                tracing::info!(%user, channel = %id, expires = %expires, "calendar watch channel made");
                let saved = store
                    .run(move |s| {
                        s.write(|c| {
                            channels::put_channel(c, user, &id, &resource, &token, expires, now)
                        })
                    })
                    .await;
                if let Some((old_id, old_resource)) =
                    old.and_then(|o| o.channel_id.zip(o.resource_id))
                {
                    self.stop_at_google(engine, user, &old_id, &old_resource)
                        .await;
                }
                saved
            }
            Err(message) => {
                tracing::warn!(%user, error = %message, "no calendar watch channel: this user's calendar syncs on its interval");
                store
                    .run(move |s| s.write(|c| channels::channel_failed(c, user, &message, now)))
                    .await
            }
        };
        if let Err(e) = saved {
            tracing::warn!(%user, error = %e, "could not store the watch channel");
        }
    }

    /// Watches the user's calendar: (channel id, resource id, token, expiry).
    async fn make(
        &self,
        engine: &SyncEngine,
        user: UserId,
    ) -> Result<(String, String, String, DateTime<Utc>), String> {
        let u = engine
            .store()
            .run(move |s| s.read(|c| users::get_user(c, user)))
            .await
            .map_err(|e| e.to_string())?;
        let account = engine
            .accounts()
            .account_for(&u)
            .await
            .map_err(|e| e.to_string())?;
        let id = format!("crmsync-{}", uuid::Uuid::new_v4().simple());
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let ttl = self.ttl.num_seconds().max(60) as u64;
        let ch = account
            .calendar()
            .watch_events(CALENDAR, &id, &self.address, &token, ttl)
            .await
            .map_err(|e| format!("events.watch failed: {e}"))?;
        let resource = ch
            .resource_id
            .ok_or_else(|| "events.watch answered without a resourceId".to_string())?;
        let expires = ch
            .expiration
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(|| engine.clock().now() + self.ttl);
        Ok((id, resource, token, expires))
    }

    async fn stop(&self, engine: &SyncEngine, c: WatchChannel) {
        let user = c.user_id;
        if let Some((id, resource)) = c.channel_id.zip(c.resource_id) {
            self.stop_at_google(engine, user, &id, &resource).await;
        }
        let forgot = engine
            .store()
            .run(move |s| s.write(|c| channels::forget_channel(c, user)))
            .await;
        match forgot {
            Ok(()) => {
                tracing::info!(%user, "calendar watch channel stopped: activity auto-sync is off")
            }
            Err(e) => tracing::warn!(%user, error = %e, "could not forget the watch channel"),
        }
    }

    async fn stop_at_google(&self, engine: &SyncEngine, user: UserId, id: &str, resource: &str) {
        let u = engine
            .store()
            .run(move |s| s.read(|c| users::get_user(c, user)))
            .await;
        let stopped = match u {
            Ok(u) => match engine.accounts().account_for(&u).await {
                Ok(a) => a
                    .calendar()
                    .stop_channel(id, resource)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stopped {
            // Google stops it at its expiry anyway; its notifications are refused meanwhile.
            tracing::warn!(%user, channel = %id, error = %e, "could not stop an old watch channel");
        }
    }
}
