//! The console's case actions: the forms a viewer's role and the case's
//! state allow (rendered on the case page), and the POST handlers that run
//! them through `review::Reviewer`, the one place cases change. After an
//! accept or a reject the reviewer goes straight on to the next case.
//!
//! Every decision form carries the case's revision as the page showed it
//! (`revision`); an action on a case changed since is refused, and a
//! confirmation without it too: the officer confirms what they saw. Upholding a contest and withdrawing a fine need a reason,
//! which the owner is sent.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::case_page::CaseDetail;
use super::html::{VIOLATION_TYPES, esc, violation_label};
use super::queue::next_in_queue;
use super::{ConsoleError, Viewer};
use crate::db::now_ms;
use crate::review::{AmountRefused, ReviewError, Reviewer};
use crate::web::ApiContext;
use crate::workflow::{Action, CaseState, Role, WorkflowError};

fn hidden(viewer: &Viewer, action: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"{action}\">",
        esc(&viewer.session.csrf)
    )
}

/// The action forms for this viewer on this case.
pub fn panel(
    viewer: &Viewer,
    case: &CaseDetail,
    reasons: &[(String, String, String)],
    now: i64,
) -> String {
    let lang = viewer.lang;
    let role = viewer.session.user.role;
    let me = &viewer.session.user.user_id;
    let url = format!("/console/cases/{}/action", esc(&case.event_id));
    let live_claim = match (&case.claimed_by, case.claim_expires_at) {
        (Some(w), Some(t)) if t > now => Some(w.as_str()),
        _ => None,
    };
    let mut p = String::from("<div class=\"panel\" id=\"actions\">");
    let form = |id: &str, action: &str, inner: &str, button: &str, class: &str| {
        format!(
            "<form method=\"post\" action=\"{url}\" id=\"{id}\">{}<input type=\"hidden\" name=\"revision\" value=\"{}\">{inner}<button class=\"{class}\">{button}</button></form>",
            hidden(viewer, action),
            case.revision
        )
    };
    let owner_reason = |id: &str| {
        format!(
            "<input type=\"text\" name=\"reason\" id=\"{id}\" placeholder=\"{}\" maxlength=\"1000\" required>",
            lang.t(
                "Lý do (gửi cho chủ phương tiện)",
                "Reason (sent to the owner)"
            )
        )
    };
    let reason_input = |id: &str, required: bool| {
        format!(
            "<input type=\"text\" name=\"reason\" id=\"{id}\" placeholder=\"{}\" maxlength=\"1000\"{}>",
            lang.t("Lý do", "Reason"),
            if required { " required" } else { "" }
        )
    };
    if role.reviews() && matches!(case.state, CaseState::New | CaseState::InReview) {
        if live_claim == Some(me.as_str()) {
            p.push_str(&form(
                "accept-form",
                "accept",
                "",
                &format!(
                    "{} <span class=\"kbd\">a</span>",
                    lang.t("Chấp nhận vi phạm", "Accept violation")
                ),
                "primary",
            ));
            let mut opts = String::new();
            for (code, vi, en) in reasons {
                let _ = write!(
                    opts,
                    "<option value=\"{}\">{}</option>",
                    esc(code),
                    esc(lang.t(vi, en))
                );
            }
            p.push_str(&form(
                "reject-form",
                "reject",
                &format!(
                    "<select name=\"code\" id=\"reject-code\">{opts}</select>{}",
                    reason_input("reject-reason", false)
                ),
                &format!("{} <span class=\"kbd\">r</span>", lang.t("Loại", "Reject")),
                "danger",
            ));
            p.push_str(&form(
                "plate-form",
                "correct_plate",
                &format!(
                    "<input type=\"text\" name=\"plate\" id=\"plate-input\" value=\"{}\" size=\"12\" required>{}",
                    esc(case.plate().unwrap_or("")),
                    reason_input("plate-reason", true)
                ),
                &format!("{} <span class=\"kbd\">p</span>", lang.t("Sửa biển số", "Correct plate")),
                "",
            ));
            let mut types = String::new();
            let current = case
                .reviewed_type
                .as_deref()
                .unwrap_or(&case.violation_type);
            for t in VIOLATION_TYPES {
                let sel = if t == current { " selected" } else { "" };
                let _ = write!(
                    types,
                    "<option value=\"{t}\"{sel}>{}</option>",
                    esc(&violation_label(lang, t))
                );
            }
            p.push_str(&form(
                "type-form",
                "correct_type",
                &format!(
                    "<select name=\"violation_type\" id=\"type-input\">{types}</select>{}",
                    reason_input("type-reason", true)
                ),
                &format!(
                    "{} <span class=\"kbd\">t</span>",
                    lang.t("Sửa loại vi phạm", "Correct type")
                ),
                "",
            ));
            p.push_str(&form(
                "release-form",
                "release",
                "",
                lang.t("Trả lại hàng đợi", "Release"),
                "",
            ));
        } else if live_claim.is_some() && role != Role::Supervisor {
            let _ = write!(
                p,
                "<p id=\"claimed\">{}</p>",
                lang.t(
                    "Người khác đang xem xét vụ này.",
                    "Someone else is reviewing this case."
                )
            );
        } else {
            p.push_str(&form(
                "claim-form",
                "claim",
                "",
                lang.t("Nhận xem xét", "Claim for review"),
                "primary",
            ));
        }
    }
    if role == Role::Police && case.state == CaseState::Accepted {
        // An event time from a clock that was not synchronised is
        // confirmed only with the officer's explicit acknowledgement.
        let clock_ack = match crate::integrity::signed_event(&case.signed_json) {
            Ok(e) if crate::integrity::clock_synced(&e) => String::new(),
            Ok(e) => format!(
                "<label class=\"warn\"><input type=\"checkbox\" name=\"clock_ack\" value=\"1\" id=\"clock-ack\" required> {} ({})</label>",
                lang.t(
                    "Tôi đã xem: đồng hồ thiết bị không được đồng bộ khi ghi thời gian vi phạm",
                    "I have seen that the device clock was not synchronised when it stamped the violation time"
                ),
                esc(lang.t(&crate::integrity::clock_vi(&e), &crate::integrity::clock_en(&e)))
            ),
            Err(_) => String::new(),
        };
        let amount = amount_inputs(lang, case.fine);
        p.push_str(&form(
            "confirm-form",
            "confirm",
            &format!("{amount}{clock_ack}"),
            &format!(
                "{} <span class=\"kbd\">c</span>",
                lang.t("Xác nhận xử phạt", "Confirm fine")
            ),
            "primary",
        ));
        p.push_str(&form(
            "send-back-form",
            "send_back",
            &reason_input("send-back-reason", true),
            lang.t("Trả lại xem xét", "Send back"),
            "",
        ));
    }
    if role == Role::Police && case.state == CaseState::Contested {
        p.push_str(&form(
            "uphold-form",
            "uphold",
            &owner_reason("uphold-reason"),
            lang.t("Giữ nguyên quyết định", "Uphold"),
            "primary",
        ));
        p.push_str(&form(
            "cancel-form",
            "close",
            // Told to the owner, as a withdrawal's reason is.
            &owner_reason("cancel-reason"),
            lang.t("Huỷ xử phạt", "Cancel fine"),
            "danger",
        ));
    }
    if role == Role::Police
        && matches!(
            case.state,
            CaseState::Confirmed | CaseState::NoticeIssued | CaseState::Overdue
        )
    {
        p.push_str(&form(
            "withdraw-form",
            "withdraw",
            &owner_reason("withdraw-reason"),
            lang.t("Huỷ bỏ xử phạt", "Withdraw the fine"),
            "danger",
        ));
    }
    if role == Role::Supervisor && case.state == CaseState::Rejected {
        p.push_str(&form(
            "reopen-form",
            "reopen",
            &reason_input("reopen-reason", true),
            lang.t("Mở lại", "Reopen"),
            "",
        ));
    }
    if role.reviews() {
        let _ = write!(
            p,
            "<form method=\"post\" action=\"/console/queue/next\" id=\"next-form\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>{} <span class=\"kbd\">n</span></button></form>",
            esc(&viewer.session.csrf),
            lang.t("Vụ tiếp theo", "Next case")
        );
    }
    p.push_str("</div>");
    p
}

