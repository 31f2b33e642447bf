//! Authentication: turns [`Credentials`] into access tokens for the client crates' hubs.
//!
//! - Domain-wide delegation goes through yup-oauth2's `ServiceAccountAuthenticator` (JWT
//!   bearer grant, `sub` = the impersonated user), with the key's `token_uri` replaced by the
//!   configured token endpoint so the emulator works the same way as Google.
//! - Per-user OAuth uses our own refresh-token source, because yup-oauth2's
//!   `AuthorizedUserAuthenticator` hard-codes Google's URL: it posts `grant_type=refresh_token`
//!   to the configured token endpoint and caches the access token until one minute before it
//!   expires.
//! - A fixed access token serves tests.
//!
//! Every token failure becomes a [`GoogleError`] that names whose credentials failed and what
//! the admin must do (e.g. which client id and scopes to authorize in the Admin console).

use crate::error::{ErrorBody, ErrorKind, GoogleError};
use crate::http::{self, ApiClient, Connector};
use google_apis_common::GetToken;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use yup_oauth2::authenticator::Authenticator;

/// The method name used in errors from the token endpoint.
pub(crate) const TOKEN_METHOD: &str = "oauth2.token";

/// Refresh an access token this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How the connectors obtain Google access for one user.
#[derive(Clone)]
pub enum Credentials {
    /// Domain-wide delegation: the domain's service-account key impersonating `subject`
    /// (`key.token_uri` is overridden by [`GoogleEndpoints::token_uri`](crate::GoogleEndpoints)).
    ServiceAccount {
        key: yup_oauth2::ServiceAccountKey,
        subject: String,
    },
    /// Per-user OAuth: refresh against the configured token endpoint (the access token is
    /// cached until about a minute before it expires).
    OAuthRefresh {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
    /// A fixed access token (tests).
    AccessToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ServiceAccount { key, subject } => f
                .debug_struct("ServiceAccount")
                .field("client_email", &key.client_email)
                .field("client_id", &key.client_id)
                .field("subject", subject)
                .finish_non_exhaustive(),
            Credentials::OAuthRefresh { client_id, .. } => f
                .debug_struct("OAuthRefresh")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Credentials::AccessToken(_) => f.write_str("AccessToken(..)"),
        }
    }
}

/// Whose credentials these are, for error messages and advice.
#[derive(Clone, Debug)]
pub(crate) enum AuthContext {
    ServiceAccount {
        subject: String,
        client_id: String,
        client_email: String,
    },
    OAuth {
        client_id: String,
        user: Option<String>,
    },
    Static {
        user: Option<String>,
    },
}

impl AuthContext {
    /// "the service account for alice@example.com", …
    pub fn subject_phrase(&self) -> String {
        match self {
            AuthContext::ServiceAccount { subject, .. } => {
                format!("the service account for {subject}")
            }
            AuthContext::OAuth { user: Some(u), .. } => format!("the stored authorization of {u}"),
            AuthContext::OAuth { user: None, .. } => "the stored OAuth authorization".into(),
            AuthContext::Static { user: Some(u) } => format!("the access token of {u}"),
            AuthContext::Static { user: None } => "the access token".into(),
        }
    }

    /// What the admin or user should do about an auth failure with `reason`.
    pub fn advice(&self, reason: Option<&str>, scopes: &[&str]) -> String {
        let scopes = if scopes.is_empty() {
            crate::ALL_SCOPES.join(",")
        } else {
            scopes.join(",")
        };
        match (self, reason.unwrap_or("")) {
            (AuthContext::ServiceAccount { client_id, .. }, "unauthorized_client" | "access_denied" | "invalid_scope") => format!(
                "authorize client id {client_id} for scopes {scopes} in the Google Admin console (Security > Access and data control > API controls > Domain-wide delegation); changes can take up to 24 hours"
            ),
            (AuthContext::ServiceAccount { subject, .. }, "invalid_grant") => format!(
                "check that {subject} is an active user of the Workspace domain, that the service-account key has not been deleted, and that this server's clock is correct"
            ),
            (AuthContext::ServiceAccount { client_email, client_id, .. }, _) => format!(
                "upload a current key for the service account {client_email} and check that client id {client_id} is authorized for scopes {scopes} in the Google Admin console"
            ),
            (AuthContext::OAuth { client_id, .. }, "invalid_client" | "unauthorized_client") => format!(
                "check the OAuth client id {client_id} and its client secret in the crmsync settings"
            ),
            (AuthContext::OAuth { user, .. }, _) => format!(
                "{} must connect the Google account again (the refresh token was revoked or expired)",
                user.as_deref().unwrap_or("the user")
            ),
            (AuthContext::Static { .. }, _) => "use a valid access token".into(),
        }
    }

