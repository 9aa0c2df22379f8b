//! **A stand-in for the VNPay payment gateway** (protocol 2.1.0), for the
//! demo and the tests. It is not VNPay and moves no money: it plays VNPay's
//! side of the protocol so the merchant's side (the ingest server's
//! `payments`) can be exercised end to end over real HTTP, including the
//! ways a real gateway misbehaves.
//!
//! What it does, as VNPay does:
//! - `GET /paymentv2/vpcpay.html?…` checks the signed payment URL (a bad
//!   hash, a foreign terminal, a malformed or expired order: an error page)
//!   and shows a pay page with one button per outcome: pay, cancel (`24`),
//!   insufficient funds (`51`), money taken but the transaction suspected
//!   (`07`, status `07`). Each button is a plain HTML form
//!   (`POST /paymentv2/complete`), so a test can "click" it with any HTTP
//!   client.
//! - On a click it calls the merchant's IPN server to server (`GET
//!   {ipn_url}?…`, signed) and sends the browser to `vnp_ReturnUrl` (`303`,
//!   signed), the IPN first unless told otherwise.
//! - `POST /merchant_webapi/api/transaction` answers `querydr` (signed with
//!   `|`-joined fields both ways): `91` for an unknown order, status `01`
//!   for one not finished, `00` paid, `02` failed, `07` suspected.
//!
//! Failure injection, per sandbox instance ([`Faults`]; set through
//! [`Sandbox::set_faults`] or `PUT /sandbox/faults`): the IPN sent twice,
//! with a wrong (but signed) amount, with a bad hash, held back until
//! released (`POST /sandbox/ipn/release`, so it arrives after the return),
//! delayed by some milliseconds, or never sent (only `querydr` will tell).
//! Every IPN sent and the merchant's answer is kept (`GET /sandbox/ipn-log`).

pub mod protocol;
#[cfg(test)]
mod strict_tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Form, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use protocol::{now_gmt7, pipe_data, sign, signed_query, verify_query};

mod ipn;

/// Ways to misbehave, per instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Send every IPN twice.
    pub duplicate_ipn: bool,
    /// Send an amount 100 VND higher than paid (signed correctly).
    pub wrong_amount_ipn: bool,
    /// Send the IPN with a corrupted `vnp_SecureHash`.
    pub bad_hash_ipn: bool,
    /// Keep IPNs until `POST /sandbox/ipn/release` (they arrive after the
    /// browser's return).
    pub hold_ipn: bool,
    /// Send the IPN this many milliseconds after the return, in the
    /// background (0: before the return).
    pub ipn_delay_ms: u64,
    /// Never send the IPN.
    pub drop_ipn: bool,
}

/// How the sandbox is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (`127.0.0.1:0` for a free port).
    pub listen: SocketAddr,
    /// The merchant's terminal code.
    pub tmn_code: String,
    /// The merchant's secret.
    pub hash_secret: String,
    /// The merchant's IPN URL (VNPay keeps it per merchant, not per order);
    /// empty: no IPN until [`Sandbox::set_ipn_url`].
    pub ipn_url: String,
    /// Failure injection from the start.
    pub faults: Faults,
}

/// One IPN call and what the merchant said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpnRecord {
    /// The order.
    pub txn_ref: String,
    /// What was wrong with it on purpose (`none`, `wrong_amount`,
    /// `bad_hash`).
    pub fault: String,
    /// HTTP status, 0 when the call failed.
    pub status: u16,
    /// The merchant's `RspCode`, empty when none.
    pub rsp_code: String,
    /// The body, or the error.
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Paid,
    Cancelled,
    Insufficient,
    /// Money deducted, but the transaction is suspected of fraud: VNPay's
    /// `07`, neither paid nor failed.
    Suspected,
}

#[derive(Debug, Clone)]
struct Txn {
    params: BTreeMap<String, String>,
    outcome: Option<(Outcome, u64, String)>,
}

