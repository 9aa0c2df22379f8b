//! The model manifest: what models exist, what they must hash to, and where
//! they come from. Parsed and validated once; a bad entry is an error that
//! names the entry and the field.

use serde::Deserialize;
use std::path::Path;

/// Where a model comes from when it is not already present.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// An official download address.
    Url { url: String },
    /// A file inside a wheel on PyPI.
    Pypi {
        package: String,
        version: String,
        path: String,
    },
    /// Trained by this project; the file is committed in the repository at
    /// `path` (relative to the repository root), made by `command`.
    Trained { path: String, command: String },
}

/// One model of the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub size: Option<u64>,
    pub licence: String,
    pub purpose: String,
    /// Path inside a mirror directory, when the mirror keeps its own layout.
    pub mirror_path: Option<String>,
    pub source: Source,
    pub input: String,
    pub preprocess: String,
}

/// The whole manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model", default)]
    pub models: Vec<ModelEntry>,
}

/// A manifest that could not be read or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model manifest {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("model manifest {origin}: model `{model}`: {message}")]
    Invalid {
        origin: String,
        model: String,
        message: String,
    },
}

impl Manifest {
    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// The manifest built into this binary.
    pub fn builtin() -> Result<Manifest, ManifestError> {
        Manifest::parse(crate::BUILTIN_MANIFEST, "models/manifest.toml (built in)")
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    fn validate(&self, origin: &str) -> Result<(), ManifestError> {
        let invalid = |model: &str, message: String| ManifestError::Invalid {
            origin: origin.to_string(),
            model: model.to_string(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for m in &self.models {
            if m.name.is_empty() {
                return Err(invalid("<empty>", "name is empty".into()));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(invalid(&m.name, "name appears twice".into()));
            }
            if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    &m.name,
                    format!("sha256 `{}` is not 64 hex digits", m.sha256),
                ));
            }
            if !is_plain_file_name(&m.file) {
                return Err(invalid(
                    &m.name,
                    format!("file `{}` must be a plain file name", m.file),
                ));
            }
            if let Some(p) = &m.mirror_path
                && !is_relative_inside(p)
            {
                return Err(invalid(
                    &m.name,
                    format!("mirror_path `{p}` must be relative, without `..`"),
                ));
            }
            match &m.source {
                Source::Url { url } if !url.starts_with("https://") => {
                    return Err(invalid(
                        &m.name,
                        format!("source url `{url}` must be https"),
                    ));
                }
                Source::Pypi { path, .. } | Source::Trained { path, .. }
                    if !is_relative_inside(path) =>
                {
                    return Err(invalid(
                        &m.name,
                        format!("source path `{path}` must be relative, without `..`"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_plain_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\\')
}

fn is_relative_inside(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|seg| seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_is_valid() {
        let m = Manifest::builtin().expect("the shipped manifest must parse");
        assert!(m.get("yolox_nano").is_some());
    }

    #[test]
    fn bad_sha_is_named() {
        let text = r#"
[[model]]
name = "m"
file = "m.onnx"
sha256 = "abc"
licence = "x"
purpose = "x"
source = { kind = "url", url = "https://example.invalid/m.onnx" }
input = "x"
preprocess = "x"
"#;
        let err = Manifest::parse(text, "t").unwrap_err().to_string();
        assert!(err.contains("`m`") && err.contains("sha256"), "{err}");
    }

    #[test]
    fn path_escape_rejected() {
        let text = r#"
[[model]]
name = "m"
file = "../m.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
licence = "x"
purpose = "x"
source = { kind = "url", url = "https://example.invalid/m.onnx" }
input = "x"
preprocess = "x"
"#;
        assert!(Manifest::parse(text, "t").is_err());
    }
}
