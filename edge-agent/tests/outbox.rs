//! The outbox on its own: queue, send order, acks, resends, limits and
//! eviction, and what survives reopening the database.

mod delivery_support;

use delivery_support::{DEVICE, SITE, roomy_limits, violation};
use edge_agent::identity::DeviceIdentity;
use edge_agent::outbox::{AckOutcome, Outbox, OutboxLimits, Pending, now_ms};
use protocol::{Ack, Alarm, RejectCode};
use std::time::Duration;

fn identity() -> DeviceIdentity {
    DeviceIdentity::with_key(
        DEVICE,
        SITE,
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
}

fn event_ids(due: &[Pending]) -> Vec<uuid::Uuid> {
    due.iter()
        .filter_map(|p| match p {
            Pending::Event(e) => Some(e.event_id),
            Pending::Clip(_) => None,
        })
        .collect()
}

#[test]
fn events_then_clips_flow_through_acks_and_the_spool_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let (ev, evdir) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 1000, 3000);
    assert!(ob.enqueue(&ev, "cam-a", &evdir).unwrap());
    assert!(
        !ob.enqueue(&ev, "cam-a", &evdir).unwrap(),
        "second enqueue is a no-op"
    );
    let event_id = ev.unverified_event_id().unwrap();

    let due = ob.due(now_ms(), Duration::from_secs(30), 0, 10).unwrap();
    let Pending::Event(p) = &due[0] else {
        panic!("{due:?}")
    };
    assert_eq!(p.stills.len(), 3, "stills travel in the bundle");
    ob.mark_sent(p.seq, now_ms(), "0").unwrap();
    assert_eq!(ob.in_flight(now_ms(), Duration::from_secs(30)).unwrap(), 1);
    assert!(
        ob.due(now_ms(), Duration::from_secs(30), 0, 10)
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        ob.apply_ack(&Ack::stored(event_id)).unwrap(),
        AckOutcome::Delivered { done: false }
    );
    // The stills went with the bundle: only the clip waits, and only it
    // counts against the byte limit.
    assert!(!evdir.join("at.jpg").exists() && evdir.join("clip.mp4").exists());
    assert_eq!(ob.stats(now_ms()).unwrap().bytes, 3000);
    let due = ob.due(now_ms(), Duration::from_secs(30), 0, 10).unwrap();
    let Pending::Clip(c) = &due[0] else {
        panic!("clip should follow: {due:?}")
    };
    assert_eq!(c.name, "clip.mp4");
    ob.mark_clip_sent(c.seq, now_ms()).unwrap();
    let done = ob
        .apply_ack(&Ack::stored(event_id).for_item("clip.mp4"))
        .unwrap();
    assert_eq!(done, AckOutcome::Delivered { done: true });
    assert!(!evdir.exists(), "delivered evidence leaves the spool");
    let s = ob.stats(now_ms()).unwrap();
    assert_eq!((s.depth, s.delivered, s.bytes), (0, 1, 0));
    assert_eq!(
        ob.apply_ack(&Ack::stored(event_id)).unwrap(),
        AckOutcome::Unknown
    );
}

/// The wall clock stepped back an hour after a window's worth of sends
/// (an RTC found wrong, then corrected): sends stamped "in the future" do
/// not hold the window, and are due again once their timeout has passed
/// since now, instead of an hour later.
#[test]
fn sends_stamped_before_a_backward_clock_step_do_not_stall_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let spool = dir.path().join("spool");
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    for n in 1..=3 {
        let (v, vd) = violation(&id, &spool, "cam-a", n, 100, 0);
        ob.enqueue(&v, "cam-a", &vd).unwrap();
    }
    let t0 = now_ms();
    for p in ob.due(t0, Duration::from_secs(30), 0, 10).unwrap() {
        let Pending::Event(e) = p else { unreachable!() };
        ob.mark_sent(e.seq, t0, &sent_hash(e.seq)).unwrap();
    }
    let back = t0 - 3_600_000;
    assert_eq!(ob.in_flight(back, Duration::from_secs(30)).unwrap(), 0);
    assert_eq!(
        ob.due(back, Duration::from_secs(30), 0, 10).unwrap().len(),
        3,
        "sends stamped after now are due again"
    );
}

