-- Records the sync engine could not carry over (see schema/src/parked.rs). Each failed run
-- counts one attempt per (user, kind, side, record); after a few, the record is parked: it no
-- longer holds the run's cursors back (so one bad record cannot make every run re-read the same
-- changes or re-list everything), and every run retries it by id until it goes through, when
-- the row is removed.
CREATE TABLE parked_items (
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('contacts', 'activities')),
    -- Where the change came from: 'crm' (item_id is the CRM id) or 'google' (the Google id).
    side TEXT NOT NULL CHECK (side IN ('crm', 'google')),
    item_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at TIMESTAMP NOT NULL,
    last_failed_at TIMESTAMP NOT NULL,
    -- Set once the record no longer holds the cursors back.
    parked_at TIMESTAMP,
    last_error TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, side, item_id)
);
