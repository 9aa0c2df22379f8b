-- Evidence retention (issue 8), PostgreSQL flavour. Kept in step with ../sqlite/0012_retention.sql.
--
-- Decree 13/2023 wants personal data deleted once it is no longer needed;
-- the limitation period wants evidence kept a year. `src/retention/`
-- deletes the evidence of cases that no longer need it (rejected, or paid
-- and closed, past their retention period) and the raw bytes of old
-- quarantined messages. The case row stays, marked with when its evidence
-- went, so the audit trail and the statistics still add up and a purged
-- case can never be reopened without its evidence.

ALTER TABLE events ADD COLUMN evidence_purged_at BIGINT;
CREATE INDEX events_state_changed ON events (state, state_changed_at);
-- Whether any case still needs a file (a digest can back several cases).
CREATE INDEX evidence_sha256 ON evidence (sha256);
-- The files of one pack, to rewrite it without the deleted ones.
CREATE INDEX evidence_index_pack ON evidence_index (pack);
-- Digests a quarantined message still names (kept while its row is).
CREATE INDEX quarantine_payload ON quarantine (payload_sha256);
-- Packs a rewrite replaced, recorded in the transaction that moved their
-- files, deleted right after it (a stop in between: the next run).
CREATE TABLE superseded_packs (
    pack TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
