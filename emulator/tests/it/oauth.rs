//! OAuth: JWT-bearer with RS256 and domain-wide delegation through yup-oauth2's
//! ServiceAccountAuthenticator, the authorization-code and refresh-token grants through
//! InstalledFlowAuthenticator, revocation, and the per-call token and scope checks.

use crate::common::*;
use google_calendar3::api::Scope;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use yup_oauth2::authenticator_delegate::InstalledFlowDelegate;
use yup_oauth2::error::AuthErrorCode;
use yup_oauth2::{
    ApplicationSecret, InstalledFlowAuthenticator, InstalledFlowReturnMethod,
    ServiceAccountAuthenticator,
};

async fn service_account(env: &Env) -> (yup_oauth2::ServiceAccountKey, String) {
    let (s, key) = env
        .post("/service-accounts", json!({"domain": "example.com"}))
        .await;
    assert_eq!(s, 201, "{key}");
    for field in [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
    ] {
        assert!(key[field].is_string(), "key misses {field}");
    }
    assert_eq!(key["token_uri"], format!("{}/token", env.base));
    let client_id = key["client_id"].as_str().unwrap().to_string();
    (
        yup_oauth2::parse_service_account_key(key.to_string()).unwrap(),
        client_id,
    )
}

fn auth_code(e: &yup_oauth2::Error) -> AuthErrorCode {
    match e {
        yup_oauth2::Error::AuthError(a) => a.error.clone(),
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

#[tokio::test]
async fn service_account_with_delegation_impersonates_the_subject() {
    let env = Env::new().await;
    env.post("/users", json!({"email": "alice@example.com"}))
        .await;
    let (key, client_id) = service_account(&env).await;
    let (s, _) = env
        .post(
            "/domain-wide-delegation",
            json!({"client_id": client_id, "scopes": [CAL, CONTACTS]}),
        )
        .await;
    assert_eq!(s, 200);
    let auth = ServiceAccountAuthenticator::builder(key.clone())
        .subject("alice@example.com")
        .build()
        .await
        .unwrap();
    let mut hub = google_calendar3::CalendarHub::new(client(), auth);
    hub.base_url(format!("{}/calendar/v3/", env.base));
    let (_, entry) = hub
        .calendar_list()
        .get("primary")
        .clear_scopes()
        .add_scope(Scope::Full)
        .doit()
        .await
        .unwrap();
    assert_eq!(entry.id.as_deref(), Some("alice@example.com"));
    assert_eq!(env.emu().stats().count_status("oauth2.token", 200), 1);
    // The token is bound to alice.
    let reqs = env.emu().recent_requests();
    assert!(reqs.iter().any(|r| r.method == "calendar.calendarList.get"
        && r.user.as_deref() == Some("alice@example.com")));

    // A scope that was not delegated: unauthorized_client with Google's wording.
    let auth = ServiceAccountAuthenticator::builder(key.clone())
        .subject("alice@example.com")
        .build()
        .await
        .unwrap();
    let err = auth
        .token(&["https://www.googleapis.com/auth/drive"])
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), AuthErrorCode::UnauthorizedClient);
    assert!(
        err.to_string()
            .contains("Client is unauthorized to retrieve access tokens using this method"),
        "{err}"
    );
    // Every requested scope must be delegated.
    let err = auth
        .token(&[CAL, "https://www.googleapis.com/auth/drive"])
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), AuthErrorCode::UnauthorizedClient);

    // sub that is not a user of the domain.
    let auth = ServiceAccountAuthenticator::builder(key.clone())
        .subject("nobody@example.com")
        .build()
        .await
        .unwrap();
    let err = auth.token(&[CAL]).await.unwrap_err();
    assert_eq!(auth_code(&err), AuthErrorCode::InvalidGrant);

    // Removing the delegation (empty scope list) refuses further tokens.
    env.post(
        "/domain-wide-delegation",
        json!({"client_id": client_id, "scopes": []}),
    )
    .await;
    let auth = ServiceAccountAuthenticator::builder(key)
        .subject("alice@example.com")
        .build()
        .await
        .unwrap();
    assert_eq!(
        auth_code(&auth.token(&[CAL]).await.unwrap_err()),
        AuthErrorCode::UnauthorizedClient
    );
    env.finish().await;
}

