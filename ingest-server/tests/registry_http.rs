//! The HTTP registry adapter against a real gateway started in the test:
//! HTTPS on a free loopback port with mutual TLS (tokio-rustls; a private CA,
//! server and client certificates made with the `openssl` CLI in a temporary
//! directory), that can be told to answer, fail (500, 503, 429, 400, 403),
//! stall past the time limit, or answer nonsense (garbage, a huge body,
//! wrong types, a missing field, an HTML 404, another plate). Asserts what
//! the adapter promises: owners found and copied, every lookup logged
//! (cached or not, failed or refused at once), retries only where they can
//! help, the circuit breaker opening and recovering, the cache, and mTLS;
//! and that retention deletes the copies no kept case needs (a misread,
//! rejected), never the imported registry.

mod common;
#[path = "registry_http/gateway.rs"]
mod gateway;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{Files, bundle, event, key, public_hex};
use gateway::{Act, Gateway, PLATE, Pki, start_gateway};
use ingest_server::config::{Config, HttpRegistryConfig, RegistryBackend};
use ingest_server::db::Db;
use ingest_server::ingest::Source;
use ingest_server::registry::{
    GatewayError, HttpRegistry, Purpose, Registration, Registry, RegistryError,
};
use ingest_server::{app, cases, devices, registry};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

// ---------------------------------------------------------------- helpers

struct Fixture {
    pki: Pki,
    gw: Arc<Gateway>,
    url: String,
    db: Db,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let pki = Pki::new();
    let (gw, url) = start_gateway(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&Db::sqlite_url(&dir.path().join("t.db")))
        .await
        .unwrap();
    Fixture {
        pki,
        gw,
        url,
        db,
        _dir: dir,
    }
}

impl Fixture {
    /// Short times for tests; no cache unless a test turns it on.
    fn config(&self) -> HttpRegistryConfig {
        HttpRegistryConfig {
            url: self.url.clone(),
            ca_file: self.pki.path("ca.crt"),
            client_cert: self.pki.path("client.crt"),
            client_key: self.pki.path("client.key"),
            system_id: "ingest-test".into(),
            timeout_ms: 1_000,
            retries: 2,
            backoff_base_ms: 10,
            backoff_max_ms: 40,
            breaker_threshold: 100,
            breaker_cooldown_ms: 400,
            cache_ttl_ms: 0,
            cache_size: 0,
        }
    }

    fn registry(&self, cfg: &HttpRegistryConfig) -> HttpRegistry {
        HttpRegistry::new(cfg, self.db.clone()).unwrap()
    }

    /// `registry_access_log` in order: (actor, plate, purpose, event id,
    /// outcome).
    async fn log(&self) -> Vec<(String, String, String, Option<String>, String)> {
        sqlx::query(
            "SELECT actor, plate, purpose, event_id, outcome FROM registry_access_log \
             ORDER BY rowid",
        )
        .fetch_all(self.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
                r.get::<Option<String>, _>(3),
                r.get::<String, _>(4),
            )
        })
        .collect()
    }

    async fn outcomes(&self) -> Vec<String> {
        self.log().await.into_iter().map(|r| r.4).collect()
    }
}

fn purpose(actor: &str, event_id: Option<Uuid>) -> Purpose {
    Purpose {
        actor: actor.into(),
        reason: "identify the registered owner of a detected violation".into(),
        event_id,
    }
}

