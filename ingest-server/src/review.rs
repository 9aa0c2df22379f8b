//! Applying workflow decisions to stored cases: the one path through which a
//! case changes state. Each action runs in one transaction that locks the
//! audit head first, reads the case, asks [`workflow::decide`], writes the
//! new state only if the case is still in the state it was read in, records
//! the transition in `case_transitions` and appends the audit entry; so a
//! case change without its audit entry cannot exist.
//!
//! A plate correction keeps the machine read (`plate_text`) and writes
//! `reviewed_plate`, then looks the owner up again under the reviewer's
//! name; a violation-type correction is held to the arrival checks that
//! depend on the type (`ingest::verify::type_checks`: a red signal for a
//! red-light case, the camera approved for the type) and re-prices the
//! fine from the signed event with the corrected type.
//!
//! Every change raises the case's `revision`; [`Reviewer::act_seen`]
//! refuses an action on a case whose revision is no longer the one the
//! actor was shown (the console's confirmation forms carry it), so an
//! officer confirms only the plate, type, fine and owner they saw.
//! Upholding a contest tells the owner why, with the new deadline, and
//! withdrawing a fine drops its unsent deliveries and tells the owner if
//! the notice may have reached them (`notices::followup`). A confirmation
//! is refused for a case whose row differs from its signed event, and for
//! one stamped by an unsynchronised clock without the officer's
//! acknowledgement (`integrity::confirmable`).
//!
//! A confirmation charges the middle of the legal range
//! ([`decided_amount`]); on a single case the officer may set another
//! amount ([`Reviewer::confirm_at`]) within the range, in whole thousands,
//! with a reason stating the circumstance (Law on Handling Administrative
//! Violations, Art. 23: mitigating below the middle, aggravating above).
//! The audit entry records the amount, the middle and the circumstance.

mod amount;
pub use amount::{AmountRefused, Circumstance, chosen_amount, decided_amount};

use plate_ocr::plate::PlateGrammar;
use protocol::{Signed, ViolationEvent, ViolationType};
use sqlx::Row;
use thiserror::Error;

use crate::audit::{self, Who};
use crate::db::{Db, DbError};
use crate::fines::{FineTable, Quote};
use crate::registry::{self, Registry};
use crate::workflow::{self, Action, Actor, CaseFacts, CaseState, WorkflowError};

/// Why a review action did not happen.
#[derive(Debug, Error)]
pub enum ReviewError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// The workflow refused.
    #[error(transparent)]
    Refused(#[from] WorkflowError),
    /// Input was wrong (unknown reason code, plate not in the grammar, ...).
    #[error("{0}")]
    Invalid(String),
    /// Someone else changed the case between read and write.
    #[error("the case changed meanwhile; reload it")]
    Conflict,
    /// The case is no longer as the actor was shown it.
    #[error(
        "the case changed after the page you acted on was shown (revision {seen}, now \
         {current}): reload it and check the plate, violation, fine and owner again"
    )]
    Changed {
        /// The revision the actor was shown.
        seen: i64,
        /// The case's revision now.
        current: i64,
    },
    /// A confirmation of a case whose device clock was not synchronised,
    /// without the officer's explicit acknowledgement of that.
    #[error(
        "the device clock was not synchronised when it stamped this case ({0}): confirm it \
         only on its own page, acknowledging the clock state"
    )]
    ClockNotAcknowledged(String),
    /// The case's row no longer says what its device signed
    /// (`integrity::differences`): nothing may be decided on it.
    #[error("the case record was altered after it was received: {0}")]
    RecordAltered(String),
    /// The amount the officer set at confirmation cannot be charged.
    #[error(transparent)]
    Amount(#[from] AmountRefused),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ReviewError {
    fn from(e: sqlx::Error) -> Self {
        ReviewError::Db(DbError::Sqlx(e))
    }
}

/// What review actions need besides the database.
pub struct Reviewer<'a> {
    /// The database.
    pub db: &'a Db,
    /// Plate grammar, to check corrected plates.
    pub grammar: &'a PlateGrammar,
    /// Fine table, to re-price corrected types.
    pub fines: &'a FineTable,
    /// Owner registry, to look up corrected plates.
    pub registry: Option<&'a dyn Registry>,
}

/// The result of an applied action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// State before.
    pub from: CaseState,
    /// State after.
    pub to: CaseState,
}

