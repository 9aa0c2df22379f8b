//! Fine notices end to end, over real sockets on loopback against the real
//! server (`app::start`): the notice and its deliveries written in the
//! confirming transaction (and not at all when the confirmation fails);
//! signed webhooks, retried with backoff under the same delivery id until
//! the case is `notice_issued`; Web Push checked by an independent receiver
//! (Node's crypto for the VAPID JWT, the `http_ece` package to decrypt:
//! `tests/push/push.js`), and a 410 that removes the subscription; e-mail
//! to a small SMTP server speaking the protocol's server side; the 10-day
//! flag and the 20-day overdue marking with times passed in; a notice that
//! gets through days after the confirmation stating the deadline that is
//! enforced (and that the citizen app shows); a payment in
//! flight (its IPN held back by `vnpay-sandbox`) holding the 20-day
//! warning, and a payment withdrawing a warning already recorded; a retry
//! dropped, not sent, once the case is paid; a case confirmed while its
//! owner's lookup was failing (the registry gateway of
//! `tests/registry_http/gateway.rs` down) whose owner the sweeper finds
//! later gets its deliveries then. The outbox test also runs on a real
//! PostgreSQL.
//!
//! Node.js and `tests/push/node_modules` (`make setup-node-push`) are
//! required for the Web Push test, which fails (never skips) without them.

mod common;
#[path = "registry_http/gateway.rs"]
#[allow(dead_code)]
mod gateway;
mod notices_support;
#[allow(dead_code)]
mod payments_http;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::{Config, SmtpConfig};
use ingest_server::db::{Backend, now_ms};
use ingest_server::notices::{self, Notices};
use ingest_server::review::{Applied, ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role, WorkflowError};
use notices_support::*;
use serde_json::Value;
use sqlx::Row;

const SITE: &str = "hn-hoankiem-trangtien";
const ADMIN: &str = "admin-token-0123456789";
const BASE: &str = "https://phatnguoi.example.gov.vn";
const DAY: i64 = 86_400_000;
/// The seeded owner of 30A12345 (tests/common/seed.rs).
const OWNER_NID: &str = "001199012345";

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
}

/// A server on loopback with notices tuned for tests; `tune` adds channels.
async fn start(
    dir: &Path,
    db_url: Option<&str>,
    tune: impl FnOnce(&mut Config),
) -> (Running, Config) {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    if let Some(u) = db_url {
        cfg.database.url = u.to_string();
    }
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.admin.token = ADMIN.into();
    cfg.notices.public_base_url = BASE.into();
    cfg.notices.authority = "Phòng Cảnh sát giao thông Công an TP Hà Nội".into();
    cfg.notices.vapid.subject = "mailto:ioc@example.gov.vn".into();
    cfg.notices.vapid.endpoint_hosts = push_hosts().endpoint_hosts;
    cfg.notices.poll_ms = 50;
    cfg.notices.retry_base_ms = 200;
    cfg.notices.retry_max_ms = 1000;
    tune(&mut cfg);
    cfg.validate().unwrap();
    (app::start(&cfg).await.unwrap(), cfg)
}

/// Push services allowed here: the test's own, on loopback.
fn push_hosts() -> notices::config::VapidConfig {
    notices::config::VapidConfig {
        endpoint_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    }
}

fn reviewer(server: &Running) -> Reviewer<'_> {
    let ctx = server.ingestor.context();
    Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    }
}

/// Claim and accept by an operator, then confirm by `officer`.
async fn confirm(server: &Running, id: &str, officer: &str) -> Result<Applied, ReviewError> {
    let r = reviewer(server);
    let op = actor("op.an", Role::Operator);
    let now = now_ms();
    r.act(id, &Action::Claim, &op, "", now).await.unwrap();
    r.act(id, &Action::Accept, &op, "", now).await.unwrap();
    r.act(id, &Action::Confirm, &actor(officer, Role::Police), "", now)
        .await
}

async fn one_text(server: &Running, sql: &str, id: &str) -> Option<String> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(id)
        .fetch_optional(server.ingestor.context().db.pool())
        .await
        .unwrap()
        .and_then(|r| r.get::<Option<String>, _>(0))
}

async fn state(server: &Running, id: &str) -> String {
    one_text(server, "SELECT state FROM events WHERE event_id = $1", id)
        .await
        .unwrap()
}

async fn count(server: &Running, sql: &str, id: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(id)
        .fetch_one(server.ingestor.context().db.pool())
        .await
        .unwrap()
        .get(0)
}

