//! Per-user, per-kind sync settings (SPEC section 2): auto-sync, an interval or a cron schedule,
//! the contact sync tag (a private tag owned by the user) or, for activities, `synchronize_from`
//! and trigger words. The store re-checks the rules it can (the API validates cron syntax first).

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::sync_settings;
use crate::util::{from_db_time, parse_col, to_db_time};
use crate::{tags as tag_store, users as user_store};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{SyncKind, TagId, UserId};
use crmsync_engine::model::{SyncSchedule, SyncSettings};
use diesel::prelude::*;

/// The settings a caller sets for one (user, kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSyncSettings {
    pub user_id: UserId,
    pub kind: SyncKind,
    pub auto_sync: bool,
    pub schedule: SyncSchedule,
    pub tag_id: Option<TagId>,
    pub synchronize_from: Option<chrono::NaiveDate>,
    pub trigger_words: Vec<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = sync_settings)]
struct SettingsRow {
    user_id: String,
    kind: String,
    auto_sync: bool,
    interval_minutes: Option<i32>,
    cron: Option<String>,
    tag_id: Option<String>,
    synchronize_from: Option<String>,
    trigger_words: String,
    #[allow(dead_code)]
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl SettingsRow {
    fn into_settings(self) -> StoreResult<SyncSettings> {
        let schedule = match (self.interval_minutes, self.cron) {
            (Some(m), None) if m >= 1 => SyncSchedule::IntervalMinutes(m as u32),
            (None, Some(c)) => SyncSchedule::Cron(c),
            _ => {
                return Err(StoreError::Corrupt(
                    "sync_settings: interval and cron both set or both missing".into(),
                ))
            }
        };
        Ok(SyncSettings {
            user_id: parse_col(&self.user_id, "sync_settings.user_id")?,
            kind: parse_col(&self.kind, "sync_settings.kind")?,
            auto_sync: self.auto_sync,
            schedule,
            tag_id: self
                .tag_id
                .as_deref()
                .map(|t| parse_col(t, "sync_settings.tag_id"))
                .transpose()?,
            synchronize_from: self
                .synchronize_from
                .as_deref()
                .map(|d| parse_col(d, "sync_settings.synchronize_from"))
                .transpose()?,
            trigger_words: serde_json::from_str(&self.trigger_words)
                .map_err(|e| StoreError::Corrupt(format!("sync_settings.trigger_words: {e}")))?,
            updated_at: from_db_time(self.updated_at),
        })
    }
}

/// Checks the rules that involve stored records: the user exists (`NotFound`); a contacts sync
/// tag exists and is a private tag owned by the user; fields of the other kind are absent
/// (`Invalid`).
pub fn check_sync_settings(conn: &mut AnyConnection, s: &NewSyncSettings) -> StoreResult<()> {
    user_store::get_user(conn, s.user_id)?;
    if let SyncSchedule::IntervalMinutes(0) = s.schedule {
        return Err(StoreError::Invalid(
            "interval_minutes must be at least 1".into(),
        ));
    }
    match s.kind {
        SyncKind::Contacts => {
            let tag_id = s.tag_id.ok_or_else(|| {
                StoreError::Invalid(
                    "contacts sync settings need tag_id: one of the user's private tags".into(),
                )
            })?;
            let tag = tag_store::find_tag(conn, tag_id)?
                .ok_or_else(|| StoreError::Invalid(format!("tag {tag_id} does not exist")))?;
            if !tag.can_be_sync_tag_of(s.user_id) {
                return Err(StoreError::Invalid(format!(
                    "tag {tag_id} ({} tag) cannot be this user's sync tag: only a private tag owned by the \
                     user can; public and corporate tags never sync",
                    tag.visibility
                )));
            }
            if s.synchronize_from.is_some() || !s.trigger_words.is_empty() {
                return Err(StoreError::Invalid(
                    "synchronize_from and trigger_words apply to activities only".into(),
                ));
            }
        }
        SyncKind::Activities => {
            if s.tag_id.is_some() {
                return Err(StoreError::Invalid(
                    "tag_id applies to contacts only".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Creates or replaces the settings of one (user, kind), after [`check_sync_settings`].
pub fn put_sync_settings(
    conn: &mut AnyConnection,
    s: &NewSyncSettings,
    now: DateTime<Utc>,
) -> StoreResult<SyncSettings> {
    check_sync_settings(conn, s)?;
    let (interval, cron) = match &s.schedule {
        SyncSchedule::IntervalMinutes(m) => (
            Some(
                i32::try_from(*m)
                    .map_err(|_| StoreError::Invalid("interval_minutes is too large".into()))?,
            ),
            None,
        ),
        SyncSchedule::Cron(c) => (None, Some(c.clone())),
    };
    let words =
        serde_json::to_string(&s.trigger_words).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let ts = to_db_time(now);
    let key = sync_settings::table
        .filter(sync_settings::user_id.eq(s.user_id.to_string()))
        .filter(sync_settings::kind.eq(s.kind.as_str()));
    let exists: i64 = key.clone().count().get_result(conn)?;
    let values = (
        sync_settings::auto_sync.eq(s.auto_sync),
        sync_settings::interval_minutes.eq(interval),
        sync_settings::cron.eq(cron),
        sync_settings::tag_id.eq(s.tag_id.map(|t| t.to_string())),
        sync_settings::synchronize_from.eq(s.synchronize_from.map(|d| d.to_string())),
        sync_settings::trigger_words.eq(words),
        sync_settings::updated_at.eq(ts),
    );
    if exists > 0 {
        diesel::update(key).set(values).execute(conn)?;
    } else {
        diesel::insert_into(sync_settings::table)
            .values((
                sync_settings::user_id.eq(s.user_id.to_string()),
                sync_settings::kind.eq(s.kind.as_str()),
                sync_settings::created_at.eq(ts),
                values,
            ))
            .execute(conn)?;
    }
    get_sync_settings(conn, s.user_id, s.kind)?
        .ok_or_else(|| StoreError::not_found("sync settings", format!("{}/{}", s.user_id, s.kind)))
}

/// The settings of one (user, kind), if set.
pub fn get_sync_settings(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
) -> StoreResult<Option<SyncSettings>> {
    sync_settings::table
        .filter(sync_settings::user_id.eq(user.to_string()))
        .filter(sync_settings::kind.eq(kind.as_str()))
        .select(SettingsRow::as_select())
        .first(conn)
        .optional()?
        .map(SettingsRow::into_settings)
        .transpose()
}

/// Every kind's settings of one user.
pub fn sync_settings_of_user(
    conn: &mut AnyConnection,
    user: UserId,
) -> StoreResult<Vec<SyncSettings>> {
    sync_settings::table
        .filter(sync_settings::user_id.eq(user.to_string()))
        .order(sync_settings::kind)
        .select(SettingsRow::as_select())
        .load(conn)?
        .into_iter()
        .map(SettingsRow::into_settings)
        .collect()
}

/// All settings of all users (for the scheduler).
pub fn all_sync_settings(conn: &mut AnyConnection) -> StoreResult<Vec<SyncSettings>> {
    sync_settings::table
        .order((sync_settings::user_id, sync_settings::kind))
        .select(SettingsRow::as_select())
        .load(conn)?
        .into_iter()
        .map(SettingsRow::into_settings)
        .collect()
}
