//! Settling a payment from what the gateway says — the one path shared by
//! the IPN and the reconciler (`reconcile.rs`).
//!
//! The checks run in the order VNPay prescribes for the IPN (the signature
//! was checked by the gateway adapter before): the order exists, the amount
//! equals ours, the order is still pending; then the payment row changes
//! with a conditional UPDATE (`… WHERE state = {as read}`), so of two
//! notifications for one order (a retry, two replicas) exactly one settles
//! it. When the UPDATE finds the row changed, it is read and judged again:
//! the change may be a cancel (the reconciler's, or `start`'s, both after
//! a status query), and a success reported for a cancelled order is a
//! late payment, not "already confirmed". A paid payment moves its case to
//! `paid` through [`Reviewer::pay_in`] as the system, in the same
//! transaction as the payment's own change (opened under the case lock,
//! `audit::begin`): no other writer ever sees the payment paid and its case
//! unpaid, so the reconciler's repair (or a repeated notification) cannot
//! pay the case in between and leave this payment looking like a second
//! one. A paid payment on an unpaid case still happens (a person setting a
//! held order `paid`); the reconciler and the next notification repair it,
//! naming the payment they apply. The case's `pay` transition names the
//! payment that paid it (`detail.txn_ref`): a payment that finds the case
//! paid by itself is a success, only one that finds it paid by another
//! payment is money to refund.
//!
//! Money the gateway took is never ignored: an order closed here (expired
//! and cancelled) that the gateway then reports paid is applied; money that
//! cannot be applied (the case paid by another order, contested, cancelled)
//! is marked on the payment (`note`) and in the audit log
//! (`payment.needs_person`) for a person to refund or apply. A signed
//! success report for another amount than the order's (answered 04) is
//! noted so too, and the order leaves `pending` (or `cancelled`/`failed`)
//! for `needs_person`: money was taken, and nothing here can tell which
//! amount is right, so no IPN or status query settles it any more, the
//! reconciler stops asking about it, and `start` refuses a new order for
//! the case until a person has refunded or applied the money. A report that
//! is no success yet says money may have been taken (VNPay's `07`, money
//! deducted but the transaction suspected; transaction status `04`, a
//! reversal: the bank took it, VNPay did not complete it) is held the same
//! way ([`Settled::Held`], answered 00): recorded as a failure, the return
//! page would invite the citizen to pay the fine a second time.

use sqlx::Row;

use super::{GatewayReport, NEEDS_PERSON, PaymentError, Payments};
use crate::review::{ReviewError, Reviewer};
use crate::workflow::{Actor, CaseState, Role};

