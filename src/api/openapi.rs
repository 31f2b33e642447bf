//! The OpenAPI 3.1 document of `/api/v1` (`GET /api/v1/openapi.json`), generated from the code
//! with utoipa: every handler carries `#[utoipa::path]` and is registered through
//! `utoipa_axum::routes!`, so the router and the document are built from the same annotations
//! and cannot drift apart (see [`super::api_routes`]).
//!
//! Request types derive `ToSchema`/`IntoParams` where they are defined. Response types that live
//! in other crates (the engine's models, the store's runs and journal, the scheduler's status)
//! are described here by documentation twins (`*Doc`, named as the real type in the document);
//! `tests/it/api_openapi.rs` checks real answers against them. [`finish`] adds the error answers
//! every route shares (401 without a token, 400 for a bad path or query, 415/413/400/422 for a bad
//! body, 503 when the database is unavailable), all with the one error shape.

use super::page::MAX_LIMIT;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use uuid::Uuid;

/// The document's frame: info, server, security; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "crmsync API",
        description = "Two-way sync between a CRM's contacts and activities and Google Workspace \
                       (SPEC section 6.2). Every route needs an admin bearer token \
                       (`crmsync admin-token create`). Errors are JSON \
                       `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`. Timestamps are RFC 3339; ids are UUIDs."
    ),
    servers((url = "/api/v1", description = "this server")),
    security(("bearer" = [])),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody, ErrorDetail, TimeZone)),
    tags(
        (name = "users", description = "CRM users"),
        (name = "tags", description = "tags (a user's private tag can be the contact sync tag)"),
        (name = "contacts", description = "CRM contacts"),
        (name = "activities", description = "CRM activities"),
        (name = "sync", description = "sync settings, Start synchronization, runs, status, journal"),
        (name = "google", description = "Google connections (service account, OAuth)"),
        (name = "meta", description = "this document"),
        (name = "webhooks", description = "webhook subscriptions and their deliveries (events of sync-made changes, runs and connections, signed as Standard Webhooks says)"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "an admin token from `crmsync admin-token create` (`crm_…`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the error answers every route shares to each operation that does not document them
/// itself, and `minProperties: 1` to the PATCH bodies (an empty change is refused; utoipa's
/// own `min_properties` writes `maxProperties`).
pub fn finish(doc: &mut Document) {
    if let Some(components) = doc.components.as_mut() {
        for (name, schema) in components.schemas.iter_mut() {
            if let (true, RefOr::T(utoipa::openapi::schema::Schema::Object(o))) =
                (name.starts_with("Patch"), schema)
            {
                o.min_properties = Some(1);
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        let has_path_params = |op: &Operation| {
            op.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Path)
            })
        };
        let has_query = |op: &Operation| {
            op.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
            })
        };
        for op in operations(item) {
            let (path_or_query, body) = (
                has_path_params(op) || has_query(op),
                op.request_body.is_some(),
            );
            let mut add = |status: &str, why: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(why));
            };
            add(
                "401",
                "no valid admin token (`unauthorized`; `WWW-Authenticate: Bearer`)",
            );
            add(
                "503",
                "the database is unavailable (`database_unavailable`), or the secret key is \
                 missing or wrong (`secret_key`)",
            );
            add(
                "500",
                "an internal error (`internal`); the server log has the details",
            );
            if path_or_query {
                add(
                    "400",
                    "a malformed path or query (`invalid_path`, `invalid_query`, `bad_request`)",
                );
            }
            if body {
                add(
                    "400",
                    "the body is not JSON (`invalid_json`), or a malformed path or query",
                );
                add(
                    "413",
                    "the body is larger than 256 KiB (`payload_too_large`)",
                );
                add(
                    "415",
                    "the body is not `application/json` (`unsupported_media_type`)",
                );
                add(
                    "422",
                    "the body is not a JSON object, has unknown or missing fields or wrong types \
                     (`invalid_body`), or breaks a rule (`validation_failed`)",
                );
            }
        }
    }
    add_links(doc);
}

