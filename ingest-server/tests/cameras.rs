//! The camera registry against the running server: enrolment, listing and
//! retirement through the admin API and the CLI of the real binary, bad
//! input answered 4xx naming the field, and verification: events from an
//! enrolled camera are stored; from an unknown camera, a retired camera, for
//! a violation type the camera is not approved for, and speeding after the
//! camera's certificate lapsed, each lands in the quarantine with its reason
//! while the server keeps serving. Run on SQLite and on PostgreSQL; with
//! `require_known_camera` off an unknown camera is accepted.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::web::{Client, Resp};
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::Config;
use ingest_server::{devices, heartbeats};
use protocol::{Ack, AckStatus, Message, RejectCode, Speed, ViolationEvent, ViolationType, topics};
use serde_json::{Value, json};

const SITE: &str = "hn-caugiay-xuanthuy";
const TOKEN: &str = "test-admin-token-0123456789";

async fn start(dir: &std::path::Path, database_url: Option<String>, require: bool) -> Running {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.admin.token = TOKEN.into();
    cfg.ingest.require_known_camera = require;
    cfg.notices.enabled = false;
    if let Some(url) = database_url {
        cfg.database.url = url;
    }
    app::start(&cfg).await.unwrap()
}

fn admin(server: &Running) -> Client {
    let mut c = Client::new(server.http_addr);
    c.extra_headers
        .push(("Authorization".into(), format!("Bearer {TOKEN}")));
    c
}

fn post_json(c: &mut Client, path: &str, body: &Value) -> (u16, Value) {
    let r = c.send_raw(
        "POST",
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
    );
    (r.status, json_of(&r))
}

fn json_of(r: &Resp) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.body))
}

/// Asserts a 4xx error with `code` whose message names `field`.
fn assert_error(answer: (u16, Value), status: u16, code: &str, field: &str) {
    let (st, body) = answer;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(field), "{field} not named in {message:?}");
}

fn post_event(c: &mut Client, ev: &ViolationEvent, key: &protocol::SigningKey) -> (u16, Ack) {
    let files = Files::new(1000);
    let r = c.send_raw(
        "POST",
        "/api/v1/violations",
        Some("application/vnd.tv.bundle"),
        &bundle(ev, key, &files),
    );
    let ack = Ack::from_json(&r.bytes).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    (r.status, ack)
}

fn camera_event(device: &str, camera: &str) -> ViolationEvent {
    let mut ev = event(device, SITE, &Files::new(1000));
    ev.camera_id = camera.into();
    ev
}

fn speeding(mut ev: ViolationEvent) -> ViolationEvent {
    ev.violation_type = ViolationType::Speeding;
    ev.signal = None;
    ev.speed = Some(Speed {
        measured_kmh: 78.0,
        limit_kmh: 50,
        uncertainty_kmh: None,
    });
    ev
}

/// Moves an event `s` seconds later (within the clock tolerance).
fn later(mut ev: ViolationEvent, s: i64) -> ViolationEvent {
    common::shift(&mut ev, time::Duration::seconds(s));
    ev
}

fn rejected(answer: (u16, Ack), id: uuid::Uuid) {
    let (st, ack) = answer;
    assert_eq!((st, ack.event_id), (422, id), "{ack:?}");
    assert!(
        matches!(
            ack.status,
            AckStatus::Rejected {
                code: RejectCode::Invalid,
                ..
            }
        ),
        "{ack:?}"
    );
}

