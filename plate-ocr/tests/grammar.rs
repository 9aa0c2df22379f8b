//! The plate grammar through its public API: every layout, Đ, confusion
//! correction, errors, constrained decoding, loading user data.
//! All plates here are made up for the tests.

use plate_ocr::plate::{GrammarError, PlateColour, PlateGrammar, VehicleKind, canonicalize};

fn g() -> &'static PlateGrammar {
    PlateGrammar::builtin()
}

fn parse_ok(text: &str) -> plate_ocr::plate::PlateNumber {
    match g().parse(text) {
        Ok(p) => p,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

#[test]
fn car_one_line_five_digits() {
    let p = parse_ok("30A-123.45");
    assert_eq!(p.canonical, "30A12345");
    assert_eq!(p.display, "30A-123.45");
    assert_eq!(p.local_code, "30");
    assert_eq!(p.series, "A");
    assert_eq!(p.number, "12345");
    assert_eq!(p.layout, "car-long-5");
    assert_eq!(p.vehicle, VehicleKind::Car);
    assert_eq!(p.province.as_deref(), Some("Hà Nội"));
    assert!(!p.check);
    // The same text can be a two-line car plate: the line count is unknown.
    assert_eq!(p.lines, None);
    assert_eq!(p.alternatives, vec!["car-short-5".to_string()]);
}

#[test]
fn car_one_line_four_digits() {
    let p = parse_ok("51g-6789");
    assert_eq!(p.canonical, "51G6789");
    assert_eq!(p.display, "51G-6789");
    assert_eq!(p.layout, "car-long-4");
    assert_eq!(p.province.as_deref(), Some("Thành phố Hồ Chí Minh"));
}

#[test]
fn car_two_line_displays_like_one_line() {
    let p = parse_ok("30A\n123.45");
    assert_eq!(p.display, "30A-123.45");
    assert_eq!(p.lines, None);
    let q = g().interpret("30A\n123.45", Some(2)).expect("two-line car");
    assert_eq!(q.canonical, "30A12345");
    assert_eq!(q.lines, Some(2));
    assert_eq!(q.display, "30A-123.45");
    assert_eq!(q.layout, "car-short-5");
    assert_eq!(q.display_lines(), vec!["30A", "123.45"]);
}

#[test]
fn canonical_text_fitting_car_and_motorbike_is_ambiguous() {
    // 8 characters: car 30A-123.45 or old motorbike 30-A1 2345.
    let p = parse_ok("30A12345");
    assert_eq!(p.layout, "car-long-5");
    assert_eq!(p.lines, None);
    assert_eq!(p.alternatives, vec!["moto-4", "car-short-5"]);
    // One line: only the long car plate.
    let one = g().interpret("30A12345", Some(1)).expect("one line");
    assert_eq!((one.layout.as_str(), one.lines), ("car-long-5", Some(1)));
    assert!(one.alternatives.is_empty());
    // Two lines: motorbike preferred, the short car plate still listed.
    let two = g().interpret("30A12345", Some(2)).expect("two lines");
    assert_eq!(two.layout, "moto-4");
    assert_eq!(two.display, "30-A1 2345");
    assert_eq!(two.vehicle, VehicleKind::Motorbike);
    assert_eq!(two.alternatives, vec!["car-short-5"]);
    // Printed for the vehicle it is about (a notice on a motorbike).
    assert_eq!(
        g().display_for("30A12345", VehicleKind::Motorbike)
            .as_deref(),
        Some("30-A1 2345")
    );
    assert_eq!(
        g().display_for("30A12345", VehicleKind::Car).as_deref(),
        Some("30A-123.45")
    );
    assert_eq!(g().display_for("not a plate", VehicleKind::Car), None);
    // The written form settles it.
    assert_eq!(parse_ok("30-A1 2345").layout, "moto-4");
}

#[test]
fn motorbike_old_series() {
    let p = parse_ok("29-B1 123.45");
    assert_eq!(p.canonical, "29B112345");
    assert_eq!(p.display, "29-B1 123.45");
    assert_eq!(p.series, "B1");
    assert_eq!(p.layout, "moto-5");
    assert_eq!(p.lines, Some(2));
    assert_eq!(p.vehicle, VehicleKind::Motorbike);
    assert_eq!(p.display_lines(), vec!["29-B1", "123.45"]);
}

#[test]
fn motorbike_new_two_letter_series() {
    let p = parse_ok("29-HA 002.33");
    assert_eq!(p.canonical, "29HA00233");
    assert_eq!(p.display, "29-HA 002.33");
    assert_eq!(p.series, "HA");
    assert_eq!(p.layout, "moto-2letter-5");
    let q = parse_ok("62kc3456");
    assert_eq!(
        (q.display.as_str(), q.layout.as_str()),
        ("62-KC 3456", "moto-2letter-4")
    );
}

#[test]
fn electric_motorbike_with_dj() {
    for text in ["29-MĐ1 123.45", "29mđ112345", "29-MÐ1 123.45"] {
        let p = parse_ok(text);
        assert_eq!(p.canonical, "29MĐ112345", "{text}");
        assert_eq!(p.display, "29-MĐ1 123.45");
        assert_eq!(p.series, "MĐ1");
        assert_eq!(p.layout, "moto-electric");
    }
    // D for Đ is a misread, corrected only by the lenient reader.
    assert!(g().parse("29-MD1 123.45").is_err());
    let p = g().interpret("29-MD1 123.45", None).expect("MD1 read");
    assert_eq!(p.canonical, "29MĐ112345");
    let p = g().interpret("29-M01 123.45", None).expect("M01 read");
    assert_eq!(p.series, "MĐ1");
}

#[test]
fn special_series() {
    let p = parse_ok("51LD-123.45");
    assert_eq!(
        (p.layout.as_str(), p.series.as_str()),
        ("car-special-5", "LD")
    );
    assert_eq!(p.display, "51LD-123.45");
    assert!(p.check);
    let p = parse_ok("80NG-123.01");
    assert_eq!(p.layout, "car-foreign-5");
    assert_eq!(
        p.province.as_deref(),
        Some("Trung ương (Cục Cảnh sát giao thông)")
    );
    let p = parse_ok("29QT 456.02");
    assert_eq!((p.series.as_str(), p.vehicle), ("QT", VehicleKind::Car));
    let p = parse_ok("15R-012.34");
    assert_eq!(
        (p.layout.as_str(), p.vehicle),
        ("trailer-5", VehicleKind::Trailer)
    );
    // Q outside QT is not a plate.
    assert!(g().parse("29QA-456.02").is_err());
}

#[test]
fn province_after_merger() {
    assert_eq!(
        parse_ok("61A-111.22").province.as_deref(),
        Some("Thành phố Hồ Chí Minh")
    );
    assert_eq!(
        g().local_code("34").map(|c| c.former.as_str()),
        Some("Hải Dương")
    );
    assert_eq!(g().province("34"), Some("Hải Phòng"));
    assert_eq!(g().province("39"), None);
}

#[test]
fn confusions_corrected_by_position() {
    let p = g().interpret("3OA-I23.45", None).expect("corrected");
    assert_eq!(p.canonical, "30A12345");
    assert_eq!(p.display, "30A-123.45");
    let p = g().interpret("29-81 123.45", None).expect("corrected");
    assert_eq!(p.canonical, "29B112345");
    assert_eq!(p.series, "B1");
    // Letter slot: 0 → D, 6 → G, 5 → S; digit slots: S → 5, B → 8, Z → 2, G → 6.
    assert_eq!(
        g().interpret("300-S67.89", Some(1)).map(|p| p.canonical),
        Some("30D56789".into())
    );
    // Without the hint, 30DS6789 (two-letter motorbike series) needs one fix fewer.
    assert_eq!(
        g().interpret("300-S67.89", None).map(|p| p.canonical),
        Some("30DS6789".into())
    );
    assert_eq!(g().interpret("3O6-B2Z.GO", None).map(|p| p.canonical), None); // too many fixes
    assert_eq!(
        g().interpret("306-82Z.45", None).map(|p| p.canonical),
        Some("30G82245".into())
    );
    // Motorbike series: after the letter, a digit 1-9 (I → 1) or a letter (0 → D).
    assert_eq!(
        g().interpret("59-XI 123.45", None).map(|p| p.series),
        Some("X1".into())
    );
    assert_eq!(
        g().interpret("29-H0 002.33", None).map(|p| p.series),
        Some("HD".into())
    );
}

#[test]
fn lenient_reader_keeps_valid_text_unchanged() {
    let p = g().interpret("29-HA 002.33", None).expect("valid");
    assert_eq!(p.canonical, "29HA00233");
    assert_eq!(g().interpret("", None), None);
    assert_eq!(g().interpret("hello", None), None);
    assert_eq!(g().interpret("29-B1 123.45", Some(1)), None);
}

#[test]
fn errors_say_why() {
    assert_eq!(g().parse(" - "), Err(GrammarError::Empty));
    match g().parse("30A-I23.45") {
        Err(GrammarError::BadCharacter {
            ch: 'I',
            position: 5,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match g().parse("30A_123.45") {
        Err(GrammarError::BadCharacter {
            ch: '_',
            position: 4,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        g().parse("10A-123.45"),
        Err(GrammarError::UnknownLocalCode { code: "10".into() })
    );
    match g().parse("30A-123") {
        Err(GrammarError::NoLayoutOfLength { len: 6, .. }) => {}
        other => panic!("{other:?}"),
    }
    match g().parse("30A-1B3.45") {
        Err(
            e @ GrammarError::NoLayoutMatches {
                ch: 'B',
                position: 6,
                ..
            },
        ) => {
            assert!(e.to_string().contains("a digit"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // The closest layout follows the written separators.
    match g().parse("30-12 3456") {
        Err(GrammarError::NoLayoutMatches {
            ch: '1',
            position: 4,
            layout,
            ..
        }) => {
            assert_eq!(layout, "moto-4");
        }
        other => panic!("{other:?}"),
    }
    match g().parse("3A0-123.45") {
        Err(GrammarError::NoLayoutMatches {
            ch: 'A',
            position: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn scored_decoding_prefers_valid_alternative() {
    // Top-1 at position 2 is the digit 8 (invalid: a letter is expected);
    // the valid alternative B wins although less probable.
    let mut cand: Vec<Vec<(char, f32)>> = "30A12345".chars().map(|c| vec![(c, 0.95)]).collect();
    cand[2] = vec![('8', 0.7), ('B', 0.25)];
    let (p, score) = g().interpret_scored(&cand, Some(1)).expect("valid");
    assert_eq!(p.canonical, "30B12345");
    assert!(score > 0.0 && score < 0.25, "{score}");
    // Top-1 local code 10 is unknown; 18 is a province.
    let mut cand: Vec<Vec<(char, f32)>> = "10A12345".chars().map(|c| vec![(c, 0.9)]).collect();
    cand[1] = vec![('0', 0.6), ('8', 0.3)];
    let (p, _) = g().interpret_scored(&cand, None).expect("valid");
    assert_eq!(p.local_code, "18");
    // Nothing valid.
    let cand: Vec<Vec<(char, f32)>> = "XXXXXXXX".chars().map(|c| vec![(c, 0.9)]).collect();
    assert_eq!(g().interpret_scored(&cand, None), None);
    assert_eq!(g().interpret_scored(&[], None), None);
}

#[test]
fn scored_decoding_uses_confusions_and_refuses_ties() {
    // Only O offered where a digit is expected: corrected at the confusion cost.
    let mut cand: Vec<Vec<(char, f32)>> = "30A12345".chars().map(|c| vec![(c, 1.0)]).collect();
    cand[1] = vec![('O', 0.8)];
    let (p, score) = g().interpret_scored(&cand, None).expect("valid");
    assert_eq!(p.canonical, "30A12345");
    assert!((score - 0.4).abs() < 1e-4, "{score}");
    // Two valid plates with the same score: no answer.
    cand[1] = vec![('0', 0.5), ('1', 0.5)];
    assert_eq!(g().interpret_scored(&cand, None), None);
    let r = g().readings(&cand, None, true);
    assert_eq!(r.len(), 2);
}

#[test]
fn plate_colour_meaning() {
    assert_eq!(
        PlateColour::White.category(),
        "private individual or business"
    );
    assert_eq!(PlateColour::Yellow.category(), "commercial transport");
    assert_eq!(PlateColour::Red.category(), "military");
    let json = serde_json_like(PlateColour::Blue);
    assert_eq!(json, "blue");
}

fn serde_json_like(c: PlateColour) -> String {
    // serde lowercase names, checked through the TOML serialiser.
    #[derive(serde::Serialize)]
    struct W {
        c: PlateColour,
    }
    let s = toml::to_string(&W { c }).unwrap_or_default();
    s.trim()
        .trim_start_matches("c = ")
        .trim_matches('"')
        .to_string()
}

#[test]
fn canonicalize_is_the_comparison_form() {
    assert_eq!(canonicalize("29-mđ1 123.45"), "29MĐ112345");
    assert_eq!(canonicalize("  30a\n123.45 "), "30A12345");
}

#[test]
fn builtin_data_is_complete() {
    let ids: Vec<&str> = g().layouts().iter().map(|l| l.id()).collect();
    for id in [
        "car-long-5",
        "car-long-4",
        "car-short-5",
        "moto-5",
        "moto-4",
        "moto-electric",
    ] {
        assert!(ids.contains(&id), "{id}");
    }
    let provinces: std::collections::BTreeSet<&str> =
        g().local_codes().map(|c| c.province.as_str()).collect();
    // 34 provinces and cities after the 2025 merger, plus central registration.
    assert_eq!(provinces.len(), 35);
    for code in [
        "29", "30", "31", "32", "33", "40", "41", "50", "59", "61", "72",
    ] {
        assert!(g().local_code(code).is_some(), "{code}");
    }
    assert!(g().alphabet().contains(&'Đ'));
    for c in ['I', 'J', 'O', 'W'] {
        assert!(!g().alphabet().contains(&c), "{c}");
    }
}
