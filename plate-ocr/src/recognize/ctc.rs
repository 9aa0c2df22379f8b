//! Grammar-constrained CTC decoding: the most probable *valid plate* under
//! a CTC recogniser's per-step probabilities, instead of the most probable
//! step-by-step path.
//!
//! Greedy CTC decoding (argmax per step, collapse repeats, drop blanks) has
//! one failure the grammar cannot repair afterwards: a doubled character
//! (`77`, `11`, …) needs a blank step between its two runs, and a small,
//! blurred plate rarely gives the blank the argmax at any step, so `77A…`
//! collapses to `7A…`. A character-by-character correction of that text
//! then finds a *different* valid plate (`72A…`): a wrong read, the worst
//! outcome. This decoder runs CTC prefix beam search over the probabilities
//! and keeps only prefixes some plate layout can start with
//! ([`PlateGrammar::viable_prefix`]); the answer is the complete valid plate
//! with the highest total CTC probability (all its alignments summed).
//!
//! Per-character confidences come from the best alignment of that answer:
//! each character's probability at the step it is emitted, and for the
//! second of two equal neighbours the lesser of that and the best blank
//! between them (the evidence that there are two). The whole read is
//! scaled by how clearly the answer beats the runner-up valid plate (two
//! near-equal plates give a low confidence rather than a coin toss) and by
//! the probability of its best alignment over the argmax path's (a plate
//! that drops a character the model saw clearly, or adds one, pays).
//!
//! The argmax-path ratio alone does not see a character the grammar has
//! no room for: split between `B` (no letter fits a number slot) at 0.5
//! and the blank at 0.45, it leaves `30A1245`, a valid plate one character
//! short, the best valid plate by far, at a ratio of 0.9 for that step —
//! though the model gives that text only 0.39. So a blank step of the
//! answer's alignment where the blank has less than even odds costs its
//! absolute probability (the `B` is evidence of a character there, most
//! likely one the grammar would take, not of none). A plain cap by the
//! text's absolute probability (all alignments summed, kept in `prob`)
//! was tried and not kept: PP-OCRv4 leaves 5-12% of every blank step to
//! other classes, spread thin, and over 30-80 steps that took right reads
//! from 0.96 to 0.02 (12 instead of 17 of the small crops answered right
//! at 0.5, for one wrong answer fewer).

use crate::plate::PlateGrammar;
use std::collections::HashMap;

/// Prefixes kept per step.
pub const BEAM: usize = 16;
/// Classes below this probability at a step are not extended with.
const MIN_CLASS_P: f32 = 1e-2;

/// The best valid plate and what backs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstrainedRead {
    /// The plate's characters (canonical).
    pub text: Vec<char>,
    /// Class index (into the alphabet) of each character.
    pub classes: Vec<usize>,
    /// Per-character confidence, already scaled by the margin.
    pub char_probs: Vec<f32>,
    /// The step at which each character is emitted on the best alignment.
    pub steps: Vec<usize>,
    /// Total CTC probability of the answer, and of the runner-up valid
    /// plate (0 when there is none), on the model's absolute scale (the
    /// alignments the beam kept: at most the true total). Kept for what it
    /// says of the read, not as a cap on its confidence: PP-OCRv4 spreads
    /// a little of every blank step over other classes, which takes a
    /// right read's `prob` to a few percent.
    pub prob: f64,
    pub runner_up: f64,
}

impl ConstrainedRead {
    /// The read as a line with one candidate per position: the decoder
    /// already chose the most probable valid plate over all alternatives,
    /// and handing on a step's other classes (whose raw probabilities are
    /// not on the decoder's scale) would let a character correction undo it.
    pub fn line(&self) -> super::LineRead {
        let mut line = super::LineRead::default();
        for (&ch, &prob) in self.text.iter().zip(&self.char_probs) {
            line.text.push(ch);
            line.chars.push(super::CharRead {
                ch,
                prob,
                alternatives: vec![(ch, prob)],
            });
        }
        line
    }
}

/// How far a value may stray outside [0, 1] (rounding in the model's
/// softmax).
const VALUE_TOLERANCE: f32 = 1e-4;
/// How far a step's probabilities may sum from 1.
pub const SUM_TOLERANCE: f32 = 0.02;

