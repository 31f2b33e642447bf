-- Security (issue 19): single-use, expiring OAuth states kept apart from the connection (a
-- Connect that is never finished changes nothing), one Google account per CRM user, one private
-- tag name per owner.

-- A pending "Connect Google": the SHA-256 of the state parameter (the state itself is only in
-- the browser's URL), whose user, and when it stops being accepted. Taken (deleted) once.
CREATE TABLE oauth_states (
    state_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX oauth_states_user ON oauth_states (user_id);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

-- A Connect started and never finished left an 'oauth' connection without a refresh token that
-- pinned the user to OAuth; such a row never worked: forget it (the user syncs through the
-- domain's service account when there is one). Disabled connections stay as the admin left them.
DELETE FROM google_connections
 WHERE method = 'oauth' AND refresh_token_ciphertext IS NULL AND state <> 'disabled';
ALTER TABLE google_connections DROP COLUMN oauth_state;

-- Aliases are stored trimmed and lower-case, so this is the case-insensitive rule.
CREATE UNIQUE INDEX users_google_alias_unique ON users (google_alias);

CREATE UNIQUE INDEX tags_private_name_unique ON tags (owner_user_id, lower(name))
 WHERE visibility = 'private';
