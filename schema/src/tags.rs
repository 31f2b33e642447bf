//! CRM tags: private (owned by a user), public or corporate. Deleting a tag untags every contact
//! carrying it (each untag advances that contact's change sequence) and is refused while the tag
//! is someone's contact sync tag.

use crate::changes::Origin;
use crate::contacts::{get_contact, untagged};
use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::{contact_tags, sync_settings, tags};
use crate::users::get_user;
use crate::util::{from_db_time, page_limit, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{ContactId, TagId, UserId};
use crmsync_engine::model::{Tag, TagVisibility};
use diesel::prelude::*;

/// The fields of a new tag.
#[derive(Clone, Debug)]
pub struct NewTag {
    pub name: String,
    pub visibility: TagVisibility,
    /// Required for a private tag, refused for the others.
    pub owner_user_id: Option<UserId>,
    /// The CRM's id of the tag (unique).
    pub external_id: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = tags)]
struct TagRow {
    id: String,
    name: String,
    visibility: String,
    owner_user_id: Option<String>,
    created_at: NaiveDateTime,
    external_id: Option<String>,
}

impl TagRow {
    fn into_tag(self) -> StoreResult<Tag> {
        Ok(Tag {
            id: parse_col(&self.id, "tags.id")?,
            name: self.name,
            visibility: parse_col(&self.visibility, "tags.visibility")?,
            owner_user_id: self
                .owner_user_id
                .as_deref()
                .map(|o| parse_col(o, "tags.owner_user_id"))
                .transpose()?,
            created_at: from_db_time(self.created_at),
            external_id: self.external_id,
        })
    }
}

/// Creates a tag. A private tag needs an existing owner; public and corporate tags have none.
pub fn create_tag(conn: &mut AnyConnection, new: &NewTag, now: DateTime<Utc>) -> StoreResult<Tag> {
    check_tag(conn, new, None)?;
    let id = TagId::new_random();
    diesel::insert_into(tags::table)
        .values((
            tags::id.eq(id.to_string()),
            tags::name.eq(&new.name),
            tags::visibility.eq(new.visibility.as_str()),
            tags::owner_user_id.eq(new.owner_user_id.map(|u| u.to_string())),
            tags::created_at.eq(to_db_time(now)),
            tags::external_id.eq(&new.external_id),
        ))
        .execute(conn)
        .map_err(|e| crate::contacts::taken_external_id(e, new.external_id.as_deref()))?;
    get_tag(conn, id)
}

/// Replaces a tag's name, visibility, owner and external id. A tag that is someone's contact
/// sync tag keeps its visibility and owner (`Conflict`: change their sync settings first).
pub fn replace_tag(conn: &mut AnyConnection, id: TagId, new: &NewTag) -> StoreResult<Tag> {
    let current = get_tag(conn, id)?;
    if (current.visibility, current.owner_user_id) != (new.visibility, new.owner_user_id) {
        refuse_if_sync_tag(conn, id, "change its visibility or owner")?;
    }
    check_tag(conn, new, Some(id))?;
    diesel::update(tags::table.find(id.to_string()))
        .set((
            tags::name.eq(&new.name),
            tags::visibility.eq(new.visibility.as_str()),
            tags::owner_user_id.eq(new.owner_user_id.map(|u| u.to_string())),
            tags::external_id.eq(&new.external_id),
        ))
        .execute(conn)
        .map_err(|e| crate::contacts::taken_external_id(e, new.external_id.as_deref()))?;
    get_tag(conn, id)
}

/// The tag with the CRM's `external_id`.
pub fn tag_by_external_id(conn: &mut AnyConnection, external_id: &str) -> StoreResult<Option<Tag>> {
    tags::table
        .filter(tags::external_id.eq(external_id))
        .select(TagRow::as_select())
        .first(conn)
        .optional()?
        .map(TagRow::into_tag)
        .transpose()
}

/// Tags by external ids: `(external id, tag id)` for those that exist.
pub fn tag_ids_by_external_ids(
    conn: &mut AnyConnection,
    external_ids: &[String],
) -> StoreResult<Vec<(String, TagId)>> {
    let mut out = Vec::new();
    for chunk in external_ids.chunks(500) {
        let found: Vec<(Option<String>, String)> = tags::table
            .filter(tags::external_id.eq_any(chunk))
            .select((tags::external_id, tags::id))
            .load(conn)?;
        for (x, id) in found {
            if let Some(x) = x {
                out.push((x, parse_col(&id, "tags.id")?));
            }
        }
    }
    Ok(out)
}

