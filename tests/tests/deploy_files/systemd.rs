//! The systemd units, `systemd/ingest-server.service` and
//! `systemd/edge-agent.service`: read as INI and held to the hardening a
//! production service needs (never root, `ProtectSystem=strict` with only
//! the state directory writable, a private umask), their `ExecStart` lines
//! run against the workspace's real binaries (so a renamed subcommand or
//! flag fails here), their environment held to what the programs read, and
//! the whole unit handed to `systemd-analyze verify` where it is installed.
//! Without it, only directives this check knows pass, and the test says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use e2e_tests::binary;

use crate::config::{edge_env_names, env_words, server_env_names};
use crate::support::{accepts, read, shell_words};

/// `[Section]` → key → values (a key may repeat).
type Ini = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Result<Ini, String> {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let name = line
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .ok_or(format!("line {}: bad section header", n + 1))?;
            if ini.contains_key(name) {
                return Err(format!("line {}: section [{name}] twice", n + 1));
            }
            ini.insert(name.to_owned(), BTreeMap::new());
            section = Some(name.to_owned());
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or(format!("line {}: not key=value: {line:?}", n + 1))?;
        let s = section
            .as_ref()
            .ok_or(format!("line {}: key before any section", n + 1))?;
        ini.get_mut(s)
            .unwrap()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    Ok(ini)
}

/// Directives these units may use (systemd 252's names), for the check
/// that runs without systemd-analyze.
const KNOWN_DIRECTIVES: &[(&str, &[&str])] = &[
    (
        "Unit",
        &[
            "Description",
            "After",
            "Wants",
            "Requires",
            "Documentation",
            "Before",
        ],
    ),
    (
        "Service",
        &[
            "Type",
            "User",
            "Group",
            "SupplementaryGroups",
            "Environment",
            "EnvironmentFile",
            "ExecStartPre",
            "ExecStart",
            "Restart",
            "RestartSec",
            "KillSignal",
            "TimeoutStopSec",
            "StateDirectory",
            "StateDirectoryMode",
            "UMask",
            "NoNewPrivileges",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectControlGroups",
            "RestrictSUIDSGID",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "ReadWritePaths",
        ],
    ),
    ("Install", &["WantedBy"]),
];

/// Both units: structure, hardening, commands against the binaries,
/// environment, and `systemd-analyze verify`.
pub fn systemd_units_verify_and_their_commands_run() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("systemd-analyze is not installed: run `make setup` (scripts/setup-system.sh installs systemd)");
    let dir = tempfile::tempdir().unwrap();
    for (unit, bin_name) in [
        ("ingest-server.service", "ingest-server"),
        ("edge-agent.service", "edge-agent"),
    ] {
        let text = read(&format!("systemd/{unit}"));
        let ini = parse_unit(&text).unwrap_or_else(|e| panic!("{unit}: {e}"));
        let get = |s: &str, k: &str| -> Vec<String> {
            ini.get(s)
                .and_then(|m| m.get(k))
                .cloned()
                .unwrap_or_default()
        };
        let one = |s: &str, k: &str| -> String {
            let v = get(s, k);
            assert_eq!(
                v.len(),
                1,
                "{unit}: [{s}] {k} must be given once, found {v:?}"
            );
            v[0].clone()
        };
        {
            // Beside systemd-analyze (which knows every directive and its
            // values), only the directives these units are known to use
            // pass: a new one is looked at before it ships.
            for (section, keys) in KNOWN_DIRECTIVES {
                for k in ini
                    .get(*section)
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    assert!(
                        keys.contains(&k.as_str()),
                        "{unit}: [{section}] {k} is not a directive this check knows"
                    );
                }
            }
        }
        for s in ini.keys() {
            assert!(
                ["Unit", "Service", "Install"].contains(&s.as_str()),
                "{unit}: section [{s}]"
            );
        }
        assert!(!one("Unit", "Description").is_empty());
        assert_eq!(one("Install", "WantedBy"), "multi-user.target");
        assert!(["always", "on-failure"].contains(&one("Service", "Restart").as_str()));
        assert_ne!(one("Service", "User"), "root", "{unit}: never as root");
        // Hardening.
        for (k, v) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("ProtectKernelModules", "yes"),
            ("RestrictSUIDSGID", "yes"),
        ] {
            assert_eq!(one("Service", k), v, "{unit}: {k}");
        }
        // ProtectSystem=strict: the only writable place is the state directory.
        let state = one("Service", "StateDirectory");
        assert_eq!(
            one("Service", "ReadWritePaths"),
            format!("/var/lib/{state}"),
            "{unit}"
        );
        assert_eq!(
            one("Service", "UMask"),
            "0077",
            "{unit}: keys and evidence private"
        );

        // The commands: the workspace's binary, its subcommands and flags.
        let env: Vec<(String, String)> = get("Service", "Environment")
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').expect("Environment=K=V");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let built = binary(bin_name);
        let mut commands = get("Service", "ExecStartPre");
        commands.push(one("Service", "ExecStart"));
        let mut unit_copy = text.clone();
        for c in &commands {
            let words = shell_words(c);
            let exe = words[0].trim_start_matches(['-', '@', '+', '!']);
            assert_eq!(
                exe,
                format!("/usr/local/bin/{bin_name}"),
                "{unit}: runs the workspace's {bin_name}"
            );
            accepts(&built, &words[1..], &env).unwrap_or_else(|e| panic!("{unit}: {e}"));
            unit_copy = unit_copy.replace(exe, &built.display().to_string());
        }
        // Environment variables: ones the program reads.
        let mut known = server_env_names();
        known.extend(edge_env_names(&read("config/edge-agent.toml")));
        known.extend(
            [
                "EDGE_CONFIG",
                "INGEST_CONFIG",
                "RUST_LOG",
                "MODELS_DIR",
                "ORT_DYLIB_PATH",
            ]
            .map(String::from),
        );
        for (k, _) in &env {
            assert!(
                known.contains(k),
                "{unit}: Environment={k} is read by nothing"
            );
        }
        // The EnvironmentFile's documented lines (`#   NAME=...`).
        for w in env_words(&text, &["INGEST_", "DATABASE_URL", "EDGE_"]) {
            assert!(
                known.contains(&w),
                "{unit}: mentions {w}, which nothing reads"
            );
        }
        if bin_name == "edge-agent" {
            assert!(
                commands.iter().any(|c| c.ends_with(" run")),
                "the edge unit runs the live box"
            );
        }

        let path = dir.path().join(unit);
        std::fs::write(&path, &unit_copy).unwrap();
        let out = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Complaints about the unit itself (not about the host's other
        // units or missing users) fail the test.
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(unit)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {unit}: {stderr}"
        );
    }
}
