//! The real analysis (MOG2 detection, tracker, signal read from pixels,
//! rules) on rendered intersections whose ground truth is known: the exact
//! list of red-light runners must come out, and the vehicle beside a runner
//! must never be the one fined.

use edge_agent::analysis::Analysis;
use edge_agent::detect::{MotionConfig, MotionDetector};
use edge_agent::scene::{Scene, ScriptedVehicle};
use edge_agent::site::SiteConfig;
use opencv::prelude::*;
use protocol::ViolationType;

fn car(
    x: i32,
    enter: u64,
    speed: f32,
    stop: Option<f32>,
    plate: &str,
    colour: [u8; 3],
) -> ScriptedVehicle {
    ScriptedVehicle::car(x, enter, speed, stop, plate, colour)
}

fn scene(vehicles: Vec<ScriptedVehicle>) -> Scene {
    // green 0-59, yellow 60-89, red 90-179, then green again.
    Scene::standard(
        vehicles,
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
    )
}

/// The analysis of a rendered scene: MOG2 motion detection whose
/// background model's history is long, so a car waiting at the line is not
/// absorbed into the background mid-test.
fn analysis(site: &SiteConfig) -> Analysis {
    let det = MotionDetector::new(MotionConfig {
        analysis_width: 640,
        min_area: 1500.0,
        history: 5000,
        learning_rate: 0.0003,
        ..MotionConfig::default()
    })
    .unwrap();
    Analysis::new(Box::new(det), Some(site)).unwrap()
}

/// Runs the analysis over `frames` frames; returns (vehicle index, rule) per
/// violation, mapping each violation's box back to the scripted vehicle it
/// covers at the violation frame.
fn run(s: &Scene, frames: u64) -> Vec<(usize, ViolationType)> {
    let site =
        SiteConfig::from_toml_str(&s.site_toml(), "synthetic.toml").expect("scene site is valid");
    let mut a = analysis(&site);
    let mut found = Vec::new();
    for n in 0..frames {
        let f = s.render(n).unwrap();
        found.extend(a.process(&f).unwrap());
    }
    found.extend(a.finish());
    found
        .iter()
        .map(|v| (vehicle_at(s, v.frame, &v.bbox), v.rule))
        .collect()
}

/// The scripted vehicle whose drawn box overlaps `b` most on frame `n`.
fn vehicle_at(s: &Scene, n: u64, b: &edge_agent::geometry::BBox) -> usize {
    let iou = |v: &ScriptedVehicle| {
        let Some(bottom) = v.bottom(n) else {
            return 0.0;
        };
        let (x0, y0, x1, y1) = (
            v.x as f64,
            bottom as f64 - v.height as f64,
            (v.x + v.width) as f64,
            bottom as f64,
        );
        let iw = (x1.min(b.x + b.w) - x0.max(b.x)).max(0.0);
        let ih = (y1.min(b.y + b.h) - y0.max(b.y)).max(0.0);
        let inter = iw * ih;
        inter / ((x1 - x0) * (y1 - y0) + b.w * b.h - inter)
    };
    (0..s.vehicles.len())
        .max_by(|&a, &c| iou(&s.vehicles[a]).total_cmp(&iou(&s.vehicles[c])))
        .unwrap_or(usize::MAX)
}

#[test]
fn only_the_car_crossing_on_red_is_reported() {
    let s = scene(vec![
        // 0: crosses on green (enters frame 10, crosses about frame 56).
        car(80, 10, 5.0, None, "30A12345", [200, 60, 40]),
        // 1: crosses on red (enters frame 110, crosses about frame 156).
        car(80, 110, 5.0, None, "29B67890", [40, 60, 200]),
        // 2: beside it, stops 40 px before the line on red.
        car(300, 110, 5.0, Some(280.0), "51F11111", [40, 160, 40]),
    ]);
    let frames = 220;
    assert_eq!(
        s.red_light_runners(frames),
        vec![1],
        "the script's own ground truth"
    );
    let got = run(&s, frames);
    assert_eq!(
        got,
        vec![(1, ViolationType::RedLight)],
        "exact violation list"
    );
}

