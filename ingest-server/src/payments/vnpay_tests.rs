//! Unit tests of the VNPay adapter: the hash against a vector computed
//! independently, PHP-style encoding, amounts, tampering, times, querydr.

use super::*;

const SECRET: &str = "SECRETKEY0123456789ABCDEF";

fn key() -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA512, SECRET.as_bytes())
}

/// The parameters of the fixed vector below.
fn vector_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("vnp_Version", "2.1.0"),
        ("vnp_Command", "pay"),
        ("vnp_TmnCode", "TVHN0001"),
        ("vnp_Amount", "80000000"),
        ("vnp_CurrCode", "VND"),
        ("vnp_TxnRef", "3f2a9c1e"),
        ("vnp_OrderInfo", "Nộp phạt vi phạm: 30A-123.45 (đèn đỏ)"),
        ("vnp_OrderType", "other"),
        ("vnp_Locale", "vn"),
        (
            "vnp_ReturnUrl",
            "https://ioc.example.gov.vn/pay/vnpay/return",
        ),
        ("vnp_IpAddr", "203.0.113.7"),
        ("vnp_CreateDate", "20250102030405"),
        ("vnp_ExpireDate", "20250102031905"),
        ("vnp_BankCode", ""),
    ]
}

/// Computed independently with Python's `hmac` (PHP-style encoding
/// written out by hand):
///
/// ```text
/// enc = lambda s: ''.join(c if c.isascii() and (c.isalnum() or c in '-_.')
///     else '+' if c == ' ' else ''.join('%%%02X' % b for b in c.encode()) for c in s)
/// data = '&'.join(f'{k}={enc(v)}' for k, v in sorted(params.items()) if v)
/// hmac.new(b'SECRETKEY0123456789ABCDEF', data.encode(), hashlib.sha512).hexdigest()
/// ```
const VECTOR_DATA: &str = "vnp_Amount=80000000&vnp_Command=pay&vnp_CreateDate=20250102030405\
    &vnp_CurrCode=VND&vnp_ExpireDate=20250102031905&vnp_IpAddr=203.0.113.7&vnp_Locale=vn\
    &vnp_OrderInfo=N%E1%BB%99p+ph%E1%BA%A1t+vi+ph%E1%BA%A1m%3A+30A-123.45+%28%C4%91%C3%A8n+%C4%91%E1%BB%8F%29\
    &vnp_OrderType=other&vnp_ReturnUrl=https%3A%2F%2Fioc.example.gov.vn%2Fpay%2Fvnpay%2Freturn\
    &vnp_TmnCode=TVHN0001&vnp_TxnRef=3f2a9c1e&vnp_Version=2.1.0";
const VECTOR_HASH: &str = "11eb1ffc2f0c482e09ec722d80f04f7dab189ab450894a0129f6e2e7ec9552a6\
    33af19435154fc76f58e2902ac26d4d932d02208a5c94571c32e32d08ea185bd";

#[test]
fn hash_matches_an_independent_vector() {
    let data = hash_data(&vector_params());
    assert_eq!(data, VECTOR_DATA);
    assert_eq!(sign(&key(), &data), VECTOR_HASH);
    let q = signed_query(&key(), &vector_params());
    assert!(q.ends_with(&format!("&vnp_SecureHash={VECTOR_HASH}")));
}

#[test]
fn encoding_of_spaces_and_vietnamese() {
    assert_eq!(encode("Nộp phạt"), "N%E1%BB%99p+ph%E1%BA%A1t");
    assert_eq!(encode("a b+c"), "a+b%2Bc");
    assert_eq!(encode("A-z_0.9~*"), "A-z_0.9%7E%2A");
    assert_eq!(encode("Đ"), "%C4%90");
    assert_eq!(
        encode("https://x/y?z=1&w"),
        "https%3A%2F%2Fx%2Fy%3Fz%3D1%26w"
    );
}

#[test]
fn amount_is_vnd_times_100() {
    assert_eq!(to_gateway_amount(800_000), Some(80_000_000));
    assert_eq!(to_gateway_amount(-1), None);
    assert_eq!(to_gateway_amount(i64::MAX / 10), None);
    assert_eq!(from_gateway_amount("80000000"), Some(800_000));
    assert_eq!(from_gateway_amount("80000050"), None);
    assert_eq!(from_gateway_amount("-100"), None);
    assert_eq!(from_gateway_amount("8e7"), None);
    assert_eq!(from_gateway_amount(""), None);
    assert_eq!(from_gateway_amount("99999999999999999999999"), None);
}

