//! The rows ingest writes for an accepted bundle, inside the batch's
//! transaction: a new case with its evidence rows ([`insert_case`]), and
//! for an event id already stored either what a redelivery completes
//! ([`mark_late_attachments`]) or why it is no redelivery at all
//! ([`conflict`]), also for a bundle refused only by today's state
//! ([`settle_stored`]). Kept apart from the batching in `mod.rs`, which
//! decides when these run and answers the device.

use sqlx::{AnyConnection, Row};

use super::{Accepted, Grounds, IngestError, Rejection, Source, enum_text};
use crate::fines::Quote;

/// An event as stored: its signed envelope and its device.
pub(super) struct StoredEvent {
    signed_json: String,
    device_id: String,
}

/// The stored event under `id`, if any (read in the batch's transaction,
/// so it sees a copy inserted earlier in the same batch).
pub(super) async fn stored_event(
    conn: &mut AnyConnection,
    id: uuid::Uuid,
) -> Result<Option<StoredEvent>, IngestError> {
    let row = sqlx::query("SELECT signed_json, device_id FROM events WHERE event_id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(StoredEvent {
            signed_json: r.try_get(0)?,
            device_id: r.try_get(1)?,
        }),
        None => None,
    })
}

/// The refusal of an accepted bundle whose event id is already stored with
/// other content (not a redelivery: what is stored is never overwritten;
/// a person looks at it), or `None` for a true redelivery.
///
/// Whether the device hears of it depends on who stored the first one. If
/// the device itself did (its key signed both), the bytes are refused
/// wherever and whenever they come: a bound rejection, so the device stops
/// resending. If another device did (a compromised one taking this
/// device's next event id), the refusal says nothing about these bytes,
/// only about what came first: answering it would let that device get any
/// of this device's events set aside, so it is only quarantined
/// ([`Grounds::Arrival`]).
pub(super) fn conflict(a: &Accepted, stored: Option<&StoredEvent>) -> Option<Rejection> {
    let stored = stored?;
    if stored.signed_json == a.signed_json {
        return None;
    }
    let id = a.event.event_id;
    let own = stored.device_id == a.event.device_id;
    Some(Rejection {
        ack_code: protocol::RejectCode::Invalid,
        reason_code: "event_id_conflict".into(),
        reason: if own {
            format!("event {id} is already stored with different content")
        } else {
            // Not naming that device: over HTTP the reason goes to
            // whoever posted the bundle.
            format!("event {id} is already stored with different content, from another device")
        },
        event_id: Some(id),
        device_claimed: Some(a.event.device_id.as_str().into()),
        signed: true,
        grounds: if own {
            Grounds::Bytes
        } else {
            Grounds::Arrival
        },
        redelivery: None,
    })
}

/// Settles, before anything of the batch is written, the refusals that
/// hold only for a new event ([`Rejection::redelivery`]: signature, device
/// and attachments held, a check against the server's current state did
/// not). An event id already stored is judged by what is stored, not by
/// today's camera registry, grammar or clock: the same content is a
/// redelivery (its ack was lost) and becomes an accepted bundle again, so
/// the batch answers it `duplicate` and completes its late stills like
/// any redelivery; other content is an `event_id_conflict`. Otherwise a
/// resend after, say, a rule was disabled on the camera would get a
/// signed rejection of the stored event's own bytes, and the device would
/// set aside the event and never send its clip.
///
/// Events are never deleted, so what this read finds stored is still
/// stored when the batch commits. An event another replica is storing at
/// this moment (its insert not yet committed: this read cannot see it) is
/// caught by [`stored_meanwhile`] in the batch's transaction.
pub(super) async fn settle_stored(
    conn: &mut AnyConnection,
    verdicts: &mut super::Verdicts,
) -> Result<(), IngestError> {
    for (_, _, verdict) in verdicts.iter_mut() {
        let Err(r) = verdict else { continue };
        let Some(a) = r.redelivery.as_deref() else {
            continue;
        };
        let Some(stored) = stored_event(conn, a.event.event_id).await? else {
            continue;
        };
        *verdict = match conflict(a, Some(&stored)) {
            Some(conflict) => Err(conflict),
            None => Ok(a.clone()),
        };
    }
    Ok(())
}

/// Whether the event of a bundle refused only by this replica's state
/// ([`Rejection::redelivery`]) is stored after all: by another replica
/// since [`settle_stored`] looked, or at this moment in a transaction not
/// yet committed. Without it, this replica (its clock, its camera registry,
/// `require_known_camera`) could answer a signed `rejected` for an event
/// the other stores, and the device would set the event aside and never
/// send its clip.
///
/// Asked the one way a database waits for another session's insert of
/// the same key: this batch inserts the case itself (`ON CONFLICT DO
/// NOTHING`) inside a savepoint. PostgreSQL holds that insert until the
/// other session's transaction ends; a conflict then means the event is
/// stored (`true`, the caller answers as for a redelivery). Inserted, no
/// one had it: the savepoint is rolled back (the refusal stands, nothing
/// of the event is written). A replica that starts storing the event only
/// after this returned is not waited for: the refusal was then answered
/// first.
pub(super) async fn stored_meanwhile(
    conn: &mut AnyConnection,
    a: &Accepted,
    source: &Source,
    received_at: i64,
    quote: &Quote,
) -> Result<bool, IngestError> {
    sqlx::raw_sql("SAVEPOINT stored_meanwhile")
        .execute(&mut *conn)
        .await?;
    let inserted = insert_case(conn, a, source, received_at, quote).await?;
    let end = if inserted {
        "ROLLBACK TO SAVEPOINT stored_meanwhile"
    } else {
        "RELEASE SAVEPOINT stored_meanwhile"
    };
    sqlx::raw_sql(end).execute(&mut *conn).await?;
    if !inserted {
        tracing::info!(
            event_id = %a.event.event_id,
            "refused by this replica's state, but stored by another meanwhile: not rejected"
        );
    }
    Ok(!inserted)
}

