//! Whether a case's database row still says what its device signed.
//!
//! Every case row carries `signed_json`, the event exactly as the device
//! signed it and as its signature was verified on arrival; the columns
//! beside it (`plate_text`, `event_time_ms`, `violation_type`, camera,
//! site, ...) and the `evidence` rows are copies made for querying, and a
//! copy in the database can be edited by anyone with write access to it,
//! without touching the signature. Whatever is shown to the police, sent to
//! the owner or packaged for a court must be the signed record: this module
//! compares the copies with it ([`differences`], [`manifest_file`]) and
//! names every difference, so the console can raise an alarm, a
//! confirmation can be refused and a package can refuse to be built, and
//! evidence is served by the hash the device signed, not by a column.
//! `signed_json` itself is a column too: its signature is checked again,
//! under the device's enrolled key, before it is trusted as the reference
//! (an edit of both a copy and the envelope is then a difference as well).
//! Operators' corrections live in their own columns (`reviewed_plate`,
//! `reviewed_type`) and are not compared: they are meant to differ.

use protocol::{ClockSyncStatus, EvidenceItem, ViolationEvent};
use sqlx::Row;

use crate::ingest::enum_text;

/// One machine column that no longer says what the signed event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The column (`plate_text`, `event_time_ms`, ...).
    pub field: &'static str,
    /// What the column says.
    pub column: String,
    /// What the signed event says.
    pub signed: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the database says {:?}, the signed event says {:?}",
            self.field, self.column, self.signed
        )
    }
}

/// The machine columns of a case row (what ingest copied out of the signed
/// event), with the signed event itself.
#[derive(Debug, Clone)]
pub struct MachineColumns {
    /// `events.event_id`.
    pub event_id: String,
    /// `events.device_id`.
    pub device_id: String,
    /// `events.camera_id`.
    pub camera_id: String,
    /// `events.site`.
    pub site: String,
    /// `events.event_time_ms`.
    pub event_time_ms: i64,
    /// `events.violation_type` (the machine's, not the reviewer's).
    pub violation_type: String,
    /// `events.vehicle_class`.
    pub vehicle_class: String,
    /// `events.plate_readable`.
    pub plate_readable: bool,
    /// `events.plate_text` (the machine read).
    pub plate_text: Option<String>,
    /// `events.plate_colour`.
    pub plate_colour: String,
    /// `events.speed_kmh` (speeding events).
    pub speed_kmh: Option<f64>,
    /// `events.speed_limit_kmh` (speeding events).
    pub speed_limit_kmh: Option<i64>,
    /// `events.signed_json`.
    pub signed_json: String,
    /// The enrolled public key (hex) of the row's device, from `devices`
    /// (`None`: no such device).
    pub device_key: Option<String>,
}

/// Reads the machine columns of case `event_id` (`None`: no such case),
/// on `conn` (the pool, or a transaction's connection).
pub async fn load<'e, E>(conn: E, event_id: &str) -> Result<Option<MachineColumns>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let Some(r) = sqlx::query(
        "SELECT e.event_id, e.device_id, e.camera_id, e.site, e.event_time_ms, \
         e.violation_type, e.vehicle_class, e.plate_readable, e.plate_text, e.plate_colour, \
         e.signed_json, e.speed_kmh, e.speed_limit_kmh, d.public_key FROM events e \
         LEFT JOIN devices d ON d.device_id = e.device_id WHERE e.event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(MachineColumns {
        event_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        camera_id: r.try_get(2)?,
        site: r.try_get(3)?,
        event_time_ms: r.try_get(4)?,
        violation_type: r.try_get(5)?,
        vehicle_class: r.try_get(6)?,
        plate_readable: r.try_get::<i64, _>(7)? != 0,
        plate_text: r.try_get(8)?,
        plate_colour: r.try_get(9)?,
        signed_json: r.try_get(10)?,
        speed_kmh: r.try_get(11)?,
        speed_limit_kmh: r.try_get(12)?,
        device_key: r.try_get(13)?,
    }))
}

/// The signed event of a stored case (its signature was verified when it
/// was stored).
pub fn signed_event(signed_json: &str) -> Result<ViolationEvent, String> {
    crate::review::stored_event(signed_json).map_err(|e| e.to_string())
}

