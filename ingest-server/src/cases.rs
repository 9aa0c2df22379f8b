//! Cases: a stored violation as the API and the tests see it (its fine,
//! owner resolution and how much of its evidence is stored). The review
//! console will grow its workflow (accept, reject, confirm) here.

use sqlx::Row;

use crate::db::{Db, DbError};

/// A stored case, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSummary {
    /// Event id.
    pub event_id: String,
    /// Device.
    pub device_id: String,
    /// Violation type.
    pub violation_type: String,
    /// Canonical plate text, if read.
    pub plate_text: Option<String>,
    /// Fine status (`priced`, `no_fine`, ...).
    pub fine_status: String,
    /// Lowest fine, VND.
    pub fine_min_vnd: Option<i64>,
    /// Highest fine, VND.
    pub fine_max_vnd: Option<i64>,
    /// Licence points.
    pub licence_points: Option<i64>,
    /// Owner resolution (`pending`, `resolved`, `unresolved`, `error`).
    pub owner_status: String,
    /// Resolved owner id.
    pub owner_id: Option<String>,
    /// Evidence files stored / listed.
    pub evidence_stored: i64,
    /// Evidence files listed in the manifest.
    pub evidence_total: i64,
}

/// One case by event id.
pub async fn case(db: &Db, event_id: &str) -> Result<Option<CaseSummary>, DbError> {
    let row = sqlx::query(
        "SELECT e.event_id, e.device_id, e.violation_type, e.plate_text, e.fine_status, \
         e.fine_min_vnd, e.fine_max_vnd, e.licence_points, e.owner_status, e.owner_id, \
         (SELECT COUNT(*) FROM evidence v WHERE v.event_id = e.event_id AND v.stored = 1), \
         (SELECT COUNT(*) FROM evidence v WHERE v.event_id = e.event_id) \
         FROM events e WHERE e.event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(CaseSummary {
        event_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        violation_type: r.try_get(2)?,
        plate_text: r.try_get(3)?,
        fine_status: r.try_get(4)?,
        fine_min_vnd: r.try_get(5)?,
        fine_max_vnd: r.try_get(6)?,
        licence_points: r.try_get(7)?,
        owner_status: r.try_get(8)?,
        owner_id: r.try_get(9)?,
        evidence_stored: r.try_get(10)?,
        evidence_total: r.try_get(11)?,
    }))
}

/// Number of stored cases (for tests and metrics).
pub async fn case_count(db: &Db) -> Result<i64, DbError> {
    Ok(sqlx::query("SELECT COUNT(*) FROM events")
        .fetch_one(db.pool())
        .await?
        .try_get(0)?)
}
