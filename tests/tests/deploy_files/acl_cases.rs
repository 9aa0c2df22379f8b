//! The two brokers' ACLs, Mosquitto's `mosquitto/acl` and EMQX's
//! `emqx/acl.conf`, read by the parsers in [`crate::acl`] and asked one
//! table of cases: a device publishes only under its own id and reads only
//! its own acks, the servers publish acks and subscribe to exactly the
//! filters the server's code subscribes to. Both files must give every
//! answer the table expects, so the two brokers can never disagree on who
//! may do what.

use crate::acl::{self, Op};
use crate::support::read;

/// The cases both ACLs are asked: (user, op, topic, allowed).
fn acl_cases() -> Vec<(&'static str, Op, String, bool)> {
    let mut v: Vec<(&str, Op, String, bool)> = vec![
        (
            "dev-a",
            Op::Publish,
            "tv/v1/site-1/dev-a/events".into(),
            true,
        ),
        (
            "dev-a",
            Op::Publish,
            "tv/v1/site-2/dev-a/evidence".into(),
            true,
        ),
        (
            "dev-a",
            Op::Publish,
            "tv/v1/site-1/dev-a/heartbeat".into(),
            true,
        ),
        (
            "dev-a",
            Op::Subscribe,
            "tv/v1/site-1/dev-a/ack".into(),
            true,
        ),
        // Only under its own id.
        (
            "dev-a",
            Op::Publish,
            "tv/v1/site-1/dev-b/events".into(),
            false,
        ),
        (
            "dev-a",
            Op::Publish,
            "tv/v1/site-1/dev-b/heartbeat".into(),
            false,
        ),
        // Never an ack (acks are the server's), never another's acks.
        ("dev-a", Op::Publish, "tv/v1/site-1/dev-a/ack".into(), false),
        (
            "dev-a",
            Op::Subscribe,
            "tv/v1/site-1/dev-b/ack".into(),
            false,
        ),
        ("dev-a", Op::Subscribe, "tv/v1/+/+/ack".into(), false),
        ("dev-a", Op::Subscribe, "tv/v1/#".into(), false),
        (
            "dev-a",
            Op::Subscribe,
            "$share/ingest/tv/v1/+/+/events".into(),
            false,
        ),
        ("dev-a", Op::Publish, "elsewhere".into(), false),
        // Signal phases: every device reads them, only the controllers'
        // account writes them, and it writes nothing else.
        (
            "dev-a",
            Op::Subscribe,
            "signals/v1/site-1/east-west".into(),
            true,
        ),
        (
            "dev-a",
            Op::Publish,
            "signals/v1/site-1/east-west".into(),
            false,
        ),
        (
            "signals",
            Op::Publish,
            "signals/v1/site-1/east-west".into(),
            true,
        ),
        (
            "signals",
            Op::Publish,
            "tv/v1/site-1/dev-a/ack".into(),
            false,
        ),
        (
            "ingest",
            Op::Publish,
            "signals/v1/site-1/east-west".into(),
            false,
        ),
        // The servers publish acks, and publish nothing else.
        ("ingest", Op::Publish, "tv/v1/site-1/dev-a/ack".into(), true),
        (
            "ingest",
            Op::Publish,
            "tv/v1/site-1/dev-a/events".into(),
            false,
        ),
    ];
    // The servers subscribe to exactly what the server's code subscribes to.
    for f in ingest_server::mqtt::filters(Some("ingest")) {
        v.push(("ingest", Op::Subscribe, f, true));
    }
    v
}

/// Both ACLs parse, EMQX's ends in `{deny, all}.`, and both answer every
/// case of [`acl_cases`] as the table says.
pub fn acls_parse_and_agree_on_every_case() {
    let mosq = acl::parse_mosquitto(&read("mosquitto/acl"))
        .unwrap_or_else(|e| panic!("mosquitto/acl: {e}"));
    let emqx =
        acl::parse_emqx(&read("emqx/acl.conf")).unwrap_or_else(|e| panic!("emqx/acl.conf: {e}"));
    let last = emqx.last().expect("rules");
    assert!(
        !last.allow && matches!(last.who, acl::Who::All) && last.action.is_none(),
        "emqx/acl.conf ends with {{deny, all}}."
    );
    let filters = ingest_server::mqtt::filters(Some("ingest"));
    assert_eq!(filters.len(), 3);
    assert!(
        filters
            .iter()
            .all(|f| f.starts_with("$share/ingest/tv/v1/+/+/")),
        "{filters:?}"
    );
    for (user, op, topic, want) in acl_cases() {
        assert_eq!(
            acl::mosquitto_allows(&mosq, user, op, &topic),
            want,
            "mosquitto/acl: {user} {op:?} {topic}"
        );
        assert_eq!(
            acl::emqx_allows(&emqx, user, op, &topic),
            want,
            "emqx/acl.conf: {user} {op:?} {topic}"
        );
    }
}
