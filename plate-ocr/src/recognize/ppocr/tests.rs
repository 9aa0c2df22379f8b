//! Unit tests of the PP-OCRv4 reader's dictionary, step reduction and decoding.

use super::*;

#[test]
fn other_classes_lower_a_step_instead_of_being_renormalised_away() {
    // Classes: blank, '-', '8', '9', a Chinese character.
    let classes = [
        Class::Blank,
        Class::Separator,
        Class::Plate(0),
        Class::Plate(1),
        Class::Other,
    ];
    let out = [
        0.01, 0.0, 0.02, 0.0, 0.97, // mostly "not a plate character"
        0.5, 0.3, 0.1, 0.1, 0.0, // a separator counts as a blank
    ];
    let r = reduce(&out, &classes, 2, 1, 2, 5);
    assert_eq!(r.len(), 2 * 3);
    assert!((r[0] - 0.01).abs() < 1e-6 && (r[1] - 0.02).abs() < 1e-6 && r[2] == 0.0);
    assert!((r[3] - 0.8).abs() < 1e-6, "blank + separator: {}", r[3]);
}

#[test]
fn only_the_strongest_other_class_lowers_a_step() {
    // Blank, `8`, and 100 other classes.
    let mut classes = vec![Class::Blank, Class::Plate(0)];
    classes.extend([Class::Other; 100]);
    // 30% spread over the 100 (a softmax's tail): no character the
    // model saw; the step is scaled to blank, `8` and the largest.
    let mut out = vec![0.6, 0.1];
    out.extend([0.003; 100]);
    let r = reduce(&out, &classes, 1, 1, 1, 102);
    assert!((r[0] - 0.6 / 0.703).abs() < 1e-5, "{r:?}");
    assert!((r[1] - 0.1 / 0.703).abs() < 1e-5, "{r:?}");
    // 30% on one of them: a character read outside the alphabet, its
    // mass stays out of the step.
    let mut out = vec![0.6, 0.1, 0.3];
    out.extend([0.0; 99]);
    let r = reduce(&out, &classes, 1, 1, 1, 102);
    assert!(
        (r[0] - 0.6).abs() < 1e-6 && (r[1] - 0.1).abs() < 1e-6,
        "{r:?}"
    );
}

fn plate_chars() -> Vec<char> {
    ('0'..='9').chain('A'..='Z').chain(['Đ']).collect()
}

#[test]
fn full_width_forms_are_the_plate_characters_they_stand_for() {
    let pc = plate_chars();
    let plate = |c: char| Class::Plate(pc.iter().position(|&p| p == c).unwrap() as u8);
    // The shipped dictionary has full-width digits and letters, both
    // cases (NFKC folds them to ASCII).
    for (entry, ch) in [
        ("３", '3'),
        ("０", '0'),
        ("９", '9'),
        ("Ｂ", 'B'),
        ("Ｚ", 'Z'),
        ("ｂ", 'B'),
    ] {
        assert_eq!(classify(entry, &pc), plate(ch), "{entry}");
    }
    assert_eq!(classify("3", &pc), plate('3'));
    assert_eq!(classify("đ", &pc), plate('Đ'));
    assert_eq!(classify("－", &pc), Class::Separator, "full-width hyphen");
    assert_eq!(
        classify("．", &pc),
        Class::Separator,
        "full-width full stop"
    );
    // Look-alikes of another script or meaning stay outside the
    // alphabet: the grammar, not the dictionary, decides what they are.
    for entry in ["〇", "口", "\u{39f}", "①", "！", "中", "ab"] {
        assert_eq!(classify(entry, &pc), Class::Other, "{entry}");
    }
}

/// A dictionary of the plate characters, `extra` entries and a space,
/// and `plate` spelled over it one step per character with `p` (the
/// rest blank), a sure blank step after each; at character `at` the
/// step gives `p_at` to `entry` instead.
fn spelled(plate: &str, at: usize, entry: &str, p_at: f32) -> (Vec<Class>, Vec<f32>, usize) {
    let pc = plate_chars();
    let mut dict: Vec<String> = vec![String::new()];
    dict.extend(pc.iter().map(|c| c.to_string()));
    dict.extend(["３", "〇", "口", "-"].map(String::from));
    dict.push(" ".into());
    let classes: Vec<Class> = dict
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                Class::Blank
            } else {
                classify(s, &pc)
            }
        })
        .collect();
    let c = dict.len();
    let mut out = Vec::new();
    for (i, ch) in plate.chars().enumerate() {
        let mut row = vec![0.0f32; c];
        let (class, p) = if i == at {
            (dict.iter().position(|d| d == entry).unwrap(), p_at)
        } else {
            (
                dict.iter().position(|d| *d == ch.to_string()).unwrap(),
                0.98,
            )
        };
        row[class] = p;
        row[0] = 1.0 - p;
        out.extend(row);
        let mut blank = vec![0.0f32; c];
        blank[0] = 0.999;
        blank[1 + 8] = 0.001;
        out.extend(blank);
    }
    (classes, out, c)
}

fn decoded(classes: &[Class], out: &[f32], c: usize) -> Option<(String, f32)> {
    let k = plate_chars().len();
    let t = out.len() / c;
    let r = reduce(out, classes, k, 1, t, c);
    let alphabet: Vec<char> = std::iter::once('_').chain(plate_chars()).collect();
    super::super::ctc::decode(&r, &alphabet, PlateGrammar::builtin())
        .map(|read| (read.text.iter().collect(), read.char_probs.iter().product()))
}

#[test]
fn a_full_width_digit_is_read_as_the_digit_not_dropped() {
    // `30A12345` with its `3` read as `３` at 0.96: it used to be
    // dropped (`30A1245`, a valid car plate, at 0.87).
    for (plate, at) in [("30A12345", 5), ("29B112345", 6)] {
        let (classes, out, c) = spelled(plate, at, "３", 0.96);
        let (text, conf) = decoded(&classes, &out, c).expect("a plate");
        assert_eq!(text, plate);
        assert!(conf > 0.7, "{plate}: {conf}");
    }
}

#[test]
fn a_character_read_outside_the_plate_alphabet_makes_the_read_unsure() {
    // The `3` read as a CJK look-alike at 0.96: whatever plate is
    // answered, it is not answered with confidence.
    for entry in ["〇", "口"] {
        for (plate, at) in [("30A12345", 5), ("29B112345", 6)] {
            let (classes, out, c) = spelled(plate, at, entry, 0.96);
            if let Some((text, conf)) = decoded(&classes, &out, c) {
                assert!(conf < 0.1, "{plate} with {entry}: {text} at {conf}");
            }
        }
    }
}

#[test]
fn two_lines_are_joined_by_a_certain_blank() {
    let classes = [Class::Blank, Class::Plate(0)];
    // Each line one step of the same character: without the blank
    // between them CTC would collapse the two into one.
    let out = [0.0, 1.0, 0.0, 1.0];
    let r = reduce(&out, &classes, 1, 2, 1, 2);
    assert_eq!(r, vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
}
