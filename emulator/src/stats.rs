//! Observability: call counts per discovery method id and HTTP status ([`Stats`]), a bounded
//! log of recent requests ([`RequestLog`]), the `sendUpdates` each Calendar write asked for,
//! and an optional recorder of JSON response bodies (used by the schema-conformance test).

use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// How many recent requests `GET /_emulator/requests` keeps.
pub const REQUEST_LOG_CAPACITY: usize = 2000;
/// How many responses the recorder keeps at most.
pub const RECORDER_CAPACITY: usize = 200_000;
/// How many Calendar write records are kept.
pub const WRITE_LOG_CAPACITY: usize = 10_000;

/// Request counts per method id and status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// `{"calendar.events.insert": {"200": 3, "409": 1}, …}`
    pub methods: BTreeMap<String, BTreeMap<String, u64>>,
    /// All counted requests.
    pub total: u64,
}

impl Stats {
    /// Calls of `method` with any status.
    pub fn count(&self, method: &str) -> u64 {
        self.methods
            .get(method)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    /// Calls of `method` that ended with `status` (0 = connection dropped by a fault).
    pub fn count_status(&self, method: &str, status: u16) -> u64 {
        self.methods
            .get(method)
            .and_then(|m| m.get(&status.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of every method whose id starts with `prefix` (e.g. `calendar.`).
    pub fn count_prefix(&self, prefix: &str) -> u64 {
        self.methods
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, m)| m.values().sum::<u64>())
            .sum()
    }
}

/// One entry of the recent-request log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestRecord {
    /// Discovery method id (`calendar.events.insert`), `oauth2.token`, or `unknown`.
    pub method: String,
    pub http_method: String,
    /// Path with query string.
    pub url: String,
    /// HTTP status sent (0 when the connection was dropped by a fault).
    pub status: u16,
    /// The user the access token belongs to, if any.
    pub user: Option<String>,
}

/// A Calendar write and the `sendUpdates` it asked for.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WriteRecord {
    pub method: String,
    pub user: String,
    pub event_id: String,
    /// `sendUpdates` as sent (`None` when absent; Google's default then sends nothing).
    pub send_updates: Option<String>,
    /// Deprecated `sendNotifications`, as sent.
    pub send_notifications: Option<String>,
}

/// A JSON response body with the method that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedResponse {
    pub method: String,
    pub status: u16,
    pub body: Value,
}

/// All observability state, behind short-lived locks.
#[derive(Debug, Default)]
pub struct Observability {
    counts: Mutex<HashMap<String, HashMap<u16, u64>>>,
    log: Mutex<VecDeque<RequestRecord>>,
    writes: Mutex<VecDeque<WriteRecord>>,
    recorder: Mutex<Option<Vec<RecordedResponse>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Observability {
    pub fn record_request(&self, rec: RequestRecord) {
        {
            let mut counts = lock(&self.counts);
            if let Some(per) = counts.get_mut(&rec.method) {
                *per.entry(rec.status).or_default() += 1;
            } else {
                counts
                    .entry(rec.method.clone())
                    .or_default()
                    .insert(rec.status, 1);
            }
        }
        let mut log = lock(&self.log);
        if log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(rec);
    }

    pub fn stats(&self) -> Stats {
        let counts = lock(&self.counts);
        let mut s = Stats::default();
        for (m, per) in counts.iter() {
            let entry = s.methods.entry(m.clone()).or_default();
            for (status, n) in per {
                entry.insert(status.to_string(), *n);
                s.total += n;
            }
        }
        s
    }

    pub fn recent_requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).iter().cloned().collect()
    }

    pub fn record_write(&self, w: WriteRecord) {
        let mut writes = lock(&self.writes);
        if writes.len() >= WRITE_LOG_CAPACITY {
            writes.pop_front();
        }
        writes.push_back(w);
    }

    pub fn writes(&self) -> Vec<WriteRecord> {
        lock(&self.writes).iter().cloned().collect()
    }

    /// Starts (or stops) recording JSON response bodies.
    pub fn set_recording(&self, on: bool) {
        let mut r = lock(&self.recorder);
        if on {
            if r.is_none() {
                *r = Some(Vec::new());
            }
        } else {
            *r = None;
        }
    }

    pub fn is_recording(&self) -> bool {
        lock(&self.recorder).is_some()
    }

    pub fn record_response(&self, method: &str, status: u16, body: &Value) {
        let mut r = lock(&self.recorder);
        if let Some(v) = r.as_mut() {
            if v.len() < RECORDER_CAPACITY {
                v.push(RecordedResponse {
                    method: method.to_string(),
                    status,
                    body: body.clone(),
                });
            }
        }
    }

    pub fn recorded_responses(&self) -> Vec<RecordedResponse> {
        lock(&self.recorder).clone().unwrap_or_default()
    }

    /// Forgets counts, logs and recorded responses (recording stays on if it was on).
    pub fn reset(&self) {
        lock(&self.counts).clear();
        lock(&self.log).clear();
        lock(&self.writes).clear();
        if let Some(v) = lock(&self.recorder).as_mut() {
            v.clear();
        }
    }
}
