//! Calendar API v3 client for one user's calendars, over `google-calendar3`: event listing
//! with sync tokens, get, insert with client-chosen ids, patch, update and delete, and the
//! conditional (`If-Match`) patch, update and delete the crate cannot send by itself.
//!
//! Writes may run concurrently (the per-account rate limiter spaces them at the quota). Inserts
//! carry a client-chosen id, so they are retried like idempotent calls: a 409 answer means the
//! event already exists ([`InsertOutcome::AlreadyExists`]). Sync-originated writes send
//! `sendUpdates` from [`ClientOptions::send_updates`](crate::ClientOptions) (default `none`).
//! Every call uses the one fixed scope [`SCOPE_CALENDAR`](crate::SCOPE_CALENDAR).

use crate::error::{ErrorKind, GoogleError};
use crate::http::{prepare, raw_request, Caller, Connector, RawRequest};
use crate::retry::Idempotency;
use chrono::{DateTime, Utc};
use google_calendar3::CalendarHub;
use std::sync::Arc;

pub use google_calendar3::api::{Channel, Event};

/// Who Google notifies about a sync-originated change (`sendUpdates`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SendUpdates {
    /// Notify all guests.
    All,
    /// Notify only guests outside the domain.
    ExternalOnly,
    /// Notify nobody (the default: no invitation storms from a sync).
    #[default]
    None,
}

impl SendUpdates {
    /// The wire value: `all`, `externalOnly` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            SendUpdates::All => "all",
            SendUpdates::ExternalOnly => "externalOnly",
            SendUpdates::None => "none",
        }
    }
}

/// The parameters of an event listing that must stay identical between the full sync and the
/// incremental syncs that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventListQuery {
    /// Calendar id (`primary` or an address).
    pub calendar_id: String,
    /// Lower bound (exclusive) on event *end*; full syncs only.
    pub time_min: Option<DateTime<Utc>>,
    /// Upper bound (exclusive) on event *start*; full syncs only.
    pub time_max: Option<DateTime<Utc>>,
    /// Expand recurring events into instances.
    pub single_events: bool,
    /// Include cancelled events in full listings (incremental listings always include them).
    pub show_deleted: bool,
    /// Page size, at most 2500 (Google's default is 250).
    pub max_results: Option<i32>,
}

impl EventListQuery {
    /// The user's primary calendar, instances expanded, 2500 per page.
    pub fn primary() -> Self {
        EventListQuery {
            calendar_id: "primary".into(),
            time_min: None,
            time_max: None,
            single_events: true,
            show_deleted: false,
            max_results: Some(CalendarClient::MAX_PAGE_SIZE),
        }
    }

    /// The query parameters actually sent. With a sync token the filters Google refuses with
    /// one (`timeMin`, `timeMax`, …) are left out while `singleEvents`, `showDeleted` and
    /// `maxResults` stay identical; defaults (`false`) are not sent at all.
    pub(crate) fn params(&self, sync_token: Option<&str>, page_token: Option<&str>) -> ListParams {
        let full = sync_token.is_none();
        ListParams {
            sync_token: sync_token.map(str::to_string),
            page_token: page_token.map(str::to_string),
            time_min: self.time_min.filter(|_| full),
            time_max: self.time_max.filter(|_| full),
            single_events: self.single_events.then_some(true),
            show_deleted: self.show_deleted.then_some(true),
            max_results: self
                .max_results
                .map(|m| m.clamp(1, CalendarClient::MAX_PAGE_SIZE)),
        }
    }
}

/// The parameters of one `events.list` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListParams {
    pub sync_token: Option<String>,
    pub page_token: Option<String>,
    pub time_min: Option<DateTime<Utc>>,
    pub time_max: Option<DateTime<Utc>>,
    pub single_events: Option<bool>,
    pub show_deleted: Option<bool>,
    pub max_results: Option<i32>,
}

/// One page of `events.list`.
#[derive(Clone, Debug, Default)]
pub struct EventsPage {
    /// Events on this page; cancelled ones (`status: "cancelled"`) are deletions.
    pub events: Vec<Event>,
    /// Present when more pages follow.
    pub next_page_token: Option<String>,
    /// Present on the last page only; store it after everything it covers is committed.
    pub next_sync_token: Option<String>,
    /// The calendar's time zone.
    pub time_zone: Option<String>,
}

