//! The project's own plate recogniser (`vn_plate_rec`), described entirely
//! by its ONNX metadata so a retrained model drops in unchanged.
//!
//! Contract: input `image` f32 [N,C,H,W]; output `probs` [N,S,K], a softmax
//! per step with class 0 = pad/blank. Metadata keys: `alphabet` (K
//! characters in class order, class 0 written `_`), `input_height`,
//! `input_width`, `input_channels`, `color_order` (`RGB` | `GRAY`), `resize`
//! = `stretch`, `normalize` (`x/255` | `(x/255-0.5)/0.5`), `layout` =
//! `NCHW`, `decoder` and `slots` (S). Two decoders: `slots` (version 1: S
//! fixed character slots, pad slots dropped) and `ctc` (version 2: S CTC
//! steps over the plate's top row then its bottom row; repeats collapse,
//! blanks drop). A missing or unsupported value is an error naming the key.
//! The whole plate is read at once, two-line plates included.
//!
//! Optionally ([`SlotRecognizer::with_views`]) each crop is read in three
//! views in one run (as given, its border trimmed, its border padded),
//! each decoded on its own: the text is the crop's as given, and each
//! character gets the mean probability the agreeing views gave it, times
//! the share of views that agree. A read that depends on the exact framing
//! of the crop loses confidence instead of being answered.

use opencv::core::{
    BORDER_REPLICATE, CV_8UC3, Mat, MatTraitConst, MatTraitConstManual, Rect, Scalar, Size,
};
use opencv::imgproc;

use super::lines::guess_lines;
use super::{CharRead, LineRead, Recognizer, TOP_K, TextRead, top_k};
use crate::error::{CvContext, Result, VisionError};
use crate::image_file::{checked_size, continuous};
use crate::plate::PlateGrammar;
use crate::runtime::{Model, SessionConfig};

/// Manifest name of the model.
pub const MODEL_NAME: &str = "vn_plate_rec";

/// Colour order of the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorOrder {
    Rgb,
    Gray,
}

/// Pixel normalisation of the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// x/255
    Unit,
    /// (x/255-0.5)/0.5
    Signed,
}

/// How the model's output steps become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// One character (or pad) per slot.
    Slots,
    /// CTC: a run of the same class is one character; class 0 is the blank.
    Ctc,
}

/// What the model's metadata says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotContract {
    /// Class characters; index 0 is pad.
    pub alphabet: Vec<char>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub color: ColorOrder,
    pub normalize: Normalize,
    pub decoder: Decoder,
    pub slots: usize,
}

