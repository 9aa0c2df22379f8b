//! A live camera whose stream ends (an HTTP MJPEG camera or proxy closing
//! the connection; an RTSP camera's BYE as it reboots reaches the capture
//! the same way, as end-of-stream) is a drop, not the end of a recording:
//! the camera reconnects with its backoff, counts it, and streams again.

use edge_agent::capture::{Camera, CameraState, Pacing, RetryPolicy, SourceSpec};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `n` JPEG pictures of 160x120 from `videotestsrc`.
fn jpegs(n: usize) -> Vec<Vec<u8>> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={n} pattern=ball ! video/x-raw,width=160,height=120 ! \
         jpegenc ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().unwrap().map_readable().unwrap();
        out.push(buffer.as_slice().to_vec());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(out.len(), n);
    out
}

/// An MJPEG camera on a loopback port (`multipart/x-mixed-replace`, 25
/// parts a second). Its first connection gets 20 pictures and is closed,
/// as a camera or proxy does; later ones stream until `stop`. Returns the
/// port and the count of connections served.
fn mjpeg_camera(stop: Arc<AtomicBool>) -> (u16, Arc<AtomicUsize>) {
    let pictures = jpegs(20);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let connection = count.fetch_add(1, Ordering::SeqCst);
            let stop = stop.clone();
            let pictures = pictures.clone();
            std::thread::spawn(move || {
                // The request, up to its empty line.
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\
                     Cache-Control: no-cache\r\n\r\n"
                );
                let parts = if connection == 0 { 20 } else { usize::MAX };
                for n in 0..parts {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let jpeg = &pictures[n % pictures.len()];
                    let head = format!(
                        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    );
                    let sent = conn
                        .write_all(head.as_bytes())
                        .and_then(|()| conn.write_all(jpeg))
                        .and_then(|()| conn.write_all(b"\r\n"));
                    if sent.is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(40));
                }
                // Dropping the connection closes it: end-of-stream.
            });
        }
    });
    (port, served)
}

#[test]
fn a_live_camera_whose_stream_ends_reconnects_and_streams_again() {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, served) = mjpeg_camera(stop.clone());
    let spec = SourceSpec::parse(&format!("http://127.0.0.1:{port}/video.mjpg")).unwrap();
    let retry = RetryPolicy {
        // Long enough that the stalled state is seen between the two.
        initial: Duration::from_millis(500),
        max: Duration::from_secs(2),
        max_attempts: None,
        frame_timeout: Duration::from_secs(5),
    };
    let (cam, frames) = Camera::start("cam-mjpeg", spec, Pacing::RealTime, None, None, retry, 64);
    // The analysis: takes every frame.
    let taken = std::thread::spawn(move || frames.iter().count());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut states = Vec::new();
    let s = loop {
        let s = cam.status();
        if states.last() != Some(&s.state) {
            states.push(s.state);
        }
        if s.reconnects >= 1 && s.state == CameraState::Streaming && s.frames >= 30 {
            break s;
        }
        assert!(
            s.state != CameraState::Finished && s.state != CameraState::Failed,
            "a live camera never ends: {s:?}"
        );
        assert!(
            Instant::now() < deadline,
            "camera never streamed again: {s:?}, states {states:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(served.load(Ordering::SeqCst) >= 2, "it connected again");
    let error = s.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("end-of-stream") && error.contains("127.0.0.1"),
        "the drop is named: {error}"
    );
    // The first connection's pictures all came, then the second's.
    assert!(s.frames > 20, "{s:?}");
    // Streaming, then stalled while waiting to retry, then streaming again.
    let stalled = states.iter().position(|s| *s == CameraState::Stalled);
    assert!(
        stalled.is_some_and(|i| states[..i].contains(&CameraState::Streaming)),
        "{states:?}"
    );
    cam.stop();
    stop.store(true, Ordering::SeqCst);
    assert!(taken.join().unwrap() >= 30);
}