/// Links from what a POST answers to the operations that take it (OpenAPI `links`, which
/// clients and stateful testing follow): a created user, tag, contact, activity or webhook to the
/// routes under its `{id}`, a started run to `GET /sync-runs/{id}`.
fn add_links(doc: &mut Document) {
    use utoipa::openapi::link::LinkBuilder;
    // (operation answering, status, JSON pointer of the id in the answer, path prefix of the
    // operations that take it as `{id}`)
    let sources: [(&str, &str, &str, &str); 7] = [
        ("/users", "201", "/id", "/users/{id}"),
        ("/tags", "201", "/id", "/tags/{id}"),
        ("/contacts", "201", "/id", "/contacts/{id}"),
        ("/activities", "201", "/id", "/activities/{id}"),
        (
            "/users/{id}/sync/{kind}",
            "202",
            "/run_id",
            "/sync-runs/{id}",
        ),
        ("/users/{id}/sync/{kind}", "200", "/id", "/sync-runs/{id}"),
        ("/webhooks", "201", "/id", "/webhooks/{id}"),
    ];
    for (source, status, pointer, prefix) in sources {
        let mut targets: Vec<(String, bool)> = Vec::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == prefix || path.starts_with(&format!("{prefix}/")) {
                let has_kind = path.contains("{kind}");
                for op in operations(item) {
                    if let Some(id) = &op.operation_id {
                        targets.push((id.clone(), has_kind));
                    }
                }
            }
        }
        let Some(post) = doc
            .paths
            .paths
            .get_mut(source)
            .and_then(|i| i.post.as_mut())
        else {
            continue;
        };
        let Some(RefOr::T(response)) = post.responses.responses.get_mut(status) else {
            continue;
        };
        for (target, has_kind) in targets {
            let mut link = LinkBuilder::new()
                .operation_id(target.clone())
                .parameter("id", format!("$response.body#{pointer}"));
            if has_kind {
                link = link.parameter("kind", "contacts");
            }
            response.links.insert(target, link.build().into());
        }
    }
}

/// The document as JSON. utoipa 5 writes a link's `operationId` and `operationRef` in snake
/// case; they are renamed here as OpenAPI spells them.
pub fn to_json(doc: &Document) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialize");
        serde_json::Value::Null
    });
    if let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for op in paths
            .values_mut()
            .filter_map(|i| i.as_object_mut())
            .flat_map(|i| i.values_mut())
        {
            let responses = op.get_mut("responses").and_then(|r| r.as_object_mut());
            for response in responses.into_iter().flat_map(|r| r.values_mut()) {
                let links = response.get_mut("links").and_then(|l| l.as_object_mut());
                for link in links.into_iter().flat_map(|l| l.values_mut()) {
                    if let Some(link) = link.as_object_mut() {
                        for (from, to) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                        ] {
                            if let Some(v) = link.remove(from) {
                                link.insert(to.to_string(), v);
                            }
                        }
                    }
                }
            }
        }
    }
    value
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

/// Any JSON value (a schema with every type; utoipa's own "any value" has no `type` at all,
/// which its typed model then cannot read back).
pub fn any_json() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::Object,
            Type::Array,
            Type::String,
            Type::Number,
            Type::Boolean,
            Type::Null,
        ]))
        .build()
}

/// A JSON object or a string (the service-account key file, as it is or as text).
pub fn object_or_string() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::String]))
        .description(Some(
            "the JSON key file Google gave (an object, or a string holding it)",
        ))
        .build()
}

/// An IANA time zone name (the names chrono-tz knows, exactly; e.g. `Europe/Berlin`, `UTC`).
pub struct TimeZone;

impl utoipa::PartialSchema for TimeZone {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "an IANA time zone name, e.g. `Europe/Berlin` or `UTC`",
            ))
            .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
            .examples(["Europe/London"])
            .into()
    }
}

