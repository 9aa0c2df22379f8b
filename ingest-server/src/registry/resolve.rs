//! Owner resolution of cases: the lookup after a case is stored (or its
//! plate corrected), what a registration found comes to
//! ([`registration_status`]), which owner is one to tell
//! ([`deliverable_owner`]), and the sweeper that takes up lookups that were
//! lost or failed.
//!
//! A lookup never blocks ingest and never fails its caller: what came of
//! it is written on the case (`owner_status`, `owner_id`), with when it was
//! made (`owner_lookup_at`) and how many lookups in a row failed
//! (`owner_lookup_failures`, migration 0018).
//!
//! **Retries.** A case left `pending` (its server stopped before the
//! lookup) and a case whose lookup failed (`error`: the gateway down, its
//! circuit open, the database failing) are looked up again by
//! [`spawn_sweeper`]: at start every pending case, then every
//! [`SWEEP_EVERY`] the pending ones older than [`PENDING_GRACE_MS`] and the
//! failed ones whose backoff is over ([`retry_wait_ms`]: 5 minutes after
//! the first failure, doubling, at most an hour), oldest attempt first. A
//! pass stops at the first lookup that fails again, so a registry that is
//! down is asked once a pass, not once a case. `unresolved` (no such
//! vehicle), [`AMBIGUOUS`] and the statuses that ask a person to look are answers,
//! not failures: they are not retried. Nor is the lookup of a rejected
//! case (it fines no one; reopened, it is due again) or of one whose
//! evidence retention deleted (its owner link is gone for good).
//!
//! **Owners found late.** A case confirmed while its lookup was pending
//! or failing got a notice without deliveries. When a lookup then
//! resolves it, the transaction that records the owner also gives that
//! notice its deliveries (`notices::outbox::enqueue_for_found_owner`), so
//! the owner is told (late: the 10-day flag stays). Each sweep also takes
//! up any notice still waiting for an owner its case now has
//! (`notices::outbox::enqueue_found_owners`).
//!
//! **One replica per lookup.** Every replica runs the sweeper; a due case
//! is claimed before it is looked up, with a conditional UPDATE that sets
//! its lease (`owner_lookup_lease_until`, migration 0021, [`LOOKUP_LEASE_MS`])
//! only while the case is still in the status and failure count it was
//! read with and no live lease is on it, so of several sweepers one makes
//! the lookup (one access-log row about the owner, not one per replica).
//! What a lookup came to is recorded only if the case is still in the
//! status and failure count the lookup started from (and about the same
//! plate): a lookup that fails late, after another one (the ingest's, a
//! correction's, a sweeper's whose lease ran out) recorded `resolved`,
//! does not turn the case back to `error` and remove its owner.
//!
//! **By the number alone.** A case's plate is looked up by its number
//! ([`Registry::find`]), never narrowed by the plate colour: that colour is
//! the camera's guess (a white plate under sodium light reads yellow) and
//! no person confirms it. One registration is used whatever its colour (a
//! colour that differs from the camera's is noted in the audit entry,
//! `plate_colour_differs`); several, under different colours, hold the
//! case as [`AMBIGUOUS`] for a person, with no owner.
//!
//! A lookup that changes the case's owner or owner status raises the
//! case's `revision` (a police confirmation shown before is refused); one
//! that attaches, changes or removes the owner also writes a
//! `case.owner_lookup` audit entry (the plate, the statuses, which of the
//! three, who asked; no owner data), in the transaction that records it.

use std::sync::Arc;
use std::time::Duration;

use protocol::ViolationEvent;
use sqlx::Row;
use uuid::Uuid;

use super::{FICTITIOUS, PlateLookup, Purpose, Registry, Vehicle, kind};
use crate::db::{Db, now_ms};

/// Owner status of a case whose registration was found, is active, and
/// fits the vehicle the camera saw.
pub const RESOLVED: &str = "resolved";

/// Owner status of a case whose plate number is registered several times,
/// under different plate colours (`vehicles` is keyed on plate and
/// colour): held for a person, with no owner on the case. The camera's
/// colour (an HSV guess that sodium light turns white into yellow) is not
/// trusted to pick one, since no person confirms it.
pub const AMBIGUOUS: &str = "registration_ambiguous";

