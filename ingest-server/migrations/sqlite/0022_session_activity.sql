-- Session activity (kept in step between migrations/sqlite and
-- migrations/postgres).
--
-- sessions.last_seen_at: Unix ms of the console session's last use,
-- written at most once a minute (`accounts::session`). A session unused
-- for `http.console_idle_minutes` (30 by default) is refused, so a
-- console left open on an unattended desk does not stay signed in for the
-- rest of its 12-hour shift. Sessions started before this migration count
-- from their start (`created_at`).
--
-- citizen_sessions_expires: expired citizen sessions (each holds an ID
-- number and a name) are deleted at every sign-in and by retention
-- (`citizen::delete_expired_sessions`), found by this index.

ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
CREATE INDEX citizen_sessions_expires ON citizen_sessions (expires_at);