/// The posted action form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    action: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    plate: String,
    #[serde(default)]
    violation_type: String,
    /// The case's revision as the page showed it.
    #[serde(default)]
    revision: String,
    /// The officer acknowledges that the device clock was not
    /// synchronised (the confirm form's checkbox, for such a case).
    #[serde(default)]
    clock_ack: String,
    /// The amount to charge in VND, set on the confirm form (empty: the
    /// middle of the range).
    #[serde(default)]
    amount_vnd: String,
}

/// The confirm form's amount and circumstance fields: the amount, set at
/// the middle of the case's legal range, which the officer may change
/// within the range for a circumstance they state. None where the range
/// leaves no choice (one amount, or no price: confirming is refused).
fn amount_inputs(lang: super::html::Lang, range: Option<(i64, i64)>) -> String {
    let (Some((lo, hi)), Some(middle)) = (range, crate::review::decided_amount(range)) else {
        return String::new();
    };
    if lo == hi {
        return String::new();
    }
    format!(
        "<label for=\"confirm-amount\">{amount_l}</label> \
         <input type=\"number\" name=\"amount_vnd\" id=\"confirm-amount\" value=\"{middle}\" \
         min=\"{lo}\" max=\"{hi}\" step=\"1000\" required> \
         <input type=\"text\" name=\"reason\" id=\"confirm-reason\" maxlength=\"1000\" \
         placeholder=\"{reason_l}\"> <span class=\"muted\">{hint}</span>",
        amount_l = lang.t("Số tiền phạt (đồng)", "Fine (VND)"),
        reason_l = lang.t(
            "Tình tiết giảm nhẹ / tăng nặng (bắt buộc nếu khác mức trung bình)",
            "Mitigating / aggravating circumstance (required if not the middle)"
        ),
        hint = esc(lang.t(
            &format!(
                "Mức trung bình {}; trong khung {} – {}, tròn nghìn đồng",
                super::html::vnd(middle),
                super::html::vnd(lo),
                super::html::vnd(hi)
            ),
            &format!(
                "Middle {}; within {} – {}, whole thousands of VND",
                super::html::vnd(middle),
                super::html::vnd(lo),
                super::html::vnd(hi)
            ),
        )),
    )
}

