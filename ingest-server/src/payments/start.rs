//! Starting a payment ([`start`]) and the check a contest makes against
//! payments ([`contest_blocker`]).
//!
//! Both decide under the case lock every case change takes: the audit
//! head (`audit::begin`, the lock `review::Reviewer` holds while it
//! withdraws, contests or pays a case). `start` reads the case's state and
//! the open orders and inserts its pending order in one transaction under
//! that lock, so an order is never made for a case a withdrawal (or a
//! contest) is closing at the same moment: whichever commits first is seen
//! by the other. Asking the gateway about a stale order (network) happens
//! before the lock is taken.
//!
//! A second `start` for a case whose order is still open (a double click,
//! the back button) answers that order's payment page again: the URL is
//! rebuilt from the stored order (same `vnp_TxnRef`, amount, address and
//! times, so the same signed URL), instead of refusing the person for the
//! order's whole expiry.

use std::net::IpAddr;

use sqlx::Row;

use super::reconcile;
use super::{NEEDS_PERSON, Order, PENDING_GRACE_MS, PaymentError, Payments, PendingPayment};
use crate::workflow::CaseState;

/// An open order is offered again only while at least this long is left
/// before its expiry (1 minute); nearer its end the person is told to
/// wait for it instead (`InProgress`).
pub const REUSE_MIN_LEFT_MS: i64 = 60_000;

/// What a person sees at the gateway for case `event_id` (ASCII: VNPay
/// asks for Vietnamese without diacritics).
fn order_info(event_id: &str) -> String {
    format!("Nop phat vi pham giao thong, ma vu viec {event_id}")
}

