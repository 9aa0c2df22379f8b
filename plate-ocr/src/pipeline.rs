//! The whole read: detect → rectify → read → interpret with the grammar →
//! colour, giving one [`PlateRead`] per plate with its confidence.
//!
//! A plate whose reading is not a valid plate, or whose confidence is below
//! [`PipelineConfig::min_confidence`], comes back `unreadable` (no text),
//! with the raw read kept for the operator: a wrong read fines an innocent
//! owner, a refused one costs a manual look.

use std::path::Path;
use std::time::Instant;

use opencv::core::Mat;
use serde::Serialize;

use crate::colour::{ColourConfig, plate_colour};
use crate::crosscheck::CrossCheck;
use crate::detect::{Detection, PlateDetector};
use crate::error::{Result, VisionError};
use crate::image_file::{ImageLimits, checked_size, load_bgr};
use crate::plate::{PlateColour, PlateGrammar, canonicalize};
use crate::recognize::{CharRead, Recognizer, TextRead};
use crate::rectify::{RectifyConfig, rectify};

/// How the recogniser's output becomes a plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// The recogniser's unrestricted read, canonicalised: the baseline.
    Raw,
    /// The recogniser's own read (`Recognizer::read`), without the grammar
    /// step that corrects confusions. Both recognisers' reads are already
    /// grammar-constrained CTC decodes where a valid plate fits (since
    /// 2026-11-24 for PP-OCRv4), so this is no longer a "no grammar"
    /// baseline: `Raw` is.
    Alphabet,
    /// Restricted to the plate alphabet, then constrained decoding with the grammar.
    Grammar,
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Below this confidence a plate is reported unreadable.
    pub min_confidence: f32,
    pub mode: ReadMode,
    pub limits: ImageLimits,
    pub rectify: RectifyConfig,
    pub colour: ColourConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            min_confidence: 0.5,
            mode: ReadMode::Grammar,
            limits: ImageLimits::default(),
            rectify: RectifyConfig::default(),
            colour: ColourConfig::default(),
        }
    }
}

/// One character with its confidence and alternatives (for fusion).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CharOut {
    pub ch: char,
    pub prob: f32,
    pub alternatives: Vec<(char, f32)>,
}

impl From<&CharRead> for CharOut {
    fn from(c: &CharRead) -> Self {
        CharOut {
            ch: c.ch,
            prob: c.prob,
            alternatives: c.alternatives.clone(),
        }
    }
}

/// One plate read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlateRead {
    /// Canonical plate (`30E58670`); `None` when unreadable.
    pub text: Option<String>,
    /// Display form (`30E-586.70`); `None` when unreadable or not a valid plate.
    pub display: Option<String>,
    /// Confidence in the whole plate (0–1): the product of the characters'
    /// probabilities, with the grammar's cost for each correction.
    pub confidence: f32,
    /// Box in the image (x, y, w, h); the whole crop for crop input.
    pub bbox: [f32; 4],
    /// Plate corners (top-left, top-right, bottom-right, bottom-left).
    pub corners: [[f32; 2]; 4],
    /// Number of text lines.
    pub lines: Option<u8>,
    /// Background colour.
    pub colour: PlateColour,
    /// Whether the text is a valid plate by the grammar.
    pub valid: bool,
    /// True when the plate was seen but could not be read with enough confidence.
    pub unreadable: bool,
    /// What the recogniser read, before the grammar.
    pub raw: String,
    /// Grammar layout id, for valid plates.
    pub layout: Option<String>,
    /// Detector score (1 for crop input).
    pub detector_score: f32,
    /// Per character, in reading order: confidence and alternatives.
    pub chars: Vec<CharOut>,
    /// With a cross-check (see [`crate::crosscheck`]): the second
    /// recogniser's valid plate, when it read one, so an operator sees both
    /// readings when they disagree.
    pub second_opinion: Option<String>,
    /// The grammar's best valid plate when it scored under
    /// `min_confidence` (its score is `confidence`): not an answer, but a
    /// fusion of several frames must see that a frame nearly read another
    /// plate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_miss: Option<String>,
}

/// Plates found in one image, and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRead {
    pub plates: Vec<PlateRead>,
    /// Milliseconds spent on pixels and models (not on reading the file).
    pub ms: f64,
}

