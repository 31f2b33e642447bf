//! `/contacts`: create (201), list (all live contacts, or `?tag_id=`; paginated), read, change
//! (PATCH: absent fields stay, `null` clears the optional ones: display_name, organization,
//! job_title, notes, birthday; names and lists refuse `null`, send `""` or `[]`), delete (a
//! tombstone), and tag / untag. Nested objects (emails, phones, addresses) refuse unknown fields.

use super::error::{ApiError, ApiResult};
use super::extract::{non_null, ApiPath, ApiQuery, JsonBody, PatchBody};
use super::page::{self, Page};
use super::validate::{self, Check, Invalid, LONG_TEXT, SHORT_TEXT};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use crmsync_engine::ids::{ContactId, TagId};
use crmsync_engine::model::{
    AddressKind, Birthday, Contact, ContactData, Email, EmailKind, Phone, PhoneKind, PostalAddress,
};
use crmsync_schema::contacts as store;
use crmsync_schema::tags as tag_store;
use crmsync_schema::StoreError;
use serde::{Deserialize, Deserializer};
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
    /// Tags to put on the new contact.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    tags: Vec<TagId>,
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
    )
)]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateContact>,
) -> ApiResult<(StatusCode, Json<Contact>)> {
    let data = ContactData {
        given_name: body.given_name,
        family_name: body.family_name,
        display_name: body.display_name,
        emails: into_all(body.emails),
        phones: into_all(body.phones),
        organization: body.organization,
        job_title: body.job_title,
        addresses: into_all(body.addresses),
        birthday: body.birthday,
        notes: body.notes,
    };
    check_input(&data)?;
    check_contact(&data)?;
    let tags = body.tags;
    let now = st.now();
    let contact = st
        .write_async(move |c| store::create_contact(c, &data, &tags, now))
        .await?;
    Ok((StatusCode::CREATED, Json(contact)))
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
) -> ApiResult<Json<Page<Contact>>> {
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
    Ok(Json(Page::new(contacts, limit, |c| c.id.to_string())))
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
) -> ApiResult<Json<Contact>> {
    live(st.read_async(move |c| store::get_contact(c, id)).await?).map(Json)
}

/// `PATCH /contacts/{id}`: validated on the merged record, in one write transaction.
#[utoipa::path(
    patch, path = "/contacts/{id}", tag = "contacts",
    operation_id = "contacts_update",
    summary = "Change a contact",
    params(("id" = uuid::Uuid, Path, description = "the contact's id")),
    request_body = PatchContact,
    responses(
        (status = 200, description = "the changed contact", body = super::openapi::ContactDoc),
        (status = 404, description = "no such contact, or it was deleted (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ContactId>,
    PatchBody(body): PatchBody<PatchContact>,
) -> ApiResult<Json<Contact>> {
    // The fields the client sends, alone (stored values are checked as a whole below).
    check_input(&apply_patch(ContactData::default(), body.clone()))?;
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
            let data = apply_patch(current.data, body);
            check_contact(&data)?;
            store::update_contact(c, id, &data, now)
        })
        .await?;
    Ok(Json(contact))
}

/// `DELETE /contacts/{id}`: the contact becomes a tombstone (204).
#[utoipa::path(
    delete, path = "/contacts/{id}", tag = "contacts",
    operation_id = "contacts_delete",
    summary = "Delete a contact",
    params(("id" = uuid::Uuid, Path, description = "the contact's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such contact (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<ContactId>,
) -> ApiResult<StatusCode> {
    let now = st.now();
    st.write_async(move |c| store::delete_contact(c, id, now))
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
) -> ApiResult<Json<Contact>> {
    let now = st.now();
    let contact = st
        .write_async(move |c| {
            tag_store::get_tag(c, tag)?;
            store::tag_contact(c, id, tag, now)
        })
        .await?;
    Ok(Json(contact))
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
) -> ApiResult<Json<Contact>> {
    let now = st.now();
    let contact = st
        .write_async(move |c| {
            tag_store::get_tag(c, tag)?;
            store::untag_contact(c, id, tag, now)
        })
        .await?;
    Ok(Json(contact))
}
