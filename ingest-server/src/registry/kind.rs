//! What kind of vehicle a registration names, read from the registry's own
//! wording, so a plate registered to a motorbike that the camera saw on a
//! car (or the other way round) is held for a person instead of fining the
//! registered owner for someone else's vehicle.
//!
//! Registries write the type in their own words and spelling: English
//! (`car`, `Motorcycle`), Vietnamese in several forms (`Ô tô con`, `xe gắn
//! máy`, `Mô tô hai bánh`), composed or decomposed Unicode (a CSV saved on
//! a Mac spells `ô` as `o` + a combining circumflex). The text is compared
//! NFC-normalised, lower-cased, with runs of spaces, `-` and `_` as one
//! space; a Vietnamese type is recognised by how it starts (`ô tô …`,
//! `xe máy …`). A type recognised as neither is [`None`]: the caller does
//! not guess (see `resolve::registration_status`).

use unicode_normalization::UnicodeNormalization;

/// Two wheels or four (or more): the distinction the camera's class and
/// the registry's type can be checked against each other on. Within four
/// wheels (car, bus, truck) the detector mixes them up, so that is no
/// mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wheels {
    /// Motorbike, moped, scooter (petrol or electric).
    Two,
    /// Car, van, bus, coach, truck.
    Four,
}

/// English names, whole.
const TWO_EN: &[&str] = &[
    "motorcycle",
    "motorbike",
    "moped",
    "scooter",
    "motor cycle",
    "electric motorcycle",
    "electric motorbike",
    "electric scooter",
    "e scooter",
    "two wheeler",
];
const FOUR_EN: &[&str] = &[
    "car",
    "passenger car",
    "bus",
    "minibus",
    "coach",
    "truck",
    "pickup",
    "pickup truck",
    "lorry",
    "van",
    "suv",
    "automobile",
];
/// Vietnamese beginnings: `mô tô`, `xe máy điện`, `xe gắn máy`…
const TWO_VI: &[&str] = &["mô tô", "xe mô tô", "xe máy", "xe gắn máy", "gắn máy"];
/// `ô tô con`, `xe ô tô tải`, `xe khách`, `xe buýt`…
const FOUR_VI: &[&str] = &[
    "ô tô",
    "xe ô tô",
    "xe con",
    "xe khách",
    "xe tải",
    "xe buýt",
    "xe bus",
    "xe bán tải",
    "xe đầu kéo",
    "xe chở người",
    "xe chở hàng",
];

/// The text as compared: NFC, lower case, runs of white space as one
/// space, trimmed (registration statuses are compared so too).
pub fn normalise(t: &str) -> String {
    let t: String = t.nfc().flat_map(char::to_lowercase).collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Specialised machines whose legal names begin like a motorbike's
/// (`xe máy chuyên dùng`: rollers, excavators; `xe máy kéo`: tractors):
/// neither two wheels nor a road car.
const MACHINES_VI: &[&str] = &["xe máy chuyên dùng", "xe máy kéo", "máy kéo"];

/// Two or four wheels, or `None` when the words are none this knows
/// (`-` and `_` count as spaces).
pub fn wheels(t: &str) -> Option<Wheels> {
    let t = normalise(&t.replace(['-', '_'], " "));
    let starts = |p: &str| t == p || t.strip_prefix(p).is_some_and(|r| r.starts_with(' '));
    if MACHINES_VI.iter().any(|p| starts(p)) {
        None
    } else if TWO_EN.contains(&t.as_str()) || TWO_VI.iter().any(|p| starts(p)) {
        Some(Wheels::Two)
    } else if FOUR_EN.contains(&t.as_str()) || FOUR_VI.iter().any(|p| starts(p)) {
        Some(Wheels::Four)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_wordings_are_read() {
        for two in [
            "motorcycle",
            " Motorbike ",
            "xe máy",
            "Xe máy điện",
            "xe gắn máy",
            "Mô tô hai bánh",
            "XE MÔ TÔ",
            "electric-scooter",
        ] {
            assert_eq!(wheels(two), Some(Wheels::Two), "{two:?}");
        }
        for four in [
            "car",
            "Ô tô con",
            "ô tô tải",
            "xe ô tô",
            "Xe khách",
            "xe  buýt",
            "pickup_truck",
            "Van",
        ] {
            assert_eq!(wheels(four), Some(Wheels::Four), "{four:?}");
        }
    }

    #[test]
    fn decomposed_unicode_reads_as_composed() {
        let nfd: String = "Ô tô con".nfd().collect();
        assert_ne!(nfd, "Ô tô con");
        assert_eq!(wheels(&nfd), Some(Wheels::Four));
        let nfd: String = "xe gắn máy".nfd().collect();
        assert_eq!(wheels(&nfd), Some(Wheels::Two));
    }

    /// Not guessed: unknown words, a word that merely contains a known one,
    /// and `ô tô` inside `mô tô` are told apart.
    #[test]
    fn unknown_words_are_none() {
        for t in [
            "",
            "unknown",
            "khác",
            "cars",
            "motorcyclex",
            "xe",
            "máy kéo",
            "Xe máy chuyên dùng",
            "xe máy kéo",
        ] {
            assert_eq!(wheels(t), None, "{t:?}");
        }
        assert_eq!(wheels("mô tô"), Some(Wheels::Two));
        assert_eq!(wheels("ô tô"), Some(Wheels::Four));
    }
}
