//! One case on one screen: the stills side by side with the vehicle's
//! trajectory drawn over the overview, the clip, the zoomed plate crop, the
//! read and its confidence, the signal state, the fine (the amount charged
//! once police confirmed it, or that confirming will charge, beside the
//! legal range), the legal clock, the history, and the actions the viewer's
//! role allows, all reachable from the keyboard; beside the vehicle, the
//! owner lookup's status, and for a case about to be confirmed (or
//! confirmed) without an owner to notify, what that means for its notice.
//! Police and auditors also see the case's owner and the vehicle record
//! (`owner_panels.rs`): each view is logged in the registry's access log
//! and the audit log.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::response::Response;
use sqlx::Row;

use super::event_facts::{
    clock_sync_html, plate_source_text, riders_text, signal_text, speed_uncertainty_text,
    trajectory,
};
use super::html::{deadline_badge, esc, local_time, violation_label, vnd};
use super::owner_panels::{
    contests_panel, notice_hold, owner_for, owner_panel, owner_status_label,
};
use super::{ConsoleError, Viewer};
use crate::audit;
use crate::db::{Db, DbError, now_ms};
use crate::review;
use crate::web::ApiContext;
use crate::workflow::{CaseState, Role};

/// A stored case with everything the page shows.
#[derive(Debug, Clone)]
pub struct CaseDetail {
    pub event_id: String,
    pub device_id: String,
    pub camera_id: String,
    pub site: String,
    pub event_ms: i64,
    pub violation_type: String,
    pub reviewed_type: Option<String>,
    pub vehicle_class: String,
    pub plate_text: Option<String>,
    pub reviewed_plate: Option<String>,
    pub plate_colour: String,
    pub confidence: Option<f64>,
    pub speed: Option<(f64, i64)>,
    pub fine_status: String,
    pub fine_ref: Option<String>,
    pub fine: Option<(i64, i64)>,
    /// The fine fixed when police confirmed the case
    /// (`events.fine_amount_vnd`): what the notice, the citizen's page and
    /// the payment charge. `None` before confirmation.
    pub fine_amount: Option<i64>,
    pub points: Option<i64>,
    pub owner_status: String,
    /// The case's owner (`events.owner_id`): who its notice goes to.
    pub owner_id: Option<String>,
    pub state: CaseState,
    pub claimed_by: Option<String>,
    pub claim_expires_at: Option<i64>,
    pub accepted_by: Option<String>,
    pub confirmed_by: Option<String>,
    pub reject_code: Option<String>,
    pub reject_note: Option<String>,
    pub signed_json: String,
    /// When the deadline check flagged that no notice went out within 10
    /// days of detection (Unix ms); never cleared.
    pub notice_late_at: Option<i64>,
    /// When its evidence was deleted under retention, if it was.
    pub evidence_purged_at: Option<i64>,
    /// Raised by every change (`review`): what a decision form carries.
    pub revision: i64,
    /// The owner's deadline to respond, once the notice is out, Unix ms.
    pub reply_by: Option<i64>,
}

impl CaseDetail {
    /// The plate to fine: the reviewer's, else the machine's.
    pub fn plate(&self) -> Option<&str> {
        self.reviewed_plate
            .as_deref()
            .or(self.plate_text.as_deref())
    }
}

