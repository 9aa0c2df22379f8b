//! Which cases are a citizen's: the one query every page of the app reads
//! cases through (the list, a case, its evidence, accept, contest, pay).
//!
//! A case is the signed-in citizen's when police have confirmed it (it is
//! in one of the states a citizen sees) and its owner is the citizen's —
//! the owner whose national ID number the session holds — **and** that
//! owner is the one its notice is delivered to: the lookup is `resolved`
//! (`registry::DELIVERABLE_OWNER_SQL`, the same definition the notice
//! outbox uses). A case held back for a person (`vehicle_mismatch`: a
//! misread or cloned plate, the registered owner possibly innocent;
//! `registration_not_active`) keeps the registered owner's id but is not
//! shown to them: its evidence shows someone else's car and driver.
//!
//! A `closed` case is shown in full only if it was paid (it went through
//! `paid`: the owner keeps the case, its receipt and the evidence of what
//! they paid for). A fine police took back — withdrawn (`Withdraw`, e.g. a
//! misread plate) or cancelled after a contest (`Close`, e.g. "not my
//! car") — is not the owner's any more: its stills and clip may show
//! someone else's car and driver, and nothing is left for the owner to do
//! with it (Decree 13/2023/ND-CP: no more personal data than the purpose
//! needs). An owner who contested it, or was told of the cancellation (a
//! `withdrawn` message, whose link leads to the case), sees its page with
//! the reason and the case's facts but no evidence ([`MyCase::evidence_shown`]); one
//! never told of the case (withdrawn before the notice reached them) does
//! not see it at all.
//!
//! Any other case answers "not found", exactly like one that does not
//! exist, and the attempt goes to the audit log (a few per session a
//! minute: [`DENIALS_PER_WINDOW`]).

use std::collections::HashMap;

use sqlx::Row;

use super::{AppError, Citizen};
use crate::audit::{self, Who};
use crate::db::{Db, now_ms};
use crate::notices::text::{CAMERA_DESCRIPTION_SQL, basis, place};
use crate::registry::DELIVERABLE_OWNER_SQL;
use crate::workflow::Role;

/// States a citizen ever sees (confirmed by police, or later); `closed`
/// only as [`CLOSED_SHOWN_SQL`] allows.
const VISIBLE: &str = "'confirmed', 'notice_issued', 'paid', 'contested', 'overdue', 'closed'";

/// Whether the case was paid: its history (`case_transitions`, written
/// with every move by `review::Reviewer`) has it entering `paid`.
const WAS_PAID_SQL: &str = "EXISTS (SELECT 1 FROM case_transitions t \
     WHERE t.event_id = e.event_id AND t.to_state = 'paid')";

/// A `closed` case is shown if it was paid, if the owner contested it
/// (they wait for the answer), or if they were told it was cancelled (a
/// `withdrawn` message, `notices::followup`, whose link leads here); see
/// the module's comment for what is shown then.
const CLOSED_SHOWN_SQL: &str = "(e.state <> 'closed' OR e.owner_response = 'contested' \
     OR EXISTS (SELECT 1 FROM case_transitions t WHERE t.event_id = e.event_id \
     AND t.to_state = 'paid') OR EXISTS (SELECT 1 FROM notice_messages m \
     WHERE m.event_id = e.event_id AND m.kind = 'withdrawn'))";

/// A citizen's case.
pub(super) struct MyCase {
    pub event_id: String,
    pub owner_id: String,
    pub plate: String,
    pub violation: String,
    pub event_ms: i64,
    /// Where, as the notice says it (`notices::text::place`).
    pub place: String,
    pub state: String,
    pub amount: Option<i64>,
    /// The legal basis, as the notice says it (`notices::text::basis`).
    pub basis: String,
    pub points: Option<i64>,
    pub response: Option<String>,
    /// The notice's deadline, if it has one.
    respond_by: Option<i64>,
    state_changed_at: Option<i64>,
    /// It went through `paid`.
    was_paid: bool,
    /// What became of police's answer to a contest, if one was written
    /// when the case last changed state.
    answer: crate::notices::deadlines::Answer,
}

