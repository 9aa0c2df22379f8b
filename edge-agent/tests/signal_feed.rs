//! A junction controller's signal phases through a real Mosquitto to the
//! camera: the delivery loop subscribes to the topics the site files name,
//! hands good phases to the camera's channel, and refuses (and counts) the
//! malformed, the misrouted and the stale.

mod delivery_support;

use delivery_support::*;
use edge_agent::config::AgentConfig;
use edge_agent::delivery::{self, Shared};
use edge_agent::identity::DeviceIdentity;
use edge_agent::signal::SignalState;
use rumqttc::{Client, MqttOptions, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const TOPIC: &str = "signals/v1/hn-test-site/east-west";

/// The controller's key (its public half goes in the site file).
fn controller() -> protocol::SigningKey {
    protocol::SigningKey::from_bytes(&[7; 32])
}

fn phase(group: &str, state: SignalState, since: OffsetDateTime, sent: OffsetDateTime) -> Vec<u8> {
    protocol::SignalPhase {
        group: group.into(),
        state,
        since,
        sent,
    }
    .to_signed_json(&controller(), TOPIC)
    .unwrap()
}

/// The box's delivery loop on `port`, with the group `east-west` fed from
/// [`TOPIC`] by the controller whose public key is `key`.
struct Listening {
    shared: Shared,
    phases: std::sync::mpsc::Receiver<edge_agent::signal::PhaseUpdate>,
    stop: Arc<AtomicBool>,
    runner: std::thread::JoinHandle<Result<(), delivery::DeliveryError>>,
}

fn listen(dir: &std::path::Path, port: u16, key: protocol::VerifyingKey) -> Listening {
    let config = agent_config(dir, port, "");
    let cfg = AgentConfig::load(&config).unwrap();
    let id = DeviceIdentity::load_or_create(DEVICE, SITE, &dir.join("data/device.key"))
        .unwrap()
        .0;
    let shared = Shared::default();
    let phases = shared.signals.register(&[edge_agent::signal::FedSignal {
        group: "east-west".into(),
        topic: TOPIC.into(),
        key,
    }]);
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || delivery::run(&cfg, &id, &shared, stop))
    };
    Listening {
        shared,
        phases,
        stop,
        runner,
    }
}

#[test]
fn phases_reach_the_camera_through_the_broker_and_bad_ones_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let Listening {
        shared,
        phases,
        stop,
        runner,
    } = listen(dir.path(), broker.port, controller().verifying_key());

    // The controller: repeats its phase until the camera has it (it
    // repeats every second in service anyway).
    let (client, mut conn) =
        Client::new(MqttOptions::new("controller", "127.0.0.1", broker.port), 64);
    std::thread::spawn(move || for _ in conn.iter() {});
    let red_since = OffsetDateTime::now_utc() - time::Duration::seconds(7);
    let mut got = None;
    for _ in 0..100 {
        let now = OffsetDateTime::now_utc();
        client
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                phase("east-west", SignalState::Red, red_since, now),
            )
            .unwrap();
        if let Ok(u) = phases.recv_timeout(Duration::from_millis(200)) {
            got = Some(u);
            break;
        }
    }
    let got = got.expect("a phase reached the camera");
    assert_eq!(
        (got.group.as_str(), got.state),
        ("east-west", SignalState::Red)
    );
    assert_eq!(
        got.since_us,
        (red_since.unix_timestamp_nanos() / 1000) as i64,
        "the controller's start time, not the arrival"
    );
    while phases.try_recv().is_ok() {}

    // Malformed, another group's, stamped 30 s ago, unsigned, signed by
    // another key (any box logged in to the broker): all green, none may
    // reach the camera.
    let m = shared.metrics.clone();
    let before = m.signal_phases_refused.load(Ordering::Relaxed);
    let now = OffsetDateTime::now_utc();
    let old = now - time::Duration::seconds(30);
    for bad in [
        b"{\"group\":".to_vec(),
        phase("north-south", SignalState::Green, now, now),
        phase("east-west", SignalState::Green, old, old),
        format!(
            r#"{{"group":"east-west","state":"green","since":"{}","sent":"{}"}}"#,
            now.format(&Rfc3339).unwrap(),
            now.format(&Rfc3339).unwrap()
        )
        .into_bytes(),
        protocol::SignalPhase {
            group: "east-west".into(),
            state: SignalState::Green,
            since: now,
            sent: now,
        }
        .to_signed_json(&protocol::SigningKey::from_bytes(&[9; 32]), TOPIC)
        .unwrap(),
    ] {
        client.publish(TOPIC, QoS::AtLeastOnce, false, bad).unwrap();
    }
    assert!(
        wait_for(20, || m.signal_phases_refused.load(Ordering::Relaxed)
            >= before + 3),
        "refused {}",
        m.signal_phases_refused.load(Ordering::Relaxed) - before
    );
    assert!(
        phases.try_iter().all(|u| u.state != SignalState::Green),
        "a refused phase reached the camera"
    );
    assert!(m.signal_phases.load(Ordering::Relaxed) >= 1);

    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap().unwrap();
}

/// The stand-in controller (`edge-agent signal-sim`, a real process) and
/// the box: the key it prints is the one the site file names, and the box
/// believes its phases through the broker.
#[test]
fn the_stand_in_controllers_signed_phases_are_believed_by_the_box() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["signal-sim", "--host", "127.0.0.1", "--group", "east-west"])
        .args([
            "--topic", TOPIC, "--green", "2", "--yellow", "1", "--red", "2",
        ])
        .arg("--port")
        .arg(broker.port.to_string())
        .arg("--key-file")
        .arg(dir.path().join("controller.key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let printed: serde_json::Value = serde_json::from_str(&first).unwrap();
    let hex_key = printed["controller_key"].as_str().unwrap();
    let key =
        protocol::VerifyingKey::from_bytes(&hex::decode(hex_key).unwrap().try_into().unwrap())
            .unwrap();

    let Listening {
        shared,
        phases,
        stop,
        runner,
    } = listen(dir.path(), broker.port, key);
    // Over one cycle (5 s) the box hears every colour of the plan.
    let mut seen = std::collections::HashSet::new();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 && std::time::Instant::now() < until {
        if let Ok(u) = phases.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(u.group, "east-west");
            seen.insert(format!("{:?}", u.state));
        }
    }
    let _ = std::process::Command::new("kill")
        .arg(sim.id().to_string())
        .status();
    let _ = sim.wait();
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap().unwrap();
    assert_eq!(seen.len(), 3, "colours heard: {seen:?}");
    assert_eq!(
        shared.metrics.signal_phases_refused.load(Ordering::Relaxed),
        0
    );
}