/// The amount typed on the confirm form: empty is none (the middle);
/// digits, optionally grouped by dots, commas or spaces in threes
/// (`5.500.000`). Anything else is refused, not guessed at.
fn parse_amount(lang: super::html::Lang, text: &str) -> Result<Option<i64>, ConsoleError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let refused = || {
        let shown: String = text.chars().take(40).collect();
        ConsoleError::Refused(
            lang,
            lang.t(
                &format!("Số tiền phạt {shown:?} không phải là một số nguyên đồng: không xác nhận"),
                &format!("The fine {shown:?} is not a whole number of VND: not confirmed"),
            )
            .to_string(),
        )
    };
    let plain = text.chars().all(|c| c.is_ascii_digit());
    let grouped = [".", ",", " "].iter().any(|sep| {
        let mut groups = text.split(sep);
        let first = groups.next().unwrap_or("");
        let rest: Vec<&str> = groups.collect();
        !rest.is_empty()
            && (1..=3).contains(&first.len())
            && first.chars().all(|c| c.is_ascii_digit())
            && rest
                .iter()
                .all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
    });
    if !plain && !grouped {
        return Err(refused());
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits.parse::<i64>().map(Some).map_err(|_| refused())
}

fn parse_action(f: &ActionForm) -> Option<Action> {
    Some(match f.action.as_str() {
        "claim" => Action::Claim,
        "release" => Action::Release,
        "accept" => Action::Accept,
        "reject" => Action::Reject {
            code: f.code.clone(),
        },
        // As typed: the grammar's strict parse (in `review`) refuses a
        // character it does not know rather than dropping it, which could
        // leave a different valid plate (someone else's vehicle).
        "correct_plate" => Action::CorrectPlate {
            plate: f.plate.trim().chars().take(40).collect(),
        },
        "correct_type" => Action::CorrectType {
            violation_type: f.violation_type.clone(),
        },
        "confirm" => Action::Confirm,
        "send_back" => Action::SendBack,
        "reopen" => Action::Reopen,
        "uphold" => Action::Uphold,
        "withdraw" => Action::Withdraw,
        "close" => Action::Close,
        _ => return None,
    })
}