impl ToSchema for TimeZone {
    fn name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }
}

// ---- errors and pages ----

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a message for people.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `invalid_path`, `invalid_query`, `invalid_json`, `invalid_body`,
    /// `validation_failed`, `unauthorized`, `not_found`, `conflict`, `connection_disabled`,
    /// `method_not_allowed`, `payload_too_large`, `unsupported_media_type`,
    /// `database_unavailable`, `secret_key`, `internal`, ...
    pub code: String,
    pub message: String,
}

/// `?limit=&cursor=` of the paged lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const _: () = assert!(MAX_LIMIT == 500);

macro_rules! page_doc {
    ($(#[$doc:meta])* $name:ident, $as:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(ToSchema)]
        #[schema(as = $as)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Continues the list (pass it as `cursor`); `null` on the last page.
            pub next_cursor: Option<String>,
        }
    };
}

page_doc!(
    /// A page of users.
    UserPage, UserPage, UserDoc
);
page_doc!(
    /// A page of tags.
    TagPage, TagPage, TagDoc
);
page_doc!(
    /// A page of contacts.
    ContactPage, ContactPage, ContactDoc
);
page_doc!(
    /// A page of activities.
    ActivityPage, ActivityPage, super::activities::ActivityView
);
page_doc!(
    /// A page of sync runs, newest first.
    SyncRunPage, SyncRunPage, SyncRunDoc
);
page_doc!(
    /// A page of journal entries, oldest first.
    JournalPage, JournalPage, JournalEntryDoc
);
page_doc!(
    /// A page of every user's sync status.
    FleetPage, FleetPage, FleetItemDoc
);

// ---- the engine's models ----

/// Kind of an e-mail address (default `work`).
#[derive(ToSchema)]
#[schema(as = EmailKind, rename_all = "snake_case")]
pub enum EmailKindDoc {
    Work,
    Home,
    Other,
}

/// Kind of a phone number (default `mobile`).
#[derive(ToSchema)]
#[schema(as = PhoneKind, rename_all = "snake_case")]
pub enum PhoneKindDoc {
    Mobile,
    Work,
    Home,
    Other,
}

/// Kind of a postal address (default `work`).
#[derive(ToSchema)]
#[schema(as = AddressKind, rename_all = "snake_case")]
pub enum AddressKindDoc {
    Work,
    Home,
    Other,
}

/// Who may see a tag; only a `private` tag (with an owner) can be a contact sync tag.
#[derive(ToSchema)]
#[schema(as = TagVisibility, rename_all = "snake_case")]
pub enum TagVisibilityDoc {
    Private,
    Public,
    Corporate,
}

/// Status of an activity (default `planned`).
#[derive(ToSchema)]
#[schema(as = ActivityStatus, rename_all = "snake_case")]
pub enum ActivityStatusDoc {
    Planned,
    Tentative,
    Completed,
    Cancelled,
}

/// A participant's answer (default `needs_action`).
#[derive(ToSchema)]
#[schema(as = ResponseStatus, rename_all = "snake_case")]
pub enum ResponseStatusDoc {
    NeedsAction,
    Accepted,
    Declined,
    Tentative,
}

/// What syncs: `contacts` (Google Contacts) or `activities` (the primary Google Calendar).
#[derive(ToSchema)]
#[schema(as = SyncKind, rename_all = "snake_case")]
pub enum SyncKindDoc {
    Contacts,
    Activities,
}

/// A CRM user.
#[derive(ToSchema)]
#[schema(as = User)]
pub struct UserDoc {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    /// The Google account this user syncs with (defaults to `email`).
    pub google_alias: String,
    /// IANA time zone name.
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The CRM's own id of the record (null when the CRM never named it).
    pub external_id: Option<String>,
}

