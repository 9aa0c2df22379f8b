//! The police officer's confirmation queue: accepted cases, oldest first,
//! each with its overview still, the plate crop, the fine confirming it
//! will charge (beside its legal range), and the case's owner and vehicle
//! record beside it (`owner_panels::owner_for`, each view logged) with the
//! owner lookup's status; the officer checks the ones to confirm and
//! confirms them in one batch.
//!
//! A case whose owner lookup is not `resolved` (none found, failed or under
//! way, a registration that does not fit the vehicle or is not active) has
//! no owner its notice can go to: it is shown with a warning saying so
//! (confirming it writes a notice nobody is sent, flagged at 10 days for a
//! paper notice; a failed lookup is retried, better waited for), and "select
//! all" leaves it out: the officer ticks it on its own, having read that.
//! Each case in the batch goes through the workflow on its own, so the
//! two-person rule and the state checks hold per case, and the page says
//! which were confirmed and which were refused and why. Each row carries
//! the case's revision as shown (`rev.{id}`); a case changed since the
//! page was rendered (sent back, corrected, accepted again, another owner)
//! is refused, not confirmed with what the officer never saw. Each row
//! shows the device clock's state beside the time; a case whose clock was
//! not synchronised has no box here and is skipped if named in a batch
//! anyway: it is confirmed on its own page, acknowledging the clock.

use std::fmt::Write as _;

use axum::extract::{RawForm, State};
use axum::response::Response;

use super::case_page::{evidence_list, load};
use super::event_facts::clock_sync_html;
use super::html::{clock_badge, esc, local_time, violation_label, vnd};
use super::owner_panels::{notice_hold, owner_brief, owner_for, owner_status_label};
use super::queue::{Filters, list};
use super::{ConsoleError, Viewer, actions};
use crate::db::now_ms;
use crate::web::ApiContext;
use crate::workflow::{Action, Role};

/// Most cases shown at once (each costs an owner lookup).
const PAGE: i64 = 25;

