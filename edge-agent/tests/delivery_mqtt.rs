//! Delivery through a real Mosquitto, with the real `edge-agent deliver`
//! process, to a test subscriber that verifies, deduplicates and acks the
//! way the ingest server does. Each test states what it proves.

mod delivery_support;

use delivery_support::*;
use edge_agent::outbox::{Outbox, OutboxLimits, now_ms};
use protocol::{Alarm, Attachment, EventBundle, SignedHeartbeat};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

fn open_outbox(dir: &Path) -> Outbox {
    Outbox::open(&dir.join("data/outbox.sqlite"), OutboxLimits::default()).unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

#[test]
fn broker_down_for_5s_while_40_of_60_violations_are_made_all_arrive_once_in_order_per_camera() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    let id = enroll(&config);
    let server = TestServer::start(broker.port, id.verifying_key());
    let _agent = Agent::start(&config, &dir.path().join("agent.log"));
    let spool = dir.path().join("data/spool");
    let mut outbox = open_outbox(dir.path());
    let mut made: Vec<(uuid::Uuid, String)> = Vec::new();
    // Delivery sends events made while connected ("live") ahead of an older,
    // paced backlog, so per-camera order holds within each of those two
    // groups. Wait for the link before producing, so the first 20 are all
    // live and the 40 made during the outage are all backlog.
    assert!(
        wait_for(30, || log_of(dir.path())
            .contains("connected to the broker")),
        "agent never connected; log:\n{}",
        log_of(dir.path())
    );
    let mut produce = |outbox: &mut Outbox, n: u64| {
        let camera = if n.is_multiple_of(2) {
            "cam-north"
        } else {
            "cam-south"
        };
        let (ev, evdir) = violation(&id, &spool, camera, n, 20_000, 0);
        outbox.enqueue(&ev, camera, &evdir).unwrap();
        made.push((ev.unverified_event_id().unwrap(), camera.to_owned()));
    };
    for n in 0..20 {
        produce(&mut outbox, n);
    }
    assert!(
        wait_for(30, || server.seen.lock().unwrap().first.len() == 20),
        "first 20 before the outage; log:\n{}",
        log_of(dir.path())
    );
    broker.stop();
    for n in 20..60 {
        produce(&mut outbox, n);
        std::thread::sleep(Duration::from_millis(125)); // 40 over 5 s
    }
    broker.restart();
    assert!(
        wait_for(60, || server.seen.lock().unwrap().first.len() >= 60
            && outbox.stats(now_ms()).unwrap().depth == 0),
        "all 60 stored and acked; seen {}; log:\n{}",
        server.seen.lock().unwrap().first.len(),
        log_of(dir.path())
    );
    let seen = server.seen.lock().unwrap();
    let ids: Vec<uuid::Uuid> = seen.first.iter().map(|f| f.0).collect();
    assert_eq!(ids.len(), 60, "stored once each");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 60);
    for camera in ["cam-north", "cam-south"] {
        let sent: Vec<_> = made.iter().filter(|m| m.1 == camera).map(|m| m.0).collect();
        let got: Vec<_> = seen
            .first
            .iter()
            .filter(|f| f.1 == camera)
            .map(|f| f.0)
            .collect();
        assert_eq!(got, sent, "arrival order of {camera}");
    }
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);
}