impl Reviewer<'_> {
    /// Applies `action` by `actor` to case `event_id`, with `reason` (free
    /// text; may be empty where the action does not need one), at `now`.
    pub async fn act(
        &self,
        event_id: &str,
        action: &Action,
        actor: &Actor,
        reason: &str,
        now: i64,
    ) -> Result<Applied, ReviewError> {
        self.act_seen(event_id, action, actor, reason, now, None)
            .await
    }

    /// [`Reviewer::act`] by someone who was shown the case at revision
    /// `seen` (`events.revision`): refused with [`ReviewError::Changed`]
    /// when the case has changed since (`None`: not checked).
    pub async fn act_seen(
        &self,
        event_id: &str,
        action: &Action,
        actor: &Actor,
        reason: &str,
        now: i64,
        seen: Option<i64>,
    ) -> Result<Applied, ReviewError> {
        self.act_acknowledged(event_id, action, actor, reason, now, seen, false)
            .await
    }

    /// [`Reviewer::act_seen`] by someone who has (`clock_ack`) or has not
    /// explicitly acknowledged that the device clock of the case was not
    /// synchronised: a confirmation of such a case is refused
    /// ([`ReviewError::ClockNotAcknowledged`]) without it.
    #[allow(clippy::too_many_arguments)]
    pub async fn act_acknowledged(
        &self,
        event_id: &str,
        action: &Action,
        actor: &Actor,
        reason: &str,
        now: i64,
        seen: Option<i64>,
        clock_ack: bool,
    ) -> Result<Applied, ReviewError> {
        let request = Request {
            event_id,
            action,
            actor,
            reason,
            now,
            seen,
            extra: None,
            clock_ack,
            amount: None,
        };
        self.commit(request).await
    }

    /// The police officer confirms case `event_id` ([`Action::Confirm`] by
    /// `actor`, shown at revision `seen`, `clock_ack` as for
    /// [`Reviewer::act_acknowledged`]) charging `amount` VND: `None` is the
    /// middle of the legal range, as every other confirmation charges;
    /// another amount must lie in the range, be whole thousands and come
    /// with a `reason` stating the circumstance (below the middle
    /// mitigating, above it aggravating; [`chosen_amount`]), else
    /// [`ReviewError::Amount`] and the case is unchanged.
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_at(
        &self,
        event_id: &str,
        actor: &Actor,
        amount: Option<i64>,
        reason: &str,
        now: i64,
        seen: Option<i64>,
        clock_ack: bool,
    ) -> Result<Applied, ReviewError> {
        let request = Request {
            event_id,
            action: &Action::Confirm,
            actor,
            reason,
            now,
            seen,
            extra: None,
            clock_ack,
            amount,
        };
        self.commit(request).await
    }

    /// `request` in its own transaction; then the owner of a corrected
    /// plate is looked up.
    async fn commit(&self, request: Request<'_>) -> Result<Applied, ReviewError> {
        let (event_id, actor) = (request.event_id, request.actor);
        let mut tx = audit::begin(self.db).await?;
        let (applied, corrected) = self.apply(&mut tx, request).await?;
        tx.commit().await?;
        if let (Some(reg), Some((plate, colour)), Ok(id)) =
            (self.registry, corrected, uuid::Uuid::parse_str(event_id))
        {
            registry::resolve_for(self.db, reg, id, &plate, &colour, &actor.id).await;
        }
        Ok(applied)
    }

    /// Pays case `event_id` with the payment `txn_ref` ([`Action::Pay`] by
    /// `actor`) inside `tx`, a transaction opened by [`audit::begin`] that
    /// the caller commits: the payment's own change and the case's commit
    /// together (`payments::settle`). The transition and the audit entry
    /// name the payment (`detail.txn_ref`), so a later report can tell
    /// whether the case was paid by this payment or by another one.
    pub async fn pay_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        event_id: &str,
        actor: &Actor,
        txn_ref: &str,
        now: i64,
    ) -> Result<Applied, ReviewError> {
        let request = Request {
            event_id,
            action: &Action::Pay,
            actor,
            reason: "",
            now,
            seen: None,
            extra: Some(("txn_ref", txn_ref)),
            clock_ack: false,
            amount: None,
        };
        Ok(self.apply(tx, request).await?.0)
    }

    /// The owner contests case `event_id` ([`Action::Contest`] by `actor`,
    /// `reference` naming the contest) inside `tx`, opened by
    /// [`audit::begin`], in which the caller writes the contest's own row
    /// and then commits: a contested case always has its reason, and a
    /// refused contest leaves no row behind, whatever fails in between.
    pub async fn contest_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        event_id: &str,
        actor: &Actor,
        reference: &str,
        now: i64,
    ) -> Result<Applied, ReviewError> {
        // One answer per notice: read under the lock `accept` takes too, so
        // an acceptance committed since the page was read is not
        // overwritten.
        let answered: Option<String> =
            sqlx::query_scalar("SELECT owner_response FROM events WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&mut **tx)
                .await?
                .flatten();
        if answered.is_some() {
            return Err(ReviewError::Conflict);
        }
        let request = Request {
            event_id,
            action: &Action::Contest,
            actor,
            reason: reference,
            now,
            seen: None,
            extra: None,
            clock_ack: false,
            amount: None,
        };
        Ok(self.apply(tx, request).await?.0)
    }

    /// The action inside `tx` (its audit lock held); the plate and colour
    /// to look up once it commits, for a plate correction.
    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        request: Request<'_>,
    ) -> Result<(Applied, Option<(String, String)>), ReviewError> {
        let Request {
            event_id,
            action,
            actor,
            reason,
            now,
            seen,
            extra,
            clock_ack,
            amount: asked,
        } = request;
        let reason = reason.trim();
        if reason.chars().count() > 1000 {
            return Err(ReviewError::Invalid(
                "reason is longer than 1000 characters".into(),
            ));
        }
        let row = sqlx::query(
            "SELECT state, claimed_by, claim_expires_at, accepted_by, plate_text, reviewed_plate, \
             plate_readable, violation_type, reviewed_type, signed_json, fine_min_vnd, fine_max_vnd, \
             evidence_purged_at, revision, event_time_ms, device_id, camera_id FROM events \
             WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| ReviewError::NotFound(event_id.into()))?;
        let state_text: String = row.try_get(0)?;
        let state = CaseState::parse(&state_text)
            .ok_or_else(|| ReviewError::Invalid(format!("stored state {state_text:?}")))?;
        let plate_read: Option<String> = row.try_get(4)?;
        let reviewed_plate: Option<String> = row.try_get(5)?;
        let readable: i64 = row.try_get(6)?;
        let facts = CaseFacts {
            state,
            claimed_by: row.try_get(1)?,
            claim_expires_at: row.try_get(2)?,
            accepted_by: row.try_get(3)?,
            has_plate: reviewed_plate.is_some() || (readable != 0 && plate_read.is_some()),
            evidence_purged: row.try_get::<Option<i64>, _>(12)?.is_some(),
            limitation_ends_at: workflow::limitation_ends_at(row.try_get(14)?),
        };
        let revision: i64 = row.try_get(13)?;
        let camera_key: (String, String) = (row.try_get(15)?, row.try_get(16)?);
        let old_plate = reviewed_plate.clone().or(plate_read.clone());
        let old_type: String = match row.try_get::<Option<String>, _>(8)? {
            Some(t) => t,
            None => row.try_get(7)?,
        };
        let signed_json: String = row.try_get(9)?;
        let fine_range: Option<(i64, i64)> = row
            .try_get::<Option<i64>, _>(10)?
            .zip(row.try_get::<Option<i64>, _>(11)?);

        // Inputs checked before the rules, so a bad input is named as such.
        let mut detail = serde_json::json!({"reason": reason});
        if let Some((key, value)) = extra {
            detail[key] = value.into();
        }
        match action {
            Action::Reject { code } => {
                let known =
                    sqlx::query("SELECT 1 FROM rejection_reasons WHERE code = $1 AND active = 1")
                        .bind(code)
                        .fetch_optional(&mut **tx)
                        .await?;
                if known.is_none() {
                    return Err(ReviewError::Invalid(format!(
                        "unknown rejection reason {code:?}"
                    )));
                }
                if code == "other" && reason.is_empty() {
                    return Err(WorkflowError::ReasonRequired("reject for another reason").into());
                }
                detail["code"] = code.as_str().into();
            }
            Action::CorrectPlate { plate } => {
                let parsed = self
                    .grammar
                    .parse(plate)
                    .map_err(|e| ReviewError::Invalid(format!("plate {plate:?}: {e}")))?;
                detail["old_plate"] = old_plate.clone().into();
                detail["new_plate"] = parsed.canonical.into();
            }
            Action::CorrectType { violation_type } => {
                self.check_type(tx, &signed_json, violation_type, camera_key)
                    .await?;
                detail["old_type"] = old_type.clone().into();
                detail["new_type"] = violation_type.as_str().into();
            }
            Action::Confirm => {}
            _ if asked.is_some() => {
                return Err(ReviewError::Invalid(
                    "an amount is set only when confirming".into(),
                ));
            }
            _ => {}
        }

        let decision = workflow::decide(&facts, action, actor, reason, now)?;
        if let Some(seen) = seen
            && seen != revision
        {
            return Err(ReviewError::Changed {
                seen,
                current: revision,
            });
        }
        // The amount the officer set is held to the range of the case as
        // it is (and was shown: the revision is checked first, so a range
        // changed since is reported as a changed case).
        let charge = if matches!(action, Action::Confirm) {
            chosen_amount(fine_range, asked, reason)?
        } else {
            None
        };
        // Police cancelling a contested fine (`Close`) take it back as a
        // withdrawal does: not while a payment may be arriving, and the
        // owner is told (below).
        let cancels_fine = matches!(action, Action::Withdraw)
            || (matches!(action, Action::Close) && state == CaseState::Contested);
        if cancels_fine {
            payment_not_in_flight(tx, event_id).await?;
        }
        // Under the same lock as `payments::start`: no order can be made
        // between this check and the contest's commit.
        if matches!(action, Action::Contest)
            && let Some(paid) = crate::payments::contest_blocker(tx, event_id, now).await?
        {
            return Err(WorkflowError::PaymentInFlight { paid }.into());
        }
        let mut up = Update::default();
        match &decision.claim {
            Some(Some((who, until))) => {
                up.text("claimed_by", Some(who.clone()));
                up.int("claim_expires_at", Some(*until));
            }
            Some(None) => {
                up.text("claimed_by", None);
                up.int("claim_expires_at", None);
            }
            None => {}
        }
        match action {
            Action::Accept => up.text("accepted_by", Some(actor.id.clone())),
            Action::Confirm => {
                if let Some(ack) =
                    crate::integrity::confirmable(&mut **tx, event_id, clock_ack).await?
                {
                    detail["clock_acknowledged"] = ack.into();
                }
                let (amount, middle, circumstance) = charge.ok_or_else(|| {
                    ReviewError::Invalid(
                        "no fine is priced for this case: correct the violation type or send it back"
                            .into(),
                    )
                })?;
                detail["fine_amount_vnd"] = amount.into();
                detail["fine_middle_vnd"] = middle.into();
                detail["circumstance"] = circumstance.as_str().into();
                up.text("confirmed_by", Some(actor.id.clone()));
                up.int("confirmed_at", Some(now));
                up.int("fine_amount_vnd", Some(amount));
            }
            // The owner's answer changes with the state, never apart
            // from it.
            Action::Contest => {
                up.text("owner_response", Some("contested".into()));
                up.int("owner_response_at", Some(now));
            }
            Action::SendBack => up.text("accepted_by", None),
            Action::Reopen => {
                // The rejection is undone: its reason must not follow the
                // case into a confirmation, the court summary or the
                // training labels (the history keeps it).
                up.text("accepted_by", None);
                up.text("reject_code", None);
                up.text("reject_note", None);
            }
            Action::Reject { code } => {
                up.text("reject_code", Some(code.clone()));
                up.text("reject_note", Some(reason.to_string()));
            }
            Action::CorrectPlate { .. } => {
                let new_plate = detail["new_plate"].as_str().map(str::to_owned);
                // Priced again for the plate it now is (a mission's plate
                // is no one's to fine: `fines::immune_series`).
                let quote = self.requote(&signed_json, &old_type, new_plate.as_deref())?;
                up.text("reviewed_plate", new_plate);
                up.text("owner_status", Some("pending".into()));
                up.text("owner_id", None);
                set_quote(&mut up, &mut detail, &quote);
            }
            Action::CorrectType { violation_type } => {
                up.text("reviewed_type", Some(violation_type.clone()));
                let quote = self.requote(&signed_json, violation_type, old_plate.as_deref())?;
                set_quote(&mut up, &mut detail, &quote);
            }
            _ => {}
        }
        let mut sets = vec![
            "state = $1".to_string(),
            "state_changed_at = $2".to_string(),
            "revision = revision + 1".to_string(),
        ];
        // Placeholders $3, $4 and $5 are the case id, and the state and
        // revision it was read at.
        for (i, (col, _)) in up.0.iter().enumerate() {
            sets.push(format!("{col} = ${}", i + 6));
        }
        let sql = format!(
            "UPDATE events SET {} WHERE event_id = $3 AND state = $4 AND revision = $5",
            sets.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(decision.to.as_str())
            .bind(now)
            .bind(event_id)
            .bind(state.as_str())
            .bind(revision);
        for (_, v) in up.0 {
            q = match v {
                Value::Text(t) => q.bind(t),
                Value::Int(i) => q.bind(i),
            };
        }
        if q.execute(&mut **tx).await?.rows_affected() != 1 {
            return Err(ReviewError::Conflict);
        }
        sqlx::query(
            "INSERT INTO case_transitions (id, event_id, at, actor, role, action, from_state, \
             to_state, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        // Time-ordered ids (v7, monotonic within the process): two steps
        // in the same millisecond still list in the order they were taken
        // (`ORDER BY at, id`).
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(event_id)
        .bind(now)
        .bind(&actor.id)
        .bind(actor.role.as_str())
        .bind(action.name())
        .bind(state.as_str())
        .bind(decision.to.as_str())
        .bind((!reason.is_empty()).then_some(reason))
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
        detail["from"] = state.as_str().into();
        detail["to"] = decision.to.as_str().into();
        match action {
            Action::Confirm => crate::notices::enqueue(tx, event_id, now).await?,
            Action::Uphold => {
                let told =
                    crate::notices::followup::contest_rejected(tx, event_id, reason, now).await?;
                // Told only if some channel will carry it; else the answer
                // waits for a person to post it (the 20 days wait too).
                let deliveries = told.as_ref().map_or(0, |(_, d)| *d);
                detail["owner_told"] = (deliveries > 0).into();
                detail["paper_needed"] = (told.is_some() && deliveries == 0).into();
            }
            _ if cancels_fine => {
                let w = crate::notices::followup::withdrawn(tx, event_id, reason, now).await?;
                detail["deliveries_dropped"] = w.dropped.into();
                detail["owner_told"] = w.told.into();
                detail["inspection_warning_withdrawn"] = w.warning_withdrawn.into();
                detail["paper_needed"] = w.paper_needed.into();
            }
            _ => {}
        }
        audit::append(
            tx,
            now,
            &Who::new(actor.id.clone(), actor.role),
            &format!("case.{}", action.name()),
            &format!("case:{event_id}"),
            &detail,
        )
        .await?;
        let corrected = match (action, detail["new_plate"].as_str()) {
            (Action::CorrectPlate { .. }, Some(plate)) => {
                Some((plate.to_string(), colour_of(&signed_json)))
            }
            _ => None,
        };
        Ok((
            Applied {
                from: state,
                to: decision.to,
            },
            corrected,
        ))
    }

    /// A type correction is held to the arrival checks that depend on the
    /// type ([`crate::ingest::verify::type_checks`]) against the camera's
    /// registry entry now: refused with [`ReviewError::Invalid`] naming the
    /// check. (Whether an unknown camera may send at all was settled when
    /// the case was stored; only what the type needs is asked here.)
    async fn check_type(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        signed_json: &str,
        violation_type: &str,
        camera_key: (String, String),
    ) -> Result<(), ReviewError> {
        let mut event = stored_event(signed_json)?;
        event.violation_type = parse_type(violation_type)?;
        // What the type needs recorded (a speed for speeding, a signal for
        // red light): the event must be one a device could have sent.
        protocol::Message::validate(&event).map_err(|e| {
            ReviewError::Invalid(format!(
                "cannot correct the violation to {violation_type}: the event does not record it ({e})"
            ))
        })?;
        let devices = std::collections::HashSet::from([camera_key.0.clone()]);
        let cameras = crate::cameras::for_devices_on(tx, &devices)
            .await
            .map_err(|e| ReviewError::Invalid(format!("camera registry: {e}")))?;
        crate::ingest::verify::type_checks(&event, cameras.get(&camera_key), false).map_err(|r| {
            ReviewError::Invalid(format!(
                "cannot correct the violation to {violation_type}: {} ({})",
                r.message, r.code
            ))
        })
    }

    /// The quote of the stored event as reviewed: its violation type
    /// `violation_type`, and its plate `plate` where a reviewer set one.
    fn requote(
        &self,
        signed_json: &str,
        violation_type: &str,
        plate: Option<&str>,
    ) -> Result<Quote, ReviewError> {
        let mut event = stored_event(signed_json)?;
        event.violation_type = parse_type(violation_type)?;
        if let Some(plate) = plate {
            event.plate.text = Some(plate.to_owned());
        }
        Ok(self.fines.quote(&event))
    }
}

/// Writes a case's fine columns from `quote`, and the quote into the
/// action's audit `detail`.
fn set_quote(up: &mut Update, detail: &mut serde_json::Value, quote: &Quote) {
    let priced = match quote {
        Quote::Priced {
            schedule,
            article,
            min_vnd,
            max_vnd,
            points,
        } => Some((
            schedule.clone(),
            article.clone(),
            *min_vnd,
            *max_vnd,
            *points,
        )),
        _ => None,
    };
    up.text("fine_status", Some(quote.status().into()));
    up.text("fine_schedule", priced.as_ref().map(|p| p.0.clone()));
    up.text("fine_ref", priced.as_ref().map(|p| p.1.clone()));
    up.int("fine_min_vnd", priced.as_ref().map(|p| p.2));
    up.int("fine_max_vnd", priced.as_ref().map(|p| p.3));
    up.int("licence_points", priced.as_ref().map(|p| p.4));
    detail["fine"] = serde_json::to_value(quote).unwrap_or_default();
}

/// A fine with money in flight is not withdrawn: a payment order pending
/// at the gateway, paid but not yet applied to the case, or held for a
/// person (`needs_person`) is settled first (paid, refunded or cancelled),
/// else the owner could pay a fine that no longer exists.
async fn payment_not_in_flight(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event_id: &str,
) -> Result<(), ReviewError> {
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments WHERE event_id = $1 \
         AND state IN ('pending', 'paid', 'needs_person')",
    )
    .bind(event_id)
    .fetch_one(&mut **tx)
    .await?;
    if open > 0 {
        return Err(ReviewError::Invalid(
            "a payment of this fine is in flight (pending, or paid and not yet applied, or held \
             for a person): settle it before withdrawing the fine"
                .into(),
        ));
    }
    Ok(())
}

/// One action to apply (see [`Reviewer::apply`]).
struct Request<'a> {
    event_id: &'a str,
    action: &'a Action,
    actor: &'a Actor,
    reason: &'a str,
    now: i64,
    seen: Option<i64>,
    /// One more field of the transition's detail (the paying order).
    extra: Option<(&'static str, &'a str)>,
    /// The actor acknowledged an unsynchronised device clock.
    clock_ack: bool,
    /// The amount a confirmation charges, where the officer set one
    /// (`None`: the middle of the range).
    amount: Option<i64>,
}