/// Runs one action as the viewer, who was shown the case at revision
/// `seen` (`None`: not checked) and has (`clock_ack`) or has not
/// acknowledged an unsynchronised device clock; a confirmation charges
/// `amount` (`None`: the middle of the range; ignored for other actions).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: &ApiContext,
    viewer: &Viewer,
    id: &str,
    action: &Action,
    reason: &str,
    seen: Option<i64>,
    clock_ack: bool,
    amount: Option<i64>,
) -> Result<(), ConsoleError> {
    let ic = ctx.ingestor.context();
    let reviewer = Reviewer {
        db: &ic.db,
        grammar: ic.grammar,
        fines: &ic.fines,
        registry: ic.registry.as_deref(),
    };
    let lang = viewer.lang;
    let actor = viewer.actor();
    let done = if matches!(action, Action::Confirm) {
        reviewer
            .confirm_at(id, &actor, amount, reason, now_ms(), seen, clock_ack)
            .await
    } else {
        reviewer
            .act_acknowledged(id, action, &actor, reason, now_ms(), seen, clock_ack)
            .await
    };
    match done {
        Ok(_) => Ok(()),
        Err(ReviewError::Amount(refused)) => {
            Err(ConsoleError::Refused(lang, amount_refused(lang, &refused)))
        }
        Err(ReviewError::NotFound(id)) => Err(ConsoleError::NotFound(lang, id)),
        Err(ReviewError::Db(e)) => Err(ConsoleError::Internal(lang, e.to_string())),
        Err(ReviewError::Refused(WorkflowError::RoleForbidden { .. })) => {
            Err(ConsoleError::Forbidden(lang))
        }
        Err(ReviewError::ClockNotAcknowledged(state)) => Err(ConsoleError::Refused(
            lang,
            format!("{}: {state}", clock_unacknowledged(lang)),
        )),
        Err(ReviewError::RecordAltered(diffs)) => {
            tracing::error!(case = id, problem = %diffs, "case record altered; decision refused");
            Err(ConsoleError::Refused(
                lang,
                format!("{}: {diffs}", record_altered(lang)),
            ))
        }
        Err(
            e @ (ReviewError::Refused(_)
            | ReviewError::Invalid(_)
            | ReviewError::Conflict
            | ReviewError::Changed { .. }),
        ) => Err(ConsoleError::Refused(lang, e.to_string())),
    }
}