/// Loads a case.
pub async fn load(db: &Db, id: &str) -> Result<Option<CaseDetail>, DbError> {
    let sql = format!(
        "SELECT event_id, device_id, camera_id, site, event_time_ms, violation_type, reviewed_type, \
         vehicle_class, plate_text, reviewed_plate, plate_colour, plate_confidence, speed_kmh, \
         speed_limit_kmh, fine_status, fine_ref, fine_min_vnd, fine_max_vnd, licence_points, \
         owner_status, state, claimed_by, claim_expires_at, accepted_by, confirmed_by, reject_code, \
         reject_note, signed_json, notice_late_at, evidence_purged_at, owner_id, revision, \
         state_changed_at, (SELECT n.respond_by FROM notices n WHERE n.event_id = events.event_id), \
         fine_amount_vnd, {answer} \
         FROM events \
         WHERE event_id = $1",
        answer = crate::notices::deadlines::answer_columns("events")
    );
    let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let speed: Option<f64> = r.try_get(12)?;
    let limit: Option<i64> = r.try_get(13)?;
    let min: Option<i64> = r.try_get(16)?;
    let max: Option<i64> = r.try_get(17)?;
    let state: String = r.try_get(20)?;
    Ok(Some(CaseDetail {
        event_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        camera_id: r.try_get(2)?,
        site: r.try_get(3)?,
        event_ms: r.try_get(4)?,
        violation_type: r.try_get(5)?,
        reviewed_type: r.try_get(6)?,
        vehicle_class: r.try_get(7)?,
        plate_text: r.try_get(8)?,
        reviewed_plate: r.try_get(9)?,
        plate_colour: r.try_get(10)?,
        confidence: r.try_get(11)?,
        speed: speed.zip(limit),
        fine_status: r.try_get(14)?,
        fine_ref: r.try_get(15)?,
        fine: min.zip(max),
        fine_amount: r.try_get(34)?,
        points: r.try_get(18)?,
        owner_status: r.try_get(19)?,
        state: CaseState::parse(&state).unwrap_or(CaseState::New),
        claimed_by: r.try_get(21)?,
        claim_expires_at: r.try_get(22)?,
        accepted_by: r.try_get(23)?,
        confirmed_by: r.try_get(24)?,
        reject_code: r.try_get(25)?,
        reject_note: r.try_get(26)?,
        signed_json: r.try_get(27)?,
        notice_late_at: r.try_get(28)?,
        evidence_purged_at: r.try_get(29)?,
        owner_id: r.try_get(30)?,
        revision: r.try_get(31)?,
        reply_by: super::queue::reply_by(
            r.try_get(33)?,
            r.try_get(32)?,
            crate::notices::deadlines::Answer::from_columns(r.try_get(35)?, r.try_get(36)?),
        ),
    }))
}

/// Evidence of a case: (name, role, media type, stored).
pub async fn evidence_list(
    db: &Db,
    id: &str,
) -> Result<Vec<(String, String, String, bool)>, DbError> {
    let rows = sqlx::query(
        "SELECT name, role, media_type, stored FROM evidence WHERE event_id = $1 ORDER BY name",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let stored: i64 = r.try_get(3)?;
            Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, stored != 0))
        })
        .collect()
}

/// Display names of users by id.
pub async fn names(db: &Db) -> Result<HashMap<String, String>, DbError> {
    let rows = sqlx::query("SELECT user_id, display_name FROM users")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The case's history: (at, actor, action, from, to, reason).
async fn history(
    db: &Db,
    id: &str,
) -> Result<Vec<(i64, String, String, String, String, Option<String>)>, DbError> {
    let rows = sqlx::query(
        "SELECT at, actor, action, from_state, to_state, reason FROM case_transitions \
         WHERE event_id = $1 ORDER BY at, id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ))
        })
        .collect()
}

/// Whether someone in `role` may open a case in `state`: operators review,
/// so theirs are the cases before a police decision (new, in review,
/// accepted, rejected); a confirmed, contested or paid case — the police's
/// and the owner's business — is "not found" to them, as the case list
/// already leaves it out. Other roles see every state.
pub(super) fn operator_may_see(role: Role, state: CaseState) -> bool {
    role != Role::Operator
        || matches!(
            state,
            CaseState::New | CaseState::InReview | CaseState::Accepted | CaseState::Rejected
        )
}

