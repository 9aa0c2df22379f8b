//! The `plate-ocr` binary: a directory with one bad file reports that file's
//! error on its own line, reads the others, and exits non-zero.
#![cfg(feature = "vision")]

mod support;

use std::process::Command;

fn copy_named_crops(dst: &std::path::Path, n: usize) -> Vec<String> {
    let src = support::data_dir().join("vn_crops_named");
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .expect("listing vn_crops_named")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for f in files.into_iter().take(n) {
        let name = f
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&f, dst.join(&name)).expect("copying a test image");
        names.push(name);
    }
    assert_eq!(names.len(), n, "vn_crops_named has fewer than {n} images");
    names
}

#[test]
fn bad_file_in_directory_is_reported_and_run_continues() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = copy_named_crops(dir.path(), 2);
    std::fs::write(
        dir.path().join("broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_plate-ocr"))
        .args(["read", "--json", "--crop"])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running plate-ocr");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must exit non-zero; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "one line per input:\n{stdout}");
    let bad: Vec<_> = lines
        .iter()
        .filter(|v| {
            v["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("broken.jpg"))
        })
        .collect();
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("broken.jpg")),
        "{}",
        bad[0]
    );
    for name in &good {
        let line = lines
            .iter()
            .find(|v| {
                v["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(name.as_str()))
            })
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"));
        assert!(line.get("error").is_none(), "{line}");
        let plates = line["plates"].as_array().expect("plates array");
        assert_eq!(plates.len(), 1, "{line}");
        let conf = plates[0]["confidence"].as_f64().expect("confidence");
        assert!((0.0..=1.0).contains(&conf), "{line}");
        assert!(line["ms"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    }
}

#[test]
fn all_good_inputs_exit_zero_and_missing_file_exits_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_named_crops(dir.path(), 1);
    let ok = Command::new(env!("CARGO_BIN_EXE_plate-ocr"))
        .args(["read", "--crop"])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running plate-ocr");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_plate-ocr"))
        .args(["read", "--crop", "/nonexistent/plate.jpg"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running plate-ocr");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("/nonexistent/plate.jpg"));
}

#[test]
fn missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_named_crops(dir.path(), 1);
    // An empty models directory and no mirror: the recogniser cannot resolve.
    let out = Command::new(env!("CARGO_BIN_EXE_plate-ocr"))
        .args(["read", "--crop", "--recognizer", "vn"])
        .arg(dir.path())
        .env("MODELS_DIR", dir.path().join("models"))
        .env("MODEL_MIRROR", dir.path().join("no-mirror"))
        .current_dir(dir.path())
        .output()
        .expect("running plate-ocr");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vn_plate_rec"),
        "error must name the model:\n{stderr}"
    );
}

/// `plate-ocr read --json DIR | head -1`: the reader of the output goes
/// away; the CLI stops without a panic (Rust ignores SIGPIPE, so a
/// `println!` into a closed pipe panics with exit status 101).
#[test]
fn a_closed_output_pipe_stops_the_run_without_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = support::data_dir().join("vn_crops_named");
    // The directory many times over: far more output than a pipe buffers,
    // so the run cannot finish before the pipe is closed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_plate-ocr"))
        .args(["read", "--crop", "--json"])
        .args(std::iter::repeat_n(&dir, 40))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running plate-ocr");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("reading the first line");
    assert!(first.starts_with('{'), "{first}");
    // The reader is dropped here: the pipe is closed.
    let out = child.wait_with_output().expect("waiting for plate-ocr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plate-ocr"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running plate-ocr")
}

#[test]
fn a_confidence_threshold_outside_zero_to_one_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_named_crops(dir.path(), 1);
    let path = dir.path().to_string_lossy().into_owned();
    for bad in ["-1", "1.5", "nan", "NaN", "inf"] {
        let flag = format!("--min-confidence={bad}");
        let out = run_cli(&["read", "--crop", &flag, &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad}: nothing is read");
        assert!(stderr.contains("--min-confidence"), "{bad}: {stderr}");
        assert!(stderr.contains("between 0 and 1"), "{bad}: {stderr}");
    }
    let out = run_cli(&["read", "--crop", "--min-confidence=0.7", &path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn three_views_without_the_vn_recogniser_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_named_crops(dir.path(), 1);
    let path = dir.path().to_string_lossy().into_owned();
    let out = run_cli(&["read", "--crop", "--views", "3", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("--views") && stderr.contains("vn"),
        "{stderr}"
    );
}

/// A directory entry that looks like an image but cannot be read (here a
/// link to nothing) is reported like an unreadable file, not skipped.
#[test]
fn an_unreadable_directory_entry_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_named_crops(dir.path(), 1);
    std::os::unix::fs::symlink(dir.path().join("nowhere.jpg"), dir.path().join("gone.jpg"))
        .expect("symlink");
    let path = dir.path().to_string_lossy().into_owned();
    let out = run_cli(&["read", "--crop", "--json", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines.iter().any(
            |v| v["path"].as_str().is_some_and(|p| p.ends_with("gone.jpg"))
                && v["error"].is_string()
        ),
        "{stdout}"
    );
}
