//! Google access: the domain's service-account key and each user's connection (method, state,
//! last error, and for per-user OAuth the refresh token). Keys and refresh tokens are encrypted
//! at rest with the store's [`crate::secrets::SecretBox`]; plaintexts never reach the logs.

use crate::db::{AnyConnection, Store};
use crate::error::{StoreError, StoreResult};
use crate::schema::{google_connections, oauth_states, service_accounts};
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::UserId;
use crmsync_engine::model::{ConnectionMethod, ConnectionState};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

/// The domain's service account (the key is decrypted only on request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    pub domain: String,
    pub client_email: String,
    pub client_id: String,
    pub updated_at: DateTime<Utc>,
}

/// A user's Google connection, without secrets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GoogleConnection {
    pub user_id: UserId,
    pub method: ConnectionMethod,
    pub state: ConnectionState,
    pub last_error: Option<String>,
    pub has_refresh_token: bool,
    pub updated_at: DateTime<Utc>,
}

fn sa_context(domain: &str) -> String {
    format!("service_account:{domain}")
}

fn token_context(user: UserId) -> String {
    format!("oauth_refresh_token:{user}")
}

/// Stores (or replaces) the service-account key JSON of `domain`, encrypted. The key must carry
/// `client_email` and `client_id`.
pub fn put_service_account(
    store: &Store,
    conn: &mut AnyConnection,
    domain: &str,
    key_json: &str,
    now: DateTime<Utc>,
) -> StoreResult<ServiceAccount> {
    let parsed: serde_json::Value = serde_json::from_str(key_json)
        .map_err(|e| StoreError::Invalid(format!("the service-account key is not JSON: {e}")))?;
    let field = |name: &str| {
        parsed
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                "the service-account key has no {name}; upload the JSON key file Google gave you"
            ))
            })
    };
    let (client_email, client_id) = (field("client_email")?, field("client_id")?);
    let ciphertext = store
        .secrets()?
        .encrypt(key_json.as_bytes(), &sa_context(domain))?;
    let ts = to_db_time(now);
    let existing: i64 = service_accounts::table
        .find(domain)
        .count()
        .get_result(conn)?;
    if existing > 0 {
        diesel::update(service_accounts::table.find(domain))
            .set((
                service_accounts::client_email.eq(&client_email),
                service_accounts::client_id.eq(&client_id),
                service_accounts::key_ciphertext.eq(&ciphertext),
                service_accounts::updated_at.eq(ts),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(service_accounts::table)
            .values((
                service_accounts::domain.eq(domain),
                service_accounts::client_email.eq(&client_email),
                service_accounts::client_id.eq(&client_id),
                service_accounts::key_ciphertext.eq(&ciphertext),
                service_accounts::created_at.eq(ts),
                service_accounts::updated_at.eq(ts),
            ))
            .execute(conn)?;
    }
    Ok(ServiceAccount {
        domain: domain.to_string(),
        client_email,
        client_id,
        updated_at: from_db_time(ts),
    })
}

/// The service account of `domain`, without its key.
pub fn get_service_account(
    conn: &mut AnyConnection,
    domain: &str,
) -> StoreResult<Option<ServiceAccount>> {
    let row: Option<(String, String, String, NaiveDateTime)> = service_accounts::table
        .find(domain)
        .select((
            service_accounts::domain,
            service_accounts::client_email,
            service_accounts::client_id,
            service_accounts::updated_at,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(
        |(domain, client_email, client_id, updated_at)| ServiceAccount {
            domain,
            client_email,
            client_id,
            updated_at: from_db_time(updated_at),
        },
    ))
}

/// The decrypted service-account key JSON of `domain`.
pub fn service_account_key(
    store: &Store,
    conn: &mut AnyConnection,
    domain: &str,
) -> StoreResult<String> {
    let ciphertext: String = service_accounts::table
        .find(domain)
        .select(service_accounts::key_ciphertext)
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("service account for domain", domain))?;
    store
        .secrets()?
        .decrypt_string(&ciphertext, &sa_context(domain))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = google_connections)]
