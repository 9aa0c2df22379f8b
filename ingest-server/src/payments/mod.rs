//! Citizens pay their fine online through a payment gateway (issue 10,
//! payment part). Fines are state revenue collected through whichever
//! gateway the deployment has an arrangement with, so the gateway is an
//! adapter ([`PaymentGateway`]); VNPay's protocol 2.1.0 ([`VnPay`]) is the
//! one implemented, and `vnpay-sandbox` stands in for VNPay in the demo and
//! the tests.
//!
//! The life of one payment, and which part may change what:
//!
//! 1. [`start`] (called by the citizen app for a case in `notice_issued` or
//!    `overdue` with a decided amount, `events.fine_amount_vnd`) writes a
//!    `payments` row `pending` with a fresh `txn_ref` and the amount, and
//!    answers the gateway's signed payment URL to send the person to; it
//!    decides and writes under the case lock withdrawals and contests take
//!    (`start.rs`), and answers an order still open the same URL again.
//! 2. The gateway tells us the outcome server to server (the **IPN**,
//!    `GET /api/v1/payments/vnpay/ipn`). Only this call, or the
//!    reconciler's status query, settles a payment: the hash is checked
//!    (97), the order must exist (01), the amount must equal ours (04), it
//!    must still be pending (02); it is paid only when the gateway says both
//!    `vnp_ResponseCode=00` and `vnp_TransactionStatus=00`, otherwise it is
//!    recorded as failed or cancelled (and answered 00, as VNPay expects
//!    for a processed failure). A paid payment moves its case to `paid`
//!    through [`crate::review::Reviewer`] (the one path for case changes,
//!    with its transition row and audit entry `case.pay`) as the system
//!    actor `payments:vnpay`. A success reported at another amount (IPN
//!    or status query) is answered 04 and the order moves to
//!    `needs_person` ([`NEEDS_PERSON`]): money was taken, and a person
//!    must refund it (setting the row `cancelled`) or apply it (setting it
//!    `paid`, after which the reconciler pays the case). Until then no
//!    report settles it, the reconciler does not ask about it, [`start`]
//!    refuses a new order for the case ([`PaymentError::NeedsPerson`]),
//!    and the 20-day deadline check counts the case as answered (the owner
//!    paid something: `notices::deadlines`). A report that is no success
//!    but says money may have been taken — VNPay's `07` (money deducted,
//!    transaction suspected) or transaction status `04` (reversed) — is
//!    answered 00 and held the same way: recorded as a failure, the
//!    citizen would be invited to pay twice.
//! 3. The person's browser comes back to `GET /pay/vnpay/return`: a page
//!    that shows what we know (Vietnamese first) and changes nothing; if the
//!    IPN has not arrived yet it says "đang xử lý" and looks again.
//! 4. The reconciler ([`reconcile`], run every `reconcile_interval_s` by
//!    [`spawn_reconciler`], or once by [`reconcile_from_config`] from a
//!    CLI; `reconcile.rs`) asks the gateway (`querydr`) about payments
//!    pending for longer than `reconcile_after_minutes` — an IPN lost on
//!    the way — and settles them through the same code as the IPN; expired
//!    orders the gateway never saw (or never finished, or failed) are
//!    cancelled; a paid payment whose case is not paid (a crash between
//!    the two steps, or a person applying held money) is repaired. It must run
//!    (`reconcile_interval_s` is never 0): it finds the payments whose IPN
//!    was lost, and the 20-day deadline check waits for the orders it
//!    settles (`notices::deadlines`).
//! 5. An order no one settled an hour past its expiry is asked about by
//!    [`start`] before a new one is made (the same query and code as the
//!    reconciler); nothing cancels an order without the gateway's word that
//!    it took no money.
//!
//! Settling is idempotent: a payment row changes only from the state it
//! was read in, with a conditional UPDATE, so a repeated or racing IPN (two
//! replicas) settles it once and the others answer 02; a row a cancel
//! changed meanwhile is read and judged again (money reported taken for a
//! cancelled order is applied, never answered 02).

pub mod config;
mod http;
mod reconcile;
mod settle;
mod start;
mod vnpay;
pub(crate) mod web;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::Row;
use thiserror::Error;

use crate::db::DbError;
use crate::ingest::IngestContext;
use crate::review::ReviewError;

