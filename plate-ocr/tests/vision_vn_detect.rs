//! The by-eye labelled Vietnamese plate-detection set
//! (`plate-ocr/data/vn_detect`): the labels are well-formed and lie inside
//! their images, and y5fu's recall on it is what `plate-ocr/README.md` says
//! ("Detection recall on Vietnamese frames"), per vehicle class, so that a
//! regression in the detector path shows.
//!
//! The images are not in git: the test writes them with the same script a
//! person runs (`plate-ocr/data/vn_detect/extract_frames.py`, Python with
//! OpenCV from `.deps/pyvision`, which `make setup` installs), into Cargo's temporary
//! directory. Without that Python, or without `../shared/data`, the test fails:
//! a skipped check is not a pass.
#![cfg(feature = "vision")]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use opencv::core::Mat;
use plate_ocr::detect::{PlateDetector, Y5fuDetector, Y5fuSize};
use plate_ocr::eval::{
    DetectReport, VehicleClass, evaluate_detection_at, evaluate_in_vehicle_boxes,
    load_detection_labels, validate_detection_set,
};
use plate_ocr::image_file::ImageLimits;
use plate_ocr::pipeline::{Pipeline, PipelineConfig, ReadMode};
use plate_ocr::recognize::SlotRecognizer;
use plate_ocr::runtime::SessionConfig;
use plate_ocr::search::WindowSearch;

fn labels_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/vn_detect")
}

/// Runs `extract_frames.py` into a fresh directory and returns it.
fn images_dir() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = repo.join(".deps/pyvision/bin/python");
    assert!(
        python.is_file(),
        "{} not found: the detection-set images are extracted with Python + OpenCV \
         (`make setup` installs it: scripts/setup-pyvision.sh)",
        python.display()
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vn_detect");
    let status = Command::new(&python)
        .arg(labels_dir().join("extract_frames.py"))
        .arg("--data")
        .arg(support::data_dir())
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running extract_frames.py");
    assert!(status.success(), "extract_frames.py failed: {status}");
    out
}

#[test]
fn labels_are_well_formed() {
    let labels = load_detection_labels(&labels_dir()).expect("labels load");
    assert!(labels.len() >= 30, "{} plates", labels.len());
    for l in &labels {
        assert!(l.class.is_some(), "{}: no vehicle class", l.source);
        assert!(
            l.text == "?"
                || l.text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == 'Đ'),
            "{}: text {:?} is neither `?` nor canonical",
            l.source,
            l.text
        );
        // One .txt per image, named after it.
        let stem = l.image.rsplit_once('.').map_or(l.image.as_str(), |s| s.0);
        assert!(
            l.source.starts_with(&format!("{stem}.txt:")),
            "{}: labels image {}",
            l.source,
            l.image
        );
    }
    for c in VehicleClass::ALL {
        let n = labels.iter().filter(|l| l.class == Some(c)).count();
        assert!(n >= 10, "{n} {} plates", c.as_str());
    }
}

/// How plates are looked for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    /// y5fu on the whole image.
    Whole(Y5fuSize),
    /// y5fu inside a vehicle-sized box around each plate, padded by 10%.
    InVehicleBox(Y5fuSize),
    /// The motorbike window search with the `vn` recogniser, same boxes.
    WindowSearch,
}

/// (method, IoU, car found, motorbike found) as in plate-ocr/README.md.
const EXPECTED: [(Method, f32, usize, usize); 10] = [
    (Method::Whole(Y5fuSize::S320), 0.5, 8, 0),
    (Method::Whole(Y5fuSize::S320), 0.3, 9, 0),
    (Method::Whole(Y5fuSize::S640), 0.5, 10, 0),
    (Method::Whole(Y5fuSize::S640), 0.3, 10, 0),
    (Method::InVehicleBox(Y5fuSize::S320), 0.5, 13, 1),
    (Method::InVehicleBox(Y5fuSize::S320), 0.3, 14, 1),
    (Method::InVehicleBox(Y5fuSize::S640), 0.5, 12, 0),
    (Method::InVehicleBox(Y5fuSize::S640), 0.3, 12, 0),
    (Method::WindowSearch, 0.5, 0, 0),
    (Method::WindowSearch, 0.3, 0, 0),
];
const CARS: usize = 15;
const MOTORBIKES: usize = 19;
const PAD: f32 = 0.1;

fn class_found(r: &DetectReport, c: VehicleClass) -> (usize, usize) {
    r.by_class
        .get(c.as_str())
        .map_or((0, 0), |cr| (cr.found, cr.plates))
}

fn y5fu(size: Y5fuSize) -> Y5fuDetector {
    Y5fuDetector::load(size, SessionConfig::default()).expect("y5fu resolves (run `make models`)")
}

fn measure(method: Method, images: &Path, ious: &[f32]) -> Vec<DetectReport> {
    let limits = ImageLimits::default();
    let labels = labels_dir();
    match method {
        Method::Whole(size) => evaluate_detection_at(&y5fu(size), &labels, images, &limits, ious),
        Method::InVehicleBox(size) => {
            let det = y5fu(size);
            let find = |crop: &Mat| Ok(det.detect(crop)?.into_iter().map(|p| p.bbox).collect());
            evaluate_in_vehicle_boxes("y5fu", &find, &labels, images, &limits, PAD, ious)
        }
        Method::WindowSearch => {
            let rec = SlotRecognizer::load(SessionConfig::default())
                .expect("vn recogniser resolves (run `make models`)");
            let pipeline = Pipeline::new(
                None,
                Box::new(rec),
                PipelineConfig {
                    mode: ReadMode::Grammar,
                    ..PipelineConfig::default()
                },
            );
            let search = WindowSearch::motorbike();
            let find = |crop: &Mat| {
                Ok(pipeline
                    .search_windows(crop, &search)?
                    .map(|r| vec![r.bbox])
                    .unwrap_or_default())
            };
            evaluate_in_vehicle_boxes("window search", &find, &labels, images, &limits, PAD, ious)
        }
    }
    .expect("detection eval")
}

#[test]
fn recall_per_class_is_as_documented() {
    let images = images_dir();
    let labels = validate_detection_set(&labels_dir(), &images, &ImageLimits::default())
        .expect("every image loads and every box lies inside it");
    assert_eq!(labels.len(), CARS + MOTORBIKES);
    let mut methods: Vec<Method> = EXPECTED.iter().map(|e| e.0).collect();
    methods.dedup();
    for method in methods {
        let expected: Vec<_> = EXPECTED.iter().filter(|e| e.0 == method).collect();
        let ious: Vec<f32> = expected.iter().map(|e| e.1).collect();
        let reports = measure(method, &images, &ious);
        assert_eq!(reports.len(), expected.len());
        for (r, e) in reports.iter().zip(expected) {
            assert_eq!(r.failed, 0, "{}", r.summary());
            assert_eq!(r.min_iou, e.1);
            let (car, cars) = class_found(r, VehicleClass::Car);
            let (moto, motos) = class_found(r, VehicleClass::Motorbike);
            assert_eq!((cars, motos), (CARS, MOTORBIKES), "{}", r.summary());
            // One plate of slack per class: a borderline IoU may flip with
            // another ONNX Runtime build.
            assert!(
                car.abs_diff(e.2) <= 1 && moto.abs_diff(e.3) <= 1,
                "{method:?}: README says car {}/{CARS}, motorbike {}/{MOTORBIKES}; measured:\n{}",
                e.2,
                e.3,
                r.summary()
            );
        }
    }
}