impl SlotContract {
    /// Reads and checks the contract through `get` (metadata lookup by key).
    pub fn from_metadata(
        get: impl Fn(&str) -> Result<Option<String>>,
    ) -> std::result::Result<SlotContract, String> {
        let need = |key: &str| -> std::result::Result<String, String> {
            match get(key) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(format!("metadata key `{key}` is missing")),
                Err(e) => Err(format!("metadata key `{key}`: {e}")),
            }
        };
        let number = |key: &str, max: usize| -> std::result::Result<usize, String> {
            let v = need(key)?;
            match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 && n <= max => Ok(n),
                _ => Err(format!(
                    "metadata key `{key}` = {v:?}: expected a number from 1 to {max}"
                )),
            }
        };
        let fixed = |key: &str, want: &str| -> std::result::Result<(), String> {
            let v = need(key)?;
            if v.trim().eq_ignore_ascii_case(want) {
                Ok(())
            } else {
                Err(format!(
                    "metadata key `{key}` = {v:?}: only `{want}` is supported"
                ))
            }
        };
        let alphabet: Vec<char> = need("alphabet")?.chars().collect();
        if alphabet.len() < 2 || alphabet[0] != '_' {
            return Err(format!(
                "metadata key `alphabet` must list the classes with pad `_` first, got {} characters",
                alphabet.len()
            ));
        }
        let height = number("input_height", 1024)?;
        let width = number("input_width", 2048)?;
        let channels = number("input_channels", 3)?;
        let color = match need("color_order")?.trim().to_ascii_uppercase().as_str() {
            "RGB" => ColorOrder::Rgb,
            "GRAY" | "GREY" => ColorOrder::Gray,
            other => {
                return Err(format!(
                    "metadata key `color_order` = {other:?}: expected RGB or GRAY"
                ));
            }
        };
        match (color, channels) {
            (ColorOrder::Rgb, 3) | (ColorOrder::Gray, 1) => {}
            _ => {
                return Err(format!(
                    "metadata keys `color_order` and `input_channels` disagree ({color:?}, {channels})"
                ));
            }
        }
        let normalize = match need("normalize")?.replace(' ', "").as_str() {
            "x/255" => Normalize::Unit,
            "(x/255-0.5)/0.5" => Normalize::Signed,
            other => {
                return Err(format!(
                    "metadata key `normalize` = {other:?}: expected x/255 or (x/255-0.5)/0.5"
                ));
            }
        };
        fixed("resize", "stretch")?;
        fixed("layout", "NCHW")?;
        let decoder = match need("decoder")?.trim().to_ascii_lowercase().as_str() {
            "slots" => Decoder::Slots,
            "ctc" => Decoder::Ctc,
            other => {
                return Err(format!(
                    "metadata key `decoder` = {other:?}: expected slots or ctc"
                ));
            }
        };
        let slots = number("slots", 256)?;
        Ok(SlotContract {
            alphabet,
            height,
            width,
            channels,
            color,
            normalize,
            decoder,
            slots,
        })
    }
}

/// The fixed-slot recogniser.
#[derive(Debug)]
pub struct SlotRecognizer {
    model: Model,
    contract: SlotContract,
    /// 1: the crop as given; 3: also trimmed and padded, averaged.
    views: u8,
}

/// What is wrong with an output of `shape` for `n` crops and an alphabet
/// of `k` classes, if anything: it must be `[n, S, K]` and a probability
/// distribution at every step.
fn output_problem(n: usize, shape: &[usize], probs: &[f32], k: usize) -> Option<String> {
    if shape.len() != 3 || shape[0] != n || shape[2] != k || shape[1] == 0 || k == 0 {
        return Some(format!(
            "output `probs` shape {shape:?} does not match [{n}, S, {k}] (the alphabet's size)"
        ));
    }
    super::ctc::output_problem(probs, k).map(|p| format!("output `probs`: {p}"))
}

/// Trimmed or padded by this fraction of the width on each side, and twice
/// that of the height (plates are wide; the characters nearly fill the
/// height).
const VIEW_MARGIN: f64 = 0.04;

impl SlotRecognizer {
    /// Loads `vn_plate_rec` through the manifest.
    pub fn load(config: SessionConfig) -> Result<SlotRecognizer> {
        SlotRecognizer::from_model(Model::load_named(MODEL_NAME, config)?)
    }

    /// Wraps a loaded model, reading its contract from its metadata.
    pub fn from_model(model: Model) -> Result<SlotRecognizer> {
        let contract = SlotContract::from_metadata(|k| model.metadata(k))
            .map_err(|m| model.contract_error(m))?;
        let shape = model.input_shape();
        let want = [contract.channels, contract.height, contract.width];
        if shape.len() != 4
            || shape[1..]
                .iter()
                .zip(want)
                .any(|(&d, w)| d >= 0 && d as usize != w)
        {
            return Err(model.contract_error(format!(
                "input shape {shape:?} does not match the metadata [N,{},{},{}]",
                want[0], want[1], want[2]
            )));
        }
        if !model.output_names().iter().any(|n| n == "probs") {
            return Err(model.contract_error("has no output named `probs`"));
        }
        let rec = SlotRecognizer {
            model,
            contract,
            views: 1,
        };
        // One read of a blank plate at load: an alphabet that does not fit
        // the output, or an output that is not a softmax (an export without
        // its last layer), stops the program here with a clear error
        // instead of making every plate of a running edge unreadable — or
        // worse, reading logits as certainties.
        let c = &rec.contract;
        let blank = vec![0.5f32; c.channels * c.height * c.width];
        let (shape, probs) =
            rec.model
                .run(&[1, c.channels, c.height, c.width], &blank, Some("probs"))?;
        rec.check_output(1, &shape, &probs)?;
        Ok(rec)
    }