/// (channel, target, state, attempts) of a case's deliveries.
async fn deliveries(server: &Running, id: &str) -> Vec<(String, String, String, i64)> {
    sqlx::query(
        "SELECT channel, target, state, attempts FROM notice_deliveries WHERE event_id = $1 \
         ORDER BY channel, target",
    )
    .bind(id)
    .fetch_all(server.ingestor.context().db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

// -------------------------------------------------------------------- tests

/// The outbox on one database: written with the confirmation, not at all
/// when the confirmation fails; sent once per partner, retried until a
/// channel gets through; a refusing partner given up at once.
async fn outbox_with_the_confirmation(db_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[("/flaky", &[500, 503]), ("/refuses", &[400])]).await;
    let (server, cfg) = start(dir.path(), db_url.as_deref(), |c| {
        // No worker: the test drives the passes with its own clock.
        c.notices.enabled = false;
        c.notices.webhooks = vec![
            hook("flaky", format!("{url}/flaky"), "flaky-secret-0123456789"),
            hook(
                "refuses",
                format!("{url}/refuses"),
                "refuses-secret-0123456",
            ),
        ];
        c.notices.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: free_port(),
            from: "notices@example.gov.vn".into(),
            starttls: false,
            ..SmtpConfig::default()
        });
    })
    .await;
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.clone();
    let ids = seed::seed(&server, SITE, 3).await;
    // Two browsers of the owner subscribed (their push service is down),
    // one of someone else.
    let down = format!("http://127.0.0.1:{}", free_port());
    for (nid, ep) in [
        (OWNER_NID, "one"),
        (OWNER_NID, "two"),
        ("001088054321", "three"),
    ] {
        let sub = serde_json::json!({"endpoint": format!("{down}/push-{ep}"), "keys": {
            "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "auth": "BTBZMqHH6r4Tts7J_aSIgg"}});
        notices::subscribe(&db, &push_hosts(), nid, &sub.to_string())
            .await
            .unwrap();
    }
    assert!(
        notices::subscribe(
            &db,
            &push_hosts(),
            OWNER_NID,
            r#"{"endpoint":"http://push.example/x","keys":{"p256dh":"x","auth":"y"}}"#
        )
        .await
        .is_err(),
        "plain http off loopback and bad keys are refused"
    );
    // A subscription is a URL the server will POST to: only the push
    // services configured, never someone else's endpoint taken over.
    let keys = serde_json::json!({
        "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        "auth": "BTBZMqHH6r4Tts7J_aSIgg"});
    let elsewhere = serde_json::json!({"endpoint": "https://10.0.0.7/admin", "keys": keys});
    let e = notices::subscribe(&db, &push_hosts(), OWNER_NID, &elsewhere.to_string())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("push service"), "{e}");
    let theirs = serde_json::json!({"endpoint": format!("{down}/push-three"), "keys": keys});
    let e = notices::subscribe(&db, &push_hosts(), OWNER_NID, &theirs.to_string())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("someone else"), "{e}");
    let defaults = notices::config::VapidConfig::default();
    assert!(defaults.allows_endpoint_host("fcm.googleapis.com"));
    assert!(defaults.allows_endpoint_host("web.push.apple.com"));
    assert!(!defaults.allows_endpoint_host("push.apple.com.evil.example"));
    assert!(!defaults.allows_endpoint_host("127.0.0.1"));
    sqlx::query("UPDATE owners SET email = 'giang@example.vn' WHERE owner_id = 'o1'")
        .execute(db.pool())
        .await
        .unwrap();

    // Two-person rule: the confirmation fails before anything is written.
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    assert!(matches!(
        confirm(&server, a, "op.an").await,
        Err(ReviewError::Refused(WorkflowError::TwoPersonRule))
    ));
    let notices_of = "SELECT COUNT(*) FROM notices WHERE event_id = $1";
    let deliveries_of = "SELECT COUNT(*) FROM notice_deliveries WHERE event_id = $1";
    assert_eq!(count(&server, notices_of, a).await, 0);

    // A confirmation that fails after the notice was written (its audit
    // entry is refused) leaves no notice and no delivery behind.
    let refuse = match db.backend() {
        Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_confirm BEFORE INSERT ON audit_log \
             WHEN NEW.action = 'case.confirm' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_confirm() RETURNS trigger AS $$ BEGIN \
             IF NEW.action = 'case.confirm' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_confirm BEFORE INSERT ON audit_log FOR EACH ROW \
             EXECUTE FUNCTION refuse_confirm()",
        ],
    };
    for sql in refuse {
        sqlx::raw_sql(sql).execute(db.pool()).await.unwrap();
    }
    let err = confirm(&server, b, "csgt.cuong").await.unwrap_err();
    assert!(matches!(err, ReviewError::Db(_)), "{err:?}");
    assert_eq!(state(&server, b).await, "accepted");
    assert_eq!(count(&server, notices_of, b).await, 0);
    assert_eq!(count(&server, deliveries_of, b).await, 0);
    let drop = match db.backend() {
        Backend::Sqlite => "DROP TRIGGER refuse_confirm",
        Backend::Postgres => "DROP TRIGGER refuse_confirm ON audit_log",
    };
    sqlx::raw_sql(drop).execute(db.pool()).await.unwrap();

    // The confirmation writes one notice and its deliveries.
    confirm(&server, c, "csgt.cuong").await.unwrap();
    let t0 = now_ms();
    assert_eq!(count(&server, notices_of, c).await, 1);
    let owner_reads =
        "SELECT COUNT(*) FROM registry_access_log WHERE actor = 'notices' AND event_id = $1";
    assert_eq!(
        count(&server, owner_reads, c).await,
        1,
        "the owner read is logged"
    );
    let mut d = deliveries(&server, c).await;
    let mut targets: Vec<_> = d.iter().map(|x| (x.0.as_str(), x.2.as_str())).collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        [
            ("email", "pending"),
            ("webhook", "pending"),
            ("webhook", "pending"),
            ("webpush", "pending"),
            ("webpush", "pending"),
        ],
        "{d:?}"
    );
    let deadline = count(
        &server,
        "SELECT respond_by FROM notices WHERE event_id = $1",
        c,
    )
    .await;
    // To the end of the 20th day, Vietnam time (UTC+7): what the notice
    // text promises ("chậm nhất đến hết ngày …").
    assert!(
        deadline >= t0 + 20 * DAY - 60_000 && deadline < t0 + 21 * DAY,
        "respond_by 20 days on"
    );
    assert_eq!(
        (deadline + 1 + 7 * 3_600_000) % DAY,
        0,
        "the last ms of a Vietnamese day"
    );

    // The server's own worker is off; this one works on the test's clock.
    let n = Notices::new(&cfg, ctx.clone());
    n.deliver_due(t0).await.unwrap();
    d = deliveries(&server, c).await;
    let of = |d: &[(String, String, String, i64)], t: &str| {
        d.iter()
            .find(|x| x.1 == t)
            .map(|x| (x.2.clone(), x.3))
            .unwrap()
    };
    assert_eq!(of(&d, "flaky"), ("failed".into(), 1));
    assert_eq!(
        of(&d, "refuses"),
        ("dead".into(), 1),
        "400 is given up at once"
    );
    assert_eq!(of(&d, "owner").0, "failed", "no SMTP server there: retried");
    assert_eq!(state(&server, c).await, "confirmed");
    // Not due yet: nothing is attempted again right away.
    assert_eq!(n.deliver_due(t0 + 10).await.unwrap(), 0);
    n.deliver_due(t0 + 60_000).await.unwrap();
    assert_eq!(
        of(&deliveries(&server, c).await, "flaky"),
        ("failed".into(), 2)
    );
    assert_eq!(
        state(&server, c).await,
        "confirmed",
        "no channel through yet"
    );
    n.deliver_due(t0 + 120_000).await.unwrap();
    assert_eq!(
        of(&deliveries(&server, c).await, "flaky"),
        ("sent".into(), 3)
    );
    assert_eq!(state(&server, c).await, "notice_issued");
    assert_eq!(
        one_text(
            &server,
            "SELECT issued_via FROM notices WHERE event_id = $1",
            c
        )
        .await
        .as_deref(),
        Some("webhook")
    );
    // Sent is final: later passes never send it again.
    n.deliver_due(t0 + 3_600_000).await.unwrap();
    let flaky = rx.got("/flaky");
    assert_eq!(flaky.len(), 3);
    assert_eq!(rx.got("/refuses").len(), 1);
    for g in &flaky {
        let body = verify_webhook(g, "flaky-secret-0123456789");
        assert_eq!(
            g.headers["x-tv-delivery"],
            flaky[0].headers["x-tv-delivery"]
        );
        assert_eq!(body["recipient"]["national_id"], OWNER_NID);
        let raw = String::from_utf8_lossy(&g.body);
        assert!(
            !raw.contains(seed::OWNERS[0]) && !raw.contains("Tràng Tiền"),
            "no name or address goes to a partner"
        );
    }
    let trail = ingest_server::audit::for_subject(&db, &format!("case:{c}"))
        .await
        .unwrap();
    let issue = trail
        .iter()
        .find(|e| e.action == "case.issue_notice")
        .unwrap();
    assert_eq!(
        (issue.actor.as_str(), issue.role.as_str()),
        ("notices", "system")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_is_written_with_the_confirmation_and_delivered_once() {
    outbox_with_the_confirmation(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_on_postgres() {
    let pg = Postgres::start();
    outbox_with_the_confirmation(Some(pg.fresh_database().await)).await;
}

/// The real worker: a partner that answers at once gets the signed notice
/// once; one that fails twice gets it three times under the same delivery
/// id, with growing waits between; the case ends `notice_issued`.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_signed_sent_once_and_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[("/city", &[500, 500])]).await;
    let (server, _) = start(dir.path(), None, |c| {
        c.notices.webhooks = vec![
            hook("vneid", format!("{url}/vneid"), "vneid-secret-0123456789"),
            hook("city", format!("{url}/city"), "city-secret-01234567890"),
        ];
    })
    .await;
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    confirm(&server, id, "csgt.cuong").await.unwrap();
    wait_until("three tries at the city app", || async {
        rx.got("/city").len() >= 3
    })
    .await;
    wait_until("notice_issued", || async {
        state(&server, id).await == "notice_issued"
    })
    .await;
    // Quiet time: nothing more arrives once each delivery is sent.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let once = rx.got("/vneid");
    assert_eq!(once.len(), 1, "sent exactly once");
    let body = verify_webhook(&once[0], "vneid-secret-0123456789");
    assert_eq!(body["type"], "fine_notice");
    assert_eq!(body["event_id"], id.as_str());
    assert_eq!(body["vehicle"]["plate_display"], "30A-123.45");
    assert_eq!(body["fine"]["amount_vnd"], 19_000_000);
    assert_eq!(body["fine"]["licence_points"], 4);
    assert_eq!(
        body["fine"]["legal_basis"],
        "điểm b khoản 9 Điều 6 Nghị định 168/2024/NĐ-CP"
    );
    assert_eq!(body["case_url"], format!("{BASE}/app/cases/{id}"));
    let text = body["text"]["body"].as_str().unwrap();
    for want in [
        "Mức phạt: 19.000.000 đồng",
        "(giờ Việt Nam)",
        "«Nộp phạt»",
        "«Khiếu nại»",
        SITE,
    ] {
        assert!(text.contains(want), "{want:?} missing in {text}");
    }
    // A wrong secret does not verify.
    assert!(!signature_ok(&once[0], "another-secret-0123456"));

    let city = rx.got("/city");
    assert_eq!(city.len(), 3, "two failures and a success");
    for g in &city {
        verify_webhook(g, "city-secret-01234567890");
        assert_eq!(g.headers["x-tv-delivery"], city[0].headers["x-tv-delivery"]);
    }
    assert_ne!(
        city[0].headers["x-tv-delivery"],
        once[0].headers["x-tv-delivery"]
    );
    // Backoff, read from the outbox's own record, not from a clock here:
    // the second try waits 100-200 ms, the third 200-400 ms (base 200 ms,
    // equal jitter), each from the pass that failed. A try is claimed only
    // once due (`next_attempt_at <= now`), so the first pass came no
    // earlier than the row's `created_at` (its first due time), and the
    // `next_attempt_at` the second failure stored lies at least both
    // shortest waits after it; the third, successful try was made no
    // earlier than that.
    let row = sqlx::query(
        "SELECT created_at, next_attempt_at, sent_at FROM notice_deliveries \
         WHERE event_id = $1 AND target = 'city'",
    )
    .bind(id)
    .fetch_one(server.ingestor.context().db.pool())
    .await
    .unwrap();
    let (created, due, sent): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(due - created >= 100 + 200, "{created} {due}");
    assert!(sent >= due, "{due} {sent}");
    let d = deliveries(&server, id).await;
    assert!(d.iter().all(|x| x.2 == "sent"), "{d:?}");
    assert_eq!(d.iter().map(|x| x.3).sum::<i64>(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn web_push_is_decrypted_by_an_independent_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[("/push-gone", &[410])]).await;
    let (server, cfg) = start(dir.path(), None, |_| {}).await;
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.clone();
    // The key the citizen app would hand to the browser.
    let vapid_key = notices::vapid_public_key(&Notices::new(&cfg, ctx.clone()));
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&vapid_key)
            .unwrap()
            .len(),
        65
    );
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    let browser = node_push("keys", "").unwrap();
    let gone = node_push("keys", "").unwrap();
    for (ep, k) in [("push-live", &browser), ("push-gone", &gone)] {
        let sub = serde_json::json!({"endpoint": format!("{url}/{ep}"),
            "keys": {"p256dh": k["p256dh"], "auth": k["auth"]}});
        notices::subscribe(&db, &push_hosts(), OWNER_NID, &sub.to_string())
            .await
            .unwrap();
    }
    let subs = "SELECT COUNT(*) FROM push_subscriptions WHERE national_id = $1";
    assert_eq!(count(&server, subs, OWNER_NID).await, 2);

    confirm(&server, id, "csgt.cuong").await.unwrap();
    wait_until("the push", || async { !rx.got("/push-live").is_empty() }).await;
    wait_until("notice_issued", || async {
        state(&server, id).await == "notice_issued"
    })
    .await;
    wait_until("the 410 handled", || async {
        count(&server, subs, OWNER_NID).await == 1
    })
    .await;

    let g = &rx.got("/push-live")[0];
    let input = serde_json::json!({
        "body": base64::engine::general_purpose::STANDARD.encode(&g.body),
        "private": browser["private"], "auth": browser["auth"],
        "authorization": g.headers["authorization"],
        "encoding": g.headers["content-encoding"],
        "vapid_key": vapid_key,
        "audience": url,
    });
    let out = node_push("check", &input.to_string()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out["claims"]["sub"], "mailto:ioc@example.gov.vn");
    let msg: Value = serde_json::from_str(out["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(msg["title"], "Thông báo vi phạm giao thông: xe 30A-123.45");
    assert_eq!(msg["url"], format!("{BASE}/app/cases/{id}"));
    let body = msg["body"].as_str().unwrap();
    assert!(
        body.contains("vượt đèn đỏ") && body.contains("Mức phạt: 19.000.000 đồng"),
        "{body}"
    );
    // Another browser's keys cannot read it.
    let mut other = input.clone();
    other["private"] = gone["private"].clone();
    other["auth"] = gone["auth"].clone();
    assert!(node_push("check", &other.to_string()).is_err());
    // A key other than the advertised one is refused.
    let mut forged = input.clone();
    forged["vapid_key"] = browser["p256dh"].clone();
    assert!(node_push("check", &forged.to_string()).is_err());

    assert_eq!(g.headers["ttl"], (28 * 86_400).to_string());
    assert_eq!(g.headers["urgency"], "normal");
    let d = deliveries(&server, id).await;
    let states: Vec<_> = d.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(states.iter().filter(|s| **s == "sent").count(), 1, "{d:?}");
    assert_eq!(states.iter().filter(|s| **s == "dead").count(), 1, "{d:?}");
    let key = one_text(
        &server,
        "SELECT idempotency_key FROM notice_deliveries WHERE event_id = $1 AND state = 'sent'",
        id,
    )
    .await
    .unwrap();
    assert_eq!(g.headers["topic"], key);
    assert_eq!(
        rx.got("/push-gone").len(),
        1,
        "a gone subscription is not retried"
    );
}

/// A notice by e-mail to the owner through an SMTP server in the test,
/// in plain SMTP on loopback or upgraded with STARTTLS.
async fn email_to_the_owner(starttls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut mails) = tokio::sync::mpsc::unbounded_channel();
    let (ca_file, acceptor) = if starttls {
        let (ca, acceptor) = tls_for_loopback(dir.path());
        (ca, Some(acceptor))
    } else {
        (String::new(), None)
    };
    tokio::spawn(smtp_server(listener, acceptor, tx));
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "mật-khẩu-thử\n").unwrap();
    let (server, _) = start(dir.path(), None, |c| {
        c.notices.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            from: "thongbao@csgt.example.gov.vn".into(),
            from_name: "CSGT Hà Nội".into(),
            username: "thongbao".into(),
            password_file: pw.display().to_string(),
            starttls,
            ..SmtpConfig::default()
        });
        c.notices.ca_file = ca_file.clone();
    })
    .await;
    let db = server.ingestor.context().db.clone();
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    sqlx::query("UPDATE owners SET email = 'giang@example.vn' WHERE owner_id = 'o1'")
        .execute(db.pool())
        .await
        .unwrap();
    confirm(&server, id, "csgt.cuong").await.unwrap();
    let mail = tokio::time::timeout(Duration::from_secs(30), mails.recv())
        .await
        .expect("no mail within 30 s")
        .unwrap();
    assert_eq!(mail.tls, starttls, "TLS before AUTH and the message");
    assert_eq!(mail.auth, "\0thongbao\0mật-khẩu-thử");
    assert_eq!(mail.from, "<thongbao@csgt.example.gov.vn>");
    assert_eq!(mail.to, "<giang@example.vn>");
    let data = mail.data;

    let (head, body) = data.split_once("\r\n\r\n").unwrap();
    let mut headers = HashMap::new();
    let mut last = String::new();
    for l in head.split("\r\n") {
        if l.starts_with(' ') {
            headers
                .entry(last.clone())
                .and_modify(|v: &mut String| v.push_str(l));
        } else {
            let (k, v) = l.split_once(": ").unwrap();
            last = k.to_ascii_lowercase();
            headers.insert(last.clone(), v.to_string());
        }
    }
    assert_eq!(
        decode_words(&headers["subject"]),
        "Thông báo vi phạm giao thông: xe 30A-123.45"
    );
    assert!(headers["to"].ends_with("<giang@example.vn>"));
    assert_eq!(
        decode_words(headers["to"].trim_end_matches(" <giang@example.vn>")),
        seed::OWNERS[0]
    );
    assert_eq!(headers["content-type"], "text/plain; charset=UTF-8");
    let key = one_text(
        &server,
        "SELECT idempotency_key FROM notice_deliveries WHERE event_id = $1 AND channel = 'email'",
        id,
    )
    .await
    .unwrap();
    assert_eq!(
        headers["message-id"],
        format!("<{key}@csgt.example.gov.vn>")
    );
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(body.replace("\r\n", ""))
            .unwrap(),
    )
    .unwrap();
    for want in [
        &format!("Kính gửi Ông/Bà {}", seed::OWNERS[0]) as &str,
        "Mức phạt: 19.000.000 đồng",
        "Trừ 4 điểm giấy phép lái xe",
        "điểm b khoản 9 Điều 6 Nghị định 168/2024/NĐ-CP",
        "Phòng Cảnh sát giao thông Công an TP Hà Nội",
        &format!("{BASE}/app/cases/{id}"),
    ] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }
    assert!(
        !text.contains("Tràng Tiền"),
        "the owner's address is not in the mail"
    );
    wait_until("notice_issued", || async {
        state(&server, id).await == "notice_issued"
    })
    .await;
    let reads = "SELECT COUNT(*) FROM registry_access_log WHERE actor = 'notices' AND event_id = $1 \
                 AND purpose LIKE '%e-mail%'";
    assert!(
        count(&server, reads, id).await >= 1,
        "the e-mail read is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn email_reaches_an_smtp_server_in_utf8() {
    email_to_the_owner(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn email_upgrades_with_starttls_before_auth() {
    email_to_the_owner(true).await;
}

/// A server whose worker is off (the test drives the passes with its own
/// clock), with one partner webhook, and that webhook's receiver.
async fn start_with_one_webhook(dir: &Path) -> (Running, Config, Receiver) {
    let (url, rx) = receiver(&[]).await;
    let (server, cfg) = start(dir, None, |c| {
        c.notices.enabled = false;
        c.notices.webhooks = vec![hook(
            "vneid",
            format!("{url}/vneid"),
            "vneid-secret-0123456789",
        )];
    })
    .await;
    (server, cfg, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_flag_at_10_days_and_mark_overdue_at_20() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg, _rx) = start_with_one_webhook(dir.path()).await;
    let ctx = server.ingestor.context().clone();
    let ids = seed::seed(&server, SITE, 2).await;
    let (waiting, issued) = (&ids[0], &ids[1]);
    confirm(&server, issued, "csgt.cuong").await.unwrap();
    // Deliveries are due from the confirmation on.
    let t0 = now_ms();
    let n = Notices::new(&cfg, ctx.clone());
    n.deliver_due(t0).await.unwrap();
    assert_eq!(state(&server, issued).await, "notice_issued");

    // Day 9: nothing is late yet.
    let r = notices::check_deadlines(&ctx, t0 + 9 * DAY).await.unwrap();
    assert_eq!((r.flagged_late, r.marked_overdue.len()), (0, 0));
    // The whole 10th day after detection (Vietnam time) is on time; after
    // it the case still in review is flagged, the notified one not.
    let detected: i64 = sqlx::query_scalar("SELECT event_time_ms FROM events WHERE event_id = $1")
        .bind(waiting)
        .fetch_one(ctx.db.pool())
        .await
        .unwrap();
    let notify_by = notices::outbox::notify_until(detected);
    assert!(notify_by >= detected + 10 * DAY && notify_by < detected + 11 * DAY);
    assert_eq!(
        (notify_by + 1 - notices::outbox::start_of_vn_day(notify_by)),
        DAY,
        "the last millisecond of a Vietnam day"
    );
    let r = notices::check_deadlines(&ctx, notify_by).await.unwrap();
    assert_eq!(r.flagged_late, 0, "the 10th day is not over");
    let r = notices::check_deadlines(&ctx, notify_by + 1).await.unwrap();
    assert_eq!(r.flagged_late, 1);
    let late = notices::late_notices(&ctx.db, 10).await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].event_id, *waiting);
    assert_eq!(late[0].state, "new");
    assert!(
        one_text(
            &server,
            "SELECT CAST(notice_late_at AS TEXT) FROM events WHERE event_id = $1",
            issued
        )
        .await
        .is_none()
    );
    // Flagged once, and listed for the console through the admin API.
    let r = notices::check_deadlines(&ctx, notify_by + DAY)
        .await
        .unwrap();
    assert_eq!(r.flagged_late, 0);
    let (status, body) = http_get(server.http_addr, "/api/v1/notices/overdue", Some(ADMIN));
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["event_id"], waiting.as_str());
    assert_eq!(
        http_get(server.http_addr, "/api/v1/notices/overdue", None).0,
        401
    );

    // Day 19 after the notice: still time. Day 20: overdue, and the
    // inspection register is warned once.
    let r = notices::check_deadlines(&ctx, t0 + 19 * DAY).await.unwrap();
    assert!(r.marked_overdue.is_empty());
    assert_eq!(state(&server, issued).await, "notice_issued");
    // The whole 20th day (Vietnam time) is the person's: at its last
    // millisecond the case is not overdue, the next one it is.
    let deadline = count(
        &server,
        "SELECT respond_by FROM notices WHERE event_id = $1",
        issued,
    )
    .await;
    assert!(deadline > t0 + 20 * DAY - 60_000);
    let r = notices::check_deadlines(&ctx, deadline).await.unwrap();
    assert!(r.marked_overdue.is_empty(), "{r:?}");
    let r = notices::check_deadlines(&ctx, deadline + 1).await.unwrap();
    assert_eq!(r.marked_overdue, std::slice::from_ref(issued));
    assert_eq!(r.warnings, std::slice::from_ref(issued));
    assert_eq!(state(&server, issued).await, "overdue");
    let r = notices::check_deadlines(&ctx, t0 + 21 * DAY).await.unwrap();
    assert!(r.marked_overdue.is_empty() && r.warnings.is_empty());
    let w = notices::inspection_warnings(&ctx.db, 10).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].plate.as_str(), w[0].plate_colour.as_str()),
        ("30A12345", "white")
    );
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{issued}"))
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.ends_with(&[
            "case.issue_notice",
            "case.mark_overdue",
            "notice.inspection_warning"
        ]),
        "{actions:?}"
    );
    // The still-unreviewed case never becomes overdue: it has no notice.
    assert_eq!(state(&server, waiting).await, "new");
}

