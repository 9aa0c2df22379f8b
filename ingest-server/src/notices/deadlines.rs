//! The legal deadlines of a notice (Circular 73/2024/TT-BCA, Art. 24),
//! checked periodically by the worker and callable with any `now` (tests,
//! a console button):
//!
//! - **10 days**: a case detected more than 10 days ago (past the end of
//!   the 10th day after detection, Vietnam time, as the 20 days are
//!   counted: `outbox::notify_until`) whose notice has not gone out (still in review, accepted, or confirmed with no channel
//!   through yet) gets `events.notice_late_at`. The flag is never cleared,
//!   so a notice that went out late stays visible. [`late_notices`] and
//!   `GET /api/v1/notices/overdue` (admin) list the flagged cases whose
//!   notice is still not out, with their deliveries' state, for a person
//!   to act on (paper notice, correct the address).
//! - **20 days**: a case in `notice_issued` whose deadline to respond has
//!   passed (the date the notice gave, and 20 days since the case entered
//!   the state: issue, or a contest upheld — then from when police's
//!   answer reached the owner, and a case whose answer has not is held,
//!   `DeadlineReport::held_for_answer`) moves to `overdue` through the
//!   workflow (`Action::MarkOverdue`, by the system) and gets a row in
//!   `inspection_warnings`: the warning to the vehicle inspection register,
//!   with its own audit entry. Paying or contesting is the response that
//!   stops the clock (those move the case out of `notice_issued`).
//!   Accepting the violation in the citizen app is not: it says the owner
//!   does not dispute it, and the fine is still to be paid by the same
//!   deadline (the app says so with the date); an owner who accepted and
//!   did not pay is marked and warned like any other, the warning's reason
//!   saying they accepted. Paying
//!   starts before the money is confirmed: a case with a payment order
//!   made by the deadline that is still pending (its notification late or
//!   lost until the reconciler asks the gateway) or paid (its case not yet
//!   moved) is not marked while that order is unresolved; the next check
//!   after it is settled decides. An order made by the deadline that the
//!   gateway reported paid at another amount (`needs_person`, held for a
//!   person: `payments`) is a response: the owner paid, and nothing will
//!   settle it without a person, so the case is neither marked nor held
//!   (`DeadlineReport::answered_by_payment`). Once the person has applied
//!   it (row `paid`: the reconciler pays the case) or refunded it (row
//!   `cancelled`), the next check decides as for any case.
//! - **Withdrawal**: a warning whose case is then paid is marked withdrawn
//!   (`withdrawn_at`, `withdrawn_reason`, audit entry
//!   `notice.inspection_warning_withdrawn`), never deleted: the payment
//!   path does it as it pays the case ([`withdraw_paid`]), and every check
//!   does it for any paid case still carrying a live warning (a payment at
//!   the counter, a crash in between). The register adapter (not yet
//!   written) must send the withdrawal of a warning it already sent.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use sqlx::Row;

use super::outbox::{
    ACTOR, DAY_MS, NOTIFY_WITHIN_MS, RESPOND_WITHIN_MS, notify_until, respond_until,
    start_of_vn_day,
};

/// The deadline a case in `notice_issued` has to respond by: the notice's
/// own date, or 20 days (to the end of the day, Vietnam time) from when
/// the case last entered the state, whichever is later. What the citizen
/// app shows, what [`check_deadlines`] holds a case to, and what the
/// notice states: the first delivery through moved the notice's date to 20
/// days from the attempt the case was issued at
/// (`outbox::respond_by_at_send`).
pub fn effective_deadline(notice_respond_by: i64, in_state_since: i64) -> i64 {
    notice_respond_by.max(respond_until(in_state_since))
}

/// The deadline a case in `notice_issued` is held to, `answer` being what
/// became of police's answer to a contest written when it re-entered the
/// state at `since`: [`effective_deadline`] from `since`, or from when the
/// answer first reached the owner; `None` while it has not (no clock runs:
/// [`check_deadlines`] holds the case). The one rule for the check, the
/// console's badges and the citizen app.
pub fn held_to(notice_respond_by: i64, since: i64, answer: Answer) -> Option<i64> {
    match answer {
        Answer::None => Some(effective_deadline(notice_respond_by, since)),
        Answer::NotSent => None,
        Answer::SentAt(at) => Some(effective_deadline(notice_respond_by, since.max(at))),
    }
}

