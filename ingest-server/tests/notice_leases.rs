//! The notice delivery lease against the channels' time limits: a lease
//! shorter than the longest send (e-mail: 60 s) plus a margin would let a
//! second replica claim a delivery, and send the e-mail again, while the
//! first is still waiting for a slow relay. The configuration refuses it,
//! naming the field.

mod common;

use ingest_server::notices::config::{LEASE_MARGIN_S, LONGEST_SEND_S, MIN_LEASE_S};
use ingest_server::notices::smtp::SEND_TIMEOUT;

#[test]
fn a_lease_shorter_than_the_longest_send_is_refused() {
    assert_eq!(LONGEST_SEND_S, SEND_TIMEOUT.as_secs());
    const { assert!(MIN_LEASE_S > LONGEST_SEND_S) };
    let dir = tempfile::tempdir().unwrap();
    for short in [30, 60, LONGEST_SEND_S, MIN_LEASE_S - 1] {
        let mut cfg = common::local_config(dir.path());
        cfg.notices.lease_s = short;
        let e = cfg
            .validate()
            .expect_err("a lease shorter than a send")
            .to_string();
        assert!(e.contains("notices.lease_s"), "{short}: {e}");
        assert!(e.contains(&MIN_LEASE_S.to_string()), "{short}: {e}");
    }
    for fine in [MIN_LEASE_S, LONGEST_SEND_S + LEASE_MARGIN_S + 1, 120, 3600] {
        let mut cfg = common::local_config(dir.path());
        cfg.notices.lease_s = fine;
        cfg.validate().unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    let mut cfg = common::local_config(dir.path());
    cfg.notices.lease_s = 3601;
    assert!(cfg.validate().is_err());
}
