//! The court evidence package and the labelled-crop export, end to end on
//! the real pipeline: signed bundles with real JPEG stills are ingested,
//! cases go through review (an operator claims, corrects, accepts; a police
//! officer confirms), then the package is built and taken apart: every hash
//! in SHA256SUMS, the signature check, the audit trail, the annotated
//! overview, and the summary PDF through poppler (`pdfinfo`, `pdftotext`,
//! `pdfimages`; missing tools fail the test). `SHA256SUMS` is signed by the
//! server key the city published: an edited transition with `SHA256SUMS`
//! computed again fails that check. A case whose evidence was deleted under
//! retention says so, not that the files never came. A tampered evidence
//! file must stop the export. The label export takes accepted crops
//! (corrected or not) and leaves rejected ones, and corrections still in
//! review, out.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::*;
use image::{Rgb, RgbImage};
use ingest_server::audit::Who;
use ingest_server::config::Config;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::labels::{self, SkipReason};
use ingest_server::package::{self, Options, PackageError};
use ingest_server::retention::{self, RetentionConfig};
use ingest_server::review::Reviewer;
use ingest_server::server_key::{self, ServerKey};
use ingest_server::workflow::{Action, Actor, Role};
use ingest_server::{accounts, app, devices};
use protocol::{
    Ack, Attachment, EventBundle, EvidenceItem, EvidenceRole, SigningKey, TrackPoint,
    ViolationEvent,
};

const SITE: &str = "hn-caugiay-xuanthuy";
const DEVICE: &str = "edge-01";
/// Where the vehicle is in the overview at the moment of violation.
const BOX: (u32, u32, u32, u32) = (300, 160, 120, 90);

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(img)
        .unwrap();
    out
}

/// A textured street with a patterned vehicle at [`BOX`].
fn overview() -> RgbImage {
    let (bx, by, bw, bh) = BOX;
    RgbImage::from_fn(640, 360, |x, y| {
        if (bx..bx + bw).contains(&x) && (by..by + bh).contains(&y) {
            let h = (x * 7919 + y * 104_729) ^ (x * y * 31);
            Rgb([40 + (h % 180) as u8, (h / 7 % 120) as u8, 150])
        } else {
            Rgb([
                (x / 4) as u8 + 30,
                (y / 3) as u8 + 40,
                ((x + 2 * y) % 60) as u8 + 60,
            ])
        }
    })
}

/// The stills of one case; the plate crop differs per `seed` (so each case
/// has its own evidence object to tamper with).
struct Stills {
    overview: Vec<u8>,
    vehicle: Vec<u8>,
    plate: Vec<u8>,
    clip: Vec<u8>,
}

fn stills(seed: u8) -> Stills {
    let img = overview();
    let (bx, by, bw, bh) = BOX;
    let lower = image::imageops::crop_imm(&img, bx, by + bh / 2, bw, bh / 2).to_image();
    let plate = RgbImage::from_fn(120, 40, |x, y| {
        let ink = (x / 9 + u32::from(seed)) % 3 == 0 && (8..32).contains(&y);
        if ink {
            Rgb([20, 20, 20])
        } else {
            Rgb([235, 235, 230])
        }
    });
    Stills {
        overview: jpeg(&img),
        vehicle: jpeg(&lower),
        plate: jpeg(&plate),
        clip: vec![seed; 4000],
    }
}

/// A signed red-light event whose track ends under the vehicle's box.
fn event(s: &Stills, plate: &str, display: &str) -> ViolationEvent {
    let files = Files::new(10);
    let mut ev = common::event(DEVICE, SITE, &files);
    ev.plate.text = Some(plate.into());
    ev.plate.display = Some(display.into());
    ev.site_config_sha256 = Some(protocol::sha256_hex(b"the site file"));
    // first_seen = t-7 s, last_seen = t-4 s, event at t-5 s: frame 27 of 1..=40.
    let (cx, cy) = (BOX.0 + BOX.2 / 2, BOX.1 + BOX.3);
    ev.track.points = (0..20u32)
        .map(|i| 1 + 2 * i)
        .map(|f| TrackPoint {
            frame: u64::from(f),
            x: cx + f * 4 - 27 * 4,
            y: cy + 27 * 2 - f * 2,
        })
        .collect();
    ev.evidence = vec![
        EvidenceItem::from_bytes("at.jpg", "image/jpeg", EvidenceRole::Overview, &s.overview)
            .with_frame(27, ev.event_time),
        EvidenceItem::from_bytes(
            "vehicle.jpg",
            "image/jpeg",
            EvidenceRole::VehicleCrop,
            &s.vehicle,
        ),
        EvidenceItem::from_bytes("plate.jpg", "image/jpeg", EvidenceRole::PlateCrop, &s.plate),
        EvidenceItem::from_bytes("clip.mp4", "video/mp4", EvidenceRole::Clip, &s.clip),
    ];
    ev
}

