//! The EMQX alternative: `emqx/emqx.conf` read by the small HOCON reader in
//! [`crate::hocon`] and held to EMQX 5's root keys and to what production
//! needs (a three-node static cluster, TLS with client certificates, the
//! plain listener internal, packets big enough for a bundle, logins keyed
//! on the username the ACL uses, deny when nothing matches), and
//! `emqx/docker-compose.yml` checked to run exactly that cluster with these
//! files mounted where the configuration reads them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use crate::hocon;
use crate::support::{deploy, read, yaml};

/// `emqx.conf`'s keys and values, then the Compose file's three nodes.
pub fn emqx_conf_and_cluster_example() {
    let conf =
        hocon::parse(&read("emqx/emqx.conf")).unwrap_or_else(|e| panic!("emqx/emqx.conf: {e}"));
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("not a string: {v}"))
    };
    // Only root keys EMQX 5 has.
    let roots = [
        "node",
        "cluster",
        "listeners",
        "mqtt",
        "authentication",
        "authorization",
        "dashboard",
        "log",
        "durable_sessions",
        "force_shutdown",
        "sysmon",
        "api_key",
        "rpc",
        "retainer",
    ];
    for k in conf.as_object().unwrap().keys() {
        assert!(
            roots.contains(&k.as_str()),
            "emqx.conf: unknown root key {k}"
        );
    }
    assert_eq!(conf["cluster"]["discovery_strategy"], "static");
    let seeds: Vec<String> = conf["cluster"]["static"]["seeds"]
        .as_array()
        .expect("seeds")
        .iter()
        .map(s)
        .collect();
    assert_eq!(seeds.len(), 3, "a three-node cluster");
    assert!(seeds.iter().all(|n| n.starts_with("emqx@")));
    assert!(seeds.contains(&s(&conf["node"]["name"])));
    let ssl = &conf["listeners"]["ssl"]["default"];
    assert!(s(&ssl["bind"]).ends_with(":8883"));
    assert_eq!(ssl["ssl_options"]["verify"], "verify_peer");
    assert_eq!(ssl["ssl_options"]["fail_if_no_peer_cert"], "true");
    let tcp = s(&conf["listeners"]["tcp"]["default"]["bind"]);
    assert!(
        !tcp.starts_with("0.0.0.0"),
        "the plain listener is internal: {tcp}"
    );
    // Sizes: EMQX's MB is MiB.
    let size = s(&conf["mqtt"]["max_packet_size"]);
    let mib: usize = size
        .strip_suffix("MB")
        .expect("max_packet_size in MB")
        .parse()
        .unwrap();
    assert!(mib * 1024 * 1024 > protocol::transfer::MAX_BUNDLE_BYTES);
    let strategy = s(&conf["mqtt"]["shared_subscription_strategy"]);
    assert!(
        [
            "random",
            "round_robin",
            "round_robin_per_group",
            "sticky",
            "local",
            "hash_topic",
            "hash_clientid"
        ]
        .contains(&strategy.as_str())
    );
    let authn = &conf["authentication"][0];
    assert_eq!(authn["mechanism"], "password_based");
    assert_eq!(authn["backend"], "built_in_database");
    assert_eq!(
        authn["user_id_type"], "username",
        "the ACL keys on ${{username}} = device id"
    );
    let authz = &conf["authorization"];
    assert_eq!(authz["no_match"], "deny");
    assert_eq!(authz["sources"][0]["type"], "file");
    let acl_path = s(&authz["sources"][0]["path"]);

    // The cluster example.
    let compose = yaml(&read("emqx/docker-compose.yml")).remove(0);
    #[derive(Deserialize)]
    struct Compose {
        services: BTreeMap<String, Service>,
    }
    #[derive(Deserialize)]
    struct Service {
        image: String,
        environment: BTreeMap<String, String>,
        volumes: Vec<String>,
    }
    let c: Compose = serde_json::from_value(compose).expect("compose shape");
    assert_eq!(c.services.len(), 3);
    let mut names = BTreeSet::new();
    for (name, svc) in &c.services {
        assert!(svc.image.starts_with("emqx/emqx:5."), "{name}: EMQX 5");
        let node = svc.environment.get("EMQX_NODE__NAME").expect("node name");
        assert!(seeds.contains(node), "{name}: {node} is a seed");
        names.insert(node.clone());
        assert!(svc.environment.contains_key("EMQX_NODE__COOKIE"));
        let mounts: BTreeMap<&str, &str> = svc
            .volumes
            .iter()
            .filter_map(|v| {
                let mut p = v.split(':');
                Some((p.next()?, p.next()?))
            })
            .collect();
        assert_eq!(
            mounts.get("./emqx.conf"),
            Some(&"/opt/emqx/etc/emqx.conf"),
            "{name}"
        );
        assert_eq!(
            mounts.get("./acl.conf"),
            Some(&acl_path.as_str()),
            "{name}: where authorization reads it"
        );
        for src in mounts.keys().filter(|m| m.ends_with(".conf")) {
            assert!(
                deploy().join("emqx").join(src).is_file(),
                "{name}: {src} exists"
            );
        }
    }
    assert_eq!(names.len(), 3, "distinct node names");
}