    /// The output must be `[n, S, K]` with K the alphabet's size, and a
    /// probability distribution at every step.
    fn check_output(&self, n: usize, shape: &[usize], probs: &[f32]) -> Result<()> {
        match output_problem(n, shape, probs, self.contract.alphabet.len()) {
            Some(problem) => Err(self.model.contract_error(problem)),
            None => Ok(()),
        }
    }

    /// Reads each crop in `views` views (1, or 3: as given, trimmed,
    /// padded; see the module doc); anything but 3 means 1.
    pub fn with_views(mut self, views: u8) -> Self {
        self.views = if views == 3 { 3 } else { 1 };
        self
    }

    /// One view's output (`S` steps of `K` probabilities) as text: for a
    /// CTC model the most probable valid plate ([`super::ctc`]), else (and
    /// when no valid plate fits) the greedy read.
    fn decode(&self, probs: &[f32], constrained: bool) -> LineRead {
        let c = &self.contract;
        if constrained
            && c.decoder == Decoder::Ctc
            && let Some(read) = super::ctc::decode(probs, &c.alphabet, PlateGrammar::builtin())
        {
            return read.line();
        }
        self.decode_greedy(probs)
    }

    /// Greedy decoding of this model's output ([`greedy`]).
    fn decode_greedy(&self, probs: &[f32]) -> LineRead {
        greedy(probs, &self.contract.alphabet, self.contract.decoder)
    }

    /// The crop as given and, with three views, trimmed and padded by
    /// [`VIEW_MARGIN`].
    fn views_of(&self, crop: &Mat, w: i32, h: i32) -> Result<Vec<Mat>> {
        let mut out = vec![crop.clone()];
        if self.views != 3 {
            return Ok(out);
        }
        let dx = ((f64::from(w) * VIEW_MARGIN).round() as i32).max(1);
        let dy = ((f64::from(h) * 2.0 * VIEW_MARGIN).round() as i32).max(1);
        if w > 4 * dx && h > 4 * dy {
            let inner = Mat::roi(crop, Rect::new(dx, dy, w - 2 * dx, h - 2 * dy))
                .cv("trimming a plate crop")?;
            out.push(inner.try_clone().cv("trimming a plate crop")?);
        } else {
            out.push(crop.clone());
        }
        let mut padded = Mat::default();
        opencv::core::copy_make_border(
            crop,
            &mut padded,
            dy,
            dy,
            dx,
            dx,
            BORDER_REPLICATE,
            Scalar::default(),
        )
        .cv("padding a plate crop")?;
        out.push(padded);
        Ok(out)
    }

    /// The model's contract.
    pub fn contract(&self) -> &SlotContract {
        &self.contract
    }

