//! The resolver against real files in temporary directories: a good file, a
//! wrong sha256, a missing file, a mirror lookup, and a trained model found in
//! the repository.

use model_resolver::{Manifest, Network, ResolveError, Resolver, sha256_file};
use std::fs;
use std::path::Path;

fn manifest_for(name: &str, bytes: &[u8], source: &str, mirror_path: Option<&str>) -> Manifest {
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(bytes))
    };
    let mirror = mirror_path
        .map(|p| format!("mirror_path = \"{p}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[[model]]
name = "{name}"
file = "{name}.onnx"
sha256 = "{sha}"
size = {size}
licence = "test"
purpose = "test"
{mirror}source = {source}
input = "x"
preprocess = "x"
"#,
        size = bytes.len()
    );
    Manifest::parse(&text, "test").expect("test manifest parses")
}

const URL: &str = r#"{ kind = "url", url = "https://example.invalid/m.onnx" }"#;

#[test]
fn good_file_in_models_dir_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = b"model bytes";
    fs::write(dir.path().join("m.onnx"), bytes).unwrap();
    let r = Resolver::new(manifest_for("m", bytes, URL, None), dir.path());
    let p = r.resolve("m").expect("present file resolves");
    assert_eq!(p, dir.path().join("m.onnx"));
}

#[test]
fn wrong_sha_is_reported_and_not_used() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("m.onnx"), b"other bytes").unwrap();
    let r = Resolver::new(manifest_for("m", b"model bytes", URL, None), dir.path());
    let err = r.resolve("m").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ResolveError::NotFound { .. }));
    assert!(text.contains("`m`"), "{text}");
    assert!(text.contains("wrong"), "names what was wrong: {text}");
    assert!(
        text.contains("make models"),
        "says how to provide it: {text}"
    );
}

#[test]
fn missing_file_lists_every_place_tried() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = tempfile::tempdir().unwrap();
    let r = Resolver::new(manifest_for("m", b"x", URL, None), dir.path())
        .with_mirror(Some(mirror.path().to_path_buf()));
    let text = r.resolve("m").unwrap_err().to_string();
    assert!(text.contains("models directory"), "{text}");
    assert!(text.contains("mirror"), "{text}");
    assert!(text.contains("official address"), "{text}");
    assert!(text.contains("never download"), "{text}");
}

#[test]
fn mirror_copy_is_verified_and_installed() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = tempfile::tempdir().unwrap();
    let bytes = b"mirrored model";
    fs::create_dir_all(mirror.path().join("family")).unwrap();
    fs::write(mirror.path().join("family/m.onnx"), bytes).unwrap();
    let r = Resolver::new(
        manifest_for("m", bytes, URL, Some("family/m.onnx")),
        dir.path(),
    )
    .with_mirror(Some(mirror.path().to_path_buf()));
    let p = r.resolve("m").expect("mirror copy resolves");
    assert_eq!(fs::read(&p).unwrap(), bytes);
    assert_eq!(sha256_file(&p).unwrap().len(), 64);
    assert!(!dir.path().join(".m.onnx.partial").exists());
}

#[test]
fn corrupt_mirror_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = tempfile::tempdir().unwrap();
    fs::write(mirror.path().join("m.onnx"), b"tampered").unwrap();
    let r = Resolver::new(manifest_for("m", b"genuine", URL, None), dir.path())
        .with_mirror(Some(mirror.path().to_path_buf()))
        .with_network(Network::Off);
    assert!(r.resolve("m").is_err());
    assert!(
        !dir.path().join("m.onnx").exists(),
        "a bad copy is never installed"
    );
}

#[test]
fn trained_model_comes_from_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let bytes = b"our own model";
    fs::create_dir_all(repo.path().join("models/rec")).unwrap();
    fs::write(repo.path().join("models/rec/m.onnx"), bytes).unwrap();
    let source =
        r#"{ kind = "trained", path = "models/rec/m.onnx", command = "make -C models train" }"#;
    let r = Resolver::new(manifest_for("m", bytes, source, None), dir.path())
        .with_repo_root(Some(repo.path().to_path_buf()));
    assert!(r.resolve("m").is_ok());
    let r2 = Resolver::new(
        manifest_for("m", b"different", source, None),
        Path::new("/nonexistent-dir"),
    );
    let text = r2.resolve("m").unwrap_err().to_string();
    assert!(text.contains("make -C models train"), "{text}");
}

#[test]
fn unknown_model_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = Resolver::new(manifest_for("m", b"x", URL, None), dir.path());
    assert!(matches!(r.resolve("nope"), Err(ResolveError::Unknown(_))));
}
