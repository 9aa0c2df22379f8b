//! Faults between the camera and the server, with the real parts: a
//! rendered intersection served as a looping live RTSP stream by
//! `camera-sim` (a red-light runner every 14 s), `edge-agent run` watching
//! it (motion detector, no plate reader), a broker, and `ingest-server`.
//! What the edge made is read from its own records: its log's `violation
//! queued` lines (each event it signed and committed to its outbox) and
//! its outbox (`edge-agent outbox`); what arrived, from the server's admin
//! API (each case by id) and its `ingest_bundles_total{outcome="stored"}`
//! counter (one per event stored).
//!
//! Needs `cargo build --workspace` first, GStreamer (as the edge does) and
//! Mosquitto (`scripts/setup-system.sh`); a missing one fails the test.

#[path = "faults_server/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{Proc, binary, free_port, start_logged, wait_for};
use serde_json::Value;
use support::*;

/// How long the broker stays dead (the 60 s: four or five
/// red-light runners go by meanwhile).
const BROKER_OUTAGE: Duration = Duration::from_secs(60);

/// Renders the intersection the camera serves (two cars arrive on red, the
/// left one runs it, the right one stops; 14 s at 10 fps, looping, so a
/// runner every 14 s, the first 8 s into the stream) to `d/camera.mp4`,
/// and its site file to `d/site.toml`.
fn render_camera(d: &Path) -> (PathBuf, PathBuf) {
    let mut scene = edge_agent::scene::runner_and_stopper(
        time::OffsetDateTime::now_utc() - time::Duration::seconds(30),
    );
    scene.signal = edge_agent::scene::SignalCycle {
        green: 20,
        yellow: 30,
        red: 90,
    };
    for v in &mut scene.vehicles {
        v.enter_frame = 30;
    }
    const LOOP: u64 = 140;
    assert_eq!(
        scene.red_light_runners(LOOP),
        vec![0],
        "one runner per loop"
    );
    let video = d.join("camera.mp4");
    let frames: Vec<_> = (0..LOOP).map(|n| scene.render(n).unwrap()).collect();
    edge_agent::evidence::encode_clip(&frames, &[], &video, 4000, Duration::from_secs(120))
        .unwrap();
    let site = d.join("site.toml");
    std::fs::write(&site, scene.site_toml()).unwrap();
    (video, site)
}

/// `camera-sim` serving `video` on `port`; the stream's address.
fn start_camera(video: &Path, port: u16, log: &Path) -> (Proc, String) {
    let mut cmd = Command::new(binary("camera-sim"));
    cmd.arg("--file").arg(video).args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--mount",
        "/cam1",
    ]);
    let (proc, line) = start_logged(
        cmd,
        "camera-sim serving rtsp://",
        log,
        Duration::from_secs(30),
    );
    let url = line.rsplit("serving ").next().unwrap().trim().to_string();
    (proc, url)
}

/// The event ids the outbox holds (its 20 most recent) that the server
/// acknowledged whole (the event, then its clip).
fn done_ids(edge: &Edge) -> BTreeSet<String> {
    edge.rows()
        .into_iter()
        .filter(|(_, state, done)| state == "acked" && *done)
        .map(|(id, _, _)| id)
        .collect()
}

/// Ends the camera, then waits for one consistent view (seen twice
/// running): every event the edge's logs say it queued is in its outbox,
/// acknowledged whole, and nothing else is there; each is a case on the
/// server; and the server's stored counter equals their number (so none
/// was stored twice, none is missing). Returns the events.
fn settle(edge: &Edge, edge_logs: &[PathBuf], server: &Server) -> Vec<String> {
    let snapshot = || {
        let queued = queued_in_logs(edge_logs);
        let o = edge.outbox();
        let done = done_ids(edge);
        let stored = server.metric("ingest_bundles_total{outcome=\"stored\"}");
        (queued, o["depth"].as_u64(), done, stored)
    };
    let mut last = None;
    let settled = wait_for(120, || {
        let s = snapshot();
        let unique: BTreeSet<String> = s.0.iter().cloned().collect();
        let consistent = s.1 == Some(0) && unique == s.2 && s.3 as usize == s.0.len();
        let again = consistent && last.as_ref() == Some(&s);
        last = consistent.then_some(s);
        again
    });
    let (queued, depth, done, stored) = last.clone().unwrap_or_else(snapshot);
    assert!(
        settled,
        "every event the edge queued ({} by its logs: {queued:?}) is delivered (outbox depth \
         {depth:?}, acknowledged whole: {done:?}) and stored once (the server stored {stored})",
        queued.len()
    );
    assert!(
        queued.len() < 20,
        "the outbox listing (20 rows) covers every event"
    );
    let unique: BTreeSet<&String> = queued.iter().collect();
    assert_eq!(
        unique.len(),
        queued.len(),
        "event ids are unique: {queued:?}"
    );
    for id in &queued {
        let case = server
            .case(id)
            .unwrap_or_else(|| panic!("event {id} is not a case"));
        assert_eq!(case["violation_type"], "red_light", "{case}");
        assert_eq!(
            case["evidence_stored"], case["evidence_total"],
            "stills and clip stored: {case}"
        );
    }
    let o = edge.outbox();
    assert_eq!(o["rejected"], 0, "{o}");
    assert_eq!(o["evictions"], 0, "{o}");
    let q = server.quarantine();
    assert!(q.is_empty(), "nothing quarantined: {q:?}");
    queued
}

