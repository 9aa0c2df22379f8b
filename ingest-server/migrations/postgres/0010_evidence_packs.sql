-- Evidence packs (issue 8), PostgreSQL flavour. Kept in step with ../sqlite/0010_evidence_packs.sql.
--
-- The ingest batch writes the evidence of all its events as ONE object, a
-- pack (`packs/YYYY-MM-DD/{uuid}.pack`), instead of one object per file:
-- creating hundreds of files per batch was the server's bottleneck. This
-- table says where each file's bytes lie: in which pack, at which offset,
-- how long. Rows are inserted in the same transaction as the batch's cases,
-- after the pack is durably written, so a committed case never points at
-- bytes that are not stored. A file with no row here is a single object
-- under its hash (`sha256/ab/cdef...`: clips, and evidence stored before
-- this migration). Every read is checked against the hash either way.

CREATE TABLE evidence_index (
    sha256      TEXT PRIMARY KEY,
    pack        TEXT NOT NULL,
    byte_offset BIGINT NOT NULL,
    byte_length BIGINT NOT NULL
);
