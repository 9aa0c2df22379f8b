//! Evidence end to end on synthetic frames: ring buffer bounds, the spool
//! directory and its hashes, stills (original vs annotated, privacy
//! masks), the clip decoded back by GStreamer, degraded sets, wrong frame
//! sizes and the calibration drawing.

use edge_agent::capture::{Frame, FrameSource, Pacing, SourceSpec};
use edge_agent::evidence::{
    EvidenceCollector, EvidenceConfig, EvidenceError, EvidenceJob, FrameRing, RingLimits,
    calibration_png, encode_clip,
};
use edge_agent::geometry::BBox;
use edge_agent::rules::{EvidenceFrames, RuleKind, Violation};
use edge_agent::site::SiteConfig;
use opencv::core::{self, Mat, Vec3b};
use opencv::imgcodecs;
use opencv::prelude::*;
use protocol::{
    EvidenceRole, SignalObservation, SignalState, VehicleClass, ViolationType, sha256_hex,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

const W: u32 = 320;
const H: u32 = 240;
const SITE: &str = r#"
camera_id = "test-cam"
[frame]
width = 320
height = 240
[[stop_lines]]
id = "s"
points = [[40, 120], [280, 120]]
approach_deg = -90
[[lanes]]
id = "l1"
polygon = [[40, 120], [280, 120], [280, 239], [40, 239]]
group = "g"
stop_line = "s"
[[signals]]
group = "g"
[signals.lamps]
red = [290, 10, 10, 10]
yellow = [290, 25, 10, 10]
green = [290, 40, 10, 10]
[speed.two_lines]
lines = [[[40, 200], [280, 200]], [[40, 150], [280, 150]]]
distance_m = 10.0
[[no_stopping_zones]]
id = "z"
polygon = [[200, 60], [300, 60], [300, 100], [200, 100]]
max_dwell_s = 30
[[privacy_masks]]
polygon = [[0, 0], [60, 0], [60, 40], [0, 40]]
"#;

fn site() -> Arc<SiteConfig> {
    Arc::new(SiteConfig::from_toml_str(SITE, "test.toml").expect("site"))
}

const T0_US: i64 = 1_741_914_930_000_000;
const STEP_MS: i64 = 100;

fn time_of(n: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(T0_US + n as i64 * STEP_MS * 1000) * 1000)
        .unwrap()
}

/// Smooth gradient background (JPEG-friendly) with a dark-red "vehicle".
fn pixel(n: u64, x: u32, y: u32) -> [u8; 3] {
    let vy = 200u32.saturating_sub(n as u32 * 3);
    if (100..160).contains(&x) && (vy..vy + 50).contains(&y) {
        return [30, 30, 200];
    }
    [(x * 255 / W) as u8, (y * 255 / H) as u8, 128]
}

fn frame_sized(n: u64, w: u32, h: u32) -> Frame {
    frame_stamped(n, time_of(n), w, h)
}

/// Frame `n` of `w`×`h` stamped `time` (not necessarily [`time_of`]`(n)`).
fn frame_stamped(n: u64, time: OffsetDateTime, w: u32, h: u32) -> Frame {
    // `Frame::from_bgr` makes a GStreamer buffer, which needs GStreamer.
    gstreamer::init().unwrap();
    let mut bgr = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            bgr.extend_from_slice(&pixel(n, x, y));
        }
    }
    Frame::from_bgr(n, time, w, h, bgr).unwrap()
}

fn frame(n: u64) -> Frame {
    frame_sized(n, W, H)
}

fn violation(before: u64, at: u64, after: u64) -> Violation {
    let vy = 200u32.saturating_sub(at as u32 * 3);
    Violation {
        track_id: 7,
        rule: ViolationType::RedLight,
        kind: RuleKind::RedLight,
        frame: at,
        at_us: T0_US + at as i64 * STEP_MS * 1000,
        lane: Some("l1".into()),
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(4200),
        }),
        speed: None,
        frames: EvidenceFrames { before, at, after },
        class: VehicleClass::Car,
        riders: None,
        bbox: BBox::from_xywh(100.0, f64::from(vy), 60.0, 50.0),
    }
}

