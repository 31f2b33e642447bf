-- CRM integration (issue 13, SPEC 6.4): the CRM's own ids on users, tags, contacts and
-- activities; the change feed a CRM reads back; webhook subscriptions and their durable outbox.

-- The CRM's id of each record: 1 to 255 characters, unique per kind (NULL for records the CRM
-- never named). A deleted contact or activity gives its external id up, so the CRM can create a
-- new record under the same id.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE tags ADD COLUMN external_id TEXT;
ALTER TABLE contacts ADD COLUMN external_id TEXT;
ALTER TABLE activities ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users (external_id);
CREATE UNIQUE INDEX tags_external_id ON tags (external_id);
CREATE UNIQUE INDEX contacts_external_id ON contacts (external_id);
CREATE UNIQUE INDEX activities_external_id ON activities (external_id);

-- The change feed: one row per committed change to a contact or an activity. `cursor` is the
-- change sequence number the write took from change_counter; a writer holds that single row
-- locked until it commits, so cursors commit in order and a reader never passes a change that
-- commits later (no gaps). Rows older than 30 days are pruned.
CREATE TABLE changes (
    cursor BIGINT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('contact', 'activity')),
    record_id TEXT NOT NULL,
    external_id TEXT,
    action TEXT NOT NULL CHECK (action IN ('created', 'updated', 'deleted', 'tagged', 'untagged')),
    origin TEXT NOT NULL CHECK (origin IN ('sync', 'api')),
    user_id TEXT,
    run_id TEXT,
    tag_id TEXT,
    at TIMESTAMP NOT NULL
);
CREATE INDEX changes_origin ON changes (origin, cursor);
CREATE INDEX changes_at ON changes (at);

-- Webhook subscriptions: event types as a JSON array of strings; the signing secret encrypted
-- with the key from CRMSYNC_SECRET_KEY.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret_ciphertext TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- The outbox: one row per (webhook, event), written in the transaction of the change it tells
-- of, so a crash loses none. A delivery worker leases due rows (lease_owner, lease_until) so two
-- processes never send one at once, and records every attempt in webhook_attempts.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    last_status INTEGER,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, position);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at TIMESTAMP NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
