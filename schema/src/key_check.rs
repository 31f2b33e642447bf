//! The secret key at startup: finds out before anything is served whether `CRMSYNC_SECRET_KEY`
//! can read the secrets this database holds (service-account keys, OAuth refresh tokens, the
//! OAuth client secret, webhook signing secrets). A check value encrypted with the key is kept in the app settings; when
//! it is missing (a database from before the check) every stored secret is tried instead, and the
//! check value is written once they all decrypt.

use crate::app_settings;
use crate::db::{AnyConnection, Store};
use crate::error::{StoreError, StoreResult};
use crate::schema::{
    app_settings as settings_table, google_connections, service_accounts, webhooks,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;

/// The app setting holding the check value, encrypted with the key.
pub const KEY_CHECK_SETTING: &str = "secrets.key_check";
const KEY_CHECK_PLAINTEXT: &str = "crmsync secret key check v1";

/// What the startup check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// The key reads every stored secret (or there are none yet, and the key is now recorded).
    Verified,
    /// No key is configured and no secret is stored: fine until one must be stored.
    NoKeyNoSecrets,
}

/// Why the key cannot serve this database.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Secrets are stored and no key is configured.
    #[error(
        "{secrets} secret(s) are stored in this database ({what}) and CRMSYNC_SECRET_KEY is not set: \
         set it to the key they were stored with, then start again"
    )]
    Missing { secrets: usize, what: String },
    /// The key is not the one the secrets were stored with.
    #[error(
        "CRMSYNC_SECRET_KEY is not the key this database's secrets were stored with ({what} cannot \
         be decrypted): set the original key and start again; if it is lost, upload the \
         service-account key and the OAuth client again and have OAuth users connect again, \
         after removing the old secrets"
    )]
    Wrong { what: String },
}

/// Counts of the stored secrets, by what they are.
fn secret_inventory(conn: &mut AnyConnection) -> StoreResult<(i64, i64, Vec<String>)> {
    let service_accounts: i64 = service_accounts::table.count().get_result(conn)?;
    let tokens: i64 = google_connections::table
        .filter(google_connections::refresh_token_ciphertext.is_not_null())
        .count()
        .get_result(conn)?;
    // Secret settings are stored as a JSON string of the ciphertext ("v1:…").
    let secret_settings: Vec<String> = settings_table::table
        .filter(settings_table::value.like("\"v1:%"))
        .filter(settings_table::key.ne(KEY_CHECK_SETTING))
        .select(settings_table::key)
        .load(conn)?;
    Ok((service_accounts, tokens, secret_settings))
}

fn describe(service_accounts: i64, tokens: i64, settings: &[String], hooks: i64) -> String {
    let mut parts = Vec::new();
    if hooks > 0 {
        parts.push(format!("{hooks} webhook signing secret(s)"));
    }
    if service_accounts > 0 {
        parts.push(format!("{service_accounts} service-account key(s)"));
    }
    if tokens > 0 {
        parts.push(format!("{tokens} OAuth refresh token(s)"));
    }
    if !settings.is_empty() {
        parts.push(format!("settings {}", settings.join(", ")));
    }
    parts.join(", ")
}

/// Checks the store's key against the database (see the module doc). `Err(StoreError::Secret)`
/// carries a [`KeyProblem`]'s message: the caller refuses to start. Several processes may start
/// at once (workers on PostgreSQL): when another one records the check value first, the check
/// runs again against it.
pub fn verify_secret_key(store: &Store, now: DateTime<Utc>) -> StoreResult<KeyStatus> {
    match verify_once(store, now) {
        Err(StoreError::Conflict(_)) => verify_once(store, now),
        other => other,
    }
}

fn verify_once(store: &Store, now: DateTime<Utc>) -> StoreResult<KeyStatus> {
    store.write(|c| {
        let (sa, tokens, settings) = secret_inventory(c)?;
        let hooks: i64 = webhooks::table.count().get_result(c)?;
        let count = (sa + tokens + hooks) as usize + settings.len();
        let check: Option<String> = app_settings::get_setting(c, KEY_CHECK_SETTING)?;
        let Ok(secrets) = store.secrets() else {
            if count == 0 {
                return Ok(KeyStatus::NoKeyNoSecrets);
            }
            return Err(StoreError::Secret(
                KeyProblem::Missing {
                    secrets: count,
                    what: describe(sa, tokens, &settings, hooks),
                }
                .to_string(),
            ));
        };
        let wrong = |what: &str| {
            StoreError::Secret(
                KeyProblem::Wrong {
                    what: what.to_string(),
                }
                .to_string(),
            )
        };
        if let Some(check) = check {
            let ok = secrets
                .decrypt_string(&check, &format!("app_setting:{KEY_CHECK_SETTING}"))
                .is_ok_and(|p| p == KEY_CHECK_PLAINTEXT);
            return if ok {
                Ok(KeyStatus::Verified)
            } else {
                Err(wrong("the key check value"))
            };
        }
        // No check value yet: every stored secret must decrypt before the key is recorded.
        let domains: Vec<String> = service_accounts::table
            .select(service_accounts::domain)
            .load(c)?;
        for domain in domains {
            crate::connections::service_account_key(store, c, &domain)
                .map_err(|_| wrong(&format!("the service-account key of {domain}")))?;
        }
        let users: Vec<String> = google_connections::table
            .filter(google_connections::refresh_token_ciphertext.is_not_null())
            .select(google_connections::user_id)
            .load(c)?;
        for user in users {
            let id = crate::util::parse_col(&user, "google_connections.user_id")?;
            crate::connections::refresh_token(store, c, id)
                .map_err(|_| wrong(&format!("the OAuth refresh token of user {user}")))?;
        }
        for key in &settings {
            app_settings::get_secret_setting(store, c, key)
                .map_err(|_| wrong(&format!("the setting {key}")))?;
        }
        let hook_ids: Vec<String> = webhooks::table.select(webhooks::id).load(c)?;
        for hook in hook_ids {
            let id = crate::util::parse_col(&hook, "webhooks.id")?;
            crate::webhooks::target(store, c, id)
                .map_err(|_| wrong(&format!("the signing secret of webhook {hook}")))?;
        }
        app_settings::put_secret_setting(store, c, KEY_CHECK_SETTING, KEY_CHECK_PLAINTEXT, now)?;
        Ok(KeyStatus::Verified)
    })
}
