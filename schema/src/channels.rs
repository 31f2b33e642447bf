//! Calendar watch channels (SPEC 5 "Push"): one `events.watch` channel per user with activity
//! auto-sync, so that a Google Calendar edit starts that user's run within seconds. This module
//! keeps the channels (id, Google's resource id, the SHA-256 of the channel token, expiry), takes
//! notifications ([`accept_notification`]: unknown channel or wrong token is refused, a replayed
//! message number is ignored, anything else requests a debounced push run), says which channels
//! must be made, renewed or stopped ([`channel_work`]), and leases that work per user so two
//! workers never make one user's channel at once ([`claim`]).

use crate::db::{require_transaction, AnyConnection};
use crate::error::StoreResult;
use crate::schema::{google_connections, sync_settings, watch_channels};
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use crmsync_engine::ids::{SyncKind, UserId};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

/// A user's channel as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchChannel {
    pub user_id: UserId,
    pub channel_id: Option<String>,
    pub resource_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Why the last attempt to make the channel failed (the user stays on intervals).
    pub last_error: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = watch_channels)]
struct Row {
    user_id: String,
    channel_id: Option<String>,
    resource_id: Option<String>,
    expires_at: Option<NaiveDateTime>,
    last_error: Option<String>,
}

impl Row {
    fn into_channel(self) -> StoreResult<WatchChannel> {
        Ok(WatchChannel {
            user_id: parse_col(&self.user_id, "watch_channels.user_id")?,
            channel_id: self.channel_id,
            resource_id: self.resource_id,
            expires_at: self.expires_at.map(from_db_time),
            last_error: self.last_error,
        })
    }
}

/// The SHA-256 (hex) of a channel token: what is stored and compared.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The channel of `user`, if one was made (or tried).
pub fn channel_of(conn: &mut AnyConnection, user: UserId) -> StoreResult<Option<WatchChannel>> {
    watch_channels::table
        .find(user.to_string())
        .select(Row::as_select())
        .first(conn)
        .optional()?
        .map(Row::into_channel)
        .transpose()
}

/// What a notification led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notification {
    /// No channel has this id, or the token is not the channel's: refused, nothing runs.
    Unknown,
    /// The `sync` message Google sends right after a watch: nothing changed yet.
    Started,
    /// A message number already seen (a replay): nothing runs.
    Replayed,
    /// A change: a push run of the user was requested (`false`: push is off, auto-sync is off,
    /// or the connection is in `auth_error`).
    Changed { user: UserId, requested: bool },
}

/// Takes a notification of channel `channel_id` with `token`, Google's `X-Goog-Resource-State`
/// and `X-Goog-Message-Number`.
pub fn accept_notification(
    conn: &mut AnyConnection,
    channel_id: &str,
    token: &str,
    state: &str,
    message_number: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<Notification> {
    require_transaction(conn)?;
    let found: Option<(String, Option<String>, Option<i64>)> = watch_channels::table
        .filter(watch_channels::channel_id.eq(channel_id))
        .select((
            watch_channels::user_id,
            watch_channels::token_hash,
            watch_channels::last_message_number,
        ))
        .first(conn)
        .optional()?;
    let Some((user, Some(hash), last)) = found else {
        return Ok(Notification::Unknown);
    };
    if hash != token_hash(token) {
        return Ok(Notification::Unknown);
    }
    if let (Some(n), Some(last)) = (message_number, last) {
        if n <= last {
            return Ok(Notification::Replayed);
        }
    }
    if let Some(n) = message_number {
        diesel::update(watch_channels::table.find(&user))
            .set(watch_channels::last_message_number.eq(Some(n)))
            .execute(conn)?;
    }
    if state == "sync" {
        return Ok(Notification::Started);
    }
    let user: UserId = parse_col(&user, "watch_channels.user_id")?;
    let push = crate::jobs::push_settings(conn)?;
    let requested = crate::jobs::request_push(conn, user, SyncKind::Activities, &push, now)?;
    Ok(Notification::Changed { user, requested })
}

/// Channel work for a keeper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelWork {
    /// Make a channel (none yet, or it expires before the renewal horizon): watch with a new
    /// id, store it, then stop `old` if there was one.
    Watch {
        user: UserId,
        old: Option<WatchChannel>,
    },
    /// The user no longer syncs activities on their own: stop the channel and forget it.
    Stop(WatchChannel),
}

