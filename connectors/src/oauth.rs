//! Per-user OAuth 2.0 authorization-code flow: the consent URL the user is sent to and the
//! exchange of the returned code for a refresh token, both against the configured endpoints
//! (Google or the emulator). The refresh token then goes into
//! [`Credentials::OAuthRefresh`](crate::Credentials), encrypted at rest by the store.

use crate::auth::{token_error, AuthContext, TOKEN_METHOD};
use crate::endpoints::GoogleEndpoints;
use crate::error::{ErrorKind, GoogleError};
use crate::http;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// What the token endpoint returned for an authorization code.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The long-lived token to store (encrypted) and refresh with.
    pub refresh_token: String,
    /// A short-lived access token.
    pub access_token: String,
    /// Seconds until `access_token` expires.
    pub expires_in: Option<u64>,
    /// The scopes granted, space-separated, when the server says.
    pub scope: Option<String>,
    /// The OpenID Connect ID token (requested with [`IDENTITY_SCOPES`]): who consented.
    pub id_token: Option<String>,
}

/// The scopes that make Google say which account consented (an `id_token` with its verified
/// e-mail), asked for together with the sync scopes in per-user consent.
pub const IDENTITY_SCOPES: [&str; 2] = ["openid", "email"];

/// The Google account that consented, from the grant's ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentingAccount {
    /// The account's e-mail address, lower-case.
    pub email: String,
    /// Google's stable account id (`sub`).
    pub account_id: String,
}

impl TokenGrant {
    /// Which account consented, read from the ID token. The token came straight from the
    /// token endpoint in answer to our authenticated request, so (as OpenID Connect Core 3.1.3.7
    /// and Google's guide allow) its signature is not checked; its audience must be our client
    /// and its e-mail verified.
    pub fn consenting_account(&self, client_id: &str) -> Result<ConsentingAccount, GoogleError> {
        use base64::Engine;
        let refuse = |why: &str| {
            GoogleError::local(ErrorKind::Auth, TOKEN_METHOD, why)
                .with_advice("start the Connect flow again and accept every requested permission")
        };
        let token = self
            .id_token
            .as_deref()
            .ok_or_else(|| refuse("Google did not say which account consented (no id_token)"))?;
        let payload = token
            .split('.')
            .nth(1)
            .ok_or_else(|| refuse("the id_token is not a JWT"))?;
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let claims: Value = engine
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| refuse("the id_token's claims are not base64url JSON"))?;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == client_id,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(client_id)),
            _ => false,
        };
        if !audience_ok {
            return Err(refuse("the id_token was issued to another OAuth client"));
        }
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(true)) => true,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| verified)
            .ok_or_else(|| {
                refuse("Google did not give the consenting account's verified e-mail")
            })?;
        Ok(ConsentingAccount {
            email: email.trim().to_ascii_lowercase(),
            account_id: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The URL to send the user's browser to for consent. Requests offline access (a refresh
/// token) and forces the consent screen so that a refresh token is issued even on reconnect.
/// `scopes` is usually `&[SCOPE_CONTACTS, SCOPE_CALENDAR]`.
pub fn authorization_url(
    endpoints: &GoogleEndpoints,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    login_hint: Option<&str>,
    scopes: &[&str],
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", state)
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("include_granted_scopes", "true");
    if let Some(hint) = login_hint {
        q.append_pair("login_hint", hint);
    }
    let sep = if endpoints.auth_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{}", endpoints.auth_uri, q.finish())
}

/// Exchanges an authorization code (single use, so never retried) for tokens.
pub async fn exchange_code(
    endpoints: &GoogleEndpoints,
    client_id: &str,
    client_secret: &str,
    code: &str,
    redirect_uri: &str,
) -> Result<TokenGrant, GoogleError> {
    let endpoints = endpoints.validated()?;
    let client = http::api_client(http::connector()?);
    let ctx = AuthContext::OAuth {
        client_id: client_id.to_string(),
        user: None,
    };
    let (status, body) = http::post_form(
        &client,
        &endpoints.token_uri,
        &[
            ("code", code),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("redirect_uri", redirect_uri),
            ("grant_type", "authorization_code"),
        ],
        Duration::from_secs(30),
    )
    .await?;
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if !(200..300).contains(&status) {
        let mut e = token_error(Some(status), body.as_ref());
        if e.kind == ErrorKind::Auth {
            e = ctx.decorate(e, &[]);
            if e.reason.as_deref() == Some("invalid_grant") {
                e = e.with_advice("the authorization code was already used or has expired: start the Connect flow again");
            }
        }
        return Err(e);
    }
    let (Some(access_token), Some(refresh_token)) = (field("access_token"), field("refresh_token"))
    else {
        return Err(GoogleError::local(
            ErrorKind::Auth,
            TOKEN_METHOD,
            "the token endpoint granted no refresh token",
        )
        .with_advice("start the Connect flow again; the consent screen must be shown (prompt=consent, access_type=offline)"));
    };
    Ok(TokenGrant {
        refresh_token,
        access_token,
        expires_in: body
            .as_ref()
            .and_then(|b| b.get("expires_in"))
            .and_then(Value::as_u64),
        scope: field("scope"),
        id_token: field("id_token"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_url_carries_everything() {
        let e = GoogleEndpoints::emulator("http://127.0.0.1:8089");
        let url = authorization_url(
            &e,
            "cid.apps",
            "http://localhost:8080/oauth/callback",
            "st ate",
            Some("alice@example.com"),
            &[crate::SCOPE_CONTACTS, crate::SCOPE_CALENDAR],
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/o/oauth2/v2/auth");
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid.apps");
        assert_eq!(q["redirect_uri"], "http://localhost:8080/oauth/callback");
        assert_eq!(q["state"], "st ate");
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["login_hint"], "alice@example.com");
        assert_eq!(
            q["scope"],
            "https://www.googleapis.com/auth/contacts https://www.googleapis.com/auth/calendar.events"
        );
    }
}
