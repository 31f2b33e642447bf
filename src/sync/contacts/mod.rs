//! Contacts sync: CRM contacts carrying the user's private sync tag <-> the members of the user's
//! sync contact group in Google (People API). SPEC section 3.
//!
//! What contacts add to the shared run ([`crate::sync::driver`], [`crate::sync::executor`]):
//! - **Scope**: a contact is in scope in the CRM when it carries the sync tag, in Google when it
//!   is a member of the sync group (its resource name kept with the cursor, resolved or created
//!   on first need; checked in Google only where a vanished group would do harm, and a group
//!   that vanished is re-created and every linked contact put back in it).
//! - **Identity of listed contacts**: by the link's Google id, else by the CRM id the contact
//!   carries in `clientData` (a create whose answer was lost), else paired by e-mail with an
//!   unlinked tagged CRM contact, else imported. A second Google contact carrying an already
//!   linked CRM id is our own duplicate: taken out of the group, never deleted.
//! - **Google writes**: creates in batches of 200 after their intents are committed (a refused
//!   batch is split until the refused contact is alone), field updates in batches of 200 on the
//!   contact as listed or as kept with its link, with its etag (one Google refuses as stale is
//!   read again, re-planned and retried once), and group
//!   membership in one `members:modify` (1000 per call).

use crate::sync::driver::{drive, Kind, ListedPage};
use crate::sync::error::SyncError;
use crate::sync::executor::{known_link, Executor, Item, Observed, BATCH};
use crate::sync::{RunBody, RunCtx, SyncConfig};
use chrono::{DateTime, Utc};
use crmsync_connectors::contact_wire;
use crmsync_connectors::{ErrorKind, GoogleError, PeopleClient, Person};
use crmsync_engine::contact_map;
use crmsync_engine::guard::RejoinGoogle;
use crmsync_engine::identity::{self, Duplicates, Identity};
use crmsync_engine::ids::{ContactId, GoogleId, SyncKind, TagId, UserId};
use crmsync_engine::model::{Contact, ContactData};
use crmsync_engine::planner::{
    self, CrmState, GoogleObs, GoogleState, LinkState, PairReason, PlanPolicy, Presence, ScopeOp,
};
use crmsync_schema::changes::Origin;
use crmsync_schema::sync_state::{self, Cursor, Link};
use crmsync_schema::{contacts as contact_store, settings, tags, AnyConnection, StoreResult};
use merges::Merges;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod merges;
mod writes;

const KIND: SyncKind = SyncKind::Contacts;

/// The contacts side of a run: the People client, the sync tag and the sync group.
pub(crate) struct Contacts {
    user: UserId,
    people: PeopleClient,
    /// `connections.list` page size.
    page_size: i32,
    tag: TagId,
    /// The sync group: the one the cursor keeps, else resolved in Google on first need (a run
    /// with nothing to do never asks for it).
    group: Option<String>,
    /// The group the cursor remembers (to notice it was re-created).
    cursor_group: Option<String>,
    /// Google confirmed the group in this run (found, created or read back): not asked again.
    group_confirmed: bool,
    /// Linked contacts put back in a re-created group in this run: members, whatever a listing
    /// made before that shows.
    restored: HashSet<String>,
}

/// Runs one contacts sync for the run's user.
pub(crate) async fn run(ctx: &RunCtx) -> Result<RunBody, SyncError> {
    let user = ctx.user.clone();
    let uid = user.id;
    let (settings, cursor, crm_high) = ctx
        .store
        .read_async(move |c| {
            let st = settings::get_sync_settings(c, uid, KIND)?;
            let cursor = sync_state::get_cursor(c, uid, KIND)?;
            let high = crmsync_schema::current_change_seq(c)?;
            Ok((st, cursor, high))
        })
        .await?;
    let cursor = ctx.start_cursor(cursor);
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
        .read_async(move |c| tags::find_tag(c, tag_id))
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
    let kind = Contacts {
        user: uid,
        people: ctx.account.people().clone(),
        page_size: ctx.config.people_page_size,
        tag: tag_id,
        group: None,
        cursor_group: cursor.google_container.clone(),
        group_confirmed: false,
        restored: HashSet::new(),
    };
    let token = cursor.google_sync_token.clone();
    drive(&mut Executor::new(ctx, kind), cursor, token, crm_high).await
}

