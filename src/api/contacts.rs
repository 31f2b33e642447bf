//! `/contacts`: create (201), list (all live contacts, or `?tag_id=`; paginated), read, change
//! (PATCH: absent fields stay, `null` clears the optional ones: display_name, organization,
//! job_title, notes, birthday; names and lists refuse `null`, send `""` or `[]`), delete (a
//! tombstone), and tag / untag. Nested objects (emails, phones, addresses) refuse unknown fields.
//!
//! For a CRM that keeps its own records (SPEC 6.4): `PUT/GET/DELETE
//! /contacts/by-external-id/{external_id}` (an idempotent upsert under the CRM's id) and
//! `POST /contacts/batch` (up to 1,000 upserts in one transaction). Every contact carries its
//! `version` (also the `ETag`); PATCH, PUT and DELETE honour `If-Match`.

use super::error::{ApiError, ApiResult};
use super::extract::{non_null, ApiPath, ApiQuery, JsonBody, PatchBody};
use super::page::{self, Page};
use super::upsert::{self, BatchBody, BatchResults, Outcome, Resolver};
use super::validate::{self, Check, Invalid, LONG_TEXT, SHORT_TEXT};
use super::versions::{IfMatch, Versioned};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use crmsync_engine::ids::{ContactId, TagId};
use crmsync_engine::model::{
    AddressKind, Birthday, Contact, ContactData, Email, EmailKind, Phone, PhoneKind, PostalAddress,
};
use crmsync_schema::changes::Origin;
use crmsync_schema::contacts as store;
use crmsync_schema::tags as tag_store;
use crmsync_schema::{AnyConnection, StoreError, StoreResult};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
pub fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An e-mail address as a client sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailInput {
    #[schema(format = Email, max_length = 320, example = "ann@clients.example")]
    address: String,
    #[serde(default)]
    #[schema(value_type = super::openapi::EmailKindDoc)]
    kind: EmailKind,
    #[serde(default)]
    primary: bool,
}

impl From<EmailInput> for Email {
    fn from(e: EmailInput) -> Self {
        Email {
            address: e.address,
            kind: e.kind,
            primary: e.primary,
        }
    }
}

/// A phone number as a client sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneInput {
    /// Must have a digit.
    #[schema(min_length = 1, max_length = 100, example = "+44 20 7946 0000")]
    number: String,
    #[serde(default)]
    #[schema(value_type = super::openapi::PhoneKindDoc)]
    kind: PhoneKind,
}

impl From<PhoneInput> for Phone {
    fn from(p: PhoneInput) -> Self {
        Phone {
            number: p.number,
            kind: p.kind,
        }
    }
}

/// A postal address as a client sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    #[serde(default)]
    #[schema(value_type = super::openapi::AddressKindDoc)]
    kind: AddressKind,
    #[serde(default)]
    street: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    postal_code: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    country_code: Option<String>,
}

impl From<AddressInput> for PostalAddress {
    fn from(a: AddressInput) -> Self {
        PostalAddress {
            kind: a.kind,
            street: a.street,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
            country_code: a.country_code,
        }
    }
}

fn into_all<A, B: From<A>>(v: Vec<A>) -> Vec<B> {
    v.into_iter().map(B::from).collect()
}

/// A new contact: it needs a name (given, family or display name, or an organization).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContact {
    given_name: String,
    family_name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    emails: Vec<EmailInput>,
    #[serde(default)]
    phones: Vec<PhoneInput>,
    #[serde(default)]
    addresses: Vec<AddressInput>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    job_title: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    /// `YYYY-MM-DD`, or `--MM-DD` when the year is unknown.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "1980-04-23")]
    birthday: Option<Birthday>,
    /// Tags to put on the contact. In an upsert the tags sent (here and in `tag_external_ids`)
    /// replace the contact's tags; when both are absent its tags stay.
    #[serde(default)]
    #[schema(value_type = Option<Vec<uuid::Uuid>>, max_items = 100)]
    tags: Option<Vec<TagId>>,
    /// Tags to put on the contact, by the CRM's ids.
    #[serde(default)]
    #[schema(max_items = 100)]
    tag_external_ids: Option<Vec<String>>,
    /// The CRM's id of the contact (1 to 255 characters, unique). In a PUT by external id it may
    /// be omitted, and must equal the path's when sent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
}

