//! The simulator against a real RTSP client (GStreamer's rtspsrc): a
//! one-second recording is served for longer than it lasts (it loops), with
//! timestamps that only go forward, and the stream goes away when the
//! simulator stops.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// A 1-second, 10 fps test recording made with GStreamer itself.
fn recording(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("one-second.mp4");
    let status = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "num-buffers=10",
            "pattern=ball",
            "!",
            "video/x-raw,width=320,height=240,framerate=10/1",
            "!",
            "x264enc",
            "!",
            "mp4mux",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", out.display()))
        .status()
        .expect("gst-launch-1.0 (gstreamer1.0-tools, installed by make setup)");
    assert!(status.success());
    out
}

#[test]
fn serves_a_recording_as_an_endless_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path());
    let sim = camera_sim::start(&camera_sim::SimConfig {
        file,
        address: "127.0.0.1".into(),
        port: 0,
        mount: "/cam1".into(),
    })
    .unwrap();
    assert!(sim.url.starts_with("rtsp://127.0.0.1:") && sim.url.ends_with("/cam1"));

    gst::init().unwrap();
    let client = gst::parse::launch(&format!(
        "rtspsrc location={} protocols=tcp latency=0 ! decodebin ! videoconvert ! appsink name=sink sync=false",
        sim.url
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = client
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    client.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    let mut frames = 0;
    let mut last_pts = None;
    // Three seconds of a one-second file: it must loop.
    while start.elapsed() < Duration::from_secs(3) {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) else {
            panic!("no frame within 5 s after {frames} frames");
        };
        let pts = sample.buffer().unwrap().pts().unwrap();
        if let Some(prev) = last_pts {
            assert!(pts >= prev, "timestamps never go back: {prev} then {pts}");
        }
        last_pts = Some(pts);
        frames += 1;
    }
    assert!(
        frames >= 20,
        "looped: {frames} frames in 3 s of a 10-frame file"
    );
    let span = last_pts.unwrap().nseconds();
    assert!(
        span > 1_500_000_000,
        "the clock ran on past the file's one second: {span} ns"
    );
    client.set_state(gst::State::Null).unwrap();

    // A file that is not there is a clear error.
    let err = camera_sim::start(&camera_sim::SimConfig {
        file: dir.path().join("missing.mp4"),
        address: "127.0.0.1".into(),
        port: 0,
        mount: "/x".into(),
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("does not exist"), "{err}");
    sim.stop();
}
