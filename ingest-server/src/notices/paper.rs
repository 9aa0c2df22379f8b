//! Notices by post, for owners no channel reaches (Circular 73/2024/TT-BCA,
//! Art. 24: the notice is sent "on paper or electronically").
//!
//! A confirmed case whose owner is known (the notice is addressed) but
//! which has no delivery that can still get through (the owner has no
//! e-mail, no push subscription, and no partner app is configured; or every
//! delivery was given up or dropped, or waits for a channel that no live
//! replica has any more) would otherwise never be issued: the
//! owner would see it in the app with no way to pay, and its 10-day flag
//! would be the only trace. [`needing_paper`] lists those notices at once
//! (the console's deadlines page, `console/deadlines.rs`), and a police
//! officer or supervisor who has posted the notice records it
//! ([`record_paper`]): a `paper` delivery, sent at that moment, with the
//! postal reference in the audit entry `notice.paper_sent` by that person;
//! the case is then issued through the workflow (`Action::IssueNotice`, by
//! the system on the person's record), its 20 days running from the day
//! the letter was posted. A push subscription or a channel added later
//! still gives the notice its electronic deliveries while it is not issued
//! (`outbox::enqueue_unissued`), and it leaves this list.

use sqlx::Row;

use super::outbox::{self, ACTOR, idempotency_key, respond_until};
use crate::audit::{self, Who};
use crate::db::{Db, DbError};
use crate::review::{ReviewError, Reviewer};
use crate::workflow::{Action, Actor, Role};

/// The channel name of a paper notice's delivery row.
pub const PAPER: &str = "paper";

/// A notice no channel can deliver: a person sends it by post.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PaperNotice {
    /// The case.
    pub event_id: String,
    /// Detected, Unix ms.
    pub detected_at: i64,
    /// The legal deadline for the notice (the end of the 10th day after
    /// detection, Vietnam time).
    pub notify_by: i64,
    /// When the notice was written (the confirmation).
    pub created_at: i64,
    /// Deliveries that will not get through: given up, dropped, or
    /// waiting for a channel no replica has (none at all when 0).
    pub given_up: i64,
}

/// Deliveries that got through, or may still: pending or failing on a
/// channel some live replica has (one waiting for a channel no replica
/// has — a partner app taken out of the configuration — may wait for
/// ever, and the owner must not wait with it).
fn live() -> String {
    format!(
        "(d.state = 'sent' OR (d.state IN ('pending', 'failed') AND {}))",
        super::replicas::delivery_channel_active()
    )
}

/// Confirmed cases whose addressed notice has no delivery that may still
/// get through, oldest detection first; not those past the limitation
/// period at `now` (no notice may go out for them: a person withdraws
/// them, `Action::Withdraw`).
pub async fn needing_paper(db: &Db, now: i64, limit: i64) -> Result<Vec<PaperNotice>, DbError> {
    let sql = format!(
        "SELECT e.event_id, e.event_time_ms, n.created_at, \
         (SELECT COUNT(*) FROM notice_deliveries d WHERE d.notice_id = n.notice_id \
          AND d.message_id IS NULL) \
         FROM notices n JOIN events e ON e.event_id = n.event_id \
         WHERE e.state = 'confirmed' AND n.issued_at IS NULL AND n.owner_id IS NOT NULL \
         AND e.event_time_ms >= $2 \
         AND NOT EXISTS (SELECT 1 FROM notice_deliveries d WHERE d.notice_id = n.notice_id \
          AND d.message_id IS NULL AND {live}) \
         ORDER BY e.event_time_ms LIMIT $1",
        live = live()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .bind(now.saturating_sub(crate::workflow::LIMITATION_MS))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            let detected_at: i64 = r.try_get(1)?;
            Ok(PaperNotice {
                event_id: r.try_get(0)?,
                detected_at,
                notify_by: outbox::notify_until(detected_at),
                created_at: r.try_get(2)?,
                given_up: r.try_get(3)?,
            })
        })
        .collect()
}

/// Why a paper notice was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum PaperError {
    /// Not a notice that needs one (issued meanwhile, a channel got
    /// through, no owner, not confirmed).
    #[error("this case's notice does not need a paper notice (issued, or not confirmed)")]
    NotNeeded,
    /// The violation is past the limitation period: no notice may go out.
    #[error("the limitation period of this violation has ended: no notice may be sent")]
    PastLimitation,
    /// The postal reference is missing or too long.
    #[error("give the postal reference (1 to 100 characters)")]
    Reference,
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for PaperError {
    fn from(e: sqlx::Error) -> Self {
        PaperError::Db(DbError::Sqlx(e))
    }
}