impl CreateContact {
    /// The contact's data, checked as the client sent it and as a whole.
    fn checked_data(&self) -> ApiResult<ContactData> {
        let data = ContactData {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            display_name: self.display_name.clone(),
            emails: into_all(self.emails.clone()),
            phones: into_all(self.phones.clone()),
            organization: self.organization.clone(),
            job_title: self.job_title.clone(),
            addresses: into_all(self.addresses.clone()),
            birthday: self.birthday,
            notes: self.notes.clone(),
        };
        check_input(&data)?;
        check_contact(&data)?;
        let n_tags = self.tags.as_ref().map_or(0, Vec::len)
            + self.tag_external_ids.as_ref().map_or(0, Vec::len);
        if n_tags > 100 {
            return Err(ApiError::invalid("a contact has at most 100 tags"));
        }
        for (i, x) in self.tag_external_ids.iter().flatten().enumerate() {
            upsert::check_external_id(&format!("tag_external_ids[{i}]"), x)?;
        }
        if let Some(x) = &self.external_id {
            upsert::check_external_id("external_id", x)?;
        }
        Ok(data)
    }

    /// The tags sent (ids and external ids resolved), `None` when neither field was.
    fn tag_ids(&self, tags: &Resolver<TagId>) -> StoreResult<Option<Vec<TagId>>> {
        if self.tags.is_none() && self.tag_external_ids.is_none() {
            return Ok(None);
        }
        let mut out: Vec<TagId> = self.tags.clone().unwrap_or_default();
        for (i, x) in self.tag_external_ids.iter().flatten().enumerate() {
            out.push(tags.get(&format!("tag_external_ids[{i}]"), x)?);
        }
        out.sort();
        out.dedup();
        Ok(Some(out))
    }
}

/// A contact as the API shows it: its fields, tags, external id and `version`.
#[derive(Debug, Serialize)]
pub struct ContactView {
    #[serde(flatten)]
    pub contact: Contact,
    /// Grows on every change; send it back in `If-Match` to write only over this version.
    pub version: i64,
}

impl From<Contact> for ContactView {
    fn from(contact: Contact) -> Self {
        let version = contact.change_seq;
        ContactView { contact, version }
    }
}

/// A contact answered with its `ETag`.
fn versioned(contact: Contact) -> Versioned<Json<ContactView>> {
    Versioned {
        version: contact.change_seq,
        body: Json(contact.into()),
    }
}

/// The fields to change (at least one). Absent fields stay; `null` clears display_name,
/// organization, job_title, notes and birthday; names and lists refuse `null` (send `""` or
/// `[]`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchContact {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    given_name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    family_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    emails: Option<Vec<EmailInput>>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    phones: Option<Vec<PhoneInput>>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    addresses: Option<Vec<AddressInput>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    organization: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    job_title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    notes: Option<Option<String>>,
    /// `YYYY-MM-DD`, or `--MM-DD` when the year is unknown; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    birthday: Option<Option<Birthday>>,
    /// Gives the record the CRM's id (for one the sync brought from Google); `null` takes it away.
    /// Not a change in the feed.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    external_id: Option<Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only the contacts with this tag.
    #[param(value_type = Option<uuid::Uuid>)]
    tag_id: Option<TagId>,
}

/// Every rule on a contact's fields.
pub fn check_contact(d: &ContactData) -> Check {
    let named = [&d.given_name, &d.family_name]
        .iter()
        .any(|n| !n.trim().is_empty())
        || d.display_name
            .as_deref()
            .is_some_and(|n| !n.trim().is_empty())
        || d.organization
            .as_deref()
            .is_some_and(|n| !n.trim().is_empty());
    if !named {
        return Err(Invalid(
            "a contact needs a name: set given_name, family_name, display_name or organization"
                .into(),
        ));
    }
    validate::text("given_name", &d.given_name, SHORT_TEXT)?;
    validate::text("family_name", &d.family_name, SHORT_TEXT)?;
    validate::opt_text("display_name", &d.display_name, SHORT_TEXT)?;
    validate::opt_text("organization", &d.organization, SHORT_TEXT)?;
    validate::opt_text("job_title", &d.job_title, SHORT_TEXT)?;
    validate::opt_text("notes", &d.notes, LONG_TEXT)?;
    if d.emails.len() > 50 || d.phones.len() > 50 || d.addresses.len() > 50 {
        return Err(Invalid(
            "a contact has at most 50 e-mails, 50 phones and 50 addresses".into(),
        ));
    }
    for (i, e) in d.emails.iter().enumerate() {
        validate::email(&format!("emails[{i}].address"), &e.address)?;
    }
    if d.emails.iter().filter(|e| e.primary).count() > 1 {
        return Err(Invalid("at most one e-mail can be primary".into()));
    }
    for (i, p) in d.phones.iter().enumerate() {
        validate::required_text(&format!("phones[{i}].number"), &p.number, 100)?;
        if !p.number.chars().any(|c| c.is_ascii_digit()) {
            return Err(Invalid(format!(
                "phones[{i}].number: {:?} has no digits",
                p.number
            )));
        }
    }
    for (i, a) in d.addresses.iter().enumerate() {
        for (name, v) in [
            ("street", &a.street),
            ("city", &a.city),
            ("region", &a.region),
            ("postal_code", &a.postal_code),
            ("country", &a.country),
            ("country_code", &a.country_code),
        ] {
            validate::opt_text(&format!("addresses[{i}].{name}"), v, SHORT_TEXT)?;
        }
    }
    Ok(())
}