/// **The broker dies for 60 s while the edge keeps producing: every
/// violation arrives, none twice.** Mosquitto is SIGKILLed (no persistence:
/// whatever it held is gone) once the first runner has been delivered, and
/// started again on the same port after 60 s. Proves: the edge notices
/// (`edge_mqtt_connected` 0), keeps analysing the camera and queues at
/// least two violations while the broker is gone; both the edge and the
/// server reconnect by themselves; and afterwards every violation the edge
/// made (by its log and its outbox) is one case on the server, the server's
/// stored counter equals their number, nothing is rejected or quarantined.
#[test]
fn broker_dead_for_60_s_every_violation_arrives_once() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut logs = Logs::default();
    let (video, site) = render_camera(d);
    eprintln!("[broker outage] recording rendered: {}", elapsed(t0));

    let mut broker = Broker::start();
    let mut server = Server::new(
        "server",
        d,
        &[
            ("INGEST_MQTT_URL", broker.url()),
            ("INGEST_MQTT_CLIENT_ID", "ingest-fault".into()),
        ],
    );
    server.up(&mut logs);
    let (camera, rtsp) = start_camera(&video, free_port(), &logs.add("camera", &d.join("cam.log")));
    let mut edge = Edge::new(
        d,
        "fault-edge-broker",
        &broker.url(),
        EdgeOptions {
            camera: Some((&rtsp, &site)),
            ..EdgeOptions::default()
        },
        &server,
    );
    let edge_log = edge.up("run", &mut logs);

    let first = wait_for(120, || !done_ids(&edge).is_empty());
    assert!(first, "the first runner was delivered: {}", edge.outbox());
    eprintln!("[broker outage] first violation delivered: {}", elapsed(t0));

    broker.kill();
    let before = queued_in_logs(std::slice::from_ref(&edge_log)).len();
    let killed = Instant::now();
    eprintln!(
        "[broker outage] broker killed ({before} violations so far): {}",
        elapsed(t0)
    );
    let noticed = wait_for(30, || {
        metric_value(&edge.metrics_text(), "edge_mqtt_connected") == 0
    });
    assert!(noticed, "the edge noticed: {}", edge.metrics_text());
    // The outage itself: its length is the fault, not a wait for something.
    std::thread::sleep(BROKER_OUTAGE.saturating_sub(killed.elapsed()));
    let during = queued_in_logs(std::slice::from_ref(&edge_log)).len() - before;
    let depth = edge.outbox()["depth"].as_u64().unwrap_or(0);
    assert!(
        during >= 2,
        "the edge kept producing while the broker was gone: {during} violations queued"
    );
    assert!(
        depth >= during as u64,
        "what it made meanwhile waits in its outbox: depth {depth}, made {during}"
    );
    broker.up();
    eprintln!(
        "[broker outage] broker back after {:.0} s; {during} violations made meanwhile: {}",
        killed.elapsed().as_secs_f64(),
        elapsed(t0)
    );
    let drained = wait_for(90, || edge.outbox()["depth"] == 0);
    assert!(drained, "the backlog drained: {}", edge.outbox());
    eprintln!("[broker outage] backlog delivered: {}", elapsed(t0));

    drop(camera);
    let events = settle(&edge, std::slice::from_ref(&edge_log), &server);
    eprintln!(
        "[broker outage] {} violations, each stored once ({} duplicate redeliveries answered): {}",
        events.len(),
        server.metric("ingest_bundles_total{outcome=\"duplicate\"}"),
        elapsed(t0)
    );
}

/// The state the latest heartbeat of `device` reports for its camera
/// (`streaming`, `stalled`, `connecting`, `failed`), through the admin API.
fn camera_state(server: &Server, device: &str) -> Option<String> {
    let (status, list) = server.api("GET", "/api/v1/heartbeats", None);
    if status != 200 {
        return None;
    }
    let hb = list
        .as_array()?
        .iter()
        .find(|h| h["device_id"] == device)?
        .clone();
    let signed: Value = serde_json::from_str(hb["signed_json"].as_str()?).ok()?;
    signed["payload"]["cameras"][0]["state"]
        .as_str()
        .map(String::from)
}