/// The owner a case's notice is delivered to, and the one citizen who
/// sees the case in the citizen app: the case's `owner_id` when its lookup
/// is [`RESOLVED`]. Under any other status there is no such owner: not
/// looked up yet (`pending`), failed (`error`), not found (`unresolved`),
/// and the ones that ask a person to look (`vehicle_mismatch`: a misread or
/// cloned plate, whose registered owner may be innocent;
/// `registration_not_active`, `vehicle_type_unknown`) even though they
/// carry the registered owner's id, and [`AMBIGUOUS`] (several
/// registrations of the number, no owner on the case). `notices::outbox::enqueue` decides deliveries with this,
/// the citizen app its cases with [`DELIVERABLE_OWNER_SQL`].
pub fn deliverable_owner(owner_status: Option<&str>, owner_id: Option<String>) -> Option<String> {
    owner_id.filter(|_| owner_status == Some(RESOLVED))
}

/// [`deliverable_owner`] as an SQL condition on a case row aliased `e`.
pub const DELIVERABLE_OWNER_SQL: &str = "(e.owner_status = 'resolved' AND e.owner_id IS NOT NULL)";

/// Registration statuses that count as active, compared whole, trimmed,
/// lower-cased and NFC-normalised (`kind::normalise`): `active`, `valid`,
/// `registered`, `hiệu lực`, `còn hiệu lực`, `đang hoạt động`, `đã đăng
/// ký`, and the demo registry's invented [`FICTITIOUS`]. Every other
/// status (`deregistered`, `stolen`, `inactive`, `cancelled`, `hết hiệu
/// lực`, `đã hủy`, or a word this list does not know) is
/// `registration_not_active`: held for a person rather than fined on a
/// guess. A registry that names active registrations otherwise needs its
/// word added here.
pub const ACTIVE_STATUSES: &[&str] = &[
    "active",
    "valid",
    "registered",
    "hiệu lực",
    "còn hiệu lực",
    "đang hoạt động",
    "đã đăng ký",
    FICTITIOUS,
];

/// The first wait before a failed lookup is tried again (5 minutes).
pub const RETRY_BASE_MS: i64 = 5 * 60_000;
/// The longest wait between tries of a failed lookup (1 hour).
pub const RETRY_MAX_MS: i64 = 60 * 60_000;
/// How often [`spawn_sweeper`] looks for lookups to make.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A case still `pending` this long after it was stored or last changed
/// lost its lookup (the lookup of a fresh case runs right after commit;
/// the sweeper leaves it that long so as not to make it twice).
pub const PENDING_GRACE_MS: i64 = 2 * 60_000;
/// How long a sweeper holds a due lookup it claimed (10 minutes): longer
/// than a lookup with its retries takes; one that outlasts it is still
/// recorded only if nothing was recorded meanwhile.
pub const LOOKUP_LEASE_MS: i64 = 10 * 60_000;
/// Most cases one periodic pass looks at.
const SWEEP_LIMIT: i64 = 500;

/// The wait after `failures` failed lookups in a row before the next one:
/// [`RETRY_BASE_MS`] · 2^(failures − 1), at most [`RETRY_MAX_MS`].
pub fn retry_wait_ms(failures: i64) -> i64 {
    let doublings = failures.clamp(1, 20) - 1;
    RETRY_BASE_MS
        .saturating_mul(1_i64 << doublings)
        .min(RETRY_MAX_MS)
}

/// Resolves the owners of freshly stored cases and records the result on
/// each case. Never fails: problems are logged and left on the case.
pub async fn resolve_owners(db: &Db, registry: &dyn Registry, events: &[ViolationEvent]) {
    for e in events {
        let plate = e.plate.text.as_deref().filter(|_| e.plate.readable);
        let colour = crate::ingest::enum_text(&e.plate.colour);
        resolve_one(db, registry, e.event_id, plate, &colour, "ingest", None).await;
    }
}

/// The plate a case is about, in SQL: the reviewer's correction, else the
/// device's read when it was readable. Every owner lookup is of this plate.
/// (A macro so the queries stay literal SQL.)
macro_rules! case_plate {
    () => {
        "COALESCE(reviewed_plate, CASE WHEN plate_readable <> 0 THEN plate_text END)"
    };
}

/// Resolves every case still `pending` (its server stopped before it
/// looked it up, or before the lookup of a reviewer's correction) and
/// retries the failed (`error`) lookups whose backoff is over, oldest
/// attempt first, at most `limit`, each by the plate the case is about
/// now. Returns how many were looked up. See [`resolve_due`].
pub async fn resolve_pending(db: &Db, registry: &dyn Registry, limit: i64) -> usize {
    resolve_due(db, registry, limit, now_ms(), i64::MAX).await
}