#[test]
fn verification_round_trip_and_tampering() {
    let mut params = vector_params();
    params.push(("vnp_ResponseCode", "00"));
    let q = signed_query(&key(), &params);
    let got = verify_query(&key(), &q).unwrap();
    assert_eq!(
        got["vnp_OrderInfo"],
        "Nộp phạt vi phạm: 30A-123.45 (đèn đỏ)"
    );
    assert!(
        !got.contains_key("vnp_BankCode"),
        "empty values are left out"
    );
    // Upper-case hex, a hash type and foreign parameters are accepted.
    let upper = format!(
        "{}&vnp_SecureHashType=HmacSHA512&utm=x",
        q.replace(
            &sign(&key(), &hash_data(&params)),
            &sign(&key(), &hash_data(&params)).to_uppercase()
        )
    );
    verify_query(&key(), &upper).unwrap();
    let bad = |q: String| matches!(verify_query(&key(), &q), Err(PaymentError::BadSignature));
    assert!(bad(q.replace("vnp_Amount=80000000", "vnp_Amount=100")));
    assert!(bad(q.replace("vnp_ResponseCode=00", "vnp_ResponseCode=24")));
    assert!(bad(format!("{q}&vnp_Amount=80000000")), "a parameter twice");
    assert!(bad(hash_data(&params)), "no hash");
    assert!(bad(format!("{}&vnp_SecureHash=zz", hash_data(&params))));
    let other = hmac::Key::new(hmac::HMAC_SHA512, b"another secret");
    assert!(matches!(
        verify_query(&other, &q),
        Err(PaymentError::BadSignature)
    ));
}

#[test]
fn times_are_gmt7() {
    // 2025-01-01T20:04:05Z is 03:04:05 on the 2nd in Hà Nội.
    assert_eq!(gmt7(1_735_761_845_000), "20250102030405");
}

#[test]
fn querydr_signatures() {
    let cfg = VnPayConfig {
        tmn_code: "TVHN0001".into(),
        hash_secret: SECRET.into(),
        ..VnPayConfig::default()
    };
    let gw = VnPay::from_config(&cfg).unwrap();
    let p = PendingPayment {
        txn_ref: "abc".into(),
        event_id: "e".into(),
        amount_vnd: 800_000,
        created_at: 1_735_761_845_000,
        expires_at: 1_735_762_745_000,
    };
    let req = gw.querydr_request(&p, 1_735_761_905_000);
    let field = |k: &str| req[k].as_str().unwrap().to_string();
    let data = [
        "vnp_RequestId",
        "vnp_Version",
        "vnp_Command",
        "vnp_TmnCode",
        "vnp_TxnRef",
        "vnp_TransactionDate",
        "vnp_CreateDate",
        "vnp_IpAddr",
        "vnp_OrderInfo",
    ]
    .map(field)
    .join("|");
    assert_eq!(field("vnp_TransactionDate"), "20250102030405");
    assert_eq!(field("vnp_SecureHash"), sign(&key(), &data));

    let mut answer = Map::new();
    for (k, v) in [
        ("vnp_ResponseId", "r1"),
        ("vnp_Command", "querydr"),
        ("vnp_ResponseCode", "00"),
        ("vnp_Message", "QueryDR Success"),
        ("vnp_TmnCode", "TVHN0001"),
        ("vnp_TxnRef", "abc"),
        ("vnp_Amount", "80000000"),
        ("vnp_BankCode", "NCB"),
        ("vnp_PayDate", "20250102031000"),
        ("vnp_TransactionNo", "14000001"),
        ("vnp_TransactionType", "01"),
        ("vnp_TransactionStatus", "00"),
        ("vnp_OrderInfo", "x"),
        ("vnp_PromotionCode", ""),
        ("vnp_PromotionAmount", ""),
    ] {
        answer.insert(k.into(), v.into());
    }
    let data = QUERYDR_ANSWER_FIELDS
        .map(|k| answer[k].as_str().unwrap().to_string())
        .join("|");
    answer.insert("vnp_SecureHash".into(), sign(&key(), &data).into());
    let body = serde_json::to_vec(&answer).unwrap();
    match gw.querydr_answer(&p, &body).unwrap() {
        QueryAnswer::Found(r) => {
            assert!(r.succeeded());
            assert_eq!(r.amount_vnd, Some(800_000));
            assert_eq!(r.transaction_no.as_deref(), Some("14000001"));
        }
        other => panic!("{other:?}"),
    }
    answer.insert("vnp_Amount".into(), "1".into());
    let body = serde_json::to_vec(&answer).unwrap();
    assert!(matches!(
        gw.querydr_answer(&p, &body),
        Err(PaymentError::Gateway(_))
    ));
}
