//! Every file under `deploy/` checked, each by the strongest means at hand:
//! configuration through the binaries' own loaders, the Mosquitto
//! configuration in the real broker, the PostgreSQL settings in a real
//! PostgreSQL, systemd units through `systemd-analyze verify` and the real
//! command lines, the Kubernetes manifest into typed structs checked against
//! what the server reads and serves, the EMQX files through small parsers of
//! their languages, and the runbook against the binaries' commands, alarms
//! and metrics. A file added under `deploy/` without a check fails
//! [`every_file_under_deploy_is_checked`].
//!
//! Needs the workspace built (`cargo build --workspace`: the unit and
//! runbook checks run the binaries), Mosquitto, OpenSSL and PostgreSQL
//! installed (`scripts/setup-system.sh`); a missing one is a failure that
//! says so, never a skip. `systemd-analyze` is used when installed; without
//! it the units get the structural check only, and the test says so.
//!
//! This file is the index: the table of files and their checks, and one
//! `#[test]` per check, each a call into the module that holds it (one
//! module per kind of file, under `deploy_files/`).

#[path = "deploy_files/acl.rs"]
mod acl;
#[path = "deploy_files/acl_cases.rs"]
mod acl_cases;
#[path = "deploy_files/config.rs"]
mod config;
#[path = "deploy_files/emqx.rs"]
mod emqx;
#[path = "deploy_files/hocon.rs"]
mod hocon;
#[path = "deploy_files/kubernetes.rs"]
mod kubernetes;
#[path = "deploy_files/mosquitto.rs"]
mod mosquitto;
#[path = "deploy_files/mqtt_client.rs"]
mod mqtt_client;
#[path = "deploy_files/pki.rs"]
mod pki;
#[path = "deploy_files/postgres.rs"]
mod postgres;
#[path = "deploy_files/runbook.rs"]
mod runbook;
#[path = "deploy_files/support.rs"]
mod support;
#[path = "deploy_files/systemd.rs"]
mod systemd;

use std::collections::BTreeSet;

use e2e_tests::workspace_root;

/// Each file under `deploy/` and the test that checks it.
const COVERED: &[(&str, &str)] = &[
    ("README.md", "runbook_commands_alarms_metrics_and_files"),
    (
        "config/ingest-server.toml",
        "server_config_loads_with_the_servers_loader",
    ),
    (
        "config/edge-agent.toml",
        "edge_config_loads_with_the_agents_loader",
    ),
    (
        "systemd/ingest-server.service",
        "systemd_units_verify_and_their_commands_run",
    ),
    (
        "systemd/edge-agent.service",
        "systemd_units_verify_and_their_commands_run",
    ),
    (
        "mosquitto/mosquitto.conf",
        "mosquitto_conf_runs_in_the_real_broker",
    ),
    ("mosquitto/acl", "acls_parse_and_agree_on_every_case"),
    ("emqx/acl.conf", "acls_parse_and_agree_on_every_case"),
    ("emqx/emqx.conf", "emqx_conf_and_cluster_example"),
    ("emqx/docker-compose.yml", "emqx_conf_and_cluster_example"),
    (
        "postgres/postgresql.conf",
        "postgres_settings_in_a_real_postgres",
    ),
    (
        "postgres/pg_hba.conf",
        "postgres_settings_in_a_real_postgres",
    ),
    ("postgres/README.md", "postgres_readme"),
    ("kubernetes/ingest-server.yaml", "kubernetes_manifest"),
];

#[test]
fn every_file_under_deploy_is_checked() {
    let found = support::deploy_files();
    let covered: BTreeSet<String> = COVERED.iter().map(|(f, _)| f.to_string()).collect();
    let unchecked: Vec<_> = found.difference(&covered).collect();
    let missing: Vec<_> = covered.difference(&found).collect();
    assert!(
        unchecked.is_empty(),
        "files under deploy/ with no check in tests/tests/deploy_files.rs: {unchecked:?} \
         (add a test and list it in COVERED)"
    );
    assert!(
        missing.is_empty(),
        "COVERED lists files that are gone: {missing:?}"
    );
    // Each named check exists in this file.
    let me = std::fs::read_to_string(workspace_root().join("tests/tests/deploy_files.rs")).unwrap();
    for (_, t) in COVERED {
        assert!(me.contains(&format!("fn {t}()")), "no test fn {t}");
    }
}

#[test]
fn server_config_loads_with_the_servers_loader() {
    config::server_config_loads_with_the_servers_loader();
}

#[test]
fn edge_config_loads_with_the_agents_loader() {
    config::edge_config_loads_with_the_agents_loader();
}

#[test]
fn systemd_units_verify_and_their_commands_run() {
    systemd::systemd_units_verify_and_their_commands_run();
}

#[test]
fn acls_parse_and_agree_on_every_case() {
    acl_cases::acls_parse_and_agree_on_every_case();
}

#[test]
fn mosquitto_conf_runs_in_the_real_broker() {
    mosquitto::mosquitto_conf_runs_in_the_real_broker();
}

#[test]
fn emqx_conf_and_cluster_example() {
    emqx::emqx_conf_and_cluster_example();
}

#[test]
fn postgres_settings_in_a_real_postgres() {
    postgres::postgres_settings_in_a_real_postgres();
}

#[test]
fn postgres_readme() {
    postgres::postgres_readme();
}

#[test]
fn kubernetes_manifest() {
    kubernetes::kubernetes_manifest();
}

#[test]
fn runbook_commands_alarms_metrics_and_files() {
    runbook::runbook_commands_alarms_metrics_and_files();
}
