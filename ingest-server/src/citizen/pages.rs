//! The citizen app's pages: the list of fines of the vehicles registered to
//! the signed-in citizen, a case with its evidence, and the owner's answers
//! (accept, contest with a reason and an optional photo), and paying. Every
//! case is read through `mine.rs`: filtered by the session's national ID
//! number and shown only to the owner its notice goes to; a case that is
//! not the citizen's answers 404 exactly like one that does not exist, and
//! the attempt goes to the audit log. A case page says the place and the
//! legal basis in the notice's words (`notices::text::place`, `basis`).

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;

use super::mine::{citizen_actor_id, mine, one};
use super::{AppError, Citizen, page};
use crate::audit::{self, Who};
use crate::console::html::{Lang, esc, local_time, violation_label, vnd};
use crate::db::{Db, now_ms};
use crate::review::Reviewer;
use crate::web::ApiContext;
use crate::workflow::{Action, Actor, CaseState, Role};

/// Longest contest reason: what the workflow keeps as the reason of a
/// state change (`review.rs`), so the form may not promise more.
const MAX_CONTEST_REASON: usize = 1000;

fn state_label(s: &str) -> &'static str {
    match s {
        "confirmed" | "notice_issued" => "Chờ nộp phạt",
        "paid" => "Đã nộp phạt",
        "contested" => "Đang khiếu nại",
        "overdue" => "Quá hạn",
        "closed" => "Đã đóng",
        _ => "—",
    }
}

/// `GET /app/`.
pub async fn list(State(ctx): State<ApiContext>, citizen: Citizen) -> Result<Response, AppError> {
    let cases = mine(&ctx.ingestor.context().db, &citizen.national_id).await?;
    let mut body = format!(
        "<h1>Vi phạm của phương tiện bạn sở hữu ({})</h1>",
        cases.len()
    );
    if cases.is_empty() {
        body.push_str("<p class=\"muted\" id=\"empty\">Không có thông báo vi phạm nào.</p>");
    }
    for c in &cases {
        let _ = write!(
            body,
            "<a class=\"card\" href=\"/app/cases/{id}\" data-id=\"{id}\"><span class=\"plate\">{plate}</span> \
             <span class=\"state {st}\">{label}</span><br>{viol} · {time}<br><span class=\"amount\">{amount}</span>\
             <br><span class=\"muted\">Hạn phản hồi: {deadline}</span></a>",
            id = esc(&c.event_id),
            plate = esc(&c.plate),
            st = esc(&c.state),
            label = state_label(&c.state),
            viol = esc(&violation_label(Lang::Vi, &c.violation)),
            time = local_time(c.event_ms),
            amount = c.amount.map(vnd).unwrap_or_default(),
            deadline = c.deadline().map(local_time).unwrap_or_default(),
        );
    }
    body.push_str(&super::push::SUBSCRIBE_SNIPPET.replace(
        "id=\"push\"",
        &format!("id=\"push\" data-csrf=\"{}\"", esc(&citizen.csrf)),
    ));
    Ok(Html(page("Danh sách vi phạm", Some(&citizen), &body)).into_response())
}

/// `GET /app/login`: the identity provider's sign-in.
pub async fn login(State(ctx): State<ApiContext>) -> Response {
    let body = if ctx.citizen_sso.is_some() {
        "<h1>Đăng nhập</h1><p>Đăng nhập bằng tài khoản định danh điện tử để xem thông báo vi phạm của phương tiện bạn sở hữu.</p>\
         <a class=\"button pay\" id=\"vneid\" href=\"/app/sso/login\">Đăng nhập bằng VNeID</a>"
    } else {
        "<h1>Đăng nhập</h1><div class=\"flash error\" id=\"error\">Máy chủ chưa cấu hình nhà cung cấp định danh (OpenID Connect).</div>"
    };
    Html(page("Đăng nhập", None, body)).into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
    /// This browser's push endpoint, when the page's script found one.
    #[serde(default)]
    endpoint: String,
}

