//! Service accounts with and without delegated scopes, per-user OAuth code exchange and
//! refresh, token refresh after a 401, revoked grants.

use crate::common::{fast, Env};
use crmsync_connectors::{
    oauth, ClientOptions, Credentials, ErrorKind, EventListQuery, GoogleAccount, SCOPE_CALENDAR,
    SCOPE_CONTACTS,
};

#[tokio::test]
async fn service_account_with_delegation_lists_both_apis_and_caches_tokens() {
    let env = Env::new().await;
    env.emu().create_user("alice@example.com").unwrap();
    let (mut key, client_id) = env.service_account();
    env.emu()
        .authorize_delegation(&client_id, &[SCOPE_CONTACTS.into(), SCOPE_CALENDAR.into()]);
    // The key's own token_uri is ignored in favour of the configured endpoint.
    key.token_uri = "https://oauth2.googleapis.com/token".into();
    let account = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::ServiceAccount {
            key,
            subject: "alice@example.com".into(),
        },
        fast(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        account
            .people()
            .list_connections(None, None, 100)
            .await
            .unwrap();
        account
            .calendar()
            .list_events(&EventListQuery::primary(), None, None)
            .await
            .unwrap();
    }
    // One token per API scope, then cached.
    assert_eq!(env.count("oauth2.token"), 2);
    let users: Vec<_> = env
        .emu()
        .recent_requests()
        .into_iter()
        .filter(|r| r.method != "oauth2.token")
        .map(|r| r.user)
        .collect();
    assert!(
        users
            .iter()
            .all(|u| u.as_deref() == Some("alice@example.com")),
        "{users:?}"
    );
}

#[tokio::test]
async fn service_account_without_calendar_delegation_is_an_auth_error_with_googles_message() {
    let env = Env::new().await;
    env.emu().create_user("bob@example.com").unwrap();
    let (key, client_id) = env.service_account();
    env.emu()
        .authorize_delegation(&client_id, &[SCOPE_CONTACTS.into()]);
    let account = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::ServiceAccount {
            key,
            subject: "bob@example.com".into(),
        },
        fast(),
    )
    .await
    .unwrap();
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    let err = account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert_eq!(err.reason.as_deref(), Some("unauthorized_client"));
    assert!(
        err.message
            .contains("Client is unauthorized to retrieve access tokens"),
        "{err}"
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with("Google refused the service account for bob@example.com"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "authorize client id {client_id} for scopes {SCOPE_CALENDAR}"
        )),
        "{shown}"
    );
    // Not retried: an authorization problem does not heal by itself.
    assert_eq!(account.metrics().retries, 0);
    assert_eq!(env.emu().stats().count("calendar.events.list"), 0);
}