/// The notice states the deadline the system enforces. The partner app is
/// down when the case is confirmed and for days after (the delivery is
/// retried); the delivery that gets through five days later says 20 days
/// from that day — the date the deadline check holds the case to and the
/// citizen app shows — not 20 days from the confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_states_the_deadline_that_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[("/vneid", &[503, 503])]).await;
    let (server, cfg) = start(dir.path(), None, |c| {
        c.notices.enabled = false;
        c.notices.webhooks = vec![hook(
            "vneid",
            format!("{url}/vneid"),
            "vneid-secret-0123456789",
        )];
    })
    .await;
    let ctx = server.ingestor.context().clone();
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    // Confirmed five days ago; the partner app failed then, and again two
    // days later.
    let t0 = now_ms() - 5 * DAY;
    let r = reviewer(&server);
    let op = actor("op.an", Role::Operator);
    r.act(id, &Action::Claim, &op, "", t0).await.unwrap();
    r.act(id, &Action::Accept, &op, "", t0).await.unwrap();
    r.act(
        id,
        &Action::Confirm,
        &actor("csgt.cuong", Role::Police),
        "",
        t0,
    )
    .await
    .unwrap();
    let n = Notices::new(&cfg, ctx.clone());
    n.deliver_due(t0).await.unwrap();
    n.deliver_due(t0 + 2 * DAY).await.unwrap();
    assert_eq!(state(&server, id).await, "confirmed");
    // Today it gets through.
    let t5 = now_ms();
    assert_eq!(n.deliver_due(t5).await.unwrap(), 1);
    assert_eq!(state(&server, id).await, "notice_issued");
    let got = rx.got("/vneid");
    assert_eq!(got.len(), 3);
    let body = verify_webhook(&got[2], "vneid-secret-0123456789");

    // The deadline the system enforces: 20 days from the notice going out.
    let row = sqlx::query(
        "SELECT n.respond_by, e.state_changed_at FROM notices n \
         JOIN events e ON e.event_id = n.event_id WHERE n.event_id = $1",
    )
    .bind(id)
    .fetch_one(ctx.db.pool())
    .await
    .unwrap();
    let enforced = notices::deadlines::effective_deadline(row.get(0), row.get(1));
    assert!(
        enforced > t5 + 20 * DAY - 60_000 && enforced < t5 + 21 * DAY,
        "{enforced} is not 20 days after {t5}"
    );
    let date = notices::text::date(enforced);
    let text = body["text"]["body"].as_str().unwrap();
    assert!(
        text.contains(&format!("chậm nhất đến hết ngày {date}")),
        "{date} not in {text}"
    );
    assert!(body["text"]["short"].as_str().unwrap().contains(&date));
    assert_eq!(body["respond_by"], notices::text::rfc3339(enforced));

    // The citizen app shows the same date.
    let session =
        ingest_server::citizen::start_session(&ctx.db, OWNER_NID, seed::OWNERS[0], now_ms())
            .await
            .unwrap();
    let (addr, page_path) = (server.http_addr, format!("/app/cases/{id}"));
    let (list, page) = tokio::task::spawn_blocking(move || {
        let mut me = common::web::Client::new(addr);
        me.cookies.insert(
            ingest_server::citizen::CITIZEN_COOKIE.into(),
            session.token.clone(),
        );
        (me.get("/app/"), me.get(&page_path))
    })
    .await
    .unwrap();
    assert_eq!((list.status, page.status), (200, 200), "{}", page.body);
    let shown = format!("{date} 23:59:59");
    assert!(page.body.contains(&shown), "{shown} not in {}", page.body);
    assert!(list.body.contains(&shown), "{shown} not in {}", list.body);

    // And it is what is enforced: the whole of that day is the owner's.
    let r = notices::check_deadlines(&ctx, enforced).await.unwrap();
    assert!(r.marked_overdue.is_empty(), "{r:?}");
    let r = notices::check_deadlines(&ctx, enforced + 1).await.unwrap();
    assert_eq!(r.marked_overdue, std::slice::from_ref(id), "{r:?}");
}