fn bundle(ev: &ViolationEvent, key: &SigningKey, s: &Stills) -> Vec<u8> {
    let attach = |name: &str, data: &[u8]| Attachment {
        name: name.into(),
        data: data.to_vec(),
    };
    EventBundle {
        event: ev.sign(key).unwrap(),
        attachments: vec![
            attach("at.jpg", &s.overview),
            attach("vehicle.jpg", &s.vehicle),
            attach("plate.jpg", &s.plate),
        ],
    }
    .encode()
    .unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    ingestor: Ingestor,
    key: SigningKey,
    /// The server key (hex) registered in `server_keys`: what `key show`
    /// prints and the city publishes.
    server_key: String,
    /// That key, which signs the packages.
    signer: ServerKey,
    operator: Actor,
    police: Actor,
}

impl World {
    /// A fresh server state on SQLite (`None`) or the database at `url`.
    async fn new(url: Option<String>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        cfg.database.url = url.unwrap_or_default();
        let ingestor = app::open(&cfg).await.unwrap();
        let db = &ingestor.context().db;
        // As `app::start` does: the key that signs acks signs packages too.
        let signer = ServerKey::open(&cfg, db).await.unwrap();
        let server_key = signer.public_key_hex();
        let key = key();
        devices::enrol(db, DEVICE, SITE, &public_hex(&key))
            .await
            .unwrap();
        let admin = Who::new("admin", Role::Admin);
        let pw = Some("correct horse battery staple");
        let op = accounts::create(db, "op.lan", "Nguyễn Thị Lan", Role::Operator, pw, &admin)
            .await
            .unwrap();
        let cop = accounts::create(db, "csgt.hung", "Trần Văn Hùng", Role::Police, pw, &admin)
            .await
            .unwrap();
        World {
            data: dir.path().to_path_buf(),
            _dir: dir,
            ingestor,
            key,
            server_key,
            signer,
            operator: Actor {
                id: op.user_id,
                role: Role::Operator,
            },
            police: Actor {
                id: cop.user_id,
                role: Role::Police,
            },
        }
    }

    async fn ingest(&self, seed: u8, plate: &str, display: &str) -> (String, Stills) {
        let s = stills(seed);
        let ev = event(&s, plate, display);
        let source = Source::Mqtt(protocol::topics::events_topic(SITE, DEVICE).unwrap());
        let out = self
            .ingestor
            .submit(Bytes::from(bundle(&ev, &self.key, &s)), source)
            .await
            .unwrap();
        assert_eq!(
            out.ack,
            Some(Ack::stored(ev.event_id)),
            "{:?}",
            out.rejection
        );
        (ev.event_id.to_string(), s)
    }

    async fn act(&self, id: &str, action: Action, actor: &Actor, reason: &str) {
        let ctx = self.ingestor.context();
        let reviewer = Reviewer {
            db: &ctx.db,
            grammar: ctx.grammar,
            fines: &ctx.fines,
            registry: None,
        };
        reviewer
            .act(id, &action, actor, reason, ingest_server::db::now_ms())
            .await
            .unwrap_or_else(|e| panic!("{} on {id}: {e}", action.name()));
    }