fn refuse_if_sync_tag(conn: &mut AnyConnection, id: TagId, what: &str) -> StoreResult<()> {
    let used: i64 = sync_settings::table
        .filter(sync_settings::tag_id.eq(id.to_string()))
        .count()
        .get_result(conn)?;
    if used > 0 {
        return Err(StoreError::Conflict(format!(
            "tag {id} is the contact sync tag of {used} user(s); change their sync settings before you {what}"
        )));
    }
    Ok(())
}

/// The rules on a tag's visibility, owner and name (`except`: the tag being replaced).
fn check_tag(conn: &mut AnyConnection, new: &NewTag, except: Option<TagId>) -> StoreResult<()> {
    match (new.visibility, new.owner_user_id) {
        (TagVisibility::Private, None) => {
            return Err(StoreError::Invalid(
                "a private tag needs owner_user_id".into(),
            ));
        }
        (TagVisibility::Private, Some(owner)) => {
            get_user(conn, owner)
                .map_err(|_| StoreError::Invalid(format!("owner user {owner} does not exist")))?;
            // One private tag of a name per owner (compared case-insensitively, as the unique
            // index does), so a sync tag is never ambiguous on the admin's screen.
            let wanted = new.name.trim().to_lowercase();
            let same: Option<String> = tags::table
                .filter(tags::owner_user_id.eq(owner.to_string()))
                .filter(tags::visibility.eq(TagVisibility::Private.as_str()))
                .select((tags::id, tags::name))
                .load::<(String, String)>(conn)?
                .into_iter()
                .find(|(id, name)| {
                    name.trim().to_lowercase() == wanted
                        && except.is_none_or(|e| e.to_string() != *id)
                })
                .map(|(id, _)| id);
            if let Some(existing) = same {
                return Err(StoreError::Conflict(format!(
                    "name: user {owner} already has a private tag named {:?} ({existing}); use that tag or choose another name",
                    new.name
                )));
            }
        }
        (v, Some(_)) => {
            return Err(StoreError::Invalid(format!(
                "a {v} tag has no owner; omit owner_user_id"
            )));
        }
        (_, None) => {}
    }
    Ok(())
}

/// A tag by id.
pub fn get_tag(conn: &mut AnyConnection, id: TagId) -> StoreResult<Tag> {
    find_tag(conn, id)?.ok_or_else(|| StoreError::not_found("tag", id))
}

/// A tag by id, `None` when missing.
pub fn find_tag(conn: &mut AnyConnection, id: TagId) -> StoreResult<Option<Tag>> {
    tags::table
        .find(id.to_string())
        .select(TagRow::as_select())
        .first(conn)
        .optional()?
        .map(TagRow::into_tag)
        .transpose()
}

/// Tags ordered by id after `after`.
pub fn list_tags(
    conn: &mut AnyConnection,
    after: Option<TagId>,
    limit: usize,
) -> StoreResult<Vec<Tag>> {
    let mut q = tags::table
        .select(TagRow::as_select())
        .order(tags::id)
        .limit(page_limit(limit))
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(tags::id.gt(after.to_string()));
    }
    q.load(conn)?.into_iter().map(TagRow::into_tag).collect()
}

/// Deletes a tag: untags its contacts (advancing their change sequence), then removes it.
/// Refused (`Conflict`) while the tag is a contact sync tag.
pub fn delete_tag(
    conn: &mut AnyConnection,
    id: TagId,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    get_tag(conn, id)?;
    refuse_if_sync_tag(conn, id, "delete it")?;
    let contacts: Vec<String> = contact_tags::table
        .filter(contact_tags::tag_id.eq(id.to_string()))
        .select(contact_tags::contact_id)
        .load(conn)?;
    diesel::delete(contact_tags::table.filter(contact_tags::tag_id.eq(id.to_string())))
        .execute(conn)?;
    for c in contacts {
        let contact = get_contact(conn, parse_col::<ContactId>(&c, "contact_tags.contact_id")?)?;
        untagged(conn, &contact, id, origin, now)?;
    }
    diesel::delete(tags::table.find(id.to_string())).execute(conn)?;
    Ok(())
}
