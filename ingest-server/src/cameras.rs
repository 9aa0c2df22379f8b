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

use std::collections::{HashMap, HashSet};

use protocol::{ViolationEvent, ViolationType};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;
use thiserror::Error;
use time::Date;

use crate::config::ConfigError;
use crate::db::{Db, DbError, now_ms};

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

/// Vietnam time, in which a certificate's last valid day is read.
const VIETNAM: time::UtcOffset = time::macros::offset!(+7);

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

/// A camera to enrol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewCamera {
    /// The device (enrolled, not revoked).
    pub device_id: String,
    /// The camera's id on the device.
    pub camera_id: String,
    /// The site; the device's when `None` (and must be the device's).
    pub site: Option<String>,
    /// Where it is and what it looks at.
    pub description: String,
    /// Latitude, -90..=90 (with `longitude`).
    pub latitude: Option<f64>,
    /// Longitude, -180..=180 (with `latitude`).
    pub longitude: Option<f64>,
    /// Approved violation types (snake_case); `None`: every type.
    pub enabled_rules: Option<Vec<String>>,
    /// Inspection certificate number.
    pub certificate_no: Option<String>,
    /// Last valid day of the certificate, `YYYY-MM-DD`.
    pub certified_until: Option<String>,
}

impl NewCamera {
    /// Reads the admin API's JSON body, naming the field that is wrong.
    pub fn from_json(body: &Value) -> Result<NewCamera, CameraError> {
        let Some(obj) = body.as_object() else {
            return Err(invalid("body", "expected a JSON object"));
        };
        const FIELDS: &[&str] = &[
            "device_id",
            "camera_id",
            "site",
            "description",
            "latitude",
            "longitude",
            "enabled_rules",
            "certificate_no",
            "certified_until",
        ];
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(k, "unknown field"));
        }
        let rules = match obj.get("enabled_rules") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            invalid(&format!("enabled_rules[{i}]"), "expected a string")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(invalid("enabled_rules", "expected an array of strings")),
        };
        Ok(NewCamera {
            device_id: required_str(obj, "device_id")?,
            camera_id: required_str(obj, "camera_id")?,
            site: optional_str(obj, "site")?,
            description: required_str(obj, "description")?,
            latitude: optional_f64(obj, "latitude")?,
            longitude: optional_f64(obj, "longitude")?,
            enabled_rules: rules,
            certificate_no: optional_str(obj, "certificate_no")?,
            certified_until: optional_str(obj, "certified_until")?,
        })
    }
}

fn required_str(obj: &Map<String, Value>, field: &str) -> Result<String, CameraError> {
    optional_str(obj, field)?.ok_or_else(|| invalid(field, "required"))
}

fn optional_str(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, CameraError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "expected a string")),
    }
}

fn optional_f64(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, CameraError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(field, "expected a number")),
        Some(_) => Err(invalid(field, "expected a number (degrees)")),
    }
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

fn check_id(field: &'static str, value: &str) -> Result<(), CameraError> {
    protocol::topics::validate_id(field, value).map_err(|e| CameraError::InvalidId {
        field: field.to_owned(),
        message: e.to_string(),
    })
}

/// Checks every field of `new` that needs no database; returns the parsed
/// rules.
fn validate(new: &NewCamera) -> Result<Option<Vec<ViolationType>>, CameraError> {
    check_id("device_id", &new.device_id)?;
    check_id("camera_id", &new.camera_id)?;
    if let Some(site) = &new.site {
        check_id("site", site)?;
    }
    check_text("description", &new.description, true)?;
    match (new.latitude, new.longitude) {
        (None, None) => {}
        (Some(_), None) => return Err(invalid("longitude", "required with latitude")),
        (None, Some(_)) => return Err(invalid("latitude", "required with longitude")),
        (Some(lat), Some(lon)) => {
            if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
                return Err(invalid(
                    "latitude",
                    format!("{lat} is outside -90..=90 degrees"),
                ));
            }
            if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
                return Err(invalid(
                    "longitude",
                    format!("{lon} is outside -180..=180 degrees"),
                ));
            }
        }
    }
    let rules = match &new.enabled_rules {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err(invalid(
                    "enabled_rules",
                    "must list at least one violation type (leave it out for every type)",
                ));
            }
            let mut out = Vec::new();
            for (i, r) in list.iter().enumerate() {
                let t = parse_violation_type(r.trim()).ok_or_else(|| {
                    invalid(
                        &format!("enabled_rules[{i}]"),
                        format!(
                            "unknown violation type `{}` (one of {})",
                            r.chars().take(40).collect::<String>(),
                            VIOLATION_TYPES.join(", ")
                        ),
                    )
                })?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            Some(out)
        }
    };
    if let Some(no) = &new.certificate_no {
        check_text("certificate_no", no, false)?;
    }
    if let Some(d) = &new.certified_until {
        parse_date(d.trim()).map_err(|m| invalid("certified_until", m))?;
    }
    Ok(rules)
}