/// **The edge agent SIGKILLed and restarted loses and duplicates nothing;
/// a camera stream that dies and returns is reported and resumed.** The
/// edge (on the server's embedded broker) is SIGKILLed just after it has
/// queued a violation, while that violation is still undelivered in its
/// outbox, and started again on the same data. Then `camera-sim` is
/// killed and, once the edge has reported it, started again on the same
/// address. Proves: the violation undelivered at the kill survives it and is
/// delivered by the restarted edge; the edge reports the dead camera (its
/// heartbeat at the server says the camera is not streaming, its
/// `edge_camera_fps` drops to 0) and reports it streaming again after it
/// returns; it makes and delivers new violations from the returned stream;
/// and every violation either run of the edge queued is one case on the
/// server, stored once, nothing rejected or quarantined.
#[test]
fn edge_sigkilled_and_camera_lost_nothing_lost_or_duplicated() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut logs = Logs::default();
    let (video, site) = render_camera(d);
    eprintln!("[edge and camera] recording rendered: {}", elapsed(t0));

    let mqtt_port = free_port();
    let mut server = Server::new(
        "server",
        d,
        &[("INGEST_MQTT_LISTEN", format!("127.0.0.1:{mqtt_port}"))],
    );
    server.up(&mut logs);
    let cam_port = free_port();
    let (camera, rtsp) = start_camera(&video, cam_port, &logs.add("camera", &d.join("cam-1.log")));
    let mut edge = Edge::new(
        d,
        "fault-edge-kill",
        &format!("mqtt://127.0.0.1:{mqtt_port}"),
        EdgeOptions {
            camera: Some((&rtsp, &site)),
            ..EdgeOptions::default()
        },
        &server,
    );
    let mut edge_logs = vec![edge.up("run", &mut logs)];

    // --- SIGKILL just after a violation is queued, while it is undelivered
    let mut victim = None;
    for attempt in 1..=3 {
        // Polled tightly: delivery takes a few hundred milliseconds.
        let seen = queued_in_logs(&edge_logs).len();
        let until = Instant::now() + Duration::from_secs(60);
        while queued_in_logs(&edge_logs).len() == seen {
            assert!(
                Instant::now() < until,
                "the edge queued a violation: {}",
                edge.outbox()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        edge.kill9();
        let id = queued_in_logs(&edge_logs).last().cloned().unwrap();
        let row = edge.rows().into_iter().find(|r| r.0 == id);
        let undelivered = row.as_ref().is_some_and(|r| !r.2);
        eprintln!(
            "[edge and camera] edge SIGKILLed (attempt {attempt}) with {id} {row:?}: {}",
            elapsed(t0)
        );
        assert!(
            row.is_some(),
            "a queued violation is in the outbox after SIGKILL"
        );
        edge_logs.push(edge.up("run", &mut logs));
        if undelivered {
            victim = Some(id);
            break;
        }
    }
    let victim = victim.expect("the edge was killed with an undelivered violation");
    let delivered = wait_for(60, || done_ids(&edge).contains(&victim));
    assert!(
        delivered,
        "the restarted edge delivered {victim}: {}",
        edge.outbox()
    );
    assert!(server.case(&victim).is_some(), "{victim} is a case");
    eprintln!(
        "[edge and camera] {victim} delivered after the restart: {}",
        elapsed(t0)
    );

    // --- the camera dies
    let streaming = wait_for(30, || {
        camera_state(&server, "fault-edge-kill").as_deref() == Some("streaming")
    });
    assert!(streaming, "the heartbeat says the camera streams");
    drop(camera);
    let lost_at = Instant::now();
    let mut reported = None;
    let noticed = wait_for(60, || {
        reported = camera_state(&server, "fault-edge-kill");
        reported.as_deref().is_some_and(|s| s != "streaming")
    });
    assert!(
        noticed,
        "the edge reports the camera down (heartbeat state {reported:?})"
    );
    let fps = metric_value(
        &edge.metrics_text(),
        "edge_camera_fps{camera=\"synthetic\"}",
    );
    assert_eq!(fps, 0, "no frames analysed: {}", edge.metrics_text());
    eprintln!(
        "[edge and camera] camera killed; reported {reported:?} after {:.1} s: {}",
        lost_at.elapsed().as_secs_f64(),
        elapsed(t0)
    );

    // --- the camera returns on the same address
    let before = queued_in_logs(&edge_logs).len();
    let (camera, again) = start_camera(&video, cam_port, &logs.add("camera", &d.join("cam-2.log")));
    assert_eq!(again, rtsp);
    let back = Instant::now();
    let resumed = wait_for(90, || {
        camera_state(&server, "fault-edge-kill").as_deref() == Some("streaming")
    });
    assert!(resumed, "the edge reports the camera streaming again");
    eprintln!(
        "[edge and camera] camera streaming again after {:.1} s: {}",
        back.elapsed().as_secs_f64(),
        elapsed(t0)
    );
    let produced = wait_for(60, || queued_in_logs(&edge_logs).len() > before);
    assert!(produced, "a violation from the returned stream");
    let newest = queued_in_logs(&edge_logs).last().cloned().unwrap();
    let sent = wait_for(60, || done_ids(&edge).contains(&newest));
    assert!(sent, "and it was delivered: {}", edge.outbox());
    eprintln!(
        "[edge and camera] new violation {newest} delivered: {}",
        elapsed(t0)
    );

    drop(camera);
    let events = settle(&edge, &edge_logs, &server);
    eprintln!(
        "[edge and camera] {} violations over {} edge runs, each stored once ({} duplicate \
         redeliveries answered): {}",
        events.len(),
        edge_logs.len(),
        server.metric("ingest_bundles_total{outcome=\"duplicate\"}"),
        elapsed(t0)
    );
}
