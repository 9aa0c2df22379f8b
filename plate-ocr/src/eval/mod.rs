//! Measuring the reader on labelled data: exact-plate accuracy, character
//! error rate, the worst character confusions, accuracy by number of lines,
//! latency percentiles; and detection recall at an IoU threshold, overall and
//! per vehicle class.
//!
//! Crop data sets are a directory with `labels.csv` (`image,text[,lines]`,
//! a header line first), images beside it or in `images/`. Labels and reads are compared in canonical form.
//! Detection data sets (the openalpr layout) hold one `.txt` per image, one
//! plate per line: `file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>TEXT`, optionally a seventh
//! column `car` or `motorbike` (the project's Vietnamese set,
//! `plate-ocr/data/vn_detect`, whose images live elsewhere: see
//! [`evaluate_detection_at`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Result, VisionError};
use crate::image_file::load_bgr;
use crate::pipeline::Pipeline;
use crate::plate::canonicalize;

/// One labelled crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub image: PathBuf,
    /// Canonical label.
    pub text: String,
    pub lines: Option<u8>,
}

/// Reads `labels.csv` in `dir`. A label with no plate character in it
/// (`?`, empty) is refused with the line it is on: it would count every
/// unread image as exact.
pub fn load_labels(dir: &Path) -> Result<Vec<Labelled>> {
    let csv = dir.join("labels.csv");
    let err = |message: String| VisionError::Dataset {
        path: csv.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&csv).map_err(|e| err(e.to_string()))?;
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = rows.next().ok_or_else(|| err("empty file".to_string()))?.1;
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let (Some(img_col), Some(text_col)) = (
        cols.iter().position(|c| c == "image"),
        cols.iter().position(|c| c == "text"),
    ) else {
        return Err(err(format!(
            "header {header:?} must name the columns `image` and `text`"
        )));
    };
    let lines_col = cols.iter().position(|c| c == "lines");
    let mut out = Vec::new();
    for (n, row) in rows {
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        let (Some(img), Some(label)) = (fields.get(img_col), fields.get(text_col)) else {
            return Err(err(format!(
                "line {}: expected at least {} fields",
                n + 1,
                cols.len()
            )));
        };
        let lines = match lines_col.and_then(|i| fields.get(i)) {
            Some(v) if !v.is_empty() => Some(
                v.parse::<u8>()
                    .map_err(|_| err(format!("line {}: lines = {v:?} is not a number", n + 1)))?,
            ),
            _ => None,
        };
        // Images lie beside labels.csv or in an `images/` folder.
        let beside = dir.join(img);
        let in_images = dir.join("images").join(img);
        let image = if !beside.exists() && in_images.exists() {
            in_images
        } else {
            beside
        };
        // A label with no plate characters (`?`, `-`, empty) would match
        // every unreadable read and failed image and count them as exact.
        let text = canonicalize(label);
        if text.is_empty() {
            return Err(err(format!(
                "line {}: image {img}: label {label:?} has no plate characters; \
                 label the plate or leave the image out",
                n + 1
            )));
        }
        out.push(Labelled { image, text, lines });
    }
    if out.is_empty() {
        return Err(err("no labelled images".to_string()));
    }
    Ok(out)
}

/// One edit between a label and a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edit {
    Substitute(char, char),
    Delete(char),
    Insert(char),
}

/// Levenshtein alignment of `label` to `read`: the edits (label → read).
pub fn edits(label: &str, read: &str) -> Vec<Edit> {
    let a: Vec<char> = label.chars().collect();
    let b: Vec<char> = read.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let sub = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = sub.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        if i > 0 && j > 0 && d[i][j] == d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]) {
            if a[i - 1] != b[j - 1] {
                out.push(Edit::Substitute(a[i - 1], b[j - 1]));
            }
            i -= 1;
            j -= 1;
        } else if i > 0 && d[i][j] == d[i - 1][j] + 1 {
            out.push(Edit::Delete(a[i - 1]));
            i -= 1;
        } else {
            out.push(Edit::Insert(b[j - 1]));
            j -= 1;
        }
    }
    out.reverse();
    out
}

