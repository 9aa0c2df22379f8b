//! The HTTP surface against a running server: `POST /api/v1/violations`
//! (the same bundle bytes as MQTT, answered with the protocol's ack), JSON
//! errors with stable codes, the admin API behind its token, and the
//! `device` CLI of the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use common::*;
use ingest_server::app;
use ingest_server::config::Config;
use protocol::{Ack, Message, RejectCode};
use serde_json::{Value, json};

const SITE: &str = "dn-haichau-01";
const TOKEN: &str = "test-admin-token-0123456789";

/// A minimal HTTP/1.1 client (one request per connection): status and body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

const BUNDLE: (&str, &str) = ("Content-Type", "application/vnd.tv.bundle");
const AUTH: (&str, &str) = ("Authorization", "Bearer test-admin-token-0123456789");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_over_http_and_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.admin.token = TOKEN.into();
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;

    tokio::task::spawn_blocking(move || {
        let (st, body) = request(addr, "GET", "/healthz", &[], b"");
        assert_eq!((st, json_of(&body)["status"].clone()), (200, json!("ok")));
        assert_eq!(request(addr, "GET", "/readyz", &[], b"").0, 200);

        // Enrolment through the admin API, which wants its token.
        let k = key();
        let new =
            json!({"device_id": "edge-h", "site": SITE, "public_key": public_hex(&k)}).to_string();
        let ct_json = ("Content-Type", "application/json");
        let (st, body) = request(addr, "POST", "/api/v1/devices", &[ct_json], new.as_bytes());
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
        let (st, _) = request(
            addr,
            "POST",
            "/api/v1/devices",
            &[ct_json, AUTH],
            new.as_bytes(),
        );
        assert_eq!(st, 201);
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/devices",
            &[ct_json, AUTH],
            new.as_bytes(),
        );
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (409, json!("conflict"))
        );
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/devices",
            &[ct_json, AUTH],
            b"{not json",
        );
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (400, json!("invalid_json"))
        );
        let (st, body) = request(addr, "GET", "/api/v1/nothing", &[], b"");
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (404, json!("not_found"))
        );
        let bad = json!({"device_id": "edge-z", "site": SITE, "public_key": "00"}).to_string();
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/devices",
            &[ct_json, AUTH],
            bad.as_bytes(),
        );
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (400, json!("invalid_key"))
        );

        // A bundle: 201 stored, then 200 duplicate, with the protocol's ack.
        let files = Files::new(1000);
        let ev = event("edge-h", SITE, &files);
        let b = bundle(&ev, &k, &files);
        let (st, body) = request(addr, "POST", "/api/v1/violations", &[BUNDLE], &b);
        assert_eq!(
            (st, Ack::from_json(&body).unwrap()),
            (201, Ack::stored(ev.event_id))
        );
        let (st, body) = request(addr, "POST", "/api/v1/violations", &[BUNDLE], &b);
        assert_eq!(
            (st, Ack::from_json(&body).unwrap()),
            (200, Ack::duplicate(ev.event_id))
        );

        // Rejected with an event id: 422 and a rejecting ack.
        let forged = bundle(&event("edge-h", SITE, &files), &key(), &files);
        let (st, body) = request(addr, "POST", "/api/v1/violations", &[BUNDLE], &forged);
        assert_eq!(st, 422);
        let ack = Ack::from_json(&body).unwrap();
        assert!(matches!(
            ack.status,
            protocol::AckStatus::Rejected {
                code: RejectCode::BadSignature,
                ..
            }
        ));
        // Malformed: 400 with a stable code; wrong content type: 415.
        let (st, body) = request(addr, "POST", "/api/v1/violations", &[BUNDLE], b"TVB1\0\0");
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (400, json!("malformed"))
        );
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/violations",
            &[("Content-Type", "text/plain")],
            &b,
        );
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (415, json!("unsupported_media_type"))
        );

        let huge = vec![0u8; 17 << 20];
        let (st, body) = request(addr, "POST", "/api/v1/violations", &[BUNDLE], &huge);
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (413, json!("payload_too_large"))
        );

        // Admin views.
        let (st, body) = request(
            addr,
            "GET",
            &format!("/api/v1/cases/{}", ev.event_id),
            &[AUTH],
            b"",
        );
        assert_eq!(st, 200);
        let case = json_of(&body);
        assert_eq!(
            (
                case["fine_min_vnd"].clone(),
                case["evidence_stored"].clone()
            ),
            (json!(18_000_000), json!(2))
        );
        let (st, body) = request(addr, "GET", "/api/v1/quarantine", &[AUTH], b"");
        assert_eq!(st, 200);
        let codes: Vec<_> = json_of(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason_code"].clone())
            .collect();
        assert!(
            codes.contains(&json!("bad_signature")) && codes.contains(&json!("malformed")),
            "{codes:?}"
        );
        // Anonymous HTTP requests that no enrolled device signed are kept
        // as a row with the bytes' hash and size, not the bytes: anyone may
        // post, and the disk is not theirs to fill.
        for e in json_of(&body).as_array().unwrap() {
            let sha = e["payload_sha256"].as_str().unwrap();
            let (st, _) = request(
                addr,
                "GET",
                &format!("/api/v1/evidence/{sha}"),
                &[AUTH],
                b"",
            );
            assert_eq!(st, 404, "{e}");
            assert!(e["payload_size"].as_u64().unwrap() > 0, "{e}");
        }
        let sha = protocol::sha256_hex(&files.overview);
        let (st, body) = request(
            addr,
            "GET",
            &format!("/api/v1/evidence/{sha}"),
            &[AUTH],
            b"",
        );
        assert_eq!((st, body), (200, files.overview.clone()));
        let (st, _) = request(addr, "GET", "/api/v1/evidence/nothex", &[AUTH], b"");
        assert_eq!(st, 400);

        // Metrics are not for the network: a request a local proxy
        // forwards (or any non-local one) needs the token, unset here.
        let (st, _) = request(
            addr,
            "GET",
            "/metrics",
            &[("X-Forwarded-For", "203.0.113.5")],
            b"",
        );
        assert_eq!(st, 401);
        // Prometheus metrics count what happened.
        let (st, body) = request(addr, "GET", "/metrics", &[], b"");
        let text = String::from_utf8(body).unwrap();
        assert_eq!(st, 200);
        assert!(
            text.contains("ingest_bundles_total{outcome=\"stored\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ingest_bundles_total{outcome=\"duplicate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ingest_quarantined_total{reason=\"bad_signature\"} 1"),
            "{text}"
        );

        // Every documented route is served (none falls through to "route not found").
        for (method, path) in ingest_server::web::ROUTES {
            let path = path
                .replace("{id}", "edge-h")
                .replace("{event_id}", &ev.event_id.to_string())
                .replace("{sha256}", &sha);
            let (_, body) = request(addr, &method.to_uppercase(), &path, &[AUTH], b"");
            assert!(
                !String::from_utf8_lossy(&body).contains("route not found"),
                "{method} {path}"
            );
        }
        let (st, body) = request(addr, "GET", "/api/v1/openapi.json", &[], b"");
        assert_eq!(
            (st, json_of(&body)["openapi"].clone()),
            (200, json!("3.1.0"))
        );

        // Revocation: later events from it are refused.
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/devices/edge-h/revoke",
            &[ct_json, AUTH],
            br#"{"reason":"replaced"}"#,
        );
        assert_eq!(st, 200);
        assert!(json_of(&body)["revoked_at"].is_number());
        let ev2 = event("edge-h", SITE, &files);
        let (st, _) = request(
            addr,
            "POST",
            "/api/v1/violations",
            &[BUNDLE],
            &bundle(&ev2, &k, &files),
        );
        assert_eq!(st, 422);
        let (st, body) = request(addr, "POST", "/api/v1/devices/nobody/revoke", &[AUTH], b"");
        assert_eq!(
            (st, json_of(&body)["error"]["code"].clone()),
            (404, json!("not_found"))
        );
    })
    .await
    .unwrap();

    // Each change through the admin API is in the audit log, once; the
    // refused calls (no token, a duplicate, a bad key, an unknown device)
    // and the revocation of a device already revoked left nothing.
    let log = audit_actions(&server.ingestor.context().db).await;
    let changes: Vec<_> = log.iter().filter(|e| e.1.starts_with("device.")).collect();
    assert_eq!(
        changes,
        [
            ("admin-api", "device.enrol", "edge-h"),
            ("admin-api", "device.revoke", "edge-h"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        .iter()
        .collect::<Vec<_>>(),
    );
    // Every read of personal data through the API is logged too: the
    // case, its evidence, the list; a malformed digest reads nothing and
    // logs nothing.
    let reads: Vec<&str> = log
        .iter()
        .filter(|e| e.1.starts_with("api."))
        .map(|e| e.1.as_str())
        .collect();
    assert!(reads.contains(&"api.case.read"), "{log:?}");
    assert!(reads.contains(&"api.evidence.read"), "{log:?}");
    assert!(reads.contains(&"api.cases.list"), "{log:?}");
    assert!(!log.iter().any(|e| e.2.contains("nothex")), "{log:?}");
}

/// `(actor, action, subject)` of every audit entry, oldest first.
async fn audit_actions(db: &ingest_server::db::Db) -> Vec<(String, String, String)> {
    let mut log: Vec<_> = ingest_server::audit::recent(db, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, (e.actor, e.action, e.subject)))
        .collect();
    log.sort();
    log.into_iter().map(|(_, e)| e).collect()
}

