//! Case lists: the operator's review queue (new cases and cases whose
//! review lease has lapsed, oldest first so the ones nearest the 10-day
//! notice deadline come first) and the list of all cases for police,
//! supervisors and auditors; both filter by camera, violation type, date
//! and state.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use sqlx::Row;
use std::fmt::Write as _;

use super::html::{self, Lang, VIOLATION_TYPES, deadline_badge, esc, local_time, violation_label};
use super::{ConsoleError, Viewer};
use crate::db::{Db, DbError, now_ms};
use crate::web::ApiContext;
use crate::workflow::{CaseState, Role};

/// Filters from the query string.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filters {
    /// Camera id (exact).
    pub camera: String,
    /// Violation type wire name.
    #[serde(rename = "type")]
    pub violation: String,
    /// `yyyy-mm-dd`, local time, inclusive.
    pub from: String,
    /// `yyyy-mm-dd`, local time, inclusive.
    pub to: String,
    /// Case state name.
    pub state: String,
}

/// One row of a list.
#[derive(Debug, Clone)]
pub struct CaseRow {
    /// Case id.
    pub event_id: String,
    /// Camera.
    pub camera_id: String,
    /// Type (reviewed if corrected).
    pub violation_type: String,
    /// Plate (reviewed if corrected).
    pub plate: Option<String>,
    /// Read confidence.
    pub confidence: Option<f64>,
    /// Event time, Unix ms.
    pub event_ms: i64,
    /// State.
    pub state: String,
    /// Lowest fine.
    pub fine_min: Option<i64>,
    /// Reviewer holding a live lease.
    pub claimed_by: Option<String>,
    /// The owner's deadline to respond, once the notice is out
    /// (`notices::deadlines::effective_deadline`), Unix ms.
    pub reply_by: Option<i64>,
}