    fn tensor(&self, crop: &Mat) -> Result<Vec<f32>> {
        let c = &self.contract;
        // Same order and interpolation as training and `models/recogniser/common.py`
        // (colour conversion, then bilinear stretch): small crops are enlarged
        // here, and INTER_AREA enlarges almost like nearest-neighbour, which cost
        // 9 points on `vn_crops_small`.
        let code = match c.color {
            ColorOrder::Rgb => imgproc::COLOR_BGR2RGB,
            ColorOrder::Gray => imgproc::COLOR_BGR2GRAY,
        };
        let mut converted = Mat::default();
        imgproc::cvt_color_def(crop, &mut converted, code).cv("converting a plate crop")?;
        let mut conv = Mat::default();
        imgproc::resize(
            &converted,
            &mut conv,
            Size::new(c.width as i32, c.height as i32),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )
        .cv("resizing a plate crop")?;
        let conv = continuous(&conv)?;
        let bytes = conv.data_bytes().cv("reading a plate crop")?;
        let plane = c.height * c.width;
        let mut data = vec![0.0f32; c.channels * plane];
        for (px, chunk) in bytes.chunks_exact(c.channels).enumerate() {
            for (ch, &b) in chunk.iter().enumerate() {
                let x = f32::from(b) / 255.0;
                data[ch * plane + px] = match c.normalize {
                    Normalize::Unit => x,
                    Normalize::Signed => (x - 0.5) / 0.5,
                };
            }
        }
        Ok(data)
    }
}

impl Recognizer for SlotRecognizer {
    fn name(&self) -> &str {
        "vn"
    }