/// `GET /console/cases/{id}`.
pub async fn show(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[
        Role::Operator,
        Role::Supervisor,
        Role::Police,
        Role::Auditor,
    ])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let dberr = |e: DbError| ConsoleError::from((lang, e));
    let case = load(db, &id)
        .await
        .map_err(dberr)?
        .filter(|c| operator_may_see(viewer.session.user.role, c.state))
        .ok_or_else(|| ConsoleError::NotFound(lang, id.clone()))?;
    let evidence = evidence_list(db, &id).await.map_err(dberr)?;
    let names = names(db).await.map_err(dberr)?;
    let name = |id: &Option<String>| -> String {
        id.as_ref()
            .map(|i| names.get(i).cloned().unwrap_or_else(|| i.clone()))
            .unwrap_or_else(|| "—".into())
    };
    let now = now_ms();
    let mut stills = String::new();
    let mut plate_crop = String::new();
    let mut clip = String::new();
    let event = crate::review::stored_event(&case.signed_json).ok();
    let track = trajectory(event.as_ref());
    for (n, role, media, stored) in &evidence {
        let src = format!("/console/cases/{}/evidence/{}", esc(&id), esc(n));
        if !stored {
            let why = match case.evidence_purged_at {
                Some(at) => format!(
                    "{} {}",
                    lang.t(
                        "đã xoá theo chính sách lưu trữ ngày",
                        "deleted under the retention policy on"
                    ),
                    local_time(at)
                ),
                // Only clips follow their event; a still not in the
                // event's bundle is lost on the device.
                None if role != "clip" => lang
                    .t(
                        "thiếu: thiết bị không gửi được tệp này",
                        "missing: the device could not send it",
                    )
                    .to_string(),
                None => lang.t("chưa nhận", "not received yet").to_string(),
            };
            let _ = write!(clip, "<p class=\"muted\">{} — {why}</p>", esc(n));
            continue;
        }
        match (role.as_str(), media.starts_with("image/")) {
            ("plate_crop", true) => {
                plate_crop = format!(
                    "<img class=\"plate-crop\" id=\"plate-crop\" src=\"{src}\" alt=\"plate\">"
                );
            }
            (_, true) => {
                let overlay = if role == "overview" && !track.is_empty() {
                    format!(
                        "<svg class=\"track\" data-points=\"{track}\"><polyline points=\"{track}\" fill=\"none\" stroke=\"#ff0\" stroke-width=\"6\"/></svg>"
                    )
                } else {
                    String::new()
                };
                // The frame the still shows, as the device signed it.
                let shown = event
                    .as_ref()
                    .and_then(|e| e.evidence_item(n))
                    .and_then(|i| crate::integrity::frame_text(i, lang == super::html::Lang::Vi))
                    .map(|t| format!(" <span class=\"muted\">— {}</span>", esc(&t)))
                    .unwrap_or_default();
                let _ = write!(
                    stills,
                    "<figure><img src=\"{src}\" alt=\"{alt}\">{overlay}<figcaption>{alt}{shown}</figcaption></figure>",
                    alt = esc(n)
                );
            }
            _ if media.starts_with("video/") => {
                let _ = write!(
                    clip,
                    "<video controls preload=\"metadata\" width=\"100%\" src=\"{src}\"></video>"
                );
            }
            _ => {}
        }
    }
    let fine = fine_html(lang, &case);
    let plate_line = match (&case.reviewed_plate, &case.plate_text) {
        (Some(r), Some(m)) if r != m => format!(
            "<span class=\"plate\" id=\"plate\">{}</span> <span class=\"muted\">({} {})</span>",
            esc(r),
            lang.t("máy đọc", "machine read"),
            esc(m)
        ),
        _ => format!(
            "<span class=\"plate\" id=\"plate\">{}</span>",
            esc(case.plate().unwrap_or("—"))
        ),
    };
    // The owner is looked up (and the look-up logged) only for a case an
    // operator has found a real violation with the right plate: before
    // that the plate may be a misread, and its owner an uninvolved person
    // whose data nobody needs (minimum collection).
    let decided = case.accepted_by.is_some()
        || matches!(
            case.state,
            CaseState::Confirmed
                | CaseState::NoticeIssued
                | CaseState::Paid
                | CaseState::Contested
                | CaseState::Overdue
        );
    let owner = if !viewer.session.user.role.sees_personal_data() {
        String::new()
    } else if decided {
        owner_panel(lang, &owner_for(&ctx, &viewer, &case).await.map_err(dberr)?)
    } else {
        format!(
            "<section id=\"owner-pending\"><p class=\"muted\">{}</p></section>",
            lang.t(
                "Thông tin chủ xe chỉ hiện khi trường hợp đã được chấp nhận.",
                "The owner is shown once an operator has accepted the case."
            )
        )
    };
    // A contest is the owner's own words (and photo): personal data, for
    // the police who answer it and the auditors, each view logged.
    let contests = if viewer.session.user.role.sees_personal_data() {
        let panel = contests_panel(lang, db, &id).await.map_err(dberr)?;
        if !panel.is_empty() {
            audit::record(
                db,
                now,
                &viewer.who(),
                "contest.view",
                &format!("case:{id}"),
                &serde_json::json!({}),
            )
            .await
            .map_err(dberr)?;
        }
        panel
    } else {
        String::new()
    };
    let reasons = review::rejection_reasons(db).await.map_err(dberr)?;
    let actions = super::actions::panel(&viewer, &case, &reasons, now);
    let mut hist = String::new();
    let sees_owner = viewer.session.user.role.sees_personal_data();
    for (at, actor, action, from, to, reason) in history(db, &id).await.map_err(dberr)? {
        // The owner's contest reason is the owner's own words: shown in
        // the contests panel, to the roles that may read it.
        let reason = if action == "contest" && !sees_owner {
            None
        } else {
            reason
        };
        let _ = write!(
            hist,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
            local_time(at),
            esc(&name(&Some(actor))),
            esc(&action),
            esc(&from),
            esc(&to),
            esc(reason.as_deref().unwrap_or(""))
        );
    }
    let typ = case
        .reviewed_type
        .as_deref()
        .unwrap_or(&case.violation_type);
    let speed = case
        .speed
        .map(|(s, l)| {
            format!(
                "<tr><th>{}</th><td>{s:.0}{} / {l} km/h</td></tr>",
                lang.t("Tốc độ / giới hạn", "Speed / limit"),
                speed_uncertainty_text(event.as_ref())
            )
        })
        .unwrap_or_default();
    let rejected = case
        .reject_code
        .as_ref()
        .map(|c| {
            format!(
                "<tr><th>{}</th><td>{} {}</td></tr>",
                lang.t("Lý do loại", "Rejected because"),
                esc(c),
                esc(case.reject_note.as_deref().unwrap_or(""))
            )
        })
        .unwrap_or_default();
    let late = case
        .notice_late_at
        .map(|at| {
            format!(
                "<p><span class=\"badge late\" id=\"notice-late\" title=\"{} {}\">{}</span></p>",
                lang.t("Đánh dấu lúc", "Flagged at"),
                local_time(at),
                lang.t(
                    "Quá hạn gửi thông báo (10 ngày)",
                    "Notice overdue (10 days)"
                )
            )
        })
        .unwrap_or_default();
    let altered = altered_alarm(lang, db, &id).await.map_err(dberr)?;
    let body = format!(
        "<h1>{title} <span class=\"muted\">{id}</span></h1>{altered}{late}\
         <div class=\"case\"><div><div class=\"stills\">{stills}</div>{clip}</div>\
         <div><div class=\"panel\">{plate_crop}<div>{plate_line}</div>\
         <div>{conf_label}: <strong id=\"confidence\">{conf}</strong> · {colour}</div>\
         <div class=\"muted\" id=\"plate-source\">{plate_source}</div></div>{actions}\
         <div class=\"panel\"><table>\
         <tr><th>{state_l}</th><td id=\"state\">{state}</td></tr>\
         <tr><th>{typ_l}</th><td id=\"violation\">{typ}</td></tr>\
         <tr><th>{time_l}</th><td id=\"event-time\">{time} {clock_sync} {clock}</td></tr>\
         <tr><th>{limit_l}</th><td id=\"limitation\">{limit}</td></tr>\
         <tr><th>{place_l}</th><td>{site} · {cam} · {dev}{site_file}</td></tr>
         <tr><th>{veh_l}</th><td><span id=\"vehicle\">{vehicle}{riders}</span> · <span id=\"owner-status\">{owner_status}</span>{hold}</td></tr>\
         <tr><th>{signal_l}</th><td>{signal}</td></tr>{speed}\
         <tr><th>{fine_l}</th><td id=\"fine\">{fine} {article} {points}</td></tr>\
         <tr><th>{acc_l}</th><td>{accepted}</td></tr><tr><th>{conf_by_l}</th><td>{confirmed}</td></tr>{rejected}\
         </table></div>{contests}{owner}</div></div>\
         {export}<h2>{hist_l}</h2><table>{hist}</table>\
         <script>{script}</script>",
        title = lang.t("Vụ việc", "Case"),
        id = esc(&id),
        conf_label = lang.t("Độ tin cậy", "Confidence"),
        conf = case.confidence.map(|c| format!("{:.0}%", c * 100.0)).unwrap_or_else(|| "—".into()),
        colour = esc(&case.plate_colour),
        plate_source = esc(&plate_source_text(lang, event.as_ref())),
        state_l = lang.t("Trạng thái", "State"),
        state = esc(case.state.label_vi()),
        typ_l = lang.t("Hành vi", "Violation"),
        typ = esc(&violation_label(lang, typ)),
        time_l = lang.t("Thời gian", "Time"),
        time = local_time(case.event_ms),
        clock_sync = clock_sync_html(lang, event.as_ref()),
        clock = deadline_badge(lang, case.state, case.event_ms, case.reply_by, now),
        limit_l = lang.t("Hết thời hiệu xử phạt (1 năm)", "Limitation ends (1 year)"),
        limit = limitation_text(lang, case.event_ms, now),
        place_l = lang.t("Địa điểm", "Place"),
        site = esc(&case.site),
        cam = esc(&case.camera_id),
        dev = esc(&case.device_id),
        // The site file the device judged by, as it signed it (schema 1.4).
        site_file = event
            .as_ref()
            .and_then(|e| e.site_config_sha256.as_deref())
            .map(|h| format!(
                " <span class=\"muted\" id=\"site-file\">· {} <code>{}</code></span>",
                lang.t("tệp cấu hình", "site file"),
                esc(&h.chars().take(12).collect::<String>())
            ))
            .unwrap_or_default(),
        veh_l = lang.t("Phương tiện · tra cứu chủ xe", "Vehicle · owner lookup"),
        vehicle = esc(&case.vehicle_class),
        riders = esc(&riders_text(lang, event.as_ref())),
        owner_status = owner_status_label(lang, &case.owner_status),
        hold = notice_hold(lang, &case.owner_status, case.state).unwrap_or_default(),
        signal_l = lang.t("Đèn tín hiệu", "Signal"),
        signal = esc(&signal_text(lang, event.as_ref())),
        fine_l = lang.t("Mức phạt", "Fine"),
        article = esc(case.fine_ref.as_deref().unwrap_or("")),
        points = case.points.map(|p| format!("· {p} {}", lang.t("điểm", "points"))).unwrap_or_default(),
        acc_l = lang.t("Người chấp nhận", "Accepted by"),
        accepted = esc(&name(&case.accepted_by)),
        conf_by_l = lang.t("CSGT xác nhận", "Confirmed by"),
        confirmed = esc(&name(&case.confirmed_by)),
        hist_l = lang.t("Lịch sử", "History"),
        export = if matches!(viewer.session.user.role, Role::Police | Role::Supervisor | Role::Auditor) {
            format!(
                "<p><a id=\"package\" href=\"/console/cases/{}/package.zip\">{}</a></p>",
                esc(&id),
                lang.t("Xuất hồ sơ bằng chứng (ZIP, PDF)", "Export the evidence package (ZIP, PDF)")
            )
        } else {
            String::new()
        },
        script = KEYS_JS,
    );
    Ok(viewer.page(
        &format!(
            "{} {}",
            lang.t("Vụ việc", "Case"),
            case.plate().unwrap_or("")
        ),
        &body,
    ))
}

