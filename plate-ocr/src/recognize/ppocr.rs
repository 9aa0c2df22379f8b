//! The PP-OCRv4 baseline recogniser (`ppocr_v4_rec`): a one-line CTC text
//! reader over a 6,625-class dictionary, used here restricted to the plate
//! alphabet.
//!
//! Input `x` f32 [N,3,48,W], BGR, (x/255−0.5)/0.5, height 48, width by the
//! line's aspect ratio (a multiple of 8, at most `max_width`; narrow plate
//! lines make it much cheaper than the usual 320). Output [N,T,C] softmax;
//! class 0 is the CTC blank, classes 1..=6623 the dictionary stored in the
//! model's metadata key `character` (one entry per line), and the last class
//! a space. Two-line plates are cut into their lines and read as a batch of
//! two.
//!
//! Restricted decoding keeps only the blank, separators (`-`, `.`, space:
//! they emit nothing) and the plate alphabet (digits, A–Z, Đ; lower case
//! merged into upper case; a full-width form such as `３` or `Ｂ`, which
//! the dictionary has beside the ASCII one, is that character): every
//! other class is masked out. Nothing else outside the mask is mapped to
//! a plate character; the grammar's confusion table does that by
//! position. The mask chooses, it does not vouch: each step is scaled over
//! the kept classes and the single most probable other class only (the
//! thin tail of the 6,625-class softmax is dropped), so a step the model
//! gave 97% to a Chinese character and 2% to `8` reads `8` at 2%, not at
//! the 99% a mask renormalised over the plate classes would claim; and a
//! plate character read as a non-plate class (`〇` for `0`) leaves its
//! probability out of every path, so the read is unsure rather than one
//! character shorter.
//!
//! The plate's lines (one, or two joined top first with a blank step
//! between them) are decoded together by the grammar-constrained CTC
//! search ([`super::ctc`]): the most probable *valid plate* over all
//! alignments, which keeps a doubled character (`122.45`) that greedy
//! decoding collapses into a different, shorter valid plate. Where no
//! valid plate fits, the greedy restricted read is returned (the grammar
//! then finds no plate in it, or one only by correction, at a cost).

use opencv::core::{CV_8UC3, Mat, MatTraitConst, MatTraitConstManual, Size};
use opencv::imgproc;

use super::lines::{guess_lines, split_lines};
use super::{CharRead, LineRead, Recognizer, TOP_K, TextRead, top_k};
use crate::error::{CvContext, Result, VisionError};
use crate::image_file::{checked_size, continuous};
use crate::plate::{PlateGrammar, canonicalize};
use crate::runtime::{Model, SessionConfig};

/// Manifest name of the model.
pub const MODEL_NAME: &str = "ppocr_v4_rec";
const HEIGHT: usize = 48;

/// What a dictionary class stands for in restricted decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Blank,
    Separator,
    Plate(u8),
    Other,
}

/// What the dictionary entry `entry` (not the blank) stands for. A
/// full-width form (U+FF01–FF5E: `３`, `Ｂ`, `ｂ`, `－`, which the shipped
/// dictionary has beside the ASCII ones) is the ASCII character it is
/// another width of (its NFKC form), then read like any entry: lower case
/// and the look-alikes of `Đ` as [`canonicalize`] reads them. Anything
/// else that only looks like a plate character (`〇`, `口`, Greek `Ο`,
/// `①`) stays [`Class::Other`]: the step's probability for it is left out
/// of what the decoder sees, which lowers the read's probability rather
/// than choosing a character for it.
fn classify(entry: &str, plate_chars: &[char]) -> Class {
    let full_width = |c: char| match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    let mut it = entry.chars().map(full_width);
    match (it.next(), it.next()) {
        (Some('-' | '.' | '·' | ' ' | '–' | '—'), None) => Class::Separator,
        (Some(c), None) => {
            let canon = canonicalize(&c.to_string());
            canon
                .chars()
                .next()
                .and_then(|k| plate_chars.iter().position(|&p| p == k))
                .map_or(Class::Other, |p| Class::Plate(p as u8))
        }
        _ => Class::Other,
    }
}

