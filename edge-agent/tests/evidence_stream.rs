//! Evidence from the camera's kept coded stream (H.264 sources): the ring
//! holds access units, not decoded frames; stills decode back to exactly
//! the pixels the analysis saw; the clip is the camera's own pictures
//! remuxed, or re-encoded with the privacy masks when the site has any.

use edge_agent::capture::{Frame, FrameSource, Pacing, SourceSpec};
use edge_agent::evidence::{EvidenceCollector, EvidenceConfig, EvidenceJob, encode_clip};
use edge_agent::geometry::BBox;
use edge_agent::rules::{EvidenceFrames, RuleKind, Violation};
use edge_agent::site::SiteConfig;
use opencv::prelude::*;
use protocol::{SignalObservation, SignalState, VehicleClass, ViolationType};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

const W: u32 = 320;
const H: u32 = 240;
const FRAMES: u64 = 60;
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
"#;
const MASK: &str = r#"
[[privacy_masks]]
polygon = [[0, 0], [60, 0], [60, 40], [0, 40]]
"#;

/// A 6 s, 10 fps H.264 recording of a red box moving over a gradient
/// (keyframes every 20 frames: x264 `key-int-max` = 2 × fps).
fn recording(dir: &Path) -> std::path::PathBuf {
    gstreamer::init().unwrap();
    let t0 = OffsetDateTime::from_unix_timestamp(1_741_914_930).unwrap();
    let frames: Vec<Frame> = (0..FRAMES)
        .map(|n| {
            let mut bgr = Vec::with_capacity((W * H * 3) as usize);
            let vy = 200u32.saturating_sub(n as u32 * 3);
            for y in 0..H {
                for x in 0..W {
                    if (100..160).contains(&x) && (vy..vy + 50).contains(&y) {
                        bgr.extend_from_slice(&[30, 30, 200]);
                    } else {
                        bgr.extend_from_slice(&[(x * 255 / W) as u8, (y * 255 / H) as u8, 128]);
                    }
                }
            }
            let t = t0 + Duration::from_millis(n * 100);
            Frame::from_bgr(n, t, W, H, bgr).unwrap()
        })
        .collect();
    let path = dir.join("camera.mp4");
    encode_clip(&frames, &[], &path, 2000, Duration::from_secs(60)).unwrap();
    path
}

fn violation(before: u64, at: u64, after: u64, at_time: OffsetDateTime) -> Violation {
    Violation {
        track_id: 7,
        rule: ViolationType::RedLight,
        kind: RuleKind::RedLight,
        frame: at,
        at_us: (at_time.unix_timestamp_nanos() / 1000) as i64,
        lane: Some("l1".into()),
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(4200),
        }),
        speed: None,
        frames: EvidenceFrames { before, at, after },
        class: VehicleClass::Car,
        riders: None,
        bbox: BBox::from_xywh(100.0, 110.0, 60.0, 50.0),
    }
}

/// Reads `video` through the capture pipeline into a collector for `site`,
/// registering a violation at frame 30 (before 28, after 32). Returns the
/// job, the frames the analysis saw by number, and the collector.
fn run(video: &Path, site: &str) -> (EvidenceJob, BTreeMap<u64, Frame>, EvidenceCollector) {
    run_at(video, site, 30)
}

fn run_at(
    video: &Path,
    site: &str,
    at: u64,
) -> (EvidenceJob, BTreeMap<u64, Frame>, EvidenceCollector) {
    run_with(video, site, at, &|_| {})
}

