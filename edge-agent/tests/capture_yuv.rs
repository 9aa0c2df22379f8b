//! The decoder's YUV pictures, converted by our code only where the
//! analysis looks, against GStreamer's own conversion of the whole picture:
//! the detector's tile, the still, the static gate's thumbnail and the
//! signal lamps must see the colours they saw when every frame was
//! converted to BGR by `videoconvert`.

use edge_agent::capture::{Frame, FrameSource, Pacing, PixelLayout, SourceSpec};
use edge_agent::detect::{YuvScratch, frame_mat, grey_thumbnail, region_bgr};
use edge_agent::signal::{FrameView, LampConfig, PixelFormat, read_lamps};
use edge_agent::site::{FrameSize, LampRegions, Rect as SiteRect};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use opencv::core::{Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;
use protocol::SignalState;
use std::path::Path;
use std::time::Duration;

/// An H.264 recording of SMPTE colour bars (saturated primaries, white,
/// black, grey steps) at `w` × `h`: HD sizes are BT.709, SD BT.601.
fn bars(dir: &Path, w: u32, h: u32, encoder: &str) -> std::path::PathBuf {
    gst::init().unwrap();
    let path = dir.join(format!("bars-{w}x{h}.mp4"));
    let line = format!(
        "videotestsrc num-buffers=3 pattern=smpte ! video/x-raw,width={w},height={h},framerate=10/1 \
         ! {encoder} ! h264parse ! mp4mux ! filesink location={}",
        path.display()
    );
    let p = gst::parse::launch(&line).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
    path
}

/// The first picture of `path` through our capture (the decoder's layout).
fn ours(path: &Path) -> Frame {
    let spec = SourceSpec::File(path.into());
    let mut src = FrameSource::open(&spec, Pacing::AsFastAsPossible, None).unwrap();
    let f = src.next_frame(Duration::from_secs(20)).unwrap().unwrap();
    assert!(matches!(f.layout, PixelLayout::Yuv420(_)), "{:?}", f.layout);
    f
}

/// The first picture of `path` converted to BGR by GStreamer.
fn theirs(path: &Path, w: u32, h: u32) -> Mat {
    let line = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink name=s",
        path.display()
    );
    let p = gst::parse::launch(&line)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = p
        .by_name("s")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(20))
        .unwrap();
    let info = gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let map = sample.buffer().unwrap().map_readable().unwrap();
    let stride = info.stride()[0] as usize;
    let mut bgr = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h as usize {
        bgr.extend_from_slice(&map[y * stride..y * stride + 3 * w as usize]);
    }
    drop(map);
    p.set_state(gst::State::Null).unwrap();
    Mat::from_slice(&bgr)
        .unwrap()
        .reshape(3, h as i32)
        .unwrap()
        .try_clone()
        .unwrap()
}

/// Mean and 95th percentile of the absolute channel differences (the
/// last few percent are the pixels at the bars' colour edges, where the
/// two converters interpolate the half-resolution chroma differently).
fn difference(a: &Mat, b: &Mat) -> (f64, u8) {
    assert_eq!((a.rows(), a.cols(), a.typ()), (b.rows(), b.cols(), b.typ()));
    let (a, b) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (a, b) = (a.data_bytes().unwrap(), b.data_bytes().unwrap());
    let mut d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
    let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64;
    d.sort_unstable();
    (mean, d[d.len() * 95 / 100])
}

