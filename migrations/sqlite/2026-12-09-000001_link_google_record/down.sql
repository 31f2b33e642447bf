ALTER TABLE links DROP COLUMN google_record;
