//! Unit tests of the grammar: data loading and its errors, and the decoder
//! checked against brute-force enumeration.

use proptest::prelude::*;

use super::decode::columns_from_scored;
use super::*;

const MINI_LAYOUTS: &str = r####"
version = 1
[classes]
D = "0123456789"
L = "ABCDEFGHKLMNPSTUVXYZ"
[confusions]
"8" = "B"
"B" = "8"
[[layout]]
id = "car"
vehicle = "car"
lines = [1]
pattern = "DD L DDD"
display = "###-###"
"####;

const MINI_PROVINCES: &str = r#"
version = 1
[[province]]
name = "Somewhere"
codes = { "30" = "Somewhere", "31" = "Elsewhere" }
"#;

fn data_err(layouts: &str, provinces: &str) -> GrammarError {
    match PlateGrammar::from_toml(layouts, provinces) {
        Ok(_) => panic!("should be rejected"),
        Err(e) => e,
    }
}

#[test]
fn builtin_loads() {
    if let Err(e) = PlateGrammar::try_builtin() {
        panic!("{e}");
    }
    let g = PlateGrammar::builtin();
    assert!(g.layouts.len() >= 10);
    assert_eq!(g.max_corrections, 3);
    assert!(g.confusions.get(&'O').is_some_and(|v| v.contains(&'0')));
}

#[test]
fn builtin_layouts_are_consistent() {
    let g = PlateGrammar::builtin();
    for l in &g.layouts {
        assert!(l.len() <= 10, "{}", l.id);
        // Display literals are separators only, so canonical(display) is the plate.
        let sample: Vec<char> = l.slots.iter().map(|s| s.chars[0]).collect();
        assert_eq!(
            canonicalize(&l.render(&sample)),
            sample.iter().collect::<String>()
        );
    }
}

