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
//! and Google give them). `CRMSYNC_SIM_SEEDS=N` runs more seeds, `CRMSYNC_SIM_FIRST=F` starts at
//! another seed, `CRMSYNC_SIM_REPORT=FILE` appends each seed's record (acts, faults, crashes,
//! runs, and the counts of broken invariants) to FILE as a JSON line (`scripts/soak`).
//!
//! The acts and checks work on one [`Party`] (a user, their sync tag and group, the contacts
//! whose addresses start with their prefix), so the combined simulation
//! (`sync_sim_combined.rs`) drives three users with them.

use crate::sync_support::*;
use crmsync::sync::crash::{CrashAt, CrashPoint};
use crmsync::sync::error::SyncError;
use crmsync::sync::{RunOptions, RunState, SyncConfig, SyncEngine, Trigger};
use crmsync_connectors::contact_wire;
use crmsync_connectors::GoogleAccount;
use crmsync_emulator::FaultRule;
use crmsync_engine::contact_map;
use crmsync_engine::fields;
use crmsync_engine::ids::{ContactId, SyncKind, TagId};
use crmsync_engine::model::User;
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
pub struct History {
    pub step: usize,
    /// Every job title the test wrote on a CRM contact, in order, with its step.
    crm_edits: BTreeMap<ContactId, Vec<(String, usize)>>,
    /// Every job title the test wrote on a Google contact (by resource name).
    google_edits: BTreeMap<String, Vec<(String, usize)>>,
    crm_deleted: BTreeMap<ContactId, usize>,
    pub google_deleted: BTreeMap<String, usize>,
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
}

/// One user's contacts as the simulation drives them: the user, their sync tag, their Google
/// account and group, and what the test did to them. The user's contacts are those whose
/// address starts with `prefix` (empty with one user), so that several users' acts and checks
/// do not see each other's contacts.
pub struct Party {
    pub user: User,
    pub tag: TagId,
    pub prefix: String,
    pub g: GoogleAccount,
    pub group: String,
    pub h: History,
    next_id: u32,
}

impl Party {
    /// The user's party; makes their sync group in Google (as the user would).
    pub async fn new(w: &SyncWorld, user: User, tag: TagId, prefix: &str) -> Party {
        let g = w.google_as(&user.email).await;
        let group = g
            .people()
            .ensure_group("CRM")
            .await
            .expect("group")
            .resource_name
            .expect("name");
        Party {
            user,
            tag,
            prefix: prefix.to_string(),
            g,
            group,
            h: History::default(),
            next_id: 0,
        }
    }

    fn email(&self) -> &str {
        &self.user.email
    }

    fn mine(&self, address: Option<&str>) -> bool {
        address.is_some_and(|a| a.to_lowercase().starts_with(&self.prefix))
    }

    /// The user's live CRM contacts (by address).
    fn crm(&self, w: &SyncWorld) -> Vec<crmsync_engine::model::Contact> {
        w.crm_all()
            .into_iter()
            .filter(|c| self.mine(c.data.emails.first().map(|e| e.address.as_str())))
            .collect()
    }

    fn links(&self, w: &SyncWorld) -> Vec<crmsync_schema::sync_state::Link> {
        w.store
            .read(|c| {
                sync_state::links_in_state(
                    c,
                    self.user.id,
                    SyncKind::Contacts,
                    LinkState::Active,
                    None,
                    10_000,
                )
            })
            .expect("links")
    }

