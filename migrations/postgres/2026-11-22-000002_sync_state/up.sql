-- The sync engine's own state: links between CRM and Google records (with the last synced
-- snapshot, the merge base of the three-way planner), cursors (Google sync token, CRM change
-- cursor), runs, the journal of every change the engine makes, and the job/lease table the
-- scheduler claims work from.

CREATE TABLE links (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('contacts', 'activities')),
    crm_id TEXT NOT NULL,
    -- NULL while a create in Google is in flight and not yet confirmed (state 'pending').
    google_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'ended')),
    -- JSON: the canonical fields as last synced (identical on both sides at that time).
    snapshot TEXT NOT NULL,
    snapshot_hash TEXT NOT NULL,
    etag TEXT,
    google_updated TIMESTAMP,
    crm_change_seq BIGINT NOT NULL,
    pending_since TIMESTAMP,
    end_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX links_crm ON links (user_id, kind, crm_id);
CREATE UNIQUE INDEX links_google ON links (user_id, kind, google_id);
CREATE INDEX links_state ON links (user_id, kind, state);

CREATE TABLE cursors (
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('contacts', 'activities')),
    google_sync_token TEXT,
    -- JSON: the listing parameters the token was obtained with (must stay identical).
    google_token_params TEXT,
    -- Contacts: the sync contact group's resource name; activities: the calendar id.
    google_container TEXT,
    crm_seq BIGINT NOT NULL,
    full_sync_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE sync_runs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('contacts', 'activities')),
    trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'push')),
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'blocked', 'skipped')),
    requested_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    -- JSON objects/arrays: counts per side and action, per-item errors, run options.
    counts TEXT NOT NULL,
    conflicts INTEGER NOT NULL,
    errors TEXT NOT NULL,
    options TEXT NOT NULL,
    message TEXT,
    worker TEXT
);
CREATE INDEX sync_runs_user ON sync_runs (user_id, kind, requested_at);

CREATE TABLE journal (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    link_id TEXT,
    crm_id TEXT,
    google_id TEXT,
    -- 'crm' | 'google' | 'link'
    side TEXT NOT NULL,
    action TEXT NOT NULL,
    -- Which rule decided (e.g. 'crm_only_change', 'lww_google_newer', 'delete_as_untag').
    rule TEXT NOT NULL,
    field TEXT,
    winner TEXT,
    -- JSON values before and after.
    before_value TEXT,
    after_value TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX journal_run ON journal (run_id);
CREATE INDEX journal_crm ON journal (crm_id);

CREATE TABLE sync_jobs (
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('contacts', 'activities')),
    next_due_at TIMESTAMP,
    -- A manual "Start synchronization" waiting to run (coalesced: at most one).
    requested_at TIMESTAMP,
    requested_run_id TEXT,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    running_run_id TEXT,
    last_success_at TIMESTAMP,
    last_error TEXT,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE INDEX sync_jobs_due ON sync_jobs (next_due_at);
