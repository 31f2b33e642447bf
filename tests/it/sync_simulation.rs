//! Seeded simulation of the whole contacts engine (sync-testing-plan B7.3 L2, small scale): random
//! acts of the user on both sides (CRM creates, job title edits, tags and untags, deletes; Google
//! creates, job title edits, removals from and returns to the group, deletes), injected Google
//! faults (5xx, 429, answers lost after the write, and contacts Google refuses until the faults
//! stop, which get parked), expired sync tokens and crashes at random named points, for many
//! seeds. After the faults stop and the runs settle, the invariants must hold:
//! - both sides converged on every link, the group and the tag describe the same set, no
//!   duplicate on either side, and one more run writes nothing;
//! - the sync deleted nothing: every CRM contact the test did not delete is live, every Google
//!   contact the test did not delete exists, and the only People deletes are the test's own;
//! - a Google delete untagged the CRM contact it was linked to (kept, not deleted) unless the
//!   test tagged it again afterwards; a CRM delete took its Google contact out of the group (kept,
//!   not deleted) unless the test put it back in the group afterwards, and stays deleted;
//! - no edit lost: the last job title the test wrote on each record is still that record's value
//!   (so, for a linked pair, the value on both sides), or the journal holds it as the value the
//!   sync overwrote on that record (it lost to the other side); and no record, and no journaled
//!   write, holds a job title the test never wrote.
//!
//! A failing seed prints how to replay it alone (`CRMSYNC_SIM_SEED`); its random choices replay
//! identically (acts pick records in the order of their addresses, not of the random ids the CRM
//! and Google give them). `CRMSYNC_SIM_SEEDS=N` runs more seeds.

use crate::sync_support::*;
use crmsync::sync::crash::{CrashAt, CrashPoint};
use crmsync::sync::{RunOptions, SyncConfig, Trigger};
use crmsync_connectors::contact_wire;
use crmsync_emulator::FaultRule;
use crmsync_engine::contact_map;
use crmsync_engine::fields;
use crmsync_engine::ids::{ContactId, SyncKind};
use crmsync_engine::planner::LinkState;
use crmsync_schema::test_support::TestDb;
use crmsync_schema::{contacts, sync_state};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const FIRST: [&str; 6] = ["Ada", "Bob", "Cy", "Di", "Ed", "Flo"];
const TITLES: [&str; 4] = ["CTO", "Buyer", "Analyst", "Founder"];

/// What the test did, kept to check the outcome of each act once the runs have settled. Steps
/// number the acts in order.
#[derive(Default)]
struct History {
    step: usize,
    /// Every job title the test wrote on a CRM contact, in order, with its step.
    crm_edits: BTreeMap<ContactId, Vec<(String, usize)>>,
    /// Every job title the test wrote on a Google contact (by resource name).
    google_edits: BTreeMap<String, Vec<(String, usize)>>,
    crm_deleted: BTreeMap<ContactId, usize>,
    google_deleted: BTreeMap<String, usize>,
    /// The last step at which the test tagged each CRM contact.
    crm_tagged: BTreeMap<ContactId, usize>,
    /// The last step at which the test put each Google contact in the group.
    group_added: BTreeMap<String, usize>,
    /// Every CRM contact and every Google contact that ever existed (created by the test or by
    /// the sync).
    ever_crm: BTreeSet<ContactId>,
    ever_google: BTreeSet<String>,
    /// Every (CRM id, resource name) pair seen linked after a run.
    pairs: BTreeSet<(String, String)>,
    /// Every job title the test wrote.
    written: BTreeSet<String>,
}

impl History {
    /// Prints an act when a single seed is replayed (`CRMSYNC_SIM_SEED`), to read with the
    /// journal.
    fn log(&self, what: std::fmt::Arguments) {
        if replayed_seed().is_some() {
            eprintln!("step {}: {what}", self.step);
        }
    }