struct Shared {
    tmn_code: String,
    secret: String,
    ipn_url: Mutex<String>,
    faults: Mutex<Faults>,
    txns: Mutex<HashMap<String, Txn>>,
    held: Mutex<Vec<(String, String, &'static str)>>,
    log: Mutex<Vec<IpnRecord>>,
    next_no: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running sandbox.
#[derive(Clone)]
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Sandbox {
    /// Binds and serves in the background (on the current tokio runtime).
    pub async fn start(opts: Options) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            tmn_code: opts.tmn_code,
            secret: opts.hash_secret,
            ipn_url: Mutex::new(opts.ipn_url),
            faults: Mutex::new(opts.faults),
            txns: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            next_no: AtomicU64::new(14_000_000),
        });
        let app = router(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "vnpay-sandbox stopped");
            }
        });
        Ok(Sandbox { addr, shared })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The payment page (the merchant's `pay_url`).
    pub fn pay_url(&self) -> String {
        self.url("/paymentv2/vpcpay.html")
    }

    /// The merchant API (the merchant's `api_url`).
    pub fn api_url(&self) -> String {
        self.url("/merchant_webapi/api/transaction")
    }

    /// Sets the merchant's IPN URL.
    pub fn set_ipn_url(&self, url: &str) {
        *lock(&self.shared.ipn_url) = url.to_string();
    }

    /// Replaces the failure injection.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Sends the IPNs held back by [`Faults::hold_ipn`]; their records.
    pub async fn release_held_ipns(&self) -> Vec<IpnRecord> {
        release(&self.shared).await
    }

    /// Every IPN sent so far.
    pub fn ipn_log(&self) -> Vec<IpnRecord> {
        lock(&self.shared.log).clone()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/paymentv2/vpcpay.html", get(pay_page))
        .route("/paymentv2/complete", post(complete))
        .route("/merchant_webapi/api/transaction", post(merchant_api))
        .route("/sandbox/faults", get(get_faults).put(put_faults))
        .route("/sandbox/ipn/release", post(release_route))
        .route("/sandbox/ipn-log", get(log_route))
        .with_state(shared)
}

const BANNER: &str = "<p class=\"banner\">VNPAY SANDBOX — môi trường thử, không phải cổng thanh \
    toán thật, không trừ tiền.<br><small>A stand-in for the real gateway; no money moves.</small></p>";

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>{} — VNPAY \
         SANDBOX</title><style>body{{font-family:sans-serif;max-width:36rem;margin:2rem auto}}\
         .banner{{background:#fde68a;padding:.5rem}} form{{display:inline-block;margin:.3rem}}\
         </style></head><body>{BANNER}<h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    );
    (status, Html(page)).into_response()
}

fn error_page(code: &str, vi: &str, en: &str) -> Response {
    html_page(
        StatusCode::BAD_REQUEST,
        "Giao dịch không hợp lệ",
        &format!(
            "<p id=\"error\" data-code=\"{}\">{} ({})<br><small>{}</small></p>",
            esc(code),
            esc(vi),
            esc(code),
            esc(en)
        ),
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn vnd(amount_x100: &str) -> String {
    let digits = amount_x100
        .strip_suffix("00")
        .unwrap_or(amount_x100)
        .to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out + " ₫"
}

async fn pay_page(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let Some(p) = verify_query(&s.secret, q.as_deref().unwrap_or_default()) else {
        return error_page("97", "Sai chữ ký", "Invalid signature");
    };
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    let date_ok = |d: &str| d.len() == 14 && d.bytes().all(|b| b.is_ascii_digit());
    if get("vnp_TmnCode") != s.tmn_code {
        return error_page("02", "Website không tồn tại", "Unknown merchant terminal");
    }
    let well_formed = get("vnp_Version") == "2.1.0"
        && get("vnp_Command") == "pay"
        && get("vnp_CurrCode") == "VND"
        && !get("vnp_Amount").is_empty()
        && get("vnp_Amount").bytes().all(|b| b.is_ascii_digit())
        && !get("vnp_TxnRef").is_empty()
        && !get("vnp_OrderInfo").is_empty()
        && !get("vnp_IpAddr").is_empty()
        && !get("vnp_OrderType").is_empty()
        && matches!(get("vnp_Locale"), "vn" | "en")
        && get("vnp_ReturnUrl").starts_with("http")
        && date_ok(get("vnp_CreateDate"))
        && date_ok(get("vnp_ExpireDate"));
    if !well_formed {
        return error_page(
            "03",
            "Dữ liệu gửi sang không đúng định dạng",
            "Malformed order",
        );
    }
    if get("vnp_ExpireDate") < now_gmt7().as_str() {
        return error_page("11", "Đã hết hạn chờ thanh toán", "The order has expired");
    }
    let txn_ref = get("vnp_TxnRef").to_string();
    {
        let mut txns = lock(&s.txns);
        if txns.get(&txn_ref).is_some_and(|t| t.outcome.is_some()) {
            return error_page(
                "94",
                "Giao dịch đã tồn tại",
                "This order was already processed",
            );
        }
        txns.insert(
            txn_ref.clone(),
            Txn {
                params: p.clone(),
                outcome: None,
            },
        );
    }
    let button = |outcome: &str, vi: &str, en: &str| {
        format!(
            "<form method=\"post\" action=\"/paymentv2/complete\" id=\"{outcome}\">\
             <input type=\"hidden\" name=\"txn\" value=\"{}\">\
             <input type=\"hidden\" name=\"outcome\" value=\"{outcome}\">\
             <button type=\"submit\">{vi}<br><small>{en}</small></button></form>",
            esc(&txn_ref)
        )
    };
    let body = format!(
        "<table><tr><th>Số tiền / Amount</th><td id=\"amount\">{}</td></tr>\
         <tr><th>Nội dung / Order</th><td>{}</td></tr>\
         <tr><th>Mã đơn hàng / Reference</th><td>{}</td></tr></table>{}{}{}{}",
        esc(&vnd(get("vnp_Amount"))),
        esc(get("vnp_OrderInfo")),
        esc(&txn_ref),
        button("pay", "Thanh toán", "Pay"),
        button("cancel", "Hủy giao dịch", "Cancel (24)"),
        button(
            "insufficient",
            "Tài khoản không đủ số dư",
            "Insufficient funds (51)"
        ),
        button(
            "suspect",
            "Trừ tiền, giao dịch bị nghi ngờ",
            "Money taken, transaction suspected (07)"
        ),
    );
    html_page(StatusCode::OK, "Thanh toán qua VNPAY", &body)
}

#[derive(Deserialize)]
struct Click {
    txn: String,
    outcome: String,
}

async fn complete(State(s): State<Arc<Shared>>, Form(click): Form<Click>) -> Response {
    let outcome = match click.outcome.as_str() {
        "pay" => Outcome::Paid,
        "cancel" => Outcome::Cancelled,
        "insufficient" => Outcome::Insufficient,
        "suspect" => Outcome::Suspected,
        _ => return error_page("99", "Lựa chọn không hợp lệ", "Unknown outcome"),
    };
    let no = s.next_no.fetch_add(1, Ordering::Relaxed);
    let pay_date = now_gmt7();
    let params = {
        let mut txns = lock(&s.txns);
        let Some(t) = txns.get_mut(&click.txn) else {
            return error_page("01", "Không tìm thấy giao dịch", "Unknown order");
        };
        if t.outcome.is_some() {
            return error_page(
                "94",
                "Giao dịch đã tồn tại",
                "This order was already processed",
            );
        }
        // As the gateway does: an order past its expiry takes no payment
        // (the merchant's reconciliation then finds it unpaid).
        let expires = t.params.get("vnp_ExpireDate").map_or("", String::as_str);
        if outcome == Outcome::Paid && expires < pay_date.as_str() {
            return error_page("11", "Đã hết hạn chờ thanh toán", "The order has expired");
        }
        t.outcome = Some((outcome, no, pay_date.clone()));
        t.params.clone()
    };
    let result = result_params(&params, outcome, no, &pay_date);
    let ipn_query = signed_query(&s.secret, &result);
    let return_query = ipn_query.clone();
    let faults = lock(&s.faults).clone();
    if !faults.drop_ipn {
        let mut calls = vec![faulted(&s.secret, &result, &faults)];
        if faults.duplicate_ipn {
            calls.push(calls[0].clone());
        }
        let txn_ref = click.txn.clone();
        if faults.hold_ipn {
            let mut held = lock(&s.held);
            for (q, fault) in calls {
                held.push((txn_ref.clone(), q, fault));
            }
        } else if faults.ipn_delay_ms > 0 {
            let s2 = s.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(faults.ipn_delay_ms)).await;
                for (q, fault) in calls {
                    send_ipn(&s2, &txn_ref, &q, fault).await;
                }
            });
        } else {
            for (q, fault) in calls {
                send_ipn(&s, &txn_ref, &q, fault).await;
            }
        }
    }
    let return_url = params.get("vnp_ReturnUrl").cloned().unwrap_or_default();
    let sep = if return_url.contains('?') { '&' } else { '?' };
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{return_url}{sep}{return_query}"))],
    )
        .into_response()
}

