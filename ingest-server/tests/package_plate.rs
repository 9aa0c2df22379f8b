//! The court summary prints the plate as the notice does: from the
//! canonical plate and the vehicle class (`package::vi::plate_display_for`),
//! never the edge's display string. The edge sends the plate grammar's
//! first fitting layout, so a car's two-line short plate `30A` / `123.45`
//! arrives displayed as the motorbike form `30-A1 2345`; the notice says
//! `30A-123.45`, and so must the document put before a court.

mod common;

use std::io::{Cursor, Read};

use bytes::Bytes;
use common::*;
use image::{Rgb, RgbImage};
use ingest_server::config::Config;
use ingest_server::ingest::Source;
use ingest_server::package;
use ingest_server::server_key::ServerKey;
use ingest_server::{app, devices};
use protocol::VehicleClass;

const SITE: &str = "hn-caugiay-xuanthuy";
const DEVICE: &str = "edge-01";

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 200) as u8, (y % 200) as u8, 90]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// The summary's text, through poppler's `pdftotext` (missing: fails).
fn summary_text(zip: &[u8]) -> String {
    let mut z = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut pdf = Vec::new();
    z.by_name("summary.pdf")
        .unwrap()
        .read_to_end(&mut pdf)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext is missing: install poppler-utils (scripts/setup-system.sh)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_prints_a_car_plate_as_the_notice_does_not_the_edge_display() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let ingestor = app::open(&cfg).await.unwrap();
    let ctx = ingestor.context().clone();
    let signer = ServerKey::open(&cfg, &ctx.db).await.unwrap();
    let k = key();
    devices::enrol(&ctx.db, DEVICE, SITE, &public_hex(&k))
        .await
        .unwrap();

    let files = Files {
        overview: jpeg(640, 360),
        plate: jpeg(120, 60),
        clip: vec![7; 1000],
    };
    let mut ev = event(DEVICE, SITE, &files);
    ev.vehicle_class = VehicleClass::Car;
    ev.plate.text = Some("30A12345".into());
    // The car's short plate, two lines, displayed by the edge in the
    // first layout that fits: the motorbike's.
    ev.plate.display = Some("30-A1 2345".into());
    ev.plate.lines = Some(2);
    let out = ingestor
        .submit(Bytes::from(bundle(&ev, &k, &files)), Source::Http)
        .await
        .unwrap();
    assert!(out.rejection.is_none(), "{:?}", out.rejection);
    let id = ev.event_id.to_string();

    let zip = package::build(&ctx.db, &ctx.evidence, &id, &signer)
        .await
        .unwrap();
    let text = summary_text(&zip);
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    let flat = squash(&text);
    assert!(flat.contains("30A-123.45"), "the car's plate: {text}");
    assert!(
        !flat.contains(&squash("30-A1 2345")),
        "the motorbike form of the edge's display: {text}"
    );
}
