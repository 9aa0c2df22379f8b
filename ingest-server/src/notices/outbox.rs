//! The notification outbox in the database: writing a notice and its
//! deliveries inside the transaction that confirms the case ([`enqueue`])
//! or, for an owner found only after that, inside the one that records the
//! owner ([`enqueue_for_found_owner`]); claiming due deliveries so that two
//! server replicas never send the same one at once, recording each outcome
//! exactly once, and the backoff between attempts.
//!
//! Why an outbox: the confirmation and "a notice must go out" commit
//! together or not at all, so no confirmed case is ever forgotten by a
//! crash between the two, and sending (slow, fallible network) happens
//! after the commit, retried as long as it takes.
//!
//! The deadline a notice gives is the one enforced: 20 days from the
//! confirmation, moved by each attempt before one gets through to 20 days
//! from that attempt ([`respond_by_at_send`]), the time the case is issued.
//!
//! Claiming is a conditional UPDATE that sets a lease (`lease_owner`,
//! `lease_until`) only if the row is still due and unleased; the outcome
//! is written only by the lease holder (`WHERE lease_owner = me`). A
//! worker that dies mid-send loses its lease after `lease_s`, and another
//! one sends again with the same idempotency key, which every receiver is
//! given to drop the duplicate.

use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};

use crate::db::{Db, DbError};

pub use super::leases::{Claimed, backoff_ms, claim_due, mark_dropped, mark_failed, mark_sent};

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// Notice within 10 days of detection (Circular 73/2024/TT-BCA, Art. 24).
pub const NOTIFY_WITHIN_MS: i64 = 10 * DAY_MS;
/// A warning to the inspection register after 20 days without response.
pub const RESPOND_WITHIN_MS: i64 = 20 * DAY_MS;

/// The deadline to respond to a notice that started its clock at `from`
/// (Unix ms): the last millisecond of the 20th day after it, in Vietnam
/// time. The notice says "until the end of day D" (`text.rs`), so the
/// person has all of that day, not only up to the hour the case was
/// confirmed.
pub fn respond_until(from: i64) -> i64 {
    end_of_vn_day(from.saturating_add(RESPOND_WITHIN_MS))
}

/// The legal deadline for sending the notice of a violation detected at
/// `detected_at`: the last millisecond of the 10th day after it, Vietnam
/// time, counted as the 20 days are (a notice sent in the afternoon of the
/// 10th day is on time).
pub fn notify_until(detected_at: i64) -> i64 {
    end_of_vn_day(detected_at.saturating_add(NOTIFY_WITHIN_MS))
}

/// The first millisecond of the Vietnam day that `t` falls in.
pub fn start_of_vn_day(t: i64) -> i64 {
    end_of_vn_day(t.saturating_sub(DAY_MS)).saturating_add(1)
}

/// The last millisecond of the Vietnam day that `t` (Unix ms) falls in
/// (`t` itself when out of range).
fn end_of_vn_day(t: i64) -> i64 {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000) else {
        return t;
    };
    let Some(next) = at.to_offset(super::text::VN).date().next_day() else {
        return t;
    };
    let midnight = next.midnight().assume_offset(super::text::VN);
    (midnight.unix_timestamp_nanos() / 1_000_000) as i64 - 1
}

/// The actor id under which the notices machinery reads and acts.
pub const ACTOR: &str = "notices";

