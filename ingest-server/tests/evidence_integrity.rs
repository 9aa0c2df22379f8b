//! What the police, the owner and a court are shown is the record the
//! device signed, not editable database columns, through the real server:
//! the device clock's state beside the violation time (console case page,
//! confirmation list, citizen app) and the officer's explicit
//! acknowledgement before a case stamped by an unsynchronised clock is
//! confirmed (never in a batch); evidence served by its signed hash, an
//! `evidence` row pointed at other bytes refused and audited; the package
//! looking for every signed file whatever the `stored` flag says, calling a
//! file deleted only where retention recorded the purge; and a case row
//! whose machine columns were edited raising an alarm, refusing
//! confirmation and refusing to be packaged.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use common::seed::{self, PASSWORD};
use common::web::{Client, csrf};
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::audit::{self, Who};
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::db::now_ms;
use ingest_server::ingest::Source;
use ingest_server::package::{self, PackageError};
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::server_key::ServerKey;
use ingest_server::workflow::{Action, Actor, Role};
use protocol::{ClockSync, ClockSyncStatus, SigningKey};

const SITE: &str = "hn-hoankiem-trangtien";
const DEVICE: &str = "edge-i1";
/// The owner of 30A12345 in the seeded registry.
const OWNER_NID: &str = "001199012345";

/// A server with the seeded people and registry, and a device of ours.
struct World {
    _dir: tempfile::TempDir,
    cfg: ingest_server::config::Config,
    server: Running,
    key: SigningKey,
    files: Files,
}

fn jpeg(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), (y as u8) ^ seed, 90])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let cfg = local_config(dir.path());
        let server = app::start(&cfg).await.unwrap();
        // Real JPEG stills: the package decodes the overview.
        let files = Files {
            overview: jpeg(320, 240, 3),
            plate: jpeg(90, 30, 7),
            clip: Files::new(2000).clip,
        };
        seed::seed_with(&server, SITE, 0, &files, None).await;
        let key = key();
        ingest_server::devices::enrol(
            &server.ingestor.context().db,
            DEVICE,
            SITE,
            &public_hex(&key),
        )
        .await
        .unwrap();
        World {
            _dir: dir,
            cfg,
            server,
            key,
            files,
        }
    }

    fn db(&self) -> ingest_server::db::Db {
        self.server.ingestor.context().db.clone()
    }

    /// A stored case stamped by a clock in state `clock`, claimed and
    /// accepted by an operator, its owner looked up.
    async fn accepted_case(&self, clock: ClockSync) -> String {
        let mut ev = event(DEVICE, SITE, &self.files);
        ev.clock = clock;
        let id = ev.event_id.to_string();
        let o = self
            .server
            .ingestor
            .submit(bundle(&ev, &self.key, &self.files).into(), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
        let db = self.db();
        for _ in 0..100 {
            let status: String =
                sqlx::query_scalar("SELECT owner_status FROM events WHERE event_id = $1")
                    .bind(&id)
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            if status == "resolved" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let op = Actor {
            id: "op".into(),
            role: Role::Operator,
        };
        let r = self.reviewer();
        r.act(&id, &Action::Claim, &op, "", now_ms()).await.unwrap();
        r.act(&id, &Action::Accept, &op, "", now_ms())
            .await
            .unwrap();
        id
    }

    fn reviewer(&self) -> Reviewer<'_> {
        let ctx = self.server.ingestor.context();
        Reviewer {
            db: &ctx.db,
            grammar: ctx.grammar,
            fines: &ctx.fines,
            registry: ctx.registry.as_deref(),
        }
    }

    async fn state(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
            .bind(id)
            .fetch_one(self.db().pool())
            .await
            .unwrap()
    }

    async fn sql(&self, q: &'static str, id: &str) {
        let n = sqlx::query(q)
            .bind(id)
            .execute(self.db().pool())
            .await
            .unwrap()
            .rows_affected();
        assert!(n > 0, "{q}");
    }

    async fn package(&self, id: &str) -> Result<BTreeMap<String, Vec<u8>>, PackageError> {
        let ctx = self.server.ingestor.context();
        let signer = ServerKey::open(&self.cfg, &ctx.db).await.unwrap();
        let zip = package::build(&ctx.db, &ctx.evidence, id, &signer).await?;
        let mut z = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        let mut out = BTreeMap::new();
        for i in 0..z.len() {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            out.insert(f.name().to_string(), b);
        }
        Ok(out)
    }
}