/// The case's state and decided amount.
async fn case_of(
    conn: &mut sqlx::AnyConnection,
    event_id: &str,
) -> Result<(String, Option<i64>), PaymentError> {
    let row = sqlx::query("SELECT state, fine_amount_vnd FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| PaymentError::NotFound(event_id.into()))?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The amount to pay when a case in `state` with `amount` can be paid.
fn payable(event_id: &str, state: String, amount: Option<i64>) -> Result<i64, PaymentError> {
    match CaseState::parse(&state) {
        Some(CaseState::NoticeIssued | CaseState::Overdue) => {}
        Some(CaseState::Paid) => return Err(PaymentError::AlreadyPaid(event_id.into())),
        _ => {
            return Err(PaymentError::NotPayable {
                event_id: event_id.into(),
                state,
            });
        }
    }
    amount
        .filter(|a| *a > 0 && super::to_gateway_amount(*a).is_some())
        .ok_or_else(|| PaymentError::NoAmount(event_id.into()))
}

/// Starts a payment of case `event_id` by the person at `client_ip`: checks
/// the case can be paid, records the attempt, and answers the URL of the
/// gateway's payment page to send the person to. While an order of the
/// case is open with at least [`REUSE_MIN_LEFT_MS`] left, its own URL is
/// answered again (the same order, not a new one).
pub async fn start(
    ctx: &Payments,
    event_id: &str,
    client_ip: IpAddr,
    now: i64,
) -> Result<String, PaymentError> {
    let db = &ctx.ingest.db;
    {
        // A first look without the lock: nothing is asked of the gateway
        // for a case that cannot be paid anyway.
        let mut conn = db.pool().acquire().await?;
        let (state, amount) = case_of(&mut conn, event_id).await?;
        payable(event_id, state, amount)?;
    }
    // An order still pending an hour past its expiry (the reconciler has
    // not settled it yet) is settled here the way the reconciler would:
    // the gateway is asked (`querydr`), and the order is cancelled only on
    // its word that no money was taken; paid, it pays the case; paid at
    // another amount, it is held for a person (refused below). Should the
    // gateway not answer, the order may have been paid (its IPN lost), so
    // no second order is started.
    let stale = sqlx::query(
        "SELECT txn_ref, amount_vnd, created_at, expires_at FROM payments \
         WHERE event_id = $1 AND state = 'pending' AND expires_at < $2",
    )
    .bind(event_id)
    .bind(now.saturating_sub(PENDING_GRACE_MS))
    .fetch_all(db.pool())
    .await?;
    for r in &stale {
        let old = PendingPayment {
            txn_ref: r.try_get(0)?,
            event_id: event_id.to_string(),
            amount_vnd: r.try_get(1)?,
            created_at: r.try_get(2)?,
            expires_at: r.try_get(3)?,
        };
        if let Err(e) = reconcile::ask_and_settle(ctx, &old, now).await {
            tracing::warn!(event_id, txn_ref = old.txn_ref, error = %e,
                "an earlier order could not be settled; no new order");
            return Err(PaymentError::PreviousOrderUnknown {
                event_id: event_id.into(),
                txn_ref: old.txn_ref,
                reason: e.to_string(),
            });
        }
    }

    // From here on, under the case lock: the state read is the state the
    // order is made for, until this transaction commits.
    let mut tx = crate::audit::begin(db).await?;
    let (state, amount) = case_of(&mut tx, event_id).await?;
    let amount = payable(event_id, state, amount)?;
    let paid = sqlx::query("SELECT 1 FROM payments WHERE event_id = $1 AND state = 'paid'")
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?;
    if paid.is_some() {
        return Err(PaymentError::AlreadyPaid(event_id.into()));
    }
    // Past its expiry, an order waits for the next reconciliation.
    let next_reconciliation = now.saturating_add(
        ctx.settings
            .reconcile_interval
            .map_or(5 * 60_000, |d| d.as_millis() as i64),
    );
    let in_progress = |expires: i64| PaymentError::InProgress {
        event_id: event_id.into(),
        until: if expires > now {
            expires
        } else {
            next_reconciliation
        },
    };
    // One open order at a time: two browser tabs must not both be paid. An
    // order past its expiry that the reconciler has not settled yet may
    // still complete at the bank, so it counts too (until the next
    // reconciliation); the unique index `payments_one_pending` backs this.
    let open = sqlx::query(
        "SELECT txn_ref, amount_vnd, client_ip, created_at, expires_at FROM payments \
         WHERE event_id = $1 AND state = 'pending' ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = open {
        let expires_at: i64 = r.try_get(4)?;
        let order_amount: i64 = r.try_get(1)?;
        let ip = r.try_get::<String, _>(2)?.parse::<IpAddr>().ok();
        // A second press of "pay" (double click, back button): the same
        // order's page again, while it has time left and is for the fine
        // as it stands.
        if let (Some(ip), true) = (
            ip,
            expires_at > now.saturating_add(REUSE_MIN_LEFT_MS) && order_amount == amount,
        ) {
            let order = Order {
                txn_ref: r.try_get(0)?,
                amount_vnd: order_amount,
                order_info: order_info(event_id),
                client_ip: ip,
                created_at: r.try_get(3)?,
                expires_at,
            };
            drop(tx);
            tracing::info!(
                event_id,
                txn_ref = order.txn_ref,
                "payment started again: the open order's page"
            );
            return ctx.gateway.payment_url(&order).await;
        }
        return Err(in_progress(expires_at));
    }
    // Money taken at another amount for an earlier order: a person settles
    // it first (refund or apply); another order could pay the fine twice.
    let held: Option<String> = sqlx::query_scalar(
        "SELECT txn_ref FROM payments WHERE event_id = $1 AND state = $2 \
         ORDER BY created_at LIMIT 1",
    )
    .bind(event_id)
    .bind(NEEDS_PERSON)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(txn_ref) = held {
        return Err(PaymentError::NeedsPerson {
            event_id: event_id.into(),
            txn_ref,
        });
    }
    let order = Order {
        txn_ref: uuid::Uuid::new_v4().simple().to_string(),
        amount_vnd: amount,
        order_info: order_info(event_id),
        client_ip,
        created_at: now,
        expires_at: now.saturating_add(ctx.settings.order_expiry_ms),
    };
    // The URL before the row: nothing is recorded for an order that cannot
    // be sent.
    let url = ctx.gateway.payment_url(&order).await?;
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $6)",
    )
    .bind(&order.txn_ref)
    .bind(event_id)
    .bind(ctx.gateway.name())
    .bind(amount)
    .bind(client_ip.to_string())
    .bind(now)
    .bind(order.expires_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => in_progress(order.expires_at),
        e => e.into(),
    })?;
    tx.commit().await?;
    tracing::info!(
        event_id,
        txn_ref = order.txn_ref,
        amount_vnd = amount,
        "payment started"
    );
    Ok(url)
}

/// Whether a payment keeps case `event_id` from being contested at `now`:
/// `Some(true)` paid; `Some(false)` an order pending at the gateway (one
/// past its expiry counts for [`PENDING_GRACE_MS`], as it may yet complete
/// at the bank) or money taken that waits for a person ([`NEEDS_PERSON`]:
/// another amount, or in doubt — a contested case could be neither paid
/// with it nor withdrawn while it waits); `None` neither. Run it inside the contest's own
/// transaction, opened by `audit::begin` (`review::Reviewer` does for
/// `Action::Contest`): [`start`] takes the same lock, so no order is made
/// between this check and the contest's commit.
pub async fn contest_blocker(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event_id: &str,
    now: i64,
) -> Result<Option<bool>, sqlx::Error> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM payments WHERE event_id = $1 AND (state IN ('paid', $3) \
         OR (state = 'pending' AND expires_at >= $2)) ORDER BY state LIMIT 1",
    )
    .bind(event_id)
    .bind(now.saturating_sub(PENDING_GRACE_MS))
    .bind(NEEDS_PERSON)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(state.map(|s| s == "paid"))
}