/// One pass at `now` (Unix ms): the `pending` cases stored and last changed
/// no later than `pending_before`, and the `error` cases whose last lookup
/// is at least [`retry_wait_ms`] old. Stops at the first lookup that fails
/// (the rest wait for the next pass). Returns how many were looked up.
pub async fn resolve_due(
    db: &Db,
    registry: &dyn Registry,
    limit: i64,
    now: i64,
    pending_before: i64,
) -> usize {
    let rows = sqlx::query(concat!(
        "SELECT event_id, ",
        case_plate!(),
        ", plate_colour, owner_status, owner_lookup_at, owner_lookup_failures FROM events \
         WHERE evidence_purged_at IS NULL AND state <> 'rejected' \
         AND ((owner_status = 'pending' AND received_at <= $1 \
         AND COALESCE(state_changed_at, 0) <= $1) \
         OR (owner_status = 'error' AND COALESCE(owner_lookup_at, 0) <= $2)) \
         AND (owner_lookup_lease_until IS NULL OR owner_lookup_lease_until <= $4) \
         ORDER BY COALESCE(owner_lookup_at, received_at), received_at LIMIT $3"
    ))
    .bind(pending_before)
    .bind(now.saturating_sub(RETRY_BASE_MS))
    .bind(limit)
    .bind(now)
    .fetch_all(db.pool())
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "listing owner lookups to make failed");
            return 0;
        }
    };
    let mut n = 0;
    for r in rows {
        let (Ok(id), Ok(plate), Ok(colour), Ok(status), Ok(at), Ok(failures)) = (
            r.try_get::<String, _>(0),
            r.try_get::<Option<String>, _>(1),
            r.try_get::<String, _>(2),
            r.try_get::<String, _>(3),
            r.try_get::<Option<i64>, _>(4),
            r.try_get::<i64, _>(5),
        ) else {
            continue;
        };
        let Ok(id) = Uuid::parse_str(&id) else {
            continue;
        };
        if status == "error"
            && at.is_some_and(|at| now.saturating_sub(at) < retry_wait_ms(failures))
        {
            continue;
        }
        let from = Start { status, failures };
        match claim(db, id, &from, now).await {
            Ok(true) => {}
            // Another replica's sweeper has it (or it changed since read).
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(%id, error = %e, "claiming an owner lookup failed");
                break;
            }
        }
        let came_to = resolve_one(
            db,
            registry,
            id,
            plate.as_deref(),
            &colour,
            "ingest",
            Some(from),
        )
        .await;
        n += 1;
        if came_to == "error" {
            tracing::info!(
                %id,
                "owner lookup failed again; the other lookups wait for the next pass"
            );
            break;
        }
    }
    n
}

/// Where a lookup started from: the case's owner status and failures in a
/// row when it was read. Its outcome is recorded only on a case still so.
#[derive(Debug, Clone)]
struct Start {
    status: String,
    failures: i64,
}

/// Claims the due lookup of case `id` for this sweeper until `now` +
/// [`LOOKUP_LEASE_MS`]: `false` when another sweeper holds it, or the case
/// is no longer as read.
async fn claim(db: &Db, id: Uuid, from: &Start, now: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE events SET owner_lookup_lease_until = $1 WHERE event_id = $2 \
         AND owner_status = $3 AND owner_lookup_failures = $4 \
         AND (owner_lookup_lease_until IS NULL OR owner_lookup_lease_until <= $5)",
    )
    .bind(now.saturating_add(LOOKUP_LEASE_MS))
    .bind(id.to_string())
    .bind(&from.status)
    .bind(from.failures)
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Starts the sweeper (see the module documentation): at once every
/// pending case, then a pass every [`SWEEP_EVERY`]; after each, the
/// notices still waiting for an owner their case now has.
pub fn spawn_sweeper(db: Db, registry: Arc<dyn Registry>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let n = resolve_pending(&db, registry.as_ref(), 100_000).await;
        if n > 0 {
            tracing::info!(n, "owner lookups left by a previous run, or failed, done");
        }
        late_deliveries(&db).await;
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = now_ms();
            let n = resolve_due(
                &db,
                registry.as_ref(),
                SWEEP_LIMIT,
                now,
                now.saturating_sub(PENDING_GRACE_MS),
            )
            .await;
            if n > 0 {
                tracing::info!(n, "owner lookups retried");
            }
            late_deliveries(&db).await;
        }
    })
}

/// [`crate::notices::outbox::enqueue_found_owners`], logged.
async fn late_deliveries(db: &Db) {
    match crate::notices::outbox::enqueue_found_owners(db, now_ms(), SWEEP_LIMIT).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "notice deliveries written for owners found late"),
        Err(e) => tracing::warn!(error = %e, "writing the deliveries of owners found late failed"),
    }
}

