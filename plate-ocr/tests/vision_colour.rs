//! Plate background colour on synthetic crops: a plate colour with
//! characters of the usual contrasting colour drawn on it.
#![cfg(feature = "vision")]

mod support;

use plate_ocr::colour::{ColourConfig, plate_colour};
use plate_ocr::plate::PlateColour;
use support::{filled, text};

const BLACK: (f64, f64, f64) = (20.0, 20.0, 20.0);
const WHITE_INK: (f64, f64, f64) = (245.0, 245.0, 245.0);

fn plate(bg: (f64, f64, f64), ink: (f64, f64, f64), two_lines: bool) -> opencv::core::Mat {
    if two_lines {
        let mut m = filled(140, 100, bg);
        text(&mut m, "29-B1", 12, 40, 1.1, ink);
        text(&mut m, "123.45", 8, 88, 1.1, ink);
        m
    } else {
        let mut m = filled(240, 52, bg);
        text(&mut m, "30A-123.45", 8, 40, 1.1, ink);
        m
    }
}

#[test]
fn background_colours_are_told_apart_despite_characters() {
    let cfg = ColourConfig::default();
    // BGR.
    let cases = [
        ((235.0, 235.0, 235.0), BLACK, PlateColour::White),
        ((40.0, 200.0, 230.0), BLACK, PlateColour::Yellow),
        ((170.0, 80.0, 20.0), WHITE_INK, PlateColour::Blue),
        ((30.0, 30.0, 200.0), WHITE_INK, PlateColour::Red),
    ];
    for two in [false, true] {
        for (bg, ink, want) in cases {
            let (got, share) =
                plate_colour(&plate(bg, ink, two), &cfg).expect("colour of a synthetic plate");
            assert_eq!(
                got, want,
                "background {bg:?}, two lines {two}: share {share}"
            );
            assert!(share > 0.4, "{want:?}: share {share}");
        }
    }
}

#[test]
fn a_dim_white_plate_in_shade_is_still_white() {
    let (got, _) = plate_colour(
        &plate((150.0, 155.0, 150.0), BLACK, false),
        &ColourConfig::default(),
    )
    .expect("colour");
    assert_eq!(got, PlateColour::White);
}

#[test]
fn a_dark_or_grey_crop_is_unknown() {
    let cfg = ColourConfig::default();
    let (got, _) = plate_colour(&filled(100, 40, (10.0, 10.0, 10.0)), &cfg).expect("colour");
    assert_eq!(got, PlateColour::Unknown);
    // Green is no plate colour.
    let (got, _) = plate_colour(&filled(100, 40, (40.0, 180.0, 40.0)), &cfg).expect("colour");
    assert_eq!(got, PlateColour::Unknown);
}

#[test]
fn an_empty_crop_is_an_error() {
    let err = plate_colour(&opencv::core::Mat::default(), &ColourConfig::default());
    assert!(err.is_err());
}