/// The postal reference as recorded: trimmed, 1 to 100 characters.
fn postal_reference(reference: &str) -> Result<&str, PaperError> {
    let reference = reference.trim();
    if reference.is_empty() || reference.chars().count() > 100 {
        return Err(PaperError::Reference);
    }
    Ok(reference)
}

/// Records that `by` posted the notice of case `event_id` at `now` with the
/// postal `reference`: a sent `paper` delivery, the notice's deadline 20
/// days from `now`, the audit entry `notice.paper_sent` (one transaction);
/// then the case is issued (`Action::IssueNotice`) and the notice recorded
/// issued via `paper`. A stop in between is finished by the worker's next
/// pass (`outbox::sent_not_issued`).
pub async fn record_paper(
    ctx: &crate::ingest::IngestContext,
    event_id: &str,
    by: &Who,
    reference: &str,
    now: i64,
) -> Result<(), PaperError> {
    let reference = postal_reference(reference)?;
    let db = &ctx.db;
    let mut tx = audit::begin(db).await?;
    let sql = format!(
        "SELECT n.notice_id, e.event_time_ms FROM notices n JOIN events e ON e.event_id = n.event_id \
         WHERE n.event_id = $1 AND e.state = 'confirmed' AND n.issued_at IS NULL \
         AND n.owner_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM notice_deliveries d \
          WHERE d.notice_id = n.notice_id AND d.message_id IS NULL AND {live})",
        live = live()
    );
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Err(PaperError::NotNeeded);
    };
    let notice_id: String = row.try_get(0)?;
    let event_ms: i64 = row.try_get(1)?;
    if now > crate::workflow::limitation_ends_at(event_ms) {
        return Err(PaperError::PastLimitation);
    }
    if !posted(&mut tx, &notice_id, None, event_id, now).await? {
        return Err(PaperError::NotNeeded);
    }
    sqlx::query("UPDATE notices SET respond_by = $1 WHERE notice_id = $2 AND respond_by < $1")
        .bind(respond_until(now))
        .bind(&notice_id)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        now,
        by,
        "notice.paper_sent",
        &format!("case:{event_id}"),
        &serde_json::json!({"reference": reference, "notice_id": notice_id}),
    )
    .await?;
    tx.commit().await?;
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
    let why = format!("paper notice posted, recorded by {}", by.actor);
    match reviewer
        .act(event_id, &Action::IssueNotice, &system, &why, now)
        .await
    {
        Ok(_) => {
            outbox::record_issued(db, event_id, PAPER, now).await?;
        }
        // The worker's next pass issues it (`sent_not_issued`).
        Err(ReviewError::Db(e)) => return Err(e.into()),
        Err(e) => tracing::warn!(event_id, error = %e, "issuing a paper notice's case"),
    }
    Ok(())
}

