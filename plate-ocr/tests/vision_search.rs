//! Finding a motorbike plate by reading windows ([`plate_ocr::search`]) with
//! the project's own recogniser: a real two-line plate crop pasted into a
//! vehicle-sized region is found where it was put and read as its label; a
//! region with no plate (flat, noise, a bare vehicle texture) gives nothing.
//! And the CTC decoding of the shipped model reads real crops whole.
#![cfg(feature = "vision")]

mod fake;
mod support;

use opencv::core::{Mat, MatTraitConst, Rect, Scalar, Size};
use opencv::imgproc;
use plate_ocr::eval::load_labels;
use plate_ocr::image_file::{ImageLimits, load_bgr};
use plate_ocr::pipeline::{Pipeline, PipelineConfig};
use plate_ocr::recognize::{Decoder, Recognizer, SlotRecognizer, TextRead};
use plate_ocr::runtime::SessionConfig;
use plate_ocr::search::WindowSearch;

fn vn_pipeline() -> Pipeline {
    let rec = SlotRecognizer::load(SessionConfig::default())
        .expect("vn_plate_rec resolves (run `make models`)");
    Pipeline::new(None, Box::new(rec), PipelineConfig::default())
}

/// A vehicle-sized region: a dark body over a grey road, with a bright
/// patch (a rear light) and some edges, so the search has something to
/// refuse.
fn vehicle_region(w: i32, h: i32) -> Mat {
    let mut m = support::filled(w, h, (95.0, 100.0, 105.0));
    let body = Rect::new(w / 6, h / 8, 2 * w / 3, 3 * h / 4);
    imgproc::rectangle(
        &mut m,
        body,
        Scalar::new(35.0, 30.0, 30.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )
    .expect("drawing");
    let light = Rect::new(w / 3, h / 3, w / 3, h / 12);
    imgproc::rectangle(
        &mut m,
        light,
        Scalar::new(60.0, 60.0, 220.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )
    .expect("drawing");
    m
}

#[test]
fn shipped_recogniser_is_ctc_and_reads_the_named_crops() {
    let rec = SlotRecognizer::load(SessionConfig::default()).expect("vn_plate_rec");
    assert_eq!(rec.contract().decoder, Decoder::Ctc);
    let p = Pipeline::new(None, Box::new(rec), PipelineConfig::default());
    let dir = support::data_dir().join("vn_crops_named");
    let report = plate_ocr::eval::evaluate_crops(&p, &dir).expect("evaluating vn_crops_named");
    assert_eq!(report.failed, 0);
    // Repeated characters survive CTC collapsing only when the model puts a
    // blank between them; these plates have doubled digits.
    assert!(report.exact * 2 >= report.total, "{}", report.summary());
}

/// `crop` resized into `region` at `at`.
fn paste_plate(region: &mut Mat, crop: &Mat, at: Rect) {
    let mut plate = Mat::default();
    imgproc::resize(
        crop,
        &mut plate,
        Size::new(at.width, at.height),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )
    .expect("resize");
    let mut dst = Mat::roi_mut(region, at).expect("roi");
    plate.copy_to(&mut dst).expect("paste");
}

#[test]
fn a_pasted_motorbike_plate_is_found_where_it_is_and_read() {
    let p = vn_pipeline();
    let dir = support::data_dir().join("vn_crops_machine_labelled");
    let labels = load_labels(&dir).expect("labels");
    // The first few two-line crops the recogniser reads right on their own:
    // the search is tested, not the recogniser.
    let mut tried = 0;
    let mut found = 0;
    let mut exact = 0;
    for l in labels.iter().filter(|l| l.lines == Some(2)) {
        let crop = load_bgr(&l.image, &ImageLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", l.image.display()));
        let direct = p.read_crop(&crop, Some(2)).expect("read");
        if direct.text.as_deref() != Some(l.text.as_str()) {
            continue;
        }
        // Plate 60 px wide in a 180 × 240 region, low and right of centre.
        let mut region = vehicle_region(180, 240);
        paste_plate(&mut region, &crop, Rect::new(70, 150, 60, 44));
        let got = p
            .search_windows(&region, &WindowSearch::motorbike())
            .expect("search");
        tried += 1;
        if let Some(read) = got {
            let [x, y, w, h] = read.bbox;
            let cx = x + w / 2.0;
            let cy = y + h / 2.0;
            assert!(
                (70.0..130.0).contains(&cx) && (150.0..194.0).contains(&cy),
                "found away from the plate: {:?} for {}",
                read.bbox,
                l.text
            );
            // Resampled into a window the read can differ from the crop's
            // own (the recogniser's accuracy is measured by `eval`, not
            // here); it must still be a valid plate.
            assert!(read.valid && !read.unreadable, "{read:?}");
            found += 1;
            exact += usize::from(read.text.as_deref() == Some(l.text.as_str()));
        }
        if tried == 8 {
            break;
        }
    }
    assert!(tried >= 4, "too few two-line crops read directly: {tried}");
    eprintln!("pasted {tried}, found {found}, read exactly {exact}");
    assert!(
        found * 4 >= tried * 3,
        "found {found} of {tried} pasted plates"
    );
    assert!(
        exact * 2 >= tried,
        "read {exact} of {tried} found plates exactly"
    );
}

#[test]
fn two_different_plates_side_by_side_give_nothing() {
    // Two motorbikes' plates in one region (the violator's box reaching
    // over its neighbour's plate): the search must not choose one by
    // confidence.
    let p = vn_pipeline();
    let dir = support::data_dir().join("vn_crops_machine_labelled");
    let labels = load_labels(&dir).expect("labels");
    let mut pasted = Vec::new();
    for l in labels.iter().filter(|l| l.lines == Some(2)) {
        let crop = load_bgr(&l.image, &ImageLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", l.image.display()));
        if p.read_crop(&crop, Some(2)).expect("read").text.as_deref() != Some(l.text.as_str()) {
            continue;
        }
        if pasted.iter().all(|(t, _): &(String, Mat)| t != &l.text) {
            pasted.push((l.text.clone(), crop));
        }
        if pasted.len() == 2 {
            break;
        }
    }
    assert_eq!(pasted.len(), 2, "two different plates the recogniser reads");
    let paste = |which: &[usize]| {
        let mut region = vehicle_region(240, 240);
        for &i in which {
            paste_plate(
                &mut region,
                &pasted[i].1,
                Rect::new([40, 140][i], 150, 60, 44),
            );
        }
        p.search_windows(&region, &WindowSearch::motorbike())
            .expect("search")
    };
    // Each alone is found (so the refusal below is not a miss) ...
    let alone: Vec<bool> = (0..2).map(|i| paste(&[i]).is_some()).collect();
    assert_eq!(alone, [true, true], "each plate alone is found");
    // ... and together neither is chosen.
    let both = paste(&[0, 1]);
    assert!(both.is_none(), "chose one of two plates: {both:?}");
}

#[test]
fn regions_without_a_plate_give_nothing() {
    let p = vn_pipeline();
    let search = WindowSearch::motorbike();
    let mut noise =
        Mat::new_rows_cols_with_default(240, 180, opencv::core::CV_8UC3, Scalar::all(0.0))
            .expect("alloc");
    opencv::core::randu(&mut noise, &Scalar::all(0.0), &Scalar::all(255.0)).expect("noise");
    for (name, region) in [
        ("flat", support::filled(180, 240, (128.0, 128.0, 128.0))),
        ("vehicle", vehicle_region(180, 240)),
        ("noise", noise),
    ] {
        let got = p.search_windows(&region, &search).expect("search");
        assert!(got.is_none(), "{name}: {got:?}");
    }
    // Too small to hold a legible plate: no windows, no read.
    let tiny = support::filled(12, 12, (200.0, 200.0, 200.0));
    assert!(p.search_windows(&tiny, &search).expect("search").is_none());
}

/// Reads `29B112345` with certainty where the window is mostly blue (the
/// neighbour's clear plate), `30A12345` at 0.9 a character (0.43 in all,
/// under the threshold) where it is mostly red (the violator's blurred
/// plate).
struct BlueOrRed;

impl Recognizer for BlueOrRed {
    fn name(&self) -> &str {
        "blue-or-red"
    }

    fn read(&self, crop: &Mat, _lines: Option<u8>) -> plate_ocr::error::Result<TextRead> {
        let m = opencv::core::mean(crop, &opencv::core::no_array()).expect("mean");
        let (text, prob) = if m[0] > m[2] {
            ("29B112345", 1.0)
        } else {
            ("30A12345", 0.9)
        };
        let chars: Vec<(char, f32)> = text.chars().map(|c| (c, prob)).collect();
        Ok(fake::text_read(&chars, Some(2)))
    }
}

/// The violator's padded box holds the neighbour's clear plate and the
/// violator's blurred one: the clear plate must not be answered as if it
/// were the only plate there. The edge never sees a window search's
/// `near_miss` (it reads the near misses of the detector's reads only), so
/// the search refuses.
#[test]
fn a_nearly_read_rival_plate_apart_from_the_answer_gives_nothing() {
    let p = Pipeline::new(None, Box::new(BlueOrRed), PipelineConfig::default());
    let mut region = support::filled(240, 240, (0.0, 0.0, 200.0));
    imgproc::rectangle(
        &mut region,
        Rect::new(0, 0, 120, 240),
        Scalar::new(200.0, 0.0, 0.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )
    .expect("drawing");
    let got = p
        .search_windows(&region, &WindowSearch::motorbike())
        .expect("search");
    assert!(got.is_none(), "{got:?}");
    // The neighbour's plate alone is answered (the refusal above is the
    // rival's doing), and the blurred plate alone is not.
    let blue = support::filled(240, 240, (200.0, 0.0, 0.0));
    let alone = p
        .search_windows(&blue, &WindowSearch::motorbike())
        .expect("search");
    assert_eq!(alone.and_then(|r| r.text).as_deref(), Some("29B112345"));
    let red = support::filled(240, 240, (0.0, 0.0, 200.0));
    let weak = p
        .search_windows(&red, &WindowSearch::motorbike())
        .expect("search");
    assert!(weak.is_none(), "{weak:?}");
}
