//! The runbook, `deploy/README.md`, held to the binaries and to `deploy/`:
//! its sections are there, its table lists every file under `deploy/`,
//! every `ingest-server` and `edge-agent` command it shows (fenced or
//! inline) runs with those flags against the real binary, and every alarm
//! the protocol knows and every metric the edge and the server expose is
//! explained. Also the Secrets it makes (`kubectl create secret generic`),
//! which the Kubernetes check holds the manifest to.

use std::collections::{BTreeMap, BTreeSet};

use e2e_tests::binary;

use crate::support::{accepts, deploy_files, read, shell_words};

/// `kubectl create secret generic NAME ...` lines of the runbook: name → keys.
pub fn documented_secrets() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in read("README.md").lines() {
        let Some(rest) = line.trim().strip_prefix("kubectl create secret generic ") else {
            continue;
        };
        let words = shell_words(rest);
        let keys = out.entry(words[0].clone()).or_default();
        for w in &words[1..] {
            if let Some(kv) = w
                .strip_prefix("--from-literal=")
                .or_else(|| w.strip_prefix("--from-file="))
            {
                keys.insert(kv.split('=').next().unwrap().to_owned());
            }
        }
    }
    out
}

/// `(binary, words)` of every command the runbook shows for our binaries:
/// fenced code lines and inline code spans that start with the name.
fn runbook_commands(text: &str) -> Vec<(String, Vec<String>)> {
    let mut snippets = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            snippets.push(line.trim().to_owned());
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    // Inline spans may wrap across lines.
    let flat = prose.split_whitespace().collect::<Vec<_>>().join(" ");
    for (i, span) in flat.split('`').enumerate() {
        if i % 2 == 1 {
            snippets.push(span.to_owned());
        }
    }
    let mut out = Vec::new();
    for s in snippets {
        // `<placeholder with spaces>` → one word.
        let mut clean = String::new();
        let mut depth = 0;
        for ch in s.chars() {
            match ch {
                '<' => {
                    depth += 1;
                    if depth == 1 {
                        clean.push_str("PLACEHOLDER");
                    }
                }
                '>' if depth > 0 => depth -= 1,
                _ if depth > 0 => {}
                _ => clean.push(ch),
            }
        }
        let mut words = shell_words(&clean);
        // Leading `NAME=value` assignments are the command's environment.
        while words.first().is_some_and(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
        }) {
            words.remove(0);
        }
        if let Some(first) = words
            .first()
            .filter(|w| *w == "ingest-server" || *w == "edge-agent")
        {
            out.push((first.clone(), words[1..].to_vec()));
        }
    }
    out
}

/// Sections, the file table, commands, alarms, metrics and probe routes.
pub fn runbook_commands_alarms_metrics_and_files() {
    let text = read("README.md");
    for heading in [
        "## Enrolling a new intersection",
        "## Key rotation",
        "## Backup and restore",
        "## Alarms and metrics",
    ] {
        assert!(text.contains(heading), "the runbook has {heading:?}");
    }
    // Every file of deploy/ is in the table.
    for f in deploy_files() {
        assert!(
            text.contains(&format!("| `{f}` |")),
            "deploy/README.md's table lacks `{f}`"
        );
    }
    // Every command exists, with the flags it is shown with.
    let cmds = runbook_commands(&text);
    assert!(
        cmds.len() >= 15,
        "found only {} commands: {cmds:?}",
        cmds.len()
    );
    let mut seen = BTreeSet::new();
    for (bin, args) in &cmds {
        accepts(&binary(bin), args, &[]).unwrap_or_else(|e| {
            panic!("deploy/README.md shows a command that does not exist: {e}")
        });
        if let Some(sub) = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.starts_with('/'))
        {
            seen.insert(format!("{bin} {sub}"));
        }
    }
    for must in [
        "ingest-server device",
        "ingest-server camera",
        "ingest-server key",
        "ingest-server audit",
        "edge-agent enroll",
        "edge-agent calibrate",
        "edge-agent outbox",
    ] {
        assert!(
            seen.contains(must),
            "the runbook shows `{must} ...`; seen {seen:?}"
        );
    }
    // Every alarm the protocol knows.
    use protocol::Alarm;
    let all = [
        Alarm::OutboxNearlyFull,
        Alarm::OutboxFull,
        Alarm::DiskLow,
        Alarm::ClockUnsynced,
        Alarm::CameraStalled,
        Alarm::CameraFailed,
        Alarm::ModelError,
        Alarm::Overheating,
    ];
    // A new variant must be added above (and to the runbook).
    for a in &all {
        match a {
            Alarm::OutboxNearlyFull
            | Alarm::OutboxFull
            | Alarm::DiskLow
            | Alarm::ClockUnsynced
            | Alarm::CameraStalled
            | Alarm::CameraFailed
            | Alarm::ModelError
            | Alarm::Overheating
            | Alarm::Other(_) => {}
        }
        let code = serde_json::to_value(a).unwrap();
        let code = code.as_str().unwrap();
        assert!(
            text.contains(&format!("| `{code}` |")),
            "the runbook explains alarm {code}"
        );
    }
    // Every metric the edge and the server expose.
    let edge =
        edge_agent::health::Metrics::default().render(&edge_agent::health::HealthBoard::default());
    let server = ingest_server::metrics::Metrics::default().render();
    for line in edge.lines().chain(server.lines()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(
                text.contains(&format!("`{name}")),
                "the runbook explains metric {name}"
            );
        }
    }
    // Probe routes it names are real.
    for r in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/heartbeats",
        "/api/v1/quarantine",
    ] {
        assert!(
            ingest_server::web::ROUTES.iter().any(|(_, p)| *p == r),
            "{r}"
        );
    }
}
