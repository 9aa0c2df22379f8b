//! What the evidence package reads from the database about one case: the
//! events row (machine read, review outcome, fine, state), its evidence
//! rows, its state transitions, the device that signed it, the display
//! names of the people who acted on it, and what became of each file the
//! signed manifest names ([`FileState`]: stored, deleted under retention,
//! never received). Plain reads, no personal data of the vehicle's owner
//! (the owner id is not even read).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use crate::db::{Db, DbError};
use crate::devices::{self, Device, DeviceError};

/// The case as stored.
#[derive(Debug, Clone)]
pub struct CaseRecord {
    /// Event id.
    pub event_id: String,
    /// Device.
    pub device_id: String,
    /// Camera.
    pub camera_id: String,
    /// Site.
    pub site: String,
    /// RFC 3339 as the device sent it.
    pub event_time: String,
    /// Machine type.
    pub violation_type: String,
    /// Corrected type.
    pub reviewed_type: Option<String>,
    /// Vehicle class.
    pub vehicle_class: String,
    /// Machine read (canonical).
    pub plate_text: Option<String>,
    /// Plate colour.
    pub plate_colour: String,
    /// Read confidence.
    pub plate_confidence: Option<f64>,
    /// Corrected plate (canonical).
    pub reviewed_plate: Option<String>,
    /// Fine status.
    pub fine_status: String,
    /// Schedule id.
    pub fine_schedule: Option<String>,
    /// Article.
    pub fine_ref: Option<String>,
    /// VND.
    pub fine_min_vnd: Option<i64>,
    /// VND.
    pub fine_max_vnd: Option<i64>,
    /// Points.
    pub licence_points: Option<i64>,
    /// VND fixed when police confirmed the case: what the notice and the
    /// payment charge. `None` before confirmation.
    pub fine_amount_vnd: Option<i64>,
    /// Workflow state.
    pub state: String,
    /// User id.
    pub accepted_by: Option<String>,
    /// User id.
    pub confirmed_by: Option<String>,
    /// Rejection code.
    pub reject_code: Option<String>,
    /// The signed event, exactly as stored.
    pub signed_json: String,
    /// When the server stored it (Unix ms).
    pub received_at: i64,
    /// `mqtt` or `http`.
    pub source: String,
}

/// One evidence row.
#[derive(Debug, Clone)]
pub struct EvidenceRow {
    /// File name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Media type.
    pub media_type: String,
    /// Bytes.
    pub size_bytes: i64,
    /// SHA-256.
    pub sha256: String,
    /// Whether the file is in the store.
    pub stored: bool,
    /// When the server received it (Unix ms); kept when retention deletes
    /// the file (which only clears `stored`).
    pub stored_at: Option<i64>,
}

/// What became of a file the signed manifest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// In the evidence store (and so in `originals/`).
    Stored,
    /// Received at `received_at`, deleted under the retention policy at
    /// `purged_at` with the rest of the case's evidence.
    Purged {
        /// When the server received it (Unix ms).
        received_at: i64,
        /// When the case's evidence was deleted (Unix ms).
        purged_at: i64,
    },
    /// Never received by the server (a clip that did not come, a still the
    /// device could no longer read).
    NotReceived,
}

/// One row of `case_transitions`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transition {
    /// Row id.
    pub id: String,
    /// Unix ms.
    pub at: i64,
    /// User id.
    pub actor: String,
    /// Role.
    pub role: String,
    /// Action.
    pub action: String,
    /// From.
    pub from_state: String,
    /// To.
    pub to_state: String,
    /// Reason given.
    pub reason: Option<String>,
    /// JSON particulars.
    pub detail: Option<String>,
}

/// Everything about one case.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The case.
    pub case: CaseRecord,
    /// Its evidence rows, by name.
    pub evidence: Vec<EvidenceRow>,
    /// Its transitions, oldest first.
    pub transitions: Vec<Transition>,
    /// The device, if enrolled.
    pub device: Option<Device>,
    /// User id → (display name, role) for everyone in the transitions.
    pub people: BTreeMap<String, (String, String)>,
    /// The manifest's files read back from the store by their signed hash
    /// (filled by the build, whatever the rows' `stored` flags say).
    pub present: BTreeSet<String>,
    /// When retention recorded the purge of the case's evidence in the
    /// audit log (`evidence.purge`; filled by the build).
    pub purge_recorded_at: Option<i64>,
}