    /// Records what exists and what is linked after a run.
    pub fn observe(&mut self, w: &SyncWorld) {
        let crm = self.crm(w);
        self.h.ever_crm.extend(crm.iter().map(|c| c.id));
        self.h.ever_google.extend(
            w.google_contacts_of(self.email())
                .iter()
                .filter_map(|p| p["resourceName"].as_str().map(String::from)),
        );
        let links = self.links(w);
        self.h.pairs.extend(
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

/// The user's live CRM contacts in a replayable order (by address; ids are random).
fn crm_in_key_order(w: &SyncWorld, p: &Party) -> Vec<crmsync_engine::model::Contact> {
    let mut all = p.crm(w);
    all.sort_by_key(|c| {
        (
            c.data.emails.first().map(|e| e.address.to_lowercase()),
            c.id.to_string(),
        )
    });
    all
}

/// `email`'s Google contacts in a replayable order (by address; resource names are random).
fn google_in_key_order(w: &SyncWorld, email: &str) -> Vec<Value> {
    let mut all = w.google_contacts_of(email);
    all.sort_by_key(|p| (emails_of(std::slice::from_ref(p)), resource_name(p)));
    all
}

/// One act of the user, on either side.
pub async fn act(w: &SyncWorld, p: &mut Party, rng: &mut StdRng) {
    p.h.step += 1;
    let crm = crm_in_key_order(w, p);
    let Party {
        user,
        tag,
        prefix,
        g,
        group,
        h,
        next_id,
    } = p;
    let (step, tag, email, group) = (h.step, *tag, user.email.as_str(), group.as_str());
    match rng.gen_range(0..13) {
        0..=2 => {
            *next_id += 1;
            // Some addresses Google refuses until the faults stop (parked records).
            let domain = if rng.gen_bool(0.15) {
                "refused.test"
            } else {
                "sim.test"
            };
            let data = contact_data(
                FIRST[rng.gen_range(0..FIRST.len())],
                &format!("C{next_id}"),
                &format!("{prefix}c{next_id}@{domain}"),
            );
            let c = w
                .store
                .write(|c| {
                    contacts::create_contact(
                        c,
                        &data,
                        &[tag],
                        None,
                        crmsync_schema::changes::Origin::Api,
                        now(),
                    )
                })
                .expect("create a contact");
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
            let new = person(
                FIRST[rng.gen_range(0..FIRST.len())],
                &format!("G{next_id}"),
                &format!("{prefix}g{next_id}@sim.test"),
            );
            let created = g.people().batch_create(vec![new]).await.expect("create");
            let rn = created[0].resource_name.clone().unwrap_or_default();
            h.log(format_args!(
                "Google create {rn} {prefix}g{next_id}@sim.test"
            ));
            h.ever_google.insert(rn.clone());
            g.people()
                .modify_members(group, std::slice::from_ref(&rn), &[])
                .await
                .expect("add to the group");
            h.group_added.insert(rn, step);
        }
        9 | 10 => {
            let people = google_in_key_order(w, email);
            if people.is_empty() {
                return;
            }
            let rn = resource_name(&people[rng.gen_range(0..people.len())]);
            let title = h.title(rng);
            let mut person = g.people().get(&rn).await.expect("get").expect("exists");
            person.organizations = Some(vec![crmsync_connectors::people1::api::Organization {
                title: Some(title.clone()),
                ..Default::default()
            }]);
            g.people()
                .update_contact(person, "organizations")
                .await
                .expect("update");
            h.log(format_args!("Google edit {rn} job_title={title:?}"));
            h.google_edits.entry(rn).or_default().push((title, step));
        }
        11 => {
            let people = google_in_key_order(w, email);
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
            let people = google_in_key_order(w, email);
            if people.is_empty() {
                return;
            }
            let rn = resource_name(&people[rng.gen_range(0..people.len())]);
            h.log(format_args!("Google delete {rn}"));
            w.google_delete_contact_as(email, &rn).await;
            h.google_deleted.insert(rn, step);
        }
        _ => {}
    }
}

/// The People faults of a round: contacts Google refuses until the faults stop (always), and
/// sometimes a failed listing, a rate-limited update, a create applied with its answer lost.
pub fn people_faults(rng: &mut StdRng) -> Vec<FaultRule> {
    let mut faults = vec![
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
    faults
}

/// Runs one seed; returns what it exercised (so the caller can tell the parking path, the deletes
/// and the overwritten edits were reached at all) and its tally.
async fn simulate(db: TestDb, seed: u64, rounds: usize) -> (Figures, Tally) {
    let mut parked = 0;
    let mut tally = Tally::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut config = SyncConfig {
        people_page_size: 3,
        ..Default::default()
    };
    config.contacts_policy.pending_confirm_after = chrono::Duration::zero();
    let w = SyncWorld::with_config(db, config).await;
    let mut p = Party::new(&w, w.alice.clone(), w.tag.id, "").await;
    let emu = w.emu.emulator();
    for _ in 0..rounds {
        // The user's own acts are not subject to the faults meant for the engine.
        tally.clear_faults(emu);
        for _ in 0..rng.gen_range(1..6) {
            act(&w, &mut p, &mut rng).await;
        }
        // Faults and a crash, sometimes.
        let faults = people_faults(&mut rng);
        p.h.log(format_args!("faults {faults:?}"));
        tally.set_faults(emu, faults);
        if rng.gen_bool(0.1) {
            p.h.log(format_args!("sync tokens expire"));
            tally.faults += 1;
            emu.expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
        }
        let engine = if rng.gen_bool(0.4) {
            let point = CrashPoint::ALL[rng.gen_range(0..CrashPoint::ALL.len())];
            let nth = rng.gen_range(1..3);
            p.h.log(format_args!("crash at {point:?}, hit {nth}"));
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
        p.h.log(format_args!("run: {r:?}"));
        tally.runs += 1;
        match r {
            Ok(r) => {
                parked += r
                    .errors
                    .iter()
                    .filter(|e| e.message.contains("parked"))
                    .count()
            }
            Err(SyncError::Crashed(_)) => tally.crashes += 1,
            Err(_) => {}
        }
        p.observe(&w);
    }
    // Quiescence: faults off, run until nothing is left to do.
    tally.clear_faults(emu);
    for _ in 0..4 {
        w.sync_contacts().await;
        tally.runs += 1;
    }
    p.observe(&w);
    let (edits_checked, edits_overwritten) = check_invariants(&w, &w.engine, &p, &mut tally).await;
    check_people_deletes(&w, p.h.google_deleted.len(), &mut tally);
    tally.acts = p.h.step as u64;
    let figures = Figures {
        acts: p.h.step,
        crm_deletes: p.h.crm_deleted.len(),
        google_deletes: p.h.google_deleted.len(),
        edits_checked,
        edits_overwritten,
        parked,
    };
    (figures, tally)
}

/// Prints what the store knows of a CRM contact (its record, links and journal), to read with a
/// failing seed.
fn dump_record(w: &SyncWorld, p: &Party, crm_id: &str) {
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
            sync_state::links_by_crm_ids(c, p.user.id, SyncKind::Contacts, &[crm_id.to_string()])
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

/// The sync never deletes a Google contact: the only People deletes are the test's own
/// (`deleted` of them, over every user).
pub fn check_people_deletes(w: &SyncWorld, deleted: usize, tally: &mut Tally) {
    let stats = w.emu.emulator().stats();
    let calls = stats.count("people.people.deleteContact")
        + stats.count("people.people.batchDeleteContacts");
    tally.check(calls == deleted as u64, Violation::WrongDelete, || {
        format!("the sync called a People delete: {calls} delete calls, the test made {deleted}")
    });
}

/// Checks the invariants of one user's contacts, counting every violation in `tally`; returns
/// how many last edits were checked and how many of them the sync overwrote. The settled run
/// goes through `engine`.
pub async fn check_invariants(
    w: &SyncWorld,
    engine: &SyncEngine,
    p: &Party,
    tally: &mut Tally,
) -> (usize, usize) {
    let (h, tag, who) = (&p.h, p.tag, p.email());
    let crm = p.crm(w);
    let members = w.group_members_of(who);
    let all_google = w.google_contacts_of(who);
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
        let Some(c) = crm_record(id) else {
            tally.check(false, Violation::WrongDelete, || {
                format!("CRM contact {id} vanished")
            });
            continue;
        };
        tally.check(
            c.deleted_at.is_some() == h.crm_deleted.contains_key(id),
            Violation::WrongDelete,
            || format!("CRM contact {id} deleted by the sync, or brought back from a delete"),
        );
    }
    // ... nor in Google.
    for rn in &h.ever_google {
        tally.check(
            google_by_name.contains_key(rn) != h.google_deleted.contains_key(rn),
            Violation::WrongDelete,
            || format!("{who}'s Google contact {rn} deleted by the sync"),
        );
    }

    // A Google delete untags the CRM contact it was linked to, and keeps it.
    for (rn, deleted_at) in &h.google_deleted {
        let linked = w
            .store
            .read(|c| {
                sync_state::links_by_google_ids(
                    c,
                    p.user.id,
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
            let Some(c) = crm_record(&id) else { continue };
            let tagged_later = h.crm_tagged.get(&id).is_some_and(|s| s > deleted_at);
            if c.deleted_at.is_none() && !tagged_later {
                if c.tags.contains(&tag) {
                    dump_record(w, p, &crm_id);
                }
                tally.check(!c.tags.contains(&tag), Violation::WrongDelete, || {
                    format!("{rn} was deleted in Google but its CRM contact {id} is still tagged")
                });
            }
        }
    }
    // A CRM delete takes the Google contact out of the group and keeps it.
    for (id, deleted_at) in &h.crm_deleted {
        let linked = w
            .store
            .read(|c| {
                sync_state::links_by_crm_ids(c, p.user.id, SyncKind::Contacts, &[id.to_string()])
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
                tally.check(!member_names.contains(&rn), Violation::WrongDelete, || {
                    format!("CRM contact {id} was deleted but {rn} is still in the group")
                });
            }
        }
    }

    // No duplicates: every address appears once among live CRM contacts and once in Google.
    let mut crm_emails: BTreeMap<String, usize> = BTreeMap::new();
    for e in crm.iter().flat_map(|c| c.data.emails.iter()) {
        *crm_emails.entry(e.address.to_lowercase()).or_default() += 1;
    }
    for (address, n) in &crm_emails {
        tally.check(*n == 1, Violation::Duplicate, || {
            format!("{n} CRM contacts have the address {address}")
        });
    }
    let mut g_emails: BTreeMap<String, usize> = BTreeMap::new();
    for e in emails_of(&all_google) {
        *g_emails.entry(e).or_default() += 1;
    }
    for (address, n) in &g_emails {
        tally.check(*n == 1, Violation::Duplicate, || {
            format!("{n} of {who}'s Google contacts have the address {address}")
        });
    }
    // The tag and the group describe the same contacts, pairwise equal.
    let links = p.links(w);
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
        dump_record(w, p, id);
        tally.check(false, Violation::Orphan, || {
            format!(
                "CRM contact {id} is {} (tagged contacts and {who}'s active links differ)",
                if tagged.contains(id) {
                    "tagged without an active link"
                } else {
                    "linked but not tagged"
                }
            )
        });
    }
    let linked_google: BTreeSet<String> = by_google.keys().cloned().collect();
    for rn in member_names.symmetric_difference(&linked_google) {
        eprintln!("GOOGLE {rn} {:?}", google_by_name.get(rn));
        if let Some(crm_id) = by_google.get(rn) {
            dump_record(w, p, crm_id);
        }
        tally.check(false, Violation::Orphan, || {
            format!(
                "{who}'s Google contact {rn} is {} (group {})",
                if member_names.contains(rn) {
                    "in the group without an active link"
                } else {
                    "linked but not in the group"
                },
                p.group
            )
        });
    }
    let people: Vec<crmsync_connectors::Person> = members
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    for person in &people {
        let rn = person.resource_name.clone().unwrap_or_default();
        let Some(crm_id) = by_google.get(&rn) else {
            continue;
        };
        let Some(c) = crm.iter().find(|c| &c.id.to_string() == crm_id) else {
            tally.check(false, Violation::Orphan, || {
                format!("{rn} is linked to {crm_id}, which is not a live contact of {who}")
            });
            continue;
        };
        tally.check(
            contact_wire::person_fields(person) == contact_map::contact_fields(&c.data),
            Violation::WrongValue,
            || {
                format!(
                    "{rn} and {crm_id} did not converge: {:?} vs {:?}",
                    contact_wire::person_fields(person),
                    contact_map::contact_fields(&c.data)
                )
            },
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
        let Some(c) = crm_record(id) else { continue };
        checked += 1;
        if crm_title(&c) != value.as_str() {
            lost_to_the_other_side += 1;
            let journaled = overwritten(&id.to_string(), "crm", None, value);
            if !journaled {
                dump_record(w, p, &id.to_string());
            }
            tally.check(journaled, Violation::LostEdit, || {
                format!(
                    "CRM edit job_title={value:?} of {id} lost: now {:?}, not in the journal",
                    crm_title(&c)
                )
            });
        }
    }
    for (rn, edits) in &h.google_edits {
        let (value, step) = edits.last().expect("an edit");
        if h.google_deleted.get(rn).is_some_and(|d| d > step) {
            // The user deleted the contact after editing it.
            continue;
        }
        let Some(person) = google_by_name.get(rn) else {
            // Counted as a wrong delete above.
            continue;
        };
        checked += 1;
        if google_title(person) != value.as_str() {
            lost_to_the_other_side += 1;
            let linked = w
                .store
                .read(|c| {
                    sync_state::links_by_google_ids(
                        c,
                        p.user.id,
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
            let journaled = crm_ids
                .iter()
                .any(|crm_id| overwritten(crm_id, "google", Some(rn), value));
            if !journaled {
                for crm_id in &crm_ids {
                    dump_record(w, p, crm_id);
                }
            }
            tally.check(journaled, Violation::LostEdit, || {
                format!(
                    "Google edit job_title={value:?} of {rn} lost: now {:?}, not in the journal",
                    google_title(person)
                )
            });
        }
    }
    // Nothing invented: every title on either side, and every title the sync wrote, is one the
    // test wrote.
    let known = |v: &Value| v.is_null() || v.as_str().is_some_and(|s| h.written.contains(s));
    for c in &crm {
        tally.check(known(&crm_title(c)), Violation::WrongValue, || {
            format!("{} holds {:?}", c.id, crm_title(c))
        });
    }
    for person in &all_google {
        tally.check(known(&google_title(person)), Violation::WrongValue, || {
            format!("{} holds {:?}", resource_name(person), google_title(person))
        });
    }
    for id in &h.ever_crm {
        for j in w
            .store
            .read(|c| sync_state::journal_of_record(c, &id.to_string()))
            .expect("journal")
        {
            if j.entry.action == "update" && j.entry.field.as_deref() == Some("job_title") {
                let after = j.entry.after.clone().unwrap_or(Value::Null);
                tally.check(known(&after), Violation::WrongValue, || {
                    format!("the sync wrote job_title={after:?} on {id}")
                });
            }
        }
    }

    // N6: converged means one more run writes nothing.
    let writes = w.people_writes();
    let r = engine
        .sync(
            p.user.id,
            SyncKind::Contacts,
            Trigger::Manual,
            RunOptions::default(),
        )
        .await
        .expect("run completes");
    tally.runs += 1;
    let after = w.people_writes();
    tally.check(
        r.state != RunState::Failed && r.counts.writes() == 0 && after == writes,
        Violation::NoisySecondRun,
        || {
            format!(
                "a settled run of {who} wrote ({} People writes): {r:?}",
                after - writes
            )
        },
    );
    (checked, lost_to_the_other_side)
}

/// Runs shard `shard` of `shards` of a backend's seeds.
async fn run_shard(
    db: fn() -> TestDb,
    first: u64,
    count: u64,
    shard: u64,
    shards: u64,
    test: String,
) {
    let mut total = Figures::default();
    let seeds = shard_seeds(first, seeds(count), shard, shards, &[]);
    let n = seeds.len();
    for f in for_each_seed("contacts", seeds, &test, |seed| simulate(db(), seed, 6)).await {
        total.add(f);
    }
    eprintln!("contacts simulation ({test}, {n} seeds): {total:?}");
    // Each shard's seeds reach the parking path, deletes on both sides and overwritten edits
    // (a soak's table shows what its seeds reached instead).
    if replayed_seed().is_none() && std::env::var("CRMSYNC_SIM_REPORT").is_err() && n >= 8 {
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

/// Seeds from 0 on SQLite, spread over the shards.
async fn sqlite_shard(shard: u64, shards: u64, test: String) {
    run_shard(TestDb::sqlite, 0, SQLITE_SEEDS, shard, shards, test).await
}

/// Seeds from 1000 on PostgreSQL.
async fn postgres_shard(shard: u64, shards: u64, test: String) {
    run_shard(TestDb::postgres, 1000, POSTGRES_SEEDS, shard, shards, test).await
}

/// Seeds per CI run (`bash scripts/test`), over all shards of a backend.
const SQLITE_SEEDS: u64 = 200;
const POSTGRES_SEEDS: u64 = 60;

crate::sim_shards!(
    sqlite_shard,
    4,
    [
        simulation_sqlite_0 = 0,
        simulation_sqlite_1 = 1,
        simulation_sqlite_2 = 2,
        simulation_sqlite_3 = 3,
    ]
);
crate::sim_shards!(
    postgres_shard,
    2,
    [simulation_postgres_0 = 0, simulation_postgres_1 = 1]
);
