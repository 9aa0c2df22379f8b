//! Delivery under conditions that used to stop it or flood the uplink,
//! with the real `edge-agent deliver` process, a real Mosquitto and the
//! test server: a damaged outbox row and a locked database, a clip larger
//! than the room the MQTT client may fill, and a box started before it was
//! enrolled.

mod delivery_support;

use delivery_support::*;
use edge_agent::outbox::{Outbox, OutboxLimits};
use std::path::Path;
use std::time::Duration;

fn outbox(dir: &Path) -> Outbox {
    Outbox::open(&dir.join("data/outbox.sqlite"), OutboxLimits::default()).unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

/// A damaged row used to fail every outbox query and a locked database to
/// end delivery (and, under `run`, the cameras). Now the row is set aside,
/// the lock waited out, and the agent keeps delivering.
#[test]
fn a_damaged_row_and_a_locked_database_do_not_stop_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    let id = enroll(&config);
    let server = TestServer::start(broker.port, id.verifying_key());
    let spool = dir.path().join("data/spool");
    let mut ob = outbox(dir.path());
    let mut good = Vec::new();
    for n in 1..=3 {
        let (e, d) = violation(&id, &spool, "cam-a", n, 2_000, 0);
        ob.enqueue(&e, "cam-a", &d).unwrap();
        good.push(e.unverified_event_id().unwrap());
    }
    let raw = rusqlite::Connection::open(dir.path().join("data/outbox.sqlite")).unwrap();
    raw.execute("UPDATE events SET event_id = 'damaged' WHERE seq = 2", [])
        .unwrap();
    good.remove(1);
    let mut agent = Agent::start(&config, &dir.path().join("agent.log"));
    let arrived = |ids: &[uuid::Uuid]| {
        let seen = server.seen.lock().unwrap();
        ids.iter()
            .all(|i| seen.first.iter().any(|(f, _, _)| f == i))
    };
    assert!(wait_for(30, || arrived(&good)), "{}", log_of(dir.path()));
    assert!(log_of(dir.path()).contains("set aside"));

    // Another process holds the write lock longer than the agent's busy
    // timeout (10 s) while the agent has something to write.
    raw.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::thread::sleep(Duration::from_secs(14));
    raw.execute_batch("COMMIT").unwrap();
    assert!(agent.running(), "delivery ended: {}", log_of(dir.path()));
    let (e, d) = violation(&id, &spool, "cam-a", 4, 2_000, 0);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    let late = [e.unverified_event_id().unwrap()];
    assert!(wait_for(30, || arrived(&late)), "{}", log_of(dir.path()));
    assert!(agent.running());
}

/// A clip larger than the bytes the MQTT client may hold is queued in
/// parts, each resuming where the last stopped; restarting it from chunk
/// 0 on every pass never finished it.
#[test]
fn a_clip_larger_than_the_client_queue_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    let id = enroll(&config);
    let server = TestServer::start(broker.port, id.verifying_key());
    let clip_bytes = 40 << 20;
    let (e, d) = violation(
        &id,
        &dir.path().join("data/spool"),
        "cam-a",
        1,
        1_000,
        clip_bytes,
    );
    outbox(dir.path()).enqueue(&e, "cam-a", &d).unwrap();
    let event_id = e.unverified_event_id().unwrap();
    let _agent = Agent::start(&config, &dir.path().join("agent.log"));
    assert!(
        wait_for(90, || server.seen.lock().unwrap().clips.contains(&event_id)),
        "clip never arrived; chunks received: {}",
        server.seen.lock().unwrap().chunks
    );
    let chunks = clip_bytes.div_ceil(protocol::transfer::CLIP_CHUNK_BYTES);
    let got = server.seen.lock().unwrap().chunks;
    assert!(
        got <= chunks + chunks / 4,
        "{got} chunks for a clip of {chunks}"
    );
}

/// `deliver` (like `run`) on a box never enrolled refuses to start, naming
/// the key file and `enroll`, and makes no key: a key made silently would
/// sign violations the server cannot check.
#[test]
fn an_agent_never_enrolled_refuses_to_start_and_makes_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), free_port(), "");
    let log = dir.path().join("agent.log");
    let mut agent = Agent::start(&config, &log);
    // It must exit by itself; one that started delivering is killed.
    let exited = wait_for(20, || !agent.running());
    let stderr = log_of(dir.path());
    assert!(exited, "it started without a key: {stderr}");
    assert!(!agent.child.wait().unwrap().success());
    let key = dir.path().join("data/device.key");
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("edge-agent enroll"), "{stderr}");
    assert!(!key.exists(), "a key was made");
    // Nor does `replay` into the box's outbox make one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("replay")
        .arg(dir.path().join("recording.mp4"))
        .arg("--agent-config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("edge-agent enroll"), "{stderr}");
    assert!(!key.exists(), "replay made a key");
}
