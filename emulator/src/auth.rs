//! Credentials: access tokens (per user, scoped, expiring on the emulated clock), service
//! accounts with RS256 keys, domain-wide delegation per client id and scope, OAuth clients,
//! authorization codes and refresh tokens, and the checks every API call goes through.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use crate::errors::EmulatorError;

/// Lifetime of every access token the emulator issues (Google: 3599 s).
pub const ACCESS_TOKEN_SECONDS: i64 = 3599;
/// Lifetime of an authorization code.
pub const CODE_SECONDS: i64 = 600;

/// base64url that accepts padded and unpadded input (yup-oauth2 pads its JWT segments).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How an access token was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// JWT-bearer with domain-wide delegation by this client id.
    Delegation { client_id: String },
    /// Authorization code or refresh token of this OAuth client.
    OAuth { client_id: String },
    /// Minted through the control plane.
    Minted,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub user: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub grant: Grant,
}

/// A service account and its public key.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub client_id: String,
    pub private_key_id: String,
    pub token_uri: String,
    pub public_key: RsaPublicKey,
}

/// A refresh token's grant.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub client_id: String,
    pub user: String,
    pub scopes: Vec<String>,
}

/// An unredeemed authorization code.
#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// An OAuth token-endpoint error (`{"error","error_description"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::new(400, "invalid_grant", description)
    }

    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub scopes: Vec<String>,
    /// An OpenID Connect ID token (with the `openid` scope): who consented.
    pub id_token: Option<String>,
}