#[test]
fn unacked_sends_come_back_after_timeout_or_reconnect_and_rejects_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let spool = dir.path().join("spool");
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let (a, ad) = violation(&id, &spool, "cam-a", 1, 100, 0);
    let (b, bd) = violation(&id, &spool, "cam-a", 2, 100, 0);
    ob.enqueue(&a, "cam-a", &ad).unwrap();
    ob.enqueue(&b, "cam-a", &bd).unwrap();
    let t0 = now_ms();
    for p in ob.due(t0, Duration::from_secs(30), 0, 10).unwrap() {
        let Pending::Event(e) = p else { unreachable!() };
        ob.mark_sent(e.seq, t0, &sent_hash(e.seq)).unwrap();
    }
    assert!(
        ob.due(t0 + 29_000, Duration::from_secs(30), 0, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ob.in_flight(t0 + 29_000, Duration::from_secs(30)).unwrap(),
        2
    );
    assert_eq!(
        ob.due(t0 + 31_000, Duration::from_secs(30), 0, 10)
            .unwrap()
            .len(),
        2
    );
    // Unanswered past the timeout: due again, and no longer holding the
    // window (else lost sends would block their own resend).
    assert_eq!(
        ob.in_flight(t0 + 31_000, Duration::from_secs(30)).unwrap(),
        0
    );
    assert_eq!(ob.requeue_sent().unwrap(), 2);
    assert_eq!(ob.in_flight(t0, Duration::from_secs(30)).unwrap(), 0);

    let bid = b.unverified_event_id().unwrap();
    let b_seq = ob
        .due(t0, Duration::from_secs(30), 0, 10)
        .unwrap()
        .into_iter()
        .find_map(|p| match p {
            Pending::Event(e) if e.event_id == bid => Some(e.seq),
            _ => None,
        })
        .unwrap();
    let out = ob
        .apply_ack(
            &Ack::rejected(bid, RejectCode::EvidenceMismatch, "no").bound_to(sent_hash(b_seq)),
        )
        .unwrap();
    assert_eq!(out, AckOutcome::Rejected);
    let s = ob.stats(now_ms()).unwrap();
    assert_eq!((s.depth, s.rejected), (1, 1));
    assert!(bd.exists(), "rejected evidence is kept for inspection");
    let lab = edge_agent::outbox::AckPolicy::new(DEVICE, vec![], true).unwrap();
    assert!(ob.apply_ack_bytes(b"{not json", &lab).is_err());
}

#[test]
fn live_events_go_before_the_backlog_which_stays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let spool = dir.path().join("spool");
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let mut backlog = Vec::new();
    for n in 0..5u64 {
        let (e, d) = violation(
            &id,
            &spool,
            if n.is_multiple_of(2) {
                "cam-a"
            } else {
                "cam-b"
            },
            n,
            50,
            0,
        );
        ob.enqueue(&e, "cam", &d).unwrap();
        backlog.push(e.unverified_event_id().unwrap());
    }
    std::thread::sleep(Duration::from_millis(5));
    let live_since = now_ms();
    let (live, d) = violation(&id, &spool, "cam-a", 99, 50, 0);
    ob.enqueue(&live, "cam-a", &d).unwrap();
    let order = event_ids(
        &ob.due(now_ms(), Duration::from_secs(30), live_since, 10)
            .unwrap(),
    );
    assert_eq!(order[0], live.unverified_event_id().unwrap());
    assert_eq!(&order[1..], &backlog[..]);
}

