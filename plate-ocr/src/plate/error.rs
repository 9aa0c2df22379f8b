//! Errors of the plate grammar: why a text is not a plate, and why grammar data
//! could not be loaded.
//!
//! Positions in read errors are 1-based character positions in the text that
//! was given (separators included), so `3OA-I23.45` reports the `I` at 5.
//! Data errors name the file and, where the parser knows it, the line and the
//! field (`layout[2].pattern`).

use std::fmt;

/// Why a text is not a valid plate, or why grammar data is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// Nothing left after dropping separators.
    #[error("empty plate text")]
    Empty,
    /// A character that no plate can contain.
    #[error("bad character {ch:?} at position {position}: {reason}")]
    BadCharacter {
        /// The character as given.
        ch: char,
        /// 1-based position in the given text.
        position: usize,
        /// Why it is not allowed.
        reason: String,
    },
    /// The first two characters are digits, but no province uses that code.
    #[error("unknown local code {code:?}: no province uses it")]
    UnknownLocalCode {
        /// The two digits.
        code: String,
    },
    /// No layout has this many characters.
    #[error("{text:?} has {len} characters; no plate layout has that many")]
    NoLayoutOfLength {
        /// The canonical text.
        text: String,
        /// Its length in characters.
        len: usize,
    },
    /// Layouts of this length exist, but a character does not fit any of them.
    #[error(
        "{text:?} fits no plate layout: {ch:?} at position {position} should be {expected} \
         (closest layout: {layout})"
    )]
    NoLayoutMatches {
        /// The canonical text.
        text: String,
        /// The layout that matched the longest prefix.
        layout: String,
        /// 1-based position in the given text of the first character that
        /// does not fit that layout.
        position: usize,
        /// That character.
        ch: char,
        /// What the layout expects there (`a digit`, `a series letter`, …).
        expected: String,
    },
    /// Grammar data (layouts or provinces) is not valid.
    #[error("{}", DataLocation { file, line: *line, field: field.as_deref(), message })]
    Data {
        /// The file (or the name given for the text).
        file: String,
        /// 1-based line, where known.
        line: Option<usize>,
        /// The field, where known: `layout[2].pattern`, `province[0].codes`.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A grammar data file could not be read.
    #[error("cannot read {file}: {message}")]
    Io {
        /// The file.
        file: String,
        /// The operating system's message.
        message: String,
    },
}

struct DataLocation<'a> {
    file: &'a str,
    line: Option<usize>,
    field: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for DataLocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_error_names_file_line_field() {
        let e = GrammarError::Data {
            file: "layouts.toml".into(),
            line: Some(12),
            field: Some("layout[0].pattern".into()),
            message: "unknown slot class 'X'".into(),
        };
        assert_eq!(
            e.to_string(),
            "layouts.toml:12: layout[0].pattern: unknown slot class 'X'"
        );
    }
}
