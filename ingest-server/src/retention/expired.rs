//! Step 0 of retention ([`super::run`]): cases nobody decided before the
//! limitation period ran out. A case still `new`, `in_review` or
//! `accepted` once [`workflow::limitation_ends_at`] has passed can never
//! be fined (accepting, confirming and reopening are refused then), yet
//! nothing would ever close it, and its stills and the gateway's copy of
//! its owner would be kept for good. The run rejects it as the system,
//! with the managed reason [`LIMITATION_EXPIRED`] (migration 0023): its
//! transition row and a `case.reject` audit entry by `retention`, in one
//! transaction, like a reviewer's rejection. The rejected case's
//! retention (`rejected_days`) then applies to it as to any other.
//!
//! Decided fines (`confirmed`, `notice_issued`, `overdue`, `contested`)
//! are legal records and are left to the people who decide them.

use sqlx::Row;

use super::{BATCH, RetentionError, retention_actor};
use crate::audit;
use crate::db::Db;
use crate::workflow::{self, Action, CaseState};

/// The rejection reason of a case closed because its limitation period
/// ended undecided.
pub const LIMITATION_EXPIRED: &str = "limitation_expired";

/// The states a case can end its limitation period in without anyone
/// having decided it.
const UNDECIDED: [CaseState; 3] = [CaseState::New, CaseState::InReview, CaseState::Accepted];

/// A case past its limitation period, undecided.
struct Expired {
    event_id: String,
    state: String,
    revision: i64,
    event_time_ms: i64,
}

/// Cases past their limitation period at `now`, undecided, oldest first.
async fn expired(db: &Db, now: i64, limit: usize) -> Result<Vec<Expired>, RetentionError> {
    // `now > limitation_ends_at(t)` is `t < now - LIMITATION_MS`.
    let rows = sqlx::query(
        "SELECT event_id, state, revision, event_time_ms FROM events \
         WHERE state IN ($1, $2, $3) AND event_time_ms < $4 \
         ORDER BY event_time_ms, event_id LIMIT $5",
    )
    .bind(UNDECIDED[0].as_str())
    .bind(UNDECIDED[1].as_str())
    .bind(UNDECIDED[2].as_str())
    .bind(now.saturating_sub(workflow::LIMITATION_MS))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Expired {
                event_id: r.try_get(0)?,
                state: r.try_get(1)?,
                revision: r.try_get(2)?,
                event_time_ms: r.try_get(3)?,
            })
        })
        .collect()
}

/// How many cases [`close_expired`] would close at `now` (a dry run).
pub(super) async fn count_expired(db: &Db, now: i64) -> Result<usize, RetentionError> {
    Ok(expired(db, now, usize::MAX >> 1).await?.len())
}

/// Step 0: rejects every case past its limitation period and undecided at
/// `now` (see the module documentation). Returns how many.
pub(super) async fn close_expired(db: &Db, now: i64) -> Result<usize, RetentionError> {
    let who = retention_actor();
    let action = Action::Reject {
        code: LIMITATION_EXPIRED.into(),
    };
    let to = CaseState::Rejected.as_str();
    let mut closed = 0;
    loop {
        let cases = expired(db, now, BATCH).await?;
        if cases.is_empty() {
            return Ok(closed);
        }
        let before = closed;
        let mut tx = audit::begin(db).await?;
        for c in &cases {
            // Only as read: a reviewer's action in between wins (the case's
            // revision moves with every change). The reviewer's lease goes.
            let changed = sqlx::query(
                "UPDATE events SET state = $1, state_changed_at = $2, revision = revision + 1, \
                 claimed_by = NULL, claim_expires_at = NULL, reject_code = $3, reject_note = NULL \
                 WHERE event_id = $4 AND state = $5 AND revision = $6",
            )
            .bind(to)
            .bind(now)
            .bind(LIMITATION_EXPIRED)
            .bind(&c.event_id)
            .bind(&c.state)
            .bind(c.revision)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                continue;
            }
            let ends_at = workflow::limitation_ends_at(c.event_time_ms);
            let mut detail = serde_json::json!({
                "reason": "", "code": LIMITATION_EXPIRED, "limitation_ends_at": ends_at,
            });
            sqlx::query(
                "INSERT INTO case_transitions (id, event_id, at, actor, role, action, from_state, \
                 to_state, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&c.event_id)
            .bind(now)
            .bind(&who.actor)
            .bind(&who.role)
            .bind(action.name())
            .bind(&c.state)
            .bind(to)
            .bind(detail.to_string())
            .execute(&mut *tx)
            .await?;
            detail["from"] = c.state.as_str().into();
            detail["to"] = to.into();
            let subject = format!("case:{}", c.event_id);
            audit::append(&mut tx, now, &who, "case.reject", &subject, &detail).await?;
            closed += 1;
        }
        tx.commit().await?;
        // A case a reviewer moved in between is read again by the next
        // pass (or run); a pass that closed nothing ends it.
        if closed == before || cases.len() < BATCH {
            return Ok(closed);
        }
    }
}