    /// Decorates an auth error with the subject and advice.
    pub fn decorate(&self, mut e: GoogleError, scopes: &[&str]) -> GoogleError {
        if e.kind == ErrorKind::Auth {
            let advice = self.advice(e.reason.as_deref(), scopes);
            e = e.with_subject(self.subject_phrase()).with_advice(advice);
        }
        e
    }
}

/// OAuth error codes that mean "these credentials will not work until someone fixes them".
const AUTH_CODES: &[&str] = &[
    "invalid_grant",
    "unauthorized_client",
    "invalid_client",
    "access_denied",
    "invalid_scope",
    "invalid_request",
    "unsupported_grant_type",
];

/// Classifies a token-endpoint failure (`status` may be unknown when yup-oauth2 hides it).
pub(crate) fn token_error(status: Option<u16>, body: Option<&Value>) -> GoogleError {
    let parsed = body.map(ErrorBody::parse).unwrap_or_default();
    let reason = parsed.reason.clone();
    let known_auth = reason
        .as_deref()
        .is_some_and(|r| AUTH_CODES.iter().any(|c| c.eq_ignore_ascii_case(r)));
    let kind = match status {
        Some(429) => ErrorKind::RateLimited,
        Some(s) if s >= 500 => ErrorKind::Transient,
        _ if known_auth => ErrorKind::Auth,
        Some(400 | 401 | 403) => ErrorKind::Auth,
        _ => ErrorKind::Transient,
    };
    GoogleError {
        kind,
        status,
        reason,
        message: parsed.message.unwrap_or_else(|| match status {
            Some(s) => format!("the token endpoint answered HTTP {s}"),
            None => "the token endpoint refused the request".into(),
        }),
        method: TOKEN_METHOD,
        attempts: 1,
        subject: None,
        advice: None,
    }
}

/// Converts a yup-oauth2 failure (service-account flow).
fn yup_error(e: yup_oauth2::Error) -> GoogleError {
    use yup_oauth2::Error as Y;
    match e {
        Y::AuthError(a) => {
            let body = serde_json::json!({
                "error": a.error.as_str(),
                "error_description": a.error_description,
            });
            token_error(None, Some(&body))
        }
        Y::HttpError(err) => GoogleError::local(
            ErrorKind::Transient,
            TOKEN_METHOD,
            format!("could not reach the token endpoint: {err}"),
        ),
        Y::HttpClientError(err) => GoogleError::local(
            ErrorKind::Transient,
            TOKEN_METHOD,
            format!("could not reach the token endpoint: {err}"),
        ),
        Y::JSONError(err) => GoogleError::local(
            ErrorKind::Transient,
            TOKEN_METHOD,
            format!("the token endpoint returned an unreadable response: {err}"),
        ),
        Y::MissingAccessToken => GoogleError::local(
            ErrorKind::Transient,
            TOKEN_METHOD,
            "the token endpoint answered without an access token",
        ),
        Y::UserError(msg) => GoogleError::local(ErrorKind::Auth, TOKEN_METHOD, msg),
        Y::LowLevelError(err) => GoogleError::local(
            ErrorKind::Auth,
            TOKEN_METHOD,
            format!("the service-account key could not sign the token request: {err}"),
        ),
        Y::StorageError(err) => {
            GoogleError::local(ErrorKind::Transient, TOKEN_METHOD, err.to_string())
        }
        Y::CredentialSourceError(err) => {
            GoogleError::local(ErrorKind::Auth, TOKEN_METHOD, err.to_string())
        }
    }
}

/// Supplies access tokens to the hubs and can be told that a token was refused (401).
#[derive(Clone)]
pub(crate) struct TokenProvider {
    inner: Arc<ProviderInner>,
}

enum ProviderInner {
    ServiceAccount {
        auth: Authenticator<Connector>,
        ctx: AuthContext,
        /// Scopes whose cached token was refused (401): the next fetch bypasses the cache.
        force_refresh: std::sync::Mutex<HashSet<String>>,
    },
    OAuth(Box<RefreshSource>),
    Static {
        token: String,
        ctx: AuthContext,
    },
}