#[test]
fn device_cli_add_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli(dir.path(), args);
    let k = public_hex(&key());
    let (ok, out, err) = run(&[
        "device",
        "add",
        "--id",
        "edge-c",
        "--site",
        SITE,
        "--public-key",
        &k,
    ]);
    assert!(ok && out.contains("enrolled edge-c"), "{out}{err}");
    let (ok, _, err) = run(&[
        "device",
        "add",
        "--id",
        "edge-c",
        "--site",
        SITE,
        "--public-key",
        &k,
    ]);
    assert!(!ok && err.contains("already enrolled"), "{err}");
    let (ok, _, err) = run(&[
        "device",
        "add",
        "--id",
        "edge-d",
        "--site",
        SITE,
        "--public-key",
        "xyz",
    ]);
    assert!(!ok && err.contains("invalid public key"), "{err}");
    let (ok, out, _) = run(&["device", "list"]);
    assert!(
        ok && out.contains("edge-c") && out.contains("active"),
        "{out}"
    );
    let (ok, out, _) = run(&["device", "revoke", "edge-c"]);
    assert!(ok && out.contains("revoked edge-c"), "{out}");
    let (ok, out, _) = run(&["device", "list"]);
    assert!(ok && out.contains("revoked"), "{out}");

    // The two changes are in the audit log, as the command line's user.
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = rt.block_on(async {
        let db = ingest_server::db::Db::connect(&cfg.database_url())
            .await
            .unwrap();
        audit_actions(&db).await
    });
    let actions: Vec<_> = log
        .iter()
        .map(|(who, what, on)| (who.starts_with("cli:"), what.as_str(), on.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            (true, "device.enrol", "edge-c"),
            (true, "device.revoke", "edge-c")
        ]
    );
}