/// A registration that does not fit the vehicle the camera saw (a misread
/// or cloned plate) is no owner to send a fine to: the confirmation writes
/// a notice with no deliveries, which the 10-day check then shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notice_goes_to_a_registration_that_does_not_fit_the_vehicle() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _cfg, _rx) = start_with_one_webhook(dir.path()).await;
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    sqlx::query("UPDATE events SET owner_status = 'vehicle_mismatch' WHERE event_id = $1")
        .bind(id)
        .execute(server.ingestor.context().db.pool())
        .await
        .unwrap();
    confirm(&server, id, "csgt.cuong").await.unwrap();
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM notices WHERE event_id = $1 AND owner_id IS NULL",
            id
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM notice_deliveries WHERE event_id = $1",
            id
        )
        .await,
        0
    );
}

/// The notice says where the violation was in words people know: the
/// camera's description from the camera registry, not the site's and
/// camera's internal ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_names_the_place_by_the_cameras_description() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg, rx) = start_with_one_webhook(dir.path()).await;
    let ctx = server.ingestor.context().clone();
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    let desc = "Ngã tư Tràng Tiền – Hàng Bài, hướng từ Nhà hát Lớn";
    ingest_server::cameras::enrol(
        &ctx.db,
        &ingest_server::cameras::NewCamera {
            device_id: "edge-c1".into(),
            camera_id: "cam-north".into(),
            site: None,
            description: desc.into(),
            latitude: None,
            longitude: None,
            enabled_rules: None,
            certificate_no: None,
            certified_until: None,
        },
    )
    .await
    .unwrap();
    confirm(&server, id, "csgt.cuong").await.unwrap();
    Notices::new(&cfg, ctx.clone())
        .deliver_due(now_ms())
        .await
        .unwrap();
    let got = rx.got("/vneid");
    assert_eq!(got.len(), 1);
    let body = verify_webhook(&got[0], "vneid-secret-0123456789");
    let text = body["text"]["body"].as_str().unwrap();
    assert!(text.contains(&format!("- Địa điểm: {desc}\n")), "{text}");
    assert!(!text.contains("camera cam-north"), "{text}");
    assert!(body["text"]["short"].as_str().unwrap().contains(desc));
}

