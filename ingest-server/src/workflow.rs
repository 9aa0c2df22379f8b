//! The case workflow: which state a case is in, who may move it where, and
//! the rules that keep a fine from leaving without two people. This module
//! is pure (no database, no clock of its own) so every transition and every
//! forbidden one is unit-tested here; `cases::review` applies a decision in
//! one transaction with its audit entry.
//!
//! ```text
//! new ─claim─▶ in_review ─accept─▶ accepted ─confirm─▶ confirmed ─issue─▶ notice_issued
//!                 │   ▲                │                                 │  │  │
//!              reject └──send_back─────┘                    pay ◀────────┘  │  └▶ overdue
//!                 ▼                                       contest ◀─────────┘
//!              rejected ─reopen─▶ in_review          contested ─uphold─▶ notice_issued
//!                                                    contested / rejected / paid ─close─▶ closed
//!                                  confirmed / notice_issued / overdue ─withdraw─▶ closed
//! ```
//!
//! Nobody may be fined once the limitation period ([`LIMITATION_DAYS`]
//! after the violation) has run out: accepting, confirming and reopening
//! are refused then ([`WorkflowError::PastLimitation`]), the same period
//! ingest refuses an event past.
//!
//! Claims are leases: an operator claims a case for [`CLAIM_TTL_MS`]; while
//! the lease is live nobody else may act on the case as a reviewer, and an
//! expired lease may be taken over. The officer who confirms must not be the
//! person who accepted (two-person rule), whatever their roles.

use std::fmt;

/// How long a reviewer's claim on a case lasts without action (10 min).
pub const CLAIM_TTL_MS: i64 = 10 * 60 * 1000;

/// The limitation period for traffic violations (Law on Handling
/// Administrative Violations, Art. 6): one year, in days. The one source
/// for ingest (`ingest::verify`), the workflow, notices and the console.
pub const LIMITATION_DAYS: i64 = 365;

/// [`LIMITATION_DAYS`] in milliseconds.
pub const LIMITATION_MS: i64 = LIMITATION_DAYS * 86_400_000;

/// The last moment (Unix ms) a violation seen at `event_ms` can still be
/// penalised: exactly [`LIMITATION_MS`] later is still within the period,
/// a millisecond after is not (as ingest counts it).
pub fn limitation_ends_at(event_ms: i64) -> i64 {
    event_ms.saturating_add(LIMITATION_MS)
}

/// Where a case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseState {
    /// Stored, not yet looked at.
    New,
    /// Claimed by a reviewer at least once, not yet decided.
    InReview,
    /// Not a violation, or not enforceable (with a reason).
    Rejected,
    /// An operator found it a real violation with the right plate.
    Accepted,
    /// A police officer confirmed the fine.
    Confirmed,
    /// The notice went out to the owner.
    NoticeIssued,
    /// The fine was paid.
    Paid,
    /// The owner contested; back with police.
    Contested,
    /// No response within the legal time.
    Overdue,
    /// Nothing more to do.
    Closed,
}

impl CaseState {
    /// Every state, in workflow order.
    pub const ALL: [CaseState; 10] = [
        CaseState::New,
        CaseState::InReview,
        CaseState::Rejected,
        CaseState::Accepted,
        CaseState::Confirmed,
        CaseState::NoticeIssued,
        CaseState::Paid,
        CaseState::Contested,
        CaseState::Overdue,
        CaseState::Closed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::New => "new",
            CaseState::InReview => "in_review",
            CaseState::Rejected => "rejected",
            CaseState::Accepted => "accepted",
            CaseState::Confirmed => "confirmed",
            CaseState::NoticeIssued => "notice_issued",
            CaseState::Paid => "paid",
            CaseState::Contested => "contested",
            CaseState::Overdue => "overdue",
            CaseState::Closed => "closed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<CaseState> {
        CaseState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Vietnamese label for the console.
    pub fn label_vi(self) -> &'static str {
        match self {
            CaseState::New => "Mới",
            CaseState::InReview => "Đang xem xét",
            CaseState::Rejected => "Đã loại",
            CaseState::Accepted => "Chờ CSGT xác nhận",
            CaseState::Confirmed => "CSGT đã xác nhận",
            CaseState::NoticeIssued => "Đã gửi thông báo",
            CaseState::Paid => "Đã nộp phạt",
            CaseState::Contested => "Đang khiếu nại",
            CaseState::Overdue => "Quá hạn",
            CaseState::Closed => "Đã đóng",
        }
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person (or the system) may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// IOC operator: reviews cases.
    Operator,
    /// Traffic police officer: confirms fines, answers contests.
    Police,
    /// Supervisor: reviews like an operator, reopens, releases claims.
    Supervisor,
    /// Auditor: reads everything, changes nothing.
    Auditor,
    /// Administrator: accounts and devices, no case decisions.
    Admin,
    /// The server itself (notices, payments, deadlines).
    System,
}

impl Role {
    /// Roles a person account can have.
    pub const PEOPLE: [Role; 5] = [
        Role::Operator,
        Role::Police,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Police => "police",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    /// Parses a stored name (person roles only).
    pub fn parse(s: &str) -> Option<Role> {
        Role::PEOPLE.into_iter().find(|r| r.as_str() == s)
    }

    /// May review (claim, accept, reject, correct).
    pub fn reviews(self) -> bool {
        matches!(self, Role::Operator | Role::Supervisor)
    }

    /// May see owners' personal data (always logged).
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Role::Police | Role::Auditor)
    }

