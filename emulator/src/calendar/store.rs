//! A user's primary calendar: events keyed by id (each copy of a shared event is stored
//! separately, per calendar), an index by change sequence that makes listings and
//! incremental sync proportional to the page rather than to the calendar, etags and
//! `updated` stamps, the sync-token epoch and watch channels.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::clock::fmt_millis;

/// One stored event (a master, a single event, or an exception `<master>_<stamp>`).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The full resource as `events.get` returns it for this calendar.
    pub body: Map<String, Value>,
    /// Change sequence of the last write.
    pub seq: u64,
    /// An attendee deleted their copy: organizer changes no longer bring it back.
    pub removed_by_owner: bool,
    /// Organizer copies: the emulated users holding a mirrored copy.
    pub mirrored_to: BTreeSet<String>,
    /// A cancelled exception whose `originalStartTime` is no longer an occurrence of its
    /// series (the series was moved, re-timed, shortened or its rule changed): it no longer
    /// belongs to the series (not listed by `events.instances`, does not hide an occurrence
    /// with the same id should the series come back to that time). Cleared by any write.
    pub detached: bool,
}

impl StoredEvent {
    pub fn status(&self) -> &str {
        self.body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("confirmed")
    }

    pub fn is_cancelled(&self) -> bool {
        self.status() == "cancelled"
    }

    pub fn is_recurring_master(&self) -> bool {
        self.body
            .get("recurrence")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    pub fn etag(&self) -> &str {
        self.body.get("etag").and_then(Value::as_str).unwrap_or("")
    }
}

/// A push-notification channel created by `events.watch`.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub resource_id: String,
    pub resource_uri: String,
    pub address: String,
    pub token: Option<String>,
    pub expiration_ms: i64,
    pub message_number: u64,
}

/// The primary calendar of one user.
#[derive(Debug)]
pub struct CalendarStore {
    pub owner: String,
    events: HashMap<String, StoredEvent>,
    index: BTreeMap<u64, String>,
    /// master id -> ids of its stored exceptions.
    exceptions: HashMap<String, BTreeSet<String>>,
    seq: u64,
    /// Bumped by `expire_sync_tokens`: older sync and page tokens are refused.
    pub epoch: u64,
    last_etag: u64,
    pub updated: DateTime<Utc>,
    pub channels: HashMap<String, Channel>,
}

impl CalendarStore {
    pub fn new(owner: &str) -> Self {
        CalendarStore {
            owner: owner.to_string(),
            events: HashMap::new(),
            index: BTreeMap::new(),
            exceptions: HashMap::new(),
            seq: 0,
            epoch: 0,
            last_etag: 0,
            updated: Utc::now(),
            channels: HashMap::new(),
        }
    }

    pub fn expire_tokens(&mut self) {
        self.epoch += 1;
    }

    /// The sequence number of the latest change.
    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    pub fn get(&self, id: &str) -> Option<&StoredEvent> {
        self.events.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut StoredEvent> {
        self.events.get_mut(id)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Stores a new version: assigns the change sequence, a fresh etag and `updated`.
    pub fn put(
        &mut self,
        id: &str,
        mut body: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> &StoredEvent {
        self.seq += 1;
        let micros = now.timestamp_micros().max(0) as u64;
        let etag_n = (micros.saturating_mul(10)).max(self.last_etag + 1);
        self.last_etag = etag_n;
        body.insert("etag".into(), json!(format!("\"{etag_n}\"")));
        body.insert("updated".into(), json!(fmt_millis(now)));
        if !body.contains_key("created") {
            body.insert("created".into(), json!(fmt_millis(now)));
        }
        self.updated = now;
        if let Some(master) = body.get("recurringEventId").and_then(Value::as_str) {
            self.exceptions
                .entry(master.to_string())
                .or_default()
                .insert(id.to_string());
        }
        let seq = self.seq;
        let entry = self
            .events
            .entry(id.to_string())
            .or_insert_with(|| StoredEvent {
                body: Map::new(),
                seq: 0,
                removed_by_owner: false,
                mirrored_to: BTreeSet::new(),
                detached: false,
            });
        if entry.seq != 0 {
            self.index.remove(&entry.seq);
        }
        entry.seq = seq;
        entry.detached = false;
        entry.body = body;
        self.index.insert(seq, id.to_string());
        entry
    }

    /// Index entries with `from <= seq <= to`, in change order.
    pub fn changes(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &StoredEvent)> {
        let range = crate::sync_tokens::seq_range(from, to);
        self.index
            .range(range)
            .filter_map(move |(s, id)| self.events.get(id).map(|e| (*s, e)))
    }

    /// Whether any index entry has `from <= seq <= to`.
    pub fn has_changes(&self, from: u64, to: u64) -> bool {
        self.index
            .range(crate::sync_tokens::seq_range(from, to))
            .next()
            .is_some()
    }

    /// The stored exceptions of a recurring master (detached ones excluded).
    pub fn exceptions_of<'a>(
        &'a self,
        master_id: &'a str,
    ) -> impl Iterator<Item = &'a StoredEvent> + 'a {
        self.exceptions
            .get(master_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.events.get(id))
            .filter(|e| !e.detached)
    }

    /// A stored event that is not a detached exception (see [`StoredEvent::detached`]).
    pub fn get_attached(&self, id: &str) -> Option<&StoredEvent> {
        self.events.get(id).filter(|e| !e.detached)
    }

    /// Marks a stored exception as detached from its series (no new version, no etag change).
    pub fn detach(&mut self, id: &str) {
        if let Some(e) = self.events.get_mut(id) {
            e.detached = true;
        }
    }

    pub fn all_events(&self) -> Vec<Value> {
        self.index
            .values()
            .filter_map(|id| self.events.get(id))
            .map(|e| Value::Object(e.body.clone()))
            .collect()
    }

    pub fn event_json(&self, id: &str) -> Option<Value> {
        self.events.get(id).map(|e| Value::Object(e.body.clone()))
    }
}
