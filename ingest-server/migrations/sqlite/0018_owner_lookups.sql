-- Owner lookups that failed are tried again, and owners' phone numbers are
-- no longer kept (kept in step between migrations/sqlite and
-- migrations/postgres).
--
-- owner_lookup_at: when the case's owner was last looked up (Unix ms);
-- owner_lookup_failures: lookups in a row that failed (owner_status
-- 'error'), for the backoff between retries (registry/resolve.rs): 5
-- minutes after the first, doubling, at most an hour. Cases whose lookup
-- failed before this migration have no time and are retried at once.
--
-- phone: no channel reaches an owner by phone, so the import and the
-- gateway adapter no longer keep one (minimum collection, Decree
-- 13/2023); the numbers already stored are removed. The column stays, empty.

ALTER TABLE events ADD COLUMN owner_lookup_at INTEGER;
ALTER TABLE events ADD COLUMN owner_lookup_failures INTEGER NOT NULL DEFAULT 0;
UPDATE owners SET phone = NULL;
