//! Paying a fine through VNPay, end to end over real HTTP on loopback: the
//! running server, the `vnpay-sandbox` standing in for VNPay, and a plain
//! HTTP client playing the citizen's browser (it follows the pay page's
//! forms and redirects). Each test has its own server, sandbox and
//! temporary directory, and cases moved to `notice_issued` through the
//! workflow (operator accepts, a police officer confirms, the system issues
//! the notice).
//!
//! Covered: a full payment (IPN → case paid, payment row paid, audit entry
//! `case.pay`); a forged IPN (97), a replayed and a duplicated IPN (02, paid
//! once), an unknown order (01), a wrong amount (04, nothing paid, the
//! order held for a person: no new order, not asked about again, the case
//! answered for the 20-day check; by IPN or by the status query);
//! cancelled and insufficient funds (not paid, case unchanged); money in
//! doubt (`07` suspected, `04` reversed: held for a person); the IPN
//! arriving after the return (the page says processing, then paid); an IPN
//! never sent, found by reconciliation, or by `start` asking the gateway
//! before it closes a stale order (and refusing while it cannot ask); a
//! success IPN racing a cancel of its order (applied, not 02), on SQLite
//! and PostgreSQL; a wrong amount noted for a person; an IPN from an
//! address not allowed; cases that cannot be paid; the same on PostgreSQL.

mod common;
mod payments_http;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use common::seed;
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::audit::{self, Verification};
use ingest_server::config::{Config, VnPayConfig};
use ingest_server::payments::{self, PaymentError, Payments, PaymentsConfig};
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use payments_http::{form_fields, get_url, http, shown};
use sqlx::Row;
use vnpay_sandbox::{Faults, Options, Sandbox};

const SITE: &str = "hn-dongda-xaday";
const TMN: &str = "TVHN0001";
const SECRET: &str = "SANDBOXSECRET0123456789ABCDEFGH";
const CITIZEN: &str = "203.0.113.7";

struct World {
    server: Running,
    sandbox: Sandbox,
    payments: Arc<Payments>,
    ids: Vec<String>,
    _dir: tempfile::TempDir,
    _pg: Option<Postgres>,
}

/// What a [`World`] is made with.
#[derive(Default)]
struct Setup {
    /// Cases stored.
    cases: usize,
    /// The first this many are taken to `notice_issued` (the others stay
    /// `new`).
    noticed: usize,
    /// The sandbox's failure injection.
    faults: Faults,
    /// `ipn_allowed_ips` (empty: anywhere).
    ipn_allowed_ips: Vec<&'static str>,
    /// On a PostgreSQL started for the test (else SQLite).
    postgres: bool,
}

impl World {
    /// A server with `cases` cases in `notice_issued`, paying through a
    /// sandbox with `faults`.
    async fn new(cases: usize, faults: Faults) -> World {
        World::build(Setup {
            cases,
            noticed: cases,
            faults,
            ..Setup::default()
        })
        .await
    }