fn unsynced() -> ClockSync {
    ClockSync {
        status: ClockSyncStatus::Unsynced,
        offset_ms: Some(5000),
        source: Some("ntp:10.20.0.1".into()),
    }
}

fn synced() -> ClockSync {
    ClockSync::synced(-3, "ntp:10.20.0.1")
}

/// The revision of case `id` a page's form carries.
fn revision(page: &str) -> String {
    let key = "name=\"revision\" value=\"";
    let i = page.find(key).expect("a revision field") + key.len();
    page[i..i + page[i..].find('"').unwrap()].to_string()
}

fn flash(page: &str) -> &str {
    let f = &page[page.find("id=\"flash\"").expect("a flash")..];
    &f[..f.find("</div>").unwrap()]
}

/// The clock state is shown beside the time; a case stamped by a clock
/// that was not synchronised is left out of a batch (and the page says
/// so), refused on its own page without the acknowledgement, confirmed
/// with it (and the acknowledgement kept in the transition); the owner's
/// page shows the clock state too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsynchronised_clock_is_shown_and_must_be_acknowledged_to_confirm() {
    let w = World::new().await;
    let addr = w.server.http_addr;
    let bad = w.accepted_case(unsynced()).await;
    let good = w.accepted_case(synced()).await;
    let (b, g) = (bad.clone(), good.clone());
    tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", PASSWORD).status, 303);
        let page = cuong.get(&format!("/console/cases/{b}"));
        assert_eq!(page.status, 200);
        assert!(
            page.body
                .contains("id=\"clock-sync\">đồng hồ CHƯA đồng bộ (lệch +5,0 s)"),
            "the clock state beside the time: {}",
            page.body
        );
        assert!(
            page.body.contains("id=\"clock-ack\""),
            "the acknowledgement box"
        );
        let ok_page = cuong.get(&format!("/console/cases/{g}"));
        assert!(
            ok_page
                .body
                .contains("id=\"clock-sync\">đồng hồ đã đồng bộ (lệch -3 ms)")
        );
        assert!(!ok_page.body.contains("id=\"clock-ack\""));
        // The site file the device judged by, as it signed it.
        let site_file = protocol::sha256_hex(b"site file of the test camera");
        assert!(
            ok_page.body.contains(&format!(
                "id=\"site-file\">· tệp cấu hình <code>{}</code>",
                &site_file[..12]
            )),
            "{}",
            ok_page.body
        );
        // Each still names the frame it shows, as the device signed it.
        assert!(
            ok_page
                .body
                .contains("overview.jpg <span class=\"muted\">— khung hình 120372, "),
            "{}",
            ok_page.body
        );

        // The confirmation list shows it and offers no box to tick.
        let list = cuong.get("/console/confirm").body;
        assert!(list.contains("đồng hồ CHƯA đồng bộ"), "{list}");
        assert!(!list.contains(&format!("name=\"case\" value=\"{b}\"")));
        assert!(list.contains(&format!("name=\"case\" value=\"{g}\"")));
        // A batch naming it anyway skips it and says so.
        let t = csrf(&list);
        let rev_b = revision(&page.body);
        let r = cuong.post(
            "/console/confirm",
            &[
                ("csrf", t.as_str()),
                ("case", b.as_str()),
                (&format!("rev.{b}"), rev_b.as_str()),
            ],
        );
        assert_eq!(r.status, 200);
        let f = flash(&r.body);
        assert!(
            f.contains("Đã xác nhận 0 vụ") && f.contains(&format!("{b}: bỏ qua: đồng hồ thiết bị")),
            "{f}"
        );

        // Its own page: refused without the box, confirmed with it.
        let act = format!("/console/cases/{b}/action");
        let r = cuong.post(
            &act,
            &[("csrf", &t), ("action", "confirm"), ("revision", &rev_b)],
        );
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(
            r.body
                .contains("Đồng hồ thiết bị chưa được xác nhận là đồng bộ"),
            "{}",
            r.body
        );
        let r = cuong.post(
            &act,
            &[
                ("csrf", &t),
                ("action", "confirm"),
                ("revision", &rev_b),
                ("clock_ack", "1"),
            ],
        );
        assert_eq!(r.status, 303, "{}", r.body);
    })
    .await
    .unwrap();
    assert_eq!(w.state(&bad).await, "confirmed");
    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM case_transitions WHERE event_id = $1 AND action = 'confirm'",
    )
    .bind(&bad)
    .fetch_one(w.db().pool())
    .await
    .unwrap();
    assert!(
        detail.contains("clock NOT synchronised (offset +5.0 s)"),
        "{detail}"
    );
    // Not through the API either without the acknowledgement.
    let other = w.accepted_case(unsynced()).await;
    let police = Actor {
        id: "p".into(),
        role: Role::Police,
    };
    let r = w
        .reviewer()
        .act(&other, &Action::Confirm, &police, "", now_ms())
        .await;
    assert!(
        matches!(r, Err(ReviewError::ClockNotAcknowledged(_))),
        "{r:?}"
    );

    // The owner's page says it too.
    let session = citizen::start_session(&w.db(), OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let page = tokio::task::spawn_blocking(move || {
        let mut me = Client::new(addr);
        me.cookies.insert(CITIZEN_COOKIE.into(), session.token);
        me.get(&format!("/app/cases/{bad}"))
    })
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("id=\"clock-sync\">(đồng hồ CHƯA đồng bộ (lệch +5,0 s))"),
        "{}",
        page.body
    );
    // And below each still, the moment it shows, as the device signed it.
    assert!(
        page.body
            .contains("<p class=\"muted still-time\">khung hình 120372, "),
        "{}",
        page.body
    );
}