/// The same intersection with the signal taken from the junction
/// controller's phases instead of the drawn lamps: each phase is handed
/// over a second before the frames reach it (frames lag real time) and
/// repeated every second, as the controller does.
#[test]
fn the_runner_is_fined_when_the_signal_comes_from_the_controllers_feed() {
    let s = scene(vec![
        car(80, 10, 5.0, None, "30A12345", [200, 60, 40]),
        car(80, 110, 5.0, None, "29B67890", [40, 60, 200]),
        car(300, 110, 5.0, Some(280.0), "51F11111", [40, 160, 40]),
    ]);
    let toml = s.site_toml();
    let lamps = toml.find("[signals.lamps]").unwrap();
    let end = toml[lamps..].find("\n\n").unwrap() + lamps;
    let toml = format!(
        "{}mqtt_topic = \"signals/v1/synthetic/main\"\ncontroller_key = \"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c\"{}",
        &toml[..lamps],
        &toml[end..]
    );
    let site = SiteConfig::from_toml_str(&toml, "synthetic.toml").unwrap();
    assert!(site.signals[0].lamps.is_none());
    let mut a = analysis(&site);
    let fps = u64::from(s.fps);
    let us = |n: u64| {
        let t = s.start + time::Duration::nanoseconds((n * 1_000_000_000 / fps) as i64);
        (t.unix_timestamp_nanos() / 1000) as i64
    };
    // The frame each state began on.
    let began = |n: u64| {
        (0..=n)
            .rev()
            .take_while(|&k| s.signal.state(k) == s.signal.state(n))
            .last()
            .unwrap_or(n)
    };
    let mut found = Vec::new();
    for n in 0..220u64 {
        let ahead = n + fps;
        if ahead % fps == 0 || s.signal.state(ahead) != s.signal.state(ahead - 1) {
            assert!(a.push_phase(edge_agent::signal::PhaseUpdate {
                group: "main".into(),
                state: s.signal.state(ahead),
                since_us: us(began(ahead)),
                sent_us: us(ahead),
            }));
        }
        found.extend(a.process(&s.render(n).unwrap()).unwrap());
    }
    found.extend(a.finish());
    let got: Vec<_> = found
        .iter()
        .map(|v| (vehicle_at(&s, v.frame, &v.bbox), v.rule))
        .collect();
    assert_eq!(
        got,
        vec![(1, ViolationType::RedLight)],
        "exact violation list"
    );
    let signal = found[0].signal.clone().unwrap();
    assert_eq!(signal.state, protocol::SignalState::Red);

    // Without the controller the group stays unknown: nobody is fined.
    let mut a = analysis(&site);
    let mut silent = Vec::new();
    for n in 0..220u64 {
        silent.extend(a.process(&s.render(n).unwrap()).unwrap());
    }
    silent.extend(a.finish());
    assert!(
        silent.is_empty(),
        "{} violations with no signal",
        silent.len()
    );
}

#[test]
fn two_cars_side_by_side_only_the_runner_is_fined() {
    let s = scene(vec![
        car(80, 110, 5.0, None, "30A22222", [40, 60, 200]),
        car(300, 110, 5.0, Some(280.0), "30A33333", [40, 160, 40]),
        car(420, 110, 6.0, None, "30A44444", [160, 40, 160]),
    ]);
    let frames = 220;
    let truth: Vec<(usize, ViolationType)> = s
        .red_light_runners(frames)
        .into_iter()
        .map(|i| (i, ViolationType::RedLight))
        .collect();
    assert_eq!(truth.len(), 2);
    let mut got = run(&s, frames);
    got.sort_by_key(|(i, _)| *i);
    assert_eq!(got, truth);
}

#[test]
fn crossing_on_green_or_yellow_is_not_a_violation() {
    let s = scene(vec![
        // crosses about frame 56 (green) and about frame 66 (yellow).
        car(80, 10, 5.0, None, "30A55555", [200, 60, 40]),
        car(300, 20, 5.0, None, "30A66666", [40, 60, 200]),
    ]);
    assert!(s.red_light_runners(150).is_empty());
    assert!(run(&s, 150).is_empty());
}