/// How a settlement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Paid now, and the case moved to paid.
    Paid,
    /// Recorded as failed or cancelled now.
    Failed,
    /// Settled before (or the case was paid by another attempt, or the
    /// order is held for a person).
    AlreadyConfirmed,
    /// No such order.
    OrderNotFound,
    /// The amount is not ours: nothing paid. A success at that amount
    /// moved the order to `needs_person` (or found it there).
    WrongAmount,
    /// Money in doubt ([`GatewayReport::money_in_doubt`]): not paid, not
    /// failed; the order moved to `needs_person` for a person.
    Held,
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
    /// Decided (and written, if anything was to be written).
    Done(Settled),
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
        // The order leaves `pending` (or closed here) for `needs_person`,
        // so it is not asked about, nor blocks the case, for ever; a paid
        // order keeps its state (the note says what came).
        if report.money_may_be_taken() {
            let hold = (!matches!(state.as_str(), "paid" | NEEDS_PERSON)).then(|| Hold {
                from: &state,
                report,
                by,
            });
            let why = format!(
                "the gateway reports a payment of vnp_Amount {theirs} (VND × 100) for this \
                 order of {amount} VND: check with the gateway what was taken, then refund it \
                 (set the payment `cancelled`) or apply it (set it `paid`: the reconciler \
                 pays the case)"
            );
            if !needs_a_person(p, &report.txn_ref, &event_id, &why, hold, now).await? {
                return Ok(Round::Changed(state));
            }
        }
        return Ok(Round::Done(Settled::WrongAmount));
    }
    // An order closed here (expired and cancelled by the reconciler, or a
    // failure reported first) that the gateway now reports paid: the money
    // was taken (the person was still at the bank's step when the order
    // expired here), so it is applied like any payment, not ignored.
    let late = matches!(state.as_str(), "cancelled" | "failed") && report.succeeded();
    if report.money_in_doubt() {
        return in_doubt(p, report, by, &event_id, &state, amount, now).await;
    }
    if state != "pending" && !late {
        if state == "paid" {
            repair(p, &event_id, now).await?;
        }
        // Held for a person after a report at another amount: a later one
        // at our amount is for that person to weigh, not applied here.
        if state == NEEDS_PERSON && report.succeeded() {
            needs_a_person(
                p,
                &report.txn_ref,
                &event_id,
                &format!(
                    "the gateway later reported this order paid at its own amount of {amount} \
                     VND ({})",
                    by.as_str()
                ),
                None,
                now,
            )
            .await?;
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
    let note = late.then(|| format!("paid at the gateway after the order was {state} here"));
    if new_state != "paid" {
        let done = settlement(report, by, new_state, &state, note, now)
            .execute(db.pool())
            .await?;
        if done.rows_affected() != 1 {
            // Another writer (a notification, a cancel) changed it between
            // our read and write: judge it again as it is now.
            return Ok(Round::Changed(state));
        }
        logged(report, by, &event_id, &state, new_state);
        return Ok(Round::Done(Settled::Failed));
    }
    // Paid: the payment and its case change in one transaction, under the
    // case lock.
    let mut tx = crate::audit::begin(db).await?;
    let done = settlement(report, by, new_state, &state, note, now)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() != 1 {
        // Nothing of ours was written; committed rather than rolled back,
        // so whatever else the statement set off stays as it would
        // outside this transaction (the SQLite test stages the racing
        // cancel with a trigger).
        tx.commit().await?;
        return Ok(Round::Changed(state));
    }
    logged(report, by, &event_id, &state, new_state);
    let outcome = pay_case_in(p, &mut tx, &event_id, &report.txn_ref, now).await?;
    let settled = match &outcome {
        CaseOutcome::Paid => Settled::Paid,
        // Paid with this very payment already (a repair that applied it):
        // a success, nothing to refund.
        CaseOutcome::AlreadyPaid { by_this: true } => Settled::Paid,
        CaseOutcome::AlreadyPaid { by_this: false } => {
            note_in(
                p,
                &mut tx,
                &report.txn_ref,
                &event_id,
                "the case was already paid by another payment: refund this one",
                now,
            )
            .await?;
            Settled::AlreadyConfirmed
        }
        CaseOutcome::NotPayable(case_state) => {
            note_in(
                p,
                &mut tx,
                &report.txn_ref,
                &event_id,
                &format!(
                    "money received while the case was {case_state}: apply it if the fine \
                     stands (the reconciler does once the case is payable again), refund it if not"
                ),
                now,
            )
            .await?;
            // The money was taken: the gateway must not be told otherwise.
            Settled::Paid
        }
    };
    tx.commit().await?;
    if matches!(outcome, CaseOutcome::Paid) {
        case_paid(p, &event_id, now).await;
    }
    Ok(Round::Done(settled))
}

/// A report of money in doubt for an order at our amount: an order not
/// settled yet (pending, or closed here) moves to `needs_person` with a
/// note; one already paid or held keeps its state, and the report is noted
/// for the person (a paid order reported reversed may be money to return).
async fn in_doubt(
    p: &Payments,
    report: &GatewayReport,
    by: SettledBy,
    event_id: &str,
    state: &str,
    amount: i64,
    now: i64,
) -> Result<Round, PaymentError> {
    let why = format!(
        "the gateway reports vnp_ResponseCode {} / vnp_TransactionStatus {} ({}) for this \
         order of {amount} VND: money may have been taken but the payment did not complete; \
         check with the gateway, then refund it (set the payment `cancelled`) or apply it \
         (set it `paid`: the reconciler pays the case)",
        report.response_code,
        report.transaction_status,
        by.as_str()
    );
    let open = matches!(state, "pending" | "cancelled" | "failed");
    let hold = open.then_some(Hold {
        from: state,
        report,
        by,
    });
    if !needs_a_person(p, &report.txn_ref, event_id, &why, hold, now).await? {
        return Ok(Round::Changed(state.to_owned()));
    }
    Ok(Round::Done(if open {
        Settled::Held
    } else {
        Settled::AlreadyConfirmed
    }))
}

/// The conditional UPDATE that records what the gateway said about an
/// order and moves it from `was` to `new_state` (0 rows: another writer
/// changed it first); `note`, when given, replaces the note.
fn settlement<'q>(
    report: &'q GatewayReport,
    by: SettledBy,
    new_state: &'q str,
    was: &'q str,
    note: Option<String>,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
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
    sqlx::query(sqlx::AssertSqlSafe(sql))
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
        .bind(note)
        .bind(was)
}

/// Logs a payment row written.
fn logged(report: &GatewayReport, by: SettledBy, event_id: &str, was: &str, new_state: &str) {
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
}

/// An order to move to `needs_person` with the note: from the state it
/// was read in, recording what the gateway reported.
struct Hold<'a> {
    from: &'a str,
    report: &'a GatewayReport,
    by: SettledBy,
}