#[test]
fn limits_raise_the_alarm_first_then_evict_clips_then_stills_then_events_and_record_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let spool = dir.path().join("spool");
    // Each violation: 3 stills x 10 kB + a 50 kB clip = 80 kB. Limit 400 kB.
    let lim = OutboxLimits {
        max_bytes: 400_000,
        max_events: 8,
        max_age: Duration::from_secs(3600),
        alarm_fraction: 0.8,
    };
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), lim).unwrap();
    let mut dirs = Vec::new();
    let mut add = |ob: &mut Outbox, n: u64| {
        let (e, d) = violation(&id, &spool, "cam-a", n, 10_000, 50_000);
        ob.enqueue(&e, "cam-a", &d).unwrap();
        dirs.push(d);
    };
    for n in 0..3 {
        add(&mut ob, n);
    }
    assert_eq!(ob.alarm().unwrap(), None, "240 kB of 400 kB");
    add(&mut ob, 3);
    assert_eq!(
        ob.alarm().unwrap(),
        Some(Alarm::OutboxNearlyFull),
        "320 kB: 80%"
    );
    add(&mut ob, 4);
    assert_eq!(
        ob.alarm().unwrap(),
        Some(Alarm::OutboxFull),
        "400 kB: at the limit"
    );
    assert!(
        ob.enforce_limits(now_ms()).unwrap().is_empty(),
        "at the limit, nothing goes"
    );

    // Two more: 560 kB. Clips go first, oldest first: two clips free 100 kB... three needed.
    add(&mut ob, 5);
    add(&mut ob, 6);
    let ev = ob.enforce_limits(now_ms()).unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev.iter().all(|e| e.what == "clip"), "{ev:?}");
    assert!(!dirs[0].join("clip.mp4").exists() && dirs[0].join("at.jpg").exists());
    assert!(dirs[4].join("clip.mp4").exists());
    assert!(ob.stats(now_ms()).unwrap().bytes <= 400_000);

    // Stills next, once no clip is left to evict.
    let lim_bytes = 100_000;
    drop(ob);
    let mut ob = Outbox::open(
        &dir.path().join("o.sqlite"),
        OutboxLimits {
            max_bytes: lim_bytes,
            ..roomy_limits()
        },
    )
    .unwrap();
    let ev = ob.enforce_limits(now_ms()).unwrap();
    let kinds: Vec<&str> = ev.iter().map(|e| e.what).collect();
    assert!(kinds.starts_with(&["clip", "clip", "clip"]), "{kinds:?}");
    assert!(kinds.contains(&"stills"), "{kinds:?}");
    assert!(!dirs[0].join("at.jpg").exists(), "oldest stills evicted");
    let due = ob.due(now_ms(), Duration::from_secs(30), 0, 100).unwrap();
    let Pending::Event(first) = &due[0] else {
        unreachable!()
    };
    assert!(
        first.stills.is_empty(),
        "metadata of an evicted event is still sent"
    );

    // Whole events when the count is over its limit.
    drop(ob);
    let mut ob = Outbox::open(
        &dir.path().join("o.sqlite"),
        OutboxLimits {
            max_events: 5,
            ..roomy_limits()
        },
    )
    .unwrap();
    let ev = ob.enforce_limits(now_ms()).unwrap();
    assert_eq!(ev.iter().filter(|e| e.what == "event").count(), 2, "{ev:?}");
    assert_eq!(ob.stats(now_ms()).unwrap().depth, 5);
    let all = ob.evictions().unwrap();
    assert_eq!(all.len() as u64, ob.stats(now_ms()).unwrap().evictions);
    assert!(all.iter().all(|e| !e.reason.is_empty()));
}

#[test]
fn old_undelivered_events_expire_with_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let mut ob = Outbox::open(
        &dir.path().join("o.sqlite"),
        OutboxLimits {
            max_age: Duration::from_secs(60),
            ..roomy_limits()
        },
    )
    .unwrap();
    let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 100, 100);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    assert!(ob.enforce_limits(now_ms()).unwrap().is_empty());
    let later = now_ms() + 61_000;
    let ev = ob.enforce_limits(later).unwrap();
    let what: Vec<_> = ev.iter().map(|e| e.what).collect();
    assert_eq!(what, ["clip", "stills"], "its evidence goes");
    assert!(ev[0].reason.contains("undelivered"), "{}", ev[0].reason);
    assert!(!d.join("clip.mp4").exists() && !d.join("at.jpg").exists());
    // The event itself is still sent, without its files, so the server
    // learns of the violation and that its evidence was lost.
    let due = ob.due(later, Duration::from_secs(30), 0, 10).unwrap();
    let [Pending::Event(p)] = &due[..] else {
        panic!("the event alone: {due:?}")
    };
    assert!(p.stills.is_empty(), "{p:?}");
    // And nothing more goes at the next pass; the heartbeat counts them.
    assert!(ob.enforce_limits(later + 1_000).unwrap().is_empty());
    let stats = ob.stats(later).unwrap();
    assert_eq!(
        (stats.depth, stats.evictions, stats.evictions_last_day),
        (1, 2, 2)
    );
    assert_eq!(ob.stats(later + 86_400_001).unwrap().evictions_last_day, 0);
}

/// The row of an event, as the evictions change it.
fn row_state(db: &std::path::Path) -> (String, String, i64, Option<i64>, i64) {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT state, clip_state, stills_evicted, done_at,
                 (SELECT COUNT(*) FROM evictions) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
}

