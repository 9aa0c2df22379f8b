//! Reading real plate crops and images with the real models: the crop
//! reader against person-checked labels, rectification and line splitting on
//! synthetic plates, and detection on the openalpr images.
#![cfg(feature = "vision")]

mod support;

use opencv::core::{Mat, MatTraitConst, Point2f, Scalar, Size, Vector};
use opencv::imgproc;
use plate_ocr::detect::{PlateDetector, Y5fuDetector, Y5fuSize};
use plate_ocr::eval::{evaluate_crops, evaluate_detection, load_labels};
use plate_ocr::image_file::ImageLimits;
use plate_ocr::pipeline::{Pipeline, PipelineConfig, ReadMode};
use plate_ocr::recognize::{PpOcrRecognizer, Recognizer, split_lines};
use plate_ocr::rectify::{RectifyConfig, rectify};
use plate_ocr::runtime::SessionConfig;

fn ppocr() -> PpOcrRecognizer {
    PpOcrRecognizer::load(SessionConfig::default())
        .expect("ppocr_v4_rec resolves (run `make models`)")
}

#[test]
fn dictionary_comes_from_model_metadata() {
    let r = ppocr();
    assert_eq!(r.classes(), 6625, "blank + 6623 dictionary entries + space");
}

#[test]
fn named_car_crops_are_read_with_the_grammar() {
    let dir = support::data_dir().join("vn_crops_named");
    let p = Pipeline::new(None, Box::new(ppocr()), PipelineConfig::default());
    let report = evaluate_crops(&p, &dir).expect("evaluating vn_crops_named");
    assert_eq!(report.failed, 0);
    assert!(report.exact + 1 >= report.total, "{}", report.summary());
    // A valid read carries per-character confidences and alternatives for fusion.
    let labels = load_labels(&dir).expect("labels");
    let img =
        plate_ocr::image_file::load_bgr(&labels[0].image, &ImageLimits::default()).expect("image");
    let read = p.read_crop(&img, None).expect("read");
    assert_eq!(read.text.as_deref(), Some(labels[0].text.as_str()));
    assert!(read.valid && !read.unreadable && read.display.is_some());
    assert!(read.confidence > 0.0 && read.confidence <= 1.0);
    assert_eq!(read.chars.len(), labels[0].text.chars().count());
    assert!(
        read.chars
            .iter()
            .all(|c| !c.alternatives.is_empty() && c.prob > 0.0)
    );
    let fused = read.fuse_read().expect("a fuse read");
    assert_eq!(fused.char_conf.len(), fused.text.chars().count());
    assert_eq!(read.near_miss, None);
    // Under a threshold nothing reaches, the plate is not answered, but
    // what it nearly read is kept for fusion to weigh.
    let strict = Pipeline::new(
        None,
        Box::new(ppocr()),
        PipelineConfig {
            min_confidence: 1.01,
            ..PipelineConfig::default()
        },
    );
    let unsure = strict.read_crop(&img, None).expect("read");
    assert!(unsure.unreadable && unsure.text.is_none());
    assert_eq!(unsure.near_miss.as_deref(), Some(labels[0].text.as_str()));
}

#[test]
fn grammar_reads_valid_plates_and_answers_wrong_less_often_than_raw() {
    // A sample of the larger set (every 8th crop whose label is a valid
    // Vietnamese plate; the set also holds foreign plates). Labels were made by
    // a program and some are wrong, so the bounds leave room for that.
    let dir = support::data_dir().join("vn_crops_machine_labelled");
    let grammar_rules = plate_ocr::plate::PlateGrammar::builtin();
    let labels = load_labels(&dir).expect("labels");
    let sample: Vec<_> = labels
        .iter()
        .filter(|l| grammar_rules.is_valid(&l.text))
        .step_by(8)
        .collect();
    assert!(
        sample.len() >= 100,
        "only {} valid labels sampled",
        sample.len()
    );
    let grammar = Pipeline::new(None, Box::new(ppocr()), PipelineConfig::default());
    let raw = Pipeline::new(
        None,
        Box::new(ppocr()),
        PipelineConfig {
            mode: ReadMode::Raw,
            ..PipelineConfig::default()
        },
    );
    let (mut g_ok, mut g_answered, mut r_ok, mut r_answered) = (0, 0, 0, 0);
    for l in &sample {
        let img =
            plate_ocr::image_file::load_bgr(&l.image, &ImageLimits::default()).expect("image");
        let g = grammar.read_crop(&img, None).expect("grammar read");
        let r = raw.read_crop(&img, None).expect("raw read");
        g_answered += usize::from(g.text.is_some());
        r_answered += usize::from(r.text.is_some());
        g_ok += usize::from(g.text.as_deref() == Some(l.text.as_str()));
        r_ok += usize::from(r.text.as_deref() == Some(l.text.as_str()));
        if let Some(t) = &g.text {
            assert!(
                grammar_rules.is_valid(t),
                "grammar answered an invalid plate {t}"
            );
            assert!(g.confidence >= PipelineConfig::default().min_confidence);
        }
    }
    let n = sample.len();
    assert!(g_ok * 100 >= n * 80, "grammar read only {g_ok} of {n}");
    let g_wrong = (g_answered - g_ok) as f64 / g_answered.max(1) as f64;
    let r_wrong = (r_answered - r_ok) as f64 / r_answered.max(1) as f64;
    assert!(
        g_wrong < r_wrong,
        "wrong among answered: grammar {g_wrong:.3}, raw {r_wrong:.3}"
    );
}