/// The alarm over a case whose row no longer says what its device signed
/// (`integrity::differences`), naming each difference; empty otherwise.
async fn altered_alarm(lang: super::html::Lang, db: &Db, id: &str) -> Result<String, DbError> {
    let diffs = crate::integrity::check(db.pool(), id)
        .await?
        .unwrap_or_default();
    if diffs.is_empty() {
        return Ok(String::new());
    }
    tracing::error!(case = id, problem = %crate::integrity::describe(&diffs), "case record altered");
    let items: String = diffs
        .iter()
        .map(|d| {
            format!(
                "<li><code>{}</code>: {} «{}», {} «{}»</li>",
                esc(d.field),
                lang.t("cơ sở dữ liệu ghi", "the database says"),
                esc(&d.column),
                lang.t("bản thiết bị ký ghi", "the signed event says"),
                esc(&d.signed)
            )
        })
        .collect();
    Ok(format!(
        "<div class=\"alarm\" id=\"record-altered\" role=\"alert\"><strong>{}</strong><ul>{items}</ul></div>",
        lang.t(
            "CẢNH BÁO: HỒ SƠ ĐÃ BỊ SỬA — dữ liệu vụ việc khác với bản thiết bị đã ký; không được xác nhận xử phạt",
            "WARNING: RECORD ALTERED — the case data differs from what the device signed; it must not be confirmed"
        )
    ))
}

