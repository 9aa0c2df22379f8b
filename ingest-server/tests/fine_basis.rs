//! The legal basis a notice states is one provision: every row of the
//! shipped fine table names exactly one point of the decree (no `h/i`);
//! a no-helmet case of a rider alone is priced under point h and its page
//! in the citizen app names exactly one "điểm"; one with a passenger (who
//! wore no helmet is not known) is not priced, and cannot be confirmed, so
//! no notice goes out with an ambiguous basis.

mod common;

use bytes::Bytes;
use common::*;
use ingest_server::app;
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::db::now_ms;
use ingest_server::ingest::Source;
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role};
use protocol::{VehicleClass, ViolationType};

const SITE: &str = "hn-hoankiem-trangtien";
const NID: &str = "001199077777";

#[test]
fn every_row_of_the_fine_table_names_one_point() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fines");
    let mut rows = 0;
    for f in std::fs::read_dir(path).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        let table: toml::Value = toml::from_str(&text).unwrap();
        for row in table["fine"].as_array().unwrap() {
            let article = row["article"].as_str().unwrap();
            assert!(
                !article.contains(['/', ',', ' ']),
                "{article} names more than one point"
            );
            assert_eq!(
                article.split('.').count(),
                3,
                "{article}: article.clause.point"
            );
            rows += 1;
        }
    }
    assert!(rows >= 15, "{rows} rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_helmet_case_names_one_point_or_waits_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.notices.enabled = false;
    let server = app::start(&cfg).await.unwrap();
    let ctx = server.ingestor.context().clone();
    let db = &ctx.db;
    let k = key();
    ingest_server::devices::enrol(db, "edge-h1", SITE, &public_hex(&k))
        .await
        .unwrap();
    let reg = tempfile::tempdir().unwrap();
    let (owners, vehicles) = (reg.path().join("o.csv"), reg.path().join("v.csv"));
    std::fs::write(
        &owners,
        format!(
            "owner_id,full_name,national_id,address,phone,email,vneid\n\
             h1,Đỗ Văn Hùng,{NID},\"1 Hàng Gai, Hoàn Kiếm, Hà Nội\",,,\n"
        ),
    )
    .unwrap();
    std::fs::write(
        &vehicles,
        "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
         29-B1 123.45,white,motorcycle,Honda Wave,red,active,h1\n",
    )
    .unwrap();
    ingest_server::registry::import(db, ctx.grammar, &vehicles, &owners)
        .await
        .unwrap();

    let mut ids = Vec::new();
    for riders in [1u8, 2] {
        let files = Files::new(1000 + usize::from(riders));
        let mut ev = event("edge-h1", SITE, &files);
        ev.violation_type = ViolationType::NoHelmet;
        ev.vehicle_class = VehicleClass::Motorcycle;
        ev.signal = None;
        ev.plate.text = Some("29B112345".into());
        ev.plate.display = None;
        ev.plate.lines = Some(2);
        ev.track.riders = Some(riders);
        let o = server
            .ingestor
            .submit(Bytes::from(bundle(&ev, &k, &files)), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
        ids.push(ev.event_id.to_string());
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let pool = db.pool().clone();
    let fine = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT fine_status, fine_ref FROM events WHERE event_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        fine(ids[0].clone()).await,
        ("priced".to_string(), Some("7.2.h".to_string()))
    );
    assert_eq!(
        fine(ids[1].clone()).await,
        ("not_applicable".to_string(), None),
        "a passenger: which point is for a person"
    );

    let r = Reviewer {
        db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = now_ms();
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    let police = Actor {
        id: "police".into(),
        role: Role::Police,
    };
    for id in &ids {
        r.act(id, &Action::Claim, &op, "", now).await.unwrap();
        r.act(id, &Action::Accept, &op, "", now).await.unwrap();
    }
    r.act(&ids[0], &Action::Confirm, &police, "", now)
        .await
        .unwrap();
    assert!(
        matches!(
            r.act(&ids[1], &Action::Confirm, &police, "", now).await,
            Err(ReviewError::Invalid(_))
        ),
        "no notice with an ambiguous basis"
    );
    let system = Actor {
        id: "notices".into(),
        role: Role::System,
    };
    r.act(&ids[0], &Action::IssueNotice, &system, "", now)
        .await
        .unwrap();

    let session = citizen::start_session(db, NID, "Hùng", now_ms())
        .await
        .unwrap();
    let (addr, id) = (server.http_addr, ids[0].clone());
    let page = tokio::task::spawn_blocking(move || {
        let mut me = common::web::Client::new(addr);
        me.cookies.insert(CITIZEN_COOKIE.into(), session.token);
        me.get(&format!("/app/cases/{id}"))
    })
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let basis = &page.body[page.body.find("id=\"basis\">").unwrap()..];
    let basis = &basis[..basis.find("</dd>").unwrap()];
    assert_eq!(basis.matches("điểm").count(), 1, "{basis}");
    assert!(
        basis.contains("điểm h khoản 2 Điều 7 Nghị định 168/2024/NĐ-CP"),
        "{basis}"
    );
    assert!(!basis.contains("h/i"), "{basis}");
}
