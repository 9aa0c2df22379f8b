//! Constrained decoding: the best valid plates for per-position alternatives.
//!
//! Input is one column per plate position, each a few candidate characters with
//! log-probabilities. For every layout of that length (and allowed by the
//! lines hint), each position becomes a unit of options: a character the slot
//! accepts as read (no correction), or one reached through the confusion table
//! (`O` read in a digit slot becomes `0`), scored with the confusion factor and
//! counted as a correction. The local code is one unit whose options are the
//! pairs of digits listed in the province data; a restricted series
//! (`series_in`) is one unit whose options are the allowed strings.
//!
//! A k-best Viterbi over units, with the number of corrections used as state
//! (at most `max_corrections`), gives each layout's best few distinct texts in
//! O(units × options × corrections × k) — no enumeration of all sequences.
//! Texts from all layouts are merged: one text may fit several layouts.

use super::PlateGrammar;
use super::alphabet::canonical_char;
use super::layout::Layout;

/// How many distinct texts each state (and the final answer) keeps.
pub(crate) const K_BEST: usize = 3;
/// Log-scores closer than this are a tie.
pub(crate) const TIE_EPS: f64 = 1e-9;

/// Candidates at one position: canonical character and log-probability.
pub(crate) type Column = Vec<(char, f64)>;

/// A valid text and the layouts it fits.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub text: Vec<char>,
    pub logp: f64,
    pub corrections: usize,
    /// Indices into the grammar's layouts, in data order.
    pub layouts: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Opt {
    text: Vec<char>,
    logp: f64,
    corr: usize,
}

/// Columns from a recogniser's alternatives: characters in canonical form,
/// probabilities clamped to (0, 1]; unusable entries (not a plate character,
/// NaN, zero or negative probability) are dropped; the best per character kept.
pub(crate) fn columns_from_scored(candidates: &[Vec<(char, f32)>]) -> Vec<Column> {
    candidates
        .iter()
        .map(|alts| {
            let mut col: Column = Vec::with_capacity(alts.len());
            for &(c, p) in alts {
                let Some(k) = canonical_char(c) else { continue };
                if !p.is_finite() || p <= 0.0 {
                    continue;
                }
                let lp = f64::from(p.min(1.0)).ln();
                match col.iter_mut().find(|(d, _)| *d == k) {
                    Some(e) => e.1 = e.1.max(lp),
                    None => col.push((k, lp)),
                }
            }
            col
        })
        .collect()
}

/// Columns for a text read with certainty: one candidate per position.
pub(crate) fn columns_from_text(chars: &[char]) -> Vec<Column> {
    chars.iter().map(|&c| vec![(c, 0.0)]).collect()
}

fn better(a: &Opt, b: &Opt) -> bool {
    a.logp > b.logp + TIE_EPS || ((a.logp - b.logp).abs() <= TIE_EPS && a.corr < b.corr)
}

/// Add `o` to `list`, one entry per text (the better), at most `k` entries, best first.
fn push_kbest(list: &mut Vec<Opt>, o: Opt, k: usize) {
    if let Some(pos) = list.iter().position(|x| x.text == o.text) {
        if better(&o, &list[pos]) {
            list.remove(pos);
        } else {
            return;
        }
    }
    let at = list
        .iter()
        .position(|x| better(&o, x))
        .unwrap_or(list.len());
    if at < k {
        list.insert(at, o);
        list.truncate(k);
    }
}

impl PlateGrammar {
    /// Best distinct valid texts for `columns`, best first.
    pub(crate) fn decode_columns(
        &self,
        columns: &[Column],
        lines_hint: Option<u8>,
        allow_corrections: bool,
    ) -> Vec<Decoded> {
        let max_corr = if allow_corrections {
            self.max_corrections
        } else {
            0
        };
        let mut merged: Vec<Decoded> = Vec::new();
        for (li, layout) in self.layouts.iter().enumerate() {
            if layout.len() != columns.len() || !layout.allows_lines(lines_hint) {
                continue;
            }
            for o in self.decode_layout(layout, columns, max_corr) {
                match merged.iter_mut().find(|d| d.text == o.text) {
                    Some(d) => {
                        if o.logp > d.logp + TIE_EPS {
                            d.logp = o.logp;
                            d.corrections = o.corr;
                            d.layouts = vec![li];
                        } else if (o.logp - d.logp).abs() <= TIE_EPS {
                            d.layouts.push(li);
                        }
                    }
                    None => merged.push(Decoded {
                        text: o.text,
                        logp: o.logp,
                        corrections: o.corr,
                        layouts: vec![li],
                    }),
                }
            }
        }
        merged.sort_by(|a, b| {
            b.logp
                .total_cmp(&a.logp)
                .then(a.corrections.cmp(&b.corrections))
                .then(a.layouts.first().cmp(&b.layouts.first()))
        });
        merged
    }

