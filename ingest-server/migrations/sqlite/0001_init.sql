-- ingest-server schema, SQLite flavour. Kept in step with ../postgres/0001_init.sql:
-- same tables, same columns, same meaning; only the type names differ.
-- Times are integers (Unix milliseconds, UTC) unless a column keeps the
-- device's own RFC 3339 text (event_time), which preserves its offset.

CREATE TABLE devices (
    device_id    TEXT PRIMARY KEY,
    site         TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    enrolled_at  INTEGER NOT NULL,
    revoked_at   INTEGER,
    revoked_reason TEXT
);

CREATE TABLE events (
    event_id         TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL REFERENCES devices (device_id),
    camera_id        TEXT NOT NULL,
    site             TEXT NOT NULL,
    event_time       TEXT NOT NULL,
    event_time_ms    INTEGER NOT NULL,
    violation_type   TEXT NOT NULL,
    vehicle_class    TEXT NOT NULL,
    plate_readable   INTEGER NOT NULL,
    plate_text       TEXT,
    plate_display    TEXT,
    plate_colour     TEXT NOT NULL,
    plate_confidence REAL,
    speed_kmh        REAL,
    speed_limit_kmh  INTEGER,
    signed_json      TEXT NOT NULL,
    source           TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    fine_status      TEXT NOT NULL,
    fine_schedule    TEXT,
    fine_ref         TEXT,
    fine_min_vnd     INTEGER,
    fine_max_vnd     INTEGER,
    licence_points   INTEGER,
    owner_status     TEXT NOT NULL DEFAULT 'pending',
    owner_id         TEXT,
    case_status      TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX events_device_time ON events (device_id, event_time_ms);
CREATE INDEX events_plate ON events (plate_text);
CREATE INDEX events_owner_status ON events (owner_status);

CREATE TABLE evidence (
    event_id    TEXT NOT NULL REFERENCES events (event_id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    stored      INTEGER NOT NULL DEFAULT 0,
    stored_at   INTEGER,
    PRIMARY KEY (event_id, name)
);

CREATE TABLE quarantine (
    id             TEXT PRIMARY KEY,
    received_at    INTEGER NOT NULL,
    source         TEXT NOT NULL,
    device_claimed TEXT,
    event_id       TEXT,
    reason_code    TEXT NOT NULL,
    reason         TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_size   INTEGER NOT NULL
);
CREATE INDEX quarantine_received ON quarantine (received_at);

CREATE TABLE clip_chunks (
    event_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    total_size  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (event_id, name, idx)
);

CREATE TABLE heartbeats (
    device_id   TEXT PRIMARY KEY REFERENCES devices (device_id),
    site        TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    signed_json TEXT NOT NULL
);

CREATE TABLE owners (
    owner_id    TEXT PRIMARY KEY,
    full_name   TEXT NOT NULL,
    national_id TEXT NOT NULL,
    address     TEXT NOT NULL,
    phone       TEXT,
    email       TEXT,
    vneid       TEXT
);

CREATE TABLE vehicles (
    plate_text          TEXT NOT NULL,
    plate_colour        TEXT NOT NULL,
    vehicle_type        TEXT NOT NULL,
    make                TEXT NOT NULL,
    colour              TEXT NOT NULL,
    registration_status TEXT NOT NULL,
    owner_id            TEXT NOT NULL REFERENCES owners (owner_id),
    PRIMARY KEY (plate_text, plate_colour)
);

CREATE TABLE registry_access_log (
    id       TEXT PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    plate    TEXT NOT NULL,
    purpose  TEXT NOT NULL,
    event_id TEXT,
    outcome  TEXT NOT NULL
);
