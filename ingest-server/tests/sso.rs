//! Single sign-on against a real OpenID Connect provider: panva's
//! `oidc-provider` (OpenID-certified), run on Node.js from
//! `tests/oidc/provider.js` on a free loopback port, and the real ingest
//! server. A small cookie-keeping HTTP client plays the browser, through the
//! console's SSO link, the provider's login interaction and back.
//!
//! Node.js and `tests/oidc/node_modules` (`make setup-node`) are required:
//! without them these tests fail with a message saying how to install them.
//! The PostgreSQL test needs PostgreSQL 15 (see tests/storage.rs), the
//! HTTPS test the `openssl` command.

mod common;
#[path = "oidc/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use common::free_port;
use harness::{Browser, Provider, Resp};
use ingest_server::accounts;
use ingest_server::app::{self, Running};
use ingest_server::audit;
use ingest_server::config::{Config, SsoConfig};
use ingest_server::db::{Db, now_ms};
use ingest_server::workflow::Role;
use serde_json::{Value, json};
use tokio_rustls::rustls;
use url::Url;

const CLIENT_ID: &str = "tv-console";
const SECRET: &str = "test-client-secret-0123456789";
/// The console's default idle limit (ms).
const IDLE_MS: i64 = accounts::DEFAULT_IDLE_MINUTES as i64 * 60_000;

// ---------------------------------------------------------------- provider

/// The provider for a server whose callbacks are `redirects`; `extra` adds
/// options (authMethod, claimsInIdToken, tlsCert, tlsKey).
fn start_provider(redirects: &[String], extra: Value) -> Provider {
    let mut opts = json!({
        "port": free_port(), "clientId": CLIENT_ID, "clientSecret": SECRET,
        "redirectUris": redirects,
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut opts, extra) {
        o.extend(e);
    }
    Provider::start(opts)
}

// ------------------------------------------------------------------ server

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

/// The SSO configuration for a server on `port`.
fn sso_config(issuer: &str, port: u16) -> SsoConfig {
    SsoConfig {
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        redirect_url: format!("http://127.0.0.1:{port}/console/sso/callback"),
        role_claim: "roles".into(),
        role_map: [
            ("ioc-police".to_string(), "police".to_string()),
            ("ioc-operator".to_string(), "operator".to_string()),
        ]
        .into(),
        extra_scopes: vec!["roles".into()],
        ..SsoConfig::default()
    }
}

async fn start_server(port: u16, sso: Option<SsoConfig>, database_url: Option<&str>) -> Ioc {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        sso,
        ..Config::default()
    };
    cfg.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    if let Some(u) = database_url {
        cfg.database.url = u.into();
    }
    cfg.validate().unwrap();
    let running = app::start(&cfg).await.unwrap();
    Ioc {
        base: format!("http://127.0.0.1:{port}"),
        running,
        _dir: dir,
    }
}

/// A provider and a server that uses it.
async fn pair(extra: Value, tweak: impl FnOnce(&mut SsoConfig)) -> (Provider, Ioc) {
    let port = free_port();
    let mut probe = sso_config("http://127.0.0.1:1", port);
    let provider = start_provider(&[probe.redirect_url.clone()], extra);
    probe.issuer = provider.issuer.clone();
    tweak(&mut probe);
    let ioc = start_server(port, Some(probe), None).await;
    (provider, ioc)
}

// -------------------------------------------------------------------- flow

/// From the console's SSO link through the provider's login as `account`:
/// the callback URL the provider sends the browser to (not yet visited).
/// `edit` may change the authorization request on its way.
fn through_provider(
    b: &mut Browser,
    ioc: &Ioc,
    p: &Provider,
    account: &str,
    edit: impl FnOnce(String) -> String,
) -> String {
    p.through(
        b,
        &format!("{}/console/sso/login", ioc.base),
        account,
        None,
        edit,
    )
}

