//! Reading text into a [`PlateNumber`]: strict parsing, lenient interpretation,
//! and constrained decoding of a recogniser's per-position alternatives.
//!
//! Rules shared by all three:
//! - a reading must fit a layout of its length and name a known local code;
//! - where the text fits several layouts, the layout is chosen by, in order:
//!   the separators of the given text (a break must fall where the layout's
//!   display has a separator; only for text input), then the data's order;
//!   other fitting layouts are listed in `alternatives`;
//! - a lines hint from the detector excludes layouts whose plates never have
//!   that many lines; `lines` is the hint, or the line count every fitting
//!   layout agrees on, or `None`;
//! - the lenient readers refuse (return `None`) when two *different* plates
//!   score exactly the same: a tie is a guess, and a wrong guess fines an
//!   innocent owner.

use super::PlateGrammar;
use super::alphabet::scan;
use super::decode::{Decoded, TIE_EPS, columns_from_scored, columns_from_text};
use super::error::GrammarError;
use super::number::{PlateNumber, VehicleKind};

/// One valid reading from constrained decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The plate.
    pub plate: PlateNumber,
    /// Product of the chosen characters' probabilities, each correction
    /// through the confusion table multiplied by the confusion factor.
    pub score: f32,
    /// How many characters were replaced through the confusion table.
    pub corrections: usize,
}

impl PlateGrammar {
    /// Parse plate text strictly: canonical (`30A12345`) or display
    /// (`30A-123.45`, `29-B1 123.45`, `30A\n123.45`) form, any of the
    /// separators `-` `.` `·` dashes and whitespace, lower case accepted.
    /// No confusion correction: the characters must fit a layout as given.
    pub fn parse(&self, text: &str) -> Result<PlateNumber, GrammarError> {
        let scanned = scan(text);
        if let Some((ch, position)) = scanned.bad {
            return Err(GrammarError::BadCharacter {
                ch,
                position,
                reason: "not a letter, digit or separator".to_string(),
            });
        }
        if scanned.chars.is_empty() {
            return Err(GrammarError::Empty);
        }
        let chars: Vec<char> = scanned.chars.iter().map(|(c, _)| *c).collect();
        let decoded = self.decode_columns(&columns_from_text(&chars), None, false);
        match decoded.first() {
            Some(d) => Ok(self.plate_of(d, None, Some(&scanned.breaks))),
            None => Err(self.diagnose(&scanned.chars, &scanned.breaks)),
        }
    }

    /// The display form of a canonical plate on a vehicle of `kind`: one
    /// canonical text can fit a car's and a motorbike's layout (`29B11234`
    /// is car `29B-112.34` and motorbike `29-B1 1234`), and a notice must
    /// print the plate of the vehicle it is about. The preferred layout's
    /// display when none of that kind fits; `None` when the text is no plate.
    pub fn display_for(&self, canonical: &str, kind: VehicleKind) -> Option<String> {
        let p = self.parse(canonical).ok()?;
        let chars: Vec<char> = p.canonical.chars().collect();
        std::iter::once(&p.layout)
            .chain(&p.alternatives)
            .filter_map(|id| self.layout(id))
            .find(|l| l.vehicle == kind && l.len() == chars.len())
            .map(|l| l.render(&chars))
            .or(Some(p.display))
    }

    /// Interpret raw OCR text leniently: correct confusable characters by
    /// position (`3OA-I23.45` → `30A12345`, `29-81 123.45` → series `B1`) and
    /// return the valid reading needing the fewest corrections (at most the
    /// data's `max_corrections`). `None` if nothing valid fits, or if two
    /// different plates fit equally well.
    pub fn interpret(&self, raw: &str, lines_hint: Option<u8>) -> Option<PlateNumber> {
        let scanned = scan(raw);
        let chars: Vec<char> = scanned.chars.iter().map(|(c, _)| *c).collect();
        let decoded = self.decode_columns(&columns_from_text(&chars), lines_hint, true);
        let best = unambiguous(&decoded)?;
        Some(self.plate_of(best, lines_hint, Some(&scanned.breaks)))
    }

    /// Constrained decoding of a recogniser's output: `candidates[i]` holds
    /// alternative characters for position `i` (reading order) with their
    /// probabilities. Returns the valid plate with the highest product of
    /// probabilities, and that product; confusable characters may stand in for
    /// each other at the confusion factor's cost. `None` if nothing valid fits
    /// or two different plates tie.
    pub fn interpret_scored(
        &self,
        candidates: &[Vec<(char, f32)>],
        lines_hint: Option<u8>,
    ) -> Option<(PlateNumber, f32)> {
        let decoded = self.decode_columns(&columns_from_scored(candidates), lines_hint, true);
        let best = unambiguous(&decoded)?;
        Some((
            self.plate_of(best, lines_hint, None),
            best.logp.exp() as f32,
        ))
    }

    /// All valid readings found by constrained decoding, best first, one per
    /// distinct plate (a few at most). Unlike [`interpret_scored`], ties are
    /// returned rather than refused, so callers can apply their own margin.
    ///
    /// [`interpret_scored`]: PlateGrammar::interpret_scored
    pub fn readings(
        &self,
        candidates: &[Vec<(char, f32)>],
        lines_hint: Option<u8>,
        allow_corrections: bool,
    ) -> Vec<Reading> {
        let columns = columns_from_scored(candidates);
        self.decode_columns(&columns, lines_hint, allow_corrections)
            .iter()
            .map(|d| Reading {
                plate: self.plate_of(d, lines_hint, None),
                score: d.logp.exp() as f32,
                corrections: d.corrections,
            })
            .collect()
    }