    /// Vietnamese label.
    pub fn label_vi(self) -> &'static str {
        match self {
            Role::Operator => "Điều hành viên IOC",
            Role::Police => "Cảnh sát giao thông",
            Role::Supervisor => "Giám sát viên",
            Role::Auditor => "Kiểm toán viên",
            Role::Admin => "Quản trị viên",
            Role::System => "Hệ thống",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Stable id (user id, or `system`).
    pub id: String,
    /// Their role.
    pub role: Role,
}

/// What someone wants to do to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take the case for review (lease).
    Claim,
    /// Give the lease back without deciding.
    Release,
    /// Real violation, right plate.
    Accept,
    /// Not enforceable, with a managed reason code.
    Reject {
        /// Code from the managed list.
        code: String,
    },
    /// Replace the plate read (owner is looked up again).
    CorrectPlate {
        /// Canonical plate text.
        plate: String,
    },
    /// Replace the violation type.
    CorrectType {
        /// Violation type name.
        violation_type: String,
    },
    /// Police confirm the fine.
    Confirm,
    /// Police send the case back to review.
    SendBack,
    /// Supervisor reopens a rejected case.
    Reopen,
    /// The notice went out.
    IssueNotice,
    /// Paid in full.
    Pay,
    /// The owner contests.
    Contest,
    /// Police uphold the fine after a contest (with the reason the owner
    /// is told).
    Uphold,
    /// Police withdraw a confirmed fine (with a reason), before it is paid.
    Withdraw,
    /// The response time passed.
    MarkOverdue,
    /// Nothing more to do.
    Close,
}

impl Action {
    /// Stored name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Claim => "claim",
            Action::Release => "release",
            Action::Accept => "accept",
            Action::Reject { .. } => "reject",
            Action::CorrectPlate { .. } => "correct_plate",
            Action::CorrectType { .. } => "correct_type",
            Action::Confirm => "confirm",
            Action::SendBack => "send_back",
            Action::Reopen => "reopen",
            Action::IssueNotice => "issue_notice",
            Action::Pay => "pay",
            Action::Contest => "contest",
            Action::Uphold => "uphold",
            Action::Withdraw => "withdraw",
            Action::MarkOverdue => "mark_overdue",
            Action::Close => "close",
        }
    }

    /// Actions that need a written reason.
    pub fn needs_reason(&self) -> bool {
        matches!(
            self,
            Action::CorrectPlate { .. }
                | Action::CorrectType { .. }
                | Action::SendBack
                | Action::Reopen
                | Action::Uphold
                | Action::Withdraw
        )
    }
}

/// What the rules need to know about the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    /// Current state.
    pub state: CaseState,
    /// Who holds the review lease, if anyone.
    pub claimed_by: Option<String>,
    /// When that lease ends (Unix ms).
    pub claim_expires_at: Option<i64>,
    /// Who accepted it.
    pub accepted_by: Option<String>,
    /// Is there a plate to fine (read or corrected)?
    pub has_plate: bool,
    /// Was its evidence deleted under retention (`crate::retention`)?
    pub evidence_purged: bool,
    /// The last moment it can be penalised ([`limitation_ends_at`] of the
    /// violation's time).
    pub limitation_ends_at: i64,
}

