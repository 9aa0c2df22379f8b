//! The VNPay gateway, protocol version 2.1.0: the signed payment URL, the
//! checks of what comes back signed (the person's return, the IPN), and the
//! transaction status query (`querydr`) the reconciler uses.
//!
//! How VNPay signs, and so how we do (both ways):
//! - payment URL, return and IPN: the `vnp_*` parameters with a value,
//!   sorted by name, each name and value URL-encoded form-style as PHP's
//!   `urlencode` does in VNPay's own samples (letters, digits and `-_.`
//!   kept, a space becomes `+`, every other byte `%XX`), joined
//!   `k=v&k=v`; `vnp_SecureHash` is the hex HMAC-SHA512 of that text with
//!   the merchant's secret. On checking, `vnp_SecureHash` and
//!   `vnp_SecureHashType` are dropped first and the rest is encoded again
//!   after decoding, exactly as the samples do.
//! - `querydr` (merchant API, JSON over POST): the hash covers the request's
//!   fields joined with `|` in a fixed order, and the answer's likewise.
//!
//! A parameter named twice makes a message unverifiable (which of the two
//! was signed?), so it is refused like a bad hash. The hash is compared in
//! constant time. Amounts travel as VND × 100 (`vnp_Amount`); ours are whole
//! VND, so an amount that is not a multiple of 100 is a wrong amount.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ring::hmac;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::http::Client;
use super::settle::{self, Settled, SettledBy};
use super::{
    GatewayReport, IpnAnswer, Order, PaymentError, PaymentGateway, Payments, PendingPayment,
    QueryAnswer,
};
use crate::config::VnPayConfig;
use crate::console::html::VIETNAM;

/// The protocol version we speak.
pub const VERSION: &str = "2.1.0";

/// The VNPay gateway for one merchant terminal.
pub struct VnPay {
    tmn_code: String,
    key: hmac::Key,
    pay_url: String,
    api_url: String,
    return_url: String,
    locale: String,
    http: Client,
}

impl std::fmt::Debug for VnPay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VnPay")
            .field("tmn_code", &self.tmn_code)
            .field("pay_url", &self.pay_url)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

impl VnPay {
    /// The gateway of `[payments.vnpay]` (validated; the secret is read
    /// here when it is in a file).
    pub fn from_config(cfg: &VnPayConfig) -> Result<VnPay, PaymentError> {
        let secret = cfg.secret().map_err(PaymentError::Config)?;
        Ok(VnPay {
            tmn_code: cfg.tmn_code.clone(),
            key: hmac::Key::new(hmac::HMAC_SHA512, secret.as_bytes()),
            pay_url: cfg.pay_url.clone(),
            api_url: cfg.api_url.clone(),
            return_url: cfg.return_url.clone(),
            locale: cfg.locale.clone(),
            http: Client::new(),
        })
    }

    /// Checks a signed `vnp_*` query (return or IPN) and reads it.
    pub fn verify(&self, query: &str) -> Result<GatewayReport, PaymentError> {
        let params = verify_query(&self.key, query)?;
        let get = |k: &str| params.get(k).cloned().unwrap_or_default();
        let opt = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
        if get("vnp_TmnCode") != self.tmn_code {
            return Err(PaymentError::Malformed(format!(
                "vnp_TmnCode {:?} is not ours",
                get("vnp_TmnCode")
            )));
        }
        let txn_ref = get("vnp_TxnRef");
        if txn_ref.is_empty() {
            return Err(PaymentError::Malformed("no vnp_TxnRef".into()));
        }
        // Everything as received, the hash included.
        let raw: Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        Ok(GatewayReport {
            amount_vnd: from_gateway_amount(&get("vnp_Amount")),
            response_code: get("vnp_ResponseCode"),
            transaction_status: get("vnp_TransactionStatus"),
            transaction_no: opt("vnp_TransactionNo"),
            bank_code: opt("vnp_BankCode"),
            bank_tran_no: opt("vnp_BankTranNo"),
            pay_date: opt("vnp_PayDate"),
            raw: Value::Object(raw),
            txn_ref,
        })
    }

