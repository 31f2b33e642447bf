-- Small-change runs at the floor (issue 18): the Google record as last read or written, kept with
-- the link (contacts: the People person, trimmed to what an update replaces, with its etag and
-- sources), so that an update goes out with the etag already known and keeps what the CRM does
-- not map, without reading the contact first. NULL: not kept (then it is read before an update).
ALTER TABLE links ADD COLUMN google_record TEXT;
