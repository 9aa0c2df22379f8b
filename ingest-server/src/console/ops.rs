//! Operations pages: device and camera health from the latest signed
//! heartbeats (last seen, camera state and fps, outbox depth, clock), the
//! violations of the last seven days per camera, per type and per hour of
//! day as bar charts, the quarantine, and the audit log with its chain
//! verification.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use protocol::{Heartbeat, Signed};
use sqlx::Row;

use super::html::{Lang, esc, local_time, violation_label};
use super::{ConsoleError, Viewer};
use crate::audit::{self, Verification};
use crate::db::now_ms;
use crate::web::ApiContext;
use crate::workflow::Role;

fn bars(lang: Lang, title: &str, data: &[(String, i64)]) -> String {
    let max = data.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let mut bars = String::new();
    let mut labels = String::new();
    for (label, n) in data {
        let h = (n * 100 / max).max(1);
        let _ = write!(
            bars,
            "<div style=\"height:{h}%\" title=\"{}: {n}\"></div>",
            esc(label)
        );
        let _ = write!(labels, "<tr><td>{}</td><td>{n}</td></tr>", esc(label));
    }
    if data.is_empty() {
        return format!(
            "<h2>{}</h2><p class=\"muted\">{}</p>",
            esc(title),
            lang.t("Chưa có dữ liệu.", "No data yet.")
        );
    }
    format!(
        "<h2>{}</h2><div class=\"chart\">{bars}</div><details><summary>{}</summary><table>{labels}</table></details>",
        esc(title),
        lang.t("Số liệu", "Figures")
    )
}

/// `GET /console/health`.
pub async fn health(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let dberr = |e| ConsoleError::from((lang, e));
    let now = now_ms();
    let mut rows = String::new();
    for hb in crate::heartbeats::latest(db).await.map_err(dberr)? {
        let age_s = (now - hb.received_at) / 1000;
        let stale = age_s > 120;
        let parsed = Signed::<Heartbeat>::from_json(hb.signed_json.as_bytes())
            .ok()
            .and_then(|s| {
                serde_json::from_value::<Heartbeat>(serde_json::Value::Object(s.payload().clone()))
                    .ok()
            });
        let (cams, outbox, clock, alarms) = match &parsed {
            Some(h) => (
                h.cameras
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} {:.1} fps",
                            esc(&c.camera_id),
                            esc(&crate::ingest::enum_text(&c.state)),
                            c.analysed_fps
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>"),
                format!("{}", h.outbox.depth),
                format!(
                    "{} {}",
                    esc(&crate::ingest::enum_text(&h.clock.status)),
                    h.clock
                        .offset_ms
                        .map(|o| format!("{o} ms"))
                        .unwrap_or_default()
                ),
                h.alarms
                    .iter()
                    .map(|a| esc(&crate::ingest::enum_text(a)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => ("?".into(), "?".into(), "?".into(), String::new()),
        };
        let _ = write!(
            rows,
            "<tr{cls}><td>{dev}</td><td>{site}</td><td>{seen} ({age_s} s)</td><td>{cams}</td><td>{outbox}</td><td>{clock}</td><td>{alarms}</td></tr>",
            cls = if stale { " class=\"sel\"" } else { "" },
            dev = esc(&hb.device_id),
            site = esc(&hb.site),
            seen = local_time(hb.received_at),
        );
    }
    let since = now - 7 * 86_400_000;
    let count_by = |col: &'static str| {
        let sql = format!(
            "SELECT {col}, COUNT(*) FROM events WHERE event_time_ms >= $1 GROUP BY {col} ORDER BY {col}"
        );
        async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(since)
                .fetch_all(db.pool())
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }
    };
    let ierr = |e: sqlx::Error| ConsoleError::Internal(lang, e.to_string());
    let per_camera = count_by("camera_id").await.map_err(ierr)?;
    let per_type: Vec<(String, i64)> = count_by("violation_type")
        .await
        .map_err(ierr)?
        .into_iter()
        .map(|(t, n)| (violation_label(lang, &t), n))
        .collect();
    // Hour of day in Vietnam, counted here so the SQL stays portable.
    let times = sqlx::query("SELECT event_time_ms FROM events WHERE event_time_ms >= $1")
        .bind(since)
        .fetch_all(db.pool())
        .await
        .map_err(ierr)?;
    let mut hours: BTreeMap<i64, i64> = (0..24).map(|h| (h, 0)).collect();
    for r in times {
        let ms: i64 = r.try_get(0).map_err(ierr)?;
        *hours
            .entry((ms / 3_600_000 + 7).rem_euclid(24))
            .or_default() += 1;
    }
    let per_hour: Vec<(String, i64)> = hours
        .into_iter()
        .map(|(h, n)| (format!("{h:02}h"), n))
        .collect();
    let body = format!(
        "<h1>{title}</h1><table id=\"devices\"><tr><th>{dev}</th><th>{site}</th><th>{seen}</th><th>{cams}</th><th>{outbox}</th><th>{clock}</th><th>{alarms}</th></tr>{rows}</table>\
         {c1}{c2}{c3}",
        title = lang.t("Thiết bị và thống kê", "Devices and statistics"),
        dev = lang.t("Thiết bị", "Device"),
        site = lang.t("Nút giao", "Site"),
        seen = lang.t("Tín hiệu cuối", "Last heartbeat"),
        cams = lang.t("Camera", "Cameras"),
        outbox = lang.t("Hàng chờ gửi", "Outbox"),
        clock = lang.t("Đồng hồ", "Clock"),
        alarms = lang.t("Cảnh báo", "Alarms"),
        c1 = bars(
            lang,
            lang.t(
                "Vi phạm 7 ngày qua theo camera",
                "Violations in the last 7 days by camera"
            ),
            &per_camera
        ),
        c2 = bars(
            lang,
            lang.t("Theo loại vi phạm", "By violation type"),
            &per_type
        ),
        c3 = bars(
            lang,
            lang.t("Theo giờ trong ngày", "By hour of day"),
            &per_hour
        ),
    );
    Ok(viewer.page(
        lang.t("Thiết bị và thống kê", "Devices and statistics"),
        &body,
    ))
}