impl TokenProvider {
    /// Builds the provider for `credentials`. Service-account keys are parsed here, so a
    /// malformed key fails at connect time.
    pub async fn new(
        credentials: Credentials,
        token_uri: &str,
        connector: &Connector,
        user: Option<String>,
        timeout: Duration,
    ) -> Result<Self, GoogleError> {
        let inner = match credentials {
            Credentials::ServiceAccount { mut key, subject } => {
                let ctx = AuthContext::ServiceAccount {
                    subject: subject.clone(),
                    client_id: key.client_id.clone().unwrap_or_else(|| "(unknown)".into()),
                    client_email: key.client_email.clone(),
                };
                key.token_uri = token_uri.to_string();
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build::<_, String>(connector.clone());
                let auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
                    key,
                    yup_oauth2::CustomHyperClientBuilder::from(client),
                )
                .subject(subject)
                .with_timeout(timeout)
                .build()
                .await
                .map_err(|e| {
                    ctx.decorate(
                        GoogleError::local(
                            ErrorKind::Auth,
                            TOKEN_METHOD,
                            format!("the service-account key is not usable: {e}"),
                        ),
                        &[],
                    )
                })?;
                ProviderInner::ServiceAccount {
                    auth,
                    ctx,
                    force_refresh: std::sync::Mutex::new(HashSet::new()),
                }
            }
            Credentials::OAuthRefresh {
                client_id,
                client_secret,
                refresh_token,
            } => ProviderInner::OAuth(Box::new(RefreshSource {
                client: http::api_client(connector.clone()),
                token_uri: token_uri.to_string(),
                ctx: AuthContext::OAuth {
                    client_id: client_id.clone(),
                    user,
                },
                client_id,
                client_secret,
                refresh_token,
                timeout,
                cached: Mutex::new(None),
            })),
            Credentials::AccessToken(token) => ProviderInner::Static {
                token,
                ctx: AuthContext::Static { user },
            },
        };
        Ok(TokenProvider {
            inner: Arc::new(inner),
        })
    }

    pub fn context(&self) -> &AuthContext {
        match &*self.inner {
            ProviderInner::ServiceAccount { ctx, .. } | ProviderInner::Static { ctx, .. } => ctx,
            ProviderInner::OAuth(src) => &src.ctx,
        }
    }

    /// An access token for `scopes`.
    pub async fn token(&self, scopes: &[&str]) -> Result<String, GoogleError> {
        match &*self.inner {
            ProviderInner::ServiceAccount {
                auth,
                ctx,
                force_refresh,
            } => {
                let forced = {
                    let mut f = force_refresh.lock().unwrap_or_else(|p| p.into_inner());
                    let hit = scopes.iter().any(|s| f.contains(*s));
                    if hit {
                        for s in scopes {
                            f.remove(*s);
                        }
                    }
                    hit
                };
                let result = if forced {
                    auth.force_refreshed_token(scopes).await
                } else {
                    auth.token(scopes).await
                };
                match result {
                    Ok(t) => match t.token() {
                        Some(s) => Ok(s.to_string()),
                        None => Err(GoogleError::local(
                            ErrorKind::Transient,
                            TOKEN_METHOD,
                            "the token endpoint answered without an access token",
                        )),
                    },
                    Err(e) => Err(ctx.decorate(yup_error(e), scopes)),
                }
            }
            ProviderInner::OAuth(src) => src.token(scopes).await,
            ProviderInner::Static { token, .. } => Ok(token.clone()),
        }
    }

    /// Forgets the cached token for `scopes` after an API answered 401. Returns whether a
    /// fresh token can be obtained (false for a fixed access token).
    pub async fn invalidate(&self, scopes: &[&str]) -> bool {
        match &*self.inner {
            ProviderInner::ServiceAccount { force_refresh, .. } => {
                let mut f = force_refresh.lock().unwrap_or_else(|p| p.into_inner());
                f.extend(scopes.iter().map(|s| s.to_string()));
                true
            }
            ProviderInner::OAuth(src) => {
                *src.cached.lock().await = None;
                true
            }
            ProviderInner::Static { .. } => false,
        }
    }
}

/// The future type of [`GetToken::get_token`] (private in google-apis-common).
type GetTokenFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>>
            + Send
            + 'a,
    >,
>;