/// A CRM tag.
#[derive(ToSchema)]
#[schema(as = Tag)]
pub struct TagDoc {
    pub id: Uuid,
    pub name: String,
    pub visibility: TagVisibilityDoc,
    /// The owner of a private tag (absent otherwise).
    #[schema(nullable = false)]
    pub owner_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The CRM's own id of the record (null when the CRM never named it).
    pub external_id: Option<String>,
}

/// One e-mail address of a contact.
#[derive(ToSchema)]
#[schema(as = Email)]
pub struct EmailDoc {
    pub address: String,
    pub kind: EmailKindDoc,
    pub primary: bool,
}

/// One phone number of a contact.
#[derive(ToSchema)]
#[schema(as = Phone)]
pub struct PhoneDoc {
    pub number: String,
    pub kind: PhoneKindDoc,
}

/// One postal address of a contact (absent parts are left out).
#[derive(ToSchema)]
#[schema(as = PostalAddress)]
pub struct PostalAddressDoc {
    pub kind: AddressKindDoc,
    #[schema(nullable = false)]
    pub street: Option<String>,
    #[schema(nullable = false)]
    pub city: Option<String>,
    #[schema(nullable = false)]
    pub region: Option<String>,
    #[schema(nullable = false)]
    pub postal_code: Option<String>,
    #[schema(nullable = false)]
    pub country: Option<String>,
    #[schema(nullable = false)]
    pub country_code: Option<String>,
}

/// A CRM contact (absent optional fields are left out).
#[derive(ToSchema)]
#[schema(as = Contact)]
pub struct ContactDoc {
    pub id: Uuid,
    pub given_name: String,
    pub family_name: String,
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    pub emails: Vec<EmailDoc>,
    pub phones: Vec<PhoneDoc>,
    #[schema(nullable = false)]
    pub organization: Option<String>,
    #[schema(nullable = false)]
    pub job_title: Option<String>,
    pub addresses: Vec<PostalAddressDoc>,
    /// `YYYY-MM-DD`, or `--MM-DD` when the year is unknown.
    #[schema(nullable = false, value_type = Option<String>, example = "1980-04-23")]
    pub birthday: Option<String>,
    #[schema(nullable = false)]
    pub notes: Option<String>,
    /// The contact's tags.
    pub tags: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    /// Last change by a user or by sync (the writer time of last-writer-wins).
    pub modified_at: DateTime<Utc>,
    /// Position in the CRM change sequence.
    #[schema(format = Int64)]
    pub change_seq: i64,
    /// Set on a deleted contact (never answered by the routes, which answer 404 then).
    #[schema(nullable = false)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The CRM's own id of the record (null when the CRM never named it).
    pub external_id: Option<String>,
    /// Grows on every change (also sent as the `ETag`); send it back in `If-Match` to write
    /// only over this version.
    #[schema(format = Int64)]
    pub version: i64,
}

/// A participant of an activity: a CRM user, a CRM contact or a bare address, with its e-mail.
#[derive(ToSchema)]
#[schema(as = Participant)]
pub struct ParticipantDoc {
    #[schema(nullable = false)]
    pub user_id: Option<Uuid>,
    #[schema(nullable = false)]
    pub contact_id: Option<Uuid>,
    pub email: String,
    pub response_status: ResponseStatusDoc,
}

// ---- runs, status and journal ----

/// One sync run.
#[derive(ToSchema)]
#[schema(as = SyncRun)]
pub struct SyncRunDoc {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: SyncKindDoc,
    /// `schedule`, `manual` or `push`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded`, `failed`, `blocked` (mass-untag guard) or `skipped`.
    pub state: String,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the run did: per side and action (`crm`, `google`), links made and ended,
    /// conflicts, unchanged items, errors (empty until the run finishes).
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    #[schema(format = Int32)]
    pub conflicts: i32,
    /// Records that failed: `{crm_id?, google_id?, message}`.
    #[schema(value_type = Vec<Object>)]
    pub errors: serde_json::Value,
    /// The run's options (`mass_untag`).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub message: Option<String>,
    /// The worker that carried the run out.
    pub worker: Option<String>,
    /// Progress, while the run goes on and after: records handled of `items_known` read so far
    /// (the Google listing and the CRM changes are read page by page, so it grows).
    #[schema(format = Int64)]
    pub items_done: Option<i64>,
    #[schema(format = Int64)]
    pub items_known: Option<i64>,
}

