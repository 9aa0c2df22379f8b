//! The camera registry: which cameras of which edge device the server
//! accepts events from, where they look, which violation types they are
//! approved for, and until when their speed measurement is certified.
//!
//! An edge box analyses several cameras and names each with the
//! `camera_id` of its site file (unique within the box), so a camera is
//! enrolled per device: `(device_id, camera_id)`. Enrolment and retirement
//! go through the admin API (`/api/v1/cameras`) or the CLI (`ingest-server
//! camera add|list|retire`). A row is one camera's time in service:
//! retiring keeps it (the events it made stay explained) and a replacement
//! with the same id is enrolled as a new row; at most one row per
//! `(device_id, camera_id)` is active (a partial unique index).
//!
//! Verification ([`check`], called from `ingest::verify`) sends to the
//! quarantine an event whose camera is not enrolled for its device
//! (`unknown_camera`, only when `[ingest] require_known_camera` is on),
//! whose camera was retired before the event time (`retired_camera`), whose
//! violation type the camera is not approved for (`rule_not_enabled`), and a
//! speeding event from a camera with no inspection certificate on record
//! (`certification_missing`) or whose certificate had lapsed on the event's
//! date in Vietnam (`certification_expired`). Speed measuring equipment used
//! as evidence has to carry a valid inspection (kiểm định) certificate; the
//! certificate's number and last valid day are data here, entered by an
//! administrator from the paper certificate (how long one lasts is not
//! assumed).
//!
//! With `require_known_camera = false` (the code's default, for existing
//! deployments that enrol only devices) an event from a camera that is not
//! in the registry is accepted unchecked, as before; cameras that are
//! enrolled are still checked. Production turns it on
//! (`deploy/config/ingest-server.toml`).
//!
//! This module holds the registry's types ([`Camera`], [`CameraView`],
//! [`CameraError`]), the `INGEST_REQUIRE_KNOWN_CAMERA` override and the
//! field helpers its parts share. Enrolling a camera (the admin API's body,
//! its checks, the insert) is in `cameras/enrolment.rs`; reading the rows
//! back, retiring and listing in `cameras/history.rs`; the verify step's
//! pure check of an event against its camera in `cameras/checks.rs`. Their
//! public items are re-exported here, so callers use `crate::cameras::…`.

use protocol::ViolationType;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use time::Date;

use crate::config::ConfigError;
use crate::db::DbError;

mod checks;
mod enrolment;
mod history;

pub use checks::{CameraRefusal, check};
pub use enrolment::{NewCamera, enrol};
pub use history::{for_devices, for_devices_on, list, retire};

/// Environment variable for `[ingest] require_known_camera`.
pub const ENV_REQUIRE_KNOWN_CAMERA: &str = "INGEST_REQUIRE_KNOWN_CAMERA";

/// Every violation type, as written in `enabled_rules` (the protocol's
/// snake_case names).
pub const VIOLATION_TYPES: &[&str] = &[
    "red_light",
    "stop_line",
    "wrong_lane",
    "wrong_way",
    "speeding",
    "illegal_stopping",
    "no_helmet",
];

/// Longest description (intersection, direction) and certificate number.
const MAX_TEXT: usize = 200;

