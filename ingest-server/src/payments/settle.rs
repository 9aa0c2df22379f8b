//! Settling a payment from what the gateway says — the one path shared by
//! the IPN and the reconciler — and the reconciler itself.
//!
//! The checks run in the order VNPay prescribes for the IPN (the signature
//! was checked by the gateway adapter before): the order exists, the amount
//! equals ours, the order is still pending; then the payment row changes
//! with a conditional UPDATE (`… WHERE state = {as read}`), so of two
//! notifications for one order (a retry, two replicas) exactly one settles
//! it. When the UPDATE finds the row changed, it is read and judged again:
//! the change may be a cancel (the reconciler's, or `start`'s, both after
//! a status query), and a success reported for a cancelled order is a
//! late payment, not "already confirmed". A paid payment then moves its
//! case to `paid` through [`Reviewer::act`] as the system; the two writes
//! are two transactions, so a crash between them leaves a paid payment on
//! an unpaid case, which the next notification for it or the reconciler
//! repairs.
//!
//! Money the gateway took is never ignored: an order closed here (expired
//! and cancelled) that the gateway then reports paid is applied; money that
//! cannot be applied (the case paid by another order, contested, cancelled)
//! is marked on the payment (`note`) and in the audit log
//! (`payment.needs_person`) for a person to refund or apply; so is a signed
//! success report for another amount than the order's (answered 04).

use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;
use tokio::task::JoinHandle;

use super::{GatewayReport, PaymentError, Payments, PendingPayment, QueryAnswer};
use crate::config::Config;
use crate::review::{ReviewError, Reviewer};
use crate::workflow::{Action, Actor, CaseState, Role};

/// How a settlement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Paid now, and the case moved to paid.
    Paid,
    /// Recorded as failed or cancelled now.
    Failed,
    /// Settled before (or the case was paid by another attempt).
    AlreadyConfirmed,
    /// No such order.
    OrderNotFound,
    /// The amount is not ours; nothing changed.
    WrongAmount,
}

/// What settled a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettledBy {
    /// The gateway's notification.
    Ipn,
    /// The reconciler's status query.
    Querydr,
}

impl SettledBy {
    fn as_str(self) -> &'static str {
        match self {
            SettledBy::Ipn => "ipn",
            SettledBy::Querydr => "querydr",
        }
    }
}

/// Settles the payment `report` is about.
///
/// The row is read, judged, and written with `… WHERE state = {what was
/// read}`. Three writers move a row out of `pending`: a notification (or
/// the reconciler's status query) through here, the reconciler's cancel of
/// an expired order, and `start`'s cancel of an order the gateway said it
/// never took. When the write finds the row changed (0 rows), it is read
/// and judged again: a row another notification settled answers 02, but a
/// row cancelled meanwhile that the gateway reports paid goes through the
/// late-payment path like any order closed here and paid at the gateway.
/// Rows only move forward (pending → settled, cancelled or failed → paid),
/// so a few rounds settle it; should they not, the answer is an error (99)
/// and the gateway asks again.
pub async fn settle(
    p: &Payments,
    report: &GatewayReport,
    by: SettledBy,
    now: i64,
) -> Result<Settled, PaymentError> {
    const ROUNDS: usize = 4;
    for _ in 0..ROUNDS {
        match settle_once(p, report, by, now).await? {
            Round::Done(s) => return Ok(s),
            Round::Written {
                event_id,
                was,
                now_state,
            } => {
                return after_write(p, report, by, &event_id, &was, now_state, now).await;
            }
            Round::Changed(was) => tracing::info!(
                txn_ref = report.txn_ref,
                was,
                by = by.as_str(),
                "payment changed while it was settled; reading it again"
            ),
        }
    }
    Err(PaymentError::Contended(report.txn_ref.clone()))
}

/// One round of [`settle`].
enum Round {
    /// Decided without writing.
    Done(Settled),
    /// The row moved from `was` to `now_state`.
    Written {
        event_id: String,
        was: String,
        now_state: &'static str,
    },
    /// Another writer changed the row (it was in this state when read)
    /// before it was written.
    Changed(String),
}