    fn title(&mut self, rng: &mut StdRng) -> String {
        // Unique per act, so that each value tells which edit it came from.
        let t = format!("{} {}", TITLES[rng.gen_range(0..TITLES.len())], self.step);
        self.written.insert(t.clone());
        t
    }

    /// Records what exists and what is linked after a run.
    fn observe(&mut self, w: &SyncWorld) {
        self.ever_crm.extend(w.crm_all().iter().map(|c| c.id));
        self.ever_google.extend(
            w.google_contacts()
                .iter()
                .filter_map(|p| p["resourceName"].as_str().map(String::from)),
        );
        let links = w
            .store
            .read(|c| {
                sync_state::links_in_state(
                    c,
                    w.alice.id,
                    SyncKind::Contacts,
                    LinkState::Active,
                    None,
                    10_000,
                )
            })
            .expect("links");
        self.pairs.extend(
            links
                .into_iter()
                .filter_map(|l| l.google_id.map(|g| (l.crm_id, g))),
        );
    }
}

fn resource_name(p: &Value) -> String {
    p["resourceName"].as_str().unwrap_or_default().to_string()
}

/// A person's job title as the sync sees it.
fn google_title(p: &Value) -> Value {
    let person: crmsync_connectors::Person = serde_json::from_value(p.clone()).expect("a person");
    fields::get(&contact_wire::person_fields(&person), "job_title").clone()
}

fn crm_title(c: &crmsync_engine::model::Contact) -> Value {
    fields::get(&contact_map::contact_fields(&c.data), "job_title").clone()
}

/// What a seed exercised (summed over seeds and printed, so that a run shows its checks were
/// not vacuous).
#[derive(Debug, Default)]
struct Figures {
    acts: usize,
    crm_deletes: usize,
    google_deletes: usize,
    /// Last edits of a record checked after convergence...
    edits_checked: usize,
    /// ... of which the sync overwrote and journaled (they lost to the other side).
    edits_overwritten: usize,
    parked: usize,
}

impl Figures {
    fn add(&mut self, o: Figures) {
        self.acts += o.acts;
        self.crm_deletes += o.crm_deletes;
        self.google_deletes += o.google_deletes;
        self.edits_checked += o.edits_checked;
        self.edits_overwritten += o.edits_overwritten;
        self.parked += o.parked;
    }
}

/// Live CRM contacts in a replayable order (by address; ids are random).
fn crm_in_key_order(w: &SyncWorld) -> Vec<crmsync_engine::model::Contact> {
    let mut all = w.crm_all();
    all.sort_by_key(|c| {
        (
            c.data.emails.first().map(|e| e.address.to_lowercase()),
            c.id.to_string(),
        )
    });
    all
}

/// Google contacts in a replayable order (by address; resource names are random).
fn google_in_key_order(w: &SyncWorld) -> Vec<Value> {
    let mut all = w.google_contacts();
    all.sort_by_key(|p| (emails_of(std::slice::from_ref(p)), resource_name(p)));
    all
}