/// Column assignments of one case update, in bind order. Column names are
/// constants of this module, never input.
#[derive(Default)]
struct Update(Vec<(&'static str, Value)>);

enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Update {
    fn text(&mut self, col: &'static str, v: Option<String>) {
        self.0.push((col, Value::Text(v)));
    }
    fn int(&mut self, col: &'static str, v: Option<i64>) {
        self.0.push((col, Value::Int(v)));
    }
}

/// The event as the device signed it (it was verified when stored).
pub fn stored_event(signed_json: &str) -> Result<ViolationEvent, ReviewError> {
    let signed = Signed::<ViolationEvent>::from_json(signed_json.as_bytes())
        .map_err(|e| ReviewError::Invalid(format!("stored event: {e}")))?;
    serde_json::from_value(serde_json::Value::Object(signed.payload().clone()))
        .map_err(|e| ReviewError::Invalid(format!("stored event: {e}")))
}

fn colour_of(signed_json: &str) -> String {
    stored_event(signed_json)
        .map(|e| crate::ingest::enum_text(&e.plate.colour))
        .unwrap_or_else(|_| "unknown".into())
}

/// A violation type by its wire name.
pub fn parse_type(name: &str) -> Result<ViolationType, ReviewError> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| ReviewError::Invalid(format!("unknown violation type {name:?}")))
}

/// The managed rejection reasons (active ones), as (code, Vietnamese, English).
pub async fn rejection_reasons(db: &Db) -> Result<Vec<(String, String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT code, label_vi, label_en FROM rejection_reasons WHERE active = 1 ORDER BY \
         CASE code WHEN 'false_trigger' THEN 0 WHEN 'plate_unreadable' THEN 1 \
         WHEN 'emergency_vehicle' THEN 2 WHEN 'other' THEN 9 ELSE 5 END, code",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
