//! Property tests of the plate grammar: round trips for every plate the
//! built-in layouts can generate, and no panics on arbitrary input.

use plate_ocr::plate::{PlateGrammar, canonicalize};
use proptest::prelude::*;

fn g() -> &'static PlateGrammar {
    PlateGrammar::builtin()
}

/// A valid plate of the built-in grammar: (layout id, canonical text).
fn valid_plate() -> impl Strategy<Value = (String, String)> {
    let n_layouts = g().layouts().len();
    (0..n_layouts, prop::collection::vec(any::<u16>(), 12)).prop_map(|(li, seeds)| {
        let grammar = g();
        let layout = &grammar.layouts()[li];
        let codes: Vec<&str> = grammar.local_codes().map(|c| c.code.as_str()).collect();
        let series_in = layout.series_in();
        let pick = |set: &[char], seed: u16| set[usize::from(seed) % set.len()];
        let mut text = String::new();
        text.push_str(codes[usize::from(seeds[0]) % codes.len()]);
        let slots: Vec<&[char]> = layout.slot_chars().collect();
        let mut i = 2;
        if !series_in.is_empty() {
            let s = &series_in[usize::from(seeds[1]) % series_in.len()];
            text.push_str(s);
            i += s.chars().count();
        }
        while i < slots.len() {
            text.push(pick(slots[i], seeds[i]));
            i += 1;
        }
        (layout.id().to_string(), text)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)))]

    #[test]
    fn display_round_trips((layout, x) in valid_plate()) {
        let p = g().parse(&x);
        prop_assert!(p.is_ok(), "{x} ({layout}): {p:?}");
        let Ok(p) = p else { return Ok(()) };
        prop_assert_eq!(&p.canonical, &x);
        prop_assert!(p.layout == layout || p.alternatives.contains(&layout), "{x}: {p:?}");
        // The display form of the generating layout parses back to the plate.
        let own = g().interpret(&x, None).map(|q| q.canonical);
        prop_assert_eq!(own.as_deref(), Some(x.as_str()));
        let l = g().layout(&layout).map(|l| l.lines().to_vec()).unwrap_or_default();
        for lines in l {
            let q = g().interpret(&x, Some(lines));
            prop_assert!(q.as_ref().is_some_and(|q| q.canonical == x), "{x} lines {lines}: {q:?}");
            let Some(q) = q else { continue };
            prop_assert_eq!(canonicalize(&q.display), x.clone());
            let back = g().parse(&q.display);
            prop_assert_eq!(back.as_ref().map(|b| b.canonical.clone()), Ok(x.clone()));
            prop_assert_eq!(back.map(|b| b.display), Ok(q.display.clone()));
        }
        prop_assert_eq!(canonicalize(&p.display), x.clone());
        prop_assert_eq!(g().parse(&p.display).map(|b| b.canonical), Ok(x.clone()));
        // Lower case and extra separators are accepted.
        let loose = p.display.to_lowercase().replace('-', " - ");
        prop_assert_eq!(g().parse(&loose).map(|b| b.canonical), Ok(x.clone()));
    }

    #[test]
    fn certain_candidates_decode_to_the_plate((_layout, x) in valid_plate()) {
        let cand: Vec<Vec<(char, f32)>> = x.chars().map(|c| vec![(c, 1.0)]).collect();
        let got = g().interpret_scored(&cand, None);
        prop_assert!(got.as_ref().is_some_and(|(p, s)| p.canonical == x && (*s - 1.0).abs() < 1e-6), "{x}: {got:?}");
    }

    #[test]
    fn canonicalize_never_panics_and_is_idempotent(s in any::<String>()) {
        let c = canonicalize(&s);
        prop_assert_eq!(canonicalize(&c), c.clone());
        prop_assert!(c.chars().all(|k| k.is_ascii_digit() || k.is_ascii_uppercase() || k == 'Đ'));
    }

    #[test]
    fn readers_never_panic_on_arbitrary_text(s in any::<String>(), hint in prop::option::of(any::<u8>())) {
        let _ = g().parse(&s);
        let _ = g().interpret(&s, hint);
    }

    #[test]
    fn readers_never_panic_on_plate_like_text(s in "[0-9A-Za-zĐđÐ .\\-\n]{0,16}", hint in prop::option::of(0u8..4)) {
        if let Ok(p) = g().parse(&s) {
            prop_assert_eq!(p.canonical, canonicalize(&s));
        }
        if let Some(p) = g().interpret(&s, hint) {
            prop_assert_eq!(p.canonical.chars().count(), canonicalize(&s).chars().count());
            prop_assert!(g().parse(&p.canonical).is_ok());
        }
    }

    #[test]
    fn scored_decoding_never_panics(
        cand in prop::collection::vec(
            prop::collection::vec((any::<char>(), any::<f32>()), 0..4),
            0..14,
        ),
        hint in prop::option::of(any::<u8>()),
    ) {
        if let Some((p, score)) = g().interpret_scored(&cand, hint) {
            prop_assert!(score.is_finite() && score > 0.0 && score <= 1.0);
            prop_assert!(g().parse(&p.canonical).is_ok());
        }
    }
}
