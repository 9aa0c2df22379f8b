//! The sandbox is as strict as the gateway where the merchant could get
//! something wrong: a stand-in that accepted what VNPay refuses would let
//! the server's tests pass on requests the real gateway turns away.

use super::*;
use crate::protocol::QUERYDR_REQUEST_FIELDS;
use axum::body::to_bytes;

const SECRET: &str = "SANDBOXSECRET";
const TMN: &str = "TVTEST01";

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        tmn_code: TMN.into(),
        secret: SECRET.into(),
        ipn_url: Mutex::new(String::new()),
        faults: Mutex::new(Faults {
            drop_ipn: true,
            ..Faults::default()
        }),
        txns: Mutex::new(HashMap::new()),
        held: Mutex::new(Vec::new()),
        log: Mutex::new(Vec::new()),
        next_no: AtomicU64::new(1),
    })
}

/// A pay request as the merchant makes it, expiring 15 minutes from now.
fn order(txn: &str) -> BTreeMap<String, String> {
    let now = now_gmt7();
    let later = (time::OffsetDateTime::now_utc() + time::Duration::minutes(15))
        .to_offset(time::macros::offset!(+7))
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_default();
    [
        ("vnp_Version", "2.1.0"),
        ("vnp_Command", "pay"),
        ("vnp_TmnCode", TMN),
        ("vnp_Amount", "100000000"),
        ("vnp_CurrCode", "VND"),
        ("vnp_TxnRef", txn),
        ("vnp_OrderInfo", "Nop phat vi pham giao thong"),
        ("vnp_OrderType", "other"),
        ("vnp_Locale", "vn"),
        ("vnp_ReturnUrl", "http://127.0.0.1:1/return"),
        ("vnp_IpAddr", "203.0.113.7"),
        ("vnp_CreateDate", now.as_str()),
        ("vnp_ExpireDate", later.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The gateway's code on the page it answered (`00` for the pay page).
async fn code_of(r: Response) -> String {
    let ok = r.status() == StatusCode::OK;
    let body = to_bytes(r.into_body(), 1 << 20).await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    if ok {
        return "00".into();
    }
    body.split("data-code=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("?")
        .to_string()
}

async fn pay_page_of(s: &Arc<Shared>, p: &BTreeMap<String, String>) -> String {
    let q = signed_query(SECRET, p);
    code_of(pay_page(State(s.clone()), RawQuery(Some(q))).await).await
}

#[tokio::test]
async fn a_pay_request_without_locale_or_order_type_is_malformed() {
    let s = shared();
    assert_eq!(pay_page_of(&s, &order("t1")).await, "00");
    for (field, value) in [
        ("vnp_Locale", None),
        ("vnp_Locale", Some("fr")),
        ("vnp_OrderType", None),
    ] {
        let mut p = order("t2");
        match value {
            Some(v) => p.insert(field.into(), v.into()),
            None => p.remove(field),
        };
        assert_eq!(pay_page_of(&s, &p).await, "03", "{field} = {value:?}");
    }
}

#[tokio::test]
async fn an_order_past_its_expiry_takes_no_payment() {
    let s = shared();
    assert_eq!(pay_page_of(&s, &order("t1")).await, "00");
    // The person reached the bank's step; the order expires meanwhile.
    lock(&s.txns).get_mut("t1").map(|t| {
        t.params
            .insert("vnp_ExpireDate".into(), "20200101000000".into())
    });
    let click = |outcome: &str| Click {
        txn: "t1".into(),
        outcome: outcome.into(),
    };
    let paid = complete(State(s.clone()), Form(click("pay"))).await;
    assert_eq!(code_of(paid).await, "11");
    assert!(lock(&s.txns)["t1"].outcome.is_none(), "nothing recorded");
}

/// A querydr request signed as the merchant signs it.
fn querydr(txn: &str, transaction_date: &str, version: &str) -> String {
    let mut req = serde_json::Map::new();
    for (k, v) in [
        ("vnp_RequestId", "r1"),
        ("vnp_Version", version),
        ("vnp_Command", "querydr"),
        ("vnp_TmnCode", TMN),
        ("vnp_TxnRef", txn),
        ("vnp_OrderInfo", "querydr"),
        ("vnp_TransactionDate", transaction_date),
        ("vnp_CreateDate", transaction_date),
        ("vnp_IpAddr", "127.0.0.1"),
    ] {
        req.insert(k.into(), Value::String(v.into()));
    }
    let hash = sign(SECRET, &pipe_data(&req, &QUERYDR_REQUEST_FIELDS));
    req.insert("vnp_SecureHash".into(), Value::String(hash));
    Value::Object(req).to_string()
}

async fn answer_code(s: &Arc<Shared>, body: String) -> String {
    let r = merchant_api(State(s.clone()), body).await;
    let body = to_bytes(r.into_body(), 1 << 20).await.unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["vnp_ResponseCode"].as_str().map(String::from))
        .unwrap_or_default()
}

#[tokio::test]
async fn querydr_finds_an_order_by_its_reference_and_creation_date_in_version_2_1_0() {
    let s = shared();
    let p = order("t1");
    assert_eq!(pay_page_of(&s, &p).await, "00");
    let created = p["vnp_CreateDate"].clone();
    assert_eq!(
        answer_code(&s, querydr("t1", &created, "2.1.0")).await,
        "00"
    );
    assert_eq!(
        answer_code(&s, querydr("t1", "20200101000000", "2.1.0")).await,
        "91",
        "another date is another order"
    );
    assert_eq!(
        answer_code(&s, querydr("t1", &created, "2.0.0")).await,
        "03"
    );
}
