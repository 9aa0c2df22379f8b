//! Payments racing other replicas and case changes, on a real PostgreSQL
//! shared by two server "replicas" (the running server A, and B opened on
//! the same database with its own pool), with `vnpay-sandbox` as the
//! gateway. Each interleaving is forced, not hoped for: a trigger makes one
//! side wait on an advisory lock the test holds (only for the connections
//! of one replica, told apart by their `application_name`), the test runs
//! the other side while it waits (checking in `pg_stat_activity` that it
//! does), then lets it go.
//!
//! Covered: an IPN whose payment a reconciler on another replica could
//! repair between the payment's write and its case's (the payment is not
//! noted as a second one, the IPN answered 00); a payment started while
//! the fine is being withdrawn (no order on a closed case); a contest while
//! an order is pending (refused under the case lock); a second start of the
//! same case (the same order's page again, not a 15-minute lock-out).

mod common;
#[allow(dead_code)]
mod payments_http;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::seed;
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::{Config, VnPayConfig};
use ingest_server::ingest::Ingestor;
use ingest_server::payments::{self, PaymentError, Payments};
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role, WorkflowError};
use payments_http::{form_fields, get_url, http};
use sqlx::{Connection, Row};
use vnpay_sandbox::{Faults, Options, Sandbox};

const SITE: &str = "hn-dongda-xaday";
const TMN: &str = "TVHN0001";
const SECRET: &str = "SANDBOXSECRET0123456789ABCDEFGH";
const CITIZEN: &str = "203.0.113.7";

struct World {
    server: Running,
    sandbox: Sandbox,
    /// Replica A's payments (the running server's pool).
    a: Arc<Payments>,
    /// Replica B: another pool on the same database.
    b: Arc<Payments>,
    _b_ingestor: Ingestor,
    ids: Vec<String>,
    /// The database, for the test's own connections.
    url: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _pg: Postgres,
}

impl World {
    async fn new(faults: Faults) -> World {
        let pg = Postgres::start();
        let url = pg.fresh_database().await;
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
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
            data_dir: dir_a.path().to_path_buf(),
            ..Config::default()
        };
        cfg.database.url = format!("{url}?application_name=replica_a");
        cfg.http.listen = format!("127.0.0.1:{http_port}").parse().unwrap();
        cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        cfg.payments.vnpay = Some(VnPayConfig {
            tmn_code: TMN.into(),
            hash_secret: SECRET.into(),
            pay_url: sandbox.pay_url(),
            api_url: sandbox.api_url(),
            return_url: format!("{base}/pay/vnpay/return"),
            ..VnPayConfig::default()
        });
        cfg.validate().unwrap();
        let server = app::start(&cfg).await.unwrap();
        let ids = seed::seed(&server, SITE, 1).await;
        let a = Payments::from_config(&cfg.payments, server.ingestor.context().clone())
            .unwrap()
            .unwrap();
        let mut cfg_b = cfg.clone();
        cfg_b.data_dir = dir_b.path().to_path_buf();
        cfg_b.database.url = format!("{url}?application_name=replica_b");
        let b_ingestor = app::open(&cfg_b).await.unwrap();
        let b = Payments::from_config(&cfg_b.payments, b_ingestor.context().clone())
            .unwrap()
            .unwrap();
        let w = World {
            server,
            sandbox,
            a,
            b,
            _b_ingestor: b_ingestor,
            ids,
            url,
            _dirs: (dir_a, dir_b),
            _pg: pg,
        };
        let id = w.ids[0].clone();
        for (action, who, role) in [
            (Action::Claim, "op.an", Role::Operator),
            (Action::Accept, "op.an", Role::Operator),
            (Action::Confirm, "csgt.cuong", Role::Police),
            (Action::IssueNotice, "notices", Role::System),
        ] {
            w.act(&id, &action, who, role, "").await.unwrap();
        }
        w
    }

    fn db(&self) -> &ingest_server::db::Db {
        &self.server.ingestor.context().db
    }

    async fn act(
        &self,
        id: &str,
        action: &Action,
        who: &str,
        role: Role,
        reason: &str,
    ) -> Result<(), ReviewError> {
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
        r.act(id, action, &actor, reason, ingest_server::db::now_ms())
            .await
            .map(|_| ())
    }

    async fn state(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
            .bind(id)
            .fetch_one(self.db().pool())
            .await
            .unwrap()
    }

    async fn count(&self, sql: &'static str, id: &str) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(self.db().pool())
            .await
            .unwrap()
    }

    /// The citizen pays on the sandbox's page (the IPN is held back).
    async fn pay_at_the_bank(&self, pay_url: &str) {
        let page = get_url(pay_url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let fields = form_fields(&page.body, "pay");
        let form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = http(self.sandbox.addr(), "POST", "/paymentv2/complete", &form).await;
        assert_eq!(r.status, 303, "{}", r.body);
    }

    /// A connection of the test's own (not a replica's).
    async fn own_connection(&self) -> sqlx::AnyConnection {
        sqlx::AnyConnection::connect(&format!("{}?application_name=test", self.url))
            .await
            .unwrap()
    }
}