/// The PP-OCRv4 recogniser.
#[derive(Debug)]
pub struct PpOcrRecognizer {
    model: Model,
    /// Text of each class (class 0, the blank, is empty).
    dict: Vec<String>,
    classes: Vec<Class>,
    /// The plate characters, indexed by `Class::Plate`.
    plate_chars: Vec<char>,
    max_width: usize,
}

impl PpOcrRecognizer {
    /// Loads `ppocr_v4_rec` through the manifest.
    pub fn load(config: SessionConfig) -> Result<PpOcrRecognizer> {
        PpOcrRecognizer::from_model(Model::load_named(MODEL_NAME, config)?)
    }

    /// Wraps a loaded model, reading and checking its dictionary.
    pub fn from_model(model: Model) -> Result<PpOcrRecognizer> {
        let shape = model.input_shape();
        if shape.len() != 4 || (shape[1] != 3 && shape[1] != -1) {
            return Err(model.contract_error(format!(
                "input must be [N,3,48,W], the file declares {shape:?}"
            )));
        }
        let text = model.metadata("character")?.ok_or_else(|| {
            model.contract_error("metadata key `character` (the dictionary) is missing")
        })?;
        let mut dict: Vec<String> = vec![String::new()];
        dict.extend(text.lines().map(|l| l.trim_end_matches('\r').to_string()));
        dict.push(" ".to_string());
        if dict.len() < 40 {
            return Err(model.contract_error(format!(
                "dictionary in `character` has only {} entries",
                dict.len() - 2
            )));
        }
        let plate_chars: Vec<char> = ('0'..='9').chain('A'..='Z').chain(['Đ']).collect();
        let classes = dict
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    Class::Blank
                } else {
                    classify(s, &plate_chars)
                }
            })
            .collect();
        Ok(PpOcrRecognizer {
            model,
            dict,
            classes,
            plate_chars,
            max_width: 320,
        })
    }

    /// Sets the widest input (pixels; a multiple of 8 is used).
    pub fn with_max_width(mut self, max_width: usize) -> Self {
        self.max_width = max_width.clamp(16, 2048) / 8 * 8;
        self
    }

    /// Number of classes the model outputs (blank, dictionary, space).
    pub fn classes(&self) -> usize {
        self.dict.len()
    }

    /// The line images of a crop: the crop itself, or its two lines.
    fn line_images(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<(Vec<Mat>, u8)> {
        let (w, h) = checked_size(crop, "plate crop")?;
        if crop.typ() != CV_8UC3 {
            return Err(VisionError::Config(format!(
                "plate crop must be 8-bit BGR, got OpenCV type {}",
                crop.typ()
            )));
        }
        let lines = lines_hint
            .filter(|&l| l == 1 || l == 2)
            .unwrap_or_else(|| guess_lines(w, h));
        if lines == 2 && h >= 8 {
            let split = split_lines(crop)?;
            let top = continuous(
                &Mat::roi(crop, split.top)
                    .cv("cutting the top line")?
                    .try_clone()
                    .cv("top line")?,
            )?;
            let bottom = continuous(
                &Mat::roi(crop, split.bottom)
                    .cv("cutting the bottom line")?
                    .try_clone()
                    .cv("bottom line")?,
            )?;
            Ok((vec![top, bottom], 2))
        } else {
            Ok((vec![crop.try_clone().cv("copying a crop")?], 1))
        }
    }

    /// Runs the model on the lines; returns per line the frames' probabilities.
    fn infer(&self, lines: &[Mat]) -> Result<(usize, usize, Vec<f32>)> {
        let mut widths = Vec::with_capacity(lines.len());
        for l in lines {
            let (w, h) = checked_size(l, "plate line")?;
            let scaled = ((HEIGHT as f32) * (w as f32) / (h as f32)).ceil() as usize;
            widths.push(scaled.clamp(16, self.max_width));
        }
        let batch_w = widths.iter().copied().max().unwrap_or(16).div_ceil(8) * 8;
        let n = lines.len();
        let plane = HEIGHT * batch_w;
        let mut data = vec![0.0f32; n * 3 * plane];
        for (i, (l, &w)) in lines.iter().zip(&widths).enumerate() {
            let mut resized = Mat::default();
            imgproc::resize(
                l,
                &mut resized,
                Size::new(w as i32, HEIGHT as i32),
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )
            .cv("resizing a plate line")?;
            let resized = continuous(&resized)?;
            let bytes = resized.data_bytes().cv("reading a plate line")?;
            let base = i * 3 * plane;
            for y in 0..HEIGHT {
                for x in 0..w {
                    let p = (y * w + x) * 3;
                    for c in 0..3 {
                        data[base + c * plane + y * batch_w + x] =
                            f32::from(bytes[p + c]) / 127.5 - 1.0;
                    }
                }
            }
        }
        let (shape, out) = self.model.run(&[n, 3, HEIGHT, batch_w], &data, None)?;
        if shape.len() != 3 || shape[0] != n || shape[2] != self.dict.len() {
            return Err(self.model.contract_error(format!(
                "output shape {shape:?} does not match [N={n}, T, {}] (the dictionary has {} classes)",
                self.dict.len(),
                self.dict.len()
            )));
        }
        // Like the project recogniser's check: a model that emits NaN, or
        // no softmax, is refused, not read (its greedy fallback would read
        // the finite steps of a failed model).
        if let Some(problem) = super::ctc::output_problem(&out, self.dict.len()) {
            return Err(self.model.contract_error(format!("output: {problem}")));
        }
        Ok((shape[1], shape[2], out))
    }

    fn reduced(&self, out: &[f32], lines: usize, t_len: usize, c_len: usize) -> Vec<f32> {
        reduce(
            out,
            &self.classes,
            self.plate_chars.len(),
            lines,
            t_len,
            c_len,
        )
    }

    /// Restricted CTC decoding of one line's frames.
    fn decode_restricted(&self, frames: &[f32], t_len: usize, c_len: usize) -> LineRead {
        let k = self.plate_chars.len();
        let mut line = LineRead::default();
        let mut plate = vec![0.0f32; k];
        // The character run in progress: (plate index, best prob, alternatives).
        let mut prev: Option<u8> = None;
        for t in 0..t_len {
            let row = &frames[t * c_len..(t + 1) * c_len];
            plate.iter_mut().for_each(|p| *p = 0.0);
            let (mut blank, mut sep) = (0.0f32, 0.0f32);
            for (p, class) in row.iter().zip(&self.classes) {
                match class {
                    Class::Blank => blank += p,
                    Class::Separator => sep += p,
                    Class::Plate(i) => plate[*i as usize] += p,
                    Class::Other => {}
                }
            }
            let kept = blank + sep + plate.iter().sum::<f32>();
            // The step's whole mass (1 for a softmax): confidences are the
            // model's own probabilities, not renormalised over the mask.
            let total = row.iter().sum::<f32>();
            if kept <= 0.0 || !kept.is_finite() || !total.is_finite() || total <= 0.0 {
                prev = None;
                continue;
            }
            let (best_i, best_p) =
                plate
                    .iter()
                    .enumerate()
                    .fold(
                        (0usize, f32::MIN),
                        |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
                    );
            if best_p <= blank || best_p <= sep {
                prev = None;
                continue;
            }
            let prob = best_p / total;
            let alts = || {
                top_k(
                    plate
                        .iter()
                        .enumerate()
                        .map(|(i, &p)| (self.plate_chars[i], p / total))
                        .collect(),
                    TOP_K,
                )
            };
            if prev == Some(best_i as u8) {
                if let Some(last) = line.chars.last_mut()
                    && prob > last.prob
                {
                    last.prob = prob;
                    last.alternatives = alts();
                }
            } else {
                let ch = self.plate_chars[best_i];
                line.chars.push(CharRead {
                    ch,
                    prob,
                    alternatives: alts(),
                });
                line.text.push(ch);
            }
            prev = Some(best_i as u8);
        }
        line
    }

    /// Plain CTC greedy decoding over the whole dictionary.
    fn decode_raw(&self, frames: &[f32], t_len: usize, c_len: usize) -> LineRead {
        let mut line = LineRead::default();
        let mut prev = 0usize;
        for t in 0..t_len {
            let row = &frames[t * c_len..(t + 1) * c_len];
            let (best, p) = row
                .iter()
                .enumerate()
                .fold(
                    (0usize, f32::MIN),
                    |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
                );
            if best != 0 && best != prev {
                let s = &self.dict[best];
                line.text.push_str(s);
                if let Some(ch) = s.chars().next() {
                    line.chars.push(CharRead {
                        ch,
                        prob: p,
                        alternatives: vec![(ch, p)],
                    });
                }
            } else if best != 0
                && best == prev
                && let Some(last) = line.chars.last_mut()
            {
                last.prob = last.prob.max(p);
            }
            prev = best;
        }
        line
    }

    fn read_with(&self, crop: &Mat, lines_hint: Option<u8>, raw: bool) -> Result<TextRead> {
        let (images, plate_lines) = self.line_images(crop, lines_hint)?;
        let (t_len, c_len, out) = self.infer(&images)?;
        if !raw {
            let probs = self.reduced(&out, images.len(), t_len, c_len);
            let alphabet: Vec<char> = std::iter::once('_')
                .chain(self.plate_chars.iter().copied())
                .collect();
            if let Some(read) = super::ctc::decode(&probs, &alphabet, PlateGrammar::builtin()) {
                return Ok(TextRead {
                    lines: vec![read.line()],
                    plate_lines: Some(plate_lines),
                });
            }
        }
        let per = t_len * c_len;
        let lines = (0..images.len())
            .map(|i| {
                let frames = &out[i * per..(i + 1) * per];
                if raw {
                    self.decode_raw(frames, t_len, c_len)
                } else {
                    self.decode_restricted(frames, t_len, c_len)
                }
            })
            .collect();
        Ok(TextRead {
            lines,
            plate_lines: Some(plate_lines),
        })
    }
}