/// Evidence is served by the hash in the signed manifest: pointing the
/// `evidence` row at other stored bytes (the plate crop's) gets a refusal,
/// logged in the audit as `evidence.mismatch`, on the console and in the
/// owner's app; the unaltered file is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_served_only_by_its_signed_hash() {
    let w = World::new().await;
    let addr = w.server.http_addr;
    let id = w.accepted_case(synced()).await;
    let police = Actor {
        id: "p".into(),
        role: Role::Police,
    };
    w.reviewer()
        .act(&id, &Action::Confirm, &police, "", now_ms())
        .await
        .unwrap();
    let session = citizen::start_session(&w.db(), OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let overview = w.files.overview.clone();
    let (i, token) = (id.clone(), session.token.clone());
    let get_both = move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", PASSWORD).status, 303);
        let console = cuong.get(&format!("/console/cases/{i}/evidence/overview.jpg"));
        let mut me = Client::new(addr);
        me.cookies.insert(CITIZEN_COOKIE.into(), token.clone());
        let app = me.get(&format!("/app/cases/{i}/evidence/overview.jpg"));
        (console, app)
    };
    let get_again = get_both.clone();
    let (console, app) = tokio::task::spawn_blocking(get_both).await.unwrap();
    assert_eq!((console.status, app.status), (200, 200));
    assert_eq!(
        console.headers["content-length"],
        overview.len().to_string()
    );

    // An insider points the row at the plate crop's bytes.
    let plate_sha = protocol::sha256_hex(&w.files.plate);
    sqlx::query("UPDATE evidence SET sha256 = $1 WHERE event_id = $2 AND name = 'overview.jpg'")
        .bind(&plate_sha)
        .bind(&id)
        .execute(w.db().pool())
        .await
        .unwrap();
    let (console, app) = tokio::task::spawn_blocking(get_again).await.unwrap();
    assert_eq!(console.status, 500, "{}", console.body);
    assert!(!console.body.contains("GIF") && !console.body.contains("JFIF"));
    assert_eq!(app.status, 500);
    let entries = audit::for_subject(&w.db(), &format!("case:{id}"))
        .await
        .unwrap();
    let mismatches: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "evidence.mismatch")
        .collect();
    assert_eq!(mismatches.len(), 2, "one per refusal");
    assert!(mismatches[0].detail.contains(&plate_sha));
}

