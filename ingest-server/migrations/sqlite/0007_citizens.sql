-- The citizen app (issue 10), SQLite flavour. Kept in step with
-- ../postgres/0007_citizens.sql.
--
-- Citizens sign in through the national identity provider; a session is
-- tied to the national ID number from the identity token (kept only here,
-- for the session's life) and shows only the cases of vehicles registered
-- to that number. Only the SHA-256 of the cookie token is stored.

CREATE TABLE citizen_sessions (
    token_sha256 TEXT PRIMARY KEY,
    national_id  TEXT NOT NULL,
    display_name TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

-- An owner's answer to a notice: accepted, or contested with a reason and
-- an optional photo (stored in the evidence store by its hash); police
-- answer the contest in the console (uphold or cancel).
CREATE TABLE contests (
    id            TEXT PRIMARY KEY,
    event_id      TEXT NOT NULL REFERENCES events (event_id),
    owner_id      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    photo_sha256  TEXT,
    photo_type    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX contests_event ON contests (event_id);

ALTER TABLE events ADD COLUMN owner_response TEXT;
ALTER TABLE events ADD COLUMN owner_response_at INTEGER;
