//! `crmsync-connectors`: everything that talks to Google. One [`GoogleAccount`] per synced
//! user gives a [`PeopleClient`] (contacts, contact groups) and a [`CalendarClient`] (events),
//! both over the official client crates (`google-people1`, `google-calendar3`) and
//! authenticated through `yup-oauth2` (domain-wide delegation) or a stored refresh token.
//!
//! Around every call: one fixed scope per API, `quotaUser` when configured, a client-side rate
//! limiter per account and API, truncated exponential backoff with full jitter that honours
//! `Retry-After` and never repeats a non-idempotent create whose outcome is unknown (see
//! [`retry`]), and error normalization into [`GoogleError`] / [`ErrorKind`]. [`GoogleEndpoints`]
//! points everything at Google or at the local emulator.
//!
//! The Google half of the mapping lives here too, beside the client crates that own the wire
//! types: [`contact_wire`] (a `Person` to and from the engine's canonical contact fields) and
//! [`event_wire`] (an `Event` to and from the canonical activity fields), so that
//! `crmsync-engine` stays free of I/O crates.
//!
//! ```no_run
//! # async fn demo(key: yup_oauth2::ServiceAccountKey) -> Result<(), crmsync_connectors::GoogleError> {
//! use crmsync_connectors::*;
//! let account = GoogleAccount::connect(
//!     &GoogleEndpoints::emulator("http://127.0.0.1:8089"),
//!     Credentials::ServiceAccount { key, subject: "alice@example.com".into() },
//!     ClientOptions { quota_user: Some("crm-user-42".into()), ..Default::default() },
//! )
//! .await?;
//! let page = account.people().list_connections(None, None, 1000).await?;
//! let group = account.people().ensure_group("CRM").await?;
//! # let _ = (page, group); Ok(()) }
//! ```

pub mod auth;
pub mod calendar;
pub mod contact_wire;
pub mod endpoints;
pub mod error;
pub mod event_wire;
mod http;
pub mod metrics;
pub mod oauth;
pub mod people;
pub mod rate_limit;
pub mod retry;

pub use auth::Credentials;
pub use calendar::{CalendarClient, Event, EventListQuery, EventsPage, InsertOutcome, SendUpdates};
pub use endpoints::GoogleEndpoints;
pub use error::{ErrorKind, GoogleError};
pub use metrics::CallMetrics;
pub use oauth::{ConsentingAccount, TokenGrant, IDENTITY_SCOPES};
pub use people::{
    BatchUpdateOutcome, ConnectionsPage, ContactGroup, ModifyMembersOutcome, PeopleClient, Person,
    PersonFailure,
};
pub use retry::RetryPolicy;

/// The client crates, for callers that need their other types (`Name`, `EventDateTime`, …).
pub use google_calendar3 as calendar3;
pub use google_people1 as people1;
pub use yup_oauth2;

use crate::auth::TokenProvider;
use crate::http::{Api, Caller};
use crate::metrics::MetricsRecorder;
use crate::rate_limit::RateLimiter;
use std::sync::Arc;
use std::time::Duration;

/// The one scope every Calendar call requests (events on all the user's calendars). With
/// domain-wide delegation, authorize exactly this and [`SCOPE_CONTACTS`].
pub const SCOPE_CALENDAR: &str = "https://www.googleapis.com/auth/calendar.events";
/// The one scope every People call requests (read/write contacts and contact groups).
pub const SCOPE_CONTACTS: &str = "https://www.googleapis.com/auth/contacts";
/// Both scopes, for consent URLs and Admin-console instructions.
pub const ALL_SCOPES: [&str; 2] = [SCOPE_CONTACTS, SCOPE_CALENDAR];

/// Google's default Calendar quota per user per minute.
pub const DEFAULT_CALENDAR_RATE_PER_MINUTE: u32 = 600;

/// How an account's clients behave.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Sent as `quotaUser` on every call (at most 40 characters; longer values are cut), so
    /// per-user quotas apply per CRM user under domain-wide delegation.
    pub quota_user: Option<String>,
    /// Retry and backoff policy.
    pub retry: RetryPolicy,
    /// Client-side Calendar rate per minute (`None` = [`DEFAULT_CALENDAR_RATE_PER_MINUTE`],
    /// `Some(0)` = unlimited).
    pub calendar_rate_per_minute: Option<u32>,
    /// Client-side People rate per minute (`None` or `Some(0)` = unlimited).
    pub people_rate_per_minute: Option<u32>,
    /// Notifications for sync-originated Calendar writes (default: none).
    pub send_updates: SendUpdates,
    /// Per-attempt time limit (token fetch, request and response).
    pub request_timeout: Duration,
    /// Who this account is, for logs and error messages (defaults to the service-account
    /// subject, else the quota user).
    pub user_label: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            quota_user: None,
            retry: RetryPolicy::default(),
            calendar_rate_per_minute: None,
            people_rate_per_minute: None,
            send_updates: SendUpdates::None,
            request_timeout: Duration::from_secs(60),
            user_label: None,
        }
    }
}

/// One Google user's connection: a People and a Calendar client sharing credentials, token
/// cache and metrics. Cheap to clone.
#[derive(Clone)]
pub struct GoogleAccount {
    people: PeopleClient,
    calendar: CalendarClient,
    metrics: Arc<MetricsRecorder>,
}

impl std::fmt::Debug for GoogleAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAccount")
            .field("metrics", &self.metrics.snapshot())
            .finish_non_exhaustive()
    }
}

