//! Loading grammar data: the TOML files under `plate-ocr/data/`.
//!
//! `layouts.toml` holds slot classes, OCR confusions, scoring and the layouts;
//! `provinces.toml` holds local codes. Their format is described at the top of
//! each file. Loading checks everything a reader relies on (slot classes exist,
//! characters are canonical, display templates hold exactly one `#` per slot,
//! allowed series fit their slots, codes are two digits and unique) and reports
//! the first problem with the file, line and field.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::alphabet::is_canonical;
use super::error::GrammarError;
use super::layout::{DisplayPart, Layout, LocalCode, Slot};
use super::number::VehicleKind;

/// The only data format version this code reads.
const VERSION: u32 = 1;
/// Longest plate a layout may describe.
const MAX_LEN: usize = 12;
/// Separators a display template may use.
const DISPLAY_SEPARATORS: [char; 3] = ['-', '.', ' '];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayouts {
    version: Spanned<u32>,
    classes: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    confusions: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    scoring: RawScoring,
    layout: Vec<RawLayout>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScoring {
    #[serde(default = "default_factor")]
    confusion_factor: Spanned<f64>,
    #[serde(default = "default_max_corrections")]
    max_corrections: Spanned<u32>,
}

impl Default for RawScoring {
    fn default() -> Self {
        RawScoring {
            confusion_factor: default_factor(),
            max_corrections: default_max_corrections(),
        }
    }
}

fn default_factor() -> Spanned<f64> {
    Spanned::new(0..0, 0.5)
}

fn default_max_corrections() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    id: Spanned<String>,
    vehicle: VehicleKind,
    lines: Spanned<Vec<u8>>,
    pattern: Spanned<String>,
    display: Spanned<String>,
    #[serde(default)]
    series_in: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    check: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvinces {
    version: Spanned<u32>,
    province: Vec<RawProvince>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvince {
    name: Spanned<String>,
    codes: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    check: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// Everything `layouts.toml` defines, compiled.
#[derive(Debug, Clone)]
pub(crate) struct LayoutData {
    pub layouts: Vec<Layout>,
    pub confusions: HashMap<char, Vec<char>>,
    pub confusion_factor: f64,
    pub max_corrections: usize,
}

/// Reports problems in one data file.
struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, span: &Range<usize>) -> Option<usize> {
        if span.start == 0 && span.end == 0 {
            return None;
        }
        let upto = self.text.get(..span.start)?;
        Some(upto.matches('\n').count() + 1)
    }

    fn err(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> GrammarError {
        GrammarError::Data {
            file: self.name.to_string(),
            line: self.line_of(span),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, GrammarError> {
        toml::from_str(self.text).map_err(|e| GrammarError::Data {
            file: self.name.to_string(),
            line: e.span().and_then(|s| self.line_of(&s)),
            field: None,
            message: e.message().trim().to_string(),
        })
    }

    fn check_version(&self, v: &Spanned<u32>) -> Result<(), GrammarError> {
        if *v.get_ref() == VERSION {
            Ok(())
        } else {
            Err(self.err(
                &v.span(),
                "version",
                format!(
                    "format version {} is not supported (expected {VERSION})",
                    v.get_ref()
                ),
            ))
        }
    }
}

/// Parse and check `layouts.toml` text; `name` is used in error messages.
pub(crate) fn load_layouts(text: &str, name: &str) -> Result<LayoutData, GrammarError> {
    let src = Source { name, text };
    let raw: RawLayouts = src.parse()?;
    src.check_version(&raw.version)?;

    let mut classes: HashMap<char, Vec<char>> = HashMap::new();
    for (key, chars) in &raw.classes {
        let field = format!("classes.{key}");
        let mut k = key.chars();
        let name = match (k.next(), k.next()) {
            (Some(c), None) if c.is_ascii_uppercase() => c,
            _ => {
                return Err(src.err(
                    &chars.span(),
                    &field,
                    "a class name is one upper-case ASCII letter",
                ));
            }
        };
        let set = char_set(&src, chars, &field)?;
        classes.insert(name, set);
    }

    let mut confusions = HashMap::new();
    for (key, to) in &raw.confusions {
        let field = format!("confusions.{key}");
        let mut k = key.chars();
        let from = match (k.next(), k.next()) {
            (Some(c), None) if is_canonical(c) => c,
            _ => {
                return Err(src.err(
                    &to.span(),
                    &field,
                    "the key must be one canonical character (0-9, A-Z, Đ)",
                ));
            }
        };
        let set = char_set(&src, to, &field)?;
        confusions.insert(from, set.into_iter().filter(|c| *c != from).collect());
    }

    let factor = *raw.scoring.confusion_factor.get_ref();
    if !(factor > 0.0 && factor <= 1.0) {
        return Err(src.err(
            &raw.scoring.confusion_factor.span(),
            "scoring.confusion_factor",
            "must be greater than 0 and at most 1",
        ));
    }
    let max_corrections = *raw.scoring.max_corrections.get_ref() as usize;
    if max_corrections > MAX_LEN {
        return Err(src.err(
            &raw.scoring.max_corrections.span(),
            "scoring.max_corrections",
            format!("must be at most {MAX_LEN}"),
        ));
    }

    if raw.layout.is_empty() {
        return Err(src.err(&(0..0), "layout", "at least one [[layout]] is needed"));
    }
    let mut layouts: Vec<Layout> = Vec::with_capacity(raw.layout.len());
    for (i, rl) in raw.layout.iter().enumerate() {
        let layout = compile_layout(&src, i, rl, &classes)?;
        if layouts.iter().any(|l| l.id == layout.id) {
            return Err(src.err(
                &rl.id.span(),
                &format!("layout[{i}].id"),
                format!("duplicate layout id {:?}", layout.id),
            ));
        }
        layouts.push(layout);
    }
    Ok(LayoutData {
        layouts,
        confusions,
        confusion_factor: factor,
        max_corrections,
    })
}

/// A non-empty set of canonical characters, in order, without duplicates.
fn char_set(src: &Source, s: &Spanned<String>, field: &str) -> Result<Vec<char>, GrammarError> {
    let mut out = Vec::new();
    for c in s.get_ref().chars() {
        if !is_canonical(c) {
            return Err(src.err(
                &s.span(),
                field,
                format!("{c:?} is not a canonical plate character (0-9, A-Z, Đ)"),
            ));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(src.err(&s.span(), field, "must not be empty"));
    }
    Ok(out)
}

fn compile_layout(
    src: &Source,
    i: usize,
    rl: &RawLayout,
    classes: &HashMap<char, Vec<char>>,
) -> Result<Layout, GrammarError> {
    let field = |f: &str| format!("layout[{i}].{f}");
    let id = rl.id.get_ref().trim().to_string();
    if id.is_empty() {
        return Err(src.err(&rl.id.span(), &field("id"), "must not be empty"));
    }

    let lines = rl.lines.get_ref().clone();
    if lines.is_empty() || lines.iter().any(|n| !(1..=2).contains(n)) {
        return Err(src.err(&rl.lines.span(), &field("lines"), "must list 1, 2 or both"));
    }

    // Pattern: three groups of slots.
    let pspan = rl.pattern.span();
    let groups_text: Vec<&str> = rl.pattern.get_ref().split_whitespace().collect();
    if groups_text.len() != 3 {
        return Err(src.err(
            &pspan,
            &field("pattern"),
            "needs three groups separated by spaces: local code, series, number",
        ));
    }
    let mut slots = Vec::new();
    let mut groups = [0usize; 3];
    for (g, text) in groups_text.iter().enumerate() {
        let group =
            parse_group(text, classes).map_err(|m| src.err(&pspan, &field("pattern"), m))?;
        groups[g] = group.len();
        slots.extend(group);
    }
    if groups[0] != 2
        || slots[..2]
            .iter()
            .any(|s| s.chars.iter().any(|c| !c.is_ascii_digit()))
    {
        return Err(src.err(
            &pspan,
            &field("pattern"),
            "the local-code group must be two digit slots",
        ));
    }
    if slots.len() > MAX_LEN {
        return Err(src.err(
            &pspan,
            &field("pattern"),
            format!("a plate has at most {MAX_LEN} characters"),
        ));
    }

    // Allowed series.
    let series_start = groups[0];
    let mut series_in = Vec::new();
    if let Some(list) = &rl.series_in {
        for s in list.get_ref() {
            let chars: Vec<char> = s.chars().collect();
            let fits = chars.len() == groups[1]
                && chars
                    .iter()
                    .zip(&slots[series_start..series_start + groups[1]])
                    .all(|(c, slot)| slot.accepts(*c));
            if !fits {
                return Err(src.err(
                    &list.span(),
                    &field("series_in"),
                    format!("series {s:?} does not fit the pattern's series group"),
                ));
            }
            series_in.push(chars);
        }
        if series_in.is_empty() {
            return Err(src.err(&list.span(), &field("series_in"), "must not be empty"));
        }
    }

    // Display template.
    let dspan = rl.display.span();
    let mut display = Vec::new();
    let mut breaks = Vec::new();
    let mut placed = 0usize;
    for c in rl.display.get_ref().chars() {
        if c == '#' {
            placed += 1;
            display.push(DisplayPart::Char);
        } else if DISPLAY_SEPARATORS.contains(&c) {
            if placed > 0 && !breaks.contains(&placed) {
                breaks.push(placed);
            }
            display.push(DisplayPart::Literal(c));
        } else {
            return Err(src.err(
                &dspan,
                &field("display"),
                format!("{c:?} is neither # nor a separator (- . space)"),
            ));
        }
    }
    if placed != slots.len() {
        return Err(src.err(
            &dspan,
            &field("display"),
            format!("has {placed} '#' but the pattern has {} slots", slots.len()),
        ));
    }
    breaks.retain(|b| *b < slots.len());

    Ok(Layout {
        id,
        vehicle: rl.vehicle,
        lines,
        description: rl.description.clone(),
        check: rl.check,
        pattern: rl.pattern.get_ref().clone(),
        display_template: rl.display.get_ref().clone(),
        slots,
        groups,
        series_in,
        display,
        breaks,
    })
}

/// Slots of one pattern group: class letters and `[...]` literal sets.
fn parse_group(text: &str, classes: &HashMap<char, Vec<char>>) -> Result<Vec<Slot>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            let mut set = Vec::new();
            let mut closed = false;
            for d in chars.by_ref() {
                if d == ']' {
                    closed = true;
                    break;
                }
                if !is_canonical(d) {
                    return Err(format!("{d:?} in [...] is not a canonical plate character"));
                }
                if !set.contains(&d) {
                    set.push(d);
                }
            }
            if !closed || set.is_empty() {
                return Err("a [...] set must be closed and not empty".to_string());
            }
            let label = format!("[{}]", set.iter().collect::<String>());
            out.push(Slot { chars: set, label });
        } else {
            let set = classes
                .get(&c)
                .ok_or_else(|| format!("unknown slot class {c:?} (see [classes])"))?;
            out.push(Slot {
                chars: set.clone(),
                label: c.to_string(),
            });
        }
    }
    if out.is_empty() {
        return Err("empty group".to_string());
    }
    Ok(out)
}

/// Parse and check `provinces.toml` text: local code → province.
pub(crate) fn load_provinces(
    text: &str,
    name: &str,
) -> Result<BTreeMap<String, LocalCode>, GrammarError> {
    let src = Source { name, text };
    let raw: RawProvinces = src.parse()?;
    src.check_version(&raw.version)?;
    let mut codes: BTreeMap<String, LocalCode> = BTreeMap::new();
    for (i, p) in raw.province.iter().enumerate() {
        let province = p.name.get_ref().trim().to_string();
        if province.is_empty() {
            return Err(src.err(
                &p.name.span(),
                &format!("province[{i}].name"),
                "must not be empty",
            ));
        }
        let field = format!("province[{i}].codes");
        if p.codes.get_ref().is_empty() {
            return Err(src.err(&p.codes.span(), &field, "must list at least one code"));
        }
        for (code, former) in p.codes.get_ref() {
            if code.len() != 2 || !code.chars().all(|c| c.is_ascii_digit()) {
                return Err(src.err(
                    &p.codes.span(),
                    &field,
                    format!("local code {code:?} is not two digits"),
                ));
            }
            if let Some(prev) = codes.get(code) {
                return Err(src.err(
                    &p.codes.span(),
                    &field,
                    format!("local code {code} is already listed for {}", prev.province),
                ));
            }
            codes.insert(
                code.clone(),
                LocalCode {
                    code: code.clone(),
                    province: province.clone(),
                    former: former.clone(),
                    check: p.check,
                },
            );
        }
    }
    if codes.is_empty() {
        return Err(src.err(&(0..0), "province", "at least one [[province]] is needed"));
    }
    Ok(codes)
}