#[test]
fn registry_cli_reports_problems_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let owners = dir.path().join("owners.csv");
    let vehicles = dir.path().join("vehicles.csv");
    std::fs::write(&owners, "owner_id,full_name,national_id,address,phone,email,vneid\no1,Lê Văn C,079123456789,Đà Nẵng,,,\n").unwrap();
    std::fs::write(&vehicles, "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n43A-123.45,white,car,Honda City,black,active,o1\n43A-1,white,car,X,black,active,o1\n").unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_ingest-server"))
            .args(["registry", "import"])
            .arg(&vehicles)
            .arg(&owners)
            .env("INGEST_DATA_DIR", dir.path().join("data"))
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("vehicles.csv:3:")
            && err.contains("nothing imported"),
        "{err}"
    );
    std::fs::write(&vehicles, "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n43A-123.45,white,car,Honda City,black,active,o1\n").unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1 vehicles and 1 owners"));
}

/// Personal admin API tokens: with no shared token configured, an
/// administrator's own token is accepted and the audit log names that
/// person; the token stops working when revoked, and another one when its
/// account is disabled; non-administrators get none, and a token with a
/// wrong secret or an unknown id is refused like any bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_admin_tokens_name_the_person_and_can_be_revoked() {
    use ingest_server::accounts;
    use ingest_server::api_tokens::{self, ApiTokenError};
    use ingest_server::audit::Who;
    use ingest_server::workflow::Role;
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    let db = server.ingestor.context().db.clone();
    let boot = Who::new("test", Role::Admin);
    let mut admins = Vec::new();
    for name in ["qt.em", "qt.hoa"] {
        let u = accounts::create(
            &db,
            name,
            name,
            Role::Admin,
            Some("a long enough passphrase"),
            &boot,
        )
        .await
        .unwrap();
        admins.push(u);
    }
    accounts::create(
        &db,
        "op.an",
        "An",
        Role::Operator,
        Some("a long enough passphrase"),
        &boot,
    )
    .await
    .unwrap();
    assert!(matches!(
        api_tokens::create(&db, "op.an", "x", None, &boot).await,
        Err(ApiTokenError::NotAdmin(_))
    ));
    let em = api_tokens::create(&db, "qt.em", "provisioning", Some(30), &boot)
        .await
        .unwrap();
    let hoa = api_tokens::create(&db, "qt.hoa", "", None, &boot)
        .await
        .unwrap();
    assert!(em.token.starts_with(&format!("tvat.{}.", em.token_id)));

    let k = key();
    let tokens = (em.token.clone(), hoa.token.clone());
    let first = tokens.0.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        let ct = ("Content-Type", "application/json");
        let enrol = |token: &str, id: &str| {
            let auth = format!("Bearer {token}");
            let body = json!({"device_id": id, "site": SITE, "public_key": public_hex(&k)});
            request(
                addr,
                "POST",
                "/api/v1/devices",
                &[ct, ("Authorization", auth.as_str())],
                body.to_string().as_bytes(),
            )
            .0
        };
        // Change the secret's last character to one it is not, so the
        // token is wrong whatever the generator drew.
        let last = if first.ends_with('0') { '1' } else { '0' };
        let wrong_secret = format!("{}{last}", &first[..first.len() - 1]);
        vec![
            enrol(&first, "edge-t1"),
            enrol(&wrong_secret, "edge-t2"),
            enrol("tvat.0000000000000000.00", "edge-t3"),
            enrol("test-admin-token-0123456789", "edge-t4"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        statuses,
        [201, 401, 401, 503],
        "own token, wrong secret, unknown id, shared token off"
    );
    let log = audit_actions(&db).await;
    assert!(
        log.contains(&(
            admins[0].user_id.clone(),
            "device.enrol".into(),
            "edge-t1".into()
        )),
        "{log:?}"
    );

    api_tokens::revoke(&db, &em.token_id, &boot).await.unwrap();
    accounts::disable(&db, "qt.hoa", &boot).await.unwrap();
    let statuses = tokio::task::spawn_blocking(move || {
        [tokens.0, tokens.1].map(|t| {
            let auth = format!("Bearer {t}");
            request(
                addr,
                "GET",
                "/api/v1/devices",
                &[("Authorization", auth.as_str())],
                b"",
            )
            .0
        })
    })
    .await
    .unwrap();
    assert_eq!(statuses, [401, 401], "revoked token, disabled account");
    let log = audit_actions(&db).await;
    for action in ["api_token.create", "api_token.revoke"] {
        assert!(
            log.iter().any(|(_, a, _)| a == action),
            "{action} audited: {log:?}"
        );
    }
}

/// The bundle route is open to anyone and each body may be 16 MiB: only
/// a few are read at once, the others answered 503 (a device retries, or
/// delivers over MQTT) rather than buffered without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_few_bundle_uploads_are_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    tokio::task::spawn_blocking(move || {
        // Slow clients: headers and a first few bytes of a big body.
        let slow: Vec<TcpStream> = (0..ingest_server::web::MAX_UPLOADS)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(
                    b"POST /api/v1/violations HTTP/1.1\r\nHost: test\r\n\
                      Content-Type: application/vnd.tv.bundle\r\nContent-Length: 1000000\r\n\r\nTVB",
                )
                .unwrap();
                s
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let ct = ("Content-Type", "application/vnd.tv.bundle");
        let (st, body) = request(addr, "POST", "/api/v1/violations", &[ct], b"not a bundle");
        assert_eq!(st, 503, "{}", String::from_utf8_lossy(&body));
        // Once they go, the route reads again (and refuses junk as junk).
        drop(slow);
        let mut answered = 0;
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            answered = request(addr, "POST", "/api/v1/violations", &[ct], b"not a bundle").0;
            if answered != 503 {
                break;
            }
        }
        assert_eq!(answered, 400);
    })
    .await
    .unwrap();
}