/// [`run_at`], each frame (and the coded units that came with it) first
/// passed through `tamper`, as a camera with odd timestamps would send it.
fn run_with(
    video: &Path,
    site: &str,
    at: u64,
    tamper: &dyn Fn(&mut Frame),
) -> (EvidenceJob, BTreeMap<u64, Frame>, EvidenceCollector) {
    let site = Arc::new(SiteConfig::from_toml_str(site, "test.toml").unwrap());
    let config = EvidenceConfig {
        pre: Duration::from_secs(1),
        post: Duration::from_secs(1),
        ..EvidenceConfig::default()
    };
    let mut collector = EvidenceCollector::new(site, config);
    let mut src = FrameSource::open(
        &SourceSpec::File(video.to_path_buf()),
        Pacing::AsFastAsPossible,
        Some((W, H)),
    )
    .unwrap();
    let mut seen = BTreeMap::new();
    let mut ready = Vec::new();
    while let Some(mut f) = src.next_frame(Duration::from_secs(20)).unwrap() {
        assert!(f.packets.is_some(), "an H.264 source carries its packets");
        tamper(&mut f);
        let (n, t) = (f.number, f.time);
        seen.insert(n, f.clone());
        ready.extend(collector.push_frame(f).unwrap());
        if n == at {
            let v = violation(at - 2, at, at + 2, t);
            assert!(
                collector
                    .add_violation(Uuid::new_v4(), &v, &[])
                    .unwrap()
                    .is_none()
            );
        }
    }
    assert_eq!(seen.len() as u64, FRAMES);
    assert_eq!(ready.len(), 1, "one job, released 1 s after the violation");
    (ready.remove(0), seen, collector)
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Every frame of an MP4, decoded by the capture pipeline.
fn clip_frames(path: &Path) -> Vec<Frame> {
    let mut src = FrameSource::open(
        &SourceSpec::File(path.into()),
        Pacing::AsFastAsPossible,
        None,
    )
    .unwrap();
    let mut out = Vec::new();
    while let Some(f) = src.next_frame(Duration::from_secs(20)).unwrap() {
        out.push(f);
    }
    out
}

#[test]
fn the_coded_stream_is_kept_and_decodes_back_to_the_analysed_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let video = recording(dir.path());
    let (mut job, seen, collector) = run(&video, SITE);

    // No decoded frame is held; the coded ring is a fraction of them.
    assert!(collector.ring().is_empty());
    let raw = (W * H * 3) as usize;
    let ring = collector.stream_ring();
    assert!(ring.units() > 0);
    assert!(
        ring.bytes() * 20 < ring.units() * raw,
        "{} coded bytes for {} pictures",
        ring.bytes(),
        ring.units()
    );
    assert!(job.keeps_stream() && job.window_complete());
    for n in [28, 30, 32, 21, 39] {
        assert!(job.holds(n), "frame {n} is in the window");
        assert!(job.frame(n).is_none(), "not decoded before it is asked for");
    }

    // Decoded again on demand: the very pixels the analysis saw.
    job.materialise(&BTreeSet::from([28, 30, 32])).unwrap();
    for n in [28, 30, 32] {
        let f = job.frame(n).unwrap();
        assert_eq!(f.time, seen[&n].time, "frame {n} time");
        assert!(f.data() == seen[&n].data(), "frame {n} pixels differ");
    }

    // The clip is the camera's own pictures, untouched: from the keyframe
    // at or before the window start (frame 20) to the window end (frame 40).
    let spool = tempfile::tempdir().unwrap();
    let set = job.write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    assert_eq!(manifest(&set.dir)["clip_source"], "camera-stream");
    let clip = clip_frames(&set.dir.join("clip.mp4"));
    assert_eq!(clip.len(), 21, "frames 20..=40");
    for (i, n) in [(0, 20), (10, 30), (20, 40)] {
        assert!(
            clip[i].data() == seen[&n].data(),
            "clip frame {i} is not frame {n}"
        );
    }
    let span = (clip[20].time - clip[0].time).as_seconds_f64();
    assert!((span - 2.0).abs() < 0.05, "clip spans {span} s");
}

#[test]
fn a_camera_repeating_a_timestamp_still_gets_each_frames_own_picture() {
    // Frame 30 comes with frame 29's timestamp (and its coded picture with
    // frame 29's PTS and DTS), as some cameras send them.
    let dir = tempfile::tempdir().unwrap();
    let video = recording(dir.path());
    // Times are the stream's clock mapped to the wall clock from the first
    // frame on: frame n is at first + n × 100 ms.
    let first = std::cell::Cell::new(None::<OffsetDateTime>);
    let near = |a: OffsetDateTime, b: OffsetDateTime| (a - b).abs() < Duration::from_millis(5);
    let repeat = |f: &mut Frame| {
        let t0 = *first.get().get_or_insert(f.time);
        first.set(Some(t0));
        let (t29, t30) = (
            t0 + Duration::from_millis(2900),
            t0 + Duration::from_millis(3000),
        );
        if near(f.time, t30) {
            f.time = t29;
        }
        if let Some(p) = f.packets.as_mut() {
            for u in p.units.iter_mut().filter(|u| near(u.time, t30)) {
                u.time = t29;
                let b = u.buffer.make_mut();
                let back = gstreamer::ClockTime::from_mseconds(100);
                let (pts, dts) = (b.pts().unwrap(), b.dts().unwrap());
                b.set_pts(pts - back);
                b.set_dts(dts - back);
            }
        }
    };
    let (mut job, seen, _) = run_with(&video, SITE, 30, &repeat);
    assert_eq!(seen[&30].time, seen[&29].time, "the camera repeated it");
    job.materialise(&BTreeSet::from([28, 29, 30, 32])).unwrap();
    for n in [28, 29, 30, 32] {
        let f = job.frame(n).unwrap_or_else(|| panic!("frame {n} decoded"));
        assert!(f.data() == seen[&n].data(), "frame {n} is another picture");
    }
    // Its clip is decoded and re-encoded (a muxer given two pictures at one
    // time would misplace them), with every picture of the window.
    let spool = tempfile::tempdir().unwrap();
    let set = job.write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    assert_eq!(manifest(&set.dir)["clip_source"], "re-encoded");
    assert_eq!(
        clip_frames(&set.dir.join("clip.mp4")).len(),
        21,
        "frames 20..=40"
    );
}