#[tokio::test]
async fn service_account_for_unknown_user_is_invalid_grant() {
    let env = Env::new().await;
    let (key, client_id) = env.service_account();
    env.emu()
        .authorize_delegation(&client_id, &[SCOPE_CONTACTS.into(), SCOPE_CALENDAR.into()]);
    let account = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::ServiceAccount {
            key,
            subject: "ghost@example.com".into(),
        },
        fast(),
    )
    .await
    .unwrap();
    let err = account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.reason.as_deref(), Some("invalid_grant"));
    assert!(
        err.to_string()
            .contains("ghost@example.com is an active user"),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_service_account_key_fails_at_connect() {
    let env = Env::new().await;
    let (mut key, _) = env.service_account();
    key.private_key = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".into();
    let err = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::ServiceAccount {
            key,
            subject: "a@example.com".into(),
        },
        fast(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
}

/// Runs the consent redirect of the emulator and returns the code.
async fn consent(env: &Env, client_id: &str, user: &str) -> String {
    let redirect = "http://127.0.0.1:1/oauth/callback";
    let url = oauth::authorization_url(
        &env.endpoints(),
        client_id,
        redirect,
        "state-123",
        Some(user),
        &[SCOPE_CONTACTS, SCOPE_CALENDAR],
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert!(
        resp.status().is_redirection(),
        "{} for {url}",
        resp.status()
    );
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let loc = url::Url::parse(&location).unwrap();
    assert!(location.starts_with(redirect), "{location}");
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "state-123");
    q["code"].clone()
}

#[tokio::test]
async fn per_user_oauth_code_exchange_refresh_and_401_recovery() {
    let env = Env::new().await;
    env.emu().create_user("carol@example.com").unwrap();
    let (client_id, secret) = env.emu().create_oauth_client();
    let code = consent(&env, &client_id, "carol@example.com").await;
    let grant = oauth::exchange_code(
        &env.endpoints(),
        &client_id,
        &secret,
        &code,
        "http://127.0.0.1:1/oauth/callback",
    )
    .await
    .unwrap();
    assert!(!grant.refresh_token.is_empty());
    assert!(!grant.access_token.is_empty());
    // A code is single-use.
    let again = oauth::exchange_code(
        &env.endpoints(),
        &client_id,
        &secret,
        &code,
        "http://127.0.0.1:1/oauth/callback",
    )
    .await
    .unwrap_err();
    assert_eq!(again.kind, ErrorKind::Auth, "{again}");
    assert_eq!(again.reason.as_deref(), Some("invalid_grant"));

    let account = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::OAuthRefresh {
            client_id: client_id.clone(),
            client_secret: secret.clone(),
            refresh_token: grant.refresh_token.clone(),
        },
        ClientOptions {
            user_label: Some("carol@example.com".into()),
            ..fast()
        },
    )
    .await
    .unwrap();
    let tokens_before = env.count("oauth2.token");
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap();
    // One refresh serves both APIs (the token carries every consented scope).
    assert_eq!(env.count("oauth2.token"), tokens_before + 1);

    // The emulator's clock passes the access token's expiry: the API answers 401, the
    // connector refreshes once and the call succeeds.
    env.emu().advance_clock(chrono::Duration::hours(2));
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    assert_eq!(env.count("oauth2.token"), tokens_before + 2);
    assert_eq!(
        env.emu()
            .stats()
            .count_status("people.people.connections.list", 401),
        1
    );

    // Revoked: the 401 leads to a refresh, which fails with invalid_grant.
    env.emu().revoke("carol@example.com");
    let err = account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert_eq!(err.reason.as_deref(), Some("invalid_grant"));
    let shown = err.to_string();
    assert!(
        shown.contains("Token has been expired or revoked") || shown.contains("invalid_grant"),
        "{shown}"
    );
    assert!(
        shown.contains("carol@example.com must connect the Google account again"),
        "{shown}"
    );
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let env = Env::new().await;
    env.emu().create_user("dan@example.com").unwrap();
    let (client_id, secret) = env.emu().create_oauth_client();
    let code = consent(&env, &client_id, "dan@example.com").await;
    let grant = oauth::exchange_code(
        &env.endpoints(),
        &client_id,
        &secret,
        &code,
        "http://127.0.0.1:1/oauth/callback",
    )
    .await
    .unwrap();
    let account = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::OAuthRefresh {
            client_id: client_id.clone(),
            client_secret: "wrong".into(),
            refresh_token: grant.refresh_token,
        },
        fast(),
    )
    .await
    .unwrap();
    let err = account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.reason.as_deref(), Some("invalid_client"));
    assert!(err.to_string().contains(&client_id), "{err}");
}

#[tokio::test]
async fn fixed_token_401_is_auth_without_refresh() {
    let env = Env::new().await;
    let account = env.account("erin@example.com").await;
    env.emu().revoke("erin@example.com");
    let err = account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.status, Some(401));
    assert_eq!(account.metrics().retries, 0);
}

#[tokio::test]
async fn service_account_token_refused_with_401_is_fetched_again() {
    let env = Env::new().await;
    env.emu().create_user("gus@example.com").unwrap();
    let (key, client_id) = env.service_account();
    env.emu()
        .authorize_delegation(&client_id, &[SCOPE_CONTACTS.into(), SCOPE_CALENDAR.into()]);
    let account = GoogleAccount::connect(
        &env.endpoints(),
        Credentials::ServiceAccount {
            key,
            subject: "gus@example.com".into(),
        },
        fast(),
    )
    .await
    .unwrap();
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap();
    assert_eq!(env.count("oauth2.token"), 2);
    // The issued access tokens stop working; delegation still holds.
    env.emu().revoke("gus@example.com");
    account
        .people()
        .list_connections(None, None, 10)
        .await
        .unwrap();
    assert_eq!(env.count("oauth2.token"), 3);
    assert_eq!(
        env.emu()
            .stats()
            .count_status("people.people.connections.list", 401),
        1
    );
    // The calendar token is refreshed on its own 401, independently.
    account
        .calendar()
        .list_events(&EventListQuery::primary(), None, None)
        .await
        .unwrap();
    assert_eq!(env.count("oauth2.token"), 4);
}
