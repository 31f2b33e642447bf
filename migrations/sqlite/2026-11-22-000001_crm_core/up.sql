-- CRM core: users, tags, contacts (with e-mails, phones, addresses, tags), activities (with
-- participants), per-user sync settings, Google connections, admin tokens, app settings.
-- Every write to a contact or an activity takes the next value of change_counter (a single row,
-- so writers commit in sequence order) into the record's change_seq; deletes are soft
-- (deleted_at), so "what changed since cursor C" is an index range scan on change_seq.

CREATE TABLE change_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO change_counter (id, value) VALUES (1, 0);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    google_alias TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE tags (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    visibility TEXT NOT NULL CHECK (visibility IN ('private', 'public', 'corporate')),
    owner_user_id TEXT REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    CHECK ((visibility = 'private') = (owner_user_id IS NOT NULL))
);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    display_name TEXT,
    organization TEXT,
    job_title TEXT,
    birthday TEXT,
    notes TEXT,
    created_at TIMESTAMP NOT NULL,
    modified_at TIMESTAMP NOT NULL,
    change_seq BIGINT NOT NULL,
    deleted_at TIMESTAMP
);
CREATE INDEX contacts_change_seq ON contacts (change_seq);

CREATE TABLE contact_emails (
    contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    address_norm TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('work', 'home', 'other')),
    is_primary BOOLEAN NOT NULL,
    PRIMARY KEY (contact_id, position)
);
CREATE INDEX contact_emails_address ON contact_emails (address_norm);

CREATE TABLE contact_phones (
    contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    number TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('mobile', 'work', 'home', 'other')),
    PRIMARY KEY (contact_id, position)
);

CREATE TABLE contact_addresses (
    contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('work', 'home', 'other')),
    street TEXT,
    city TEXT,
    region TEXT,
    postal_code TEXT,
    country TEXT,
    country_code TEXT,
    PRIMARY KEY (contact_id, position)
);

CREATE TABLE contact_tags (
    contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    tag_id TEXT NOT NULL REFERENCES tags (id),
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (contact_id, tag_id)
);
CREATE INDEX contact_tags_tag ON contact_tags (tag_id);

CREATE TABLE activities (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    -- Instants (UTC). For an all-day activity: midnight of start_date / end_date in time_zone.
    start_at TIMESTAMP NOT NULL,
    end_at TIMESTAMP NOT NULL,
    time_zone TEXT NOT NULL,
    all_day BOOLEAN NOT NULL,
    -- All-day only: YYYY-MM-DD, end exclusive.
    start_date TEXT,
    end_date TEXT,
    location TEXT,
    notes TEXT,
    status TEXT NOT NULL CHECK (status IN ('planned', 'tentative', 'completed', 'cancelled')),
    display_in_calendar BOOLEAN NOT NULL,
    organizer_user_id TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    modified_at TIMESTAMP NOT NULL,
    change_seq BIGINT NOT NULL,
    deleted_at TIMESTAMP,
    CHECK (end_at >= start_at),
    CHECK (all_day = (start_date IS NOT NULL AND end_date IS NOT NULL))
);
CREATE INDEX activities_change_seq ON activities (change_seq);
CREATE INDEX activities_organizer ON activities (organizer_user_id, start_at);

CREATE TABLE activity_participants (
    activity_id TEXT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    user_id TEXT REFERENCES users (id),
    contact_id TEXT REFERENCES contacts (id),
    email TEXT NOT NULL,
    email_norm TEXT NOT NULL,
    response_status TEXT NOT NULL CHECK (response_status IN ('needs_action', 'accepted', 'declined', 'tentative')),
    PRIMARY KEY (activity_id, position)
);
CREATE INDEX activity_participants_user ON activity_participants (user_id);
CREATE INDEX activity_participants_email ON activity_participants (email_norm);

CREATE TABLE sync_settings (
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('contacts', 'activities')),
    auto_sync BOOLEAN NOT NULL,
    interval_minutes INTEGER CHECK (interval_minutes IS NULL OR interval_minutes >= 1),
    cron TEXT,
    tag_id TEXT REFERENCES tags (id),
    synchronize_from TEXT,
    -- JSON array of strings.
    trigger_words TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, kind),
    CHECK ((interval_minutes IS NULL) <> (cron IS NULL))
);

-- The domain's service account key (JSON), encrypted with the key from CRMSYNC_SECRET_KEY.
CREATE TABLE service_accounts (
    domain TEXT PRIMARY KEY,
    client_email TEXT NOT NULL,
    client_id TEXT NOT NULL,
    key_ciphertext TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE google_connections (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    method TEXT NOT NULL CHECK (method IN ('service_account', 'oauth')),
    state TEXT NOT NULL CHECK (state IN ('active', 'auth_error', 'disabled')),
    last_error TEXT,
    -- Per-user OAuth only: the refresh token, encrypted.
    refresh_token_ciphertext TEXT,
    -- Per-user OAuth only: the pending authorization request's state parameter.
    oauth_state TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);

-- Small typed settings the admin sets (OAuth client, guard thresholds, ...): key -> JSON value.
-- Secret values are stored encrypted.
CREATE TABLE app_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