/// Two SQL columns for the events row aliased `e`, read back with
/// [`Answer::from_columns`]: when police's answer to a contest was
/// written since the case last changed state, and when it was first
/// delivered (sent, or a letter recorded).
pub fn answer_columns(e: &str) -> String {
    format!(
        "(SELECT MAX(m.created_at) FROM notice_messages m WHERE m.event_id = {e}.event_id \
          AND m.kind = '{kind}' AND m.created_at >= COALESCE({e}.state_changed_at, 0)), \
         (SELECT MIN(d.sent_at) FROM notice_deliveries d JOIN notice_messages m \
          ON m.message_id = d.message_id AND d.notice_id = m.notice_id WHERE m.event_id = {e}.event_id AND m.kind = '{kind}' \
          AND m.created_at >= COALESCE({e}.state_changed_at, 0) AND d.state = 'sent')",
        kind = super::followup::CONTEST_REJECTED
    )
}
use crate::audit::{self, Who};
use crate::db::{Db, DbError};
use crate::ingest::IngestContext;
use crate::review::{ReviewError, Reviewer};
use crate::web::{ApiContext, ApiError};
use crate::workflow::{Action, Actor, Role, WorkflowError};

/// What one check did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeadlineReport {
    /// Cases newly flagged: no notice sent 10 days after detection.
    pub flagged_late: u64,
    /// Cases moved to `overdue`.
    pub marked_overdue: Vec<String>,
    /// Inspection-register warnings recorded.
    pub warnings: Vec<String>,
    /// Cases past their deadline not marked because a payment order made
    /// by the deadline is still unresolved.
    pub held_for_payment: Vec<String>,
    /// Cases past their deadline not marked because money was taken for
    /// an order made by the deadline, at another amount than the fine
    /// (`payments::NEEDS_PERSON`): the owner responded; a person settles
    /// the money.
    pub answered_by_payment: Vec<String>,
    /// Warnings withdrawn because the case was paid.
    pub withdrawn: Vec<String>,
    /// Cases back in `notice_issued` after a contest police upheld, not
    /// marked because police's answer has not reached the owner (no
    /// delivery sent; `paper::answers_needing_paper` lists those no channel
    /// can deliver).
    pub held_for_answer: Vec<String>,
}

/// Whether police's answer to a contest, written when a case re-entered
/// `notice_issued`, has reached the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No such answer: the case entered the state otherwise.
    None,
    /// Written, not delivered yet.
    NotSent,
    /// First delivered at (Unix ms).
    SentAt(i64),
}

impl Answer {
    /// From the two columns of [`answer_columns`].
    pub fn from_columns(written: Option<i64>, first_sent: Option<i64>) -> Answer {
        match (written, first_sent) {
            (None, _) => Answer::None,
            (Some(_), None) => Answer::NotSent,
            (Some(_), Some(at)) => Answer::SentAt(at),
        }
    }
}

