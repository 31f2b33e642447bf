DROP INDEX tags_private_name_unique;
DROP INDEX users_google_alias_unique;
ALTER TABLE google_connections ADD COLUMN oauth_state TEXT;
DROP TABLE oauth_states;
