-- The edge outbox. One row per violation; evidence files stay in the spool
-- directory the row points at. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT, -- send order
    event_id       TEXT    NOT NULL UNIQUE,
    camera_id      TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    event_json     BLOB    NOT NULL,  -- the signed envelope, exactly as signed
    dir            TEXT    NOT NULL,  -- the event's spool directory
    stills         TEXT    NOT NULL,  -- JSON list of attached file names
    stills_bytes   INTEGER NOT NULL,
    clip_name      TEXT,              -- the file sent as chunks, if any
    clip_bytes     INTEGER NOT NULL DEFAULT 0,
    -- queued -> sent -> acked | rejected
    state          TEXT    NOT NULL DEFAULT 'queued',
    sent_at        INTEGER,
    sent_sha256    TEXT,              -- SHA-256 of the bundle bytes last sent
    attempts       INTEGER NOT NULL DEFAULT 0,
    -- none | pending -> sent -> acked | evicted
    clip_state     TEXT    NOT NULL,
    clip_sent_at   INTEGER,
    stills_evicted INTEGER NOT NULL DEFAULT 0,
    reject_code    TEXT,
    reject_message TEXT,
    done_at        INTEGER             -- everything delivered (or given up)
);
CREATE INDEX IF NOT EXISTS events_open ON events (done_at, seq);
CREATE INDEX IF NOT EXISTS events_open_created ON events (created_at) WHERE done_at IS NULL;
CREATE INDEX IF NOT EXISTS events_open_state ON events (state, clip_state) WHERE done_at IS NULL;

-- Every eviction, so that nothing leaves the box unrecorded.
CREATE TABLE IF NOT EXISTS evictions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    event_id  TEXT    NOT NULL,
    what      TEXT    NOT NULL,  -- clip | stills | event
    bytes     INTEGER NOT NULL,
    reason    TEXT    NOT NULL
);

-- Files an eviction (or a delivery) recorded as gone, written in the same
-- transaction as that record and deleted after it commits: a row left here
-- (power lost between) is deleted at the next start or limits pass.
CREATE TABLE IF NOT EXISTS pending_deletes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id  TEXT    NOT NULL,
    path      TEXT    NOT NULL,
    kind      TEXT    NOT NULL   -- file | dir | finish (the event's directory
                                 -- but the stills it never sent)
);