fn gateway_error(r: Result<Option<Registration>, RegistryError>) -> GatewayError {
    match r {
        Err(RegistryError::Gateway(e)) => e,
        other => panic!("expected a gateway error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_plates_give_the_owner_and_every_lookup_is_logged() {
    let f = fixture().await;
    let reg = f.registry(&f.config());
    let case = Uuid::new_v4();
    let r = reg
        .lookup(PLATE, Some("white"), &purpose("ingest", Some(case)))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(r.owner.full_name, "Nguyễn Văn An");
    assert_eq!(r.owner.national_id, "001099012345");
    assert_eq!(r.owner.email.as_deref(), Some("an@example.vn"));
    assert_eq!(r.vehicle.make, "Toyota Vios");
    assert_eq!(f.gw.hits(), 1);

    // What was asked, and nothing more.
    let (id, req) = f.gw.request(0);
    Uuid::parse_str(&id.expect("X-Request-Id sent")).expect("a UUID");
    assert_eq!(
        req,
        json!({"plate_text": PLATE, "plate_colour": "white",
            "purpose": "identify the registered owner of a detected violation",
            "case_reference": case.to_string(), "requested_by": "ingest",
            "requesting_system": "ingest-test"})
    );
    assert_eq!(
        f.log().await,
        [(
            "ingest".to_string(),
            PLATE.to_string(),
            "identify the registered owner of a detected violation".to_string(),
            Some(case.to_string()),
            "found".to_string()
        )]
    );
    // The owner is copied where notices and the citizen app read it.
    let row = sqlx::query(
        "SELECT o.national_id, o.phone, v.plate_colour FROM vehicles v \
         JOIN owners o ON o.owner_id = v.owner_id WHERE v.plate_text = $1",
    )
    .bind(PLATE)
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), "001099012345");
    assert_eq!(
        row.get::<Option<String>, _>(1),
        None,
        "the phone is not needed: not taken"
    );
    assert_eq!(row.get::<String, _>(2), "white");

    // Not found, asked without a colour: none, logged.
    let none = reg
        .lookup("51F67890", None, &purpose("police-7", None))
        .await
        .unwrap();
    assert!(none.is_none());
    let (_, req) = f.gw.request(1);
    assert!(req.get("plate_colour").is_none(), "{req}");
    assert_eq!(req["requested_by"], "police-7");
    // Ambiguous without a colour: none, logged as such.
    assert!(
        reg.lookup("29A11111", None, &purpose("ingest", None))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(f.gw.hits(), 3);
    let log = f.log().await;
    assert_eq!(
        (log[1].0.as_str(), log[1].1.as_str(), log[1].4.as_str()),
        ("police-7", "51F67890", "not_found")
    );
    assert_eq!(log[2].4, "ambiguous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_refusals_are_not() {
    let f = fixture().await;
    let reg = f.registry(&f.config());
    let p = purpose("ingest", None);

    // 500, then 429, then an answer: found on the third attempt, all three
    // with the lookup's one request id.
    f.gw.then(&[
        Act::Status(500, "internal"),
        Act::Status(429, "rate_limited"),
    ]);
    assert!(
        reg.lookup(PLATE, Some("white"), &p)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(f.gw.hits(), 3);
    let ids: Vec<_> = (0..3).map(|n| f.gw.request(n).0.unwrap()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");

    // 503 on every attempt: 1 + 2 retries, then a clear error.
    f.gw.then(&[
        Act::Status(503, "unavailable"),
        Act::Status(503, "unavailable"),
        Act::Status(503, "unavailable"),
    ]);
    let e = gateway_error(reg.lookup(PLATE, Some("white"), &p).await);
    assert!(
        matches!(
            e,
            GatewayError::Failing {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert_eq!(f.gw.hits(), 6);

    // A 400 or 403 is this request's refusal: never retried.
    for (status, code) in [(400, "invalid_request"), (403, "forbidden")] {
        f.gw.then(&[Act::Status(status, code)]);
        let before = f.gw.hits();
        let e = gateway_error(reg.lookup(PLATE, Some("white"), &p).await);
        assert!(
            matches!(&e, GatewayError::Refused { status: s, .. } if *s == status),
            "{e}"
        );
        assert!(e.to_string().contains(code), "{e}");
        assert_eq!(f.gw.hits(), before + 1, "{status} is not retried");
    }
    assert_eq!(f.outcomes().await, ["found", "error", "error", "error"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_and_are_retried() {
    let f = fixture().await;
    let mut cfg = f.config();
    cfg.timeout_ms = 200;
    cfg.retries = 1;
    let reg = f.registry(&cfg);
    let p = purpose("ingest", None);

    f.gw.always(Act::Slow(Duration::from_secs(2)));
    let e = gateway_error(reg.lookup(PLATE, None, &p).await);
    assert!(
        matches!(e, GatewayError::Unreachable { attempts: 2, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("no answer within 200 ms"), "{e}");
    assert_eq!(f.gw.hits(), 2);

    // Slow once, then quick: the retry gets it.
    f.gw.always(Act::Answer);
    f.gw.then(&[Act::Slow(Duration::from_secs(2))]);
    assert!(reg.lookup(PLATE, None, &p).await.unwrap().is_some());
    assert_eq!(f.gw.hits(), 4);
    assert_eq!(f.outcomes().await, ["error", "found"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gateway_opens_the_circuit_which_recovers_after_the_cooldown() {
    let f = fixture().await;
    let mut cfg = f.config();
    cfg.retries = 1;
    cfg.breaker_threshold = 2;
    cfg.breaker_cooldown_ms = 800;
    let reg = f.registry(&cfg);
    let p = purpose("ingest", None);
    f.gw.always(Act::Status(500, "internal"));

    // Two failed lookups (two attempts each) open the circuit.
    for n in 1..=2 {
        let e = gateway_error(reg.lookup(PLATE, None, &p).await);
        assert!(matches!(e, GatewayError::Failing { .. }), "{e}");
        assert_eq!(f.gw.hits(), 2 * n);
    }
    assert!(!reg.circuit_closed());
    // Now lookups fail at once, without a call, any plate.
    for plate in [PLATE, "51F67890"] {
        let e = gateway_error(reg.lookup(plate, None, &p).await);
        assert!(
            matches!(e, GatewayError::CircuitOpen { failures: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("circuit open"), "{e}");
    }
    assert_eq!(f.gw.hits(), 4, "no call while open");

    // After the cool-down one trial goes through; it fails: open again.
    tokio::time::sleep(Duration::from_millis(850)).await;
    let e = gateway_error(reg.lookup(PLATE, None, &p).await);
    assert!(matches!(e, GatewayError::Failing { .. }), "{e}");
    assert_eq!(f.gw.hits(), 6);
    let e = gateway_error(reg.lookup(PLATE, None, &p).await);
    assert!(matches!(e, GatewayError::CircuitOpen { .. }), "{e}");
    assert_eq!(f.gw.hits(), 6);

    // The gateway is back: after the cool-down the trial succeeds and the
    // circuit closes.
    f.gw.always(Act::Answer);
    tokio::time::sleep(Duration::from_millis(850)).await;
    assert!(reg.lookup(PLATE, None, &p).await.unwrap().is_some());
    assert!(reg.circuit_closed());
    assert!(reg.lookup("51F67890", None, &p).await.unwrap().is_none());
    assert_eq!(f.gw.hits(), 8);
    // Every lookup is in the log, the refused-at-once ones too.
    assert_eq!(
        f.outcomes().await,
        [
            "error",
            "error",
            "unavailable",
            "unavailable",
            "error",
            "unavailable",
            "found",
            "not_found"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_repeats_within_its_ttl_and_every_lookup_is_still_logged() {
    let f = fixture().await;
    let mut cfg = f.config();
    cfg.cache_ttl_ms = 5_000;
    cfg.cache_size = 100;
    cfg.retries = 0;
    let reg = f.registry(&cfg);
    let case = Uuid::new_v4();

    let first = reg
        .lookup(PLATE, Some("white"), &purpose("ingest", Some(case)))
        .await
        .unwrap();
    let second = reg
        .lookup(PLATE, Some("white"), &purpose("police-7", Some(case)))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(f.gw.hits(), 1, "the second came from the cache");
    // Not found is kept too.
    for _ in 0..2 {
        assert!(
            reg.lookup("51F67890", None, &purpose("ingest", None))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(f.gw.hits(), 2);
    // Another colour is another question.
    assert!(
        reg.lookup(PLATE, Some("yellow"), &purpose("ingest", None))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(f.gw.hits(), 3);
    // Failures are not kept: the next lookup asks again.
    f.gw.then(&[Act::Status(500, "internal")]);
    assert!(
        reg.lookup("29B12345", None, &purpose("ingest", None))
            .await
            .is_err()
    );
    assert!(
        reg.lookup("29B12345", None, &purpose("ingest", None))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(f.gw.hits(), 5);

    let log = f.log().await;
    let got: Vec<_> = log.iter().map(|r| (r.0.as_str(), r.4.as_str())).collect();
    assert_eq!(
        got,
        [
            ("ingest", "found"),
            ("police-7", "found_cached"),
            ("ingest", "not_found"),
            ("ingest", "not_found_cached"),
            ("ingest", "not_found"),
            ("ingest", "error"),
            ("ingest", "not_found"),
        ]
    );
    assert_eq!(log[1].3.as_deref(), Some(case.to_string().as_str()));

    // After the TTL the gateway is asked again.
    let mut short = f.config();
    short.cache_ttl_ms = 500;
    short.cache_size = 100;
    let reg = f.registry(&short);
    let before = f.gw.hits();
    reg.lookup(PLATE, None, &purpose("ingest", None))
        .await
        .unwrap();
    reg.lookup(PLATE, None, &purpose("ingest", None))
        .await
        .unwrap();
    assert_eq!(f.gw.hits(), before + 1);
    tokio::time::sleep(Duration::from_millis(550)).await;
    reg.lookup(PLATE, None, &purpose("ingest", None))
        .await
        .unwrap();
    assert_eq!(f.gw.hits(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answers_are_refused_with_what_was_wrong_and_not_retried() {
    let f = fixture().await;
    let reg = f.registry(&f.config());
    let p = purpose("ingest", None);
    let cases = [
        (Act::Garbage, "not JSON"),
        (Act::Huge, "longer than 65536 bytes"),
        (
            Act::WrongTypes,
            "owner.national_id: expected a string, got a number",
        ),
        (Act::Missing, "owner.full_name: missing"),
        (Act::Html404, "404 without error code `vehicle_not_found`"),
        (Act::Html200, "Content-Type `text/html`"),
        (Act::OtherPlate, "answers another plate"),
    ];
    for (act, want) in cases {
        f.gw.then(std::slice::from_ref(&act));
        let before = f.gw.hits();
        let e = gateway_error(reg.lookup(PLATE, None, &p).await);
        assert!(
            matches!(e, GatewayError::InvalidAnswer { .. }),
            "{act:?}: {e}"
        );
        assert!(e.to_string().contains(want), "{act:?}: {e}");
        assert_eq!(f.gw.hits(), before + 1, "{act:?} is not retried");
    }
    assert_eq!(f.outcomes().await, ["error"; 7]);
    // Nothing from a refused answer was kept.
    let owners: i64 = sqlx::query("SELECT COUNT(*) FROM owners")
        .fetch_one(f.db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(owners, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_a_client_without_the_right_certificate() {
    let f = fixture().await;
    let p = purpose("ingest", None);
    let mut cfg = f.config();
    cfg.retries = 0;

    // No client certificate: the TLS handshake is refused; the request
    // never reaches the gateway. (The message usually carries the alert,
    // `CertificateRequired`, but a reset may win the race: not asserted.)
    let mut none = cfg.clone();
    none.client_cert.clear();
    none.client_key.clear();
    let e = gateway_error(f.registry(&none).lookup(PLATE, None, &p).await);
    assert!(matches!(e, GatewayError::Unreachable { .. }), "{e}");
    // A certificate from a CA the gateway does not trust: the same.
    let mut rogue = cfg.clone();
    rogue.client_cert = f.pki.path("rogue.crt");
    rogue.client_key = f.pki.path("rogue.key");
    let e = gateway_error(f.registry(&rogue).lookup(PLATE, None, &p).await);
    assert!(matches!(e, GatewayError::Unreachable { .. }), "{e}");
    assert_eq!(f.gw.hits(), 0);

    // And we check the gateway: without its CA it is not trusted.
    // (A machine without system roots refuses to build such a client.)
    let mut untrusting = cfg.clone();
    untrusting.ca_file.clear();
    match HttpRegistry::new(&untrusting, f.db.clone()) {
        Ok(reg) => {
            let e = gateway_error(reg.lookup(PLATE, None, &p).await);
            assert!(e.to_string().contains("TLS"), "{e}");
        }
        Err(e) => assert!(e.to_string().contains("no trusted CA"), "{e}"),
    }
    assert_eq!(f.gw.hits(), 0);

    // The right certificate gets through.
    assert!(
        f.registry(&cfg)
            .lookup(PLATE, None, &p)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(f.gw.hits(), 1);
    // The gateway takes connections one at a time, so by now it has
    // counted the refused handshakes (at least the two above).
    assert!(f.gw.tls_refused.load(Ordering::SeqCst) >= 2);
}

/// `registry.backend = "http"` through `app::open`, as the server starts:
/// a stored case's owner is resolved through the gateway (and copied for
/// the notices); while the gateway holds a lookup unanswered the case is
/// already stored and acked; with the gateway failing, cases are still
/// stored and acked and end `error`, the circuit then failing them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_resolves_owners_through_the_gateway_and_ingest_never_waits() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut http = f.config();
    // Far longer than the test holds a lookup: it never times out here.
    http.timeout_ms = 30_000;
    http.retries = 0;
    http.breaker_threshold = 1;
    http.breaker_cooldown_ms = 60_000;
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    cfg.registry.backend = RegistryBackend::Http;
    cfg.registry.http = Some(http);
    cfg.validate().unwrap();
    let i = app::open(&cfg).await.unwrap();
    let ctx = i.context().clone();
    let k = key();
    devices::enrol(&ctx.db, "edge-01", "hn-caugiay-xuanthuy", &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(1000);
    let topic =
        || Source::Mqtt(protocol::topics::events_topic("hn-caugiay-xuanthuy", "edge-01").unwrap());
    let owner_of = |id: Uuid| {
        let db = ctx.db.clone();
        async move {
            for _ in 0..500 {
                let c = cases::case(&db, &id.to_string()).await.unwrap().unwrap();
                if c.owner_status != "pending" {
                    return (c.owner_status, c.owner_id);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("owner of {id} never looked up");
        }
    };
    let submit = |e: &protocol::ViolationEvent| {
        let b = Bytes::from(bundle(e, &k, &files));
        let i = i.clone();
        async move { i.submit(b, topic()).await.unwrap() }
    };

    let ev = event("edge-01", "hn-caugiay-xuanthuy", &files);
    assert!(submit(&ev).await.ack.is_some());
    assert_eq!(
        owner_of(ev.event_id).await,
        ("resolved".into(), Some("gw-o1".into()))
    );
    assert_eq!(f.gw.hits(), 1);
    let (_, req) = f.gw.request(0);
    assert_eq!(req["case_reference"], ev.event_id.to_string());

    // The gateway holds the next lookup until the test lets it go: the
    // case is acked while its owner is still pending, so ingest did not
    // wait for the lookup (had it waited, nothing would answer before the
    // release below, and the lookup's end would be on the case by now).
    f.gw.then(&[Act::Held]);
    let ev = event("edge-01", "hn-caugiay-xuanthuy", &files);
    let o = submit(&ev).await;
    assert!(o.ack.is_some() && o.rejection.is_none(), "stored: {o:?}");
    let owner_now = |id: Uuid| {
        let db = ctx.db.clone();
        async move {
            let c = cases::case(&db, &id.to_string()).await.unwrap().unwrap();
            (c.owner_status, c.owner_id)
        }
    };
    assert_eq!(owner_now(ev.event_id).await, ("pending".into(), None));
    for _ in 0..500 {
        if f.gw.held() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.gw.held(), 1, "the lookup reached the gateway");
    assert_eq!(owner_now(ev.event_id).await, ("pending".into(), None));
    f.gw.release();
    assert_eq!(
        owner_of(ev.event_id).await,
        ("resolved".into(), Some("gw-o1".into()))
    );
    assert_eq!(f.gw.hits(), 2);

    // The gateway fails: the case is stored and acked, its owner ends
    // `error`; the circuit is then open and the next case's lookup fails
    // without a call.
    f.gw.always(Act::Status(500, "internal"));
    for n in 0..2 {
        let ev = event("edge-01", "hn-caugiay-xuanthuy", &files);
        let o = submit(&ev).await;
        assert!(o.ack.is_some() && o.rejection.is_none(), "stored: {o:?}");
        assert_eq!(owner_of(ev.event_id).await, ("error".into(), None));
        assert_eq!(f.gw.hits(), 3, "lookup {n}");
    }
    let outcomes: Vec<String> =
        sqlx::query("SELECT outcome FROM registry_access_log ORDER BY rowid")
            .fetch_all(ctx.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(outcomes, ["found", "found", "error", "unavailable"]);
}

/// A lookup that failed (the gateway down, then its circuit open) is not
/// left `error` for good: the sweep (`registry::resolve_pending`, run at
/// start and every minute by `registry::spawn_sweeper`) looks it up again
/// once its backoff is over — 5 minutes after one failure, 10 after two —
/// and a pass stops at the first lookup that fails again, so a gateway
/// that is down is not asked once per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lookups_are_retried_with_a_backoff_until_the_gateway_answers() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut http = f.config();
    http.retries = 0;
    http.breaker_threshold = 1;
    http.breaker_cooldown_ms = 300;
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    cfg.registry.backend = RegistryBackend::Http;
    cfg.registry.http = Some(http);
    cfg.validate().unwrap();
    let i = app::open(&cfg).await.unwrap();
    let ctx = i.context().clone();
    let db = ctx.db.clone();
    let k = key();
    devices::enrol(&db, "edge-01", "hn-caugiay-xuanthuy", &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(1000);
    let owner = |id: Uuid| {
        let db = db.clone();
        async move {
            let r = sqlx::query(
                "SELECT owner_status, owner_id, owner_lookup_failures FROM events \
                 WHERE event_id = $1",
            )
            .bind(id.to_string())
            .fetch_one(db.pool())
            .await
            .unwrap();
            (
                r.get::<String, _>(0),
                r.get::<Option<String>, _>(1),
                r.get::<i64, _>(2),
            )
        }
    };
    let back_date = |minutes: i64| {
        let db = db.clone();
        async move {
            sqlx::query("UPDATE events SET owner_lookup_at = owner_lookup_at - $1")
                .bind(minutes * 60_000)
                .execute(db.pool())
                .await
                .unwrap();
        }
    };

    // The gateway fails: both cases end `error`, with no owner.
    f.gw.always(Act::Status(500, "internal"));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let ev = event("edge-01", "hn-caugiay-xuanthuy", &files);
        let b = Bytes::from(bundle(&ev, &k, &files));
        assert!(i.submit(b, Source::Http).await.unwrap().ack.is_some());
        for _ in 0..500 {
            if owner(ev.event_id).await.0 != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(owner(ev.event_id).await, ("error".into(), None, 1));
        ids.push(ev.event_id);
    }
    let registry = ctx.registry.clone().unwrap();
    let sweep = || async { registry::resolve_pending(&db, registry.as_ref(), 100).await };

    // Just failed: not asked again before the backoff is over.
    let hits = f.gw.hits();
    assert_eq!(sweep().await, 0);
    assert_eq!(f.gw.hits(), hits);

    // Six minutes on, the gateway still down: one lookup, and the pass
    // stops there.
    back_date(6).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(sweep().await, 1, "a pass stops at the first failure");
    let after: Vec<_> = [owner(ids[0]).await, owner(ids[1]).await].into();
    assert!(after.contains(&("error".into(), None, 2)), "{after:?}");
    assert!(after.contains(&("error".into(), None, 1)), "{after:?}");
    let (twice, once) = if after[0].2 == 2 {
        (ids[0], ids[1])
    } else {
        (ids[1], ids[0])
    };

    // The gateway is back (and its circuit's cool-down over): the case
    // that failed once is due and resolved; the one that just failed a
    // second time waits 10 minutes.
    f.gw.always(Act::Answer);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(sweep().await, 1);
    assert_eq!(
        owner(once).await,
        ("resolved".into(), Some("gw-o1".into()), 0)
    );
    assert_eq!(owner(twice).await, ("error".into(), None, 2));
    back_date(6).await;
    assert_eq!(sweep().await, 0, "10 minutes after a second failure");
    back_date(5).await;
    assert_eq!(sweep().await, 1);
    assert_eq!(
        owner(twice).await,
        ("resolved".into(), Some("gw-o1".into()), 0)
    );
    assert_eq!(sweep().await, 0, "nothing left to look up");
}

/// Decree 13/2023: the gateway is asked about every readable plate as its
/// case is stored, before review, and the answer copied into `owners` and
/// `vehicles`. Two cases of the gateway's plate; one is rejected as a
/// misread. 91 days on, retention purges it and drops its owner link, but
/// the copy stays: the other case, still kept, names that owner. Once that
/// one is rejected too and purged, the owner and vehicle copies are gone
/// (with an audit entry), while the imported registry's owner and vehicle,
/// which no case names, stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_gateway_copies_no_kept_case_needs_but_not_the_registry() {
    gateway_copies(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_gateway_copies_on_postgres() {
    let pg = common::Postgres::start();
    gateway_copies(Some(pg.fresh_database().await)).await;
}

async fn gateway_copies(db_url: Option<String>) {
    use ingest_server::retention::{self, RetentionConfig};
    use ingest_server::review::Reviewer;
    use ingest_server::workflow::{Action, Actor, Role};
    const DAY: i64 = 86_400_000;
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    if let Some(u) = db_url {
        cfg.database.url = u;
    }
    cfg.registry.backend = RegistryBackend::Http;
    cfg.registry.http = Some(f.config());
    cfg.validate().unwrap();
    let i = app::open(&cfg).await.unwrap();
    let ctx = i.context().clone();
    let db = ctx.db.clone();
    let k = key();
    devices::enrol(&db, "edge-01", "hn-caugiay-xuanthuy", &public_hex(&k))
        .await
        .unwrap();
    let (owners_csv, vehicles_csv) = (dir.path().join("o.csv"), dir.path().join("v.csv"));
    std::fs::write(
        &owners_csv,
        "owner_id,full_name,national_id,address,email,vneid\n\
         csv-o1,Trần Thị Bình,001188012345,\"3 Láng Hạ, Đống Đa, Hà Nội\",,\n",
    )
    .unwrap();
    std::fs::write(
        &vehicles_csv,
        "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
         29A-111.22,white,car,Kia Morning,white,active,csv-o1\n",
    )
    .unwrap();
    registry::import(&db, ctx.grammar, &vehicles_csv, &owners_csv)
        .await
        .unwrap();

    let files = Files::new(1000);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let ev = event("edge-01", "hn-caugiay-xuanthuy", &files);
        let b = Bytes::from(bundle(&ev, &k, &files));
        assert!(i.submit(b, Source::Http).await.unwrap().ack.is_some());
        ids.push(ev.event_id.to_string());
    }
    let owner_of = |id: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT owner_id FROM events WHERE event_id = $1",
            )
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap()
        }
    };
    for id in &ids {
        for _ in 0..500 {
            if owner_of(id.clone()).await.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(owner_of(id.clone()).await, Some("gw-o1".into()));
    }
    let rows = |table: &'static str| {
        let db = db.clone();
        async move {
            let key = if table == "owners" {
                "owner_id"
            } else {
                "plate_text"
            };
            let sql = format!("SELECT {key}, copied_at FROM {table} ORDER BY {key}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<Option<i64>, _>(1).is_some()))
                .collect::<Vec<_>>()
        }
    };
    // The copy is marked as one; the imported registry is not.
    assert_eq!(
        rows("owners").await,
        [("csv-o1".into(), false), ("gw-o1".into(), true)]
    );
    assert_eq!(
        rows("vehicles").await,
        [("29A11122".into(), false), ("30A12345".into(), true)]
    );

    let reviewer = Reviewer {
        db: &db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op.lan".into(),
        role: Role::Operator,
    };
    let misread = Action::Reject {
        code: "plate_unreadable".into(),
    };
    let reject = |id: String| {
        let (reviewer, op, misread) = (&reviewer, &op, &misread);
        async move {
            let now = ingest_server::db::now_ms();
            reviewer
                .act(&id, &Action::Claim, op, "", now)
                .await
                .unwrap();
            reviewer.act(&id, misread, op, "", now).await.unwrap();
        }
    };
    let run = |at: i64| {
        let (db, store) = (db.clone(), ctx.evidence.clone());
        async move {
            retention::run(&db, &store, &RetentionConfig::default(), at, false)
                .await
                .unwrap()
        }
    };

    reject(ids[0].clone()).await;
    let now = ingest_server::db::now_ms();
    let r = run(now + 91 * DAY).await;
    assert_eq!(
        (r.cases, r.owner_copies, r.vehicle_copies),
        (1, 0, 0),
        "{r:?}"
    );
    assert_eq!(
        owner_of(ids[0].clone()).await,
        None,
        "the purged case's link"
    );
    assert_eq!(owner_of(ids[1].clone()).await, Some("gw-o1".into()));
    assert_eq!(rows("owners").await.len(), 2, "the kept case needs gw-o1");

    reject(ids[1].clone()).await;
    let r = run(now + 91 * DAY).await;
    assert_eq!(
        (r.cases, r.owner_copies, r.vehicle_copies),
        (1, 1, 1),
        "{r:?}"
    );
    assert_eq!(rows("owners").await, [("csv-o1".into(), false)]);
    assert_eq!(rows("vehicles").await, [("29A11122".into(), false)]);
    let log = ingest_server::audit::recent(&db, 20).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "registry.copy_purge" && e.actor == "retention"),
        "{log:?}"
    );
    let again = run(now + 92 * DAY).await;
    assert_eq!((again.owner_copies, again.vehicle_copies), (0, 0));
    assert_eq!(rows("owners").await, [("csv-o1".into(), false)]);
}
