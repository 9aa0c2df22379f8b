//! Latency of the plate reader, one thread and two threads:
//! - `plate/…`: rectify + read one detected plate (PP-OCRv4, restricted
//!   decoding + grammar), and read one crop of each kind;
//! - `image/…`: detect (y5fu) + rectify + read on whole frames.
//!
//! Inputs come from `../../shared/data` (the bench fails without it). Each
//! benchmark also prints the median of its per-iteration times; with two
//! threads, each iteration is one item per thread done concurrently, so the
//! median is the wall time for two items.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use opencv::core::{Mat, MatTraitConst};
use plate_ocr::detect::{Detection, PlateDetector, Y5fuDetector, Y5fuSize};
use plate_ocr::eval::load_labels;
use plate_ocr::image_file::{ImageLimits, load_bgr};
use plate_ocr::pipeline::{Pipeline, PipelineConfig};
use plate_ocr::recognize::PpOcrRecognizer;
use plate_ocr::runtime::SessionConfig;

fn data() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    assert!(d.is_dir(), "bench data not found at {}", d.display());
    d
}

fn pipeline(size: Option<Y5fuSize>) -> Pipeline {
    let cfg = SessionConfig::default();
    let det: Option<Box<dyn PlateDetector>> = size.map(|s| {
        Box::new(Y5fuDetector::load(s, cfg).expect("y5fu resolves")) as Box<dyn PlateDetector>
    });
    let rec = PpOcrRecognizer::load(cfg).expect("ppocr_v4_rec resolves");
    Pipeline::new(det, Box::new(rec), PipelineConfig::default())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs `work` per iteration on `threads` pipelines at once, printing the median.
fn bench_threads<T: Send + Sync + 'static>(
    c: &mut Criterion,
    name: &str,
    threads: usize,
    make: impl Fn() -> Pipeline,
    input: Arc<T>,
    work: fn(&Pipeline, &T),
) {
    let pipes: Vec<Arc<Pipeline>> = (0..threads).map(|_| Arc::new(make())).collect();
    let mut samples: Vec<Duration> = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let t0 = Instant::now();
                if threads == 1 {
                    work(&pipes[0], &input);
                } else {
                    std::thread::scope(|s| {
                        for p in &pipes {
                            let input = Arc::clone(&input);
                            s.spawn(move || work(p, &input));
                        }
                    });
                }
                samples.push(t0.elapsed());
            }
            start.elapsed()
        })
    });
    println!(
        "MEDIAN {name}: {:.2} ms",
        median(samples).as_secs_f64() * 1000.0
    );
}

/// A one-line and a two-line crop from the machine-labelled set.
fn crops() -> (Mat, Mat) {
    let dir = data().join("vn_crops_machine_labelled");
    let labels = load_labels(&dir).expect("labels");
    let one = labels
        .iter()
        .find(|l| l.lines == Some(1))
        .expect("a one-line crop");
    let two = labels
        .iter()
        .find(|l| l.lines == Some(2))
        .expect("a two-line crop");
    let lim = ImageLimits::default();
    (
        load_bgr(&one.image, &lim).expect("image"),
        load_bgr(&two.image, &lim).expect("image"),
    )
}

/// Frames with at least one detected plate, and one detection of the first.
fn frames() -> (Vec<Mat>, Mat, Detection) {
    let det = Y5fuDetector::load(Y5fuSize::S640, SessionConfig::default()).expect("y5fu_640");
    let mut out = Vec::new();
    for sub in ["vn_scenes", "openalpr_eu"] {
        let mut files: Vec<_> = std::fs::read_dir(data().join(sub))
            .expect("listing frames")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
            .collect();
        files.sort();
        for f in files {
            let img = load_bgr(&f, &ImageLimits::default()).expect("frame");
            if !det.detect(&img).expect("detect").is_empty() {
                out.push(img);
            }
            if out.len() >= 4 {
                break;
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    assert!(!out.is_empty(), "no frame with a detected plate");
    let first = out[0].try_clone().expect("clone");
    let d = det.detect(&first).expect("detect").remove(0);
    (out, first, d)
}

fn benches(c: &mut Criterion) {
    let (one, two) = crops();
    let (frames, frame, detection) = frames();
    println!(
        "inputs: one-line crop {}x{}, two-line crop {}x{}, {} frames ({}x{} first)",
        one.cols(),
        one.rows(),
        two.cols(),
        two.rows(),
        frames.len(),
        frame.cols(),
        frame.rows()
    );
    for threads in [1, 2] {
        let crop1 = Arc::new(one.try_clone().expect("clone"));
        bench_threads(
            c,
            &format!("plate/read_one_line_crop/{threads}t"),
            threads,
            || pipeline(None),
            crop1,
            |p, m| {
                let _ = p.read_crop(m, None);
            },
        );
        let crop2 = Arc::new(two.try_clone().expect("clone"));
        bench_threads(
            c,
            &format!("plate/read_two_line_crop/{threads}t"),
            threads,
            || pipeline(None),
            crop2,
            |p, m| {
                let _ = p.read_crop(m, None);
            },
        );
        let det = Arc::new((frame.try_clone().expect("clone"), detection.clone()));
        bench_threads(
            c,
            &format!("plate/rectify_read/{threads}t"),
            threads,
            || pipeline(None),
            det,
            |p, (m, d)| {
                let _ = p.read_detection(m, d);
            },
        );
        let fr = Arc::new(
            frames
                .iter()
                .map(|f| f.try_clone().expect("clone"))
                .collect::<Vec<_>>(),
        );
        for (size, label) in [(Y5fuSize::S320, "y5fu320"), (Y5fuSize::S640, "y5fu640")] {
            bench_threads(
                c,
                &format!("image/detect_rectify_read_{label}/{threads}t"),
                threads,
                || pipeline(Some(size)),
                Arc::clone(&fr),
                |p, frames| {
                    let _ = p.read_image(&frames[0]);
                },
            );
        }
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(group);