struct ConnRow {
    user_id: String,
    method: String,
    state: String,
    last_error: Option<String>,
    refresh_token_ciphertext: Option<String>,
    updated_at: NaiveDateTime,
}

impl ConnRow {
    fn into_connection(self) -> StoreResult<GoogleConnection> {
        Ok(GoogleConnection {
            user_id: parse_col(&self.user_id, "google_connections.user_id")?,
            method: parse_col(&self.method, "google_connections.method")?,
            state: parse_col(&self.state, "google_connections.state")?,
            last_error: self.last_error,
            has_refresh_token: self.refresh_token_ciphertext.is_some(),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

/// A user's connection, if any.
pub fn get_connection(
    conn: &mut AnyConnection,
    user: UserId,
) -> StoreResult<Option<GoogleConnection>> {
    google_connections::table
        .find(user.to_string())
        .select(ConnRow::as_select())
        .first(conn)
        .optional()?
        .map(ConnRow::into_connection)
        .transpose()
}

/// Creates or resets a user's connection with `method`, state `active`, no error.
pub fn set_connection_method(
    conn: &mut AnyConnection,
    user: UserId,
    method: ConnectionMethod,
    now: DateTime<Utc>,
) -> StoreResult<GoogleConnection> {
    let ts = to_db_time(now);
    if get_connection(conn, user)?.is_some() {
        diesel::update(google_connections::table.find(user.to_string()))
            .set((
                google_connections::method.eq(method.as_str()),
                google_connections::state.eq(ConnectionState::Active.as_str()),
                google_connections::last_error.eq(None::<String>),
                google_connections::updated_at.eq(ts),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(google_connections::table)
            .values((
                google_connections::user_id.eq(user.to_string()),
                google_connections::method.eq(method.as_str()),
                google_connections::state.eq(ConnectionState::Active.as_str()),
                google_connections::created_at.eq(ts),
                google_connections::updated_at.eq(ts),
            ))
            .execute(conn)?;
    }
    get_connection(conn, user)?.ok_or_else(|| StoreError::not_found("connection of user", user))
}

/// Sets a connection's state and last error (e.g. `auth_error` with Google's message). A
/// connection that goes to `auth_error` from another state puts the webhook event
/// `connection.auth_error` in the outbox of the subscribed webhooks, in the same transaction.
pub fn set_connection_state(
    conn: &mut AnyConnection,
    user: UserId,
    state: ConnectionState,
    last_error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let before = get_connection(conn, user)?;
    if state == ConnectionState::AuthError {
        if let Some(c) = before
            .as_ref()
            .filter(|c| c.state != ConnectionState::AuthError)
        {
            let data = serde_json::json!({
                "user_id": user,
                "method": c.method.as_str(),
                "state": state.as_str(),
                "error": last_error,
                "at": now,
            });
            crate::webhooks::enqueue(conn, "connection.auth_error", &data, None, now)?;
        }
    }
    let n = diesel::update(google_connections::table.find(user.to_string()))
        .set((
            google_connections::state.eq(state.as_str()),
            google_connections::last_error.eq(last_error),
            google_connections::updated_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::not_found("connection of user", user));
    }
    Ok(())
}

/// Stores a user's OAuth refresh token, encrypted; the connection becomes `oauth`, `active`, and
/// the user's other pending Connect links stop working.
pub fn put_refresh_token(
    store: &Store,
    conn: &mut AnyConnection,
    user: UserId,
    refresh_token: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ciphertext = store
        .secrets()?
        .encrypt(refresh_token.as_bytes(), &token_context(user))?;
    set_connection_method(conn, user, ConnectionMethod::Oauth, now)?;
    diesel::update(google_connections::table.find(user.to_string()))
        .set(google_connections::refresh_token_ciphertext.eq(Some(ciphertext)))
        .execute(conn)?;
    diesel::delete(oauth_states::table.filter(oauth_states::user_id.eq(user.to_string())))
        .execute(conn)?;
    Ok(())
}

/// A user's decrypted OAuth refresh token, if stored.
pub fn refresh_token(
    store: &Store,
    conn: &mut AnyConnection,
    user: UserId,
) -> StoreResult<Option<String>> {
    let ciphertext: Option<Option<String>> = google_connections::table
        .find(user.to_string())
        .select(google_connections::refresh_token_ciphertext)
        .first(conn)
        .optional()?;
    match ciphertext.flatten() {
        Some(c) => Ok(Some(
            store.secrets()?.decrypt_string(&c, &token_context(user))?,
        )),
        None => Ok(None),
    }
}

/// The stored form of a `state` parameter: its SHA-256, so a reader of the database cannot
/// complete someone's pending Connect.
fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Remembers the `state` of a pending OAuth authorization request for `user`, accepted until
/// `expires_at`. Touches nothing else: a Connect that is never finished changes nothing. Expired
/// states of every user are dropped on the way.
pub fn put_oauth_state(
    conn: &mut AnyConnection,
    user: UserId,
    state: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::delete(oauth_states::table.filter(oauth_states::expires_at.le(to_db_time(now))))
        .execute(conn)?;
    diesel::insert_into(oauth_states::table)
        .values((
            oauth_states::state_hash.eq(state_hash(state)),
            oauth_states::user_id.eq(user.to_string()),
            oauth_states::created_at.eq(to_db_time(now)),
            oauth_states::expires_at.eq(to_db_time(expires_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// What a returning `state` parameter turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthStateCheck {
    /// A pending request of this user, now used up.
    Valid(UserId),
    /// This user's request, too old to be accepted (now forgotten).
    Expired(UserId),
    /// Never issued, or already used.
    Unknown,
}

/// Takes the pending request carrying `state`: it is deleted whatever the outcome, so a state
/// works once at most.
pub fn take_oauth_state(
    conn: &mut AnyConnection,
    state: &str,
    now: DateTime<Utc>,
) -> StoreResult<OAuthStateCheck> {
    let hash = state_hash(state);
    let row: Option<(String, NaiveDateTime)> = oauth_states::table
        .find(&hash)
        .select((oauth_states::user_id, oauth_states::expires_at))
        .first(conn)
        .optional()?;
    let Some((user, expires_at)) = row else {
        return Ok(OAuthStateCheck::Unknown);
    };
    // Two callbacks racing with the same state: only the one that deletes the row wins.
    let taken = diesel::delete(oauth_states::table.find(&hash)).execute(conn)?;
    if taken == 0 {
        return Ok(OAuthStateCheck::Unknown);
    }
    let user = parse_col(&user, "oauth_states.user_id")?;
    Ok(if from_db_time(expires_at) > now {
        OAuthStateCheck::Valid(user)
    } else {
        OAuthStateCheck::Expired(user)
    })
}

/// How many Connect requests of `user` are pending (not yet expired).
pub fn pending_oauth_requests(
    conn: &mut AnyConnection,
    user: UserId,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    Ok(oauth_states::table
        .filter(oauth_states::user_id.eq(user.to_string()))
        .filter(oauth_states::expires_at.gt(to_db_time(now)))
        .count()
        .get_result(conn)?)
}

/// Forgets a user's connection: the method, state and error, the OAuth refresh token, and every
/// pending Connect. The user then syncs through the domain's service account, if there is one.
/// Returns the refresh token that was stored (for revoking it at Google), if any.
pub fn reset_connection(
    store: &Store,
    conn: &mut AnyConnection,
    user: UserId,
) -> StoreResult<Option<String>> {
    // An undecryptable token (another key) is still forgotten.
    let token = refresh_token(store, conn, user).unwrap_or(None);
    diesel::delete(google_connections::table.find(user.to_string())).execute(conn)?;
    diesel::delete(oauth_states::table.filter(oauth_states::user_id.eq(user.to_string())))
        .execute(conn)?;
    Ok(token)
}
