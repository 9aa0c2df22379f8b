//! A populated server for the console tests: four people (two operators,
//! an officer, an auditor, all with the password [`PASSWORD`]), an enrolled
//! device, two registered vehicles with their owners, and `cases` stored
//! cases of the plate 30A12345 (the registry also knows 30A12346, which a
//! reviewer corrects to).

use ingest_server::accounts;
use ingest_server::app::Running;
use ingest_server::audit::Who;
use ingest_server::ingest::Source;
use ingest_server::workflow::Role;

use super::{Files, bundle, event, key, public_hex};

/// Everyone's password.
pub const PASSWORD: &str = "correct horse battery";

/// The owner of 30A12345 and of the corrected plate 30A12346.
pub const OWNERS: [&str; 2] = ["Hoàng Thị Giang", "Vũ Văn Hải"];

/// Real photographs for the browser test's screenshots: a street scene from
/// `shared/data/vn_scenes` as the overview, and the first plate crop of
/// `shared/data/vn_crops_named` with the text its label gives.
pub fn photos() -> (Files, String) {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let labels = std::fs::read_to_string(data.join("vn_crops_named/labels.csv"))
        .expect("shared/data/vn_crops_named/labels.csv (shared/ must sit beside the repository)");
    let first = labels.lines().nth(1).expect("a labelled crop");
    let (image, text) = first.split_once(',').expect("image,text");
    let files = Files {
        overview: std::fs::read(data.join("vn_scenes/test2.jpg")).unwrap(),
        plate: std::fs::read(data.join("vn_crops_named").join(image)).unwrap(),
        clip: Files::new(2000).clip,
    };
    (files, text.trim().to_string())
}

/// Seeds the server with `cases` cases of `plate` (30A12345 when `None`)
/// carrying `files`; returns the case ids, oldest first.
pub async fn seed_with(
    server: &Running,
    site: &str,
    cases: usize,
    files: &Files,
    plate: Option<&str>,
) -> Vec<String> {
    let ctx = server.ingestor.context().clone();
    let db = &ctx.db;
    let admin = Who::new("test", Role::Admin);
    for (u, name, role) in [
        ("op.an", "Nguyễn An", Role::Operator),
        ("op.binh", "Trần Bình", Role::Operator),
        ("csgt.cuong", "Lê Cường", Role::Police),
        ("kt.dung", "Phạm Dung", Role::Auditor),
    ] {
        accounts::create(db, u, name, role, Some(PASSWORD), &admin)
            .await
            .unwrap();
    }
    let k = key();
    ingest_server::devices::enrol(db, "edge-c1", site, &public_hex(&k))
        .await
        .unwrap();
    let regdir = tempfile::tempdir().unwrap();
    let (owners, vehicles) = (regdir.path().join("o.csv"), regdir.path().join("v.csv"));
    std::fs::write(
        &owners,
        format!(
            "owner_id,full_name,national_id,address,phone,email,vneid\n\
             o1,{},001199012345,\"5 Tràng Tiền, Hoàn Kiếm, Hà Nội\",,,\n\
             o2,{},001088054321,\"9 Hàng Bài, Hoàn Kiếm, Hà Nội\",,,\n",
            OWNERS[0], OWNERS[1]
        ),
    )
    .unwrap();
    std::fs::write(
        &vehicles,
        format!(
            "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
         {},white,car,Toyota Vios,white,active,o1\n\
         30A-123.46,white,car,Mazda 3,red,active,o2\n",
            plate.unwrap_or("30A-123.45")
        ),
    )
    .unwrap();
    ingest_server::registry::import(db, ctx.grammar, &vehicles, &owners)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..cases {
        let mut ev = event("edge-c1", site, files);
        if let Some(p) = plate {
            ev.plate.text = Some(p.to_string());
            ev.plate.display = None;
        }
        ids.push(ev.event_id.to_string());
        let o = server
            .ingestor
            .submit(bundle(&ev, &k, files).into(), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
        // Distinct event times, so "oldest first" is well defined.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    ids
}

/// [`seed_with`] synthetic files and the plate 30A12345.
pub async fn seed(server: &Running, site: &str, cases: usize) -> Vec<String> {
    seed_with(server, site, cases, &Files::new(2000), None).await
}