pub use config::{PaymentsConfig, VnPayConfig};
pub use reconcile::{ReconcileReport, reconcile, reconcile_from_config, spawn_reconciler};
pub use settle::Settled;
pub use start::{REUSE_MIN_LEFT_MS, contest_blocker, start};
pub use vnpay::{
    VnPay, encode as vnpay_encode, from_gateway_amount, gmt7, hash_data as vnpay_hash_data,
    response_text, to_gateway_amount,
};
pub use web::routes;

/// Why a payment operation did not happen.
#[derive(Debug, Error)]
pub enum PaymentError {
    /// No gateway is configured.
    #[error("online payment is not configured ([payments.vnpay])")]
    Disabled,
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// The case is not in a state that can be paid.
    #[error("case {event_id} cannot be paid: it is {state}")]
    NotPayable {
        /// The case.
        event_id: String,
        /// Its state.
        state: String,
    },
    /// The case is paid already.
    #[error("case {0} is already paid")]
    AlreadyPaid(String),
    /// An order for the case is open at the gateway until `until` (ms): a
    /// second one could be paid too.
    #[error("case {event_id} has a payment in progress until {until}")]
    InProgress {
        /// The case.
        event_id: String,
        /// When the open order expires, ms since the epoch.
        until: i64,
    },
    /// No amount was fixed by the police decision.
    #[error("case {0} has no decided fine amount")]
    NoAmount(String),
    /// A gateway message whose hash does not hold (or has none).
    #[error("bad or missing signature")]
    BadSignature,
    /// A signed gateway message that is not usable.
    #[error("gateway message: {0}")]
    Malformed(String),
    /// The gateway could not be asked, or answered wrongly.
    #[error("gateway: {0}")]
    Gateway(String),
    /// An earlier order of the case is past its expiry and still pending,
    /// and the gateway could not be asked whether it took the money: no
    /// new order is started until it answers (else the fine could be paid
    /// twice).
    #[error(
        "case {event_id}: the gateway could not be asked whether the earlier order {txn_ref} \
         was paid ({reason}); no new order is started until it answers, try again later"
    )]
    PreviousOrderUnknown {
        /// The case.
        event_id: String,
        /// The earlier order.
        txn_ref: String,
        /// Why the gateway could not be asked.
        reason: String,
    },
    /// The gateway reported money taken for an earlier order of the case
    /// at another amount than the fine, or money in doubt (suspected,
    /// reversed): that order waits for a person to
    /// refund or apply the money (state `needs_person`), and no new order
    /// is started meanwhile (the fine could be paid twice).
    #[error(
        "case {event_id}: the gateway reported money taken for order {txn_ref} that cannot be \
         applied as it stands (another amount, or a suspected or reversed transaction); a \
         person must refund or apply that money before a new order is started"
    )]
    NeedsPerson {
        /// The case.
        event_id: String,
        /// The order held for a person.
        txn_ref: String,
    },
    /// A payment kept changing under [`settle`](settle::settle) (the
    /// gateway is answered 99 and asks again).
    #[error("payment {0} kept changing while it was settled")]
    Contended(String),
    /// Configuration (secret file, ...).
    #[error("payments configuration: {0}")]
    Config(String),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Moving the case failed.
    #[error(transparent)]
    Review(#[from] ReviewError),
}

impl From<sqlx::Error> for PaymentError {
    fn from(e: sqlx::Error) -> Self {
        PaymentError::Db(DbError::Sqlx(e))
    }
}

impl PaymentError {
    /// Whether the person can do something about it (not a server fault).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PaymentError::NotFound(_)
                | PaymentError::NotPayable { .. }
                | PaymentError::AlreadyPaid(_)
                | PaymentError::InProgress { .. }
                | PaymentError::NeedsPerson { .. }
                | PaymentError::NoAmount(_)
                | PaymentError::Disabled
        )
    }
}

/// The state of an order the gateway reported paid at another amount than
/// ours, or with money in doubt ([`GatewayReport::money_in_doubt`]): money
/// taken, for a person to refund or apply. Nothing settles it
/// automatically, and it blocks new orders for its case.
pub const NEEDS_PERSON: &str = "needs_person";

/// How long past its expiry a pending order may still complete at the
/// bank and so blocks a new order (and a contest); after that `start` asks
/// the gateway about it and closes it only if the gateway took no money.
pub const PENDING_GRACE_MS: i64 = 60 * 60_000;

