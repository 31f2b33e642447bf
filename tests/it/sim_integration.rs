//! End-to-end simulation of a CRM that keeps its own records (SPEC 6.4), on SQLite and
//! PostgreSQL: an "external CRM" with its own small store talks to crmsync only through the
//! public HTTP API (upserts by its own ids with `If-Match`, the change feed, `PATCH` to name a
//! contact the sync brought from Google), while Alice edits Google at random and syncs run.
//!
//! Each round: random acts on both sides, a sync, the CRM reads the feed. After every round the
//! three stores agree on the tagged contacts (no duplicate anywhere), and a field edited on one
//! side only during the round has that side's value everywhere (no lost edit). A failing seed is
//! replayed with `CRMSYNC_SIM_SEED=<n>`; 20 seeds of 8 rounds by default (40 passed on both
//! backends when written), `CRMSYNC_SIM_SEEDS=N` runs N.

use crate::sched_support::ApiWorld;
use crate::sync_support::*;
use crmsync_schema::db_test;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A contact as the external CRM keeps it.
#[derive(Clone, Debug, PartialEq)]
struct Rec {
    id: Option<String>,
    given: String,
    family: String,
    email: String,
    phone: Option<String>,
    tagged: bool,
    version: Option<i64>,
}

/// The external CRM: its records by its own id, and where it is in crmsync's feed.
struct Crm {
    recs: BTreeMap<String, Rec>,
    cursor: i64,
    next: usize,
    /// How many contacts Alice made in Google.
    google_new: usize,
}

/// What a contact looks like on any side: (email, given, family, phone).
type Shape = (String, String, String, Option<String>);

async fn send(
    app: &ApiWorld,
    method: Method,
    path: &str,
    if_match: Option<i64>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.token);
    if let Some(v) = if_match {
        req = req.header("if-match", format!("\"{v}\""));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    crate::support::read(req.send().await.expect("request sent")).await
}

impl Crm {
    fn body(&self, r: &Rec, tag: &str) -> Value {
        let phones: Vec<Value> = r
            .phone
            .iter()
            .map(|p| json!({"number": p, "kind": "mobile"}))
            .collect();
        json!({
            "given_name": r.given, "family_name": r.family,
            "emails": [{"address": r.email, "kind": "work", "primary": true}],
            "phones": phones,
            "tags": if r.tagged { json!([tag]) } else { json!([]) },
        })
    }

