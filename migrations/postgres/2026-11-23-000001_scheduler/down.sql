DROP INDEX sync_runs_recent;
DROP INDEX sync_jobs_running;
DROP INDEX sync_jobs_requested;
ALTER TABLE sync_jobs DROP COLUMN claimed_at;
ALTER TABLE sync_jobs DROP COLUMN last_run_id;
ALTER TABLE sync_jobs DROP COLUMN last_run_at;
ALTER TABLE sync_jobs DROP COLUMN settings_version;
