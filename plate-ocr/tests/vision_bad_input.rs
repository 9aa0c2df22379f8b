//! Bad input gives a clear error for that input: corrupt, empty, truncated,
//! enormous and non-image files, zero-size crops, missing models and models
//! whose metadata breaks the contract. Nothing here may panic or abort.
#![cfg(feature = "vision")]

mod support;

use std::io::Write;

use opencv::core::Mat;
use plate_ocr::error::VisionError;
use plate_ocr::image_file::{ImageLimits, decode_bgr, load_bgr};
use plate_ocr::pipeline::{Pipeline, PipelineConfig};
use plate_ocr::recognize::{Decoder, PpOcrRecognizer, Recognizer, SlotContract};
use plate_ocr::runtime::{Model, SessionConfig, resolve_model};

fn limits() -> ImageLimits {
    ImageLimits::default()
}

/// A real JPEG from the evaluation data, read at test time.
fn real_jpeg() -> Vec<u8> {
    let dir = support::data_dir().join("vn_crops_named");
    let first = std::fs::read_dir(&dir)
        .expect("listing vn_crops_named")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "jpg"))
        .expect("a .jpg in vn_crops_named");
    std::fs::read(first).expect("reading a test image")
}

/// A PNG header (signature + IHDR) claiming `w`×`h` pixels, no pixel data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_real_jpeg_decodes() {
    let m = decode_bgr(&real_jpeg(), "real.jpg", &limits()).expect("a real JPEG decodes");
    use opencv::core::MatTraitConst;
    assert!(m.cols() > 10 && m.rows() > 5);
}

#[test]
fn empty_file_is_refused() {
    let e = decode_bgr(&[], "empty.jpg", &limits()).expect_err("empty input");
    assert!(e.to_string().contains("empty.jpg"), "{e}");
}

#[test]
fn non_image_is_refused() {
    let e = decode_bgr(b"plate,text\n30A12345,1\n", "labels.csv", &limits())
        .expect_err("text is no image");
    let msg = e.to_string();
    assert!(
        msg.contains("labels.csv") && msg.contains("not a supported image"),
        "{msg}"
    );
}

#[test]
fn corrupt_jpeg_is_refused() {
    let mut bytes = real_jpeg();
    // Keep the SOI marker and the first header bytes, scramble the rest.
    for (i, b) in bytes.iter_mut().enumerate().skip(20) {
        *b = (i * 7 % 251) as u8;
    }
    let e = decode_bgr(&bytes, "corrupt.jpg", &limits()).expect_err("corrupt JPEG");
    assert!(e.to_string().contains("corrupt.jpg"), "{e}");
}

#[test]
fn truncated_jpeg_is_refused() {
    let bytes = real_jpeg();
    let half = &bytes[..bytes.len() / 3];
    let e = decode_bgr(half, "truncated.jpg", &limits()).expect_err("truncated JPEG");
    assert!(e.to_string().contains("truncated.jpg"), "{e}");
}

#[test]
fn enormous_image_is_refused_from_its_header() {
    // 100000 × 100000 would need 30 GB decoded; the header alone must refuse it.
    let e =
        decode_bgr(&png_header(100_000, 100_000), "huge.png", &limits()).expect_err("huge image");
    match e {
        VisionError::TooLarge {
            width,
            height,
            limit,
            ..
        } => {
            assert_eq!((width, height), (100_000, 100_000));
            assert_eq!(limit, limits().max_pixels);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    // A lower configured limit refuses a real image.
    let small = ImageLimits {
        max_pixels: 100,
        ..limits()
    };
    assert!(matches!(
        decode_bgr(&real_jpeg(), "real.jpg", &small),
        Err(VisionError::TooLarge { .. })
    ));
}

#[test]
fn header_only_png_is_refused_without_panic() {
    let e =
        decode_bgr(&png_header(64, 32), "header-only.png", &limits()).expect_err("no pixel data");
    assert!(e.to_string().contains("header-only.png"), "{e}");
}

#[test]
fn missing_and_non_file_paths_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = load_bgr(&dir.path().join("nope.jpg"), &limits()).expect_err("missing file");
    assert!(e.to_string().contains("nope.jpg"), "{e}");
    let e = load_bgr(dir.path(), &limits()).expect_err("a directory");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let p = dir.path().join("zero.jpg");
    std::fs::File::create(&p)
        .expect("create")
        .flush()
        .expect("flush");
    assert!(load_bgr(&p, &limits()).is_err());
}

#[test]
fn missing_model_names_the_model() {
    let e = resolve_model("no_such_model").expect_err("unknown model");
    assert!(e.to_string().contains("no_such_model"), "{e}");
    let e = Model::load(
        "vn_plate_rec",
        std::path::Path::new("/nonexistent/vn_plate_rec.onnx"),
        SessionConfig::default(),
    )
    .expect_err("missing file");
    assert!(e.to_string().contains("vn_plate_rec"), "{e}");
}

#[test]
fn a_file_that_is_not_onnx_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("fake.onnx");
    std::fs::write(&p, b"this is not a model").expect("write");
    let e = Model::load("fake", &p, SessionConfig::default()).expect_err("not ONNX");
    assert!(e.to_string().contains("fake"), "{e}");
}