/// The package looks for every signed file by its signed hash: a file
/// whose `stored` flag was turned off is still in `originals/`; a file the
/// store does not have is "not received" unless retention recorded the
/// purge, and then "deleted under the retention policy".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_finds_every_signed_file_whatever_the_stored_flag_says() {
    let w = World::new().await;
    let id = w.accepted_case(synced()).await;
    w.sql(
        "UPDATE evidence SET stored = 0 WHERE event_id = $1 AND name = 'overview.jpg'",
        &id,
    )
    .await;
    let files = w.package(&id).await.unwrap();
    assert_eq!(
        files.get("originals/overview.jpg"),
        Some(&w.files.overview),
        "the hidden file is packaged: {:?}",
        files.keys()
    );
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    let line = |name: &str| {
        sums.lines()
            .find(|l| l.starts_with('#') && l.contains(name))
            .unwrap_or_else(|| panic!("{name} in {sums}"))
            .to_string()
    };
    assert!(line("overview.jpg").ends_with("in originals/)"), "{sums}");
    assert!(
        line("clip.mp4").ends_with("not received by the server)"),
        "{sums}"
    );

    // Columns saying the case was purged and the clip received do not
    // make the clip "deleted"; retention's audit entry does.
    w.sql(
        "UPDATE events SET evidence_purged_at = 1 WHERE event_id = $1",
        &id,
    )
    .await;
    w.sql(
        "UPDATE evidence SET stored_at = 1 WHERE event_id = $1 AND name = 'clip.mp4'",
        &id,
    )
    .await;
    let clip_line = |files: &BTreeMap<String, Vec<u8>>| {
        let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
        sums.lines()
            .find(|l| l.contains("clip.mp4"))
            .unwrap()
            .to_string()
    };
    let files = w.package(&id).await.unwrap();
    assert!(
        clip_line(&files).ends_with("not received by the server)"),
        "{}",
        clip_line(&files)
    );
    audit::record(
        &w.db(),
        now_ms(),
        &Who::new("retention", Role::System),
        "evidence.purge",
        &format!("case:{id}"),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    let files = w.package(&id).await.unwrap();
    assert!(
        clip_line(&files).contains("deleted under the retention policy"),
        "{}",
        clip_line(&files)
    );
    assert!(files.contains_key("originals/overview.jpg"));
}

/// A machine column edited after arrival (the plate read, the time, the
/// camera) raises the alarm on the case page naming the difference, and
/// the case is neither confirmed nor packaged; the unaltered case is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_case_record_is_flagged_and_blocks_confirmation_and_package() {
    let w = World::new().await;
    let addr = w.server.http_addr;
    let id = w.accepted_case(synced()).await;
    let clean = w.accepted_case(synced()).await;
    w.sql(
        "UPDATE events SET plate_text = '30A12346', event_time_ms = event_time_ms + 3600000, \
         camera_id = 'cam-south' WHERE event_id = $1",
        &id,
    )
    .await;
    let (i, c) = (id.clone(), clean.clone());
    tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", PASSWORD).status, 303);
        let page = cuong.get(&format!("/console/cases/{i}"));
        assert_eq!(page.status, 200);
        let alarm = &page.body[page.body.find("id=\"record-altered\"").expect("the alarm")..];
        let alarm = &alarm[..alarm.find("</div>").unwrap()];
        for field in ["plate_text", "event_time_ms", "camera_id"] {
            assert!(alarm.contains(field), "{field}: {alarm}");
        }
        assert!(
            alarm.contains("30A12346") && alarm.contains("30A12345"),
            "{alarm}"
        );
        let clean_page = cuong.get(&format!("/console/cases/{c}"));
        assert!(!clean_page.body.contains("record-altered"));
        let t = csrf(&page.body);
        let r = cuong.post(
            &format!("/console/cases/{i}/action"),
            &[
                ("csrf", t.as_str()),
                ("action", "confirm"),
                ("revision", &revision(&page.body)),
            ],
        );
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(r.body.contains("Hồ sơ vụ việc đã bị sửa"), "{}", r.body);
        assert_eq!(
            cuong.get(&format!("/console/cases/{i}/package.zip")).status,
            409
        );
    })
    .await
    .unwrap();
    assert_eq!(w.state(&id).await, "accepted");
    match w.package(&id).await {
        Err(PackageError::RecordAltered { differences, .. }) => {
            assert!(differences.contains("plate_text"), "{differences}")
        }
        other => panic!("{:?}", other.map(|f| f.into_keys().collect::<Vec<_>>())),
    }
    assert!(w.package(&clean).await.is_ok());
}