/// One order sent to the gateway.
#[derive(Debug, Clone)]
pub struct Order {
    /// Our unique reference (`vnp_TxnRef`).
    pub txn_ref: String,
    /// Whole VND.
    pub amount_vnd: i64,
    /// What the person sees at the gateway (ASCII: VNPay asks for
    /// Vietnamese without diacritics).
    pub order_info: String,
    /// The paying person's address.
    pub client_ip: IpAddr,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; the gateway refuses payment after it.
    pub expires_at: i64,
}

/// A payment the gateway is asked about.
#[derive(Debug, Clone)]
pub struct PendingPayment {
    /// Our reference.
    pub txn_ref: String,
    /// The case.
    pub event_id: String,
    /// Whole VND.
    pub amount_vnd: i64,
    /// When the order was made (Unix ms).
    pub created_at: i64,
    /// When it expired or expires (Unix ms).
    pub expires_at: i64,
}

/// What the gateway says about one transaction, signature checked.
#[derive(Debug, Clone)]
pub struct GatewayReport {
    /// Our reference.
    pub txn_ref: String,
    /// The amount in whole VND; `None` when it was not a whole amount.
    pub amount_vnd: Option<i64>,
    /// The gateway's response code (`00` success; for a status query, the
    /// query's code).
    pub response_code: String,
    /// The transaction's status (`00` success).
    pub transaction_status: String,
    /// The gateway's transaction number.
    pub transaction_no: Option<String>,
    /// The bank.
    pub bank_code: Option<String>,
    /// The bank's transaction number.
    pub bank_tran_no: Option<String>,
    /// When it was paid, as the gateway writes it.
    pub pay_date: Option<String>,
    /// Every parameter as received (kept with the payment).
    pub raw: serde_json::Value,
}

impl GatewayReport {
    /// Paid: both codes say success.
    pub fn succeeded(&self) -> bool {
        self.response_code == "00" && self.transaction_status == "00"
    }

    /// Not a success, yet money may have been taken: VNPay's `07` ("money
    /// deducted, transaction suspected of fraud", as a response code or a
    /// transaction status) and transaction status `04` ("reversed": the
    /// bank took the money but the transaction did not complete at
    /// VNPay). Neither pays the fine, and neither may be read as a failure
    /// the citizen should retry: that could take the fine twice. A person
    /// checks with the gateway and applies or refunds it.
    pub fn money_in_doubt(&self) -> bool {
        !self.succeeded()
            && (self.response_code == "07"
                || matches!(self.transaction_status.as_str(), "04" | "07"))
    }

    /// A success, or money in doubt: the gateway may hold the citizen's
    /// money for this order.
    pub fn money_may_be_taken(&self) -> bool {
        self.succeeded() || self.money_in_doubt()
    }
}

/// The gateway's answer to a status query.
#[derive(Debug, Clone)]
pub enum QueryAnswer {
    /// It knows the transaction.
    Found(GatewayReport),
    /// It has no such transaction (never paid, or not yet).
    NotFound {
        /// The answer as received.
        raw: serde_json::Value,
    },
}

/// The answer to an IPN, `{"RspCode", "Message"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpnAnswer {
    /// `00`, `01`, `02`, `04`, `97`, `99`.
    #[serde(rename = "RspCode")]
    pub code: &'static str,
    /// The text VNPay's samples use.
    #[serde(rename = "Message")]
    pub message: &'static str,
}

impl IpnAnswer {
    /// An answer.
    pub fn new(code: &'static str, message: &'static str) -> IpnAnswer {
        IpnAnswer { code, message }
    }
}

/// A payment gateway.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Short name (`vnpay`): the actor is `payments:{name}`.
    fn name(&self) -> &'static str;
    /// The URL to send the person to for `order`.
    async fn payment_url(&self, order: &Order) -> Result<String, PaymentError>;
    /// Checks the query string of the person's return and reads it.
    async fn verify_return(&self, query: &str) -> Result<GatewayReport, PaymentError>;
    /// Handles an IPN (its query string): checks it, settles the payment,
    /// and says what to answer.
    async fn handle_ipn(&self, payments: &Payments, query: &str, now: i64) -> IpnAnswer;
    /// Asks the gateway about a payment (reconciliation).
    async fn query(&self, payment: &PendingPayment, now: i64) -> Result<QueryAnswer, PaymentError>;
}

