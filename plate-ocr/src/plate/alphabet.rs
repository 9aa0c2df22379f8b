//! The plate alphabet and the canonical form of a plate.
//!
//! The canonical form is what evaluation compares and what the server stores:
//! upper case, only `0-9`, `A-Z` and `Đ`, nothing else. Vietnamese plates use a
//! narrower alphabet than canonical text can hold: the digits, the twenty
//! series letters `A B C D E F G H K L M N P S T U V X Y Z`, `R` (trailers) and
//! `Đ`; `I J O Q W` are never used (`Q` only in the special series `QT`), so
//! they mostly come from a misread. Which characters a plate may hold is
//! decided by the layouts in the data ([`PlateGrammar::alphabet`]).
//!
//! [`PlateGrammar::alphabet`]: super::PlateGrammar::alphabet

/// The Vietnamese letter Đ (U+0110), part of series such as `MĐ`.
pub const DJ: char = 'Đ';

/// The comparison form of a plate: upper case, only `0-9`, `A-Z` and `Đ`.
///
/// Lower-case ASCII letters are upper-cased and `đ` becomes `Đ`; so does `Ð`
/// (U+00D0, the Icelandic eth, which looks the same and which some keyboards
/// and recognisers produce). Everything else is dropped: separators, spaces,
/// line breaks, other Unicode. Never fails.
///
/// ```
/// use plate_ocr::plate::canonicalize;
/// assert_eq!(canonicalize("30a-123.45"), "30A12345");
/// assert_eq!(canonicalize("29-mđ1 123.45"), "29MĐ112345");
/// ```
pub fn canonicalize(text: &str) -> String {
    text.chars().filter_map(canonical_char).collect()
}

/// The canonical form of one character, or `None` where canonicalisation drops it.
pub(crate) fn canonical_char(c: char) -> Option<char> {
    match c {
        '0'..='9' | 'A'..='Z' => Some(c),
        'a'..='z' => Some(c.to_ascii_uppercase()),
        // Đ as typed or pasted: the Vietnamese letter, and the look-alike
        // eth (Icelandic) and African D.
        'Đ' | 'đ' | 'Ð' | 'ð' | 'Ɖ' | 'ɖ' => Some(DJ),
        _ => None,
    }
}

/// Whether `c` is a character of the canonical form (`0-9`, `A-Z`, `Đ`).
pub(crate) fn is_canonical(c: char) -> bool {
    canonical_char(c) == Some(c)
}

/// Characters that separate groups in written plates and carry no content:
/// whitespace (including line breaks), `-`, `.`, `·`, and the en and em dashes.
pub(crate) fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '·' | '–' | '—')
}

/// Characters of a text reduced to canonical form, each with its 1-based
/// position in the text, and the points where separators broke the text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scanned {
    /// Canonical characters and their 1-based position (in chars) in the input.
    pub chars: Vec<(char, usize)>,
    /// Plate positions `p` (count of characters before) where the input had a
    /// separator or dropped character between characters `p - 1` and `p`.
    pub breaks: Vec<usize>,
    /// The first character that is neither canonical nor a separator, with its
    /// 1-based position.
    pub bad: Option<(char, usize)>,
}

/// Reduce `text` to canonical characters, remembering positions and breaks.
pub(crate) fn scan(text: &str) -> Scanned {
    let mut out = Scanned::default();
    let mut pending_break = false;
    for (i, c) in text.chars().enumerate() {
        match canonical_char(c) {
            Some(k) => {
                if pending_break && !out.chars.is_empty() {
                    out.breaks.push(out.chars.len());
                }
                pending_break = false;
                out.chars.push((k, i + 1));
            }
            None => {
                pending_break = true;
                if out.bad.is_none() && !is_separator(c) {
                    out.bad = Some((c, i + 1));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_keeps_only_plate_text() {
        assert_eq!(canonicalize(" 51g-678.90\n"), "51G67890");
        assert_eq!(canonicalize("đĐÐ"), "ĐĐĐ");
        assert_eq!(canonicalize("ü€😀"), "");
    }

    #[test]
    fn scan_records_breaks_and_positions() {
        let s = scan("29-B1 123.45");
        assert_eq!(s.breaks, vec![2, 4, 7]);
        assert_eq!(s.chars.first(), Some(&('2', 1)));
        assert_eq!(s.chars.get(2), Some(&('B', 4)));
        assert!(s.bad.is_none());
        let s = scan("-30A_1");
        assert_eq!(s.breaks, vec![3]);
        assert_eq!(s.bad, Some(('_', 5)));
    }
}