    /// The `querydr` request for one payment, signed.
    fn querydr_request(&self, p: &PendingPayment, now: i64) -> Value {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let fields = [
            ("vnp_RequestId", request_id),
            ("vnp_Version", VERSION.to_string()),
            ("vnp_Command", "querydr".to_string()),
            ("vnp_TmnCode", self.tmn_code.clone()),
            ("vnp_TxnRef", p.txn_ref.clone()),
            ("vnp_TransactionDate", gmt7(p.created_at)),
            ("vnp_CreateDate", gmt7(now)),
            // The address of the server asking; VNPay records it.
            ("vnp_IpAddr", "127.0.0.1".to_string()),
            ("vnp_OrderInfo", format!("Truy van giao dich {}", p.txn_ref)),
        ];
        let data = fields
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("|");
        let mut body: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        body.insert("vnp_SecureHash".into(), sign(&self.key, &data).into());
        Value::Object(body)
    }

    /// Reads and checks a `querydr` answer.
    fn querydr_answer(&self, p: &PendingPayment, body: &[u8]) -> Result<QueryAnswer, PaymentError> {
        let v: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|e| PaymentError::Gateway(format!("querydr answer is not JSON: {e}")))?;
        let get = |k: &str| -> String {
            match v.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            }
        };
        let data = QUERYDR_ANSWER_FIELDS
            .iter()
            .map(|k| get(k))
            .collect::<Vec<_>>()
            .join("|");
        if !verify_hex(&self.key, &data, &get("vnp_SecureHash")) {
            return Err(PaymentError::Gateway(format!(
                "querydr answer for {} has a bad vnp_SecureHash",
                p.txn_ref
            )));
        }
        let code = get("vnp_ResponseCode");
        match code.as_str() {
            "00" => {}
            "91" => {
                return Ok(QueryAnswer::NotFound {
                    raw: Value::Object(v),
                });
            }
            _ => {
                return Err(PaymentError::Gateway(format!(
                    "querydr for {}: vnp_ResponseCode {code} {}",
                    p.txn_ref,
                    get("vnp_Message")
                )));
            }
        }
        if get("vnp_TxnRef") != p.txn_ref || get("vnp_TmnCode") != self.tmn_code {
            return Err(PaymentError::Gateway(format!(
                "querydr for {} answered about {} at {}",
                p.txn_ref,
                get("vnp_TxnRef"),
                get("vnp_TmnCode")
            )));
        }
        let opt = |k: &str| Some(get(k)).filter(|s| !s.is_empty());
        Ok(QueryAnswer::Found(GatewayReport {
            txn_ref: p.txn_ref.clone(),
            amount_vnd: from_gateway_amount(&get("vnp_Amount")),
            // The query's own code; the payment's outcome is the status.
            response_code: code,
            transaction_status: get("vnp_TransactionStatus"),
            transaction_no: opt("vnp_TransactionNo"),
            bank_code: opt("vnp_BankCode"),
            bank_tran_no: None,
            pay_date: opt("vnp_PayDate"),
            raw: Value::Object(v),
        }))
    }
}

/// The fields of a `querydr` answer its hash covers, in order.
pub const QUERYDR_ANSWER_FIELDS: [&str; 15] = [
    "vnp_ResponseId",
    "vnp_Command",
    "vnp_ResponseCode",
    "vnp_Message",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_BankCode",
    "vnp_PayDate",
    "vnp_TransactionNo",
    "vnp_TransactionType",
    "vnp_TransactionStatus",
    "vnp_OrderInfo",
    "vnp_PromotionCode",
    "vnp_PromotionAmount",
];