/// An eviction that cannot be recorded deletes nothing and changes
/// nothing: the row change and its `evictions` record are one transaction,
/// and the files go only after it commits. Evidence never goes unrecorded.
#[test]
fn an_eviction_that_cannot_be_recorded_deletes_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let db = dir.path().join("o.sqlite");
    let mut ob = Outbox::open(
        &db,
        OutboxLimits {
            max_age: Duration::from_secs(60),
            ..roomy_limits()
        },
    )
    .unwrap();
    let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 100, 100);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    let now = now_ms();
    assert!(ob.enforce_limits(now).unwrap().is_empty());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER t BEFORE INSERT ON evictions BEGIN SELECT RAISE(ABORT, 'x'); END;",
        )
        .unwrap();
    let before = row_state(&db);
    let later = now + 61_000;
    assert!(ob.enforce_limits(later).is_err(), "the record failed");
    assert!(d.join("clip.mp4").exists(), "the clip went unrecorded");
    assert!(d.join("at.jpg").exists(), "the stills went unrecorded");
    assert_eq!(row_state(&db), before, "the row changed without a record");
    // Once it can be recorded, it goes, recorded.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TRIGGER t;")
        .unwrap();
    let ev = ob.enforce_limits(later).unwrap();
    let what: Vec<_> = ev.iter().map(|e| e.what).collect();
    assert_eq!(what, ["clip", "stills"]);
    assert!(!d.join("clip.mp4").exists() && !d.join("at.jpg").exists());
    assert_eq!(row_state(&db).4, 2);
}

/// Power lost after an eviction committed and before its files were
/// deleted: the record says they are gone, and the next start makes it
/// so (they would otherwise sit outside every limit for ever).
#[test]
fn files_an_eviction_recorded_as_gone_are_deleted_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let db = dir.path().join("o.sqlite");
    let mut ob = Outbox::open(&db, roomy_limits()).unwrap();
    let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 100, 100);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    drop(ob);
    // What a committed clip eviction leaves when the box dies before the
    // deletion that follows the commit.
    let event_id = e.unverified_event_id().unwrap().to_string();
    let clip = d.join("clip.mp4");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "BEGIN;
             UPDATE events SET clip_state = 'evicted';
             INSERT INTO evictions (at, event_id, what, bytes, reason)
                 VALUES (1, '{event_id}', 'clip', 100, 'test');
             INSERT INTO pending_deletes (event_id, path, kind)
                 VALUES ('{event_id}', '{}', 'file');
             COMMIT;",
            clip.display()
        ))
        .unwrap();
    assert!(clip.exists());
    let mut ob = Outbox::open(&db, roomy_limits()).unwrap();
    assert!(
        !clip.exists(),
        "a file recorded as evicted was left on disk"
    );
    assert!(d.join("at.jpg").exists(), "only what the record names goes");
    assert!(ob.enforce_limits(now_ms()).unwrap().is_empty());
}

/// Age is judged only on a trusted clock, and counts from the first pass
/// that saw the event with one, never from the time a wrong clock wrote
/// when it was made: a box that booted with a dead clock battery, or whose
/// clock had drifted weeks behind, must not evict its violations as old
/// the moment it synchronises.
#[test]
fn age_counts_from_the_first_pass_with_a_trusted_clock() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let db = dir.path().join("o.sqlite");
    let mut ob = Outbox::open(
        &db,
        OutboxLimits {
            max_age: Duration::from_secs(60),
            ..roomy_limits()
        },
    )
    .unwrap();
    let now = now_ms();
    let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 100, 100);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    let e1_id = e.unverified_event_id().unwrap().to_string();
    assert!(ob.enforce_limits_trusting(now, true).unwrap().is_empty());
    // Two made while the clock was wrong: one read 1970, one 40 days
    // behind. Nothing judges their age until the clock is trusted.
    let mut wrong = Vec::new();
    for (n, made) in [(2, 5_000), (3, now - 40 * 86_400_000)] {
        let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", n, 100, 100);
        ob.enqueue(&e, "cam-a", &d).unwrap();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "UPDATE events SET created_at = ?2 WHERE event_id = ?1",
                rusqlite::params![e.unverified_event_id().unwrap().to_string(), made],
            )
            .unwrap();
        wrong.push(d);
    }
    let later = now + 61_000;
    assert!(ob.enforce_limits_trusting(later, false).unwrap().is_empty());
    assert!(d.join("at.jpg").exists(), "not on an untrusted clock");
    let ev = ob.enforce_limits_trusting(later, true).unwrap();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().all(|e| e.event_id == e1_id), "{ev:?}");
    assert!(!d.join("at.jpg").exists());
    for d in &wrong {
        assert!(d.join("at.jpg").exists(), "its age starts now");
    }
    assert_eq!(ob.stats(later).unwrap().depth, 3, "all are still sent");
    // Held past the limit on the trusted clock, they lose their evidence too.
    let ev = ob.enforce_limits_trusting(later + 61_000, true).unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    for d in &wrong {
        assert!(!d.join("at.jpg").exists());
    }
}