fn compare(w: u32, h: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = bars(dir.path(), w, h, "x264enc speed-preset=ultrafast qp-max=10");
    let f = ours(&path);
    let reference = theirs(&path, w, h);

    // The whole picture (stills, plate crops).
    let whole = frame_mat(&f).unwrap().try_clone().unwrap();
    let (mean, p95) = difference(&whole, &reference);
    assert!(
        mean < 1.5 && p95 <= 3,
        "{w}x{h} whole: mean {mean}, p95 {p95}"
    );

    // A detector tile, scaled.
    let tile = Rect::new(w as i32 / 3, 0, w as i32 / 2, h as i32);
    let size = Size::new(208, (208 * h / (w / 2)) as i32);
    let mut got = Mat::default();
    region_bgr(&f, tile, size, &mut got, &mut YuvScratch::default()).unwrap();
    let mut want = Mat::default();
    let roi = Mat::roi(&reference, tile).unwrap();
    imgproc::resize(&roi, &mut want, size, 0.0, 0.0, imgproc::INTER_LINEAR).unwrap();
    let (mean, p95) = difference(&got, &want);
    assert!(
        mean < 2.0 && p95 <= 4,
        "{w}x{h} tile: mean {mean}, p95 {p95}"
    );

    // The static gate's grey thumbnail: the picture's own luma (BT.709's
    // weights for HD, not a BT.601 grey conversion's).
    let size = Size::new(w.div_ceil(24) as i32, h.div_ceil(24) as i32);
    let (mut grey, mut scratch) = (Mat::default(), Mat::default());
    grey_thumbnail(&f, size, &mut grey, &mut scratch).unwrap();
    let (mut small, mut want) = (Mat::default(), Mat::default());
    imgproc::resize(&reference, &mut small, size, 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    let PixelLayout::Yuv420(yuv) = f.layout else {
        unreachable!("checked by ours()")
    };
    let (kr, kb) = (yuv.matrix.kr, yuv.matrix.kb);
    let luma = Mat::from_slice_2d(&[[kb, 1.0 - kr - kb, kr]]).unwrap();
    opencv::core::transform(&small, &mut want, &luma).unwrap();
    // The bars proper: the bottom rows hold colours outside RGB (-I, +Q
    // at black's luma), whose clipped BGR has another luma than the
    // picture's own.
    let bars = Rect::new(0, 0, size.width, size.height * 3 / 5);
    let (grey, want) = (
        Mat::roi(&grey, bars).unwrap(),
        Mat::roi(&want, bars).unwrap(),
    );
    let (mean, p95) = difference(&grey.try_clone().unwrap(), &want.try_clone().unwrap());
    assert!(
        mean < 1.5 && p95 <= 3,
        "{w}x{h} grey: mean {mean}, p95 {p95}"
    );

    // Signal lamps read on the bars (SMPTE's top row: grey, yellow, cyan,
    // green, magenta, red, blue): the same lamp is lit whatever the layout
    // the reader is handed.
    let bar = |i: u32| {
        let bw = w / 7;
        SiteRect {
            x: i * bw + bw / 4,
            y: h / 8,
            w: bw / 2,
            h: h / 8,
        }
    };
    let yuv_view = FrameView {
        data: f.data(),
        width: w,
        height: h,
        stride: yuv.y.stride,
        format: PixelFormat::Yuv420(yuv),
    };
    let bgr = reference.data_bytes().unwrap();
    let bgr_view = FrameView {
        data: bgr,
        width: w,
        height: h,
        stride: 3 * w as usize,
        format: PixelFormat::Bgr8,
    };
    let size = FrameSize {
        width: w,
        height: h,
    };
    let cfg = LampConfig::default();
    for ([red, yellow, green], want) in [
        ([5, 0, 6], SignalState::Red),
        ([6, 1, 4], SignalState::Yellow),
        ([0, 0, 3], SignalState::Green),
    ] {
        let lamps = LampRegions {
            red: bar(red),
            yellow: bar(yellow),
            green: bar(green),
        };
        for view in [&yuv_view, &bgr_view] {
            let got = read_lamps(view, &lamps, size, &cfg);
            assert_eq!(got.state, want, "{w}x{h} {:?}: {got:?}", view.format);
        }
    }
}

#[test]
fn an_hd_picture_converts_like_gstreamer_bt709() {
    compare(1280, 720);
}

#[test]
fn an_sd_picture_converts_like_gstreamer_bt601() {
    compare(640, 480);
}