/// Two webhooks, one of which fails once; the case is issued through the
/// other, then paid before the retry is due: the retry is dropped, not
/// sent ("please pay" to someone who paid), with the reason kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_dropped_once_the_case_is_paid() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[("/flaky", &[500])]).await;
    let (server, cfg) = start(dir.path(), None, |c| {
        c.notices.enabled = false;
        c.notices.webhooks = vec![
            hook("vneid", format!("{url}/vneid"), "vneid-secret-0123456789"),
            hook("flaky", format!("{url}/flaky"), "flaky-secret-0123456789"),
        ];
    })
    .await;
    let ctx = server.ingestor.context().clone();
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    confirm(&server, id, "csgt.cuong").await.unwrap();
    let t0 = now_ms();
    let n = Notices::new(&cfg, ctx.clone());
    n.deliver_due(t0).await.unwrap();
    assert_eq!(state(&server, id).await, "notice_issued");
    assert_eq!(rx.got("/flaky").len(), 1);
    reviewer(&server)
        .act(
            id,
            &Action::Pay,
            &actor("payments:vnpay", Role::System),
            "",
            t0 + 1000,
        )
        .await
        .unwrap();

    // The retry is due: dropped, not sent.
    n.deliver_due(t0 + 60_000).await.unwrap();
    assert_eq!(rx.got("/flaky").len(), 1, "no second notice after payment");
    let d = deliveries(&server, id).await;
    let flaky = d.iter().find(|x| x.1 == "flaky").unwrap();
    assert_eq!(flaky.2, "dropped", "{d:?}");
    let why = one_text(
        &server,
        "SELECT last_error FROM notice_deliveries WHERE event_id = $1 AND target = 'flaky'",
        id,
    )
    .await
    .unwrap_or_default();
    assert!(why.contains("paid"), "{why}");
    // And it stays so.
    assert_eq!(n.deliver_due(t0 + 3_600_000).await.unwrap(), 0);
    assert_eq!(rx.got("/flaky").len(), 1);
    assert_eq!(rx.got("/vneid").len(), 1);
}