impl GetToken for TokenProvider {
    fn get_token<'a>(&'a self, scopes: &'a [&str]) -> GetTokenFuture<'a> {
        Box::pin(async move {
            self.token(scopes)
                .await
                .map(Some)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

/// Per-user OAuth: refresh-token grant against a configurable token endpoint.
struct RefreshSource {
    client: ApiClient,
    token_uri: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    timeout: Duration,
    ctx: AuthContext,
    /// The access token and when to stop using it. Held during a refresh so concurrent
    /// callers wait for one refresh instead of each making their own.
    cached: Mutex<Option<(String, Instant)>>,
}

impl RefreshSource {
    async fn token(&self, scopes: &[&str]) -> Result<String, GoogleError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, use_until)) = cached.as_ref() {
            if Instant::now() < *use_until {
                return Ok(token.clone());
            }
        }
        let (status, body) = http::post_form(
            &self.client,
            &self.token_uri,
            &[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("refresh_token", self.refresh_token.as_str()),
                ("grant_type", "refresh_token"),
            ],
            self.timeout,
        )
        .await?;
        let access = body
            .as_ref()
            .and_then(|b| b.get("access_token"))
            .and_then(Value::as_str);
        match (status, access) {
            (200..=299, Some(token)) => {
                let expires_in = body
                    .as_ref()
                    .and_then(|b| b.get("expires_in"))
                    .and_then(Value::as_u64)
                    .unwrap_or(3600);
                let use_until =
                    Instant::now() + Duration::from_secs(expires_in).saturating_sub(EXPIRY_MARGIN);
                *cached = Some((token.to_string(), use_until));
                Ok(token.to_string())
            }
            _ => {
                let mut e = token_error(Some(status), body.as_ref());
                if (200..300).contains(&status) {
                    e.kind = ErrorKind::Transient;
                    e.message = "the token endpoint answered without an access token".into();
                }
                Err(self.ctx.decorate(e, scopes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unauthorized_client_names_client_id_and_scopes() {
        let ctx = AuthContext::ServiceAccount {
            subject: "alice@example.com".into(),
            client_id: "1234567890".into(),
            client_email: "sync@proj.iam.gserviceaccount.com".into(),
        };
        let e = token_error(
            Some(401),
            Some(
                &json!({"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}),
            ),
        );
        let e = ctx.decorate(e, &["https://www.googleapis.com/auth/contacts"]);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.reason.as_deref(), Some("unauthorized_client"));
        let s = e.to_string();
        assert!(
            s.starts_with("Google refused the service account for alice@example.com"),
            "{s}"
        );
        assert!(
            s.contains("unauthorized_client: Client is unauthorized"),
            "{s}"
        );
        assert!(s.contains("authorize client id 1234567890 for scopes https://www.googleapis.com/auth/contacts in the Google Admin console"), "{s}");
    }

    #[test]
    fn revoked_refresh_token() {
        let ctx = AuthContext::OAuth {
            client_id: "cid".into(),
            user: Some("bob@example.com".into()),
        };
        let e = ctx.decorate(
            token_error(
                Some(400),
                Some(&json!({"error":"invalid_grant","error_description":"Token has been expired or revoked."})),
            ),
            &[],
        );
        assert_eq!(e.kind, ErrorKind::Auth);
        let s = e.to_string();
        assert!(
            s.contains("invalid_grant: Token has been expired or revoked."),
            "{s}"
        );
        assert!(
            s.contains("bob@example.com must connect the Google account again"),
            "{s}"
        );
    }

    #[test]
    fn token_endpoint_outage_is_transient() {
        assert_eq!(token_error(Some(503), None).kind, ErrorKind::Transient);
        assert_eq!(
            token_error(
                Some(503),
                Some(&json!({"error":{"code":503,"message":"unavailable"}}))
            )
            .kind,
            ErrorKind::Transient
        );
        assert_eq!(token_error(Some(429), None).kind, ErrorKind::RateLimited);
        assert_eq!(
            token_error(None, Some(&json!({"error":"temporarily_unavailable"}))).kind,
            ErrorKind::Transient
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::OAuthRefresh {
            client_id: "cid".into(),
            client_secret: "s3cret".into(),
            refresh_token: "1//refresh".into(),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("s3cret") && !s.contains("refresh\""), "{s}");
        assert!(!format!("{:?}", Credentials::AccessToken("ya29.x".into())).contains("ya29"));
    }
}
