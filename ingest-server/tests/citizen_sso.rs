//! Citizens sign in to the citizen app through a real OpenID Connect
//! provider (panva's `oidc-provider` from `tests/oidc/provider.js`, test
//! citizens carrying `national_id` and `name`) and the real ingest server:
//! the session is bound to the national ID number, `/app/` shows exactly the
//! confirmed cases of the vehicles registered to it, another citizen's case
//! is "not found" (and audited), and tokens without a valid number, replayed
//! answers and states of the console's client are refused.
//!
//! Node.js and `tests/oidc/node_modules` (`make setup-node`) are required.

mod common;
#[path = "oidc/harness.rs"]
mod harness;

use common::{free_port, local_config, seed};
use harness::{Browser, Provider, Resp};
use ingest_server::app::{self, Running};
use ingest_server::audit::{self, AuditEntry};
use ingest_server::config::{CitizenSsoConfig, Config, SsoConfig};
use ingest_server::db::{Db, now_ms};
use ingest_server::review::Reviewer;
use ingest_server::sso::citizen::actor_id;
use ingest_server::workflow::{Action, Actor, Role};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use url::Url;

const SITE: &str = "hn-hoankiem-trangtien";
const CITIZEN_CLIENT: &str = "tv-citizen";
const CONSOLE_CLIENT: &str = "tv-console";
const SECRET: &str = "test-citizen-secret-0123456789";
/// The owner of 30A12345 in the seeded registry (`tests/common/seed.rs`).
const GIANG_ID: &str = "001199012345";
/// The owner of 30A12346.
const HAI_ID: &str = "001088054321";

/// The provider's test citizens (added to its console test accounts).
fn citizens() -> Value {
    json!({
        "giang": {"name": "Hoàng Thị Giang", "national_id": GIANG_ID},
        "hai": {"name": "Vũ Văn Hải", "national_id": HAI_ID},
        "no_id": {"name": "Người Không Số"},
        "short_id": {"name": "Số Ngắn", "national_id": "12345"},
        "letters_id": {"name": "Có Chữ", "national_id": "00119901234X"},
        "number_id": {"name": "Số Nguyên", "national_id": 1_199_012_345_i64},
    })
}

struct Ioc {
    running: Running,
    base: String,
    _dir: tempfile::TempDir,
}

impl Ioc {
    fn db(&self) -> Db {
        self.running.ingestor.context().db.clone()
    }
}

fn citizen_config(issuer: &str, port: u16) -> CitizenSsoConfig {
    CitizenSsoConfig {
        issuer: issuer.into(),
        client_id: CITIZEN_CLIENT.into(),
        client_secret: SECRET.into(),
        redirect_url: format!("http://127.0.0.1:{port}/app/sso/callback"),
        extra_scopes: vec!["national_id".into()],
        ..CitizenSsoConfig::default()
    }
}

/// A provider (with `extra` options) and a server that uses it for
/// citizens, and for the console too when `console`.
async fn pair(extra: Value, console: bool) -> (Provider, Ioc) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut clients = vec![json!({
        "clientId": CITIZEN_CLIENT, "clientSecret": SECRET,
        "redirectUris": [format!("{base}/app/sso/callback")],
    })];
    if console {
        clients.push(json!({
            "clientId": CONSOLE_CLIENT, "clientSecret": SECRET,
            "redirectUris": [format!("{base}/console/sso/callback")],
        }));
    }
    let mut opts = json!({"port": free_port(), "clients": clients, "accounts": citizens()});
    if let (Value::Object(o), Value::Object(e)) = (&mut opts, extra) {
        o.extend(e);
    }
    let p = Provider::start(opts);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        citizen_sso: Some(citizen_config(&p.issuer, port)),
        ..Config::default()
    };
    if console {
        cfg.sso = Some(SsoConfig {
            issuer: p.issuer.clone(),
            client_id: CONSOLE_CLIENT.into(),
            client_secret: SECRET.into(),
            redirect_url: format!("{base}/console/sso/callback"),
            role_map: [("ioc-police".to_string(), "police".to_string())].into(),
            extra_scopes: vec!["roles".into()],
            ..SsoConfig::default()
        });
    }
    cfg.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.validate().unwrap();
    let running = app::start(&cfg).await.unwrap();
    (
        p,
        Ioc {
            running,
            base,
            _dir: dir,
        },
    )
}

