//! The quarantine: every message the server could not accept (malformed
//! frame, unknown or revoked device, bad signature, wrong topic, evidence
//! that does not match its manifest, implausible fields), kept with the
//! reason so an administrator can see it and act. Nothing is dropped
//! silently: the raw bytes go to the evidence store under their hash and the
//! row here points at them. A refusal the device is not told of (about
//! where the bytes arrived: `ingest::verify::Grounds`) comes again with
//! every resend; it keeps one row per bytes, reason and source
//! ([`insert_once`]).

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::db::{Db, DbError};

/// A quarantined message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineEntry {
    /// Id of this entry.
    pub id: String,
    /// When it arrived (Unix ms).
    pub received_at: i64,
    /// Where it came from: the MQTT topic, or `http`.
    pub source: String,
    /// The device it claimed to come from, if readable.
    pub device_claimed: Option<String>,
    /// The event id it carried, if readable.
    pub event_id: Option<String>,
    /// Stable reason code (the reject code sent to the device).
    pub reason_code: String,
    /// Human-readable reason.
    pub reason: String,
    /// SHA-256 of the raw message (its bytes are in the evidence store).
    pub payload_sha256: String,
    /// Size of the raw message.
    pub payload_size: i64,
}

impl QuarantineEntry {
    /// A new entry with a fresh id.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        received_at: i64,
        source: &str,
        device_claimed: Option<&str>,
        event_id: Option<Uuid>,
        reason_code: &str,
        reason: &str,
        payload_sha256: String,
        payload_size: usize,
    ) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            received_at,
            source: truncate(source, 256),
            device_claimed: device_claimed.map(|d| truncate(d, 128)),
            event_id: event_id.map(|e| e.to_string()),
            reason_code: reason_code.to_owned(),
            reason: truncate(reason, 1024),
            payload_sha256,
            payload_size: i64::try_from(payload_size).unwrap_or(i64::MAX),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// An insert of an entry's columns and its `once_key`, in the order
/// [`write`] binds them (`$1`..`$10`), followed by `$tail`.
macro_rules! insert_sql {
    ($tail:literal) => {
        concat!(
            "INSERT INTO quarantine (id, received_at, source, device_claimed, event_id, \
             reason_code, reason, payload_sha256, payload_size, once_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            $tail
        )
    };
}

/// Runs `sql` (made by `insert_sql!`) for `e`; the rows written.
async fn write(
    conn: &mut AnyConnection,
    e: &QuarantineEntry,
    once_key: Option<String>,
    sql: &'static str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(sql)
        .bind(&e.id)
        .bind(e.received_at)
        .bind(&e.source)
        .bind(e.device_claimed.as_deref())
        .bind(e.event_id.as_deref())
        .bind(&e.reason_code)
        .bind(&e.reason)
        .bind(&e.payload_sha256)
        .bind(e.payload_size)
        .bind(once_key)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Writes an entry (inside the caller's transaction).
pub async fn insert(conn: &mut AnyConnection, e: &QuarantineEntry) -> Result<(), sqlx::Error> {
    write(conn, e, None, insert_sql!("")).await?;
    Ok(())
}

/// Writes an entry unless the quarantine already holds the same bytes
/// (`payload_sha256`) refused for the same reason code from the same
/// source; `true` if it wrote one. For refusals the device is not told of
/// (`ingest::verify::Grounds::Arrival`): the device resends until its copy
/// arrives where it belongs, and each resend must not add a row (the bytes
/// themselves are stored once by hash anyway). The database decides, through
/// the unique `once_key` (migration 0015), so two servers taking the same
/// resend at once still write one row.
pub async fn insert_once(
    conn: &mut AnyConnection,
    e: &QuarantineEntry,
) -> Result<bool, sqlx::Error> {
    let sql = insert_sql!(" ON CONFLICT DO NOTHING");
    Ok(write(conn, e, Some(once_key(e)), sql).await? > 0)
}

/// What makes two refusals the same for [`insert_once`]: the bytes, the
/// reason and where they arrived (newlines cannot occur in the first two,
/// and the source is last).
fn once_key(e: &QuarantineEntry) -> String {
    format!("{}\n{}\n{}", e.payload_sha256, e.reason_code, e.source)
}

/// The most recent entries, newest first.
pub async fn list(db: &Db, limit: i64) -> Result<Vec<QuarantineEntry>, DbError> {
    let rows = sqlx::query(
        "SELECT id, received_at, source, device_claimed, event_id, reason_code, reason, \
         payload_sha256, payload_size FROM quarantine ORDER BY received_at DESC, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(QuarantineEntry {
                id: r.try_get(0)?,
                received_at: r.try_get(1)?,
                source: r.try_get(2)?,
                device_claimed: r.try_get(3)?,
                event_id: r.try_get(4)?,
                reason_code: r.try_get(5)?,
                reason: r.try_get(6)?,
                payload_sha256: r.try_get(7)?,
                payload_size: r.try_get(8)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Quarantines one message on its own (outside a batch): raw bytes to the
/// evidence store, then the row, committed before returning.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    db: &Db,
    evidence: &crate::evidence::EvidenceStore,
    source: &str,
    device_claimed: Option<&str>,
    event_id: Option<Uuid>,
    reason_code: &str,
    reason: &str,
    raw: bytes::Bytes,
) -> Result<QuarantineEntry, crate::ingest::IngestError> {
    let size = raw.len();
    let digest = evidence.put(raw).await?;
    let entry = QuarantineEntry::new(
        crate::db::now_ms(),
        source,
        device_claimed,
        event_id,
        reason_code,
        reason,
        digest,
        size,
    );
    record_entry(db, entry).await
}

/// Quarantines `entry`, whose bytes are already in the evidence store
/// under its `payload_sha256` (a clip assembled there, too large to hold
/// in memory): the row only, committed before returning.
pub async fn record_entry(
    db: &Db,
    entry: QuarantineEntry,
) -> Result<QuarantineEntry, crate::ingest::IngestError> {
    write_entry(db, entry, false).await
}

/// [`record_entry`] through [`insert_once`]: for a refusal the device is
/// not told of, which it will keep resending.
pub async fn record_entry_once(
    db: &Db,
    entry: QuarantineEntry,
) -> Result<QuarantineEntry, crate::ingest::IngestError> {
    write_entry(db, entry, true).await
}

async fn write_entry(
    db: &Db,
    entry: QuarantineEntry,
    once: bool,
) -> Result<QuarantineEntry, crate::ingest::IngestError> {
    let mut conn = db.pool().acquire().await?;
    if once {
        insert_once(&mut conn, &entry).await?;
    } else {
        insert(&mut conn, &entry).await?;
    }
    tracing::warn!(
        source = entry.source,
        code = entry.reason_code,
        reason = entry.reason,
        "message quarantined"
    );
    Ok(entry)
}
