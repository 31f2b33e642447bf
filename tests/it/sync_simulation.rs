//! Seeded simulation of the whole contacts engine (sync-testing-plan B7.3 L2, small scale): random
//! edits on both sides, injected Google faults (5xx, 429, answers lost after the write, and
//! contacts Google refuses until the faults stop, which get parked) and crashes at random named
//! points, for many seeds. After the faults stop and the runs settle, the
//! invariants must hold: both sides converged on every link, the group and the tag describe the
//! same set, no duplicate on either side, nothing deleted by the sync, and one more run writes
//! nothing. A failing seed is printed and replays identically.

use crate::sync_support::*;
use crmsync::sync::crash::{CrashAt, CrashPoint};
use crmsync::sync::{RunOptions, SyncConfig, Trigger};
use crmsync_emulator::FaultRule;
use crmsync_engine::contact_map;
use crmsync_engine::ids::{ContactId, SyncKind};
use crmsync_engine::planner::LinkState;
use crmsync_schema::test_support::TestDb;
use crmsync_schema::{contacts, sync_state};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const FIRST: [&str; 6] = ["Ada", "Bob", "Cy", "Di", "Ed", "Flo"];
const TITLES: [&str; 4] = ["CTO", "Buyer", "Analyst", "Founder"];

/// Runs one seed; returns how many record failures ended parked (so the caller can tell the
/// parking path was reached at all).
async fn simulate(db: TestDb, seed: u64, rounds: usize) -> usize {
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
    let mut ever_crm: BTreeSet<ContactId> = BTreeSet::new();
    for round in 0..rounds {
        // Edits on both sides.
        for _ in 0..rng.gen_range(1..6) {
            let crm = w.crm_all();
            match rng.gen_range(0..10) {
                0..=2 => {
                    next_id += 1;
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
                    ever_crm.insert(c.id);
                }
                3 | 4 if !crm.is_empty() => {
                    let c = &crm[rng.gen_range(0..crm.len())];
                    let title = TITLES[rng.gen_range(0..TITLES.len())];
                    w.crm_update(c.id, |d| d.job_title = Some(title.into()));
                }
                5 if !crm.is_empty() => {
                    let c = &crm[rng.gen_range(0..crm.len())];
                    let tag = w.tag.id;
                    if c.tags.contains(&tag) {
                        w.store
                            .write(|x| contacts::untag_contact(x, c.id, tag, now()))
                            .expect("untag");
                    } else {
                        w.store
                            .write(|x| contacts::tag_contact(x, c.id, tag, now()))
                            .expect("tag");
                    }
                }
                6 => {
                    next_id += 1;
                    let p = person(
                        FIRST[rng.gen_range(0..FIRST.len())],
                        &format!("G{next_id}"),
                        &format!("g{next_id}@sim.test"),
                    );
                    if let Ok(created) = g.people().batch_create(vec![p]).await {
                        let rn = created[0].resource_name.clone().unwrap_or_default();
                        let _ = g.people().modify_members(&group, &[rn], &[]).await;
                    }
                }
                7 | 8 => {
                    let people = w.google_contacts();
                    if people.is_empty() {
                        continue;
                    }
                    let rn = people[rng.gen_range(0..people.len())]["resourceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if let Ok(Some(mut p)) = g.people().get(&rn).await {
                        let title = TITLES[rng.gen_range(0..TITLES.len())];
                        p.organizations =
                            Some(vec![crmsync_connectors::people1::api::Organization {
                                title: Some(title.into()),
                                ..Default::default()
                            }]);
                        let _ = g.people().update_contact(p, "organizations").await;
                    }
                }
                _ => {
                    let people = w.google_contacts();
                    if people.is_empty() {
                        continue;
                    }
                    let rn = people[rng.gen_range(0..people.len())]["resourceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if rng.gen_bool(0.5) {
                        let _ = g
                            .people()
                            .modify_members(&group, &[], std::slice::from_ref(&rn))
                            .await;
                    } else {
                        let _ = g
                            .people()
                            .modify_members(&group, std::slice::from_ref(&rn), &[])
                            .await;
                    }
                }
            }
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
        w.emu.emulator().set_faults(faults);
        if rng.gen_bool(0.1) {
            w.emu
                .emulator()
                .expire_sync_tokens("alice@example.com", crmsync_emulator::Api::People);
        }
        let engine = if rng.gen_bool(0.4) {
            let point = CrashPoint::ALL[rng.gen_range(0..CrashPoint::ALL.len())];
            w.engine
                .with_crash_plan(Arc::new(CrashAt::new(point, rng.gen_range(1..3))))
        } else {
            w.engine.clone()
        };
        if let Ok(r) = engine
            .sync(
                w.alice.id,
                SyncKind::Contacts,
                Trigger::Manual,
                RunOptions::default(),
            )
            .await
        {
            parked += r
                .errors
                .iter()
                .filter(|e| e.message.contains("parked"))
                .count();
        }
        let _ = round;
    }
    // Quiescence: faults off, run until nothing is left to do.
    w.emu.emulator().clear_faults();
    for _ in 0..4 {
        w.sync_contacts().await;
    }
    check_invariants(&w, seed, &ever_crm).await;
    parked
}

async fn check_invariants(w: &SyncWorld, seed: u64, ever_crm: &BTreeSet<ContactId>) {
    let tag = w.tag.id;
    let crm = w.crm_all();
    // Nothing the test created in the CRM disappeared (the sync never deletes).
    for id in ever_crm {
        assert!(
            w.store
                .read(|c| contacts::find_contact(c, *id))
                .expect("read")
                .is_some(),
            "seed {seed}: CRM contact {id} vanished"
        );
    }
    let group = w.group().expect("group");
    let members = w.group_members();
    let all_google = w.google_contacts();
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
    assert_eq!(
        tagged, linked_crm,
        "seed {seed}: tagged CRM contacts and active links differ"
    );
    let member_names: BTreeSet<String> = members
        .iter()
        .filter_map(|p| p["resourceName"].as_str().map(String::from))
        .collect();
    let linked_google: BTreeSet<String> = by_google.keys().cloned().collect();
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
            contact_map::person_fields(p),
            contact_map::contact_fields(&c.data),
            "seed {seed}: {rn} and {crm_id} did not converge"
        );
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_sqlite() {
    let mut parked = 0;
    for seed in 0..seeds(24) {
        parked += simulate(TestDb::sqlite(), seed, 6).await;
    }
    assert!(
        parked > 0,
        "no refused contact was ever parked: the parking path was not reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_postgres() {
    for seed in 1000..1000 + seeds(24) / 3 {
        simulate(TestDb::postgres(), seed, 6).await;
    }
}
