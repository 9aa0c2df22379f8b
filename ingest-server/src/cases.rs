//! Cases: a stored violation as the admin API and the tests see it — its
//! fine, owner resolution, where it is in the review workflow and how much
//! of its evidence is stored — and the paged list of them. The workflow
//! itself (who may move a case where) is [`crate::workflow`] and
//! [`crate::review`]; this module only reads.

use sqlx::Row;

use crate::db::{Db, DbError};
use crate::notices::text::rfc3339;
use crate::workflow::CaseState;

/// A stored case, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSummary {
    /// Event id.
    pub event_id: String,
    /// Device.
    pub device_id: String,
    /// Camera of the device.
    pub camera_id: String,
    /// When the violation happened, as the device signed it (RFC 3339).
    pub event_time: String,
    /// When the server stored it (RFC 3339, Vietnam time).
    pub received_at: String,
    /// Violation type.
    pub violation_type: String,
    /// Canonical plate text, if read.
    pub plate_text: Option<String>,
    /// The plate a reviewer corrected it to, if any.
    pub reviewed_plate: Option<String>,
    /// Workflow state (`new`, `in_review`, `accepted`, `confirmed`, ...).
    pub state: String,
    /// When the state last changed (RFC 3339, Vietnam time), if it ever did.
    pub state_changed_at: Option<String>,
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
    /// When its evidence was deleted under the retention policy (RFC 3339,
    /// Vietnam time), if it was.
    pub evidence_purged_at: Option<String>,
}

const COLUMNS: &str = "e.event_id, e.device_id, e.camera_id, e.event_time, e.received_at, \
     e.violation_type, e.plate_text, e.reviewed_plate, e.state, e.state_changed_at, \
     e.fine_status, e.fine_min_vnd, e.fine_max_vnd, e.licence_points, e.owner_status, \
     e.owner_id, \
     (SELECT COUNT(*) FROM evidence v WHERE v.event_id = e.event_id AND v.stored = 1), \
     (SELECT COUNT(*) FROM evidence v WHERE v.event_id = e.event_id), \
     e.evidence_purged_at";

fn summary(r: &sqlx::any::AnyRow) -> Result<CaseSummary, DbError> {
    let received: i64 = r.try_get(4)?;
    let changed: Option<i64> = r.try_get(9)?;
    Ok(CaseSummary {
        event_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        camera_id: r.try_get(2)?,
        event_time: r.try_get(3)?,
        received_at: rfc3339(received),
        violation_type: r.try_get(5)?,
        plate_text: r.try_get(6)?,
        reviewed_plate: r.try_get(7)?,
        state: r.try_get(8)?,
        state_changed_at: changed.map(rfc3339),
        fine_status: r.try_get(10)?,
        fine_min_vnd: r.try_get(11)?,
        fine_max_vnd: r.try_get(12)?,
        licence_points: r.try_get(13)?,
        owner_status: r.try_get(14)?,
        owner_id: r.try_get(15)?,
        evidence_stored: r.try_get(16)?,
        evidence_total: r.try_get(17)?,
        evidence_purged_at: r.try_get::<Option<i64>, _>(18)?.map(rfc3339),
    })
}

/// One case by event id.
pub async fn case(db: &Db, event_id: &str) -> Result<Option<CaseSummary>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM events e WHERE e.event_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(event_id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(summary).transpose()
}

/// Most cases one page may hold.
pub const MAX_PAGE: u32 = 500;

/// Which cases to list. Pages follow the order the server stored cases in
/// (`received_at`, then event id), so a client that keeps passing
/// [`CasePage::next`] back as `after` sees every case once, even while new
/// ones arrive.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only cases in this workflow state.
    pub state: Option<CaseState>,
    /// Only cases from this device.
    pub device_id: Option<String>,
    /// Only cases stored after this cursor (from a previous page).
    pub after: Option<Cursor>,
    /// Page size, 1..=[`MAX_PAGE`].
    pub limit: u32,
}

/// A position in the stored order: `received_at` (ms) and event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    received_at_ms: i64,
    event_id: String,
}

impl Cursor {
    /// Parses the `ms.event_id` form that [`Cursor::to_string`] writes.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (ms, id) = s.split_once('.')?;
        let received_at_ms = ms.parse().ok()?;
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        ok.then(|| Cursor {
            received_at_ms,
            event_id: id.to_string(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.received_at_ms, self.event_id)
    }
}

/// One page of cases.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CasePage {
    /// The cases, in stored order.
    pub cases: Vec<CaseSummary>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A page of cases matching `filter`.
pub async fn list(db: &Db, filter: &CaseFilter) -> Result<CasePage, DbError> {
    let limit = filter.limit.clamp(1, MAX_PAGE);
    let mut conds: Vec<String> = Vec::new();
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if filter.state.is_some() {
        conds.push(format!("e.state = {}", param()));
    }
    if filter.device_id.is_some() {
        conds.push(format!("e.device_id = {}", param()));
    }
    if filter.after.is_some() {
        let (a, b, c) = (param(), param(), param());
        conds.push(format!(
            "(e.received_at > {a} OR (e.received_at = {b} AND e.event_id > {c}))"
        ));
    }
    let limit_param = param();
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events e {where_} \
         ORDER BY e.received_at, e.event_id LIMIT {limit_param}"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(s) = filter.state {
        q = q.bind(s.as_str());
    }
    if let Some(d) = &filter.device_id {
        q = q.bind(d.clone());
    }
    if let Some(c) = &filter.after {
        q = q
            .bind(c.received_at_ms)
            .bind(c.received_at_ms)
            .bind(c.event_id.clone());
    }
    // One more than asked: tells whether there is a next page.
    q = q.bind(i64::from(limit) + 1);
    let rows = q.fetch_all(db.pool()).await?;
    let mut cases = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows.iter().take(limit as usize) {
        cases.push(summary(r)?);
        last = Some(Cursor {
            received_at_ms: r.try_get(4)?,
            event_id: r.try_get(0)?,
        });
    }
    let next = (rows.len() > limit as usize)
        .then_some(last)
        .flatten()
        .map(|c| c.to_string());
    Ok(CasePage { cases, next })
}

/// Number of stored cases (for tests and metrics).
pub async fn case_count(db: &Db) -> Result<i64, DbError> {
    Ok(sqlx::query("SELECT COUNT(*) FROM events")
        .fetch_one(db.pool())
        .await?
        .try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursor_round_trips_and_refuses_junk() {
        let c = Cursor::parse("1700000000000.6f1c2d3e-0000-4000-8000-000000000001").unwrap();
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in ["", "12", ".abc", "x.abc", "12.", "12.a b", "12.a'--"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
