//! `kubernetes/ingest-server.yaml` read into typed structs (only the fields
//! the checks use; serde refuses a wrong shape) and checked against the
//! server itself: selectors that match the pods, a disruption budget that
//! lets drains proceed and keeps a replica up, the command line run against
//! the real binary, probes on routes the server serves, environment the
//! server reads with Secrets the runbook makes, the shipped configuration
//! accepted with that environment, and the ack-signing key copied to where
//! the server looks for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use e2e_tests::binary;
use serde::Deserialize;
use serde_json::Value;

use crate::config::server_env_names;
use crate::runbook::documented_secrets;
use crate::support::{accepts, read, yaml};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct K8sObject {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: Value,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec {
    replicas: u64,
    selector: Selector,
    template: PodTemplate,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PodTemplate {
    metadata: Labels,
    spec: PodSpec,
}

#[derive(Deserialize)]
struct Labels {
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
    volumes: Vec<Volume>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value: Option<String>,
    value_from: Option<EnvSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvSource {
    secret_key_ref: Option<KeyRef>,
    field_ref: Option<FieldRef>,
}

#[derive(Deserialize)]
struct KeyRef {
    name: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldRef {
    field_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
}

#[derive(Deserialize)]
struct HttpGet {
    path: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    secret: Option<SecretVolume>,
    config_map: Option<Value>,
    empty_dir: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretVolume {
    secret_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PdbSpec {
    max_unavailable: Option<u64>,
    min_available: Option<u64>,
    selector: Selector,
}

#[derive(Deserialize)]
struct ServiceSpec {
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    target_port: u16,
}

/// The manifest's objects, in order.
fn manifest() -> Vec<K8sObject> {
    yaml(&read("kubernetes/ingest-server.yaml"))
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a Kubernetes object"))
        .collect()
}

/// The Deployment's replica count (the PostgreSQL check sizes
/// `max_connections` by it).
pub fn deployment_replicas() -> u64 {
    let d = manifest()
        .into_iter()
        .find(|o| o.kind == "Deployment")
        .expect("a Deployment");
    serde_json::from_value::<DeploymentSpec>(d.spec)
        .unwrap()
        .replicas
}

/// The Deployment, PodDisruptionBudget and Service, against the server.
pub fn kubernetes_manifest() {
    let objs = manifest();
    let kinds: Vec<&str> = objs.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["Deployment", "PodDisruptionBudget", "Service", "CronJob"]
    );
    for o in &objs {
        let want = match o.kind.as_str() {
            "Deployment" => "apps/v1",
            "PodDisruptionBudget" => "policy/v1",
            "CronJob" => "batch/v1",
            _ => "v1",
        };
        assert_eq!(o.api_version, want, "{}", o.kind);
        let name = match o.kind.as_str() {
            "CronJob" => "ingest-server-retention",
            _ => "ingest-server",
        };
        assert_eq!(o.metadata.name, name);
    }
    retention_runs_in_exactly_one_place(&objs);
    let dep: DeploymentSpec =
        serde_json::from_value(objs[0].spec.clone()).expect("Deployment spec");
    let pdb: PdbSpec = serde_json::from_value(objs[1].spec.clone()).expect("PDB spec");
    let svc: ServiceSpec = serde_json::from_value(objs[2].spec.clone()).expect("Service spec");
    assert!(dep.replicas >= 2, "N ≥ 2 replicas");
    let labels = &dep.template.metadata.labels;
    for sel in [
        &dep.selector.match_labels,
        &pdb.selector.match_labels,
        &svc.selector,
    ] {
        assert!(
            sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "selector {sel:?} matches the pods {labels:?}"
        );
    }
    let can_lose = match (pdb.max_unavailable, pdb.min_available) {
        (Some(m), None) => m,
        (None, Some(m)) => dep.replicas.saturating_sub(m),
        _ => panic!("the PodDisruptionBudget sets exactly one of maxUnavailable, minAvailable"),
    };
    assert!(
        can_lose >= 1 && can_lose < dep.replicas,
        "drains can proceed and keep a replica up"
    );

    let [c] = dep.template.spec.containers.as_slice() else {
        panic!("one container")
    };
    assert_eq!(c.name, "ingest-server");
    let port = c.ports.first().expect("a container port").container_port;
    assert_eq!(svc.ports[0].target_port, port);
    // The command line, against the real binary.
    accepts(&binary("ingest-server"), &c.args, &[]).unwrap();
    // Probes: routes the server really serves.
    let get_routes: BTreeSet<&str> = ingest_server::web::ROUTES
        .iter()
        .filter(|(m, _)| *m == "get")
        .map(|(_, p)| *p)
        .collect();
    let live = c.liveness_probe.as_ref().expect("liveness probe");
    let ready = c.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(live.http_get.path, "/healthz");
    assert_eq!(ready.http_get.path, "/readyz");
    for p in [Some(live), Some(ready), c.startup_probe.as_ref()]
        .into_iter()
        .flatten()
    {
        assert!(
            get_routes.contains(p.http_get.path.as_str()),
            "{} is not a route",
            p.http_get.path
        );
        assert_eq!(p.http_get.port, port);
    }

    // Environment: names the server reads; Secrets documented in the runbook.
    let read_names = server_env_names();
    let secrets = documented_secrets();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in &c.env {
        assert!(
            read_names.contains(&e.name) || e.name == "RUST_LOG",
            "{} is not read by ingest-server (Config::apply_env)",
            e.name
        );
        let v = match (&e.value, &e.value_from) {
            (Some(v), None) => v.clone(),
            (
                None,
                Some(EnvSource {
                    secret_key_ref: Some(r),
                    ..
                }),
            ) => {
                assert!(
                    secrets.get(&r.name).is_some_and(|k| k.contains(&r.key)),
                    "Secret {}/{} is not made in deploy/README.md (kubectl create secret generic)",
                    r.name,
                    r.key
                );
                // A plausible value of the right shape.
                match e.name.as_str() {
                    "DATABASE_URL" => "postgres://traffic:pw@db.internal:5432/traffic".into(),
                    "INGEST_STORAGE_S3_ACCESS_KEY_ID" => "GK0123456789abcdef".into(),
                    _ => "0123456789abcdef0123456789abcdef".into(),
                }
            }
            (
                None,
                Some(EnvSource {
                    field_ref: Some(f), ..
                }),
            ) => {
                assert_eq!(f.field_path, "metadata.name", "{}: the pod's name", e.name);
                "ingest-server-5d8f7c9b6-x2x7q".into()
            }
            _ => panic!("{}: a value or one source", e.name),
        };
        env.insert(e.name.clone(), v);
    }
    assert!(
        matches!(
            c.env.iter().find(|e| e.name == "INGEST_MQTT_CLIENT_ID"),
            Some(EnvVar {
                value_from: Some(EnvSource {
                    field_ref: Some(_),
                    ..
                }),
                ..
            })
        ),
        "each replica has its own MQTT client id"
    );
    for must in [
        "DATABASE_URL",
        "INGEST_MQTT_URL",
        "INGEST_STORAGE_BACKEND",
        "INGEST_ADMIN_TOKEN",
    ] {
        assert!(env.contains_key(must), "{must} is set");
    }
    // Trusted proxies are the ingress controller, not a network other
    // clients live in: any host listed can forge X-Forwarded-For and pass
    // for anyone, escaping the per-address sign-in count.
    for net in env
        .get("INGEST_TRUSTED_PROXIES")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|n| !n.trim().is_empty())
    {
        let (addr, prefix) = net.trim().split_once('/').unwrap_or((net.trim(), "128"));
        let ip: std::net::IpAddr = addr.parse().unwrap_or_else(|e| panic!("{net}: {e}"));
        let prefix: u8 = prefix.parse().unwrap_or_else(|e| panic!("{net}: {e}"));
        let narrowest = if ip.is_ipv4() { 24 } else { 112 };
        assert!(
            prefix >= narrowest,
            "INGEST_TRUSTED_PROXIES {net}: wider than the ingress controller (at most /{narrowest})"
        );
    }
    // The shipped configuration with this environment is one the server accepts.
    let mut cfg = ingest_server::config::Config::parse(
        &read("config/ingest-server.toml"),
        "ingest-server.toml",
    )
    .unwrap();
    cfg.apply_env(|k| env.get(k).cloned())
        .expect("the manifest's environment applies");
    cfg.validate().expect("and validates");
    assert_eq!(
        cfg.http.listen.port(),
        port,
        "INGEST_HTTP_LISTEN is the container port"
    );
    assert!(
        cfg.http.listen.ip().is_unspecified(),
        "listens beyond the pod's loopback"
    );
    assert!(
        cfg.external_broker().is_some(),
        "replicas use the external broker"
    );
    assert_eq!(
        env["INGEST_STORAGE_BACKEND"], "s3",
        "evidence in S3, shared by the replicas"
    );
    assert!(cfg.database_url().starts_with("postgres://"));

    // Volumes: every mount has a volume; secret volumes are documented; the
    // --config file is a key of the Secret mounted there.
    let vols: BTreeMap<&str, &Volume> = dep
        .template
        .spec
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let all_containers = dep
        .template
        .spec
        .containers
        .iter()
        .chain(&dep.template.spec.init_containers);
    for ctr in all_containers {
        for m in &ctr.volume_mounts {
            let v = vols
                .get(m.name.as_str())
                .unwrap_or_else(|| panic!("{}: no volume {}", ctr.name, m.name));
            assert!(v.secret.is_some() || v.config_map.is_some() || v.empty_dir.is_some());
        }
    }
    let config_arg = c
        .args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("--config FILE");
    let (config_dir, config_file) = config_arg.rsplit_once('/').unwrap();
    let config_mount = c
        .volume_mounts
        .iter()
        .find(|m| m.mount_path == config_dir)
        .expect("the config file is mounted");
    for v in &dep.template.spec.volumes {
        if let Some(s) = &v.secret {
            let keys = secrets.get(&s.secret_name).unwrap_or_else(|| {
                panic!("Secret {} is not made in deploy/README.md", s.secret_name)
            });
            if v.name == config_mount.name {
                assert!(
                    keys.contains(config_file),
                    "Secret {} holds {config_file}",
                    s.secret_name
                );
            }
            // Files the init containers read from it.
            for ic in &dep.template.spec.init_containers {
                if let Some(m) = ic.volume_mounts.iter().find(|m| m.name == v.name) {
                    let script = ic.command.join(" ");
                    for word in script.split_whitespace() {
                        if let Some(f) = word.strip_prefix(&format!("{}/", m.mount_path)) {
                            assert!(
                                keys.contains(f),
                                "Secret {} holds {f} (read by {})",
                                s.secret_name,
                                ic.name
                            );
                        }
                    }
                }
            }
        }
    }
    // The ack-signing key lands where the server looks for it.
    let data_mount = c
        .volume_mounts
        .iter()
        .find(|m| Path::new(&m.mount_path) == cfg.data_dir)
        .expect("the data directory is a volume");
    let key_path = ingest_server::server_key::key_path(&cfg);
    let key_file = key_path.file_name().unwrap().to_string_lossy().into_owned();
    let copies_key = dep.template.spec.init_containers.iter().any(|ic| {
        ic.volume_mounts.iter().any(|m| {
            m.name == data_mount.name
                && ic
                    .command
                    .join(" ")
                    .contains(&format!("{}/{key_file}", m.mount_path))
        })
    });
    assert!(
        copies_key,
        "every replica starts with the shared ack-signing key at {}",
        key_path.display()
    );
}

/// Retention runs in one place: off on every replica of the Deployment
/// (its environment turns the shipped configuration's `enabled` off), and
/// one CronJob that runs `evidence purge` (accepted by the real binary),
/// never two at once, against the same database and bucket as the
/// replicas, with environment the server reads and Secrets the runbook
/// makes.
fn retention_runs_in_exactly_one_place(objs: &[K8sObject]) {
    let dep: DeploymentSpec = serde_json::from_value(objs[0].spec.clone()).expect("Deployment");
    let [c] = dep.template.spec.containers.as_slice() else {
        panic!("one container")
    };
    let plain = |ctr: &Container, name: &str| {
        ctr.env
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        plain(c, "INGEST_RETENTION_ENABLED").as_deref(),
        Some("false"),
        "every replica has retention off (it runs in the CronJob)"
    );
    let mut cfg = ingest_server::config::Config::parse(
        &read("config/ingest-server.toml"),
        "ingest-server.toml",
    )
    .unwrap();
    cfg.apply_env(|k| plain(c, k))
        .expect("the replicas' plain environment applies");
    assert!(
        !cfg.retention.enabled,
        "the shipped configuration with the replicas' environment runs no retention"
    );

    let jobs: Vec<&K8sObject> = objs.iter().filter(|o| o.kind == "CronJob").collect();
    let [job] = jobs.as_slice() else {
        panic!("exactly one retention CronJob")
    };
    assert_eq!(job.spec["concurrencyPolicy"], "Forbid", "never two at once");
    assert!(
        job.spec["schedule"]
            .as_str()
            .is_some_and(|s| s.split_whitespace().count() == 5),
        "a cron schedule"
    );
    let pod = &job.spec["jobTemplate"]["spec"]["template"]["spec"];
    let containers: Vec<Container> =
        serde_json::from_value(pod["containers"].clone()).expect("the job's containers");
    let [r] = containers.as_slice() else {
        panic!("one container in the retention job")
    };
    assert!(
        r.args.windows(2).any(|w| w == ["evidence", "purge"]),
        "the job runs `evidence purge`: {:?}",
        r.args
    );
    assert!(!r.args.iter().any(|a| a == "--dry-run"), "and deletes");
    accepts(&binary("ingest-server"), &r.args, &[]).unwrap();
    let read_names = server_env_names();
    let secrets = documented_secrets();
    for e in &r.env {
        assert!(
            read_names.contains(&e.name) || e.name == "RUST_LOG",
            "{} is not read by ingest-server",
            e.name
        );
        if let Some(EnvSource {
            secret_key_ref: Some(k),
            ..
        }) = &e.value_from
        {
            assert!(
                secrets
                    .get(&k.name)
                    .is_some_and(|keys| keys.contains(&k.key)),
                "Secret {}/{} is not made in deploy/README.md",
                k.name,
                k.key
            );
        }
    }
    // The same database and evidence as the replicas.
    let source = |ctr: &Container, name: &str| {
        ctr.env.iter().find(|e| e.name == name).map(|e| {
            let k = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|k| format!("{}/{}", k.name, k.key));
            (e.value.clone(), k)
        })
    };
    for name in [
        "DATABASE_URL",
        "INGEST_STORAGE_BACKEND",
        "INGEST_STORAGE_S3_ENDPOINT",
        "INGEST_STORAGE_S3_BUCKET",
        "INGEST_STORAGE_S3_ACCESS_KEY_ID",
        "INGEST_STORAGE_S3_SECRET_ACCESS_KEY",
    ] {
        assert!(source(r, name).is_some(), "the job sets {name}");
        assert_eq!(source(r, name), source(c, name), "{name} as the replicas");
    }
    let config_arg = |ctr: &Container| {
        ctr.args
            .iter()
            .skip_while(|a| *a != "--config")
            .nth(1)
            .cloned()
    };
    assert_eq!(config_arg(r), config_arg(c), "the replicas' configuration");
}