    fn read(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<TextRead> {
        self.read_decoded(crop, lines_hint, true)
    }

    /// The greedy read, without the grammar's constraint (the baseline
    /// `plate-ocr eval --raw` measures).
    fn read_raw(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<TextRead> {
        self.read_decoded(crop, lines_hint, false)
    }
}

impl SlotRecognizer {
    /// Reads `crop`; `constrained`: CTC decoding restricted to valid plates.
    fn read_decoded(
        &self,
        crop: &Mat,
        lines_hint: Option<u8>,
        constrained: bool,
    ) -> Result<TextRead> {
        let (w, h) = checked_size(crop, "plate crop")?;
        if crop.typ() != CV_8UC3 {
            return Err(VisionError::Config(format!(
                "plate crop must be 8-bit BGR, got OpenCV type {}",
                crop.typ()
            )));
        }
        let c = &self.contract;
        let views = self.views_of(crop, w, h)?;
        let n = views.len();
        let mut data = Vec::with_capacity(n * c.channels * c.height * c.width);
        for v in &views {
            data.extend(self.tensor(v)?);
        }
        let (shape, all) =
            self.model
                .run(&[n, c.channels, c.height, c.width], &data, Some("probs"))?;
        self.check_output(n, &shape, &all)?;
        // Each view decoded on its own (CTC steps are not aligned across
        // views, so their probabilities cannot be averaged step by step).
        let per_view = all.len() / n;
        if per_view == 0 {
            return Err(self
                .model
                .contract_error(format!("output `probs` shape {shape:?} has no steps")));
        }
        let reads: Vec<LineRead> = all
            .chunks_exact(per_view)
            .map(|probs| self.decode(probs, constrained))
            .collect();
        let mut line = reads[0].clone();
        if n > 1 {
            // Each character gets the mean probability the views that read
            // the same text as the crop as given gave it, times the share of
            // views that read that text. (The least instead of the mean was
            // measured too: as safe, but it answered fewer plates.)
            let agreeing: Vec<&LineRead> = reads.iter().filter(|r| r.text == line.text).collect();
            let share = agreeing.len() as f32 / n as f32;
            for (i, ch) in line.chars.iter_mut().enumerate() {
                let mean =
                    agreeing.iter().map(|r| r.chars[i].prob).sum::<f32>() / agreeing.len() as f32;
                let scaled = mean * share;
                let factor = if ch.prob > 0.0 { scaled / ch.prob } else { 0.0 };
                ch.prob = scaled;
                for alt in &mut ch.alternatives {
                    alt.1 *= factor;
                }
            }
        }
        Ok(TextRead {
            lines: vec![line],
            plate_lines: Some(lines_hint.unwrap_or_else(|| guess_lines(w, h))),
        })
    }
}

/// Greedy decoding: the argmax per step (CTC: repeats collapsed, blanks
/// dropped; slots: pads dropped). A fixed-slot model pads only after
/// the plate's last character, so a pad *between* characters is a
/// character it could not read: the next character's probability is
/// multiplied by the pad's, so the hole lowers the read's confidence
/// instead of making a shorter plate for free (`30A1_345` was read
/// `30A1345`, a valid four-digit plate, scored on its other characters).
fn greedy(probs: &[f32], alphabet: &[char], decoder: Decoder) -> LineRead {
    let k = alphabet.len();
    let mut line = LineRead::default();
    let mut previous = 0usize;
    let mut hole = 1.0f32;
    for slot in probs.chunks_exact(k) {
        let best = argmax(slot);
        let repeat = decoder == Decoder::Ctc && best == previous;
        previous = best;
        if best == 0 && decoder == Decoder::Slots && !line.chars.is_empty() {
            hole *= slot[0];
        }
        if best == 0 || repeat {
            continue;
        }
        let alts = top_k(
            slot.iter()
                .enumerate()
                .skip(1)
                .map(|(i, &p)| (alphabet[i], p))
                .collect(),
            TOP_K,
        );
        let pad = slot[0];
        let Some(&(ch, p)) = alts.first() else {
            continue;
        };
        if pad >= p {
            if decoder == Decoder::Slots && !line.chars.is_empty() {
                hole *= pad;
            }
            continue;
        }
        line.text.push(ch);
        line.chars.push(CharRead {
            ch,
            prob: p * hole,
            alternatives: alts.into_iter().map(|(a, q)| (a, q * hole)).collect(),
        });
        hole = 1.0;
    }
    line
}

/// Index of the largest value (the first on ties; 0 for an empty slice).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::{Decoder, greedy, output_problem};

    #[test]
    fn a_pad_between_characters_costs_the_next_one_its_probability() {
        let alphabet: Vec<char> = "_0123A".chars().collect();
        let step = |c: char, p: f32| {
            let mut v = vec![(1.0 - p) / 5.0; 6];
            v[alphabet.iter().position(|&a| a == c).unwrap()] = p;
            v
        };
        // 3 0 A 1 _ 3 _ _ : the fifth slot is a pad at 0.5 beside a 2 at
        // 0.45 the model could not make out.
        let mut probs = Vec::new();
        for (c, p) in [
            ('3', 0.98),
            ('0', 0.98),
            ('A', 0.98),
            ('1', 0.98),
            ('_', 0.5),
        ] {
            probs.extend(step(c, p));
        }
        probs.extend(step('3', 0.98));
        probs.extend(step('_', 0.99));
        let read = greedy(&probs, &alphabet, Decoder::Slots);
        assert_eq!(read.text, "30A13");
        let conf: Vec<f32> = read.chars.iter().map(|c| c.prob).collect();
        assert!(conf[..4].iter().all(|p| *p > 0.97), "{conf:?}");
        assert!(
            (conf[4] - 0.49).abs() < 1e-3,
            "the hole costs its pad: {conf:?}"
        );
        // Pads after the last character cost nothing; CTC blanks neither.
        let ctc = greedy(&probs, &alphabet, Decoder::Ctc);
        assert!(ctc.chars.iter().all(|c| c.prob > 0.97), "{:?}", ctc.chars);
    }

    #[test]
    fn only_a_softmax_of_the_alphabets_size_is_an_output() {
        let softmax = [0.7, 0.2, 0.1, 0.0, 0.5, 0.5];
        assert_eq!(output_problem(1, &[1, 2, 3], &softmax, 3), None);
        // Logits (an export without its softmax) would read as certainties.
        let logits = [8.3, -2.1, 0.4, 1.0, 0.2, -0.5];
        assert!(output_problem(1, &[1, 2, 3], &logits, 3).is_some_and(|m| m.contains("softmax")));
        // An alphabet one class short of the output.
        assert!(output_problem(1, &[1, 2, 3], &softmax, 2).is_some_and(|m| m.contains("shape")));
        assert!(output_problem(1, &[1, 2, 3], &[f32::NAN; 6], 3).is_some());
    }
}