/// Records a letter posted at `now` for the notice `notice_id`, or for its
/// `message`: a sent `paper` delivery (`false`: one was recorded already),
/// and the deliveries of the same notice or message still waiting (for a
/// channel no live replica has) dropped — should that channel come back,
/// the owner would get it a second time after the letter.
async fn posted(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    notice_id: &str,
    message: Option<&str>,
    event_id: &str,
    now: i64,
) -> Result<bool, PaperError> {
    let written = sqlx::query(
        "INSERT INTO notice_deliveries (delivery_id, notice_id, message_id, event_id, channel, \
         target, state, attempts, next_attempt_at, idempotency_key, created_at, sent_at) \
         VALUES ($1, $2, $3, $4, $5, 'post', 'sent', 1, $6, $7, $6, $6) ON CONFLICT DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(notice_id)
    .bind(message)
    .bind(event_id)
    .bind(PAPER)
    .bind(now)
    .bind(idempotency_key(message.unwrap_or(notice_id), PAPER, "post"))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if written != 1 {
        return Ok(false);
    }
    let (which, why) = match message {
        None => ("message_id IS NULL", "not sent: a paper notice was posted"),
        Some(_) => ("message_id = $4", "not sent: the answer was posted"),
    };
    let sql = format!(
        "UPDATE notice_deliveries SET state = 'dropped', last_error = $1 \
         WHERE notice_id = $2 AND {which} AND state IN ('pending', 'failed') \
         AND (lease_until IS NULL OR lease_until <= $3)"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(why)
        .bind(notice_id)
        .bind(now);
    if let Some(m) = message {
        q = q.bind(m);
    }
    q.execute(&mut **tx).await?;
    Ok(true)
}

/// A message about the fine no channel can deliver, for a person to post:
/// police's answer to a contest ([`super::followup::CONTEST_REJECTED`]) of
/// a case back in `notice_issued` — the owner contested (perhaps by post or
/// in person) and has no app, e-mail or partner; until the answer reaches
/// them their new 20 days do not run out (`deadlines::check_deadlines`
/// holds the case) — or the news that the fine was withdrawn or cancelled
/// ([`super::followup::WITHDRAWN`]) of a case now `closed`, which the
/// owner, who knew of the fine, must be told. Recorded with
/// [`record_paper_answer`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PaperAnswer {
    /// The case.
    pub event_id: String,
    /// The message.
    pub message_id: String,
    /// [`super::followup::CONTEST_REJECTED`] or
    /// [`super::followup::WITHDRAWN`].
    pub kind: String,
    /// When police decided (the message was written).
    pub written_at: i64,
    /// Deliveries that will not get through (none at all when 0).
    pub given_up: i64,
}

/// The latest such message of each case, written when the case entered
/// its present state, that has no delivery that may still get through;
/// `event_id` narrows it to one case.
fn answers_sql(one_case: bool) -> String {
    format!(
        "SELECT m.event_id, m.message_id, m.created_at, \
         (SELECT COUNT(*) FROM notice_deliveries d WHERE d.message_id = m.message_id), m.kind \
         FROM notice_messages m JOIN events e ON e.event_id = m.event_id \
         WHERE ((m.kind = '{answer}' AND e.state = 'notice_issued') \
          OR (m.kind = '{withdrawn}' AND e.state = 'closed')) \
         AND m.created_at >= COALESCE(e.state_changed_at, 0) {one} \
         AND NOT EXISTS (SELECT 1 FROM notice_deliveries d WHERE d.message_id = m.message_id \
          AND {live}) ORDER BY m.created_at LIMIT $1",
        answer = super::followup::CONTEST_REJECTED,
        withdrawn = super::followup::WITHDRAWN,
        one = if one_case { "AND m.event_id = $2" } else { "" },
        live = live()
    )
}

fn paper_answer(r: &sqlx::any::AnyRow) -> Result<PaperAnswer, sqlx::Error> {
    Ok(PaperAnswer {
        event_id: r.try_get(0)?,
        message_id: r.try_get(1)?,
        written_at: r.try_get(2)?,
        given_up: r.try_get(3)?,
        kind: r.try_get(4)?,
    })
}

/// Answers to contests and withdrawals no channel can deliver, oldest
/// first.
pub async fn answers_needing_paper(db: &Db, limit: i64) -> Result<Vec<PaperAnswer>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(answers_sql(false)))
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(paper_answer).collect::<Result<_, _>>()?)
}

/// Records that `by` posted police's message ([`PaperAnswer`]) about case
/// `event_id` at `now` with the postal `reference`: a sent `paper`
/// delivery of the message (its deliveries still waiting dropped), an
/// answer's deadline moved to 20 days from `now` if later, the audit entry
/// `notice.paper_sent` naming the message (one transaction). The owner's
/// new 20 days then run from the letter (`deadlines::check_deadlines`).
pub async fn record_paper_answer(
    db: &Db,
    event_id: &str,
    by: &Who,
    reference: &str,
    now: i64,
) -> Result<(), PaperError> {
    let reference = postal_reference(reference)?;
    let mut tx = audit::begin(db).await?;
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(answers_sql(true)))
        .bind(1_i64)
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Err(PaperError::NotNeeded);
    };
    let answer = paper_answer(&row)?;
    let notice_id: String =
        sqlx::query_scalar("SELECT notice_id FROM notice_messages WHERE message_id = $1")
            .bind(&answer.message_id)
            .fetch_one(&mut *tx)
            .await?;
    if !posted(&mut tx, &notice_id, Some(&answer.message_id), event_id, now).await? {
        return Err(PaperError::NotNeeded);
    }
    sqlx::query(
        "UPDATE notice_messages SET respond_by = $1 WHERE message_id = $2 AND respond_by < $1",
    )
    .bind(respond_until(now))
    .bind(&answer.message_id)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        now,
        by,
        "notice.paper_sent",
        &format!("case:{event_id}"),
        &serde_json::json!({
            "reference": reference,
            "message_id": answer.message_id,
            "kind": answer.kind,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