/// One act of the user, on either side.
async fn act(
    w: &SyncWorld,
    g: &crmsync_connectors::GoogleAccount,
    group: &str,
    rng: &mut StdRng,
    h: &mut History,
    next_id: &mut u32,
) {
    h.step += 1;
    let step = h.step;
    let crm = crm_in_key_order(w);
    let tag = w.tag.id;
    match rng.gen_range(0..13) {
        0..=2 => {
            *next_id += 1;
            // Some addresses Google refuses until the faults stop (parked records).
            let domain = if rng.gen_bool(0.15) {
                "refused.test"
            } else {
                "sim.test"
            };
            let c = w.crm_contact(
                FIRST[rng.gen_range(0..FIRST.len())],
                &format!("C{next_id}"),
                &format!("c{next_id}@{domain}"),
            );
            h.log(format_args!(
                "CRM create {} {}",
                c.id, c.data.emails[0].address
            ));
            h.ever_crm.insert(c.id);
            h.crm_tagged.insert(c.id, step);
        }
        3 | 4 if !crm.is_empty() => {
            let c = &crm[rng.gen_range(0..crm.len())];
            let title = h.title(rng);
            h.log(format_args!("CRM edit {} job_title={title:?}", c.id));
            w.crm_update(c.id, |d| d.job_title = Some(title.clone()));
            h.crm_edits.entry(c.id).or_default().push((title, step));
        }
        5 if !crm.is_empty() => {
            let c = &crm[rng.gen_range(0..crm.len())];
            h.log(format_args!(
                "CRM toggle tag {} (tagged: {})",
                c.id,
                c.tags.contains(&tag)
            ));
            if c.tags.contains(&tag) {
                w.store
                    .write(|x| {
                        contacts::untag_contact(
                            x,
                            c.id,
                            tag,
                            crmsync_schema::changes::Origin::Api,
                            now(),
                        )
                    })
                    .expect("untag");
            } else {
                w.store
                    .write(|x| {
                        contacts::tag_contact(
                            x,
                            c.id,
                            tag,
                            crmsync_schema::changes::Origin::Api,
                            now(),
                        )
                    })
                    .expect("tag");
                h.crm_tagged.insert(c.id, step);
            }
        }
        6 if !crm.is_empty() => {
            let c = &crm[rng.gen_range(0..crm.len())];
            h.log(format_args!("CRM delete {}", c.id));
            w.store
                .write(|x| {
                    contacts::delete_contact(x, c.id, crmsync_schema::changes::Origin::Api, now())
                })
                .expect("delete");
            h.crm_deleted.insert(c.id, step);
        }
        7 | 8 => {
            *next_id += 1;
            let p = person(
                FIRST[rng.gen_range(0..FIRST.len())],
                &format!("G{next_id}"),
                &format!("g{next_id}@sim.test"),
            );
            let created = g.people().batch_create(vec![p]).await.expect("create");
            let rn = created[0].resource_name.clone().unwrap_or_default();
            h.log(format_args!("Google create {rn} g{next_id}@sim.test"));
            h.ever_google.insert(rn.clone());
            g.people()
                .modify_members(group, std::slice::from_ref(&rn), &[])
                .await
                .expect("add to the group");
            h.group_added.insert(rn, step);
        }
        9 | 10 => {
            let people = google_in_key_order(w);
            if people.is_empty() {
                return;
            }
            let rn = resource_name(&people[rng.gen_range(0..people.len())]);
            let title = h.title(rng);
            let mut p = g.people().get(&rn).await.expect("get").expect("exists");
            p.organizations = Some(vec![crmsync_connectors::people1::api::Organization {
                title: Some(title.clone()),
                ..Default::default()
            }]);
            g.people()
                .update_contact(p, "organizations")
                .await
                .expect("update");
            h.log(format_args!("Google edit {rn} job_title={title:?}"));
            h.google_edits.entry(rn).or_default().push((title, step));
        }
        11 => {
            let people = google_in_key_order(w);
            if people.is_empty() {
                return;
            }
            let rn = resource_name(&people[rng.gen_range(0..people.len())]);
            let remove = rng.gen_bool(0.5);
            h.log(format_args!(
                "Google {} {rn}",
                if remove {
                    "remove from group"
                } else {
                    "add to group"
                }
            ));
            if remove {
                g.people()
                    .modify_members(group, &[], std::slice::from_ref(&rn))
                    .await
                    .expect("remove from the group");
            } else {
                g.people()
                    .modify_members(group, std::slice::from_ref(&rn), &[])
                    .await
                    .expect("add to the group");
                h.group_added.insert(rn, step);
            }
        }
        12 => {
            let people = google_in_key_order(w);
            if people.is_empty() {
                return;
            }
            let rn = resource_name(&people[rng.gen_range(0..people.len())]);
            h.log(format_args!("Google delete {rn}"));
            w.google_delete_contact(&rn).await;
            h.google_deleted.insert(rn, step);
        }
        _ => {}
    }
}

