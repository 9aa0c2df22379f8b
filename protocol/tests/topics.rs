//! Topic building and parsing.

use proptest::prelude::*;
use protocol::topics::{self, parse_topic};
use protocol::{Channel, TopicAddress, TopicError};

#[test]
fn parses_what_it_builds() {
    for channel in Channel::ALL {
        let topic = topics::topic("hn-caugiay", "edge_01.a", channel).unwrap();
        let addr = parse_topic(&topic).unwrap();
        assert_eq!(
            addr,
            TopicAddress::new("hn-caugiay", "edge_01.a", channel).unwrap()
        );
        assert_eq!(addr.topic(), topic);
        assert_eq!(addr.to_string().parse::<TopicAddress>().unwrap(), addr);
    }
    assert_eq!(
        topics::heartbeat_topic("s", "d").unwrap(),
        "tv/v1/s/d/heartbeat"
    );
    assert_eq!(
        topics::evidence_topic("s", "d").unwrap(),
        "tv/v1/s/d/evidence"
    );
}

#[test]
fn rejects_bad_topics() {
    for bad in [
        "",
        "tv",
        "tv/v1/s/d",
        "tv/v1/s/d/events/extra",
        "tv/v1/s/d/events/",
        "/tv/v1/s/d/events",
        "tv/v1//d/events",
        "tv/v1/s//events",
        "tv/v1/+/d/events",
        "tv/v1/s/#",
        "tv/v1/s/+/events",
        "tv/v2/s/d/events",
        "TV/v1/s/d/events",
        "xx/v1/s/d/events",
        "tv/v1/s/d/alerts",
        "tv/v1/s/d/Events",
        "$share/g/tv/v1/s/d/events",
        "tv/v1/s p/d/events",
        "tv/v1/s/đ/events",
    ] {
        let err = parse_topic(bad).expect_err(bad);
        let text = err.to_string();
        assert!(!text.is_empty());
        match err {
            TopicError::Malformed { .. } | TopicError::InvalidId { .. } => {}
        }
    }
    let err = parse_topic("tv/v1/s/d+x/events").unwrap_err();
    assert!(err.to_string().contains("device"), "{err}");
}

#[test]
fn shared_subscription_shape() {
    assert_eq!(
        topics::shared_subscription("ingest", Channel::Events).unwrap(),
        "$share/ingest/tv/v1/+/+/events"
    );
    assert_eq!(
        topics::shared_subscription("ingest", Channel::Heartbeat).unwrap(),
        "$share/ingest/tv/v1/+/+/heartbeat"
    );
    assert!(topics::shared_subscription("", Channel::Events).is_err());
    assert!(topics::shared_subscription("a+b", Channel::Events).is_err());
}

proptest! {
    #[test]
    fn round_trip_any_valid_ids(site in "[A-Za-z0-9_.-]{1,64}", device in "[A-Za-z0-9_.-]{1,64}") {
        prop_assume!(site != "." && site != ".." && device != "." && device != "..");
        let topic = topics::events_topic(&site, &device).unwrap();
        let addr = parse_topic(&topic).unwrap();
        prop_assert_eq!(addr.site, site);
        prop_assert_eq!(addr.device, device);
        prop_assert_eq!(addr.channel, Channel::Events);
    }

    #[test]
    fn parse_never_panics(topic in ".{0,200}") {
        let _ = parse_topic(&topic);
    }

    #[test]
    fn ids_with_forbidden_characters_rejected(
        prefix in "[a-z]{0,5}", bad in "[/+#$ \\x00é]", suffix in "[a-z]{0,5}",
    ) {
        let id = format!("{prefix}{bad}{suffix}");
        prop_assert!(topics::events_topic(&id, "d").is_err());
        prop_assert!(topics::events_topic("s", &id).is_err());
    }
}
