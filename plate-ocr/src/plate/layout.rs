//! Compiled plate layouts and local codes, as loaded from the grammar data.
//!
//! A [`Layout`] is a fixed sequence of slots (each accepts a set of characters)
//! split into three groups (local code, series, number), an optional list of
//! allowed series, and a display template. A [`LocalCode`] maps the first two
//! digits of a plate to the province that now holds it and the one that issued
//! it. Both come from the data files (see `data.rs`); nothing here is specific
//! to one layout.

use super::number::VehicleKind;

/// One character position of a layout: the characters it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Accepted characters (canonical), no duplicates.
    pub chars: Vec<char>,
    /// How the pattern wrote it: `D`, `L`, `[Đ]`.
    pub label: String,
}

impl Slot {
    pub(crate) fn accepts(&self, c: char) -> bool {
        self.chars.contains(&c)
    }

    /// Plain words for what the slot expects, for error messages.
    pub(crate) fn expected(&self) -> String {
        let all_digits = self.chars.iter().all(char::is_ascii_digit);
        let set: String = self.chars.iter().collect();
        if all_digits && self.chars.len() == 10 {
            "a digit".to_string()
        } else if all_digits {
            format!("a digit in {set}")
        } else if self.chars.iter().all(|c| !c.is_ascii_digit()) && self.chars.len() > 4 {
            format!("a series letter ({set})")
        } else {
            format!("one of {set}")
        }
    }
}

/// A piece of a display template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DisplayPart {
    /// The next character of the plate.
    Char,
    /// A separator printed as is.
    Literal(char),
}

/// A plate layout from the grammar data.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub(crate) id: String,
    pub(crate) vehicle: VehicleKind,
    pub(crate) lines: Vec<u8>,
    pub(crate) description: String,
    pub(crate) check: bool,
    pub(crate) pattern: String,
    pub(crate) display_template: String,
    pub(crate) slots: Vec<Slot>,
    /// Lengths of the local-code, series and number groups.
    pub(crate) groups: [usize; 3],
    /// Allowed series (each as long as the series group); empty: any.
    pub(crate) series_in: Vec<Vec<char>>,
    pub(crate) display: Vec<DisplayPart>,
    /// Plate positions where the display puts a separator before the character.
    pub(crate) breaks: Vec<usize>,
}

impl Layout {
    /// Id from the data (`car-long-5`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Vehicle kind.
    pub fn vehicle(&self) -> VehicleKind {
        self.vehicle
    }
    /// Line counts the physical plate can have.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }
    /// Description from the data.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Whether the data marks this layout as unconfirmed.
    pub fn check(&self) -> bool {
        self.check
    }
    /// The slot pattern as written in the data (`DD LN DDDDD`).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
    /// The display template as written in the data (`##-## ###.##`).
    pub fn display_template(&self) -> &str {
        &self.display_template
    }
    /// Number of characters of a plate in this layout.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// Always false: a layout has at least one slot per group.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Characters accepted at each position.
    pub fn slot_chars(&self) -> impl Iterator<Item = &[char]> {
        self.slots.iter().map(|s| s.chars.as_slice())
    }
    /// Allowed series, where the layout restricts them (`LD`, `NG`, …).
    pub fn series_in(&self) -> Vec<String> {
        self.series_in.iter().map(|s| s.iter().collect()).collect()
    }

    pub(crate) fn series_range(&self) -> std::ops::Range<usize> {
        self.groups[0]..self.groups[0] + self.groups[1]
    }

    pub(crate) fn allows_lines(&self, hint: Option<u8>) -> bool {
        hint.is_none_or(|n| self.lines.contains(&n))
    }

    /// Whether every break of the input falls where the display has a separator.
    pub(crate) fn separators_fit(&self, input_breaks: &[usize]) -> bool {
        input_breaks.iter().all(|b| self.breaks.contains(b))
    }

    /// The display form of `chars` (which must have this layout's length).
    pub(crate) fn render(&self, chars: &[char]) -> String {
        let mut it = chars.iter();
        let mut out = String::with_capacity(chars.len() * 2 + 4);
        for part in &self.display {
            match part {
                DisplayPart::Char => {
                    if let Some(c) = it.next() {
                        out.push(*c);
                    }
                }
                DisplayPart::Literal(c) => out.push(*c),
            }
        }
        out
    }
}

/// A local code and the province it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCode {
    /// Two digits.
    pub code: String,
    /// Current (post-merger) province or city.
    pub province: String,
    /// The province that issued this code before the 2025 merger.
    pub former: String,
    /// Whether the data marks this assignment as unconfirmed.
    pub check: bool,
}