/// Whether `signed_json` is still what the device signed: its Ed25519
/// signature verifies under the device's enrolled key (`key_hex`, the
/// `devices` row of the case's device). Only the signature: a field check
/// added to the protocol since the event was stored does not make it
/// another record (as in the court package's `check_signature`).
fn signature_holds(signed_json: &str, key_hex: Option<&str>) -> Result<(), String> {
    let signed = protocol::SignedEvent::from_json(signed_json.as_bytes())
        .map_err(|e| format!("unreadable: {e}"))?;
    let key = key_hex.ok_or_else(|| format!("device {} is not enrolled", signed.device_id()))?;
    let key = crate::devices::parse_public_key(key)
        .map_err(|e| format!("the enrolled key is unusable: {e}"))?;
    let signature = hex::decode(signed.signature_hex())
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or_else(|| "the signature is not 64 bytes of hex".to_string())?;
    let bytes = signed.signing_bytes().map_err(|e| e.to_string())?;
    key.verify_strict(&bytes, &signature)
        .map_err(|_| "the signature does not verify under the device's enrolled key".to_string())
}

/// Every machine column of `row` that differs from its signed event; a
/// signed event that cannot be read back, or whose signature no longer
/// verifies under its device's enrolled key, is itself a difference
/// (`signed_json`). Empty: the row says what the device signed.
pub fn differences(row: &MachineColumns) -> Vec<Difference> {
    let checked = signature_holds(&row.signed_json, row.device_key.as_deref())
        .and_then(|()| signed_event(&row.signed_json));
    let e = match checked {
        Ok(e) => e,
        Err(why) => {
            return vec![Difference {
                field: "signed_json",
                column: "not the device's signed event".into(),
                signed: why,
            }];
        }
    };
    let event_ms = i64::try_from(e.event_time.unix_timestamp_nanos() / 1_000_000).ok();
    let mut out = Vec::new();
    let mut cmp = |field: &'static str, column: String, signed: String| {
        if column != signed {
            out.push(Difference {
                field,
                column,
                signed,
            });
        }
    };
    let opt = |s: Option<&str>| s.unwrap_or("—").to_string();
    cmp("event_id", row.event_id.clone(), e.event_id.to_string());
    cmp("device_id", row.device_id.clone(), e.device_id.clone());
    cmp("camera_id", row.camera_id.clone(), e.camera_id.clone());
    cmp("site", row.site.clone(), e.site.clone());
    cmp(
        "event_time_ms",
        row.event_time_ms.to_string(),
        event_ms.map_or_else(|| "—".into(), |m| m.to_string()),
    );
    cmp(
        "violation_type",
        row.violation_type.clone(),
        enum_text(&e.violation_type),
    );
    cmp(
        "vehicle_class",
        row.vehicle_class.clone(),
        enum_text(&e.vehicle_class),
    );
    cmp(
        "plate_readable",
        row.plate_readable.to_string(),
        e.plate.readable.to_string(),
    );
    cmp(
        "plate_text",
        opt(row.plate_text.as_deref()),
        opt(e.plate.text.as_deref()),
    );
    cmp(
        "plate_colour",
        row.plate_colour.clone(),
        enum_text(&e.plate.colour),
    );
    let num = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    cmp(
        "speed_kmh",
        num(row.speed_kmh.map(|v| v.to_string())),
        num(e.speed.as_ref().map(|s| s.measured_kmh.to_string())),
    );
    cmp(
        "speed_limit_kmh",
        num(row.speed_limit_kmh.map(|v| v.to_string())),
        num(e.speed.as_ref().map(|s| s.limit_kmh.to_string())),
    );
    out
}

/// [`differences`] of case `event_id` as stored now (`None`: no such case).
pub async fn check<'e, E>(conn: E, event_id: &str) -> Result<Option<Vec<Difference>>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(load(conn, event_id).await?.map(|row| differences(&row)))
}

/// Whether case `event_id` may be confirmed as far as its record goes:
/// only what the device signed is confirmed, so a row whose machine
/// columns were changed is refused, and an event time from a clock that
/// was not synchronised only once the officer said they saw that
/// (`clock_ack`). `Some(state)`: the clock state acknowledged, for the
/// transition's detail.
pub async fn confirmable<'e, E>(
    conn: E,
    event_id: &str,
    clock_ack: bool,
) -> Result<Option<String>, crate::review::ReviewError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    use crate::review::ReviewError;
    let row = load(conn, event_id)
        .await?
        .ok_or_else(|| ReviewError::NotFound(event_id.into()))?;
    let diffs = differences(&row);
    if !diffs.is_empty() {
        return Err(ReviewError::RecordAltered(describe(&diffs)));
    }
    let event = signed_event(&row.signed_json).map_err(ReviewError::Invalid)?;
    if clock_synced(&event) {
        return Ok(None);
    }
    if !clock_ack {
        return Err(ReviewError::ClockNotAcknowledged(clock_en(&event)));
    }
    Ok(Some(clock_en(&event)))
}

