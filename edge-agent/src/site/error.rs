//! Errors of the site file that a person can act on: which file, which line
//! and column, which field, what is wrong.
//!
//! Syntax and type errors come from `toml` with a byte span; semantic ones
//! come from validation with a field path (`lanes[2].polygon[3]`). Either
//! way the document is re-parsed into `toml`'s spanned tree so the error
//! carries both the path and the line.

use std::fmt;
use toml::de::{DeTable, DeValue};

/// A site file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// The file could not be read.
    #[error("{file}: cannot read: {message}")]
    Io {
        /// The file.
        file: String,
        /// The reason.
        message: String,
    },
    /// The file was read but is not a valid site configuration.
    #[error("{0}")]
    Invalid(Located),
}

/// Where in the file a problem is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `lanes[2].polygon[3]` (empty: the document).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl SiteError {
    /// The location, for an invalid file.
    pub fn located(&self) -> Option<&Located> {
        match self {
            SiteError::Invalid(l) => Some(l),
            SiteError::Io { .. } => None,
        }
    }

    pub(crate) fn from_toml(file: &str, text: &str, err: &toml::de::Error) -> Self {
        let span = err.span();
        let (line, column) = match &span {
            Some(s) => line_col(text, s.start),
            None => (None, None),
        };
        let field = span
            .and_then(|s| {
                let doc = DeTable::parse(text).ok()?;
                let mut path = String::new();
                path_at(doc.get_ref(), s.start, &mut path);
                Some(path)
            })
            .unwrap_or_default();
        SiteError::Invalid(Located {
            file: file.to_owned(),
            line,
            column,
            field,
            message: err.message().trim().to_owned(),
        })
    }

    pub(crate) fn semantic(file: &str, text: &str, field: String, message: String) -> Self {
        let offset = DeTable::parse(text)
            .ok()
            .and_then(|doc| span_of(doc.get_ref(), &field));
        let (line, column) = match offset {
            Some(o) => line_col(text, o),
            None => (None, None),
        };
        SiteError::Invalid(Located {
            file: file.to_owned(),
            line,
            column,
            field,
            message,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let Some(before) = text.get(..offset.min(text.len())) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (Some(line), Some(col))
}

/// Appends to `path` the deepest field whose key or value spans `offset`.
fn path_at(table: &DeTable<'_>, offset: usize, path: &mut String) {
    for (key, value) in table.iter() {
        let on_key = key.span().contains(&offset);
        if on_key || deep_contains(value, offset) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            if !on_key {
                value_path_at(value.get_ref(), offset, path);
            }
            return;
        }
    }
}

fn value_path_at(value: &DeValue<'_>, offset: usize, path: &mut String) {
    match value {
        DeValue::Table(t) => path_at(t, offset, path),
        DeValue::Array(items) => {
            if let Some((i, item)) = items
                .iter()
                .enumerate()
                .find(|(_, it)| deep_contains(it, offset))
            {
                path.push_str(&format!("[{i}]"));
                value_path_at(item.get_ref(), offset, path);
            }
        }
        _ => {}
    }
}

/// Whether the value, or anything in it, spans `offset` (the span of a
/// table made by `[header]` lines does not cover its keys).
fn deep_contains(value: &toml::Spanned<DeValue<'_>>, offset: usize) -> bool {
    if value.span().contains(&offset) {
        return true;
    }
    match value.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .any(|(k, v)| k.span().contains(&offset) || deep_contains(v, offset)),
        DeValue::Array(items) => items.iter().any(|it| deep_contains(it, offset)),
        _ => false,
    }
}

/// Byte offset of the field at `path` (`a.b[2].c`), or of the nearest
/// ancestor that exists in the document.
fn span_of(root: &DeTable<'_>, path: &str) -> Option<usize> {
    let mut best = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut table = Some(root);
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let t = match (table, current) {
            (Some(t), None) => t,
            (_, Some(DeValue::Table(t))) => t,
            _ => return best,
        };
        let Some((key, value)) = t.iter().find(|(k, _)| k.get_ref() == name) else {
            return best;
        };
        best = Some(
            if value.get_ref().is_table() || value.get_ref().is_array() {
                key.span().start
            } else {
                value.span().start
            },
        );
        let mut v = value.get_ref();
        for idx in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = idx.parse().ok()?;
            let DeValue::Array(items) = v else {
                return best;
            };
            let Some(item) = items.get(i) else {
                return best;
            };
            best = Some(element_start(item));
            v = item.get_ref();
        }
        table = None;
        current = Some(v);
    }
    best
}

/// Start of an array element: its first key for a table (an `[[array]]`
/// header's span may be empty), else the value itself.
fn element_start(item: &toml::Spanned<DeValue<'_>>) -> usize {
    if let DeValue::Table(t) = item.get_ref() {
        let first = t.iter().map(|(k, _)| k.span().start).min();
        if let Some(start) = first
            && (item.span().is_empty() || start < item.span().start)
        {
            return start;
        }
    }
    item.span().start
}