fn config(clip: bool) -> EvidenceConfig {
    EvidenceConfig {
        pre: Duration::from_secs(1),
        post: Duration::from_secs(1),
        clip,
        ..EvidenceConfig::default()
    }
}

fn decode(path: &Path) -> Mat {
    let bytes = std::fs::read(path).unwrap();
    let m = imgcodecs::imdecode(
        &core::Vector::<u8>::from_slice(&bytes),
        imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    assert!(!m.empty(), "{} does not decode", path.display());
    m
}

fn px(m: &Mat, x: i32, y: i32) -> [i32; 3] {
    let p = m.at_2d::<Vec3b>(y, x).unwrap();
    [i32::from(p[0]), i32::from(p[1]), i32::from(p[2])]
}

fn close(a: [i32; 3], b: [i32; 3], tol: i32) -> bool {
    a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= tol)
}

/// Mean absolute difference between a decoded still and the source frame
/// over the rows `y0..y1` of the frame.
fn mean_abs_diff(m: &Mat, f: &Frame, y0: u32, y1: u32) -> f64 {
    let mut sum = 0u64;
    for y in y0..y1 {
        for x in 0..W {
            let a = px(m, x as i32, y as i32);
            let b = pixel(f.number, x, y);
            for c in 0..3 {
                sum += (a[c] - i32::from(b[c])).unsigned_abs() as u64;
            }
        }
    }
    sum as f64 / f64::from((y1 - y0) * W * 3)
}

/// Pushes frames `from..=to`, returning the jobs that became ready.
fn push(c: &mut EvidenceCollector, from: u64, to: u64) -> Vec<EvidenceJob> {
    let mut out = Vec::new();
    for n in from..=to {
        out.extend(c.push_frame(frame(n)).unwrap());
    }
    out
}

#[test]
fn jobs_can_go_to_a_worker_thread() {
    fn send<T: Send + 'static>() {}
    send::<EvidenceJob>();
    send::<EvidenceCollector>();
}

#[test]
fn ring_evicts_by_count_bytes_and_age() {
    let unlimited = RingLimits {
        max_age: Duration::from_secs(3600),
        max_frames: 1000,
        max_bytes: usize::MAX,
    };
    let mut r = FrameRing::new(RingLimits {
        max_frames: 5,
        ..unlimited
    });
    for n in 0..10 {
        r.push(frame(n));
    }
    assert_eq!(r.len(), 5);
    assert_eq!(r.oldest().unwrap().number, 5);
    assert_eq!(r.newest().unwrap().number, 9);
    assert!(r.get(4).is_none());
    assert_eq!(r.get(7).unwrap().number, 7);

    let one = (W * H * 3) as usize;
    let mut r = FrameRing::new(RingLimits {
        max_bytes: 3 * one,
        ..unlimited
    });
    for n in 0..10 {
        r.push(frame(n));
    }
    assert_eq!((r.len(), r.bytes()), (3, 3 * one));

    let mut r = FrameRing::new(RingLimits {
        max_age: Duration::from_millis(250),
        ..unlimited
    });
    for n in 0..10 {
        r.push(frame(n));
    }
    assert_eq!(r.len(), 3, "frames 7, 8, 9 are within 250 ms of the newest");

    // One frame larger than the byte bound is still kept (the newest).
    let mut r = FrameRing::new(RingLimits {
        max_bytes: 10,
        ..unlimited
    });
    r.push(frame(0));
    r.push(frame(1));
    assert_eq!(r.len(), 1);
    // A restarted source (numbers going back) empties the ring.
    r.push(frame(0));
    assert_eq!((r.len(), r.newest().unwrap().number), (1, 0));
}

