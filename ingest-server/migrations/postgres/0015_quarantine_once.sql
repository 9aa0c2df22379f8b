-- One quarantine row per refusal the device is not told of (kept in step
-- between migrations/sqlite and migrations/postgres).
--
-- Such a refusal (`ingest::verify::Grounds::Arrival`) comes again with every
-- resend. `quarantine::insert_once` used to check for an earlier row and
-- then insert, which two replicas (or two connections of one) could both
-- pass at once on PostgreSQL. The key below makes the database itself
-- refuse the second row (INSERT ... ON CONFLICT DO NOTHING). Rows written
-- by `quarantine::insert` (refusals the device is told of) leave it NULL,
-- and NULLs never conflict, so they keep one row per arrival.

ALTER TABLE quarantine ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX quarantine_once ON quarantine (once_key);