async fn render(ctx: &ApiContext, viewer: &Viewer, flash: &str) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let dberr = |e| ConsoleError::from((lang, e));
    let f = Filters {
        state: "accepted".into(),
        ..Filters::default()
    };
    let rows = list(db, &f, None, PAGE).await.map_err(dberr)?;
    let now = now_ms();
    let me = &viewer.session.user.user_id;
    let mut items = String::new();
    for r in &rows {
        let Some(case) = load(db, &r.event_id).await.map_err(dberr)? else {
            continue;
        };
        let mut pics = String::new();
        for (name, role, media, stored) in evidence_list(db, &r.event_id).await.map_err(dberr)? {
            if stored && media.starts_with("image/") && (role == "overview" || role == "plate_crop")
            {
                let class = if role == "plate_crop" {
                    "plate-crop"
                } else {
                    ""
                };
                let _ = write!(
                    pics,
                    "<img class=\"{class}\" style=\"max-width:260px\" src=\"/console/cases/{}/evidence/{}\" alt=\"{}\">",
                    esc(&r.event_id),
                    esc(&name),
                    esc(&role)
                );
            }
        }
        let shown = owner_for(ctx, viewer, &case).await.map_err(dberr)?;
        let hold = notice_hold(lang, &case.owner_status, case.state);
        let owner = format!(
            "{}<br><span class=\"owner-status\">{}</span>{}",
            owner_brief(lang, &shown),
            owner_status_label(lang, &case.owner_status),
            hold.as_deref().unwrap_or("")
        );
        let own = case.accepted_by.as_deref() == Some(me.as_str());
        let event = crate::integrity::signed_event(&case.signed_json).ok();
        let clock_ok = event.as_ref().is_some_and(crate::integrity::clock_synced);
        let check = if !own && !clock_ok {
            // Not in a batch: confirmed on its own page, with the
            // officer's acknowledgement of the clock.
            format!(
                "<a class=\"muted clock-held\" href=\"/console/cases/{}\" title=\"{t}\">⏱</a>",
                esc(&r.event_id),
                t = esc(&clock_held(lang))
            )
        } else if own {
            format!(
                "<span class=\"muted\" title=\"{}\">✋</span>",
                lang.t(
                    "Bạn đã chấp nhận vụ này: người khác phải xác nhận",
                    "You accepted this case: someone else must confirm it"
                )
            )
        } else {
            // Not in "select all" when there is no owner to notify.
            let class = if hold.is_some() { "pick-held" } else { "pick" };
            format!(
                "<input type=\"checkbox\" name=\"case\" value=\"{id}\" class=\"{class}\">\
                 <input type=\"hidden\" name=\"rev.{id}\" value=\"{rev}\">",
                id = esc(&r.event_id),
                rev = case.revision
            )
        };
        let fine = fine_to_confirm(lang, case.fine, &case.fine_status);
        let _ = write!(
            items,
            "<tr data-id=\"{id}\"><td>{check}</td><td>{pics}</td><td><a href=\"/console/cases/{id}\"><span class=\"plate\">{plate}</span></a><br>\
             {typ}<br>{time} {clock_sync} {clock}<br>{cam}<br>{fine}</td><td class=\"pii\">{owner}</td></tr>",
            id = esc(&r.event_id),
            plate = esc(case.plate().unwrap_or("—")),
            typ = esc(&violation_label(
                lang,
                case.reviewed_type
                    .as_deref()
                    .unwrap_or(&case.violation_type)
            )),
            time = local_time(case.event_ms),
            clock_sync = clock_sync_html(lang, event.as_ref()),
            clock = clock_badge(lang, case.event_ms, now),
            cam = esc(&case.camera_id),
        );
    }
    let flash = if flash.is_empty() {
        String::new()
    } else {
        format!("<div class=\"flash\" id=\"flash\">{flash}</div>")
    };
    let body = format!(
        "<h1>{title} ({n})</h1>{flash}<p class=\"muted\">{hint}</p>\
         <form method=\"post\" action=\"/console/confirm\" id=\"batch\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label><input type=\"checkbox\" id=\"all\"> {all}</label> \
         <button class=\"primary\" id=\"confirm-selected\">{go}</button></p>\
         <table id=\"confirm-list\"><tr><th></th><th>{ev}</th><th>{case_l}</th><th>{owner_l}</th></tr>{items}</table></form>\
         <script>{select_all}</script>",
        select_all = SELECT_ALL_JS,
        title = lang.t("Chờ CSGT xác nhận", "Awaiting police confirmation"),
        n = rows.len(),
        hint = lang.t(
            "Thông tin chủ phương tiện là dữ liệu cá nhân; mọi lần xem đều được ghi nhật ký. \
             Vụ việc có cảnh báo đỏ không có chủ phương tiện để gửi thông báo: «Chọn tất cả» bỏ qua chúng.",
            "Owner data is personal data; every view is logged. Cases with a red warning have no \
             owner to send the notice to: \"Select all\" leaves them out."
        ),
        csrf = esc(&viewer.session.csrf),
        all = lang.t("Chọn tất cả", "Select all"),
        go = lang.t("Xác nhận các vụ đã chọn", "Confirm selected cases"),
        ev = lang.t("Bằng chứng", "Evidence"),
        case_l = lang.t("Vụ việc", "Case"),
        owner_l = lang.t("Chủ phương tiện", "Owner"),
    );
    Ok(viewer.page(lang.t("Xác nhận xử phạt", "Confirm fines"), &body))
}

/// `GET /console/confirm`.
pub async fn queue(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    render(&ctx, &viewer, "").await
}