/// `POST /app/logout`: ends the session and removes the push subscriptions
/// this browser registered (`push.rs`).
pub async fn logout(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    headers: axum::http::HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Result<Response, AppError> {
    citizen.check_csrf(&f.csrf)?;
    let db = &ctx.ingestor.context().db;
    super::push::forget_browser(db, &citizen, &headers, &f.endpoint).await?;
    super::end_session(db, &citizen).await?;
    let gone = super::push::push_cookie(&[], ctx.secure_cookies);
    Ok(([(header::SET_COOKIE, gone)], Redirect::to("/app/login")).into_response())
}

/// `GET /app/cases/{id}`.
pub async fn case(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let db = &ctx.ingestor.context().db;
    let c = one(db, &citizen, &id).await?;
    let mut evidence = String::new();
    let rows = sqlx::query("SELECT name, role, media_type FROM evidence WHERE event_id = $1 AND stored = 1 ORDER BY name")
        .bind(&id)
        .fetch_all(db.pool())
        .await?;
    for r in &rows {
        let (name, role, media): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let src = format!("/app/cases/{}/evidence/{}", esc(&id), esc(&name));
        if media.starts_with("image/") {
            let _ = write!(
                evidence,
                "<img class=\"still\" src=\"{src}\" alt=\"{}\">",
                esc(&role)
            );
        } else if media.starts_with("video/") {
            let _ = write!(
                evidence,
                "<video controls preload=\"metadata\" src=\"{src}\"></video>"
            );
        }
    }
    let deadline = c.deadline().map(local_time).unwrap_or_default();
    let payable = matches!(
        CaseState::parse(&c.state),
        Some(CaseState::NoticeIssued | CaseState::Overdue)
    );
    let csrf = esc(&citizen.csrf);
    let mut actions = String::new();
    if payable {
        let _ = write!(
            actions,
            "<form method=\"post\" action=\"/app/cases/{id}/pay\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button class=\"pay\" id=\"pay\">Nộp phạt trực tuyến {amount}</button></form>",
            id = esc(&id),
            amount = c.amount.map(vnd).unwrap_or_default()
        );
        if c.response.is_none() {
            let _ = write!(
                actions,
                "<form method=\"post\" action=\"/app/cases/{id}/accept\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button class=\"secondary\" id=\"accept\">Tôi đồng ý với vi phạm</button></form>\
                 <h2>Khiếu nại</h2><form method=\"post\" action=\"/app/cases/{id}/contest\" enctype=\"multipart/form-data\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <textarea name=\"reason\" id=\"contest-reason\" required maxlength=\"1000\" placeholder=\"Lý do khiếu nại\"></textarea>\
                 <input type=\"file\" name=\"photo\" accept=\"image/jpeg,image/png\">\
                 <button class=\"secondary\" id=\"contest\">Gửi khiếu nại</button></form>",
                id = esc(&id)
            );
        }
    }
    let status = match (c.state.as_str(), c.response.as_deref()) {
        ("paid", _) => receipt(db, &id).await?,
        ("contested", _) => {
            "<div class=\"flash\">Khiếu nại của bạn đang được Cảnh sát giao thông xem xét.</div>"
                .to_string()
        }
        (_, Some("accepted")) => "<div class=\"flash\">Bạn đã xác nhận vi phạm.</div>".to_string(),
        _ => String::new(),
    };
    let body = format!(
        "<h1><span class=\"plate\" id=\"plate\">{plate}</span></h1>{status}\
         <p><span class=\"state {st}\" id=\"state\">{label}</span></p>\
         <dl><dt>Hành vi</dt><dd>{viol}</dd><dt>Thời gian</dt><dd>{time}</dd><dt>Địa điểm</dt><dd id=\"place\">{place}</dd>\
         <dt>Căn cứ</dt><dd id=\"basis\">{basis}</dd><dt>Mức phạt</dt><dd class=\"amount\" id=\"amount\">{amount}</dd>\
         <dt>Trừ điểm</dt><dd>{points}</dd><dt>Hạn phản hồi</dt><dd>{deadline}</dd></dl>\
         <h2>Hình ảnh vi phạm</h2>{evidence}{actions}",
        plate = esc(&c.plate),
        st = esc(&c.state),
        label = state_label(&c.state),
        viol = esc(&violation_label(Lang::Vi, &c.violation)),
        time = local_time(c.event_ms),
        place = esc(&c.place),
        basis = esc(&c.basis),
        amount = c.amount.map(vnd).unwrap_or_default(),
        points = c
            .points
            .map(|p| format!("{p} điểm"))
            .unwrap_or_else(|| "—".into()),
    );
    Ok(Html(page(&c.plate, Some(&citizen), &body)).into_response())
}

/// The receipt of a paid case: the settled payment as the gateway reported it.
async fn receipt(db: &Db, id: &str) -> Result<String, AppError> {
    let paid = crate::payments::of_case(db, id)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .into_iter()
        .find(|p| p.state == "paid");
    Ok(match paid {
        Some(p) => format!(
            "<div class=\"flash\" id=\"receipt\"><strong>Biên lai nộp phạt</strong><dl>\
             <dt>Số tiền</dt><dd>{}</dd><dt>Mã giao dịch</dt><dd>{}</dd><dt>Mã ngân hàng</dt><dd>{}</dd>\
             <dt>Thời gian</dt><dd>{}</dd><dt>Mã đơn</dt><dd>{}</dd></dl></div>",
            vnd(p.amount_vnd),
            esc(p.transaction_no.as_deref().unwrap_or("—")),
            esc(p.bank_tran_no.as_deref().unwrap_or("—")),
            local_time(p.updated_at),
            esc(&p.txn_ref)
        ),
        None => "<div class=\"flash\" id=\"receipt\">Đã nộp phạt.</div>".to_string(),
    })
}

/// `GET /app/cases/{id}/evidence/{name}`: the owner's evidence only.
pub async fn evidence(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let ic = ctx.ingestor.context();
    one(&ic.db, &citizen, &id).await?;
    let row = sqlx::query(
        "SELECT sha256, media_type FROM evidence WHERE event_id = $1 AND name = $2 AND stored = 1",
    )
    .bind(&id)
    .bind(&name)
    .fetch_optional(ic.db.pool())
    .await?
    .ok_or(AppError::NotFound)?;
    let sha: String = row.try_get(0)?;
    let media: String = row.try_get(1)?;
    // The type is what the device declared: only the kinds of evidence a
    // citizen is shown pass as themselves; anything else (HTML, SVG from a
    // faulty or hostile device) is a download, and runs nothing here, on
    // the origin that holds the citizen's session.
    let media = if matches!(media.as_str(), "image/jpeg" | "image/png" | "video/mp4") {
        media
    } else {
        "application/octet-stream".to_string()
    };
    let bytes = ic
        .evidence
        .get(&sha)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, media),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff".to_string(),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /app/cases/{id}/accept`: the owner accepts the violation.
pub async fn accept(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, AppError> {
    citizen.check_csrf(&f.csrf)?;
    let db = &ctx.ingestor.context().db;
    let c = one(db, &citizen, &id).await?;
    if c.response.is_some() {
        return Err(AppError::Refused("Bạn đã phản hồi vụ việc này.".into()));
    }
    let now = now_ms();
    let mut tx = audit::begin(db).await?;
    sqlx::query("UPDATE events SET owner_response = 'accepted', owner_response_at = $1 WHERE event_id = $2 AND owner_response IS NULL")
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        now,
        &Who::new(citizen_actor_id(&citizen), Role::System),
        "citizen.accept",
        &format!("case:{id}"),
        &serde_json::json!({"owner_id": c.owner_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/app/cases/{id}")).into_response())
}

/// Largest contest photo accepted (5 MiB).
pub(crate) const MAX_PHOTO: usize = 5 * 1024 * 1024;

/// `POST /app/cases/{id}/contest` (multipart: csrf, reason, optional photo):
/// the case goes back to police, who answer in the console.
pub async fn contest(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path(id): Path<String>,
    mut form: Multipart,
) -> Result<Response, AppError> {
    let (mut csrf, mut reason, mut photo) =
        (String::new(), String::new(), None::<(Vec<u8>, String)>);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| AppError::Refused(format!("Biểu mẫu lỗi: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| AppError::Refused(format!("Biểu mẫu lỗi: {e}")))?;
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&data).into_owned(),
            "reason" => reason = String::from_utf8_lossy(&data).trim().to_string(),
            "photo" if !data.is_empty() => {
                if data.len() > MAX_PHOTO {
                    return Err(AppError::Refused("Ảnh quá lớn (tối đa 5 MB).".into()));
                }
                let kind = match (data.get(..3), data.get(..8)) {
                    (Some([0xFF, 0xD8, 0xFF]), _) => "image/jpeg",
                    (_, Some(b"\x89PNG\r\n\x1a\n")) => "image/png",
                    _ => return Err(AppError::Refused("Ảnh phải là JPEG hoặc PNG.".into())),
                };
                photo = Some((data.to_vec(), kind.to_string()));
            }
            _ => {}
        }
    }
    citizen.check_csrf(&csrf)?;
    if reason.is_empty() || reason.chars().count() > MAX_CONTEST_REASON {
        return Err(AppError::Refused(
            "Vui lòng nêu lý do khiếu nại (tối đa 1000 ký tự).".into(),
        ));
    }
    let ic = ctx.ingestor.context();
    let c = one(&ic.db, &citizen, &id).await?;
    // One answer per notice: a fine accepted is not contested afterwards.
    if c.state != "notice_issued" || c.response.is_some() {
        return Err(AppError::Refused(
            "Vụ việc này không thể khiếu nại ở trạng thái hiện tại.".into(),
        ));
    }
    // Nor is a fine being paid, or paid: the money would arrive for a
    // contested case (or stay with a cancelled one). A payment still
    // pending after its order expired may yet complete at the bank: it
    // counts until the reconciler settles it, or for an hour past expiry.
    let paying: Option<String> = sqlx::query_scalar(
        "SELECT state FROM payments WHERE event_id = $1 AND (state = 'paid' \
         OR (state = 'pending' AND expires_at >= $2)) LIMIT 1",
    )
    .bind(&id)
    .bind(now_ms().saturating_sub(crate::payments::PENDING_GRACE_MS))
    .fetch_optional(ic.db.pool())
    .await?;
    if let Some(state) = paying {
        return Err(AppError::Refused(if state == "paid" {
            "Phạt tiền của vụ việc này đã được nộp: không thể khiếu nại.".into()
        } else {
            "Vụ việc này đang được thanh toán: vui lòng chờ kết quả thanh toán rồi thử lại.".into()
        }));
    }
    let stored = match &photo {
        Some((bytes, kind)) => Some((
            ic.evidence
                .put(bytes::Bytes::from(bytes.clone()))
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?,
            kind.clone(),
        )),
        None => None,
    };
    let now = now_ms();
    // The contest row first, so a contested case always has its reason;
    // removed again if the workflow refuses.
    let contest_id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO contests (id, event_id, owner_id, reason, photo_sha256, photo_type, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&contest_id)
    .bind(&id)
    .bind(&c.owner_id)
    .bind(&reason)
    .bind(stored.as_ref().map(|s| s.0.clone()))
    .bind(stored.as_ref().map(|s| s.1.clone()))
    .bind(now)
    .execute(ic.db.pool())
    .await?;
    let reviewer = Reviewer {
        db: &ic.db,
        grammar: ic.grammar,
        fines: &ic.fines,
        registry: ic.registry.as_deref(),
    };
    let actor = Actor {
        id: citizen_actor_id(&citizen),
        role: Role::System,
    };
    // The owner's words are personal data: they stay in `contests` (shown
    // to the police and auditors in the contest panel, each view logged).
    // The case's history and the audit log, which supervisors and admins
    // read and the court package copies, name the contest, not its text.
    let reference = format!("contest {contest_id}");
    if let Err(e) = reviewer
        .act(&id, &Action::Contest, &actor, &reference, now)
        .await
    {
        sqlx::query("DELETE FROM contests WHERE id = $1")
            .bind(&contest_id)
            .execute(ic.db.pool())
            .await?;
        return Err(e.into());
    }
    sqlx::query("UPDATE events SET owner_response = 'contested', owner_response_at = $1 WHERE event_id = $2")
        .bind(now)
        .bind(&id)
        .execute(ic.db.pool())
        .await?;
    Ok(Redirect::to(&format!("/app/cases/{id}")).into_response())
}

/// The person's address for the gateway (`vnp_IpAddr`): the peer, or, when
/// the peer is a proxy on this machine, the hop it added (the last one of
/// `X-Forwarded-For`; earlier hops are whatever the client sent).
fn client_ip(headers: &axum::http::HeaderMap, ext: &axum::http::Extensions) -> std::net::IpAddr {
    let peer = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    crate::payments::web::source_ip(peer, headers).unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// `POST /app/cases/{id}/pay`: to the payment gateway's page.
pub async fn pay(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ext: axum::http::Extensions,
    Form(f): Form<CsrfForm>,
) -> Result<Response, AppError> {
    citizen.check_csrf(&f.csrf)?;
    let db = &ctx.ingestor.context().db;
    one(db, &citizen, &id).await?;
    let Some(payments) = ctx.payments.as_ref() else {
        return Err(AppError::Refused(
            "Thanh toán trực tuyến chưa được cấu hình; vui lòng nộp phạt tại cơ quan Công an."
                .into(),
        ));
    };
    match crate::payments::start(payments, &id, client_ip(&headers, &ext), now_ms()).await {
        Ok(url) => Ok(Redirect::to(&url).into_response()),
        Err(crate::payments::PaymentError::AlreadyPaid(_)) => {
            Err(AppError::Refused("Vụ việc này đã được nộp phạt.".into()))
        }
        Err(crate::payments::PaymentError::InProgress { until, .. }) => {
            Err(AppError::Refused(format!(
                "Một giao dịch nộp phạt cho vụ việc này đang chờ cổng thanh toán (đến {}). \
                 Vui lòng hoàn tất giao dịch đó hoặc thử lại sau thời điểm này.",
                crate::console::html::local_time(until)
            )))
        }
        // Money was taken at another amount for an earlier order: a person
        // refunds or applies it first; a new order could pay twice.
        Err(crate::payments::PaymentError::NeedsPerson { .. }) => Err(AppError::Refused(
            "Cổng thanh toán đã báo nhận tiền cho một giao dịch trước đó của vụ việc này nhưng \
             số tiền không khớp với mức phạt. Cán bộ đang kiểm tra để ghi nhận hoặc hoàn trả \
             khoản tiền đó; trong thời gian này chưa thể tạo giao dịch mới (để tránh nộp hai \
             lần). Vui lòng không nộp lại; nếu cần, liên hệ cơ quan xử lý vi phạm."
                .into(),
        )),
        Err(crate::payments::PaymentError::NotPayable { .. }) => Err(AppError::Refused(
            "Vụ việc này chưa thể nộp phạt ở trạng thái hiện tại.".into(),
        )),
        // The earlier order may have taken the money: never a second one
        // until the gateway says it did not.
        Err(e @ crate::payments::PaymentError::PreviousOrderUnknown { .. }) => {
            tracing::warn!(error = %e, "payment not started");
            Err(AppError::Refused(
                "Chưa xác nhận được giao dịch nộp phạt trước đó của vụ việc này với cổng thanh \
                 toán, nên chưa thể tạo giao dịch mới (để tránh nộp hai lần). Vui lòng thử lại \
                 sau ít phút."
                    .into(),
            ))
        }
        Err(e) => Err(AppError::Internal(e.to_string())),
    }
}