impl MyCase {
    /// Whether the owner is shown the case's evidence: not for a fine
    /// police took back (closed and never paid).
    pub fn evidence_shown(&self) -> bool {
        self.state != "closed" || self.was_paid
    }

    /// The deadline the owner is held to, where a clock runs: in
    /// `notice_issued` (to pay or contest), as the deadline check holds the
    /// case to it (`notices::deadlines::held_to`): the notice's date, moved
    /// on when a contest upheld started the clock again from when police's
    /// answer reached the owner. `None` before the notice has reached the
    /// owner (`confirmed`: no clock runs yet), while police's answer to a
    /// contest has not, once it has run out (`overdue`), and once the case
    /// is contested, paid or closed.
    pub fn deadline(&self) -> Option<i64> {
        let notice = self.respond_by?;
        match self.state.as_str() {
            "notice_issued" => crate::notices::deadlines::held_to(
                notice,
                self.state_changed_at.unwrap_or(0),
                self.answer,
            ),
            _ => None,
        }
    }

    /// Whether the owner can pay now: the notice has reached them
    /// (`notice_issued`) or the deadline passed unpaid (`overdue`).
    pub fn payable(&self) -> bool {
        matches!(self.state.as_str(), "notice_issued" | "overdue")
    }

    /// The one contest rule, for the page and the handler alike: a case
    /// can be contested online while its notice stands (`notice_issued`),
    /// the owner has not answered it (accepted or contested), and `now` is
    /// not past its deadline (the end of the 20th day, Vietnam time). A
    /// contest after the deadline is refused, not taken as late: the 20
    /// days are the time to respond (Circular 73/2024/TT-BCA, Art. 24), and
    /// after them the vehicle is warned to the inspection register; the
    /// owner then deals with the police office in person.
    pub fn contest_open(&self, now: i64) -> bool {
        self.state == "notice_issued"
            && self.response.is_none()
            && self.deadline().is_some_and(|d| now <= d)
    }
}

/// The query of a citizen's cases (`$1`: the national ID number), with
/// `extra` conditions after the module's.
fn select(extra: &str) -> String {
    format!(
        "SELECT e.event_id, e.owner_id, COALESCE(e.reviewed_plate, e.plate_text), \
         COALESCE(e.reviewed_type, e.violation_type), e.event_time_ms, e.site, e.camera_id, e.state, \
         e.fine_amount_vnd, e.fine_ref, e.licence_points, e.fine_schedule, e.owner_response, \
         n.respond_by, e.state_changed_at, {CAMERA_DESCRIPTION_SQL}, {WAS_PAID_SQL}, {answer} \
         FROM events e JOIN owners o ON o.owner_id = e.owner_id \
         LEFT JOIN notices n ON n.event_id = e.event_id \
         WHERE o.national_id = $1 AND {DELIVERABLE_OWNER_SQL} AND e.confirmed_at IS NOT NULL \
         AND e.state IN ({VISIBLE}) AND {CLOSED_SHOWN_SQL}{extra}",
        answer = crate::notices::deadlines::answer_columns("e")
    )
}

fn my_case(r: &sqlx::any::AnyRow) -> Result<MyCase, sqlx::Error> {
    let (site, camera): (String, String) = (r.try_get(5)?, r.try_get(6)?);
    let description: Option<String> = r.try_get(15)?;
    let fine_ref: Option<String> = r.try_get(9)?;
    let schedule: Option<String> = r.try_get(11)?;
    Ok(MyCase {
        event_id: r.try_get(0)?,
        owner_id: r.try_get(1)?,
        plate: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
        violation: r.try_get(3)?,
        event_ms: r.try_get(4)?,
        place: place(&site, &camera, description.as_deref()),
        state: r.try_get(7)?,
        amount: r.try_get(8)?,
        basis: basis(fine_ref.as_deref(), schedule.as_deref()),
        points: r.try_get(10)?,
        response: r.try_get(12)?,
        respond_by: r.try_get(13)?,
        state_changed_at: r.try_get(14)?,
        was_paid: r
            .try_get::<bool, _>(16)
            .or_else(|_| r.try_get::<i64, _>(16).map(|v| v != 0))?,
        answer: crate::notices::deadlines::Answer::from_columns(r.try_get(17)?, r.try_get(18)?),
    })
}