/// `POST /console/confirm`: confirms every checked case, each on its own.
pub async fn batch(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    RawForm(body): RawForm,
) -> Result<Response, ConsoleError> {
    let lang = viewer.lang;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ConsoleError::Refused(lang, format!("form: {e}")))?;
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    viewer.check_csrf(csrf)?;
    viewer.require(&[Role::Police])?;
    let ids: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "case")
        .map(|(_, v)| v.as_str())
        .take(200)
        .collect();
    let mut done = 0;
    let mut refused = Vec::new();
    for id in &ids {
        let seen = fields
            .iter()
            .find(|(k, _)| k.strip_prefix("rev.") == Some(id))
            .and_then(|(_, v)| v.trim().parse::<i64>().ok());
        let Some(seen) = seen else {
            refused.push(format!("{}: {}", esc(id), esc(&actions::stale_page(lang))));
            continue;
        };
        // A case whose device clock was not synchronised is never
        // confirmed in a batch: its own page asks for the acknowledgement.
        let db = &ctx.ingestor.context().db;
        let case = load(db, id)
            .await
            .map_err(|e| ConsoleError::from((lang, e)))?;
        let clock_ok = case
            .as_ref()
            .and_then(|c| crate::integrity::signed_event(&c.signed_json).ok())
            .is_some_and(|e| crate::integrity::clock_synced(&e));
        if case.is_some() && !clock_ok {
            refused.push(format!("{}: {}", esc(id), esc(&clock_held(lang))));
            continue;
        }
        match actions::run(
            &ctx,
            &viewer,
            id,
            &Action::Confirm,
            "",
            Some(seen),
            false,
            None,
        )
        .await
        {
            Ok(()) => done += 1,
            Err(ConsoleError::Refused(_, why) | ConsoleError::NotFound(_, why)) => {
                refused.push(format!("{}: {}", esc(id), esc(&why)))
            }
            Err(e) => return Err(e),
        }
    }
    let mut flash = format!(
        "{} {done} {}",
        lang.t("Đã xác nhận", "Confirmed"),
        lang.t("vụ", "case(s)")
    );
    if !refused.is_empty() {
        let _ = write!(
            flash,
            "; {}: {}",
            lang.t("không xác nhận được", "not confirmed"),
            refused.join("; ")
        );
    }
    render(&ctx, &viewer, &flash).await
}

/// The fine as the officer decides it: the amount confirming will charge
/// (`review::decided_amount`, the very function `Reviewer::apply` fixes
/// `fine_amount_vnd` with, so the notice, the citizen's page and the payment
/// carry what is shown here; a batch always charges it, and only the case
/// page's confirm form may set another amount within the range, for a
/// stated circumstance), with the legal range it was taken from beside
/// it. A case with no priced range shows its fine status: confirming it is
/// refused.
pub(super) fn fine_to_confirm(
    lang: super::html::Lang,
    range: Option<(i64, i64)>,
    status: &str,
) -> String {
    let Some((lo, hi)) = range else {
        return esc(status);
    };
    let legal = if lo == hi {
        vnd(lo)
    } else {
        format!("{} – {}", vnd(lo), vnd(hi))
    };
    match crate::review::decided_amount(range) {
        Some(amount) => format!(
            "{charge}: <strong class=\"fine-amount\">{amount}</strong> \
             <span class=\"muted\">({range_l} {legal})</span>",
            charge = lang.t("Số tiền phạt khi xác nhận", "Fine charged on confirmation"),
            amount = vnd(amount),
            range_l = lang.t("khung phạt", "legal range"),
        ),
        None => legal,
    }
}

/// Why a case is left out of a batch confirmation.
fn clock_held(lang: super::html::Lang) -> String {
    lang.t(
        "bỏ qua: đồng hồ thiết bị không đồng bộ khi ghi thời gian; hãy xác nhận trên trang vụ việc",
        "skipped: the device clock was not synchronised when it stamped the time; confirm it on its own page",
    )
    .to_string()
}

/// The "select all" box of the confirmation list (a script, not an
/// `onclick` attribute, which the security policy refuses).
pub(super) const SELECT_ALL_JS: &str = "(()=>{const all=document.getElementById('all');if(all)all.addEventListener('click',()=>document.querySelectorAll('.pick').forEach(c=>c.checked=all.checked));})();";
