//! The models this box needs, resolved at start through the model manifest
//! with the network off: a box never downloads a model by itself.

use model_resolver::{Manifest, Resolver};
use std::path::PathBuf;

/// The models the edge agent runs.
pub const REQUIRED: &[&str] = &["yolox_nano", "y5fu_320", "ppocr_v4_rec"];

/// Resolves every required model, reporting all that are missing at once.
pub fn resolve_required(resolver: &Resolver) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in REQUIRED {
        match resolver.resolve(name) {
            Ok(p) => found.push(p),
            Err(e) => missing.push(e.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing.join("\n"))
    }
}

/// The resolver from the environment over the built-in manifest.
pub fn resolver_from_env() -> Result<Resolver, model_resolver::ManifestError> {
    Ok(Resolver::from_env(Manifest::builtin()?))
}