impl CaseFacts {
    /// The lease holder whose lease is still live at `now`.
    pub fn live_claim(&self, now: i64) -> Option<&str> {
        match (&self.claimed_by, self.claim_expires_at) {
            (Some(who), Some(until)) if until > now => Some(who),
            _ => None,
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The role may not do this at all.
    #[error("a {role} may not {action}")]
    RoleForbidden {
        /// Role.
        role: Role,
        /// Action name.
        action: &'static str,
    },
    /// Not from this state.
    #[error("cannot {action} a case that is {state}")]
    WrongState {
        /// Action name.
        action: &'static str,
        /// State.
        state: CaseState,
    },
    /// Someone else holds the case.
    #[error("the case is being reviewed by someone else")]
    ClaimedByOther,
    /// The reviewer must claim first.
    #[error("claim the case before deciding on it")]
    NotClaimed,
    /// Two-person rule.
    #[error("the officer who confirms must not be the person who accepted the case")]
    TwoPersonRule,
    /// A reason is required.
    #[error("a reason is required to {0}")]
    ReasonRequired(&'static str),
    /// No plate to fine.
    #[error("cannot accept a case without a plate: correct the plate or reject it")]
    NoPlate,
    /// The evidence is gone (retention), so there is nothing to review.
    #[error("the case's evidence was deleted under the retention policy; it cannot be reopened")]
    EvidencePurged,
    /// The limitation period has run out: nobody can be fined for it.
    #[error(
        "the one-year limitation period for this violation ended at {}: it can no longer be \
         penalised (reject it instead)",
        crate::notices::text::rfc3339(*ends_at)
    )]
    PastLimitation {
        /// When it ended (Unix ms).
        ends_at: i64,
    },
    /// A payment of the fine is under way or made (checked under the case
    /// lock, in the action's transaction): the owner cannot contest it.
    #[error(
        "{}",
        if *paid {
            "Phạt tiền của vụ việc này đã được nộp: không thể khiếu nại. \
             (The fine is paid: it cannot be contested.)"
        } else {
            "Vụ việc này đang được thanh toán: vui lòng chờ kết quả thanh toán rồi thử lại. \
             (A payment of this fine is in progress: wait for its result.)"
        }
    )]
    PaymentInFlight {
        /// Paid (else an order is pending at the gateway).
        paid: bool,
    },
}

/// The outcome of an allowed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// State after the action.
    pub to: CaseState,
    /// Lease after the action: `Some(Some(..))` sets it, `Some(None)` clears it,
    /// `None` leaves it.
    pub claim: Option<Option<(String, i64)>>,
}