/// The differences as one line, for a refusal or a log.
pub fn describe(diffs: &[Difference]) -> String {
    diffs
        .iter()
        .map(Difference::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the device's clock was synchronised when it stamped the event:
/// only then is the event time evidence without a person's say-so.
pub fn clock_synced(event: &ViolationEvent) -> bool {
    event.clock.status == ClockSyncStatus::Synced
}

/// The clock state in Vietnamese: "đồng bộ", "CHƯA đồng bộ (lệch +5,0 s)",
/// "KHÔNG RÕ".
pub fn clock_vi(event: &ViolationEvent) -> String {
    clock_text(event, true)
}

/// The frame a still shows, as the device signed it (schema 1.4
/// `evidence[].frame`): its number and its time in Việt Nam to the
/// millisecond, `frame 120372, 14/03/2025 08:15:30.250`; Vietnamese with
/// `vi` (`khung hình …`, decimal comma). `None` for a clip, and for a still
/// of an event made before 1.4.
pub fn frame_text(item: &protocol::EvidenceItem, vi: bool) -> Option<String> {
    let f = item.frame?;
    let t = f.time.to_offset(crate::console::html::VIETNAM);
    let ms = t.millisecond();
    Some(format!(
        "{} {}, {:02}/{:02}/{} {:02}:{:02}:{:02}{}{ms:03}",
        if vi { "khung hình" } else { "frame" },
        f.number,
        t.day(),
        u8::from(t.month()),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        if vi { ',' } else { '.' },
    ))
}

/// [`clock_vi`] in English.
pub fn clock_en(event: &ViolationEvent) -> String {
    clock_text(event, false)
}

fn clock_text(event: &ViolationEvent, vi: bool) -> String {
    let c = &event.clock;
    let offset = c
        .offset_ms
        .map(|ms| {
            if ms.abs() < 1000 {
                format!("{ms:+} ms")
            } else {
                format!("{:+.1} s", ms as f64 / 1000.0)
            }
        })
        .map(|o| if vi { o.replace('.', ",") } else { o });
    if c.is_recording() {
        return if vi {
            "thời gian lấy từ BẢN GHI phát lại, không phải đồng hồ lúc vi phạm".into()
        } else {
            "time taken from a RECORDING played back, not a clock at the violation".into()
        };
    }
    match (c.status, vi) {
        (ClockSyncStatus::Synced, true) => match offset {
            Some(o) => format!("đồng hồ đã đồng bộ (lệch {o})"),
            None => "đồng hồ đã đồng bộ".into(),
        },
        (ClockSyncStatus::Synced, false) => match offset {
            Some(o) => format!("clock synchronised (offset {o})"),
            None => "clock synchronised".into(),
        },
        (ClockSyncStatus::Unsynced, true) => match offset {
            Some(o) => format!("đồng hồ CHƯA đồng bộ (lệch {o})"),
            None => "đồng hồ CHƯA đồng bộ (không đo được độ lệch)".into(),
        },
        (ClockSyncStatus::Unsynced, false) => match offset {
            Some(o) => format!("clock NOT synchronised (offset {o})"),
            None => "clock NOT synchronised (offset not measured)".into(),
        },
        (ClockSyncStatus::Unknown, true) => "KHÔNG RÕ đồng hồ có đồng bộ không".into(),
        (ClockSyncStatus::Unknown, false) => "clock state UNKNOWN".into(),
    }
}

/// A case's evidence file as it may be served: the hash the device signed
/// for it, and the row's media type (only a rendering hint: the pages serve
/// anything but the types they show as a sandboxed download).
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// SHA-256 from the signed manifest.
    pub sha256: String,
    /// Media type of the `evidence` row.
    pub media_type: String,
}

/// Why a case's file is not served.
#[derive(Debug)]
pub enum FileRefusal {
    /// No such file of this case (or not stored).
    NotFound,
    /// The `evidence` row disagrees with the signed manifest, or the signed
    /// event cannot be read: someone changed the database.
    Mismatch(String),
    /// Database.
    Db(sqlx::Error),
}

/// The stored evidence file `name` of case `event_id`, by the hash its
/// device signed: refused ([`FileRefusal::Mismatch`]) when the `evidence`
/// row's hash is not the signed one or the file is not in the manifest
/// at all (the ingest writes rows only for manifest entries).
pub async fn manifest_file(
    db: &crate::db::Db,
    event_id: &str,
    name: &str,
) -> Result<ManifestFile, FileRefusal> {
    let row = sqlx::query(
        "SELECT e.sha256, v.signed_json, e.media_type FROM evidence e JOIN events v ON v.event_id = e.event_id \
         WHERE e.event_id = $1 AND e.name = $2 AND e.stored = 1",
    )
    .bind(event_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await
    .map_err(FileRefusal::Db)?
    .ok_or(FileRefusal::NotFound)?;
    let column: String = row.try_get(0).map_err(FileRefusal::Db)?;
    let signed_json: String = row.try_get(1).map_err(FileRefusal::Db)?;
    let media_type: String = row.try_get(2).map_err(FileRefusal::Db)?;
    let event = signed_event(&signed_json)
        .map_err(|e| FileRefusal::Mismatch(format!("the signed event cannot be read: {e}")))?;
    let item: &EvidenceItem = event.evidence_item(name).ok_or_else(|| {
        FileRefusal::Mismatch(format!(
            "{name} (sha256 {column}) is not in the signed manifest"
        ))
    })?;
    if item.sha256 != column {
        return Err(FileRefusal::Mismatch(format!(
            "{name}: the database says sha256 {column}, the signed manifest says {}",
            item.sha256
        )));
    }
    Ok(ManifestFile {
        sha256: item.sha256.clone(),
        media_type,
    })
}

/// Logs and audits (`evidence.mismatch`) a refusal to serve `name` of
/// case `event_id` because the database disagrees with the signed record.
pub async fn record_mismatch(
    db: &crate::db::Db,
    who: &crate::audit::Who,
    event_id: &str,
    name: &str,
    why: &str,
) {
    tracing::error!(
        case = event_id,
        file = name,
        problem = why,
        "evidence integrity"
    );
    if let Err(e) = crate::audit::record(
        db,
        crate::db::now_ms(),
        who,
        "evidence.mismatch",
        &format!("case:{event_id}"),
        &serde_json::json!({"name": name, "problem": why}),
    )
    .await
    {
        tracing::error!(case = event_id, error = %e, "evidence.mismatch not audited");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(clock: serde_json::Value) -> ViolationEvent {
        let at = "2026-01-01T10:00:00+07:00";
        serde_json::from_value(serde_json::json!({
            "schema_version": "1.2", "event_id": uuid::Uuid::new_v4(), "device_id": "edge-1",
            "camera_id": "cam-north", "site": "site-1", "event_time": at,
            "clock": clock, "violation_type": "wrong_way",
            "vehicle_class": "motorcycle",
            "plate": {"readable": false, "colour": "unknown"},
            "track": {"track_id": 1, "first_seen": at, "last_seen": at, "frame_count": 1,
                      "points": []},
            "evidence": [], "software_version": "t"
        }))
        .unwrap()
    }

    #[test]
    fn clock_states_are_named_with_their_offset() {
        let e = event(serde_json::json!({"status": "unsynced", "offset_ms": 5000}));
        assert!(!clock_synced(&e));
        assert_eq!(clock_vi(&e), "đồng hồ CHƯA đồng bộ (lệch +5,0 s)");
        assert_eq!(clock_en(&e), "clock NOT synchronised (offset +5.0 s)");
        let e = event(serde_json::json!({"status": "unknown"}));
        assert!(!clock_synced(&e));
        assert_eq!(clock_en(&e), "clock state UNKNOWN");
        let e = event(serde_json::json!({"status": "synced", "offset_ms": -3}));
        assert!(clock_synced(&e));
        assert_eq!(clock_vi(&e), "đồng hồ đã đồng bộ (lệch -3 ms)");
        // A recording played back: no clock at all, and said so.
        let e = event(serde_json::json!({"status": "unknown", "source": "recording"}));
        assert!(!clock_synced(&e));
        assert!(clock_vi(&e).contains("BẢN GHI"), "{}", clock_vi(&e));
        assert!(clock_en(&e).contains("RECORDING"), "{}", clock_en(&e));
        assert!(crate::package::vi::clock(&e.clock).contains("bản ghi phát lại"));
    }
}
