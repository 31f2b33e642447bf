//! Contacts merged in Google (Google Contacts' "Merge duplicates"): the absorbed persons are
//! deleted and the survivor lists their former names in `metadata.previousResourceNames`. The
//! link follows the survivor (no untag, no re-import, no duplicate); when two linked contacts
//! were merged, the first link stays and the other ends, its CRM contact untagged with a journal
//! entry naming the merge (`identity::follow_merge`, `identity::merged_away`). Where Google
//! names no former record (a full listing after an expired sync token), an unlinked group member
//! carrying the e-mail of a linked CRM contact whose Google contact is gone takes over that link.

use super::Contacts;
use crate::sync::error::SyncError;
use crate::sync::executor::{known_link, Executor};
use crmsync_connectors::{contact_wire, Person};
use crmsync_engine::contact_map;
use crmsync_engine::identity::{self, Merge};
use crmsync_engine::model::Contact;
use crmsync_engine::planner::{GoogleState, ItemPlan, LinkState, Presence};
use crmsync_schema::sync_state::Link;
use std::collections::{HashMap, HashSet};

/// The merges a page of the listing shows.
pub(super) struct Merges {
    /// Survivor -> the former names it lists.
    previous: HashMap<String, Vec<String>>,
    /// Every former name of every survivor (their tombstones are the merge, not deletes).
    absorbed: HashSet<String>,
}

impl Merges {
    pub fn of(people: &[(Person, GoogleState)]) -> Merges {
        let previous: HashMap<String, Vec<String>> = people
            .iter()
            .filter(|(_, s)| s.presence != Presence::Deleted)
            .map(|(p, s)| (s.id.0.clone(), contact_wire::person_previous_names(p)))
            .filter(|(_, prev)| !prev.is_empty())
            .collect();
        let absorbed = previous.values().flatten().cloned().collect();
        Merges { previous, absorbed }
    }

    /// The former names to look links up by.
    pub fn former_names(&self) -> Vec<String> {
        self.absorbed.iter().cloned().collect()
    }

    /// Whether a listed record is the tombstone of a merged-away person.
    pub fn is_absorbed(&self, google_id: &str) -> bool {
        self.absorbed.contains(google_id)
    }

    /// For a survivor: the link it takes over (when it has none of its own) and the links that
    /// end, from the links found by Google id.
    pub fn decide(
        &self,
        survivor: &str,
        by_google: &HashMap<String, Link>,
    ) -> Option<(Option<Link>, Vec<Link>)> {
        let previous = self.previous.get(survivor)?;
        let absorbed: Vec<Option<&Link>> = previous.iter().map(|n| by_google.get(n)).collect();
        let Merge { takes_over, ended } = identity::follow_merge(
            by_google.get(survivor).map(known_link),
            &absorbed
                .iter()
                .map(|l| l.map(known_link))
                .collect::<Vec<_>>(),
        );
        let pick = |i: usize| absorbed.get(i).copied().flatten().cloned();
        Some((
            takes_over.and_then(pick),
            ended.into_iter().filter_map(pick).collect(),
        ))
    }
}

/// The plan of a link that ends because its Google contact was merged into another linked one.
pub(super) fn ended_by_merge(ex: &Executor<'_, Contacts>, link: &Link, crm: &Contact) -> ItemPlan {
    use crate::sync::driver::Kind;
    let state = ex.kind.crm_state(crm, true);
    identity::merged_away(&state, &link.snapshot)
}

/// Records that look like our own duplicates (they carry the CRM id of a link that holds
/// another Google record): when that record is gone, the carrier is the survivor of a merge Google
/// did not name (it kept the absorbed record's CRM id) and takes over the link; otherwise it is a
/// duplicate. Returns the takeovers (the link re-pointed) and the true duplicates.
pub(super) async fn survivors_among_duplicates(
    ex: &mut Executor<'_, Contacts>,
    candidates: Vec<(Person, GoogleState, Link)>,
) -> Result<(Vec<(Person, GoogleState, Link)>, Vec<GoogleState>), SyncError> {
    if candidates.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let ids: Vec<String> = candidates
        .iter()
        .filter_map(|(_, _, l)| l.google_id.clone())
        .collect();
    let found = ex.fetch(&ids).await?;
    let mut taken: HashSet<String> = HashSet::new();
    let (mut takeovers, mut duplicates) = (Vec::new(), Vec::new());
    for (p, s, mut l) in candidates {
        let gone = l
            .google_id
            .as_ref()
            .is_none_or(|g| found.get(g).is_none_or(contact_wire::person_is_deleted));
        if gone && taken.insert(l.crm_id.clone()) {
            tracing::info!(survivor = %s.id, crm = %l.crm_id, "the linked Google contact is gone and another carries its CRM id: the link follows it (a merge)");
            l.google_id = Some(s.id.0.clone());
            takeovers.push((p, s, l));
        } else {
            duplicates.push(s);
        }
    }
    Ok((takeovers, duplicates))
}

/// The fallback without former names: unlinked group members (`candidates`: Google id and
/// match keys) that carry the e-mail of a tagged CRM contact whose link points at a Google
/// contact that is gone. Returns, per Google id, the link it takes over.
pub(super) async fn vanished_links_by_email(
    ex: &mut Executor<'_, Contacts>,
    candidates: &[(String, Vec<String>)],
    tagged: &[Contact],
    links: &HashMap<String, Link>,
) -> Result<HashMap<String, Link>, SyncError> {
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let tagged_keys: Vec<(&Contact, Vec<String>)> = tagged
        .iter()
        .map(|c| {
            (
                c,
                contact_map::match_keys(&contact_map::contact_fields(&c.data)),
            )
        })
        .collect();
    let mut wanted: Vec<(String, Link)> = Vec::new();
    for (google_id, keys) in candidates {
        let hit = tagged_keys
            .iter()
            .find(|(_, theirs)| theirs.iter().any(|k| keys.contains(k)))
            .map(|(c, _)| *c);
        let Some(link) = hit.and_then(|c| links.get(&c.id.to_string())) else {
            continue;
        };
        if link.state == LinkState::Active
            && link.google_id.as_deref().is_some_and(|g| g != google_id)
            && !wanted.iter().any(|(_, l)| l.id == link.id)
        {
            wanted.push((google_id.clone(), link.clone()));
        }
    }
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = wanted
        .iter()
        .filter_map(|(_, l)| l.google_id.clone())
        .collect();
    let found = ex.fetch(&ids).await?;
    let gone = |l: &Link| {
        l.google_id
            .as_ref()
            .is_none_or(|g| found.get(g).is_none_or(contact_wire::person_is_deleted))
    };
    Ok(wanted
        .into_iter()
        .filter(|(_, l)| gone(l))
        .map(|(g, mut l)| {
            tracing::info!(survivor = %g, crm = %l.crm_id, "a linked Google contact is gone and a group member carries its e-mail: the link follows it (a merge)");
            l.google_id = Some(g.clone());
            (g, l)
        })
        .collect())
}
