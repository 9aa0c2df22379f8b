//! The amount the police officer charges at confirmation (Law on Handling
//! Administrative Violations, Art. 23): the middle of the legal range by
//! default and in a batch; on a single case another amount within the
//! range, in whole thousands of VND, with a reason stating the
//! circumstance (below the middle mitigating, above it aggravating). A
//! refused amount leaves the case as it was; an accepted one is what the
//! notice carries and what the confirmation's audit entry records, with
//! the middle and the circumstance. Through `Reviewer` and through the
//! console's confirm form over HTTP.

mod common;

use bytes::Bytes;
use common::seed;
use common::web::{Client, csrf};
use common::*;
use ingest_server::app;
use ingest_server::audit;
use ingest_server::config::Config;
use ingest_server::db::now_ms;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::review::{AmountRefused, ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role};
use sqlx::Row;

const SITE: &str = "hcm-q1-nguyenhue";

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
}

/// `state`, `fine_amount_vnd`, `revision` and `confirmed_by` of case `id`.
async fn case_row(
    db: &ingest_server::db::Db,
    id: &str,
) -> (String, Option<i64>, i64, Option<String>) {
    let r = sqlx::query(
        "SELECT state, fine_amount_vnd, revision, confirmed_by FROM events WHERE event_id = $1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// The detail of case `id`'s `case.confirm` audit entry.
async fn confirm_audit(db: &ingest_server::db::Db, id: &str) -> serde_json::Value {
    let entries = audit::for_subject(db, &format!("case:{id}")).await.unwrap();
    let e = entries
        .iter()
        .find(|e| e.action == "case.confirm")
        .expect("a case.confirm entry");
    serde_json::from_str(&e.detail).unwrap()
}

async fn sqlite(dir: &std::path::Path) -> (Ingestor, protocol::SigningKey) {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = ingest_server::db::Db::sqlite_url(&dir.join("test.db"));
    let i = app::open(&cfg).await.unwrap();
    let k = key();
    ingest_server::devices::enrol(&i.context().db, "edge-f1", SITE, &public_hex(&k))
        .await
        .unwrap();
    (i, k)
}

/// A red-light case of a car (18–20 M VND, middle 19 M), accepted by an
/// operator.
async fn accepted_case(i: &Ingestor, k: &protocol::SigningKey, r: &Reviewer<'_>) -> String {
    let files = Files::new(1000);
    let ev = event("edge-f1", SITE, &files);
    let o = i
        .submit(Bytes::from(bundle(&ev, k, &files)), Source::Http)
        .await
        .unwrap();
    assert!(o.rejection.is_none(), "{:?}", o.rejection);
    let id = ev.event_id.to_string();
    let op = actor("op", Role::Operator);
    r.act(&id, &Action::Claim, &op, "", now_ms()).await.unwrap();
    r.act(&id, &Action::Accept, &op, "", now_ms())
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_officer_sets_the_amount_within_the_range_for_a_stated_circumstance() {
    let dir = tempfile::tempdir().unwrap();
    let (i, k) = sqlite(dir.path()).await;
    let ctx = i.context().clone();
    let db = &ctx.db;
    let r = Reviewer {
        db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let bob = actor("bob", Role::Police);
    let (up, down, plain) = (
        accepted_case(&i, &k, &r).await,
        accepted_case(&i, &k, &r).await,
        accepted_case(&i, &k, &r).await,
    );
    let before = case_row(db, &up).await;
    assert_eq!((before.0.as_str(), before.1), ("accepted", None));

    // Refused: outside the range, not whole thousands, no circumstance.
    let why = "tái phạm trong vòng 6 tháng (repeat offence)";
    for (amount, reason, want) in [
        (
            17_000_000,
            why,
            AmountRefused::OutOfRange {
                amount: 17_000_000,
                min: 18_000_000,
                max: 20_000_000,
            },
        ),
        (
            20_001_000,
            why,
            AmountRefused::OutOfRange {
                amount: 20_001_000,
                min: 18_000_000,
                max: 20_000_000,
            },
        ),
        (
            19_500_500,
            why,
            AmountRefused::NotWholeThousands(19_500_500),
        ),
        (
            19_500_000,
            "  ",
            AmountRefused::ReasonRequired { middle: 19_000_000 },
        ),
        (
            18_500_000,
            "",
            AmountRefused::ReasonRequired { middle: 19_000_000 },
        ),
    ] {
        match r
            .confirm_at(&up, &bob, Some(amount), reason, now_ms(), None, false)
            .await
        {
            Err(ReviewError::Amount(got)) => assert_eq!(got, want, "{amount}"),
            other => panic!("{amount} {reason:?}: {other:?}"),
        }
        assert_eq!(case_row(db, &up).await, before, "unchanged after {amount}");
    }
    assert!(
        audit::for_subject(db, &format!("case:{up}"))
            .await
            .unwrap()
            .iter()
            .all(|e| e.action != "case.confirm"),
        "a refused amount leaves no confirmation in the trail"
    );
    // The amount is held to what the officer was shown, as before.
    assert!(matches!(
        r.confirm_at(
            &up,
            &bob,
            Some(19_500_000),
            why,
            now_ms(),
            Some(before.2 - 1),
            false
        )
        .await,
        Err(ReviewError::Changed { .. })
    ));

    // Above the middle with a reason: charged, audited as aggravating.
    r.confirm_at(
        &up,
        &bob,
        Some(19_500_000),
        why,
        now_ms(),
        Some(before.2),
        false,
    )
    .await
    .unwrap();
    let after = case_row(db, &up).await;
    assert_eq!(
        (after.0.as_str(), after.1, after.3.as_deref()),
        ("confirmed", Some(19_500_000), Some("bob"))
    );
    let d = confirm_audit(db, &up).await;
    assert_eq!(d["fine_amount_vnd"], 19_500_000, "{d}");
    assert_eq!(d["fine_middle_vnd"], 19_000_000, "{d}");
    assert_eq!(d["circumstance"], "aggravating", "{d}");
    assert_eq!(d["reason"], why, "{d}");
    // The notice carries the amount charged.
    let facts = ingest_server::notices::text::load(db, &up)
        .await
        .unwrap()
        .expect("a notice written with the confirmation");
    assert_eq!(facts.amount_vnd, Some(19_500_000));
    let text = ingest_server::notices::text::render(&facts, "CSGT", "https://ioc.test", None);
    assert!(text.body.contains("19.500.000 đồng"), "{}", text.body);

    // Below the middle, down to the minimum: mitigating.
    r.confirm_at(
        &down,
        &bob,
        Some(18_000_000),
        "người vi phạm tự nguyện khai báo",
        now_ms(),
        None,
        false,
    )
    .await
    .unwrap();
    assert_eq!(case_row(db, &down).await.1, Some(18_000_000));
    let d = confirm_audit(db, &down).await;
    assert_eq!(
        (&d["circumstance"], &d["fine_middle_vnd"]),
        (&"mitigating".into(), &19_000_000.into())
    );

    // Without an amount (and as every batch confirmation): the middle,
    // no circumstance, no reason needed.
    r.act(&plain, &Action::Confirm, &bob, "", now_ms())
        .await
        .unwrap();
    assert_eq!(case_row(db, &plain).await.1, Some(19_000_000));
    let d = confirm_audit(db, &plain).await;
    assert_eq!(
        (&d["circumstance"], &d["fine_amount_vnd"]),
        (&"none".into(), &19_000_000.into())
    );
}

/// The case page's confirm form offers the amount (set at the middle, with
/// the range) and a circumstance; a refused amount is a clear refusal
/// (409 with the reason, the case unchanged), an accepted one is charged;
/// the batch on the confirmation queue charges the middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirm_form_takes_an_amount_and_the_batch_charges_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 2).await;
    let ctx = server.ingestor.context().clone();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = actor("op", Role::Operator);
    for id in &ids {
        r.act(id, &Action::Claim, &op, "", now_ms()).await.unwrap();
        r.act(id, &Action::Accept, &op, "", now_ms()).await.unwrap();
    }
    let (single, batch) = (ids[0].clone(), ids[1].clone());
    let before = case_row(&ctx.db, &single).await;
    let (s2, b2) = (single.clone(), batch.clone());
    tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", seed::PASSWORD).status, 303);
        let page = cuong.get(&format!("/console/cases/{s2}"));
        assert_eq!(page.status, 200);
        for want in [
            "name=\"amount_vnd\"",
            "value=\"19000000\"",
            "min=\"18000000\"",
            "max=\"20000000\"",
            "step=\"1000\"",
            "id=\"confirm-reason\"",
        ] {
            assert!(page.body.contains(want), "the form lacks {want}");
        }
        let t = csrf(&page.body);
        let rev = before.2.to_string();
        let act = format!("/console/cases/{s2}/action");
        let confirm = |c: &mut Client, amount: &str, reason: &str| {
            c.post(
                &act,
                &[
                    ("csrf", t.as_str()),
                    ("action", "confirm"),
                    ("revision", rev.as_str()),
                    ("amount_vnd", amount),
                    ("reason", reason),
                ],
            )
        };
        for (amount, reason, says) in [
            ("21.000.000", "tái phạm", "nằm ngoài khung phạt"),
            ("17000000", "tái phạm", "nằm ngoài khung phạt"),
            ("19500500", "tái phạm", "phải tròn nghìn đồng"),
            ("19,5 triệu", "tái phạm", "không phải là một số nguyên đồng"),
            ("19.500.000", "", "tình tiết giảm nhẹ hoặc tăng nặng"),
        ] {
            let resp = confirm(&mut cuong, amount, reason);
            assert_eq!(resp.status, 409, "{amount}: {}", resp.body);
            assert!(
                resp.body.contains(says) && resp.body.contains("không xác nhận"),
                "{amount}: {}",
                resp.body
            );
        }
        // In English too.
        cuong.cookies.insert("tv_lang".into(), "en".into());
        let resp = confirm(&mut cuong, "20.500.000", "tái phạm");
        assert!(
            resp.body.contains("outside the legal range of this case"),
            "{}",
            resp.body
        );
        cuong.cookies.remove("tv_lang");
        let ok = confirm(&mut cuong, "19.500.000", "tái phạm trong 6 tháng");
        assert_eq!(ok.status, 303, "{}", ok.body);

        let list = cuong.get("/console/confirm").body;
        let key = format!("name=\"rev.{b2}\" value=\"");
        let i = list.find(&key).expect("the batch case is listed") + key.len();
        let rb = list[i..i + list[i..].find('"').unwrap()].to_string();
        let t = csrf(&list);
        let kb = format!("rev.{b2}");
        let resp = cuong.post(
            "/console/confirm",
            &[
                ("csrf", t.as_str()),
                ("case", b2.as_str()),
                (kb.as_str(), rb.as_str()),
                // A batch never takes another amount, whatever is posted.
                ("amount_vnd", "20000000"),
                ("reason", "x"),
            ],
        );
        assert!(resp.body.contains("Đã xác nhận 1 vụ"), "{}", resp.body);
    })
    .await
    .unwrap();
    let after = case_row(&ctx.db, &single).await;
    assert_eq!((after.0.as_str(), after.1), ("confirmed", Some(19_500_000)));
    let d = confirm_audit(&ctx.db, &single).await;
    assert_eq!(
        (&d["circumstance"], &d["reason"]),
        (&"aggravating".into(), &"tái phạm trong 6 tháng".into())
    );
    assert_eq!(case_row(&ctx.db, &batch).await.1, Some(19_000_000));
    assert_eq!(confirm_audit(&ctx.db, &batch).await["circumstance"], "none");
}
