//! Contacts sync: CRM contacts carrying the user's private sync tag <-> the members of the user's
//! sync contact group in Google (People API). SPEC section 3.
//!
//! One run:
//! 1. **Google pass**: pages of `connections.list` since the stored sync token (a full listing on
//!    the first run or after `EXPIRED_SYNC_TOKEN`); each page is planned and carried out.
//!    Unlinked group members are linked to tagged CRM contacts by the CRM id they carry (a create
//!    whose answer was lost) or by e-mail, else imported.
//! 2. **CRM pass**: contacts changed since the CRM cursor (the engine's own writes skipped).
//! 3. **Pending creates** awaiting Google's confirmation; after a full listing, links whose
//!    contact was not listed are read back to tell a deletion from propagation lag.
//! 4. **Link ends** (untags, group removals) wait for the end of the run and pass the
//!    mass-untag guard.
//! 5. The sync token and the CRM cursor are stored last.
//!
//! Carrying out a batch: pending links are committed before Google creates (crash-safe: the CRM
//! id also travels in `clientData`), Google writes go in batches of 200 (members in batches of
//! 1000), then one local transaction per batch writes the CRM side, the links and the journal.

use crate::sync::commit::{commit_items, commit_link, link_record, write_intents, LinkCommit};
use crate::sync::crash::CrashPoint;
use crate::sync::driver::{drive, KindRun, ListedPage};
use crate::sync::error::SyncError;
use crate::sync::tally::Tally;
use crate::sync::{RunBody, RunCtx};
use chrono::{DateTime, Utc};
use crmsync_connectors::{ErrorKind, GoogleError, PeopleClient, Person};
use crmsync_engine::contact_map::{self, MY_CONTACTS};
use crmsync_engine::fields;
use crmsync_engine::ids::{ContactId, GoogleId, LinkId, SyncKind, TagId};
use crmsync_engine::model::{Contact, ContactData};
use crmsync_engine::planner::{
    self, CrmState, GoogleObs, GoogleState, Item, ItemPlan, LinkAction, LinkState, PairReason,
    Presence, Rule, ScopeOp, SidePlan,
};
use crmsync_schema::sync_state::{self, Cursor, Link, LinkWrite};
use crmsync_schema::{
    contacts as contact_store, settings, tags, AnyConnection, StoreError, StoreResult,
};
use std::collections::{HashMap, HashSet};

const KIND: SyncKind = SyncKind::Contacts;
/// Items per local transaction and per Google batch.
const BATCH: usize = 200;

/// One item with everything needed to carry out its plan.
#[derive(Clone, Debug)]
struct Prepared {
    plan: ItemPlan,
    link: Option<Link>,
    crm: Option<Contact>,
    /// The current Google contact (the base of a write), when known.
    person: Option<Person>,
    /// Set once the Google side is written: the contact as Google returned it.
    written: Option<Person>,
    /// The link row id once it exists (pending links are inserted before Google creates).
    link_id: Option<LinkId>,
    failed: bool,
}

impl Prepared {
    fn crm_id(&self) -> Option<String> {
        self.crm
            .as_ref()
            .map(|c| c.id.to_string())
            .or_else(|| self.link.as_ref().map(|l| l.crm_id.clone()))
    }
    fn google_id(&self) -> Option<String> {
        self.written
            .as_ref()
            .and_then(|p| p.resource_name.clone())
            .or_else(|| self.person.as_ref().and_then(|p| p.resource_name.clone()))
            .or_else(|| self.plan.google_id.as_ref().map(|g| g.0.clone()))
            .or_else(|| self.link.as_ref().and_then(|l| l.google_id.clone()))
    }
}

struct ContactRun<'a> {
    ctx: &'a RunCtx,
    people: PeopleClient,
    tag: TagId,
    /// The sync group, resolved on first need (a run with nothing to do never asks for it).
    group: Option<String>,
    cursor_group: Option<String>,
    tally: Tally,
    /// CRM ids already handled in this run.
    handled: HashSet<String>,
    /// Google ids listed in this run (for the reconciliation after a full listing).
    listed: HashSet<String>,
    /// Plans that end a link: carried out after the guard check.
    ends: Vec<Prepared>,
}

fn store_err(e: StoreError) -> SyncError {
    SyncError::Store(e)
}

/// Runs one contacts sync for the run's user.
pub(crate) async fn run(ctx: &RunCtx) -> Result<RunBody, SyncError> {
    let user = ctx.user.clone();
    let uid = user.id;
    let (settings, cursor, crm_high) = ctx
        .store
        .run(move |s| {
            s.read(|c| {
                let st = settings::get_sync_settings(c, uid, KIND)?;
                let cursor = sync_state::get_cursor(c, uid, KIND)?;
                let high = crmsync_schema::current_change_seq(c)?;
                Ok((st, cursor, high))
            })
        })
        .await?;
    let settings = settings.ok_or_else(|| {
        SyncError::NotConfigured(format!(
            "{} has no contacts sync settings: set a private sync tag with PUT /api/v1/users/{}/sync-settings/contacts",
            user.email, uid
        ))
    })?;
    let tag_id = settings.tag_id.ok_or_else(|| {
        SyncError::NotConfigured(format!(
            "{} has no contacts sync tag: set tag_id in the contacts sync settings",
            user.email
        ))
    })?;
    let tag = ctx
        .store
        .run(move |s| s.read(|c| tags::find_tag(c, tag_id)))
        .await?;
    match tag {
        Some(t) if t.can_be_sync_tag_of(uid) => {}
        Some(t) => {
            return Err(SyncError::NotConfigured(format!(
                "tag {:?} is {} and cannot be {}'s sync tag: only a private tag the user owns can be; choose another tag",
                t.name, t.visibility, user.email
            )))
        }
        None => return Err(SyncError::NotConfigured(format!("the sync tag {tag_id} of {} no longer exists", user.email))),
    }

    let mut run = ContactRun {
        ctx,
        people: ctx.account.people().clone(),
        tag: tag_id,
        group: None,
        cursor_group: cursor.google_container.clone(),
        tally: Tally::default(),
        handled: HashSet::new(),
        listed: HashSet::new(),
        ends: Vec::new(),
    };
    let token = cursor.google_sync_token.clone();
    drive(&mut run, cursor, token, crm_high).await
}

