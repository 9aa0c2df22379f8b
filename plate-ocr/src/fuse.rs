//! Fusing the reads of one vehicle (one per frame) into one plate, or refusing.
//!
//! A fine goes to whoever owns the plate that was read, so fusion answers only
//! when the frames agree, and otherwise says so. The decision rule:
//!
//! 1. **Usable reads.** Each read is reduced to canonical form
//!    ([`canonicalize`]); reads that are empty, whose `confidence` is not a
//!    positive number, or that hold a character that is neither a plate
//!    character nor a separator (`30A12?45`: canonicalising would drop the
//!    `?` and make the valid, different plate `30A1245`) are dropped. Per-character confidences are taken from
//!    `char_conf` when it has one entry per canonical character (or per
//!    character of the text as given); otherwise every character gets the
//!    read's `confidence`. Fewer than `min_reads` usable reads: [`Fused::NotEnough`].
//! 2. **Length.** Reads are grouped by length; the group with the largest total
//!    read confidence is voted on. Two lengths with equal weight: [`Fused::Disagree`].
//! 3. **Voting.** At each position every read of that length votes for its
//!    character with its character confidence. A read of another length counts
//!    against every position with its read confidence (it disagrees with all).
//!    The answer is the character with most votes at each position; with a
//!    grammar ([`fuse_with_grammar`]), it is the best *valid plate* under the
//!    vote shares (constrained decoding without confusion correction), so the
//!    answer is always a plate the grammar accepts.
//! 4. **Measures.** `agreement` is the smallest, over positions, share of the
//!    vote won by the answer's character; `strength` is the smallest, over
//!    positions, mean confidence of the reads voting for it, and at most the
//!    confidence of the best read that read the answer whole (a read's
//!    confidence is its plate's: eight characters at 0.92 make a 0.51
//!    read, and fusing it alone must not make it a 0.92 plate);
//!    `confidence = agreement × strength`.
//! 5. **Refusals.** [`Fused::Disagree`] when `agreement < min_agreement`, when
//!    two answers tie, when no read read the answer whole (a plate put
//!    together position by position from reads that each differ from it),
//!    or when another plate (a valid one, with a grammar) was
//!    read whole by reads holding at least `max_rival_share` of the total read
//!    confidence: two different plates both with substantial support.
//!    [`Fused::LowConfidence`] when they agree but `confidence < min_confidence`.
//!    Otherwise [`Fused::Agreed`].
//!
//! A single outlier among several agreeing frames lowers the agreement at the
//! positions it differs (4 of 5 frames: 0.8) but is answered; two plates read
//! about equally often are refused.

use serde::{Deserialize, Serialize};

use crate::plate::{PlateGrammar, canonicalize};

/// One read of a plate (one frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    /// The text read, canonical (other forms are canonicalised).
    pub text: String,
    /// Confidence of each character, in `[0, 1]`, one per character of `text`.
    pub char_conf: Vec<f32>,
    /// Confidence of the whole read, in `[0, 1]`.
    pub confidence: f32,
}

impl Read {
    /// A read whose characters all have the read's confidence.
    pub fn uniform(text: &str, confidence: f32) -> Read {
        Read {
            text: text.to_string(),
            char_conf: vec![confidence; text.chars().count()],
            confidence,
        }
    }
}

/// Thresholds of the decision rule (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuseConfig {
    /// Fewest usable reads to answer at all.
    pub min_reads: usize,
    /// Smallest share of the weighted vote the answer must win at every position.
    pub min_agreement: f32,
    /// Smallest `agreement × strength` to answer.
    pub min_confidence: f32,
    /// Refuse when another plate was read whole by at least this share of the
    /// total read confidence.
    pub max_rival_share: f32,
}

impl Default for FuseConfig {
    /// Three reads; 70% agreement at every position; confidence 0.5; refuse if
    /// another plate has 30% of the reads' weight (so 3 against 1 is answered,
    /// 2 against 1 is not).
    fn default() -> Self {
        FuseConfig {
            min_reads: 3,
            min_agreement: 0.7,
            min_confidence: 0.5,
            max_rival_share: 0.3,
        }
    }
}