    /// Options for one slot: accepted characters as read, and through confusions.
    fn slot_options(
        &self,
        col: &Column,
        accepts: impl Fn(char) -> bool,
        max_corr: usize,
    ) -> Vec<Opt> {
        let mut out: Vec<Opt> = Vec::new();
        let mut add = |c: char, logp: f64, corr: usize| {
            let o = Opt {
                text: vec![c],
                logp,
                corr,
            };
            // One option per (character, corrections); drop dominated ones.
            if out
                .iter()
                .any(|x| x.text == o.text && x.corr <= o.corr && x.logp >= o.logp - TIE_EPS)
            {
                return;
            }
            out.retain(|x| !(x.text == o.text && x.corr >= o.corr && x.logp <= o.logp + TIE_EPS));
            out.push(o);
        };
        for &(c, lp) in col {
            if accepts(c) {
                add(c, lp, 0);
            }
            if max_corr > 0
                && let Some(subs) = self.confusions.get(&c)
            {
                for &r in subs {
                    if accepts(r) {
                        add(r, lp + self.confusion_log_factor, 1);
                    }
                }
            }
        }
        out
    }

    /// The units of `layout` for `columns`, each a list of options.
    fn units(&self, layout: &Layout, columns: &[Column], max_corr: usize) -> Vec<Vec<Opt>> {
        let per_slot: Vec<Vec<Opt>> = layout
            .slots
            .iter()
            .zip(columns)
            .map(|(slot, col)| self.slot_options(col, |c| slot.accepts(c), max_corr))
            .collect();
        let mut units: Vec<Vec<Opt>> = Vec::with_capacity(per_slot.len());

        // Local code: pairs of digits that name a province.
        let mut local = Vec::new();
        if let (Some(a), Some(b)) = (per_slot.first(), per_slot.get(1)) {
            for x in a {
                for y in b {
                    let text = vec![x.text[0], y.text[0]];
                    let code: String = text.iter().collect();
                    if self.codes.contains_key(&code) && x.corr + y.corr <= max_corr {
                        local.push(Opt {
                            text,
                            logp: x.logp + y.logp,
                            corr: x.corr + y.corr,
                        });
                    }
                }
            }
        }
        units.push(local);

        let series = layout.series_range();
        if layout.series_in.is_empty() {
            units.extend(per_slot[series.clone()].iter().cloned());
        } else {
            let mut opts = Vec::new();
            'series: for s in &layout.series_in {
                let mut acc = Opt {
                    text: s.clone(),
                    logp: 0.0,
                    corr: 0,
                };
                for (j, &c) in s.iter().enumerate() {
                    let best = per_slot[series.start + j]
                        .iter()
                        .filter(|o| o.text[0] == c)
                        .fold(None::<&Opt>, |b, o| match b {
                            Some(b) if !better(o, b) => Some(b),
                            _ => Some(o),
                        });
                    match best {
                        Some(o) => {
                            acc.logp += o.logp;
                            acc.corr += o.corr;
                        }
                        None => continue 'series,
                    }
                }
                if acc.corr <= max_corr {
                    opts.push(acc);
                }
            }
            units.push(opts);
        }
        units.extend(per_slot[series.end..].iter().cloned());
        units
    }

    /// Best few distinct texts of one layout.
    fn decode_layout(&self, layout: &Layout, columns: &[Column], max_corr: usize) -> Vec<Opt> {
        let units = self.units(layout, columns, max_corr);
        // beams[k]: best partial texts that used k corrections.
        let mut beams: Vec<Vec<Opt>> = vec![Vec::new(); max_corr + 1];
        beams[0].push(Opt {
            text: Vec::with_capacity(layout.len()),
            logp: 0.0,
            corr: 0,
        });
        for unit in &units {
            if unit.is_empty() {
                return Vec::new();
            }
            let mut next: Vec<Vec<Opt>> = vec![Vec::new(); max_corr + 1];
            for beam in &beams {
                for h in beam {
                    for o in unit {
                        let corr = h.corr + o.corr;
                        if corr > max_corr {
                            continue;
                        }
                        let mut text = h.text.clone();
                        text.extend_from_slice(&o.text);
                        let cand = Opt {
                            text,
                            logp: h.logp + o.logp,
                            corr,
                        };
                        push_kbest(&mut next[corr], cand, K_BEST);
                    }
                }
            }
            beams = next;
        }
        let mut best: Vec<Opt> = Vec::new();
        for o in beams.into_iter().flatten() {
            push_kbest(&mut best, o, K_BEST);
        }
        best
    }
}