/// Result of [`CalendarClient::insert_event`].
#[derive(Clone, Debug)]
pub enum InsertOutcome {
    /// The event was created; Google's copy (etag, htmlLink, iCalUID …).
    Created(Box<Event>),
    /// An event with this id already exists (a retried or repeated insert): read or patch it.
    AlreadyExists { id: String },
}

/// The Calendar client of one account. Cheap to clone; methods may run concurrently.
#[derive(Clone)]
pub struct CalendarClient {
    inner: Arc<CalendarInner>,
}

struct CalendarInner {
    hub: CalendarHub<Connector>,
    caller: Caller,
    send_updates: SendUpdates,
    /// The Calendar base URL (ends with `/`), for the requests built here (conditional writes).
    base_url: String,
}

impl CalendarClient {
    /// Maximum `maxResults` of `events.list`.
    pub const MAX_PAGE_SIZE: i32 = 2500;

    pub(crate) fn new(
        hub: CalendarHub<Connector>,
        caller: Caller,
        send_updates: SendUpdates,
        base_url: String,
    ) -> Self {
        CalendarClient {
            inner: Arc::new(CalendarInner {
                hub,
                caller,
                send_updates,
                base_url,
            }),
        }
    }

    /// One page of events. Without `sync_token` this is (a page of) a full listing bounded by
    /// `time_min`/`time_max`; with it, only changes since then, cancelled events included.
    /// Pass the same `q` for every page and every incremental listing. An invalid token fails
    /// with [`ErrorKind::SyncTokenExpired`] (any 410 on a sync-token request): clear it and
    /// list again without it.
    pub async fn list_events(
        &self,
        q: &EventListQuery,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<EventsPage, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let params = q.params(sync_token, page_token);
        let calendar = encode_path_segment(&q.calendar_id);
        let (params, calendar) = (&params, calendar.as_str());
        let result = caller
            .run(
                "calendar.events.list",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    let mut call = prepare!(hub.events().list(calendar), &mut dlg, caller);
                    if let Some(t) = &params.sync_token {
                        call = call.sync_token(t);
                    }
                    if let Some(t) = &params.page_token {
                        call = call.page_token(t);
                    }
                    if let Some(t) = params.time_min {
                        call = call.time_min(t);
                    }
                    if let Some(t) = params.time_max {
                        call = call.time_max(t);
                    }
                    if let Some(v) = params.single_events {
                        call = call.single_events(v);
                    }
                    if let Some(v) = params.show_deleted {
                        call = call.show_deleted(v);
                    }
                    if let Some(m) = params.max_results {
                        call = call.max_results(m);
                    }
                    call.doit().await
                },
            )
            .await;
        match result {
            Ok(page) => Ok(EventsPage {
                events: page.items.unwrap_or_default(),
                next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
                next_sync_token: page.next_sync_token.filter(|t| !t.is_empty()),
                time_zone: page.time_zone,
            }),
            Err(mut e) if e.kind == ErrorKind::Gone && sync_token.is_some() => {
                e.kind = ErrorKind::SyncTokenExpired;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// One page (up to 2500) of the instances of recurring event `event_id`
    /// (`events.instances`) overlapping [`time_min`, `time_max`): its occurrences and its
    /// exceptions, moved ones included wherever they were moved to inside the range, cancelled
    /// ones left out. `None` when Google has no such event (404) or it was deleted (410): then
    /// the series has no instances. A non-recurring event has none either (an empty page).
    pub async fn list_instances(
        &self,
        calendar: &str,
        event_id: &str,
        time_min: DateTime<Utc>,
        time_max: DateTime<Utc>,
        page_token: Option<&str>,
    ) -> Result<Option<EventsPage>, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let (calendar, id) = (encode_path_segment(calendar), encode_path_segment(event_id));
        let (calendar, id) = (calendar.as_str(), id.as_str());
        let result = caller
            .run(
                "calendar.events.instances",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    let mut call = prepare!(hub.events().instances(calendar, id), &mut dlg, caller)
                        .time_min(time_min)
                        .time_max(time_max)
                        .max_results(CalendarClient::MAX_PAGE_SIZE);
                    if let Some(t) = page_token {
                        call = call.page_token(t);
                    }
                    call.doit().await
                },
            )
            .await;
        match result {
            Ok(page) => Ok(Some(EventsPage {
                events: page.items.unwrap_or_default(),
                next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
                next_sync_token: None,
                time_zone: page.time_zone,
            })),
            Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::Gone => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One event (cancelled ones included, as Google returns them); `None` when unknown.
    pub async fn get_event(&self, calendar: &str, id: &str) -> Result<Option<Event>, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let (calendar, id) = (encode_path_segment(calendar), encode_path_segment(id));
        let (calendar, id) = (calendar.as_str(), id.as_str());
        let result = caller
            .run(
                "calendar.events.get",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    prepare!(hub.events().get(calendar, id), &mut dlg, caller)
                        .doit()
                        .await
                },
            )
            .await;
        match result {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Inserts `event`, normally with a client-chosen `id` (base32hex `[a-v0-9]`, 5–1024
    /// characters) so that retries are safe: a 409 answer (first attempt or retry) means the
    /// event exists, [`InsertOutcome::AlreadyExists`]. Without an id the insert is not
    /// idempotent and a lost response yields [`ErrorKind::Indeterminate`].
    pub async fn insert_event(
        &self,
        calendar: &str,
        event: Event,
    ) -> Result<InsertOutcome, GoogleError> {
        const METHOD: &str = "calendar.events.insert";
        let idempotency = match event.id.as_deref() {
            Some(id) => {
                validate_event_id(id)
                    .map_err(|m| GoogleError::local(ErrorKind::BadRequest, METHOD, m))?;
                Idempotency::Idempotent
            }
            None => Idempotency::NonIdempotent,
        };
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let send_updates = self.inner.send_updates.as_str();
        let calendar = encode_path_segment(calendar);
        let (calendar, event_ref) = (calendar.as_str(), &event);
        let result = caller
            .run(METHOD, idempotency, |mut dlg| async move {
                prepare!(
                    hub.events().insert(event_ref.clone(), calendar),
                    &mut dlg,
                    caller
                )
                .send_updates(send_updates)
                .doit()
                .await
            })
            .await;
        match (result, event.id) {
            (Ok(created), _) => Ok(InsertOutcome::Created(Box::new(created))),
            (Err(e), Some(id)) if e.kind == ErrorKind::Duplicate => {
                Ok(InsertOutcome::AlreadyExists { id })
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Patches event `id` with the fields set in `patch` (patch semantics: fields left `None`
    /// are kept, arrays given replace whole arrays). JSON nulls cannot be sent through the
    /// client crate, so a field cannot be cleared this way.
    pub async fn patch_event(
        &self,
        calendar: &str,
        id: &str,
        patch: Event,
    ) -> Result<Event, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let send_updates = self.inner.send_updates.as_str();
        let (calendar, id) = (encode_path_segment(calendar), encode_path_segment(id));
        let (calendar, id, patch) = (calendar.as_str(), id.as_str(), &patch);
        caller
            .run(
                "calendar.events.patch",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    prepare!(
                        hub.events().patch(patch.clone(), calendar, id),
                        &mut dlg,
                        caller
                    )
                    .send_updates(send_updates)
                    .doit()
                    .await
                },
            )
            .await
    }

    /// Replaces event `id` with `event` (`events.update`, PUT semantics: writable fields left out
    /// are cleared, so `event` should be the current event with changes applied). The one way
    /// through the client crate to switch an event between all-day and timed, since a patch
    /// cannot clear `dateTime` or `date`.
    pub async fn update_event(
        &self,
        calendar: &str,
        id: &str,
        event: Event,
    ) -> Result<Event, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let send_updates = self.inner.send_updates.as_str();
        let (calendar, id) = (encode_path_segment(calendar), encode_path_segment(id));
        let (calendar, id, event) = (calendar.as_str(), id.as_str(), &event);
        caller
            .run(
                "calendar.events.update",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    prepare!(
                        hub.events().update(event.clone(), calendar, id),
                        &mut dlg,
                        caller
                    )
                    .send_updates(send_updates)
                    .doit()
                    .await
                },
            )
            .await
    }

    /// Deletes (cancels) event `id`. Deleting an already deleted event succeeds (Google's 410
    /// `deleted`), so a retried or repeated delete is harmless. An unknown id is `NotFound`.
    pub async fn delete_event(&self, calendar: &str, id: &str) -> Result<(), GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let send_updates = self.inner.send_updates.as_str();
        let (calendar, id) = (encode_path_segment(calendar), encode_path_segment(id));
        let (calendar, id) = (calendar.as_str(), id.as_str());
        let result = caller
            .run(
                "calendar.events.delete",
                Idempotency::Idempotent,
                |mut dlg| async move {
                    prepare!(hub.events().delete(calendar, id), &mut dlg, caller)
                        .send_updates(send_updates)
                        .doit()
                        .await
                        .map(|response| (response, ()))
                },
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::Gone => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Push notifications (facts: `events.watch`, `channels.stop`): Google POSTs to a channel's
/// address after each change of the calendar, with the channel's id and token in
/// `X-Goog-Channel-ID` / `X-Goog-Channel-Token`; a channel expires (Google caps the TTL) and is
/// renewed by watching again with a new id, then stopping the old one.
impl CalendarClient {
    /// `events.watch` on `calendar`: a `web_hook` channel `channel_id` to `address`, with
    /// `token` echoed in every notification, asking for `ttl_secs` (Google may give less: read
    /// the answer's `expiration`, milliseconds since the epoch).
    pub async fn watch_events(
        &self,
        calendar: &str,
        channel_id: &str,
        address: &str,
        token: &str,
        ttl_secs: u64,
    ) -> Result<Channel, GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let calendar = encode_path_segment(calendar);
        let calendar = calendar.as_str();
        let request = Channel {
            id: Some(channel_id.to_string()),
            type_: Some("web_hook".into()),
            address: Some(address.to_string()),
            token: Some(token.to_string()),
            params: Some([("ttl".to_string(), ttl_secs.to_string())].into()),
            ..Default::default()
        };
        caller
            .run(
                "calendar.events.watch",
                // Watching twice with one id is refused (channelIdNotUnique): safe to retry.
                Idempotency::Idempotent,
                |mut dlg| {
                    let request = request.clone();
                    async move {
                        prepare!(hub.events().watch(request, calendar), &mut dlg, caller)
                            .doit()
                            .await
                    }
                },
            )
            .await
    }

    /// `channels.stop`: no more notifications on channel `channel_id` (`resource_id` from the
    /// watch answer). A channel Google no longer knows is already stopped.
    pub async fn stop_channel(
        &self,
        channel_id: &str,
        resource_id: &str,
    ) -> Result<(), GoogleError> {
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let request = Channel {
            id: Some(channel_id.to_string()),
            resource_id: Some(resource_id.to_string()),
            ..Default::default()
        };
        let result = caller
            .run(
                "calendar.channels.stop",
                Idempotency::Idempotent,
                |mut dlg| {
                    let request = request.clone();
                    async move {
                        prepare!(hub.channels().stop(request), &mut dlg, caller)
                            .doit()
                            .await
                            .map(|response| (response, ()))
                    }
                },
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Conditional writes: `events.patch`, `events.update` and `events.delete` with
/// `If-Match: <etag>` (facts 1.3). google-calendar3's call builders cannot set a request header,
/// so these requests are built here and sent through the same hyper client, token provider,
/// scope, `quotaUser`, `sendUpdates`, rate limiter, retry policy and metrics as every other
/// call ([`Caller::run`] with a request made by [`raw_request`]); bodies and results are the
/// crate's [`Event`].
///
/// When the event changed since `etag` was read, Google answers 412 `conditionNotMet` and
/// nothing is written: the error's kind is [`ErrorKind::PreconditionFailed`] (the kind People's
/// stale-etag answer also gets). Re-read the event, merge, and write again with the new etag.
/// These calls are retried like the unconditional ones; should an attempt be applied but its
/// answer lost (a 5xx or a broken connection after sending), the retry meets the new etag and
/// fails with `PreconditionFailed` although the write went through: the re-read then shows the
/// write (the error's `attempts` is above 1 in that case).
impl CalendarClient {
    /// `events.patch` of event `id` with `If-Match: etag`: like [`Self::patch_event`], but only
    /// if the event's current etag is `etag` (else [`ErrorKind::PreconditionFailed`]).
    pub async fn patch_event_if_match(
        &self,
        calendar: &str,
        id: &str,
        patch: Event,
        etag: &str,
    ) -> Result<Event, GoogleError> {
        const METHOD: &str = "calendar.events.patch";
        self.conditional_write(
            METHOD,
            hyper::Method::PATCH,
            calendar,
            id,
            Some(&patch),
            etag,
        )
        .await?
        .ok_or_else(|| GoogleError::local(ErrorKind::Decode, METHOD, "empty response"))
    }

    /// `events.update` (PUT) of event `id` with `If-Match: etag`: like [`Self::update_event`],
    /// but only if the event's current etag is `etag` (else
    /// [`ErrorKind::PreconditionFailed`]).
    pub async fn update_event_if_match(
        &self,
        calendar: &str,
        id: &str,
        event: Event,
        etag: &str,
    ) -> Result<Event, GoogleError> {
        const METHOD: &str = "calendar.events.update";
        self.conditional_write(METHOD, hyper::Method::PUT, calendar, id, Some(&event), etag)
            .await?
            .ok_or_else(|| GoogleError::local(ErrorKind::Decode, METHOD, "empty response"))
    }

    /// `events.delete` of event `id` with `If-Match: etag`: cancels the event only if it is
    /// unchanged since `etag` was read (else [`ErrorKind::PreconditionFailed`]). An already
    /// deleted event is success, as with [`Self::delete_event`].
    pub async fn delete_event_if_match(
        &self,
        calendar: &str,
        id: &str,
        etag: &str,
    ) -> Result<(), GoogleError> {
        match self
            .conditional_write(
                "calendar.events.delete",
                hyper::Method::DELETE,
                calendar,
                id,
                None,
                etag,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::Gone => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends one conditional write; returns the event Google answered with (None for delete).
    async fn conditional_write(
        &self,
        method: &'static str,
        verb: hyper::Method,
        calendar: &str,
        id: &str,
        body: Option<&Event>,
        etag: &str,
    ) -> Result<Option<Event>, GoogleError> {
        let etag = etag.trim();
        if etag.is_empty() {
            return Err(GoogleError::local(
                ErrorKind::BadRequest,
                method,
                format!("a conditional write of event {id:?} needs the etag it was read with"),
            ));
        }
        let body = match body {
            Some(event) => Some(event_body(event).map_err(|e| {
                GoogleError::local(
                    ErrorKind::BadRequest,
                    method,
                    format!("event {id:?} could not be serialized: {e}"),
                )
            })?),
            None => None,
        };
        let (hub, caller) = (&self.inner.hub, &self.inner.caller);
        let url = event_url(
            &self.inner.base_url,
            calendar,
            id,
            self.inner.send_updates,
            caller.quota_user.as_deref(),
        );
        let (url, body, verb) = (url.as_str(), body.as_deref(), &verb);
        caller
            .run(method, Idempotency::Idempotent, |mut dlg| async move {
                let headers = [(hyper::header::IF_MATCH, etag)];
                let request = RawRequest {
                    method: verb.clone(),
                    url,
                    headers: &headers,
                    body,
                };
                let (parts, bytes) =
                    raw_request(&hub.client, &*hub.auth, caller.scope, &mut dlg, request).await?;
                let event = if body.is_some() {
                    let text = google_apis_common::to_string(&bytes);
                    match serde_json::from_str::<Event>(&text) {
                        Ok(e) => Some(e),
                        Err(err) => {
                            return Err(google_apis_common::Error::JsonDecodeError(
                                text.to_string(),
                                err,
                            ))
                        }
                    }
                } else {
                    None
                };
                Ok((google_apis_common::to_response(parts, Some(bytes)), event))
            })
            .await
    }
}

/// The JSON body the client crate would send for `event` (nulls removed).
fn event_body(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    google_apis_common::remove_json_null_values(&mut value);
    serde_json::to_vec(&value)
}

/// `{base}calendars/{calendar}/events/{id}?sendUpdates=…[&quotaUser=…]&alt=json`, the URL the
/// client crate builds for events.patch/update/delete.
fn event_url(
    base: &str,
    calendar: &str,
    id: &str,
    send_updates: SendUpdates,
    quota_user: Option<&str>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("sendUpdates", send_updates.as_str());
    if let Some(q) = quota_user {
        query.append_pair("quotaUser", q);
    }
    query.append_pair("alt", "json");
    format!(
        "{base}calendars/{}/events/{}?{}",
        encode_path_segment(calendar),
        encode_path_segment(id),
        query.finish()
    )
}

/// Checks Google's rule for client-chosen event ids: base32hex characters (`a-v`, `0-9`),
/// 5 to 1024 of them.
pub fn validate_event_id(id: &str) -> Result<(), String> {
    if !(5..=1024).contains(&id.len()) {
        return Err(format!(
            "event id {id:?} must be 5 to 1024 characters long (it is {})",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| !matches!(c, 'a'..='v' | '0'..='9')) {
        return Err(format!(
            "event id {id:?} contains {c:?}: only base32hex characters a-v and 0-9 are allowed"
        ));
    }
    Ok(())
}

/// Percent-encodes a path parameter: the client crates insert path parameters unencoded, so a
/// calendar id with `#` (holiday calendars) would otherwise truncate the URL. `@` stays as is.
pub(crate) fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn query() -> EventListQuery {
        EventListQuery {
            calendar_id: "primary".into(),
            time_min: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            time_max: Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()),
            single_events: true,
            show_deleted: false,
            max_results: Some(2500),
        }
    }

    #[test]
    fn full_listing_sends_the_time_window() {
        let p = query().params(None, None);
        assert!(p.time_min.is_some() && p.time_max.is_some());
        assert_eq!(p.single_events, Some(true));
        assert_eq!(p.show_deleted, None);
        assert_eq!(p.max_results, Some(2500));
        assert_eq!(p.sync_token, None);
    }

    #[test]
    fn incremental_listing_drops_filters_but_keeps_the_rest() {
        let full = query().params(None, Some("page2"));
        let inc = query().params(Some("CPDAlvWDx70CEPDAlvWDx70CGAU="), Some("page2"));
        assert_eq!(inc.time_min, None);
        assert_eq!(inc.time_max, None);
        assert_eq!(
            inc.sync_token.as_deref(),
            Some("CPDAlvWDx70CEPDAlvWDx70CGAU=")
        );
        assert_eq!(inc.page_token.as_deref(), Some("page2"));
        assert_eq!(
            (inc.single_events, inc.show_deleted, inc.max_results),
            (full.single_events, full.show_deleted, full.max_results)
        );
    }

    #[test]
    fn page_size_is_capped() {
        let mut q = query();
        q.max_results = Some(10_000);
        assert_eq!(q.params(None, None).max_results, Some(2500));
        q.show_deleted = true;
        assert_eq!(q.params(Some("t"), None).show_deleted, Some(true));
    }

    #[test]
    fn event_ids() {
        assert!(validate_event_id("c0ffee00000000000000000000000042").is_ok());
        assert!(validate_event_id(&uuid_like()).is_ok());
        assert!(validate_event_id("abcd").is_err());
        assert!(validate_event_id("has-dash").is_err());
        assert!(validate_event_id("wxyz12345").is_err());
        assert!(validate_event_id("ABCDEF").is_err());
    }

    fn uuid_like() -> String {
        "550e8400e29b41d4a716446655440000".into()
    }

    #[test]
    fn path_segments() {
        assert_eq!(
            encode_path_segment("alice@example.com"),
            "alice@example.com"
        );
        assert_eq!(
            encode_path_segment("en.usa#holiday@group.v.calendar.google.com"),
            "en.usa%23holiday@group.v.calendar.google.com"
        );
        assert_eq!(encode_path_segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn conditional_write_urls() {
        assert_eq!(
            event_url(
                "http://h/calendar/v3/",
                "a#b@x",
                "evt1",
                SendUpdates::None,
                Some("crm user")
            ),
            "http://h/calendar/v3/calendars/a%23b@x/events/evt1?sendUpdates=none&quotaUser=crm+user&alt=json"
        );
        assert_eq!(
            event_url("http://h/", "primary", "e", SendUpdates::All, None),
            "http://h/calendars/primary/events/e?sendUpdates=all&alt=json"
        );
        let body = event_body(&Event {
            summary: Some("S".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, br#"{"summary":"S"}"#);
    }

    #[test]
    fn send_updates_wire_values() {
        assert_eq!(SendUpdates::default().as_str(), "none");
        assert_eq!(SendUpdates::ExternalOnly.as_str(), "externalOnly");
    }
}