/// Writes the notice of a case just confirmed and one delivery per usable
/// channel and target, in `tx` (the confirming transaction): each Web Push
/// subscription of the owner, each active partner webhook, and e-mail when
/// the owner has an address. Reading the owner is logged in
/// `registry_access_log`. A case that has a notice already keeps it; a
/// case without a resolved owner (`registry::deliverable_owner`: none
/// found, the lookup pending or failed, or a registration that does not
/// fit the vehicle seen or is not active) gets a notice without
/// deliveries (the 10-day check then shows it); if the owner is found
/// later, [`enqueue_for_found_owner`] adds them. Its `respond_by` (20 days
/// from now) is moved on if the notice goes out later
/// ([`respond_by_at_send`]).
pub async fn enqueue(
    tx: &mut Transaction<'static, Any>,
    event_id: &str,
    now: i64,
) -> Result<(), DbError> {
    let Some(row) = sqlx::query(
        "SELECT e.event_time_ms, e.owner_id, COALESCE(e.reviewed_plate, e.plate_text, ''), \
         o.owner_id, o.national_id, o.email, e.owner_status FROM events e \
         LEFT JOIN owners o ON o.owner_id = e.owner_id WHERE e.event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(());
    };
    let detected_at: i64 = row.try_get(0)?;
    let owner_status: Option<String> = row.try_get(6)?;
    // Only a `resolved` owner is told (`registry::deliverable_owner`, the
    // definition the citizen app shares): a registration that does not
    // fit the vehicle seen, or is no longer active, is not an owner to
    // send a fine to, nor is one not (yet) found: the notice waits for a
    // person (the 10-day check shows it), or for the owner's lookup to
    // succeed ([`enqueue_for_found_owner`]).
    let owner_id = crate::registry::deliverable_owner(owner_status.as_deref(), row.try_get(1)?);
    let plate: String = row.try_get(2)?;
    let owner = OwnerRow {
        found: row.try_get::<Option<String>, _>(3)?.is_some(),
        national_id: row.try_get(4)?,
        email: row.try_get(5)?,
    };

    let notice_id = uuid::Uuid::new_v4().to_string();
    let written = sqlx::query(
        "INSERT INTO notices (notice_id, event_id, owner_id, created_at, detected_at, notify_by, \
         respond_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&notice_id)
    .bind(event_id)
    .bind(owner_id.as_deref())
    .bind(now)
    .bind(detected_at)
    .bind(notify_until(detected_at))
    .bind(respond_until(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if written == 0 || owner_id.is_none() {
        return Ok(());
    }
    // Past the limitation period nobody can be fined: no notice goes out
    // (the confirmation is refused then; this guards every other path).
    if now > crate::workflow::limitation_ends_at(detected_at) {
        tracing::warn!(event_id, "no notice deliveries: past the limitation period");
        return Ok(());
    }
    add_deliveries(tx, &notice_id, None, event_id, &plate, &owner, now).await?;
    Ok(())
}

/// What [`add_deliveries`] reads of the owner: whether our tables hold the
/// owner at all, the national ID (Web Push subscriptions) and the e-mail.
pub(super) struct OwnerRow {
    pub(super) found: bool,
    pub(super) national_id: Option<String>,
    pub(super) email: Option<String>,
}

/// Gives the notice of case `event_id` its deliveries when the case's
/// owner is found after the notice was written without any: the case was
/// confirmed while its lookup was pending or failing, and the sweeper
/// (`registry/resolve.rs`) has now resolved it; called in the transaction
/// that records the owner. Only a notice that names no owner and is not
/// out yet, on a case it still applies to (`super::notice_applies`),
/// whose owner is now one to tell (`registry::deliverable_owner`). The
/// notice is then addressed to that owner, its deadline to respond is
/// moved to 20 days from now if that is later (nobody was told the first
/// one), and it gets the deliveries [`enqueue`] would have written, each
/// `ON CONFLICT DO NOTHING`. The 10-day flag is left as it is: a notice
/// this late stays flagged (`deadlines.rs`). Returns how many deliveries
/// were written.
pub async fn enqueue_for_found_owner(
    tx: &mut Transaction<'static, Any>,
    event_id: &str,
    now: i64,
) -> Result<usize, DbError> {
    let Some(row) = sqlx::query(
        "SELECT n.notice_id, e.state, e.owner_status, e.owner_id, \
         COALESCE(e.reviewed_plate, e.plate_text, ''), o.owner_id, o.national_id, o.email, \
         e.event_time_ms \
         FROM notices n JOIN events e ON e.event_id = n.event_id \
         LEFT JOIN owners o ON o.owner_id = e.owner_id \
         WHERE n.event_id = $1 AND n.owner_id IS NULL AND n.issued_at IS NULL",
    )
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(0);
    };
    let notice_id: String = row.try_get(0)?;
    let state: String = row.try_get(1)?;
    let owner_status: Option<String> = row.try_get(2)?;
    let owner_id = crate::registry::deliverable_owner(owner_status.as_deref(), row.try_get(3)?);
    let within_limitation = now <= crate::workflow::limitation_ends_at(row.try_get(8)?);
    let Some(owner_id) = owner_id.filter(|_| super::notice_applies(&state) && within_limitation)
    else {
        return Ok(0);
    };
    let plate: String = row.try_get(4)?;
    let owner = OwnerRow {
        found: row.try_get::<Option<String>, _>(5)?.is_some(),
        national_id: row.try_get(6)?,
        email: row.try_get(7)?,
    };
    let respond_by = respond_until(now);
    let addressed = sqlx::query(
        "UPDATE notices SET owner_id = $1, \
         respond_by = CASE WHEN respond_by < $2 THEN $2 ELSE respond_by END \
         WHERE notice_id = $3 AND owner_id IS NULL AND issued_at IS NULL",
    )
    .bind(&owner_id)
    .bind(respond_by)
    .bind(&notice_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if addressed == 0 {
        return Ok(0);
    }
    add_deliveries(tx, &notice_id, None, event_id, &plate, &owner, now).await
}

/// [`enqueue_for_found_owner`] for every notice still waiting for an owner
/// whose case now has one to tell (at most `limit`), each in its own
/// transaction: what a stop between the two missed, and the notices left
/// without deliveries before owners found late were given theirs. Run by
/// the registry sweeper (`registry::spawn_sweeper`). Returns how many
/// deliveries were written.
pub async fn enqueue_found_owners(db: &Db, now: i64, limit: i64) -> Result<usize, DbError> {
    let rows = sqlx::query(
        "SELECT n.event_id FROM notices n JOIN events e ON e.event_id = n.event_id \
         WHERE n.owner_id IS NULL AND n.issued_at IS NULL \
         AND e.owner_status = 'resolved' AND e.owner_id IS NOT NULL \
         AND e.state IN ('confirmed', 'notice_issued', 'overdue') \
         ORDER BY n.created_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut n = 0;
    for r in rows {
        let event_id: String = r.try_get(0)?;
        let mut tx = db.begin_write().await?;
        n += enqueue_for_found_owner(&mut tx, &event_id, now).await?;
        tx.commit().await?;
    }
    Ok(n)
}

/// Gives the notices that are addressed but not yet out (case still
/// `confirmed`, within the limitation period) the deliveries [`enqueue`]
/// would write now: for a new Web Push subscription of the owner whose
/// national ID is `national_id`, or (`None`) for every owner when a
/// channel was added (`replicas.rs`). Each notice in its own transaction,
/// each delivery `ON CONFLICT DO NOTHING`, at most `limit` notices, oldest
/// first. A notice no channel reached (`paper::needing_paper`) leaves that
/// list once it has a delivery. Returns how many deliveries were written.
pub async fn enqueue_unissued(
    db: &Db,
    national_id: Option<&str>,
    now: i64,
    limit: i64,
) -> Result<usize, DbError> {
    let sql = format!(
        "SELECT n.notice_id, n.event_id, COALESCE(e.reviewed_plate, e.plate_text, ''), \
         o.national_id, o.email, e.event_time_ms FROM notices n \
         JOIN events e ON e.event_id = n.event_id JOIN owners o ON o.owner_id = n.owner_id \
         WHERE n.issued_at IS NULL AND e.state = 'confirmed' AND e.owner_id = n.owner_id \
         AND {} ORDER BY n.created_at LIMIT $2",
        if national_id.is_some() {
            "o.national_id = $1"
        } else {
            "$1 = ''"
        }
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(national_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let mut n = 0;
    for r in rows {
        let event_ms: i64 = r.try_get(5)?;
        if now > crate::workflow::limitation_ends_at(event_ms) {
            continue;
        }
        let (notice_id, event_id, plate): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let owner = OwnerRow {
            found: true,
            national_id: r.try_get(3)?,
            email: r.try_get(4)?,
        };
        let mut tx = db.begin_write().await?;
        n += add_deliveries(&mut tx, &notice_id, None, &event_id, &plate, &owner, now).await?;
        tx.commit().await?;
    }
    Ok(n)
}

/// Writes one delivery per usable channel and target of a notice whose
/// owner is `owner` (see [`enqueue`]), or of a follow-up `message` of it
/// (`super::followup`), logging the read of the owner's data; a delivery
/// already there is left as it is. Returns how many were written.
pub(super) async fn add_deliveries(
    tx: &mut Transaction<'static, Any>,
    notice_id: &str,
    message: Option<&str>,
    event_id: &str,
    plate: &str,
    owner: &OwnerRow,
    now: i64,
) -> Result<usize, DbError> {
    log_owner_read(
        tx,
        now,
        plate,
        event_id,
        if message.is_some() {
            "choose the channels of a message about the fine (push subscriptions, e-mail present)"
        } else {
            "choose the channels of the fine notice (push subscriptions, e-mail present)"
        },
        if owner.found { "found" } else { "not_found" },
    )
    .await?;

    // Channels some live replica can send (`replicas.rs`), not the last
    // replica to start's own list.
    let active = super::replicas::active_channels(tx).await?;
    let mut targets: Vec<(&str, String)> = Vec::new();
    if let (true, Some(nid)) = (active.iter().any(|c| c == "webpush"), &owner.national_id) {
        let subs = sqlx::query(
            "SELECT subscription_id FROM push_subscriptions WHERE national_id = $1 \
             ORDER BY created_at, subscription_id",
        )
        .bind(nid)
        .fetch_all(&mut **tx)
        .await?;
        for s in subs {
            targets.push(("webpush", s.try_get(0)?));
        }
    }
    if owner.found {
        let mut partners: Vec<&str> = active
            .iter()
            .filter_map(|c| c.strip_prefix("webhook:"))
            .collect();
        partners.sort_unstable();
        for p in partners {
            targets.push(("webhook", p.to_string()));
        }
    }
    let has_email = owner.email.as_deref().is_some_and(|e| !e.trim().is_empty());
    if has_email && active.iter().any(|c| c == "email") {
        targets.push(("email", "owner".to_string()));
    }
    let mut written = 0;
    for (channel, target) in targets {
        written += sqlx::query(
            "INSERT INTO notice_deliveries (delivery_id, notice_id, event_id, channel, target, \
             state, attempts, next_attempt_at, idempotency_key, created_at, message_id) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $6, $8) ON CONFLICT DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(notice_id)
        .bind(event_id)
        .bind(channel)
        .bind(&target)
        .bind(now)
        .bind(idempotency_key(
            message.unwrap_or(notice_id),
            channel,
            &target,
        ))
        .bind(message)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(usize::try_from(written).unwrap_or(usize::MAX))
}

/// The idempotency key of one delivery: stable for the notice, channel and
/// target, 32 hex digits.
pub fn idempotency_key(notice_id: &str, channel: &str, target: &str) -> String {
    let d = Sha256::digest(format!("{notice_id}\n{channel}\n{target}").as_bytes());
    hex::encode(&d[..16])
}

/// Records a read of owner data for a notice in `registry_access_log`.
async fn log_owner_read(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    plate: &str,
    event_id: &str,
    purpose: &str,
    outcome: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO registry_access_log (id, at, actor, plate, purpose, event_id, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(now)
    .bind(ACTOR)
    .bind(plate)
    .bind(purpose)
    .bind(event_id)
    .bind(outcome)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Before an attempt renders the text: moves the notice's deadline to 20
/// days from `now` ([`respond_until`]; `now` is also the time the case is
/// issued at if this attempt is the first through) when later, while no
/// delivery is sent. So the text states what `deadlines::effective_deadline`
/// enforces and the app shows, not a date counted from a confirmation days
/// earlier; once one is sent the date is fixed for every channel and retry.
/// (An attempt that arrived unacknowledged may have stated an earlier
/// date, never a later one than enforced.)
pub async fn respond_by_at_send(db: &Db, event_id: &str, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE notices SET respond_by = $1 WHERE event_id = $2 AND issued_at IS NULL \
         AND respond_by < $1 AND NOT EXISTS (SELECT 1 FROM notice_deliveries d \
         WHERE d.notice_id = notices.notice_id AND d.state = 'sent')",
    )
    .bind(respond_until(now))
    .bind(event_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// [`respond_by_at_send`] for police's answer to a contest
/// (`followup::CONTEST_REJECTED`): before an attempt renders it, its new
/// deadline moves to 20 days from `now` when later, while none of its
/// deliveries is sent — the 20 days run from when the answer reached the
/// owner (`deadlines::held_to`), and the text says so, not a date counted
/// from an uphold days earlier.
pub async fn answer_respond_by_at_send(db: &Db, message_id: &str, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE notice_messages SET respond_by = $1 WHERE message_id = $2 AND kind = $3 \
         AND respond_by < $1 AND NOT EXISTS (SELECT 1 FROM notice_deliveries d \
         WHERE d.message_id = notice_messages.message_id AND d.state = 'sent')",
    )
    .bind(respond_until(now))
    .bind(message_id)
    .bind(super::followup::CONTEST_REJECTED)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Notices with a sent delivery but no `issued_at` (their worker stopped
/// between sending and recording the case's move): (event id, channel,
/// when the first was sent — the time to issue the case at, so its
/// deadline is the one the text stated).
pub async fn sent_not_issued(
    db: &Db,
    limit: i64,
) -> Result<Vec<(String, String, Option<i64>)>, DbError> {
    let rows = sqlx::query(
        "SELECT n.event_id, MIN(d.channel), MIN(d.sent_at) FROM notices n \
         JOIN notice_deliveries d ON d.notice_id = n.notice_id \
         WHERE d.state = 'sent' AND n.issued_at IS NULL GROUP BY n.event_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Records the notice issued (once: the first channel that got through).
pub async fn record_issued(
    db: &Db,
    event_id: &str,
    channel: &str,
    now: i64,
) -> Result<bool, DbError> {
    let n = sqlx::query(
        "UPDATE notices SET issued_at = $1, issued_via = $2 \
         WHERE event_id = $3 AND issued_at IS NULL",
    )
    .bind(now)
    .bind(channel)
    .bind(event_id)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_stable_and_distinct() {
        let a = idempotency_key("n1", "webhook", "vneid");
        assert_eq!(a, idempotency_key("n1", "webhook", "vneid"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, idempotency_key("n1", "webhook", "ihanoi"));
        assert_ne!(a, idempotency_key("n2", "webhook", "vneid"));
    }

    #[test]
    fn the_deadline_is_the_end_of_the_20th_day_in_vietnam() {
        let vn = |s: &str| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .unix_timestamp()
                * 1000
        };
        // Confirmed at 10:00 on 1 March (Vietnam): until the end of 21 March.
        assert_eq!(
            respond_until(vn("2026-03-01T10:00:00+07:00")),
            vn("2026-03-22T00:00:00+07:00") - 1
        );
        // 23:30 in Vietnam is 16:30 UTC the same day: the Vietnamese date
        // counts, not the UTC one.
        assert_eq!(
            respond_until(vn("2026-03-01T23:30:00+07:00")),
            vn("2026-03-22T00:00:00+07:00") - 1
        );
        // 00:10 in Vietnam is the previous day in UTC.
        assert_eq!(
            respond_until(vn("2026-03-02T00:10:00+07:00")),
            vn("2026-03-23T00:00:00+07:00") - 1
        );
    }
}
