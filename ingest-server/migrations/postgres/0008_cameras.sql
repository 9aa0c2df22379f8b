-- The camera registry (issue 8, "known camera"), PostgreSQL flavour. Kept in
-- step with ../sqlite/0008_cameras.sql.
--
-- A camera is enrolled per device: an edge box analyses several cameras and
-- names each with the `camera_id` of its site file, unique within the box.
-- A row is one camera's time in service: retiring it sets `retired_at` and
-- keeps the row (its events stay explained); a replacement with the same id
-- is a new row, and at most one row per (device, camera) is active.
--
-- enabled_rules: NULL = every violation type; otherwise a comma-separated
-- list of protocol violation types (`red_light,stop_line`) the camera is
-- approved for. certificate_no / certified_until: the inspection
-- (kiểm định) certificate of the speed measurement and the last day it is
-- valid (YYYY-MM-DD, Vietnam time); speeding events need it in force.

CREATE TABLE cameras (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL REFERENCES devices (device_id),
    camera_id       TEXT NOT NULL,
    site            TEXT NOT NULL,
    description     TEXT NOT NULL,
    latitude        DOUBLE PRECISION,
    longitude       DOUBLE PRECISION,
    enabled_rules   TEXT,
    certificate_no  TEXT,
    certified_until TEXT,
    status          TEXT NOT NULL DEFAULT 'active',
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT,
    retired_reason  TEXT
);
CREATE UNIQUE INDEX cameras_active ON cameras (device_id, camera_id) WHERE retired_at IS NULL;
CREATE INDEX cameras_device ON cameras (device_id, camera_id, created_at);
