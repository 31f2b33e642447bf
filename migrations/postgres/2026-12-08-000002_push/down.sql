ALTER TABLE sync_runs DROP COLUMN items_known;
ALTER TABLE sync_runs DROP COLUMN items_done;
DROP TABLE watch_channels;
DROP INDEX sync_jobs_push_due;
ALTER TABLE sync_jobs DROP COLUMN push_requested_at;
ALTER TABLE sync_jobs DROP COLUMN push_due_at;
