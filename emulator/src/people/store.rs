//! A user's contacts and contact groups. Every write creates a new version of a contact with
//! a change sequence; an index by sequence makes full listings, incremental sync and paging
//! proportional to the page. Older versions are kept only while the People propagation
//! delay still hides their successor from sync results.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::person::{all_fields, render, ContactData};
use crate::clock::fmt_micros;

/// System groups every user has, with their formatted names.
pub const SYSTEM_GROUPS: &[(&str, &str)] = &[
    ("myContacts", "My Contacts"),
    ("starred", "Starred"),
    ("friends", "Friends"),
    ("family", "Family"),
    ("coworkers", "Coworkers"),
    ("chatBuddies", "Chat contacts"),
];

/// System groups that accept additions through `members.modify` / memberships.
pub const ADDABLE_SYSTEM_GROUPS: &[&str] = &["myContacts", "starred"];

#[derive(Debug, Clone)]
pub struct Version {
    pub seq: u64,
    pub changed_at: DateTime<Utc>,
    pub data: ContactData,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: String,
    pub source_id: String,
    /// Oldest first; the last one is current.
    pub versions: Vec<Version>,
}

impl Contact {
    pub fn current(&self) -> &Version {
        // Invariant: a contact always has at least one version.
        &self.versions[self.versions.len() - 1]
    }

    pub fn resource_name(&self) -> String {
        format!("people/{}", self.id)
    }

    /// The newest version with `seq <= snapshot`.
    pub fn visible(&self, snapshot: u64) -> Option<&Version> {
        self.versions.iter().rev().find(|v| v.seq <= snapshot)
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub system: bool,
    pub members: BTreeSet<String>,
    pub client_data: Vec<Value>,
    pub etag_n: u64,
    pub update_time: DateTime<Utc>,
    pub deleted: bool,
    pub seq: u64,
}

impl Group {
    pub fn resource_name(&self) -> String {
        format!("contactGroups/{}", self.id)
    }

    /// Renders a ContactGroup; `fields` = groupFields (None = default set).
    pub fn render(&self, fields: Option<&[String]>, max_members: usize) -> Value {
        let want = |f: &str| fields.is_none_or(|fs| fs.iter().any(|x| x == f));
        let mut g = Map::new();
        g.insert("resourceName".into(), json!(self.resource_name()));
        g.insert("etag".into(), json!(format!("#{}", base64_n(self.etag_n))));
        if self.deleted {
            g.insert(
                "metadata".into(),
                json!({"updateTime": fmt_micros(self.update_time), "deleted": true}),
            );
            return Value::Object(g);
        }
        if want("metadata") {
            g.insert(
                "metadata".into(),
                json!({"updateTime": fmt_micros(self.update_time)}),
            );
        }
        if want("groupType") {
            g.insert(
                "groupType".into(),
                json!(if self.system {
                    "SYSTEM_CONTACT_GROUP"
                } else {
                    "USER_CONTACT_GROUP"
                }),
            );
        }
        if want("name") {
            g.insert("name".into(), json!(self.name));
            let formatted = SYSTEM_GROUPS
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, f)| *f)
                .unwrap_or(&self.name);
            g.insert("formattedName".into(), json!(formatted));
        }
        if want("memberCount") && !self.members.is_empty() {
            g.insert("memberCount".into(), json!(self.members.len()));
        }
        if want("clientData") && !self.client_data.is_empty() {
            g.insert("clientData".into(), Value::Array(self.client_data.clone()));
        }
        if max_members > 0 && !self.members.is_empty() {
            let names: Vec<Value> = self
                .members
                .iter()
                .take(max_members)
                .map(|m| json!(format!("people/{m}")))
                .collect();
            g.insert("memberResourceNames".into(), Value::Array(names));
        }
        Value::Object(g)
    }
}

fn base64_n(n: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(n.to_be_bytes())
}