impl Kind for Contacts {
    type Record = Contact;
    type Remote = Person;
    type Extra = SyncGroup;
    type Scope = (UserId, TagId);
    type CommitCtx = TagId;
    const KIND: SyncKind = KIND;
    const REMOTE_NOUN: &'static str = "Google contact";
    const REJOIN_GOOGLE: RejoinGoogle = RejoinGoogle::Rejoin;

    fn policy(config: &SyncConfig) -> &PlanPolicy {
        &config.contacts_policy
    }

    fn crm_state(&self, c: &Contact, _linked: bool) -> CrmState {
        let presence = if c.deleted_at.is_some() {
            Presence::Deleted
        } else if c.tags.contains(&self.tag) {
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

    fn google_state(&self, p: &Person, group: &SyncGroup, _linked: bool) -> Option<GoogleState> {
        let id = GoogleId::new(p.resource_name.clone()?);
        if contact_wire::person_is_deleted(p) {
            return Some(GoogleState {
                id,
                fields: None,
                updated_at: planner::google_time(contact_wire::person_updated_at(p)),
                presence: Presence::Deleted,
            });
        }
        let restored = p
            .resource_name
            .as_ref()
            .is_some_and(|n| self.restored.contains(n));
        let presence = if restored
            || contact_wire::person_groups(p)
                .iter()
                .any(|g| *g == *group.0)
        {
            Presence::InScope
        } else {
            Presence::OutOfScope
        };
        Some(GoogleState {
            id,
            fields: Some(contact_wire::person_fields(p)),
            updated_at: planner::google_time(contact_wire::person_updated_at(p)),
            presence,
        })
    }

    async fn list(
        &mut self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<ListedPage<Person>, GoogleError> {
        let page = self
            .people
            .list_connections(sync_token, page_token, self.page_size)
            .await?;
        Ok(ListedPage {
            items: page.people,
            next_page_token: page.next_page_token,
            next_sync_token: page.next_sync_token,
        })
    }

    async fn read_by_ids(
        &mut self,
        ids: &[String],
    ) -> Vec<(String, Result<Option<Person>, GoogleError>)> {
        match self.people.batch_get(ids).await {
            Ok(people) => {
                let mut by_name: HashMap<String, Person> = people
                    .into_iter()
                    .filter_map(|p| p.resource_name.clone().map(|n| (n, p)))
                    .collect();
                ids.iter()
                    .map(|id| (id.clone(), Ok(by_name.remove(id))))
                    .collect()
            }
            Err(e) => ids.iter().map(|id| (id.clone(), Err(e.clone()))).collect(),
        }
    }

    fn scope(&self) -> (UserId, TagId) {
        (self.user, self.tag)
    }

    fn changed_since(
        c: &mut AnyConnection,
        scope: &(UserId, TagId),
        seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<Contact>> {
        sync_state::user_contacts_changed_since(c, scope.0, scope.1, seq, limit)
    }

    fn records_by_ids(c: &mut AnyConnection, ids: &[String]) -> StoreResult<Vec<Contact>> {
        let ids: Vec<ContactId> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        contact_store::contacts_by_ids(c, &ids)
    }

    async fn context(
        ex: &mut Executor<'_, Self>,
        _remotes: &[&Person],
        _records: &[&Contact],
        _links: &[&Link],
    ) -> Result<SyncGroup, SyncError> {
        resolve_group(ex).await?;
        ex.kind.group()
    }

    async fn plan_listed(
        ex: &mut Executor<'_, Self>,
        people: Vec<Person>,
    ) -> Result<Vec<Item<Self>>, SyncError> {
        plan_listed(ex, people).await
    }

    async fn admit(ex: &mut Executor<'_, Self>, c: Contact) -> Result<Option<Contact>, SyncError> {
        // An unlinked contact enters the sync when it is tagged (a deleted or untagged one that
        // never synced is none of the sync's business).
        Ok((c.deleted_at.is_none() && c.tags.contains(&ex.kind.tag)).then_some(c))
    }

    async fn write_google(
        ex: &mut Executor<'_, Self>,
        work: &mut [Item<Self>],
    ) -> Result<(), SyncError> {
        for chunk in work.chunks_mut(BATCH) {
            writes::google_creates(ex, chunk).await?;
        }
        for chunk in work.chunks_mut(BATCH) {
            writes::google_updates(ex, chunk).await?;
        }
        writes::google_membership(ex, work).await
    }

    fn commit_ctx(&self) -> TagId {
        self.tag
    }

    fn locked_change_seq(c: &mut AnyConnection, r: &Contact) -> StoreResult<Option<i64>> {
        contact_store::locked_change_seq(c, r.id)
    }

    fn commit_crm(
        c: &mut AnyConnection,
        _user: UserId,
        tag: &TagId,
        p: &Item<Self>,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Contact>> {
        let plan = &p.plan;
        if plan.crm.create {
            let data = contact_map::apply_to_contact(&plan.crm.target, &ContactData::default());
            return Ok(Some(contact_store::create_contact(
                c,
                &data,
                &[*tag],
                None,
                origin,
                now,
            )?));
        }
        let Some(mut cur) = p.crm.clone().filter(|x| x.deleted_at.is_none()) else {
            return Ok(p.crm.clone());
        };
        if !plan.crm.update.is_empty() {
            let data = contact_map::apply_to_contact(&plan.crm.target, &cur.data);
            cur = contact_store::update_contact(c, cur.id, &data, origin, now)?;
        }
        match plan.crm.scope {
            ScopeOp::Join => cur = contact_store::tag_contact(c, cur.id, *tag, origin, now)?,
            ScopeOp::Leave => cur = contact_store::untag_contact(c, cur.id, *tag, origin, now)?,
            ScopeOp::Keep => {}
        }
        Ok(Some(cur))
    }

    const KEEPS_RECORD: bool = true;

    fn kept_record(p: &Person) -> Option<String> {
        (!contact_wire::person_is_deleted(p))
            .then(|| contact_wire::kept_person(p))
            .flatten()
    }

    fn cursor_extras(&self, old: &Cursor) -> (Option<String>, Option<String>) {
        (self.group.clone().or(old.google_container.clone()), None)
    }
}

/// What a preview takes as the group's resource name when the group does not exist yet (no
/// contact is a member of it).
const NO_GROUP_YET: &str = "contactGroups/(not created yet)";

/// The resource name of the user's sync group, once resolved: what "in scope" means in Google.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyncGroup(Arc<str>);

impl Contacts {
    /// The sync group's resource name (after [`resolve_group`]).
    fn group(&self) -> Result<SyncGroup, SyncError> {
        self.group
            .as_deref()
            .map(|g| SyncGroup(Arc::from(g)))
            .ok_or(SyncError::Invariant(
                "the sync group was used before it was resolved",
            ))
    }
}

/// Resolves the sync group (once per run): the resource name the cursor keeps, without asking
/// Google (re-resolved only when Google says it is gone, see [`confirm_group`]); found or
/// created by name when there is none (a preview only looks it up, see [`re_resolve`]).
async fn resolve_group(ex: &mut Executor<'_, Contacts>) -> Result<(), SyncError> {
    if ex.kind.group.is_none() {
        match ex.kind.cursor_group.clone() {
            Some(g) => ex.kind.group = Some(g),
            None => re_resolve(ex).await?,
        }
    }
    Ok(())
}

/// Makes sure the sync group still exists in Google (one `contactGroups.get`, at most once per
/// run), finding or re-creating it when Google says it is gone. Called where a vanished group
/// would do harm: before creates (they name the group), when a linked contact is listed out of
/// the group (a deleted group takes its members out) and when `members:modify` answers 404.
/// Returns whether the group changed.
pub(super) async fn confirm_group(ex: &mut Executor<'_, Contacts>) -> Result<bool, SyncError> {
    resolve_group(ex).await?;
    if ex.kind.group_confirmed {
        return Ok(false);
    }
    let rn = ex.kind.group()?.0.to_string();
    let found = ex
        .kind
        .people
        .get_group(&rn)
        .await
        .map_err(|e| ex.google_err(e))?;
    if found.is_some() {
        ex.kind.group_confirmed = true;
        return Ok(false);
    }
    tracing::warn!(group = %rn, "the sync group is gone in Google: finding or re-creating it");
    re_resolve(ex).await?;
    Ok(true)
}

/// Finds or creates the sync group by name (see [`ensure_group`]); it is then confirmed. A
/// preview only finds it.
async fn re_resolve(ex: &mut Executor<'_, Contacts>) -> Result<(), SyncError> {
    if ex.ctx.previewing() {
        // A preview writes nothing: a group that does not exist (yet, or any more) has no
        // members, and the run would make it.
        let found = ex
            .kind
            .people
            .find_group(&ex.ctx.config.group_name)
            .await
            .map_err(|e| ex.google_err(e))?;
        ex.kind.group = Some(
            found
                .and_then(|g| g.resource_name)
                .unwrap_or_else(|| NO_GROUP_YET.to_string()),
        );
        ex.kind.group_confirmed = true;
        return Ok(());
    }
    let old = ex
        .kind
        .group
        .clone()
        .or_else(|| ex.kind.cursor_group.clone());
    let (rn, restored) = ensure_group(ex.ctx, &ex.kind.people, old.as_deref()).await?;
    ex.kind.group = Some(rn);
    ex.kind.group_confirmed = true;
    ex.kind.restored.extend(restored);
    Ok(())
}

/// The user's sync group, found or created by name. When it is not the group known before
/// (`old`: that one vanished), every linked contact is put back in it (never read as
/// "everything deleted"); returns the group and the contacts put back.
async fn ensure_group(
    ctx: &RunCtx,
    people: &PeopleClient,
    old: Option<&str>,
) -> Result<(String, Vec<String>), SyncError> {
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
    let mut restored = Vec::new();
    if let Some(old) = old {
        if old != rn {
            tracing::warn!(old = %old, new = %rn, "the sync group changed in Google: putting linked contacts back in it");
            let uid = ctx.user.id;
            let mut after = None;
            loop {
                let a = after;
                let page = ctx
                    .store
                    .read_async(move |c| {
                        sync_state::links_in_state(c, uid, KIND, LinkState::Active, a, 1000)
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                let ids: Vec<String> = page.iter().filter_map(|l| l.google_id.clone()).collect();
                let outcome = people.modify_members(&rn, &ids, &[]).await.map_err(g)?;
                let missing: HashSet<&String> = outcome.not_found.iter().collect();
                restored.extend(ids.iter().filter(|i| !missing.contains(i)).cloned());
            }
        }
    }
    Ok((rn, restored))
}

/// Matches listed Google contacts to links and CRM contacts and plans them.
async fn plan_listed(
    ex: &mut Executor<'_, Contacts>,
    people: Vec<Person>,
) -> Result<Vec<Item<Contacts>>, SyncError> {
    // Echoes of the engine's own writes (same etag as recorded on the link) need no work.
    let names: Vec<String> = people
        .iter()
        .filter_map(|p| p.resource_name.clone())
        .collect();
    let uid = ex.uid();
    let known = ex
        .ctx
        .store
        .read_async(move |c| sync_state::links_by_google_ids(c, uid, KIND, &names))
        .await?;
    let known: HashMap<String, Option<String>> = ex
        .seen_links(known)
        .into_iter()
        .filter(|l| l.state == LinkState::Active)
        .filter_map(|l| l.google_id.map(|g| (g, l.etag)))
        .collect();
    let mut people = people;
    people.retain(|p| {
        let echo = !contact_wire::person_is_deleted(p)
            && p.etag.is_some()
            && p.resource_name.as_ref().and_then(|n| known.get(n)) == Some(&p.etag);
        if echo {
            ex.tally.body.counts.unchanged += 1;
        }
        !echo
    });
    if people.is_empty() {
        return Ok(Vec::new());
    }
    let mut group = Contacts::context(ex, &[], &[], &[]).await?;
    // A linked contact listed out of the group: removed from it, or the group itself is gone
    // (deleting a group takes its members out). Only Google can tell.
    let left = people.iter().any(|p| {
        !contact_wire::person_is_deleted(p)
            && p.resource_name
                .as_ref()
                .is_some_and(|n| known.contains_key(n))
            && !contact_wire::person_groups(p)
                .iter()
                .any(|g| *g == *group.0)
    });
    if left && confirm_group(ex).await? {
        group = ex.kind.group()?;
    }
    let mut states: Vec<(Person, GoogleState)> = people
        .into_iter()
        .filter_map(|p| Some((ex.kind.google_state(&p, &group, false)?, p)))
        .map(|(s, p)| (p, s))
        .collect();
    // A merge's tombstones are not deletes: the survivor carries what they were.
    let merges = Merges::of(&states);
    states.retain(|(_, s)| !(s.presence == Presence::Deleted && merges.is_absorbed(&s.id.0)));
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let tag = ex.kind.tag;
    let mut gids: Vec<String> = states.iter().map(|(_, s)| s.id.0.clone()).collect();
    gids.extend(merges.former_names());
    let markers: Vec<String> = states
        .iter()
        .filter_map(|(p, _)| contact_wire::person_crm_marker(p))
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
    let marker_links = markers.clone();
    let (by_google, by_crm, candidates) = ex
        .ctx
        .store
        .read_async(move |c| {
            let by_google = sync_state::links_by_google_ids(c, uid, KIND, &gids)?;
            let by_crm = sync_state::links_by_crm_ids(c, uid, KIND, &marker_links)?;
            let mut candidates = sync_state::tagged_contacts_with_emails(c, tag, &in_scope_emails)?;
            let marker_ids: Vec<ContactId> =
                markers.iter().filter_map(|m| m.parse().ok()).collect();
            candidates.extend(contact_store::contacts_by_ids(c, &marker_ids)?);
            Ok((by_google, by_crm, candidates))
        })
        .await?;
    let by_google: HashMap<String, Link> = ex
        .seen_links(by_google)
        .into_iter()
        .filter_map(|l| l.google_id.clone().map(|g| (g, l)))
        .collect();
    let by_crm: HashMap<String, Link> = ex
        .seen_links(by_crm)
        .into_iter()
        .map(|l| (l.crm_id.clone(), l))
        .collect();

    // Each contact's link, by Google id or by the CRM id it carries (see `identity`).
    let mut linked: Vec<(Person, GoogleState, Link)> = Vec::new();
    let mut unlinked: Vec<(Person, GoogleState)> = Vec::new();
    let mut duplicates: Vec<(Person, GoogleState, Link)> = Vec::new();
    let mut merged_away: Vec<(Link, GoogleId)> = Vec::new();
    for (p, s) in states {
        if let Some((takes_over, ended)) = merges.decide(&s.id.0, &by_google) {
            merged_away.extend(ended.into_iter().map(|l| (l, s.id.clone())));
            if let Some(mut l) = takes_over {
                // The survivor had no link of its own: it takes over the absorbed one's.
                l.google_id = Some(s.id.0.clone());
                linked.push((p, s, l));
                continue;
            }
        }
        let by_marker = contact_wire::person_crm_marker(&p).and_then(|m| by_crm.get(&m));
        let found = by_google.get(&s.id.0);
        match identity::resolve(
            &s.id.0,
            s.presence == Presence::Deleted,
            found.map(known_link),
            by_marker.map(known_link),
            Duplicates::Ours,
        ) {
            Identity::ByGoogleId => {
                let l = found.cloned();
                linked.extend(l.map(|l| (p, s, l)));
            }
            Identity::ByMarker => {
                if let Some(mut l) = by_marker.cloned() {
                    l.google_id = Some(s.id.0.clone());
                    linked.push((p, s, l));
                }
            }
            Identity::Duplicate => {
                if let Some(l) = by_marker.cloned() {
                    duplicates.push((p, s, l));
                }
            }
            Identity::Unlinked => unlinked.push((p, s)),
        }
    }

    let (takeovers, duplicates) = merges::survivors_among_duplicates(ex, duplicates).await?;
    linked.extend(takeovers);

    // CRM records of linked items.
    let crm_ids: Vec<ContactId> = linked
        .iter()
        .map(|(_, _, l)| l)
        .chain(merged_away.iter().map(|(l, _)| l))
        .filter_map(|l| l.crm_id.parse().ok())
        .collect();
    let crm: HashMap<String, Contact> = ex
        .ctx
        .store
        .read_async(move |c| contact_store::contacts_by_ids(c, &crm_ids))
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
    let candidate_links: HashMap<String, Link> = ex
        .ctx
        .store
        .read_async(move |c| sync_state::links_by_crm_ids(c, uid, KIND, &candidate_ids))
        .await?
        .into_iter()
        .filter(|l| l.state != LinkState::Ended)
        .map(|l| (l.crm_id.clone(), l))
        .collect();
    let tagged: Vec<Contact> = candidates
        .into_iter()
        .filter(|c| c.deleted_at.is_none() && c.tags.contains(&tag))
        .collect();
    let mut free: Vec<Contact> = tagged
        .iter()
        .filter(|c| {
            let id = c.id.to_string();
            !candidate_links.contains_key(&id)
                && !linked_crm.contains(&id)
                && !ex.handled.contains(&id)
        })
        .cloned()
        .collect();
    free.sort_by_key(|c| c.id);
    free.dedup_by_key(|c| c.id);
    let crm_keys: Vec<(String, Vec<String>)> = free
        .iter()
        .map(|c| {
            let keys = contact_map::match_keys(&contact_map::contact_fields(&c.data));
            (c.id.to_string(), keys)
        })
        .collect();
    let in_scope_unlinked: Vec<usize> = (0..unlinked.len())
        .filter(|&i| unlinked[i].1.presence == Presence::InScope)
        .collect();
    let google_keys: Vec<(String, Option<String>, Vec<String>)> = in_scope_unlinked
        .iter()
        .map(|&i| {
            let (p, s) = &unlinked[i];
            let keys = s
                .fields
                .as_ref()
                .map(contact_map::match_keys)
                .unwrap_or_default();
            (s.id.0.clone(), contact_wire::person_crm_marker(p), keys)
        })
        .collect();
    let mut paired: HashMap<usize, (usize, PairReason)> = HashMap::new();
    for (ci, gi, reason) in planner::pair_unlinked(&crm_keys, &google_keys) {
        paired.insert(in_scope_unlinked[gi], (ci, reason));
    }
    // A merge Google did not name (a full listing): an unpaired member carrying the e-mail of a
    // linked contact whose Google contact is gone takes over that link.
    let unpaired: Vec<(String, Vec<String>)> = in_scope_unlinked
        .iter()
        .zip(&google_keys)
        .filter(|(i, _)| !paired.contains_key(i))
        .map(|(_, (g, _, keys))| (g.clone(), keys.clone()))
        .collect();
    let followed =
        merges::vanished_links_by_email(ex, &unpaired, &tagged, &candidate_links).await?;
    let tagged_by_id: HashMap<String, &Contact> =
        tagged.iter().map(|c| (c.id.to_string(), c)).collect();

    let mut batch = Vec::new();
    for (p, s, l) in linked {
        ex.handled.insert(l.crm_id.clone());
        batch.push(ex.plan(Observed {
            crm: crm.get(&l.crm_id).cloned(),
            link: Some(l),
            google: GoogleObs::Seen(s),
            remote: Some(p),
            paired: None,
            extra: group.clone(),
        }));
    }
    for (i, (p, s)) in unlinked.into_iter().enumerate() {
        if let Some(l) = followed.get(&s.id.0) {
            ex.handled.insert(l.crm_id.clone());
            batch.push(ex.plan(Observed {
                crm: tagged_by_id.get(&l.crm_id).map(|c| (*c).clone()),
                link: Some(l.clone()),
                google: GoogleObs::Seen(s),
                remote: Some(p),
                paired: None,
                extra: group.clone(),
            }));
            continue;
        }
        let (crm_contact, reason) = match paired.get(&i) {
            Some((ci, reason)) => (Some(free[*ci].clone()), Some(*reason)),
            None => (None, None),
        };
        if let Some(c) = &crm_contact {
            ex.handled.insert(c.id.to_string());
        }
        batch.push(ex.plan(Observed {
            link: None,
            crm: crm_contact,
            google: GoogleObs::Seen(s),
            remote: Some(p),
            paired: reason,
            extra: group.clone(),
        }));
    }
    for s in duplicates
        .into_iter()
        .filter(|s| s.presence == Presence::InScope)
    {
        tracing::warn!(google = %s.id, "a second Google contact carries an already linked CRM id: removing it from the group");
        batch.push(Item {
            plan: identity::remove_duplicate(&s),
            link: None,
            crm: None,
            remote: None,
            written: None,
            link_id: None,
            extra: group.clone(),
            failed: false,
        });
    }
    for (l, survivor) in merged_away {
        let Some(c) = crm.get(&l.crm_id) else {
            continue;
        };
        ex.handled.insert(l.crm_id.clone());
        tracing::info!(crm = %l.crm_id, survivor = %survivor, "merged into another linked contact in Google: its link ends");
        batch.push(Item {
            plan: merges::ended_by_merge(ex, &l, c),
            link_id: Some(l.id),
            link: Some(l),
            crm: Some(c.clone()),
            remote: None,
            written: None,
            extra: group.clone(),
            failed: false,
        });
    }
    Ok(batch)
}