/// Why `probs` (`steps × k`, a model's whole output) is not one
/// probability distribution per step, if it is not: a value not finite or
/// outside [0, 1], or a step not summing to 1 (within [`SUM_TOLERANCE`]);
/// a model exported without its softmax, or one that failed, is refused
/// rather than read.
pub fn output_problem(probs: &[f32], k: usize) -> Option<String> {
    if k == 0 || !probs.len().is_multiple_of(k) {
        return Some(format!(
            "{} values are not whole steps of {k} classes",
            probs.len()
        ));
    }
    probs.chunks_exact(k).enumerate().find_map(|(t, step)| {
        let sum: f32 = step.iter().sum();
        (!values_are_probabilities(step) || (sum - 1.0).abs() > SUM_TOLERANCE).then(|| {
            format!(
                "step {t} is not a probability distribution (values summing to {sum}); \
                 was the softmax left out of the export?"
            )
        })
    })
}

fn values_are_probabilities(step: &[f32]) -> bool {
    step.iter()
        .all(|p| p.is_finite() && (-VALUE_TOLERANCE..=1.0 + VALUE_TOLERANCE).contains(p))
}

/// Decodes `probs` (`steps × k`, softmax per step, class 0 = blank) over
/// `alphabet` (`alphabet[i]` is class `i`'s character) into the most
/// probable plate valid in `grammar`; `None` if no valid plate survives the
/// beam, or if a step is no probability distribution (a value not finite
/// or outside [0, 1], or summing to more than 1). A step may sum to *less*
/// than 1: the PP-OCRv4 reader hands on only the plate characters' share
/// of its dictionary, and checks the whole output with
/// [`output_problem`] first; what is missing lowers the probability of
/// every path through that step, and so the confidence of a read that
/// takes one.
pub fn decode(probs: &[f32], alphabet: &[char], grammar: &PlateGrammar) -> Option<ConstrainedRead> {
    let k = alphabet.len();
    // A model that gives NaN, infinite, negative or above-1 "probabilities"
    // has failed: nothing is read from it (a character could get a
    // probability above 1, and the read a confidence above 1).
    if k < 2
        || probs.len() < k
        || probs.chunks_exact(k).any(|step| {
            !values_are_probabilities(step) || step.iter().sum::<f32>() > 1.0 + SUM_TOLERANCE
        })
    {
        return None;
    }
    // Classes as canonical plate characters (a model whose alphabet says
    // `Ð` or lower case is read like the grammar reads text).
    let canonical: Vec<Option<char>> = alphabet
        .iter()
        .map(|c| crate::plate::canonicalize(&c.to_string()).chars().next())
        .collect();
    // A class that is no plate character (a separator, a space) is never
    // part of the answer: its probability counts as the blank's, so a
    // model that spells `1.1` still splits the two 1s.
    let mut merged = Vec::with_capacity(probs.len());
    for step in probs.chunks_exact(k) {
        let extra: f32 = step
            .iter()
            .zip(&canonical)
            .skip(1)
            .filter(|(_, c)| c.is_none())
            .map(|(p, _)| *p)
            .sum();
        merged.extend(step.iter().zip(&canonical).enumerate().map(|(i, (&p, c))| {
            if i == 0 {
                p + extra
            } else if c.is_some() {
                p
            } else {
                0.0
            }
        }));
    }
    let probs = merged.as_slice();
    // prefix (class indices) -> (p ending in blank, p ending in its last class)
    let mut beams: Vec<(Vec<usize>, f64, f64)> = vec![(Vec::new(), 1.0, 0.0)];
    // The beams are rescaled each step; the log of the factors taken out
    // puts their totals back on the model's absolute scale at the end.
    let mut log_scale = 0.0f64;
    let mut next: HashMap<Vec<usize>, (f64, f64)> = HashMap::new();
    let mut viable: HashMap<Vec<usize>, bool> = HashMap::new();
    let chars_of = |prefix: &[usize]| -> Vec<char> {
        prefix
            .iter()
            .filter_map(|&c| canonical.get(c).copied().flatten())
            .collect()
    };
    for step in probs.chunks_exact(k) {
        next.clear();
        let blank = f64::from(step[0]);
        for (prefix, pb, pnb) in &beams {
            let total = pb + pnb;
            let e = next.entry(prefix.clone()).or_default();
            e.0 += total * blank;
            if let Some(&last) = prefix.last() {
                e.1 += pnb * f64::from(step[last]);
            }
            for (c, &p) in step.iter().enumerate().skip(1) {
                // Too unlikely, or not a plate character (a separator
                // class): never part of the answer.
                if p < MIN_CLASS_P || canonical.get(c).copied().flatten().is_none() {
                    continue;
                }
                let mut grown = prefix.clone();
                grown.push(c);
                let ok = match viable.get(&grown) {
                    Some(ok) => *ok,
                    None => {
                        let ok = grammar.viable_prefix(&chars_of(&grown));
                        viable.insert(grown.clone(), ok);
                        ok
                    }
                };
                if !ok {
                    continue;
                }
                // After the same class, only a path through a blank starts
                // a new character.
                let from = if prefix.last() == Some(&c) {
                    *pb
                } else {
                    total
                };
                next.entry(grown).or_default().1 += from * f64::from(p);
            }
        }
        beams = next.drain().map(|(p, (b, nb))| (p, b, nb)).collect();
        beams.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
        beams.truncate(BEAM);
        // Rescaled each step so 48 steps of small probabilities cannot
        // underflow; the factor is kept (in `log_scale`).
        let top = beams.first().map_or(0.0, |b| b.1 + b.2);
        if top > 0.0 {
            log_scale += top.ln();
            for b in &mut beams {
                b.1 /= top;
                b.2 /= top;
            }
        }
    }
    let mut complete: Vec<(Vec<usize>, f64)> = beams
        .into_iter()
        .filter(|(p, _, _)| grammar.is_valid(&chars_of(p).iter().collect::<String>()))
        .map(|(p, b, nb)| (p, b + nb))
        .collect();
    complete.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (classes, relative) = complete.first().cloned()?;
    let runner_up = complete.get(1).map_or(0.0, |c| c.1);
    let (mut char_probs, steps, fit) = align(probs, k, &classes)?;
    let margin = if relative > 0.0 {
        relative / (relative + runner_up)
    } else {
        0.0
    };
    let absolute = |p: f64| {
        if p > 0.0 {
            (p.ln() + log_scale).exp()
        } else {
            0.0
        }
    };
    let (prob, runner_up) = (absolute(relative), absolute(runner_up));
    // The read's confidence (the product of its characters'): that of the
    // best alignment's characters, times the margin, times how far the
    // answer strays from what the model saw step by step (its best
    // alignment against the argmax path, a contested blank step at its
    // absolute probability: a plate that drops a character the model saw,
    // or adds one it did not, pays here).
    let read: f64 = char_probs.iter().map(|&p| f64::from(p)).product();
    let confidence = (read * margin * fit).clamp(0.0, 1.0);
    // Spread evenly over the characters (each loses the same factor).
    let per_char = if read > 0.0 {
        (confidence / read).powf(1.0 / classes.len().max(1) as f64) as f32
    } else {
        0.0
    };
    for p in &mut char_probs {
        *p *= per_char;
    }
    Some(ConstrainedRead {
        text: chars_of(&classes),
        classes,
        char_probs,
        steps,
        prob,
        runner_up,
    })
}

