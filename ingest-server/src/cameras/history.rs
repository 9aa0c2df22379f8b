//! A camera's rows over its time in service: reading them back, which
//! enrolment speaks for a camera (the active one, else the one retired
//! last), retiring ([`retire`]), the admin listing with the latest
//! heartbeat's view ([`list`]), and the lookup of a batch's cameras for the
//! verify step ([`for_devices`]).
//!
//! Part of [`crate::cameras`], which re-exports the public functions; rows
//! are written by `cameras/enrolment.rs`.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;

use super::{Camera, CameraError, CameraView, check_text, parse_violation_type};
use crate::db::{Db, now_ms};

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
/// camera answers it unchanged; the flag says whether this call retired it
/// (callers audit only real changes).
pub async fn retire(
    db: &Db,
    device_id: &str,
    camera_id: &str,
    reason: &str,
) -> Result<(Camera, bool), CameraError> {
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
    let changed = done.rows_affected() > 0;
    if changed {
        tracing::warn!(device_id, camera_id, reason, "camera retired");
    }
    Ok((camera, changed))
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
    let mut conn = db.pool().acquire().await?;
    for_devices_on(&mut conn, device_ids).await
}

/// [`for_devices`] on a connection the caller holds — inside its own
/// transaction, so a transaction that already holds the write lock does
/// not wait for a second pooled connection (on SQLite the pool is small,
/// and the others may all be waiting for that very lock).
pub async fn for_devices_on(
    conn: &mut sqlx::AnyConnection,
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
        for row in q.fetch_all(&mut *conn).await? {
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