impl KindRun for ContactRun<'_> {
    type Listed = Person;
    type Record = Contact;
    type Prepared = Prepared;
    const KIND: SyncKind = KIND;

    fn ctx(&self) -> &RunCtx {
        self.ctx
    }
    fn tally(&mut self) -> &mut Tally {
        &mut self.tally
    }
    async fn list(
        &mut self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<ListedPage<Person>, GoogleError> {
        let page = self
            .people
            .list_connections(sync_token, page_token, self.ctx.config.people_page_size)
            .await?;
        Ok(ListedPage {
            items: page.people,
            next_page_token: page.next_page_token,
            next_sync_token: page.next_sync_token,
        })
    }
    async fn google_batch(&mut self, items: Vec<Person>) -> Result<(), SyncError> {
        ContactRun::google_batch(self, items).await
    }
    type Scope = (crmsync_engine::ids::UserId, TagId);
    fn scope(&self) -> Self::Scope {
        (self.ctx.user.id, self.tag)
    }
    fn changed_since(
        c: &mut AnyConnection,
        scope: &Self::Scope,
        seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<Contact>> {
        sync_state::user_contacts_changed_since(c, scope.0, scope.1, seq, limit)
    }
    fn change_seq(r: &Contact) -> i64 {
        r.change_seq
    }
    async fn crm_batch(&mut self, chunk: Vec<Contact>) -> Result<(), SyncError> {
        ContactRun::crm_batch(self, chunk).await
    }
    async fn retry_google(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        let found = match self.people.batch_get(&ids).await {
            Ok(people) => people,
            Err(e) if e.kind == ErrorKind::Auth => {
                return Err(SyncError::from_google(&self.ctx.user.google_alias, e))
            }
            Err(e) => {
                for id in ids {
                    let message = format!("reading the parked Google contact failed: {e}");
                    self.tally.item_error(None, Some(id), None, message, true);
                }
                return Ok(());
            }
        };
        let mut by_name: HashMap<String, Person> = found
            .into_iter()
            .filter_map(|p| p.resource_name.clone().map(|n| (n, p)))
            .collect();
        let people = ids
            .into_iter()
            .map(|n| by_name.remove(&n).unwrap_or_else(|| deleted_person(n)))
            .collect();
        ContactRun::google_batch(self, people).await
    }
    async fn retry_crm(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        let ids: Vec<ContactId> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        let records = self
            .ctx
            .store
            .run(move |s| s.read(|c| contact_store::contacts_by_ids(c, &ids)))
            .await?;
        ContactRun::crm_batch(self, records).await
    }
    async fn pending_pass(&mut self) -> Result<(), SyncError> {
        ContactRun::pending_pass(self).await
    }
    async fn reconcile_unlisted(&mut self) -> Result<(), SyncError> {
        ContactRun::reconcile_unlisted(self).await
    }
    fn take_ends(&mut self) -> Vec<Prepared> {
        std::mem::take(&mut self.ends)
    }
    fn restore(p: Prepared) -> Prepared {
        restore(p)
    }
    async fn execute(&mut self, items: Vec<Prepared>, final_phase: bool) -> Result<(), SyncError> {
        ContactRun::execute(self, items, final_phase).await
    }
    fn cursor_extras(&self, old: &Cursor) -> (Option<String>, Option<String>) {
        (self.group.clone().or(old.google_container.clone()), None)
    }
}

/// The user's sync group: the stored one if it still exists, else found or created by name. A
/// group that vanished is re-created and every linked contact put back in it (never read as
/// "everything deleted").
async fn ensure_group(
    ctx: &RunCtx,
    people: &PeopleClient,
    cursor: &Cursor,
) -> Result<String, SyncError> {
    let g = |e| SyncError::from_google(&ctx.user.google_alias, e);
    let group = people
        .ensure_group(&ctx.config.group_name)
        .await
        .map_err(g)?;
    let rn = group.resource_name.clone().ok_or_else(|| {
        SyncError::Google(GoogleError::local(
            ErrorKind::Decode,
            "people.contactGroups.create",
            "Google returned a contact group without a resource name",
        ))
    })?;
    if let Some(old) = &cursor.google_container {
        if *old != rn {
            tracing::warn!(old = %old, new = %rn, "the sync group changed in Google: putting linked contacts back in it");
            let uid = ctx.user.id;
            let mut after = None;
            loop {
                let a = after;
                let page = ctx
                    .store
                    .run(move |s| {
                        s.read(|c| {
                            sync_state::links_in_state(c, uid, KIND, LinkState::Active, a, 1000)
                        })
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                let ids: Vec<String> = page.iter().filter_map(|l| l.google_id.clone()).collect();
                people.modify_members(&rn, &ids, &[]).await.map_err(g)?;
            }
        }
    }
    Ok(rn)
}

/// The CRM side of an item.
fn crm_state(c: &Contact, tag: TagId) -> CrmState {
    let presence = if c.deleted_at.is_some() {
        Presence::Deleted
    } else if c.tags.contains(&tag) {
        Presence::InScope
    } else {
        Presence::OutOfScope
    };
    CrmState {
        id: c.id.to_string(),
        fields: contact_map::contact_fields(&c.data),
        modified_at: c.modified_at,
        presence,
    }
}

/// The Google side of an item.
fn google_state(p: &Person, group: &str) -> Option<GoogleState> {
    let id = GoogleId::new(p.resource_name.clone()?);
    if contact_map::person_is_deleted(p) {
        return Some(GoogleState {
            id,
            fields: None,
            updated_at: DateTime::<Utc>::MIN_UTC,
            presence: Presence::Deleted,
        });
    }
    let presence = if contact_map::person_groups(p).iter().any(|g| g == group) {
        Presence::InScope
    } else {
        Presence::OutOfScope
    };
    Some(GoogleState {
        id,
        fields: Some(contact_map::person_fields(p)),
        updated_at: contact_map::person_updated_at(p).unwrap_or(DateTime::<Utc>::MIN_UTC),
        presence,
    })
}

fn prepared(
    plan: ItemPlan,
    link: Option<Link>,
    crm: Option<Contact>,
    person: Option<Person>,
) -> Prepared {
    let link_id = link.as_ref().map(|l| l.id);
    Prepared {
        plan,
        link,
        crm,
        person,
        written: None,
        link_id,
        failed: false,
    }
}

/// Turns a link end into its undoing (the admin cancelled a mass untag).
fn restore(mut p: Prepared) -> Prepared {
    let LinkAction::End { snapshot, reason } = p.plan.link.clone() else {
        return p;
    };
    let keep = |s: &mut SidePlan| {
        s.scope = ScopeOp::Keep;
    };
    match reason {
        Rule::GoogleLeftScope => {
            keep(&mut p.plan.crm);
            p.plan.google.scope = ScopeOp::Join;
            p.plan.link = LinkAction::Update {
                state: LinkState::Active,
                snapshot,
            };
        }
        Rule::GoogleDeleted => {
            keep(&mut p.plan.crm);
            p.plan.google = SidePlan {
                create: true,
                update: Vec::new(),
                scope: ScopeOp::Keep,
                target: snapshot.clone(),
            };
            p.person = None;
            p.plan.link = LinkAction::Update {
                state: LinkState::Pending,
                snapshot,
            };
        }
        Rule::CrmLeftScope => {
            keep(&mut p.plan.google);
            p.plan.crm.scope = ScopeOp::Join;
            p.plan.link = LinkAction::Update {
                state: LinkState::Active,
                snapshot,
            };
        }
        // A contact deleted in the CRM stays deleted.
        _ => return p,
    }
    p.plan.rule = Rule::Rejoin;
    p
}

impl ContactRun<'_> {
    fn uid(&self) -> crmsync_engine::ids::UserId {
        self.ctx.user.id
    }

    /// Resolves the sync group (once per run).
    async fn resolve_group(&mut self) -> Result<(), SyncError> {
        if self.group.is_none() {
            let cursor = Cursor {
                google_container: self.cursor_group.clone(),
                ..Cursor::default()
            };
            self.group = Some(ensure_group(self.ctx, &self.people, &cursor).await?);
        }
        Ok(())
    }

    /// The sync group's resource name (after [`Self::resolve_group`]).
    fn group(&self) -> &str {
        self.group.as_deref().unwrap_or_default()
    }

    fn item_error(&mut self, p: &mut Prepared, message: String, google_side: bool) {
        p.failed = true;
        let seq = p.crm.as_ref().map(|c| c.change_seq);
        self.tally
            .item_error(p.crm_id(), p.google_id(), seq, message, google_side);
    }

    /// Plans and carries out one page of the Google listing.
    async fn google_batch(&mut self, people: Vec<Person>) -> Result<(), SyncError> {
        if people.is_empty() {
            return Ok(());
        }
        // Echoes of the engine's own writes (same etag as recorded on the link) need no work.
        let names: Vec<String> = people
            .iter()
            .filter_map(|p| p.resource_name.clone())
            .collect();
        for n in &names {
            self.listed.insert(n.clone());
        }
        let uid = self.uid();
        let known: HashMap<String, Option<String>> = self
            .ctx
            .store
            .run(move |s| s.read(|c| sync_state::links_by_google_ids(c, uid, KIND, &names)))
            .await?
            .into_iter()
            .filter(|l| l.state == LinkState::Active)
            .filter_map(|l| l.google_id.map(|g| (g, l.etag)))
            .collect();
        let mut people = people;
        people.retain(|p| {
            let echo = !contact_map::person_is_deleted(p)
                && p.etag.is_some()
                && p.resource_name.as_ref().and_then(|n| known.get(n)) == Some(&p.etag);
            if echo {
                self.tally.body.counts.unchanged += 1;
            }
            !echo
        });
        if people.is_empty() {
            return Ok(());
        }
        self.resolve_group().await?;
        let group = self.group().to_string();
        let mut states: Vec<(Person, GoogleState)> = Vec::new();
        for p in people {
            if let Some(s) = google_state(&p, &group) {
                self.listed.insert(s.id.0.clone());
                states.push((p, s));
            }
        }
        if states.is_empty() {
            return Ok(());
        }
        let uid = self.uid();
        let tag = self.tag;
        let gids: Vec<String> = states.iter().map(|(_, s)| s.id.0.clone()).collect();
        let markers: Vec<String> = states
            .iter()
            .filter_map(|(p, _)| contact_map::person_crm_marker(p))
            .collect();
        let in_scope_emails: Vec<String> = states
            .iter()
            .filter(|(_, s)| s.presence == Presence::InScope)
            .flat_map(|(_, s)| {
                s.fields
                    .as_ref()
                    .map(contact_map::match_keys)
                    .unwrap_or_default()
            })
            .collect();
        let (by_google, by_crm, candidates) = self
            .ctx
            .store
            .run(move |s| {
                s.read(|c| {
                    let by_google = sync_state::links_by_google_ids(c, uid, KIND, &gids)?;
                    let by_crm = sync_state::links_by_crm_ids(c, uid, KIND, &markers)?;
                    let mut candidates =
                        sync_state::tagged_contacts_with_emails(c, tag, &in_scope_emails)?;
                    let marker_ids: Vec<ContactId> =
                        markers.iter().filter_map(|m| m.parse().ok()).collect();
                    candidates.extend(contact_store::contacts_by_ids(c, &marker_ids)?);
                    Ok((by_google, by_crm, candidates))
                })
            })
            .await?;
        let by_google: HashMap<String, Link> = by_google
            .into_iter()
            .filter_map(|l| l.google_id.clone().map(|g| (g, l)))
            .collect();
        let by_crm: HashMap<String, Link> =
            by_crm.into_iter().map(|l| (l.crm_id.clone(), l)).collect();

        // Attach each person to its link: by Google id, else by the CRM id it carries.
        let mut linked: Vec<(Person, GoogleState, Link)> = Vec::new();
        let mut unlinked: Vec<(Person, GoogleState)> = Vec::new();
        let mut duplicates: Vec<(Person, GoogleState)> = Vec::new();
        for (p, s) in states {
            if let Some(l) = by_google.get(&s.id.0) {
                linked.push((p, s, l.clone()));
                continue;
            }
            match contact_map::person_crm_marker(&p).and_then(|m| by_crm.get(&m)) {
                Some(l) if l.google_id.is_none() || l.state == LinkState::Ended => {
                    let mut l = l.clone();
                    if l.state == LinkState::Ended && l.google_id.is_some() {
                        // The CRM contact's old link points elsewhere: this is a re-created
                        // contact; treat it as new.
                        unlinked.push((p, s));
                        continue;
                    }
                    l.google_id = Some(s.id.0.clone());
                    linked.push((p, s, l));
                }
                Some(_) if s.presence != Presence::Deleted => duplicates.push((p, s)),
                _ => unlinked.push((p, s)),
            }
        }

        // CRM records of linked items.
        let crm_ids: Vec<ContactId> = linked
            .iter()
            .filter_map(|(_, _, l)| l.crm_id.parse().ok())
            .collect();
        let crm: HashMap<String, Contact> = self
            .ctx
            .store
            .run(move |s| s.read(|c| contact_store::contacts_by_ids(c, &crm_ids)))
            .await?
            .into_iter()
            .map(|c| (c.id.to_string(), c))
            .collect();

        // Pair unlinked group members with unlinked tagged CRM contacts (CRM id, then e-mail).
        let linked_crm: HashSet<String> = by_crm
            .values()
            .filter(|l| l.state != LinkState::Ended)
            .map(|l| l.crm_id.clone())
            .collect();
        let candidate_ids: Vec<String> = candidates.iter().map(|c| c.id.to_string()).collect();
        let candidate_links: HashSet<String> = {
            let ids = candidate_ids.clone();
            self.ctx
                .store
                .run(move |s| s.read(|c| sync_state::links_by_crm_ids(c, uid, KIND, &ids)))
                .await?
                .into_iter()
                .filter(|l| l.state != LinkState::Ended)
                .map(|l| l.crm_id)
                .collect()
        };
        let mut free: Vec<Contact> = candidates
            .into_iter()
            .filter(|c| c.deleted_at.is_none() && c.tags.contains(&tag))
            .filter(|c| {
                !candidate_links.contains(&c.id.to_string())
                    && !linked_crm.contains(&c.id.to_string())
            })
            .filter(|c| !self.handled.contains(&c.id.to_string()))
            .collect();
        free.sort_by_key(|c| c.id);
        free.dedup_by_key(|c| c.id);
        let crm_keys: Vec<(String, Vec<String>)> = free
            .iter()
            .map(|c| {
                (
                    c.id.to_string(),
                    contact_map::match_keys(&contact_map::contact_fields(&c.data)),
                )
            })
            .collect();
        let in_scope_unlinked: Vec<usize> = (0..unlinked.len())
            .filter(|&i| unlinked[i].1.presence == Presence::InScope)
            .collect();
        let google_keys: Vec<(String, Option<String>, Vec<String>)> = in_scope_unlinked
            .iter()
            .map(|&i| {
                let (p, s) = &unlinked[i];
                (
                    s.id.0.clone(),
                    contact_map::person_crm_marker(p),
                    s.fields
                        .as_ref()
                        .map(contact_map::match_keys)
                        .unwrap_or_default(),
                )
            })
            .collect();
        let pairs = planner::pair_unlinked(&crm_keys, &google_keys);
        let mut paired: HashMap<usize, (usize, PairReason)> = HashMap::new();
        for (ci, gi, reason) in pairs {
            paired.insert(in_scope_unlinked[gi], (ci, reason));
        }

        let now = self.ctx.now();
        let policy = self.ctx.config.contacts_policy.clone();
        let mut batch = Vec::new();
        for (p, s, l) in linked {
            let contact = crm.get(&l.crm_id).cloned();
            let item = Item {
                link: Some(link_record(&l)),
                crm: contact.as_ref().map(|c| crm_state(c, tag)),
                google: GoogleObs::Seen(s),
                paired: None,
            };
            self.handled.insert(l.crm_id.clone());
            batch.push(prepared(
                planner::plan_item(&item, &policy, now),
                Some(l),
                contact,
                Some(p),
            ));
        }
        for (i, (p, s)) in unlinked.into_iter().enumerate() {
            let (crm_contact, reason) = match paired.get(&i) {
                Some((ci, reason)) => (Some(free[*ci].clone()), Some(*reason)),
                None => (None, None),
            };
            if let Some(c) = &crm_contact {
                self.handled.insert(c.id.to_string());
            }
            let item = Item {
                link: None,
                crm: crm_contact.as_ref().map(|c| crm_state(c, tag)),
                google: GoogleObs::Seen(s),
                paired: reason,
            };
            batch.push(prepared(
                planner::plan_item(&item, &policy, now),
                None,
                crm_contact,
                Some(p),
            ));
        }
        // Our own duplicates (a second contact carrying a CRM id that is already linked): take
        // them out of the group rather than import them; nothing is deleted.
        for (p, s) in duplicates {
            if s.presence != Presence::InScope {
                continue;
            }
            let mut plan = planner::plan_item(
                &Item {
                    link: None,
                    crm: None,
                    google: GoogleObs::NotObserved,
                    paired: None,
                },
                &policy,
                now,
            );
            plan.google_id = Some(s.id.clone());
            plan.rule = Rule::AdoptByMarker;
            plan.google.scope = ScopeOp::Leave;
            tracing::warn!(google = %s.id, "a second Google contact carries an already linked CRM id: removing it from the group");
            batch.push(prepared(plan, None, None, Some(p)));
        }
        self.execute(batch, false).await
    }

    /// Plans and carries out a chunk of the CRM change feed.
    async fn crm_batch(&mut self, chunk: Vec<Contact>) -> Result<(), SyncError> {
        let uid = self.uid();
        let tag = self.tag;
        let chunk: Vec<Contact> = chunk
            .into_iter()
            .filter(|c| !self.handled.contains(&c.id.to_string()))
            .collect();
        if chunk.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = chunk.iter().map(|c| c.id.to_string()).collect();
        let links: HashMap<String, Link> = self
            .ctx
            .store
            .run(move |s| s.read(|c| sync_state::links_by_crm_ids(c, uid, KIND, &ids)))
            .await?
            .into_iter()
            .map(|l| (l.crm_id.clone(), l))
            .collect();
        let mut work: Vec<(Contact, Option<Link>)> = Vec::new();
        for c in chunk {
            let link = links.get(&c.id.to_string()).cloned();
            match &link {
                // The engine's own write, already in the snapshot.
                Some(l) if l.crm_change_seq == c.change_seq => continue,
                None if c.deleted_at.is_some() || !c.tags.contains(&tag) => continue,
                _ => {}
            }
            self.handled.insert(c.id.to_string());
            work.push((c, link));
        }
        if work.is_empty() {
            return Ok(());
        }
        self.resolve_group().await?;
        // A contact that comes back (re-tagged) needs its Google contact's current state.
        let reread: Vec<String> = work
            .iter()
            .filter(|(c, _)| c.tags.contains(&tag) && c.deleted_at.is_none())
            .filter_map(|(_, l)| {
                l.as_ref()
                    .filter(|l| l.state == LinkState::Ended)
                    .and_then(|l| l.google_id.clone())
            })
            .collect();
        let fetched = self.fetch(&reread).await?;
        let now = self.ctx.now();
        let policy = self.ctx.config.contacts_policy.clone();
        let mut batch = Vec::new();
        for (c, l) in work {
            let google = match &l {
                Some(l)
                    if l.state == LinkState::Ended
                        && c.tags.contains(&tag)
                        && c.deleted_at.is_none() =>
                {
                    match l.google_id.as_ref().and_then(|g| fetched.get(g)) {
                        Some(p) => google_state(p, self.group())
                            .map(GoogleObs::Seen)
                            .unwrap_or(GoogleObs::Missing),
                        None => GoogleObs::Missing,
                    }
                }
                _ => GoogleObs::NotObserved,
            };
            let person = match &google {
                GoogleObs::Seen(s) => fetched.get(&s.id.0).cloned(),
                _ => None,
            };
            let item = Item {
                link: l.as_ref().map(link_record),
                crm: Some(crm_state(&c, tag)),
                google,
                paired: None,
            };
            batch.push(prepared(
                planner::plan_item(&item, &policy, now),
                l,
                Some(c),
                person,
            ));
        }
        self.execute(batch, false).await
    }

    /// Pending creates not seen in this run: retried once they waited long enough.
    async fn pending_pass(&mut self) -> Result<(), SyncError> {
        let uid = self.uid();
        let pending = self
            .ctx
            .store
            .run(move |s| {
                s.read(|c| {
                    sync_state::links_in_state(c, uid, KIND, LinkState::Pending, None, 10_000)
                })
            })
            .await?;
        let pending: Vec<Link> = pending
            .into_iter()
            .filter(|l| !self.handled.contains(&l.crm_id))
            .collect();
        for chunk in pending.chunks(BATCH) {
            self.resolve_group().await?;
            let ids: Vec<ContactId> = chunk.iter().filter_map(|l| l.crm_id.parse().ok()).collect();
            let crm: HashMap<String, Contact> = self
                .ctx
                .store
                .run(move |s| s.read(|c| contact_store::contacts_by_ids(c, &ids)))
                .await?
                .into_iter()
                .map(|c| (c.id.to_string(), c))
                .collect();
            let now = self.ctx.now();
            let policy = self.ctx.config.contacts_policy.clone();
            let mut batch = Vec::new();
            for l in chunk {
                let c = crm.get(&l.crm_id).cloned();
                self.handled.insert(l.crm_id.clone());
                let item = Item {
                    link: Some(link_record(l)),
                    crm: c.as_ref().map(|c| crm_state(c, self.tag)),
                    google: GoogleObs::NotObserved,
                    paired: None,
                };
                batch.push(prepared(
                    planner::plan_item(&item, &policy, now),
                    Some(l.clone()),
                    c,
                    None,
                ));
            }
            self.execute(batch, false).await?;
        }
        Ok(())
    }

    /// After a full listing: active links whose Google contact was not listed are read back;
    /// only a contact Google confirms missing counts as deleted.
    async fn reconcile_unlisted(&mut self) -> Result<(), SyncError> {
        self.resolve_group().await?;
        let uid = self.uid();
        let mut after = None;
        loop {
            let a = after;
            let page = self
                .ctx
                .store
                .run(move |s| {
                    s.read(|c| sync_state::links_in_state(c, uid, KIND, LinkState::Active, a, 1000))
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let missing: Vec<Link> = page
                .into_iter()
                .filter(|l| !self.handled.contains(&l.crm_id))
                .filter(|l| {
                    l.google_id
                        .as_ref()
                        .map(|g| !self.listed.contains(g))
                        .unwrap_or(false)
                })
                .collect();
            for chunk in missing.chunks(BATCH) {
                let names: Vec<String> = chunk.iter().filter_map(|l| l.google_id.clone()).collect();
                let fetched = self.fetch(&names).await?;
                let ids: Vec<ContactId> =
                    chunk.iter().filter_map(|l| l.crm_id.parse().ok()).collect();
                let crm: HashMap<String, Contact> = self
                    .ctx
                    .store
                    .run(move |s| s.read(|c| contact_store::contacts_by_ids(c, &ids)))
                    .await?
                    .into_iter()
                    .map(|c| (c.id.to_string(), c))
                    .collect();
                let now = self.ctx.now();
                let policy = self.ctx.config.contacts_policy.clone();
                let mut batch = Vec::new();
                for l in chunk {
                    let person = l.google_id.as_ref().and_then(|g| fetched.get(g)).cloned();
                    let google = match &person {
                        Some(p) => google_state(p, self.group())
                            .map(GoogleObs::Seen)
                            .unwrap_or(GoogleObs::Missing),
                        None => GoogleObs::Missing,
                    };
                    let c = crm.get(&l.crm_id).cloned();
                    self.handled.insert(l.crm_id.clone());
                    let item = Item {
                        link: Some(link_record(l)),
                        crm: c.as_ref().map(|c| crm_state(c, self.tag)),
                        google,
                        paired: None,
                    };
                    batch.push(prepared(
                        planner::plan_item(&item, &policy, now),
                        Some(l.clone()),
                        c,
                        person,
                    ));
                }
                self.execute(batch, false).await?;
            }
        }
        Ok(())
    }

    /// Reads Google contacts by resource name (missing ones are absent from the map).
    async fn fetch(&self, names: &[String]) -> Result<HashMap<String, Person>, SyncError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let people = self
            .people
            .batch_get(names)
            .await
            .map_err(|e| SyncError::from_google(&self.ctx.user.google_alias, e))?;
        Ok(people
            .into_iter()
            .filter_map(|p| p.resource_name.clone().map(|n| (n, p)))
            .collect())
    }

    /// Carries out plans: Google creates, updates and membership changes in batches, then the
    /// local commit. Link ends wait for the guard unless `final_phase`.
    async fn execute(&mut self, items: Vec<Prepared>, final_phase: bool) -> Result<(), SyncError> {
        let labels = self.ctx.journal.labels;
        let mut work = Vec::new();
        for p in items {
            if p.plan.ends_link() && !final_phase {
                self.ends.push(p);
                continue;
            }
            if p.plan.deferred || p.plan.is_noop() {
                self.tally.body.counts.add_plan(&p.plan, labels);
                continue;
            }
            work.push(p);
        }
        for chunk in work.chunks_mut(BATCH) {
            self.google_creates(chunk).await?;
        }
        for chunk in work.chunks_mut(BATCH) {
            self.google_updates(chunk).await?;
        }
        self.google_membership(&mut work).await?;
        for chunk in work.chunks_mut(BATCH) {
            self.commit(chunk).await?;
        }
        Ok(())
    }

    /// Creates in Google: pending links first (committed), then one batch create.
    async fn google_creates(&mut self, chunk: &mut [Prepared]) -> Result<(), SyncError> {
        let idx: Vec<usize> = (0..chunk.len())
            .filter(|&i| chunk[i].plan.google.create && !chunk[i].failed)
            .collect();
        if idx.is_empty() {
            return Ok(());
        }
        // Intents: a pending link per create, so a crash after Google applied the create is
        // recovered by adoption (the CRM id travels in clientData), never by a duplicate.
        let uid = self.uid();
        let now = self.ctx.now();
        let intents: Vec<(Option<LinkId>, LinkWrite)> = idx
            .iter()
            .map(|&i| {
                let p = &chunk[i];
                let w = LinkWrite {
                    crm_id: p.crm_id().unwrap_or_default(),
                    google_id: None,
                    state: LinkState::Pending,
                    snapshot: p.plan.google.target.clone(),
                    etag: None,
                    google_updated: None,
                    crm_change_seq: p.crm.as_ref().map(|c| c.change_seq).unwrap_or(0),
                    pending_since: Some(now),
                    end_reason: None,
                };
                (p.link_id, w)
            })
            .collect();
        let ids = write_intents(&self.ctx.store, uid, KIND, intents, now).await?;
        for (k, &i) in idx.iter().enumerate() {
            chunk[i].link_id = Some(ids[k]);
        }
        self.ctx.crash_point(CrashPoint::BeforeRemoteWrite)?;
        let persons: Vec<Person> = idx
            .iter()
            .map(|&i| {
                let p = &chunk[i];
                contact_map::person_for_create(
                    &p.plan.google.target,
                    &p.crm_id().unwrap_or_default(),
                    self.group(),
                )
            })
            .collect();
        let people = &self.people;
        let groups = isolating(persons, |batch| people.batch_create(batch)).await;
        let mut applied = false;
        let mut refused: Vec<LinkId> = Vec::new();
        for (group, result) in groups {
            let group: Vec<usize> = group.into_iter().map(|k| idx[k]).collect();
            match result {
                Ok(created) if created.len() == group.len() => {
                    for (k, &i) in group.iter().enumerate() {
                        chunk[i].written = Some(created[k].clone());
                    }
                    applied = true;
                }
                Ok(created) => {
                    // Should not happen; the contacts will be adopted by their clientData.
                    for &i in &group {
                        chunk[i].failed = true;
                        self.tally.body.counts.awaiting_confirmation += 1;
                    }
                    tracing::warn!(
                        sent = group.len(),
                        got = created.len(),
                        "batch create answered a different count: adopting on the next run"
                    );
                }
                Err(e) if e.kind == ErrorKind::Auth => {
                    return Err(SyncError::from_google(&self.ctx.user.google_alias, e))
                }
                Err(e) if e.kind == ErrorKind::Indeterminate => {
                    // Maybe applied: the pending links stay; the next run adopts or re-creates.
                    tracing::warn!(error = %e, "create outcome unknown: will adopt or retry on a later run");
                    for &i in &group {
                        chunk[i].failed = true;
                        self.tally.body.counts.awaiting_confirmation += 1;
                    }
                }
                Err(e) => {
                    // Refused outright (an undecodable success aside): certainly not created.
                    let certain = e.kind != ErrorKind::Decode;
                    for &i in &group {
                        let mut p = chunk[i].clone();
                        self.item_error(
                            &mut p,
                            format!("creating the Google contact failed: {e}"),
                            false,
                        );
                        if certain {
                            refused.extend(p.link_id);
                        }
                        chunk[i] = p;
                    }
                }
            }
        }
        if !refused.is_empty() {
            self.ctx
                .store
                .run(move |s| s.write(|c| sync_state::clear_pending_since(c, &refused)))
                .await?;
        }
        if applied {
            self.ctx
                .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
        }
        Ok(())
    }

    /// Field updates of existing Google contacts (one batch), with one re-read and re-plan for
    /// contacts changed in Google meanwhile (stale etag).
    async fn google_updates(&mut self, chunk: &mut [Prepared]) -> Result<(), SyncError> {
        for attempt in 0..2 {
            let idx: Vec<usize> = (0..chunk.len())
                .filter(|&i| {
                    !chunk[i].failed
                        && !chunk[i].plan.google.create
                        && !chunk[i].plan.google.update.is_empty()
                        && chunk[i].written.is_none()
                })
                .collect();
            if idx.is_empty() {
                return Ok(());
            }
            // The current contact is the base of the write (etag, unmapped fields).
            let missing: Vec<String> = idx
                .iter()
                .filter(|&&i| chunk[i].person.is_none())
                .filter_map(|&i| chunk[i].google_id())
                .collect();
            let fetched = self.fetch(&missing).await?;
            for &i in &idx {
                if chunk[i].person.is_none() {
                    match chunk[i].google_id().and_then(|g| fetched.get(&g).cloned()) {
                        Some(p) => {
                            // Changed since we planned (or a retry after a stale etag): re-plan.
                            let changed = attempt > 0
                                || google_state(&p, self.group())
                                    .and_then(|s| s.fields)
                                    .map(|f| {
                                        !fields::same(
                                            &f,
                                            &chunk[i]
                                                .link
                                                .as_ref()
                                                .map(|l| l.snapshot.clone())
                                                .unwrap_or_default(),
                                        )
                                    })
                                    .unwrap_or(true);
                            chunk[i].person = Some(p);
                            if changed {
                                let mut q = chunk[i].clone();
                                self.replan(&mut q);
                                chunk[i] = q;
                            }
                        }
                        None => {
                            let mut p = chunk[i].clone();
                            self.replan_missing(&mut p);
                            chunk[i] = p;
                        }
                    }
                }
            }
            let idx: Vec<usize> = idx
                .into_iter()
                .filter(|&i| {
                    !chunk[i].failed
                        && !chunk[i].plan.google.update.is_empty()
                        && chunk[i].person.is_some()
                })
                .collect();
            if idx.is_empty() {
                return Ok(());
            }
            let changed: Vec<String> = idx
                .iter()
                .flat_map(|&i| chunk[i].plan.google.update.clone())
                .collect();
            let mask = contact_map::update_mask(&changed);
            let persons: Vec<Person> = idx
                .iter()
                .map(|&i| {
                    contact_map::person_for_write(
                        &chunk[i].plan.google.target,
                        chunk[i].person.as_ref(),
                    )
                })
                .collect();
            let outcome = match self.people.batch_update(persons, &mask).await {
                Ok(o) => o,
                Err(e) if e.kind == ErrorKind::Auth => {
                    return Err(SyncError::from_google(&self.ctx.user.google_alias, e))
                }
                Err(e) => {
                    for &i in &idx {
                        let mut p = chunk[i].clone();
                        self.item_error(
                            &mut p,
                            format!("updating the Google contact failed: {e}"),
                            false,
                        );
                        chunk[i] = p;
                    }
                    return Ok(());
                }
            };
            let updated: HashMap<String, Person> = outcome
                .updated
                .into_iter()
                .filter_map(|p| p.resource_name.clone().map(|n| (n, p)))
                .collect();
            let failed: HashMap<String, GoogleError> = outcome
                .failed
                .into_iter()
                .map(|f| (f.resource_name, f.error))
                .collect();
            self.ctx
                .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
            let mut stale = false;
            for &i in &idx {
                let Some(name) = chunk[i].google_id() else {
                    continue;
                };
                if let Some(p) = updated.get(&name) {
                    chunk[i].written = Some(p.clone());
                } else if let Some(e) = failed.get(&name) {
                    match e.kind {
                        ErrorKind::PreconditionFailed if attempt == 0 => {
                            // Changed in Google since we read it: re-read, re-plan, retry.
                            chunk[i].person = None;
                            stale = true;
                        }
                        ErrorKind::NotFound => {
                            let mut p = chunk[i].clone();
                            self.replan_missing(&mut p);
                            chunk[i] = p;
                        }
                        _ => {
                            let mut p = chunk[i].clone();
                            self.item_error(
                                &mut p,
                                format!("updating the Google contact failed: {e}"),
                                false,
                            );
                            chunk[i] = p;
                        }
                    }
                }
            }
            if !stale {
                return Ok(());
            }
            // The stale ones are read again and re-planned in the next round.
        }
        Ok(())
    }

    /// Re-plans an item against the Google contact read just now.
    fn replan(&mut self, p: &mut Prepared) {
        let Some(person) = &p.person else { return };
        let google = match google_state(person, self.group()) {
            Some(s) => GoogleObs::Seen(s),
            None => GoogleObs::Missing,
        };
        self.replan_with(p, google);
    }

    fn replan_missing(&mut self, p: &mut Prepared) {
        p.person = None;
        self.replan_with(p, GoogleObs::Missing);
    }

    fn replan_with(&mut self, p: &mut Prepared, google: GoogleObs) {
        let item = Item {
            link: p.link.as_ref().map(link_record),
            crm: p.crm.as_ref().map(|c| crm_state(c, self.tag)),
            google,
            paired: None,
        };
        let plan = planner::plan_item(&item, &self.ctx.config.contacts_policy, self.ctx.now());
        if plan.ends_link() || plan.google.create {
            // Ends go through the guard; a re-create is left to the next run.
            let mut later = p.clone();
            later.plan = plan;
            if later.plan.ends_link() {
                self.ends.push(later);
            }
            p.failed = true;
            return;
        }
        p.plan = plan;
    }

    /// Group membership: joins and leaves in one `members:modify` (1000 per call).
    async fn google_membership(&mut self, chunk: &mut [Prepared]) -> Result<(), SyncError> {
        // (The connector splits calls at 1000 changes.)
        let add: Vec<String> = chunk
            .iter()
            .filter(|p| !p.failed && p.plan.google.scope == ScopeOp::Join)
            .filter_map(|p| p.google_id())
            .collect();
        let remove: Vec<String> = chunk
            .iter()
            .filter(|p| !p.failed && p.plan.google.scope == ScopeOp::Leave)
            .filter_map(|p| p.google_id())
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let g = |e| SyncError::from_google(&self.ctx.user.google_alias, e);
        let outcome = self
            .people
            .modify_members(self.group(), &add, &remove)
            .await
            .map_err(g)?;
        if !outcome.cannot_remove_last.is_empty() {
            // Keep the contact in "My Contacts", then leave the sync group: never deleted.
            self.people
                .modify_members(MY_CONTACTS, &outcome.cannot_remove_last, &[])
                .await
                .map_err(g)?;
            self.people
                .modify_members(self.group(), &[], &outcome.cannot_remove_last)
                .await
                .map_err(g)?;
        }
        self.ctx
            .crash_point(CrashPoint::AfterRemoteWriteBeforeLocalCommit)?;
        let not_found: HashSet<String> = outcome.not_found.into_iter().collect();
        for p in chunk.iter_mut() {
            if p.failed || p.plan.google.scope != ScopeOp::Join {
                continue;
            }
            if p.google_id()
                .map(|g| not_found.contains(&g))
                .unwrap_or(false)
            {
                let mut q = p.clone();
                self.replan_missing(&mut q);
                *p = q;
                p.failed = true;
            }
        }
        Ok(())
    }

    /// The local commit: CRM writes, links and journal for the chunk, in one transaction (one
    /// per item if the batch fails, so one bad item does not block the others).
    async fn commit(&mut self, chunk: &mut [Prepared]) -> Result<(), SyncError> {
        let todo: Vec<Prepared> = chunk.iter().filter(|p| !p.failed).cloned().collect();
        let (uid, tag, jctx, now) = (self.uid(), self.tag, self.ctx.journal, self.ctx.now());
        let results = commit_items(&self.ctx.store, todo, now, move |c, p| {
            commit_item(c, uid, tag, &jctx, p, now)
        })
        .await?;
        for (mut p, r) in results {
            match r {
                Ok(()) => self.tally.body.counts.add_plan(&p.plan, jctx.labels),
                Err(e) => self.item_error(
                    &mut p,
                    format!("saving in the CRM failed: {}", store_err(e)),
                    true,
                ),
            }
        }
        Ok(())
    }
}

/// Writes one carried-out plan locally: the CRM record, the link and the journal.
fn commit_item(
    c: &mut AnyConnection,
    uid: crmsync_engine::ids::UserId,
    tag: TagId,
    jctx: &crate::sync::record::JournalCtx,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<Vec<crmsync_schema::sync_state::JournalEntry>> {
    let plan = &p.plan;
    // CRM side.
    let mut contact = p.crm.clone();
    if plan.crm.create {
        let data = contact_map::apply_to_contact(&plan.crm.target, &ContactData::default());
        contact = Some(contact_store::create_contact(c, &data, &[tag], now)?);
    } else if let Some(existing) = contact.clone().filter(|x| x.deleted_at.is_none()) {
        let mut cur = existing;
        if !plan.crm.update.is_empty() {
            let data = contact_map::apply_to_contact(&plan.crm.target, &cur.data);
            cur = contact_store::update_contact(c, cur.id, &data, now)?;
        }
        match plan.crm.scope {
            ScopeOp::Join => cur = contact_store::tag_contact(c, cur.id, tag, now)?,
            ScopeOp::Leave => cur = contact_store::untag_contact(c, cur.id, tag, now)?,
            ScopeOp::Keep => {}
        }
        contact = Some(cur);
    }
    let person = p.written.as_ref().or(p.person.as_ref());
    let lc = LinkCommit {
        user: uid,
        journal: jctx,
        plan,
        link: p.link.as_ref(),
        link_id: p.link_id,
        crm_id: contact
            .as_ref()
            .map(|x| x.id.to_string())
            .or_else(|| p.crm_id()),
        crm_seq: contact.as_ref().map(|x| x.change_seq).unwrap_or(0),
        google_id: p.google_id(),
        etag: person
            .and_then(|x| x.etag.clone())
            .or_else(|| p.link.as_ref().and_then(|l| l.etag.clone())),
        google_updated: person
            .and_then(contact_map::person_updated_at)
            .or_else(|| p.link.as_ref().and_then(|l| l.google_updated)),
        google_written: p.written.is_some(),
    };
    commit_link(c, lc, now)
}

/// A contact Google no longer has, as a sync listing shows it.
fn deleted_person(resource_name: String) -> Person {
    Person {
        resource_name: Some(resource_name),
        metadata: Some(crmsync_connectors::people1::api::PersonMetadata {
            deleted: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Calls [`isolating`] may spend on one batch before it stops splitting.
pub(crate) const MAX_SPLIT_CALLS: usize = 32;

/// Sends `items` with `call` as one request; when Google refuses the whole request as invalid
/// (400: People validates a batch all or nothing), splits it in halves until each refused record
/// is alone, so one contact Google will not take cannot hold back the others (about 2·log2(n)
/// extra calls per refused record). When Google refuses everything (a systematic error rather
/// than a bad record), the splitting stops after [`MAX_SPLIT_CALLS`] extra calls and the rest
/// fails as a group. Returns each request's outcome with the positions (in `items`) it covered.
pub(crate) async fn isolating<T, R, F, Fut>(
    items: Vec<T>,
    mut call: F,
) -> Vec<(Vec<usize>, Result<R, GoogleError>)>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<R, GoogleError>>,
{
    let mut out = Vec::new();
    let mut todo: Vec<Vec<usize>> = vec![(0..items.len()).collect()];
    let mut calls = 0usize;
    while let Some(group) = todo.pop() {
        if group.is_empty() {
            continue;
        }
        let batch = group.iter().map(|&i| items[i].clone()).collect();
        calls += 1;
        match call(batch).await {
            Err(e)
                if e.kind == ErrorKind::BadRequest
                    && group.len() > 1
                    && calls <= MAX_SPLIT_CALLS =>
            {
                tracing::warn!(
                    items = group.len(),
                    error = %e,
                    "Google refused the whole batch: splitting it to isolate the refused record"
                );
                let (a, b) = group.split_at(group.len() / 2);
                todo.push(b.to_vec());
                todo.push(a.to_vec());
            }
            result => out.push((group, result)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    /// The requests `isolating` made: the positions each covered, and its outcome.
    type Groups = Vec<(Vec<usize>, Result<(), GoogleError>)>;

    /// Runs `isolating` over `n` items of which `bad` are refused: a request fails with 400
    /// when it carries any refused item. Returns the groups and the number of requests.
    fn run(n: usize, bad: &HashSet<usize>) -> (Groups, usize) {
        let calls = Cell::new(0usize);
        let items: Vec<usize> = (0..n).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let groups = rt.block_on(isolating(items, |batch: Vec<usize>| {
            calls.set(calls.get() + 1);
            let refused = batch.iter().any(|i| bad.contains(i));
            async move {
                if refused {
                    Err(GoogleError::local(
                        ErrorKind::BadRequest,
                        "people.people.batchCreateContacts",
                        "refused",
                    ))
                } else {
                    Ok(())
                }
            }
        }));
        (groups, calls.get())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every item is covered exactly once; no good item ends in a failed group when the
        /// splitting budget suffices; a refused item never ends in a successful group.
        #[test]
        fn isolating_covers_every_item_and_isolates_refused_ones(
            n in 1usize..=200,
            bad in proptest::collection::hash_set(0usize..200, 0..4),
        ) {
            let bad: HashSet<usize> = bad.into_iter().filter(|b| *b < n).collect();
            let (groups, calls) = run(n, &bad);
            let mut seen: Vec<usize> = groups.iter().flat_map(|(g, _)| g.clone()).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
            for (g, r) in &groups {
                if r.is_ok() {
                    prop_assert!(g.iter().all(|i| !bad.contains(i)));
                }
            }
            prop_assert!(calls <= 1 + MAX_SPLIT_CALLS + 16, "{} calls", calls);
            if bad.len() <= 2 {
                // Within budget: each refused record fails alone, the rest goes through.
                for (g, r) in &groups {
                    if r.is_err() {
                        prop_assert_eq!(g.len(), 1);
                    }
                }
            }
        }
    }
}