/// Runs both checks at `now` (Unix ms).
pub async fn check_deadlines(ctx: &IngestContext, now: i64) -> Result<DeadlineReport, DbError> {
    let db = &ctx.db;
    let mut report = DeadlineReport {
        flagged_late: sqlx::query(
            "UPDATE events SET notice_late_at = $1 WHERE notice_late_at IS NULL \
             AND event_time_ms < $2 AND state IN ('new', 'in_review', 'accepted', 'confirmed')",
        )
        .bind(now)
        // Past the end of the 10th day (Vietnam time) after detection
        // ([`notify_until`]): detected before today's start less 10 days.
        .bind(start_of_vn_day(now) - NOTIFY_WITHIN_MS)
        .execute(db.pool())
        .await?
        .rows_affected(),
        ..DeadlineReport::default()
    };
    if report.flagged_late > 0 {
        tracing::warn!(
            n = report.flagged_late,
            "cases without a notice 10 days after detection"
        );
    }

    // Past the notice's date, and past 20 days since the case (re)entered
    // `notice_issued` (a contest upheld starts the clock again), each to
    // the end of its day in Vietnam time ([`respond_until`]): the query
    // narrows to cases past both plus a day, the check is exact.
    let sql = format!(
        "SELECT e.event_id, n.respond_by, COALESCE(e.state_changed_at, n.issued_at, 0), {answer} \
         FROM events e JOIN notices n ON n.event_id = e.event_id \
         WHERE e.state = 'notice_issued' AND n.respond_by < $1 \
         AND COALESCE(e.state_changed_at, n.issued_at, 0) <= $2 ORDER BY n.respond_by",
        answer = answer_columns("e")
    );
    let due = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(now - RESPOND_WITHIN_MS + DAY_MS)
        .fetch_all(db.pool())
        .await?;
    let mut past = Vec::new();
    for r in due {
        let (id, respond_by, since): (String, i64, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        // Back after a contest police upheld: the new 20 days run from when
        // their answer reached the owner (its first delivery sent, or the
        // letter posted), and not at all before it did.
        let answer = Answer::from_columns(r.try_get(3)?, r.try_get(4)?);
        let Some(deadline) = held_to(respond_by, since, answer) else {
            report.held_for_answer.push(id);
            continue;
        };
        if deadline >= now {
            continue;
        }
        // The person pressed pay in time and the gateway's answer is not
        // in yet: not "no response". Money taken at another amount is a
        // response too, one no check will see settled.
        let paying: Vec<String> = sqlx::query_scalar(
            "SELECT state FROM payments WHERE event_id = $1 \
             AND state IN ('pending', 'paid', $3) AND created_at <= $2",
        )
        .bind(&id)
        .bind(deadline)
        .bind(crate::payments::NEEDS_PERSON)
        .fetch_all(db.pool())
        .await?;
        if paying.iter().any(|s| s == crate::payments::NEEDS_PERSON) {
            report.answered_by_payment.push(id);
        } else if !paying.is_empty() {
            report.held_for_payment.push(id);
        } else {
            past.push(id);
        }
    }
    if !report.held_for_payment.is_empty() {
        tracing::info!(
            cases = ?report.held_for_payment,
            "past the 20-day deadline with a payment in flight: not marked overdue yet"
        );
    }
    let reviewer = Reviewer {
        db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let system = Actor {
        id: ACTOR.into(),
        role: Role::System,
    };
    for id in past {
        match reviewer
            .act(&id, &Action::MarkOverdue, &system, "", now)
            .await
        {
            Ok(_) => {
                sqlx::query(
                    "UPDATE notices SET overdue_at = $1 WHERE event_id = $2 AND overdue_at IS NULL",
                )
                .bind(now)
                .bind(&id)
                .execute(db.pool())
                .await?;
                report.marked_overdue.push(id);
            }
            // Paid or contested meanwhile, or changed under us: the next
            // check sees it as it is then.
            Err(ReviewError::Refused(WorkflowError::WrongState { .. }) | ReviewError::Conflict) => {
            }
            Err(ReviewError::Db(e)) => return Err(e),
            Err(e) => tracing::warn!(event_id = %id, error = %e, "marking a case overdue failed"),
        }
    }

    // Every overdue case has its warning (also those a stopped worker
    // marked without writing one).
    let missing = sqlx::query(
        "SELECT e.event_id, COALESCE(e.reviewed_plate, e.plate_text, ''), e.plate_colour, \
         e.owner_response FROM events e WHERE e.state = 'overdue' AND NOT EXISTS \
         (SELECT 1 FROM inspection_warnings w WHERE w.event_id = e.event_id)",
    )
    .fetch_all(db.pool())
    .await?;
    for r in missing {
        let (id, plate, colour): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let response: Option<String> = r.try_get(3)?;
        let reason = if response.as_deref() == Some("accepted") {
            "accepted in the citizen app but not paid within 20 days of the notice \
             (Circular 73/2024/TT-BCA, Art. 24)"
        } else if response.as_deref() == Some("contested") {
            "contest not accepted by police; no response within 20 days of their answer \
             reaching the owner (Circular 73/2024/TT-BCA, Art. 24)"
        } else {
            "no response within 20 days of the notice (Circular 73/2024/TT-BCA, Art. 24)"
        };
        let mut tx = audit::begin(db).await?;
        let n = sqlx::query(
            "INSERT INTO inspection_warnings (event_id, plate, plate_colour, created_at, reason) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&id)
        .bind(&plate)
        .bind(&colour)
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            audit::append(
                &mut tx,
                now,
                &Who::new(ACTOR, Role::System),
                "notice.inspection_warning",
                &format!("case:{id}"),
                &serde_json::json!({"plate": plate, "plate_colour": colour}),
            )
            .await?;
            report.warnings.push(id);
        }
        tx.commit().await?;
    }

    // Paid cases whose warning is still live (paid at the counter, or the
    // payment path stopped before withdrawing it).
    let paid = sqlx::query(
        "SELECT w.event_id FROM inspection_warnings w JOIN events e ON e.event_id = w.event_id \
         WHERE w.withdrawn_at IS NULL AND e.state = 'paid'",
    )
    .fetch_all(db.pool())
    .await?;
    for r in paid {
        let id: String = r.try_get(0)?;
        if withdraw_paid(db, &id, now).await? {
            report.withdrawn.push(id);
        }
    }
    Ok(report)
}

/// Withdraws the inspection-register warning of case `event_id` if it has
/// a live one and the case is paid: the row is marked (`withdrawn_at`,
/// `withdrawn_reason`), not deleted, with an audit entry
/// `notice.inspection_warning_withdrawn`. Whether the warning should never
/// have been recorded (the paid order was made before it: its notification
/// came late) or was answered later is in the reason. `false` when there
/// was nothing to withdraw.
pub async fn withdraw_paid(db: &Db, event_id: &str, now: i64) -> Result<bool, DbError> {
    // Most paid cases were never warned: no write lock for them.
    let live = sqlx::query(
        "SELECT 1 FROM inspection_warnings WHERE event_id = $1 AND withdrawn_at IS NULL",
    )
    .bind(event_id)
    .fetch_optional(db.pool())
    .await?;
    if live.is_none() {
        return Ok(false);
    }
    let mut tx = audit::begin(db).await?;
    let Some(w) = sqlx::query(
        "SELECT w.created_at, w.sent_at FROM inspection_warnings w \
         JOIN events e ON e.event_id = w.event_id \
         WHERE w.event_id = $1 AND w.withdrawn_at IS NULL AND e.state = 'paid'",
    )
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(false);
    };
    let (warned_at, sent_at): (i64, Option<i64>) = (w.try_get(0)?, w.try_get(1)?);
    let payment = sqlx::query(
        "SELECT txn_ref, created_at FROM payments WHERE event_id = $1 AND state = 'paid' \
         ORDER BY created_at LIMIT 1",
    )
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (reason, txn_ref) = match payment {
        Some(p) => {
            let (txn_ref, ordered_at): (String, i64) = (p.try_get(0)?, p.try_get(1)?);
            let why = if ordered_at <= warned_at {
                "the fine was paid with an order made before the warning was recorded \
                 (the payment's confirmation came late)"
            } else {
                "the fine was paid after the warning"
            };
            (why, Some(txn_ref))
        }
        None => ("the fine was paid", None),
    };
    let n = sqlx::query(
        "UPDATE inspection_warnings SET withdrawn_at = $1, withdrawn_reason = $2 \
         WHERE event_id = $3 AND withdrawn_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n != 1 {
        return Ok(false);
    }
    audit::append(
        &mut tx,
        now,
        &Who::new(ACTOR, Role::System),
        "notice.inspection_warning_withdrawn",
        &format!("case:{event_id}"),
        &serde_json::json!({"reason": reason, "txn_ref": txn_ref, "warning_sent_at": sent_at}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(event_id, reason, "inspection-register warning withdrawn");
    Ok(true)
}

/// A case whose notice is late (flagged at 10 days) and still not out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LateNotice {
    /// The case.
    pub event_id: String,
    /// Its state.
    pub state: String,
    /// Detected, Unix ms.
    pub detected_at: i64,
    /// The legal deadline for the notice, Unix ms.
    pub notify_by: i64,
    /// When the check flagged it.
    pub flagged_at: i64,
    /// When the notice was written (confirmation), if it was.
    pub notice_created_at: Option<i64>,
    /// Deliveries by state.
    pub deliveries: DeliveryCounts,
    /// The latest error of a delivery, if any.
    pub last_error: Option<String>,
}

/// Deliveries of a notice by state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryCounts {
    /// Not tried yet.
    pub pending: i64,
    /// Tried, will be tried again.
    pub failed: i64,
    /// Given up.
    pub dead: i64,
}

/// Flagged cases whose notice is still not out, oldest first.
pub async fn late_notices(db: &Db, limit: i64) -> Result<Vec<LateNotice>, DbError> {
    let rows = sqlx::query(
        "SELECT e.event_id, e.state, e.event_time_ms, e.notice_late_at, n.created_at, \
         (SELECT COUNT(*) FROM notice_deliveries d WHERE d.event_id = e.event_id AND d.state = 'pending'), \
         (SELECT COUNT(*) FROM notice_deliveries d WHERE d.event_id = e.event_id AND d.state = 'failed'), \
         (SELECT COUNT(*) FROM notice_deliveries d WHERE d.event_id = e.event_id AND d.state = 'dead'), \
         (SELECT d.last_error FROM notice_deliveries d WHERE d.event_id = e.event_id \
          AND d.last_error IS NOT NULL ORDER BY d.next_attempt_at DESC LIMIT 1) \
         FROM events e LEFT JOIN notices n ON n.event_id = e.event_id \
         WHERE e.notice_late_at IS NOT NULL AND n.issued_at IS NULL \
         AND e.state IN ('new', 'in_review', 'accepted', 'confirmed') \
         ORDER BY e.event_time_ms LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let detected_at: i64 = r.try_get(2)?;
            Ok(LateNotice {
                event_id: r.try_get(0)?,
                state: r.try_get(1)?,
                detected_at,
                notify_by: notify_until(detected_at),
                flagged_at: r.try_get(3)?,
                notice_created_at: r.try_get(4)?,
                deliveries: DeliveryCounts {
                    pending: r.try_get(5)?,
                    failed: r.try_get(6)?,
                    dead: r.try_get(7)?,
                },
                last_error: r.try_get(8)?,
            })
        })
        .collect()
}

