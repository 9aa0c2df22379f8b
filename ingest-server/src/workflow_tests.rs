//! Every transition of the workflow, and every forbidden one: the allowed
//! (state, action, role) triples are written out here by hand, and every
//! other combination must be refused.

use super::*;

const NOW: i64 = 1_000_000;

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
}

fn facts(state: CaseState) -> CaseFacts {
    CaseFacts {
        state,
        claimed_by: None,
        claim_expires_at: None,
        accepted_by: Some("op-1".into()),
        has_plate: true,
        evidence_purged: false,
        limitation_ends_at: i64::MAX,
    }
}

fn all_actions() -> Vec<Action> {
    vec![
        Action::Claim,
        Action::Release,
        Action::Accept,
        Action::Reject {
            code: "false_trigger".into(),
        },
        Action::CorrectPlate {
            plate: "30A12345".into(),
        },
        Action::CorrectType {
            violation_type: "red_light".into(),
        },
        Action::Confirm,
        Action::SendBack,
        Action::Reopen,
        Action::IssueNotice,
        Action::Pay,
        Action::Contest,
        Action::Uphold,
        Action::Withdraw,
        Action::MarkOverdue,
        Action::Close,
    ]
}

/// The allowed moves, for an actor `me` holding a live claim where a claim
/// matters, and a case accepted by someone else (`op-1`).
fn allowed(state: CaseState, action: &str, role: Role) -> Option<CaseState> {
    use CaseState as S;
    use Role as R;
    let reviewer = matches!(role, R::Operator | R::Supervisor);
    match (state, action) {
        (S::New | S::InReview, "claim") if reviewer => Some(S::InReview),
        (S::InReview, "release" | "correct_plate" | "correct_type") if reviewer => {
            Some(S::InReview)
        }
        (S::InReview, "accept") if reviewer => Some(S::Accepted),
        (S::InReview, "reject") if reviewer => Some(S::Rejected),
        (S::Accepted, "confirm") if role == R::Police => Some(S::Confirmed),
        (S::Accepted, "send_back") if role == R::Police => Some(S::InReview),
        (S::Rejected, "reopen") if role == R::Supervisor => Some(S::InReview),
        (S::Confirmed, "issue_notice") if role == R::System => Some(S::NoticeIssued),
        (S::NoticeIssued | S::Overdue, "pay") if role == R::System => Some(S::Paid),
        (S::NoticeIssued, "contest") if role == R::System => Some(S::Contested),
        (S::NoticeIssued, "mark_overdue") if role == R::System => Some(S::Overdue),
        (S::Contested, "uphold") if role == R::Police => Some(S::NoticeIssued),
        (S::Contested, "close") if role == R::Police => Some(S::Closed),
        (S::Confirmed | S::NoticeIssued | S::Overdue, "withdraw") if role == R::Police => {
            Some(S::Closed)
        }
        (S::Rejected | S::Paid, "close") if matches!(role, R::System | R::Supervisor) => {
            Some(S::Closed)
        }
        _ => None,
    }
}

#[test]
fn every_state_action_role_is_allowed_or_refused_as_written() {
    let roles = [
        Role::Operator,
        Role::Police,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
        Role::System,
    ];
    let mut allowed_count = 0;
    for state in CaseState::ALL {
        for action in all_actions() {
            for role in roles {
                let me = actor("me", role);
                let mut f = facts(state);
                f.claimed_by = Some("me".into());
                f.claim_expires_at = Some(NOW + 1);
                let got = decide(&f, &action, &me, "a reason", NOW);
                let want = allowed(state, action.name(), role);
                match (got, want) {
                    (Ok(d), Some(to)) => {
                        assert_eq!(d.to, to, "{state} {} by {role}", action.name());
                        allowed_count += 1;
                    }
                    (Err(_), None) => {}
                    (got, want) => {
                        panic!(
                            "{state} {} by {role}: got {got:?}, want {want:?}",
                            action.name()
                        )
                    }
                }
            }
        }
    }
    assert_eq!(allowed_count, 31);
}