/// Decides `action` by `actor` on a case with `facts` at `now` (Unix ms),
/// with `reason` as given (empty when none). The single place the workflow's
/// rules live.
pub fn decide(
    facts: &CaseFacts,
    action: &Action,
    actor: &Actor,
    reason: &str,
    now: i64,
) -> Result<Decision, WorkflowError> {
    use CaseState as S;
    let name = action.name();
    let forbidden = || WorkflowError::RoleForbidden {
        role: actor.role,
        action: name,
    };
    let wrong = || WorkflowError::WrongState {
        action: name,
        state: facts.state,
    };
    if action.needs_reason() && reason.trim().is_empty() {
        return Err(WorkflowError::ReasonRequired(name));
    }
    let role = actor.role;
    let live = facts.live_claim(now);
    // Review actions need the caller's live lease; supervisors may take over.
    let holds = |allow_take_over: bool| -> Result<(), WorkflowError> {
        match live {
            Some(who) if who == actor.id => Ok(()),
            Some(_) if allow_take_over && role == Role::Supervisor => Ok(()),
            Some(_) => Err(WorkflowError::ClaimedByOther),
            None => Err(WorkflowError::NotClaimed),
        }
    };
    let keep = |to| Decision { to, claim: None };
    let within_limitation = || {
        if now > facts.limitation_ends_at {
            Err(WorkflowError::PastLimitation {
                ends_at: facts.limitation_ends_at,
            })
        } else {
            Ok(())
        }
    };
    let cleared = |to| Decision {
        to,
        claim: Some(None),
    };
    match action {
        Action::Claim => {
            if !role.reviews() {
                return Err(forbidden());
            }
            if !matches!(facts.state, S::New | S::InReview) {
                return Err(wrong());
            }
            match live {
                Some(who) if who != actor.id && role != Role::Supervisor => {
                    Err(WorkflowError::ClaimedByOther)
                }
                _ => Ok(Decision {
                    to: S::InReview,
                    claim: Some(Some((actor.id.clone(), now + CLAIM_TTL_MS))),
                }),
            }
        }
        Action::Release => {
            if !role.reviews() {
                return Err(forbidden());
            }
            if facts.state != S::InReview {
                return Err(wrong());
            }
            holds(true)?;
            Ok(cleared(S::InReview))
        }
        Action::Accept | Action::Reject { .. } => {
            if !role.reviews() {
                return Err(forbidden());
            }
            if facts.state != S::InReview {
                return Err(wrong());
            }
            holds(false)?;
            if matches!(action, Action::Accept) {
                if !facts.has_plate {
                    return Err(WorkflowError::NoPlate);
                }
                within_limitation()?;
                Ok(cleared(S::Accepted))
            } else {
                Ok(cleared(S::Rejected))
            }
        }
        Action::CorrectPlate { .. } | Action::CorrectType { .. } => {
            if !role.reviews() {
                return Err(forbidden());
            }
            if facts.state != S::InReview {
                return Err(wrong());
            }
            holds(false)?;
            // A correction renews the lease: the reviewer is working.
            Ok(Decision {
                to: S::InReview,
                claim: Some(Some((actor.id.clone(), now + CLAIM_TTL_MS))),
            })
        }
        Action::Confirm | Action::SendBack => {
            if role != Role::Police {
                return Err(forbidden());
            }
            if facts.state != S::Accepted {
                return Err(wrong());
            }
            if matches!(action, Action::Confirm) {
                if facts.accepted_by.as_deref() == Some(actor.id.as_str()) {
                    return Err(WorkflowError::TwoPersonRule);
                }
                within_limitation()?;
                Ok(keep(S::Confirmed))
            } else {
                Ok(cleared(S::InReview))
            }
        }
        Action::Reopen => {
            if role != Role::Supervisor {
                return Err(forbidden());
            }
            if facts.state != S::Rejected {
                return Err(wrong());
            }
            if facts.evidence_purged {
                return Err(WorkflowError::EvidencePurged);
            }
            within_limitation()?;
            Ok(cleared(S::InReview))
        }
        Action::Uphold => {
            if role != Role::Police {
                return Err(forbidden());
            }
            if facts.state != S::Contested {
                return Err(wrong());
            }
            Ok(keep(S::NoticeIssued))
        }
        Action::Withdraw => {
            // Only police may impose a fine, so only police take one back
            // (a paid one is refunded, not withdrawn: out of scope here).
            if role != Role::Police {
                return Err(forbidden());
            }
            if !matches!(facts.state, S::Confirmed | S::NoticeIssued | S::Overdue) {
                return Err(wrong());
            }
            Ok(cleared(S::Closed))
        }
        Action::IssueNotice | Action::Pay | Action::Contest | Action::MarkOverdue => {
            if role != Role::System {
                return Err(forbidden());
            }
            let ok = match action {
                Action::IssueNotice => facts.state == S::Confirmed,
                Action::Pay => matches!(facts.state, S::NoticeIssued | S::Overdue),
                Action::Contest => facts.state == S::NoticeIssued,
                _ => facts.state == S::NoticeIssued,
            };
            if !ok {
                return Err(wrong());
            }
            Ok(keep(match action {
                Action::IssueNotice => S::NoticeIssued,
                Action::Pay => S::Paid,
                Action::Contest => S::Contested,
                _ => S::Overdue,
            }))
        }
        Action::Close => {
            let allowed = match facts.state {
                // Police close a contested case by cancelling the fine.
                S::Contested => role == Role::Police,
                S::Rejected | S::Paid => matches!(role, Role::System | Role::Supervisor),
                _ => false,
            };
            if !matches!(role, Role::Police | Role::System | Role::Supervisor) {
                return Err(forbidden());
            }
            if !allowed {
                return Err(wrong());
            }
            if facts.state == S::Contested && reason.trim().is_empty() {
                return Err(WorkflowError::ReasonRequired(name));
            }
            Ok(cleared(S::Closed))
        }
    }
}

#[cfg(test)]
#[path = "workflow_tests.rs"]
mod tests;