/// `GET /console/quarantine`.
pub async fn quarantine(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let entries = crate::quarantine::list(&ctx.ingestor.context().db, 200)
        .await
        .map_err(|e| ConsoleError::from((lang, e)))?;
    let mut rows = String::new();
    for q in &entries {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} B</td></tr>",
            local_time(q.received_at),
            esc(&q.source),
            esc(q.device_claimed.as_deref().unwrap_or("—")),
            esc(&q.reason_code),
            esc(&q.reason),
            q.payload_size
        );
    }
    let body = format!(
        "<h1>{} ({})</h1><table id=\"quarantine\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        lang.t("Dữ liệu bị cách ly", "Quarantine"),
        entries.len(),
        lang.t("Nhận lúc", "Received"),
        lang.t("Nguồn", "Source"),
        lang.t("Thiết bị (tự khai)", "Device (claimed)"),
        lang.t("Mã", "Code"),
        lang.t("Lý do", "Reason"),
        lang.t("Kích thước", "Size"),
    );
    Ok(viewer.page(lang.t("Cách ly", "Quarantine"), &body))
}

/// How many of the latest audit entries the audit page checks on every
/// load (`audit::verify_last`); the whole chain is walked by
/// `ingest-server audit verify` and by every evidence package.
pub const AUDIT_PAGE_CHECKS: i64 = 20_000;

/// `GET /console/audit`: the latest entries and the verification of the
/// last [`AUDIT_PAGE_CHECKS`] of them.
pub async fn audit(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    viewer.require(&[Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let dberr = |e| ConsoleError::from((lang, e));
    let recent = audit::verify_last(db, AUDIT_PAGE_CHECKS)
        .await
        .map_err(dberr)?;
    let checked = if recent.from > 1 {
        format!(
            " · {} #{}–{} · {} <code>ingest-server audit verify</code>",
            lang.t("đã kiểm tra các mục", "checked entries"),
            recent.from,
            match &recent.verification {
                Verification::Intact { entries, .. } => entries.to_string(),
                Verification::Broken { .. } => String::new(),
            },
            lang.t("kiểm tra toàn bộ chuỗi:", "to check the whole chain:"),
        )
    } else {
        String::new()
    };
    let check = match recent.verification {
        Verification::Intact { entries, head } => format!(
            "<div class=\"flash\" id=\"chain\">{} {entries} {} · head <code>{}</code>{checked}</div>",
            lang.t("Chuỗi nhật ký nguyên vẹn:", "Chain intact:"),
            lang.t("mục", "entries"),
            esc(&head)
        ),
        Verification::Broken { seq, problem } => format!(
            "<div class=\"flash error\" id=\"chain\">{} #{seq}: {}</div>",
            lang.t("Chuỗi nhật ký bị phá vỡ tại", "Chain broken at"),
            esc(&problem)
        ),
    };
    let mut rows = String::new();
    for e in audit::recent(db, 200).await.map_err(dberr)? {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.seq,
            local_time(e.at),
            esc(&e.actor),
            esc(&e.role),
            esc(&e.action),
            esc(&e.subject),
            esc(&e.detail)
        );
    }
    let anchor = format!(
        "<p><a class=\"button\" id=\"anchor\" href=\"/console/audit/anchor\">{}</a> <span class=\"muted\">{}</span></p>",
        lang.t("Tải mốc neo đã ký", "Download a signed anchor"),
        lang.t(
            "đầu chuỗi, ký bằng khóa máy chủ: lưu ngoài cơ sở dữ liệu; kiểm tra: ingest-server audit verify --anchor TỆP",
            "the chain's head signed with the server key: keep it outside the database; check: ingest-server audit verify --anchor FILE"
        ),
    );
    let body = format!(
        "<h1>{}</h1>{check}{anchor}<table id=\"audit\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        lang.t("Nhật ký kiểm toán", "Audit log"),
        lang.t("Thời gian", "Time"),
        lang.t("Người thực hiện", "Actor"),
        lang.t("Hành động", "Action"),
        lang.t("Đối tượng", "Subject"),
        lang.t("Chi tiết", "Detail"),
    );
    Ok(viewer.page(lang.t("Nhật ký kiểm toán", "Audit log"), &body))
}

/// `GET /console/audit/anchor`: the chain checked whole and its head signed
/// with the server key (`audit::anchor`), as a file for an auditor to keep
/// outside the database; the download is audited.
pub async fn audit_anchor(
    State(ctx): State<ApiContext>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    viewer.require(&[Role::Supervisor, Role::Auditor])?;
    let lang = viewer.lang;
    let db = &ctx.ingestor.context().db;
    let a = audit::anchor::make(db, &ctx.server_key, now_ms())
        .await
        .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    viewer
        .audit(
            db,
            "audit.anchor",
            "audit",
            serde_json::json!({"seq": a.seq, "hash": a.hash}),
        )
        .await?;
    let body = serde_json::to_string_pretty(&a)
        .map_err(|e| ConsoleError::Internal(lang, e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"audit-anchor-{}.json\"", a.seq),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
