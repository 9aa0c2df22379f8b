//! The whole citizen path in headless Chromium, on real parts: a case an
//! operator accepted is confirmed by an officer; the notice goes out as a
//! signed webhook to a partner app (a receiver in this test, which checks
//! the signature); the citizen signs in through a real OpenID Connect
//! provider (oidc-provider on Node.js, the provider's own HTML login form),
//! opens the case, pays through the VNPay sandbox (its pay page, its IPN to
//! our server, its return to our page), sees the receipt; and the officer
//! sees the case paid in the console. Screenshots of the citizen's case
//! and receipt go to `target/tmp/citizen-screenshots/`.

mod common;
#[path = "oidc/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::chrome::{Driver, screenshots};
use common::seed::{self, OWNERS, PASSWORD};
use common::*;
use fantoccini::Locator;
use ingest_server::app;
use ingest_server::config::{CitizenSsoConfig, Config, VnPayConfig, WebhookConfig};
use ingest_server::db::now_ms;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use serde_json::json;
use sqlx::Row;
use vnpay_sandbox::{Options, Sandbox};

const SITE: &str = "hn-badinh-kimma";
const NID: &str = "001199012345"; // the owner of the seeded plate (seed.rs)
const HOOK_SECRET: &str = "partner-app-secret-0123456789";
const IDP_SECRET: &str = "citizen-client-secret-0123456789";

/// A partner app's webhook endpoint: keeps what arrives.
async fn partner() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((h, b));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_is_notified_signs_in_and_pays_in_chromium() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = harness::Provider::start(json!({
        "port": free_port(),
        "clients": [{"clientId": "tv-citizen", "clientSecret": IDP_SECRET,
                     "redirectUris": [format!("{base}/app/sso/callback")]}],
        "accountsOnly": true,
        "accounts": {"giang": {"name": OWNERS[0], "national_id": NID, "password": PASSWORD}},
    }));
    let sandbox = Sandbox::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        tmn_code: "TVTEST01".into(),
        hash_secret: "sandbox-hash-secret-0123456789".into(),
        ipn_url: format!("{base}/api/v1/payments/vnpay/ipn"),
        faults: Default::default(),
    })
    .await
    .unwrap();
    let (hook_url, hooks) = partner().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        citizen_sso: Some(CitizenSsoConfig {
            issuer: idp.issuer.clone(),
            client_id: "tv-citizen".into(),
            client_secret: IDP_SECRET.into(),
            redirect_url: format!("{base}/app/sso/callback"),
            extra_scopes: vec!["national_id".into()],
            ..CitizenSsoConfig::default()
        }),
        ..Config::default()
    };
    cfg.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.payments.vnpay = Some(VnPayConfig {
        tmn_code: "TVTEST01".into(),
        hash_secret: "sandbox-hash-secret-0123456789".into(),
        pay_url: sandbox.pay_url(),
        api_url: sandbox.api_url(),
        return_url: format!("{base}/pay/vnpay/return"),
        ..VnPayConfig::default()
    });
    cfg.notices.public_base_url = base.clone();
    cfg.notices.poll_ms = 50;
    cfg.notices.webhooks = vec![WebhookConfig {
        name: "city-app".into(),
        url: hook_url,
        secret: HOOK_SECRET.into(),
        secret_file: String::new(),
    }];
    cfg.validate().unwrap();
    let server = app::start(&cfg).await.unwrap();
    let (files, _) = seed::photos();
    let ids = seed::seed_with(&server, SITE, 1, &files, None).await;
    let id = ids[0].clone();
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.clone();

    // The operator accepted it; an officer confirms: the notice goes out.
    let r = Reviewer {
        db: &db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    let officer = Actor {
        id: "csgt".into(),
        role: Role::Police,
    };
    let now = now_ms();
    r.act(&id, &Action::Claim, &op, "", now).await.unwrap();
    r.act(&id, &Action::Accept, &op, "", now).await.unwrap();
    r.act(&id, &Action::Confirm, &officer, "", now)
        .await
        .unwrap();
    let state = || async {
        let s: String = sqlx::query("SELECT state FROM events WHERE event_id = $1")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
        s
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while state().await != "notice_issued" {
        assert!(Instant::now() < deadline, "the notice was not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let got = hooks.lock().unwrap();
        assert_eq!(got.len(), 1, "one notice, once");
        let (h, body) = &got[0];
        let ts: i64 = h["x-tv-timestamp"].to_str().unwrap().parse().unwrap();
        assert!((ts - now / 1000).abs() < 60);
        let want = ingest_server::notices::webhook::signature(HOOK_SECRET.as_bytes(), ts, body);
        assert_eq!(h["x-tv-signature"].to_str().unwrap(), want, "signed by us");
        let notice: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(notice.to_string().contains(&id), "{notice}");
        assert!(
            notice
                .to_string()
                .contains(&format!("{base}/app/cases/{id}"))
        );
    }

    // --- the citizen, on a phone-sized screen
    let driver = Driver::start();
    let c = driver.browser(412, 915).await;
    let out = screenshots("citizen-screenshots");
    c.goto(&format!("{base}/app/")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("vneid"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The provider's own sign-in form.
    c.wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap()
        .send_keys("giang")
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let card = c
        .wait()
        .for_element(Locator::Css(&format!("a.card[data-id='{id}']")))
        .await
        .unwrap();
    assert!(
        card.text().await.unwrap().contains("19.000.000"),
        "red light, car: 18-20 M, decided 19 M"
    );
    card.click().await.unwrap();
    c.wait().for_element(Locator::Id("pay")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(out.join("case.png"), c.screenshot().await.unwrap()).unwrap();
    c.find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The gateway's page (the sandbox): pay.
    c.wait()
        .for_element(Locator::Css("form#pay button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Back on our return page; then the case shows the receipt.
    let deadline = Instant::now() + Duration::from_secs(20);
    while state().await != "paid" {
        assert!(
            Instant::now() < deadline,
            "the IPN did not mark the case paid"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.goto(&format!("{base}/app/cases/{id}")).await.unwrap();
    let receipt = c
        .wait()
        .for_element(Locator::Id("receipt"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        receipt.contains("19.000.000") && receipt.contains("Biên lai"),
        "{receipt}"
    );
    std::fs::write(out.join("receipt.png"), c.screenshot().await.unwrap()).unwrap();
    c.close().await.unwrap();

    // --- the officer sees it paid in the console
    ingest_server::accounts::create(
        &db,
        "csgt.lan",
        "Đỗ Lan",
        Role::Police,
        Some(PASSWORD),
        &ingest_server::audit::Who::new("test", Role::Admin),
    )
    .await
    .unwrap();
    let page = tokio::task::spawn_blocking({
        let addr = server.http_addr;
        let id = id.clone();
        move || {
            let mut w = web::Client::new(addr);
            assert_eq!(w.login("csgt.lan", PASSWORD).status, 303);
            w.get(&format!("/console/cases/{id}")).body
        }
    })
    .await
    .unwrap();
    assert!(page.contains("Đã nộp phạt"), "paid in the console");
    assert_eq!(sandbox.ipn_log().len(), 1, "one IPN");
    drop(driver);
}
