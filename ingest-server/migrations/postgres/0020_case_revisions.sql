-- Case revisions and follow-up messages to owners (kept in step between
-- migrations/sqlite and migrations/postgres).
--
-- events.revision: a per-case counter, raised by every change a person or
-- the system makes to a case through `review::Reviewer::act` and by every
-- change of its owner (`registry/resolve.rs`). The police confirmation
-- forms carry the revision of the case as shown, and a confirmation of a
-- case whose revision has moved since is refused: the officer confirms
-- only the plate, type, fine, owner and state they saw.
--
-- notice_messages: what is said to an owner after the fine notice — the
-- contest was not accepted (`contest_rejected`, with the reason and the
-- new deadline) or the fine was withdrawn (`withdrawn`, with the reason).
-- Its deliveries are rows of notice_deliveries with message_id set (the
-- fine notice's own deliveries have none), sent by the same worker.

ALTER TABLE events ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

CREATE TABLE notice_messages (
    message_id  TEXT PRIMARY KEY,
    notice_id   TEXT NOT NULL REFERENCES notices (notice_id),
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    respond_by  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX notice_messages_event ON notice_messages (event_id, created_at);

ALTER TABLE notice_deliveries ADD COLUMN message_id TEXT REFERENCES notice_messages (message_id);
DROP INDEX notice_deliveries_target;
CREATE UNIQUE INDEX notice_deliveries_target ON notice_deliveries (notice_id, COALESCE(message_id, ''), channel, target);