fn synthetic_plate(two_lines: bool) -> Mat {
    let white = (235.0, 235.0, 235.0);
    let ink = (20.0, 20.0, 20.0);
    if two_lines {
        let mut m = support::filled(190, 140, white);
        support::text(&mut m, "29-B1", 30, 55, 1.4, ink);
        support::text(&mut m, "123.45", 18, 120, 1.4, ink);
        m
    } else {
        let mut m = support::filled(470, 100, white);
        support::text(&mut m, "30A-123.45", 20, 70, 2.0, ink);
        m
    }
}

#[test]
fn two_line_split_falls_between_the_lines() {
    let plate = synthetic_plate(true);
    let s = split_lines(&plate).expect("split");
    // Text rows: first line about 25–55, second about 90–120.
    assert!((56..=90).contains(&s.row), "split at {}", s.row);
    assert!(s.top.height > 40 && s.bottom.height > 40);
    assert!(split_lines(&Mat::default()).is_err());
}

#[test]
fn rectify_undoes_a_perspective_view() {
    let plate = synthetic_plate(false);
    // Put the plate into a larger scene, seen at an angle.
    let src: Vector<Point2f> = [(0.0, 0.0), (469.0, 0.0), (469.0, 99.0), (0.0, 99.0)]
        .iter()
        .map(|&(x, y)| Point2f::new(x, y))
        .collect();
    let corners = [
        [100.0f32, 80.0],
        [520.0, 120.0],
        [515.0, 215.0],
        [95.0, 170.0],
    ];
    let dst: Vector<Point2f> = corners.iter().map(|p| Point2f::new(p[0], p[1])).collect();
    let m =
        imgproc::get_perspective_transform(&src, &dst, opencv::core::DECOMP_LU).expect("transform");
    let mut scene = Mat::default();
    imgproc::warp_perspective(
        &plate,
        &mut scene,
        &m,
        Size::new(640, 320),
        imgproc::INTER_LINEAR,
        opencv::core::BORDER_CONSTANT,
        Scalar::all(90.0),
    )
    .expect("warp");
    let cfg = RectifyConfig::default();
    let up = rectify(&scene, &corners, 1, &cfg).expect("rectify");
    assert_eq!(up.rows(), cfg.line_height);
    let aspect = up.cols() as f32 / up.rows() as f32;
    assert!((3.0..=6.0).contains(&aspect), "aspect {aspect}");
    // The rectified plate is read as the plate drawn.
    let rec = ppocr();
    let read = rec.read(&up, Some(1)).expect("read");
    assert_eq!(
        plate_ocr::plate::canonicalize(&read.text()),
        "30A12345",
        "read {:?}",
        read.text()
    );
    let two = rectify(&scene, &corners, 2, &cfg).expect("rectify two-line");
    assert_eq!(two.rows(), 2 * cfg.line_height);
    assert!(rectify(&scene, &[[f32::NAN, 0.0]; 4], 1, &cfg).is_err());
    assert!(rectify(&scene, &[[5.0, 5.0]; 4], 1, &cfg).is_err());
}