/// The fine row: once police confirmed the case, the amount it charges
/// (`fine_amount_vnd`, what the notice, the citizen's page and the payment
/// carry) beside the legal range it was taken from, so staff read what the
/// owner is asked to pay; while it waits for confirmation, the amount
/// confirming will charge (as the confirmation list shows it); before that,
/// the range alone, since a correction of the type may still reprice it.
fn fine_html(lang: super::html::Lang, case: &CaseDetail) -> String {
    let legal = match case.fine {
        Some((a, b)) if a == b => vnd(a),
        Some((a, b)) => format!("{} – {}", vnd(a), vnd(b)),
        None => esc(&case.fine_status),
    };
    match case.fine_amount {
        Some(amount) => format!(
            "{charged}: <strong id=\"fine-amount\">{amount}</strong> \
             <span class=\"muted\">({range_l} {legal})</span>",
            charged = lang.t("Số tiền phạt đã quyết định", "Fine charged"),
            amount = vnd(amount),
            range_l = lang.t("khung phạt", "legal range"),
        ),
        None if case.state == CaseState::Accepted => {
            super::confirm::fine_to_confirm(lang, case.fine, &case.fine_status)
        }
        None => legal,
    }
}

/// When the limitation period ends, and once it has, that nobody can be
/// fined for the case any more (accepting and confirming are refused).
fn limitation_text(lang: super::html::Lang, event_ms: i64, now: i64) -> String {
    let ends = crate::workflow::limitation_ends_at(event_ms);
    let when = local_time(ends);
    if now <= ends {
        return when;
    }
    format!(
        "{when} <span class=\"badge late\" id=\"limitation-passed\">{}</span>",
        lang.t(
            "Đã hết thời hiệu xử phạt: không thể chấp nhận hay xác nhận xử phạt, chỉ có thể loại",
            "The limitation period has ended: the case can no longer be accepted or confirmed, only rejected"
        )
    )
}

/// Keyboard: a accept, r reject, p plate, t type, n next, c confirm; and
/// the trajectory overlay's coordinate system once the image has loaded.
pub(super) const KEYS_JS: &str = r#"
document.querySelectorAll('svg.track').forEach(s=>{const img=s.parentNode.querySelector('img');const f=()=>s.setAttribute('viewBox','0 0 '+img.naturalWidth+' '+img.naturalHeight);if(img.complete)f();else img.addEventListener('load',f);});
document.addEventListener('keydown',e=>{const t=e.target.tagName;if(t==='INPUT'||t==='SELECT'||t==='TEXTAREA'){if(e.key==='Escape')e.target.blur();return;}
const k={a:'accept-form',n:'next-form',c:'confirm-form'}[e.key];if(k){const f=document.getElementById(k);if(f){e.preventDefault();f.requestSubmit();}return;}
const fo={r:'reject-code',p:'plate-input',t:'type-input'}[e.key];if(fo){const el=document.getElementById(fo);if(el){e.preventDefault();el.focus();}}});
"#;