/// Marks as stored the evidence rows of a redelivered event whose files
/// this delivery carries and the stored case still lacks (a still the
/// device could not read the first time: `verify::verify_decoded`). The
/// bytes went into this batch's pack and index like every accepted
/// bundle's (`commit_batch`: `put_pack` writes what the index lacks,
/// `pack::record` indexes it); only the row's flag is left. A row is
/// marked only for the hash it already names (the manifest the
/// attachments were checked against is the stored one: same signed JSON),
/// and not on a case whose evidence was deleted under retention.
/// Whether every still `a` carries is already stored for its event (by
/// the delivery that stored the case): a copy whose stills this batch did
/// not pack may then be answered `duplicate` without the device dropping
/// anything the case lacks.
pub(super) async fn attachments_kept(
    conn: &mut AnyConnection,
    a: &Accepted,
) -> Result<bool, IngestError> {
    for at in &a.attachments {
        let Some(item) = a.event.evidence_item(&at.name) else {
            continue;
        };
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT stored FROM evidence WHERE event_id = $1 AND name = $2 AND sha256 = $3",
        )
        .bind(a.event.event_id.to_string())
        .bind(&item.name)
        .bind(&item.sha256)
        .fetch_optional(&mut *conn)
        .await?;
        if stored != Some(1) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) async fn mark_late_attachments(
    conn: &mut AnyConnection,
    a: &Accepted,
    received_at: i64,
) -> Result<(), IngestError> {
    for at in &a.attachments {
        let Some(item) = a.event.evidence_item(&at.name) else {
            continue;
        };
        let done = sqlx::query(
            "UPDATE evidence SET stored = 1, stored_at = $1 \
             WHERE event_id = $2 AND name = $3 AND sha256 = $4 AND stored = 0 \
             AND NOT EXISTS (SELECT 1 FROM events WHERE event_id = $2 \
                             AND evidence_purged_at IS NOT NULL)",
        )
        .bind(received_at)
        .bind(a.event.event_id.to_string())
        .bind(&item.name)
        .bind(&item.sha256)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() > 0 {
            tracing::info!(
                event_id = %a.event.event_id,
                item = item.name,
                "a still missing from the first delivery came with a redelivery"
            );
        }
    }
    Ok(())
}

/// Inserts the case and its evidence rows; `false` if the event id exists.
pub(super) async fn insert_case(
    conn: &mut AnyConnection,
    a: &Accepted,
    source: &Source,
    received_at: i64,
    quote: &Quote,
) -> Result<bool, IngestError> {
    let e = &a.event;
    let (schedule, article, min, max, points) = match quote {
        Quote::Priced {
            schedule,
            article,
            min_vnd,
            max_vnd,
            points,
        } => (
            Some(schedule.as_str()),
            Some(article.as_str()),
            Some(*min_vnd),
            Some(*max_vnd),
            Some(*points),
        ),
        _ => (None, None, None, None, None),
    };
    let event_time = e
        .event_time
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|err| IngestError::Task(err.to_string()))?;
    let event_time_ms = i64::try_from(e.event_time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|err| IngestError::Task(err.to_string()))?;
    let q = sqlx::query(
        "INSERT INTO events (event_id, device_id, camera_id, site, event_time, event_time_ms, \
         violation_type, vehicle_class, plate_readable, plate_text, plate_display, plate_colour, \
         plate_confidence, speed_kmh, speed_limit_kmh, signed_json, source, received_at, \
         fine_status, fine_schedule, fine_ref, fine_min_vnd, fine_max_vnd, licence_points) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(e.event_id.to_string())
    .bind(&e.device_id)
    .bind(&e.camera_id)
    .bind(&e.site)
    .bind(event_time)
    .bind(event_time_ms)
    .bind(enum_text(&e.violation_type))
    .bind(enum_text(&e.vehicle_class))
    .bind(i64::from(e.plate.readable))
    .bind(e.plate.text.as_deref())
    .bind(e.plate.display.as_deref())
    .bind(enum_text(&e.plate.colour));
    // Nullable floats through the workaround for sqlx 0.9.0's NULL typing.
    let q = crate::cameras::bind_opt_f64(q, e.plate.confidence);
    let done = crate::cameras::bind_opt_f64(q, e.speed.as_ref().map(|s| s.measured_kmh))
        .bind(e.speed.as_ref().map(|s| i64::from(s.limit_kmh)))
        .bind(&a.signed_json)
        .bind(match source {
            Source::Mqtt(_) => "mqtt",
            Source::Http => "http",
        })
        .bind(received_at)
        .bind(quote.status())
        .bind(schedule)
        .bind(article)
        .bind(min)
        .bind(max)
        .bind(points)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    for item in &e.evidence {
        let attached = a.attachments.iter().any(|at| at.name == item.name);
        sqlx::query(
            "INSERT INTO evidence (event_id, name, role, media_type, size_bytes, sha256, \
             stored, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.event_id.to_string())
        .bind(&item.name)
        .bind(enum_text(&item.role))
        .bind(&item.media_type)
        .bind(i64::try_from(item.size_bytes).unwrap_or(i64::MAX))
        .bind(&item.sha256)
        .bind(i64::from(attached))
        .bind(attached.then_some(received_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}