/// Runs one seed; returns what it exercised (so the caller can tell the parking path, the deletes
/// and the overwritten edits were reached at all).
async fn simulate(db: TestDb, seed: u64, rounds: usize) -> Figures {
    let mut parked = 0;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut config = SyncConfig {
        people_page_size: 3,
        ..Default::default()
    };
    config.contacts_policy.pending_confirm_after = chrono::Duration::zero();
    let w = SyncWorld::with_config(db, config).await;
    let g = w.google_as("alice@example.com").await;
    let group = g
        .people()
        .ensure_group("CRM")
        .await
        .expect("group")
        .resource_name
        .expect("name");
    let mut next_id = 0u32;
    let mut h = History::default();
    for _ in 0..rounds {
        // The user's own acts are not subject to the faults meant for the engine.
        w.emu.emulator().clear_faults();
        for _ in 0..rng.gen_range(1..6) {
            act(&w, &g, &group, &mut rng, &mut h, &mut next_id).await;
        }
        // Faults and a crash, sometimes.
        let mut faults =
            vec![
                FaultRule::error("people.people.batchCreateContacts", 400, 1_000_000)
                    .body_contains("@refused.test"),
            ];
        if rng.gen_bool(0.3) {
            faults.push(FaultRule::error("people.people.connections.list", 503, 1));
        }
        if rng.gen_bool(0.3) {
            faults.push(FaultRule::error(
                "people.people.batchUpdateContacts",
                429,
                1,
            ));
        }
        if rng.gen_bool(0.3) {
            faults.push(FaultRule::error("people.people.batchCreateContacts", 0, 1).applied());
        }
        h.log(format_args!("faults {faults:?}"));
        w.emu.emulator().set_faults(faults);
        if rng.gen_bool(0.1) {
            h.log(format_args!("sync tokens expire"));
            w.emu
                .emulator()
                .expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
        }
        let engine = if rng.gen_bool(0.4) {
            let point = CrashPoint::ALL[rng.gen_range(0..CrashPoint::ALL.len())];
            let nth = rng.gen_range(1..3);
            h.log(format_args!("crash at {point:?}, hit {nth}"));
            w.engine.with_crash_plan(Arc::new(CrashAt::new(point, nth)))
        } else {
            w.engine.clone()
        };
        let r = engine
            .sync(
                w.alice.id,
                SyncKind::Contacts,
                Trigger::Manual,
                RunOptions::default(),
            )
            .await;
        h.log(format_args!("run: {r:?}"));
        if let Ok(r) = r {
            parked += r
                .errors
                .iter()
                .filter(|e| e.message.contains("parked"))
                .count();
        }
        h.observe(&w);
    }
    // Quiescence: faults off, run until nothing is left to do.
    w.emu.emulator().clear_faults();
    for _ in 0..4 {
        w.sync_contacts().await;
    }
    h.observe(&w);
    let (edits_checked, edits_overwritten) = check_invariants(&w, seed, &h).await;
    Figures {
        acts: h.step,
        crm_deletes: h.crm_deleted.len(),
        google_deletes: h.google_deleted.len(),
        edits_checked,
        edits_overwritten,
        parked,
    }
}

/// Prints what the store knows of a CRM contact (its record, links and journal), to read with a
/// failing seed.
fn dump_record(w: &SyncWorld, crm_id: &str) {
    let id: Option<ContactId> = crm_id.parse().ok();
    let record = id.and_then(|id| {
        w.store
            .read(|c| contacts::find_contact(c, id))
            .ok()
            .flatten()
    });
    eprintln!("CONTACT {crm_id} {record:?}");
    let links = w
        .store
        .read(|c| {
            sync_state::links_by_crm_ids(c, w.alice.id, SyncKind::Contacts, &[crm_id.to_string()])
        })
        .unwrap_or_default();
    for l in links {
        eprintln!(
            "LINK {crm_id} {:?} {:?} {:?} end={:?}",
            l.state, l.google_id, l.snapshot, l.end_reason
        );
    }
    for j in w
        .store
        .read(|c| sync_state::journal_of_record(c, crm_id))
        .unwrap_or_default()
    {
        let e = j.entry;
        eprintln!(
            "JOURNAL {crm_id} run={} {} {} {} {:?} field={:?} before={:?} after={:?}",
            e.run_id, e.side, e.action, e.rule, e.google_id, e.field, e.before, e.after
        );
    }
}