/// Rules on what a client sends (not on values already stored, which may have come from Google):
/// no control characters in names and other single-line fields (notes and streets may have line
/// breaks and tabs), a birthday year in 1..=9999.
fn check_input(d: &ContactData) -> Check {
    validate::line("given_name", &d.given_name)?;
    validate::line("family_name", &d.family_name)?;
    validate::opt_line("display_name", &d.display_name)?;
    validate::opt_line("organization", &d.organization)?;
    validate::opt_line("job_title", &d.job_title)?;
    validate::opt_multiline("notes", &d.notes)?;
    for (i, e) in d.emails.iter().enumerate() {
        validate::line(&format!("emails[{i}].address"), &e.address)?;
    }
    for (i, p) in d.phones.iter().enumerate() {
        validate::line(&format!("phones[{i}].number"), &p.number)?;
    }
    for (i, a) in d.addresses.iter().enumerate() {
        validate::opt_multiline(&format!("addresses[{i}].street"), &a.street)?;
        for (name, v) in [
            ("city", &a.city),
            ("region", &a.region),
            ("postal_code", &a.postal_code),
            ("country", &a.country),
            ("country_code", &a.country_code),
        ] {
            validate::opt_line(&format!("addresses[{i}].{name}"), v)?;
        }
    }
    if let Some(b) = &d.birthday {
        validate::birthday("birthday", b)?;
    }
    Ok(())
}

fn apply_patch(mut d: ContactData, p: PatchContact) -> ContactData {
    if let Some(v) = p.given_name {
        d.given_name = v;
    }
    if let Some(v) = p.family_name {
        d.family_name = v;
    }
    if let Some(v) = p.display_name {
        d.display_name = v;
    }
    if let Some(v) = p.emails {
        d.emails = into_all(v);
    }
    if let Some(v) = p.phones {
        d.phones = into_all(v);
    }
    if let Some(v) = p.addresses {
        d.addresses = into_all(v);
    }
    if let Some(v) = p.organization {
        d.organization = v;
    }
    if let Some(v) = p.job_title {
        d.job_title = v;
    }
    if let Some(v) = p.notes {
        d.notes = v;
    }
    if let Some(v) = p.birthday {
        d.birthday = v;
    }
    d
}

fn live(contact: Contact) -> ApiResult<Contact> {
    if contact.deleted_at.is_some() {
        return Err(ApiError::not_found(format!(
            "contact {} was deleted",
            contact.id
        )));
    }
    Ok(contact)
}

