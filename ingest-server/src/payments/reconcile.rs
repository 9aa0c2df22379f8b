//! The reconciler: asks the gateway (`querydr`) about payments left
//! `pending` and settles them through [`settle`], the IPN's own path; the
//! same query settles a stale order for [`super::start`].
//!
//! Only `pending` rows are asked about. An order the gateway reports paid
//! at another amount than ours leaves `pending` for `needs_person` (in
//! [`settle`]): it is not asked about again, so it neither fills the
//! reconciler's window nor keeps the case "in progress" for ever; a person
//! settles the money (see `payments` module docs).

use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;
use tokio::task::JoinHandle;

use super::settle::{SettledBy, repair, settle};
use super::{PaymentError, Payments, PendingPayment, QueryAnswer, Settled};
use crate::config::Config;

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Pending payments asked about.
    pub checked: usize,
    /// Found paid (and their cases paid).
    pub paid: usize,
    /// Found failed or cancelled.
    pub failed: usize,
    /// Expired without being paid (unknown at the gateway, not finished,
    /// or failed at another amount): cancelled.
    pub expired: usize,
    /// Still pending (not finished, not expired).
    pub still_pending: usize,
    /// Reported paid at another amount than ours, or money in doubt
    /// (suspected, reversed): moved to `needs_person` (for a person to
    /// refund or apply).
    pub needs_person: usize,
    /// Settled meanwhile by an IPN, or a failure reported at another
    /// amount for an order not yet expired.
    pub skipped: usize,
    /// The gateway could not be asked or answered wrongly.
    pub errors: usize,
    /// Paid payments whose case was paid now.
    pub repaired: usize,
}

/// What asking the gateway about one pending payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// Paid (and its case paid).
    Paid,
    /// Failed or cancelled at the gateway.
    Failed,
    /// Expired, and the gateway says it took no money: cancelled here.
    Expired,
    /// Not finished and not expired.
    StillPending,
    /// The gateway reports it paid at another amount, or money in doubt:
    /// `needs_person`.
    NeedsPerson,
    /// Settled meanwhile by another writer, or a failure reported at
    /// another amount for an order not yet expired.
    Skipped,
}

/// Asks the gateway (`querydr`) about one pending payment and settles it
/// as the IPN would. An expired order is cancelled only on the gateway's
/// word that it took no money (it does not know the order, the order never
/// finished, or it failed at whatever amount); should it report the order
/// paid later after all, [`settle`] applies it. The one place besides
/// [`settle`] that moves a payment out of `pending`: the reconciler and
/// `start` both come here.
pub(super) async fn ask_and_settle(
    p: &Payments,
    pending: &PendingPayment,
    now: i64,
) -> Result<Asked, PaymentError> {
    let answer = p.gateway.query(pending, now).await?;
    let expired = now > pending.expires_at;
    let raw = match answer {
        // Finished at the gateway, one way or the other.
        QueryAnswer::Found(g) if g.transaction_status != "01" => {
            match settle(p, &g, SettledBy::Querydr, now).await? {
                Settled::Paid => return Ok(Asked::Paid),
                Settled::Failed => return Ok(Asked::Failed),
                // Money in doubt (suspected, reversed): held for a person.
                Settled::Held => return Ok(Asked::NeedsPerson),
                // Money taken at another amount: held for a person.
                Settled::WrongAmount if g.money_may_be_taken() => return Ok(Asked::NeedsPerson),
                // A failure at another amount took no money: once expired
                // the order is closed like one never finished (else it
                // would be asked about, and block the case, for ever).
                Settled::WrongAmount if expired => g.raw,
                _ => return Ok(Asked::Skipped),
            }
        }
        _ if !expired => return Ok(Asked::StillPending),
        QueryAnswer::Found(g) => g.raw,
        QueryAnswer::NotFound { raw } => raw,
    };
    // Expired, and never paid (unknown at the gateway, or not finished).
    let done = sqlx::query(
        "UPDATE payments SET state = 'cancelled', updated_at = $1, settled_by = \
         'querydr', note = $2, query_result = $3, queried_at = $1 \
         WHERE txn_ref = $4 AND state = 'pending'",
    )
    .bind(now)
    .bind("expired unpaid")
    .bind(raw.to_string())
    .bind(&pending.txn_ref)
    .execute(p.ingest.db.pool())
    .await?;
    Ok(if done.rows_affected() == 1 {
        Asked::Expired
    } else {
        Asked::Skipped
    })
}

/// Asks the gateway about every payment pending for longer than
/// `reconcile_after_minutes` and settles it as the IPN would; cancels
/// expired orders it does not know; repairs paid payments on unpaid cases.
pub async fn reconcile(p: &Payments, now: i64) -> Result<ReconcileReport, PaymentError> {
    let db = &p.ingest.db;
    let mut report = ReconcileReport::default();
    let rows = sqlx::query(
        "SELECT txn_ref, event_id, amount_vnd, created_at, expires_at FROM payments \
         WHERE state = 'pending' AND created_at <= $1 ORDER BY created_at LIMIT 500",
    )
    .bind(now.saturating_sub(p.settings.reconcile_after_ms))
    .fetch_all(db.pool())
    .await?;
    for r in &rows {
        let pending = PendingPayment {
            txn_ref: r.try_get(0)?,
            event_id: r.try_get(1)?,
            amount_vnd: r.try_get(2)?,
            created_at: r.try_get(3)?,
            expires_at: r.try_get(4)?,
        };
        report.checked += 1;
        match ask_and_settle(p, &pending, now).await {
            Ok(Asked::Paid) => report.paid += 1,
            Ok(Asked::Failed) => report.failed += 1,
            Ok(Asked::Expired) => report.expired += 1,
            Ok(Asked::StillPending) => report.still_pending += 1,
            Ok(Asked::NeedsPerson) => report.needs_person += 1,
            Ok(Asked::Skipped) => report.skipped += 1,
            Err(e) => {
                tracing::warn!(txn_ref = pending.txn_ref, error = %e, "reconciling failed");
                report.errors += 1;
            }
        }
    }
    let unpaid = sqlx::query(
        "SELECT DISTINCT p.event_id FROM payments p JOIN events e ON e.event_id = p.event_id \
         WHERE p.state = 'paid' AND e.state IN ('notice_issued', 'overdue')",
    )
    .fetch_all(db.pool())
    .await?;
    for r in &unpaid {
        let event_id: String = r.try_get(0)?;
        if repair(p, &event_id, now).await? {
            report.repaired += 1;
        }
    }
    if report != ReconcileReport::default() {
        tracing::info!(?report, "payments reconciled");
    }
    Ok(report)
}

/// Runs [`reconcile`] every `reconcile_interval_s` for as long as the
/// server runs (the configuration refuses 0; settings made in code without
/// an interval run none).
pub fn spawn_reconciler(p: Arc<Payments>) -> Option<JoinHandle<()>> {
    let every = p.settings.reconcile_interval?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reconcile(&p, crate::db::now_ms()).await {
                tracing::warn!(error = %e, "payment reconciliation failed");
            }
        }
    }))
}

/// One reconciliation from the command line: opens the server's state as
/// configured and runs [`reconcile`] once, now.
pub async fn reconcile_from_config(cfg: &Config) -> Result<ReconcileReport, PaymentError> {
    let ingestor = crate::app::open(cfg)
        .await
        .map_err(|e| PaymentError::Config(e.to_string()))?;
    let p = Payments::from_config(&cfg.payments, ingestor.context().clone())?
        .ok_or(PaymentError::Disabled)?;
    reconcile(&p, crate::db::now_ms()).await
}