impl GoogleAccount {
    /// Builds the clients. No request is made: credentials are checked on the first call
    /// (a malformed service-account key fails here, though).
    pub async fn connect(
        endpoints: &GoogleEndpoints,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, GoogleError> {
        let endpoints = endpoints.validated()?;
        let connector = http::connector()?;
        let user: Arc<str> = options
            .user_label
            .clone()
            .or_else(|| match &credentials {
                Credentials::ServiceAccount { subject, .. } => Some(subject.clone()),
                _ => None,
            })
            .or_else(|| options.quota_user.clone())
            .unwrap_or_else(|| "-".into())
            .into();
        let auth = TokenProvider::new(
            credentials,
            &endpoints.token_uri,
            &connector,
            options
                .user_label
                .clone()
                .or_else(|| Some(user.to_string()).filter(|u| u != "-")),
            options.request_timeout,
        )
        .await?;
        let quota_user = options
            .quota_user
            .as_deref()
            .map(|q| q.chars().take(40).collect::<String>())
            .filter(|q| !q.is_empty());
        let metrics = Arc::new(MetricsRecorder::default());
        let client = http::api_client(connector);
        let caller = |api, scope, rate: Option<u32>| Caller {
            api,
            scope,
            user: user.clone(),
            quota_user: quota_user.clone(),
            retry: options.retry.clone(),
            limiter: rate.and_then(RateLimiter::per_minute),
            metrics: metrics.clone(),
            auth: auth.clone(),
            timeout: options.request_timeout,
        };

        let mut people_hub = google_people1::PeopleService::new(client.clone(), auth.clone());
        people_hub.base_url(endpoints.people_base.clone());
        people_hub.root_url(endpoints.people_base.clone());
        let mut calendar_hub = google_calendar3::CalendarHub::new(client, auth.clone());
        calendar_hub.base_url(endpoints.calendar_base.clone());
        calendar_hub.root_url(calendar_root(&endpoints.calendar_base));

        let people = PeopleClient::new(
            people_hub,
            caller(Api::People, SCOPE_CONTACTS, options.people_rate_per_minute),
        );
        let calendar = CalendarClient::new(
            calendar_hub,
            caller(
                Api::Calendar,
                SCOPE_CALENDAR,
                Some(
                    options
                        .calendar_rate_per_minute
                        .unwrap_or(DEFAULT_CALENDAR_RATE_PER_MINUTE),
                ),
            ),
            options.send_updates,
            endpoints.calendar_base.clone(),
        );
        Ok(GoogleAccount {
            people,
            calendar,
            metrics,
        })
    }

    /// The People (contacts) client.
    pub fn people(&self) -> &PeopleClient {
        &self.people
    }

    /// The Calendar client.
    pub fn calendar(&self) -> &CalendarClient {
        &self.calendar
    }

    /// Counters since connect: calls, attempts, retries, rate-limit responses, backoff time.
    pub fn metrics(&self) -> CallMetrics {
        self.metrics.snapshot()
    }
}

/// `https://www.googleapis.com/calendar/v3/` → `https://www.googleapis.com/` (root_url is only
/// used for batch and media paths).
fn calendar_root(base: &str) -> String {
    base.strip_suffix("calendar/v3/")
        .map(str::to_string)
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_root_url() {
        assert_eq!(
            calendar_root("https://www.googleapis.com/calendar/v3/"),
            "https://www.googleapis.com/"
        );
        assert_eq!(calendar_root("http://h:1/x/"), "http://h:1/x/");
    }

    #[tokio::test]
    async fn connect_builds_without_network() {
        let account = GoogleAccount::connect(
            &GoogleEndpoints::emulator("http://127.0.0.1:9"),
            Credentials::AccessToken("t".into()),
            ClientOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(account.metrics(), CallMetrics::default());
    }

    #[tokio::test]
    async fn unreachable_server_is_transient_after_retries() {
        let account = GoogleAccount::connect(
            &GoogleEndpoints::emulator("http://127.0.0.1:9"),
            Credentials::AccessToken("t".into()),
            ClientOptions {
                retry: RetryPolicy::fast(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let err = account
            .calendar()
            .get_event("primary", "abcde12345")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient, "{err}");
        assert_eq!(err.attempts, 3);
        let m = account.metrics();
        assert_eq!((m.calls, m.retries, m.failures), (1, 2, 1));
    }

    #[tokio::test]
    async fn create_never_sent_is_retried_not_indeterminate() {
        // Connection refused: nothing reached the server, so even a create may be retried and
        // the final error is Transient, not Indeterminate.
        let account = GoogleAccount::connect(
            &GoogleEndpoints::emulator("http://127.0.0.1:9"),
            Credentials::AccessToken("t".into()),
            ClientOptions {
                retry: RetryPolicy::fast(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let err = account
            .people()
            .create_contact(Person::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient, "{err}");
        assert_eq!(err.attempts, 2);
    }

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send() {
        // The executor spawns these; they must be Send.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let account = GoogleAccount::connect(
                &GoogleEndpoints::emulator("http://127.0.0.1:9"),
                Credentials::AccessToken("t".into()),
                ClientOptions::default(),
            )
            .await
            .unwrap();
            let q = EventListQuery::primary();
            assert_send(&account.calendar().list_events(&q, None, None));
            assert_send(&account.calendar().insert_event("primary", Event::default()));
            assert_send(&account.calendar().patch_event_if_match(
                "primary",
                "abcde",
                Event::default(),
                "\"1\"",
            ));
            assert_send(
                &account
                    .calendar()
                    .delete_event_if_match("primary", "abcde", "\"1\""),
            );
            assert_send(&account.people().batch_update(vec![], "names"));
            assert_send(&account.people().list_connections(None, None, 10));
            assert_send(&account.people().modify_members("contactGroups/x", &[], &[]));
        });
    }
}
