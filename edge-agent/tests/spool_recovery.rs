//! Spool recovery: a violation whose evidence and signed envelope reached
//! the spool but whose outbox row did not (power lost, the outbox refused
//! the write, the outbox database lost) is queued at the next start; what
//! cannot be queued is reported, never guessed at.

mod delivery_support;

use delivery_support::{DEVICE, SITE, roomy_limits, violation};
use edge_agent::identity::DeviceIdentity;
use edge_agent::outbox::{Outbox, Pending, now_ms};
use edge_agent::recover::{SIGNED_FILE, keep_signed, requeue_orphans};
use std::time::Duration;

fn identity() -> DeviceIdentity {
    DeviceIdentity::with_key(
        DEVICE,
        SITE,
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    )
}

fn due_events(ob: &Outbox) -> Vec<uuid::Uuid> {
    let mut ids: Vec<_> = ob
        .due(now_ms(), Duration::from_secs(30), 0, 100)
        .unwrap()
        .iter()
        .filter_map(|p| match p {
            Pending::Event(e) => Some(e.event_id),
            Pending::Clip(_) => None,
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_signed_event_left_in_the_spool_is_queued_once_and_the_rest_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let id = identity();
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();

    // Signed and kept, then the run ended before the outbox insert.
    let (lost, lost_dir) = violation(&id, &spool, "cam-a", 1, 500, 2000);
    keep_signed(&lost_dir, &lost).unwrap();
    // Queued the usual way (a row exists): left alone.
    let (queued, queued_dir) = violation(&id, &spool, "cam-b", 2, 500, 0);
    keep_signed(&queued_dir, &queued).unwrap();
    assert!(ob.enqueue(&queued, "cam-b", &queued_dir).unwrap());
    // Evidence with no signature: cannot be delivered.
    let (_, unsigned_dir) = violation(&id, &spool, "cam-a", 3, 500, 0);
    // A signed file that is not a signed event, and one for another event.
    let (_, corrupt_dir) = violation(&id, &spool, "cam-a", 4, 500, 0);
    std::fs::write(corrupt_dir.join(SIGNED_FILE), b"{\"kind\":").unwrap();
    let (other, other_dir) = violation(&id, &spool, "cam-a", 5, 500, 0);
    let (elsewhere, _) = violation(&id, &dir.path().join("elsewhere"), "cam-a", 6, 500, 0);
    keep_signed(&other_dir, &elsewhere).unwrap();
    // An unfinished write and a stray file: not ours to queue.
    let (partial, partial_dir) = violation(&id, &spool, "cam-a", 7, 500, 0);
    keep_signed(&partial_dir, &partial).unwrap();
    let partial_name = format!("{}.partial", partial.unverified_event_id().unwrap());
    std::fs::rename(&partial_dir, spool.join(partial_name)).unwrap();
    std::fs::write(spool.join("notes.txt"), b"x").unwrap();

    let r = requeue_orphans(&spool, &mut ob).unwrap();
    let lost_id = lost.unverified_event_id().unwrap();
    assert_eq!(r.requeued, vec![lost_id]);
    assert_eq!(r.unsigned, vec![unsigned_dir]);
    let mut failed: Vec<_> = r.failed.iter().map(|(p, _)| p.parent().unwrap()).collect();
    failed.sort();
    let mut expected = vec![corrupt_dir.as_path(), other_dir.as_path()];
    expected.sort();
    assert_eq!(failed, expected, "{:?}", r.failed);
    assert!(other.unverified_event_id().is_some());

    let mut want = vec![lost_id, queued.unverified_event_id().unwrap()];
    want.sort();
    assert_eq!(due_events(&ob), want);
    // The recovered event carries its stills and its clip, not the
    // signed copy.
    let due = ob.due(now_ms(), Duration::from_secs(30), 0, 100).unwrap();
    let p = due
        .iter()
        .find_map(|p| match p {
            Pending::Event(e) if e.event_id == lost_id => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(p.stills.len(), 3);
    assert!(!p.stills.iter().any(|s| s == SIGNED_FILE));

    // Again: nothing new.
    let again = requeue_orphans(&spool, &mut ob).unwrap();
    assert!(again.requeued.is_empty(), "{again:?}");
}

/// Through the product's own path: `sign_and_queue` keeps the signed copy,
/// so losing the outbox database loses no undelivered violation.
#[test]
fn an_outbox_lost_with_its_rows_is_refilled_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let id = identity();
    let db = dir.path().join("o.sqlite");
    let mut ob = Outbox::open(&db, roomy_limits()).unwrap();
    let (ev, evdir) = violation(&id, &spool, "cam-a", 1, 500, 0);
    let event: protocol::ViolationEvent = ev.verify(&id.signing_key().verifying_key()).unwrap();
    edge_agent::report::sign_and_queue(&id, &mut ob, &event, &evdir).unwrap();
    assert!(evdir.join(SIGNED_FILE).is_file());
    drop(ob);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    let mut ob = Outbox::open(&db, roomy_limits()).unwrap();
    assert!(due_events(&ob).is_empty());
    let r = requeue_orphans(&spool, &mut ob).unwrap();
    assert_eq!(r.requeued, vec![event.event_id]);
    assert_eq!(due_events(&ob), vec![event.event_id]);
}

#[test]
fn no_spool_yet_is_nothing_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let r = requeue_orphans(&dir.path().join("spool"), &mut ob).unwrap();
    assert!(r.requeued.is_empty() && r.unsigned.is_empty() && r.failed.is_empty());
}
