-- Owner and vehicle rows copied from the registry gateway are told apart
-- from our own registry's (kept in step between migrations/sqlite and
-- migrations/postgres).
--
-- copied_at: when the row was last written from the gateway's answer (Unix
-- ms, `registry/http.rs`); empty for a row the CSV import (or the demo
-- registry) wrote, which is the registry itself and is never deleted.
-- Retention (`retention/mod.rs`) deletes a copy once no case whose
-- evidence is kept names it (Decree 13/2023: the gateway is asked about
-- every readable plate when the case is stored, misreads included).
-- Rows copied before this migration have no time and are taken for the
-- registry's own until the gateway is asked about them again.

ALTER TABLE owners ADD COLUMN copied_at BIGINT;
ALTER TABLE vehicles ADD COLUMN copied_at BIGINT;
