//! The simulator against a real RTSP client (GStreamer's rtspsrc): a
//! one-second recording is served for longer than it lasts (it loops), with
//! timestamps that only go forward, and the stream goes away when the
//! simulator stops.

use std::path::Path;
use std::process::Command;

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
    // Read until the stream has outlasted its ten-frame, one-second file
    // (more frames than it has, timestamps spanning more than its second):
    // it must loop. Counted in frames and timestamps, not in time waited; a
    // stream that stops fails the 5 s pull, and one whose timestamps stall
    // ends at `MAX_FRAMES` and fails the span.
    const WANT_FRAMES: u32 = 25;
    const WANT_SPAN_NS: u64 = 1_500_000_000;
    const MAX_FRAMES: u32 = 300;
    let mut frames = 0;
    let mut first_pts = None;
    let mut last_pts = None;
    let span = |first: Option<gst::ClockTime>, last: Option<gst::ClockTime>| match (first, last) {
        (Some(f), Some(l)) => l.nseconds().saturating_sub(f.nseconds()),
        _ => 0,
    };
    while frames < MAX_FRAMES && (frames < WANT_FRAMES || span(first_pts, last_pts) <= WANT_SPAN_NS)
    {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) else {
            panic!("no frame within 5 s after {frames} frames");
        };
        let pts = sample.buffer().unwrap().pts().unwrap();
        if let Some(prev) = last_pts {
            assert!(pts >= prev, "timestamps never go back: {prev} then {pts}");
        }
        first_pts.get_or_insert(pts);
        last_pts = Some(pts);
        frames += 1;
    }
    assert!(
        frames >= WANT_FRAMES,
        "looped: {frames} frames of a 10-frame file"
    );
    let span = span(first_pts, last_pts);
    assert!(
        span > WANT_SPAN_NS,
        "the clock ran on past the file's one second: {span} ns over {frames} frames"
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
