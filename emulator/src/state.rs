//! The shared in-memory state and the [`Emulator`] handle: users (each with a primary
//! calendar, contacts and quota counters behind their own locks), credentials, faults,
//! quotas, the clock and observability. Every control-plane route has an in-process
//! equivalent here.

use chrono::Duration;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::auth::{scope_url, AuthState, Grant};
use crate::calendar::store::CalendarStore;
use crate::clock::Clock;
use crate::errors::{Api, EmulatorError};
use crate::faults::{FaultRule, Faults};
use crate::people::store::PeopleStore;
use crate::quotas::{QuotaCounters, Quotas};
use crate::stats::{Observability, RecordedResponse, RequestRecord, Stats, WriteRecord};
use std::sync::Arc as StdArc;

/// One emulated Workspace user.
#[derive(Debug)]
pub struct UserState {
    pub email: String,
    pub calendar: Mutex<CalendarStore>,
    pub people: Mutex<PeopleStore>,
}

impl UserState {
    fn new(email: &str) -> Self {
        UserState {
            email: email.to_string(),
            calendar: Mutex::new(CalendarStore::new(email)),
            people: Mutex::new(PeopleStore::new()),
        }
    }

    pub fn calendar(&self) -> MutexGuard<'_, CalendarStore> {
        self.calendar.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn people(&self) -> MutexGuard<'_, PeopleStore> {
        self.people.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything behind the [`Emulator`] handle.
#[derive(Debug, Default)]
pub struct Inner {
    pub clock: Clock,
    pub auth: AuthState,
    pub faults: Faults,
    pub quotas: RwLock<Quotas>,
    /// Quota windows per quota key (`u:<user>`, `sa:<client id>`, `q:<quotaUser>`).
    pub quota_buckets: RwLock<HashMap<String, StdArc<QuotaCounters>>>,
    pub obs: Observability,
    pub users: RwLock<HashMap<String, Arc<UserState>>>,
    /// People propagation delay for sync results, in seconds.
    pub propagation_delay: AtomicU64,
    /// The base URL the server was started on (for service-account keys).
    pub base_url: RwLock<String>,
}

/// A cheap, cloneable handle over the emulator's state.
#[derive(Debug, Clone, Default)]
pub struct Emulator {
    pub(crate) inner: Arc<Inner>,
}

fn valid_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(d), None)
        if !a.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c == '/' || c == '#' || c == '?'))
}