#[test]
fn full_evidence_set_is_hashed_masked_annotated_and_has_a_clip() {
    let spool = tempfile::tempdir().unwrap();
    let mut c = EvidenceCollector::new(site(), config(true));
    assert!(push(&mut c, 0, 25).is_empty());
    let id = Uuid::new_v4();
    let v = violation(18, 20, 25);
    // Reported at frame 25; the window ends at frame 30 (at + 1 s).
    assert!(c.add_violation(id, &v, &[]).unwrap().is_none());
    assert_eq!(c.pending(), 1);
    assert!(push(&mut c, 26, 29).is_empty());
    let mut ready = push(&mut c, 30, 34);
    assert_eq!(ready.len(), 1);
    let mut job = ready.remove(0);
    assert!(job.window_complete());
    assert!(job.add_plate_crop_jpeg(b"not a jpeg".to_vec()).is_err());
    assert!(
        job.add_plate_crop_rect(999, BBox::from_xywh(110.0, 170.0, 40.0, 10.0))
            .is_err(),
        "a frame the job does not hold"
    );
    job.add_plate_crop_rect(
        job.violation.frames.at,
        BBox::from_xywh(110.0, 170.0, 40.0, 10.0),
    )
    .unwrap();
    let at_n = job.violation.frames.at;
    assert!(
        job.add_plate_context(
            at_n,
            BBox::from_xywh(1000.0, 1000.0, 60.0, 50.0),
            BBox::from_xywh(1010.0, 1030.0, 40.0, 10.0)
        )
        .is_err(),
        "boxes outside the frame"
    );
    job.add_plate_context(
        at_n,
        BBox::from_xywh(100.0, 140.0, 60.0, 50.0),
        BBox::from_xywh(110.0, 170.0, 40.0, 10.0),
    )
    .unwrap();

    let set = job.write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    assert_eq!(set.dir, spool.path().join(id.to_string()));
    let listing: Vec<String> = std::fs::read_dir(spool.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listing, vec![id.to_string()], "no .partial left behind");
    let mut names: Vec<&str> = set.items.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "after.jpg",
            "after_annotated.jpg",
            "at.jpg",
            "at_annotated.jpg",
            "before.jpg",
            "before_annotated.jpg",
            "clip.mp4",
            "plate.jpg",
            "plate_vehicle.jpg",
            "signal.jpg",
            "vehicle.jpg"
        ]
    );
    protocol::evidence::validate_manifest("evidence", &set.items, time_of(20)).unwrap();
    // Each still names, under the signature, the frame it shows; the clip
    // spans many and names none.
    let shown = |n: &str| {
        let f = set.items.iter().find(|i| i.name == n).unwrap().frame;
        f.map(|f| (f.number, f.time))
    };
    for (name, n) in [
        ("before.jpg", 18),
        ("before_annotated.jpg", 18),
        ("at.jpg", 20),
        ("at_annotated.jpg", 20),
        ("after.jpg", 25),
        ("after_annotated.jpg", 25),
        ("vehicle.jpg", 20),
        ("signal.jpg", 20),
        ("plate.jpg", 20),
        ("plate_vehicle.jpg", 20),
    ] {
        assert_eq!(shown(name), Some((n, time_of(n))), "{name}");
    }
    assert_eq!(shown("clip.mp4"), None);
    for item in &set.items {
        let bytes = std::fs::read(set.dir.join(&item.name)).unwrap();
        assert_eq!(sha256_hex(&bytes), item.sha256, "{}", item.name);
        assert_eq!(bytes.len() as u64, item.size_bytes, "{}", item.name);
    }
    let role = |n: &str| set.items.iter().find(|i| i.name == n).unwrap().role;
    assert_eq!(role("at.jpg"), EvidenceRole::Overview);
    assert_eq!(role("before.jpg"), EvidenceRole::Frame);
    assert_eq!(role("vehicle.jpg"), EvidenceRole::VehicleCrop);
    assert_eq!(role("plate.jpg"), EvidenceRole::PlateCrop);
    assert_eq!(role("plate_vehicle.jpg"), EvidenceRole::VehicleCrop);
    assert_eq!(role("clip.mp4"), EvidenceRole::Clip);
    assert!(set.dir.join("manifest.json").is_file());

    // The original still is the source frame (below the privacy mask).
    let src = frame(20);
    let at = decode(&set.dir.join("at.jpg"));
    assert_eq!((at.cols(), at.rows()), (W as i32, H as i32));
    let d = mean_abs_diff(&at, &src, 40, H);
    assert!(
        d < 2.0,
        "original differs from the frame: mean abs diff {d}"
    );
    for (n, y0) in [(18, 40), (25, 40)] {
        let m = decode(
            &set.dir
                .join(if n == 18 { "before.jpg" } else { "after.jpg" }),
        );
        assert!(mean_abs_diff(&m, &frame(n), y0, H) < 2.0, "frame {n}");
    }
    // The privacy mask is filled in both, and was not grey in the source.
    let ann = decode(&set.dir.join("at_annotated.jpg"));
    assert!(
        ann.rows() > H as i32 && ann.cols() == W as i32,
        "strip added below"
    );
    let grey = [96, 96, 96];
    assert!(!close(
        [
            pixel(20, 30, 20)[0].into(),
            pixel(20, 30, 20)[1].into(),
            128
        ],
        grey,
        10
    ));
    for m in [&at, &ann] {
        for (x, y) in [(5, 5), (30, 20), (55, 35)] {
            assert!(
                close(px(m, x, y), grey, 8),
                "mask at ({x},{y}): {:?}",
                px(m, x, y)
            );
        }
    }
    // The violator's box (x 100..160, y 140..190 at frame 20) is drawn in
    // magenta on the annotated copy only.
    let magenta = [255, 0, 255];
    for (x, y) in [(100, 165), (159, 165), (130, 140), (130, 189)] {
        assert!(
            close(px(&ann, x, y), magenta, 40),
            "box edge ({x},{y}): {:?}",
            px(&ann, x, y)
        );
        assert!(!close(px(&at, x, y), magenta, 60), "original at ({x},{y})");
    }
    // Away from every drawing the two agree.
    for (x, y) in [(150, 60), (20, 100), (130, 165)] {
        assert!(close(px(&ann, x, y), px(&at, x, y), 10), "({x},{y})");
    }
    // Plate crop is the asked region, full resolution.
    let plate = decode(&set.dir.join("plate.jpg"));
    assert_eq!((plate.cols(), plate.rows()), (40, 10));
    let vehicle = decode(&set.dir.join("vehicle.jpg"));
    assert_eq!((vehicle.cols(), vehicle.rows()), (60, 25));
    // Whose plate: the violator with half its size around it (x 70..190,
    // y 110..220) and a caption strip below; its box magenta and the
    // plate's green, both drawn just outside the boxes.
    let context = decode(&set.dir.join("plate_vehicle.jpg"));
    assert_eq!(context.cols(), 120);
    assert!(context.rows() > 110, "a strip below: {}", context.rows());
    assert!(
        close(px(&context, 28, 50), magenta, 40),
        "{:?}",
        px(&context, 28, 50)
    );
    assert!(
        !close(px(&context, 30, 50), magenta, 60),
        "the vehicle's own pixels"
    );
    assert!(
        close(px(&context, 38, 65), [0, 255, 0], 60),
        "{:?}",
        px(&context, 38, 65)
    );
    assert!(
        !close(px(&context, 40, 65), [0, 255, 0], 60),
        "the plate's own pixels"
    );
    assert!(
        !close(px(&context, 60, 65), [0, 255, 0], 60),
        "inside the plate box"
    );
    assert!(
        close(px(&context, 119, context.rows() - 1), [0, 0, 0], 10),
        "the strip"
    );

    // The clip decodes back, about 21 frames (frames 10..=30 at 10 fps).
    let mut src = FrameSource::open(
        &SourceSpec::File(set.dir.join("clip.mp4")),
        Pacing::AsFastAsPossible,
        Some((W, H)),
    )
    .unwrap();
    let mut count = 0;
    let mut times = Vec::new();
    while let Some(f) = src.next_frame(Duration::from_secs(20)).unwrap() {
        times.push(f.time);
        if count == 0 {
            // Masked in the clip too.
            let m = edge_agent::detect::frame_mat(&f)
                .unwrap()
                .try_clone()
                .unwrap();
            assert!(
                close(px(&m, 30, 20), grey, 12),
                "clip mask {:?}",
                px(&m, 30, 20)
            );
        }
        count += 1;
    }
    assert!((19..=23).contains(&count), "clip has {count} frames");
    // Timestamps from the frame times: 2 s from the first to the last frame.
    let span = (times[times.len() - 1] - times[0]).as_seconds_f64();
    assert!((span - 2.0).abs() < 0.15, "clip spans {span} s");

    // An event is never overwritten.
    assert!(matches!(
        job.write(spool.path()),
        Err(EvidenceError::AlreadyExists { .. })
    ));
}

