//! Small application settings set by an admin (OAuth client, guard thresholds, ...): a key and a
//! JSON value; secret values are stored encrypted and bound to their key.

use crate::db::{AnyConnection, Store};
use crate::error::{StoreError, StoreResult};
use crate::schema::app_settings;
use crate::util::to_db_time;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn raw_get(conn: &mut AnyConnection, key: &str) -> StoreResult<Option<String>> {
    Ok(app_settings::table
        .find(key)
        .select(app_settings::value)
        .first(conn)
        .optional()?)
}

fn raw_put(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ts = to_db_time(now);
    let n = diesel::update(app_settings::table.find(key))
        .set((
            app_settings::value.eq(value),
            app_settings::updated_at.eq(ts),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(app_settings::table)
            .values((
                app_settings::key.eq(key),
                app_settings::value.eq(value),
                app_settings::updated_at.eq(ts),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Reads a setting as `T`, `None` when unset.
pub fn get_setting<T: DeserializeOwned>(
    conn: &mut AnyConnection,
    key: &str,
) -> StoreResult<Option<T>> {
    raw_get(conn, key)?
        .map(|v| {
            serde_json::from_str(&v)
                .map_err(|e| StoreError::Corrupt(format!("app setting {key}: {e}")))
        })
        .transpose()
}

/// Sets a setting to `value` (stored as JSON).
pub fn put_setting<T: Serialize>(
    conn: &mut AnyConnection,
    key: &str,
    value: &T,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let json = serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("app setting {key}: {e}")))?;
    raw_put(conn, key, &json, now)
}

/// Removes a setting.
pub fn delete_setting(conn: &mut AnyConnection, key: &str) -> StoreResult<()> {
    diesel::delete(app_settings::table.find(key)).execute(conn)?;
    Ok(())
}

/// Sets a secret setting, encrypted with the store's key.
pub fn put_secret_setting(
    store: &Store,
    conn: &mut AnyConnection,
    key: &str,
    secret: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ciphertext = store
        .secrets()?
        .encrypt(secret.as_bytes(), &format!("app_setting:{key}"))?;
    put_setting(conn, key, &ciphertext, now)
}

/// Reads and decrypts a secret setting.
pub fn get_secret_setting(
    store: &Store,
    conn: &mut AnyConnection,
    key: &str,
) -> StoreResult<Option<String>> {
    match get_setting::<String>(conn, key)? {
        Some(c) => Ok(Some(
            store
                .secrets()?
                .decrypt_string(&c, &format!("app_setting:{key}"))?,
        )),
        None => Ok(None),
    }
}
