//! Plate background colour and the vehicle category it stands for.
//!
//! In Vietnam the background colour of a plate says who the vehicle belongs to,
//! and a notice must record it. Detecting the colour from pixels happens in the
//! vision part; this is only the type and its meaning. Foreign missions (series
//! NG, QT) have white plates with red series letters: the colour alone reads as
//! [`PlateColour::White`], and the series tells them apart.

use serde::{Deserialize, Serialize};

/// Background colour of a plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlateColour {
    /// White, black characters: private individuals and businesses.
    White,
    /// Yellow, black characters: commercial transport (taxis, buses, trucks for hire).
    Yellow,
    /// Blue, white characters: state agencies.
    Blue,
    /// Red: military (letter prefixes), usually outside civil enforcement.
    Red,
    /// Not determined.
    Unknown,
}

impl PlateColour {
    /// The vehicle category this colour stands for, in plain English.
    pub fn category(&self) -> &str {
        match self {
            PlateColour::White => "private individual or business",
            PlateColour::Yellow => "commercial transport",
            PlateColour::Blue => "state agency",
            PlateColour::Red => "military",
            PlateColour::Unknown => "unknown",
        }
    }

    /// Whether plates of this colour are normally outside civil enforcement.
    pub fn is_military(&self) -> bool {
        matches!(self, PlateColour::Red)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(PlateColour::Yellow.category(), "commercial transport");
        assert_eq!(PlateColour::Blue.category(), "state agency");
        assert!(PlateColour::Red.is_military());
        assert!(!PlateColour::White.is_military());
    }
}
