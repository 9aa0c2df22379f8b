//! The review workflow on stored cases, run unchanged against SQLite and a
//! real PostgreSQL: claims as leases (and two reviewers racing for one
//! case), corrections that keep the machine read and re-price or re-resolve,
//! the two-person rule, managed rejection reasons, reopening; accounts with
//! lock-out; and the audit log's chain, which must catch an edited or a
//! removed entry even when the database's own guard is switched off.

mod common;

use bytes::Bytes;
use common::*;
use ingest_server::accounts::{self, LOCKOUT_MS, LoginError, MAX_FAILED_LOGINS};
use ingest_server::audit::{self, Verification, Who};
use ingest_server::config::Config;
use ingest_server::db::{Backend, now_ms};
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, CaseState, Role, WorkflowError};
use ingest_server::{app, devices};
use sqlx::Row;

const SITE: &str = "hcm-q1-nguyenhue";

async fn open(url: &str, dir: &std::path::Path) -> Ingestor {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = url.to_string();
    app::open(&cfg).await.unwrap()
}

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
}

async fn column(i: &Ingestor, id: &str, col: &str) -> Option<String> {
    let sql = format!("SELECT CAST({col} AS TEXT) FROM events WHERE event_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(i.context().db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    let ctx = i.context().clone();
    let db = &ctx.db;
    let k = key();
    devices::enrol(db, "edge-r1", SITE, &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(1000);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let ev = event("edge-r1", SITE, &files);
        ids.push(ev.event_id.to_string());
        let o = i
            .submit(Bytes::from(bundle(&ev, &k, &files)), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
    }
    let r = Reviewer {
        db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let alice = actor("alice", Role::Operator);
    let oscar = actor("oscar", Role::Operator);
    let bob = actor("bob", Role::Police);
    let sue = actor("sue", Role::Supervisor);
    let now = now_ms();
    let a = ids[0].as_str();
    assert_eq!(column(&i, a, "state").await.as_deref(), Some("new"));

    // --- claim, corrections, accept, two-person rule, confirm
    assert_eq!(
        r.act(a, &Action::Claim, &alice, "", now).await.unwrap().to,
        CaseState::InReview
    );
    assert!(matches!(
        r.act(a, &Action::Claim, &oscar, "", now + 1).await,
        Err(ReviewError::Refused(WorkflowError::ClaimedByOther))
    ));
    let bad = Action::CorrectPlate {
        plate: "NOT-A-PLATE".into(),
    };
    assert!(matches!(
        r.act(a, &bad, &alice, "typo", now).await,
        Err(ReviewError::Invalid(_))
    ));
    let fix = Action::CorrectPlate {
        plate: "30A12346".into(),
    };
    r.act(a, &fix, &alice, "last digit is a 6", now + 2)
        .await
        .unwrap();
    assert_eq!(
        column(&i, a, "reviewed_plate").await.as_deref(),
        Some("30A12346")
    );
    assert_eq!(
        column(&i, a, "plate_text").await.as_deref(),
        Some("30A12345"),
        "machine read kept"
    );
    let before = column(&i, a, "fine_ref").await;
    let retype = Action::CorrectType {
        violation_type: "wrong_way".into(),
    };
    r.act(
        a,
        &retype,
        &alice,
        "drove against the one-way street",
        now + 3,
    )
    .await
    .unwrap();
    assert_eq!(
        column(&i, a, "reviewed_type").await.as_deref(),
        Some("wrong_way")
    );
    assert_eq!(
        column(&i, a, "fine_status").await.as_deref(),
        Some("priced")
    );
    assert_ne!(
        column(&i, a, "fine_ref").await,
        before,
        "re-priced under another article"
    );
    let bogus = Action::CorrectType {
        violation_type: "jaywalking".into(),
    };
    assert!(matches!(
        r.act(a, &bogus, &alice, "x", now).await,
        Err(ReviewError::Invalid(_))
    ));
    r.act(a, &Action::Accept, &alice, "", now + 4)
        .await
        .unwrap();
    // Alice later works as an officer: she still may not confirm her own case.
    let alice_police = actor("alice", Role::Police);
    assert!(matches!(
        r.act(a, &Action::Confirm, &alice_police, "", now + 5).await,
        Err(ReviewError::Refused(WorkflowError::TwoPersonRule))
    ));
    assert!(matches!(
        r.act(a, &Action::Confirm, &oscar, "", now + 5).await,
        Err(ReviewError::Refused(WorkflowError::RoleForbidden { .. }))
    ));
    r.act(a, &Action::Confirm, &bob, "", now + 6).await.unwrap();
    assert_eq!(column(&i, a, "state").await.as_deref(), Some("confirmed"));
    assert_eq!(column(&i, a, "confirmed_by").await.as_deref(), Some("bob"));
    // The fine is fixed at confirmation: the middle of 18-20 M for wrong way.
    assert_eq!(
        column(&i, a, "fine_amount_vnd").await.as_deref(),
        Some("19000000")
    );
    let trail: Vec<String> = audit::for_subject(db, &format!("case:{a}"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        trail,
        [
            "case.claim",
            "case.correct_plate",
            "case.correct_type",
            "case.accept",
            "case.confirm"
        ],
        "refused actions leave no trace in the case's trail"
    );
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM case_transitions WHERE event_id = $1")
        .bind(a)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);

    // --- rejection reasons, reopening, send back
    let b = ids[1].as_str();
    r.act(b, &Action::Claim, &alice, "", now).await.unwrap();
    let unknown = Action::Reject {
        code: "bribe".into(),
    };
    assert!(matches!(
        r.act(b, &unknown, &alice, "", now).await,
        Err(ReviewError::Invalid(_))
    ));
    let other = Action::Reject {
        code: "other".into(),
    };
    assert!(matches!(
        r.act(b, &other, &alice, " ", now).await,
        Err(ReviewError::Refused(WorkflowError::ReasonRequired(_)))
    ));
    let ambulance = Action::Reject {
        code: "emergency_vehicle".into(),
    };
    r.act(b, &ambulance, &alice, "ambulance with lights on", now + 1)
        .await
        .unwrap();
    assert_eq!(
        column(&i, b, "reject_code").await.as_deref(),
        Some("emergency_vehicle")
    );
    assert!(
        r.act(b, &Action::Reopen, &alice, "wrong", now + 2)
            .await
            .is_err()
    );
    r.act(b, &Action::Reopen, &sue, "the lights were off", now + 2)
        .await
        .unwrap();
    assert_eq!(column(&i, b, "state").await.as_deref(), Some("in_review"));
    assert_eq!(
        (
            column(&i, b, "reject_code").await,
            column(&i, b, "reject_note").await
        ),
        (None, None),
        "a reopened case carries no rejection reason into its confirmation"
    );
    r.act(b, &Action::Claim, &oscar, "", now + 3).await.unwrap();
    r.act(b, &Action::Accept, &oscar, "", now + 4)
        .await
        .unwrap();
    r.act(
        b,
        &Action::SendBack,
        &bob,
        "plate partly hidden, check frame 2",
        now + 5,
    )
    .await
    .unwrap();
    assert_eq!(column(&i, b, "state").await.as_deref(), Some("in_review"));
    assert_eq!(column(&i, b, "accepted_by").await, None);

    // --- two reviewers race for one case: exactly one gets it
    let c = ids[2].as_str();
    let (x, y) = tokio::join!(
        r.act(c, &Action::Claim, &alice, "", now + 10),
        r.act(c, &Action::Claim, &oscar, "", now + 10)
    );
    assert_eq!(
        [x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{x:?} {y:?}"
    );

    // --- accounts: lock-out after repeated failures
    let admin = Who::new("test", Role::Admin);
    accounts::create(
        db,
        "op.lan",
        "Lê Lan",
        Role::Operator,
        Some("a long password 1"),
        &admin,
    )
    .await
    .unwrap();
    assert!(matches!(
        accounts::create(
            db,
            "op.lan",
            "Lê Lan",
            Role::Operator,
            Some("a long password 1"),
            &admin
        )
        .await,
        Err(accounts::AccountError::Exists(_))
    ));
    let t = now_ms();
    assert!(
        accounts::login(db, "op.lan", "a long password 1", t)
            .await
            .is_ok()
    );
    for n in 0..MAX_FAILED_LOGINS {
        let e = accounts::login(db, "op.lan", "wrong password!!", t + n)
            .await
            .unwrap_err();
        let last = n == MAX_FAILED_LOGINS - 1;
        assert_eq!(matches!(e, LoginError::Locked), last, "attempt {n}: {e:?}");
    }
    assert!(matches!(
        accounts::login(db, "op.lan", "a long password 1", t + 100).await,
        Err(LoginError::Locked)
    ));
    assert!(
        accounts::login(db, "op.lan", "a long password 1", t + LOCKOUT_MS + 100)
            .await
            .is_ok()
    );
    // Guesses sent all at once each count: the account locks as surely as
    // with one guess after another, and the right password then waits.
    let t2 = t + LOCKOUT_MS + 200;
    let guesses = (0..MAX_FAILED_LOGINS)
        .map(|n| accounts::login(db, "op.lan", "parallel wrong guess", t2 + n));
    let answers = futures::future::join_all(guesses).await;
    assert!(answers.iter().all(|a| a.is_err()), "{answers:?}");
    assert!(matches!(
        accounts::login(db, "op.lan", "a long password 1", t2 + 100).await,
        Err(LoginError::Locked)
    ));
    // A burst of many guesses, the right one among them: at most
    // MAX_FAILED_LOGINS are checked at all, and the right one, if it is not
    // among those, gets the same "locked" answer as the rest.
    let t3 = t2 + LOCKOUT_MS + 200;
    let burst = (0..4 * MAX_FAILED_LOGINS).map(|n| {
        let pw = if n == 3 * MAX_FAILED_LOGINS {
            "a long password 1"
        } else {
            "burst wrong guess"
        };
        accounts::login(db, "op.lan", pw, t3 + n)
    });
    let answers = futures::future::join_all(burst).await;
    let invalid = answers
        .iter()
        .filter(|a| matches!(a, Err(LoginError::Invalid)))
        .count();
    let signed_in = answers.iter().filter(|a| a.is_ok()).count();
    assert!(
        invalid + signed_in <= MAX_FAILED_LOGINS as usize,
        "{invalid} wrong guesses checked, {signed_in} signed in: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.is_ok() || matches!(a, Err(LoginError::Invalid | LoginError::Locked))),
        "{answers:?}"
    );
    // An attempt that died after counting itself (a dropped connection, a
    // restart) never leaves the account locked for good: at worst the
    // ordinary lock-out, which expires.
    let t4 = t3 + LOCKOUT_MS + 200;
    sqlx::query(
        "UPDATE users SET failed_logins = $1, locked_until = NULL WHERE username = 'op.lan'",
    )
    .bind(MAX_FAILED_LOGINS)
    .execute(db.pool())
    .await
    .unwrap();
    assert!(
        accounts::login(db, "op.lan", "a long password 1", t4)
            .await
            .is_ok()
    );
    assert!(matches!(
        accounts::login(db, "nobody", "a long password 1", t).await,
        Err(LoginError::Invalid)
    ));

    // --- the audit chain: intact, guarded, and tamper-evident
    let Verification::Intact { entries, .. } = audit::verify(db).await.unwrap() else {
        panic!("chain broken before any tampering")
    };
    assert!(entries >= 20, "{entries}");
    let edit = "UPDATE audit_log SET detail = '{}' WHERE seq = 3";
    assert!(
        sqlx::query(edit).execute(db.pool()).await.is_err(),
        "the database refuses edits"
    );
    assert!(
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(db.pool())
            .await
            .is_err()
    );
    // Someone with the database's owner rights switches the guard off.
    let (off, on): (&[&str], &[&str]) = match db.backend() {
        Backend::Sqlite => (
            &[
                "DROP TRIGGER audit_log_no_update",
                "DROP TRIGGER audit_log_no_delete",
            ],
            &[],
        ),
        Backend::Postgres => (
            &["ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"],
            &["ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change"],
        ),
    };
    for s in off {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let original: String = sqlx::query("SELECT detail FROM audit_log WHERE seq = 3")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    sqlx::query(edit).execute(db.pool()).await.unwrap();
    assert!(matches!(
        audit::verify(db).await.unwrap(),
        Verification::Broken { seq: 3, .. }
    ));
    // The console's check of the latest entries: an edit inside them is
    // seen; one before them only by the whole walk above.
    let last = |n| audit::verify_last(db, n);
    let r = last(entries - 2).await.unwrap();
    assert_eq!(r.from, 3);
    assert!(
        matches!(r.verification, Verification::Broken { seq: 3, .. }),
        "{r:?}"
    );
    let r = last(entries - 3).await.unwrap();
    assert_eq!(r.from, 4);
    assert!(
        matches!(r.verification, Verification::Intact { entries: e, .. } if e == entries),
        "{r:?}"
    );
    assert_eq!(last(entries + 10).await.unwrap().from, 1);
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = 3")
        .bind(&original)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit::verify(db).await.unwrap(),
        Verification::Intact { .. }
    ));
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(entries)
        .execute(db.pool())
        .await
        .unwrap();
    let Verification::Broken { seq, problem } = audit::verify(db).await.unwrap() else {
        panic!("a removed last entry went unnoticed")
    };
    assert_eq!(seq, entries, "{problem}");
    sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit::verify(db).await.unwrap(),
        Verification::Broken { seq: 5, .. }
    ));
    // The entry before the latest ones checked is gone: their first link
    // has nothing to follow.
    let r = audit::verify_last(db, entries - 5).await.unwrap();
    assert_eq!(r.from, 6);
    assert!(
        matches!(r.verification, Verification::Broken { seq: 5, .. }),
        "{r:?}"
    );
    // The last entry removed: seen by the short check too.
    let r = audit::verify_last(db, 3).await.unwrap();
    assert!(
        matches!(r.verification, Verification::Broken { .. }),
        "{r:?}"
    );
    for s in on {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(db.pool())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = ingest_server::db::Db::sqlite_url(&dir.path().join("test.db"));
    suite(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_suite_on_postgres() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    suite(url).await;
    drop(pg);
}

/// A SQLite ingestor with device `device` enrolled, and a submitter of
/// events it signs.
async fn sqlite_with_device(
    dir: &std::path::Path,
    device: &str,
) -> (Ingestor, protocol::SigningKey) {
    let url = ingest_server::db::Db::sqlite_url(&dir.join("test.db"));
    let i = open(&url, dir).await;
    let k = key();
    devices::enrol(&i.context().db, device, SITE, &public_hex(&k))
        .await
        .unwrap();
    (i, k)
}

async fn store(i: &Ingestor, k: &protocol::SigningKey, ev: &protocol::ViolationEvent) -> String {
    let files = Files::new(1000);
    let o = i
        .submit(Bytes::from(bundle(ev, k, &files)), Source::Http)
        .await
        .unwrap();
    assert!(o.rejection.is_none(), "{:?}", o.rejection);
    ev.event_id.to_string()
}

/// A type correction is held to the checks a device sending that type
/// meets on arrival: a wrong-lane case whose recorded signal is green
/// cannot become a red-light case (the red-light fine), and a camera
/// approved only for red light cannot produce a wrong-lane fine. The
/// refusal names the check; the case keeps its type and fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_correction_is_held_to_the_arrival_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (i, k) = sqlite_with_device(dir.path(), "edge-t1").await;
    let ctx = i.context().clone();
    let files = Files::new(1000);
    // Green light, wrong lane, from a camera the registry does not know.
    let mut green = event("edge-t1", SITE, &files);
    green.violation_type = protocol::ViolationType::WrongLane;
    green.signal = Some(protocol::SignalObservation {
        state: protocol::SignalState::Green,
        red_for_ms: None,
    });
    let a = store(&i, &k, &green).await;
    // A camera approved for red light only.
    ingest_server::cameras::enrol(
        &ctx.db,
        &ingest_server::cameras::NewCamera {
            device_id: "edge-t1".into(),
            camera_id: "cam-red".into(),
            site: None,
            description: "Nguyễn Huệ × Lê Lợi".into(),
            latitude: None,
            longitude: None,
            enabled_rules: Some(vec!["red_light".into()]),
            certificate_no: None,
            certified_until: None,
        },
    )
    .await
    .unwrap();
    let mut red = event("edge-t1", SITE, &files);
    red.camera_id = "cam-red".into();
    let b = store(&i, &k, &red).await;

    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let alice = actor("alice", Role::Operator);
    let now = now_ms();
    let to = |t: &str| Action::CorrectType {
        violation_type: t.into(),
    };
    for id in [&a, &b] {
        r.act(id, &Action::Claim, &alice, "", now).await.unwrap();
    }
    let fine_a = column(&i, &a, "fine_ref").await;
    match r
        .act(&a, &to("red_light"), &alice, "crossed on red", now + 1)
        .await
    {
        Err(ReviewError::Invalid(m)) => assert!(m.contains("signal_not_red"), "{m}"),
        other => panic!("a green light made a red-light case: {other:?}"),
    }
    assert_eq!(column(&i, &a, "reviewed_type").await, None);
    assert_eq!(column(&i, &a, "fine_ref").await, fine_a, "not re-priced");
    match r
        .act(&b, &to("wrong_lane"), &alice, "lane, not light", now + 1)
        .await
    {
        Err(ReviewError::Invalid(m)) => assert!(m.contains("rule_not_enabled"), "{m}"),
        other => panic!("a red-light-only camera made a wrong-lane case: {other:?}"),
    }
    assert_eq!(column(&i, &b, "reviewed_type").await, None);
    // Stopping over the line is a red-signal offence too.
    match r
        .act(&a, &to("stop_line"), &alice, "over the line", now + 1)
        .await
    {
        Err(ReviewError::Invalid(m)) => assert!(m.contains("signal_not_red"), "{m}"),
        other => panic!("a green light made a stop-line case: {other:?}"),
    }
    // What the checks allow is corrected as before.
    r.act(&a, &to("wrong_way"), &alice, "against the flow", now + 2)
        .await
        .unwrap();
    assert_eq!(
        column(&i, &a, "reviewed_type").await.as_deref(),
        Some("wrong_way")
    );

    // A case that recorded no signal at all cannot become a red-light or
    // stop-line case, nor one that recorded no speed a speeding case.
    let mut unlit = event("edge-t1", SITE, &files);
    unlit.violation_type = protocol::ViolationType::WrongLane;
    unlit.signal = None;
    let c = store(&i, &k, &unlit).await;
    r.act(&c, &Action::Claim, &alice, "", now).await.unwrap();
    for (t, check) in [
        ("red_light", "signal"),
        ("stop_line", "signal_not_red"),
        ("speeding", "speed"),
    ] {
        match r.act(&c, &to(t), &alice, "", now + 3).await {
            Err(ReviewError::Invalid(m)) => assert!(m.contains(check), "{t}: {m}"),
            other => panic!("a case with nothing recorded became {t}: {other:?}"),
        }
    }
    assert_eq!(column(&i, &c, "reviewed_type").await, None);

    // A device's own stop-line case is taken as its rules judged it (they
    // treat a lamp unreadable since red as red): stored, not refused.
    let mut unread = event("edge-t1", SITE, &files);
    unread.violation_type = protocol::ViolationType::StopLine;
    unread.signal = Some(protocol::SignalObservation {
        state: protocol::SignalState::Unknown,
        red_for_ms: None,
    });
    store(&i, &k, &unread).await;
}

/// The one-year limitation period holds after ingest too: a case accepted
/// in time cannot be confirmed 366 days after the violation, nor a
/// backlog case accepted, nor a rejected one reopened; rejecting it is
/// still possible, and a day before the end everything is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_accepted_confirmed_or_reopened_past_the_limitation_period() {
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let (i, k) = sqlite_with_device(dir.path(), "edge-l1").await;
    let ctx = i.context().clone();
    let files = Files::new(1000);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(store(&i, &k, &event("edge-l1", SITE, &files)).await);
    }
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let alice = actor("alice", Role::Operator);
    let bob = actor("bob", Role::Police);
    let sue = actor("sue", Role::Supervisor);
    let now = now_ms();
    let later = now + 366 * DAY;
    let past = |res: Result<_, ReviewError>| {
        matches!(
            res,
            Err(ReviewError::Refused(WorkflowError::PastLimitation { .. }))
        )
    };
    // Accepted in time, confirmed a year and a day later: refused.
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    r.act(a, &Action::Claim, &alice, "", now).await.unwrap();
    r.act(a, &Action::Accept, &alice, "", now).await.unwrap();
    let refused = r.act(a, &Action::Confirm, &bob, "", later).await;
    assert!(past(refused), "confirmed past the limitation");
    assert_eq!(column(&i, a, "state").await.as_deref(), Some("accepted"));
    let message = r
        .act(a, &Action::Confirm, &bob, "", later)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("limitation"), "{message}");
    // A backlog case: claimed and rejected, but not accepted.
    r.act(b, &Action::Claim, &alice, "", later).await.unwrap();
    assert!(past(r.act(b, &Action::Accept, &alice, "", later).await));
    let too_old = Action::Reject {
        code: "other".into(),
    };
    r.act(b, &too_old, &alice, "past the limitation period", later)
        .await
        .unwrap();
    // A rejection reopened a year and a day later: refused.
    r.act(c, &Action::Claim, &alice, "", now).await.unwrap();
    r.act(c, &too_old, &alice, "misjudged", now).await.unwrap();
    assert!(past(
        r.act(c, &Action::Reopen, &sue, "misjudged", later).await
    ));
    // A day before the end, all of it is still possible.
    let in_time = now + 364 * DAY;
    r.act(d, &Action::Claim, &alice, "", in_time).await.unwrap();
    r.act(d, &Action::Accept, &alice, "", in_time)
        .await
        .unwrap();
    r.act(d, &Action::Confirm, &bob, "", in_time).await.unwrap();
    assert_eq!(column(&i, d, "state").await.as_deref(), Some("confirmed"));
}

/// A type correction holds the write lock from its start: it must not need
/// a second pooled connection meanwhile (on SQLite the pool has four, and
/// the others may all be waiting for that very lock — it would stall for
/// the pool's 30 s timeout). Three connections held elsewhere, the
/// correction still goes through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_correction_needs_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (i, k) = sqlite_with_device(dir.path(), "edge-c1").await;
    let ctx = i.context().clone();
    let files = Files::new(1000);
    let id = store(&i, &k, &event("edge-c1", SITE, &files)).await;
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let alice = actor("alice", Role::Operator);
    let now = now_ms();
    r.act(&id, &Action::Claim, &alice, "", now).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(ctx.db.pool().acquire().await.unwrap());
    }
    let to = Action::CorrectType {
        violation_type: "stop_line".into(),
    };
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        r.act(&id, &to, &alice, "over the line", now + 1),
    )
    .await;
    drop(held);
    assert!(
        matches!(done, Ok(Ok(_))),
        "the correction waited for a second connection: {done:?}"
    );
    assert_eq!(
        column(&i, &id, "reviewed_type").await.as_deref(),
        Some("stop_line")
    );
}