/// Pays like the citizen's browser: opens the sandbox's pay page and
/// presses "pay".
async fn pay_at_the_gateway(sandbox: &vnpay_sandbox::Sandbox, pay_url: &str) {
    let page = payments_http::get_url(pay_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let fields = payments_http::form_fields(&page.body, "pay");
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = payments_http::http(sandbox.addr(), "POST", "/paymentv2/complete", &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
}

/// The 20-day warning and payments. One owner pressed pay in time and the
/// bank took the money, but the gateway's notification is held back (late,
/// or lost until the reconciler asks): past the deadline the case is not
/// marked overdue nor reported to the inspection register while that
/// order is unresolved; once the notification arrives the case is paid.
/// Another owner did not respond, was marked overdue and warned, then
/// paid: the warning is marked withdrawn (the row stays, audited). A third
/// case paid some other way has its warning withdrawn by the next check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_in_flight_holds_the_warning_and_paying_withdraws_it() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _rx) = receiver(&[]).await;
    let sandbox = vnpay_sandbox::Sandbox::start(vnpay_sandbox::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        tmn_code: "TVHN0001".into(),
        hash_secret: "SANDBOXSECRET0123456789ABCDEFGH".into(),
        ipn_url: String::new(),
        faults: vnpay_sandbox::Faults {
            hold_ipn: true,
            ..vnpay_sandbox::Faults::default()
        },
    })
    .await
    .unwrap();
    let (server, cfg) = start(dir.path(), None, |c| {
        c.notices.enabled = false;
        c.notices.webhooks = vec![hook(
            "vneid",
            format!("{url}/vneid"),
            "vneid-secret-0123456789",
        )];
        c.payments.vnpay = Some(ingest_server::config::VnPayConfig {
            tmn_code: "TVHN0001".into(),
            hash_secret: "SANDBOXSECRET0123456789ABCDEFGH".into(),
            pay_url: sandbox.pay_url(),
            api_url: sandbox.api_url(),
            return_url: "http://127.0.0.1:9/pay/vnpay/return".into(),
            ..Default::default()
        });
    })
    .await;
    sandbox.set_ipn_url(&format!(
        "http://{}/api/v1/payments/vnpay/ipn",
        server.http_addr
    ));
    let ctx = server.ingestor.context().clone();
    let pay = ingest_server::payments::Payments::from_config(&cfg.payments, ctx.clone())
        .unwrap()
        .unwrap();
    let ids = seed::seed(&server, SITE, 3).await;
    let (in_time, late, elsewhere) = (&ids[0], &ids[1], &ids[2]);
    for id in &ids {
        confirm(&server, id, "csgt.cuong").await.unwrap();
    }
    let n = Notices::new(&cfg, ctx.clone());
    n.deliver_due(now_ms()).await.unwrap();
    for id in &ids {
        assert_eq!(state(&server, id).await, "notice_issued");
    }
    let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let start_pay = |id: String| {
        let pay = pay.clone();
        async move {
            ingest_server::payments::start(&pay, &id, ip, now_ms())
                .await
                .unwrap()
        }
    };

    // In time: paid at the bank, the notification held back.
    pay_at_the_gateway(&sandbox, &start_pay(in_time.clone()).await).await;
    assert!(sandbox.ipn_log().is_empty());
    let respond_by = "SELECT respond_by FROM notices WHERE event_id = $1";
    let mut deadline = 0;
    for id in &ids {
        deadline = deadline.max(count(&server, respond_by, id).await);
    }
    let r = notices::check_deadlines(&ctx, deadline + 1).await.unwrap();
    let mut warned_now = r.warnings.clone();
    warned_now.sort();
    let mut want = vec![late.clone(), elsewhere.clone()];
    want.sort();
    assert_eq!(warned_now, want, "{r:?}");
    assert_eq!(r.marked_overdue.len(), 2, "{r:?}");
    assert_eq!(r.held_for_payment, std::slice::from_ref(in_time), "{r:?}");
    assert_eq!(state(&server, in_time).await, "notice_issued");
    let warned = "SELECT COUNT(*) FROM inspection_warnings WHERE event_id = $1";
    assert_eq!(count(&server, warned, in_time).await, 0);
    // The notification arrives: paid, and never warned.
    let sent = sandbox.release_held_ipns().await;
    assert_eq!(sent[0].rsp_code, "00", "{sent:?}");
    assert_eq!(state(&server, in_time).await, "paid");
    let r = notices::check_deadlines(&ctx, deadline + DAY)
        .await
        .unwrap();
    assert!(
        r.marked_overdue.is_empty() && r.warnings.is_empty(),
        "{r:?}"
    );
    assert_eq!(count(&server, warned, in_time).await, 0);

    // Late: warned, then paid; the warning is withdrawn, not deleted.
    assert_eq!(state(&server, late).await, "overdue");
    sandbox.set_faults(vnpay_sandbox::Faults::default());
    pay_at_the_gateway(&sandbox, &start_pay(late.clone()).await).await;
    assert_eq!(state(&server, late).await, "paid");
    let w = notices::inspection_warnings(&ctx.db, 10).await.unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    let of = |id: &str| w.iter().find(|x| x.event_id == id).unwrap().clone();
    assert!(of(late).withdrawn_at.is_some(), "{w:?}");
    assert!(
        of(late)
            .withdrawn_reason
            .as_deref()
            .is_some_and(|r| r.contains("the fine was paid")),
        "{w:?}"
    );
    assert!(of(elsewhere).withdrawn_at.is_none(), "{w:?}");
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{late}"))
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.ends_with(&["case.pay", "notice.inspection_warning_withdrawn"]),
        "{actions:?}"
    );
    // Paid some other way (not through `payments`): the next check
    // withdraws its warning; each is withdrawn once.
    reviewer(&server)
        .act(
            elsewhere,
            &Action::Pay,
            &actor("payments:counter", Role::System),
            "",
            now_ms(),
        )
        .await
        .unwrap();
    let r = notices::check_deadlines(&ctx, deadline + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(r.withdrawn, std::slice::from_ref(elsewhere), "{r:?}");
    let r = notices::check_deadlines(&ctx, deadline + 3 * DAY)
        .await
        .unwrap();
    assert!(r.withdrawn.is_empty(), "{r:?}");
    let live = "SELECT COUNT(*) FROM inspection_warnings WHERE withdrawn_at IS NULL \
                AND event_id = $1";
    assert_eq!(count(&server, live, elsewhere).await, 0);
}