/// One image's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub image: String,
    pub label: String,
    pub read: String,
    pub raw: String,
    pub confidence: f32,
    pub ms: f64,
    pub error: Option<String>,
}

/// Accuracy on a subset.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Split {
    pub total: usize,
    pub exact: usize,
    pub accuracy: f64,
}

/// Results of a crop evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub dataset: String,
    pub recognizer: String,
    pub mode: String,
    pub total: usize,
    pub exact: usize,
    pub accuracy: f64,
    /// Plates answered (not unreadable, not failed).
    pub answered: usize,
    /// Answered plates that differ from the label: potential wrong fines.
    pub wrong_answers: usize,
    pub cer: f64,
    pub failed: usize,
    /// Labels that are valid Vietnamese plates by the grammar (others are
    /// foreign plates or label errors, which a grammar-bound reader can't match).
    pub valid_labels: usize,
    /// Exact reads among the valid labels.
    pub exact_valid: usize,
    pub by_lines: BTreeMap<String, Split>,
    /// Most frequent edits (label → read), `_` for nothing.
    pub confusions: Vec<(String, usize)>,
    pub latency_ms: BTreeMap<String, f64>,
    pub outcomes: Vec<Outcome>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Reads every crop of the data set in `dir` with `pipeline`.
pub fn evaluate_crops(pipeline: &Pipeline, dir: &Path) -> Result<EvalReport> {
    let labels = load_labels(dir)?;
    let mut outcomes = Vec::with_capacity(labels.len());
    let mut by_lines: BTreeMap<String, Split> = BTreeMap::new();
    let mut confusions: BTreeMap<Edit, usize> = BTreeMap::new();
    let (mut exact, mut answered, mut wrong, mut failed) = (0, 0, 0, 0);
    let (mut edit_total, mut char_total) = (0usize, 0usize);
    let mut times = Vec::new();
    let grammar = crate::plate::PlateGrammar::builtin();
    let (mut valid_labels, mut exact_valid) = (0, 0);
    for l in &labels {
        let image = l.image.display().to_string();
        let result = load_bgr(&l.image, &pipeline.config().limits).and_then(|img| {
            let start = Instant::now();
            let r = pipeline.read_crop(&img, None)?;
            Ok((r, start.elapsed().as_secs_f64() * 1000.0))
        });
        let outcome = match result {
            Ok((r, ms)) => {
                times.push(ms);
                let read = r.text.clone().unwrap_or_default();
                if !r.unreadable {
                    answered += 1;
                    if read != l.text {
                        wrong += 1;
                    }
                }
                Outcome {
                    image,
                    label: l.text.clone(),
                    read,
                    raw: r.raw,
                    confidence: r.confidence,
                    ms,
                    error: None,
                }
            }
            Err(e) => {
                failed += 1;
                Outcome {
                    image,
                    label: l.text.clone(),
                    read: String::new(),
                    raw: String::new(),
                    confidence: 0.0,
                    ms: 0.0,
                    error: Some(e.to_string()),
                }
            }
        };
        let ok = outcome.read == l.text;
        exact += usize::from(ok);
        if grammar.is_valid(&l.text) {
            valid_labels += 1;
            exact_valid += usize::from(ok);
        }
        let e = edits(&l.text, &outcome.read);
        edit_total += e.len();
        char_total += l.text.chars().count();
        for x in e {
            *confusions.entry(x).or_default() += 1;
        }
        if let Some(lines) = l.lines {
            let s = by_lines.entry(format!("{lines}")).or_default();
            s.total += 1;
            s.exact += usize::from(ok);
        }
        outcomes.push(outcome);
    }
    for s in by_lines.values_mut() {
        s.accuracy = s.exact as f64 / s.total.max(1) as f64;
    }
    let mut conf: Vec<(String, usize)> = confusions
        .into_iter()
        .map(|(e, n)| {
            let name = match e {
                Edit::Substitute(a, b) => format!("{a}→{b}"),
                Edit::Delete(a) => format!("{a}→_"),
                Edit::Insert(b) => format!("_→{b}"),
            };
            (name, n)
        })
        .collect();
    conf.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    conf.truncate(15);
    times.sort_by(f64::total_cmp);
    let mut latency = BTreeMap::new();
    latency.insert("p50".to_string(), percentile(&times, 0.5));
    latency.insert("p90".to_string(), percentile(&times, 0.9));
    latency.insert("p99".to_string(), percentile(&times, 0.99));
    let total = labels.len();
    Ok(EvalReport {
        dataset: dir.display().to_string(),
        recognizer: match pipeline.cross_check() {
            Some(second) => format!("{}+{}", pipeline.recognizer().name(), second.name()),
            None => pipeline.recognizer().name().to_string(),
        },
        mode: format!("{:?}", pipeline.config().mode).to_lowercase(),
        total,
        exact,
        accuracy: exact as f64 / total as f64,
        answered,
        wrong_answers: wrong,
        cer: edit_total as f64 / char_total.max(1) as f64,
        failed,
        valid_labels,
        exact_valid,
        by_lines,
        confusions: conf,
        latency_ms: latency,
        outcomes,
    })
}