/// The parameters VNPay sends back for an outcome (IPN and return alike).
fn result_params(
    order: &BTreeMap<String, String>,
    outcome: Outcome,
    no: u64,
    pay_date: &str,
) -> BTreeMap<String, String> {
    let (code, status) = match outcome {
        Outcome::Paid => ("00", "00"),
        Outcome::Cancelled => ("24", "02"),
        Outcome::Insufficient => ("51", "02"),
        Outcome::Suspected => ("07", "07"),
    };
    let mut r = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        r.insert(k.to_string(), v);
    };
    for k in ["vnp_Amount", "vnp_OrderInfo", "vnp_TmnCode", "vnp_TxnRef"] {
        put(k, order.get(k).cloned().unwrap_or_default());
    }
    put("vnp_BankCode", "NCB".into());
    put("vnp_CardType", "ATM".into());
    put("vnp_PayDate", pay_date.into());
    put("vnp_ResponseCode", code.into());
    put("vnp_TransactionStatus", status.into());
    if matches!(outcome, Outcome::Paid | Outcome::Suspected) {
        put("vnp_TransactionNo", no.to_string());
        put("vnp_BankTranNo", format!("VNP{no}"));
    } else {
        put("vnp_TransactionNo", "0".into());
    }
    r
}

/// The IPN query as the faults want it.
fn faulted(secret: &str, result: &BTreeMap<String, String>, f: &Faults) -> (String, &'static str) {
    if f.wrong_amount_ipn {
        let mut r = result.clone();
        let amount: u64 = r
            .get("vnp_Amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        r.insert("vnp_Amount".into(), (amount + 10_000).to_string());
        return (signed_query(secret, &r), "wrong_amount");
    }
    let q = signed_query(secret, result);
    if f.bad_hash_ipn {
        // Flip the last hex digit of the hash.
        let mut q = q;
        let last = q.pop().unwrap_or('0');
        q.push(if last == '0' { '1' } else { '0' });
        return (q, "bad_hash");
    }
    (q, "none")
}

async fn send_ipn(s: &Shared, txn_ref: &str, query: &str, fault: &'static str) -> IpnRecord {
    let base = lock(&s.ipn_url).clone();
    let record = if base.is_empty() {
        IpnRecord {
            txn_ref: txn_ref.into(),
            fault: fault.into(),
            status: 0,
            rsp_code: String::new(),
            body: "no IPN URL set".into(),
        }
    } else {
        let sep = if base.contains('?') { '&' } else { '?' };
        match ipn::get(&format!("{base}{sep}{query}")).await {
            Ok((status, body)) => IpnRecord {
                txn_ref: txn_ref.into(),
                fault: fault.into(),
                status,
                rsp_code: serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("RspCode").and_then(Value::as_str).map(String::from))
                    .unwrap_or_default(),
                body,
            },
            Err(e) => IpnRecord {
                txn_ref: txn_ref.into(),
                fault: fault.into(),
                status: 0,
                rsp_code: String::new(),
                body: e,
            },
        }
    };
    tracing::info!(txn_ref, fault, rsp = record.rsp_code, "IPN sent");
    lock(&s.log).push(record.clone());
    record
}

