//! Claiming due deliveries of the outbox so that two server replicas never
//! send the same one at once, recording each outcome exactly once, and the
//! backoff between attempts (moved out of [`super::outbox`], which
//! re-exports them).
//!
//! Claiming is a conditional UPDATE that sets a lease (`lease_owner`,
//! `lease_until`) only if the row is still due and unleased; the outcome
//! is written only by the lease holder (`WHERE lease_owner = me`).
//!
//! A lease must outlast the attempt it covers: one that ran out while its
//! holder was still sending (a slow e-mail relay) lets another replica
//! claim the delivery and send it a second time. The configuration
//! refuses a `lease_s` shorter than the longest channel's time limit plus
//! a margin (`config::MIN_LEASE_S`, from `smtp::SEND_TIMEOUT`).

use sqlx::Row;

use crate::db::{Db, DbError};

/// A delivery this worker holds the lease on.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Row id.
    pub delivery_id: String,
    /// The notice.
    pub notice_id: String,
    /// The case.
    pub event_id: String,
    /// `webpush`, `webhook` or `email`.
    pub channel: String,
    /// Subscription id, partner name, or `owner`.
    pub target: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Sent to the receiver with every attempt.
    pub idempotency_key: String,
    /// The follow-up message it carries (`super::followup`); `None` for
    /// the fine notice itself.
    pub message_id: Option<String>,
}

/// Claims up to `limit` due deliveries for `worker` until `now + lease_ms`.
/// A row another worker claimed first is skipped.
pub async fn claim_due(
    db: &Db,
    worker: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, DbError> {
    let rows = sqlx::query(
        "SELECT delivery_id, notice_id, event_id, channel, target, attempts, idempotency_key, \
         message_id FROM notice_deliveries WHERE state IN ('pending', 'failed') AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    claim_rows(db, worker, now, lease_ms, rows).await
}

/// Takes a lease on each of `rows` (a SELECT of `delivery_id, notice_id,
/// event_id, channel, target, attempts, idempotency_key, message_id` of
/// due deliveries) that is still due and unleased when the conditional
/// UPDATE runs: another replica that took it first wins, and this one
/// skips it.
pub(super) async fn claim_rows(
    db: &Db,
    worker: &str,
    now: i64,
    lease_ms: i64,
    rows: Vec<sqlx::any::AnyRow>,
) -> Result<Vec<Claimed>, DbError> {
    let mut out = Vec::new();
    for r in rows {
        let id: String = r.try_get(0)?;
        let taken = sqlx::query(
            "UPDATE notice_deliveries SET lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1 WHERE delivery_id = $3 AND state IN ('pending', 'failed') \
             AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until <= $4)",
        )
        .bind(worker)
        .bind(now + lease_ms)
        .bind(&id)
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
        if taken != 1 {
            continue;
        }
        let attempts: i64 = r.try_get(5)?;
        out.push(Claimed {
            delivery_id: id,
            notice_id: r.try_get(1)?,
            event_id: r.try_get(2)?,
            channel: r.try_get(3)?,
            target: r.try_get(4)?,
            attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            idempotency_key: r.try_get(6)?,
            message_id: r.try_get(7)?,
        });
    }
    Ok(out)
}

/// Marks a claimed delivery sent at `now` (the attempt's time, the one its
/// text's deadline was counted from). `false` when this worker no longer
/// holds it (its lease ran out and another worker took it over).
pub async fn mark_sent(db: &Db, c: &Claimed, worker: &str, now: i64) -> Result<bool, DbError> {
    let n = sqlx::query(
        "UPDATE notice_deliveries SET state = 'sent', sent_at = $1, last_error = NULL, \
         lease_owner = NULL, lease_until = NULL \
         WHERE delivery_id = $2 AND lease_owner = $3 AND state <> 'sent'",
    )
    .bind(now)
    .bind(&c.delivery_id)
    .bind(worker)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Records a failed attempt: `dead` when `permanent` or out of attempts,
/// else `failed` and due again at `retry_at`.
pub async fn mark_failed(
    db: &Db,
    c: &Claimed,
    worker: &str,
    error: &str,
    dead: bool,
    retry_at: i64,
) -> Result<bool, DbError> {
    let error: String = error.chars().take(500).collect();
    let n = sqlx::query(
        "UPDATE notice_deliveries SET state = $1, next_attempt_at = $2, last_error = $3, \
         lease_owner = NULL, lease_until = NULL \
         WHERE delivery_id = $4 AND lease_owner = $5 AND state <> 'sent'",
    )
    .bind(if dead { "dead" } else { "failed" })
    .bind(retry_at)
    .bind(error)
    .bind(&c.delivery_id)
    .bind(worker)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Marks a claimed delivery `dropped`: not sent, and never to be, because
/// the notice no longer applies to the case (paid, contested, closed);
/// `reason` is kept in `last_error`. `false` when this worker no longer
/// holds it.
pub async fn mark_dropped(
    db: &Db,
    c: &Claimed,
    worker: &str,
    reason: &str,
) -> Result<bool, DbError> {
    let n = sqlx::query(
        "UPDATE notice_deliveries SET state = 'dropped', last_error = $1, \
         lease_owner = NULL, lease_until = NULL \
         WHERE delivery_id = $2 AND lease_owner = $3 AND state <> 'sent'",
    )
    .bind(reason)
    .bind(&c.delivery_id)
    .bind(worker)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The wait before attempt `attempt + 1`: `base · 2^(attempt-1)`, at most
/// `max`, then "equal jitter" (a uniform draw between half of it and all
/// of it, `unit` in [0, 1)), so retries from many deliveries that failed
/// together spread out instead of arriving together again.
pub fn backoff_ms(attempt: u32, base: u64, max: u64, unit: f64) -> u64 {
    let exp = attempt.saturating_sub(1).min(40);
    let full = base.saturating_mul(1u64 << exp).min(max);
    let half = full / 2;
    half + ((full - half) as f64 * unit.clamp(0.0, 1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.0), 500);
        assert_eq!(backoff_ms(1, 1000, 60_000, 1.0), 1000);
        assert_eq!(backoff_ms(2, 1000, 60_000, 1.0), 2000);
        assert_eq!(backoff_ms(3, 1000, 60_000, 0.5), 3000);
        assert_eq!(backoff_ms(30, 1000, 60_000, 1.0), 60_000);
        assert_eq!(backoff_ms(u32::MAX, u64::MAX, u64::MAX, 1.0), u64::MAX);
        for a in 1..20 {
            let lo = backoff_ms(a, 100, 10_000, 0.0);
            let hi = backoff_ms(a, 100, 10_000, 0.999);
            assert!(lo <= hi && hi <= 10_000 && lo >= hi / 2, "{a}: {lo} {hi}");
        }
    }
}