#[async_trait]
impl PaymentGateway for VnPay {
    fn name(&self) -> &'static str {
        "vnpay"
    }

    async fn payment_url(&self, order: &Order) -> Result<String, PaymentError> {
        let amount = to_gateway_amount(order.amount_vnd).ok_or_else(|| {
            PaymentError::Config(format!("amount {} VND cannot be sent", order.amount_vnd))
        })?;
        let params: Vec<(&str, String)> = vec![
            ("vnp_Version", VERSION.into()),
            ("vnp_Command", "pay".into()),
            ("vnp_TmnCode", self.tmn_code.clone()),
            ("vnp_Amount", amount.to_string()),
            ("vnp_CurrCode", "VND".into()),
            ("vnp_TxnRef", order.txn_ref.clone()),
            ("vnp_OrderInfo", order.order_info.clone()),
            ("vnp_OrderType", "other".into()),
            ("vnp_Locale", self.locale.clone()),
            ("vnp_ReturnUrl", self.return_url.clone()),
            ("vnp_IpAddr", order.client_ip.to_string()),
            ("vnp_CreateDate", gmt7(order.created_at)),
            ("vnp_ExpireDate", gmt7(order.expires_at)),
        ];
        let sep = if self.pay_url.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{}{sep}{}",
            self.pay_url,
            signed_query(&self.key, &params)
        ))
    }

    async fn verify_return(&self, query: &str) -> Result<GatewayReport, PaymentError> {
        self.verify(query)
    }

    async fn handle_ipn(&self, payments: &Payments, query: &str, now: i64) -> IpnAnswer {
        let report = match self.verify(query) {
            Ok(r) => r,
            Err(PaymentError::BadSignature) => {
                tracing::warn!("VNPay IPN with a bad or missing vnp_SecureHash");
                return IpnAnswer::new("97", "Invalid signature");
            }
            Err(e) => {
                tracing::warn!(error = %e, "VNPay IPN refused");
                return IpnAnswer::new("99", "Invalid request");
            }
        };
        match settle::settle(payments, &report, SettledBy::Ipn, now).await {
            Ok(Settled::Paid | Settled::Failed | Settled::Held) => {
                IpnAnswer::new("00", "Confirm Success")
            }
            Ok(Settled::AlreadyConfirmed) => IpnAnswer::new("02", "Order already confirmed"),
            Ok(Settled::OrderNotFound) => IpnAnswer::new("01", "Order not found"),
            Ok(Settled::WrongAmount) => IpnAnswer::new("04", "invalid amount"),
            Err(e) => {
                tracing::error!(error = %e, txn_ref = report.txn_ref, "VNPay IPN failed");
                IpnAnswer::new("99", "Unknown error")
            }
        }
    }

    async fn query(&self, p: &PendingPayment, now: i64) -> Result<QueryAnswer, PaymentError> {
        let body = self.querydr_request(p, now);
        let answer = self
            .http
            .post_json(&self.api_url, &body)
            .await
            .map_err(PaymentError::Gateway)?;
        if answer.status != 200 {
            return Err(PaymentError::Gateway(format!(
                "querydr for {}: HTTP {}",
                p.txn_ref, answer.status
            )));
        }
        self.querydr_answer(p, &answer.body)
    }
}

/// URL-encodes like PHP's `urlencode` (what VNPay's samples sign):
/// ASCII letters, digits and `-_.` stay, a space becomes `+`, every other
/// byte of the UTF-8 text becomes `%XX` (upper case).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text that is signed: parameters with a value, sorted by name,
/// `k=v&k=v`, both encoded with [`encode`].
pub fn hash_data<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    sorted.sort_unstable();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Hex HMAC-SHA512 of `data` (lower case).
pub fn sign(key: &hmac::Key, data: &str) -> String {
    hex::encode(hmac::sign(key, data.as_bytes()).as_ref())
}

/// Whether `given_hex` (either case) is the HMAC-SHA512 of `data`, in
/// constant time.
fn verify_hex(key: &hmac::Key, data: &str, given_hex: &str) -> bool {
    match hex::decode(given_hex.trim().to_ascii_lowercase()) {
        Ok(tag) => hmac::verify(key, data.as_bytes(), &tag).is_ok(),
        Err(_) => false,
    }
}