/// Records on the payment, and in the audit log, that money was received
/// that could not be applied to its case, so a person refunds or applies
/// it (the log line alone was all there was). Once per payment and reason:
/// the gateway repeating its notification, or the reconciler asking again,
/// adds nothing. With `hold`, the order also moves to `needs_person` in
/// the same transaction; `false` (nothing written) when another writer
/// changed it first.
async fn needs_a_person(
    p: &Payments,
    txn_ref: &str,
    event_id: &str,
    why: &str,
    hold: Option<Hold<'_>>,
    now: i64,
) -> Result<bool, PaymentError> {
    let mut tx = crate::audit::begin(&p.ingest.db).await?;
    if let Some(h) = hold {
        let moved = settlement(h.report, h.by, NEEDS_PERSON, h.from, None, now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        tracing::warn!(txn_ref, event_id, was = h.from, "payment held for a person");
    }
    note_in(p, &mut tx, txn_ref, event_id, why, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// [`needs_a_person`]'s note and audit entry, inside `tx` (opened by
/// `audit::begin`).
async fn note_in(
    p: &Payments,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    txn_ref: &str,
    event_id: &str,
    why: &str,
    now: i64,
) -> Result<(), PaymentError> {
    let line = format!("needs a person: {why}");
    tracing::error!(txn_ref, event_id, why, "payment needs a person");
    let noted = sqlx::query(
        "UPDATE payments SET note = CASE WHEN note IS NULL THEN $1 ELSE note || '; ' || $1 END, \
         updated_at = $2 WHERE txn_ref = $3 AND (note IS NULL OR note NOT LIKE ('%' || $1 || '%'))",
    )
    .bind(&line)
    .bind(now)
    .bind(txn_ref)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if noted == 1 {
        crate::audit::append(
            tx,
            now,
            &crate::audit::Who::new(format!("payments:{}", p.gateway.name()), Role::System),
            "payment.needs_person",
            &format!("case:{event_id}"),
            &serde_json::json!({"txn_ref": txn_ref, "why": why}),
        )
        .await?;
    }
    Ok(())
}

enum CaseOutcome {
    Paid,
    /// The case was paid before; `by_this`: by the payment at hand.
    AlreadyPaid {
        by_this: bool,
    },
    NotPayable(String),
}

/// Moves the case to paid with payment `txn_ref` through the reviewer, as
/// the system, inside `tx` (opened by `audit::begin`; the caller commits).
async fn pay_case_in(
    p: &Payments,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event_id: &str,
    txn_ref: &str,
    now: i64,
) -> Result<CaseOutcome, PaymentError> {
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
        match reviewer.pay_in(tx, event_id, &actor, txn_ref, now).await {
            Ok(_) => return Ok(CaseOutcome::Paid),
            // A change without the case lock (an owner lookup raising the
            // revision) came between the read and the write: read again.
            Err(ReviewError::Conflict) if tries < 3 => tries += 1,
            Err(ReviewError::Refused(_)) => {
                let state: String = sqlx::query("SELECT state FROM events WHERE event_id = $1")
                    .bind(event_id)
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get(0)?;
                return Ok(if state == CaseState::Paid.as_str() {
                    CaseOutcome::AlreadyPaid {
                        by_this: paid_by(tx, event_id, txn_ref).await?,
                    }
                } else {
                    CaseOutcome::NotPayable(state)
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether paid case `event_id` was paid with payment `txn_ref`: its last
/// `pay` transition names it. A transition written before payments were
/// named (no `txn_ref`) counts as this payment's when no other payment of
/// the case is paid.
async fn paid_by(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event_id: &str,
    txn_ref: &str,
) -> Result<bool, PaymentError> {
    let detail: Option<String> = sqlx::query_scalar(
        "SELECT detail FROM case_transitions WHERE event_id = $1 AND action = 'pay' \
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?
    .flatten();
    let named = detail
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|d| d.get("txn_ref").and_then(|t| t.as_str()).map(str::to_owned));
    if let Some(named) = named {
        return Ok(named == txn_ref);
    }
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments WHERE event_id = $1 AND state = 'paid' AND txn_ref <> $2",
    )
    .bind(event_id)
    .bind(txn_ref)
    .fetch_one(&mut **tx)
    .await?;
    Ok(others == 0)
}

/// After a case was paid: a warning to the inspection register for it (it
/// was marked overdue) no longer stands. Should this fail, the next
/// deadline check withdraws it.
async fn case_paid(p: &Payments, event_id: &str, now: i64) {
    if let Err(e) = crate::notices::deadlines::withdraw_paid(&p.ingest.db, event_id, now).await {
        tracing::warn!(event_id, error = %e, "withdrawing the inspection warning failed");
    }
}

/// A paid payment on a case still waiting for it: pay the case with it
/// (the oldest paid payment of the case), under the case lock.
pub(super) async fn repair(p: &Payments, event_id: &str, now: i64) -> Result<bool, PaymentError> {
    let mut tx = crate::audit::begin(&p.ingest.db).await?;
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?;
    let waiting = matches!(
        state.as_deref().and_then(CaseState::parse),
        Some(CaseState::NoticeIssued | CaseState::Overdue)
    );
    if !waiting {
        return Ok(false);
    }
    let Some(txn_ref) = sqlx::query_scalar::<_, String>(
        "SELECT txn_ref FROM payments WHERE event_id = $1 AND state = 'paid' \
         ORDER BY updated_at, txn_ref LIMIT 1",
    )
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(false);
    };
    tracing::warn!(
        event_id,
        txn_ref,
        "a paid payment's case was not paid; paying it now"
    );
    let outcome = pay_case_in(p, &mut tx, event_id, &txn_ref, now).await?;
    tx.commit().await?;
    let paid = matches!(outcome, CaseOutcome::Paid);
    if paid {
        case_paid(p, event_id, now).await;
    }
    Ok(paid)
}
