//! The two routes the gateway's side of a payment reaches:
//!
//! - `GET /api/v1/payments/vnpay/ipn`: VNPay's server-to-server
//!   notification. It settles the payment (see [`super::settle`]) and
//!   answers JSON `{"RspCode", "Message"}` with HTTP 200, as VNPay expects.
//!   When `ipn_allowed_ips` is set, other sources are answered 403 / 99.
//!   The source is the client address as the sign-in throttle sees it
//!   (`console::throttle::client_address`): the peer, or behind a proxy
//!   on loopback or in `http.trusted_proxies` (the Kubernetes ingress),
//!   the hop that proxy added — so the list names VNPay's servers, not
//!   the ingress, and a client that is no proxy of ours cannot claim one.
//! - `GET /pay/vnpay/return`: where the person's browser lands after the
//!   payment page. It shows the result, Vietnamese first, and changes
//!   nothing (the parameters come through the person's browser, which
//!   anyone can replay or edit; their signature only lets us trust what we
//!   show). When the gateway says success but the IPN has not come yet, the
//!   page says "đang xử lý" and looks again every few seconds.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{IpnAnswer, find, response_text};
use crate::console::html::{esc, local_time, vnd};
use crate::console::throttle::client_address;
use crate::db::now_ms;
use crate::web::ApiContext;

/// The IPN route.
pub const IPN_PATH: &str = "/api/v1/payments/vnpay/ipn";

/// The routes of payments.
pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route(IPN_PATH, get(ipn))
        .route(super::config::RETURN_PATH, get(return_page))
}

fn ipn_json(status: StatusCode, a: IpnAnswer) -> Response {
    (status, axum::Json(a)).into_response()
}

async fn ipn(State(ctx): State<ApiContext>, req: Request) -> Response {
    let Some(p) = ctx.payments.clone() else {
        return ipn_json(
            StatusCode::SERVICE_UNAVAILABLE,
            IpnAnswer::new("99", "Payments disabled"),
        );
    };
    if !p.settings.ipn_allowed_ips.is_empty() {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let source = client_address(peer, req.headers(), &ctx.trusted_proxies);
        if !p.settings.ipn_allowed_ips.contains(&source) {
            tracing::warn!(%source, "IPN from an address not in ipn_allowed_ips");
            return ipn_json(
                StatusCode::FORBIDDEN,
                IpnAnswer::new("99", "Source not allowed"),
            );
        }
    }
    let query = req.uri().query().unwrap_or_default();
    let answer = p.gateway.handle_ipn(&p, query, now_ms()).await;
    ipn_json(StatusCode::OK, answer)
}

/// What the page says.
enum View {
    Paid,
    Processing,
    /// Money reported taken at another amount, or in doubt (suspected,
    /// reversed): a person settles it.
    NeedsPerson,
    Failed(String),
    Unknown,
    Forged,
    Disabled,
}

async fn return_page(State(ctx): State<ApiContext>, req: Request) -> Response {
    let Some(p) = ctx.payments.clone() else {
        return page(StatusCode::NOT_FOUND, View::Disabled, None, "");
    };
    let query = req.uri().query().unwrap_or_default().to_string();
    let report = match p.gateway.verify_return(&query).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "return with a bad signature");
            return page(StatusCode::BAD_REQUEST, View::Forged, None, "");
        }
    };
    let record = match find(&p.ingest.db, &report.txn_ref).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "return page: database");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "Hệ thống đang bận, vui lòng thử lại sau. / Busy, please try again.",
            )
                .into_response();
        }
    };
    let Some(record) = record else {
        return page(StatusCode::NOT_FOUND, View::Unknown, None, "");
    };
    let view = match record.state.as_str() {
        "paid" => View::Paid,
        super::NEEDS_PERSON => View::NeedsPerson,
        // Money in doubt (suspected, reversed): never "try again" — the
        // notification holds the order for a person, who applies or
        // refunds it.
        "pending" | "cancelled" | "failed" if report.money_in_doubt() => View::NeedsPerson,
        "pending" if report.succeeded() => View::Processing,
        "pending" => View::Failed(report.response_code.clone()),
        // Closed here (expired) but paid at the bank: the gateway's
        // notification will apply it; the person must not pay again.
        "cancelled" | "failed" if report.succeeded() => View::Processing,
        _ => {
            // The payment's own code (an IPN's), else the return's; never
            // a success code under a failure heading (a status query's
            // "00" is about the query, not the payment).
            let code = record
                .response_code
                .clone()
                .filter(|c| c != "00")
                .unwrap_or_else(|| report.response_code.clone());
            View::Failed(if code == "00" { "99".into() } else { code })
        }
    };
    // Processing: the same URL again in a few seconds (it only reads).
    let refresh = if matches!(view, View::Processing) {
        "<meta http-equiv=\"refresh\" content=\"4\">"
    } else {
        ""
    };
    page(StatusCode::OK, view, Some(&record), refresh)
}

