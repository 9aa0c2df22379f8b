-- The owner-lookup sweeper's lease (kept in step between migrations/sqlite
-- and migrations/postgres).
--
-- events.owner_lookup_lease_until: Unix ms until which one server replica
-- holds the case's due lookup (`registry/resolve.rs`, `resolve_due`): a
-- sweeper claims a due case with a conditional UPDATE that sets it only
-- while it is unset or past, so of several replicas sweeping at once one
-- looks the owner up (one access-log row, not one per replica). Cleared
-- when the lookup is recorded; a replica that dies mid-lookup leaves it to
-- run out.

ALTER TABLE events ADD COLUMN owner_lookup_lease_until INTEGER;