/// The query string of a signed request: [`hash_data`] followed by
/// `&vnp_SecureHash=…`.
pub fn signed_query<K: AsRef<str>, V: AsRef<str>>(key: &hmac::Key, params: &[(K, V)]) -> String {
    let data = hash_data(params);
    let hash = sign(key, &data);
    format!("{data}&vnp_SecureHash={hash}")
}

/// Checks the `vnp_SecureHash` of a query string and returns its `vnp_*`
/// parameters (decoded, without the hash fields).
pub fn verify_query(
    key: &hmac::Key,
    query: &str,
) -> Result<BTreeMap<String, String>, PaymentError> {
    let mut params = BTreeMap::new();
    let mut given = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if !k.starts_with("vnp_") || k == "vnp_SecureHashType" {
            continue;
        }
        if k == "vnp_SecureHash" {
            if given.replace(v.into_owned()).is_some() {
                return Err(PaymentError::BadSignature);
            }
            continue;
        }
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            // Named twice: which one was signed?
            return Err(PaymentError::BadSignature);
        }
    }
    let given = given.ok_or(PaymentError::BadSignature)?;
    let pairs: Vec<(&String, &String)> = params.iter().collect();
    if !verify_hex(key, &hash_data(&pairs), &given) {
        return Err(PaymentError::BadSignature);
    }
    Ok(params)
}

/// Whole VND → `vnp_Amount` (× 100); `None` on overflow or a negative.
pub fn to_gateway_amount(vnd: i64) -> Option<i64> {
    if vnd < 0 {
        return None;
    }
    vnd.checked_mul(100)
}

/// `vnp_Amount` → whole VND; `None` unless it is digits and a multiple of
/// 100.
pub fn from_gateway_amount(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    (n % 100 == 0).then_some(n / 100)
}

/// Unix ms as VNPay's `yyyyMMddHHmmss` in GMT+7.
pub fn gmt7(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(VIETNAM);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// What a `vnp_ResponseCode` means, (Vietnamese, English).
pub fn response_text(code: &str) -> (&'static str, &'static str) {
    match code {
        "00" => ("Giao dịch thành công", "Successful"),
        "07" => (
            "Trừ tiền thành công, giao dịch bị nghi ngờ (liên quan tới lừa đảo, giao dịch bất thường)",
            "Money taken, but the transaction is suspected of fraud",
        ),
        "09" => (
            "Thẻ/Tài khoản chưa đăng ký dịch vụ InternetBanking tại ngân hàng",
            "The card or account is not registered for internet banking",
        ),
        "10" => (
            "Xác thực thông tin thẻ/tài khoản không đúng quá 3 lần",
            "Card or account authentication failed more than 3 times",
        ),
        "11" => ("Đã hết hạn chờ thanh toán", "The time to pay ran out"),
        "12" => ("Thẻ/Tài khoản bị khóa", "The card or account is locked"),
        "13" => (
            "Nhập sai mật khẩu xác thực giao dịch (OTP)",
            "Wrong one-time password (OTP)",
        ),
        "24" => ("Khách hàng hủy giao dịch", "Cancelled by the customer"),
        "51" => (
            "Tài khoản không đủ số dư để thực hiện giao dịch",
            "Insufficient funds",
        ),
        "65" => (
            "Tài khoản đã vượt quá hạn mức giao dịch trong ngày",
            "The account's daily limit is exceeded",
        ),
        "75" => (
            "Ngân hàng thanh toán đang bảo trì",
            "The bank is under maintenance",
        ),
        "79" => (
            "Nhập sai mật khẩu thanh toán quá số lần quy định",
            "Wrong payment password too many times",
        ),
        _ => ("Lỗi khác", "Other error"),
    }
}

#[cfg(test)]
#[path = "vnpay_tests.rs"]
mod tests;
