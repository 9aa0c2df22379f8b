//! Heartbeats: the signed health report each edge publishes periodically
//! (cameras, outbox depth, disk, alarms, clock). The server verifies it like
//! an event (enrolled, not revoked, signature, topic) and keeps the latest
//! one per device for fleet health; a heartbeat that fails goes to the
//! quarantine like any other message. Heartbeats are not acknowledged.

use bytes::Bytes;
use protocol::{Heartbeat, SignedHeartbeat, topics};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::db::{Db, DbError, now_ms};
use crate::ingest::verify::code_text;
use crate::ingest::{IngestContext, IngestError};
use crate::quarantine;

/// Verifies and stores a heartbeat that arrived on `topic`. `Ok(None)` when
/// it was quarantined.
pub async fn receive(
    ctx: &IngestContext,
    bytes: Bytes,
    topic: &str,
) -> Result<Option<Heartbeat>, IngestError> {
    let (device, verdict) = verify(ctx, &bytes, topic).await?;
    match verdict {
        Ok((hb, json)) => {
            // Only a newer report replaces the stored one: a redelivered
            // or replayed old heartbeat must not make a dead or alarming
            // device look healthy again. Decided and stored in one
            // transaction, so a run is never remembered without its report.
            let mut tx = ctx.db.begin_write().await?;
            if !is_newer(&mut tx, &hb, ctx.clock_tolerance).await? {
                tracing::debug!(device = hb.device_id, sent = %hb.time, "heartbeat older than the stored one: ignored");
                tx.commit().await?;
                return Ok(Some(hb));
            }
            sqlx::query(
                "INSERT INTO heartbeats (device_id, site, sent_at, received_at, signed_json, \
                 boot_id, boot_seq) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (device_id) DO UPDATE SET \
                 site = excluded.site, sent_at = excluded.sent_at, \
                 received_at = excluded.received_at, signed_json = excluded.signed_json, \
                 boot_id = excluded.boot_id, boot_seq = excluded.boot_seq",
            )
            .bind(&hb.device_id)
            .bind(&hb.site)
            .bind(
                hb.time
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            )
            .bind(now_ms())
            .bind(json)
            .bind(hb.boot.map(|b| b.boot_id.to_string()))
            .bind(hb.boot.map(|b| i64::try_from(b.seq).unwrap_or(i64::MAX)))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            ctx.metrics.heartbeat();
            Ok(Some(hb))
        }
        Err((code, reason)) => {
            quarantine::record(
                &ctx.db,
                &ctx.evidence,
                topic,
                device.as_deref(),
                None,
                &code,
                &reason,
                bytes,
            )
            .await?;
            ctx.metrics.quarantined(&code);
            Ok(None)
        }
    }
}

