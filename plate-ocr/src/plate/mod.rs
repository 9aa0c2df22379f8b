//! The Vietnamese licence-plate grammar: which texts are plates, and how to
//! read a recogniser's output into one.
//!
//! A plate is a two-digit local code (the province), a series and a number,
//! laid out in one of a few known layouts (car one-line `30A-123.45`, car
//! two-line `30A` / `123.45`, motorbike `29-B1 123.45`, new motorbike series
//! `29-HA 002.33`, electric `29-MĐ1 123.45`, special series such as `LD` and
//! `NG`). Layouts, slot classes, OCR confusions and local codes are data
//! (`plate-ocr/data/*.toml`, embedded at build time, replaceable by a
//! deployment through [`PlateGrammar::from_files`]), not code.
//!
//! Three ways in:
//! - [`PlateGrammar::parse`]: strict, for text typed by people or stored;
//! - [`PlateGrammar::interpret`]: lenient, corrects confusable characters by
//!   position (a letter slot turns `8` into `B`, a digit slot `O` into `0`);
//! - [`PlateGrammar::interpret_scored`]: constrained decoding of a recogniser's
//!   per-position alternatives.
//!
//! All compare and store plates in the canonical form ([`canonicalize`]).
//! A fine goes to whoever owns the plate that was read, so the readers refuse
//! rather than guess: no valid layout, or two different plates scoring the
//! same, gives no answer.

pub(crate) mod alphabet;
mod colour;
mod data;
mod decode;
mod error;
mod layout;
mod number;
mod reader;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::LazyLock;

pub use alphabet::{DJ, canonicalize};
pub use colour::PlateColour;
pub use error::GrammarError;
pub use layout::{Layout, LocalCode};
pub use number::{PlateNumber, VehicleKind};
pub use reader::Reading;

/// The built-in layouts file (`plate-ocr/data/layouts.toml`).
pub const BUILTIN_LAYOUTS: &str = include_str!("../../data/layouts.toml");
/// The built-in local-codes file (`plate-ocr/data/provinces.toml`).
pub const BUILTIN_PROVINCES: &str = include_str!("../../data/provinces.toml");

static BUILTIN: LazyLock<Result<PlateGrammar, GrammarError>> = LazyLock::new(|| {
    PlateGrammar::from_toml_named(
        BUILTIN_LAYOUTS,
        "built-in layouts.toml",
        BUILTIN_PROVINCES,
        "built-in provinces.toml",
    )
});

/// Plate layouts and local codes, loaded from data; reads text into plates.
#[derive(Debug, Clone)]
pub struct PlateGrammar {
    layouts: Vec<layout::Layout>,
    codes: BTreeMap<String, LocalCode>,
    confusions: HashMap<char, Vec<char>>,
    confusion_log_factor: f64,
    max_corrections: usize,
}

impl PlateGrammar {
    /// The grammar built from the data embedded at build time.
    ///
    /// # Panics
    ///
    /// If the embedded data is invalid: a build defect, caught by this crate's
    /// tests, never by input.
    pub fn builtin() -> &'static PlateGrammar {
        match &*BUILTIN {
            Ok(g) => g,
            Err(e) => panic!("the built-in plate grammar data is invalid: {e}"),
        }
    }

    /// The built-in grammar, or the error in its data (for health checks).
    pub fn try_builtin() -> Result<&'static PlateGrammar, &'static GrammarError> {
        BUILTIN.as_ref()
    }

    /// A grammar from the text of a layouts file and a provinces file (see the
    /// format at the top of `plate-ocr/data/layouts.toml` and `provinces.toml`).
    /// Errors name the file as `layouts.toml` or `provinces.toml`.
    pub fn from_toml(layouts: &str, provinces: &str) -> Result<PlateGrammar, GrammarError> {
        Self::from_toml_named(layouts, "layouts.toml", provinces, "provinces.toml")
    }

    /// Like [`from_toml`](Self::from_toml), naming the sources in errors.
    pub fn from_toml_named(
        layouts: &str,
        layouts_name: &str,
        provinces: &str,
        provinces_name: &str,
    ) -> Result<PlateGrammar, GrammarError> {
        let l = data::load_layouts(layouts, layouts_name)?;
        let codes = data::load_provinces(provinces, provinces_name)?;
        Ok(PlateGrammar {
            layouts: l.layouts,
            codes,
            confusions: l.confusions,
            confusion_log_factor: l.confusion_factor.ln(),
            max_corrections: l.max_corrections,
        })
    }

    /// A grammar from a deployment's own data files.
    pub fn from_files(layouts: &Path, provinces: &Path) -> Result<PlateGrammar, GrammarError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| GrammarError::Io {
                file: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let (lt, pt) = (read(layouts)?, read(provinces)?);
        Self::from_toml_named(
            &lt,
            &layouts.display().to_string(),
            &pt,
            &provinces.display().to_string(),
        )
    }

    /// The layouts, in order of preference.
    pub fn layouts(&self) -> &[Layout] {
        &self.layouts
    }

    /// The layout with this id.
    pub fn layout(&self, id: &str) -> Option<&Layout> {
        self.layouts.iter().find(|l| l.id == id)
    }

    /// What the data says about a two-digit local code.
    pub fn local_code(&self, code: &str) -> Option<&LocalCode> {
        self.codes.get(code)
    }

    /// Every known local code, in order.
    pub fn local_codes(&self) -> impl Iterator<Item = &LocalCode> {
        self.codes.values()
    }

    /// Every character some layout accepts somewhere, in canonical order
    /// (digits, then letters, then Đ).
    pub fn alphabet(&self) -> Vec<char> {
        let mut out: Vec<char> = self
            .layouts
            .iter()
            .flat_map(|l| l.slots.iter().flat_map(|s| s.chars.iter().copied()))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The current province of a local code.
    pub fn province(&self, code: &str) -> Option<&str> {
        self.codes.get(code).map(|c| c.province.as_str())
    }

    /// Whether `prefix` (canonical characters) can begin a valid plate:
    /// some layout at least as long accepts each character at its position,
    /// a complete local code is a known one, and a complete series is one
    /// the layout allows. For decoders that search character by character
    /// (`recognize::ctc`): a prefix no plate starts with is dropped early.
    pub fn viable_prefix(&self, prefix: &[char]) -> bool {
        self.layouts.iter().any(|l| {
            if prefix.len() > l.slots.len() {
                return false;
            }
            let fits = prefix
                .iter()
                .zip(&l.slots)
                .all(|(c, s)| s.chars.contains(c));
            let code_len = l.groups[0];
            let code_ok = prefix.len() < code_len || {
                let code: String = prefix[..code_len].iter().collect();
                self.codes.contains_key(&code)
            };
            let series = l.series_range();
            let series_ok = l.series_in.is_empty()
                || prefix.len() <= series.start
                || l.series_in.iter().any(|allowed| {
                    let end = prefix.len().min(series.end);
                    allowed.get(..end - series.start) == prefix.get(series.start..end)
                });
            fits && code_ok && series_ok
        })
    }
}

#[cfg(test)]
mod tests;