fn ip() -> IpAddr {
    CITIZEN.parse().unwrap()
}

/// Waits until `sql` (a count over `pg_stat_activity`) is above 0, or
/// `done` says the other side finished without waiting.
async fn until_waiting(conn: &mut sqlx::AnyConnection, sql: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if n > 0 || done() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing waited: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replica A's IPN marks its payment paid; before A pays the case, the
/// reconciler on replica B runs its repair of "paid payments on unpaid
/// cases" (it has no age filter). A's own payment must not come out of
/// this as "already paid by another payment: refund this one", nor the
/// IPN be answered 02: the only payment paid the fine.
///
/// Forced: every statement of replica A on `audit_head` (the case lock,
/// taken by each case change) waits on an advisory lock the test holds;
/// while A waits there, B reconciles; then A goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_on_another_replica_does_not_make_the_only_payment_a_double_one() {
    let w = World::new(Faults {
        hold_ipn: true,
        ..Faults::default()
    })
    .await;
    let id = &w.ids[0];
    let url = payments::start(&w.a, id, ip(), ingest_server::db::now_ms())
        .await
        .unwrap();
    w.pay_at_the_bank(&url).await;
    let mut me = w.own_connection().await;
    sqlx::raw_sql(
        "CREATE FUNCTION stall_replica_a() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF current_setting('application_name') = 'replica_a' THEN \
         PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); END IF; \
         RETURN NULL; END $$; \
         CREATE TRIGGER stall_replica_a BEFORE UPDATE ON audit_head \
         FOR EACH STATEMENT EXECUTE FUNCTION stall_replica_a();",
    )
    .execute(&mut me)
    .await
    .unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut me)
        .await
        .unwrap();
    let sandbox = w.sandbox.clone();
    let ipn = tokio::spawn(async move { sandbox.release_held_ipns().await });
    until_waiting(
        &mut me,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'replica_a' \
         AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        || ipn.is_finished(),
    )
    .await;
    // Replica B's reconciler, while A's IPN waits.
    let report = payments::reconcile(&w.b, ingest_server::db::now_ms())
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut me)
        .await
        .unwrap();
    let sent = ipn.await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].rsp_code, "00",
        "the only payment answered as a second one ({report:?}): {:?}",
        sent[0]
    );
    assert_eq!(w.state(id).await, "paid");
    let rec = &payments::of_case(w.db(), id).await.unwrap()[0];
    assert_eq!(rec.state, "paid");
    assert_eq!(rec.note, None, "no refund note on the only payment");
    assert_eq!(
        w.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'payment.needs_person' \
             AND subject = 'case:' || $1",
            id
        )
        .await,
        0
    );
    assert_eq!(
        w.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'case.pay' \
             AND subject = 'case:' || $1",
            id
        )
        .await,
        1
    );
    // The case's payment is named on its transition.
    let detail: String =
        sqlx::query("SELECT detail FROM case_transitions WHERE event_id = $1 AND action = 'pay'")
            .bind(id)
            .fetch_one(w.db().pool())
            .await
            .unwrap()
            .get(0);
    assert!(detail.contains(&rec.txn_ref), "{detail}");
}