fn day_start_ms(date: &str) -> Option<i64> {
    let d = time::Date::parse(
        date,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    let t = d.midnight().assume_offset(html::VIETNAM);
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Lists cases: `queue` = the review queue as `viewer_id` sees it.
pub async fn list(
    db: &Db,
    f: &Filters,
    queue: Option<&str>,
    limit: i64,
) -> Result<Vec<CaseRow>, DbError> {
    let now = now_ms();
    let mut sql = format!(
        "SELECT event_id, camera_id, COALESCE(reviewed_type, violation_type), \
         COALESCE(reviewed_plate, plate_text), plate_confidence, event_time_ms, state, \
         fine_min_vnd, CASE WHEN claim_expires_at > $1 THEN claimed_by END, state_changed_at, \
         (SELECT n.respond_by FROM notices n WHERE n.event_id = events.event_id), {answer} \
         FROM events WHERE 1 = 1",
        answer = crate::notices::deadlines::answer_columns("events")
    );
    let mut texts: Vec<String> = Vec::new();
    let mut ints: Vec<i64> = vec![now];
    // Text binds are numbered after the integer ones, so collect first.
    let mut conds: Vec<(bool, String)> = Vec::new();
    if let Some(me) = queue {
        conds.push((false, "state IN ('new', 'in_review') AND (claim_expires_at IS NULL OR claim_expires_at <= $1 OR claimed_by = ?)".into()));
        texts.push(me.to_string());
    }
    if !f.camera.is_empty() {
        conds.push((false, "camera_id = ?".into()));
        texts.push(f.camera.clone());
    }
    if !f.violation.is_empty() {
        conds.push((false, "COALESCE(reviewed_type, violation_type) = ?".into()));
        texts.push(f.violation.clone());
    }
    if !f.state.is_empty() {
        conds.push((false, "state = ?".into()));
        texts.push(f.state.clone());
    }
    if let Some(ms) = day_start_ms(&f.from) {
        conds.push((true, "event_time_ms >= ?".into()));
        ints.push(ms);
    }
    if let Some(ms) = day_start_ms(&f.to) {
        conds.push((true, "event_time_ms < ?".into()));
        ints.push(ms + 86_400_000);
    }
    // Number the placeholders: integers first ($1 is now), then texts.
    let mut n_int = 1;
    let mut n_text = ints.len();
    for (is_int, c) in conds {
        let mut c = c;
        while let Some(i) = c.find('?') {
            let n = if is_int {
                n_int += 1;
                n_int
            } else {
                n_text += 1;
                n_text
            };
            c.replace_range(i..=i, &format!("${n}"));
        }
        let _ = write!(sql, " AND {c}");
    }
    let _ = write!(
        sql,
        " ORDER BY event_time_ms ASC LIMIT {}",
        limit.clamp(1, 1000)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for i in ints {
        q = q.bind(i);
    }
    for t in texts {
        q = q.bind(t);
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(CaseRow {
                event_id: r.try_get(0)?,
                camera_id: r.try_get(1)?,
                violation_type: r.try_get(2)?,
                plate: r.try_get(3)?,
                confidence: r.try_get(4)?,
                event_ms: r.try_get(5)?,
                state: r.try_get(6)?,
                fine_min: r.try_get(7)?,
                claimed_by: r.try_get(8)?,
                reply_by: reply_by(
                    r.try_get(10)?,
                    r.try_get(9)?,
                    crate::notices::deadlines::Answer::from_columns(r.try_get(11)?, r.try_get(12)?),
                ),
            })
        })
        .collect()
}

/// The deadline to respond of a notice whose date is `respond_by`, for a
/// case that entered its state at `since`, with what became of police's
/// answer to a contest (`notices::deadlines::held_to`, the rule the
/// 20-day check enforces); `None` while that answer has not reached the
/// owner.
pub fn reply_by(
    respond_by: Option<i64>,
    since: Option<i64>,
    answer: crate::notices::deadlines::Answer,
) -> Option<i64> {
    crate::notices::deadlines::held_to(respond_by?, since.unwrap_or(0), answer)
}

/// The filter bar.
pub fn filter_form(lang: Lang, action: &str, f: &Filters, with_state: bool) -> String {
    let mut types = format!("<option value=\"\">{}</option>", lang.t("Tất cả", "All"));
    for t in VIOLATION_TYPES {
        let sel = if f.violation == t { " selected" } else { "" };
        let _ = write!(
            types,
            "<option value=\"{t}\"{sel}>{}</option>",
            esc(&violation_label(lang, t))
        );
    }
    let state = if with_state {
        let mut o = format!("<option value=\"\">{}</option>", lang.t("Tất cả", "All"));
        for s in CaseState::ALL {
            let sel = if f.state == s.as_str() {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                o,
                "<option value=\"{}\"{sel}>{}</option>",
                s.as_str(),
                esc(s.label_vi())
            );
        }
        format!(
            "<label>{}<select name=\"state\">{o}</select></label>",
            lang.t("Trạng thái", "State")
        )
    } else {
        String::new()
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"{action}\">\
         <label>{cam}<input type=\"text\" name=\"camera\" value=\"{camera}\" size=\"12\"></label>\
         <label>{typ}<select name=\"type\">{types}</select></label>\
         <label>{from}<input type=\"date\" name=\"from\" value=\"{f_from}\"></label>\
         <label>{to}<input type=\"date\" name=\"to\" value=\"{f_to}\"></label>{state}\
         <button>{go}</button></form>",
        cam = lang.t("Camera", "Camera"),
        camera = esc(&f.camera),
        typ = lang.t("Loại vi phạm", "Violation"),
        from = lang.t("Từ ngày", "From"),
        to = lang.t("Đến ngày", "To"),
        f_from = esc(&f.from),
        f_to = esc(&f.to),
        go = lang.t("Lọc", "Filter"),
    )
}

/// The rows as a table.
pub fn table(lang: Lang, rows: &[CaseRow], now: i64) -> String {
    let mut t = format!(
        "<table id=\"cases\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Thời gian", "Time"),
        lang.t("Hạn", "Deadline"),
        lang.t("Camera", "Camera"),
        lang.t("Vi phạm", "Violation"),
        lang.t("Biển số", "Plate"),
        lang.t("Độ tin cậy", "Confidence"),
        lang.t("Trạng thái", "State"),
        lang.t("Mức phạt từ", "Fine from"),
    );
    for r in rows {
        let state = CaseState::parse(&r.state)
            .map(|s| s.label_vi())
            .unwrap_or("?");
        let _ = write!(
            t,
            "<tr data-id=\"{id}\"><td><a href=\"/console/cases/{id}\">{time}</a></td><td>{clock}</td><td>{cam}</td>\
             <td>{typ}</td><td class=\"plate-cell\">{plate}</td><td>{conf}</td><td>{state}{claim}</td><td>{fine}</td></tr>",
            id = esc(&r.event_id),
            time = local_time(r.event_ms),
            clock = CaseState::parse(&r.state)
                .map(|s| deadline_badge(lang, s, r.event_ms, r.reply_by, now))
                .unwrap_or_default(),
            cam = esc(&r.camera_id),
            typ = esc(&violation_label(lang, &r.violation_type)),
            plate = esc(r.plate.as_deref().unwrap_or("—")),
            conf = r
                .confidence
                .map(|c| format!("{:.0}%", c * 100.0))
                .unwrap_or_default(),
            state = esc(state),
            claim = if r.claimed_by.is_some() { " 🔒" } else { "" },
            fine = r.fine_min.map(super::html::vnd).unwrap_or_default(),
        );
    }
    t.push_str("</table>");
    if rows.is_empty() {
        let _ = write!(
            t,
            "<p class=\"muted\" id=\"empty\">{}</p>",
            lang.t("Không có vụ việc nào.", "No cases.")
        );
    }
    t
}

/// `GET /console/queue`: the operator's review queue.
pub async fn review_queue(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Query(f): Query<Filters>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Operator, Role::Supervisor])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let rows = list(db, &f, Some(&viewer.session.user.user_id), 200)
        .await
        .map_err(|e| ConsoleError::from((lang, e)))?;
    let body = format!(
        "<h1>{title} ({n})</h1>{filters}\
         <form method=\"post\" action=\"/console/queue/next\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"primary\" id=\"start\">{start} <span class=\"kbd\">n</span></button></form>\
         <p class=\"muted\">{hint}</p>{table}\
         <script>{keys}</script>",
        keys = KEYS_JS,
        title = lang.t("Hàng đợi xem xét", "Review queue"),
        n = rows.len(),
        filters = filter_form(lang, "/console/queue", &f, false),
        csrf = esc(&viewer.session.csrf),
        start = lang.t("Xem vụ tiếp theo", "Review next case"),
        hint = lang.t(
            "Phím tắt trong trang vụ việc: a chấp nhận · r loại · p sửa biển số · t sửa loại vi phạm · n vụ tiếp theo",
            "Keys on a case page: a accept · r reject · p correct plate · t correct type · n next case"
        ),
        table = table(lang, &rows, now_ms()),
    );
    Ok(viewer.page(lang.t("Hàng đợi xem xét", "Review queue"), &body))
}