impl TokenGrant {
    pub fn body(&self) -> Value {
        let mut v = json!({
            "access_token": self.access_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": "Bearer",
        });
        if !self.scopes.is_empty() {
            v["scope"] = json!(self.scopes.join(" "));
        }
        if let Some(r) = &self.refresh_token {
            v["refresh_token"] = json!(r);
        }
        if let Some(t) = &self.id_token {
            v["id_token"] = json!(t);
        }
        v
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Missing,
    Invalid,
    Expired,
}

fn random_string(prefix: &str, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(CHARS[rng.gen_range(0..CHARS.len())] as char);
    }
    s
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(len);
    s.push(char::from(b'1' + rng.gen_range(0..9u8)));
    for _ in 1..len {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    s
}

/// All credential state.
#[derive(Debug, Default)]
pub struct AuthState {
    tokens: RwLock<HashMap<String, AccessToken>>,
    service_accounts: RwLock<HashMap<String, ServiceAccount>>,
    delegation: RwLock<HashMap<String, HashSet<String>>>,
    clients: RwLock<HashMap<String, String>>,
    codes: Mutex<HashMap<String, AuthCode>>,
    refresh: RwLock<HashMap<String, RefreshGrant>>,
    /// The key that signs ID tokens (made on first use; kept across resets, as Google's
    /// rotating keys outlive any one test).
    id_token_key: std::sync::OnceLock<Option<(RsaPrivateKey, String)>>,
}

/// Google's issuer of ID tokens.
pub const ID_TOKEN_ISSUER: &str = "https://accounts.google.com";

/// Google's own token URLs, which the JWT-bearer grant accepts as `aud` besides the key's
/// `token_uri` (SPEC 6.3): the current one (what Google's Python `google-auth` and Node clients
/// always send), the v4 URL and the legacy accounts URL.
pub const GOOGLE_TOKEN_AUDIENCES: &[&str] = &[
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
];

/// Whether a JWT-bearer assertion's `aud` is one Google accepts for a key whose `token_uri`
/// is `token_uri` (exact string match, as Google compares them).
pub fn accepted_audience(aud: &str, token_uri: &str) -> bool {
    !aud.is_empty() && (aud == token_uri || GOOGLE_TOKEN_AUDIENCES.contains(&aud))
}

/// Whether the granted scopes ask for OpenID Connect (then the token response has an
/// `id_token`).
fn wants_id_token(scopes: &[String]) -> bool {
    scopes.iter().any(|s| s == "openid")
}

/// The stable numeric account id Google puts in `sub` (derived from the address here).
pub fn account_id(user: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(user.to_ascii_lowercase().as_bytes());
    let mut n: u128 = 0;
    for b in &digest[..12] {
        n = (n << 8) | u128::from(*b);
    }
    format!("1{:020}", n % 100_000_000_000_000_000_000)
}

fn rl<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn wl<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl AuthState {
    pub fn reset(&self) {
        wl(&self.tokens).clear();
        wl(&self.service_accounts).clear();
        wl(&self.delegation).clear();
        wl(&self.clients).clear();
        self.codes.lock().unwrap_or_else(|p| p.into_inner()).clear();
        wl(&self.refresh).clear();
    }

    /// Issues an access token for `user`.
    pub fn issue(&self, user: &str, scopes: &[String], grant: Grant, now: DateTime<Utc>) -> String {
        let token = random_string("ya29.emu-", 48);
        let mut tokens = wl(&self.tokens);
        if tokens.len() > 50_000 {
            tokens.retain(|_, t| t.expires_at > now);
        }
        tokens.insert(
            token.clone(),
            AccessToken {
                user: user.to_ascii_lowercase(),
                scopes: scopes.to_vec(),
                expires_at: now + Duration::seconds(ACCESS_TOKEN_SECONDS),
                grant,
            },
        );
        token
    }

    /// Resolves a bearer token.
    pub fn check_token(
        &self,
        token: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, TokenCheck> {
        let token = token.ok_or(TokenCheck::Missing)?;
        let tokens = rl(&self.tokens);
        let t = tokens.get(token).ok_or(TokenCheck::Invalid)?;
        if t.expires_at <= now {
            return Err(TokenCheck::Expired);
        }
        Ok(t.clone())
    }

    /// Creates a service account with a fresh 2048-bit key; returns the key JSON.
    pub fn create_service_account(
        &self,
        domain: &str,
        base_url: &str,
    ) -> Result<Value, EmulatorError> {
        let mut rng = rand::thread_rng();
        let private =
            RsaPrivateKey::new(&mut rng, 2048).map_err(|e| EmulatorError::Key(e.to_string()))?;
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| EmulatorError::Key(e.to_string()))?;
        let public = RsaPublicKey::from(&private);
        let project = format!("emulated-{}", domain.replace('.', "-"));
        let name = random_string("crmsync-", 6)
            .to_ascii_lowercase()
            .replace(['-', '_'], "x");
        let client_email = format!("{name}@{project}.iam.gserviceaccount.com");
        let client_id = random_digits(21);
        let private_key_id = hex::encode(rand::thread_rng().gen::<[u8; 20]>());
        let token_uri = format!("{}/token", base_url.trim_end_matches('/'));
        let key = json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": private_key_id,
            "private_key": pem.as_str(),
            "client_email": client_email,
            "client_id": client_id,
            "auth_uri": format!("{}/o/oauth2/auth", base_url.trim_end_matches('/')),
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": format!("{}/oauth2/v1/certs", base_url.trim_end_matches('/')),
            "client_x509_cert_url": format!("{}/robot/v1/metadata/x509/{}", base_url.trim_end_matches('/'), client_email),
            "universe_domain": "googleapis.com",
        });
        wl(&self.service_accounts).insert(
            client_email.clone(),
            ServiceAccount {
                client_email: client_email.clone(),
                client_id,
                private_key_id,
                token_uri,
                public_key: public,
            },
        );
        tracing::info!(%client_email, domain, "service account created");
        Ok(key)
    }

    /// Sets (replaces) the scopes delegated to `client_id`; an empty list removes the grant.
    pub fn authorize_delegation(&self, client_id: &str, scopes: &[String]) {
        let mut d = wl(&self.delegation);
        if scopes.is_empty() {
            d.remove(client_id);
        } else {
            d.insert(client_id.to_string(), scopes.iter().cloned().collect());
        }
    }

    pub fn create_client(&self) -> (String, String) {
        let id = format!(
            "{}-{}.apps.googleusercontent.com",
            random_digits(12),
            random_string("", 24)
                .to_ascii_lowercase()
                .replace(['-', '_'], "a")
        );
        let secret = random_string("GOCSPX-", 28);
        wl(&self.clients).insert(id.clone(), secret.clone());
        (id, secret)
    }

    pub fn client_exists(&self, client_id: &str) -> bool {
        rl(&self.clients).contains_key(client_id)
    }

    /// Revokes every refresh token and access token of `user`.
    pub fn revoke(&self, user: &str) {
        let user = user.to_ascii_lowercase();
        wl(&self.refresh).retain(|_, g| g.user != user);
        wl(&self.tokens).retain(|_, t| t.user != user);
        tracing::info!(%user, "grants revoked");
    }

    /// JWT-bearer grant: verifies the assertion and delegation, issues a token.
    pub fn jwt_bearer(
        &self,
        assertion: &str,
        now: DateTime<Utc>,
        user_exists: impl Fn(&str) -> bool,
    ) -> Result<TokenGrant, OAuthError> {
        let mut parts = assertion.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OAuthError::invalid_grant(
                "Invalid JWT: malformed assertion.",
            ));
        };
        let header: Value = B64URL
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                OAuthError::invalid_grant("Invalid JWT: header is not base64url JSON.")
            })?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(OAuthError::invalid_grant("Invalid JWT: alg must be RS256."));
        }
        let claims: Value = B64URL
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                OAuthError::invalid_grant("Invalid JWT: claim set is not base64url JSON.")
            })?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sa = rl(&self.service_accounts)
            .get(iss)
            .cloned()
            .ok_or_else(|| OAuthError::invalid_grant("Invalid grant: account not found"))?;
        let sig_bytes = B64URL
            .decode(s)
            .map_err(|_| OAuthError::invalid_grant("Invalid JWT Signature."))?;
        let sig = Signature::try_from(sig_bytes.as_slice())
            .map_err(|_| OAuthError::invalid_grant("Invalid JWT Signature."))?;
        let signed = &assertion[..h.len() + 1 + c.len()];
        VerifyingKey::<Sha256>::new(sa.public_key.clone())
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| OAuthError::invalid_grant("Invalid JWT Signature."))?;
        let aud = claims
            .get("aud")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !accepted_audience(aud, &sa.token_uri) {
            return Err(OAuthError::invalid_grant(format!(
                "Invalid JWT: Failed audience check. The right audience is {}",
                sa.token_uri
            )));
        }
        let iat = claims.get("iat").and_then(Value::as_i64);
        let exp = claims.get("exp").and_then(Value::as_i64);
        let ts = now.timestamp();
        let short_lived = matches!((iat, exp), (Some(i), Some(e)) if e > i && e - i <= 3600 && i <= ts + 300 && e > ts - 300);
        if !short_lived {
            return Err(OAuthError::invalid_grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let scopes: Vec<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if scopes.is_empty() {
            return Err(OAuthError::new(
                400,
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            ));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let user = match sub {
            Some(sub) => {
                if !user_exists(&sub) {
                    return Err(OAuthError::invalid_grant("Invalid email or User ID"));
                }
                let delegated = rl(&self.delegation)
                    .get(&sa.client_id)
                    .is_some_and(|granted| scopes.iter().all(|s| granted.contains(s)));
                if !delegated {
                    tracing::info!(client_id = %sa.client_id, %sub, "delegation refused");
                    return Err(OAuthError::new(
                        401,
                        "unauthorized_client",
                        "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
                    ));
                }
                sub
            }
            // No impersonation: a token for the service account itself (it owns no data here).
            None => sa.client_email.clone(),
        };
        let access_token = self.issue(
            &user,
            &scopes,
            Grant::Delegation {
                client_id: sa.client_id,
            },
            now,
        );
        Ok(TokenGrant {
            access_token,
            refresh_token: None,
            scopes: Vec::new(),
            id_token: None,
        })
    }

    /// Authorization endpoint: issues a code for `user` (auto-consent).
    pub fn issue_code(
        &self,
        client_id: &str,
        redirect_uri: &str,
        user: &str,
        scopes: Vec<String>,
        now: DateTime<Utc>,
    ) -> String {
        let code = random_string("4/0Aemu", 40);
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, c| c.expires_at > now);
        codes.insert(
            code.clone(),
            AuthCode {
                client_id: client_id.to_string(),
                redirect_uri: redirect_uri.to_string(),
                user: user.to_ascii_lowercase(),
                scopes,
                expires_at: now + Duration::seconds(CODE_SECONDS),
            },
        );
        code
    }

    fn check_client(&self, client_id: &str, secret: &str) -> Result<(), OAuthError> {
        match rl(&self.clients).get(client_id) {
            None => Err(OAuthError::new(
                401,
                "invalid_client",
                "The OAuth client was not found.",
            )),
            Some(s) if s != secret => Err(OAuthError::new(401, "invalid_client", "Unauthorized")),
            Some(_) => Ok(()),
        }
    }

    /// authorization_code grant.
    pub fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenGrant, OAuthError> {
        self.check_client(client_id, secret)?;
        let c = self
            .codes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_grant("Malformed auth code."))?;
        if c.expires_at <= now || c.client_id != client_id {
            return Err(OAuthError::invalid_grant("Bad Request"));
        }
        if c.redirect_uri != redirect_uri {
            return Err(OAuthError::new(400, "redirect_uri_mismatch", "Bad Request"));
        }
        let refresh = random_string("1//0emu", 60);
        wl(&self.refresh).insert(
            refresh.clone(),
            RefreshGrant {
                client_id: client_id.to_string(),
                user: c.user.clone(),
                scopes: c.scopes.clone(),
            },
        );
        let access_token = self.issue(
            &c.user,
            &c.scopes,
            Grant::OAuth {
                client_id: client_id.to_string(),
            },
            now,
        );
        let id_token = if wants_id_token(&c.scopes) {
            Some(self.id_token(&c.user, client_id, &c.scopes, now)?)
        } else {
            None
        };
        Ok(TokenGrant {
            access_token,
            refresh_token: Some(refresh),
            scopes: c.scopes,
            id_token,
        })
    }

    /// An RS256 ID token for `user` as Google issues it to `client_id`: `iss`, `azp`, `aud`,
    /// `sub` (the account id), `email`, `email_verified`, `iat`, `exp`; the `email` claims only
    /// with the `email` scope.
    fn id_token(
        &self,
        user: &str,
        client_id: &str,
        scopes: &[String],
        now: DateTime<Utc>,
    ) -> Result<String, OAuthError> {
        use rsa::signature::{SignatureEncoding, Signer};
        let key = self.id_token_key.get_or_init(|| {
            let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).ok()?;
            Some((private, hex::encode(rand::thread_rng().gen::<[u8; 20]>())))
        });
        let Some((private, kid)) = key else {
            return Err(OAuthError::new(
                500,
                "server_error",
                "The ID token key is unavailable.",
            ));
        };
        let header = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
        let mut claims = json!({
            "iss": ID_TOKEN_ISSUER,
            "azp": client_id,
            "aud": client_id,
            "sub": account_id(user),
            "iat": now.timestamp(),
            "exp": now.timestamp() + ACCESS_TOKEN_SECONDS,
        });
        let email_scope = scopes
            .iter()
            .any(|s| s == "email" || s == "https://www.googleapis.com/auth/userinfo.email");
        if email_scope {
            claims["email"] = json!(user);
            claims["email_verified"] = json!(true);
        }
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(private.clone());
        let signature = signer.sign(signing_input.as_bytes()).to_bytes();
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }

    /// refresh_token grant.
    pub fn refresh(
        &self,
        refresh_token: &str,
        client_id: &str,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenGrant, OAuthError> {
        self.check_client(client_id, secret)?;
        let g = rl(&self.refresh)
            .get(refresh_token)
            .cloned()
            .filter(|g| g.client_id == client_id)
            .ok_or_else(|| OAuthError::invalid_grant("Token has been expired or revoked."))?;
        let access_token = self.issue(
            &g.user,
            &g.scopes,
            Grant::OAuth {
                client_id: client_id.to_string(),
            },
            now,
        );
        let id_token = if wants_id_token(&g.scopes) {
            Some(self.id_token(&g.user, client_id, &g.scopes, now)?)
        } else {
            None
        };
        Ok(TokenGrant {
            access_token,
            refresh_token: None,
            scopes: g.scopes,
            id_token,
        })
    }
}

/// The full scope URL for a short name (`calendar.events` → `https://…/auth/calendar.events`).
pub fn scope_url(short: &str) -> String {
    if short.starts_with("https://") {
        short.to_string()
    } else {
        format!("https://www.googleapis.com/auth/{short}")
    }
}

/// Whether a token with `granted` may call a method accepting `accepted`.
pub fn scope_allows(granted: &[String], accepted: &[String]) -> bool {
    accepted.is_empty() || granted.iter().any(|g| accepted.iter().any(|a| a == g))
}