/// Whether `hb` is newer than the device's stored report.
///
/// By the agent's run where the report carries one (schema 1.3): within the
/// run the stored report belongs to, a higher place; of two runs, the one
/// this server heard of later (`heartbeat_runs.first_seen`), so a report of
/// a run that ended is a replay or a straggler, and a stored report that a
/// straggler of the old run overwrote (two replicas at once) gives way to
/// the next report of the new run. The device's clock is not consulted: it
/// may be unsynchronised (a box rebooted to 1970).
///
/// Without a run (an agent older than 1.3), by the device's clock while it
/// is trustworthy: a report from a clock that says it is not synchronised
/// is kept whatever its time, and a stored report from the future (a clock
/// that jumped) does not hold back the ones after it. Once a device has
/// reported a run, a report without one is a replay of one from before its
/// upgrade, and is not newer.
async fn is_newer(
    conn: &mut AnyConnection,
    hb: &Heartbeat,
    clock_tolerance: time::Duration,
) -> Result<bool, sqlx::Error> {
    let stored =
        sqlx::query("SELECT sent_at, boot_id, boot_seq FROM heartbeats WHERE device_id = $1")
            .bind(&hb.device_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (sent_at, stored_run, stored_seq) = match stored {
        Some(r) => (
            Some(r.try_get::<String, _>(0)?),
            r.try_get::<Option<String>, _>(1)?,
            r.try_get::<Option<i64>, _>(2)?,
        ),
        None => (None, None, None),
    };
    let Some(boot) = hb.boot else {
        if stored_run.is_some() {
            return Ok(false);
        }
        let rfc = &time::format_description::well_known::Rfc3339;
        let server_now = time::OffsetDateTime::now_utc();
        let synced = hb.clock.status == protocol::ClockSyncStatus::Synced;
        let held_back = sent_at
            .and_then(|t| time::OffsetDateTime::parse(&t, rfc).ok())
            .is_some_and(|prev| synced && hb.time <= prev && prev <= server_now + clock_tolerance);
        return Ok(!held_back);
    };
    let run = boot.boot_id.to_string();
    sqlx::query(
        "INSERT INTO heartbeat_runs (device_id, boot_id, first_seen) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&hb.device_id)
    .bind(&run)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    let Some(stored_run) = stored_run else {
        // Nothing stored yet, or an older agent's report.
        return Ok(true);
    };
    if stored_run == run {
        return Ok(stored_seq.is_none_or(|s| i64::try_from(boot.seq).unwrap_or(i64::MAX) > s));
    }
    let first_seen = |r: String| {
        sqlx::query_scalar::<_, i64>(
            "SELECT first_seen FROM heartbeat_runs WHERE device_id = $1 AND boot_id = $2",
        )
        .bind(hb.device_id.clone())
        .bind(r)
    };
    let mine = first_seen(run).fetch_one(&mut *conn).await?;
    let theirs = first_seen(stored_run).fetch_optional(&mut *conn).await?;
    Ok(theirs.is_none_or(|t| mine >= t))
}

type Verdict = Result<(Heartbeat, String), (String, String)>;

async fn verify(
    ctx: &IngestContext,
    bytes: &[u8],
    topic: &str,
) -> Result<(Option<String>, Verdict), IngestError> {
    let protocol_err = |e: protocol::ProtocolError| (code_text(&e.reject_code()), e.to_string());
    let signed = match SignedHeartbeat::from_json(bytes) {
        Ok(s) => s,
        Err(e) => return Ok((None, Err(protocol_err(e)))),
    };
    let claimed = Some(signed.device_id().to_owned());
    let addr = match topics::parse_topic(topic) {
        Ok(a) => a,
        Err(e) => return Ok((claimed, Err(protocol_err(e.into())))),
    };
    let device = crate::devices::get(&ctx.db, signed.device_id())
        .await
        .map_err(|e| IngestError::Task(e.to_string()))?;
    let Some(device) = device else {
        let reason = format!("device `{}` is not enrolled", addr.device);
        return Ok((claimed, Err(("unknown_device".into(), reason))));
    };
    if device.is_revoked() {
        let reason = format!("device `{}` is revoked", device.device_id);
        return Ok((claimed, Err(("revoked_device".into(), reason))));
    }
    let key = match device.verifying_key() {
        Ok(k) => k,
        Err(e) => return Ok((claimed, Err(("internal".into(), e.to_string())))),
    };
    let hb = match signed.verify_for_topic(&key, &addr) {
        Ok(h) => h,
        Err(e) => return Ok((claimed, Err(protocol_err(e)))),
    };
    if hb.site != device.site {
        let reason = format!(
            "heartbeat site `{}` is not the site `{}` the device is enrolled at",
            hb.site, device.site
        );
        return Ok((claimed, Err(("site_mismatch".into(), reason))));
    }
    let json = match signed.to_json().map(String::from_utf8) {
        Ok(Ok(j)) => j,
        _ => return Ok((claimed, Err(("internal".into(), "canonical JSON".into())))),
    };
    Ok((claimed, Ok((hb, json))))
}

/// The latest heartbeat of a device, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct LatestHeartbeat {
    /// Device.
    pub device_id: String,
    /// Site.
    pub site: String,
    /// When the device made it (its clock).
    pub sent_at: String,
    /// When it arrived (Unix ms).
    pub received_at: i64,
    /// The signed envelope.
    pub signed_json: String,
}

/// The latest heartbeat of each device.
pub async fn latest(db: &Db) -> Result<Vec<LatestHeartbeat>, DbError> {
    let rows = sqlx::query(
        "SELECT device_id, site, sent_at, received_at, signed_json FROM heartbeats \
         ORDER BY device_id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LatestHeartbeat {
                device_id: r.try_get(0)?,
                site: r.try_get(1)?,
                sent_at: r.try_get(2)?,
                received_at: r.try_get(3)?,
                signed_json: r.try_get(4)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}