/// A warning to the vehicle inspection register.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InspectionWarning {
    /// The case.
    pub event_id: String,
    /// Canonical plate.
    pub plate: String,
    /// Plate colour.
    pub plate_colour: String,
    /// Recorded, Unix ms.
    pub created_at: i64,
    /// Why.
    pub reason: String,
    /// Transmitted to the register, when an adapter did.
    pub sent_at: Option<i64>,
    /// Withdrawn (the case was paid), Unix ms; the row stays.
    pub withdrawn_at: Option<i64>,
    /// Why it was withdrawn.
    pub withdrawn_reason: Option<String>,
}

/// The recorded warnings, newest first, withdrawn ones included (marked).
pub async fn inspection_warnings(db: &Db, limit: i64) -> Result<Vec<InspectionWarning>, DbError> {
    let rows = sqlx::query(
        "SELECT event_id, plate, plate_colour, created_at, reason, sent_at, withdrawn_at, \
         withdrawn_reason FROM inspection_warnings ORDER BY created_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InspectionWarning {
                event_id: r.try_get(0)?,
                plate: r.try_get(1)?,
                plate_colour: r.try_get(2)?,
                created_at: r.try_get(3)?,
                reason: r.try_get(4)?,
                sent_at: r.try_get(5)?,
                withdrawn_at: r.try_get(6)?,
                withdrawn_reason: r.try_get(7)?,
            })
        })
        .collect()
}

/// `GET /api/v1/notices/overdue` (admin token, like the rest of the API).
pub fn routes() -> Router<ApiContext> {
    Router::new().route("/api/v1/notices/overdue", get(overdue))
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn overdue(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Vec<LateNotice>>, ApiError> {
    crate::web::require_admin(&ctx, &headers).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(late_notices(&ctx.ingestor.context().db, limit).await?))
}
