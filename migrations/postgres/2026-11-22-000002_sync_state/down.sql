DROP TABLE sync_jobs;
DROP TABLE journal;
DROP TABLE sync_runs;
DROP TABLE cursors;
DROP TABLE links;
