//! Cross-checking one recogniser's plate against a second, independent one.
//!
//! A wrong read fines an innocent owner, so a plate should be answered only
//! when the evidence for it is strong. Two recognisers that were built
//! differently (PP-OCRv4, trained on general text, and our own plate model,
//! trained on synthetic Vietnamese plates) rarely make the *same* mistake:
//! when both read the same valid plate, the read is much more likely right
//! than either alone; when they read two different valid plates, at least one
//! is wrong and a person must look. This module holds that decision as a
//! pure function, so it is tested without models; [`crate::pipeline`] runs
//! the second recogniser and applies it.

use crate::plate::PlateNumber;

/// How the two opinions are weighed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossCheck {
    /// Factor on the confidence of a plate that only one recogniser could read
    /// as a valid plate (the other read nothing valid). 1 keeps it as is; 0
    /// answers only when both agree.
    pub single_factor: f32,
}

impl Default for CrossCheck {
    /// A single reader's plate keeps its confidence: halving it (measured,
    /// see the crate README) cut answers more than wrong answers.
    fn default() -> Self {
        CrossCheck { single_factor: 1.0 }
    }
}

/// What the two recognisers said about one crop.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Both read this plate: confidence `1 - (1 - a)(1 - b)`.
    Agree(PlateNumber, f32),
    /// Only one read a valid plate: its confidence times `single_factor`.
    Single(PlateNumber, f32),
    /// Both read valid but different plates. The more confident one is kept
    /// with its confidence times one minus the other's (it is right only if
    /// the other is wrong), so two confident readers that disagree give no
    /// answer; the operator sees both.
    Conflict {
        kept: PlateNumber,
        confidence: f32,
        other: PlateNumber,
    },
    /// Neither read a valid plate.
    Neither,
}

impl Verdict {
    /// The plate and confidence to answer with, if any.
    pub fn answer(&self) -> Option<(&PlateNumber, f32)> {
        match self {
            Verdict::Agree(n, c) | Verdict::Single(n, c) => Some((n, *c)),
            Verdict::Conflict {
                kept, confidence, ..
            } => Some((kept, *confidence)),
            Verdict::Neither => None,
        }
    }
}

impl CrossCheck {
    /// Combines the first and second recogniser's grammar-valid plates (each
    /// with its own confidence, before any threshold).
    pub fn combine(
        &self,
        first: Option<(PlateNumber, f32)>,
        second: Option<(PlateNumber, f32)>,
    ) -> Verdict {
        let f = self.single_factor.clamp(0.0, 1.0);
        match (first, second) {
            (Some((a, ca)), Some((b, cb))) if a.canonical == b.canonical => {
                let c = 1.0 - (1.0 - ca.clamp(0.0, 1.0)) * (1.0 - cb.clamp(0.0, 1.0));
                Verdict::Agree(a, c)
            }
            (Some((a, ca)), Some((b, cb))) => {
                let (kept, ck, other, co) = if ca >= cb {
                    (a, ca, b, cb)
                } else {
                    (b, cb, a, ca)
                };
                Verdict::Conflict {
                    kept,
                    confidence: ck.clamp(0.0, 1.0) * (1.0 - co.clamp(0.0, 1.0)),
                    other,
                }
            }
            (Some((a, c)), None) | (None, Some((a, c))) => Verdict::Single(a, c * f),
            (None, None) => Verdict::Neither,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::PlateGrammar;

    fn plate(text: &str) -> PlateNumber {
        PlateGrammar::builtin()
            .parse(text)
            .expect("valid test plate")
    }

    #[test]
    fn agreement_raises_confidence_above_either() {
        let v = CrossCheck::default().combine(
            Some((plate("30A12345"), 0.6)),
            Some((plate("30A12345"), 0.5)),
        );
        let (n, c) = v.answer().expect("agreement answers");
        assert_eq!(n.canonical, "30A12345");
        assert!((c - 0.8).abs() < 1e-6, "{c}");
    }

    #[test]
    fn confident_disagreement_gives_no_answer_and_keeps_both() {
        let v = CrossCheck::default().combine(
            Some((plate("30A12345"), 0.9)),
            Some((plate("30A12346"), 0.8)),
        );
        let (n, c) = v.answer().expect("the stronger plate is kept");
        assert_eq!(n.canonical, "30A12345");
        assert!((c - 0.18).abs() < 1e-6, "{c}");
        match v {
            Verdict::Conflict { other, .. } => assert_eq!(other.canonical, "30A12346"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_weak_dissent_barely_lowers_a_strong_read() {
        let v = CrossCheck::default().combine(
            Some((plate("30A12345"), 0.1)),
            Some((plate("51G67890"), 0.95)),
        );
        let (n, c) = v.answer().expect("answered");
        assert_eq!(n.canonical, "51G67890");
        assert!((c - 0.855).abs() < 1e-6, "{c}");
    }

    #[test]
    fn a_single_reader_is_discounted_either_way_round() {
        let cc = CrossCheck { single_factor: 0.5 };
        for v in [
            cc.combine(Some((plate("29B112345"), 0.9)), None),
            cc.combine(None, Some((plate("29B112345"), 0.9))),
        ] {
            let (n, c) = v.answer().expect("a single read still answers");
            assert_eq!(n.canonical, "29B112345");
            assert!((c - 0.45).abs() < 1e-6);
        }
        let strict = CrossCheck { single_factor: 0.0 };
        let v = strict.combine(Some((plate("29B112345"), 0.9)), None);
        assert_eq!(v.answer().map(|a| a.1), Some(0.0));
        assert_eq!(cc.combine(None, None), Verdict::Neither);
    }
}
