//! Reading the characters of an upright plate crop: the [`Recognizer`] trait
//! and what a read is ([`TextRead`]: text, per-character confidences and
//! alternatives per position).
//!
//! Two recognisers implement it: [`PpOcrRecognizer`] (the PP-OCRv4 baseline,
//! a one-line CTC reader; two-line plates are split into their lines first)
//! and [`SlotRecognizer`] (the project's own model, slots or CTC, which reads a
//! two-line plate whole and describes itself through its ONNX metadata).
//! Both give the plate grammar what it needs for constrained decoding
//! ([`TextRead::candidates`]) and what fusion needs (per-character
//! confidence).

pub mod ctc;
mod lines;
mod ppocr;
mod slots;

pub use lines::{LineSplit, guess_lines, split_lines};
pub use ppocr::PpOcrRecognizer;
pub use slots::{Decoder, SlotContract, SlotRecognizer};

use opencv::core::Mat;

use crate::error::Result;

/// How many alternatives per position a read keeps (the chosen one included).
pub const TOP_K: usize = 3;

/// One character of a read.
#[derive(Debug, Clone, PartialEq)]
pub struct CharRead {
    /// The character chosen.
    pub ch: char,
    /// Its probability (0–1).
    pub prob: f32,
    /// The best few characters at this position, best first, with their
    /// probabilities; the chosen one is first.
    pub alternatives: Vec<(char, f32)>,
}

/// One text line of a read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineRead {
    /// The characters in reading order.
    pub chars: Vec<CharRead>,
    /// Text as read, including characters outside the plate alphabet (raw reads).
    pub text: String,
}

/// What a recogniser read in one plate crop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextRead {
    /// The lines, top first (one for one-line plates and whole-plate readers).
    pub lines: Vec<LineRead>,
    /// How many text lines the recogniser saw on the plate, where it knows.
    pub plate_lines: Option<u8>,
}

impl TextRead {
    /// The text, lines separated by a space.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// All characters in reading order.
    pub fn chars(&self) -> impl Iterator<Item = &CharRead> {
        self.lines.iter().flat_map(|l| l.chars.iter())
    }

    /// Per-position alternatives for the grammar's constrained decoding.
    pub fn candidates(&self) -> Vec<Vec<(char, f32)>> {
        self.chars().map(|c| c.alternatives.clone()).collect()
    }

    /// Product of the chosen characters' probabilities (0 when nothing was read).
    pub fn confidence(&self) -> f32 {
        let mut n = 0;
        let p = self.chars().fold(1.0f32, |acc, c| {
            n += 1;
            acc * c.prob
        });
        if n == 0 { 0.0 } else { p }
    }
}

/// Reads the characters of an upright plate crop.
pub trait Recognizer: Send + Sync {
    /// A short name for logs and reports (`ppocr`, `vn`).
    fn name(&self) -> &str;

    /// Reads a BGR plate crop, restricted to the plate alphabet.
    /// `lines_hint` is the number of text lines if the detector knows it.
    fn read(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<TextRead>;

    /// The recogniser's unrestricted read (any character it knows), for
    /// measuring what the plate alphabet and grammar add. Defaults to
    /// [`read`](Recognizer::read) for readers that know only plate characters.
    fn read_raw(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<TextRead> {
        self.read(crop, lines_hint)
    }
}

/// The best `k` entries of `(char, prob)` pairs, best first.
pub(crate) fn top_k(mut v: Vec<(char, f32)>, k: usize) -> Vec<(char, f32)> {
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(k);
    v
}