/// Contacts and groups of one user.
#[derive(Debug)]
pub struct PeopleStore {
    contacts: HashMap<String, Contact>,
    /// seq -> contact id, one entry per retained version.
    index: BTreeMap<u64, String>,
    pub groups: BTreeMap<String, Group>,
    /// seq -> group id (latest change of each group).
    group_index: BTreeMap<u64, String>,
    seq: u64,
    last_etag: u64,
    pub epoch: u64,
    live: usize,
}

impl Default for PeopleStore {
    fn default() -> Self {
        PeopleStore::new()
    }
}

impl PeopleStore {
    pub fn new() -> Self {
        let now = Utc::now();
        let mut s = PeopleStore {
            contacts: HashMap::new(),
            index: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_index: BTreeMap::new(),
            seq: 0,
            last_etag: 0,
            epoch: 0,
            live: 0,
        };
        for (id, _) in SYSTEM_GROUPS {
            s.seq += 1;
            s.groups.insert(
                id.to_string(),
                Group {
                    id: id.to_string(),
                    name: id.to_string(),
                    system: true,
                    members: BTreeSet::new(),
                    client_data: Vec::new(),
                    etag_n: s.seq,
                    update_time: now,
                    deleted: false,
                    seq: s.seq,
                },
            );
            s.group_index.insert(s.seq, id.to_string());
        }
        s
    }

    pub fn expire_tokens(&mut self) {
        self.epoch += 1;
    }

    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    pub fn live_count(&self) -> usize {
        self.live
    }

    fn next_etag(&mut self, now: DateTime<Utc>) -> u64 {
        let n = (now.timestamp_micros().max(0) as u64).max(self.last_etag + 1);
        self.last_etag = n;
        n
    }

    pub fn contact(&self, id: &str) -> Option<&Contact> {
        self.contacts.get(id)
    }

    /// A live (not deleted) contact by id.
    pub fn live(&self, id: &str) -> Option<&Contact> {
        self.contacts.get(id).filter(|c| !c.current().data.deleted)
    }

    fn new_contact_id(&self) -> String {
        let mut rng = rand::thread_rng();
        loop {
            let id = format!(
                "c{}",
                rng.gen_range(1_000_000_000_000_000_000u64..9_000_000_000_000_000_000u64)
            );
            if !self.contacts.contains_key(&id) {
                return id;
            }
        }
    }

    /// Writes a new version of contact `id` (creating it when `id` is None).
    /// `keep_after` = now - propagation delay: versions older than the newest one at or
    /// before it are pruned.
    pub fn write(
        &mut self,
        id: Option<&str>,
        mut data: ContactData,
        now: DateTime<Utc>,
        delay: Duration,
    ) -> String {
        self.seq += 1;
        let seq = self.seq;
        data.etag_n = self.next_etag(now);
        // updateTime changes on every write, strictly increasing per contact.
        data.update_time = now;
        let id = match id {
            Some(i) => i.to_string(),
            None => self.new_contact_id(),
        };
        let old_groups: BTreeSet<String> = self
            .contacts
            .get(&id)
            .map(|c| c.current().data.groups.clone())
            .unwrap_or_default();
        let was_live = self
            .contacts
            .get(&id)
            .is_some_and(|c| !c.current().data.deleted);
        let source_id = {
            let mut rng = rand::thread_rng();
            format!("{:016x}", rng.gen::<u64>() >> 4)
        };
        let c = self.contacts.entry(id.clone()).or_insert_with(|| Contact {
            id: id.clone(),
            source_id,
            versions: Vec::new(),
        });
        if let Some(prev) = c.versions.last() {
            if prev.data.update_time >= data.update_time {
                data.update_time = prev.data.update_time + Duration::microseconds(1);
            }
        }
        let new_groups = if data.deleted {
            BTreeSet::new()
        } else {
            data.groups.clone()
        };
        let is_live = !data.deleted;
        c.versions.push(Version {
            seq,
            changed_at: now,
            data,
        });
        // Prune versions no sync snapshot can see any more.
        let horizon = now - delay;
        let keep_from = c
            .versions
            .iter()
            .rposition(|v| v.changed_at <= horizon)
            .unwrap_or(0);
        let pruned: Vec<u64> = c.versions.drain(..keep_from).map(|v| v.seq).collect();
        for s in pruned {
            self.index.remove(&s);
        }
        self.index.insert(seq, id.clone());
        match (was_live, is_live) {
            (false, true) => self.live += 1,
            (true, false) => self.live = self.live.saturating_sub(1),
            _ => {}
        }
        for g in old_groups.difference(&new_groups) {
            if let Some(gr) = self.groups.get_mut(g) {
                gr.members.remove(&id);
            }
        }
        for g in new_groups.difference(&old_groups) {
            if let Some(gr) = self.groups.get_mut(g) {
                gr.members.insert(id.clone());
            }
        }
        id
    }

