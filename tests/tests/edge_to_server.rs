//! Camera stream → `edge-agent run` → the ingest server's embedded MQTT
//! broker → verified, stored, priced case, through public interfaces only:
//! the two real binaries, the device enrolled through the admin API with the
//! key `edge-agent enroll` printed, and the case read back over HTTP.
//! Proves the two halves agree on the wire (bundle, chunks, acks, signature)
//! and that one red-light runner becomes one case with all its evidence.

use e2e_tests::{apply_enrolment, binary, free_port, http_request, start_until, wait_for};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "e2e-admin-token-0123456789";

#[test]
fn a_red_light_runner_on_camera_becomes_one_verified_priced_case_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The server, on embedded defaults (SQLite, local evidence, rumqttd).
    let mqtt_port = free_port();
    let mut cmd = Command::new(binary("ingest-server"));
    cmd.env("INGEST_HTTP_LISTEN", "127.0.0.1:0")
        .env("INGEST_DATA_DIR", d.join("server"))
        .env("INGEST_MQTT_LISTEN", format!("127.0.0.1:{mqtt_port}"))
        .env("INGEST_ADMIN_TOKEN", TOKEN);
    let (_server, line) = start_until(cmd, "listening on http://", Duration::from_secs(60));
    let http: SocketAddr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The camera: a rendered intersection, two cars arriving on red, one stops.
    let scene = edge_agent::scene::runner_and_stopper(
        time::OffsetDateTime::now_utc() - time::Duration::seconds(30),
    );
    let frames: Vec<_> = (0..220).map(|n| scene.render(n).unwrap()).collect();
    let video = d.join("camera.mp4");
    edge_agent::evidence::encode_clip(&frames, &[], &video, 4000, Duration::from_secs(120))
        .unwrap();
    std::fs::write(d.join("site.toml"), scene.site_toml()).unwrap();

    // The edge: its configuration, its key, enrolled at the server.
    let device = "e2e-edge-01";
    let site_id = "e2e-site";
    let config = d.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"{device}\"\nsite = \"{site_id}\"\ndata_dir = \"{data}\"\n\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt_port}\"\nack_timeout_s = 5\nreconnect_max_s = 1.0\n\n\
             [health]\nheartbeat_s = 1\nmetrics_listen = \"\"\n\n[plates]\nrecognizer = \"none\"\n\n\
             [[cameras]]\nsource = \"{video}\"\nsite = \"{site}\"\ndetector = \"motion\"\n\
             [cameras.motion]\nanalysis_width = 640\nmin_area = 1500.0\nhistory = 5000\nlearning_rate = 0.0003\n",
            data = d.join("edge").display(),
            video = video.display(),
            site = d.join("site.toml").display()
        ),
    )
    .unwrap();
    let out = Command::new(binary("edge-agent"))
        .args(["enroll", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrol: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let body = serde_json::json!({
        "device_id": enrol["device_id"], "site": enrol["site"], "public_key": enrol["public_key"],
    })
    .to_string();
    let (status, answer) =
        http_request(http, "POST", "/api/v1/devices", Some(TOKEN), Some(&body)).unwrap();
    assert_eq!(status, 201, "{answer}");
    apply_enrolment(&config, &answer);

    let log = d.join("edge.log");
    let mut edge = Command::new(binary("edge-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let outbox = || -> serde_json::Value {
        let out = Command::new(binary("edge-agent"))
            .args(["outbox", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let delivered = wait_for(120, || {
        let o = outbox();
        o["delivered"] == 1 && o["depth"] == 0
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(edge.id().to_string())
        .status();
    let _ = edge.wait();
    let edge_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        delivered,
        "the edge's outbox drained: {}\nedge log:\n{edge_log}",
        outbox()
    );

    let o = outbox();
    let recent = o["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "one violation: {o}");
    let event_id = recent[0]["event_id"].as_str().unwrap();
    let (status, case) = http_request(
        http,
        "GET",
        &format!("/api/v1/cases/{event_id}"),
        Some(TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{case}");
    let case: serde_json::Value = serde_json::from_str(&case).unwrap();
    assert_eq!(case["device_id"], device);
    assert_eq!(case["violation_type"], "red_light");
    assert_eq!(
        case["fine_status"], "priced",
        "a car running a red light is fined: {case}"
    );
    assert!(case["fine_min_vnd"].as_i64().unwrap() > 0);
    assert_eq!(
        case["evidence_stored"], case["evidence_total"],
        "stills and clip all stored: {case}"
    );
    assert!(
        case["plate_text"].is_null(),
        "no plate reader ran: nothing invented"
    );
    let (status, quarantine) =
        http_request(http, "GET", "/api/v1/quarantine", Some(TOKEN), None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(quarantine.trim(), "[]", "nothing quarantined: {quarantine}");
    let (_, beats) = http_request(http, "GET", "/api/v1/heartbeats", Some(TOKEN), None).unwrap();
    assert!(
        beats.contains(device),
        "the server has the edge's heartbeat: {beats}"
    );
}
