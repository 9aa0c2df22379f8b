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
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;

use super::mine::{MyCase, mine, one};
use super::{AppError, Citizen, page};
use crate::console::html::{Lang, esc, local_time, violation_label, vnd};
use crate::db::{Db, now_ms};
use crate::web::ApiContext;

/// The state as the owner reads it. `confirmed` is not "awaiting payment":
/// the notice has not reached the owner yet and nothing can be paid.
fn state_label(s: &str) -> &'static str {
    match s {
        "confirmed" => "Đang gửi thông báo",
        "notice_issued" => "Chờ nộp phạt",
        "paid" => "Đã nộp phạt",
        "contested" => "Đang khiếu nại",
        "overdue" => "Quá hạn nộp phạt",
        "closed" => "Đã đóng",
        _ => "—",
    }
}

/// What the deadline is for, as its label says it: paying or contesting
/// while both are open, paying alone once the owner accepted or the
/// contest window is otherwise closed.
fn deadline_label(c: &MyCase) -> &'static str {
    if c.response.is_none() {
        "Hạn nộp phạt hoặc khiếu nại"
    } else {
        "Hạn nộp phạt"
    }
}

/// One line under the state: what is happening where no deadline runs.
fn state_note(c: &MyCase) -> Option<&'static str> {
    match c.state.as_str() {
        "confirmed" => Some(
            "Cảnh sát giao thông đã xác nhận vi phạm; thông báo vi phạm đang được gửi tới chủ \
             phương tiện (qua ứng dụng, thư điện tử hoặc đường bưu điện). Thời hạn 20 ngày để \
             nộp phạt hoặc khiếu nại được tính từ khi thông báo được gửi; bạn có thể nộp phạt \
             trực tuyến từ lúc đó.",
        ),
        "overdue" => Some(
            "Đã quá thời hạn 20 ngày mà chưa nộp phạt; phương tiện đã bị cảnh báo tới cơ quan \
             đăng kiểm. Vui lòng nộp phạt; cảnh báo được gỡ sau khi nộp.",
        ),
        _ => None,
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
             {deadline}</a>",
            id = esc(&c.event_id),
            plate = esc(&c.plate),
            st = esc(&c.state),
            label = state_label(&c.state),
            viol = esc(&violation_label(Lang::Vi, &c.violation)),
            time = local_time(c.event_ms),
            amount = c.amount.map(vnd).unwrap_or_default(),
            deadline = c
                .deadline()
                .map(|d| format!(
                    "<br><span class=\"muted\">{}: {}</span>",
                    deadline_label(c),
                    local_time(d)
                ))
                .unwrap_or_default(),
        );
    }
    body.push_str(&super::push::SUBSCRIBE_SNIPPET.replace(
        "id=\"push\"",
        &format!("id=\"push\" data-csrf=\"{}\"", esc(&citizen.csrf)),
    ));
    Ok(Html(page("Danh sách vi phạm", Some(&citizen), &body)).into_response())
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// `GET /app/login[?next=/app/…]`: the identity provider's sign-in; `next`
/// (only a path of this app: `super::safe_next`) is carried through it.
pub async fn login(
    State(ctx): State<ApiContext>,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    let href = match super::safe_next(&q.next) {
        Some(n) => format!("/app/sso/login?next={n}"),
        None => "/app/sso/login".to_string(),
    };
    let body = if ctx.citizen_sso.is_some() {
        format!(
            "<h1>Đăng nhập</h1><p>Đăng nhập bằng tài khoản định danh điện tử để xem thông báo vi phạm của phương tiện bạn sở hữu.</p>\
             <a class=\"button pay\" id=\"vneid\" href=\"{}\">Đăng nhập bằng VNeID</a>",
            esc(&href)
        )
    } else {
        "<h1>Đăng nhập</h1><div class=\"flash error\" id=\"error\" role=\"alert\">Máy chủ chưa cấu hình nhà cung cấp định danh (OpenID Connect).</div>".to_string()
    };
    Html(page("Đăng nhập", None, &body)).into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

impl CsrfForm {
    /// The form's CSRF token.
    pub(super) fn csrf(&self) -> &str {
        &self.csrf
    }
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
    let event = signed_event(db, &id).await?;
    let mut evidence = String::new();
    // A fine taken back: its page, not its pictures (`mine.rs`).
    let rows = if c.evidence_shown() {
        sqlx::query("SELECT name, role, media_type FROM evidence WHERE event_id = $1 AND stored = 1 ORDER BY name")
            .bind(&id)
            .fetch_all(db.pool())
            .await?
    } else {
        evidence.push_str(
            "<p class=\"muted\" id=\"evidence-withheld\">Xử phạt đã được huỷ: hình ảnh của vụ việc \
             không còn được hiển thị.</p>",
        );
        Vec::new()
    };
    for r in &rows {
        let (name, role, media): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let src = format!("/app/cases/{}/evidence/{}", esc(&id), esc(&name));
        if media.starts_with("image/") {
            let _ = write!(
                evidence,
                "<img class=\"still\" src=\"{src}\" alt=\"{}\">",
                esc(role_alt(&role))
            );
            // The moment the picture shows, as the device signed it.
            if let Some(t) = event
                .as_ref()
                .and_then(|e| e.evidence_item(&name))
                .and_then(|i| crate::integrity::frame_text(i, true))
            {
                let _ = write!(evidence, "<p class=\"muted still-time\">{}</p>", esc(&t));
            }
        } else if media.starts_with("video/") {
            let _ = write!(
                evidence,
                "<video controls preload=\"metadata\" src=\"{src}\" aria-label=\"Đoạn phim ghi lại vi phạm\"></video>"
            );
        }
    }
    let body = format!(
        "<h1><span class=\"plate\" id=\"plate\">{plate}</span></h1>{status}\
         <p><span class=\"state {st}\" id=\"state\">{label}</span></p>{note}\
         <dl><dt>Hành vi</dt><dd>{viol}</dd><dt>Thời gian</dt><dd id=\"event-time\">{time} {clock}</dd><dt>Địa điểm</dt><dd id=\"place\">{place}</dd>\
         <dt>Căn cứ</dt><dd id=\"basis\">{basis}</dd><dt>Mức phạt</dt><dd class=\"amount\" id=\"amount\">{amount}</dd>\
         <dt>Trừ điểm</dt><dd>{points}</dd>{deadline}</dl>\
         <h2>Hình ảnh vi phạm</h2>{evidence}{actions}",
        plate = esc(&c.plate),
        status = status(db, &c).await?,
        st = esc(&c.state),
        label = state_label(&c.state),
        note = state_note(&c)
            .map(|n| format!("<p class=\"muted\" id=\"state-note\">{n}</p>"))
            .unwrap_or_default(),
        viol = esc(&violation_label(Lang::Vi, &c.violation)),
        time = local_time(c.event_ms),
        clock = clock_state(event.as_ref()),
        place = esc(&c.place),
        basis = esc(&c.basis),
        amount = c.amount.map(vnd).unwrap_or_default(),
        points = c
            .points
            .map(|p| format!("{p} điểm"))
            .unwrap_or_else(|| "—".into()),
        deadline = c
            .deadline()
            .map(|d| format!(
                "<dt>{}</dt><dd id=\"deadline\">{}</dd>",
                deadline_label(&c),
                local_time(d)
            ))
            .unwrap_or_default(),
        actions = actions(&c, &citizen, now_ms()),
    );
    Ok(Html(page(&c.plate, Some(&citizen), &body)).into_response())
}

/// The case's signed event (`None` if it cannot be read: the page says so
/// where it matters).
async fn signed_event(db: &Db, id: &str) -> Result<Option<protocol::ViolationEvent>, AppError> {
    let signed: Option<String> =
        sqlx::query_scalar("SELECT signed_json FROM events WHERE event_id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(signed.and_then(|s| crate::integrity::signed_event(&s).ok()))
}

/// The device clock's state when it stamped the violation time, from the
/// signed event, for beside the time: whether the time can be relied on is
/// part of what the owner is told.
fn clock_state(event: Option<&protocol::ViolationEvent>) -> String {
    match event {
        Some(e) => format!(
            "<span class=\"{}\" id=\"clock-sync\">({})</span>",
            if crate::integrity::clock_synced(e) {
                "muted"
            } else {
                "warn"
            },
            esc(&crate::integrity::clock_vi(e))
        ),
        None => "<span class=\"warn\" id=\"clock-sync\">(không đọc được trạng thái đồng hồ)</span>"
            .to_string(),
    }
}

/// A Vietnamese description of a still for its `alt` text, by its role on
/// the wire (`overview`, `plate_crop`, …).
fn role_alt(role: &str) -> &'static str {
    match role {
        "overview" => "Ảnh toàn cảnh vi phạm",
        "plate_crop" => "Ảnh cắt biển số xe",
        "plate" => "Ảnh biển số xe",
        "signal" => "Ảnh đèn tín hiệu giao thông",
        "vehicle" | "vehicle_crop" => "Ảnh phương tiện vi phạm",
        _ => "Ảnh ghi lại vi phạm",
    }
}

/// The owner's buttons: pay while payable; accept while unanswered;
/// contest only while the contest rule allows it
/// (`MyCase::contest_open`, the rule the handler applies too).
fn actions(c: &MyCase, citizen: &Citizen, now: i64) -> String {
    let id = esc(&c.event_id);
    let csrf = esc(&citizen.csrf);
    let mut actions = String::new();
    if !c.payable() {
        return actions;
    }
    let _ = write!(
        actions,
        "<form method=\"post\" action=\"/app/cases/{id}/pay\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"pay\" id=\"pay\">Nộp phạt trực tuyến {amount}</button></form>",
        amount = c.amount.map(vnd).unwrap_or_default()
    );
    if c.response.is_none() {
        let _ = write!(
            actions,
            "<form method=\"post\" action=\"/app/cases/{id}/accept\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button class=\"secondary\" id=\"accept\">Tôi đồng ý với vi phạm</button></form>\
             <p class=\"muted\">Đồng ý với vi phạm không thay cho việc nộp phạt: bạn vẫn phải nộp phạt trong thời hạn.</p>"
        );
    }
    if c.contest_open(now) {
        let _ = write!(
            actions,
            "<h2>Khiếu nại</h2><form method=\"post\" action=\"/app/cases/{id}/contest\" enctype=\"multipart/form-data\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"contest-reason\">Lý do khiếu nại (bắt buộc, tối đa 1000 ký tự)</label>\
             <textarea name=\"reason\" id=\"contest-reason\" required maxlength=\"1000\"></textarea>\
             <label for=\"contest-photo\">Ảnh kèm theo (không bắt buộc; JPEG hoặc PNG, tối đa 5 MB)</label>\
             <input type=\"file\" name=\"photo\" id=\"contest-photo\" accept=\"image/jpeg,image/png\">\
             <button class=\"secondary\" id=\"contest\">Gửi khiếu nại</button></form>"
        );
    }
    actions
}

/// The box at the top of a case: the receipt once paid (also after a
/// supervisor closed the paid case), the contest under review, police's
/// answer to it (upheld, with their reason and the new deadline; or the
/// fine cancelled), a withdrawn fine with its reason, or what accepting
/// means.
async fn status(db: &Db, c: &MyCase) -> Result<String, AppError> {
    let paid = crate::payments::of_case(db, &c.event_id)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .into_iter()
        .find(|p| p.state == "paid");
    Ok(match (c.state.as_str(), c.response.as_deref()) {
        ("paid", _) => receipt(paid),
        ("closed", _) if paid.is_some() => receipt(paid),
        ("contested", _) => {
            "<div class=\"flash\">Khiếu nại của bạn đang được Cảnh sát giao thông xem xét.</div>"
                .to_string()
        }
        ("notice_issued" | "overdue", Some("accepted")) => format!(
            "<div class=\"flash\" id=\"accepted\">{}</div>",
            esc(&super::answers::accepted_note(c))
        ),
        // Police answered the contest: what they said, and by when.
        ("notice_issued" | "overdue", Some("contested")) => {
            match last_message(db, &c.event_id, crate::notices::followup::CONTEST_REJECTED).await? {
                Some((reason, respond_by)) => format!(
                    "<div class=\"flash\" id=\"contest-answer\"><strong>Khiếu nại không được \
                     chấp nhận</strong>: Cảnh sát giao thông giữ nguyên việc xử phạt. Lý do: {}.{}</div>",
                    esc(&reason),
                    respond_by
                        .map(|d| format!(
                            " Hạn nộp phạt hoặc đến trụ sở giải quyết: chậm nhất đến {}.",
                            local_time(d)
                        ))
                        .unwrap_or_default()
                ),
                None => String::new(),
            }
        }
        ("closed", _) => {
            match last_message(db, &c.event_id, crate::notices::followup::WITHDRAWN).await? {
                Some((reason, _)) => format!(
                    "<div class=\"flash\" id=\"withdrawn\"><strong>Đã huỷ xử phạt</strong>: bạn không \
                 phải nộp phạt. Lý do: {}.</div>",
                    esc(&reason)
                ),
                None => String::new(),
            }
        }
        _ => String::new(),
    })
}

/// The reason and deadline of the latest message of `kind` about case
/// `event_id` (`notices::followup`): what police told the owner.
async fn last_message(
    db: &Db,
    event_id: &str,
    kind: &str,
) -> Result<Option<(String, Option<i64>)>, AppError> {
    let row = sqlx::query(
        "SELECT reason, respond_by FROM notice_messages WHERE event_id = $1 AND kind = $2 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(event_id)
    .bind(kind)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;
    row.map(|r| -> Result<_, AppError> {
        let get = |e: sqlx::Error| AppError::Internal(e.to_string());
        Ok((r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?))
    })
    .transpose()
}

/// The receipt of a paid case: the settled payment as the gateway reported it.
fn receipt(paid: Option<crate::payments::PaymentRecord>) -> String {
    match paid {
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
    }
}

/// `GET /app/cases/{id}/evidence/{name}`: the owner's evidence only.
pub async fn evidence(
    State(ctx): State<ApiContext>,
    citizen: Citizen,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let ic = ctx.ingestor.context();
    if !one(&ic.db, &citizen, &id).await?.evidence_shown() {
        return Err(AppError::NotFound);
    }
    // By the hash the device signed, not the evidence row's copy of it.
    let file = match crate::integrity::manifest_file(&ic.db, &id, &name).await {
        Ok(f) => f,
        Err(crate::integrity::FileRefusal::NotFound) => return Err(AppError::NotFound),
        Err(crate::integrity::FileRefusal::Db(e)) => return Err(AppError::Internal(e.to_string())),
        Err(crate::integrity::FileRefusal::Mismatch(why)) => {
            let who = crate::audit::Who::new(
                super::mine::citizen_actor_id(&citizen),
                crate::workflow::Role::System,
            );
            crate::integrity::record_mismatch(&ic.db, &who, &id, &name, &why).await;
            return Err(AppError::Internal(format!("evidence integrity: {why}")));
        }
    };
    let (sha, media) = (file.sha256, file.media_type);
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

/// The person's address for the gateway (`vnp_IpAddr`): the peer, or
/// behind a proxy of ours (loopback, `http.trusted_proxies`) the hop it
/// added (`console::throttle::client_address`).
fn client_ip(
    headers: &axum::http::HeaderMap,
    ext: &axum::http::Extensions,
    trusted: &[crate::console::throttle::ProxyNet],
) -> std::net::IpAddr {
    let peer = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    crate::console::throttle::client_address(peer, headers, trusted)
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
    match crate::payments::start(
        payments,
        &id,
        client_ip(&headers, &ext, &ctx.trusted_proxies),
        now_ms(),
    )
    .await
    {
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
        // Money was taken at another amount, or may have been taken
        // (suspected, reversed), for an earlier order: a person refunds or
        // applies it first; a new order could pay twice.
        Err(crate::payments::PaymentError::NeedsPerson { .. }) => Err(AppError::Refused(
            "Cổng thanh toán đã báo nhận (hoặc có thể đã nhận) tiền cho một giao dịch trước đó \
             của vụ việc này, nhưng giao dịch cần kiểm tra: số tiền không khớp với mức phạt, \
             hoặc giao dịch bị nghi ngờ hay bị đảo. Cán bộ đang kiểm tra để ghi nhận hoặc hoàn trả \
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