    /// Changes one byte of the stored copy of `bytes` on disk (in its
    /// pack, or its own object), as someone with access to the disk could.
    async fn tamper(&self, bytes: &[u8]) {
        let at = self
            .ingestor
            .context()
            .evidence
            .locate(&protocol::sha256_hex(bytes))
            .await
            .unwrap();
        let path = self.data.join("evidence").join(at.key.as_ref());
        let mut stored = std::fs::read(&path).unwrap();
        let start = at.range.map_or(0, |r| r.start as usize);
        stored[start + bytes.len() / 2] ^= 0x55;
        std::fs::write(&path, stored).unwrap();
    }
}

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.insert(f.name().to_string(), data);
    }
    out
}

/// Runs a poppler tool; a missing tool fails the test.
fn tool(name: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name} is missing ({e}): install poppler-utils (scripts/setup-system.sh)")
    });
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn court_package_on_sqlite() {
    court_package_of_a_confirmed_case(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn court_package_on_postgres() {
    let pg = Postgres::start();
    court_package_of_a_confirmed_case(Some(pg.fresh_database().await)).await;
}

async fn court_package_of_a_confirmed_case(url: Option<String>) {
    let w = World::new(url).await;
    let ctx = w.ingestor.context().clone();
    let (id, s) = w.ingest(1, "30A12345", "30A-123.45").await;
    w.act(&id, Action::Claim, &w.operator, "").await;
    let fix = Action::CorrectPlate {
        plate: "30A-999.99".into(),
    };
    w.act(&id, fix, &w.operator, "chữ số cuối đọc sai").await;
    w.act(&id, Action::Accept, &w.operator, "").await;
    w.act(&id, Action::Confirm, &w.police, "").await;

    let zip = package::build(&ctx.db, &ctx.evidence, &id, &w.signer)
        .await
        .unwrap();
    // To look at it: PACKAGE_TEST_OUT=dir cargo test -p ingest-server --test package sqlite
    if let Ok(dir) = std::env::var("PACKAGE_TEST_OUT") {
        std::fs::write(Path::new(&dir).join("package.zip"), &zip).unwrap();
    }
    let files = unzip(&zip);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    for must in [
        "README.txt",
        "event.json",
        "signature.txt",
        "originals/at.jpg",
        "originals/vehicle.jpg",
        "originals/plate.jpg",
        "annotated/at.jpg",
        "audit.jsonl",
        "transitions.json",
        "summary.pdf",
        "VERIFY.txt",
        "SHA256SUMS",
        "SHA256SUMS.sig",
    ] {
        assert!(files.contains_key(must), "{must} missing from {names:?}");
    }
    // The clip never arrived; crops are not annotated.
    assert!(!files.contains_key("originals/clip.mp4"));
    assert!(!files.contains_key("annotated/plate.jpg"));
    assert_eq!(files["originals/at.jpg"], s.overview);
    assert_eq!(files["originals/plate.jpg"], s.plate);

    // event.json is the stored signed event, byte for byte.
    let stored: String = sqlx::query_scalar("SELECT signed_json FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_one(ctx.db.pool())
        .await
        .unwrap();
    assert_eq!(files["event.json"], stored.as_bytes());

    // Every listed file matches its hash; every file but SHA256SUMS and
    // its signature is listed.
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    let mut listed = Vec::new();
    for line in sums.lines().filter(|l| !l.starts_with('#')) {
        let (hash, name) = line.split_once("  ").unwrap();
        assert_eq!(protocol::sha256_hex(&files[name]), hash, "{name}");
        listed.push(name);
    }
    assert_eq!(listed.len(), files.len() - 2, "{sums}");
    // The site file the device judged by, as it signed it.
    assert!(
        sums.contains(&format!(
            "judged by (stop lines, lanes, calibration), as signed: sha256 {}",
            protocol::sha256_hex(b"the site file")
        )),
        "{sums}"
    );
    // The frame each still shows, as the device signed it.
    assert!(
        sums.contains("at.jpg (overview, ") && sums.contains(" bytes, frame 27, "),
        "{sums}"
    );
    assert!(
        sums.contains("clip.mp4 (clip, 4000 bytes, not received by the server)"),
        "{sums}"
    );
    server_signature(&w, &ctx, &files).await;
    audit_entries_rehash(&files["audit.jsonl"]);
    let clip_hash = protocol::sha256_hex(&s.clip);
    assert!(sums.contains(&format!("# {clip_hash}  clip.mp4")), "{sums}");
    // ... and sha256sum agrees on the unpacked package.
    let out = tempfile::tempdir().unwrap();
    for (name, data) in &files {
        let p = out.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let check = Command::new("sha256sum")
        .args(["--strict", "-c", "SHA256SUMS"])
        .current_dir(out.path())
        .output()
        .expect("sha256sum (coreutils)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // The signature, checked now with the enrolled key.
    let sig = String::from_utf8(files["signature.txt"].clone()).unwrap();
    assert!(sig.contains("result: VALID\n"), "{sig}");
    assert!(
        sig.contains(&format!("public_key_ed25519_hex: {}", public_hex(&w.key))),
        "{sig}"
    );
    assert!(
        sig.contains("device_id: edge-01") && sig.contains("revoked_at: not revoked"),
        "{sig}"
    );

    // The audit trail: claim, correction, accept, confirm by the right people; chain intact.
    let audit = String::from_utf8(files["audit.jsonl"].clone()).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let acts: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| Some((l["action"].as_str()?, l["actor"].as_str()?)))
        .collect();
    let (op, cop) = (w.operator.id.as_str(), w.police.id.as_str());
    assert_eq!(
        acts,
        [
            ("case.claim", op),
            ("case.correct_plate", op),
            ("case.accept", op),
            ("case.confirm", cop)
        ]
    );
    let last = &lines.last().unwrap()["chain_verification"];
    assert_eq!(last["result"], "intact", "{audit}");
    let transitions: Vec<serde_json::Value> =
        serde_json::from_slice(&files["transitions.json"]).unwrap();
    let steps: Vec<&str> = transitions
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["claim", "correct_plate", "accept", "confirm"]);

    // The annotated overview: the vehicle's box in red on its top edge, the rest untouched.
    let plain = image::load_from_memory(&s.overview).unwrap().to_rgb8();
    let marked = image::load_from_memory(&files["annotated/at.jpg"])
        .unwrap()
        .to_rgb8();
    let red = |p: &Rgb<u8>| p[0] > 170 && p[1] < 90 && p[2] < 90;
    let (bx, by, bw, bh) = BOX;
    for (x, y) in [(bx + bw / 2, by), (bx, by + bh / 2), (bx + bw, by + bh / 2)] {
        assert!(
            red(marked.get_pixel(x, y)),
            "no box edge at ({x},{y}): {:?}",
            marked.get_pixel(x, y)
        );
        assert!(!red(plain.get_pixel(x, y)));
    }
    let far = |img: &RgbImage| img.get_pixel(20, 20)[0] as i32;
    assert!((far(&plain) - far(&marked)).abs() < 12);

    // The summary: a two-page PDF with Vietnamese text and the original overview in it.
    let pdf = &files["summary.pdf"];
    assert!(pdf.starts_with(b"%PDF-"));
    let tmp = out.path().join("summary.pdf");
    let (info, warnings) = tool("pdfinfo", &[tmp.to_str().unwrap()]);
    assert!(warnings.trim().is_empty(), "pdfinfo complained: {warnings}");
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().eq(["Pages:", "2"])),
        "{info}"
    );
    assert!(
        info.lines()
            .any(|l| l.starts_with("Page size:") && l.ends_with("595.28 x 841.89 pts (A4)")),
        "{info}"
    );
    let (text, warnings) = tool(
        "pdftotext",
        &["-layout", "-enc", "UTF-8", tmp.to_str().unwrap(), "-"],
    );
    assert!(
        warnings.trim().is_empty(),
        "pdftotext complained: {warnings}"
    );
    for want in [
        "BIÊN BẢN TÓM TẮT HỒ SƠ VI PHẠM",
        "Biển số",
        "Biển số 30A-999.99 (đã sửa khi xem xét)",
        "Thiết bị đọc 30A-123.45 (độ tin cậy 97%); người xem xét đã sửa",
        "Thời gian",
        "Địa điểm",
        "Nút giao hn-caugiay-xuanthuy, camera cam-north",
        "Hành vi vi phạm",
        "vượt đèn đỏ",
        "Mức phạt",
        "Từ 18.000.000 đến 20.000.000 đồng",
        "điểm b khoản 9 Điều 6 Nghị định 168/2024/NĐ-CP",
        // The amount fixed at confirmation (the middle of the range), as
        // the notice and the payment carry it.
        "Số tiền phạt 19.000.000 đồng — mức phạt cụ thể quyết định khi CSGT xác nhận",
        "trừ 4 điểm giấy phép lái xe",
        "CSGT đã xác nhận",
        "Nguyễn Thị Lan",
        "Trần Văn Hùng",
        "HỢP LỆ",
        &public_hex(&w.key),
        &protocol::sha256_hex(&s.plate),
        "không chứa thông tin cá nhân",
    ] {
        // Lines wrap anywhere (long hashes too): compare without whitespace.
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        assert!(
            squash(&text).contains(&squash(want)),
            "summary lacks {want:?}:\n{text}"
        );
    }
    let (list, _) = tool("pdfimages", &["-list", tmp.to_str().unwrap()]);
    let row: Vec<&str> = list
        .lines()
        .nth(2)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row.get(3..5), Some(&["640", "360"][..]), "{list}");
    assert_eq!(row.get(8), Some(&"jpeg"), "{list}");
    let prefix = out.path().join("img");
    tool(
        "pdfimages",
        &["-j", tmp.to_str().unwrap(), prefix.to_str().unwrap()],
    );
    let embedded = std::fs::read(out.path().join("img-000.jpg")).unwrap();
    assert_eq!(
        embedded, s.overview,
        "the PDF's picture is the original file"
    );
}