async fn settle_once(
    p: &Payments,
    report: &GatewayReport,
    by: SettledBy,
    now: i64,
) -> Result<Round, PaymentError> {
    let db = &p.ingest.db;
    let row = sqlx::query("SELECT event_id, amount_vnd, state FROM payments WHERE txn_ref = $1")
        .bind(&report.txn_ref)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else {
        tracing::warn!(
            txn_ref = report.txn_ref,
            by = by.as_str(),
            "gateway names an unknown order"
        );
        return Ok(Round::Done(Settled::OrderNotFound));
    };
    let event_id: String = row.try_get(0)?;
    let amount: i64 = row.try_get(1)?;
    let state: String = row.try_get(2)?;
    if report.amount_vnd != Some(amount) {
        let theirs = report
            .raw
            .get("vnp_Amount")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        tracing::warn!(
            txn_ref = report.txn_ref,
            ours = amount,
            theirs,
            by = by.as_str(),
            "gateway amount differs; nothing paid"
        );
        // A signed report that money was taken, for another amount: the
        // order is not paid with it, but the money is not ignored either.
        if report.succeeded() {
            needs_a_person(
                p,
                &report.txn_ref,
                &event_id,
                &format!(
                    "the gateway reports a payment of vnp_Amount {theirs} (VND × 100) for this \
                     order of {amount} VND: check with the gateway what was taken, refund it \
                     or apply it (a status query that reports {amount} VND settles the order)"
                ),
                now,
            )
            .await?;
        }
        return Ok(Round::Done(Settled::WrongAmount));
    }
    // An order closed here (expired and cancelled by the reconciler, or a
    // failure reported first) that the gateway now reports paid: the money
    // was taken (the person was still at the bank's step when the order
    // expired here), so it is applied like any payment, not ignored.
    let late = matches!(state.as_str(), "cancelled" | "failed") && report.succeeded();
    if state != "pending" && !late {
        if state == "paid" {
            repair(p, &event_id, now).await?;
        }
        return Ok(Round::Done(Settled::AlreadyConfirmed));
    }
    let new_state = if report.succeeded() {
        "paid"
    } else if report.response_code == "24" {
        "cancelled"
    } else {
        "failed"
    };
    let (raw_col, at_col) = match by {
        SettledBy::Ipn => ("ipn_params", "ipn_at"),
        SettledBy::Querydr => ("query_result", "queried_at"),
    };
    let sql = format!(
        "UPDATE payments SET state = $1, updated_at = $2, response_code = $3, \
         transaction_status = $4, transaction_no = $5, bank_code = $6, bank_tran_no = $7, \
         pay_date = $8, settled_by = $9, {raw_col} = $10, {at_col} = $2, \
         note = COALESCE($12, note) \
         WHERE txn_ref = $11 AND state = $13"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(new_state)
        .bind(now)
        // A status query's code is the query's, not the payment's.
        .bind(Some(report.response_code.as_str()).filter(|s| !s.is_empty() && by == SettledBy::Ipn))
        .bind(Some(report.transaction_status.as_str()).filter(|s| !s.is_empty()))
        .bind(report.transaction_no.as_deref())
        .bind(report.bank_code.as_deref())
        .bind(report.bank_tran_no.as_deref())
        .bind(report.pay_date.as_deref())
        .bind(by.as_str())
        .bind(report.raw.to_string())
        .bind(&report.txn_ref)
        .bind(late.then(|| format!("paid at the gateway after the order was {state} here")))
        .bind(&state)
        .execute(db.pool())
        .await?;
    if done.rows_affected() != 1 {
        // Another writer (a notification, a cancel) changed it between our
        // read and write: judge it again as it is now.
        return Ok(Round::Changed(state));
    }
    Ok(Round::Written {
        event_id,
        was: state,
        now_state: new_state,
    })
}

/// After the payment row was written: logs it and, when paid, pays the
/// case.
async fn after_write(
    p: &Payments,
    report: &GatewayReport,
    by: SettledBy,
    event_id: &str,
    was: &str,
    new_state: &'static str,
    now: i64,
) -> Result<Settled, PaymentError> {
    tracing::info!(
        txn_ref = report.txn_ref,
        event_id,
        state = new_state,
        was,
        response_code = report.response_code,
        transaction_status = report.transaction_status,
        by = by.as_str(),
        "payment settled"
    );
    if new_state != "paid" {
        return Ok(Settled::Failed);
    }
    match pay_case(p, event_id, now).await? {
        CaseOutcome::Paid => Ok(Settled::Paid),
        CaseOutcome::AlreadyPaid => {
            needs_a_person(
                p,
                &report.txn_ref,
                event_id,
                "the case was already paid by another payment: refund this one",
                now,
            )
            .await?;
            Ok(Settled::AlreadyConfirmed)
        }
        CaseOutcome::NotPayable(case_state) => {
            needs_a_person(
                p,
                &report.txn_ref,
                event_id,
                &format!(
                    "money received while the case was {case_state}: apply it if the fine \
                     stands (the reconciler does once the case is payable again), refund it if not"
                ),
                now,
            )
            .await?;
            // The money was taken: the gateway must not be told otherwise.
            Ok(Settled::Paid)
        }
    }
}

/// Records on the payment, and in the audit log, that money was received
/// that could not be applied to its case, so a person refunds or applies
/// it (the log line alone was all there was). Once per payment and reason:
/// the gateway repeating its notification, or the reconciler asking again,
/// adds nothing.
async fn needs_a_person(
    p: &Payments,
    txn_ref: &str,
    event_id: &str,
    why: &str,
    now: i64,
) -> Result<(), PaymentError> {
    tracing::error!(txn_ref, event_id, why, "payment needs a person");
    let line = format!("needs a person: {why}");
    let mut tx = crate::audit::begin(&p.ingest.db).await?;
    let noted = sqlx::query(
        "UPDATE payments SET note = CASE WHEN note IS NULL THEN $1 ELSE note || '; ' || $1 END, \
         updated_at = $2 WHERE txn_ref = $3 AND (note IS NULL OR note NOT LIKE ('%' || $1 || '%'))",
    )
    .bind(&line)
    .bind(now)
    .bind(txn_ref)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if noted == 1 {
        crate::audit::append(
            &mut tx,
            now,
            &crate::audit::Who::new(format!("payments:{}", p.gateway.name()), Role::System),
            "payment.needs_person",
            &format!("case:{event_id}"),
            &serde_json::json!({"txn_ref": txn_ref, "why": why}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

enum CaseOutcome {
    Paid,
    AlreadyPaid,
    NotPayable(String),
}

/// Moves the case to paid through the reviewer, as the system.
async fn pay_case(p: &Payments, event_id: &str, now: i64) -> Result<CaseOutcome, PaymentError> {
    let ctx = &p.ingest;
    let reviewer = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let actor = Actor {
        id: format!("payments:{}", p.gateway.name()),
        role: Role::System,
    };
    let mut tries = 0;
    loop {
        match reviewer.act(event_id, &Action::Pay, &actor, "", now).await {
            Ok(_) => {
                // A warning to the inspection register for this case (it
                // was marked overdue) no longer stands. Should this fail,
                // the next deadline check withdraws it.
                if let Err(e) =
                    crate::notices::deadlines::withdraw_paid(&ctx.db, event_id, now).await
                {
                    tracing::warn!(event_id, error = %e, "withdrawing the inspection warning failed");
                }
                return Ok(CaseOutcome::Paid);
            }
            Err(ReviewError::Conflict) if tries < 3 => tries += 1,
            Err(ReviewError::Refused(_)) => {
                let state: String = sqlx::query("SELECT state FROM events WHERE event_id = $1")
                    .bind(event_id)
                    .fetch_one(ctx.db.pool())
                    .await?
                    .try_get(0)?;
                return Ok(if state == CaseState::Paid.as_str() {
                    CaseOutcome::AlreadyPaid
                } else {
                    CaseOutcome::NotPayable(state)
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A paid payment on a case still waiting for it: pay the case.
async fn repair(p: &Payments, event_id: &str, now: i64) -> Result<bool, PaymentError> {
    let state: Option<String> = sqlx::query("SELECT state FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(p.ingest.db.pool())
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let waiting = matches!(
        state.as_deref().and_then(CaseState::parse),
        Some(CaseState::NoticeIssued | CaseState::Overdue)
    );
    if !waiting {
        return Ok(false);
    }
    tracing::warn!(
        event_id,
        "a paid payment's case was not paid; paying it now"
    );
    Ok(matches!(
        pay_case(p, event_id, now).await?,
        CaseOutcome::Paid
    ))
}

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Pending payments asked about.
    pub checked: usize,
    /// Found paid (and their cases paid).
    pub paid: usize,
    /// Found failed or cancelled.
    pub failed: usize,
    /// Expired without being paid (unknown at the gateway or not
    /// finished): cancelled.
    pub expired: usize,
    /// Still pending (not finished, not expired).
    pub still_pending: usize,
    /// Settled meanwhile by an IPN, or the gateway's amount differs.
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
    /// Settled meanwhile by another writer, or the gateway's amount
    /// differs.
    Skipped,
}

/// Asks the gateway (`querydr`) about one pending payment and settles it
/// as the IPN would. An expired order is cancelled only on the gateway's
/// word that it took no money (it does not know the order, or the order
/// never finished); should it report the order paid later after all,
/// [`settle`] applies it. The one place besides [`settle`] that moves a
/// payment out of `pending`: the reconciler and `start` both come here.
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
            return Ok(match settle(p, &g, SettledBy::Querydr, now).await? {
                Settled::Paid => Asked::Paid,
                Settled::Failed => Asked::Failed,
                _ => Asked::Skipped,
            });
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
