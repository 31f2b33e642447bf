//! The CRM queries of a run: each user's change feed, and the CRM people an e-mail may be.

use crate::db::AnyConnection;
use crate::error::StoreResult;
use crate::schema::links;
use crate::util::parse_col;
use crmsync_engine::ids::{SyncKind, UserId};
use diesel::prelude::*;

/// Live contacts carrying `tag` with one of the (normalized) `emails`: the candidates for linking
/// a new Google contact by e-mail instead of importing a duplicate.
pub fn tagged_contacts_with_emails(
    conn: &mut AnyConnection,
    tag: crmsync_engine::ids::TagId,
    emails: &[String],
) -> StoreResult<Vec<crmsync_engine::model::Contact>> {
    use crate::schema::{contact_emails, contact_tags, contacts};
    let mut ids: Vec<String> = Vec::new();
    for chunk in emails.chunks(500) {
        let found: Vec<String> = contact_emails::table
            .inner_join(contacts::table)
            .inner_join(contact_tags::table.on(contact_tags::contact_id.eq(contacts::id)))
            .filter(contact_emails::address_norm.eq_any(chunk))
            .filter(contact_tags::tag_id.eq(tag.to_string()))
            .filter(contacts::deleted_at.is_null())
            .select(contacts::id)
            .distinct()
            .load(conn)?;
        ids.extend(found);
    }
    ids.sort();
    ids.dedup();
    let ids: Vec<crmsync_engine::ids::ContactId> = ids
        .iter()
        .map(|i| parse_col(i, "contacts.id"))
        .collect::<StoreResult<_>>()?;
    crate::contacts::contacts_by_ids(conn, &ids)
}

/// Live contacts with one of the (normalized) `emails` (for matching calendar attendees).
pub fn contacts_with_emails(
    conn: &mut AnyConnection,
    emails: &[String],
) -> StoreResult<Vec<(String, crmsync_engine::ids::ContactId)>> {
    use crate::schema::{contact_emails, contacts};
    let mut out = Vec::new();
    for chunk in emails.chunks(500) {
        let found: Vec<(String, String)> = contact_emails::table
            .inner_join(contacts::table)
            .filter(contact_emails::address_norm.eq_any(chunk))
            .filter(contacts::deleted_at.is_null())
            .select((contact_emails::address_norm, contacts::id))
            .order((contact_emails::address_norm, contacts::id))
            .load(conn)?;
        for (email, id) in found {
            out.push((email, parse_col(&id, "contacts.id")?));
        }
    }
    Ok(out)
}

/// Users whose e-mail or Google alias is one of the (normalized) `emails`: `(address, user id)`.
pub fn users_with_emails(
    conn: &mut AnyConnection,
    emails: &[String],
) -> StoreResult<Vec<(String, UserId)>> {
    use crate::schema::users;
    let mut out = Vec::new();
    for chunk in emails.chunks(500) {
        let found: Vec<(String, String, String)> = users::table
            .filter(
                users::email
                    .eq_any(chunk)
                    .or(users::google_alias.eq_any(chunk)),
            )
            .select((users::id, users::email, users::google_alias))
            .load(conn)?;
        for (id, email, alias) in found {
            let id: UserId = parse_col(&id, "users.id")?;
            for address in [email, alias] {
                let norm = crmsync_engine::model::normalize_email(&address);
                if chunk.contains(&norm) {
                    out.push((norm, id));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The CRM change feed of one user's contacts sync: contacts changed after `seq` that carry the
/// user's sync `tag` or are linked for the user, in change order, at most `limit`. Other users'
/// contacts are never read, so a run costs what changed for its user.
pub fn user_contacts_changed_since(
    conn: &mut AnyConnection,
    user: UserId,
    tag: crmsync_engine::ids::TagId,
    seq: i64,
    limit: usize,
) -> StoreResult<Vec<crmsync_engine::model::Contact>> {
    use crate::schema::{contact_tags, contacts};
    use diesel::dsl::exists;
    // Correlated EXISTS probes, so the query walks the change_seq index from the cursor and
    // costs nothing when nothing changed (an IN (subquery) made SQLite build the whole set of
    // tagged and linked contacts first, on every run).
    let tagged = exists(
        contact_tags::table
            .filter(contact_tags::contact_id.eq(contacts::id))
            .filter(contact_tags::tag_id.eq(tag.to_string())),
    );
    let linked = exists(
        links::table
            .filter(links::user_id.eq(user.to_string()))
            .filter(links::kind.eq(SyncKind::Contacts.as_str()))
            .filter(links::crm_id.eq(contacts::id)),
    );
    let ids: Vec<String> = contacts::table
        .filter(contacts::change_seq.gt(seq))
        .filter(tagged.or(linked))
        .order(contacts::change_seq)
        .limit(limit.clamp(1, 1000) as i64)
        .select(contacts::id)
        .load(conn)?;
    let ids: Vec<crmsync_engine::ids::ContactId> = ids
        .iter()
        .map(|i| parse_col(i, "contacts.id"))
        .collect::<StoreResult<_>>()?;
    let mut out = crate::contacts::contacts_by_ids(conn, &ids)?;
    out.sort_by_key(|c| c.change_seq);
    Ok(out)
}

/// The CRM change feed of one user's activities sync: activities changed after `seq` that the
/// user organizes, takes part in, or has linked, in change order, at most `limit`.
pub fn user_activities_changed_since(
    conn: &mut AnyConnection,
    user: UserId,
    seq: i64,
    limit: usize,
) -> StoreResult<Vec<crmsync_engine::model::Activity>> {
    use crate::schema::{activities, activity_participants};
    use diesel::dsl::exists;
    // Correlated EXISTS probes (see user_contacts_changed_since).
    let participant = exists(
        activity_participants::table
            .filter(activity_participants::activity_id.eq(activities::id))
            .filter(activity_participants::user_id.eq(user.to_string())),
    );
    let linked = exists(
        links::table
            .filter(links::user_id.eq(user.to_string()))
            .filter(links::kind.eq(SyncKind::Activities.as_str()))
            .filter(links::crm_id.eq(activities::id)),
    );
    let ids: Vec<String> = activities::table
        .filter(activities::change_seq.gt(seq))
        .filter(
            activities::organizer_user_id
                .eq(user.to_string())
                .or(participant)
                .or(linked),
        )
        .order(activities::change_seq)
        .limit(limit.clamp(1, 1000) as i64)
        .select(activities::id)
        .load(conn)?;
    let ids: Vec<crmsync_engine::ids::ActivityId> = ids
        .iter()
        .map(|i| parse_col(i, "activities.id"))
        .collect::<StoreResult<_>>()?;
    let mut out = crate::activities::activities_by_ids(conn, &ids)?;
    out.sort_by_key(|a| a.change_seq);
    Ok(out)
}