impl EvalReport {
    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let pct = |x: f64| x * 100.0;
        s.push_str(&format!(
            "{}  recognizer={} mode={}\n  exact plates: {}/{} = {:.1}%\n  answered: {} (wrong among answered: {} = {:.1}%), unreadable: {}, failed: {}\n  CER: {:.2}%\n",
            self.dataset,
            self.recognizer,
            self.mode,
            self.exact,
            self.total,
            pct(self.accuracy),
            self.answered,
            self.wrong_answers,
            pct(self.wrong_answers as f64 / self.answered.max(1) as f64),
            self.total - self.answered - self.failed,
            self.failed,
            pct(self.cer)
        ));
        s.push_str(&format!(
            "  labels valid by the grammar: {}/{}; exact on those: {}/{} = {:.1}%\n",
            self.valid_labels,
            self.total,
            self.exact_valid,
            self.valid_labels,
            pct(self.exact_valid as f64 / self.valid_labels.max(1) as f64)
        ));
        for (lines, sp) in &self.by_lines {
            s.push_str(&format!(
                "  {lines}-line: {}/{} = {:.1}%\n",
                sp.exact,
                sp.total,
                pct(sp.accuracy)
            ));
        }
        let conf: Vec<String> = self
            .confusions
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        s.push_str(&format!(
            "  worst confusions (label→read): {}\n",
            conf.join(", ")
        ));
        s.push_str(&format!(
            "  latency per crop (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}\n",
            self.latency_ms.get("p50").copied().unwrap_or(0.0),
            self.latency_ms.get("p90").copied().unwrap_or(0.0),
            self.latency_ms.get("p99").copied().unwrap_or(0.0)
        ));
        s
    }
}

mod detect;
pub use detect::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_align_label_and_read() {
        assert!(edits("30A12345", "30A12345").is_empty());
        assert_eq!(
            edits("30A12345", "30A1Z345"),
            vec![Edit::Substitute('2', 'Z')]
        );
        assert_eq!(edits("30A12345", "30A1234"), vec![Edit::Delete('5')]);
        assert_eq!(edits("3012", "30A12"), vec![Edit::Insert('A')]);
        assert_eq!(edits("", "AB").len(), 2);
    }

    #[test]
    fn a_label_with_no_plate_characters_is_refused_at_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let csv = "image,text,lines\na.jpg,30A12345,1\nb.jpg,?,1\n";
        std::fs::write(dir.path().join("labels.csv"), csv).expect("write");
        // An empty label would match every unreadable read and failed
        // image, counting them as exact.
        let err = load_labels(dir.path()).expect_err("an empty label is refused");
        let msg = err.to_string();
        assert!(msg.contains("line 3") && msg.contains("b.jpg"), "{msg}");
        std::fs::write(dir.path().join("labels.csv"), "image,text\nc.jpg, - \n").expect("write");
        assert!(load_labels(dir.path()).is_err());
        std::fs::write(
            dir.path().join("labels.csv"),
            "image,text\nc.jpg,30a-123.45\n",
        )
        .expect("write");
        let ok = load_labels(dir.path()).expect("a real label loads");
        assert_eq!(ok[0].text, "30A12345");
    }

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.99), 5.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