/// The whole post-processing path on a rendered scene: the red-light runner
/// gets an evidence set whose every hash matches its file, the plate is read
/// only inside its own box (the synthetic plate's Hershey text is not a
/// Vietnamese plate the reader accepts, so it must come back unreadable —
/// never a guess, and never the neighbour's plate), and the vehicle beside it
/// gets nothing.
#[test]
fn red_light_runner_gets_verified_evidence_and_an_honest_plate() {
    let s = scene(vec![
        car(80, 110, 5.0, None, "29B67890", [40, 60, 200]),
        car(300, 110, 5.0, Some(280.0), "51F11111", [40, 160, 40]),
    ]);
    let site = SiteConfig::from_toml_str(&s.site_toml(), "synthetic.toml").unwrap();
    let det = MotionDetector::new(MotionConfig {
        analysis_width: 640,
        min_area: 1500.0,
        history: 5000,
        learning_rate: 0.0003,
        ..MotionConfig::default()
    })
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let reader = {
        use plate_ocr::detect::{Y5fuDetector, Y5fuSize};
        use plate_ocr::pipeline::{Pipeline, PipelineConfig};
        use plate_ocr::recognize::PpOcrRecognizer;
        use plate_ocr::runtime::SessionConfig;
        let cfg = SessionConfig::default();
        Pipeline::new(
            Some(Box::new(
                Y5fuDetector::load(Y5fuSize::S320, cfg).expect("y5fu_320 (make models)"),
            )),
            Box::new(PpOcrRecognizer::load(cfg).expect("ppocr_v4_rec (make models)")),
            PipelineConfig::default(),
        )
    };
    let identity = edge_agent::identity::DeviceIdentity::with_key(
        "edge-test",
        "site-test",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    );
    let db = spool.path().join("outbox.sqlite");
    let outbox =
        edge_agent::outbox::Outbox::open(&db, edge_agent::outbox::OutboxLimits::default()).unwrap();
    let out = edge_agent::replay::EvidenceOutput {
        spool: spool.path().to_path_buf(),
        reader: Some(reader),
        report: Some(edge_agent::replay::Reporter {
            identity: identity.clone(),
            outbox: std::sync::Mutex::new(outbox),
        }),
        evidence: Default::default(),
    };
    let frames = (0..220u64).map(|n| Ok(s.render(n).unwrap()));
    let summary =
        edge_agent::replay::run_frames(frames, Box::new(det), Some(&site), None, Some(&out))
            .unwrap();
    assert_eq!(summary.violations.len(), 1, "{:?}", summary.violations);
    let v = &summary.violations[0];
    assert_eq!(v.rule, "RedLight");
    let id = v.event_id.expect("event id");
    let p = v.processed.as_ref().expect("post-processed");
    assert!(
        p.plate.text.is_none(),
        "Hershey text is no Vietnamese plate: {:?}",
        p.plate
    );
    let dir = spool.path().join(id.to_string());
    assert!(dir.is_dir());
    for item in &p.evidence {
        let bytes = std::fs::read(dir.join(&item.name)).unwrap();
        assert_eq!(protocol::sha256_hex(&bytes), item.sha256, "{}", item.name);
        assert_eq!(bytes.len() as u64, item.size_bytes);
    }
    let names: Vec<&str> = p.evidence.iter().map(|i| i.name.as_str()).collect();
    for want in [
        "before.jpg",
        "at.jpg",
        "after.jpg",
        "at_annotated.jpg",
        "clip.mp4",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // Signed and queued for delivery, its manifest the files on disk.
    drop(out);
    let outbox =
        edge_agent::outbox::Outbox::open(&db, edge_agent::outbox::OutboxLimits::default()).unwrap();
    let due = outbox
        .due(
            edge_agent::outbox::now_ms(),
            std::time::Duration::from_secs(30),
            0,
            10,
        )
        .unwrap();
    assert_eq!(due.len(), 1, "one event queued");
    let edge_agent::outbox::Pending::Event(queued) = &due[0] else {
        panic!("{due:?}")
    };
    let signed = protocol::SignedEvent::from_json(&queued.event_json).unwrap();
    let event = signed.verify(&identity.verifying_key()).unwrap();
    assert_eq!(event.event_id, id);
    assert_eq!(event.violation_type, protocol::ViolationType::RedLight);
    assert_eq!(event.camera_id, site.camera_id);
    assert_eq!(event.evidence, p.evidence);
    assert!(!event.plate.readable, "unreadable stays unreadable");
    assert!(event.signal.is_some(), "the red light it ran is recorded");
    assert!(!event.track.points.is_empty() && event.track.first_seen <= event.event_time);
    assert!(queued.stills.iter().all(|n| n != "clip.mp4"));
}

/// A real photographed plate (from the named evaluation crops, label from
/// its `labels.csv`) on a red-light runner: the violator's plate is read on
/// several frames of its track and the fused read is that plate.
#[test]
fn runner_with_a_real_plate_is_read_on_several_frames_and_fused_to_that_plate() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/vn_crops_named");
    let labels = std::fs::read_to_string(dir.join("labels.csv"))
        .expect("shared/data/vn_crops_named/labels.csv (shared/ must sit beside the repository)");
    let (file, label) = labels
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .find(|(f, _)| {
            // A one-line plate (wide crop) fits the rendered car best.
            opencv::imgcodecs::imread(
                dir.join(f).to_string_lossy().as_ref(),
                opencv::imgcodecs::IMREAD_COLOR,
            )
            .map(|m| m.cols() > 3 * m.rows())
            .unwrap_or(false)
        })
        .expect("a one-line plate among the named crops");
    let img = opencv::imgcodecs::imread(
        dir.join(file).to_string_lossy().as_ref(),
        opencv::imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    let mut runner = car(200, 110, 5.0, None, "", [90, 90, 90]);
    runner.width = 210;
    runner.height = 230;
    runner.plate_image = Some(std::sync::Arc::new(img));
    let s = scene(vec![runner]);
    let site = SiteConfig::from_toml_str(&s.site_toml(), "synthetic.toml").unwrap();
    let det = MotionDetector::new(MotionConfig {
        analysis_width: 640,
        min_area: 1500.0,
        history: 5000,
        learning_rate: 0.0003,
        ..MotionConfig::default()
    })
    .unwrap();
    let reader = edge_agent::violator::plate_reader("ppocr").expect("plate models (make models)");
    let spool = tempfile::tempdir().unwrap();
    let out = edge_agent::replay::EvidenceOutput {
        spool: spool.path().to_path_buf(),
        reader: Some(reader),
        report: None,
        evidence: Default::default(),
    };
    let frames = (0..220u64).map(|n| Ok(s.render(n).unwrap()));
    let summary =
        edge_agent::replay::run_frames(frames, Box::new(det), Some(&site), None, Some(&out))
            .unwrap();
    assert_eq!(summary.violations.len(), 1, "{:?}", summary.violations);
    let p = summary.violations[0]
        .processed
        .as_ref()
        .expect("post-processed");
    assert_eq!(p.plate.text.as_deref(), Some(label), "{:?}", p.plate);
    assert!(
        p.plate.frames_read >= 3,
        "read on several frames: {:?}",
        p.plate
    );
    assert_eq!(
        p.plate.frames_agreeing, p.plate.frames_read,
        "{:?}",
        p.plate
    );
    assert!(
        p.evidence.iter().any(|i| i.name == "plate.jpg"),
        "the plate crop is evidence"
    );
    // The event says where the plate was read, and a still shows it on the
    // violator.
    let source = edge_agent::report::wire_plate(&p.plate)
        .source
        .expect("the event records where the plate was read");
    assert_eq!(source.frame, p.plate.frame);
    let [px, py, pw, ph] = source.plate_box;
    let [vx, vy, vw, vh] = source.vehicle_box;
    assert!(
        px >= vx && py >= vy && px + pw <= vx + vw && py + ph <= vy + vh,
        "{source:?}"
    );
    assert!(
        p.evidence.iter().any(|i| i.name == "plate_vehicle.jpg"),
        "the plate frame around the violator is evidence"
    );
}
