//! CRM contacts with their e-mails, phones, postal addresses and tags. Every write (create,
//! update, delete, tag, untag) runs inside the caller's write transaction, takes the next change
//! sequence number into `change_seq` and sets `modified_at = now`. Deletes are soft: the row stays
//! as a tombstone (`deleted_at`) with its data, so the change feed reports it. Each write is also
//! recorded in the CRM-facing change feed ([`crate::changes`]) with its [`Origin`].

use crate::changes::{self, Action, Made, Origin, RecordKind};
use crate::db::{require_transaction, AnyConnection};
use crate::error::{StoreError, StoreResult};
use crate::schema::{
    contact_addresses, contact_emails, contact_phones, contact_tags, contacts, tags,
};
use crate::util::{from_db_time, next_change_seq, page_limit, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{ContactId, TagId};
use crmsync_engine::model::{
    normalize_email, Birthday, Contact, ContactData, Email, Phone, PostalAddress,
};
use diesel::prelude::*;
use std::collections::HashMap;

#[derive(Queryable, Selectable)]
#[diesel(table_name = contacts)]
struct ContactRow {
    id: String,
    given_name: String,
    family_name: String,
    display_name: Option<String>,
    organization: Option<String>,
    job_title: Option<String>,
    birthday: Option<String>,
    notes: Option<String>,
    created_at: NaiveDateTime,
    modified_at: NaiveDateTime,
    change_seq: i64,
    deleted_at: Option<NaiveDateTime>,
    external_id: Option<String>,
}

/// Creates a contact carrying `tags` (which must exist), under the CRM's `external_id` if any
/// (a taken one is a `Conflict`).
pub fn create_contact(
    conn: &mut AnyConnection,
    data: &ContactData,
    tag_ids: &[TagId],
    external_id: Option<&str>,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Contact> {
    let seq = next_change_seq(conn)?;
    let id = ContactId::new_random();
    let ts = to_db_time(now);
    diesel::insert_into(contacts::table)
        .values((
            contacts::id.eq(id.to_string()),
            contacts::given_name.eq(&data.given_name),
            contacts::family_name.eq(&data.family_name),
            contacts::display_name.eq(&data.display_name),
            contacts::organization.eq(&data.organization),
            contacts::job_title.eq(&data.job_title),
            contacts::birthday.eq(data.birthday.map(|b| b.to_string())),
            contacts::notes.eq(&data.notes),
            contacts::created_at.eq(ts),
            contacts::modified_at.eq(ts),
            contacts::change_seq.eq(seq),
            contacts::deleted_at.eq(None::<NaiveDateTime>),
            contacts::external_id.eq(external_id),
        ))
        .execute(conn)
        .map_err(|e| taken_external_id(e, external_id))?;
    write_children(conn, id, data)?;
    for tag in tag_ids {
        insert_tag_link(conn, id, *tag, now)?;
    }
    let contact = get_contact(conn, id)?;
    record(conn, &contact, seq, Action::Created, None, origin, now)?;
    Ok(contact)
}

/// A unique-index violation on `external_id` as a `Conflict` that names the id.
pub(crate) fn taken_external_id(e: diesel::result::Error, external_id: Option<&str>) -> StoreError {
    match (e, external_id) {
        (
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ),
            Some(x),
        ) => StoreError::Conflict(format!("external_id {x:?} is already taken")),
        (e, _) => e.into(),
    }
}

fn record(
    conn: &mut AnyConnection,
    contact: &Contact,
    seq: i64,
    action: Action,
    tag: Option<TagId>,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let id = contact.id.to_string();
    let mut tags = contact.tags.clone();
    tags.extend(tag);
    let made = Made {
        cursor: seq,
        kind: RecordKind::Contact,
        id: &id,
        external_id: contact.external_id.as_deref(),
        action,
        tag,
        concerns: sync_tag_owners(conn, &tags)?,
    };
    changes::record(conn, made, origin, now)
}

/// The users whose contact sync tag is one of `tags`.
fn sync_tag_owners(
    conn: &mut AnyConnection,
    tags: &[TagId],
) -> StoreResult<Vec<crmsync_engine::ids::UserId>> {
    use crate::schema::sync_settings;
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let users: Vec<String> = sync_settings::table
        .filter(sync_settings::kind.eq(crmsync_engine::ids::SyncKind::Contacts.as_str()))
        .filter(sync_settings::tag_id.eq_any(keys))
        .select(sync_settings::user_id)
        .load(conn)?;
    users
        .iter()
        .map(|u| parse_col(u, "sync_settings.user_id"))
        .collect()
}

/// A live contact by its external id.
pub fn contact_by_external_id(
    conn: &mut AnyConnection,
    external_id: &str,
) -> StoreResult<Option<Contact>> {
    let rows: Vec<ContactRow> = contacts::table
        .filter(contacts::external_id.eq(external_id))
        .filter(contacts::deleted_at.is_null())
        .select(ContactRow::as_select())
        .load(conn)?;
    Ok(hydrate(conn, rows)?.pop())
}

/// The id of the live contact with `external_id` (one indexed lookup, no hydration: for
/// writers that lock the row before reading it).
pub fn contact_id_by_external_id(
    conn: &mut AnyConnection,
    external_id: &str,
) -> StoreResult<Option<ContactId>> {
    Ok(
        contact_ids_by_external_ids(conn, &[external_id.to_string()])?
            .pop()
            .map(|(_, id)| id),
    )
}

/// Live contacts by external ids: `(external id, contact id)` for those that exist.
pub fn contact_ids_by_external_ids(
    conn: &mut AnyConnection,
    external_ids: &[String],
) -> StoreResult<Vec<(String, ContactId)>> {
    let mut out = Vec::new();
    for chunk in external_ids.chunks(500) {
        let found: Vec<(Option<String>, String)> = contacts::table
            .filter(contacts::external_id.eq_any(chunk))
            .filter(contacts::deleted_at.is_null())
            .select((contacts::external_id, contacts::id))
            .load(conn)?;
        for (x, id) in found {
            if let Some(x) = x {
                out.push((x, parse_col(&id, "contacts.id")?));
            }
        }
    }
    Ok(out)
}

/// Live contacts (with their data) by external ids, for a batch of upserts.
pub fn contacts_by_external_ids(
    conn: &mut AnyConnection,
    external_ids: &[String],
) -> StoreResult<Vec<Contact>> {
    let mut out = Vec::new();
    for chunk in external_ids.chunks(500) {
        let rows = contacts::table
            .filter(contacts::external_id.eq_any(chunk))
            .filter(contacts::deleted_at.is_null())
            .select(ContactRow::as_select())
            .load(conn)?;
        out.extend(hydrate(conn, rows)?);
    }
    Ok(out)
}

/// Gives a live contact the CRM's `external_id` (`None` takes it away); not a change in the feed.
pub fn set_contact_external_id(
    conn: &mut AnyConnection,
    id: ContactId,
    external_id: Option<&str>,
) -> StoreResult<()> {
    require_live(conn, id)?;
    diesel::update(contacts::table.find(id.to_string()))
        .set(contacts::external_id.eq(external_id))
        .execute(conn)
        .map_err(|e| taken_external_id(e, external_id))?;
    Ok(())
}

/// Replaces a live contact's tags with `tags` (each must exist): untags what is not in it, then
/// tags what is missing, each one change.
pub fn set_contact_tags(
    conn: &mut AnyConnection,
    id: ContactId,
    tags: &[TagId],
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Contact> {
    let mut cur = get_contact(conn, id)?;
    for t in cur.tags.clone() {
        if !tags.contains(&t) {
            cur = untag_contact(conn, id, t, origin, now)?;
        }
    }
    for t in tags {
        if !cur.tags.contains(t) {
            cur = tag_contact(conn, id, *t, origin, now)?;
        }
    }
    Ok(cur)
}

/// Replaces a live contact's data (its tags stay).
pub fn update_contact(
    conn: &mut AnyConnection,
    id: ContactId,
    data: &ContactData,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Contact> {
    require_live(conn, id)?;
    let seq = next_change_seq(conn)?;
    diesel::update(contacts::table.find(id.to_string()))
        .set((
            contacts::given_name.eq(&data.given_name),
            contacts::family_name.eq(&data.family_name),
            contacts::display_name.eq(&data.display_name),
            contacts::organization.eq(&data.organization),
            contacts::job_title.eq(&data.job_title),
            contacts::birthday.eq(data.birthday.map(|b| b.to_string())),
            contacts::notes.eq(&data.notes),
            contacts::modified_at.eq(to_db_time(now)),
            contacts::change_seq.eq(seq),
        ))
        .execute(conn)?;
    write_children(conn, id, data)?;
    let contact = get_contact(conn, id)?;
    record(conn, &contact, seq, Action::Updated, None, origin, now)?;
    Ok(contact)
}

/// Soft-deletes a live contact: it becomes a tombstone that keeps its data and tags, and gives
/// up its external id (the CRM may create a new contact under it).
pub fn delete_contact(
    conn: &mut AnyConnection,
    id: ContactId,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Contact> {
    require_live(conn, id)?;
    let seq = next_change_seq(conn)?;
    let ts = to_db_time(now);
    diesel::update(contacts::table.find(id.to_string()))
        .set((
            contacts::deleted_at.eq(Some(ts)),
            contacts::modified_at.eq(ts),
            contacts::change_seq.eq(seq),
        ))
        .execute(conn)?;
    let mut contact = get_contact(conn, id)?;
    record(conn, &contact, seq, Action::Deleted, None, origin, now)?;
    if contact.external_id.is_some() {
        diesel::update(contacts::table.find(id.to_string()))
            .set(contacts::external_id.eq(None::<String>))
            .execute(conn)?;
        contact.external_id = None;
    }
    Ok(contact)
}

/// Adds `tag` to a live contact. Tagging twice changes nothing (and does not advance the feed).
pub fn tag_contact(
    conn: &mut AnyConnection,
    id: ContactId,
    tag: TagId,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Contact> {
    require_live(conn, id)?;
    if has_tag(conn, id, tag)? {
        return get_contact(conn, id);
    }
    insert_tag_link(conn, id, tag, now)?;
    let seq = touch_contact(conn, id, now)?;
    let contact = get_contact(conn, id)?;
    record(conn, &contact, seq, Action::Tagged, Some(tag), origin, now)?;
    Ok(contact)
}

/// Removes `tag` from a live contact. Untagging a contact without the tag changes nothing.
pub fn untag_contact(
    conn: &mut AnyConnection,
    id: ContactId,
    tag: TagId,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<Contact> {
    require_live(conn, id)?;
    let removed = diesel::delete(
        contact_tags::table
            .filter(contact_tags::contact_id.eq(id.to_string()))
            .filter(contact_tags::tag_id.eq(tag.to_string())),
    )
    .execute(conn)?;
    let contact = get_contact(conn, id)?;
    if removed > 0 {
        untagged(conn, &contact, tag, origin, now)?;
    }
    get_contact(conn, id)
}

/// Records that `tag` was taken off `contact` (its link row already deleted).
pub(crate) fn untagged(
    conn: &mut AnyConnection,
    contact: &Contact,
    tag: TagId,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let seq = touch_contact(conn, contact.id, now)?;
    record(conn, contact, seq, Action::Untagged, Some(tag), origin, now)
}

/// Locks a contact's row until the transaction ends (a no-op update: portable `FOR UPDATE`), so a
/// read-modify-write of it cannot lose a concurrent change on PostgreSQL. SQLite's write
/// transactions are already exclusive.
pub fn lock_contact(conn: &mut AnyConnection, id: ContactId) -> StoreResult<()> {
    require_transaction(conn)?;
    diesel::update(contacts::table.find(id.to_string()))
        .set(contacts::id.eq(contacts::id))
        .execute(conn)?;
    Ok(())
}

/// Locks a contact's row (see [`lock_contact`]) and answers its change sequence (`None`: no
/// such contact): what the sync compares with the sequence it planned from before it writes.
pub fn locked_change_seq(conn: &mut AnyConnection, id: ContactId) -> StoreResult<Option<i64>> {
    lock_contact(conn, id)?;
    Ok(contacts::table
        .find(id.to_string())
        .select(contacts::change_seq)
        .first::<i64>(conn)
        .optional()?)
}

/// Advances a contact's change sequence and `modified_at` (after a change to its tags); returns
/// the sequence number taken.
fn touch_contact(conn: &mut AnyConnection, id: ContactId, now: DateTime<Utc>) -> StoreResult<i64> {
    let seq = next_change_seq(conn)?;
    diesel::update(contacts::table.find(id.to_string()))
        .set((
            contacts::modified_at.eq(to_db_time(now)),
            contacts::change_seq.eq(seq),
        ))
        .execute(conn)?;
    Ok(seq)
}

/// Whether the contact carries `tag`.
pub fn has_tag(conn: &mut AnyConnection, id: ContactId, tag: TagId) -> StoreResult<bool> {
    let n: i64 = contact_tags::table
        .filter(contact_tags::contact_id.eq(id.to_string()))
        .filter(contact_tags::tag_id.eq(tag.to_string()))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

fn insert_tag_link(
    conn: &mut AnyConnection,
    id: ContactId,
    tag: TagId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let exists: i64 = tags::table
        .filter(tags::id.eq(tag.to_string()))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(StoreError::Invalid(format!("tag {tag} does not exist")));
    }
    diesel::insert_into(contact_tags::table)
        .values((
            contact_tags::contact_id.eq(id.to_string()),
            contact_tags::tag_id.eq(tag.to_string()),
            contact_tags::created_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    Ok(())
}

fn require_live(conn: &mut AnyConnection, id: ContactId) -> StoreResult<()> {
    require_transaction(conn)?;
    let deleted: Option<Option<NaiveDateTime>> = contacts::table
        .find(id.to_string())
        .select(contacts::deleted_at)
        .first(conn)
        .optional()?;
    match deleted {
        None => Err(StoreError::not_found("contact", id)),
        Some(Some(_)) => Err(StoreError::NotFound {
            what: "contact (deleted)",
            id: id.to_string(),
        }),
        Some(None) => Ok(()),
    }
}

fn write_children(conn: &mut AnyConnection, id: ContactId, data: &ContactData) -> StoreResult<()> {
    let cid = id.to_string();
    diesel::delete(contact_emails::table.filter(contact_emails::contact_id.eq(&cid)))
        .execute(conn)?;
    diesel::delete(contact_phones::table.filter(contact_phones::contact_id.eq(&cid)))
        .execute(conn)?;
    diesel::delete(contact_addresses::table.filter(contact_addresses::contact_id.eq(&cid)))
        .execute(conn)?;
    for (i, e) in data.emails.iter().enumerate() {
        diesel::insert_into(contact_emails::table)
            .values((
                contact_emails::contact_id.eq(&cid),
                contact_emails::position.eq(i as i32),
                contact_emails::address.eq(&e.address),
                contact_emails::address_norm.eq(normalize_email(&e.address)),
                contact_emails::kind.eq(e.kind.as_str()),
                contact_emails::is_primary.eq(e.primary),
            ))
            .execute(conn)?;
    }
    for (i, p) in data.phones.iter().enumerate() {
        diesel::insert_into(contact_phones::table)
            .values((
                contact_phones::contact_id.eq(&cid),
                contact_phones::position.eq(i as i32),
                contact_phones::number.eq(&p.number),
                contact_phones::kind.eq(p.kind.as_str()),
            ))
            .execute(conn)?;
    }
    for (i, a) in data.addresses.iter().enumerate() {
        diesel::insert_into(contact_addresses::table)
            .values((
                contact_addresses::contact_id.eq(&cid),
                contact_addresses::position.eq(i as i32),
                contact_addresses::kind.eq(a.kind.as_str()),
                contact_addresses::street.eq(&a.street),
                contact_addresses::city.eq(&a.city),
                contact_addresses::region.eq(&a.region),
                contact_addresses::postal_code.eq(&a.postal_code),
                contact_addresses::country.eq(&a.country),
                contact_addresses::country_code.eq(&a.country_code),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A contact by id, tombstones included.
pub fn get_contact(conn: &mut AnyConnection, id: ContactId) -> StoreResult<Contact> {
    find_contact(conn, id)?.ok_or_else(|| StoreError::not_found("contact", id))
}

/// A contact by id (tombstones included), `None` when missing.
pub fn find_contact(conn: &mut AnyConnection, id: ContactId) -> StoreResult<Option<Contact>> {
    let rows: Vec<ContactRow> = contacts::table
        .find(id.to_string())
        .select(ContactRow::as_select())
        .load(conn)?;
    Ok(hydrate(conn, rows)?.pop())
}

/// Contacts by ids (tombstones included), in the order found; missing ids are skipped.
pub fn contacts_by_ids(conn: &mut AnyConnection, ids: &[ContactId]) -> StoreResult<Vec<Contact>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        let rows = contacts::table
            .filter(contacts::id.eq_any(keys))
            .select(ContactRow::as_select())
            .load(conn)?;
        out.extend(hydrate(conn, rows)?);
    }
    Ok(out)
}

/// The change feed: contacts (tombstones included) whose `change_seq` is greater than `seq`,
/// in `change_seq` order, at most `limit`. An index range scan on `change_seq`.
pub fn contacts_changed_since(
    conn: &mut AnyConnection,
    seq: i64,
    limit: usize,
) -> StoreResult<Vec<Contact>> {
    let rows = contacts::table
        .filter(contacts::change_seq.gt(seq))
        .order(contacts::change_seq)
        .limit(page_limit(limit))
        .select(ContactRow::as_select())
        .load(conn)?;
    hydrate(conn, rows)
}

/// Live contacts carrying `tag`, ordered by id, after `after` (keyset pagination).
pub fn contacts_with_tag(
    conn: &mut AnyConnection,
    tag: TagId,
    after: Option<ContactId>,
    limit: usize,
) -> StoreResult<Vec<Contact>> {
    let mut q = contacts::table
        .inner_join(contact_tags::table)
        .filter(contact_tags::tag_id.eq(tag.to_string()))
        .filter(contacts::deleted_at.is_null())
        .order(contacts::id)
        .limit(page_limit(limit))
        .select(ContactRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(contacts::id.gt(after.to_string()));
    }
    let rows = q.load(conn)?;
    hydrate(conn, rows)
}

/// Live contacts ordered by id, after `after`.
pub fn list_contacts(
    conn: &mut AnyConnection,
    after: Option<ContactId>,
    limit: usize,
) -> StoreResult<Vec<Contact>> {
    let mut q = contacts::table
        .filter(contacts::deleted_at.is_null())
        .order(contacts::id)
        .limit(page_limit(limit))
        .select(ContactRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(contacts::id.gt(after.to_string()));
    }
    let rows = q.load(conn)?;
    hydrate(conn, rows)
}

/// Live contacts with an e-mail address equal to `email` after normalization (indexed).
pub fn contacts_by_email(conn: &mut AnyConnection, email: &str) -> StoreResult<Vec<Contact>> {
    let ids: Vec<String> = contact_emails::table
        .inner_join(contacts::table)
        .filter(contact_emails::address_norm.eq(normalize_email(email)))
        .filter(contacts::deleted_at.is_null())
        .select(contacts::id)
        .distinct()
        .order(contacts::id)
        .load(conn)?;
    let ids: Vec<ContactId> = ids
        .iter()
        .map(|i| parse_col(i, "contacts.id"))
        .collect::<StoreResult<_>>()?;
    contacts_by_ids(conn, &ids)
}

/// Number of live contacts.
pub fn count_contacts(conn: &mut AnyConnection) -> StoreResult<i64> {
    Ok(contacts::table
        .filter(contacts::deleted_at.is_null())
        .count()
        .get_result(conn)?)
}

/// Loads the children of `rows` in four batch queries and builds the contacts, keeping order.
fn hydrate(conn: &mut AnyConnection, rows: Vec<ContactRow>) -> StoreResult<Vec<Contact>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut emails: HashMap<String, Vec<Email>> = HashMap::new();
    for (cid, address, kind, primary) in contact_emails::table
        .filter(contact_emails::contact_id.eq_any(&ids))
        .order((contact_emails::contact_id, contact_emails::position))
        .select((
            contact_emails::contact_id,
            contact_emails::address,
            contact_emails::kind,
            contact_emails::is_primary,
        ))
        .load::<(String, String, String, bool)>(conn)?
    {
        emails.entry(cid).or_default().push(Email {
            address,
            kind: parse_col(&kind, "contact_emails.kind")?,
            primary,
        });
    }
    let mut phones: HashMap<String, Vec<Phone>> = HashMap::new();
    for (cid, number, kind) in contact_phones::table
        .filter(contact_phones::contact_id.eq_any(&ids))
        .order((contact_phones::contact_id, contact_phones::position))
        .select((
            contact_phones::contact_id,
            contact_phones::number,
            contact_phones::kind,
        ))
        .load::<(String, String, String)>(conn)?
    {
        phones.entry(cid).or_default().push(Phone {
            number,
            kind: parse_col(&kind, "contact_phones.kind")?,
        });
    }
    type AddrRow = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut addresses: HashMap<String, Vec<PostalAddress>> = HashMap::new();
    for (cid, kind, street, city, region, postal_code, country, country_code) in
        contact_addresses::table
            .filter(contact_addresses::contact_id.eq_any(&ids))
            .order((contact_addresses::contact_id, contact_addresses::position))
            .select((
                contact_addresses::contact_id,
                contact_addresses::kind,
                contact_addresses::street,
                contact_addresses::city,
                contact_addresses::region,
                contact_addresses::postal_code,
                contact_addresses::country,
                contact_addresses::country_code,
            ))
            .load::<AddrRow>(conn)?
    {
        addresses.entry(cid).or_default().push(PostalAddress {
            kind: parse_col(&kind, "contact_addresses.kind")?,
            street,
            city,
            region,
            postal_code,
            country,
            country_code,
        });
    }
    let mut tag_map: HashMap<String, Vec<TagId>> = HashMap::new();
    for (cid, tag) in contact_tags::table
        .filter(contact_tags::contact_id.eq_any(&ids))
        .order((contact_tags::contact_id, contact_tags::tag_id))
        .select((contact_tags::contact_id, contact_tags::tag_id))
        .load::<(String, String)>(conn)?
    {
        tag_map
            .entry(cid)
            .or_default()
            .push(parse_col(&tag, "contact_tags.tag_id")?);
    }
    rows.into_iter()
        .map(|r| {
            let birthday = r
                .birthday
                .as_deref()
                .map(|b| {
                    Birthday::parse(b)
                        .map_err(|e| StoreError::Corrupt(format!("contacts.birthday: {e}")))
                })
                .transpose()?;
            Ok(Contact {
                id: parse_col(&r.id, "contacts.id")?,
                data: ContactData {
                    given_name: r.given_name,
                    family_name: r.family_name,
                    display_name: r.display_name,
                    emails: emails.remove(&r.id).unwrap_or_default(),
                    phones: phones.remove(&r.id).unwrap_or_default(),
                    organization: r.organization,
                    job_title: r.job_title,
                    addresses: addresses.remove(&r.id).unwrap_or_default(),
                    birthday,
                    notes: r.notes,
                },
                tags: tag_map.remove(&r.id).unwrap_or_default(),
                created_at: from_db_time(r.created_at),
                modified_at: from_db_time(r.modified_at),
                change_seq: r.change_seq,
                deleted_at: r.deleted_at.map(from_db_time),
                external_id: r.external_id,
            })
        })
        .collect()
}
