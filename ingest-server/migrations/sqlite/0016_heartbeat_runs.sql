-- Heartbeats ordered by the agent's run, not its clock (kept in step
-- between migrations/sqlite and migrations/postgres).
--
-- A heartbeat (schema 1.3) carries `boot`: the random id of the agent's
-- run and its place in that run. The latest stored report keeps both, so a
-- report of the same run counts only with a higher place; every run a
-- device has reported from is remembered, so a report of an earlier run is
-- a replay. Before this, a box whose clock was unsynchronised could not be
-- ordered at all, and a captured old report, replayed, replaced a newer one.

ALTER TABLE heartbeats ADD COLUMN boot_id TEXT;
ALTER TABLE heartbeats ADD COLUMN boot_seq INTEGER;

CREATE TABLE heartbeat_runs (
    device_id  TEXT NOT NULL,
    boot_id    TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (device_id, boot_id)
);