#[test]
fn y5fu_finds_most_openalpr_plates() {
    let det =
        Y5fuDetector::load(Y5fuSize::S320, SessionConfig::default()).expect("y5fu_320 resolves");
    let report = evaluate_detection(
        &det,
        &support::data_dir().join("openalpr_eu"),
        &ImageLimits::default(),
        0.5,
    )
    .expect("detection eval");
    assert!(report.plates >= 100, "{}", report.summary());
    assert!(report.recall >= 0.9, "{}", report.summary());
    assert_eq!(report.failed, 0);
    // Detections carry ordered corners inside their box (with slack).
    let dir = support::data_dir().join("openalpr_eu");
    let mut jpgs: Vec<_> = std::fs::read_dir(&dir)
        .expect("listing openalpr_eu")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    jpgs.sort();
    let img = plate_ocr::image_file::load_bgr(&jpgs[0], &ImageLimits::default()).expect("image");
    let dets = det.detect(&img).expect("detect");
    assert!(
        !dets.is_empty(),
        "a plate is found on {}",
        jpgs[0].display()
    );
    for d in dets {
        let [x, y, w, h] = d.bbox;
        for c in d.corners {
            assert!(
                c[0] >= x - 0.2 * w
                    && c[0] <= x + 1.2 * w
                    && c[1] >= y - 0.5 * h
                    && c[1] <= y + 1.5 * h
            );
        }
        assert!(d.corners[0][0] < d.corners[1][0] && d.corners[3][1] > d.corners[0][1]);
    }
}

#[test]
fn cross_check_keeps_agreements_and_discounts_conflicts() {
    use plate_ocr::crosscheck::CrossCheck;
    use plate_ocr::recognize::SlotRecognizer;
    let dir = support::data_dir().join("vn_crops_named");
    let single = Pipeline::new(None, Box::new(ppocr()), PipelineConfig::default());
    let checked = Pipeline::new(None, Box::new(ppocr()), PipelineConfig::default())
        .with_cross_check(
            Box::new(SlotRecognizer::load(SessionConfig::default()).expect("vn_plate_rec")),
            CrossCheck::default(),
        );
    let (mut agreed, mut right) = (0, 0);
    for l in load_labels(&dir).expect("labels") {
        let img = plate_ocr::image_file::load_bgr(&l.image, &ImageLimits::default()).expect("img");
        let a = single.read_crop(&img, None).expect("single read");
        let b = checked.read_crop(&img, None).expect("checked read");
        assert_eq!(
            a.raw, b.raw,
            "the first recogniser reads the same either way"
        );
        if b.text.is_some() && b.text == b.second_opinion && b.text == a.text {
            agreed += 1;
            assert!(
                b.confidence >= a.confidence,
                "agreement never lowers confidence"
            );
        } else if let (Some(first), Some(second)) = (&a.text, &b.second_opinion)
            && first != second
            && b.text.as_ref() == Some(first)
        {
            assert!(
                b.confidence <= a.confidence + 1e-6,
                "a dissenting second reader never raises confidence"
            );
        }
        right += usize::from(b.text.as_deref() == Some(l.text.as_str()));
    }
    assert!(
        agreed >= 3,
        "the two readers agree on most clean crops ({agreed} of 6)"
    );
    assert!(right >= 3, "{right} of 6 right");
}

/// Three views of each crop keep the text of the crop as given, and on the
/// small real crops they must lower the confidence of a good share of the
/// reads (the point of the views: a read that depends on the framing loses
/// confidence), never raising a read the views disagree on.
#[test]
fn three_views_keep_the_text_and_lower_framing_dependent_reads() {
    use plate_ocr::recognize::SlotRecognizer;
    let one = SlotRecognizer::load(SessionConfig::default()).expect("vn_plate_rec");
    let three = SlotRecognizer::load(SessionConfig::default())
        .expect("vn_plate_rec")
        .with_views(3);
    let dir = support::data_dir().join("vn_crops_small");
    let (mut lowered, mut n) = (0, 0);
    for l in load_labels(&dir).expect("labels").iter().step_by(4) {
        let img = plate_ocr::image_file::load_bgr(&l.image, &ImageLimits::default()).expect("img");
        let a = one.read(&img, None).expect("one view");
        let b = three.read(&img, None).expect("three views");
        assert_eq!(
            a.text(),
            b.text(),
            "{}: the crop as given decides the text",
            l.text
        );
        let down = a.chars().zip(b.chars()).any(|(x, y)| y.prob < x.prob * 0.9);
        lowered += usize::from(down);
        n += 1;
    }
    assert!(
        lowered * 5 >= n,
        "views lowered only {lowered} of {n} reads"
    );
}
