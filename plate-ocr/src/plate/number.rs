//! A plate read that fits the grammar: [`PlateNumber`] and [`VehicleKind`].
//!
//! The canonical form identifies the vehicle; everything else (layout, display,
//! vehicle kind, number of lines) is what the grammar could tell from the text
//! and the detector's hint. Where the text fits several layouts, the first in
//! the data's order of preference is reported and the others are listed in
//! `alternatives`; `lines` is `None` unless the text or the hint settles it.

use serde::{Deserialize, Serialize};

/// The kind of vehicle a layout belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleKind {
    /// Cars, buses, trucks: long one-line or short two-line plates.
    Car,
    /// Motorbikes, mopeds and electric bikes: small two-line plates.
    Motorbike,
    /// Trailers and semi-trailers (series R).
    Trailer,
}

impl VehicleKind {
    /// The name used in the data files and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            VehicleKind::Car => "car",
            VehicleKind::Motorbike => "motorbike",
            VehicleKind::Trailer => "trailer",
        }
    }
}

/// A plate that fits a known layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlateNumber {
    /// Upper case, only `0-9`, `A-Z` and `Đ`: `30A12345`. Identifies the vehicle.
    pub canonical: String,
    /// As printed: `30A-123.45`, `29-B1 123.45`, `29-MĐ1 123.45`.
    pub display: String,
    /// The two-digit local code: `30`.
    pub local_code: String,
    /// The series: `A`, `B1`, `HA`, `MĐ1`, `LD`.
    pub series: String,
    /// The registration number, digits only: `12345`.
    pub number: String,
    /// Id of the layout in the grammar data (`car-long-5`, `moto-5`, …).
    pub layout: String,
    /// Number of text lines on the plate, where known (from the layout or the
    /// detector's hint); `None` where the text fits layouts with different
    /// line counts and no hint was given.
    pub lines: Option<u8>,
    /// The vehicle kind of `layout`.
    pub vehicle: VehicleKind,
    /// Current (post-2025) province of the local code.
    pub province: Option<String>,
    /// Other layouts the same text fits (same canonical form), in order of
    /// preference. Non-empty means `layout`, `display`, `vehicle` are the
    /// preferred reading, not a certainty.
    #[serde(default)]
    pub alternatives: Vec<String>,
    /// True where the layout is marked `check` in the data: the rule that
    /// makes this text a plate is not confirmed (special series, old
    /// two-letter motorbike plates). Whether the province assignment of the
    /// local code is confirmed is in [`LocalCode::check`].
    ///
    /// [`LocalCode::check`]: super::LocalCode::check
    #[serde(default)]
    pub check: bool,
}

impl PlateNumber {
    /// The display form split into the lines printed on the plate: one line for
    /// one-line plates; for two-line plates, the first line and the rest.
    /// Two-line car plates are written like the one-line form (`30A-123.45`) and
    /// split at the first dash.
    pub fn display_lines(&self) -> Vec<String> {
        if self.lines != Some(2) {
            return vec![self.display.clone()];
        }
        let split = self
            .display
            .split_once(' ')
            .or_else(|| self.display.split_once('-'));
        match split {
            Some((a, b)) => vec![a.to_string(), b.to_string()],
            None => vec![self.display.clone()],
        }
    }
}