/// Settings besides the gateway's own.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long the person has to pay, ms.
    pub order_expiry_ms: i64,
    /// Pending payments older than this are queried, ms.
    pub reconcile_after_ms: i64,
    /// How often the reconciler runs; `None`: never on its own.
    pub reconcile_interval: Option<std::time::Duration>,
    /// Where IPNs may come from; empty: anywhere.
    pub ipn_allowed_ips: Vec<IpAddr>,
}

/// Payments: the gateway and the state it works on.
pub struct Payments {
    /// The server's state (database, fine table, grammar for the reviewer).
    pub ingest: Arc<IngestContext>,
    /// The gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// Timings and the IPN allow-list.
    pub settings: Settings,
}

impl Payments {
    /// Payments over `gateway`.
    pub fn new(
        ingest: Arc<IngestContext>,
        gateway: Arc<dyn PaymentGateway>,
        settings: Settings,
    ) -> Payments {
        Payments {
            ingest,
            gateway,
            settings,
        }
    }

    /// Payments as configured; `None` when `[payments.vnpay]` is absent.
    pub fn from_config(
        cfg: &PaymentsConfig,
        ingest: Arc<IngestContext>,
    ) -> Result<Option<Arc<Payments>>, PaymentError> {
        let Some(v) = &cfg.vnpay else {
            return Ok(None);
        };
        let settings = Settings {
            order_expiry_ms: i64::from(v.order_expiry_minutes) * 60_000,
            reconcile_after_ms: i64::from(v.reconcile_after_minutes) * 60_000,
            reconcile_interval: (v.reconcile_interval_s > 0)
                .then(|| std::time::Duration::from_secs(v.reconcile_interval_s)),
            ipn_allowed_ips: v.allowed_ips().map_err(PaymentError::Config)?,
        };
        let gateway = Arc::new(VnPay::from_config(v)?);
        Ok(Some(Arc::new(Payments::new(ingest, gateway, settings))))
    }
}

/// One payment attempt as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PaymentRecord {
    /// Our reference.
    pub txn_ref: String,
    /// The case.
    pub event_id: String,
    /// Whole VND.
    pub amount_vnd: i64,
    /// pending, paid, failed, cancelled, needs_person ([`NEEDS_PERSON`]).
    pub state: String,
    /// The gateway's response code.
    pub response_code: Option<String>,
    /// The gateway's transaction number.
    pub transaction_no: Option<String>,
    /// The bank's transaction number.
    pub bank_tran_no: Option<String>,
    /// ipn or querydr.
    pub settled_by: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// What a person should know: money received that could not be
    /// applied, or at another amount ("needs a person: …"), paid after the
    /// order closed here.
    pub note: Option<String>,
}

/// The payment attempt `txn_ref`.
pub async fn find(
    db: &crate::db::Db,
    txn_ref: &str,
) -> Result<Option<PaymentRecord>, PaymentError> {
    Ok(list_where(db, "txn_ref = $1", txn_ref)
        .await?
        .into_iter()
        .next())
}

/// Every payment whose money a person must settle ([`NEEDS_PERSON`]),
/// oldest first: the console lists them.
pub async fn needing_a_person(db: &crate::db::Db) -> Result<Vec<PaymentRecord>, PaymentError> {
    list_where(db, "state = $1", NEEDS_PERSON).await
}

/// Every payment attempt of case `event_id`, oldest first.
pub async fn of_case(
    db: &crate::db::Db,
    event_id: &str,
) -> Result<Vec<PaymentRecord>, PaymentError> {
    list_where(db, "event_id = $1", event_id).await
}

async fn list_where(
    db: &crate::db::Db,
    filter: &'static str,
    value: &str,
) -> Result<Vec<PaymentRecord>, PaymentError> {
    let sql = format!(
        "SELECT txn_ref, event_id, amount_vnd, state, response_code, transaction_no, \
         bank_tran_no, settled_by, created_at, updated_at, note FROM payments WHERE {filter} \
         ORDER BY created_at, txn_ref"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(PaymentRecord {
                txn_ref: r.try_get(0)?,
                event_id: r.try_get(1)?,
                amount_vnd: r.try_get(2)?,
                state: r.try_get(3)?,
                response_code: r.try_get(4)?,
                transaction_no: r.try_get(5)?,
                bank_tran_no: r.try_get(6)?,
                settled_by: r.try_get(7)?,
                created_at: r.try_get(8)?,
                updated_at: r.try_get(9)?,
                note: r.try_get(10)?,
            })
        })
        .collect()
}