async fn release(s: &Shared) -> Vec<IpnRecord> {
    let held = std::mem::take(&mut *lock(&s.held));
    let mut out = Vec::new();
    for (txn_ref, q, fault) in held {
        out.push(send_ipn(s, &txn_ref, &q, fault).await);
    }
    out
}

async fn merchant_api(State(s): State<Arc<Shared>>, body: String) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"vnp_ResponseCode": "03"})),
        )
            .into_response();
    };
    let field = |k: &str| {
        req.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut a = Map::new();
    let mut put = |k: &str, v: String| {
        a.insert(k.to_string(), Value::String(v));
    };
    put(
        "vnp_ResponseId",
        format!("{:x}", s.next_no.fetch_add(1, Ordering::Relaxed)),
    );
    put("vnp_Command", field("vnp_Command"));
    put("vnp_TmnCode", field("vnp_TmnCode"));
    put("vnp_TxnRef", field("vnp_TxnRef"));
    let data = pipe_data(&req, &protocol::QUERYDR_REQUEST_FIELDS);
    let hash_ok = hex::decode(field("vnp_SecureHash").to_ascii_lowercase())
        .is_ok_and(|given| given == hex::decode(sign(&s.secret, &data)).unwrap_or_default());
    let (code, message) = if !hash_ok {
        ("97", "Invalid Checksum")
    } else if field("vnp_Command") != "querydr" {
        ("99", "Unsupported command")
    } else if field("vnp_TmnCode") != s.tmn_code {
        ("02", "Merchant is not valid")
    } else if field("vnp_Version") != "2.1.0" {
        ("03", "Invalid data format")
    } else {
        // An order is found by its reference and the date it was made
        // (`vnp_TransactionDate` = the order's `vnp_CreateDate`).
        let txns = lock(&s.txns);
        let found = txns.get(&field("vnp_TxnRef")).filter(|t| {
            t.params.get("vnp_CreateDate").map(String::as_str)
                == Some(field("vnp_TransactionDate").as_str())
        });
        match found {
            None => ("91", "Transaction not found"),
            Some(t) => {
                let order = |k: &str| t.params.get(k).cloned().unwrap_or_default();
                put("vnp_Amount", order("vnp_Amount"));
                put("vnp_OrderInfo", order("vnp_OrderInfo"));
                put("vnp_BankCode", "NCB".into());
                put("vnp_TransactionType", "01".into());
                let (status, no, date) = match &t.outcome {
                    None => ("01", "0".to_string(), String::new()),
                    Some((Outcome::Paid, no, d)) => ("00", no.to_string(), d.clone()),
                    Some((Outcome::Suspected, no, d)) => ("07", no.to_string(), d.clone()),
                    Some((_, _, d)) => ("02", "0".to_string(), d.clone()),
                };
                put("vnp_TransactionStatus", status.into());
                put("vnp_TransactionNo", no);
                put("vnp_PayDate", date);
                ("00", "QueryDR Success")
            }
        }
    };
    put("vnp_ResponseCode", code.into());
    put("vnp_Message", message.into());
    let data = pipe_data(&a, &protocol::QUERYDR_ANSWER_FIELDS);
    a.insert(
        "vnp_SecureHash".into(),
        Value::String(sign(&s.secret, &data)),
    );
    Json(Value::Object(a)).into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Json<Faults> {
    Json(lock(&s.faults).clone())
}

async fn put_faults(State(s): State<Arc<Shared>>, Json(f): Json<Faults>) -> Json<Faults> {
    *lock(&s.faults) = f.clone();
    Json(f)
}

async fn release_route(State(s): State<Arc<Shared>>) -> Json<Vec<IpnRecord>> {
    Json(release(&s).await)
}

async fn log_route(State(s): State<Arc<Shared>>) -> Json<Vec<IpnRecord>> {
    Json(lock(&s.log).clone())
}