#[test]
fn zero_size_crop_is_refused_by_recogniser_and_pipeline() {
    let rec = PpOcrRecognizer::load(SessionConfig::default())
        .expect("ppocr_v4_rec resolves (run `make models`)");
    let e = rec.read(&Mat::default(), None).expect_err("empty crop");
    assert!(e.to_string().contains("empty"), "{e}");
    let p = Pipeline::new(None, Box::new(rec), PipelineConfig::default());
    assert!(p.read_crop(&Mat::default(), Some(1)).is_err());
    // No detector: a whole image is a configuration error, not a panic.
    let img = support::filled(50, 20, (255.0, 255.0, 255.0));
    assert!(p.read_image(&img).is_err());
    // A 1-pixel-high crop is read or refused, never a panic.
    let _ = p.read_crop(&support::filled(40, 1, (255.0, 255.0, 255.0)), None);
}

fn meta(pairs: &[(&str, &str)]) -> impl Fn(&str) -> plate_ocr::error::Result<Option<String>> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| Ok(map.get(k).cloned())
}

const GOOD: [(&str, &str); 10] = [
    ("alphabet", "_0123456789ABCDEFGHKLMNPRSTUVXYZĐ"),
    ("input_height", "48"),
    ("input_width", "96"),
    ("input_channels", "1"),
    ("color_order", "GRAY"),
    ("resize", "stretch"),
    ("normalize", "x/255"),
    ("layout", "NCHW"),
    ("decoder", "slots"),
    ("slots", "10"),
];

#[test]
fn slot_contract_reads_good_metadata() {
    let c = SlotContract::from_metadata(meta(&GOOD)).expect("good contract");
    assert_eq!((c.height, c.width, c.channels, c.slots), (48, 96, 1, 10));
    assert_eq!(c.alphabet.len(), 33);
    assert_eq!(c.alphabet[0], '_');
    assert_eq!(c.alphabet.last(), Some(&'Đ'));
    assert_eq!(c.decoder, Decoder::Slots);
    let ctc: Vec<(&str, &str)> = GOOD
        .iter()
        .map(|&(k, v)| match k {
            "decoder" => (k, "ctc"),
            "slots" => (k, "48"),
            _ => (k, v),
        })
        .collect();
    let c = SlotContract::from_metadata(meta(&ctc)).expect("CTC contract");
    assert_eq!((c.decoder, c.slots), (Decoder::Ctc, 48));
}

#[test]
fn slot_contract_errors_name_the_key() {
    for (key, bad) in [
        ("alphabet", None),
        ("alphabet", Some("0123")),
        ("input_height", Some("zero")),
        ("input_width", None),
        ("color_order", Some("BGR")),
        ("input_channels", Some("3")),
        ("normalize", Some("x/127")),
        ("resize", Some("letterbox")),
        ("decoder", Some("attention")),
        ("slots", Some("0")),
    ] {
        let pairs: Vec<(&str, &str)> = GOOD
            .iter()
            .filter_map(|&(k, v)| {
                if k == key {
                    bad.map(|b| (k, b))
                } else {
                    Some((k, v))
                }
            })
            .collect();
        let e = SlotContract::from_metadata(meta(&pairs)).expect_err("bad contract");
        let named = e.contains(&format!("`{key}`"))
            || (key == "input_channels" && e.contains("input_channels"));
        assert!(named, "{key} = {bad:?}: {e}");
    }
}
