//! The grammar-constrained CTC decoder's confidence where the grammar cannot
//! use what the model saw: a character read as something no plate has in
//! that slot makes the read unsure (a contested blank step costs its own
//! probability) instead of letting the decoder drop the character and
//! answer a shorter plate; on these near-certain synthetic steps the
//! confidence stays at or under the model's own probability of the text.
//! Synthetic step probabilities; all plates made up.
#![cfg(feature = "vision")]

use plate_ocr::plate::PlateGrammar;
use plate_ocr::recognize::ctc::decode;

/// The `vn` recogniser's alphabet (class 0 the blank).
const VN: &str = "_0123456789ABCDEFGHKLMNPSTUVXYZĐ";

fn alphabet() -> Vec<char> {
    VN.chars().collect()
}

/// One step per entry: the listed classes at their probabilities (`_` the
/// blank), the rest spread evenly over the other classes.
fn build(steps: &[Vec<(char, f32)>]) -> Vec<f32> {
    let a = alphabet();
    let k = a.len();
    let mut v = Vec::new();
    for st in steps {
        let used: f32 = st.iter().map(|x| x.1).sum();
        let rest = (1.0 - used).max(0.0) / (k - st.len()) as f32;
        let mut row = vec![rest; k];
        for &(c, p) in st {
            row[a.iter().position(|x| *x == c).unwrap()] = p;
        }
        v.extend(row);
    }
    v
}

/// `plate` one step per character (0.98) with a near-sure blank step
/// (0.999) after each; character `at` gets `odd` instead.
fn spelled(plate: &str, at: Option<usize>, odd: &[(char, f32)]) -> Vec<f32> {
    let mut s: Vec<Vec<(char, f32)>> = Vec::new();
    for (i, c) in plate.chars().enumerate() {
        if Some(i) == at {
            s.push(odd.to_vec());
        } else {
            s.push(vec![(c, 0.98), ('_', 0.019)]);
        }
        s.push(vec![('_', 0.999)]);
    }
    build(&s)
}

/// The CTC forward probability of `text` (all alignments summed): what the
/// model itself gives that exact text.
fn posterior(probs: &[f32], text: &str) -> f64 {
    let a = alphabet();
    let k = a.len();
    let labels: Vec<usize> = text
        .chars()
        .map(|c| a.iter().position(|x| *x == c).unwrap())
        .collect();
    let n = 2 * labels.len() + 1;
    let cls = |s: usize| {
        if s.is_multiple_of(2) {
            0
        } else {
            labels[s / 2]
        }
    };
    let mut al = vec![0f64; n];
    al[0] = f64::from(probs[0]);
    al[1] = f64::from(probs[cls(1)]);
    for t in 1..probs.len() / k {
        let mut nx = vec![0f64; n];
        for s in 0..n {
            let mut v = al[s];
            if s >= 1 {
                v += al[s - 1];
            }
            if s >= 2 && s % 2 == 1 && cls(s) != cls(s - 2) {
                v += al[s - 2];
            }
            nx[s] = v * f64::from(probs[t * k + cls(s)]);
        }
        al = nx;
    }
    al[n - 1] + al[n - 2]
}

/// The decoder's answer and its confidence (product of the characters').
fn read(probs: &[f32]) -> Option<(String, f32)> {
    decode(probs, &alphabet(), PlateGrammar::builtin())
        .map(|r| (r.text.iter().collect(), r.char_probs.iter().product()))
}

#[test]
fn a_character_split_over_classes_the_slot_cannot_hold_is_not_dropped_confidently() {
    // True plate 30A12345. At the `3` the model gives most of its
    // probability to `B` (no letter goes there) and the blank; `30A1245`
    // is a valid car plate, and the decoder used to answer it at 0.75
    // (0.69, 0.65) while the model gives that text only 0.39.
    for (b, blank) in [(0.5f32, 0.45f32), (0.45, 0.40), (0.55, 0.42)] {
        let rest = (1.0 - b - blank) / 2.0;
        let probs = spelled(
            "30A12345",
            Some(5),
            &[('B', b), ('_', blank), ('3', rest), ('8', rest)],
        );
        let p_short = posterior(&probs, "30A1245");
        assert!(p_short < 0.45, "the set-up: {p_short}");
        match read(&probs) {
            None => {}
            Some((text, conf)) => {
                assert!(
                    conf < 0.5,
                    "B {b} / blank {blank}: {text} at {conf} (posterior of 30A1245 {p_short:.3})"
                );
                assert!(
                    f64::from(conf) <= posterior(&probs, &text) + 1e-4,
                    "{text} at {conf} above the model's own {}",
                    posterior(&probs, &text)
                );
            }
        }
    }
}

#[test]
fn clean_reads_keep_a_high_confidence_and_prob_is_absolute() {
    for plate in ["30A12345", "29B112345", "51G67890", "77L13568"] {
        let probs = spelled(plate, None, &[]);
        let (text, conf) = read(&probs).expect("a plate");
        assert_eq!(text, plate);
        assert!(conf > 0.8, "{plate}: {conf}");
        let r = decode(&probs, &alphabet(), PlateGrammar::builtin()).unwrap();
        let p = posterior(&probs, plate);
        // The beam keeps every alignment that matters here: its total is
        // the model's probability of the text, not a ratio between beams.
        assert!((r.prob - p).abs() < 1e-3 * p, "{plate}: {} vs {p}", r.prob);
        assert!(r.runner_up < r.prob);
        assert!(f64::from(conf) <= p + 1e-4, "{plate}: {conf} above {p}");
    }
}

#[test]
fn a_plain_uncertain_character_keeps_its_own_confidence() {
    // The `4` of 30A12345 at 0.7 against `A` 0.2 (which no digit slot
    // holds) and the blank 0.08: the answer is right and its confidence
    // is about the model's probability of it, not more.
    let probs = spelled("30A12345", Some(6), &[('4', 0.7), ('A', 0.2), ('_', 0.08)]);
    let (text, conf) = read(&probs).expect("a plate");
    assert_eq!(text, "30A12345");
    let p = posterior(&probs, "30A12345");
    assert!(f64::from(conf) <= p + 1e-4, "{conf} above {p}");
    assert!(conf > 0.5, "{conf}");
}