/// The whole way: link, provider, callback; the callback's answer.
fn sign_in(b: &mut Browser, ioc: &Ioc, p: &Provider, account: &str) -> Resp {
    let callback = through_provider(b, ioc, p, account, |u| u);
    b.get(&callback)
}

fn session_token(r: &Resp) -> String {
    r.set_cookies()
        .iter()
        .find_map(|c| c.strip_prefix("tv_session="))
        .and_then(|c| c.split(';').next())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("no session cookie in {r:?}"))
        .to_string()
}

/// The newest `sso.failed` entry's detail, and the number of such entries.
async fn last_failure(db: &Db) -> (Value, usize) {
    let all = audit::recent(db, 500).await.unwrap();
    let failed: Vec<_> = all.iter().filter(|e| e.action == "sso.failed").collect();
    let d = failed
        .first()
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .unwrap_or(Value::Null);
    (d, failed.len())
}

/// Asserts a refused callback: status, a page that says so, and the
/// audit entry with `reason` (and `check` for ID token failures).
async fn assert_refused(ioc: &Ioc, r: &Resp, status: u16, reason: &str, check: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.body.contains("Không đăng nhập được bằng SSO"),
        "{}",
        r.body
    );
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| !c.starts_with("tv_session="))
    );
    let (d, _) = last_failure(&ioc.db()).await;
    assert_eq!(d["reason"], reason, "{d}");
    if let Some(c) = check {
        assert_eq!(d["check"], c, "{d}");
    }
}

