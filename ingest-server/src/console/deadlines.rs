//! The legal deadlines of notices (Circular 73/2024/TT-BCA, Art. 24) for
//! police, supervisors and auditors: the cases flagged because no notice
//! went out 10 days after detection and still has not (from
//! [`crate::notices::late_notices`], with their deliveries' state so a
//! person can send a paper notice or correct the address), and the
//! warnings recorded to the vehicle inspection register after 20 days
//! without a response ([`crate::notices::inspection_warnings`]). First of
//! all, the notices no channel can deliver
//! ([`crate::notices::paper::needing_paper`]): police send
//! them by post and record it here (`POST /console/cases/{id}/paper-notice`
//! with the postal reference), which issues the notice; so too police's
//! answers to contests no channel can carry
//! ([`crate::notices::paper::answers_needing_paper`], `POST
//! /console/cases/{id}/paper-answer`), whose new 20 days wait for it.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{esc, local_time};
use super::{ConsoleError, Viewer};
use crate::db::now_ms;
use crate::web::ApiContext;
use crate::workflow::{CaseState, Role};

/// Rows shown per table.
const LIMIT: i64 = 500;

/// `GET /console/deadlines`.
pub async fn page(State(ctx): State<ApiContext>, viewer: Viewer) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police, Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let dberr = |e| ConsoleError::from((lang, e));
    let now = now_ms();

    let paper = crate::notices::paper::needing_paper(db, now, LIMIT)
        .await
        .map_err(dberr)?;
    // Police send notices of the fines they impose.
    let may_record = matches!(viewer.session.user.role, Role::Police);
    // The form that records a letter posted (police only).
    let posted_form = |id: &str, what: &str, button: &str| {
        if !may_record {
            return String::new();
        }
        format!(
            "<form method=\"post\" action=\"/console/cases/{id}/{what}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>{ref_l} <input type=\"text\" name=\"reference\" required maxlength=\"100\"></label>\
             <button>{button}</button></form>",
            id = esc(id),
            csrf = esc(&viewer.session.csrf),
            ref_l = lang.t("Số hiệu bưu gửi", "Postal reference"),
        )
    };
    let mut paper_rows = String::new();
    for n in &paper {
        let form = posted_form(
            &n.event_id,
            "paper-notice",
            lang.t("Đã gửi thông báo giấy", "Paper notice posted"),
        );
        let _ = write!(
            paper_rows,
            "<tr data-event=\"{id}\"><td><a href=\"/console/cases/{id}\">{id}</a></td><td>{detected}</td>\
             <td>{notify_by}</td><td>{written}</td><td>{given_up}</td><td>{form}</td></tr>",
            id = esc(&n.event_id),
            detected = local_time(n.detected_at),
            notify_by = local_time(n.notify_by),
            written = local_time(n.created_at),
            given_up = n.given_up,
        );
    }

    // Police's answers to contests no channel can carry: posted the same
    // way; the owner's new 20 days wait for the letter.
    let answers = crate::notices::paper::answers_needing_paper(db, LIMIT)
        .await
        .map_err(dberr)?;
    let mut answer_rows = String::new();
    for a in &answers {
        let form = posted_form(
            &a.event_id,
            "paper-answer",
            lang.t("Đã gửi trả lời bằng giấy", "Answer posted"),
        );
        let _ = write!(
            answer_rows,
            "<tr data-event=\"{id}\"><td><a href=\"/console/cases/{id}\">{id}</a></td><td>{what} {at}</td>\
             <td>{given_up}</td><td>{form}</td></tr>",
            id = esc(&a.event_id),
            what = if a.kind == crate::notices::followup::WITHDRAWN {
                lang.t("Huỷ xử phạt", "Fine withdrawn")
            } else {
                lang.t("Giữ nguyên xử phạt", "Fine upheld")
            },
            at = local_time(a.written_at),
            given_up = a.given_up,
        );
    }

    let late = crate::notices::late_notices(db, LIMIT)
        .await
        .map_err(dberr)?;
    let mut late_rows = String::new();
    for n in &late {
        let state = CaseState::parse(&n.state)
            .map(|s| s.label_vi().to_string())
            .unwrap_or_else(|| n.state.clone());
        let overdue_days = (now - n.notify_by).div_euclid(86_400_000).max(0);
        let written = n
            .notice_created_at
            .map(local_time)
            .unwrap_or_else(|| lang.t("chưa lập", "not written").to_string());
        let d = &n.deliveries;
        let _ = write!(
            late_rows,
            "<tr data-event=\"{id}\"><td><a href=\"/console/cases/{id}\">{id}</a></td><td>{state}</td>\
             <td>{detected}</td><td>{notify_by} <span class=\"clock late\">{late_l} {overdue_days} {days_l}</span></td>\
             <td>{flagged}</td><td>{written}</td><td>{pending} / {failed} / {dead}</td><td>{error}</td></tr>",
            id = esc(&n.event_id),
            state = esc(&state),
            detected = local_time(n.detected_at),
            notify_by = local_time(n.notify_by),
            late_l = lang.t("quá hạn", "overdue by"),
            days_l = lang.t("ngày", "days"),
            flagged = local_time(n.flagged_at),
            written = esc(&written),
            pending = d.pending,
            failed = d.failed,
            dead = d.dead,
            error = esc(n.last_error.as_deref().unwrap_or("")),
        );
    }

    let warnings = crate::notices::inspection_warnings(db, LIMIT)
        .await
        .map_err(dberr)?;
    let mut warn_rows = String::new();
    for w in &warnings {
        let sent = w
            .sent_at
            .map(local_time)
            .unwrap_or_else(|| lang.t("chưa gửi", "not sent").to_string());
        // A withdrawn warning (the fine was paid after it) stays listed,
        // marked, so whoever sent it to the register sends the withdrawal.
        let (class, withdrawn) = match w.withdrawn_at {
            Some(at) => (
                " class=\"withdrawn\"",
                format!(
                    "{} {}: {}",
                    lang.t("Đã rút", "Withdrawn"),
                    local_time(at),
                    w.withdrawn_reason.as_deref().unwrap_or("")
                ),
            ),
            None => ("", String::new()),
        };
        let _ = write!(
            warn_rows,
            "<tr data-event=\"{id}\"{class}><td><a href=\"/console/cases/{id}\">{id}</a></td>\
             <td><span class=\"plate\">{plate}</span> · {colour}</td><td>{created}</td><td>{reason}</td><td>{sent}</td>\
             <td>{withdrawn}</td></tr>",
            id = esc(&w.event_id),
            plate = esc(&w.plate),
            colour = esc(&w.plate_colour),
            created = local_time(w.created_at),
            reason = esc(&w.reason),
            sent = esc(&sent),
            withdrawn = esc(&withdrawn),
        );
    }

    // Money the gateway took that no order could take as the fine (another
    // amount): until a person refunds or applies it, the case takes no new
    // payment.
    let held = crate::payments::needing_a_person(db)
        .await
        .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    let mut held_rows = String::new();
    for p in &held {
        let _ = write!(
            held_rows,
            "<tr data-txn=\"{txn}\"><td><a href=\"/console/cases/{id}\">{id}</a></td><td>{txn}</td>\
             <td>{amount}</td><td>{updated}</td><td>{note}</td></tr>",
            id = esc(&p.event_id),
            txn = esc(&p.txn_ref),
            amount = p.amount_vnd,
            updated = local_time(p.updated_at),
            note = esc(p.note.as_deref().unwrap_or("")),
        );
    }

    let empty = |cols: usize, rows: &str| {
        if rows.is_empty() {
            format!(
                "<tr><td colspan=\"{cols}\" class=\"muted\">{}</td></tr>",
                lang.t("Không có.", "None.")
            )
        } else {
            String::new()
        }
    };
    let body = format!(
        "<h1>{title}</h1>\
         <h2>{paper_h} ({paper_n})</h2><p class=\"muted\">{paper_p}</p>\
         <table id=\"paper-notices\"><tr><th>{case_l}</th><th>{detected_l}</th><th>{deadline_l}</th>\
         <th>{written_l}</th><th>{given_up_l}</th><th></th></tr>{paper_rows}{paper_empty}</table>\
         <h2>{answers_h} ({answers_n})</h2><p class=\"muted\">{answers_p}</p>\
         <table id=\"paper-answers\"><tr><th>{case_l}</th><th>{upheld_l}</th><th>{given_up_l}</th><th></th></tr>\
         {answer_rows}{answers_empty}</table>\
         <h2>{late_h} ({late_n})</h2><p class=\"muted\">{late_p}</p>\
         <table id=\"late-notices\"><tr><th>{case_l}</th><th>{state_l}</th><th>{detected_l}</th><th>{deadline_l}</th>\
         <th>{flagged_l}</th><th>{written_l}</th><th>{deliveries_l}</th><th>{error_l}</th></tr>{late_rows}{late_empty}</table>\
         <h2>{warn_h} ({warn_n})</h2><p class=\"muted\">{warn_p}</p>\
         <table id=\"inspection-warnings\"><tr><th>{case_l}</th><th>{plate_l}</th><th>{created_l}</th><th>{reason_l}</th>\
         <th>{sent_l}</th><th>{withdrawn_l}</th></tr>{warn_rows}{warn_empty}</table>\
         <h2>{held_h} ({held_n})</h2><p class=\"muted\">{held_p}</p>\
         <table id=\"payments-needing-a-person\"><tr><th>{case_l}</th><th>{txn_l}</th><th>{amount_l}</th>\
         <th>{updated_l}</th><th>{note_l}</th></tr>{held_rows}{held_empty}</table>",
        paper_h = lang.t(
            "Cần gửi thông báo giấy",
            "Notices to send by post"
        ),
        paper_n = paper.len(),
        paper_p = lang.t(
            "Chủ phương tiện không nhận được thông báo qua kênh điện tử nào (không có ứng dụng, thư điện tử, đối tác; hoặc mọi lần gửi đều thất bại). Gửi thông báo qua bưu điện tới địa chỉ đăng ký rồi ghi nhận tại đây: thông báo được coi là đã gửi, thời hạn 20 ngày tính từ hôm nay.",
            "No electronic channel reaches the owner (no app, e-mail or partner; or every delivery was given up). Post the notice to the registered address and record it here: the notice is then issued, its 20 days running from today."
        ),
        given_up_l = lang.t("Lần gửi không tới", "Deliveries that cannot get through"),
        answers_h = lang.t(
            "Cần gửi trả lời khiếu nại, thông báo huỷ xử phạt bằng giấy",
            "Contest answers and withdrawals to send by post"
        ),
        answers_n = answers.len(),
        answers_p = lang.t(
            "Quyết định của CSGT (giữ nguyên sau khiếu nại, hoặc huỷ xử phạt) mà không kênh điện tử nào tới được chủ phương tiện. Gửi qua bưu điện rồi ghi nhận tại đây: với trả lời khiếu nại, thời hạn 20 ngày mới tính từ hôm nay; trước đó vụ việc không bị coi là quá hạn.",
            "Police decisions (upheld after a contest, or the fine withdrawn) that no electronic channel can carry to the owner. Post them and record it here: for a contest answer the new 20 days run from today; until then the case is not marked overdue."
        ),
        upheld_l = lang.t("Quyết định", "Decision"),
        answer_rows = answer_rows,
        answers_empty = empty(4, &answer_rows),
        paper_rows = paper_rows,
        paper_empty = empty(6, &paper_rows),
        held_h = lang.t("Khoản tiền cần người xử lý", "Payments needing a person"),
        held_n = held.len(),
        held_p = lang.t(
            "Cổng thanh toán đã (hoặc có thể đã) thu tiền nhưng không thể ghi nhận tự động: số tiền khác khoản phạt, hoặc giao dịch bị nghi ngờ hay bị đảo. Kiểm tra với cổng thanh toán, hoàn tiền hoặc ghi nhận, rồi cập nhật giao dịch. Vụ việc không nhận thanh toán mới cho đến khi xử lý xong.",
            "The gateway took (or may have taken) money that cannot be applied automatically: another amount than the fine, or a transaction suspected or reversed. Check with the gateway, refund or apply it, then update the payment. The case takes no new payment until then."
        ),
        txn_l = lang.t("Mã giao dịch", "Reference"),
        amount_l = lang.t("Khoản phạt (₫)", "Fine (₫)"),
        updated_l = lang.t("Cập nhật", "Updated"),
        note_l = lang.t("Ghi chú", "Note"),
        held_empty = empty(5, &held_rows),
        title = lang.t("Thời hạn thông báo vi phạm", "Notice deadlines"),
        late_h = lang.t(
            "Quá hạn gửi thông báo (10 ngày)",
            "Notice not sent within 10 days"
        ),
        late_n = late.len(),
        late_p = lang.t(
            "Vụ việc phát hiện quá 10 ngày mà thông báo vẫn chưa được gửi (Thông tư 73/2024/TT-BCA, Điều 24). Gửi thông báo giấy hoặc sửa địa chỉ.",
            "Cases detected more than 10 days ago whose notice is still not out (Circular 73/2024/TT-BCA, Art. 24). Send a paper notice or correct the address."
        ),
        case_l = lang.t("Vụ việc", "Case"),
        state_l = lang.t("Trạng thái", "State"),
        detected_l = lang.t("Phát hiện", "Detected"),
        deadline_l = lang.t("Hạn gửi thông báo", "Notice deadline"),
        flagged_l = lang.t("Đánh dấu lúc", "Flagged"),
        written_l = lang.t("Lập thông báo", "Notice written"),
        deliveries_l = lang.t(
            "Chờ gửi / lỗi / bỏ",
            "Pending / failed / given up"
        ),
        error_l = lang.t("Lỗi gần nhất", "Latest error"),
        late_rows = late_rows,
        late_empty = empty(8, &late_rows),
        warn_h = lang.t(
            "Cảnh báo gửi cơ quan đăng kiểm (20 ngày)",
            "Warnings to the vehicle inspection register (20 days)"
        ),
        warn_n = warnings.len(),
        warn_p = lang.t(
            "Chủ xe không phản hồi trong 20 ngày kể từ thông báo: phương tiện được cảnh báo trên hệ thống đăng kiểm.",
            "No response within 20 days of the notice: the vehicle is flagged to the inspection register."
        ),
        plate_l = lang.t("Biển số", "Plate"),
        created_l = lang.t("Ghi nhận", "Recorded"),
        reason_l = lang.t("Lý do", "Reason"),
        sent_l = lang.t("Đã gửi đăng kiểm", "Sent to the register"),
        withdrawn_l = lang.t("Rút cảnh báo (đã nộp phạt)", "Withdrawn (fine paid)"),
        warn_rows = warn_rows,
        warn_empty = empty(6, &warn_rows),
    );
    Ok(viewer.page(lang.t("Thời hạn thông báo", "Notice deadlines"), &body))
}