/// `lines` lines of `t_len` steps of `c_len` classes each, reduced to blank
/// (with the separators) and the `k_plate` plate characters, lines joined
/// by one certain blank step, for [`super::ctc::decode`].
///
/// The other classes' mass is left out of the step (it sums to less than
/// 1), so the decoder sees where the model read a character outside the
/// plate alphabet: a blank step inside the plate with half its mass or
/// more on one such class is a character the answer lacks
/// ([`super::ctc`]'s contested steps), and a plate character the model
/// read as a non-plate class (`〇` at 0.96 for a `3`) makes the read unsure
/// instead of letting the decoder take the blank and answer a shorter
/// plate. Of that mass only the most probable single class counts; each
/// step is scaled to sum to blank, separators, plate characters and that
/// one class. The rest is the tail of a 6,625-class softmax, hundredths of
/// a percent on each of thousands of CJK characters: spread like that it
/// is no character the model saw.
fn reduce(
    out: &[f32],
    classes: &[Class],
    k_plate: usize,
    lines: usize,
    t_len: usize,
    c_len: usize,
) -> Vec<f32> {
    let k = 1 + k_plate;
    let mut reduced = Vec::with_capacity((lines * (t_len + 1)) * k);
    for line in 0..lines {
        if line > 0 {
            reduced.push(1.0);
            reduced.extend(std::iter::repeat_n(0.0, k - 1));
        }
        for t in 0..t_len {
            let at = (line * t_len + t) * c_len;
            let row = &out[at..at + c_len];
            let start = reduced.len();
            reduced.extend(std::iter::repeat_n(0.0f32, k));
            let mut other = 0.0f32;
            for (p, class) in row.iter().zip(classes) {
                match class {
                    Class::Blank | Class::Separator => reduced[start] += p,
                    Class::Plate(i) => reduced[start + 1 + *i as usize] += p,
                    Class::Other => other = other.max(*p),
                }
            }
            let whole = reduced[start..].iter().sum::<f32>() + other;
            if whole > 0.0 {
                reduced[start..].iter_mut().for_each(|p| *p /= whole);
            }
        }
    }
    reduced
}

impl Recognizer for PpOcrRecognizer {
    fn name(&self) -> &str {
        "ppocr"
    }

    fn read(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<TextRead> {
        self.read_with(crop, lines_hint, false)
    }

    fn read_raw(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<TextRead> {
        self.read_with(crop, lines_hint, true)
    }
}

#[cfg(test)]
mod tests;