fn date_in(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

async fn suite(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), database_url, true).await;
    let ctx = server.ingestor.context().clone();
    let k = key();
    devices::enrol(&ctx.db, "edge-01", SITE, &public_hex(&k))
        .await
        .unwrap();
    let k2 = key();
    devices::enrol(&ctx.db, "edge-02", SITE, &public_hex(&k2))
        .await
        .unwrap();
    devices::revoke(&ctx.db, "edge-02", "stolen").await.unwrap();

    let mut c = admin(&server);
    let addr = server.http_addr;
    let north = json!({
        "device_id": "edge-01", "camera_id": "cam-north",
        "description": "Xuân Thủy × Cầu Giấy, hướng Bắc → Nam",
        "latitude": 21.0362, "longitude": 105.7906,
        "enabled_rules": ["red_light", "speeding"],
        "certificate_no": "KĐ-2025/0042", "certified_until": date_in(365)
    });
    let c = tokio::task::spawn_blocking(move || {
        // The admin token is required.
        let mut anon = Client::new(addr);
        let (st, body) = post_json(&mut anon, "/api/v1/cameras", &north);
        assert_eq!(
            (st, body["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );

        // Enrolment.
        let (st, body) = post_json(&mut c, "/api/v1/cameras", &north);
        assert_eq!(st, 201, "{body}");
        assert_eq!(
            (
                body["site"].clone(),
                body["status"].clone(),
                body["enabled_rules"].clone(),
                body["latitude"].clone()
            ),
            (
                json!(SITE),
                json!("active"),
                json!(["red_light", "speeding"]),
                json!(21.0362)
            )
        );
        let (st, _) = post_json(
            &mut c,
            "/api/v1/cameras",
            &json!({"device_id": "edge-01", "camera_id": "cam-lapsed",
                    "description": "Xuân Thủy, hướng Tây", "site": SITE,
                    "certificate_no": "KĐ-2019/0007", "certified_until": "2020-12-31"}),
        );
        assert_eq!(st, 201);
        let (st, _) = post_json(
            &mut c,
            "/api/v1/cameras",
            &json!({"device_id": "edge-01", "camera_id": "cam-old",
                    "description": "Cầu Giấy, hướng Đông"}),
        );
        assert_eq!(st, 201);

        // Bad input: 4xx naming the field.
        assert_error(
            post_json(&mut c, "/api/v1/cameras", &north),
            409,
            "conflict",
            "cam-north",
        );
        let with = |k: &str, v: Value| {
            let mut b = north.clone();
            b["camera_id"] = json!("cam-x");
            b[k] = v;
            b
        };
        let mut bad_id = north.clone();
        bad_id["camera_id"] = json!("cam/1");
        assert_error(
            post_json(&mut c, "/api/v1/cameras", &bad_id),
            400,
            "invalid_id",
            "camera_id",
        );
        assert_error(
            post_json(&mut c, "/api/v1/cameras", &with("latitude", json!(91.5))),
            400,
            "invalid_field",
            "latitude",
        );
        assert_error(
            post_json(&mut c, "/api/v1/cameras", &with("longitude", json!(-200))),
            400,
            "invalid_field",
            "longitude",
        );
        assert_error(
            post_json(&mut c, "/api/v1/cameras", &with("latitude", json!("21.0"))),
            400,
            "invalid_field",
            "latitude",
        );
        assert_error(
            post_json(
                &mut c,
                "/api/v1/cameras",
                &with("enabled_rules", json!(["red_light", "jaywalking"])),
            ),
            400,
            "invalid_field",
            "enabled_rules[1]",
        );
        assert_error(
            post_json(
                &mut c,
                "/api/v1/cameras",
                &with("certified_until", json!("31/12/2026")),
            ),
            400,
            "invalid_field",
            "certified_until",
        );
        assert_error(
            post_json(
                &mut c,
                "/api/v1/cameras",
                &with("site", json!("dn-haichau-01")),
            ),
            400,
            "invalid_field",
            "site",
        );
        assert_error(
            post_json(
                &mut c,
                "/api/v1/cameras",
                &with("device_id", json!("edge-99")),
            ),
            400,
            "unknown_device",
            "device_id",
        );
        assert_error(
            post_json(
                &mut c,
                "/api/v1/cameras",
                &with("device_id", json!("edge-02")),
            ),
            400,
            "unknown_device",
            "revoked",
        );
        let r = c.send_raw(
            "POST",
            "/api/v1/cameras",
            Some("application/json"),
            b"{nope",
        );
        assert_eq!(
            (r.status, json_of(&r)["error"]["code"].clone()),
            (400, json!("invalid_json"))
        );

        // Retirement.
        let (st, body) = post_json(
            &mut c,
            "/api/v1/cameras/edge-01/cam-old/retire",
            &json!({"reason": "replaced by cam-old-2"}),
        );
        assert_eq!(
            (st, body["status"].clone(), body["retired_reason"].clone()),
            (200, json!("retired"), json!("replaced by cam-old-2")),
            "{body}"
        );
        assert!(body["retired_at"].is_i64());
        let r = c.send_raw("POST", "/api/v1/cameras/edge-01/cam-none/retire", None, b"");
        assert_eq!(
            (r.status, json_of(&r)["error"]["code"].clone()),
            (404, json!("not_found"))
        );

        let r = c.get("/api/v1/cameras");
        assert_eq!(r.status, 200);
        let list = json_of(&r);
        let states: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["camera_id"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("cam-lapsed".to_string(), "active".to_string()),
                ("cam-north".into(), "active".into()),
                ("cam-old".into(), "retired".into())
            ]
        );
        c
    })
    .await
    .unwrap();

    // The latest heartbeat lists cam-north only: cam-lapsed is flagged.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let hb: protocol::Heartbeat = serde_json::from_value(json!({
        "schema_version": "1.0", "device_id": "edge-01", "site": SITE, "time": now,
        "software_version": "edge-agent test", "uptime_s": 10,
        "cameras": [{"camera_id": "cam-north", "state": "streaming", "analysed_fps": 12.5}],
        "outbox": {"depth": 0}, "disk_free_bytes": 1000, "alarms": [],
        "clock": {"status": "synced"}
    }))
    .unwrap();
    let t = topics::heartbeat_topic(SITE, "edge-01").unwrap();
    let json = Bytes::from(hb.sign(&k).unwrap().to_json().unwrap());
    assert!(heartbeats::receive(&ctx, json, &t).await.unwrap().is_some());

    tokio::task::spawn_blocking(move || {
        let mut c = c;
        let list = json_of(&c.get("/api/v1/cameras"));
        let by_id = |id: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|c| c["camera_id"] == json!(id))
                .unwrap()
                .clone()
        };
        assert_eq!(by_id("cam-north")["heartbeat_state"], json!("streaming"));
        assert_eq!(by_id("cam-north")["missing_from_heartbeat"], json!(false));
        assert_eq!(by_id("cam-lapsed")["missing_from_heartbeat"], json!(true));
        assert_eq!(
            by_id("cam-old")["missing_from_heartbeat"],
            json!(false),
            "retired"
        );

        // An enrolled camera's events are stored, speeding included while
        // its certificate is in force.
        let ok = camera_event("edge-01", "cam-north");
        assert_eq!(post_event(&mut c, &ok, &k), (201, Ack::stored(ok.event_id)));
        let fast = speeding(camera_event("edge-01", "cam-north"));
        assert_eq!(
            post_event(&mut c, &fast, &k),
            (201, Ack::stored(fast.event_id))
        );
        // Made before its camera was retired: still good evidence.
        let before = later(camera_event("edge-01", "cam-old"), -60);
        assert_eq!(
            post_event(&mut c, &before, &k),
            (201, Ack::stored(before.event_id))
        );

        // Each failure is quarantined with its reason.
        let ghost = camera_event("edge-01", "cam-ghost");
        rejected(post_event(&mut c, &ghost, &k), ghost.event_id);
        let retired = later(camera_event("edge-01", "cam-old"), 20);
        rejected(post_event(&mut c, &retired, &k), retired.event_id);
        let mut wrong_way = camera_event("edge-01", "cam-north");
        wrong_way.violation_type = ViolationType::WrongWay;
        rejected(post_event(&mut c, &wrong_way, &k), wrong_way.event_id);
        let lapsed = speeding(camera_event("edge-01", "cam-lapsed"));
        rejected(post_event(&mut c, &lapsed, &k), lapsed.event_id);
        // ... but cam-lapsed's red-light events need no certificate.
        let red = camera_event("edge-01", "cam-lapsed");
        assert_eq!(
            post_event(&mut c, &red, &k),
            (201, Ack::stored(red.event_id))
        );

        let q = json_of(&c.get("/api/v1/quarantine"));
        let reason = |id: uuid::Uuid| {
            let e = q
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["event_id"] == json!(id.to_string()))
                .unwrap_or_else(|| panic!("{id} not quarantined: {q}"));
            (
                e["reason_code"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        };
        let (code, why) = reason(ghost.event_id);
        assert_eq!(code, "unknown_camera");
        assert!(
            why.contains("cam-ghost") && why.contains("edge-01"),
            "{why}"
        );
        let (code, why) = reason(retired.event_id);
        assert_eq!(code, "retired_camera");
        assert!(why.contains("replaced by cam-old-2"), "{why}");
        let (code, why) = reason(wrong_way.event_id);
        assert_eq!(code, "rule_not_enabled");
        assert!(why.contains("wrong_way"), "{why}");
        let (code, why) = reason(lapsed.event_id);
        assert_eq!(code, "certification_expired");
        assert!(
            why.contains("2020-12-31") && why.contains("KĐ-2019/0007"),
            "{why}"
        );
        assert_eq!(q.as_array().unwrap().len(), 4, "{q}");

        // The server keeps serving.
        let again = camera_event("edge-01", "cam-north");
        assert_eq!(
            post_event(&mut c, &again, &k),
            (201, Ack::stored(again.event_id))
        );
        assert_eq!(c.get("/healthz").status, 200);
        let metrics = c.get("/metrics").body;
        assert!(metrics.contains("reason=\"unknown_camera\""), "{metrics}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_on_sqlite() {
    suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_on_postgres() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    suite(Some(url)).await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_check_off_an_unknown_camera_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let ctx = server.ingestor.context().clone();
    let k = key();
    devices::enrol(&ctx.db, "edge-01", SITE, &public_hex(&k))
        .await
        .unwrap();
    let mut c = admin(&server);
    tokio::task::spawn_blocking(move || {
        // Nothing enrolled for the camera: accepted as before.
        let ev = camera_event("edge-01", "cam-anything");
        assert_eq!(post_event(&mut c, &ev, &k), (201, Ack::stored(ev.event_id)));
        // A camera that is enrolled is still held to its registry entry.
        let (st, _) = post_json(
            &mut c,
            "/api/v1/cameras",
            &json!({"device_id": "edge-01", "camera_id": "cam-north",
                    "description": "hướng Bắc", "enabled_rules": ["red_light"]}),
        );
        assert_eq!(st, 201);
        let red = camera_event("edge-01", "cam-north");
        assert_eq!(
            post_event(&mut c, &red, &k),
            (201, Ack::stored(red.event_id))
        );
        let fast = speeding(camera_event("edge-01", "cam-north"));
        rejected(post_event(&mut c, &fast, &k), fast.event_id);
        let q = json_of(&c.get("/api/v1/quarantine"));
        assert_eq!(q[0]["reason_code"], json!("rule_not_enabled"), "{q}");
    })
    .await
    .unwrap();
}

#[test]
fn camera_cli_add_list_retire() {
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
    assert!(ok, "{out}{err}");
    let add = |extra: &[&str]| {
        let mut args = vec![
            "camera",
            "add",
            "--device",
            "edge-c",
            "--id",
            "cam-south",
            "--description",
            "Xuân Thủy, hướng Nam",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let until = date_in(200);
    let (ok, out, err) = add(&[
        "--lat",
        "21.0365",
        "--lon",
        "105.7901",
        "--rules",
        "red_light,speeding",
        "--certificate-no",
        "KĐ-77",
        "--certified-until",
        &until,
    ]);
    assert!(
        ok && out.contains("enrolled camera cam-south of edge-c"),
        "{out}{err}"
    );
    let (ok, _, err) = add(&[]);
    assert!(!ok && err.contains("already enrolled"), "{err}");
    let (ok, _, err) = run(&[
        "camera",
        "add",
        "--device",
        "edge-c",
        "--id",
        "cam-x",
        "--description",
        "x",
        "--lat",
        "-95",
        "--lon",
        "105",
    ]);
    assert!(!ok && err.contains("latitude"), "{err}");
    let (ok, _, err) = run(&[
        "camera",
        "add",
        "--device",
        "edge-nobody",
        "--id",
        "cam-x",
        "--description",
        "x",
    ]);
    assert!(
        !ok && err.contains("device_id") && err.contains("edge-nobody"),
        "{err}"
    );
    let (ok, out, _) = run(&["camera", "list"]);
    assert!(
        ok && out.contains("cam-south")
            && out.contains("active")
            && out.contains("rules=red_light,speeding")
            && out.contains(&until),
        "{out}"
    );
    let (ok, out, err) = run(&[
        "camera",
        "retire",
        "edge-c",
        "cam-south",
        "--reason",
        "pole removed",
    ]);
    assert!(
        ok && out.contains("retired camera cam-south of edge-c"),
        "{out}{err}"
    );
    let (ok, out, _) = run(&["camera", "list"]);
    assert!(ok && out.contains("retired"), "{out}");
    let (ok, _, err) = run(&["camera", "retire", "edge-c", "cam-none"]);
    assert!(!ok && err.contains("not enrolled"), "{err}");
    // A replacement with the same id is a new enrolment.
    let (ok, out, err) = add(&[]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = run(&["camera", "list"]);
    assert_eq!(out.matches("cam-south").count(), 2, "{out}");

    // The switch's environment variable is checked at start.
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .args(["camera", "list"])
        .env("INGEST_DATA_DIR", dir.path())
        .env("INGEST_REQUIRE_KNOWN_CAMERA", "maybe")
        .env_remove("DATABASE_URL")
        .env_remove("INGEST_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("INGEST_REQUIRE_KNOWN_CAMERA"),
        "{err}"
    );
}