/// The paper-notice form.
#[derive(serde::Deserialize)]
pub struct PaperForm {
    csrf: String,
    #[serde(default)]
    reference: String,
}

/// `POST /console/cases/{id}/paper-notice`: a police officer or supervisor
/// records that the notice was posted (`notices::paper::record_paper`).
pub async fn paper_notice(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<PaperForm>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police])?;
    viewer.check_csrf(&f.csrf)?;
    let lang = viewer.lang;
    use crate::notices::paper::{PaperError, record_paper};
    match record_paper(ctx.ingestor.context(), &id, &viewer.who(), &f.reference, now_ms()).await {
        Ok(()) => Ok(Redirect::to("/console/deadlines").into_response()),
        Err(e @ (PaperError::NotNeeded | PaperError::Reference | PaperError::PastLimitation)) => Err(ConsoleError::Refused(
            lang,
            match e {
                PaperError::PastLimitation => lang
                    .t(
                        "Đã hết thời hiệu xử phạt (1 năm): không được gửi thông báo; rút quyết định xử phạt.",
                        "The one-year limitation period has ended: no notice may be sent; withdraw the fine.",
                    )
                    .to_string(),
                PaperError::Reference => lang
                    .t(
                        "Nhập số hiệu bưu gửi (1 đến 100 ký tự).",
                        "Give the postal reference (1 to 100 characters).",
                    )
                    .to_string(),
                _ => lang
                    .t(
                        "Thông báo của vụ việc này không cần gửi giấy (đã gửi, hoặc vụ việc chưa được xác nhận).",
                        "This case's notice needs no paper notice (already issued, or the case is not confirmed).",
                    )
                    .to_string(),
            },
        )),
        Err(PaperError::Db(e)) => Err(ConsoleError::Internal(lang, e.to_string())),
    }
}