fn page(
    status: StatusCode,
    view: View,
    record: Option<&super::PaymentRecord>,
    head_extra: &str,
) -> Response {
    let (title_vi, title_en, text_vi, text_en, class) = match &view {
        View::Paid => (
            "Thanh toán thành công",
            "Payment successful",
            "Khoản phạt đã được nộp. Biên lai nộp phạt có trên trang vụ việc trong ứng dụng."
                .to_string(),
            "The fine is paid. The receipt is on the case's page in the app.".to_string(),
            "ok",
        ),
        View::Processing => (
            "Đang xử lý",
            "Processing",
            "Cổng thanh toán báo giao dịch thành công; hệ thống đang chờ xác nhận. \
             Trang này tự cập nhật, bạn không cần thanh toán lại."
                .to_string(),
            "The gateway reports success; we are waiting for its confirmation. \
             This page refreshes itself; do not pay again."
                .to_string(),
            "wait",
        ),
        View::NeedsPerson => (
            "Đang được cán bộ kiểm tra",
            "Being checked by staff",
            "Cổng thanh toán báo đã (hoặc có thể đã) trừ tiền, nhưng giao dịch cần được kiểm \
             tra: số tiền không khớp với mức phạt, hoặc giao dịch bị nghi ngờ hay bị đảo. Cán \
             bộ sẽ kiểm tra để ghi nhận hoặc hoàn trả khoản tiền này; bạn không cần và không \
             nên thanh toán lại."
                .to_string(),
            "The gateway reports money taken (or possibly taken), but the payment must be \
             checked: not the amount of the fine, or a transaction suspected or reversed. \
             Staff will check it and apply or refund it; do not pay again."
                .to_string(),
            "wait",
        ),
        View::Failed(code) => {
            let (vi, en) = response_text(code);
            (
                "Thanh toán không thành công",
                "Payment not completed",
                format!("{vi}. Khoản phạt chưa được nộp; bạn có thể thử lại."),
                format!("{en}. The fine is not paid; you may try again."),
                "fail",
            )
        }
        View::Unknown => (
            "Không tìm thấy giao dịch",
            "Transaction not found",
            "Không có giao dịch nào với mã này.".to_string(),
            "There is no payment with this reference.".to_string(),
            "fail",
        ),
        View::Forged => (
            "Chữ ký không hợp lệ",
            "Invalid signature",
            "Kết quả này không đến từ cổng thanh toán; không có gì thay đổi.".to_string(),
            "This result did not come from the payment gateway; nothing changed.".to_string(),
            "fail",
        ),
        View::Disabled => (
            "Thanh toán trực tuyến chưa được bật",
            "Online payment is not enabled",
            "Vui lòng nộp phạt tại cơ quan công an hoặc ngân hàng.".to_string(),
            "Please pay at the police office or a bank.".to_string(),
            "fail",
        ),
    };
    let mut details = String::new();
    if let Some(r) = record {
        let row = |vi: &str, en: &str, v: &str| {
            format!(
                "<tr><th>{vi}<br><small>{en}</small></th><td>{}</td></tr>",
                esc(v)
            )
        };
        details.push_str("<table>");
        details.push_str(&row("Mã vụ việc", "Case", &r.event_id));
        details.push_str(&row("Số tiền", "Amount", &vnd(r.amount_vnd)));
        details.push_str(&row("Mã giao dịch", "Reference", &r.txn_ref));
        if let Some(no) = &r.transaction_no {
            details.push_str(&row("Mã giao dịch VNPay", "VNPay transaction", no));
        }
        details.push_str(&row("Thời điểm", "Time", &local_time(r.updated_at)));
        details.push_str("</table>");
        if matches!(view, View::Failed(_)) {
            details.push_str(&format!(
                // The case page in the citizen app holds the pay button.
                "<p><a href=\"/app/cases/{}\">Thử lại <small>/ Try again</small></a></p>",
                esc(&r.event_id)
            ));
        }
    }
    let html = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head_extra}\
         <title>{title_vi} — Nộp phạt vi phạm giao thông</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.5rem}} h1 small,p small{{display:block;color:#666;font-weight:normal}}\
         .ok h1{{color:#176b2c}} .wait h1{{color:#8a5a00}} .fail h1{{color:#a11}}\
         table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.4rem;\
         border-bottom:1px solid #ddd;vertical-align:top}} th small{{color:#666;font-weight:normal}}\
         </style></head><body class=\"{class}\"><main>\
         <h1 id=\"result\" data-state=\"{class}\">{title_vi}<small lang=\"en\">{title_en}</small></h1>\
         <p>{}<small lang=\"en\">{}</small></p>{details}</main></body></html>",
        esc(&text_vi),
        esc(&text_en)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_routes_are_listed_and_documented() {
        for path in [IPN_PATH, super::super::config::RETURN_PATH] {
            assert!(crate::web::ROUTES.contains(&("get", path)), "{path}");
        }
    }
}