/// Police withdraw the fine while the owner presses "pay": the withdrawal
/// has counted the open payments (none) and is writing the case `closed`
/// when `start` runs. No order may be made for the closed case.
///
/// Forced: the withdrawal's UPDATE to `closed` waits (a row trigger) on an
/// advisory lock the test holds; `start` runs meanwhile, and the lock goes
/// once `start` has finished or waits itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_order_is_made_for_a_fine_being_withdrawn() {
    let w = World::new(Faults::default()).await;
    let id = w.ids[0].clone();
    let mut me = w.own_connection().await;
    sqlx::raw_sql(
        "CREATE FUNCTION stall_close() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         PERFORM pg_advisory_lock(4243); PERFORM pg_advisory_unlock(4243); RETURN NEW; END $$; \
         CREATE TRIGGER stall_close BEFORE UPDATE ON events FOR EACH ROW \
         WHEN (NEW.state = 'closed') EXECUTE FUNCTION stall_close();",
    )
    .execute(&mut me)
    .await
    .unwrap();
    sqlx::query("SELECT pg_advisory_lock(4243)")
        .execute(&mut me)
        .await
        .unwrap();
    let withdraw = {
        let server_ctx = w.server.ingestor.context().clone();
        let id = id.clone();
        tokio::spawn(async move {
            let r = Reviewer {
                db: &server_ctx.db,
                grammar: server_ctx.grammar,
                fines: &server_ctx.fines,
                registry: None,
            };
            let police = Actor {
                id: "csgt.cuong".into(),
                role: Role::Police,
            };
            r.act(
                &id,
                &Action::Withdraw,
                &police,
                "wrong vehicle",
                ingest_server::db::now_ms(),
            )
            .await
            .map(|_| ())
        })
    };
    until_waiting(
        &mut me,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND wait_event = 'advisory'",
        || withdraw.is_finished(),
    )
    .await;
    assert!(!withdraw.is_finished(), "the withdrawal is under way");
    let start = {
        let a = w.a.clone();
        let id = id.clone();
        tokio::spawn(
            async move { payments::start(&a, &id, ip(), ingest_server::db::now_ms()).await },
        )
    };
    // `start` either finishes while the withdrawal is held, or waits for
    // the case lock the withdrawal holds.
    until_waiting(
        &mut me,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND wait_event <> 'advisory'",
        || start.is_finished(),
    )
    .await;
    sqlx::query("SELECT pg_advisory_unlock(4243)")
        .execute(&mut me)
        .await
        .unwrap();
    withdraw.await.unwrap().unwrap();
    let started = start.await.unwrap();
    assert_eq!(w.state(&id).await, "closed");
    let pending = w
        .count(
            "SELECT COUNT(*) FROM payments WHERE event_id = $1 AND state = 'pending'",
            &id,
        )
        .await;
    assert_eq!(pending, 0, "an order on a withdrawn fine: {started:?}");
    assert!(
        matches!(&started, Err(PaymentError::NotPayable { state, .. }) if state == "closed"),
        "{started:?}"
    );
}

/// A contest while an order is pending at the gateway is refused by the
/// workflow itself, in the contest's transaction under the case lock that
/// `start` takes too (the citizen app's own earlier check runs without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contest_is_refused_under_the_lock_while_an_order_is_pending() {
    let w = World::new(Faults::default()).await;
    let id = &w.ids[0];
    payments::start(&w.a, id, ip(), ingest_server::db::now_ms())
        .await
        .unwrap();
    let r = w
        .act(id, &Action::Contest, "citizen:x", Role::System, "contest 1")
        .await;
    assert!(
        matches!(
            r,
            Err(ReviewError::Refused(WorkflowError::PaymentInFlight {
                paid: false
            }))
        ),
        "{r:?}"
    );
    assert_eq!(w.state(id).await, "notice_issued");
}

/// A double click or the back button on the pay form: the second `start`
/// answers the same order's page (same `vnp_TxnRef`, same signed URL), not
/// a refusal for the order's 15 minutes; one order is recorded. Near its
/// expiry the order is no longer offered (the person waits for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_answers_the_open_orders_page_again() {
    let w = World::new(Faults::default()).await;
    let id = &w.ids[0];
    let now = ingest_server::db::now_ms();
    let first = payments::start(&w.a, id, ip(), now).await.unwrap();
    let again = payments::start(&w.a, id, ip(), now + 1_000).await.unwrap();
    assert_eq!(first, again);
    // Also from the other replica, a few minutes later.
    let later = payments::start(&w.b, id, ip(), now + 5 * 60_000)
        .await
        .unwrap();
    assert_eq!(first, later);
    let txn = |u: &str| {
        u.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("vnp_TxnRef="))
            .map(str::to_owned)
    };
    let rows = payments::of_case(w.db(), id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(txn(&again).as_deref(), Some(rows[0].txn_ref.as_str()));
    // The page works: the sandbox takes the rebuilt URL.
    assert_eq!(get_url(&again).await.status, 200);
    // 30 s before its expiry it is not offered again.
    let expiry = now + 15 * 60_000;
    assert!(matches!(
        payments::start(&w.a, id, ip(), expiry - 30_000).await,
        Err(PaymentError::InProgress { until, .. }) if until == expiry
    ));
}