    /// The largest sequence whose change is older than `cutoff` (sync visibility).
    pub fn cutoff_seq(&self, cutoff: DateTime<Utc>) -> u64 {
        for (s, id) in self.index.iter().rev() {
            let Some(c) = self.contacts.get(id) else {
                continue;
            };
            if c.versions
                .iter()
                .any(|v| v.seq == *s && v.changed_at <= cutoff)
            {
                return *s;
            }
        }
        0
    }

    /// Index entries in `from..=to` that are the visible version at `snapshot`.
    pub fn changes(
        &self,
        from: u64,
        to: u64,
        snapshot: u64,
    ) -> impl Iterator<Item = (u64, &Contact, &Version)> {
        let range = crate::sync_tokens::seq_range(from, to);
        self.index.range(range).filter_map(move |(s, id)| {
            let c = self.contacts.get(id)?;
            let v = c.visible(snapshot)?;
            (v.seq == *s).then_some((*s, c, v))
        })
    }

    pub fn has_changes(&self, from: u64, to: u64, snapshot: u64) -> bool {
        self.changes(from, to, snapshot).next().is_some()
    }

    pub fn all_contacts(&self) -> Vec<Value> {
        let fields = all_fields();
        self.index
            .values()
            .filter_map(|id| self.contacts.get(id))
            .filter(|c| !c.current().data.deleted)
            .map(|c| render(&c.resource_name(), &c.source_id, &c.current().data, &fields))
            .collect::<Vec<_>>()
            .into_iter()
            .fold((Vec::new(), BTreeSet::new()), |(mut v, mut seen), p| {
                let rn = p
                    .get("resourceName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if seen.insert(rn) {
                    v.push(p);
                }
                (v, seen)
            })
            .0
    }

    // ----- groups -----

    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| !g.deleted && g.name == name)
    }

    pub fn touch_group(&mut self, id: &str, now: DateTime<Utc>) {
        self.seq += 1;
        let seq = self.seq;
        let etag = self.next_etag(now);
        if let Some(g) = self.groups.get_mut(id) {
            self.group_index.remove(&g.seq);
            g.seq = seq;
            g.etag_n = etag;
            g.update_time = now;
            self.group_index.insert(seq, id.to_string());
        }
    }

    pub fn create_group(
        &mut self,
        name: &str,
        client_data: Vec<Value>,
        now: DateTime<Utc>,
    ) -> String {
        let id = {
            let mut rng = rand::thread_rng();
            format!("{:x}", rng.gen::<u64>() >> 8)
        };
        self.groups.insert(
            id.clone(),
            Group {
                id: id.clone(),
                name: name.to_string(),
                system: false,
                members: BTreeSet::new(),
                client_data,
                etag_n: 0,
                update_time: now,
                deleted: false,
                seq: 0,
            },
        );
        self.touch_group(&id, now);
        id
    }

    /// Groups changed in `from..=to`, in change order.
    pub fn group_changes(&self, from: u64, to: u64) -> impl Iterator<Item = &Group> {
        let range = crate::sync_tokens::seq_range(from, to);
        self.group_index
            .range(range)
            .filter_map(|(_, id)| self.groups.get(id))
    }

    pub fn all_groups(&self) -> Vec<Value> {
        self.groups
            .values()
            .filter(|g| !g.deleted)
            .map(|g| g.render(None, 0))
            .collect()
    }
}