/// Whether `SHA256SUMS.sig` is the signature of `sums` by `key_hex`.
fn signed_by(key_hex: &str, sums: &[u8], sig: &[u8]) -> bool {
    let key: [u8; 32] = hex::decode(key_hex).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let sig = std::str::from_utf8(sig).unwrap().trim_end();
    let sig: [u8; 64] = hex::decode(sig).unwrap().try_into().unwrap();
    key.verify_strict(sums, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// `SHA256SUMS.sig` verifies with the server key the city published
/// (registered in `server_keys`, named in VERIFY.txt); an edited
/// transition with `SHA256SUMS` computed again passes `sha256sum -c` but
/// not the signature.
async fn server_signature(
    w: &World,
    ctx: &ingest_server::ingest::IngestContext,
    files: &BTreeMap<String, Vec<u8>>,
) {
    let published = server_key::trusted(&ctx.db).await.unwrap();
    assert_eq!(published, std::slice::from_ref(&w.server_key));
    let (sums, sig) = (&files["SHA256SUMS"], &files["SHA256SUMS.sig"]);
    assert!(
        signed_by(&w.server_key, sums, sig),
        "signature does not verify"
    );
    let verify = String::from_utf8(files["VERIFY.txt"].clone()).unwrap();
    assert!(
        verify.contains(&format!("server_public_key_ed25519_hex: {}", w.server_key)),
        "{verify}"
    );
    // Someone edits who confirmed the case and recomputes SHA256SUMS.
    let transitions = String::from_utf8(files["transitions.json"].clone()).unwrap();
    let edited = transitions.replace(&w.police.id, &w.operator.id);
    assert_ne!(edited, transitions);
    let sums_text = String::from_utf8(sums.clone()).unwrap();
    let forged: String = sums_text
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((_, "transitions.json")) => format!(
                "{}  transitions.json\n",
                protocol::sha256_hex(edited.as_bytes())
            ),
            _ => format!("{l}\n"),
        })
        .collect();
    assert_ne!(forged, sums_text);
    assert!(
        !signed_by(&w.server_key, forged.as_bytes(), sig),
        "the signature still verifies over the forged SHA256SUMS"
    );
    // Nor does a signature by another key count as the server's.
    let other = hex::encode(key().verifying_key().to_bytes());
    assert!(!signed_by(&other, sums, sig));
}