async fn users(db: &Db) -> Vec<accounts::User> {
    accounts::list(db).await.unwrap()
}

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn police_officer_signs_in_with_sso() {
    let (p, ioc) = pair(json!({}), |_| {}).await;
    let mut b = Browser::default();

    // The link sends the browser to the provider with everything the flow needs.
    let r = b.get(&format!("{}/console/sso/login", ioc.base));
    assert_eq!(r.status, 303, "{}", r.body);
    let auth = Url::parse(&r.location()).unwrap();
    assert!(auth.as_str().starts_with(&format!("{}/auth?", p.issuer)));
    let q: HashMap<String, String> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(
        q["redirect_uri"],
        format!("{}/console/sso/callback", ioc.base)
    );
    assert_eq!(q["scope"], "openid profile roles");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    let binding = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tv_sso="))
        .unwrap()
        .to_string();
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
        "{binding}"
    );

    // The whole way, as a browser goes it.
    let callback = through_provider(&mut b, &ioc, &p, "police1", |u| u);
    assert!(callback.starts_with(&format!("{}/console/sso/callback?", ioc.base)));
    let r = b.get(&callback);
    assert_eq!(r.status, 200, "{}\n{}", r.body, p.log());
    assert!(r.body.contains("url=/console/"), "{}", r.body);
    let token = session_token(&r);
    assert!(r.set_cookies().iter().any(|c| c.starts_with("tv_session=")
        && c.contains("HttpOnly")
        && c.contains("SameSite=Strict")));

    // The session works, with the role from the claim.
    let db = ioc.db();
    let s = accounts::session(&db, &token, now_ms(), IDLE_MS)
        .await
        .unwrap()
        .expect("the session cookie is not accepted");
    assert_eq!(s.user.role, Role::Police);
    assert_eq!(s.user.username, "canh.tv");
    assert_eq!(s.user.display_name, "Trần Văn Cảnh");
    let all = users(&db).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].role, Role::Police);

    // ... and on the console itself: signed in, not sent to the login page.
    let r = b.get(&format!("{}/console/", ioc.base));
    assert_ne!(r.status, 404, "the console has no /console/ page");
    let mut r = r;
    for _ in 0..5 {
        if r.status != 303 && r.status != 302 {
            break;
        }
        let to = r.location();
        assert!(
            !to.contains("/console/login"),
            "signed in, yet sent to {to}"
        );
        r = b.get(&to);
    }
    assert_eq!(r.status, 200, "{}", r.body);
    let mut stranger = Browser::default();
    let r = stranger.get(&format!("{}/console/", ioc.base));
    assert!(
        r.status == 401
            || r.header("location")
                .is_some_and(|l| l.contains("/console/login")),
        "without the cookie: {r:?}"
    );

    // The audit log has the sign-in.
    let log = audit::recent(&db, 50).await.unwrap();
    let e = log
        .iter()
        .find(|e| e.action == "sso.login")
        .expect("no sso.login in the audit log");
    assert_eq!(e.subject, format!("user:{}", s.user.user_id));
    let d: Value = serde_json::from_str(&e.detail).unwrap();
    assert_eq!(d["role"], "police");
    assert_eq!(d["sub"], "police1");
    assert_eq!(d["provider_roles"], json!(["ioc-police", "staff"]));
    assert_eq!(d["issuer"], p.issuer);
    // The provider's default: roles from userinfo, not the ID token.
    assert!(p.stats(&mut b)["userinfo"].as_u64().unwrap() >= 1);

    // Again (the provider remembers the person): the same account.
    let callback = through_provider(&mut b, &ioc, &p, "police1", |u| u);
    let r = b.get(&callback);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(session_token(&r), token);
    let again = users(&db).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].user_id, all[0].user_id);
    assert!(matches!(
        audit::verify(&db).await.unwrap(),
        audit::Verification::Intact { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_must_be_ours_unused_fresh_and_from_this_browser() {
    let (p, ioc) = pair(json!({}), |_| {}).await;
    let db = ioc.db();
    let mut b = Browser::default();
    let callback = through_provider(&mut b, &ioc, &p, "police1", |u| u);

    // A state we never issued.
    let mut forged = Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged.query_pairs().into_owned().collect();
    forged.query_pairs_mut().clear();
    for (k, v) in &pairs {
        let v = if k == "state" {
            "bm90LW91ci1zdGF0ZQ"
        } else {
            v
        };
        forged.query_pairs_mut().append_pair(k, v);
    }
    let r = b.get(forged.as_str());
    assert_refused(&ioc, &r, 400, "state_unknown", None).await;
    let r = b.get(&format!("{}/console/sso/callback?code=x", ioc.base));
    assert_refused(&ioc, &r, 400, "state_unknown", None).await;

    // The genuine answer still works once ...
    let r = b.get(&callback);
    assert_eq!(r.status, 200, "{}", r.body);
    session_token(&r);
    // ... and only once.
    let r = b.get(&callback);
    assert_refused(&ioc, &r, 400, "state_replayed", None).await;

    // Finished in another browser than the one that started (login CSRF).
    let callback = through_provider(&mut b, &ioc, &p, "police1", |u| u);
    let mut victim = Browser::default();
    let r = victim.get(&callback);
    assert_refused(&ioc, &r, 400, "browser_mismatch", None).await;
    // That attempt used the state up: the starter cannot finish either.
    let r = b.get(&callback);
    assert_refused(&ioc, &r, 400, "state_replayed", None).await;

    // Older than ten minutes.
    let callback = through_provider(&mut b, &ioc, &p, "police1", |u| u);
    sqlx::query("UPDATE sso_logins SET expires_at = $1 WHERE used_at IS NULL")
        .bind(now_ms() - 1)
        .execute(db.pool())
        .await
        .unwrap();
    let r = b.get(&callback);
    assert_refused(&ioc, &r, 400, "state_expired", None).await;

    // The person cancels at the provider (a browser it does not know yet).
    let mut c = Browser::default();
    let r = c.get(&format!("{}/console/sso/login", ioc.base));
    let r = c.get(&r.location());
    assert_eq!(r.status, 303, "{}", r.body);
    let interaction = r.location();
    assert!(interaction.contains("/interaction/"), "{interaction}");
    let r = c.post_form(&format!("{interaction}/abort"), &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = c.get(&r.location());
    let back = r.location();
    assert!(back.contains("error=access_denied"), "{back}");
    let r = c.get(&back);
    assert_refused(&ioc, &r, 401, "provider_denied", None).await;

    let (_, failures) = last_failure(&db).await;
    assert_eq!(failures, 7);
    assert_eq!(users(&db).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_with_another_nonce_is_refused() {
    let (p, ioc) = pair(json!({}), |_| {}).await;
    let mut b = Browser::default();
    // An authorization request whose nonce is not the one the server
    // stored: the provider signs a token for it, correctly, but it is not
    // this sign-in's token (token injection).
    let callback = through_provider(&mut b, &ioc, &p, "police1", |auth| {
        let mut u = Url::parse(&auth).unwrap();
        let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        u.query_pairs_mut().clear();
        for (k, v) in &pairs {
            let v = if k == "nonce" {
                "an-attackers-nonce"
            } else {
                v
            };
            u.query_pairs_mut().append_pair(k, v);
        }
        u.to_string()
    });
    let r = b.get(&callback);
    assert_refused(&ioc, &r, 401, "id_token", Some("nonce_mismatch")).await;
    assert!(users(&ioc.db()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_for_another_audience_is_refused() {
    let (p, ioc) = pair(json!({}), |_| {}).await;
    let mut b = Browser::default();
    p.tamper(&mut b, "aud");
    let callback = through_provider(&mut b, &ioc, &p, "police1", |u| u);
    let r = b.get(&callback);
    assert_refused(&ioc, &r, 401, "id_token", Some("audience_mismatch")).await;
    assert!(users(&ioc.db()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_with_a_bad_signature_is_refused() {
    let (p, ioc) = pair(json!({}), |_| {}).await;
    let db = ioc.db();
    let mut b = Browser::default();
    // A good sign-in first: the server has the provider's keys cached.
    let r = sign_in(&mut b, &ioc, &p, "police1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(p.stats(&mut b)["jwks"], 1);

    // A key the provider's JWKS does not have: fetched again once, then refused.
    p.tamper(&mut b, "unknown_kid");
    let r = sign_in(&mut b, &ioc, &p, "police1");
    assert_refused(&ioc, &r, 401, "id_token", Some("unknown_key")).await;
    assert_eq!(
        p.stats(&mut b)["jwks"],
        2,
        "the JWKS is fetched again exactly once"
    );

    // Signed by another key under the provider's kid.
    p.tamper(&mut b, "forged");
    let r = sign_in(&mut b, &ioc, &p, "police1");
    assert_refused(&ioc, &r, 401, "id_token", Some("bad_signature")).await;

    // The provider's signature over other claims (sub changed in transit).
    p.tamper(&mut b, "payload");
    let r = sign_in(&mut b, &ioc, &p, "police1");
    assert_refused(&ioc, &r, 401, "id_token", Some("bad_signature")).await;
    assert_eq!(p.stats(&mut b)["jwks"], 2);

    let all = users(&db).await;
    assert_eq!(all.len(), 1, "only the genuine sign-in made an account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_without_a_mapped_role_is_refused_and_gets_no_account() {
    // Claims in the ID token this time (no userinfo call).
    let (p, ioc) = pair(json!({"claimsInIdToken": true}), |_| {}).await;
    let db = ioc.db();
    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "visitor1");
    assert_refused(&ioc, &r, 403, "no_role", None).await;
    let (d, _) = last_failure(&db).await;
    assert_eq!(d["sub"], "visitor1");
    assert_eq!(d["provider_roles"], json!(["staff"]));
    let log = audit::recent(&db, 5).await.unwrap();
    assert_eq!(log[0].actor, "khach.lt");
    assert!(users(&db).await.is_empty(), "an account was made");

    // Two provider roles that map to two console roles: refused as well.
    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "both1");
    assert_refused(&ioc, &r, 403, "several_roles", None).await;
    assert!(users(&db).await.is_empty());

    // A role given as one string maps too.
    let mut b = Browser::default();
    let r = sign_in(&mut b, &ioc, &p, "operator1");
    assert_eq!(r.status, 200, "{}", r.body);
    let s = accounts::session(&db, &session_token(&r), now_ms(), IDLE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.user.role, Role::Operator);
    assert_eq!(p.stats(&mut b)["userinfo"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_routes_answer_not_configured_without_a_provider() {
    let ioc = start_server(free_port(), None, None).await;
    let mut b = Browser::default();
    let r = b.get(&format!("{}/console/sso/login", ioc.base));
    assert_refused(&ioc, &r, 404, "not_configured", None).await;
}

/// A provider on `https://` whose certificate comes from a private CA:
/// trusted through `sso.ca_file`, refused without it. Its token endpoint
/// takes only `client_secret_post`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_provider_with_a_private_ca_and_client_secret_post() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("openssl is needed for this test (apt-get install openssl): {e}")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=IOC test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "idp.key",
        "-out",
        "idp.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "idp.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "idp.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let ca = dir.join("ca.pem").display().to_string();
    let extra = json!({
        "tlsCert": dir.join("idp.pem"), "tlsKey": dir.join("idp.key"),
        "authMethod": "client_secret_post",
    });
    let (p, ioc) = pair(extra, |c| c.ca_file = ca.clone()).await;
    assert!(p.issuer.starts_with("https://"), "{}", p.issuer);

    let mut roots = rustls::RootCertStore::empty();
    for c in ingest_server::sso::load_ca_file(&ca).unwrap() {
        roots.add(c).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut b = Browser {
        tls: Some(Arc::new(tls)),
        ..Browser::default()
    };
    let r = sign_in(&mut b, &ioc, &p, "police1");
    assert_eq!(r.status, 200, "{}\n{}", r.body, p.log());
    let s = accounts::session(&ioc.db(), &session_token(&r), now_ms(), IDLE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.user.role, Role::Police);

    // The same provider without the CA: not trusted.
    let port = free_port();
    let mut cfg = sso_config(&p.issuer, port);
    cfg.redirect_url = format!("{}/console/sso/callback", ioc.base);
    let untrusting = start_server(port, Some(cfg), None).await;
    let r = b.get(&format!("{}/console/sso/login", untrusting.base));
    assert_refused(&untrusting, &r, 502, "provider_error", None).await;
    let (d, _) = last_failure(&untrusting.db()).await;
    assert!(d["message"].as_str().unwrap().contains("TLS"), "{d}");
}

/// Two server replicas on one PostgreSQL database: a sign-in started on
/// one finishes on the other (a load balancer may send the answer to
/// either), and its state is still single use across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_started_on_one_replica_finishes_on_another_postgres() {
    let pg = common::Postgres::start();
    let url = pg.fresh_database().await;
    let (port_a, port_b) = (free_port(), free_port());
    let public = sso_config("http://127.0.0.1:1", port_a);
    let p = start_provider(std::slice::from_ref(&public.redirect_url), json!({}));
    let cfg = SsoConfig {
        issuer: p.issuer.clone(),
        ..public
    };
    let a = start_server(port_a, Some(cfg.clone()), Some(&url)).await;
    let b_srv = start_server(port_b, Some(cfg), Some(&url)).await;

    let mut b = Browser::default();
    let callback = through_provider(&mut b, &a, &p, "police1", |u| u);
    // The browser binding cookie belongs to the public address; the
    // replica behind it sees the same cookie.
    let binding = b.cookie(&a.base, "tv_sso").unwrap();
    let on_b = callback.replace(&a.base, &b_srv.base);
    b.jar
        .entry(format!("127.0.0.1:{port_b}"))
        .or_default()
        .push(("tv_sso".into(), binding));
    let r = b.get(&on_b);
    assert_eq!(r.status, 200, "{}\n{}", r.body, p.log());
    let s = accounts::session(&a.db(), &session_token(&r), now_ms(), IDLE_MS)
        .await
        .unwrap()
        .expect("replica A does not know replica B's session");
    assert_eq!(s.user.role, Role::Police);
    // Replayed on the first replica.
    let r = b.get(&callback);
    assert_refused(&a, &r, 400, "state_replayed", None).await;
}