/// The channels to make, renew or stop at `now`: users with activity auto-sync whose Google
/// connection is not `auth_error`/`disabled` and whose channel is missing or expires before
/// `now + renew_before` (a failed attempt is retried after `retry_after`), and channels of users
/// who no longer qualify. At most `limit`.
pub fn channel_work(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    renew_before: Duration,
    retry_after: Duration,
    limit: usize,
) -> StoreResult<Vec<ChannelWork>> {
    let wanted: Vec<String> = sync_settings::table
        .filter(sync_settings::kind.eq(SyncKind::Activities.as_str()))
        .filter(sync_settings::auto_sync.eq(true))
        .filter(diesel::dsl::not(
            sync_settings::user_id.eq_any(
                google_connections::table
                    .filter(google_connections::state.ne("active"))
                    .select(google_connections::user_id),
            ),
        ))
        .select(sync_settings::user_id)
        .load(conn)?;
    let rows: Vec<(Row, Option<NaiveDateTime>)> = watch_channels::table
        .select((Row::as_select(), watch_channels::updated_at.nullable()))
        .load(conn)?;
    let mut have = std::collections::HashMap::new();
    for (row, updated) in rows {
        let c = row.into_channel()?;
        have.insert(c.user_id.to_string(), (c, updated.map(from_db_time)));
    }
    let mut out = Vec::new();
    let horizon = now + renew_before;
    for u in &wanted {
        let user: UserId = parse_col(u, "sync_settings.user_id")?;
        match have.get(u) {
            None => out.push(ChannelWork::Watch { user, old: None }),
            Some((c, updated)) => {
                let failed_recently = c.channel_id.is_none()
                    && c.last_error.is_some()
                    && updated.is_some_and(|t| t + retry_after > now);
                let live = c.expires_at.is_some_and(|e| e > horizon) && c.channel_id.is_some();
                if !live && !failed_recently {
                    out.push(ChannelWork::Watch {
                        user,
                        old: Some(c.clone()),
                    });
                }
            }
        }
    }
    for (u, (c, _)) in &have {
        if !wanted.contains(u) {
            out.push(ChannelWork::Stop(c.clone()));
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Leases `user`'s channel work to `worker` until `now + lease`, if the user's channel is still
/// `expected` (the channel id the work was planned from; `None`: no channel): `false` when
/// another worker holds the lease or already changed the channel. Makes the user's row when there
/// is none.
pub fn claim(
    conn: &mut AnyConnection,
    user: UserId,
    expected: Option<&str>,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> StoreResult<bool> {
    require_transaction(conn)?;
    let ts = to_db_time(now);
    let exists: i64 = watch_channels::table
        .find(user.to_string())
        .count()
        .get_result(conn)?;
    if exists == 0 {
        // Two workers making the first row at once: one insert fails on the primary key, and
        // that worker's claim fails with it (it tries again at its next look).
        diesel::insert_into(watch_channels::table)
            .values((
                watch_channels::user_id.eq(user.to_string()),
                watch_channels::updated_at.eq(ts),
            ))
            .execute(conn)?;
    }
    let current: Option<String> = watch_channels::table
        .find(user.to_string())
        .select(watch_channels::channel_id)
        .first(conn)?;
    if current.as_deref() != expected {
        return Ok(false);
    }
    let n = diesel::update(
        watch_channels::table.find(user.to_string()).filter(
            watch_channels::claimed_until
                .is_null()
                .or(watch_channels::claimed_until.lt(ts)),
        ),
    )
    .set((
        watch_channels::claimed_by.eq(Some(worker)),
        watch_channels::claimed_until.eq(Some(to_db_time(now + lease))),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Stores `user`'s new channel and ends the lease.
pub fn put_channel(
    conn: &mut AnyConnection,
    user: UserId,
    channel_id: &str,
    resource_id: &str,
    token: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(watch_channels::table.find(user.to_string()))
        .set((
            watch_channels::channel_id.eq(Some(channel_id)),
            watch_channels::resource_id.eq(Some(resource_id)),
            watch_channels::token_hash.eq(Some(token_hash(token))),
            watch_channels::expires_at.eq(Some(to_db_time(expires_at))),
            watch_channels::last_message_number.eq(None::<i64>),
            watch_channels::last_error.eq(None::<String>),
            watch_channels::claimed_by.eq(None::<String>),
            watch_channels::claimed_until.eq(None::<NaiveDateTime>),
            watch_channels::updated_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records why `user`'s channel could not be made (shown in the status; retried later) and ends
/// the lease. A live channel the failure was renewing stays.
pub fn channel_failed(
    conn: &mut AnyConnection,
    user: UserId,
    error: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(watch_channels::table.find(user.to_string()))
        .set((
            watch_channels::last_error.eq(Some(error)),
            watch_channels::claimed_by.eq(None::<String>),
            watch_channels::claimed_until.eq(None::<NaiveDateTime>),
            watch_channels::updated_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many channels are live at `now`, and how many users have none because it failed.
pub fn channel_counts(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<(i64, i64)> {
    let live: i64 = watch_channels::table
        .filter(watch_channels::channel_id.is_not_null())
        .filter(watch_channels::expires_at.gt(to_db_time(now)))
        .count()
        .get_result(conn)?;
    let failed: i64 = watch_channels::table
        .filter(watch_channels::channel_id.is_null())
        .filter(watch_channels::last_error.is_not_null())
        .count()
        .get_result(conn)?;
    Ok((live, failed))
}

/// Forgets `user`'s channel (after `channels.stop`).
pub fn forget_channel(conn: &mut AnyConnection, user: UserId) -> StoreResult<()> {
    diesel::delete(watch_channels::table.find(user.to_string())).execute(conn)?;
    Ok(())
}
