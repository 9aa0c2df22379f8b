-- Secrets the server makes for itself and every replica shares (kept in
-- step between migrations/sqlite and migrations/postgres).
--
-- citizen_actor_id: the key of the HMAC that names a citizen in the audit
-- log (`sso::citizen::actor_id`). A plain digest of the 12-digit national
-- ID number could be reversed by trying every number (a few times 10^10),
-- and the audit log is never edited: it would hold the numbers for ever.
-- Made once, at the first start after this migration, by whichever replica
-- gets there first (INSERT ... ON CONFLICT DO NOTHING, then read back).

CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