fn rules_text(rules: &[ViolationType]) -> String {
    rules
        .iter()
        .map(crate::ingest::enum_text)
        .collect::<Vec<_>>()
        .join(",")
}

const COLUMNS: &str = "id, device_id, camera_id, site, description, latitude, longitude, \
     enabled_rules, certificate_no, certified_until, status, created_at, retired_at, \
     retired_reason";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Camera, sqlx::Error> {
    let rules: Option<String> = row.try_get(7)?;
    Ok(Camera {
        id: row.try_get(0)?,
        device_id: row.try_get(1)?,
        camera_id: row.try_get(2)?,
        site: row.try_get(3)?,
        description: row.try_get(4)?,
        latitude: row.try_get(5)?,
        longitude: row.try_get(6)?,
        enabled_rules: rules.map(|r| {
            r.split(',')
                .filter_map(|t| parse_violation_type(t.trim()))
                .collect()
        }),
        certificate_no: row.try_get(8)?,
        certified_until: row.try_get(9)?,
        status: row.try_get(10)?,
        created_at: row.try_get(11)?,
        retired_at: row.try_get(12)?,
        retired_reason: row.try_get(13)?,
    })
}

/// Enrols a camera of an enrolled, not revoked device.
pub async fn enrol(db: &Db, new: &NewCamera) -> Result<Camera, CameraError> {
    let rules = validate(new)?;
    let device = crate::devices::get(db, &new.device_id)
        .await
        .map_err(|e| match e {
            crate::devices::DeviceError::Db(e) => CameraError::Db(e),
            other => CameraError::UnknownDevice(other.to_string()),
        })?
        .ok_or_else(|| {
            CameraError::UnknownDevice(format!("device `{}` is not enrolled", new.device_id))
        })?;
    if device.is_revoked() {
        return Err(CameraError::UnknownDevice(format!(
            "device `{}` is revoked",
            device.device_id
        )));
    }
    if let Some(site) = &new.site
        && *site != device.site
    {
        return Err(invalid(
            "site",
            format!(
                "`{site}` is not the site `{}` device `{}` is enrolled at",
                device.site, device.device_id
            ),
        ));
    }
    let camera = Camera {
        id: uuid::Uuid::new_v4().to_string(),
        device_id: device.device_id.clone(),
        camera_id: new.camera_id.clone(),
        site: device.site.clone(),
        description: new.description.trim().to_owned(),
        latitude: new.latitude,
        longitude: new.longitude,
        enabled_rules: rules,
        certificate_no: new
            .certificate_no
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        certified_until: new.certified_until.as_deref().map(|d| d.trim().to_owned()),
        status: "active".into(),
        created_at: now_ms(),
        retired_at: None,
        retired_reason: None,
    };
    let q = sqlx::query(
        "INSERT INTO cameras (id, device_id, camera_id, site, description, latitude, longitude, \
         enabled_rules, certificate_no, certified_until, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(&camera.id)
    .bind(&camera.device_id)
    .bind(&camera.camera_id)
    .bind(&camera.site)
    .bind(&camera.description);
    let q = bind_opt_f64(q, camera.latitude);
    let done = bind_opt_f64(q, camera.longitude)
        .bind(camera.enabled_rules.as_deref().map(rules_text))
        .bind(camera.certificate_no.as_deref())
        .bind(camera.certified_until.as_deref())
        .bind(&camera.status)
        .bind(camera.created_at)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(CameraError::Exists(
            camera.device_id.clone(),
            camera.camera_id.clone(),
        ));
    }
    tracing::info!(
        device_id = camera.device_id,
        camera_id = camera.camera_id,
        "camera enrolled"
    );
    Ok(camera)
}