#[test]
fn frames_that_left_the_ring_give_an_error_or_a_degraded_set() {
    let spool = tempfile::tempdir().unwrap();
    let cfg = EvidenceConfig {
        ring: RingLimits {
            max_frames: 8,
            ..RingLimits::default()
        },
        ..config(false)
    };
    let mut c = EvidenceCollector::new(site(), cfg);
    push(&mut c, 0, 25); // ring: 18..=25
    let err = c
        .add_violation(Uuid::new_v4(), &violation(8, 10, 25), &[])
        .unwrap_err();
    assert!(
        matches!(err, EvidenceError::FrameGone { frame: 10, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("18..=25"), "{err}");

    // "at" is held, "before" is gone: a degraded set that says so.
    let v = violation(15, 20, 25);
    assert!(c.add_violation(Uuid::new_v4(), &v, &[]).unwrap().is_none());
    let ready = push(&mut c, 26, 30);
    assert_eq!(ready.len(), 1);
    let set = ready[0].write(spool.path()).unwrap();
    let missing: Vec<&str> = set.missing.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(missing, ["before.jpg", "before_annotated.jpg"]);
    assert!(
        set.missing[0].reason.contains("frame 15"),
        "{:?}",
        set.missing
    );
    assert!(set.items.iter().any(|i| i.name == "at.jpg"));
    assert!(!set.items.iter().any(|i| i.name.starts_with("before")));
    protocol::evidence::validate_manifest("evidence", &set.items, time_of(20)).unwrap();

    // The stream ends before the "after" frame: released by finish().
    let v = violation(28, 30, 40);
    assert!(c.add_violation(Uuid::new_v4(), &v, &[]).unwrap().is_none());
    push(&mut c, 31, 33);
    let jobs = c.finish();
    assert_eq!(jobs.len(), 1);
    assert!(!jobs[0].window_complete());
    let set = jobs[0].write(spool.path()).unwrap();
    assert!(!set.window_complete);
    assert!(
        set.missing
            .iter()
            .any(|m| m.name == "after.jpg" && m.reason.contains("ended"))
    );
    assert_eq!(c.pending(), 0);
}

/// A still whose frame time lies more than
/// [`protocol::evidence::MAX_FRAME_OFFSET_S`] from the violation's (a
/// source stamped on arrival whose clock stepped during the evidence
/// window) names no frame: the protocol refuses a manifest naming such a
/// frame, and the whole event, violation and all, would be lost for one
/// still's stamp.
#[test]
fn a_still_stamped_far_from_the_violation_names_no_frame() {
    let spool = tempfile::tempdir().unwrap();
    let mut c = EvidenceCollector::new(site(), config(false));
    let mut ready = Vec::new();
    for n in 0..=25 {
        let f = if n == 18 {
            frame_stamped(n, time_of(20) - time::Duration::minutes(10), W, H)
        } else {
            frame(n)
        };
        ready.extend(c.push_frame(f).unwrap());
    }
    let v = violation(18, 20, 25);
    ready.extend(c.add_violation(Uuid::new_v4(), &v, &[]).unwrap());
    ready.extend(push(&mut c, 26, 34));
    assert_eq!(ready.len(), 1);
    let set = ready[0].write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    for item in &set.items {
        let number = item.frame.map(|f| f.number);
        match item.name.as_str() {
            "before.jpg" | "before_annotated.jpg" => assert_eq!(number, None, "{item:?}"),
            "after.jpg" | "after_annotated.jpg" => assert_eq!(number, Some(25), "{item:?}"),
            _ => assert_eq!(number, Some(20), "{item:?}"),
        }
    }
    assert!(set.items.iter().any(|i| i.name == "before.jpg"));
    protocol::evidence::validate_manifest("evidence", &set.items, time_of(20)).unwrap();
}

#[test]
fn clip_errors_name_the_file_and_do_not_hang() {
    let frames: Vec<Frame> = (0..5).map(frame).collect();
    let bad = Path::new("/nonexistent-dir/clip.mp4");
    let err = encode_clip(&frames, &[], bad, 1000, Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, EvidenceError::Clip { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent-dir/clip.mp4"),
        "{err}"
    );
    let err = encode_clip(&[], &[], Path::new("x.mp4"), 1000, Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("no frames"), "{err}");
}

#[test]
fn source_restart_releases_pending_jobs() {
    let mut c = EvidenceCollector::new(site(), config(false));
    push(&mut c, 0, 22);
    assert!(
        c.add_violation(Uuid::new_v4(), &violation(18, 20, 22), &[])
            .unwrap()
            .is_none()
    );
    let released = c.push_frame(frame(0)).unwrap();
    assert_eq!(released.len(), 1);
    assert!(!released[0].window_complete());
    assert_eq!(c.ring().len(), 1);
}

#[test]
fn wrong_frame_size_is_a_clear_error() {
    let mut c = EvidenceCollector::new(site(), config(false));
    let err = c.push_frame(frame_sized(0, 160, 120)).unwrap_err();
    assert!(matches!(err, EvidenceError::WrongFrameSize { .. }));
    let text = err.to_string();
    assert!(
        text.contains("160x120") && text.contains("320x240") && text.contains("test-cam"),
        "{text}"
    );
    assert!(c.ring().is_empty());
    assert!(matches!(
        calibration_png(&frame_sized(0, 160, 120), &site()),
        Err(EvidenceError::WrongFrameSize { .. })
    ));
}

#[test]
fn calibration_png_decodes_at_frame_size_and_shows_the_site() {
    let f = frame(0);
    let png = calibration_png(&f, &site()).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let m = imgcodecs::imdecode(
        &core::Vector::<u8>::from_slice(&png),
        imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    assert_eq!((m.cols(), m.rows()), (W as i32, H as i32));
    // The stop line (y = 120) is drawn in red; the frame there is not red.
    let p = px(&m, 160, 120);
    assert!(close(p, [0, 0, 255], 40), "stop line pixel {p:?}");
    // The lamp rectangle outline of the red lamp.
    assert!(close(px(&m, 290, 15), [0, 0, 255], 40));
    // Lossless: far from drawings the frame is untouched.
    let q = pixel(0, 100, 10);
    let p = px(&m, 100, 10);
    assert_eq!(p, [i32::from(q[0]), i32::from(q[1]), i32::from(q[2])]);
}