/// An outbox made before `aged_from` existed keeps the age of what it
/// holds when the box is upgraded: had the new column started every row's
/// age again at the first trusted pass, evidence already a month old would
/// have stayed a further `max_age` (a retention overrun). Its `created_at`
/// is taken as the age — unless it reads before 2020, a clock that was not
/// set, whose rows still age from the first trusted pass.
#[test]
fn an_upgraded_outbox_keeps_the_age_of_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let db = dir.path().join("o.sqlite");
    let limits = OutboxLimits {
        max_age: Duration::from_secs(30 * 86_400),
        ..roomy_limits()
    };
    let now = now_ms();
    let day = 86_400_000;
    let mut held = Vec::new();
    {
        let mut ob = Outbox::open(&db, limits.clone()).unwrap();
        for (n, made) in [(1, now - 40 * day), (2, 5_000), (3, now - day)] {
            let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", n, 100, 100);
            ob.enqueue(&e, "cam-a", &d).unwrap();
            held.push((e.unverified_event_id().unwrap().to_string(), made, d));
        }
    }
    // As an old build left it: no `aged_from`, and `created_at` as its
    // clock read.
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute("ALTER TABLE events DROP COLUMN aged_from", [])
        .unwrap();
    for (event_id, made, _) in &held {
        raw.execute(
            "UPDATE events SET created_at = ?2 WHERE event_id = ?1",
            rusqlite::params![event_id, made],
        )
        .unwrap();
    }
    drop(raw);
    let mut ob = Outbox::open(&db, limits).unwrap();
    let ev = ob.enforce_limits_trusting(now, true).unwrap();
    let what: Vec<_> = ev.iter().map(|e| (e.event_id.as_str(), e.what)).collect();
    assert_eq!(
        what,
        [(held[0].0.as_str(), "clip"), (held[0].0.as_str(), "stills")],
        "the month-old event's evidence goes at once"
    );
    assert!(!held[0].2.join("at.jpg").exists());
    for (_, _, d) in &held[1..] {
        assert!(d.join("at.jpg").exists());
    }
    // The one stamped 1970 ages from that pass; the day-old one from its
    // stamp.
    let ev = ob
        .enforce_limits_trusting(now + 29 * day + day / 2, true)
        .unwrap();
    let gone: Vec<_> = ev.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(gone, [held[2].0.as_str(); 2]);
    let ev = ob
        .enforce_limits_trusting(now + 30 * day + 1, true)
        .unwrap();
    let gone: Vec<_> = ev.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(gone, [held[1].0.as_str(); 2]);
    assert_eq!(ob.stats(now).unwrap().depth, 3, "all are still sent");
}

#[test]
fn enqueue_refuses_evidence_that_does_not_match_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 100, 0);
    std::fs::write(d.join("at.jpg"), b"short").unwrap();
    let err = ob.enqueue(&e, "cam-a", &d).unwrap_err();
    assert!(err.to_string().contains("at.jpg"), "{err}");
    std::fs::remove_file(d.join("at.jpg")).unwrap();
    let err = ob.enqueue(&e, "cam-a", &d).unwrap_err();
    assert!(err.to_string().contains("at.jpg"), "{err}");
}

#[test]
fn queued_events_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let db = dir.path().join("o.sqlite");
    {
        let mut ob = Outbox::open(&db, roomy_limits()).unwrap();
        for n in 0..3 {
            let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", n, 100, 0);
            ob.enqueue(&e, "cam-a", &d).unwrap();
        }
    }
    let ob = Outbox::open(&db, roomy_limits()).unwrap();
    assert_eq!(ob.stats(now_ms()).unwrap().depth, 3);
    assert_eq!(
        ob.due(now_ms(), Duration::from_secs(30), 0, 10)
            .unwrap()
            .len(),
        3
    );
}

