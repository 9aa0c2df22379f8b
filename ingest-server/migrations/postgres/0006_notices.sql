-- Fine notices to owners (issue 10), PostgreSQL flavour. Kept in step with
-- ../sqlite/0006_notices.sql.
--
-- A notice is written in the transaction that confirms the case (one per
-- case), with one delivery row per channel and target: each Web Push
-- subscription of the owner, each partner app's webhook, the owner's
-- e-mail. A worker sends due deliveries: it claims a row with a
-- conditional UPDATE (a lease), so two replicas never send the same one at
-- once, and marks it sent exactly once; failures wait with exponential
-- backoff and jitter until max_attempts, then the row is 'dead'. The
-- idempotency key goes to every receiver (X-TV-Delivery, Topic, Message-ID)
-- so a retry after an unknown outcome can be told apart from a new notice.
-- Times are Unix milliseconds (UTC).

CREATE TABLE notices (
    notice_id     TEXT PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE REFERENCES events (event_id),
    owner_id      TEXT,
    created_at    BIGINT NOT NULL,
    detected_at   BIGINT NOT NULL,
    notify_by     BIGINT NOT NULL,
    respond_by    BIGINT NOT NULL,
    issued_at     BIGINT,
    issued_via    TEXT,
    overdue_at    BIGINT
);
CREATE INDEX notices_issued ON notices (issued_at);

CREATE TABLE notice_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    notice_id       TEXT NOT NULL REFERENCES notices (notice_id),
    event_id        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    sent_at         BIGINT,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX notice_deliveries_target ON notice_deliveries (notice_id, channel, target);
CREATE INDEX notice_deliveries_due ON notice_deliveries (state, next_attempt_at);

-- Web Push subscriptions of the citizen app, per owner (national ID). The
-- endpoint is the push service's URL for one browser; p256dh and auth
-- (base64url) are that browser's key and secret for RFC 8291.
CREATE TABLE push_subscriptions (
    subscription_id TEXT PRIMARY KEY,
    national_id     TEXT NOT NULL,
    endpoint        TEXT NOT NULL UNIQUE,
    p256dh          TEXT NOT NULL,
    auth            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_owner ON push_subscriptions (national_id);

-- The channels this deployment has (`webpush`, `email`, and
-- `webhook:{name}` per partner app of [[notices.webhooks]]), written from
-- the configuration at start, so that the confirming transaction can write
-- one delivery per usable channel without the configuration in hand.
CREATE TABLE notice_channels (
    name       TEXT PRIMARY KEY,
    active     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Warnings to the vehicle inspection (đăng kiểm) register: a notice was
-- issued and the owner did not respond within 20 days (Circular
-- 73/2024/TT-BCA, Art. 24). sent_at stays empty until an adapter to the
-- register transmits it.
CREATE TABLE inspection_warnings (
    event_id     TEXT PRIMARY KEY REFERENCES events (event_id),
    plate        TEXT NOT NULL,
    plate_colour TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    sent_at      BIGINT
);

-- Set when a case had no notice sent 10 days after detection (the legal
-- deadline); never cleared, so a late notice stays visible.
ALTER TABLE events ADD COLUMN notice_late_at BIGINT;
CREATE INDEX events_notice_late ON events (notice_late_at);
