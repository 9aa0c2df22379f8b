//! One detection that cannot be read does not lose the image's other
//! plates: a junk box (corners less than two pixels apart, or not finite)
//! is skipped and the clear plate beside it is still read.

use opencv::core::{CV_8UC3, Mat, Scalar};
use plate_ocr::detect::{Detection, PlateDetector};
use plate_ocr::pipeline::{Pipeline, PipelineConfig};
use plate_ocr::recognize::{CharRead, LineRead, Recognizer, TextRead};

/// Returns the same detections for every image.
struct Fixed(Vec<Detection>);

impl PlateDetector for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    fn detect(&self, _image: &Mat) -> plate_ocr::error::Result<Vec<Detection>> {
        Ok(self.0.clone())
    }
}

/// Reads `30A12345` with certainty in any crop.
struct Plate;

impl Recognizer for Plate {
    fn name(&self) -> &str {
        "plate"
    }

    fn read(&self, _crop: &Mat, _lines: Option<u8>) -> plate_ocr::error::Result<TextRead> {
        let text = "30A12345";
        let chars = text
            .chars()
            .map(|ch| CharRead {
                ch,
                prob: 1.0,
                alternatives: vec![(ch, 1.0)],
            })
            .collect();
        Ok(TextRead {
            lines: vec![LineRead {
                chars,
                text: text.into(),
            }],
            plate_lines: Some(1),
        })
    }
}

fn detection(corners: [[f32; 2]; 4], score: f32) -> Detection {
    let xs = corners.map(|c| c[0]);
    let ys = corners.map(|c| c[1]);
    let x0 = xs.iter().copied().fold(f32::INFINITY, f32::min);
    let y0 = ys.iter().copied().fold(f32::INFINITY, f32::min);
    let x1 = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let y1 = ys.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    Detection {
        bbox: [x0, y0, x1 - x0, y1 - y0],
        corners,
        score,
        lines: Some(1),
    }
}

#[test]
fn a_detection_that_cannot_be_rectified_is_skipped_not_fatal() {
    let a = detection([[10., 10.], [90., 10.], [90., 30.], [10., 30.]], 0.9);
    let flat = detection([[100., 50.], [140., 50.], [140., 51.], [100., 51.]], 0.8);
    let mut nan = flat.clone();
    nan.corners[2] = [f32::NAN, 51.0];
    let image = Mat::new_rows_cols_with_default(100, 200, CV_8UC3, Scalar::all(255.0)).unwrap();
    for junk in [flat, nan] {
        // Before and after the clear plate: neither order loses it.
        for dets in [vec![a.clone(), junk.clone()], vec![junk.clone(), a.clone()]] {
            let p = Pipeline::new(
                Some(Box::new(Fixed(dets))),
                Box::new(Plate),
                PipelineConfig::default(),
            );
            let plates = p.read_image(&image).expect("the image is read");
            assert_eq!(plates.len(), 1, "{plates:?}");
            assert_eq!(plates[0].text.as_deref(), Some("30A12345"));
            assert_eq!(plates[0].corners, a.corners);
        }
    }
}