#[test]
fn a_masked_site_re_encodes_the_kept_stream_with_its_masks() {
    let dir = tempfile::tempdir().unwrap();
    let video = recording(dir.path());
    let (job, seen, _) = run(&video, &format!("{SITE}{MASK}"));
    let spool = tempfile::tempdir().unwrap();
    // Written without an explicit materialise: the stills decode themselves.
    let set = job.write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    assert_eq!(manifest(&set.dir)["clip_source"], "re-encoded");
    let clip = clip_frames(&set.dir.join("clip.mp4"));
    // The window proper (frames 20..=40), not the whole group of pictures.
    assert!((19..=22).contains(&clip.len()), "{} frames", clip.len());
    let at = |f: &Frame, x: usize, y: usize| {
        let m = edge_agent::detect::frame_mat(f).unwrap();
        let (w, i) = (f.width as usize, y * f.width as usize + x);
        let px = m.data_bytes().unwrap();
        assert!(m.is_continuous() && px.len() == w * f.height as usize * 3);
        [px[3 * i], px[3 * i + 1], px[3 * i + 2]]
    };
    let grey_ish = |p: [u8; 3]| p.iter().all(|c| c.abs_diff(p[0]) < 12) && p[0] > 90 && p[0] < 170;
    for f in [&clip[0], &clip[clip.len() - 1]] {
        assert!(grey_ish(at(f, 30, 20)), "mask filled: {:?}", at(f, 30, 20));
    }
    // Outside the mask the picture is the scene (gradient, blue = 128).
    let p = at(&clip[10], 200, 60);
    let q = at(&seen[&30], 200, 60);
    assert!(
        p.iter().zip(q).all(|(a, b)| a.abs_diff(b) < 16),
        "{p:?} vs {q:?}"
    );
    // The stills carry the mask too.
    let still = opencv::imgcodecs::imread(
        set.dir.join("at.jpg").to_string_lossy().into_owned(),
        opencv::imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    let s = *still.at_2d::<opencv::core::Vec3b>(20, 30).unwrap();
    assert!(grey_ish([s[0], s[1], s[2]]), "still mask {s:?}");
}

/// A 6 s, 10 fps H.264 recording with B-frames (decode order differs from
/// presentation order), keyframes every 20 frames.
fn recording_with_b_frames(dir: &Path) -> std::path::PathBuf {
    gstreamer::init().unwrap();
    let path = dir.join("bframes.mp4");
    let launch = format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! \
         video/x-raw,width={W},height={H},framerate=10/1 ! \
         x264enc bframes=2 b-adapt=false key-int-max=20 speed-preset=veryfast ! \
         mp4mux ! filesink location={}",
        path.display()
    );
    let pipeline = gstreamer::parse::launch(&launch).unwrap();
    use gstreamer::prelude::*;
    pipeline.set_state(gstreamer::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gstreamer::ClockTime::from_seconds(60),
            &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
        )
        .unwrap();
    assert!(
        matches!(msg.view(), gstreamer::MessageView::Eos(_)),
        "{msg:?}"
    );
    pipeline.set_state(gstreamer::State::Null).unwrap();
    path
}

#[test]
fn b_frames_and_a_window_between_keyframes_keep_every_picture_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let video = recording_with_b_frames(dir.path());
    // At frame 33: the window starts at frame 23, between keyframes 20 and 40.
    let (mut job, seen, _) = run_at(&video, SITE, 33);
    job.materialise(&BTreeSet::from([31, 33, 35])).unwrap();
    for n in [31, 33, 35] {
        assert!(job.frame(n).unwrap().data() == seen[&n].data(), "frame {n}");
    }
    let spool = tempfile::tempdir().unwrap();
    let set = job.write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    assert_eq!(manifest(&set.dir)["clip_source"], "camera-stream");
    // From keyframe 20 to the window end (frame 43), each picture the one
    // the analysis saw, in presentation order.
    let clip = clip_frames(&set.dir.join("clip.mp4"));
    assert!((24..=26).contains(&clip.len()), "{} frames", clip.len());
    for (i, f) in clip.iter().enumerate().take(24) {
        let n = 20 + i as u64;
        assert!(
            f.data() == seen[&n].data(),
            "clip frame {i} is not frame {n}"
        );
    }
    let times: Vec<_> = clip.iter().map(|f| f.time).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "times increase");
}