#[tokio::test]
async fn jwt_signature_audience_and_lifetime_are_verified() {
    let env = Env::new().await;
    env.post("/users", json!({"email": "alice@example.com"}))
        .await;
    let (key, client_id) = service_account(&env).await;
    env.post(
        "/domain-wide-delegation",
        json!({"client_id": client_id, "scopes": [CAL]}),
    )
    .await;
    // A key the emulator did not issue (same email, another private key) fails the signature check.
    let (_, other) = env
        .post("/service-accounts", json!({"domain": "example.com"}))
        .await;
    let mut forged = key.clone();
    forged.private_key = other["private_key"].as_str().unwrap().to_string();
    let auth = ServiceAccountAuthenticator::builder(forged)
        .subject("alice@example.com")
        .build()
        .await
        .unwrap();
    let err = auth.token(&[CAL]).await.unwrap_err();
    assert_eq!(auth_code(&err), AuthErrorCode::InvalidGrant);
    assert!(err.to_string().contains("Invalid JWT Signature"), "{err}");
    // aud must equal the token_uri: posting the same JWT to another token URL path is refused.
    let mut wrong_aud = key.clone();
    wrong_aud.token_uri = format!("{}/token?x=1", env.base);
    let auth = ServiceAccountAuthenticator::builder(wrong_aud)
        .subject("alice@example.com")
        .build()
        .await
        .unwrap();
    assert_eq!(
        auth_code(&auth.token(&[CAL]).await.unwrap_err()),
        AuthErrorCode::InvalidGrant
    );
    // Clock skew: the emulated clock is two hours ahead of the JWT's iat/exp.
    env.emu().advance_clock(chrono::Duration::hours(2));
    let auth = ServiceAccountAuthenticator::builder(key)
        .subject("alice@example.com")
        .build()
        .await
        .unwrap();
    let err = auth.token(&[CAL]).await.unwrap_err();
    assert!(err.to_string().contains("short-lived"), "{err}");
    // Malformed assertions and unknown grant types.
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", "a.b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unsupported_grant_type");
    env.finish().await;
}

/// Consents in place of a browser: follows the authorization URL (with a login_hint) so the
/// 302 lands on yup-oauth2's redirect listener.
struct AutoConsent {
    login_hint: String,
}

impl InstalledFlowDelegate for AutoConsent {
    fn present_user_url<'a>(
        &'a self,
        url: &'a str,
        _need_code: bool,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let url = format!("{url}&login_hint={}", self.login_hint);
            let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("consent failed: {}", r.status()));
            }
            Ok(String::new())
        })
    }
}

#[tokio::test]
async fn authorization_code_and_refresh_through_yup_oauth2() {
    let env = Env::new().await;
    env.post("/users", json!({"email": "bob@example.com"}))
        .await;
    let (s, c) = env.post("/oauth-clients", json!({})).await;
    assert_eq!(s, 201);
    let secret = ApplicationSecret {
        client_id: c["client_id"].as_str().unwrap().into(),
        client_secret: c["client_secret"].as_str().unwrap().into(),
        token_uri: format!("{}/token", env.base),
        auth_uri: format!("{}/o/oauth2/auth", env.base),
        ..Default::default()
    };
    let auth = InstalledFlowAuthenticator::builder(secret, InstalledFlowReturnMethod::HTTPRedirect)
        .flow_delegate(Box::new(AutoConsent {
            login_hint: "bob@example.com".into(),
        }))
        .build()
        .await
        .unwrap();
    let tok = auth.token(&[CONTACTS]).await.unwrap();
    let token = tok.token().unwrap().to_string();
    let ppl = env.people(&token);
    let (_, groups) = ppl.contact_groups().list().doit().await.unwrap();
    assert!(groups
        .contact_groups
        .unwrap()
        .iter()
        .any(|g| g.resource_name.as_deref() == Some("contactGroups/myContacts")));
    // Refresh without a new consent.
    let refreshed = auth.force_refreshed_token(&[CONTACTS]).await.unwrap();
    assert_ne!(refreshed.token(), Some(token.as_str()));
    let stats = env.emu().stats();
    assert_eq!(stats.count("oauth2.authorize"), 1);
    assert_eq!(stats.count_status("oauth2.token", 200), 2);
    // The token carries only the consented scope: Calendar is 403 insufficientPermissions.
    let cal = env.calendar(refreshed.token().unwrap());
    let err = cal.events().list("primary").doit().await.unwrap_err();
    assert_eq!(reason(&err), (403, "insufficientPermissions".into()));
    env.finish().await;
}