/// `POST /console/cases/{id}/paper-answer`: a police officer records that
/// police's answer to the owner's contest was posted
/// (`notices::paper::record_paper_answer`).
pub async fn paper_answer(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<PaperForm>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police])?;
    viewer.check_csrf(&f.csrf)?;
    let lang = viewer.lang;
    use crate::notices::paper::{PaperError, record_paper_answer};
    let db = &ctx.ingestor.context().db;
    match record_paper_answer(db, &id, &viewer.who(), &f.reference, now_ms()).await {
        Ok(()) => Ok(Redirect::to("/console/deadlines").into_response()),
        Err(PaperError::Reference) => Err(ConsoleError::Refused(
            lang,
            lang.t(
                "Nhập số hiệu bưu gửi (1 đến 100 ký tự).",
                "Give the postal reference (1 to 100 characters).",
            )
            .to_string(),
        )),
        Err(PaperError::Db(e)) => Err(ConsoleError::Internal(lang, e.to_string())),
        Err(_) => Err(ConsoleError::Refused(
            lang,
            lang.t(
                "Vụ việc này không có quyết định cần gửi giấy (đã gửi được, hoặc vụ việc đã thay đổi).",
                "This case has no decision to post (delivered, or the case changed).",
            )
            .to_string(),
        )),
    }
}