/// Checks the invariants; returns how many last edits were checked and how many of them the
/// sync overwrote.
async fn check_invariants(w: &SyncWorld, seed: u64, h: &History) -> (usize, usize) {
    let tag = w.tag.id;
    let crm = w.crm_all();
    let group = w.group().expect("group");
    let members = w.group_members();
    let all_google = w.google_contacts();
    let member_names: BTreeSet<String> = members.iter().map(resource_name).collect();
    let google_by_name: BTreeMap<String, &Value> =
        all_google.iter().map(|p| (resource_name(p), p)).collect();
    let crm_record = |id: &ContactId| {
        w.store
            .read(|c| contacts::find_contact(c, *id))
            .expect("read")
    };

    // The sync deleted nothing in the CRM: every contact the test did not delete is live, and
    // those it deleted stay deleted.
    for id in &h.ever_crm {
        let c = crm_record(id).unwrap_or_else(|| panic!("seed {seed}: CRM contact {id} vanished"));
        assert_eq!(
            c.deleted_at.is_some(),
            h.crm_deleted.contains_key(id),
            "seed {seed}: CRM contact {id} deleted by the sync, or brought back from a delete"
        );
    }
    // ... nor in Google.
    for rn in &h.ever_google {
        assert_eq!(
            google_by_name.contains_key(rn),
            !h.google_deleted.contains_key(rn),
            "seed {seed}: Google contact {rn} deleted by the sync"
        );
    }
    let stats = w.emu.emulator().stats();
    assert_eq!(
        stats.count("people.people.deleteContact")
            + stats.count("people.people.batchDeleteContacts"),
        h.google_deleted.len() as u64,
        "seed {seed}: the sync called a People delete"
    );

    // A Google delete untags the CRM contact it was linked to, and keeps it.
    for (rn, deleted_at) in &h.google_deleted {
        let linked = w
            .store
            .read(|c| {
                sync_state::links_by_google_ids(
                    c,
                    w.alice.id,
                    SyncKind::Contacts,
                    std::slice::from_ref(rn),
                )
            })
            .expect("links");
        let crm_ids: BTreeSet<String> = linked
            .into_iter()
            .map(|l| l.crm_id)
            .chain(h.pairs.iter().filter(|p| &p.1 == rn).map(|p| p.0.clone()))
            .collect();
        for crm_id in crm_ids {
            let id: ContactId = crm_id.parse().expect("a contact id");
            let c = crm_record(&id).expect("exists");
            let tagged_later = h.crm_tagged.get(&id).is_some_and(|s| s > deleted_at);
            if c.deleted_at.is_none() && !tagged_later {
                if c.tags.contains(&tag) {
                    dump_record(w, &crm_id);
                }
                assert!(
                    !c.tags.contains(&tag),
                    "seed {seed}: {rn} was deleted in Google but its CRM contact {id} is still tagged"
                );
            }
        }
    }
    // A CRM delete takes the Google contact out of the group and keeps it.
    for (id, deleted_at) in &h.crm_deleted {
        let linked = w
            .store
            .read(|c| {
                sync_state::links_by_crm_ids(c, w.alice.id, SyncKind::Contacts, &[id.to_string()])
            })
            .expect("links");
        let names: BTreeSet<String> = linked
            .into_iter()
            .filter_map(|l| l.google_id)
            .chain(
                h.pairs
                    .iter()
                    .filter(|p| p.0 == id.to_string())
                    .map(|p| p.1.clone()),
            )
            .collect();
        for rn in names {
            let added_later = h.group_added.get(&rn).is_some_and(|s| s > deleted_at);
            if !added_later {
                assert!(
                    !member_names.contains(&rn),
                    "seed {seed}: CRM contact {id} was deleted but {rn} is still in the group"
                );
            }
        }
    }

    // No duplicates: every address appears once among live CRM contacts and once in Google.
    let crm_emails: Vec<String> = crm
        .iter()
        .flat_map(|c| c.data.emails.iter().map(|e| e.address.to_lowercase()))
        .collect();
    let unique: BTreeSet<&String> = crm_emails.iter().collect();
    assert_eq!(
        unique.len(),
        crm_emails.len(),
        "seed {seed}: duplicate CRM contacts {crm_emails:?}"
    );
    let g_emails = emails_of(&all_google);
    let g_unique: BTreeSet<&String> = g_emails.iter().collect();
    assert_eq!(
        g_unique.len(),
        g_emails.len(),
        "seed {seed}: duplicate Google contacts {g_emails:?}"
    );
    // The tag and the group describe the same contacts, pairwise equal.
    let links = w
        .store
        .read(|c| {
            sync_state::links_in_state(
                c,
                w.alice.id,
                SyncKind::Contacts,
                LinkState::Active,
                None,
                10_000,
            )
        })
        .expect("links");
    let by_google: BTreeMap<String, String> = links
        .iter()
        .filter_map(|l| l.google_id.clone().map(|g| (g, l.crm_id.clone())))
        .collect();
    let tagged: BTreeSet<String> = crm
        .iter()
        .filter(|c| c.tags.contains(&tag))
        .map(|c| c.id.to_string())
        .collect();
    let linked_crm: BTreeSet<String> = links.iter().map(|l| l.crm_id.clone()).collect();
    for id in tagged.symmetric_difference(&linked_crm) {
        dump_record(w, id);
    }
    assert_eq!(
        tagged, linked_crm,
        "seed {seed}: tagged CRM contacts and active links differ"
    );
    let linked_google: BTreeSet<String> = by_google.keys().cloned().collect();
    for rn in member_names.symmetric_difference(&linked_google) {
        eprintln!("GOOGLE {rn} {:?}", google_by_name.get(rn));
        if let Some(crm_id) = by_google.get(rn) {
            dump_record(w, crm_id);
        }
    }
    assert_eq!(
        member_names, linked_google,
        "seed {seed}: group members and active links differ (group {group})"
    );
    let people: Vec<crmsync_connectors::Person> = members
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    for p in &people {
        let rn = p.resource_name.clone().unwrap_or_default();
        let crm_id = &by_google[&rn];
        let c = crm
            .iter()
            .find(|c| &c.id.to_string() == crm_id)
            .expect("linked CRM contact is live");
        assert_eq!(
            contact_wire::person_fields(p),
            contact_map::contact_fields(&c.data),
            "seed {seed}: {rn} and {crm_id} did not converge"
        );
    }

    // No edit lost: the last title the test wrote on a record is still there (on both sides
    // when the record is linked, checked above), or the sync overwrote it and journaled it.
    let overwritten = |crm_id: &str, side: &str, google_id: Option<&str>, value: &str| {
        w.store
            .read(|c| sync_state::journal_of_record(c, crm_id))
            .expect("journal")
            .iter()
            .any(|j| {
                j.entry.side == side
                    && j.entry.action == "update"
                    && j.entry.field.as_deref() == Some("job_title")
                    && j.entry.before == Some(Value::from(value))
                    && (google_id.is_none() || j.entry.google_id.as_deref() == google_id)
            })
    };
    let (mut checked, mut lost_to_the_other_side) = (0, 0);
    for (id, edits) in &h.crm_edits {
        let (value, _) = edits.last().expect("an edit");
        let c = crm_record(id).expect("exists");
        checked += 1;
        if crm_title(&c) != value.as_str() {
            lost_to_the_other_side += 1;
            assert!(
                overwritten(&id.to_string(), "crm", None, value),
                "seed {seed}: CRM edit job_title={value:?} of {id} lost: now {:?}, not in the journal",
                crm_title(&c)
            );
        }
    }
    for (rn, edits) in &h.google_edits {
        let (value, step) = edits.last().expect("an edit");
        if h.google_deleted.get(rn).is_some_and(|d| d > step) {
            // The user deleted the contact after editing it.
            continue;
        }
        let p = google_by_name
            .get(rn)
            .unwrap_or_else(|| panic!("seed {seed}: {rn} vanished"));
        checked += 1;
        if google_title(p) != value.as_str() {
            lost_to_the_other_side += 1;
            let linked = w
                .store
                .read(|c| {
                    sync_state::links_by_google_ids(
                        c,
                        w.alice.id,
                        SyncKind::Contacts,
                        std::slice::from_ref(rn),
                    )
                })
                .expect("links");
            let crm_ids: BTreeSet<String> = linked
                .into_iter()
                .map(|l| l.crm_id)
                .chain(h.pairs.iter().filter(|p| &p.1 == rn).map(|p| p.0.clone()))
                .collect();
            assert!(
                crm_ids
                    .iter()
                    .any(|crm_id| overwritten(crm_id, "google", Some(rn), value)),
                "seed {seed}: Google edit job_title={value:?} of {rn} lost: now {:?}, not in the journal",
                google_title(p)
            );
        }
    }
    // Nothing invented: every title on either side, and every title the sync wrote, is one the
    // test wrote.
    let known = |v: &Value| v.is_null() || v.as_str().is_some_and(|s| h.written.contains(s));
    for c in &crm {
        assert!(
            known(&crm_title(c)),
            "seed {seed}: {} holds {:?}",
            c.id,
            crm_title(c)
        );
    }
    for p in &all_google {
        assert!(
            known(&google_title(p)),
            "seed {seed}: {} holds {:?}",
            resource_name(p),
            google_title(p)
        );
    }
    for id in &h.ever_crm {
        for j in w
            .store
            .read(|c| sync_state::journal_of_record(c, &id.to_string()))
            .expect("journal")
        {
            if j.entry.action == "update" && j.entry.field.as_deref() == Some("job_title") {
                let after = j.entry.after.clone().unwrap_or(Value::Null);
                assert!(
                    known(&after),
                    "seed {seed}: the sync wrote job_title={after:?} on {id}"
                );
            }
        }
    }

    // N6: converged means one more run writes nothing.
    let writes = w.people_writes();
    let r = w.sync_contacts().await;
    assert_eq!(
        (r.counts.writes(), w.people_writes()),
        (0, writes),
        "seed {seed}: a settled run wrote: {:?}",
        r.counts
    );
    (checked, lost_to_the_other_side)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_sqlite() {
    let mut total = Figures::default();
    let test = "sync_simulation::simulation_sqlite";
    for f in for_each_seed(seed_list(0, seeds(24)), test, |seed| {
        simulate(TestDb::sqlite(), seed, 6)
    })
    .await
    {
        total.add(f);
    }
    eprintln!("contacts simulation (SQLite): {total:?}");
    if replayed_seed().is_none() {
        assert!(
            total.parked > 0,
            "no refused contact was ever parked: the parking path was not reached"
        );
        assert!(
            total.crm_deletes > 0 && total.google_deletes > 0 && total.edits_overwritten > 0,
            "deletes or overwritten edits were never reached: {total:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_postgres() {
    let mut total = Figures::default();
    let test = "sync_simulation::simulation_postgres";
    for f in for_each_seed(seed_list(1000, seeds(24) / 3), test, |seed| {
        simulate(TestDb::postgres(), seed, 6)
    })
    .await
    {
        total.add(f);
    }
    eprintln!("contacts simulation (PostgreSQL): {total:?}");
}