#[test]
fn agent_sigkilled_mid_send_of_30_violations_with_clips_loses_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    // The backlog paced at 10 events/s, so the kill lands mid-send however
    // fast the machine is (at 200/s all 30 could be out within one poll).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("backlog_per_s = 200", "backlog_per_s = 10"),
    )
    .unwrap();
    let id = enroll(&config);
    let spool = dir.path().join("data/spool");
    let mut outbox = open_outbox(dir.path());
    let mut made = HashSet::new();
    for n in 0..30 {
        // 3 x 150 kB stills and a 600 kB clip (3 chunks) each.
        let (ev, evdir) = violation(&id, &spool, "cam-north", n, 150_000, 600_000);
        outbox.enqueue(&ev, "cam-north", &evdir).unwrap();
        made.insert(ev.unverified_event_id().unwrap());
    }
    let server = TestServer::start(broker.port, id.verifying_key());
    let log = dir.path().join("agent.log");
    let agent = Agent::start(&config, &log);
    assert!(
        wait_for(30, || !server.seen.lock().unwrap().first.is_empty()),
        "sending started; log:\n{}",
        log_of(dir.path())
    );
    agent.sigkill();
    let before = server.seen.lock().unwrap().first.len();
    assert!(before < 30, "killed mid-send ({before} of 30 stored)");
    let _agent = Agent::start(&config, &log);
    assert!(
        wait_for(90, || {
            let s = server.seen.lock().unwrap();
            s.first.len() == 30 && s.clips.len() == 30
        }) && wait_for(30, || outbox.stats(now_ms()).unwrap().depth == 0),
        "all 30 events and clips delivered; log:\n{}",
        log_of(dir.path())
    );
    let seen = server.seen.lock().unwrap();
    let got: HashSet<_> = seen.first.iter().map(|f| f.0).collect();
    assert_eq!(got, made);
    assert_eq!(seen.first.len(), 30, "each stored once");
    assert!(
        std::fs::read_dir(&spool).unwrap().count() == 0,
        "delivered evidence removed from the spool"
    );
}

#[test]
fn outbox_of_1_mib_raises_the_alarm_before_it_evicts_and_records_every_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    // Nobody acks: everything stays in the outbox.
    let config = agent_config(dir.path(), broker.port, "\n[outbox]\nmax_mib = 1\n");
    let id = enroll(&config);
    let heartbeats = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<Alarm>>::new()));
    let hb_thread = {
        let hb = heartbeats.clone();
        let key = id.verifying_key();
        let port = broker.port;
        std::thread::spawn(move || {
            use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
            let (client, mut conn) =
                Client::new(MqttOptions::new("hb-watch", "127.0.0.1", port), 64);
            client
                .subscribe("tv/v1/+/+/heartbeat", QoS::AtLeastOnce)
                .unwrap();
            let until = std::time::Instant::now() + Duration::from_secs(40);
            while std::time::Instant::now() < until {
                if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                    conn.recv_timeout(Duration::from_millis(100))
                {
                    let signed = SignedHeartbeat::from_json(&p.payload).unwrap();
                    let beat = signed.verify(&key).expect("heartbeat verifies");
                    let done = beat.alarms.contains(&Alarm::OutboxFull);
                    hb.lock().unwrap().push(beat.alarms);
                    if done {
                        break;
                    }
                }
            }
        })
    };
    let _agent = Agent::start(&config, &dir.path().join("agent.log"));
    let spool = dir.path().join("data/spool");
    let mut outbox = open_outbox(dir.path());
    // 2 x (3 x 100 kB + 250 kB clip) = 1.1 MB = 1.05 MiB... keep under: 1 of them first.
    let (ev, d) = violation(&id, &spool, "cam-north", 0, 100_000, 250_000);
    outbox.enqueue(&ev, "cam-north", &d).unwrap();
    let (ev, d) = violation(&id, &spool, "cam-north", 1, 100_000, 150_000);
    outbox.enqueue(&ev, "cam-north", &d).unwrap(); // 1.0 MB of 1.048 MB: 95%
    assert!(
        wait_for(20, || heartbeats
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.contains(&Alarm::OutboxNearlyFull))),
        "nearly-full alarm in a heartbeat; got {:?}; log:\n{}",
        heartbeats.lock().unwrap(),
        log_of(dir.path())
    );
    assert_eq!(
        outbox.evictions().unwrap().len(),
        0,
        "alarm comes before any eviction"
    );
    assert!(
        wait_for(10, || log_of(dir.path()).contains("outbox alarm raised")),
        "the alarm is logged too"
    );
    for n in 2..4 {
        let (ev, d) = violation(&id, &spool, "cam-north", n, 100_000, 250_000);
        outbox.enqueue(&ev, "cam-north", &d).unwrap();
    }
    assert!(
        wait_for(20, || outbox.evictions().unwrap().len() >= 2
            && outbox.stats(now_ms()).unwrap().bytes <= 1 << 20),
        "evictions recorded; log:\n{}",
        log_of(dir.path())
    );
    let ev = outbox.evictions().unwrap();
    assert_eq!(ev[0].what, "clip", "clips go first: {ev:?}");
    assert!(ev[0].reason.contains("limit"), "{ev:?}");
    assert!(
        log_of(dir.path()).contains("outbox eviction"),
        "evictions are logged"
    );
    let _ = hb_thread.join();
}