    /// Whether `text` parses strictly.
    pub fn is_valid(&self, text: &str) -> bool {
        self.parse(text).is_ok()
    }

    /// Build the plate for a decoded text.
    fn plate_of(
        &self,
        d: &Decoded,
        lines_hint: Option<u8>,
        breaks: Option<&[usize]>,
    ) -> PlateNumber {
        // Prefer layouts whose separators fit the input's breaks, if any do.
        let mut fitting: Vec<usize> = d.layouts.clone();
        if let Some(breaks) = breaks.filter(|b| !b.is_empty()) {
            let fit: Vec<usize> = fitting
                .iter()
                .copied()
                .filter(|&i| self.layouts[i].separators_fit(breaks))
                .collect();
            if !fit.is_empty() {
                fitting = fit;
            }
        }
        let chosen = &self.layouts[fitting[0]];
        let text = &d.text;
        let canonical: String = text.iter().collect();
        let series = chosen.series_range();
        let local_code: String = text[..series.start].iter().collect();
        let code = self.codes.get(&local_code);
        let lines = lines_hint.or_else(|| {
            let first = &self.layouts[fitting[0]].lines;
            let same = fitting.iter().all(|&i| &self.layouts[i].lines == first);
            (same && first.len() == 1).then(|| first[0])
        });
        PlateNumber {
            display: chosen.render(text),
            local_code,
            series: text[series.clone()].iter().collect(),
            number: text[series.end..].iter().collect(),
            layout: chosen.id.clone(),
            lines,
            vehicle: chosen.vehicle,
            province: code.map(|c| c.province.clone()),
            alternatives: fitting[1..]
                .iter()
                .map(|&i| self.layouts[i].id.clone())
                .collect(),
            check: chosen.check,
            canonical,
        }
    }

    /// Why `chars` (canonical, with input positions) fit no layout. The
    /// closest layout is the one matching the longest prefix; among those, one
    /// whose separators fit the input's, then the first in the data.
    fn diagnose(&self, chars: &[(char, usize)], breaks: &[usize]) -> GrammarError {
        let alphabet = self.alphabet();
        if let Some(&(ch, position)) = chars.iter().find(|(c, _)| !alphabet.contains(c)) {
            let reason = if matches!(ch, 'I' | 'J' | 'O' | 'Q' | 'W') {
                "I, J, O, Q and W are not used on Vietnamese plates"
            } else {
                "no plate layout uses this character"
            };
            return GrammarError::BadCharacter {
                ch,
                position,
                reason: reason.to_string(),
            };
        }
        let text: String = chars.iter().map(|(c, _)| *c).collect();
        let len = chars.len();
        let candidates: Vec<_> = self.layouts.iter().filter(|l| l.len() == len).collect();
        if candidates.is_empty() {
            return GrammarError::NoLayoutOfLength { text, len };
        }
        if let [(a, _), (b, _), ..] = chars
            && a.is_ascii_digit()
            && b.is_ascii_digit()
        {
            let code: String = [*a, *b].iter().collect();
            if !self.codes.contains_key(&code) {
                return GrammarError::UnknownLocalCode { code };
            }
        }
        // The closest layout; its first mismatch.
        let mut best: Option<((usize, bool), &str, String)> = None;
        for layout in candidates {
            let mut fail = None;
            for (i, ((c, _), slot)) in chars.iter().zip(&layout.slots).enumerate() {
                if !slot.accepts(*c) {
                    fail = Some((i, slot.expected()));
                    break;
                }
            }
            if fail.is_none() && !layout.series_in.is_empty() {
                let series = layout.series_range();
                let got: Vec<char> = chars[series.clone()].iter().map(|(c, _)| *c).collect();
                if !layout.series_in.contains(&got) {
                    let list = layout.series_in().join(", ");
                    fail = Some((series.start, format!("the start of a series in {list}")));
                }
            }
            if let Some((i, expected)) = fail {
                let rank = (i, layout.separators_fit(breaks));
                if best.as_ref().is_none_or(|(r, _, _)| rank > *r) {
                    best = Some((rank, &layout.id, expected));
                }
            }
        }
        match best {
            Some(((i, _), layout, expected)) => {
                let (ch, position) = chars[i];
                GrammarError::NoLayoutMatches {
                    text,
                    layout: layout.to_string(),
                    position,
                    ch,
                    expected,
                }
            }
            // Every layout of this length accepts the characters: only the
            // local code can be at fault.
            None => GrammarError::UnknownLocalCode {
                code: text.chars().take(2).collect(),
            },
        }
    }
}

/// The best reading, unless a different plate scores the same.
fn unambiguous(decoded: &[Decoded]) -> Option<&Decoded> {
    let best = decoded.first()?;
    match decoded.get(1) {
        Some(second) if (best.logp - second.logp).abs() <= TIE_EPS => None,
        _ => Some(best),
    }
}