impl Emulator {
    pub fn new() -> Self {
        Emulator::default()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Empties everything (users, data, credentials, faults, quotas, stats, clock offset).
    pub fn reset(&self) {
        let i = &self.inner;
        i.users.write().unwrap_or_else(|p| p.into_inner()).clear();
        i.auth.reset();
        i.faults.clear();
        i.quota_buckets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *i.quotas.write().unwrap_or_else(|p| p.into_inner()) = Quotas::default();
        i.obs.reset();
        i.propagation_delay.store(0, Ordering::Relaxed);
        i.clock.reset();
        tracing::info!("emulator reset");
    }

    /// Creates a Workspace user with an empty primary calendar and contacts (idempotent).
    pub fn create_user(&self, email: &str) -> Result<(), EmulatorError> {
        let email = email.trim().to_ascii_lowercase();
        if !valid_email(&email) {
            return Err(EmulatorError::InvalidEmail(email));
        }
        let mut users = self.inner.users.write().unwrap_or_else(|p| p.into_inner());
        users
            .entry(email.clone())
            .or_insert_with(|| Arc::new(UserState::new(&email)));
        tracing::info!(%email, "user created");
        Ok(())
    }

    /// The emails of all users.
    pub fn users(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub(crate) fn user(&self, email: &str) -> Option<Arc<UserState>> {
        self.inner
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&email.to_ascii_lowercase())
            .cloned()
    }

    pub fn user_exists(&self, email: &str) -> bool {
        self.user(email).is_some()
    }

    /// The base URL in use (set by [`crate::EmulatorServer`]).
    pub fn base_url(&self) -> String {
        self.inner
            .base_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_base_url(&self, url: &str) {
        *self
            .inner
            .base_url
            .write()
            .unwrap_or_else(|p| p.into_inner()) = url.to_string();
    }

    /// Creates a service account; returns its key JSON with `token_uri = {base_url}/token`.
    /// Returns `Value::Null` only if key generation fails (it does not in practice).
    pub fn create_service_account(&self, domain: &str, base_url: &str) -> Value {
        self.try_create_service_account(domain, base_url)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "service account creation failed");
                Value::Null
            })
    }

    pub fn try_create_service_account(
        &self,
        domain: &str,
        base_url: &str,
    ) -> Result<Value, EmulatorError> {
        self.inner.auth.create_service_account(domain, base_url)
    }

    /// Authorizes (replaces) the scopes of `client_id` for domain-wide delegation, like the
    /// Admin console. Short scope names (`calendar`) are expanded to full URLs.
    pub fn authorize_delegation(&self, client_id: &str, scopes: &[String]) {
        let scopes: Vec<String> = scopes.iter().map(|s| scope_url(s)).collect();
        self.inner.auth.authorize_delegation(client_id, &scopes);
    }

    /// Creates an OAuth client: `(client_id, client_secret)`.
    pub fn create_oauth_client(&self) -> (String, String) {
        self.inner.auth.create_client()
    }

    /// Mints an access token for `email` with `scopes` (short names allowed).
    pub fn mint_access_token(
        &self,
        email: &str,
        scopes: &[String],
    ) -> Result<String, EmulatorError> {
        if !self.user_exists(email) {
            return Err(EmulatorError::UnknownUser(email.to_string()));
        }
        let scopes: Vec<String> = scopes.iter().map(|s| scope_url(s)).collect();
        Ok(self
            .inner
            .auth
            .issue(email, &scopes, Grant::Minted, self.inner.clock.now()))
    }

    /// Revokes the user's grants: refresh tokens give `invalid_grant`, access tokens 401.
    pub fn revoke(&self, email: &str) {
        self.inner.auth.revoke(email);
    }

    /// Invalidates every sync token (and page token) of the user for `api`.
    pub fn expire_sync_tokens(&self, email: &str, api: Api) {
        if let Some(u) = self.user(email) {
            match api {
                Api::Calendar => u.calendar().expire_tokens(),
                Api::People => u.people().expire_tokens(),
            }
            tracing::info!(%email, api = api.as_str(), "sync tokens expired");
        }
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        tracing::info!(count = rules.len(), "fault rules set");
        self.inner.faults.set(rules);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.clear();
    }

    pub fn faults(&self) -> Vec<FaultRule> {
        self.inner.faults.list()
    }

    pub fn set_quotas(&self, q: Quotas) {
        self.inner
            .quota_buckets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.inner.quotas.write().unwrap_or_else(|p| p.into_inner()) = q;
    }

    pub fn quotas(&self) -> Quotas {
        self.inner
            .quotas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_people_propagation_delay(&self, seconds: u64) {
        self.inner
            .propagation_delay
            .store(seconds, Ordering::Relaxed);
    }

    /// Moves the emulated clock forward.
    pub fn advance_clock(&self, d: Duration) {
        self.inner.clock.advance(d);
    }

    /// The emulated now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    pub fn stats(&self) -> Stats {
        self.inner.obs.stats()
    }

    pub fn recent_requests(&self) -> Vec<RequestRecord> {
        self.inner.obs.recent_requests()
    }

    /// Calendar writes with the `sendUpdates` each asked for (bounded log).
    pub fn calendar_writes(&self) -> Vec<WriteRecord> {
        self.inner.obs.writes()
    }

    /// Starts or stops recording every JSON response body (for schema checks).
    pub fn set_response_recording(&self, on: bool) {
        self.inner.obs.set_recording(on);
    }

    pub fn recorded_responses(&self) -> Vec<RecordedResponse> {
        self.inner.obs.recorded_responses()
    }

    /// Every event stored in the user's primary calendar (including cancelled ones), as
    /// `events.get` would return them.
    pub fn calendar_events(&self, email: &str) -> Vec<Value> {
        self.user(email)
            .map(|u| u.calendar().all_events())
            .unwrap_or_default()
    }

    /// One event of the user's primary calendar as `events.get` would return it.
    /// The ids of the live watch channels on a user's calendar (for tests).
    pub fn calendar_channels(&self, email: &str) -> Vec<String> {
        let now_ms = self.now().timestamp_millis();
        self.user(email)
            .map(|u| {
                u.calendar()
                    .channels
                    .iter()
                    .filter(|(_, c)| c.expiration_ms > now_ms)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn calendar_event(&self, email: &str, id: &str) -> Option<Value> {
        self.user(email).and_then(|u| u.calendar().event_json(id))
    }

    /// "This and following" on a recurring series of `user`'s calendar, as Google Calendar's UI
    /// does it: the series of `instance_id` (`<master>_<start>`) ends with `UNTIL` just before
    /// that instance (its exceptions from there on are cancelled), and a new series
    /// `<master>_R<local start>` starts there with the master's fields and `changes` (a partial
    /// Event, e.g. new `start`/`end`, `summary` or `recurrence`) merged in. Returns the old and
    /// the new master as `events.get` would.
    pub fn split_series(
        &self,
        user: &str,
        instance_id: &str,
        changes: Value,
    ) -> Result<(Value, Value), EmulatorError> {
        let u = self
            .user(user)
            .ok_or_else(|| EmulatorError::UnknownUser(user.to_string()))?;
        let changes = match changes {
            Value::Null => serde_json::Map::new(),
            Value::Object(m) => m,
            _ => {
                return Err(EmulatorError::BadRequest(
                    "changes must be a JSON object (a partial Event)".into(),
                ))
            }
        };
        crate::calendar::split_series(self, &u, instance_id, changes)
    }

    /// Every live contact of the user, with all fields.
    pub fn contacts(&self, email: &str) -> Vec<Value> {
        self.user(email)
            .map(|u| u.people().all_contacts())
            .unwrap_or_default()
    }

    /// Merges contacts of `user` as Google Contacts' "Merge" does: `survivor` (`people/c…`)
    /// keeps its resource name and takes the union of the fields and group memberships of
    /// `merged`, which are deleted and listed in the survivor's
    /// `metadata.previousResourceNames`. Returns the survivor with all fields.
    pub fn merge_contacts<S: AsRef<str>>(
        &self,
        user: &str,
        survivor: &str,
        merged: &[S],
    ) -> Result<Value, EmulatorError> {
        let u = self
            .user(user)
            .ok_or_else(|| EmulatorError::UnknownUser(user.to_string()))?;
        let merged: Vec<String> = merged.iter().map(|m| m.as_ref().to_string()).collect();
        let delay = self.propagation_delay();
        let now = self.now();
        let result =
            crate::people::merge::merge_contacts(&mut u.people(), survivor, &merged, now, delay);
        match result {
            Ok(p) => {
                tracing::info!(%user, survivor, merged = ?merged, "contacts merged");
                Ok(p)
            }
            Err(crate::people::merge::MergeError::NotFound(m)) => Err(EmulatorError::NotFound(m)),
            Err(crate::people::merge::MergeError::Invalid(m)) => Err(EmulatorError::BadRequest(m)),
        }
    }

    /// The user's contact groups (system and user groups), with member counts.
    pub fn contact_groups(&self, email: &str) -> Vec<Value> {
        self.user(email)
            .map(|u| u.people().all_groups())
            .unwrap_or_default()
    }

    /// The quota window counters of `key`.
    pub(crate) fn quota_bucket(&self, key: &str) -> StdArc<QuotaCounters> {
        if let Some(b) = self
            .inner
            .quota_buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return b.clone();
        }
        self.inner
            .quota_buckets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn propagation_delay(&self) -> Duration {
        Duration::seconds(self.inner.propagation_delay.load(Ordering::Relaxed) as i64)
    }
}