/// From "Đăng nhập bằng VNeID" through the provider as `account`: the
/// callback URL (not yet visited).
fn through(b: &mut Browser, ioc: &Ioc, p: &Provider, account: &str) -> String {
    let callback = p.through(
        b,
        &format!("{}/app/sso/login", ioc.base),
        account,
        None,
        |u| u,
    );
    assert!(
        callback.starts_with(&format!("{}/app/sso/callback?", ioc.base)),
        "{callback}"
    );
    callback
}

/// The whole way, and the callback's answer.
fn sign_in(b: &mut Browser, ioc: &Ioc, p: &Provider, account: &str) -> Resp {
    let callback = through(b, ioc, p, account);
    b.get(&callback)
}

/// Asserts a signed-in answer: 303 to `/app/`, the citizen cookie
/// (HttpOnly, SameSite=Lax), the browser binding removed.
fn assert_signed_in(r: &Resp, p: &Provider) {
    assert_eq!(r.status, 303, "{}\n{}", r.body, p.log());
    assert_eq!(r.header("location"), Some("/app/"));
    let cookies = r.set_cookies();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("tv_citizen="))
        .unwrap_or_else(|| panic!("no citizen cookie in {cookies:?}"));
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("tv_sso_app=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
}

/// Asserts a refused citizen sign-in: status, the page, no session, and
/// the audit entry `citizen.login_failed` with `reason`; that entry.
async fn assert_refused(ioc: &Ioc, r: &Resp, status: u16, reason: &str) -> AuditEntry {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.body.contains("Không đăng nhập được"), "{}", r.body);
    assert!(r.body.contains("href=\"/app/login\""), "{}", r.body);
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| !c.starts_with("tv_citizen=")),
        "{r:?}"
    );
    let e = audit::recent(&ioc.db(), 500)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "citizen.login_failed")
        .expect("no citizen.login_failed in the audit log");
    let d: Value = serde_json::from_str(&e.detail).unwrap();
    assert_eq!(d["reason"], reason, "{d}");
    e
}

/// The first 16 hex digits of the plain SHA-256 of `text` (what the
/// audit log once named a citizen's subject by: reversible by trying every
/// ID number).
fn plain_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// Asserts that an audit detail names the provider's subject `sub` (the
/// test provider's account name) by a keyed digest only: not the subject,
/// not its plain SHA-256.
fn assert_keyed_sub(d: &Value, sub: &str) {
    let audited = d["sub"].as_str().unwrap_or_else(|| panic!("no sub: {d}"));
    assert!(audited.starts_with("hmac:"), "{d}");
    assert!(
        audited != sub && !audited.contains(&plain_digest(sub)),
        "{d}"
    );
}