/// `POST /console/cases/{id}/action`.
pub async fn act(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    let lang = viewer.lang;
    let action = parse_action(&f)
        .ok_or_else(|| ConsoleError::Refused(lang, format!("unknown action {:?}", f.action)))?;
    let seen = f.revision.trim().parse::<i64>().ok();
    // A confirmation is about what the officer was shown (the other
    // decisions are checked against the revision when the form has one).
    // (Anyone else is refused by the workflow for their role.)
    if seen.is_none()
        && matches!(action, Action::Confirm)
        && viewer.session.user.role == Role::Police
    {
        return Err(ConsoleError::Refused(lang, stale_page(lang)));
    }
    let clock_ack = matches!(f.clock_ack.as_str(), "1" | "on" | "yes" | "true");
    let amount = if matches!(action, Action::Confirm) {
        parse_amount(lang, &f.amount_vnd)?
    } else {
        None
    };
    run(
        &ctx, &viewer, &id, &action, &f.reason, seen, clock_ack, amount,
    )
    .await?;
    if matches!(action, Action::Accept | Action::Reject { .. }) {
        return claim_next(&ctx, &viewer).await;
    }
    if matches!(action, Action::Confirm) {
        return Ok(Redirect::to("/console/confirm").into_response());
    }
    Ok(Redirect::to(&format!("/console/cases/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /console/queue/next`: claims the oldest free case and opens it.
pub async fn next_case(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require(&[Role::Operator, Role::Supervisor])?;
    claim_next(&ctx, &viewer).await
}

async fn claim_next(ctx: &ApiContext, viewer: &Viewer) -> Result<Response, ConsoleError> {
    let db = &ctx.ingestor.context().db;
    // Another reviewer may take the same case between the pick and the
    // claim: try the next one then.
    for _ in 0..5 {
        let Some(id) = next_in_queue(db, &viewer.session.user.user_id)
            .await
            .map_err(|e| ConsoleError::Internal(viewer.lang, e.to_string()))?
        else {
            return Ok(Redirect::to("/console/queue").into_response());
        };
        match run(ctx, viewer, &id, &Action::Claim, "", None, false, None).await {
            Ok(()) => return Ok(Redirect::to(&format!("/console/cases/{id}")).into_response()),
            Err(ConsoleError::Refused(..)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Redirect::to("/console/queue").into_response())
}

/// Why a confirmation of a case whose device clock was not synchronised
/// is refused without the officer's acknowledgement.
pub fn clock_unacknowledged(lang: super::html::Lang) -> String {
    lang.t(
        "Đồng hồ thiết bị chưa được xác nhận là đồng bộ khi ghi thời gian vi phạm: chỉ xác nhận \
         trên trang vụ việc, sau khi đánh dấu ô xác nhận đã xem tình trạng đồng hồ",
        "The device clock was not synchronised when it stamped the violation time: confirm this \
         case only on its own page, ticking the box that you have seen the clock state",
    )
    .to_string()
}

/// Why a decision on a case whose record differs from what its device
/// signed is refused.
pub fn record_altered(lang: super::html::Lang) -> String {
    lang.t(
        "Hồ sơ vụ việc đã bị sửa sau khi nhận, khác với bản thiết bị đã ký: không thể xác nhận",
        "The case record was altered after it was received and differs from what the device \
         signed: it cannot be confirmed",
    )
    .to_string()
}

/// Why the amount the officer set on the confirm form is refused.
pub fn amount_refused(lang: super::html::Lang, refused: &AmountRefused) -> String {
    use super::html::vnd;
    match refused {
        AmountRefused::OutOfRange { amount, min, max } => lang
            .t(
                &format!(
                    "Số tiền phạt {} nằm ngoài khung phạt của vụ việc ({} – {}): không xác nhận",
                    vnd(*amount),
                    vnd(*min),
                    vnd(*max)
                ),
                &format!(
                    "The fine {} is outside the legal range of this case ({} – {}): not confirmed",
                    vnd(*amount),
                    vnd(*min),
                    vnd(*max)
                ),
            )
            .to_string(),
        AmountRefused::NotWholeThousands(amount) => lang
            .t(
                &format!(
                    "Số tiền phạt {} phải tròn nghìn đồng: không xác nhận",
                    vnd(*amount)
                ),
                &format!(
                    "The fine {} must be whole thousands of VND: not confirmed",
                    vnd(*amount)
                ),
            )
            .to_string(),
        AmountRefused::ReasonRequired { middle } => lang
            .t(
                &format!(
                    "Số tiền phạt khác mức trung bình ({}) phải ghi rõ tình tiết giảm nhẹ hoặc tăng nặng: không xác nhận",
                    vnd(*middle)
                ),
                &format!(
                    "A fine other than the middle of the range ({}) needs the mitigating or aggravating circumstance stated: not confirmed",
                    vnd(*middle)
                ),
            )
            .to_string(),
    }
}

/// Why a police decision without the case's revision is refused.
pub fn stale_page(lang: super::html::Lang) -> String {
    lang.t(
        "Trang này không cho biết phiên bản vụ việc đã hiển thị: hãy tải lại trang và kiểm tra lại trước khi quyết định.",
        "This page does not say which version of the case it showed: reload it and check again before deciding.",
    )
    .to_string()
}
