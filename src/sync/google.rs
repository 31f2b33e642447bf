//! Getting Google access for a user: the domain's service account impersonating the user's
//! Google alias (domain-wide delegation), or the user's own OAuth refresh token. Accounts are
//! cached per user so access tokens are reused between runs until the credentials change.

use crate::sync::error::SyncError;
use crmsync_connectors::{
    ClientOptions, Credentials, GoogleAccount, GoogleEndpoints, RetryPolicy, SendUpdates,
};
use crmsync_engine::ids::UserId;
use crmsync_engine::model::{ConnectionMethod, User};
use crmsync_schema::{app_settings, connections, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// App setting holding the per-user OAuth client (id and endpoints; the secret is separate).
pub const OAUTH_CLIENT_SETTING: &str = "google.oauth_client";
/// App setting (encrypted) holding the OAuth client secret.
pub const OAUTH_SECRET_SETTING: &str = "google.oauth_client_secret";

/// The OAuth client the admin registered for per-user connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    /// Where Google sends the user back (`…/oauth/callback` of this server).
    pub redirect_uri: String,
}

/// How accounts are built.
#[derive(Clone, Debug)]
pub struct AccountOptions {
    pub endpoints: GoogleEndpoints,
    pub retry: RetryPolicy,
    pub calendar_rate_per_minute: Option<u32>,
    pub people_rate_per_minute: Option<u32>,
    pub send_updates: SendUpdates,
}

/// Resolves and caches a [`GoogleAccount`] per user.
pub struct AccountProvider {
    store: Store,
    options: AccountOptions,
    cache: Mutex<HashMap<UserId, (String, GoogleAccount)>>,
}

impl std::fmt::Debug for AccountProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountProvider")
            .field("endpoints", &self.options.endpoints)
            .finish_non_exhaustive()
    }
}

/// The domain part of an address.
pub fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

impl AccountProvider {
    pub fn new(store: Store, options: AccountOptions) -> Self {
        AccountProvider {
            store,
            options,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &AccountOptions {
        &self.options
    }

    /// Forgets a user's cached account (after a credential change or an auth error).
    pub fn forget(&self, user: UserId) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
    }

    /// The user's credentials and a fingerprint that changes when they change.
    async fn credentials(&self, user: &User) -> Result<(String, Credentials, bool), SyncError> {
        let u = user.clone();
        let found = self
            .store
            .run(move |store| {
                store.read(|c| {
                    let conn_row = connections::get_connection(c, u.id)?;
                    // A Connect never finished leaves no refresh token: such a user syncs
                    // through the domain's service account like everyone else.
                    if let Some(row) = conn_row
                        .as_ref()
                        .filter(|r| r.method == ConnectionMethod::Oauth && r.has_refresh_token)
                    {
                        let token = connections::refresh_token(store, c, u.id)?;
                        let client: Option<OAuthClient> =
                            app_settings::get_setting(c, OAUTH_CLIENT_SETTING)?;
                        let secret =
                            app_settings::get_secret_setting(store, c, OAUTH_SECRET_SETTING)?;
                        return Ok(Some((
                            format!("oauth:{}", row.updated_at.timestamp_micros()),
                            None,
                            token,
                            client,
                            secret,
                        )));
                    }
                    let domain = domain_of(&u.google_alias).to_string();
                    match connections::get_service_account(c, &domain)? {
                        Some(sa) => {
                            let key = connections::service_account_key(store, c, &domain)?;
                            Ok(Some((
                                format!("sa:{}:{}", domain, sa.updated_at.timestamp_micros()),
                                Some(key),
                                None,
                                None,
                                None,
                            )))
                        }
                        None => Ok(None),
                    }
                })
            })
            .await
            .map_err(|e| match e {
                // A key that cannot read the user's secrets is a credential problem: the user
                // shows `auth_error` with what to do, as when Google refuses the credentials.
                StoreError::Secret(_) | StoreError::MissingSecretKey => SyncError::Auth {
                    user: user.google_alias.clone(),
                    message: e.to_string(),
                },
                other => SyncError::Store(other),
            })?;
        let not_connected = || {
            SyncError::NotConfigured(format!(
                "{} has no Google connection: upload the service-account key of {} (PUT /api/v1/google/service-account) \
                 or connect the user with OAuth (POST /api/v1/users/{}/google/oauth/start)",
                user.email,
                domain_of(&user.google_alias),
                user.id
            ))
        };
        let Some((fingerprint, key, token, client, secret)) = found else {
            return Err(not_connected());
        };
        if let Some(key) = key {
            let key: crmsync_connectors::yup_oauth2::ServiceAccountKey = serde_json::from_str(&key).map_err(|e| {
                SyncError::NotConfigured(format!(
                    "the stored service-account key of {} cannot be read ({e}); upload the JSON key again",
                    domain_of(&user.google_alias)
                ))
            })?;
            return Ok((
                fingerprint,
                Credentials::ServiceAccount {
                    key,
                    subject: user.google_alias.clone(),
                },
                true,
            ));
        }
        match (token, client, secret) {
            (Some(refresh_token), Some(client), Some(client_secret)) => Ok((
                fingerprint,
                Credentials::OAuthRefresh {
                    client_id: client.client_id,
                    client_secret,
                    refresh_token,
                },
                false,
            )),
            (None, _, _) => Err(SyncError::NotConfigured(format!(
                "{} has an OAuth connection without a refresh token: connect again \
                 (POST /api/v1/users/{}/google/oauth/start) or reset the connection \
                 (DELETE /api/v1/users/{}/google/connection) to use the domain's service account",
                user.email, user.id, user.id
            ))),
            _ => Err(SyncError::NotConfigured(
                "no OAuth client is configured: set it with PUT /api/v1/google/oauth-client".into(),
            )),
        }
    }

    /// The account to sync `user` with.
    pub async fn account_for(&self, user: &User) -> Result<GoogleAccount, SyncError> {
        let (fingerprint, credentials, delegated) = self.credentials(user).await?;
        if let Some((fp, account)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user.id)
        {
            if *fp == fingerprint {
                return Ok(account.clone());
            }
        }
        let options = ClientOptions {
            // Per-user quotas apply per CRM user under domain-wide delegation.
            quota_user: delegated.then(|| user.id.to_string()),
            retry: self.options.retry.clone(),
            calendar_rate_per_minute: self.options.calendar_rate_per_minute,
            people_rate_per_minute: self.options.people_rate_per_minute,
            send_updates: self.options.send_updates,
            user_label: Some(user.google_alias.clone()),
            ..ClientOptions::default()
        };
        let account = GoogleAccount::connect(&self.options.endpoints, credentials, options)
            .await
            .map_err(|e| SyncError::from_google(&user.google_alias, e))?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.id, (fingerprint, account.clone()));
        Ok(account)
    }
}