/// Each audit entry's hash is recomputed from its fields as VERIFY.txt
/// says; consecutive entries of the case are linked.
fn audit_entries_rehash(audit: &[u8]) {
    let lines: Vec<serde_json::Value> = std::str::from_utf8(audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entries = &lines[..lines.len() - 1];
    assert!(!entries.is_empty());
    for (i, e) in entries.iter().enumerate() {
        let a = serde_json::json!([
            e["seq"],
            e["at"],
            e["actor"],
            e["role"],
            e["action"],
            e["subject"],
            e["detail"],
            e["prev_hash"]
        ]);
        assert_eq!(
            protocol::sha256_hex(a.to_string().as_bytes()),
            e["hash"].as_str().unwrap(),
            "{e}"
        );
        if let Some(prev) = i.checked_sub(1).map(|j| &entries[j])
            && prev["seq"].as_i64().unwrap() + 1 == e["seq"].as_i64().unwrap()
        {
            assert_eq!(prev["hash"], e["prev_hash"]);
        }
    }
}

/// A case whose evidence was deleted under retention: the package says the
/// files were received and deleted, not that they never came; the clip,
/// which never came, is still "not received".
#[tokio::test(flavor = "multi_thread")]
async fn purged_evidence_is_said_deleted_not_missing() {
    let w = World::new(None).await;
    let ctx = w.ingestor.context().clone();
    let (id, s) = w.ingest(9, "30A12345", "30A-123.45").await;
    w.act(&id, Action::Claim, &w.operator, "").await;
    let reject = Action::Reject {
        code: "false_trigger".into(),
    };
    w.act(&id, reject, &w.operator, "").await;
    let later = ingest_server::db::now_ms() + 100 * 86_400_000;
    let report = retention::run(
        &ctx.db,
        &ctx.evidence,
        &RetentionConfig::default(),
        later,
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.cases, 1, "{report:?}");

    let files = unzip(
        &package::build(&ctx.db, &ctx.evidence, &id, &w.signer)
            .await
            .unwrap(),
    );
    assert!(!files.keys().any(|k| k.starts_with("originals/")));
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    for name in ["at.jpg", "vehicle.jpg", "plate.jpg"] {
        let line = sums
            .lines()
            .find(|l| l.starts_with('#') && l.contains(&format!("  {name} (")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{sums}"));
        assert!(
            line.contains("received by the server at ")
                && line.contains(", deleted under the retention policy at "),
            "{line}"
        );
        assert!(!line.contains("not received"), "{line}");
    }
    assert!(
        sums.contains(&format!(
            "# {}  clip.mp4 (clip, 4000 bytes, not received by the server)",
            protocol::sha256_hex(&s.clip)
        )),
        "{sums}"
    );
    assert!(signed_by(
        &w.server_key,
        &files["SHA256SUMS"],
        &files["SHA256SUMS.sig"]
    ));

    let out = tempfile::tempdir().unwrap();
    let pdf = out.path().join("summary.pdf");
    std::fs::write(&pdf, &files["summary.pdf"]).unwrap();
    let (text, _) = tool(
        "pdftotext",
        &["-layout", "-enc", "UTF-8", pdf.to_str().unwrap(), "-"],
    );
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    let text = squash(&text);
    assert_eq!(
        text.matches(&squash("đã xóa theo chính sách lưu trữ"))
            .count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.matches(&squash("máy chủ chưa nhận được tệp")).count(),
        1,
        "only the clip was never received: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_or_missing_evidence_stops_the_package() {
    let w = World::new(None).await;
    let ctx = w.ingestor.context().clone();
    let (id, s) = w.ingest(2, "30A12345", "30A-123.45").await;
    package::build(&ctx.db, &ctx.evidence, &id, &w.signer)
        .await
        .unwrap();

    let mut bad = s.plate.clone();
    bad[s.plate.len() / 2] ^= 0x55;
    w.tamper(&s.plate).await;
    match package::build(&ctx.db, &ctx.evidence, &id, &w.signer).await {
        Err(PackageError::EvidenceCorrupt {
            name,
            sha256,
            actual,
            ..
        }) => {
            assert_eq!(name, "plate.jpg");
            assert_eq!(sha256, protocol::sha256_hex(&s.plate));
            assert_eq!(actual, protocol::sha256_hex(&bad));
        }
        other => panic!("expected EvidenceCorrupt, got {:?}", other.map(|z| z.len())),
    }
    // The object holding the crop (the case's pack) is lost.
    let at = ctx
        .evidence
        .locate(&protocol::sha256_hex(&s.plate))
        .await
        .unwrap();
    std::fs::remove_file(w.data.join("evidence").join(at.key.as_ref())).unwrap();
    match package::build(&ctx.db, &ctx.evidence, &id, &w.signer).await {
        Err(PackageError::EvidenceMissing { name, .. }) => {
            assert!(name.ends_with(".jpg"), "{name}")
        }
        other => panic!("expected EvidenceMissing, got {:?}", other.map(|z| z.len())),
    }

    // A still that is not the JPEG its media type says: no package either.
    let files = Files::new(100);
    let ev = common::event(DEVICE, SITE, &files);
    let source = Source::Mqtt(protocol::topics::events_topic(SITE, DEVICE).unwrap());
    let bytes = Bytes::from(common::bundle(&ev, &w.key, &files));
    let out = w.ingestor.submit(bytes, source).await.unwrap();
    assert_eq!(out.ack, Some(Ack::stored(ev.event_id)));
    match package::build(&ctx.db, &ctx.evidence, &ev.event_id.to_string(), &w.signer).await {
        Err(PackageError::Image { name, .. }) => assert_eq!(name, "overview.jpg"),
        other => panic!("expected an image error, got {:?}", other.map(|z| z.len())),
    }

    let missing = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        package::build(&ctx.db, &ctx.evidence, &missing, &w.signer).await,
        Err(PackageError::NotFound(_))
    ));
    let opts = Options {
        font: "/nonexistent/DejaVuSans.ttf".into(),
    };
    match package::build_with(&ctx.db, &ctx.evidence, &id, &w.signer, &opts).await {
        Err(e @ PackageError::Font { .. }) => {
            assert!(e.to_string().contains("/nonexistent/DejaVuSans.ttf"), "{e}");
        }
        other => panic!("expected a font error, got {:?}", other.map(|z| z.len())),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn labelled_crops_on_sqlite() {
    labelled_crops_take_checked_plates_only(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn labelled_crops_on_postgres() {
    let pg = Postgres::start();
    labelled_crops_take_checked_plates_only(Some(pg.fresh_database().await)).await;
}

async fn labelled_crops_take_checked_plates_only(url: Option<String>) {
    let w = World::new(url).await;
    let ctx = w.ingestor.context().clone();
    let (op, cop) = (&w.operator, &w.police);
    // Corrected and confirmed.
    let (corrected, s_corrected) = w.ingest(3, "30A12345", "30A-123.45").await;
    w.act(&corrected, Action::Claim, op, "").await;
    let fix = Action::CorrectPlate {
        plate: "51F67890".into(),
    };
    w.act(&corrected, fix, op, "biển số thật là 51F-678.90")
        .await;
    w.act(&corrected, Action::Accept, op, "").await;
    w.act(&corrected, Action::Confirm, cop, "").await;
    // Accepted as read.
    let (accepted, s_accepted) = w.ingest(4, "29A11111", "29A-111.11").await;
    w.act(&accepted, Action::Claim, op, "").await;
    w.act(&accepted, Action::Accept, op, "").await;
    // Rejected.
    let (rejected, _) = w.ingest(5, "30A22222", "30A-222.22").await;
    w.act(&rejected, Action::Claim, op, "").await;
    w.act(
        &rejected,
        Action::Reject {
            code: "false_trigger".into(),
        },
        op,
        "",
    )
    .await;
    // Corrected, then found unreadable after all.
    let (unreadable, _) = w.ingest(6, "30A33333", "30A-333.33").await;
    w.act(&unreadable, Action::Claim, op, "").await;
    let fix = Action::CorrectPlate {
        plate: "30A33338".into(),
    };
    w.act(&unreadable, fix, op, "có thể là 8").await;
    w.act(
        &unreadable,
        Action::Reject {
            code: "plate_unreadable".into(),
        },
        op,
        "",
    )
    .await;
    // Corrected, still in review: the correction may be half done.
    let (in_review, _) = w.ingest(9, "30A66666", "30A-666.66").await;
    w.act(&in_review, Action::Claim, op, "").await;
    let fix = Action::CorrectPlate {
        plate: "30A66668".into(),
    };
    w.act(&in_review, fix, op, "đang xem").await;
    // Not looked at yet.
    let (untouched, _) = w.ingest(7, "30A44444", "30A-444.44").await;
    // Accepted, but its crop is corrupt on disk.
    let (broken, s_broken) = w.ingest(8, "30A55555", "30A-555.55").await;
    w.act(&broken, Action::Claim, op, "").await;
    w.act(&broken, Action::Accept, op, "").await;
    w.tamper(&s_broken.plate).await;

    let out = tempfile::tempdir().unwrap();
    let report = labels::export(&ctx.db, &ctx.evidence, out.path())
        .await
        .unwrap();
    assert_eq!((report.written, report.corrected), (2, 1), "{report:?}");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped_for(&SkipReason::Corrupt), 1);
    assert_eq!(report.skipped[0].event_id, broken);

    let csv = std::fs::read_to_string(out.path().join("labels.csv")).unwrap();
    let mut rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.remove(0), "image,text");
    rows.sort();
    let mut want = vec![
        format!("images/{corrected}.jpg,51F67890"),
        format!("images/{accepted}.jpg,29A11111"),
    ];
    want.sort();
    assert_eq!(rows, want, "{csv}");
    for absent in [&rejected, &unreadable, &untouched, &broken, &in_review] {
        assert!(
            !csv.contains(absent.as_str()),
            "{absent} must not be labelled:\n{csv}"
        );
        assert!(!out.path().join(format!("images/{absent}.jpg")).exists());
    }
    let image = |id: &str| std::fs::read(out.path().join(format!("images/{id}.jpg"))).unwrap();
    assert_eq!(image(&corrected), s_corrected.plate);
    assert_eq!(image(&accepted), s_accepted.plate);

    // The ZIP holds the same.
    let z = unzip(&labels::export_zip(&ctx.db, &ctx.evidence).await.unwrap());
    assert_eq!(z["labels.csv"], csv.as_bytes());
    assert_eq!(z[&format!("images/{corrected}.jpg")], s_corrected.plate);
    assert_eq!(z.len(), 3, "{:?}", z.keys());
    // The directory reads as the fine-tuning script reads it (dir/images/<image> or dir/<image>).
    for row in csv.lines().skip(1) {
        let image = row.split(',').next().unwrap();
        assert!(Path::new(out.path()).join(image).is_file(), "{image}");
    }
}

/// A fine set above the middle of the range for an aggravating
/// circumstance: the summary states the amount charged, that it is above
/// the middle (and the middle), the circumstance and the officer's reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_summary_states_why_the_fine_is_not_the_middle() {
    let w = World::new(None).await;
    let ctx = w.ingestor.context().clone();
    let (id, _) = w.ingest(5, "30A12345", "30A-123.45").await;
    w.act(&id, Action::Claim, &w.operator, "").await;
    w.act(&id, Action::Accept, &w.operator, "").await;
    let reviewer = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: None,
    };
    reviewer
        .confirm_at(
            &id,
            &w.police,
            Some(19_500_000),
            "tái phạm trong 6 tháng",
            ingest_server::db::now_ms(),
            None,
            false,
        )
        .await
        .unwrap();
    let files = unzip(
        &package::build(&ctx.db, &ctx.evidence, &id, &w.signer)
            .await
            .unwrap(),
    );
    let out = tempfile::tempdir().unwrap();
    let pdf = out.path().join("summary.pdf");
    std::fs::write(&pdf, &files["summary.pdf"]).unwrap();
    let (text, _) = tool(
        "pdftotext",
        &["-layout", "-enc", "UTF-8", pdf.to_str().unwrap(), "-"],
    );
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    let want = "Số tiền phạt 19.500.000 đồng — mức phạt cụ thể quyết định khi CSGT xác nhận \
                (cao hơn mức trung bình của khung tiền phạt (19.000.000 đồng) do có tình tiết \
                tăng nặng: tái phạm trong 6 tháng)";
    assert!(squash(&text).contains(&squash(want)), "{text}");
}