/// Every enrolment of one camera, oldest first.
async fn history(db: &Db, device_id: &str, camera_id: &str) -> Result<Vec<Camera>, CameraError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM cameras WHERE device_id = $1 AND camera_id = $2 \
         ORDER BY created_at, id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(device_id)
        .bind(camera_id)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The enrolment that speaks for a camera: the active one, else the one
/// retired last.
fn current(rows: impl IntoIterator<Item = Camera>) -> Option<Camera> {
    rows.into_iter().max_by_key(|c| match c.retired_at {
        None => (1, i64::MAX, c.created_at),
        Some(r) => (0, r, c.created_at),
    })
}

/// Retires a camera: its events after now are quarantined (events it made
/// before stay accepted, also when they arrive later). Retiring a retired
/// camera answers it unchanged.
pub async fn retire(
    db: &Db,
    device_id: &str,
    camera_id: &str,
    reason: &str,
) -> Result<Camera, CameraError> {
    check_text("reason", reason, false)?;
    let done = sqlx::query(
        "UPDATE cameras SET status = 'retired', retired_at = $1, retired_reason = $2 \
         WHERE device_id = $3 AND camera_id = $4 AND retired_at IS NULL",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(device_id)
    .bind(camera_id)
    .execute(db.pool())
    .await?;
    let camera = current(history(db, device_id, camera_id).await?)
        .ok_or_else(|| CameraError::NotFound(device_id.to_owned(), camera_id.to_owned()))?;
    if done.rows_affected() > 0 {
        tracing::warn!(device_id, camera_id, reason, "camera retired");
    }
    Ok(camera)
}

/// Every enrolment (active and retired), by device and camera, with the
/// latest heartbeat's view of it.
pub async fn list(db: &Db) -> Result<Vec<CameraView>, CameraError> {
    let sql =
        format!("SELECT {COLUMNS} FROM cameras ORDER BY device_id, camera_id, created_at, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    let cameras: Vec<Camera> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    // device -> (received_at, camera id -> state)
    let mut beats: HashMap<String, (i64, HashMap<String, String>)> = HashMap::new();
    for hb in crate::heartbeats::latest(db).await? {
        let json: Value = serde_json::from_str(&hb.signed_json).unwrap_or(Value::Null);
        let states = json["payload"]["cameras"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| {
                        Some((
                            c["camera_id"].as_str()?.to_owned(),
                            c["state"].as_str().unwrap_or("").to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        beats.insert(hb.device_id, (hb.received_at, states));
    }
    Ok(cameras
        .into_iter()
        .map(|camera| {
            let beat = beats.get(&camera.device_id);
            let state = beat.and_then(|(_, s)| s.get(&camera.camera_id).cloned());
            CameraView {
                heartbeat_received_at: beat.map(|(at, _)| *at),
                missing_from_heartbeat: beat.is_some() && state.is_none() && !camera.is_retired(),
                heartbeat_state: state,
                camera,
            }
        })
        .collect())
}

/// The camera that speaks for each `(device_id, camera_id)` of the given
/// devices (see [`current`]), for the verify step.
pub async fn for_devices(
    db: &Db,
    device_ids: &HashSet<String>,
) -> Result<HashMap<(String, String), Camera>, CameraError> {
    let mut out: HashMap<(String, String), Camera> = HashMap::new();
    if device_ids.is_empty() {
        return Ok(out);
    }
    let ids: Vec<&String> = device_ids.iter().collect();
    for part in ids.chunks(500) {
        let marks = (1..=part.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {COLUMNS} FROM cameras WHERE device_id IN ({marks})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in part {
            q = q.bind(id.as_str());
        }
        for row in q.fetch_all(db.pool()).await? {
            let c = from_row(&row)?;
            let key = (c.device_id.clone(), c.camera_id.clone());
            let keep = match out.remove(&key) {
                Some(old) => current([old, c]),
                None => Some(c),
            };
            if let Some(k) = keep {
                out.insert(key, k);
            }
        }
    }
    Ok(out)
}

/// Why an event's camera does not allow it: quarantine reason code and
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraRefusal {
    /// Stable reason code (`unknown_camera`, `retired_camera`,
    /// `rule_not_enabled`, `certification_missing`, `certification_expired`).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

/// Checks a verified event against the registry entry of its camera
/// (`None`: not enrolled). Pure.
pub fn check(
    camera: Option<&Camera>,
    event: &ViolationEvent,
    require_known_camera: bool,
) -> Result<(), CameraRefusal> {
    let refuse = |code, message| Err(CameraRefusal { code, message });
    let Some(camera) = camera else {
        if require_known_camera {
            return refuse(
                "unknown_camera",
                format!(
                    "camera `{}` is not enrolled for device `{}`",
                    event.camera_id, event.device_id
                ),
            );
        }
        return Ok(());
    };
    let event_ms =
        i64::try_from(event.event_time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if let Some(retired) = camera.retired_at
        && event_ms >= retired
    {
        return refuse(
            "retired_camera",
            format!(
                "camera `{}` of device `{}` was retired at {} ({}), before the event time {}",
                camera.camera_id,
                camera.device_id,
                crate::notices::text::rfc3339(retired),
                camera.retired_reason.as_deref().unwrap_or(""),
                event.event_time
            ),
        );
    }
    if let Some(rules) = &camera.enabled_rules
        && !rules.contains(&event.violation_type)
    {
        return refuse(
            "rule_not_enabled",
            format!(
                "camera `{}` of device `{}` is not approved for {} (enabled_rules: {})",
                camera.camera_id,
                camera.device_id,
                crate::ingest::enum_text(&event.violation_type),
                rules_text(rules)
            ),
        );
    }
    if event.violation_type == ViolationType::Speeding {
        let day = event.event_time.to_offset(VIETNAM).date();
        match camera.certified_until_date() {
            None => {
                return refuse(
                    "certification_missing",
                    format!(
                        "speeding from camera `{}` of device `{}`, which has no inspection \
                         certificate (certified_until) on record",
                        camera.camera_id, camera.device_id
                    ),
                );
            }
            Some(until) if day > until => {
                return refuse(
                    "certification_expired",
                    format!(
                        "speeding on {day} from camera `{}` of device `{}`, whose inspection \
                         certificate {} was valid until {until}",
                        camera.camera_id,
                        camera.device_id,
                        camera.certificate_no.as_deref().unwrap_or("(no number)")
                    ),
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera() -> Camera {
        Camera {
            id: "x".into(),
            device_id: "edge-1".into(),
            camera_id: "cam-north".into(),
            site: "site-1".into(),
            description: "Xuân Thủy × Cầu Giấy, hướng Bắc".into(),
            latitude: Some(21.036),
            longitude: Some(105.79),
            enabled_rules: None,
            certificate_no: Some("KĐ-123".into()),
            certified_until: Some("2026-06-30".into()),
            status: "active".into(),
            created_at: 0,
            retired_at: None,
            retired_reason: None,
        }
    }

    fn event(t: ViolationType, at: &str) -> ViolationEvent {
        let mut e: ViolationEvent = serde_json::from_value(serde_json::json!({
            "schema_version": "1.0", "event_id": uuid::Uuid::new_v4(), "device_id": "edge-1",
            "camera_id": "cam-north", "site": "site-1", "event_time": at,
            "clock": {"status": "synced"}, "violation_type": "red_light",
            "vehicle_class": "car",
            "plate": {"readable": false, "colour": "unknown"},
            "track": {"track_id": 1, "first_seen": at, "last_seen": at, "frame_count": 1,
                      "points": []},
            "evidence": [], "software_version": "t"
        }))
        .unwrap();
        e.violation_type = t;
        e
    }

    #[test]
    fn every_violation_type_is_listed_and_parses() {
        for t in VIOLATION_TYPES {
            let v = parse_violation_type(t).unwrap();
            assert_eq!(crate::ingest::enum_text(&v), *t);
        }
        assert!(parse_violation_type("jaywalking").is_none());
    }

    #[test]
    fn unknown_camera_only_when_required() {
        let e = event(ViolationType::RedLight, "2026-01-01T10:00:00+07:00");
        assert_eq!(check(None, &e, true).unwrap_err().code, "unknown_camera");
        assert!(check(None, &e, false).is_ok());
        assert!(check(Some(&camera()), &e, true).is_ok());
    }

    #[test]
    fn retired_refuses_events_after_retirement_only() {
        let mut c = camera();
        let e = event(ViolationType::RedLight, "2026-01-01T10:00:00+07:00");
        let at = i64::try_from(e.event_time.unix_timestamp_nanos() / 1_000_000).unwrap();
        c.retired_at = Some(at + 1);
        assert!(check(Some(&c), &e, true).is_ok(), "made before retirement");
        c.retired_at = Some(at);
        assert_eq!(
            check(Some(&c), &e, false).unwrap_err().code,
            "retired_camera"
        );
    }

    #[test]
    fn rules_and_speed_certification() {
        let mut c = camera();
        c.enabled_rules = Some(vec![ViolationType::RedLight, ViolationType::Speeding]);
        let wrong = event(ViolationType::WrongWay, "2026-01-01T10:00:00+07:00");
        let r = check(Some(&c), &wrong, true).unwrap_err();
        assert_eq!(r.code, "rule_not_enabled");
        assert!(r.message.contains("wrong_way"), "{}", r.message);
        // The last valid day counts in Vietnam time: 23:30 on 30 June in
        // Hanoi is still in force, 00:30 on 1 July is not (even though it is
        // 30 June in UTC).
        let last = event(ViolationType::Speeding, "2026-06-30T23:30:00+07:00");
        assert!(check(Some(&c), &last, true).is_ok());
        let after = event(ViolationType::Speeding, "2026-06-30T17:30:00Z");
        assert_eq!(
            check(Some(&c), &after, true).unwrap_err().code,
            "certification_expired"
        );
        c.certified_until = None;
        assert_eq!(
            check(Some(&c), &last, true).unwrap_err().code,
            "certification_missing"
        );
        // Other types do not need the certificate.
        let red = event(ViolationType::RedLight, "2030-01-01T10:00:00+07:00");
        assert!(check(Some(&c), &red, true).is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let good = NewCamera {
            device_id: "edge-1".into(),
            camera_id: "cam-north".into(),
            description: "Ngã tư".into(),
            latitude: Some(21.0),
            longitude: Some(105.8),
            enabled_rules: Some(vec!["red_light".into(), "speeding".into()]),
            certified_until: Some("2026-12-31".into()),
            ..Default::default()
        };
        assert!(validate(&good).is_ok());
        let field = |n: NewCamera| match validate(&n).unwrap_err() {
            CameraError::Invalid { field, .. } | CameraError::InvalidId { field, .. } => field,
            e => panic!("{e}"),
        };
        let with = |f: fn(&mut NewCamera)| {
            let mut n = good.clone();
            f(&mut n);
            n
        };
        assert_eq!(field(with(|n| n.camera_id = "cam/1".into())), "camera_id");
        assert_eq!(field(with(|n| n.device_id = String::new())), "device_id");
        assert_eq!(field(with(|n| n.latitude = Some(91.0))), "latitude");
        assert_eq!(field(with(|n| n.longitude = Some(-181.0))), "longitude");
        assert_eq!(field(with(|n| n.longitude = None)), "longitude");
        assert_eq!(field(with(|n| n.latitude = Some(f64::NAN))), "latitude");
        assert_eq!(field(with(|n| n.description = " ".into())), "description");
        assert_eq!(
            field(with(
                |n| n.enabled_rules = Some(vec!["red_light".into(), "x".into()])
            )),
            "enabled_rules[1]"
        );
        assert_eq!(
            field(with(|n| n.certified_until = Some("31/12/2026".into()))),
            "certified_until"
        );
        let json = |v: Value| match NewCamera::from_json(&v).unwrap_err() {
            CameraError::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(
            json(serde_json::json!({"device_id": "d", "camera_id": "c",
                "description": "x", "latitude": "21"})),
            "latitude"
        );
        assert_eq!(
            json(serde_json::json!({"camera_id": "c", "description": "x"})),
            "device_id"
        );
        assert_eq!(
            json(serde_json::json!({"device_id": "d", "camera_id": "c",
                "description": "x", "colour": 1})),
            "colour"
        );
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