/// A stand-in for the SHA-256 of the bytes published for row `seq`.
fn sent_hash(seq: i64) -> String {
    protocol::sha256_hex(&seq.to_le_bytes())
}

#[test]
fn processes_opening_one_new_outbox_at_once_all_get_it() {
    // The agent starting while a technician runs `edge-agent outbox`: the
    // set-up (WAL switch, schema) of one must not fail the other with
    // "database is locked". Each round starts from a fresh file.
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let start = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opened: Vec<_> = (0..6)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    Outbox::open(&path, roomy_limits()).map(|_| ())
                })
            })
            .collect();
        for t in opened {
            let r = t.join().unwrap();
            assert!(r.is_ok(), "round {round}: {}", r.unwrap_err());
        }
    }
}

/// One damaged row (an event id that is not a UUID, a still list that is
/// not JSON) used to fail the whole query, and with it delivery: it is set
/// aside and counted, and the other rows are still due.
#[test]
fn a_damaged_row_is_set_aside_and_the_others_are_still_sent() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let spool = dir.path().join("spool");
    let db = dir.path().join("o.sqlite");
    let ob = {
        let mut ob = Outbox::open(&db, roomy_limits()).unwrap();
        for n in 1..=3 {
            let (e, d) = violation(&id, &spool, "cam-a", n, 100, 200);
            ob.enqueue(&e, "cam-a", &d).unwrap();
        }
        let raw = rusqlite::Connection::open(&db).unwrap();
        raw.execute(
            "UPDATE events SET event_id = 'not-a-uuid' WHERE seq = 1",
            [],
        )
        .unwrap();
        raw.execute("UPDATE events SET stills = '{oops' WHERE seq = 3", [])
            .unwrap();
        ob
    };
    let due = ob.due(now_ms(), Duration::from_secs(30), 0, 10).unwrap();
    let seqs: Vec<i64> = due
        .iter()
        .map(|p| match p {
            Pending::Event(e) => e.seq,
            Pending::Clip(c) => c.seq,
        })
        .collect();
    assert_eq!(seqs, [2], "{due:?}");
    assert_eq!(ob.set_aside_count(0).unwrap(), 2);
    let s = ob.stats(now_ms()).unwrap();
    assert_eq!((s.depth, s.rejected), (1, 2));
    assert_eq!(
        ob.due(now_ms(), Duration::from_secs(30), 0, 10)
            .unwrap()
            .len(),
        1
    );
}