impl Loaded {
    /// What became of the manifest's file `name`: in the store (read by
    /// its signed hash), deleted under retention (only where retention
    /// recorded the purge in the audit log, for a file the server
    /// received), else never received. The rows' `stored` flag and the
    /// case's `evidence_purged_at` decide nothing here: a flag turned off
    /// does not make a file "deleted" or "missing".
    pub fn file_state(&self, name: &str) -> FileState {
        if self.present.contains(name) {
            return FileState::Stored;
        }
        let received = self
            .evidence
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.stored_at);
        match (self.purge_recorded_at, received) {
            (Some(purged_at), Some(received_at)) => FileState::Purged {
                received_at,
                purged_at,
            },
            _ => FileState::NotReceived,
        }
    }
}

/// Reads the case `event_id`; `None` if there is none.
pub async fn load(db: &Db, event_id: &str) -> Result<Option<Loaded>, DbError> {
    let row = sqlx::query(
        "SELECT event_id, device_id, camera_id, site, event_time, violation_type, reviewed_type, \
         vehicle_class, plate_text, plate_colour, plate_confidence, reviewed_plate, \
         fine_status, fine_schedule, fine_ref, fine_min_vnd, fine_max_vnd, licence_points, state, \
         accepted_by, confirmed_by, reject_code, signed_json, received_at, source, fine_amount_vnd \
         FROM events WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let case = CaseRecord {
        event_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        camera_id: r.try_get(2)?,
        site: r.try_get(3)?,
        event_time: r.try_get(4)?,
        violation_type: r.try_get(5)?,
        reviewed_type: r.try_get(6)?,
        vehicle_class: r.try_get(7)?,
        plate_text: r.try_get(8)?,
        plate_colour: r.try_get(9)?,
        plate_confidence: r.try_get(10)?,
        reviewed_plate: r.try_get(11)?,
        fine_status: r.try_get(12)?,
        fine_schedule: r.try_get(13)?,
        fine_ref: r.try_get(14)?,
        fine_min_vnd: r.try_get(15)?,
        fine_max_vnd: r.try_get(16)?,
        licence_points: r.try_get(17)?,
        state: r.try_get(18)?,
        accepted_by: r.try_get(19)?,
        confirmed_by: r.try_get(20)?,
        reject_code: r.try_get(21)?,
        signed_json: r.try_get(22)?,
        received_at: r.try_get(23)?,
        source: r.try_get(24)?,
        fine_amount_vnd: r.try_get(25)?,
    };
    let evidence = sqlx::query(
        "SELECT name, role, media_type, size_bytes, sha256, stored, stored_at FROM evidence \
         WHERE event_id = $1 ORDER BY name",
    )
    .bind(event_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(EvidenceRow {
            name: r.try_get(0)?,
            role: r.try_get(1)?,
            media_type: r.try_get(2)?,
            size_bytes: r.try_get(3)?,
            sha256: r.try_get(4)?,
            stored: r.try_get::<i64, _>(5)? != 0,
            stored_at: r.try_get(6)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let transitions = sqlx::query(
        "SELECT id, at, actor, role, action, from_state, to_state, reason, detail \
         FROM case_transitions WHERE event_id = $1 ORDER BY at, id",
    )
    .bind(event_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(Transition {
            id: r.try_get(0)?,
            at: r.try_get(1)?,
            actor: r.try_get(2)?,
            role: r.try_get(3)?,
            action: r.try_get(4)?,
            from_state: r.try_get(5)?,
            to_state: r.try_get(6)?,
            reason: r.try_get(7)?,
            detail: r.try_get(8)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let device = match devices::get(db, &case.device_id).await {
        Ok(d) => d,
        Err(DeviceError::Db(e)) => return Err(e),
        Err(_) => None,
    };
    let mut people = BTreeMap::new();
    let ids = transitions
        .iter()
        .map(|t| t.actor.clone())
        .chain(case.accepted_by.clone())
        .chain(case.confirmed_by.clone());
    for id in ids {
        if people.contains_key(&id) {
            continue;
        }
        let row = sqlx::query("SELECT display_name, role FROM users WHERE user_id = $1")
            .bind(&id)
            .fetch_optional(db.pool())
            .await?;
        if let Some(r) = row {
            people.insert(id, (r.try_get(0)?, r.try_get(1)?));
        }
    }
    Ok(Some(Loaded {
        case,
        evidence,
        transitions,
        device,
        people,
        present: BTreeSet::new(),
        purge_recorded_at: None,
    }))
}