/// Looks the owner up again after a reviewer corrected the plate; the
/// lookup is logged under the reviewer's id. `colour` is the camera's
/// (nobody corrects it): like every lookup's, it is compared with the
/// registration found, never used to pick one.
pub async fn resolve_for(
    db: &Db,
    registry: &dyn Registry,
    event_id: Uuid,
    plate: &str,
    colour: &str,
    actor: &str,
) {
    resolve_one(db, registry, event_id, Some(plate), colour, actor, None).await;
}

/// Looks up the owner of one case and records it; returns the owner
/// status the lookup came to (recorded or not). `from`: where a sweeper's
/// claim found the case; `None`: as it is read now.
async fn resolve_one(
    db: &Db,
    registry: &dyn Registry,
    event_id: Uuid,
    plate: Option<&str>,
    colour: &str,
    actor: &str,
    from: Option<Start>,
) -> &'static str {
    let case = sqlx::query(
        "SELECT vehicle_class, owner_status, owner_lookup_failures FROM events \
         WHERE event_id = $1",
    )
    .bind(event_id.to_string())
    .fetch_optional(db.pool())
    .await;
    let (seen, now_at) = match case {
        Ok(Some(r)) => match (
            r.try_get::<Option<String>, _>(0),
            r.try_get::<String, _>(1),
            r.try_get::<i64, _>(2),
        ) {
            (Ok(seen), Ok(status), Ok(failures)) => (seen, Start { status, failures }),
            _ => return "error",
        },
        Ok(None) => return "unresolved",
        Err(err) => {
            tracing::warn!(%event_id, error = %err, "reading the case to look up failed");
            return "error";
        }
    };
    let from = from.unwrap_or(now_at);
    // By the number alone: the plate colour is the camera's guess, which
    // no person confirms (operators correct the plate and the violation,
    // not the colour), so it never picks between registrations.
    let mut colour_note = None;
    let (status, owner) = match plate {
        Some(plate) => {
            let purpose = Purpose {
                actor: actor.into(),
                reason: "identify the registered owner of a detected violation".into(),
                event_id: Some(event_id),
            };
            match registry.find(plate, &purpose).await {
                Ok(PlateLookup::One(r)) => {
                    if colour != "unknown" && colour != r.vehicle.plate_colour {
                        tracing::info!(%event_id, camera = colour,
                            registered = r.vehicle.plate_colour,
                            "the camera's plate colour differs from the one registration's");
                        colour_note = Some(serde_json::json!({
                            "camera": colour,
                            "registered": r.vehicle.plate_colour,
                        }));
                    }
                    (
                        registration_status(&r.vehicle, seen.as_deref()),
                        Some(r.owner.owner_id),
                    )
                }
                Ok(PlateLookup::Several) => (AMBIGUOUS, None),
                Ok(PlateLookup::NotFound) => ("unresolved", None),
                Err(err) => {
                    tracing::warn!(%event_id, error = %err, "owner lookup failed");
                    ("error", None)
                }
            }
        }
        None => ("unresolved", None),
    };
    // Recorded only if the case is still about the plate looked up: a
    // lookup of the machine read that finishes after a reviewer corrected
    // the plate (or one left over from before a restart) must not put the
    // owner of the misread plate on the case — the notice goes to
    // `owner_id`. The correction's own lookup (or the sweep, which reads
    // the corrected plate) records it instead. Nor if another lookup
    // recorded something since this one started (`from`). An owner set on
    // a confirmed case is never changed: the notice went to that person. A
    // case whose evidence was purged keeps no new owner (retention dropped
    // the link).
    let lookup = Looked {
        status,
        owner,
        plate,
        colour_note,
    };
    match record(db, event_id, &lookup, actor, &from).await {
        Ok(false) => {
            tracing::info!(%event_id, "owner lookup outdated (another lookup was recorded, the case's plate changed, or it is confirmed or purged); not recorded")
        }
        Ok(true) => {}
        Err(err) => tracing::warn!(%event_id, error = %err, "recording owner status failed"),
    }
    status
}

/// What one lookup came to, to record on its case.
struct Looked<'a> {
    /// The owner status.
    status: &'static str,
    /// The registered owner's id, if one registration was found.
    owner: Option<String>,
    /// The plate looked up.
    plate: Option<&'a str>,
    /// The camera's plate colour and the one registration's, when they
    /// differ (for the reviewer; it picked no one).
    colour_note: Option<serde_json::Value>,
}

/// The audit log's actor for owner lookups recorded on a case (the person
/// or process that asked is in the entry's `requested_by`).
pub const LOOKUP_ACTOR: &str = "registry";