/// A case confirmed while its owner's lookup fails (the registry gateway
/// answers 500) gets a notice with no deliveries; the 10-day check flags
/// it. When the gateway answers again and the sweeper's pass resolves the
/// owner, the notice is addressed to that owner and gets its deliveries
/// in the same transaction, which go out to the gateway's owner (not the
/// imported registry's owner of the same plate); the case is then
/// `notice_issued` and the late flag stays. A second pass adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_found_after_the_confirmation_is_still_told() {
    owner_found_late(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_found_after_the_confirmation_is_still_told_on_postgres() {
    let pg = Postgres::start();
    owner_found_late(Some(pg.fresh_database().await)).await;
}

async fn owner_found_late(db_url: Option<String>) {
    use ingest_server::config::{HttpRegistryConfig, RegistryBackend};
    let pki = gateway::Pki::new();
    let (gw, gw_url) = gateway::start_gateway(&pki).await;
    gw.always(gateway::Act::Status(500, "internal"));
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[]).await;
    let (server, cfg) = start(dir.path(), db_url.as_deref(), |c| {
        c.notices.enabled = false;
        c.notices.webhooks = vec![hook(
            "vneid",
            format!("{url}/vneid"),
            "vneid-secret-0123456789",
        )];
        c.registry.backend = RegistryBackend::Http;
        c.registry.http = Some(HttpRegistryConfig {
            url: gw_url,
            ca_file: pki.path("ca.crt"),
            client_cert: pki.path("client.crt"),
            client_key: pki.path("client.key"),
            retries: 0,
            backoff_base_ms: 10,
            breaker_cooldown_ms: 10,
            cache_ttl_ms: 0,
            ..HttpRegistryConfig::default()
        });
    })
    .await;
    let ctx = server.ingestor.context().clone();
    let ids = seed::seed(&server, SITE, 1).await;
    let id = &ids[0];
    wait_until("the owner lookup to fail", || async {
        one_text(
            &server,
            "SELECT owner_status FROM events WHERE event_id = $1",
            id,
        )
        .await
        .as_deref()
            == Some("error")
    })
    .await;

    confirm(&server, id, "csgt.cuong").await.unwrap();
    let waiting = "SELECT COUNT(*) FROM notices WHERE event_id = $1 AND owner_id IS NULL";
    assert_eq!(count(&server, waiting, id).await, 1);
    assert!(deliveries(&server, id).await.is_empty());
    let n = Notices::new(&cfg, ctx.clone());
    assert_eq!(n.deliver_due(now_ms()).await.unwrap(), 0);
    let t0 = now_ms();
    let r = notices::check_deadlines(&ctx, t0 + 11 * DAY).await.unwrap();
    assert_eq!(r.flagged_late, 1, "{r:?}");

    // The gateway is back; the failed lookup's backoff is over.
    gw.always(gateway::Act::Answer);
    sqlx::query("UPDATE events SET owner_lookup_at = owner_lookup_at - 600000")
        .execute(ctx.db.pool())
        .await
        .unwrap();
    let registry = ctx.registry.clone().unwrap();
    assert_eq!(
        ingest_server::registry::resolve_pending(&ctx.db, registry.as_ref(), 100).await,
        1
    );
    assert_eq!(
        one_text(
            &server,
            "SELECT owner_id FROM events WHERE event_id = $1",
            id
        )
        .await,
        Some("gw-o1".into())
    );
    assert_eq!(
        one_text(
            &server,
            "SELECT owner_id FROM notices WHERE event_id = $1",
            id
        )
        .await,
        Some("gw-o1".into())
    );
    assert_eq!(
        deliveries(&server, id).await,
        [("webhook".into(), "vneid".into(), "pending".into(), 0)]
    );
    // Idempotent: the sweep's catch-up finds nothing more to write.
    assert_eq!(
        notices::outbox::enqueue_found_owners(&ctx.db, now_ms(), 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(deliveries(&server, id).await.len(), 1);

    assert_eq!(n.deliver_due(now_ms()).await.unwrap(), 1);
    let got = rx.got("/vneid");
    assert_eq!(got.len(), 1);
    let body = verify_webhook(&got[0], "vneid-secret-0123456789");
    assert_eq!(body["event_id"], id.as_str());
    // The gateway's owner of the plate, not the imported one (001199012345).
    assert_eq!(body["recipient"]["national_id"], "001099012345");
    assert_eq!(state(&server, id).await, "notice_issued");
    let late = "SELECT COUNT(*) FROM events WHERE event_id = $1 AND notice_late_at IS NOT NULL";
    assert_eq!(count(&server, late, id).await, 1, "the late flag stays");
}