#[test]
fn states_and_roles_round_trip_their_names() {
    for s in CaseState::ALL {
        assert_eq!(CaseState::parse(s.as_str()), Some(s));
    }
    for r in Role::PEOPLE {
        assert_eq!(Role::parse(r.as_str()), Some(r));
    }
    assert_eq!(Role::parse("system"), None, "nobody signs in as the system");
    assert_eq!(CaseState::parse("open"), None);
}

#[test]
fn claim_is_a_lease_that_others_cannot_break_until_it_expires() {
    let mut f = facts(CaseState::New);
    let a = actor("alice", Role::Operator);
    let b = actor("bob", Role::Operator);
    let d = decide(&f, &Action::Claim, &a, "", NOW).unwrap();
    assert_eq!(d.to, CaseState::InReview);
    let Some(Some((who, until))) = d.claim else {
        panic!("claim not set")
    };
    assert_eq!((who.as_str(), until), ("alice", NOW + CLAIM_TTL_MS));
    f.state = CaseState::InReview;
    f.claimed_by = Some("alice".into());
    f.claim_expires_at = Some(until);
    assert_eq!(
        decide(&f, &Action::Claim, &b, "", NOW + 1),
        Err(WorkflowError::ClaimedByOther)
    );
    assert_eq!(
        decide(&f, &Action::Accept, &b, "", NOW + 1),
        Err(WorkflowError::ClaimedByOther)
    );
    // After expiry Bob may claim; Alice may no longer decide on it.
    assert!(decide(&f, &Action::Claim, &b, "", until).is_ok());
    assert_eq!(
        decide(&f, &Action::Accept, &a, "", until),
        Err(WorkflowError::NotClaimed)
    );
    // A supervisor may take over a live claim, and release it.
    let s = actor("sue", Role::Supervisor);
    assert!(decide(&f, &Action::Claim, &s, "", NOW + 1).is_ok());
    assert_eq!(
        decide(&f, &Action::Release, &s, "", NOW + 1).unwrap().claim,
        Some(None)
    );
    // But not decide on someone else's live claim without taking it.
    assert_eq!(
        decide(&f, &Action::Accept, &s, "", NOW + 1),
        Err(WorkflowError::ClaimedByOther)
    );
}

#[test]
fn deciding_needs_a_claim() {
    let f = facts(CaseState::InReview);
    let a = actor("alice", Role::Operator);
    assert_eq!(
        decide(&f, &Action::Accept, &a, "", NOW),
        Err(WorkflowError::NotClaimed)
    );
}

#[test]
fn the_officer_who_confirms_is_not_the_one_who_accepted() {
    let mut f = facts(CaseState::Accepted);
    f.accepted_by = Some("carol".into());
    // Carol accepted while she was an operator; now she has the police role.
    let carol = actor("carol", Role::Police);
    assert_eq!(
        decide(&f, &Action::Confirm, &carol, "", NOW),
        Err(WorkflowError::TwoPersonRule)
    );
    let dave = actor("dave", Role::Police);
    assert_eq!(
        decide(&f, &Action::Confirm, &dave, "", NOW).unwrap().to,
        CaseState::Confirmed
    );
    // An operator cannot confirm at all.
    assert!(matches!(
        decide(&f, &Action::Confirm, &actor("op", Role::Operator), "", NOW),
        Err(WorkflowError::RoleForbidden { .. })
    ));
}

#[test]
fn corrections_send_back_and_reopen_need_a_reason() {
    let mut f = facts(CaseState::InReview);
    f.claimed_by = Some("alice".into());
    f.claim_expires_at = Some(NOW + 10);
    let a = actor("alice", Role::Operator);
    let fix = Action::CorrectPlate {
        plate: "51F12345".into(),
    };
    assert_eq!(
        decide(&f, &fix, &a, "  ", NOW),
        Err(WorkflowError::ReasonRequired("correct_plate"))
    );
    assert!(decide(&f, &fix, &a, "the 8 was read as a B", NOW).is_ok());
    let accepted = facts(CaseState::Accepted);
    assert_eq!(
        decide(
            &accepted,
            &Action::SendBack,
            &actor("p", Role::Police),
            "",
            NOW
        ),
        Err(WorkflowError::ReasonRequired("send_back"))
    );
    let contested = facts(CaseState::Contested);
    assert_eq!(
        decide(
            &contested,
            &Action::Close,
            &actor("p", Role::Police),
            "",
            NOW
        ),
        Err(WorkflowError::ReasonRequired("close"))
    );
}

