//! ONNX Runtime: loading the shared library once, resolving models by name
//! through the manifest, and running a model on one f32 tensor.
//!
//! The library is loaded dynamically (`load-dynamic`) from `ORT_DYLIB_PATH`,
//! or else from `.deps/onnxruntime/lib/libonnxruntime.so` under the current
//! directory, its parents, or the repository this crate was built in. The
//! environment is created once per process behind a `OnceLock`; a missing
//! library is an error for every model load, never a panic.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};

use crate::error::{Result, VisionError};

/// Where the library is looked for under a repository root.
const DYLIB_REL: &str = ".deps/onnxruntime/lib/libonnxruntime.so";

static ENV: OnceLock<std::result::Result<Environment, (PathBuf, String)>> = OnceLock::new();

/// The ONNX Runtime library this process will use: `ORT_DYLIB_PATH`, or the
/// first `.deps/onnxruntime/lib/libonnxruntime.so` found from the current
/// directory upwards, or under the repository this crate was built from.
pub fn dylib_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let mut tried = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        tried.extend(cwd.ancestors().map(|d| d.join(DYLIB_REL)));
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    tried.extend(manifest_dir.ancestors().map(|d| d.join(DYLIB_REL)));
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DYLIB_REL))
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment() -> Result<&'static Environment> {
    let env = ENV.get_or_init(|| {
        let path = dylib_path();
        if !path.is_file() {
            return Err((path, "file not found".to_string()));
        }
        let builder = ort::init_from(&path).map_err(|e| (path.clone(), e.to_string()))?;
        builder
            .with_name("plate-ocr")
            .with_telemetry(false)
            .build()
            .map_err(|e| (path.clone(), e.to_string()))
    });
    env.as_ref()
        .map_err(|(path, message)| VisionError::Runtime {
            path: path.clone(),
            message: message.clone(),
        })
}

/// How sessions are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Threads ONNX Runtime uses inside one operator (default 1: one camera
    /// stream per core scales better than one stream over many cores).
    pub intra_threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { intra_threads: 1 }
    }
}

/// Resolves a model by its manifest name to a verified file.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    let manifest = model_resolver::Manifest::builtin().map_err(|e| VisionError::ModelMissing {
        name: name.to_string(),
        message: format!("built-in manifest: {e}"),
    })?;
    let resolver = resolver_from_env(manifest);
    resolver
        .resolve(name)
        .map_err(|e| VisionError::ModelMissing {
            name: name.to_string(),
            message: e.to_string(),
        })
}

/// `Resolver::from_env`, but also finding the repository root (for the models
/// directory, the mirror and committed models) from a crate directory, so
/// tests and benches run from `plate-ocr/` find the same files.
fn resolver_from_env(manifest: model_resolver::Manifest) -> model_resolver::Resolver {
    let cwd_is_root = Path::new("models/manifest.toml").is_file();
    let env_set = std::env::var_os("MODELS_DIR").is_some();
    if cwd_is_root || env_set {
        return model_resolver::Resolver::from_env(manifest);
    }
    let root = std::env::current_dir()
        .ok()
        .and_then(|d| {
            d.ancestors()
                .find(|a| a.join("models/manifest.toml").is_file())
                .map(Path::to_path_buf)
        })
        .or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .filter(|p| p.join("models/manifest.toml").is_file())
                .map(Path::to_path_buf)
        });
    match root {
        Some(root) => {
            let mirror = std::env::var_os("MODEL_MIRROR")
                .filter(|m| !m.is_empty())
                .map(PathBuf::from)
                .or_else(|| Some(root.join("../shared/models")).filter(|p| p.is_dir()));
            model_resolver::Resolver::new(manifest, root.join(".models"))
                .with_mirror(mirror)
                .with_repo_root(Some(root))
        }
        None => model_resolver::Resolver::from_env(manifest),
    }
}

/// A loaded model: one ONNX Runtime session with its name for messages.
pub struct Model {
    name: String,
    path: PathBuf,
    session: Mutex<Session>,
    input: String,
    input_shape: Vec<i64>,
    outputs: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("input", &self.input)
            .field("input_shape", &self.input_shape)
            .finish()
    }
}

impl Model {
    /// Resolves `name` through the manifest and loads it.
    pub fn load_named(name: &str, config: SessionConfig) -> Result<Model> {
        let path = resolve_model(name)?;
        Model::load(name, &path, config)
    }

    /// Loads the model file at `path`, naming it `name` in errors.
    pub fn load(name: &str, path: &Path, config: SessionConfig) -> Result<Model> {
        let err = |message: String| VisionError::Model {
            name: name.to_string(),
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(VisionError::ModelMissing {
                name: name.to_string(),
                message: format!("{} is not a file", path.display()),
            });
        }
        let env = environment()?;
        let threads = config.intra_threads.max(1);
        let session = Session::builder(env)
            .map_err(|e| err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| err(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| err(format!("cannot load: {e}")))?;
        let first = session
            .inputs()
            .first()
            .ok_or_else(|| err("has no inputs".to_string()))?;
        let input = first.name().to_string();
        let input_shape = match first.dtype() {
            ValueType::Tensor { shape, .. } => shape.to_vec(),
            other => {
                return Err(err(format!(
                    "input `{input}` is not a tensor but {other:?}"
                )));
            }
        };
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>();
        if outputs.is_empty() {
            return Err(err("has no outputs".to_string()));
        }
        Ok(Model {
            name: name.to_string(),
            path: path.to_path_buf(),
            session: Mutex::new(session),
            input,
            input_shape,
            outputs,
        })
    }

    /// The model's name (manifest name or the one given to [`Model::load`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first input's name.
    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// The first input's declared shape (`-1` for dynamic dimensions).
    pub fn input_shape(&self) -> &[i64] {
        &self.input_shape
    }

    /// The output names, in order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// An error about this model's contract.
    pub fn contract_error(&self, message: impl Into<String>) -> VisionError {
        VisionError::Model {
            name: self.name.clone(),
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// A custom metadata value of the model, if present.
    pub fn metadata(&self, key: &str) -> Result<Option<String>> {
        let session = self
            .session
            .lock()
            .map_err(|_| self.contract_error("session lock poisoned"))?;
        let meta = session
            .metadata()
            .map_err(|e| self.contract_error(format!("cannot read metadata: {e}")))?;
        Ok(meta.custom(key))
    }

    /// Runs the model on one f32 tensor `data` of `shape`, returning the named
    /// output (or the first one) as its shape and values.
    pub fn run(
        &self,
        shape: &[usize],
        data: &[f32],
        output: Option<&str>,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let fail = |message: String| VisionError::Inference {
            name: self.name.clone(),
            message,
        };
        let expected: usize = shape.iter().product();
        if expected != data.len() || expected == 0 {
            return Err(fail(format!(
                "input of shape {shape:?} needs {expected} values, got {}",
                data.len()
            )));
        }
        let tensor =
            TensorRef::from_array_view((shape.to_vec(), data)).map_err(|e| fail(e.to_string()))?;
        // A run that panicked elsewhere left the session as ONNX Runtime
        // left it (each run is self-contained): go on with it rather than
        // failing every later read of this model.
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| fail(e.to_string()))?;
        let name = output.unwrap_or(self.outputs[0].as_str());
        let value = outputs
            .get(name)
            .ok_or_else(|| fail(format!("no output named `{name}`")))?;
        let (out_shape, values) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(format!("output `{name}`: {e}")))?;
        let dims = out_shape
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| fail(format!("output `{name}` has dimension {d}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((dims, values.to_vec()))
    }
}