#[test]
fn minimal_grammar_works() {
    let g = match PlateGrammar::from_toml(MINI_LAYOUTS, MINI_PROVINCES) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        g.parse("30a-123").map(|p| p.display),
        Ok("30A-123".to_string())
    );
    assert_eq!(
        g.interpret("308123", None).map(|p| p.canonical),
        Some("30B123".into())
    );
    // Confusion factor and max corrections default when [scoring] is absent.
    assert_eq!(g.max_corrections, 3);
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let bad = MINI_LAYOUTS.replace("lines = [1]", "lines = [1");
    let e = data_err(&bad, MINI_PROVINCES);
    match &e {
        GrammarError::Data { file, line, .. } => {
            assert_eq!(file, "layouts.toml");
            assert!(line.is_some_and(|l| (13..=16).contains(&l)), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_errors_name_field_and_line() {
    let cases = [
        (
            "pattern = \"DD L DDD\"",
            "pattern = \"DD X DDD\"",
            "layout[0].pattern",
            "unknown slot class",
        ),
        (
            "pattern = \"DD L DDD\"",
            "pattern = \"DD LDDD\"",
            "layout[0].pattern",
            "three groups",
        ),
        (
            "pattern = \"DD L DDD\"",
            "pattern = \"D L DDD\"",
            "layout[0].pattern",
            "two digit",
        ),
        (
            "display = \"###-###\"",
            "display = \"##-###\"",
            "layout[0].display",
            "has 5 '#'",
        ),
        (
            "display = \"###-###\"",
            "display = \"###/###\"",
            "layout[0].display",
            "separator",
        ),
        ("lines = [1]", "lines = [3]", "layout[0].lines", "1, 2"),
        (
            "L = \"ABCDEFGHKLMNPSTUVXYZ\"",
            "L = \"AB-\"",
            "classes.L",
            "canonical",
        ),
        ("\"8\" = \"B\"", "\"8\" = \"\"", "confusions.8", "empty"),
        ("version = 1", "version = 2", "version", "not supported"),
        (
            "display = \"###-###\"",
            "display = \"###-###\"\nseries_in = [\"LD\"]",
            "layout[0].series_in",
            "does not fit",
        ),
    ];
    for (from, to, want_field, want_msg) in cases {
        let text = MINI_LAYOUTS.replacen(from, to, 1);
        let e = data_err(&text, MINI_PROVINCES);
        let shown = e.to_string();
        match &e {
            GrammarError::Data {
                file,
                line,
                field,
                message,
            } => {
                assert_eq!(file, "layouts.toml", "{shown}");
                assert!(line.is_some(), "{shown}");
                assert_eq!(field.as_deref(), Some(want_field), "{shown}");
                assert!(message.contains(want_msg), "{shown}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Unknown keys and bad vehicle kinds are caught by the TOML reader, with a line.
    let text = MINI_LAYOUTS.replace("vehicle = \"car\"", "vehicle = \"boat\"");
    assert!(matches!(
        data_err(&text, MINI_PROVINCES),
        GrammarError::Data { line: Some(_), .. }
    ));
    let text = MINI_LAYOUTS.replace("vehicle = \"car\"", "vehicle = \"car\"\ncolour = 1");
    assert!(matches!(
        data_err(&text, MINI_PROVINCES),
        GrammarError::Data { line: Some(_), .. }
    ));
    let text = format!(
        "{MINI_LAYOUTS}\n[[layout]]\nid = \"car\"\nvehicle = \"car\"\nlines = [2]\npattern = \"DD L DDD\"\ndisplay = \"###-###\"\n"
    );
    let e = data_err(&text, MINI_PROVINCES);
    assert!(e.to_string().contains("duplicate layout id"), "{e}");
}

#[test]
fn province_errors() {
    let e = data_err(MINI_LAYOUTS, &MINI_PROVINCES.replace("\"31\"", "\"3X\""));
    assert!(
        e.to_string()
            .starts_with("provinces.toml:5: province[0].codes"),
        "{e}"
    );
    let dup =
        format!("{MINI_PROVINCES}\n[[province]]\nname = \"Other\"\ncodes = {{ \"30\" = \"x\" }}\n");
    let e = data_err(MINI_LAYOUTS, &dup);
    assert!(
        e.to_string().contains("already listed for Somewhere"),
        "{e}"
    );
    let e = data_err(MINI_LAYOUTS, "version = 1\nprovince = []\n");
    assert!(matches!(e, GrammarError::Data { .. }), "{e}");
}

#[test]
fn files_load_and_errors_name_the_path() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let lp = dir.path().join("my-layouts.toml");
    let pp = dir.path().join("my-provinces.toml");
    let write = |p: &std::path::Path, s: &str| {
        if let Err(e) = std::fs::write(p, s) {
            panic!("{e}");
        }
    };
    write(&lp, MINI_LAYOUTS);
    write(&pp, MINI_PROVINCES);
    assert!(PlateGrammar::from_files(&lp, &pp).is_ok());
    write(
        &pp,
        "version = 1\n[[province]]\nname = \"\"\ncodes = { \"30\" = \"x\" }\n",
    );
    let e = PlateGrammar::from_files(&lp, &pp)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("my-provinces.toml:3: province[0].name"), "{e}");
    let missing = dir.path().join("nope.toml");
    match PlateGrammar::from_files(&missing, &pp) {
        Err(GrammarError::Io { file, .. }) => assert!(file.ends_with("nope.toml")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ties_between_plates_are_refused() {
    let g = match PlateGrammar::from_toml(MINI_LAYOUTS, MINI_PROVINCES) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    // 3? with 0 or 1: both 30 and 31 are codes.
    let cand = vec![
        vec![('3', 1.0)],
        vec![('0', 0.5), ('1', 0.5)],
        vec![('A', 1.0)],
        vec![('1', 1.0)],
        vec![('2', 1.0)],
        vec![('3', 1.0)],
    ];
    assert_eq!(g.interpret_scored(&cand, None), None);
    let mut cand = cand;
    cand[1] = vec![('0', 0.51), ('1', 0.49)];
    assert_eq!(
        g.interpret_scored(&cand, None).map(|p| p.0.local_code),
        Some("30".into())
    );
}

/// Brute force: every choice of one option per position (as read, or through
/// a confusion), at most `max_corrections` corrections, that parses strictly.
fn brute_best(g: &PlateGrammar, cand: &[Vec<(char, f32)>], hint: Option<u8>) -> Option<f64> {
    let columns = columns_from_scored(cand);
    let mut per_pos: Vec<Vec<(char, f64, usize)>> = Vec::new();
    for col in &columns {
        let mut opts = Vec::new();
        for &(c, lp) in col {
            opts.push((c, lp, 0));
            for &r in g.confusions.get(&c).map(Vec::as_slice).unwrap_or(&[]) {
                opts.push((r, lp + g.confusion_log_factor, 1));
            }
        }
        per_pos.push(opts);
    }
    // Only characters some layout of this length accepts at that position
    // (a necessary condition, to keep the search small).
    for (i, opts) in per_pos.iter_mut().enumerate() {
        opts.retain(|o| {
            g.layouts
                .iter()
                .any(|l| l.len() == cand.len() && l.slots[i].accepts(o.0))
        });
    }
    let mut best: Option<f64> = None;
    let mut idx = vec![0usize; per_pos.len()];
    if per_pos.iter().any(Vec::is_empty) {
        return None;
    }
    if per_pos.iter().map(Vec::len).product::<usize>() > 20_000 {
        return Some(f64::NAN);
    }
    loop {
        let text: String = idx.iter().zip(&per_pos).map(|(&i, o)| o[i].0).collect();
        let lp: f64 = idx.iter().zip(&per_pos).map(|(&i, o)| o[i].1).sum();
        let corr: usize = idx.iter().zip(&per_pos).map(|(&i, o)| o[i].2).sum();
        if corr <= g.max_corrections
            && let Ok(p) = g.parse(&text)
        {
            let lines_ok = hint.is_none_or(|h| {
                std::iter::once(&p.layout)
                    .chain(&p.alternatives)
                    .any(|id| g.layout(id).is_some_and(|l| l.lines.contains(&h)))
            });
            if lines_ok && best.is_none_or(|b| lp > b) {
                best = Some(lp);
            }
        }
        // Next combination.
        let mut k = 0;
        loop {
            if k == idx.len() {
                return best;
            }
            idx[k] += 1;
            if idx[k] < per_pos[k].len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
}

fn column() -> impl Strategy<Value = Vec<(char, f32)>> {
    let chars = prop::sample::select(vec![
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'D', 'G', 'H', 'L', 'M', 'N',
        'O', 'S', 'T', 'Z', 'Đ', 'I', 'R',
    ]);
    prop::collection::vec((chars, 0.01f32..1.0), 1..=2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The k-best decoder finds the same best score as exhaustive search.
    #[test]
    fn decoder_matches_brute_force(
        cols in prop::collection::vec(column(), 7..=9),
        hint in prop::option::of(1u8..=2),
        prefix in prop::sample::select(vec!["30", "29", "51", "80"]),
    ) {
        let g = PlateGrammar::builtin();
        // Start from a known local code most of the time so valid plates occur.
        let mut cand = cols;
        let mut p = prefix.chars();
        if let (Some(a), Some(b)) = (p.next(), p.next()) {
            cand[0].insert(0, (a, 0.9));
            cand[1].insert(0, (b, 0.9));
        }
        let want = brute_best(g, &cand, hint);
        prop_assume!(!want.is_some_and(f64::is_nan), "search space too large");
        let got = g.readings(&cand, hint, true).first().map(|r| f64::from(r.score).ln());
        match (want, got) {
            (None, None) => {}
            (Some(w), Some(x)) => prop_assert!((w - x).abs() < 1e-4, "brute {w} decoder {x}"),
            (w, x) => prop_assert!(false, "brute {w:?} decoder {x:?}"),
        }
    }
}