#[test]
fn a_case_without_a_plate_cannot_be_accepted() {
    let mut f = facts(CaseState::InReview);
    f.claimed_by = Some("alice".into());
    f.claim_expires_at = Some(NOW + 10);
    f.has_plate = false;
    let a = actor("alice", Role::Operator);
    assert_eq!(
        decide(&f, &Action::Accept, &a, "", NOW),
        Err(WorkflowError::NoPlate)
    );
    assert!(
        decide(
            &f,
            &Action::Reject {
                code: "plate_unreadable".into()
            },
            &a,
            "",
            NOW
        )
        .is_ok()
    );
}

#[test]
fn decisions_clear_the_claim() {
    let mut f = facts(CaseState::InReview);
    f.claimed_by = Some("alice".into());
    f.claim_expires_at = Some(NOW + 10);
    let a = actor("alice", Role::Operator);
    assert_eq!(
        decide(&f, &Action::Accept, &a, "", NOW).unwrap().claim,
        Some(None)
    );
}

#[test]
fn a_rejection_whose_evidence_was_deleted_cannot_be_reopened() {
    let mut f = facts(CaseState::Rejected);
    let s = actor("sam", Role::Supervisor);
    assert!(decide(&f, &Action::Reopen, &s, "misread", NOW).is_ok());
    f.evidence_purged = true;
    assert_eq!(
        decide(&f, &Action::Reopen, &s, "misread", NOW),
        Err(WorkflowError::EvidencePurged)
    );
}

#[test]
fn nothing_is_accepted_confirmed_or_reopened_past_the_limitation_period() {
    let ends = NOW + 5;
    let mut f = facts(CaseState::InReview);
    f.claimed_by = Some("alice".into());
    f.claim_expires_at = Some(NOW + 100);
    f.limitation_ends_at = ends;
    let a = actor("alice", Role::Operator);
    assert!(
        decide(&f, &Action::Accept, &a, "", ends).is_ok(),
        "its last ms"
    );
    let past = Err(WorkflowError::PastLimitation { ends_at: ends });
    assert_eq!(decide(&f, &Action::Accept, &a, "", ends + 1), past);
    let reject = Action::Reject {
        code: "other".into(),
    };
    assert!(decide(&f, &reject, &a, "too old", ends + 1).is_ok());
    f.state = CaseState::Accepted;
    let p = actor("p", Role::Police);
    assert_eq!(decide(&f, &Action::Confirm, &p, "", ends + 1), past);
    f.state = CaseState::Rejected;
    let s = actor("sam", Role::Supervisor);
    assert_eq!(decide(&f, &Action::Reopen, &s, "misread", ends + 1), past);
}

#[test]
fn upholding_and_withdrawing_need_a_reason() {
    let p = actor("p", Role::Police);
    let contested = facts(CaseState::Contested);
    assert_eq!(
        decide(&contested, &Action::Uphold, &p, " ", NOW),
        Err(WorkflowError::ReasonRequired("uphold"))
    );
    let issued = facts(CaseState::NoticeIssued);
    assert_eq!(
        decide(&issued, &Action::Withdraw, &p, "", NOW),
        Err(WorkflowError::ReasonRequired("withdraw"))
    );
    assert_eq!(
        decide(&issued, &Action::Withdraw, &p, "wrong vehicle", NOW)
            .unwrap()
            .to,
        CaseState::Closed
    );
    assert!(decide(&facts(CaseState::Paid), &Action::Withdraw, &p, "x", NOW).is_err());
}
