//! The whole box as a process: `edge-agent run` reads a camera stream (a
//! rendered intersection encoded to H.264 MP4, decoded by GStreamer),
//! detects and tracks, judges the red light, post-processes the violator,
//! signs, queues and delivers through a real Mosquitto to a subscriber that
//! verifies and acks like the server. Proves that one red-light runner among
//! two cars becomes exactly one verified event with its stills and clip, and
//! that the heartbeat reports the camera.

mod delivery_support;

use delivery_support::*;
use protocol::SignedHeartbeat;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn edge_agent_run_turns_one_red_light_runner_into_one_delivered_event_while_a_dead_camera_is_retried()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // green 0-59, yellow 60-74, red 75-179: both cars arrive on red, one stops.
    let scene = edge_agent::scene::runner_and_stopper(time::OffsetDateTime::now_utc());
    assert_eq!(scene.red_light_runners(220), vec![0]);
    let frames: Vec<_> = (0..220).map(|n| scene.render(n).unwrap()).collect();
    let video = d.join("camera.mp4");
    edge_agent::evidence::encode_clip(&frames, &[], &video, 4000, Duration::from_secs(120))
        .unwrap();
    std::fs::write(d.join("site.toml"), scene.site_toml()).unwrap();
    let site = edge_agent::site::SiteConfig::load(d.join("site.toml")).unwrap();

    // A second camera whose stream never answers: retried and reported,
    // while the first one carries on.
    std::fs::write(
        d.join("dead.toml"),
        scene
            .site_toml()
            .replace("camera_id = \"synthetic\"", "camera_id = \"dead\""),
    )
    .unwrap();
    let broker = Broker::start();
    let cameras = format!(
        "\n[plates]\nrecognizer = \"none\"\n\n[[cameras]]\nsource = \"{video}\"\nsite = \"{site}\"\ndetector = \"motion\"\n\
         [cameras.motion]\nanalysis_width = 640\nmin_area = 1500.0\nhistory = 5000\nlearning_rate = 0.0003\n\n\
         [[cameras]]\nsource = \"rtsp://127.0.0.1:{dead}/none\"\nsite = \"{dead_site}\"\ndetector = \"motion\"\n",
        video = video.display(),
        site = d.join("site.toml").display(),
        dead = free_port(),
        dead_site = d.join("dead.toml").display(),
    );
    let config = agent_config(d, broker.port, &cameras);
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["enroll", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (id, _) = edge_agent::identity::DeviceIdentity::load_or_create(
        DEVICE,
        SITE,
        &d.join("data/device.key"),
    )
    .unwrap();
    // A violation the last run signed but never queued (the power went
    // between the spool and the outbox): delivered too, from the spool.
    let (orphan, orphan_dir) = violation(&id, &d.join("data/spool"), "synthetic", 99, 800, 0);
    edge_agent::recover::keep_signed(&orphan_dir, &orphan).unwrap();
    let orphan_id = orphan.unverified_event_id().unwrap();
    let server = TestServer::start(broker.port, id.verifying_key());

    // Watch heartbeats for the camera's state.
    let (hb_client, mut hb_conn) = rumqttc::Client::new(
        rumqttc::MqttOptions::new("hb", "127.0.0.1", broker.port),
        16,
    );
    hb_client
        .subscribe("tv/v1/+/+/heartbeat", rumqttc::QoS::AtLeastOnce)
        .unwrap();

    let log = d.join("run.log");
    let metrics_port = free_port();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("EDGE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut cameras_seen = Vec::new();
    let delivered = wait_for(120, || {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
            hb_conn.recv_timeout(Duration::from_millis(50))
        {
            let beat = SignedHeartbeat::from_json(&p.payload)
                .unwrap()
                .verify(&id.verifying_key())
                .unwrap();
            cameras_seen.extend(beat.cameras.into_iter().map(|c| (c.camera_id, c.state)));
        }
        let s = server.seen.lock().unwrap();
        s.first.iter().any(|f| f.0 != orphan_id)
            && !s.clips.is_empty()
            && s.first.iter().any(|f| f.0 == orphan_id)
    });
    std::thread::sleep(Duration::from_secs(2)); // would a second (wrong) event follow?
    let metrics = http_get(metrics_port, "/metrics");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status();
    let status = agent.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(delivered, "event and clip delivered; log:\n{text}");
    assert!(status.success(), "clean exit on SIGTERM; log:\n{text}");
    let seen = server.seen.lock().unwrap();
    let runners: Vec<_> = seen.first.iter().filter(|f| f.0 != orphan_id).collect();
    assert_eq!(runners.len(), 1, "exactly the one runner: {:?}", seen.first);
    assert_eq!(runners[0].1, site.camera_id);
    assert!(
        text.contains("queued from the spool"),
        "the recovery is logged:\n{text}"
    );
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);
    assert!(
        cameras_seen.iter().any(|(c, _)| *c == site.camera_id),
        "heartbeat lists the camera: {cameras_seen:?}"
    );
    assert!(
        cameras_seen
            .iter()
            .any(|(c, st)| c == "dead" && *st != protocol::CameraState::Streaming),
        "the dead camera is reported, not streaming: {cameras_seen:?}"
    );
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("edge_events_acked_total 3\n"),
        "the orphan, the event and its clip acked:\n{metrics}"
    );
    // The camera is a recording: the runner's signed time says it is no
    // clock's at the violation.
    let db = rusqlite::Connection::open(d.join("data/outbox.sqlite")).unwrap();
    let json: Vec<u8> = db
        .query_row(
            "SELECT event_json FROM events WHERE event_id = ?1",
            [runners[0].0.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    let signed = protocol::SignedEvent::from_json(&json).unwrap();
    let event: protocol::ViolationEvent = signed.verify(&id.verifying_key()).unwrap();
    assert!(event.clock.is_recording(), "{:?}", event.clock);
    // And it names the site file its rules judged by.
    let site_file = std::fs::read(d.join("site.toml")).unwrap();
    assert_eq!(
        event.site_config_sha256.as_deref(),
        Some(protocol::sha256_hex(&site_file).as_str())
    );
    let fps = format!("edge_camera_fps{{camera=\"{}\"}}", site.camera_id);
    assert!(metrics.contains(&fps), "{metrics}");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Two cameras under one camera id would share a health entry and the
/// file of parked violators, each undoing the other's: refused at start,
/// naming the camera, before anything runs.
#[test]
fn two_cameras_with_one_camera_id_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = edge_agent::scene::runner_and_stopper(time::OffsetDateTime::now_utc());
    std::fs::write(d.join("a.toml"), scene.site_toml()).unwrap();
    std::fs::write(d.join("b.toml"), scene.site_toml()).unwrap();
    let cameras = format!(
        "\n[plates]\nrecognizer = \"none\"\n\n[[cameras]]\nsource = \"a.mp4\"\nsite = \"{a}\"\ndetector = \"motion\"\n\n\
         [[cameras]]\nsource = \"b.mp4\"\nsite = \"{b}\"\ndetector = \"motion\"\n",
        a = d.join("a.toml").display(),
        b = d.join("b.toml").display(),
    );
    let config = agent_config(d, free_port(), &cameras);
    let cfg = edge_agent::config::AgentConfig::load(&config).unwrap();
    let (id, _) = edge_agent::identity::DeviceIdentity::load_or_create(
        DEVICE,
        SITE,
        &d.join("data/device.key"),
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shared = edge_agent::delivery::Shared::default();
    let err = match edge_agent::live::Live::start(&cfg, &id, &shared, stop) {
        Ok(_) => panic!("two cameras named alike were started"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("cameras[1]") && err.contains("\"synthetic\""),
        "{err}"
    );
}