/// `POST /contacts`.
#[utoipa::path(
    post, path = "/contacts", tag = "contacts",
    operation_id = "contacts_create",
    summary = "Create a contact",
    request_body = CreateContact,
    responses(
        (status = 201, description = "created", body = super::openapi::ContactDoc),
        (status = 404, description = "a tag in `tags` does not exist (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "the external id is taken by another contact (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateContact>,
) -> ApiResult<(StatusCode, Versioned<Json<ContactView>>)> {
    let data = body.checked_data()?;
    let now = st.now();
    let contact = st
        .write_async(move |c| {
            let resolver = tag_resolver(c, [&body])?;
            let tags = body.tag_ids(&resolver)?.unwrap_or_default();
            store::create_contact(
                c,
                &data,
                &tags,
                body.external_id.as_deref(),
                Origin::Api,
                now,
            )
        })
        .await?;
    Ok((StatusCode::CREATED, versioned(contact)))
}

/// Looks up every tag external id the bodies name, in one query.
fn tag_resolver<'a>(
    c: &mut AnyConnection,
    bodies: impl IntoIterator<Item = &'a CreateContact>,
) -> StoreResult<Resolver<TagId>> {
    let wanted: Vec<String> = bodies
        .into_iter()
        .flat_map(|b| b.tag_external_ids.iter().flatten().cloned())
        .collect();
    Resolver::load(c, "tag", wanted, tag_store::tag_ids_by_external_ids)
}

/// Creates or replaces the contact with the CRM's `external_id`: unchanged (nothing written)
/// when it already is as sent; `If-Match` checked against the current version.
fn upsert_contact(
    c: &mut AnyConnection,
    external_id: &str,
    data: &ContactData,
    tags: Option<Vec<TagId>>,
    if_match: &IfMatch,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<(Outcome, Contact)> {
    let Some(id) = store::contact_id_by_external_id(c, external_id)? else {
        if_match.check("contact", None)?;
        let tags = tags.unwrap_or_default();
        let contact = store::create_contact(c, data, &tags, Some(external_id), Origin::Api, now)?;
        return Ok((Outcome::Created, contact));
    };
    store::lock_contact(c, id)?;
    let current = store::get_contact(c, id)?;
    if_match.check("contact", Some(current.change_seq))?;
    let mut contact = current.clone();
    if current.data != *data {
        contact = store::update_contact(c, current.id, data, Origin::Api, now)?;
    }
    if let Some(tags) = tags {
        let mut have = current.tags.clone();
        have.sort();
        if have != tags {
            contact = store::set_contact_tags(c, current.id, &tags, Origin::Api, now)?;
        }
    }
    let outcome = if contact.change_seq == current.change_seq {
        Outcome::Unchanged
    } else {
        Outcome::Updated
    };
    Ok((outcome, contact))
}

/// `PUT /contacts/by-external-id/{external_id}`.
#[utoipa::path(
    put, path = "/contacts/by-external-id/{external_id}", tag = "integration",
    operation_id = "contacts_put_by_external_id",
    summary = "Create or replace a contact under the CRM's id (idempotent)",
    params(
        ("external_id" = String, Path, description = "the CRM's id of the contact"),
        ("If-Match" = Option<String>, Header, description = "the ETag the write must replace"),
    ),
    request_body = CreateContact,
    responses(
        (status = 201, description = "created", body = super::openapi::ContactDoc),
        (status = 200, description = "replaced, or already as sent (nothing written)", body = super::openapi::ContactDoc),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
        (status = 409, description = "the external id was taken concurrently (`conflict`); retry", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
    if_match: IfMatch,
    JsonBody(body): JsonBody<CreateContact>,
) -> ApiResult<(StatusCode, Versioned<Json<ContactView>>)> {
    upsert::put_external_id(&external_id, body.external_id.as_deref())?;
    let data = body.checked_data()?;
    let now = st.now();
    let (outcome, contact) = st
        .write_async(move |c| {
            let resolver = tag_resolver(c, [&body])?;
            let tags = body.tag_ids(&resolver)?;
            upsert_contact(c, &external_id, &data, tags, &if_match, now)
        })
        .await?;
    Ok((outcome.status(), versioned(contact)))
}

/// `GET /contacts/by-external-id/{external_id}`.
#[utoipa::path(
    get, path = "/contacts/by-external-id/{external_id}", tag = "integration",
    operation_id = "contacts_get_by_external_id",
    summary = "Read a contact by the CRM's id",
    params(("external_id" = String, Path, description = "the CRM's id of the contact")),
    responses(
        (status = 200, description = "the contact", body = super::openapi::ContactDoc),
        (status = 404, description = "no live contact has this external id (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
) -> ApiResult<Versioned<Json<ContactView>>> {
    upsert::path_external_id(&external_id)?;
    let x = external_id.clone();
    st.read_async(move |c| store::contact_by_external_id(c, &x))
        .await?
        .map(versioned)
        .ok_or_else(|| ApiError::not_found(format!("no contact has external id {external_id:?}")))
}

/// `DELETE /contacts/by-external-id/{external_id}`.
#[utoipa::path(
    delete, path = "/contacts/by-external-id/{external_id}", tag = "integration",
    operation_id = "contacts_delete_by_external_id",
    summary = "Delete a contact by the CRM's id",
    params(
        ("external_id" = String, Path, description = "the CRM's id of the contact"),
        ("If-Match" = Option<String>, Header, description = "the ETag the delete must replace"),
    ),
    responses(
        (status = 204, description = "deleted (a tombstone; the external id is free again)"),
        (status = 404, description = "no live contact has this external id (`not_found`)", body = super::openapi::ErrorBody),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<StatusCode> {
    upsert::path_external_id(&external_id)?;
    let now = st.now();
    st.write_async(move |c| {
        let id = store::contact_id_by_external_id(c, &external_id)?
            .ok_or_else(|| upsert::unknown_external_id("contact with external id", &external_id))?;
        delete_checked(c, id, &if_match, now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a live contact after checking `If-Match` under its row lock.
fn delete_checked(
    c: &mut AnyConnection,
    id: ContactId,
    if_match: &IfMatch,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Contact> {
    store::lock_contact(c, id)?;
    let current = store::get_contact(c, id)?;
    if current.deleted_at.is_none() {
        if_match.check("contact", Some(current.change_seq))?;
    }
    store::delete_contact(c, id, Origin::Api, now)
}

/// `POST /contacts/batch`.
#[utoipa::path(
    post, path = "/contacts/batch", tag = "integration",
    operation_id = "contacts_batch",
    summary = "Upsert up to 1,000 contacts by the CRM's ids, in one transaction",
    request_body(content = BatchBody, description = "`items`: each a contact body (as for PUT by external id) with its `external_id`"),
    responses(
        (status = 200, description = "one result per item, in item order; invalid items are reported and never block the others", body = BatchResults),
    )
)]
pub async fn batch(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult<Json<BatchResults>> {
    let items: Vec<upsert::Parsed<(CreateContact, ContactData)>> =
        upsert::parse_batch::<CreateContact>(body, |b| b.external_id.as_deref())?
            .into_iter()
            .map(|p| {
                // Each item's fields are checked before the transaction.
                p.and_then(|(x, b)| match b.checked_data() {
                    Ok(data) => Ok((x, (b, data))),
                    Err(e) => Err((Some(x), e)),
                })
            })
            .collect();
    let now = st.now();
    let results = st
        .write_async(move |c| {
            let resolver = tag_resolver(c, upsert::valid_bodies(&items).map(|(b, _)| b))?;
            upsert::write_batch(c, items, |c, x, (body, data)| {
                let tags = body.tag_ids(&resolver)?;
                let (outcome, contact) =
                    upsert_contact(c, x, &data, tags, &IfMatch::default(), now)?;
                Ok((outcome, contact.id.to_string(), contact.change_seq))
            })
        })
        .await?;
    Ok(Json(BatchResults { results }))
}

/// `GET /contacts` and `GET /contacts?tag_id=`.
#[utoipa::path(
    get, path = "/contacts", tag = "contacts",
    operation_id = "contacts_list",
    summary = "List contacts (all live ones, or those with a tag)",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of contacts, by id", body = super::openapi::ContactPage),
        (status = 404, description = "no such tag (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<ContactView>>> {
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<ContactId>(q.cursor.as_deref())?;
    let tag = q.tag_id;
    let contacts = st
        .read_async(move |c| match tag {
            Some(tag) => {
                tag_store::get_tag(c, tag)?;
                store::contacts_with_tag(c, tag, after, limit)
            }
            None => store::list_contacts(c, after, limit),
        })
        .await?;
    let page = Page::new(contacts, limit, |c| c.id.to_string());
    Ok(Json(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /contacts/{id}`.
#[utoipa::path(
    get, path = "/contacts/{id}", tag = "contacts",
    operation_id = "contacts_get_one",
    summary = "Read a contact",
    params(("id" = uuid::Uuid, Path, description = "the contact's id")),
    responses(
        (status = 200, description = "the contact", body = super::openapi::ContactDoc),
        (status = 404, description = "no such contact, or it was deleted (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ContactId>,
) -> ApiResult<Versioned<Json<ContactView>>> {
    live(st.read_async(move |c| store::get_contact(c, id)).await?).map(versioned)
}

/// `PATCH /contacts/{id}`: validated on the merged record, in one write transaction.
#[utoipa::path(
    patch, path = "/contacts/{id}", tag = "contacts",
    operation_id = "contacts_update",
    summary = "Change a contact",
    params(
        ("id" = uuid::Uuid, Path, description = "the contact's id"),
        ("If-Match" = Option<String>, Header, description = "the ETag the write must replace"),
    ),
    request_body = PatchContact,
    responses(
        (status = 200, description = "the changed contact", body = super::openapi::ContactDoc),
        (status = 404, description = "no such contact, or it was deleted (`not_found`)", body = super::openapi::ErrorBody),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ContactId>,
    if_match: IfMatch,
    PatchBody(body): PatchBody<PatchContact>,
) -> ApiResult<Versioned<Json<ContactView>>> {
    // The fields the client sends, alone (stored values are checked as a whole below).
    check_input(&apply_patch(ContactData::default(), body.clone()))?;
    if let Some(Some(x)) = &body.external_id {
        upsert::check_external_id("external_id", x)?;
    }
    let now = st.now();
    let contact = st
        .write_async(move |c| {
            store::lock_contact(c, id)?;
            let current = store::get_contact(c, id)?;
            if current.deleted_at.is_some() {
                return Err(StoreError::NotFound {
                    what: "contact (deleted)",
                    id: id.to_string(),
                });
            }
            if_match.check("contact", Some(current.change_seq))?;
            let external_id = body.external_id.clone();
            let data = apply_patch(current.data.clone(), body);
            check_contact(&data)?;
            if let Some(x) = &external_id {
                store::set_contact_external_id(c, id, x.as_deref())?;
                if data == current.data {
                    // Only the external id: not a change of the contact.
                    return store::get_contact(c, id);
                }
            }
            store::update_contact(c, id, &data, Origin::Api, now)
        })
        .await?;
    Ok(versioned(contact))
}

/// `DELETE /contacts/{id}`: the contact becomes a tombstone (204).
#[utoipa::path(
    delete, path = "/contacts/{id}", tag = "contacts",
    operation_id = "contacts_delete",
    summary = "Delete a contact",
    params(
        ("id" = uuid::Uuid, Path, description = "the contact's id"),
        ("If-Match" = Option<String>, Header, description = "the ETag the delete must replace"),
    ),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such contact (`not_found`)", body = super::openapi::ErrorBody),
        (status = 412, description = "If-Match is stale (`precondition_failed`); nothing written", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ContactId>,
    if_match: IfMatch,
) -> ApiResult<StatusCode> {
    let now = st.now();
    st.write_async(move |c| delete_checked(c, id, &if_match, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /contacts/{id}/tags/{tag_id}`.
#[utoipa::path(
    put, path = "/contacts/{id}/tags/{tag_id}", tag = "contacts",
    operation_id = "contacts_tag",
    summary = "Tag a contact",
    params(("id" = uuid::Uuid, Path, description = "the contact's id"), ("tag_id" = uuid::Uuid, Path, description = "the tag's id")),
    responses(
        (status = 200, description = "the contact with the tag", body = super::openapi::ContactDoc),
        (status = 404, description = "no such contact or tag (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn tag(
    State(st): State<AppState>,
    ApiPath((id, tag)): ApiPath<(ContactId, TagId)>,
) -> ApiResult<Versioned<Json<ContactView>>> {
    let now = st.now();
    let contact = st
        .write_async(move |c| {
            tag_store::get_tag(c, tag)?;
            store::tag_contact(c, id, tag, Origin::Api, now)
        })
        .await?;
    Ok(versioned(contact))
}

/// `DELETE /contacts/{id}/tags/{tag_id}`.
#[utoipa::path(
    delete, path = "/contacts/{id}/tags/{tag_id}", tag = "contacts",
    operation_id = "contacts_untag",
    summary = "Untag a contact",
    params(("id" = uuid::Uuid, Path, description = "the contact's id"), ("tag_id" = uuid::Uuid, Path, description = "the tag's id")),
    responses(
        (status = 200, description = "the contact without the tag", body = super::openapi::ContactDoc),
        (status = 404, description = "no such contact or tag (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn untag(
    State(st): State<AppState>,
    ApiPath((id, tag)): ApiPath<(ContactId, TagId)>,
) -> ApiResult<Versioned<Json<ContactView>>> {
    let now = st.now();
    let contact = st
        .write_async(move |c| {
            tag_store::get_tag(c, tag)?;
            store::untag_contact(c, id, tag, Origin::Api, now)
        })
        .await?;
    Ok(versioned(contact))
}