#[tokio::test]
async fn code_exchange_refresh_and_revocation_on_the_wire() {
    let env = Env::new().await;
    env.post("/users", json!({"email": "carol@example.com"}))
        .await;
    let (_, c) = env.post("/oauth-clients", json!({})).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("{}/o/oauth2/auth", env.base))
        .query(&[
            ("client_id", id),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("response_type", "code"),
            ("scope", CAL),
            ("state", "xyz"),
            ("login_hint", "carol@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    let code = q["code"].clone();
    let token = |form: Vec<(&'static str, String)>| {
        let http = env.http.clone();
        let url = format!("{}/token", env.base);
        async move {
            let r = http.post(url).form(&form).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s, v) = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code.clone()),
        ("client_id", id.into()),
        ("client_secret", secret.into()),
        ("redirect_uri", "http://127.0.0.1:9/cb".into()),
    ])
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_i64().unwrap() > 3000);
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    let access = v["access_token"].as_str().unwrap().to_string();
    // A code is single-use; a wrong secret is invalid_client.
    let (s, v) = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("client_id", id.into()),
        ("client_secret", secret.into()),
        ("redirect_uri", "http://127.0.0.1:9/cb".into()),
    ])
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let (s, v) = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("client_id", id.into()),
        ("client_secret", "nope".into()),
    ])
    .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    let (s, v) = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("client_id", id.into()),
        ("client_secret", secret.into()),
    ])
    .await;
    assert_eq!(s, 200);
    assert!(v.get("refresh_token").is_none());
    // Revocation: refresh gives invalid_grant, outstanding access tokens 401.
    let (s, _) = env
        .post("/revoke", json!({"email": "carol@example.com"}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
        ("client_id", id.into()),
        ("client_secret", secret.into()),
    ])
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );
    let err = env
        .calendar(&access)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (401, "authError".into()));
    // Unknown client and unknown login_hint at the authorization endpoint.
    let r = no_redirect.get(format!("{}/o/oauth2/auth?client_id=zzz&response_type=code&scope=x&redirect_uri=http://127.0.0.1:9/", env.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = no_redirect
        .get(format!("{}/o/oauth2/auth", env.base))
        .query(&[
            ("client_id", id),
            ("redirect_uri", "http://127.0.0.1:9/"),
            ("response_type", "code"),
            ("scope", CAL),
            ("login_hint", "ghost@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    env.finish().await;
}

#[tokio::test]
async fn every_call_checks_token_expiry_and_scopes() {
    let env = Env::new().await;
    let full = env.user("dave@example.com").await;
    let ro = env
        .user_token(
            "dave@example.com",
            &["calendar.readonly", "contacts.readonly"],
        )
        .await;
    let owned = env
        .user_token("dave@example.com", &["calendar.events.owned"])
        .await;
    // Missing and unknown tokens: 401 in each API's envelope.
    let (s, v) = env
        .raw(
            reqwest::Method::GET,
            "/calendar/v3/calendars/primary/events",
            "",
            None,
            &[],
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["errors"][0]["reason"], "required");
    assert_eq!(v["error"]["message"], "Login Required.");
    let (s, v) = env
        .raw(reqwest::Method::GET, "/v1/contactGroups", "", None, &[])
        .await;
    assert_eq!(
        (s, v["error"]["details"][0]["reason"].as_str()),
        (401, Some("CREDENTIALS_MISSING"))
    );
    let err = env
        .calendar("bogus")
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (401, "authError".into()));
    let err = env
        .people("bogus")
        .contact_groups()
        .list()
        .doit()
        .await
        .unwrap_err();
    let (code, _, status) = people_reason(&err);
    assert_eq!((code, status.as_str()), (401, "UNAUTHENTICATED"));
    // Read-only scopes read but cannot write.
    env.calendar(&ro)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    env.people(&ro)
        .people()
        .connections_list("people/me")
        .person_fields(google_people1::FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap();
    let err = env
        .calendar(&ro)
        .events()
        .insert(Default::default(), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (403, "insufficientPermissions".into()));
    let err = env
        .people(&ro)
        .people()
        .create_contact(Default::default())
        .doit()
        .await
        .unwrap_err();
    let (code, r, status) = people_reason(&err);
    assert_eq!(
        (code, r.as_str(), status.as_str()),
        (403, "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "PERMISSION_DENIED")
    );
    // calendar.events.owned is accepted for events, not for People.
    env.calendar(&owned)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    let err = env
        .people(&owned)
        .contact_groups()
        .list()
        .doit()
        .await
        .unwrap_err();
    assert_eq!(people_reason(&err).0, 403);
    // Expiry on the emulated clock.
    env.emu().advance_clock(chrono::Duration::seconds(3600));
    let err = env
        .calendar(&full)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (401, "authError".into()));
    env.finish().await;
}

/// Builds a JWT-bearer assertion exactly as Google's Python `google-auth`
/// (`google.oauth2.service_account.Credentials` with `with_subject`) does: header
/// `{"alg":"RS256","typ":"JWT","kid":<private_key_id>}`, claims `iss`, `scope`, `aud`, `iat`,
/// `exp` (iat + 3600) and `sub`, base64url segments without padding, RS256 over
/// `header.claims`.
fn google_auth_assertion(
    key: &yup_oauth2::ServiceAccountKey,
    aud: Option<&str>,
    iat: i64,
) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key.private_key_id});
    let mut claims = json!({
        "iss": key.client_email,
        "scope": CAL,
        "iat": iat,
        "exp": iat + 3600,
        "sub": "alice@example.com",
    });
    if let Some(aud) = aud {
        claims["aud"] = json!(aud);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&key.private_key).unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private);
    let sig = signer.sign(signing_input.as_bytes()).to_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

async fn jwt_grant(env: &Env, assertion: &str) -> (u16, serde_json::Value) {
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn jwt_audiences_google_accepts() {
    let env = Env::new().await;
    env.post("/users", json!({"email": "alice@example.com"}))
        .await;
    let (key, client_id) = service_account(&env).await;
    env.post(
        "/domain-wide-delegation",
        json!({"client_id": client_id, "scopes": [CAL]}),
    )
    .await;
    let iat = env.emu().now().timestamp();

    // What google-auth (Python) and the Node client always send, whatever the key's token_uri.
    let (s, v) = jwt_grant(
        &env,
        &google_auth_assertion(&key, Some("https://oauth2.googleapis.com/token"), iat),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    let token = v["access_token"].as_str().unwrap().to_string();
    let (_, entry) = env
        .calendar(&token)
        .calendar_list()
        .get("primary")
        .clear_scopes()
        .add_scope(Scope::Full)
        .doit()
        .await
        .unwrap();
    assert_eq!(entry.id.as_deref(), Some("alice@example.com"));

    // The key's token_uri (what yup-oauth2 sends), the v4 URL and the legacy one.
    for aud in [
        key.token_uri.as_str(),
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    ] {
        let (s, v) = jwt_grant(&env, &google_auth_assertion(&key, Some(aud), iat)).await;
        assert_eq!(s, 200, "aud {aud}: {v}");
    }
    // Anything else (a look-alike, another host, none at all) fails the audience check.
    for aud in [
        Some("https://oauth2.googleapis.com/token/"),
        Some("http://oauth2.googleapis.com/token"),
        Some("https://example.com/token"),
        Some(""),
        None,
    ] {
        let (s, v) = jwt_grant(&env, &google_auth_assertion(&key, aud, iat)).await;
        assert_eq!(s, 400, "aud {aud:?}: {v}");
        assert_eq!(v["error"], "invalid_grant");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("Failed audience check"),
            "{v}"
        );
    }
    // The accepted audiences do not weaken the other checks: a stale iat still fails.
    let (s, v) = jwt_grant(
        &env,
        &google_auth_assertion(
            &key,
            Some("https://oauth2.googleapis.com/token"),
            iat - 7200,
        ),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("short-lived"));
    env.finish().await;
}

/// Google's Python client against the emulator (`tests/python/google_auth_jwt.py`). Optional:
/// runs only when `CRMSYNC_GOOGLE_AUTH_PYTHON` names a Python with `google-auth` and
/// `requests` installed (e.g. `python3 -m venv /tmp/gauth && /tmp/gauth/bin/pip install
/// google-auth requests`); skipped otherwise (CI has no such interpreter).
#[tokio::test]
async fn python_google_auth_gets_a_token() {
    let Ok(python) = std::env::var("CRMSYNC_GOOGLE_AUTH_PYTHON") else {
        eprintln!("skipped: set CRMSYNC_GOOGLE_AUTH_PYTHON to a python with google-auth");
        return;
    };
    let env = Env::new().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/google_auth_jwt.py"
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(python)
            .arg(script)
            .env("EMULATOR_URL", &env.base)
            .output(),
    )
    .await
    .expect("the script finishes within 2 minutes")
    .expect("python starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("ok: google-auth"), "{stdout}");
    env.finish().await;
}