#[test]
fn a_violation_whose_picture_can_no_longer_be_decoded_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let video = recording(dir.path());
    let site = Arc::new(SiteConfig::from_toml_str(SITE, "test.toml").unwrap());
    // A ring of 15 units with keyframes every 20: most of the time no
    // keyframe at all is held, and never one before frame 30's picture
    // once frame 45 is in.
    let config = EvidenceConfig {
        pre: Duration::from_secs(1),
        post: Duration::from_secs(1),
        stream_ring: edge_agent::evidence::RingLimits {
            max_age: Duration::from_secs(7),
            max_frames: 15,
            max_bytes: 64 << 20,
        },
        ..EvidenceConfig::default()
    };
    let mut collector = EvidenceCollector::new(site, config);
    let mut src = FrameSource::open(
        &SourceSpec::File(video),
        Pacing::AsFastAsPossible,
        Some((W, H)),
    )
    .unwrap();
    let mut t30 = None;
    while let Some(f) = src.next_frame(Duration::from_secs(20)).unwrap() {
        if f.number == 30 {
            t30 = Some(f.time);
        }
        let n = f.number;
        collector.push_frame(f).unwrap();
        if n == 45 {
            break;
        }
    }
    let err = collector
        .add_violation(Uuid::new_v4(), &violation(28, 30, 32, t30.unwrap()), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            edge_agent::evidence::EvidenceError::FrameGone { frame: 30, .. }
        ),
        "{err}"
    );
}

/// With `analysis_fps` 5 on this 10 fps camera the capture converts and
/// hands on every other picture only, while every coded picture still
/// reaches the evidence: the handed-on frames are the camera's pictures 0,
/// 2, 4, …; stills of them decode to their pixels; the clip holds all the
/// camera's pictures of its window, not every other one.
#[test]
fn a_paced_capture_hands_on_the_analysed_pictures_and_keeps_every_coded_one() {
    let dir = tempfile::tempdir().unwrap();
    let video = recording(dir.path());
    let all = clip_frames(&video);
    assert_eq!(all.len() as u64, FRAMES);
    let site = Arc::new(SiteConfig::from_toml_str(SITE, "test.toml").unwrap());
    let config = EvidenceConfig {
        pre: Duration::from_secs(1),
        post: Duration::from_secs(1),
        ..EvidenceConfig::default()
    };
    let mut collector = EvidenceCollector::new(site, config);
    let mut src = FrameSource::open_paced(
        &SourceSpec::File(video.clone()),
        Pacing::AsFastAsPossible,
        Some((W, H)),
        Some(5.0),
    )
    .unwrap();
    let (mut seen, mut unit_times, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(f) = src.next_frame(Duration::from_secs(20)).unwrap() {
        let packets = f
            .packets
            .as_ref()
            .expect("an H.264 source carries its packets");
        unit_times.extend(packets.units.iter().map(|u| u.time));
        let (n, t) = (f.number, f.time);
        seen.push(f.clone());
        ready.extend(collector.push_frame(f).unwrap());
        if n == 15 {
            let v = violation(14, 15, 16, t);
            assert!(
                collector
                    .add_violation(Uuid::new_v4(), &v, &[])
                    .unwrap()
                    .is_none()
            );
        }
    }
    assert_eq!(seen.len() as u64, FRAMES / 2, "every other picture");
    for (k, f) in seen.iter().enumerate() {
        assert!(
            f.data() == all[2 * k].data(),
            "frame {k} is not picture {}",
            2 * k
        );
        let ms = (f.time - seen[0].time).whole_milliseconds();
        assert!((ms - 200 * k as i128).abs() <= 2, "frame {k} at {ms} ms");
    }
    // Every coded picture up to the last handed-on frame came along.
    let last = seen[seen.len() - 1].time;
    let span = (last - unit_times[0]).as_seconds_f64();
    let expected = (span * 10.0).round() as usize + 1;
    assert_eq!(unit_times.iter().filter(|t| **t <= last).count(), expected);

    assert_eq!(ready.len(), 1, "one job, released 1 s after the violation");
    let mut job = ready.remove(0);
    job.materialise(&BTreeSet::from([14, 15, 16])).unwrap();
    for n in [14u64, 15, 16] {
        let f = job.frame(n).unwrap();
        assert!(
            f.data() == seen[n as usize].data(),
            "frame {n} pixels differ"
        );
    }
    let spool = tempfile::tempdir().unwrap();
    let set = job.write(spool.path()).unwrap();
    assert!(set.missing.is_empty(), "{:?}", set.missing);
    assert_eq!(manifest(&set.dir)["clip_source"], "camera-stream");
    let clip = clip_frames(&set.dir.join("clip.mp4"));
    assert_eq!(clip.len(), 21, "every picture of 2.0-4.0 s");
}
