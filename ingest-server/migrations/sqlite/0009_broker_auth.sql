-- Embedded-broker logins and the server's ack-signing keys (issue 8),
-- SQLite flavour. Kept in step with ../postgres/0009_broker_auth.sql.
--
-- devices.mqtt_secret_hash: `sha256:<64 hex>` of the device's MQTT password
-- (256 random bits, issued at enrolment or re-issued with
-- `ingest-server device mqtt-secret`); the password itself is shown once and
-- never stored. NULL: the device cannot log in to the embedded broker.
--
-- server_keys: the public halves of the Ed25519 keys the server (each
-- replica) signs acks with, registered when a server starts, so that an
-- enrolment can tell a device every key to trust. retired_at: no longer
-- handed out (`ingest-server key retire`).

ALTER TABLE devices ADD COLUMN mqtt_secret_hash TEXT;

CREATE TABLE server_keys (
    public_key    TEXT PRIMARY KEY,
    registered_at INTEGER NOT NULL,
    retired_at    INTEGER
);
