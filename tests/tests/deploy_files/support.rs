//! What the checks of `deploy/` share: reading its files, splitting command
//! lines as a shell would, asking the real binaries whether a command line
//! exists, YAML read into JSON values for serde, and starting and stopping
//! the real servers (Mosquitto, PostgreSQL) the checks run the files in.
//! Kept in one place so that every check reads `deploy/` and judges a
//! command line or a process the same way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::workspace_root;
use serde_json::Value;

/// The `deploy/` directory of the workspace.
pub fn deploy() -> PathBuf {
    workspace_root().join("deploy")
}

/// A file under `deploy/`, by its path relative to it.
pub fn read(rel: &str) -> String {
    let p = deploy().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Every file under `deploy/`, as paths relative to it.
pub fn deploy_files() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    files_under(&deploy(), &deploy(), &mut found);
    found
}

fn files_under(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, base, out);
        } else {
            out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Splits a command line into words as a shell would: whitespace outside
/// quotes separates, `'` and `"` quote (and an empty quoted word is kept).
pub fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Runs `bin args... --help` (with `env`) and demands success: proves the
/// subcommands and the flags before `--help` exist in the real binary.
pub fn accepts(bin: &Path, args: &[String], env: &[(String, String)]) -> Result<(), String> {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} {} --help` fails: {}",
            bin.file_name().unwrap().to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// YAML documents as JSON values (yaml-rust2 reads, serde types).
pub fn yaml(text: &str) -> Vec<Value> {
    use yaml_rust2::{Yaml, YamlLoader};
    fn conv(y: &Yaml) -> Value {
        match y {
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Yaml::String(s) => s.clone(),
                            Yaml::Integer(i) => i.to_string(),
                            Yaml::Boolean(b) => b.to_string(),
                            other => panic!("unsupported key {other:?}"),
                        };
                        (key, conv(v))
                    })
                    .collect(),
            ),
            Yaml::Array(a) => Value::Array(a.iter().map(conv).collect()),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => Value::from(r.parse::<f64>().expect("a number")),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Null => Value::Null,
            other => {
                panic!("unsupported YAML node {other:?} (aliases and merge keys are not used here)")
            }
        }
    }
    YamlLoader::load_from_str(text)
        .expect("valid YAML")
        .iter()
        .map(conv)
        .collect()
}

/// Whether the test runs as root (the servers then need telling whom to
/// run as).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Waits until 127.0.0.1:`port` accepts TCP connections: false when
/// `deadline` passes or `child` exits first.
pub fn listening(child: &mut Child, port: u16, deadline: Instant) -> bool {
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Sends `child` the signal `signal` (as `kill` names it: `TERM`, `INT`)
/// and waits up to `within` for it to exit: false when it did not.
pub fn signal_and_wait(child: &mut Child, signal: &str, within: Duration) -> bool {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