/// The citizen's cases, newest first (at most 200).
pub(super) async fn mine(db: &Db, nid: &str) -> Result<Vec<MyCase>, AppError> {
    let sql = select(" ORDER BY e.event_time_ms DESC LIMIT 200");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(nid)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(my_case).collect::<Result<_, _>>()?)
}

/// One case of this citizen; any other case is "not found", and the
/// attempt is audited.
pub(super) async fn one(db: &Db, citizen: &Citizen, id: &str) -> Result<MyCase, AppError> {
    let sql = select(" AND e.event_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&citizen.national_id)
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(r) = row else {
        let now = now_ms();
        // 404 every time; an audit entry only within the session's budget.
        if let Some(unrecorded) = DENIALS.may_record(
            &crate::accounts::sessions::token_digest(&citizen.token),
            now,
        ) {
            audit::record(
                db,
                now,
                &Who::new(citizen_actor_id(citizen), Role::System),
                "citizen.case_denied",
                &format!("case:{}", id.chars().take(64).collect::<String>()),
                &serde_json::json!({
                    "why": "not a case of the signed-in citizen's vehicles, or none",
                    "unrecorded_before": unrecorded,
                    // A link on another site opened it in the citizen's browser.
                    "from_another_site": citizen.from_another_site,
                }),
            )
            .await?;
        }
        return Err(AppError::NotFound);
    };
    Ok(my_case(&r)?)
}

/// `citizen.case_denied` entries one session may write per
/// [`DENIAL_WINDOW_MS`]. Each entry is a write under the database's write
/// lock and a row in a log kept for years: a citizen looping over made-up
/// case ids would otherwise flood both. Past the budget the answer is still
/// 404, and the next entry written counts the denials left out
/// (`unrecorded_before`).
pub(super) const DENIALS_PER_WINDOW: u32 = 5;
/// The window of [`DENIALS_PER_WINDOW`], ms.
pub(super) const DENIAL_WINDOW_MS: i64 = 60_000;
/// Sessions remembered (in memory, per replica: a restart or another
/// replica gives a fresh budget, which bounds the flood all the same).
const MAX_SESSIONS: usize = 10_000;

static DENIALS: DenialBudget = DenialBudget {
    by_session: std::sync::Mutex::new(None),
};

/// Per session (keyed by the token's digest): `(window start, entries
/// written in it, denials left unrecorded since the last entry)`.
type DenialCounts = HashMap<String, (i64, u32, u64)>;

/// The denials of every session (the table made at first use).
struct DenialBudget {
    by_session: std::sync::Mutex<Option<DenialCounts>>,
}

impl DenialBudget {
    /// Whether a denial of `session` at `now` is written to the audit log:
    /// `Some(denials left out before it)`, or `None` past the budget.
    fn may_record(&self, session: &str, now: i64) -> Option<u64> {
        let mut guard = self.by_session.lock().unwrap_or_else(|p| p.into_inner());
        let map = guard.get_or_insert_with(HashMap::new);
        if map.len() >= MAX_SESSIONS && !map.contains_key(session) {
            map.retain(|_, (start, _, _)| now < start.saturating_add(DENIAL_WINDOW_MS));
            if map.len() >= MAX_SESSIONS {
                let oldest = map.iter().min_by_key(|(_, (s, _, _))| *s);
                if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                    map.remove(&k);
                }
            }
        }
        let entry = map.entry(session.to_owned()).or_insert((now, 0, 0));
        if now >= entry.0.saturating_add(DENIAL_WINDOW_MS) {
            (entry.0, entry.1) = (now, 0);
        }
        if entry.1 >= DENIALS_PER_WINDOW {
            entry.2 = entry.2.saturating_add(1);
            return None;
        }
        entry.1 += 1;
        Some(std::mem::take(&mut entry.2))
    }
}

/// How a citizen appears in the audit log: a keyed digest, not the ID
/// number (`sso::citizen::actor_id`).
pub(super) fn citizen_actor_id(c: &Citizen) -> String {
    crate::sso::citizen::actor_id(&c.national_id)
}