/// Answer of a Start synchronization that is queued (`?wait=true`: still going on when the
/// server's wait limit was reached).
#[derive(ToSchema)]
pub struct RunAccepted {
    pub run_id: Uuid,
    /// `queued`, or the run's state when waiting.
    pub state: String,
    /// The request joined a run already queued for this user and kind.
    pub coalesced: bool,
    /// A run in progress that the queued one follows (without `?wait=true`).
    pub after_run_id: Option<Uuid>,
    /// With `?wait=true`: where to follow the run.
    #[schema(nullable = false)]
    pub message: Option<String>,
}

/// A record that failed in recent runs.
#[derive(ToSchema)]
#[schema(as = FailingItem)]
pub struct FailingItemDoc {
    /// `crm` (the item id is a CRM id) or `google` (a Google id).
    pub side: String,
    pub item_id: String,
    #[schema(format = Int32)]
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// When it stopped holding the sync back.
    pub parked_at: Option<DateTime<Utc>>,
    pub last_error: String,
}

/// One user of `GET /sync-status`: the user's name and the user's sync status.
#[derive(ToSchema)]
#[schema(as = FleetItem)]
pub struct FleetItemDoc {
    pub display_name: String,
    pub user_id: Uuid,
    pub email: String,
    pub google_alias: String,
    pub connection: crate::scheduler::status::ConnectionStatus,
    pub kinds: BTreeMap<String, crate::scheduler::status::KindStatus>,
}

/// One journal entry: a change the engine made or a conflict it decided.
#[derive(ToSchema)]
#[schema(as = JournalEntry)]
pub struct JournalEntryDoc {
    #[schema(format = Int64)]
    pub id: i64,
    pub run_id: Uuid,
    pub user_id: Uuid,
    pub kind: SyncKindDoc,
    pub link_id: Option<Uuid>,
    pub crm_id: Option<String>,
    pub google_id: Option<String>,
    /// `crm`, `google` or `link`.
    pub side: String,
    pub action: String,
    /// The rule that decided.
    pub rule: String,
    pub field: Option<String>,
    /// The side whose value won.
    pub winner: Option<String>,
    /// The value before (any JSON).
    #[schema(schema_with = any_json)]
    pub before: Option<serde_json::Value>,
    /// The value after (any JSON).
    #[schema(schema_with = any_json)]
    pub after: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

// ---- Google connections ----

/// The stored service account (never the key) and what to authorize in the Admin console.
#[derive(ToSchema)]
pub struct ServiceAccountStored {
    pub domain: String,
    pub client_email: String,
    pub client_id: String,
    pub updated_at: DateTime<Utc>,
    /// The scopes to authorize for domain-wide delegation.
    pub scopes: Vec<String>,
    pub message: String,
}

/// The stored OAuth client (never the secret).
#[derive(ToSchema)]
pub struct OAuthClientStored {
    pub client_id: String,
    pub redirect_uri: String,
    pub updated_at: DateTime<Utc>,
}

/// Where to send the user's browser to connect the Google account.
#[derive(ToSchema)]
pub struct OAuthStarted {
    pub user_id: Uuid,
    pub google_account: String,
    pub authorization_url: String,
    pub redirect_uri: String,
    /// The link stops working at this time (and after its first use).
    pub expires_at: DateTime<Utc>,
}

/// The user's connection after a reset.
#[derive(ToSchema)]
pub struct ConnectionReset {
    pub user_id: Uuid,
    pub connection: crate::scheduler::status::ConnectionStatus,
    /// Whether an OAuth refresh token was forgotten.
    pub forgot_refresh_token: bool,
    pub message: String,
}
