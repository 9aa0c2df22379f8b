//! Enrolling a camera: the admin API's JSON body ([`NewCamera::from_json`]),
//! the checks of every field that need no database (ids, description,
//! position, approved violation types, certificate), and [`enrol`], which
//! checks the device and writes the new row.
//!
//! Part of [`crate::cameras`] (the registry); the admin API
//! (`POST /api/v1/cameras`) and the CLI (`ingest-server camera add`) call
//! it through the re-exports there. Retiring and reading rows back are in
//! `cameras/history.rs`.

use protocol::ViolationType;
use serde_json::{Map, Value};

use super::{
    Camera, CameraError, VIOLATION_TYPES, bind_opt_f64, check_text, invalid, parse_date,
    parse_violation_type, rules_text,
};
use crate::db::{Db, now_ms};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
