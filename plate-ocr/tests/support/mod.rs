//! Helpers shared by the vision tests: where the evaluation data is, and
//! small synthetic images.
#![allow(dead_code)]

use std::path::PathBuf;

use opencv::core::{CV_8UC3, Mat, Point, Scalar};
use opencv::imgproc;

/// `shared/data` beside the repository (`../../shared/data` from the crate).
/// Panics (fails the test) when it is absent: a skipped check is not a pass.
pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    assert!(
        dir.is_dir(),
        "evaluation data not found at {}: these tests need shared/data beside the repository",
        dir.display()
    );
    dir
}

/// A BGR image of `w`×`h` filled with `bgr`.
pub fn filled(w: i32, h: i32, bgr: (f64, f64, f64)) -> Mat {
    Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::new(bgr.0, bgr.1, bgr.2, 0.0))
        .expect("allocating a test image")
}

/// Writes `text` on `img` at baseline (`x`, `y`) in colour `bgr`.
pub fn text(img: &mut Mat, s: &str, x: i32, y: i32, scale: f64, bgr: (f64, f64, f64)) {
    imgproc::put_text(
        img,
        s,
        Point::new(x, y),
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        Scalar::new(bgr.0, bgr.1, bgr.2, 0.0),
        3,
        imgproc::LINE_8,
        false,
    )
    .expect("drawing test text");
}
