-- Review and confirmation (issue 9), SQLite flavour. Kept in step with
-- ../postgres/0002_review.sql.
--
-- The case workflow lives on the events row (one case per event): its
-- state, the reviewer's lease, who accepted and who confirmed (the
-- two-person rule is checked against these), and the reviewed plate and
-- violation type. The machine read stays in plate_text / violation_type:
-- a correction never overwrites it.

ALTER TABLE events ADD COLUMN state TEXT NOT NULL DEFAULT 'new';
ALTER TABLE events ADD COLUMN state_changed_at INTEGER;
ALTER TABLE events ADD COLUMN claimed_by TEXT;
ALTER TABLE events ADD COLUMN claim_expires_at INTEGER;
ALTER TABLE events ADD COLUMN accepted_by TEXT;
ALTER TABLE events ADD COLUMN confirmed_by TEXT;
ALTER TABLE events ADD COLUMN reviewed_plate TEXT;
ALTER TABLE events ADD COLUMN reviewed_type TEXT;
ALTER TABLE events ADD COLUMN reject_code TEXT;
ALTER TABLE events ADD COLUMN reject_note TEXT;
CREATE INDEX events_state ON events (state, event_time_ms);

-- Every state change and correction of a case, in order.
CREATE TABLE case_transitions (
    id         TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL REFERENCES events (event_id),
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    reason     TEXT,
    detail     TEXT
);
CREATE INDEX case_transitions_event ON case_transitions (event_id, at);

-- The managed list of rejection reasons (plus free text on each case).
CREATE TABLE rejection_reasons (
    code     TEXT PRIMARY KEY,
    label_vi TEXT NOT NULL,
    label_en TEXT NOT NULL,
    active   INTEGER NOT NULL DEFAULT 1
);
INSERT INTO rejection_reasons (code, label_vi, label_en) VALUES
    ('false_trigger', 'Báo sai (không có vi phạm)', 'False trigger (no violation)'),
    ('emergency_vehicle', 'Xe ưu tiên đang làm nhiệm vụ', 'Emergency vehicle on duty'),
    ('plate_unreadable', 'Không đọc được biển số', 'Plate unreadable'),
    ('duplicate', 'Trùng với vụ việc khác', 'Duplicate of another case'),
    ('funeral_procession', 'Đoàn xe tang', 'Funeral procession'),
    ('police_direction', 'Theo hiệu lệnh của CSGT', 'Following a police officer''s direction'),
    ('evidence_insufficient', 'Bằng chứng không đủ rõ', 'Evidence not clear enough'),
    ('other', 'Lý do khác (ghi rõ)', 'Other (explain)');

-- People who use the console. password_hash is an Argon2id PHC string;
-- SSO users have none and are matched by (sso_issuer, sso_subject).
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    sso_issuer    TEXT,
    sso_subject   TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
CREATE UNIQUE INDEX users_sso ON users (sso_issuer, sso_subject);

-- Signed-in sessions. Only the SHA-256 of the cookie's token is stored, so
-- a read of this table does not hand out sessions.
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- The audit log: append-only and hash-chained. Each entry's hash covers
-- the previous entry's hash and its own fields, so an edited or removed
-- entry breaks the chain (`ingest-server audit verify`). audit_head holds
-- the last sequence number and hash; every audited action locks it first,
-- which also serialises appends across server replicas.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    role      TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