/// The outcome of fusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Fused {
    /// The reads agree on `text` (canonical).
    Agreed {
        /// The plate, canonical.
        text: String,
        /// `agreement × strength`, in `[0, 1]`.
        confidence: f32,
        /// Usable reads that read exactly `text`.
        support: usize,
        /// Usable reads.
        total: usize,
    },
    /// The reads agree, but too weakly to act on; `text` is for a reviewer only.
    LowConfidence {
        /// The best answer, canonical.
        text: String,
        /// `agreement × strength`.
        confidence: f32,
        /// Usable reads that read exactly `text`.
        support: usize,
        /// Usable reads.
        total: usize,
    },
    /// The reads disagree. `candidates`: the distinct texts read, with their
    /// share of the total read confidence, best first (at most five).
    Disagree {
        /// Text and weight share.
        candidates: Vec<(String, f32)>,
    },
    /// Too few usable reads.
    NotEnough {
        /// Usable reads.
        reads: usize,
        /// `min_reads`.
        needed: usize,
    },
}

impl Fused {
    /// The agreed plate, if the reads agreed confidently.
    pub fn agreed(&self) -> Option<&str> {
        match self {
            Fused::Agreed { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Fuse reads by character-level voting, without a grammar.
pub fn fuse(reads: &[Read], cfg: &FuseConfig) -> Fused {
    fuse_inner(reads, cfg, None)
}

/// Fuse reads by character-level voting; the answer must be a valid plate.
pub fn fuse_with_grammar(reads: &[Read], cfg: &FuseConfig, grammar: &PlateGrammar) -> Fused {
    fuse_inner(reads, cfg, Some(grammar))
}

/// A read ready for voting.
struct Usable {
    text: Vec<char>,
    conf: Vec<f32>,
    weight: f32,
}

fn clamp01(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn prepare(read: &Read) -> Option<Usable> {
    if !(read.confidence.is_finite() && read.confidence > 0.0) {
        return None;
    }
    if read.text.chars().any(|c| {
        !crate::plate::alphabet::is_separator(c) && canonicalize(&c.to_string()).is_empty()
    }) {
        return None;
    }
    let weight = read.confidence.min(1.0);
    let text: Vec<char> = canonicalize(&read.text).chars().collect();
    if text.is_empty() {
        return None;
    }
    let conf: Vec<f32> = if read.char_conf.len() == text.len() {
        read.char_conf.iter().map(|&c| clamp01(c)).collect()
    } else if read.char_conf.len() == read.text.chars().count() {
        // Confidences follow the text as given: keep those of kept characters.
        read.text
            .chars()
            .zip(&read.char_conf)
            .filter(|(c, _)| !canonicalize(&c.to_string()).is_empty())
            .map(|(_, &p)| clamp01(p))
            .collect()
    } else {
        vec![weight; text.len()]
    };
    Some(Usable { text, conf, weight })
}

/// Vote shares of one position: character, summed confidence, number of voters.
fn tally(group: &[&Usable], i: usize) -> Vec<(char, f32, usize)> {
    let mut votes: Vec<(char, f32, usize)> = Vec::new();
    for r in group {
        let (c, p) = (r.text[i], r.conf[i]);
        match votes.iter_mut().find(|v| v.0 == c) {
            Some(v) => {
                v.1 += p;
                v.2 += 1;
            }
            None => votes.push((c, p, 1)),
        }
    }
    votes.sort_by(|a, b| b.1.total_cmp(&a.1));
    votes
}

fn fuse_inner(reads: &[Read], cfg: &FuseConfig, grammar: Option<&PlateGrammar>) -> Fused {
    let usable: Vec<Usable> = reads.iter().filter_map(prepare).collect();
    if usable.is_empty() || usable.len() < cfg.min_reads {
        return Fused::NotEnough {
            reads: usable.len(),
            needed: cfg.min_reads,
        };
    }
    let total_weight: f32 = usable.iter().map(|r| r.weight).sum();

    // Whole-read texts and their weight share (for rivals and for reporting).
    let mut texts: Vec<(String, f32)> = Vec::new();
    for r in &usable {
        let t: String = r.text.iter().collect();
        match texts.iter_mut().find(|(s, _)| *s == t) {
            Some(e) => e.1 += r.weight / total_weight,
            None => texts.push((t, r.weight / total_weight)),
        }
    }
    texts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let disagree = || Fused::Disagree {
        candidates: texts.iter().take(5).cloned().collect(),
    };

    // The heaviest length.
    let mut lengths: Vec<(usize, f32)> = Vec::new();
    for r in &usable {
        match lengths.iter_mut().find(|(l, _)| *l == r.text.len()) {
            Some(e) => e.1 += r.weight,
            None => lengths.push((r.text.len(), r.weight)),
        }
    }
    lengths.sort_by(|a, b| b.1.total_cmp(&a.1));
    let len = lengths[0].0;
    if lengths.get(1).is_some_and(|l| l.1 >= lengths[0].1) {
        return disagree();
    }
    let group: Vec<&Usable> = usable.iter().filter(|r| r.text.len() == len).collect();
    let other_weight: f32 = usable
        .iter()
        .filter(|r| r.text.len() != len)
        .map(|r| r.weight)
        .sum();

    let tallies: Vec<Vec<(char, f32, usize)>> = (0..len).map(|i| tally(&group, i)).collect();
    let denom: Vec<f32> = tallies
        .iter()
        .map(|t| t.iter().map(|v| v.1).sum::<f32>() + other_weight)
        .collect();

    // The answer: per-position winners, or the best valid plate under the shares.
    let answer: Vec<char> = match grammar {
        None => {
            let mut out = Vec::with_capacity(len);
            for t in &tallies {
                match (t.first(), t.get(1)) {
                    (Some(a), Some(b)) if a.1 <= b.1 => return disagree(),
                    (Some(a), _) => out.push(a.0),
                    (None, _) => return disagree(),
                }
            }
            out
        }
        Some(g) => {
            let columns: Vec<Vec<(char, f32)>> = tallies
                .iter()
                .zip(&denom)
                .map(|(t, d)| {
                    t.iter()
                        .map(|v| (v.0, v.1 / d.max(f32::MIN_POSITIVE)))
                        .collect()
                })
                .collect();
            let readings = g.readings(&columns, None, false);
            match (readings.first(), readings.get(1)) {
                (Some(a), Some(b)) if a.score <= b.score => return disagree(),
                (Some(a), _) => a.plate.canonical.chars().collect(),
                (None, _) => return disagree(),
            }
        }
    };

    // Agreement and strength.
    let mut agreement = 1.0f32;
    let mut strength = 1.0f32;
    for ((t, d), c) in tallies.iter().zip(&denom).zip(&answer) {
        let (w, n) = t
            .iter()
            .find(|v| v.0 == *c)
            .map_or((0.0, 0), |v| (v.1, v.2));
        let share = if *d > 0.0 { w / d } else { 0.0 };
        agreement = agreement.min(share);
        strength = strength.min(if n > 0 { w / n as f32 } else { 0.0 });
    }
    let text: String = answer.iter().collect();
    let support = usable.iter().filter(|r| r.text == answer).count();
    let best_whole = usable
        .iter()
        .filter(|r| r.text == answer)
        .map(|r| r.weight)
        .fold(0.0f32, f32::max);
    let confidence = clamp01(agreement * strength.min(best_whole));

    let rival = texts.iter().any(|(t, share)| {
        *t != text && *share + 1e-6 >= cfg.max_rival_share && grammar.is_none_or(|g| g.is_valid(t))
    });
    if agreement < cfg.min_agreement || rival || support == 0 {
        return disagree();
    }
    if confidence < cfg.min_confidence {
        return Fused::LowConfidence {
            text,
            confidence,
            support,
            total: usable.len(),
        };
    }
    Fused::Agreed {
        text,
        confidence,
        support,
        total: usable.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(list: &[(&str, f32)]) -> Vec<Read> {
        list.iter().map(|(t, c)| Read::uniform(t, *c)).collect()
    }

    #[test]
    fn char_conf_following_display_text_is_realigned() {
        let r = Read {
            text: "30A-123.45".into(),
            char_conf: vec![0.9, 0.9, 0.9, 0.0, 0.5, 0.9, 0.9, 0.0, 0.9, 0.9],
            confidence: 0.9,
        };
        let u = prepare(&r).map(|u| u.conf);
        assert_eq!(u, Some(vec![0.9, 0.9, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9]));
    }

    #[test]
    fn bad_confidences_are_dropped_or_clamped() {
        assert!(prepare(&Read::uniform("30A12345", f32::NAN)).is_none());
        assert!(prepare(&Read::uniform("30A12345", 0.0)).is_none());
        assert!(prepare(&Read::uniform("--", 0.9)).is_none());
        let r = Read {
            text: "30A1".into(),
            char_conf: vec![f32::NAN, 2.0, -1.0, 0.5],
            confidence: 3.0,
        };
        let u = prepare(&r).map(|u| (u.conf, u.weight));
        assert_eq!(u, Some((vec![0.0, 1.0, 0.0, 0.5], 1.0)));
    }

    #[test]
    fn tie_between_lengths_is_refused() {
        let r = reads(&[
            ("30A12345", 0.9),
            ("30A1234", 0.9),
            ("30A12345", 0.9),
            ("30A1234", 0.9),
        ]);
        assert!(matches!(
            fuse(&r, &FuseConfig::default()),
            Fused::Disagree { .. }
        ));
    }
}