#[test]
fn a_bundle_tampered_in_transit_fails_verification_and_the_original_passes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    let id = enroll(&config);
    let server = TestServer::start(broker.port, id.verifying_key());
    let spool = dir.path().join("spool");
    let (ev, evdir) = violation(&id, &spool, "cam-north", 7, 5_000, 0);
    let attachments = ["at.jpg", "before.jpg", "plate.jpg"]
        .iter()
        .map(|n| Attachment {
            name: (*n).into(),
            data: std::fs::read(evdir.join(n)).unwrap(),
        })
        .collect();
    let good = EventBundle {
        event: ev,
        attachments,
    }
    .encode()
    .unwrap();
    // Someone between the box and the server changes one byte of a still, or
    // the violation's track id in the signed JSON.
    let mut still = good.clone();
    let last = still.len() - 1;
    still[last] ^= 1;
    let mut json = good.clone();
    let text = String::from_utf8_lossy(&json).into_owned();
    let at = text.find("\"track_id\":7").unwrap() + "\"track_id\":".len();
    json[at] = b'8';
    let topic = protocol::topics::events_topic(SITE, DEVICE).unwrap();
    let mut opts = rumqttc::MqttOptions::new("mitm", "127.0.0.1", broker.port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = rumqttc::Client::new(opts, 16);
    for payload in [still, json, good] {
        client
            .publish(&topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .unwrap();
    }
    assert!(wait_for(20, || {
        let _ = conn.recv_timeout(Duration::from_millis(50));
        server.seen.lock().unwrap().bundles == 3
    }));
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.rejected.len(), 2, "{:?}", seen.rejected);
    assert!(
        seen.rejected.iter().any(|r| r.contains("plate.jpg")),
        "{:?}",
        seen.rejected
    );
    assert!(
        seen.rejected.iter().any(|r| r.contains("signature")),
        "{:?}",
        seen.rejected
    );
    assert_eq!(seen.first.len(), 1, "the untouched bundle is stored");
    drop(client);
}

/// A still whose bytes rotted on the box's storage after the event was
/// signed is left out of the bundle, like a vanished one: sent, it would
/// make the server refuse the whole event, and the box set the violation
/// aside for one bad file. The event arrives with its other stills.
#[test]
fn a_still_damaged_on_the_spool_is_left_out_and_the_violation_still_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let config = agent_config(dir.path(), broker.port, "");
    let id = enroll(&config);
    let server = TestServer::start(broker.port, id.verifying_key());
    let spool = dir.path().join("data/spool");
    let mut outbox = open_outbox(dir.path());
    let (ev, evdir) = violation(&id, &spool, "cam-north", 1, 20_000, 0);
    let mut bytes = std::fs::read(evdir.join("before.jpg")).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(evdir.join("before.jpg"), &bytes).unwrap();
    outbox.enqueue(&ev, "cam-north", &evdir).unwrap();
    let _agent = Agent::start(&config, &dir.path().join("agent.log"));
    assert!(
        wait_for(30, || outbox.stats(now_ms()).unwrap().depth == 0),
        "delivered; log:\n{}",
        log_of(dir.path())
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.first.len(), 1, "stored");
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);
    assert!(
        log_of(dir.path()).contains("no longer matches its signed hash"),
        "{}",
        log_of(dir.path())
    );
}
