//! The two configuration files, `config/ingest-server.toml` and
//! `config/edge-agent.toml`, loaded by the binaries' own loaders and held to
//! what production needs (TLS to the broker, signed acks only, no demo
//! mode, the units' state directories). Also the environment variables each
//! loader reads, asked of the loaders themselves: every other check of
//! `deploy/` that names a variable (units, manifest, headers) is held to
//! these lists, so a renamed or dropped variable fails here, not in
//! production.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use crate::support::read;

// ------------------------------------------------------------ environment

/// Every environment variable the server's configuration loader asks for.
pub fn server_env_names() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let mut cfg = ingest_server::config::Config::default();
    cfg.apply_env(|k| {
        asked.borrow_mut().insert(k.to_owned());
        None
    })
    .expect("no overrides, no error");
    let names = asked.into_inner();
    assert!(names.contains("DATABASE_URL") && names.contains("INGEST_ADMIN_TOKEN"));
    names
}

/// Every environment variable the edge agent's loader asks for.
pub fn edge_env_names(text: &str) -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    edge_agent::config::AgentConfig::from_toml_str(text, "agent.toml", |k| {
        asked.borrow_mut().insert(k.to_owned());
        None
    })
    .expect("loads");
    asked.into_inner()
}

/// Words like `INGEST_FOO_BAR` / `EDGE_X` / `DATABASE_URL` in `text`.
pub fn env_words(text: &str, prefixes: &[&str]) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| prefixes.iter().any(|p| w.starts_with(p)) && w.len() > 4)
        .map(|w| w.trim_end_matches('_').to_owned())
        .collect()
}

// ------------------------------------------------------------ server config

/// `config/ingest-server.toml` through `Config::parse`, `apply_env` and
/// `validate`; its header names exactly the variables the server reads.
pub fn server_config_loads_with_the_servers_loader() {
    use ingest_server::config::Config;
    let text = read("config/ingest-server.toml");
    let mut cfg = Config::parse(&text, "deploy/config/ingest-server.toml").expect("parses");
    cfg.apply_env(|_| None).unwrap();
    cfg.validate().expect("valid as shipped");
    assert_eq!(
        cfg.data_dir,
        Path::new("/var/lib/traffic-enforcement"),
        "the unit's StateDirectory"
    );
    assert_eq!(
        cfg.mqtt.share_group, "ingest",
        "the brokers' ACLs name $share/ingest"
    );
    assert!(
        cfg.ingest.require_known_camera,
        "production quarantines unknown cameras"
    );
    assert!(
        !cfg.registry.demo_mode,
        "demo mode invents owners: never in deploy/"
    );
    // The unit listens on loopback behind a TLS proxy: left to the
    // loopback default, session cookies would go out without `Secure`.
    assert!(
        cfg.http.listen.ip().is_loopback() && cfg.http.secure_cookies == Some(true),
        "behind the TLS proxy, secure_cookies = true is set, not left to the loopback default"
    );
    assert!(
        cfg.secure_cookies(),
        "session cookies are Secure as shipped"
    );

    // Every variable named in the header is one the server reads, and every
    // one it reads is named there (in full, or as `_SUFFIX` after a full
    // name of the same family).
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let read_names = server_env_names();
    let full = env_words(&header, &["INGEST_", "DATABASE_URL"]);
    for w in &full {
        assert!(
            read_names.contains(w),
            "the header names {w}, which the server does not read"
        );
    }
    for name in &read_names {
        let documented = full.contains(name)
            || name.match_indices('_').any(|(i, _)| {
                let (prefix, rest) = name.split_at(i);
                prefix.matches('_').count() >= 1
                    && full.iter().any(|f| f.starts_with(&format!("{prefix}_")))
                    && header
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .any(|w| w == rest)
            });
        assert!(
            documented,
            "the server reads {name}; deploy/config/ingest-server.toml's header does not list it"
        );
    }
}

// ------------------------------------------------------------ edge config

/// `config/edge-agent.toml` through `AgentConfig::from_toml_str`; every
/// `EDGE_` variable it names is one the agent reads.
pub fn edge_config_loads_with_the_agents_loader() {
    use edge_agent::config::AgentConfig;
    let text = read("config/edge-agent.toml");
    let c = AgentConfig::from_toml_str(&text, "deploy/config/edge-agent.toml", |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let (tls, _, port) = c.mqtt.endpoint().unwrap();
    assert!(tls, "edges reach the broker over TLS only");
    assert_eq!(port, 8883, "the brokers' TLS listener");
    assert_eq!(
        c.mqtt.username.as_deref(),
        Some(c.device.id.as_str()),
        "the broker ACLs key on username = device id"
    );
    assert!(
        c.mqtt.cert_file.is_some(),
        "the broker requires a client certificate"
    );
    assert!(
        c.mqtt.password.is_none(),
        "the password goes in password_file, not here"
    );
    assert!(!c.cameras.is_empty(), "`edge-agent run` needs cameras");
    assert!(
        !c.server.public_keys.is_empty() && !c.server.accept_unsigned_acks,
        "the box believes only acks signed by the server's keys"
    );
    assert_eq!(
        c.server.verifying_keys().unwrap().len(),
        c.server.public_keys.len()
    );
    assert_eq!(
        c.device.data_dir,
        Path::new("/var/lib/edge-agent"),
        "the unit's StateDirectory"
    );
    let read_names = edge_env_names(&text);
    for w in env_words(&text, &["EDGE_"]) {
        assert!(
            read_names.contains(&w),
            "the file names {w}, which the agent does not read"
        );
    }
}