/// `GET /console/cases`: every case, filtered (police, supervisors, auditors).
pub async fn all_cases(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
    Query(f): Query<Filters>,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Police, Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let rows = list(&ctx.ingestor.context().db, &f, None, 500)
        .await
        .map_err(|e| ConsoleError::from((lang, e)))?;
    let body = format!(
        "<h1>{} ({})</h1>{}{}",
        lang.t("Tất cả vụ việc", "All cases"),
        rows.len(),
        filter_form(lang, "/console/cases", &f, true),
        table(lang, &rows, now_ms())
    );
    Ok(viewer.page(lang.t("Tất cả vụ việc", "All cases"), &body))
}

/// The oldest case in the viewer's queue that nobody else holds.
pub async fn next_in_queue(db: &Db, me: &str) -> Result<Option<String>, DbError> {
    let now = now_ms();
    let row = sqlx::query(
        "SELECT event_id FROM events WHERE state IN ('new', 'in_review') \
         AND (claim_expires_at IS NULL OR claim_expires_at <= $1 OR claimed_by = $2) \
         ORDER BY event_time_ms ASC LIMIT 1",
    )
    .bind(now)
    .bind(me)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(DbError::from)
}

/// The queue page's script: `n` starts the next case.
pub(super) const KEYS_JS: &str = "document.addEventListener('keydown',e=>{if(e.target.tagName==='INPUT'||e.target.tagName==='SELECT')return;if(e.key==='n'){document.getElementById('start').click();}});";