/// A refusal that blames the device's or the server's state (not
/// enrolled yet, revoked, a server error) holds the event and sends it
/// again later; one that blames the content is final; and a refused clip
/// never undoes its event's ack.
#[test]
fn a_refusal_for_the_devices_state_holds_the_event_and_a_clip_refusal_keeps_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let spool = dir.path().join("spool");
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let (e, d) = violation(&id, &spool, "cam-a", 1, 100, 3000);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    let event_id = e.unverified_event_id().unwrap();
    let send = |ob: &mut Outbox, at: i64| {
        let due = ob.due(at, Duration::from_secs(30), 0, 10).unwrap();
        let Some(Pending::Event(p)) = due.first() else {
            panic!("{due:?}")
        };
        ob.mark_sent(p.seq, at, &sent_hash(p.seq)).unwrap();
        p.seq
    };
    let mut at = now_ms();
    for code in [
        RejectCode::UnknownDevice,
        RejectCode::Internal,
        RejectCode::BadSignature,
    ] {
        let seq = send(&mut ob, at);
        let out = ob
            .apply_ack(&Ack::rejected(event_id, code.clone(), "not now").bound_to(sent_hash(seq)))
            .unwrap();
        assert!(matches!(out, AckOutcome::Held { .. }), "{code:?}: {out:?}");
        assert_eq!(
            ob.state_of(event_id).unwrap(),
            Some(("queued".into(), false))
        );
        let now = now_ms();
        assert_eq!(ob.held_count(now).unwrap(), 1);
        assert!(
            ob.due(now + 1000, Duration::from_secs(30), 0, 10)
                .unwrap()
                .is_empty(),
            "{code:?}"
        );
        at = now + 3_600_001;
    }
    // Enrolled at last: the event goes again and is stored.
    send(&mut ob, at);
    ob.apply_ack(&Ack::stored(event_id)).unwrap();
    assert_eq!(
        ob.state_of(event_id).unwrap(),
        Some(("acked".into(), false))
    );
    // A late refusal of another copy of the bundle changes nothing.
    let late = Ack::rejected(event_id, RejectCode::Invalid, "late").bound_to(sent_hash(1));
    assert_eq!(ob.apply_ack(&late).unwrap(), AckOutcome::Unknown);
    // Nor does one whose code would hold an undelivered event.
    let late = Ack::rejected(event_id, RejectCode::Internal, "late").bound_to(sent_hash(1));
    assert_eq!(ob.apply_ack(&late).unwrap(), AckOutcome::Unknown);
    assert_eq!(
        ob.state_of(event_id).unwrap(),
        Some(("acked".into(), false))
    );

    let clip_refusal = |code: RejectCode| {
        let file = std::fs::read(d.join("clip.mp4")).unwrap();
        Ack::rejected(event_id, code, "clip")
            .for_item("clip.mp4")
            .bound_to(protocol::sha256_hex(&file))
    };
    let Some(Pending::Clip(c)) = ob.due(at, Duration::from_secs(30), 0, 10).unwrap().pop() else {
        panic!("the clip is due")
    };
    ob.mark_clip_sent(c.seq, at).unwrap();
    let out = ob.apply_ack(&clip_refusal(RejectCode::Internal)).unwrap();
    assert!(matches!(out, AckOutcome::Held { .. }), "{out:?}");
    assert_eq!(
        ob.state_of(event_id).unwrap(),
        Some(("acked".into(), false))
    );
    assert!(
        ob.due(now_ms(), Duration::from_secs(30), 0, 10)
            .unwrap()
            .is_empty()
    );
    at = now_ms() + 3_600_001;
    assert_eq!(ob.due(at, Duration::from_secs(30), 0, 10).unwrap().len(), 1);
    ob.mark_clip_sent(c.seq, at).unwrap();
    let out = ob
        .apply_ack(&clip_refusal(RejectCode::EvidenceMismatch))
        .unwrap();
    assert_eq!(out, AckOutcome::ClipRejected);
    assert_eq!(ob.state_of(event_id).unwrap(), Some(("acked".into(), true)));
    assert_eq!(ob.stats(now_ms()).unwrap().rejected, 0);
    assert!(!d.exists(), "a done event's directory leaves the spool");
}

/// An event the server refused for good keeps its files a day (for a
/// technician to look), then they go: kept for ever they sat outside every
/// limit. A row set aside here as unreadable keeps its directory.
#[test]
fn a_refused_events_files_go_after_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let mut ob = Outbox::open(&dir.path().join("o.sqlite"), roomy_limits()).unwrap();
    let (e, d) = violation(&id, &dir.path().join("spool"), "cam-a", 1, 100, 3000);
    ob.enqueue(&e, "cam-a", &d).unwrap();
    let event_id = e.unverified_event_id().unwrap();
    let at = now_ms();
    let due = ob.due(at, Duration::from_secs(30), 0, 10).unwrap();
    let Some(Pending::Event(p)) = due.first() else {
        panic!("{due:?}")
    };
    ob.mark_sent(p.seq, at, &sent_hash(p.seq)).unwrap();
    let refusal =
        Ack::rejected(event_id, RejectCode::Invalid, "unknown camera").bound_to(sent_hash(p.seq));
    assert_eq!(ob.apply_ack(&refusal).unwrap(), AckOutcome::Rejected);
    ob.enforce_limits(now_ms() + 3_600_000).unwrap();
    assert!(d.exists(), "kept for a day");
    let evicted = ob
        .enforce_limits(now_ms() + edge_agent::outbox::REFUSED_KEPT_MS + 60_000)
        .unwrap();
    assert!(!d.exists(), "gone after a day");
    assert!(
        evicted.is_empty(),
        "not an eviction of undelivered evidence"
    );
    assert_eq!(ob.stats(now_ms()).unwrap().rejected, 1, "the row stays");
    ob.enforce_limits(now_ms() + 2 * edge_agent::outbox::REFUSED_KEPT_MS)
        .unwrap();
}