/// Detector, recogniser and grammar together.
pub struct Pipeline {
    detector: Option<Box<dyn PlateDetector>>,
    recognizer: Box<dyn Recognizer>,
    grammar: &'static PlateGrammar,
    config: PipelineConfig,
    window_search: Option<crate::search::WindowSearch>,
    cross_check: Option<(Box<dyn Recognizer>, CrossCheck)>,
}

impl Pipeline {
    /// A pipeline; `detector` may be `None` when only crops are read.
    pub fn new(
        detector: Option<Box<dyn PlateDetector>>,
        recognizer: Box<dyn Recognizer>,
        config: PipelineConfig,
    ) -> Pipeline {
        Pipeline {
            detector,
            recognizer,
            grammar: PlateGrammar::builtin(),
            config,
            window_search: None,
            cross_check: None,
        }
    }

    /// Also look for motorbike plates by reading windows where the detector
    /// finds none (see [`crate::search`]); worth it only with a fast
    /// recogniser.
    pub fn with_window_search(mut self, search: crate::search::WindowSearch) -> Pipeline {
        self.window_search = Some(search);
        self
    }

    /// Read every plate a second time with an independent recogniser and
    /// answer only as [`CrossCheck`] decides (grammar mode only; the baseline
    /// modes stay single-reader so they remain baselines).
    pub fn with_cross_check(mut self, second: Box<dyn Recognizer>, rule: CrossCheck) -> Pipeline {
        self.cross_check = Some((second, rule));
        self
    }

    /// The second recogniser, when cross-checking.
    pub fn cross_check(&self) -> Option<&dyn Recognizer> {
        self.cross_check.as_ref().map(|(r, _)| r.as_ref())
    }

