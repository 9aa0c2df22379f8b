//! A foreign mission's plate (series NG, QT, CV: immunity under the Vienna
//! Conventions, which Vietnamese law puts first) is not priced, whether
//! the camera read it or an operator corrected the plate to it: such a
//! case cannot be confirmed as a fine and goes to a person. Correcting
//! the plate back prices it again, and a later change of violation type
//! is priced for the plate as corrected.

mod common;

use bytes::Bytes;
use common::*;
use ingest_server::config::Config;
use ingest_server::db::now_ms;
use ingest_server::ingest::Source;
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role};
use ingest_server::{app, devices};
use sqlx::Row;

const SITE: &str = "hcm-q1-nguyenhue";

#[tokio::test]
async fn a_plate_corrected_to_a_missions_is_not_priced_nor_confirmable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let i = app::open(&cfg).await.unwrap();
    let ctx = i.context().clone();
    let k = key();
    devices::enrol(&ctx.db, "edge-m1", SITE, &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(1000);
    let ev = event("edge-m1", SITE, &files);
    let id = ev.event_id.to_string();
    let o = i
        .submit(Bytes::from(bundle(&ev, &k, &files)), Source::Http)
        .await
        .unwrap();
    assert!(o.rejection.is_none(), "{:?}", o.rejection);
    let fine_status = || async {
        sqlx::query("SELECT fine_status FROM events WHERE event_id = $1")
            .bind(&id)
            .fetch_one(ctx.db.pool())
            .await
            .unwrap()
            .get::<String, _>(0)
    };
    assert_eq!(fine_status().await, "priced");
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    let police = Actor {
        id: "csgt".into(),
        role: Role::Police,
    };
    let now = now_ms();
    let plate = |p: &str| Action::CorrectPlate { plate: p.into() };
    r.act(&id, &Action::Claim, &op, "", now).await.unwrap();
    r.act(
        &id,
        &plate("80NG12345"),
        &op,
        "white plate, red NG",
        now + 1,
    )
    .await
    .unwrap();
    assert_eq!(fine_status().await, "not_applicable");
    // A change of type is priced for the plate as corrected.
    let retype = Action::CorrectType {
        violation_type: "wrong_way".into(),
    };
    r.act(&id, &retype, &op, "one-way street", now + 2)
        .await
        .unwrap();
    assert_eq!(fine_status().await, "not_applicable");
    r.act(&id, &Action::Accept, &op, "", now + 3).await.unwrap();
    assert!(matches!(
        r.act(&id, &Action::Confirm, &police, "", now + 4).await,
        Err(ReviewError::Invalid(_))
    ));
    // Sent back and corrected to an ordinary plate: priced again.
    r.act(&id, &Action::SendBack, &police, "check the plate", now + 5)
        .await
        .unwrap();
    r.act(&id, &Action::Claim, &op, "", now + 6).await.unwrap();
    r.act(&id, &plate("30A12346"), &op, "misread", now + 7)
        .await
        .unwrap();
    assert_eq!(fine_status().await, "priced");
}
