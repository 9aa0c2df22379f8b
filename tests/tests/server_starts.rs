//! The ingest server starts on embedded defaults, says where it listens, and
//! answers; a bad configuration stops it with a message naming the field.

use e2e_tests::{binary, http_get, start_until};
use std::process::Command;
use std::time::Duration;

#[test]
fn server_starts_and_answers_health() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(binary("ingest-server"));
    cmd.env("INGEST_HTTP_LISTEN", "127.0.0.1:0")
        .env("INGEST_DATA_DIR", data.path());
    let (_server, line) = start_until(cmd, "listening on http://", Duration::from_secs(30));
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .expect("the server prints its address");
    let (status, body) = http_get(addr, "/healthz").expect("GET /healthz");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(v["status"], "ok");
    assert!(data.path().exists());
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("server.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"not an address\"\n").unwrap();
    let out = Command::new(binary("ingest-server"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.toml") && err.contains("listen"),
        "{err}"
    );
}

#[test]
fn edge_agent_reports_missing_models_clearly() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(binary("edge-agent"))
        .arg("check-models")
        .current_dir(empty.path())
        .env("MODELS_DIR", empty.path().join("models"))
        .env("MODEL_MIRROR", empty.path().join("no-mirror"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("yolox_nano") && err.contains("make models"),
        "{err}"
    );
}
