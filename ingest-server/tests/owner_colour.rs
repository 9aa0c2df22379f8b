//! A case's owner is looked up by the plate number alone: the plate colour
//! is the camera's guess (an HSV step; a white plate under sodium light
//! reads yellow) and no person confirms it. The registry is keyed on plate
//! and colour, so one number can be registered twice: white to one owner,
//! yellow to another. Such a case is held for a person
//! (`registration_ambiguous`, no owner), not resolved to whichever owner
//! the camera's colour points at; a number registered once is resolved to
//! that registration whatever the camera's colour, the difference noted in
//! the lookup's audit entry. Also after an operator corrects the plate.

mod common;

use bytes::Bytes;
use common::*;
use ingest_server::config::Config;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use ingest_server::{accounts, app, devices, registry};
use protocol::{PlateColour, SigningKey, VehicleClass};
use sqlx::Row;

const SITE: &str = "hcm-q1-lelai";
const DEVICE: &str = "edge-c1";

struct World {
    _dir: tempfile::TempDir,
    ingestor: Ingestor,
    key: SigningKey,
}

/// A server on SQLite whose registry holds `vehicles` (CSV lines after the
/// header) of the owners `x` and `y`.
async fn world(vehicles: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let ingestor = app::open(&cfg).await.unwrap();
    let ctx = ingestor.context().clone();
    let key = key();
    devices::enrol(&ctx.db, DEVICE, SITE, &public_hex(&key))
        .await
        .unwrap();
    let (owners_csv, vehicles_csv) = (dir.path().join("o.csv"), dir.path().join("v.csv"));
    std::fs::write(
        &owners_csv,
        "owner_id,full_name,national_id,address,phone,email,vneid\n\
         x,Nguyễn Văn Xuân,079190000001,\"1 Lê Lợi, Quận 1, TP.HCM\",,,\n\
         y,Công ty Vận tải Yên,079190000002,\"2 Lê Lợi, Quận 1, TP.HCM\",,,\n",
    )
    .unwrap();
    std::fs::write(
        &vehicles_csv,
        format!(
            "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
             {vehicles}"
        ),
    )
    .unwrap();
    registry::import(&ctx.db, ctx.grammar, &vehicles_csv, &owners_csv)
        .await
        .unwrap();
    World {
        _dir: dir,
        ingestor,
        key,
    }
}

impl World {
    /// Stores a car case with `plate` whose plate the camera classed
    /// yellow; waits for its owner lookup. Returns its id.
    async fn yellow_car(&self, seed: usize, plate: &str) -> String {
        let files = Files::new(1000 + seed);
        let mut ev = event(DEVICE, SITE, &files);
        ev.vehicle_class = VehicleClass::Car;
        ev.plate.text = Some(plate.into());
        ev.plate.display = None;
        ev.plate.colour = PlateColour::Yellow;
        let o = self
            .ingestor
            .submit(Bytes::from(bundle(&ev, &self.key, &files)), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
        let id = ev.event_id.to_string();
        self.settled(&id).await;
        id
    }

    /// The case's owner status and owner once its lookup is done.
    async fn settled(&self, id: &str) -> (String, Option<String>) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let r = sqlx::query("SELECT owner_status, owner_id FROM events WHERE event_id = $1")
                .bind(id)
                .fetch_one(self.ingestor.context().db.pool())
                .await
                .unwrap();
            let status: String = r.get(0);
            if status != "pending" {
                return (status, r.get(1));
            }
            assert!(std::time::Instant::now() < deadline, "owner lookup of {id}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The details of the case's `case.owner_lookup` audit entries.
    async fn lookups_audited(&self, id: &str) -> Vec<serde_json::Value> {
        sqlx::query(
            "SELECT detail FROM audit_log WHERE action = 'case.owner_lookup' AND subject = $1 \
             ORDER BY seq",
        )
        .bind(format!("case:{id}"))
        .fetch_all(self.ingestor.context().db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.get::<String, _>(0)).unwrap())
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_registered_under_two_colours_is_held_not_resolved_by_the_cameras_colour() {
    let w = world(
        "51A12345,white,car,Toyota Vios,trắng,active,x\n\
         51A12345,yellow,car,Hyundai Accent,trắng,active,y\n",
    )
    .await;
    // A white car under sodium light: the camera says yellow.
    let id = w.yellow_car(1, "51A12345").await;
    assert_eq!(
        w.settled(&id).await,
        (registry::AMBIGUOUS.to_string(), None),
        "not owner y's case on the camera's colour"
    );
    assert_eq!(registry::AMBIGUOUS, "registration_ambiguous");
    assert_eq!(
        registry::deliverable_owner(Some(registry::AMBIGUOUS), None),
        None
    );

    // Corrected by an operator to the same number: looked up again, still
    // held (the colour is still only the camera's).
    let ctx = w.ingestor.context().clone();
    let admin = ingest_server::audit::Who::new("admin", Role::Admin);
    let op = accounts::create(
        &ctx.db,
        "op.mai",
        "Lê Thị Mai",
        Role::Operator,
        Some("correct horse battery staple"),
        &admin,
    )
    .await
    .unwrap();
    let op = Actor {
        id: op.user_id,
        role: Role::Operator,
    };
    let id2 = w.yellow_car(2, "51A12346").await;
    assert_eq!(w.settled(&id2).await.0, "unresolved");
    let reviewer = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = ingest_server::db::now_ms();
    reviewer
        .act(&id2, &Action::Claim, &op, "", now)
        .await
        .unwrap();
    let fix = Action::CorrectPlate {
        plate: "51A-123.45".into(),
    };
    reviewer
        .act(&id2, &fix, &op, "chữ số cuối đọc sai", now)
        .await
        .unwrap();
    assert_eq!(
        w.settled(&id2).await,
        (registry::AMBIGUOUS.to_string(), None),
        "the correction's lookup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_registration_is_the_owner_whatever_colour_the_camera_guessed() {
    let w = world("51A12345,white,car,Toyota Vios,trắng,active,x\n").await;
    let id = w.yellow_car(1, "51A12345").await;
    assert_eq!(
        w.settled(&id).await,
        ("resolved".to_string(), Some("x".to_string()))
    );
    let audited = w.lookups_audited(&id).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(
        audited[0]["plate_colour_differs"],
        serde_json::json!({"camera": "yellow", "registered": "white"}),
        "{audited:?}"
    );
}

/// A vehicle re-plated from white to yellow keeps its number: the registry
/// holds the old white row deregistered and the new yellow one active. The
/// one active registration is the vehicle of record (whatever colour the
/// camera saw), not a reason to hold the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_several_registrations_the_only_active_one_is_the_owner() {
    let w = world(
        "51A12345,white,car,Toyota Vios,trắng,deregistered,x\n\
         51A12345,yellow,car,Toyota Vios,trắng,active,y\n",
    )
    .await;
    let id = w.yellow_car(3, "51A12345").await;
    assert_eq!(
        w.settled(&id).await,
        ("resolved".to_string(), Some("y".to_string()))
    );
    // Two active registrations of one number are still for a person.
    let w = world(
        "51A12345,white,car,Toyota Vios,trắng,active,x\n\
         51A12345,yellow,car,Toyota Vios,trắng,active,y\n\
         51A12345,blue,car,Toyota Vios,trắng,deregistered,x\n",
    )
    .await;
    let id = w.yellow_car(4, "51A12345").await;
    assert_eq!(w.settled(&id).await.0, registry::AMBIGUOUS);
}