/// The best (Viterbi) alignment of `labels` to the steps: per label, its
/// probability at the step it is emitted (the best of its run) and that
/// step; a label equal to the one before it takes the lesser of that and
/// the best blank between them; and the alignment's probability over the
/// argmax path's (1 when the answer is what the model read step by step).
/// `None` if no alignment fits the steps.
/// Below this probability of the blank, a blank step of an alignment is
/// contested (see [`align`]).
const CONTESTED_BLANK: f32 = 0.5;

fn align(probs: &[f32], k: usize, labels: &[usize]) -> Option<(Vec<f32>, Vec<usize>, f64)> {
    let steps = probs.len() / k;
    let n = 2 * labels.len() + 1;
    let class = |s: usize| {
        if s.is_multiple_of(2) {
            0
        } else {
            labels[s / 2]
        }
    };
    // log-probabilities; from[t][s] = the state at t-1.
    let mut score = vec![f64::NEG_INFINITY; n];
    let mut from = vec![vec![0usize; n]; steps];
    let lp = |t: usize, c: usize| f64::from(probs[t * k + c]).max(1e-30).ln();
    score[0] = lp(0, 0);
    if n > 1 {
        score[1] = lp(0, class(1));
    }
    for (t, back) in from.iter_mut().enumerate().skip(1) {
        let mut now = vec![f64::NEG_INFINITY; n];
        for s in 0..n {
            let mut best = (score[s], s);
            if s >= 1 && score[s - 1] > best.0 {
                best = (score[s - 1], s - 1);
            }
            if s >= 2 && s % 2 == 1 && class(s) != class(s - 2) && score[s - 2] > best.0 {
                best = (score[s - 2], s - 2);
            }
            if best.0.is_finite() {
                now[s] = best.0 + lp(t, class(s));
                back[s] = best.1;
            }
        }
        score = now;
    }
    let mut s = if n >= 2 && score[n - 2] > score[n - 1] {
        n - 2
    } else {
        n - 1
    };
    if !score[s].is_finite() {
        return None;
    }
    let best_score = score[s];
    let mut state_at = vec![0usize; steps];
    for t in (0..steps).rev() {
        state_at[t] = s;
        if t > 0 {
            s = from[t][s];
        }
    }
    let argmax_path: f64 = probs
        .chunks_exact(k)
        .map(|step| {
            f64::from(step.iter().copied().fold(0f32, f32::max))
                .max(1e-30)
                .ln()
        })
        .sum();
    // A blank step of the answer's alignment where the model gives the
    // blank less than even odds and more likely saw a character there
    // costs the blank's own probability, not only its ratio to the step's
    // top class: with `B` at 0.5 and the blank at 0.45 in a number slot,
    // the ratio (0.9) let `30A1245` pass for `30A12345`. "Saw a character":
    // a plate character above the blank, or — between the answer's first
    // and last characters — at least half the step on one class outside
    // the alphabet (a reader with a wider dictionary hands on only the
    // plate classes, so the step sums to less than 1): a hole in the middle
    // of a plate is a character the reader could not name. At the plate's
    // ends such a class is a screw or the frame, and a confident blank step
    // is calibration (PP-OCRv4 leaves 5-12% of every blank step to other
    // classes, spread thin). Not the blank that must split two equal
    // characters either: its cost is in the second one's probability.
    let on_char = |t: &usize| state_at[*t] % 2 == 1;
    let first = (0..steps).find(on_char).unwrap_or(0);
    let last = (0..steps).rev().find(on_char).unwrap_or(0);
    let mut contested = 0.0f64;
    for (t, &s) in state_at.iter().enumerate() {
        let i = s / 2;
        let splits_twins = i > 0 && i < labels.len() && labels[i] == labels[i - 1];
        let step = &probs[t * k..(t + 1) * k];
        if s % 2 == 1 || splits_twins || step[0] >= CONTESTED_BLANK {
            continue;
        }
        let top_char = step[1..].iter().copied().fold(0f32, f32::max);
        let outside = 1.0 - step.iter().sum::<f32>();
        let interior = t > first && t < last;
        if top_char > step[0] || (interior && outside >= 0.5) {
            contested += f64::from(step.iter().copied().fold(0f32, f32::max))
                .max(1e-30)
                .ln();
        }
    }
    let fit = (best_score - argmax_path + contested).exp().min(1.0);
    let mut char_probs = vec![0f32; labels.len()];
    let mut emitted = vec![0usize; labels.len()];
    let mut blank_before = vec![0f32; labels.len()];
    for (t, &s) in state_at.iter().enumerate() {
        let p = probs[t * k + class(s)];
        if s % 2 == 1 {
            let i = s / 2;
            if p > char_probs[i] {
                char_probs[i] = p;
                emitted[i] = t;
            }
        } else if s / 2 < labels.len() {
            let i = s / 2;
            blank_before[i] = blank_before[i].max(p);
        }
    }
    for i in 1..labels.len() {
        if labels[i] == labels[i - 1] {
            char_probs[i] = char_probs[i].min(blank_before[i]);
        }
    }
    Some((char_probs, emitted, fit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHABET: &str = "_0123456789ABCDEFGHKLMNPSTUVXYZĐ";

    /// Steps that spell `path` (one class per step, `_` blank) with
    /// probability `p` each, the rest spread evenly.
    fn steps(path: &[(char, f32)]) -> (Vec<f32>, Vec<char>) {
        let alphabet: Vec<char> = ALPHABET.chars().collect();
        let k = alphabet.len();
        let mut probs = Vec::new();
        for &(c, p) in path {
            let i = alphabet.iter().position(|a| *a == c).unwrap();
            let rest = (1.0 - p) / (k - 1) as f32;
            probs.extend((0..k).map(|j| if j == i { p } else { rest }));
        }
        (probs, alphabet)
    }

    #[test]
    fn a_doubled_code_collapsed_by_greedy_decoding_is_read_whole() {
        // 7 7 7 (no blank above 0.3 between) L 1 3 5 6 8 9: greedy gives
        // 7L135689, no valid plate; the beam finds 77L135689.
        let mut path = vec![('7', 0.6), ('_', 0.3), ('7', 0.6)];
        for c in "L135689".chars() {
            path.push((c, 0.9));
            path.push(('_', 0.9));
        }
        // Make the blank between the 7s lose to 7 at its step.
        let (mut probs, alphabet) = steps(&path);
        let k = alphabet.len();
        let seven = alphabet.iter().position(|a| *a == '7').unwrap();
        probs[k + seven] = 0.6;
        probs[k] = 0.3;
        // The step's other classes share the rest: still a distribution.
        for (j, p) in probs[k..2 * k].iter_mut().enumerate() {
            if j != 0 && j != seven {
                *p = 0.1 / (k - 2) as f32;
            }
        }
        let g = PlateGrammar::builtin();
        let read = decode(&probs, &alphabet, g).unwrap();
        assert_eq!(read.text.iter().collect::<String>(), "77L135689");
        // The second 7 is only as sure as the blank that splits the two.
        assert!(read.char_probs[1] <= 0.31, "{:?}", read.char_probs);
        // The others stay sure: the blank that splits the two 7s is paid
        // for once, in the second 7.
        assert!(read.char_probs[2] > 0.8, "{:?}", read.char_probs);
    }

    #[test]
    fn clear_steps_read_as_written_and_nothing_valid_gives_none() {
        let mut path = Vec::new();
        for c in "30A12345".chars() {
            path.push((c, 0.95));
            path.push(('_', 0.95));
        }
        let (probs, alphabet) = steps(&path);
        let g = PlateGrammar::builtin();
        let read = decode(&probs, &alphabet, g).unwrap();
        assert_eq!(read.text.iter().collect::<String>(), "30A12345");
        assert!(
            read.char_probs.iter().all(|p| *p > 0.9),
            "{:?}",
            read.char_probs
        );
        assert_eq!(read.steps.len(), 8);

        // Two letters where the local code goes, everything sure: no plate
        // starts that way, and the beam has nothing else.
        let mut path = Vec::new();
        for c in "AB".chars() {
            path.push((c, 0.999));
            path.push(('_', 0.999));
        }
        let (probs, alphabet) = steps(&path);
        assert_eq!(decode(&probs, &alphabet, g), None);
        assert_eq!(decode(&[], &alphabet, g), None);
        let mut nan = probs.clone();
        nan[3] = f32::NAN;
        assert_eq!(
            decode(&nan, &alphabet, g),
            None,
            "a failed model reads nothing"
        );
    }

    #[test]
    fn steps_that_are_not_probabilities_read_nothing() {
        let mut path = Vec::new();
        for c in "30A12345".chars() {
            path.push((c, 0.95));
            path.push(('_', 0.95));
        }
        let (probs, alphabet) = steps(&path);
        let k = alphabet.len();
        let g = PlateGrammar::builtin();
        assert!(decode(&probs, &alphabet, g).is_some());
        // A value above 1 would give a character, and the read, a
        // "probability" above 1.
        let three = alphabet.iter().position(|a| *a == '3').unwrap();
        let mut big = probs.clone();
        big[three] = 1.5;
        assert_eq!(decode(&big, &alphabet, g), None, "value > 1");
        // Each value at most 1 but the step sums to far more than 1.
        let mut heavy = probs.clone();
        heavy[0] = 0.95;
        assert_eq!(decode(&heavy, &alphabet, g), None, "sum > 1");
        // A model's whole output: one softmax per step, or refused.
        assert_eq!(output_problem(&probs, k), None);
        for bad in [big, heavy] {
            assert!(output_problem(&bad, k).is_some());
        }
        let mut nan = probs.clone();
        nan[k + 3] = f32::NAN;
        assert!(output_problem(&nan, k).is_some(), "NaN");
        // Logits (no softmax): sums far from 1.
        let logits: Vec<f32> = probs.iter().map(|p| p * 0.2).collect();
        assert!(output_problem(&logits, k).is_some(), "sums to 0.2");
        assert!(output_problem(&probs[..k + 1], k).is_some(), "ragged");
    }

    #[test]
    fn a_plate_that_drops_a_clearly_seen_character_is_not_confident() {
        // The model clearly saw ten characters; no layout has `30A` and
        // seven digits, so the best valid plate drops one of them.
        let mut path = Vec::new();
        for c in "30A1234567".chars() {
            path.push((c, 0.95));
            path.push(('_', 0.95));
        }
        let (probs, alphabet) = steps(&path);
        let g = PlateGrammar::builtin();
        let confidence: f32 =
            decode(&probs, &alphabet, g).map_or(0.0, |r| r.char_probs.iter().product());
        assert!(confidence < 0.05, "{confidence}");
    }
}