/// A query over the `Any` driver.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a nullable `f64` so that PostgreSQL sees `float8` also for NULL.
///
/// sqlx-core 0.9.0's `Any` driver swaps the NULL mapping of its Real and
/// Double kinds (`any/arguments.rs`): `None::<f64>` is sent as a `float4`
/// NULL, the statement is prepared (and cached per connection) with a
/// `float4` parameter, and the next non-NULL `f64` on that connection fails
/// with 22P03 "incorrect binary data format". `None::<f32>` comes out as
/// the `float8` NULL we want. The PostgreSQL runs of `tests/cameras.rs`
/// (a speeding event after a red-light one) catch it if sqlx changes.
pub fn bind_opt_f64(q: AnyQuery<'_>, v: Option<f64>) -> AnyQuery<'_> {
    match v {
        Some(x) => q.bind(x),
        None => q.bind(None::<f32>),
    }
}

/// Applies `INGEST_REQUIRE_KNOWN_CAMERA` (true/false) to the setting.
pub fn apply_env(
    require_known_camera: &mut bool,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(v) = get(ENV_REQUIRE_KNOWN_CAMERA) {
        *require_known_camera = v.trim().parse().map_err(|_| ConfigError::Env {
            var: ENV_REQUIRE_KNOWN_CAMERA.into(),
            message: format!("`{v}` is not true or false"),
        })?;
    }
    Ok(())
}

/// One enrolled camera (one time in service).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Camera {
    /// Id of this enrolment (a UUID).
    pub id: String,
    /// The edge device the camera is attached to.
    pub device_id: String,
    /// The camera's id on that device (`camera_id` of its events).
    pub camera_id: String,
    /// The site (intersection) id: the device's.
    pub site: String,
    /// Where it is and what it looks at (intersection, direction).
    pub description: String,
    /// WGS 84 latitude, degrees.
    pub latitude: Option<f64>,
    /// WGS 84 longitude, degrees.
    pub longitude: Option<f64>,
    /// The violation types it is approved for; `None`: every type.
    pub enabled_rules: Option<Vec<ViolationType>>,
    /// Number of the inspection (kiểm định) certificate of its speed
    /// measurement.
    pub certificate_no: Option<String>,
    /// Last day (Vietnam time, `YYYY-MM-DD`) the certificate is valid.
    pub certified_until: Option<String>,
    /// `active` or `retired`.
    pub status: String,
    /// When it was enrolled (Unix ms).
    pub created_at: i64,
    /// When it was retired (Unix ms).
    pub retired_at: Option<i64>,
    /// Why it was retired.
    pub retired_reason: Option<String>,
}

impl Camera {
    /// Whether it has been retired.
    pub fn is_retired(&self) -> bool {
        self.retired_at.is_some()
    }

    fn certified_until_date(&self) -> Option<Date> {
        self.certified_until
            .as_deref()
            .and_then(|d| parse_date(d).ok())
    }
}

/// A camera in the admin listing, with what the device's latest heartbeat
/// says about it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    /// The registry's row.
    #[serde(flatten)]
    pub camera: Camera,
    /// When the device's latest heartbeat arrived (Unix ms), if any.
    pub heartbeat_received_at: Option<i64>,
    /// The camera's state in that heartbeat (`streaming`, `stalled`, ...),
    /// if it is listed there.
    pub heartbeat_state: Option<String>,
    /// An active camera the device's latest heartbeat does not list.
    pub missing_from_heartbeat: bool,
}

fn invalid(field: &str, message: impl Into<String>) -> CameraError {
    CameraError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// What can go wrong managing cameras. Messages start with the field.
#[derive(Debug, Error)]
pub enum CameraError {
    /// An id (device, camera, site) that is not a valid topic id.
    #[error("{field}: {message}")]
    InvalidId {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Another field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The device is not enrolled (or is revoked).
    #[error("device_id: {0}")]
    UnknownDevice(String),
    /// The camera is enrolled and active already.
    #[error("camera `{1}` of device `{0}` is already enrolled")]
    Exists(String, String),
    /// No such camera.
    #[error("camera `{1}` of device `{0}` is not enrolled")]
    NotFound(String, String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for CameraError {
    fn from(e: sqlx::Error) -> Self {
        CameraError::Db(DbError::Sqlx(e))
    }
}

/// Parses a snake_case violation type.
pub fn parse_violation_type(s: &str) -> Option<ViolationType> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

fn parse_date(s: &str) -> Result<Date, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).map_err(|e| format!("`{s}` is not a date YYYY-MM-DD ({e})"))
}

fn check_text(field: &str, value: &str, required: bool) -> Result<(), CameraError> {
    if value.trim().is_empty() {
        return if required {
            Err(invalid(field, "must not be empty"))
        } else {
            Ok(())
        };
    }
    if value.chars().count() > MAX_TEXT {
        return Err(invalid(field, format!("at most {MAX_TEXT} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn rules_text(rules: &[ViolationType]) -> String {
    rules
        .iter()
        .map(crate::ingest::enum_text)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_type_is_listed_and_parses() {
        for t in VIOLATION_TYPES {
            let v = parse_violation_type(t).unwrap();
            assert_eq!(crate::ingest::enum_text(&v), *t);
        }
        assert!(parse_violation_type("jaywalking").is_none());
    }

    #[test]
    fn env_override() {
        let mut on = false;
        apply_env(&mut on, &|k| {
            (k == ENV_REQUIRE_KNOWN_CAMERA).then(|| "true".into())
        })
        .unwrap();
        assert!(on);
        let err = apply_env(&mut on, &|k| {
            (k == ENV_REQUIRE_KNOWN_CAMERA).then(|| "yes".into())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains(ENV_REQUIRE_KNOWN_CAMERA), "{err}");
    }
}
