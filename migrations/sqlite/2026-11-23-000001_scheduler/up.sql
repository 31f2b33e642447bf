-- The scheduler's bookkeeping on sync_jobs (one row per user and kind, see schema/src/jobs.rs):
-- which settings the due time was computed from, when the last run started (the schedule's
-- anchor) and which run it was, and indexes for claiming manual requests and expired leases.

ALTER TABLE sync_jobs ADD COLUMN settings_version TIMESTAMP;
ALTER TABLE sync_jobs ADD COLUMN last_run_at TIMESTAMP;
ALTER TABLE sync_jobs ADD COLUMN last_run_id TEXT;
ALTER TABLE sync_jobs ADD COLUMN claimed_at TIMESTAMP;
CREATE INDEX sync_jobs_requested ON sync_jobs (requested_at);
CREATE INDEX sync_jobs_running ON sync_jobs (running_run_id);
CREATE INDEX sync_runs_recent ON sync_runs (user_id, requested_at);