    fn absorb(r: &mut Rec, v: &Value, tag: &str) {
        r.id = v["id"].as_str().map(String::from);
        r.given = v["given_name"].as_str().unwrap_or_default().to_string();
        r.family = v["family_name"].as_str().unwrap_or_default().to_string();
        r.phone = v["phones"][0]["number"].as_str().map(String::from);
        r.tagged = v["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == tag));
        r.version = v["version"].as_i64();
    }

    /// Writes one record with `If-Match`; on 412 reads it again and reapplies `edit`.
    async fn write(&mut self, app: &ApiWorld, tag: &str, x: &str, edit: impl Fn(&mut Rec)) {
        for _ in 0..3 {
            let mut r = self.recs[x].clone();
            edit(&mut r);
            let (s, v) = send(
                app,
                Method::PUT,
                &format!("/contacts/by-external-id/{x}"),
                r.version,
                Some(self.body(&r, tag)),
            )
            .await;
            match s {
                StatusCode::OK | StatusCode::CREATED => {
                    Self::absorb(&mut r, &v, tag);
                    self.recs.insert(x.to_string(), r);
                    return;
                }
                StatusCode::PRECONDITION_FAILED => {
                    let (s, v) = app.get(&format!("/contacts/by-external-id/{x}")).await;
                    assert_eq!(s, StatusCode::OK, "{x}: {v}");
                    let mut cur = self.recs[x].clone();
                    Self::absorb(&mut cur, &v, tag);
                    self.recs.insert(x.to_string(), cur);
                }
                other => panic!("PUT {x}: {other} {v}"),
            }
        }
        panic!("PUT {x}: still stale after three reads");
    }

    /// Follows the feed (changes the sync made) and mirrors them.
    async fn follow(&mut self, app: &ApiWorld, tag: &str) {
        loop {
            let (s, page) = app
                .get(&format!(
                    "/changes?after={}&origin=sync&kinds=contacts&limit=50",
                    self.cursor
                ))
                .await;
            assert_eq!(s, StatusCode::OK, "{page}");
            for ch in page["changes"].as_array().expect("changes") {
                assert_eq!(
                    ch["origin"], "sync",
                    "the CRM heard its own write back: {ch}"
                );
                let id = ch["id"].as_str().expect("id").to_string();
                let (s, v) = app.get(&format!("/contacts/{id}")).await;
                let known = self
                    .recs
                    .iter()
                    .find(|(_, r)| r.id.as_deref() == Some(&id))
                    .map(|(x, _)| x.clone());
                if s == StatusCode::NOT_FOUND {
                    if let Some(x) = known {
                        self.recs.remove(&x);
                    }
                    continue;
                }
                assert_eq!(s, StatusCode::OK, "{v}");
                let x = match known.or_else(|| v["external_id"].as_str().map(String::from)) {
                    Some(x) => x,
                    None => {
                        // Brought from Google: the CRM makes its own record and names it.
                        self.next += 1;
                        let x = format!("g-{}", self.next);
                        let (s, named) = app
                            .call(
                                Method::PATCH,
                                &format!("/contacts/{id}"),
                                Some(json!({"external_id": x})),
                            )
                            .await;
                        assert_eq!(s, StatusCode::OK, "{named}");
                        assert_eq!(
                            named["version"], v["version"],
                            "naming a contact is not a change"
                        );
                        x
                    }
                };
                let mut r = self.recs.get(&x).cloned().unwrap_or(Rec {
                    id: None,
                    given: String::new(),
                    family: String::new(),
                    email: v["emails"][0]["address"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    phone: None,
                    tagged: false,
                    version: None,
                });
                Self::absorb(&mut r, &v, tag);
                self.recs.insert(x, r);
            }
            self.cursor = page["next_cursor"].as_i64().expect("next_cursor");
            if page["has_more"] != true {
                break;
            }
        }
    }

    fn shapes(&self) -> Vec<Shape> {
        let mut v: Vec<Shape> = self
            .recs
            .values()
            .filter(|r| r.tagged)
            .map(|r| {
                (
                    r.email.clone(),
                    r.given.clone(),
                    r.family.clone(),
                    r.phone.clone(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn google_shapes(w: &SyncWorld) -> Vec<Shape> {
    let mut v: Vec<Shape> = w
        .group_members()
        .iter()
        .map(|p| {
            (
                p["emailAddresses"][0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase(),
                p["names"][0]["givenName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["names"][0]["familyName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["phoneNumbers"][0]["value"].as_str().map(String::from),
            )
        })
        .collect();
    v.sort();
    v
}

fn crmsync_shapes(w: &SyncWorld) -> Vec<Shape> {
    let mut v: Vec<Shape> = w
        .crm_all()
        .iter()
        .filter(|c| c.deleted_at.is_none() && c.tags.contains(&w.tag.id))
        .map(|c| {
            (
                c.data
                    .emails
                    .first()
                    .map(|e| e.address.to_lowercase())
                    .unwrap_or_default(),
                c.data.given_name.clone(),
                c.data.family_name.clone(),
                c.data.phones.first().map(|p| p.number.clone()),
            )
        })
        .collect();
    v.sort();
    v
}

/// The CRM's initial load: one batch.
async fn load(app: &ApiWorld) -> Crm {
    let tag = app.world.tag.id.to_string();
    let mut crm = Crm {
        recs: BTreeMap::new(),
        cursor: 0,
        next: 0,
        google_new: 0,
    };
    let items: Vec<Value> = (0..12)
        .map(|i| {
            let r = Rec {
                id: None,
                given: format!("Given{i}"),
                family: "Crm".into(),
                email: format!("c{i}@clients.example"),
                phone: None,
                tagged: true,
                version: None,
            };
            let mut b = crm.body(&r, &tag);
            b["external_id"] = json!(format!("c-{i}"));
            crm.recs.insert(format!("c-{i}"), r);
            b
        })
        .collect();
    let (s, loaded) = app
        .call(
            Method::POST,
            "/contacts/batch",
            Some(json!({"items": items})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{loaded}");
    for r in loaded["results"].as_array().expect("results") {
        assert_eq!(r["status"], "created", "{r}");
        let x = r["external_id"].as_str().expect("x");
        let (_, v) = app.get(&format!("/contacts/by-external-id/{x}")).await;
        Crm::absorb(crm.recs.get_mut(x).expect("rec"), &v, &tag);
    }
    crm
}

/// `rounds` rounds of random acts on both sides, checked after each.
async fn simulate(app: &ApiWorld, crm: &mut Crm, seed: u64, rounds: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let tag = app.world.tag.id.to_string();
    let g = app.world.google_as("alice@example.com").await;
    for round in 0..rounds {
        // (email, field, value) edited on one side this round.
        let mut crm_edits: Vec<(String, &str, String)> = Vec::new();
        let mut google_edits: Vec<(String, &str, String)> = Vec::new();
        for _ in 0..rng.gen_range(1..5) {
            let live: Vec<String> = crm
                .recs
                .iter()
                .filter(|(_, r)| r.tagged)
                .map(|(x, _)| x.clone())
                .collect();
            match rng.gen_range(0..10) {
                0..=4 if !live.is_empty() => {
                    let x = live[rng.gen_range(0..live.len())].clone();
                    if rng.gen_bool(0.5) {
                        let v = format!("Crm{round}x{}", rng.gen_range(0..1000));
                        crm_edits.push((crm.recs[&x].email.clone(), "given", v.clone()));
                        crm.write(app, &tag, &x, |r| r.given = v.clone()).await;
                    } else {
                        let v = format!("+44 20 7946 {:04}", rng.gen_range(0..10_000));
                        crm_edits.push((crm.recs[&x].email.clone(), "phone", v.clone()));
                        crm.write(app, &tag, &x, |r| r.phone = Some(v.clone()))
                            .await;
                    }
                }
                5 | 6 => {
                    crm.next += 1;
                    let x = format!("n-{}", crm.next);
                    crm.recs.insert(
                        x.clone(),
                        Rec {
                            id: None,
                            given: format!("New{}", crm.next),
                            family: "Crm".into(),
                            email: format!("n{}@clients.example", crm.next),
                            phone: None,
                            tagged: true,
                            version: None,
                        },
                    );
                    crm.write(app, &tag, &x, |_| {}).await;
                }
                7 if live.len() > 6 => {
                    let x = live[rng.gen_range(0..live.len())].clone();
                    crm.write(app, &tag, &x, |r| r.tagged = false).await;
                }
                _ => {}
            }
        }
        for _ in 0..rng.gen_range(0..4) {
            let members = app.world.group_members();
            match rng.gen_range(0..10) {
                0..=5 if !members.is_empty() => {
                    let p = &members[rng.gen_range(0..members.len())];
                    let rn = p["resourceName"].as_str().expect("rn").to_string();
                    let email = p["emailAddresses"][0]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_lowercase();
                    let mut cur = g.people().get(&rn).await.expect("read").expect("exists");
                    if rng.gen_bool(0.5) {
                        let v = format!("Goo{round}x{}", rng.gen_range(0..1000));
                        if let Some(n) = cur.names.as_mut().and_then(|n| n.first_mut()) {
                            n.given_name = Some(v.clone());
                        }
                        g.people()
                            .update_contact(cur, "names")
                            .await
                            .expect("Google edit");
                        google_edits.push((email, "given", v));
                    } else {
                        let v = format!("+1 555 {:04}", rng.gen_range(0..10_000));
                        cur.phone_numbers = with_phone(person("x", "y", "z@z"), &v).phone_numbers;
                        g.people()
                            .update_contact(cur, "phoneNumbers")
                            .await
                            .expect("Google edit");
                        google_edits.push((email, "phone", v));
                    }
                }
                6 | 7 => {
                    crm.google_new += 1;
                    let n = crm.google_new;
                    let group = app.world.group().expect("the sync group");
                    let made = g
                        .people()
                        .batch_create(vec![person(
                            &format!("Goo{n}"),
                            "Google",
                            &format!("g{n}@outside.example"),
                        )])
                        .await
                        .expect("create");
                    let names: Vec<String> = made
                        .iter()
                        .filter_map(|p| p.resource_name.clone())
                        .collect();
                    g.people()
                        .modify_members(&group, &names, &[])
                        .await
                        .expect("join the group");
                }
                _ => {}
            }
        }
        let run = app.world.sync_contacts().await;
        crm.follow(app, &tag).await;
        let again = app.world.sync_contacts().await;
        crm.follow(app, &tag).await;
        let at = format!(
            "seed {seed} round {round}; runs {:?} then {:?}",
            run.counts, again.counts
        );
        let (ours, google, theirs) = (
            crmsync_shapes(&app.world),
            google_shapes(&app.world),
            crm.shapes(),
        );
        assert_eq!(ours, google, "crmsync and Google differ at {at}");
        assert_eq!(ours, theirs, "crmsync and the external CRM differ at {at}");
        let emails: Vec<&String> = ours.iter().map(|s| &s.0).collect();
        let mut unique = emails.clone();
        unique.dedup();
        assert_eq!(emails, unique, "a duplicate at {at}");
        // An edit made on one side only this round survives everywhere.
        for (mine, theirs_edits, side) in [
            (&crm_edits, &google_edits, "CRM"),
            (&google_edits, &crm_edits, "Google"),
        ] {
            for (email, field, value) in mine.iter() {
                let contested = theirs_edits
                    .iter()
                    .any(|(e, f, _)| e == email && f == field)
                    || mine
                        .iter()
                        .rfind(|(e, f, _)| e == email && f == field)
                        .map(|(_, _, v)| v)
                        != Some(value);
                if contested {
                    continue;
                }
                let Some(shape) = ours.iter().find(|s| &s.0 == email) else {
                    continue;
                };
                let got = if *field == "given" {
                    Some(&shape.1)
                } else {
                    shape.3.as_ref()
                };
                assert_eq!(
                    got,
                    Some(value),
                    "{side}'s {field} edit of {email} was lost at {at}"
                );
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("CRMSYNC_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("CRMSYNC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    (1..=n).collect()
}

/// Prints how to replay a seed when the test panics while this is alive: the seeds before it
/// built the stores it started from, so `CRMSYNC_SIM_SEEDS=<seed>` replays it exactly, and
/// `CRMSYNC_SIM_SEED=<seed>` alone from fresh stores.
struct Replay {
    seed: u64,
    test: String,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (seed, test) = (self.seed, &self.test);
            eprintln!(
                "simulation seed {seed} failed; replay it (after the seeds before it, which built \
                 the stores it started from) with:\n  CRMSYNC_SIM_SEEDS={seed} bash scripts/test -p crmsync --test it -E 'test(={test})'\n\
                 or alone, from fresh stores, with:\n  {}",
                replay_command(seed, test)
            );
        }
    }
}

db_test!(async fn an_external_crm_google_and_crmsync_agree_after_random_edits_on_both_sides(db) {
    let backend = if db.url().starts_with("postgres") { "postgres" } else { "sqlite" };
    let test = format!(
        "sim_integration::an_external_crm_google_and_crmsync_agree_after_random_edits_on_both_sides_{backend}"
    );
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let mut crm = load(&app).await;
    // Seeds go on from where the previous one left the three stores.
    for seed in seeds() {
        let _replay = Replay { seed, test: test.clone() };
        simulate(&app, &mut crm, seed, 8).await;
    }
    app.stop().await;
});
