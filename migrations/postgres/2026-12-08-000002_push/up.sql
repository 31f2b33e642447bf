-- Push (issue 15, SPEC 5): a CRM write (or a change another user's run made) that concerns a
-- user's synced records requests a debounced run of that user and kind. The request is a time on
-- the job row: push_due_at moves to now + debounce with every new request (never later than
-- push_requested_at + the longest wait), and any run claimed after it covers it.
ALTER TABLE sync_jobs ADD COLUMN push_due_at TIMESTAMP;
ALTER TABLE sync_jobs ADD COLUMN push_requested_at TIMESTAMP;
CREATE INDEX sync_jobs_push_due ON sync_jobs (push_due_at);

-- Calendar watch channels (events.watch), one per user with activity auto-sync, when crmsync has
-- a public URL: Google POSTs to /google/notifications with X-Goog-Channel-ID and the channel's
-- token (only its SHA-256 is kept). A row is also the lease that keeps two workers from making
-- or renewing the same user's channel at once (claimed_by until claimed_until).
CREATE TABLE watch_channels (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    channel_id TEXT UNIQUE,
    resource_id TEXT,
    token_hash TEXT,
    expires_at TIMESTAMP,
    last_message_number BIGINT,
    last_error TEXT,
    claimed_by TEXT,
    claimed_until TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);

-- A run's progress while it goes on (issue 14): records handled of the records known so far
-- (the Google listing and the CRM feed are read page by page, so "known" grows).
ALTER TABLE sync_runs ADD COLUMN items_done BIGINT;
ALTER TABLE sync_runs ADD COLUMN items_known BIGINT;
