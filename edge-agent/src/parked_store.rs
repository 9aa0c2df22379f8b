//! What the rules remember across restarts of the agent: where each camera's
//! illegally stopped vehicles were fined and last seen standing.
//!
//! A car parked in a no-stopping zone for an afternoon outlives any one run
//! of the agent (an update, a crash, a power cut). Without this memory the
//! restarted agent finds it as a new track, its dwell timer fires, and the
//! owner is fined a second time for one act. The rules refresh a violator's
//! spot on every frame it stands there (`rules/repeat.rs`); the camera loop
//! saves the spots here every few seconds when they changed and at stop,
//! and restores them at start. One small JSON file per camera under
//! `<data_dir>/parked/`, replaced atomically (written, synced, renamed,
//! directory synced), so a power cut leaves the old file or the new one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rules::ParkedSpot;

/// Largest file read back (a junction has a handful of spots; the rules
/// keep at most 256, some 30 KB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Format version of the file.
const VERSION: u32 = 1;

/// What can go wrong reading or writing the file.
#[derive(Debug, thiserror::Error)]
pub enum ParkedStoreError {
    #[error("parked-vehicle memory {path}: {step}: {message}")]
    Io {
        step: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("parked-vehicle memory {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File1 {
    version: u32,
    camera_id: String,
    spots: Vec<ParkedSpot>,
}

/// The memory of one camera.
#[derive(Debug, Clone)]
pub struct ParkedStore {
    camera_id: String,
    path: PathBuf,
}

impl ParkedStore {
    /// The memory of `camera_id` under `data_dir` (nothing is touched yet).
    pub fn new(data_dir: &Path, camera_id: &str) -> ParkedStore {
        ParkedStore {
            camera_id: camera_id.to_owned(),
            path: data_dir
                .join("parked")
                .join(format!("{}.json", file_name(camera_id))),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The spots saved by the previous run; none if there was no file.
    /// Invalid spots are dropped; a file that is not this camera's memory
    /// is an error (the caller starts without it, and says so).
    pub fn load(&self) -> Result<Vec<ParkedSpot>, ParkedStoreError> {
        let path = &self.path;
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("opening", path, e)),
        };
        let len = f.metadata().map_err(|e| io_err("reading", path, e))?.len();
        if len > MAX_FILE_BYTES {
            return Err(invalid(
                path,
                format!("{len} bytes, more than {MAX_FILE_BYTES}"),
            ));
        }
        let bytes = fs::read(path).map_err(|e| io_err("reading", path, e))?;
        let file: File1 =
            serde_json::from_slice(&bytes).map_err(|e| invalid(path, e.to_string()))?;
        if file.version != VERSION {
            return Err(invalid(
                path,
                format!("version {}, expected {VERSION}", file.version),
            ));
        }
        if file.camera_id != self.camera_id {
            return Err(invalid(
                path,
                format!(
                    "kept for camera {:?}, not {:?}",
                    file.camera_id, self.camera_id
                ),
            ));
        }
        let total = file.spots.len();
        let spots: Vec<ParkedSpot> = file
            .spots
            .into_iter()
            .filter(ParkedSpot::is_valid)
            .collect();
        if spots.len() < total {
            tracing::warn!(path = %path.display(), dropped = total - spots.len(), "invalid parked spots dropped");
        }
        Ok(spots)
    }

    /// Replaces the file with `spots`.
    pub fn save(&self, spots: &[ParkedSpot]) -> Result<(), ParkedStoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
        let body = serde_json::to_vec_pretty(&File1 {
            version: VERSION,
            camera_id: self.camera_id.clone(),
            spots: spots.to_vec(),
        })
        .map_err(|e| invalid(&self.path, e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(|e| io_err("creating", &tmp, e))?;
        f.write_all(&body).map_err(|e| io_err("writing", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("syncing", &tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io_err("renaming into", &self.path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("syncing directory", dir, e))
    }
}

/// `camera_id` as a file name: up to 40 of its letters, digits, `-` and
/// `_`, lower-cased (readable), then 16 hex digits of its SHA-256, so two
/// ids never share a file — not even on a case-insensitive file system (an
/// SD card's FAT) — none escapes the directory, and none is too long.
fn file_name(camera_id: &str) -> String {
    let readable: String = camera_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect::<String>()
        .to_ascii_lowercase();
    let digest = protocol::sha256_hex(camera_id.as_bytes());
    format!("{readable}-{}", &digest[..16])
}

fn io_err(step: &'static str, path: &Path, e: std::io::Error) -> ParkedStoreError {
    ParkedStoreError::Io {
        step,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn invalid(path: &Path, message: String) -> ParkedStoreError {
    ParkedStoreError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000_000;

    fn spot(x: f64) -> ParkedSpot {
        ParkedSpot {
            bbox: [x, 100.0, 80.0, 60.0],
            made_us: T0,
            seen_us: T0 + 1,
        }
    }

    #[test]
    fn spots_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = ParkedStore::new(dir.path(), "cam/1 ../x");
        assert_eq!(store.load().unwrap(), vec![], "no file yet: nothing kept");
        store.save(&[spot(1.0), spot(200.0)]).unwrap();
        assert_eq!(store.load().unwrap(), vec![spot(1.0), spot(200.0)]);
        assert!(store.path().starts_with(dir.path().join("parked")));
        let name = store.path().file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("cam1x-") && name.ends_with(".json"),
            "{name}"
        );
        // Ids differing only in case, or in what is dropped, or very long:
        // each its own short file.
        let names: std::collections::HashSet<_> = ["Cam1", "cam1", "cam/1", &"c".repeat(300)]
            .iter()
            .map(|id| ParkedStore::new(dir.path(), id).path().to_path_buf())
            .collect();
        assert_eq!(names.len(), 4);
        assert!(names.iter().all(|p| p.file_name().unwrap().len() < 64));
        store.save(&[]).unwrap();
        assert_eq!(store.load().unwrap(), vec![]);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = ParkedStore::new(dir.path(), "cam-1");
        fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        for (body, says) in [
            ("{\"version\":1,\"camera_id\":\"cam-1\",\"spots\":[", "EOF"),
            ("\u{0}\u{1}garbage", "expected"),
            (
                "{\"version\":9,\"camera_id\":\"cam-1\",\"spots\":[]}",
                "version 9",
            ),
            (
                "{\"version\":1,\"camera_id\":\"cam-2\",\"spots\":[]}",
                "camera \"cam-2\"",
            ),
            (
                "{\"version\":1,\"camera_id\":\"cam-1\",\"spots\":[],\"x\":1}",
                "unknown field",
            ),
        ] {
            fs::write(store.path(), body).unwrap();
            let err = store.load().unwrap_err().to_string();
            assert!(err.contains(says), "{body:?}: {err}");
            assert!(err.contains("cam-1-"), "names the file: {err}");
        }
        // Invalid spots are dropped, the valid ones kept.
        fs::write(
            store.path(),
            format!(
                "{{\"version\":1,\"camera_id\":\"cam-1\",\"spots\":[\
                 {{\"bbox\":[1,2,0,5],\"made_us\":{T0},\"seen_us\":{T0}}},\
                 {{\"bbox\":[1,2,3,4],\"made_us\":5,\"seen_us\":5}},\
                 {{\"bbox\":[100,100,80,60],\"made_us\":{T0},\"seen_us\":{t1}}}]}}",
                t1 = T0 + 1
            ),
        )
        .unwrap();
        assert_eq!(store.load().unwrap(), vec![spot(100.0)]);
        // Too big to be ours.
        fs::write(store.path(), vec![b' '; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        assert!(store.load().unwrap_err().to_string().contains("more than"));
    }
}