/// Records what a lookup of `plate` that started `from` came to on the
/// case (see [`resolve_one`]) and, when it found the owner to tell, gives
/// a notice already written for the case its deliveries, in one
/// transaction; the sweeper's lease on it ends. `false` when the lookup is
/// outdated and nothing was written.
async fn record(
    db: &Db,
    event_id: Uuid,
    lookup: &Looked<'_>,
    actor: &str,
    from: &Start,
) -> Result<bool, crate::db::DbError> {
    let Looked {
        status,
        owner,
        plate,
        colour_note,
    } = lookup;
    let (status, plate) = (*status, *plate);
    let now = now_ms();
    let id = event_id.to_string();
    // The audit head first (as every audited change): the entry and the
    // change commit together, in the order of every other case change.
    let mut tx = crate::audit::begin(db).await?;
    let Some(before) = sqlx::query("SELECT owner_status, owner_id FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(false);
    };
    let (old_status, old_owner): (String, Option<String>) =
        (before.try_get(0)?, before.try_get(1)?);
    let n = sqlx::query(concat!(
        "UPDATE events SET owner_status = $1, owner_id = $2, owner_lookup_at = $5, \
         owner_lookup_lease_until = NULL, \
         revision = revision + CASE WHEN owner_status <> $1 \
         OR COALESCE(owner_id, '') <> COALESCE($2, '') THEN 1 ELSE 0 END, \
         owner_lookup_failures = CASE WHEN $1 = 'error' THEN owner_lookup_failures + 1 ELSE 0 END \
         WHERE event_id = $3 AND COALESCE(",
        case_plate!(),
        ", '') = COALESCE($4, '') AND (confirmed_at IS NULL OR owner_id IS NULL) \
         AND evidence_purged_at IS NULL AND owner_status = $6 AND owner_lookup_failures = $7"
    ))
    .bind(status)
    .bind(owner.as_deref())
    .bind(&id)
    .bind(plate)
    .bind(now)
    .bind(&from.status)
    .bind(from.failures)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    // The owner attached, changed or removed is audited; a status alone
    // moving (pending, error, unresolved) raised the revision only.
    if old_owner != *owner {
        let change = match (&old_owner, owner) {
            (None, Some(_)) => "attached",
            (Some(_), None) => "removed",
            _ => "changed",
        };
        let mut detail = serde_json::json!({
            "plate": plate,
            "owner_status": {"from": old_status, "to": status},
            "owner": change,
            "requested_by": actor,
        });
        if let Some(note) = colour_note {
            detail["plate_colour_differs"] = note.clone();
        }
        crate::audit::append(
            &mut tx,
            now,
            &crate::audit::Who::new(LOOKUP_ACTOR, crate::workflow::Role::System),
            "case.owner_lookup",
            &format!("case:{id}"),
            &detail,
        )
        .await?;
    }
    if status == RESOLVED {
        let d = crate::notices::outbox::enqueue_for_found_owner(&mut tx, &id, now).await?;
        if d > 0 {
            tracing::info!(%event_id, deliveries = d,
                "owner found after the notice was written: its deliveries are enqueued");
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// The owner status of a registration found for a case whose camera saw a
/// `seen` vehicle: [`RESOLVED`], or why a person must look before anyone
/// is fined. A registration whose status is not one of
/// [`ACTIVE_STATUSES`] (deregistered, stolen, expired, cancelled, or
/// anything unknown) is `registration_not_active`. A plate registered to a
/// motorbike on a car (or the other way round) is a misread or a cloned
/// plate, the registered owner possibly innocent: `vehicle_mismatch`. A
/// registry type this cannot read ([`kind::wheels`]: empty, `unknown`, a
/// wording not known) for a vehicle the camera classed is
/// `vehicle_type_unknown`: the check above cannot be made, and a person
/// compares the registration with the stills (the demo registry's invented
/// registrations excepted: they have no type). Confusions within four
/// wheels (car, bus, truck: the detector mixes them) are not a mismatch;
/// a camera class this does not know leaves nothing to check.
pub fn registration_status(v: &Vehicle, seen: Option<&str>) -> &'static str {
    let status = kind::normalise(&v.registration_status);
    if !ACTIVE_STATUSES.contains(&status.as_str()) {
        return "registration_not_active";
    }
    // The demo registry's invented registrations (`FICTITIOUS`) are made
    // up per plate with no type: nothing to compare.
    let Some(seen) = seen.and_then(kind::wheels).filter(|_| status != FICTITIOUS) else {
        return RESOLVED;
    };
    match kind::wheels(&v.vehicle_type) {
        Some(registered) if registered == seen => RESOLVED,
        Some(_) => "vehicle_mismatch",
        None => "vehicle_type_unknown",
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
