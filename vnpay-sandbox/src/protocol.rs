//! VNPay 2.1.0's signatures, written from the protocol description and
//! independently of the server's code (RustCrypto's `hmac` here, `ring`
//! there), so a test that passes through both checks the protocol rather
//! than one implementation agreeing with itself.
//!
//! - Redirects (payment URL, return, IPN): the `vnp_*` parameters with a
//!   value, sorted by name, name and value URL-encoded like PHP's
//!   `urlencode` (letters, digits, `-_.` kept; space → `+`; other bytes
//!   `%XX`), joined `k=v&k=v`; `vnp_SecureHash` = hex HMAC-SHA512 of it.
//!   Checking drops `vnp_SecureHash` and `vnp_SecureHashType` first.
//! - `querydr` (JSON): the hash covers fixed fields joined with `|`.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

/// The fields of a `querydr` request its hash covers, in order.
pub const QUERYDR_REQUEST_FIELDS: [&str; 9] = [
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_TransactionDate",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
];

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

/// PHP `urlencode`.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push_str(&hex::encode_upper([b]));
        }
    }
    out
}

/// The signed text of a parameter set.
pub fn hash_data(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Hex HMAC-SHA512.
pub fn sign(secret: &str, data: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `hash_data` followed by `&vnp_SecureHash=…`.
pub fn signed_query(secret: &str, params: &BTreeMap<String, String>) -> String {
    let data = hash_data(params);
    format!("{data}&vnp_SecureHash={}", sign(secret, &data))
}

/// The `vnp_*` parameters of a signed query, if its hash holds.
pub fn verify_query(secret: &str, query: &str) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    let mut hash = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        // A parameter named twice: which one was signed?
        let twice = match k.as_ref() {
            "vnp_SecureHash" => hash.replace(v.into_owned()).is_some(),
            "vnp_SecureHashType" => false,
            key if key.starts_with("vnp_") => {
                params.insert(k.into_owned(), v.into_owned()).is_some()
            }
            _ => false,
        };
        if twice {
            return None;
        }
    }
    let given = hex::decode(hash?.to_ascii_lowercase()).ok()?;
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(hash_data(&params).as_bytes());
    mac.verify_slice(&given).ok()?;
    Some(params)
}

/// The pipe-joined text of `fields` of a JSON object (missing: empty).
pub fn pipe_data(obj: &serde_json::Map<String, serde_json::Value>, fields: &[&str]) -> String {
    fields
        .iter()
        .map(|k| match obj.get(*k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Now in VNPay's `yyyyMMddHHmmss`, GMT+7.
pub fn now_gmt7() -> String {
    let t = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+7));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_urlencode() {
        assert_eq!(encode("Nộp phạt"), "N%E1%BB%99p+ph%E1%BA%A1t");
        assert_eq!(encode("a-b_c.d~e*"), "a-b_c.d%7Ee%2A");
    }

    #[test]
    fn sign_and_verify() {
        let mut p = BTreeMap::new();
        p.insert("vnp_Amount".to_string(), "100".to_string());
        p.insert("vnp_OrderInfo".to_string(), "Nộp phạt 1".to_string());
        p.insert("vnp_BankCode".to_string(), String::new());
        let q = signed_query("secret", &p);
        assert!(q.starts_with("vnp_Amount=100&vnp_OrderInfo=N%E1%BB%99p+ph%E1%BA%A1t+1&"));
        let got = verify_query("secret", &q).unwrap();
        assert_eq!(got["vnp_OrderInfo"], "Nộp phạt 1");
        assert!(verify_query("other", &q).is_none());
        assert!(verify_query("secret", &q.replace("=100", "=200")).is_none());
    }
}
