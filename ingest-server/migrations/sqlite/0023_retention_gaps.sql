-- Personal data kept longer than needed (kept in step between
-- migrations/sqlite and migrations/postgres).
--
-- rejection_reasons 'limitation_expired': retention rejects, as the
-- system, a case that nobody decided (new, in_review, accepted) before its
-- one-year limitation period ran out (`retention/expired.rs`); the
-- rejected case's retention then deletes its evidence. Reviewers may give
-- it too.
--
-- Cases already purged lose what the purge now strips
-- (`retention::strip_personal`): the contest's text, the payer's IP
-- address and the gateway's raw answers, the police's words in a
-- follow-up notice.
--
-- push_subscriptions.session_sha256: the citizen session that registered
-- the subscription (`citizen/push.rs`). When the session signs out its
-- subscriptions go, and the next person signing in with that browser ends
-- the previous one's, so a shared phone does not keep receiving them.
-- Subscriptions from before this migration have none and stay until their
-- owner signs out in that browser or the push service reports them gone.

INSERT INTO rejection_reasons (code, label_vi, label_en) VALUES
    ('limitation_expired', 'Hết thời hiệu xử phạt', 'Limitation period expired')
    ON CONFLICT (code) DO NOTHING;

UPDATE contests SET reason = '' WHERE event_id IN
    (SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL);
UPDATE payments SET client_ip = '', ipn_params = NULL, query_result = NULL WHERE event_id IN
    (SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL);
UPDATE notice_messages SET reason = '' WHERE event_id IN
    (SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL);

ALTER TABLE push_subscriptions ADD COLUMN session_sha256 TEXT;
CREATE INDEX push_subscriptions_session ON push_subscriptions (session_sha256);