    async fn build(setup: Setup) -> World {
        let Setup {
            cases,
            noticed,
            faults,
            ipn_allowed_ips,
            postgres,
        } = setup;
        let (pg, database_url) = if postgres {
            let pg = Postgres::start();
            let url = pg.fresh_database().await;
            (Some(pg), url)
        } else {
            (None, String::new())
        };
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let base = format!("http://127.0.0.1:{http_port}");
        let sandbox = Sandbox::start(Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            tmn_code: TMN.into(),
            hash_secret: SECRET.into(),
            ipn_url: format!("{base}/api/v1/payments/vnpay/ipn"),
            faults,
        })
        .await
        .unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        cfg.database.url = database_url;
        cfg.http.listen = format!("127.0.0.1:{http_port}").parse().unwrap();
        cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        cfg.payments.vnpay = Some(VnPayConfig {
            tmn_code: TMN.into(),
            hash_secret: SECRET.into(),
            pay_url: sandbox.pay_url(),
            api_url: sandbox.api_url(),
            return_url: format!("{base}/pay/vnpay/return"),
            ipn_allowed_ips: ipn_allowed_ips.iter().map(|s| s.to_string()).collect(),
            ..VnPayConfig::default()
        });
        cfg.validate().unwrap();
        let server = app::start(&cfg).await.unwrap();
        let ids = seed::seed(&server, SITE, cases).await;
        let payments = Payments::from_config(&cfg.payments, server.ingestor.context().clone())
            .unwrap()
            .unwrap();
        let w = World {
            server,
            sandbox,
            payments,
            ids,
            _dir: dir,
            _pg: pg,
        };
        for id in &w.ids[..noticed] {
            w.issue_notice(id).await;
        }
        w
    }

    async fn act(&self, id: &str, action: Action, who: &str, role: Role) {
        let ctx = self.server.ingestor.context();
        let r = Reviewer {
            db: &ctx.db,
            grammar: ctx.grammar,
            fines: &ctx.fines,
            registry: None,
        };
        let actor = Actor {
            id: who.into(),
            role,
        };
        r.act(id, &action, &actor, "", ingest_server::db::now_ms())
            .await
            .unwrap_or_else(|e| panic!("{} on {id}: {e}", action.name()));
    }

    /// new → in_review → accepted → confirmed (fine fixed) → notice_issued.
    async fn issue_notice(&self, id: &str) {
        self.act(id, Action::Claim, "op.an", Role::Operator).await;
        self.act(id, Action::Accept, "op.an", Role::Operator).await;
        self.act(id, Action::Confirm, "csgt.cuong", Role::Police)
            .await;
        self.act(id, Action::IssueNotice, "notices", Role::System)
            .await;
        assert_eq!(self.case(id).await.0, "notice_issued");
    }

    /// (state, fine_amount_vnd) of a case.
    async fn case(&self, id: &str) -> (String, i64) {
        let r = sqlx::query("SELECT state, fine_amount_vnd FROM events WHERE event_id = $1")
            .bind(id)
            .fetch_one(self.db().pool())
            .await
            .unwrap();
        (r.get(0), r.get(1))
    }

    fn db(&self) -> &ingest_server::db::Db {
        &self.server.ingestor.context().db
    }

    /// Starts a payment of `id`; the URL of the sandbox's pay page.
    async fn start(&self, id: &str) -> String {
        let ip: IpAddr = CITIZEN.parse().unwrap();
        payments::start(&self.payments, id, ip, ingest_server::db::now_ms())
            .await
            .unwrap()
    }

    /// The citizen opens the pay page and presses `button`; the redirect
    /// to the return page (not followed yet).
    async fn press(&self, pay_url: &str, button: &str) -> String {
        let page = get_url(pay_url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("VNPAY SANDBOX"), "the stand-in says so");
        let fields = form_fields(&page.body, button);
        let form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = http(self.sandbox.addr(), "POST", "/paymentv2/complete", &form).await;
        assert_eq!(r.status, 303, "{}", r.body);
        r.headers["location"].clone()
    }

    /// The payment rows of a case: (state, response_code, settled_by).
    async fn rows(&self, id: &str) -> Vec<(String, Option<String>, Option<String>)> {
        payments::of_case(self.db(), id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.state, p.response_code, p.settled_by))
            .collect()
    }

    /// Audit entries `case.pay` of a case, as (actor, role).
    async fn pay_entries(&self, id: &str) -> Vec<(String, String)> {
        sqlx::query(
            "SELECT actor, role FROM audit_log WHERE action = 'case.pay' AND subject = $1 \
             ORDER BY seq",
        )
        .bind(format!("case:{id}"))
        .fetch_all(self.db().pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    /// Calls the IPN route with a query, as VNPay would; (RspCode, Message).
    async fn ipn(&self, query: &str) -> (String, String) {
        let r = http(
            self.server.http_addr,
            "GET",
            &format!("/api/v1/payments/vnpay/ipn?{query}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        (
            v["RspCode"].as_str().unwrap().into(),
            v["Message"].as_str().unwrap().into(),
        )
    }

    /// Audit entries `payment.needs_person` of a case.
    async fn needs_person_entries(&self, id: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'payment.needs_person' \
             AND subject = $1",
        )
        .bind(format!("case:{id}"))
        .fetch_one(self.db().pool())
        .await
        .unwrap()
    }

    /// The same payments, but the gateway's merchant API (`querydr`)
    /// cannot be reached: nothing listens at its address.
    fn with_gateway_unreachable(&self) -> Arc<Payments> {
        let cfg = PaymentsConfig {
            vnpay: Some(VnPayConfig {
                tmn_code: TMN.into(),
                hash_secret: SECRET.into(),
                pay_url: self.sandbox.pay_url(),
                api_url: format!(
                    "http://127.0.0.1:{}/merchant_webapi/api/transaction",
                    free_port()
                ),
                return_url: format!("http://{}/pay/vnpay/return", self.server.http_addr),
                ..VnPayConfig::default()
            }),
        };
        Payments::from_config(&cfg, self.server.ingestor.context().clone())
            .unwrap()
            .unwrap()
    }

    fn rsp_codes(&self) -> Vec<String> {
        self.sandbox
            .ipn_log()
            .into_iter()
            .map(|r| r.rsp_code)
            .collect()
    }
}

fn query_of(url: &str) -> String {
    url.split_once('?').unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fine_is_paid_through_the_sandbox() {
    let w = World::build(Setup {
        cases: 2,
        noticed: 1,
        ..Setup::default()
    })
    .await;
    let (id, fresh) = (&w.ids[0], &w.ids[1]);
    let (_, amount) = w.case(id).await;
    assert!(amount > 0);

    let pay_url = w.start(id).await;
    assert!(pay_url.starts_with(&w.sandbox.pay_url()), "{pay_url}");
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(&query_of(&pay_url)).unwrap();
    assert_eq!(
        params["vnp_Amount"],
        (amount * 100).to_string(),
        "VND × 100"
    );
    assert_eq!(params["vnp_IpAddr"], CITIZEN);
    assert_eq!(params["vnp_TmnCode"], TMN);
    assert_eq!(params["vnp_Version"], "2.1.0");
    assert_eq!(w.rows(id).await, [("pending".into(), None, None)]);

    let back = w.press(&pay_url, "pay").await;
    assert!(back.contains("/pay/vnpay/return?"), "{back}");
    assert_eq!(w.rsp_codes(), ["00"], "{:?}", w.sandbox.ipn_log());
    let page = get_url(&back).await;
    assert_eq!(page.status, 200);
    assert_eq!(shown(&page), "ok", "{}", page.body);
    assert!(page.body.contains("Thanh toán thành công"));
    let vi = page.body.find("Thanh toán thành công").unwrap();
    assert!(
        vi < page.body.find("Payment successful").unwrap(),
        "Vietnamese first"
    );

    assert_eq!(w.case(id).await.0, "paid");
    let rec = &payments::of_case(w.db(), id).await.unwrap()[0];
    assert_eq!(rec.state, "paid");
    assert_eq!(rec.amount_vnd, amount);
    assert_eq!(rec.response_code.as_deref(), Some("00"));
    assert_eq!(rec.settled_by.as_deref(), Some("ipn"));
    assert!(rec.transaction_no.is_some() && rec.bank_tran_no.is_some());
    let raw: String = sqlx::query("SELECT ipn_params FROM payments WHERE txn_ref = $1")
        .bind(&rec.txn_ref)
        .fetch_one(w.db().pool())
        .await
        .unwrap()
        .get(0);
    assert!(raw.contains("vnp_SecureHash"), "raw IPN kept: {raw}");
    assert_eq!(
        w.pay_entries(id).await,
        [("payments:vnpay".to_string(), "system".to_string())]
    );
    assert!(matches!(
        audit::verify(w.db()).await.unwrap(),
        Verification::Intact { .. }
    ));

    // Showing the page again changes nothing; paying again is refused.
    assert_eq!(shown(&get_url(&back).await), "ok");
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let now = ingest_server::db::now_ms();
    assert!(matches!(
        payments::start(&w.payments, id, ip, now).await,
        Err(PaymentError::AlreadyPaid(_))
    ));
    // A case not yet at notice stage, and no case at all.
    assert!(matches!(
        payments::start(&w.payments, fresh, ip, now).await,
        Err(PaymentError::NotPayable { state, .. }) if state == "new"
    ));
    assert!(matches!(
        payments::start(&w.payments, "no-such-case", ip, now).await,
        Err(PaymentError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_duplicated_and_unknown_ipns() {
    let w = World::new(
        2,
        Faults {
            bad_hash_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let (id, second) = (&w.ids[0], &w.ids[1]);

    // The sandbox's IPN carries a bad hash: 97, nothing paid.
    let back = w.press(&w.start(id).await, "pay").await;
    assert_eq!(w.rsp_codes(), ["97"]);
    assert_eq!(w.case(id).await.0, "notice_issued");
    assert_eq!(w.rows(id).await[0].0, "pending");
    assert_eq!(shown(&get_url(&back).await), "wait", "processing");

    // A forged change of a validly signed message: 97.
    let signed = query_of(&back);
    let mut forged: BTreeMap<String, String> = serde_urlencoded::from_str(&signed).unwrap();
    forged.insert("vnp_Amount".into(), "100".into());
    assert_eq!(
        w.ipn(&serde_urlencoded::to_string(&forged).unwrap())
            .await
            .0,
        "97"
    );
    let twice = format!("{signed}&vnp_Amount=100");
    assert_eq!(w.ipn(&twice).await.0, "97", "a parameter named twice");
    assert_eq!(w.ipn("vnp_TxnRef=abc").await.0, "97", "no hash at all");

    // The genuine parameters (as the return carried them): paid, once.
    assert_eq!(
        w.ipn(&signed).await,
        ("00".into(), "Confirm Success".into())
    );
    assert_eq!(w.case(id).await.0, "paid");
    assert_eq!(
        w.ipn(&signed).await,
        ("02".into(), "Order already confirmed".into())
    );
    assert_eq!(w.pay_entries(id).await.len(), 1, "paid once");
    assert_eq!(shown(&get_url(&back).await), "ok");

    // An order we never made, validly signed: 01.
    let mut unknown: BTreeMap<String, String> = serde_urlencoded::from_str(&signed).unwrap();
    unknown.remove("vnp_SecureHash");
    unknown.insert("vnp_TxnRef".into(), "nosuchorder".into());
    let q = vnpay_sandbox::protocol::signed_query(SECRET, &unknown);
    assert_eq!(w.ipn(&q).await, ("01".into(), "Order not found".into()));

    // The sandbox sends the IPN twice: 00 then 02, paid once.
    w.sandbox.set_faults(Faults {
        duplicate_ipn: true,
        ..Faults::default()
    });
    w.press(&w.start(second).await, "pay").await;
    assert_eq!(w.rsp_codes()[1..], ["00", "02"]);
    assert_eq!(w.case(second).await.0, "paid");
    assert_eq!(w.pay_entries(second).await.len(), 1);
}

/// The gateway reports money taken at another amount than the fine (a
/// signed IPN): answered 04, nothing paid, and the order leaves `pending`
/// for `needs_person` with a note and an audit entry for a person. It no
/// longer blocks anything for ever: the reconciler does not ask about it,
/// a new order is refused with its own reason (no second payment while a
/// person settles the money; the citizen app says so in Vietnamese), the
/// return page says "do not pay again", and the 20-day check counts the
/// case as answered. A person applying the money (the row set `paid`)
/// lets the reconciler pay the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_amount_pays_nothing_and_is_held_for_a_person() {
    let w = World::new(
        1,
        Faults {
            wrong_amount_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let id = &w.ids[0];
    let back = w.press(&w.start(id).await, "pay").await;
    assert_eq!(w.rsp_codes(), ["04"]);
    assert_eq!(w.case(id).await.0, "notice_issued");
    assert_eq!(
        w.rows(id).await,
        [(
            payments::NEEDS_PERSON.into(),
            Some("00".into()),
            Some("ipn".into())
        )]
    );
    assert!(w.pay_entries(id).await.is_empty());
    // Not applied, but not ignored either: a note on the payment and an
    // audit entry for a person, once however often the gateway repeats it.
    let note = payments::of_case(w.db(), id).await.unwrap()[0]
        .note
        .clone()
        .unwrap_or_default();
    assert!(
        note.contains("needs a person") && note.contains("vnp_Amount"),
        "{note}"
    );
    assert_eq!(w.needs_person_entries(id).await, 1);
    let (_, amount) = w.case(id).await;
    let mut again: BTreeMap<String, String> = serde_urlencoded::from_str(&query_of(&back)).unwrap();
    again.remove("vnp_SecureHash");
    again.insert("vnp_Amount".into(), (amount * 100 + 10_000).to_string());
    let again = vnpay_sandbox::protocol::signed_query(SECRET, &again);
    assert_eq!(w.ipn(&again).await.0, "04");
    assert_eq!(w.needs_person_entries(id).await, 1, "noted once");
    // A failure reported with another amount took no money: nothing to
    // note.
    let mut failed: BTreeMap<String, String> = serde_urlencoded::from_str(&again).unwrap();
    failed.remove("vnp_SecureHash");
    failed.insert("vnp_ResponseCode".into(), "51".into());
    failed.insert("vnp_TransactionStatus".into(), "02".into());
    failed.insert("vnp_Amount".into(), "100".into());
    let failed = vnpay_sandbox::protocol::signed_query(SECRET, &failed);
    assert_eq!(w.ipn(&failed).await.0, "04");
    assert_eq!(w.needs_person_entries(id).await, 1);
    // A success at our amount afterwards is not applied either (which
    // amount was taken is for the person to find out): 02, noted for them.
    assert_eq!(w.ipn(&query_of(&back)).await.0, "02");
    assert_eq!(w.needs_person_entries(id).await, 2);
    assert_eq!(w.case(id).await.0, "notice_issued");
    // The person sees that money arrived and must not pay again.
    let page = get_url(&back).await;
    assert_eq!(shown(&page), "wait", "{}", page.body);
    assert!(
        page.body.contains("không nên thanh toán lại"),
        "{}",
        page.body
    );

    // No second order, now or long after the first one's expiry: the
    // citizen gets the reason, not "in progress" for ever.
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let now = ingest_server::db::now_ms();
    let past_grace = now + 15 * 60_000 + payments::PENDING_GRACE_MS + 60_000;
    for at in [now, past_grace] {
        match payments::start(&w.payments, id, ip, at).await {
            Err(e @ PaymentError::NeedsPerson { .. }) => assert!(e.is_refusal(), "{e}"),
            r => panic!("a new order while money waits for a person: {r:?}"),
        }
    }
    // The reconciler leaves it to the person.
    let report = payments::reconcile(&w.payments, past_grace).await.unwrap();
    assert_eq!(report.checked, 0, "{report:?}");
    assert_eq!(w.rows(id).await[0].0, payments::NEEDS_PERSON);
    // The citizen app explains it in Vietnamese.
    let session =
        ingest_server::citizen::start_session(w.db(), "001199012345", seed::OWNERS[0], now)
            .await
            .unwrap();
    let addr = w.server.http_addr;
    let path = format!("/app/cases/{id}/pay");
    let r = tokio::task::spawn_blocking(move || {
        let mut me = common::web::Client::new(addr);
        me.cookies.insert(
            ingest_server::citizen::CITIZEN_COOKIE.into(),
            session.token.clone(),
        );
        me.post(&path, &[("csrf", &session.csrf)])
    })
    .await
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("không khớp với mức phạt") && r.body.contains("tránh nộp hai lần"),
        "{}",
        r.body
    );
    // Past the 20-day deadline the case is neither overdue nor held for
    // ever: the owner paid something.
    let ctx = w.server.ingestor.context();
    let checked = ingest_server::notices::check_deadlines(ctx, now + 30 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(
        checked.answered_by_payment,
        std::slice::from_ref(id),
        "{checked:?}"
    );
    assert!(
        checked.held_for_payment.is_empty() && checked.marked_overdue.is_empty(),
        "{checked:?}"
    );
    assert_eq!(w.case(id).await.0, "notice_issued");

    // A person checked with the gateway and applies the money: the
    // reconciler pays the case with it.
    sqlx::query("UPDATE payments SET state = 'paid' WHERE event_id = $1")
        .bind(id)
        .execute(w.db().pool())
        .await
        .unwrap();
    let report = payments::reconcile(&w.payments, past_grace).await.unwrap();
    assert_eq!(report.repaired, 1, "{report:?}");
    assert_eq!(w.case(id).await.0, "paid");
}

/// The sandbox's gateway whose status query (`querydr`) reports every
/// order it knows at 100 VND more than it was made for, as a gateway
/// that took another amount would.
struct OtherAmountQueried(Arc<dyn payments::PaymentGateway>);

#[async_trait::async_trait]
impl payments::PaymentGateway for OtherAmountQueried {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn payment_url(&self, order: &payments::Order) -> Result<String, PaymentError> {
        self.0.payment_url(order).await
    }
    async fn verify_return(&self, query: &str) -> Result<payments::GatewayReport, PaymentError> {
        self.0.verify_return(query).await
    }
    async fn handle_ipn(&self, p: &Payments, query: &str, now: i64) -> payments::IpnAnswer {
        self.0.handle_ipn(p, query, now).await
    }
    async fn query(
        &self,
        payment: &payments::PendingPayment,
        now: i64,
    ) -> Result<payments::QueryAnswer, PaymentError> {
        Ok(match self.0.query(payment, now).await? {
            payments::QueryAnswer::Found(mut g) => {
                g.amount_vnd = g.amount_vnd.map(|a| a + 100);
                let theirs = g.amount_vnd.map(|a| (a * 100).to_string());
                g.raw["vnp_Amount"] = serde_json::json!(theirs);
                payments::QueryAnswer::Found(g)
            }
            other => other,
        })
    }
}

/// The IPN is lost and the status query reports the order paid at another
/// amount: the reconciler holds it for a person once (`needs_person`) and
/// never asks about it again, so it neither fills the reconciler's window
/// nor blocks the case as "in progress" for ever; `start` refuses a new
/// order with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_query_at_another_amount_holds_the_order_for_a_person() {
    let w = World::new(
        1,
        Faults {
            drop_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let id = &w.ids[0];
    let p = Payments::new(
        w.server.ingestor.context().clone(),
        Arc::new(OtherAmountQueried(w.payments.gateway.clone())),
        w.payments.settings.clone(),
    );
    w.press(&w.start(id).await, "pay").await;
    assert!(w.rsp_codes().is_empty(), "the IPN is lost");
    let now = ingest_server::db::now_ms();
    let later = now + w.payments.settings.reconcile_after_ms + 60_000;
    let report = payments::reconcile(&p, later).await.unwrap();
    assert_eq!((report.checked, report.needs_person), (1, 1), "{report:?}");
    assert_eq!(
        w.rows(id).await,
        [(payments::NEEDS_PERSON.into(), None, Some("querydr".into()))]
    );
    assert_eq!(w.needs_person_entries(id).await, 1);
    assert_eq!(w.case(id).await.0, "notice_issued");
    // Asked once: the next passes, long after expiry, leave it alone.
    let past_grace = now + 15 * 60_000 + payments::PENDING_GRACE_MS + 60_000;
    for at in [later + 60_000, past_grace] {
        let report = payments::reconcile(&p, at).await.unwrap();
        assert_eq!(report, payments::ReconcileReport::default(), "{report:?}");
    }
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let held = payments::of_case(w.db(), id).await.unwrap()[0]
        .txn_ref
        .clone();
    assert!(matches!(
        payments::start(&p, id, ip, past_grace).await,
        Err(PaymentError::NeedsPerson { txn_ref, .. }) if txn_ref == held
    ));
    assert_eq!(w.needs_person_entries(id).await, 1);
}

/// A second payment for a case already paid (an old order's page paid
/// after the order was closed and another one paid the fine) is kept on
/// record for a person to refund, with its history, and audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_for_a_case_already_paid_is_marked_for_a_refund() {
    let w = World::new(1, Faults::default()).await;
    let id = &w.ids[0];
    let old_page = w.start(id).await;
    let now = ingest_server::db::now_ms();
    let report = payments::reconcile(&w.payments, now + 30 * 60_000)
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    w.press(&w.start(id).await, "pay").await;
    assert_eq!(w.case(id).await.0, "paid");
    let back = w.press(&old_page, "pay").await;
    let rows = payments::of_case(w.db(), id).await.unwrap();
    assert_eq!(rows.len(), 2);
    let note = rows[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("after the order was cancelled") && note.contains("refund"),
        "{note}"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'payment.needs_person' AND subject = $1",
    )
    .bind(format!("case:{id}"))
    .fetch_one(w.db().pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);
    // The person sees it went through (it did), not a failure to retry.
    assert_ne!(shown(&get_url(&back).await), "fail");
}

/// An order nobody settles (no reconciler runs) does not block the case
/// for ever: an hour past its expiry it is closed and a new one may start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_never_settled_does_not_block_the_case_for_ever() {
    let w = World::new(1, Faults::default()).await;
    let id = &w.ids[0];
    let _abandoned = w.start(id).await;
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let now = ingest_server::db::now_ms();
    assert!(matches!(
        payments::start(&w.payments, id, ip, now + 30 * 60_000).await,
        Err(PaymentError::InProgress { .. })
    ));
    let past_grace = now + 15 * 60_000 + payments::PENDING_GRACE_MS + 60_000;
    assert!(
        payments::start(&w.payments, id, ip, past_grace)
            .await
            .is_ok()
    );
    let states: Vec<String> = w.rows(id).await.into_iter().map(|r| r.0).collect();
    assert_eq!(states, ["cancelled", "pending"]);
}

/// The person paid at the bank and the IPN was lost; no reconciler asked
/// about the order before the person came back an hour past its expiry.
/// `start` must not close that order on its own (the fine would be paid
/// twice): it asks the gateway, which says paid, and the case is paid with
/// it. While the gateway cannot be asked, no new order is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_whose_ipn_was_lost_is_never_cancelled_by_a_new_start() {
    let w = World::new(
        1,
        Faults {
            drop_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let id = &w.ids[0];
    w.press(&w.start(id).await, "pay").await;
    assert!(w.rsp_codes().is_empty(), "the IPN is lost");
    let txn_ref = payments::of_case(w.db(), id).await.unwrap()[0]
        .txn_ref
        .clone();
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let now = ingest_server::db::now_ms();
    let past_grace = now + 15 * 60_000 + payments::PENDING_GRACE_MS + 60_000;

    // The gateway cannot be asked: refused, the order kept as it is.
    let blind = w.with_gateway_unreachable();
    match payments::start(&blind, id, ip, past_grace).await {
        Err(e @ PaymentError::PreviousOrderUnknown { .. }) => {
            assert!(!e.is_refusal(), "not the person's doing");
            assert!(e.to_string().contains(&txn_ref), "{e}");
        }
        r => panic!("a new order while the old one may be paid: {r:?}"),
    }
    assert_eq!(w.rows(id).await, [("pending".into(), None, None)]);
    assert_eq!(w.case(id).await.0, "notice_issued");

    // The gateway answers: paid. The case is paid with it; no new order.
    assert!(matches!(
        payments::start(&w.payments, id, ip, past_grace).await,
        Err(PaymentError::AlreadyPaid(_))
    ));
    assert_eq!(
        w.rows(id).await,
        [("paid".into(), None, Some("querydr".into()))]
    );
    assert_eq!(w.case(id).await.0, "paid");
    assert_eq!(w.pay_entries(id).await.len(), 1);
}

/// A success IPN races a cancel of its order (the reconciler's "expired
/// unpaid", after a status query said the order was not finished): the
/// IPN read the row pending, the cancel committed before the IPN's write.
/// The money was taken: the IPN must apply it as a late payment (00), not
/// answer "already confirmed" (02, and VNPay stops retrying) and leave the
/// row cancelled and the case unpaid.
async fn a_success_racing_a_cancel(postgres: bool) {
    let w = World::build(Setup {
        cases: 1,
        noticed: 1,
        faults: Faults {
            hold_ipn: true,
            ..Faults::default()
        },
        postgres,
        ..Setup::default()
    })
    .await;
    let id = &w.ids[0];
    w.press(&w.start(id).await, "pay").await;
    let txn_ref = payments::of_case(w.db(), id).await.unwrap()[0]
        .txn_ref
        .clone();
    let pool = w.db().pool();
    let cancel = "UPDATE payments SET state = 'cancelled', note = 'expired unpaid', \
                  settled_by = 'querydr' WHERE txn_ref = $1 AND state = 'pending'";
    let sent = if postgres {
        // A real race: the cancel holds the row until the IPN's UPDATE
        // waits for it, then commits; PostgreSQL re-checks the IPN's
        // `WHERE state = 'pending'` on the cancelled row: 0 rows.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(cancel)
            .bind(&txn_ref)
            .execute(&mut *tx)
            .await
            .unwrap();
        let sandbox = w.sandbox.clone();
        let ipn = tokio::spawn(async move { sandbox.release_held_ipns().await });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE 'UPDATE payments SET state = $1%'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the IPN never reached its write"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tx.commit().await.unwrap();
        ipn.await.unwrap()
    } else {
        // SQLite runs one writer at a time, so the race is staged: the
        // IPN's write (pending → paid) first commits the cancel, then is
        // skipped (RAISE(IGNORE)), exactly what it finds when the cancel
        // commits between its read and its write.
        sqlx::raw_sql(
            "CREATE TRIGGER race BEFORE UPDATE ON payments \
             WHEN OLD.state = 'pending' AND NEW.state = 'paid' BEGIN \
             UPDATE payments SET state = 'cancelled', note = 'expired unpaid', \
             settled_by = 'querydr' WHERE txn_ref = NEW.txn_ref; \
             SELECT RAISE(IGNORE); END",
        )
        .execute(pool)
        .await
        .unwrap();
        let sent = w.sandbox.release_held_ipns().await;
        sqlx::raw_sql("DROP TRIGGER race")
            .execute(pool)
            .await
            .unwrap();
        sent
    };
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rsp_code, "00", "{:?}", sent[0]);
    let rec = &payments::of_case(w.db(), id).await.unwrap()[0];
    assert_eq!(rec.state, "paid", "{rec:?}");
    assert!(
        rec.note
            .as_deref()
            .unwrap_or("")
            .contains("after the order was cancelled"),
        "{rec:?}"
    );
    assert_eq!(w.case(id).await.0, "paid");
    assert_eq!(w.pay_entries(id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_racing_a_cancel_is_applied_not_answered_02() {
    a_success_racing_a_cancel(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_racing_a_cancel_on_postgres() {
    a_success_racing_a_cancel(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_insufficient_funds_leave_the_case_unpaid() {
    let w = World::new(1, Faults::default()).await;
    let id = &w.ids[0];

    let back = w.press(&w.start(id).await, "cancel").await;
    assert_eq!(w.rsp_codes(), ["00"], "a processed failure is confirmed");
    let page = get_url(&back).await;
    assert_eq!(shown(&page), "fail");
    assert!(
        page.body.contains("Khách hàng hủy giao dịch"),
        "{}",
        page.body
    );

    let back = w.press(&w.start(id).await, "insufficient").await;
    assert_eq!(w.rsp_codes(), ["00", "00"]);
    let page = get_url(&back).await;
    assert_eq!(shown(&page), "fail");
    assert!(page.body.contains("không đủ số dư"), "{}", page.body);

    assert_eq!(
        w.rows(id).await,
        [
            ("cancelled".into(), Some("24".into()), Some("ipn".into())),
            ("failed".into(), Some("51".into()), Some("ipn".into())),
        ]
    );
    assert_eq!(w.case(id).await.0, "notice_issued");
    assert!(w.pay_entries(id).await.is_empty());

    // And the person can still pay.
    w.press(&w.start(id).await, "pay").await;
    assert_eq!(w.case(id).await.0, "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ipn_may_arrive_after_the_return() {
    let w = World::new(
        1,
        Faults {
            hold_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let id = &w.ids[0];
    let back = w.press(&w.start(id).await, "pay").await;
    assert!(w.rsp_codes().is_empty());
    let page = get_url(&back).await;
    assert_eq!(shown(&page), "wait");
    assert!(page.body.contains("Đang xử lý"), "{}", page.body);
    assert!(
        page.body.contains("http-equiv=\"refresh\""),
        "it looks again"
    );
    assert_eq!(
        w.case(id).await.0,
        "notice_issued",
        "the return changes nothing"
    );

    let sent = w.sandbox.release_held_ipns().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rsp_code, "00", "{:?}", sent[0]);
    assert_eq!(w.case(id).await.0, "paid");
    assert_eq!(shown(&get_url(&back).await), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_finds_a_payment_whose_ipn_never_came() {
    let w = World::new(
        2,
        Faults {
            drop_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let (id, abandoned) = (&w.ids[0], &w.ids[1]);
    let back = w.press(&w.start(id).await, "pay").await;
    // The person opens the pay page of the other case and walks away.
    let page = get_url(&w.start(abandoned).await).await;
    assert_eq!(page.status, 200);
    assert!(w.rsp_codes().is_empty());
    assert_eq!(shown(&get_url(&back).await), "wait");

    let now = ingest_server::db::now_ms();
    let report = payments::reconcile(&w.payments, now).await.unwrap();
    assert_eq!(report.checked, 0, "too young to ask about: {report:?}");

    let later = now + 30 * 60_000;
    let report = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!(
        (report.checked, report.paid, report.expired, report.errors),
        (2, 1, 1, 0),
        "{report:?}"
    );
    assert_eq!(w.case(id).await.0, "paid");
    assert_eq!(w.rows(id).await[0].0, "paid");
    assert_eq!(w.rows(id).await[0].2.as_deref(), Some("querydr"));
    assert_eq!(w.pay_entries(id).await.len(), 1);
    assert_eq!(w.case(abandoned).await.0, "notice_issued");
    assert_eq!(w.rows(abandoned).await[0].0, "cancelled");
    assert_eq!(shown(&get_url(&back).await), "ok");

    let again = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!(again, payments::ReconcileReport::default());
}

/// The person is still at the bank's step when the order expires here and
/// the reconciler cancels it; then the bank completes and the gateway
/// reports it paid. The money was taken: the case is paid with it, not
/// left unpaid with the money gone. Meanwhile no second order could be
/// started for the case, and two starts at once make one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_taken_after_the_order_was_closed_here_is_applied() {
    let w = World::new(2, Faults::default()).await;
    let (id, other) = (&w.ids[0], &w.ids[1]);
    let url = w.start(id).await;
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let now = ingest_server::db::now_ms();
    // An order past its expiry, not yet settled, still blocks a new one.
    match payments::start(&w.payments, id, ip, now + 16 * 60_000).await {
        Err(PaymentError::InProgress { until, .. }) => assert!(until > now + 16 * 60_000),
        r => panic!("a second order while one may still complete: {r:?}"),
    }
    let later = now + 30 * 60_000;
    let report = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(w.rows(id).await[0].0, "cancelled");
    // The bank finishes now.
    let back = w.press(&url, "pay").await;
    assert_eq!(w.rsp_codes(), vec!["00".to_string()]);
    assert_eq!(w.case(id).await.0, "paid");
    let rows = payments::of_case(w.db(), id).await.unwrap();
    assert_eq!(rows[0].state, "paid");
    assert!(
        rows[0]
            .note
            .as_deref()
            .unwrap_or("")
            .contains("after the order was cancelled"),
        "{rows:?}"
    );
    assert_eq!(shown(&get_url(&back).await), "ok");

    // Two starts at once for the other case (a double click): one order,
    // whose page both are sent to.
    let (a, b) = tokio::join!(
        payments::start(&w.payments, other, ip, now),
        payments::start(&w.payments, other, ip, now)
    );
    assert!(
        a.is_ok() && a.as_ref().ok() == b.as_ref().ok(),
        "{a:?} {b:?}"
    );
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments WHERE event_id = $1 AND state = 'pending'",
    )
    .bind(other)
    .fetch_one(w.db().pool())
    .await
    .unwrap();
    assert_eq!(pending, 1);
}

/// The person cancels at the gateway and the notification is lost: the
/// reconciler settles the order from a status query, whose own code says
/// nothing about the payment. The return page then shows why it failed,
/// never "successful" under a failure heading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_found_by_the_reconciler_reads_as_a_failure() {
    let w = World::new(
        1,
        Faults {
            drop_ipn: true,
            ..Faults::default()
        },
    )
    .await;
    let id = &w.ids[0];
    let back = w.press(&w.start(id).await, "cancel").await;
    let later = ingest_server::db::now_ms() + 30 * 60_000;
    let report = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let rows = w.rows(id).await;
    assert_eq!(
        rows[0].1, None,
        "no payment code from a status query: {rows:?}"
    );
    let page = get_url(&back).await;
    assert_eq!(shown(&page), "fail");
    assert!(!page.body.contains("Giao dịch thành công"), "{}", page.body);
    assert!(
        page.body.contains("Khách hàng hủy giao dịch"),
        "{}",
        page.body
    );
}

/// VNPay's `07` (money deducted, the transaction suspected) and status
/// `04` (reversed: the bank took it, VNPay did not complete it) are neither
/// paid nor failed: the order is held for a person (answered 00, noted,
/// audited), the return page tells the citizen not to pay again, and no
/// second order is started — recorded as a failure, the page invited a
/// second payment of the same fine. Found by the IPN, by the status query
/// when the IPN is lost, and for an order already closed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_in_doubt_is_held_for_a_person_not_failed() {
    let w = World::new(3, Faults::default()).await;
    let (by_ipn, by_query, reversed) = (&w.ids[0], &w.ids[1], &w.ids[2]);
    let ip: IpAddr = CITIZEN.parse().unwrap();
    let now = ingest_server::db::now_ms();

    // By the IPN.
    let back = w.press(&w.start(by_ipn).await, "suspect").await;
    assert_eq!(w.rsp_codes(), ["00"], "a processed report is confirmed");
    assert_eq!(
        w.rows(by_ipn).await,
        [(
            payments::NEEDS_PERSON.into(),
            Some("07".into()),
            Some("ipn".into())
        )]
    );
    let note = payments::of_case(w.db(), by_ipn).await.unwrap()[0]
        .note
        .clone()
        .unwrap_or_default();
    assert!(
        note.contains("needs a person") && note.contains("vnp_ResponseCode 07"),
        "{note}"
    );
    assert_eq!(w.needs_person_entries(by_ipn).await, 1);
    assert_eq!(w.case(by_ipn).await.0, "notice_issued");
    let page = get_url(&back).await;
    assert_eq!(shown(&page), "wait", "{}", page.body);
    assert!(
        page.body.contains("không nên thanh toán lại"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("thử lại"), "{}", page.body);
    assert!(matches!(
        payments::start(&w.payments, by_ipn, ip, now).await,
        Err(PaymentError::NeedsPerson { .. })
    ));
    // Nor can it be contested meanwhile: the owner paid something, and a
    // contested case could be neither paid with it nor withdrawn.
    let ctx = w.server.ingestor.context();
    let contest = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: None,
    }
    .act(
        by_ipn,
        &Action::Contest,
        &Actor {
            id: "citizen:x".into(),
            role: Role::System,
        },
        "contest 1",
        now,
    )
    .await;
    assert!(
        matches!(
            contest,
            Err(ingest_server::review::ReviewError::Refused(
                ingest_server::workflow::WorkflowError::PaymentInFlight { paid: false }
            ))
        ),
        "{contest:?}"
    );
    // Repeated: confirmed once, noted once.
    assert_eq!(w.ipn(&query_of(&back)).await.0, "02");
    assert_eq!(w.needs_person_entries(by_ipn).await, 1);

    // The IPN is lost: before the status query the return page already
    // says not to pay again; the reconciler holds the order.
    w.sandbox.set_faults(Faults {
        drop_ipn: true,
        ..Faults::default()
    });
    let back = w.press(&w.start(by_query).await, "suspect").await;
    assert_eq!(w.rows(by_query).await[0].0, "pending");
    assert_eq!(shown(&get_url(&back).await), "wait");
    let later = now + w.payments.settings.reconcile_after_ms + 60_000;
    let report = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!((report.needs_person, report.failed), (1, 0), "{report:?}");
    assert_eq!(w.rows(by_query).await[0].0, payments::NEEDS_PERSON);
    assert_eq!(w.needs_person_entries(by_query).await, 1);

    // Status 04 for an order the reconciler closed as expired: held too.
    let url = w.start(reversed).await;
    let report = payments::reconcile(&w.payments, now + 30 * 60_000)
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    let back = w.press(&url, "pay").await;
    let mut r: BTreeMap<String, String> = serde_urlencoded::from_str(&query_of(&back)).unwrap();
    r.remove("vnp_SecureHash");
    r.insert("vnp_TransactionStatus".into(), "04".into());
    let r = vnpay_sandbox::protocol::signed_query(SECRET, &r);
    assert_eq!(w.ipn(&r).await.0, "00");
    assert_eq!(w.rows(reversed).await[0].0, payments::NEEDS_PERSON);
    assert_eq!(w.case(reversed).await.0, "notice_issued");
    assert_eq!(w.needs_person_entries(reversed).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipns_from_elsewhere_are_refused_when_a_list_is_set() {
    let w = World::build(Setup {
        cases: 1,
        noticed: 1,
        ipn_allowed_ips: vec!["198.51.100.1"],
        ..Setup::default()
    })
    .await;
    let id = &w.ids[0];
    let back = w.press(&w.start(id).await, "pay").await;
    let log = w.sandbox.ipn_log();
    assert_eq!(
        (log[0].status, log[0].rsp_code.as_str()),
        (403, "99"),
        "{log:?}"
    );
    assert_eq!(w.case(id).await.0, "notice_issued");
    assert_eq!(shown(&get_url(&back).await), "wait");
    // The reconciler still finds it.
    let later = ingest_server::db::now_ms() + 30 * 60_000;
    let report = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!(report.paid, 1, "{report:?}");
    assert_eq!(w.case(id).await.0, "paid");
}

/// The same SQL on PostgreSQL: a payment through the IPN, its replay, and
/// one found by reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_on_postgres() {
    let w = World::build(Setup {
        cases: 2,
        noticed: 2,
        postgres: true,
        ..Setup::default()
    })
    .await;
    let (id, lost) = (&w.ids[0], &w.ids[1]);
    let back = w.press(&w.start(id).await, "pay").await;
    assert_eq!(w.rsp_codes(), ["00"]);
    assert_eq!(w.case(id).await.0, "paid");
    assert_eq!(w.ipn(&query_of(&back)).await.0, "02");
    assert_eq!(w.pay_entries(id).await.len(), 1);

    w.sandbox.set_faults(Faults {
        drop_ipn: true,
        ..Faults::default()
    });
    w.press(&w.start(lost).await, "pay").await;
    assert_eq!(w.case(lost).await.0, "notice_issued");
    let later = ingest_server::db::now_ms() + 30 * 60_000;
    let report = payments::reconcile(&w.payments, later).await.unwrap();
    assert_eq!((report.checked, report.paid), (1, 1), "{report:?}");
    assert_eq!(w.case(lost).await.0, "paid");
    assert!(matches!(
        audit::verify(w.db()).await.unwrap(),
        Verification::Intact { .. }
    ));
}