    /// The motorbike window search, when enabled.
    pub fn window_search(&self) -> Option<&crate::search::WindowSearch> {
        self.window_search.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The recogniser.
    pub fn recognizer(&self) -> &dyn Recognizer {
        self.recognizer.as_ref()
    }

    /// Reads an image file: whole images are searched for plates; with
    /// `crop`, the file is one plate crop.
    pub fn read_path(&self, path: &Path, crop: bool) -> Result<ImageRead> {
        let image = load_bgr(path, &self.config.limits)?;
        let start = Instant::now();
        let plates = if crop {
            vec![self.read_crop(&image, None)?]
        } else {
            self.read_image(&image)?
        };
        Ok(ImageRead {
            plates,
            ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Finds and reads every plate in a BGR image. A detection that
    /// cannot be rectified or read (corners not finite or under two pixels
    /// apart: junk from the detector) is skipped and logged, so it cannot
    /// lose the image's other plates; errors of the image itself (the
    /// detector's) and of the recogniser's model (which every plate would
    /// meet) fail the image.
    pub fn read_image(&self, image: &Mat) -> Result<Vec<PlateRead>> {
        let detector = self.detector.as_ref().ok_or_else(|| {
            VisionError::Config("this pipeline has no plate detector (crop input only)".to_string())
        })?;
        let mut out = Vec::new();
        for det in detector.detect(image)? {
            match self.read_detection(image, &det) {
                Ok(read) => out.push(read),
                Err(e) if concerns_one_plate(&e) => {
                    tracing::warn!(bbox = ?det.bbox, corners = ?det.corners, score = det.score, error = %e, "detected plate skipped: it cannot be rectified or read");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Rectifies and reads one detected plate.
    pub fn read_detection(&self, image: &Mat, det: &Detection) -> Result<PlateRead> {
        let lines = det.lines.unwrap_or_else(|| {
            crate::recognize::guess_lines(det.bbox[2].round() as i32, det.bbox[3].round() as i32)
        });
        let crop = rectify(image, &det.corners, lines, &self.config.rectify)?;
        let mut read = self.read_crop(&crop, Some(lines))?;
        read.bbox = det.bbox;
        read.corners = det.corners;
        read.detector_score = det.score;
        Ok(read)
    }

    /// Reads one upright plate crop (BGR).
    pub fn read_crop(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<PlateRead> {
        let mut plate = self.read_text(crop, lines_hint)?;
        plate.colour = plate_colour(crop, &self.config.colour)?.0;
        Ok(plate)
    }

    /// [`read_crop`](Self::read_crop) without the plate colour (left
    /// `Unknown`): for callers that read many candidate crops and keep one.
    pub(crate) fn read_text(&self, crop: &Mat, lines_hint: Option<u8>) -> Result<PlateRead> {
        let (w, h) = checked_size(crop, "plate crop")?;
        let read = match self.config.mode {
            ReadMode::Raw => self.recognizer.read_raw(crop, lines_hint)?,
            _ => self.recognizer.read(crop, lines_hint)?,
        };
        let (wf, hf) = (w as f32, h as f32);
        let mut plate = PlateRead {
            text: None,
            display: None,
            confidence: 0.0,
            bbox: [0.0, 0.0, wf, hf],
            corners: [[0.0, 0.0], [wf, 0.0], [wf, hf], [0.0, hf]],
            lines: lines_hint.or(read.plate_lines),
            colour: PlateColour::Unknown,
            valid: false,
            unreadable: true,
            raw: read.text(),
            layout: None,
            detector_score: 1.0,
            chars: read.chars().map(CharOut::from).collect(),
            second_opinion: None,
            near_miss: None,
        };
        match (&self.cross_check, self.config.mode) {
            (Some((second, rule)), ReadMode::Grammar) => {
                let other = second.read(crop, lines_hint)?;
                let hint = lines_hint.or(read.plate_lines);
                let first = self.constrained(&read, hint);
                let theirs = self.constrained(&other, lines_hint.or(other.plate_lines));
                plate.second_opinion = theirs.as_ref().map(|c| c.number.canonical.clone());
                let (first, theirs) = letter_support(first, theirs);
                // The plates some recogniser read a letter of, where the
                // plate has one: the others were spelled by correction.
                let backed: Vec<String> = [&first, &theirs]
                    .into_iter()
                    .flatten()
                    .filter(|c| c.letter_read)
                    .map(|c| c.number.canonical.clone())
                    .collect();
                let scores: Vec<(String, f32)> = [&first, &theirs]
                    .into_iter()
                    .flatten()
                    .map(|c| (c.number.canonical.clone(), c.score))
                    .collect();
                let verdict = rule.combine(
                    first.map(|c| (c.number, c.score)),
                    theirs.map(|c| (c.number, c.score)),
                );
                // A rival plate read as surely as a near miss leaves the
                // crop to a person, as the edge's fusion of frames does: the
                // conflict's discounted score alone answered a plate at 0.665
                // against a dissent read at 0.3.
                let floor = NEAR_MISS_SHARE * self.config.min_confidence;
                if let crate::crosscheck::Verdict::Conflict { other, .. } = &verdict
                    && scores
                        .iter()
                        .any(|(t, s)| *t == other.canonical && *s >= floor)
                {
                    plate.near_miss = Some(other.canonical.clone());
                    plate.confidence = 0.0;
                } else {
                    let answer = verdict
                        .answer()
                        .map(|(n, s)| (n, s, backed.contains(&n.canonical)));
                    self.accept(answer, &mut plate);
                }
            }
            _ => self.interpret(&read, lines_hint, &mut plate),
        }
        Ok(plate)
    }

    /// Fills text, validity and confidence from the read.
    fn interpret(&self, read: &TextRead, lines_hint: Option<u8>, plate: &mut PlateRead) {
        match self.config.mode {
            ReadMode::Raw | ReadMode::Alphabet => {
                let text = canonicalize(&read.text());
                let conf = read.confidence();
                let parsed = self.grammar.parse(&text).ok();
                plate.valid = parsed.is_some();
                plate.confidence = conf;
                plate.layout = parsed.as_ref().map(|p| p.layout.clone());
                plate.display = parsed.map(|p| p.display);
                if !text.is_empty() {
                    plate.text = Some(text);
                    plate.unreadable = false;
                }
            }
            ReadMode::Grammar => {
                let hint = lines_hint.or(read.plate_lines);
                let best = self.constrained(read, hint);
                self.accept(
                    best.as_ref().map(|c| (&c.number, c.score, c.letter_read)),
                    plate,
                );
            }
        }
    }

    /// Answers with `best` (plate, score, whether a recogniser read a
    /// letter where the plate has one: [`Candidate::letter_read`]) when its
    /// score reaches `min_confidence` and its letter was read: every civil
    /// plate's series has one, so a read of digits alone becomes a plate
    /// only by correcting a digit into its series letter — which is how a
    /// taxi's phone number (`38 27 27 27` → `38Z-727.27`) or a hotline
    /// painted on a truck would be fined. Such a read is left to a person
    /// (kept as `near_miss`), and so is a plate whose every fitting layout
    /// the grammar data marks unconfirmed (`check = true`: the two-letter
    /// motorbike series, special and foreign series): a car's `30A-812.34`
    /// with its `8` read as `B` is `30AB1234`, a valid "old two-letter
    /// motorbike plate" at the full score, and nothing but a person can
    /// tell the two apart. The score must exceed `min_confidence`, not
    /// just reach it: a corrected character is scored at the correction
    /// factor, which may equal the threshold.
    fn accept(&self, best: Option<(&crate::plate::PlateNumber, f32, bool)>, plate: &mut PlateRead) {
        if let Some((number, score, letter_read)) = best {
            plate.confidence = score;
            if score > self.config.min_confidence && letter_read && self.confirmed(number) {
                plate.valid = true;
                plate.text = Some(number.canonical.clone());
                plate.display = Some(number.display.clone());
                plate.layout = Some(number.layout.clone());
                plate.lines = number.lines.or(plate.lines);
                plate.unreadable = false;
            } else {
                plate.near_miss = Some(number.canonical.clone());
            }
        }
    }
}

impl Pipeline {
    /// Whether some layout the plate fits is confirmed in the grammar data
    /// (`check` unset): see [`Pipeline::accept`].
    fn confirmed(&self, number: &crate::plate::PlateNumber) -> bool {
        !number.check
            || number
                .alternatives
                .iter()
                .any(|id| self.grammar.layout(id).is_some_and(|l| !l.check()))
    }

    /// Constrained decoding of a read: the grammar's best valid plate for the
    /// characters as read; failing that, for the characters with one of them
    /// dropped (a CTC reader sometimes reads the plate's frame or a bolt as a
    /// character), the dropped character costing `1 - p` of its probability.
    /// A deletion is taken only when it beats every other deletion's plate by
    /// [`DELETION_MARGIN`]; otherwise nothing is returned. Nor is one tried
    /// when the characters as read make valid plates that tie (the grammar
    /// refuses to choose): dropping a character then only finds a third
    /// plate — `30AO2345` ties `30A02345` with `30AD2345`, and dropping the
    /// unsure `O` answered `30A2345` for a plate that was `30A12345`.
    fn constrained(&self, read: &TextRead, hint: Option<u8>) -> Option<Candidate> {
        let cands = read.candidates();
        let chars: Vec<char> = read.chars().map(|c| c.ch).collect();
        if let Some((number, score)) = self.interpret_hinted(&cands, hint) {
            let letter_read = letter_read(&number, &chars);
            return Some(Candidate {
                number,
                score,
                letter_read,
            });
        }
        if cands.len() < 3 || !self.grammar.readings(&cands, None, true).is_empty() {
            return None;
        }
        let probs: Vec<f32> = read.chars().map(|c| c.prob).collect();
        let mut found: Vec<Candidate> = Vec::new();
        for i in 0..cands.len() {
            let mut c = cands.clone();
            c.remove(i);
            let spurious = (1.0 - probs.get(i).copied().unwrap_or(1.0)).clamp(0.0, 1.0);
            if let Some((number, s)) = self.interpret_hinted(&c, hint) {
                // The characters the plate was read from: without the
                // dropped one (a letter dropped as spurious backs nothing).
                let mut kept = chars.clone();
                kept.remove(i);
                let cand = Candidate {
                    letter_read: letter_read(&number, &kept),
                    score: s * spurious,
                    number,
                };
                match found
                    .iter_mut()
                    .find(|m| m.number.canonical == cand.number.canonical)
                {
                    Some(e) if e.score >= cand.score => {}
                    Some(e) => *e = cand,
                    None => found.push(cand),
                }
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        match (found.first(), found.get(1)) {
            (Some(a), Some(b)) if a.score < b.score * DELETION_MARGIN => None,
            (Some(_), _) => found.into_iter().next(),
            _ => None,
        }
    }
}

impl Pipeline {
    /// The grammar's best valid plate for `cands` over every layout; the
    /// line count `hint` (the detector's one-/two-line class, or how the
    /// reader split the crop) only chooses among layouts of that same plate
    /// (`29B11234` is a car's `29B-112.34` and a motorbike's `29-B1 1234`).
    /// The hint is a guess about the crop, not a reading of the characters:
    /// restricting the grammar to its layouts turned a motorbike plate read
    /// with certainty (`29HA1234`) into a car plate one correction away
    /// (`29H41234`, A→4) whenever the detector called the plate one-line,
    /// and answered that.
    fn interpret_hinted(
        &self,
        cands: &[Vec<(char, f32)>],
        hint: Option<u8>,
    ) -> Option<(crate::plate::PlateNumber, f32)> {
        let g = self.grammar;
        let free = g.interpret_scored(cands, None)?;
        if hint.is_none() || free.0.lines == hint {
            return Some(free);
        }
        match g.interpret_scored(cands, hint) {
            Some(same) if same.0.canonical == free.0.canonical => Some(same),
            _ => Some(free),
        }
    }
}

/// One recogniser's best valid plate for its read ([`Pipeline::constrained`]).
struct Candidate {
    number: crate::plate::PlateNumber,
    score: f32,
    /// Whether the recogniser read a letter at a position where the plate
    /// has one (counting only the characters the plate was decoded from,
    /// after a deletion). When not, the plate's series letter was invented
    /// by a digit→letter correction and the plate is never answered.
    letter_read: bool,
}

/// Whether `read` (the characters a plate was decoded from, one per plate
/// position) has a letter at some position where `number` has one.
fn letter_read(number: &crate::plate::PlateNumber, read: &[char]) -> bool {
    let is_letter = |c: char| {
        canonicalize(&c.to_string())
            .chars()
            .any(|k| !k.is_ascii_digit())
    };
    let plate: Vec<char> = number.canonical.chars().collect();
    plate.len() == read.len()
        && plate
            .iter()
            .zip(read)
            .any(|(&p, &r)| is_letter(p) && is_letter(r))
}

/// Both recognisers' plates for the cross-check, except that a recogniser
/// that reached the *same* plate as the other only by inventing its letter
/// does not support it (its agreement would raise the confidence of what
/// it never read); a different plate it reached that way still counts
/// against the other (a dissent), and is never answered itself.
fn letter_support(
    first: Option<Candidate>,
    second: Option<Candidate>,
) -> (Option<Candidate>, Option<Candidate>) {
    match (first, second) {
        (Some(a), Some(b)) if a.number.canonical == b.number.canonical => {
            match (a.letter_read, b.letter_read) {
                (true, false) => (Some(a), None),
                (false, true) => (None, Some(b)),
                _ => (Some(a), Some(b)),
            }
        }
        other => other,
    }
}

/// Whether an error reading one detected plate concerns that plate alone
/// (its corners, its crop: [`Pipeline::read_image`] skips it) rather than
/// the recogniser's model or its setup (every plate would fail alike).
fn concerns_one_plate(e: &VisionError) -> bool {
    matches!(
        e,
        VisionError::Empty { .. } | VisionError::Config(_) | VisionError::OpenCv { .. }
    )
}

/// A plate nearly read (valid, under `min_confidence` but at no less than
/// this share of it) is a rival: too unsure to answer with, sure enough
/// that a different plate answered beside it is in doubt. The window
/// search uses it ([`crate::search`]); the edge's fusion of frames uses
/// this constant (`edge-agent`, `violator.rs`).
pub const NEAR_MISS_SHARE: f32 = 0.5;

/// How many times better the best one-deletion reading must score than the
/// next different plate.
pub const DELETION_MARGIN: f32 = 2.0;

impl PlateRead {
    /// This read as input to [`crate::fuse`]: the plate text with one
    /// confidence per character (the probability the recogniser gave the
    /// character the grammar chose at that position). `None` when unreadable.
    pub fn fuse_read(&self) -> Option<crate::fuse::Read> {
        let text = self.text.as_ref()?;
        let chars: Vec<char> = text.chars().collect();
        let char_conf = if chars.len() == self.chars.len() {
            chars
                .iter()
                .zip(&self.chars)
                .map(|(c, r)| {
                    r.alternatives
                        .iter()
                        .find(|(a, _)| a == c)
                        .map_or(r.prob.min(self.confidence.max(0.0)), |(_, p)| *p)
                })
                .collect()
        } else {
            vec![self.confidence; chars.len()]
        };
        Some(crate::fuse::Read {
            text: text.clone(),
            char_conf,
            confidence: self.confidence,
        })
    }
}