async fn sessions(db: &Db) -> Vec<String> {
    sqlx::query("SELECT national_id FROM citizen_sessions ORDER BY created_at")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

async fn owner_of(db: &Db, id: &str) -> Option<String> {
    sqlx::query("SELECT owner_id FROM events WHERE event_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0)
}

/// The event ids the list page shows.
fn listed(page: &str) -> Vec<String> {
    page.split("data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_signs_in_and_sees_exactly_their_confirmed_cases() {
    let (p, ioc) = pair(json!({}), false).await;
    let db = ioc.db();
    let ctx = ioc.running.ingestor.context().clone();

    // Three cases of 30A12345 (Giang's car). The first is reviewed and
    // confirmed as it is; the second's plate is corrected to 30A12346
    // (Hải's) and confirmed; the third is never reviewed.
    let ids = seed::seed(&ioc.running, SITE, 3).await;
    let (mine, his, pending) = (&ids[0], &ids[1], &ids[2]);
    for _ in 0..100 {
        if owner_of(&db, mine).await.is_some() && owner_of(&db, pending).await.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(owner_of(&db, mine).await.as_deref(), Some("o1"));
    let reviewer = Reviewer {
        db: &db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let operator = Actor {
        id: "op.an".into(),
        role: Role::Operator,
    };
    let police = Actor {
        id: "csgt.cuong".into(),
        role: Role::Police,
    };
    let fix = Action::CorrectPlate {
        plate: "30A-123.46".into(),
    };
    for (id, correct) in [(mine, false), (his, true)] {
        let now = now_ms();
        reviewer
            .act(id, &Action::Claim, &operator, "", now)
            .await
            .unwrap();
        if correct {
            reviewer
                .act(id, &fix, &operator, "chữ số cuối là 6", now + 1)
                .await
                .unwrap();
        }
        reviewer
            .act(id, &Action::Accept, &operator, "", now + 2)
            .await
            .unwrap();
        reviewer
            .act(id, &Action::Confirm, &police, "", now + 3)
            .await
            .unwrap();
    }
    assert_eq!(owner_of(&db, his).await.as_deref(), Some("o2"));

    // The sign-in page offers the national identity provider.
    let mut giang = Browser::default();
    let r = giang.get(&format!("{}/app/", ioc.base));
    assert_eq!(r.status, 303, "signed out: to the sign-in page");
    let r = giang.get(&format!("{}/app/login", ioc.base));
    assert!(
        r.body.contains("Đăng nhập bằng VNeID") && r.body.contains("href=\"/app/sso/login\""),
        "{}",
        r.body
    );

    // The link: to the provider, with our client, callback and scopes, and
    // a browser-binding cookie for the citizen routes only.
    let r = giang.get(&format!("{}/app/sso/login", ioc.base));
    assert_eq!(r.status, 303, "{}", r.body);
    let auth = Url::parse(&r.location()).unwrap();
    let q: std::collections::HashMap<String, String> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CITIZEN_CLIENT);
    assert_eq!(q["redirect_uri"], format!("{}/app/sso/callback", ioc.base));
    assert_eq!(q["scope"], "openid profile national_id");
    assert_eq!(q["code_challenge_method"], "S256");
    let binding = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tv_sso_app="))
        .unwrap()
        .to_string();
    assert!(
        binding.contains("Path=/app/sso/") && binding.contains("SameSite=Lax"),
        "{binding}"
    );

    // Giang signs in: a 303 to /app/ with a SameSite=Lax cookie, which the
    // browser sends on that redirect.
    let r = sign_in(&mut giang, &ioc, &p, "giang");
    assert_signed_in(&r, &p);
    let list = giang.get(&format!("{}/app/", ioc.base));
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("Hoàng Thị Giang"), "{}", list.body);
    assert_eq!(
        listed(&list.body),
        std::slice::from_ref(mine),
        "{}",
        list.body
    );
    assert!(list.body.contains("(1)"));
    assert_eq!(sessions(&db).await, [GIANG_ID]);
    // National ID and name came from userinfo (the provider's default).
    assert!(p.stats(&mut giang)["userinfo"].as_u64().unwrap() >= 1);

    // Her case and its evidence open; the unconfirmed one does not.
    let r = giang.get(&format!("{}/app/cases/{mine}", ioc.base));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("30A12345"), "{}", r.body);
    let img = giang.get(&format!(
        "{}/app/cases/{mine}/evidence/overview.jpg",
        ioc.base
    ));
    assert_eq!(
        (img.status, img.header("content-type")),
        (200, Some("image/jpeg"))
    );
    let r = giang.get(&format!("{}/app/cases/{pending}", ioc.base));
    assert_eq!(r.status, 404, "not confirmed: not shown");

    // Hải signs in and sees only the corrected case ...
    let mut hai = Browser::default();
    let r = sign_in(&mut hai, &ioc, &p, "hai");
    assert_signed_in(&r, &p);
    let list = hai.get(&format!("{}/app/", ioc.base));
    assert_eq!(
        listed(&list.body),
        std::slice::from_ref(his),
        "{}",
        list.body
    );
    // ... and cannot open Giang's case, nor its evidence.
    let r = hai.get(&format!("{}/app/cases/{mine}", ioc.base));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = hai.get(&format!(
        "{}/app/cases/{mine}/evidence/overview.jpg",
        ioc.base
    ));
    assert_eq!(r.status, 404);
    assert_ne!(r.header("content-type"), Some("image/jpeg"));

    // The audit log: both sign-ins and the refused look, by digest only.
    let log = audit::recent(&db, 500).await.unwrap();
    let logins: Vec<&AuditEntry> = log.iter().filter(|e| e.action == "citizen.login").collect();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[1].actor, actor_id(GIANG_ID));
    assert_eq!(logins[0].actor, actor_id(HAI_ID));
    let d: Value = serde_json::from_str(&logins[0].detail).unwrap();
    assert_eq!(d["issuer"], p.issuer);
    assert_keyed_sub(&d, "hai");
    let denied = |who: &str| -> Vec<String> {
        log.iter()
            .filter(|e| e.action == "citizen.case_denied" && e.actor == actor_id(who))
            .map(|e| e.subject.clone())
            .collect()
    };
    let case = |id: &str| format!("case:{id}");
    assert_eq!(
        denied(HAI_ID),
        [case(mine), case(mine)],
        "case and evidence"
    );
    assert_eq!(denied(GIANG_ID), [case(pending)], "the unconfirmed case");
    for e in &log {
        for text in [&e.actor, &e.subject, &e.detail] {
            assert!(
                !text.contains(GIANG_ID) && !text.contains(HAI_ID),
                "a national ID number in the audit log: {e:?}"
            );
            for sub in ["giang", "hai"] {
                assert!(
                    !text.contains(&plain_digest(sub)),
                    "the plain SHA-256 of a subject in the audit log: {e:?}"
                );
            }
        }
    }
    assert!(matches!(
        audit::verify(&db).await.unwrap(),
        audit::Verification::Intact { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_a_valid_national_id_are_refused() {
    // Claims in the ID token this time (no userinfo call).
    let (p, ioc) = pair(json!({"claimsInIdToken": true}), false).await;
    let db = ioc.db();

    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "no_id");
    let e = assert_refused(&ioc, &r, 403, "no_national_id").await;
    assert!(r.body.contains("số định danh cá nhân"), "{}", r.body);
    assert_eq!(
        (e.actor.as_str(), e.role.as_str()),
        ("citizen-sso", "anonymous")
    );
    let d: Value = serde_json::from_str(&e.detail).unwrap();
    assert_keyed_sub(&d, "no_id");

    for (account, number) in [("short_id", "12345"), ("letters_id", "00119901234X")] {
        let mut b = Browser::default();
        let r = sign_in(&mut b, &ioc, &p, account);
        let e = assert_refused(&ioc, &r, 403, "malformed_national_id").await;
        assert!(r.body.contains("12 chữ số"), "{}", r.body);
        assert_eq!(e.actor, actor_id(number), "audited by digest");
        assert!(!e.detail.contains(number), "{}", e.detail);
        assert!(!r.body.contains(number), "{}", r.body);
    }
    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "number_id");
    let e = assert_refused(&ioc, &r, 403, "malformed_national_id").await;
    assert!(e.detail.contains("JSON number"), "{}", e.detail);

    assert!(sessions(&db).await.is_empty(), "a session was started");
    // Userinfo was asked only when the ID token lacked the claim (no_id).
    assert_eq!(p.stats(&mut b)["userinfo"], 1);

    // A valid citizen still signs in on the same provider.
    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "giang");
    assert_signed_in(&r, &p);
    assert_eq!(sessions(&db).await, [GIANG_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_answers_and_the_consoles_states_are_refused() {
    // One provider with both clients; the server uses it for both.
    let (p, ioc) = pair(json!({}), true).await;
    let db = ioc.db();
    let mut b = Browser::default();
    let callback = through(&mut b, &ioc, &p, "giang");

    // A citizen sign-in's answer taken to the console's callback: its
    // state is not one the console issued (and it stays unused).
    let on_console = callback.replace("/app/sso/callback", "/console/sso/callback");
    let r = b.get(&on_console);
    assert_eq!(r.status, 400, "{}", r.body);
    let failed = audit::recent(&db, 10).await.unwrap();
    assert_eq!(failed[0].action, "sso.failed");
    assert!(
        failed[0].detail.contains("state_unknown"),
        "{:?}",
        failed[0]
    );

    // The genuine answer works once ...
    let r = b.get(&callback);
    assert_signed_in(&r, &p);
    // ... and only once.
    let r = b.get(&callback);
    assert_refused(&ioc, &r, 400, "state_replayed").await;
    // Finished in another browser than the one that started.
    let callback = through(&mut b, &ioc, &p, "giang");
    let mut other = Browser::default();
    let r = other.get(&callback);
    assert_refused(&ioc, &r, 400, "browser_mismatch").await;
    // No state at all.
    let r = b.get(&format!("{}/app/sso/callback?code=x", ioc.base));
    assert_refused(&ioc, &r, 400, "state_unknown").await;
    assert_eq!(sessions(&db).await, [GIANG_ID], "one session only");

    // The console's client on the same provider is unaffected.
    let mut officer = Browser::default();
    let callback = p.through(
        &mut officer,
        &format!("{}/console/sso/login", ioc.base),
        "police1",
        None,
        |u| u,
    );
    let r = officer.get(&callback);
    assert_eq!(r.status, 200, "{}\n{}", r.body, p.log());
    assert!(
        r.set_cookies().iter().any(|c| c.starts_with("tv_session=")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_routes_answer_not_configured_without_a_provider() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let running = app::start(&cfg).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    let mut b = Browser::default();
    let r = b.get(&format!("{base}/app/login"));
    assert!(!r.body.contains("/app/sso/login"), "{}", r.body);
    let r = b.get(&format!("{base}/app/sso/login"));
    assert_eq!(r.status, 404, "{}", r.body);
    let e = audit::recent(&running.ingestor.context().db, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(e.action, "citizen.login_failed");
    assert!(e.detail.contains("not_configured"), "{}", e.detail);
}

/// The notice's link to a case survives the sign-in: opening it signed out
/// leads to `/app/login?next=/app/cases/{id}`, the sign-in button carries
/// it, and the provider's answer lands on that case. Only a path of this
/// app is followed: `//evil.example`, an absolute URL, a `..` escape or a
/// percent-escaped slash ends on `/app/`, and is not even offered by the
/// login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_returns_to_the_linked_case_and_nowhere_else() {
    let (p, ioc) = pair(json!({}), false).await;
    let case = "/app/cases/7b0e5c3e-1d2a-4c8e-9f61-2a7f4be0c001";
    let mut b = Browser::default();
    let r = b.get(&format!("{}{case}", ioc.base));
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/app/login?next={case}").as_str())
    );
    let page = b.get(&format!("{}/app/login?next={case}", ioc.base));
    assert!(
        page.body
            .contains(&format!("href=\"/app/sso/login?next={case}\"")),
        "{}",
        page.body
    );
    let callback = p.through(
        &mut b,
        &format!("{}/app/sso/login?next={case}", ioc.base),
        "giang",
        None,
        |u| u,
    );
    let r = b.get(&callback);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(case));
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("tv_app_next=;") && c.contains("Max-Age=0")),
        "{:?}",
        r.set_cookies()
    );

    for evil in [
        "//evil.example/app/",
        "https://evil.example/app/",
        "/app/..//evil.example",
        "/app/%2F%2Fevil.example",
        "/app/../console/admin",
        "/\\evil.example",
    ] {
        let q = url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>();
        let page = b.get(&format!("{}/app/login?next={q}", ioc.base));
        assert!(
            page.body.contains("href=\"/app/sso/login\""),
            "{evil}: {}",
            page.body
        );
        let mut b = Browser::default();
        let callback = p.through(
            &mut b,
            &format!("{}/app/sso/login?next={q}", ioc.base),
            "giang",
            None,
            |u| u,
        );
        let r = b.get(&callback);
        assert_signed_in(&r, &p);
    }
}

/// A push subscription this browser holds for `national_id` (as
/// `POST /app/push/subscribe` leaves it, `tests/citizen.rs`), tied to the
/// session of cookie `token`; its id.
async fn push_row(db: &Db, national_id: &str, endpoint: &str, token: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO push_subscriptions (subscription_id, national_id, endpoint, p256dh, auth, \
         created_at, session_sha256) VALUES ($1, $2, $3, 'k', 'a', $4, $5)",
    )
    .bind(&id)
    .bind(national_id)
    .bind(format!("https://fcm.googleapis.com/fcm/send/{endpoint}"))
    .bind(now_ms())
    .bind(hex::encode(Sha256::digest(token.as_bytes())))
    .execute(db.pool())
    .await
    .unwrap();
    id
}

/// The ids of the push subscriptions left, with their owner.
async fn push_rows(db: &Db) -> Vec<(String, String)> {
    sqlx::query("SELECT subscription_id, national_id FROM push_subscriptions ORDER BY created_at")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Signing in as someone else in a browser (a shared phone) deletes the
/// previous person's push subscriptions that browser holds (its `tv_push`
/// cookie), not their other devices'; signing in again as the same person
/// keeps theirs, now tied to the new session, so they go when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_as_another_person_drops_the_browsers_push_subscriptions() {
    let (p, ioc) = pair(json!({}), false).await;
    let db = ioc.db();
    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "giang");
    assert_signed_in(&r, &p);
    let giang = b.cookie(&ioc.base, "tv_citizen").expect("session cookie");
    let phone = push_row(&db, GIANG_ID, "phone", &giang).await;
    let other = ingest_server::citizen::start_session(&db, GIANG_ID, "Giang", now_ms())
        .await
        .unwrap();
    let tablet = push_row(&db, GIANG_ID, "tablet", &other.token).await;
    let host = Url::parse(&ioc.base).unwrap();
    let key = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    let set_push = |b: &mut Browser, ids: &str| {
        let jar = b.jar.entry(key.clone()).or_default();
        jar.retain(|(n, _)| n != "tv_push");
        jar.push(("tv_push".into(), ids.into()));
    };
    set_push(&mut b, &phone);

    // Giang again in the same browser: the phone's subscription is kept,
    // tied to the new session.
    let r = sign_in(&mut b, &ioc, &p, "giang");
    assert_signed_in(&r, &p);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("tv_push={phone};"))),
        "{:?}",
        r.set_cookies()
    );
    let again = b.cookie(&ioc.base, "tv_citizen").unwrap();
    let tied: String = sqlx::query_scalar(
        "SELECT session_sha256 FROM push_subscriptions WHERE subscription_id = $1",
    )
    .bind(&phone)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(tied, hex::encode(Sha256::digest(again.as_bytes())));

    // Hải signs in on Giang's phone (her provider session over, this
    // app's cookie left): Giang's subscription there goes, her tablet's
    // stays, and the browser's cookie is emptied.
    let mut b = Browser::default();
    set_push(&mut b, &phone);
    let r = sign_in(&mut b, &ioc, &p, "hai");
    assert_signed_in(&r, &p);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("tv_push=;") && c.contains("Max-Age=0")),
        "{:?}",
        r.set_cookies()
    );
    assert_eq!(push_rows(&db).await, [(tablet, GIANG_ID.to_string())]);
}
