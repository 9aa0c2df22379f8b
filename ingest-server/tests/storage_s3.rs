//! Evidence on S3-compatible storage, against a real S3 server started by
//! the test on free loopback ports in a temporary directory: `s3s-fs` by
//! default (`make test`), Garage, which we would deploy, with
//! `TV_S3_SERVER=garage` (`make test-garage`; see `storage_s3/server.rs`
//! and the README's *Evidence storage*). Every test runs against either,
//! through the S3 API only. The ingest server runs with
//! `[storage] backend = "s3"` and takes signed violations through its real
//! paths (MQTT with clip chunks, and `POST /api/v1/violations`); the tests
//! then look at the bucket through the S3 API with a client of their own,
//! read evidence back through the admin API, tamper with an object in the
//! bucket, withdraw the server's key mid-run, and start with bad settings.

#[path = "storage_s3/client.rs"]
mod client;
mod common;
#[path = "storage_s3/garage.rs"]
mod garage;
#[path = "storage_s3/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::{Edge, http};
use common::*;
use futures::TryStreamExt;
use ingest_server::app::{self, Running};
use ingest_server::config::Config;
use ingest_server::evidence::EvidenceStoreError;
use ingest_server::{cases, devices, quarantine};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protocol::{Ack, Message, SigningKey};
use server::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

const SITE: &str = "hn-hoankiem-01";
const TOKEN: &str = "test-admin-token-0123456789";
const PREFIX: &str = "ioc/test";

/// The server's configuration, as an operator would write it: TOML with a
/// `[storage.s3]` section, the secret in a file beside it.
fn config(dir: &Path, s3: &S3Server, bucket: &str, key_id: &str, secret: &str) -> Config {
    let secret_file = dir.join("s3-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let text = format!(
        "data_dir = \"{data}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n\
         [admin]\ntoken = \"{TOKEN}\"\n\
         [storage]\nbackend = \"s3\"\n\
         [storage.s3]\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\nregion = \"garage\"\n\
         access_key_id = \"{key_id}\"\nsecret_access_key_file = \"{file}\"\n\
         prefix = \"{PREFIX}\"\ntimeout_ms = 5000\nretries = 1\n",
        data = dir.join("data").display(),
        mqtt = free_port(),
        endpoint = s3.endpoint(),
        file = secret_file.display(),
    );
    let cfg = Config::parse(&text, "storage_s3.toml").unwrap();
    cfg.validate().unwrap();
    cfg
}

/// An S3 client of the test's own on the bucket (no prefix), to see what
/// the server stored and to tamper with it.
fn bucket(s3: &S3Server) -> impl ObjectStore {
    AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_bucket_name(BUCKET)
        .with_region("garage")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .unwrap()
}

async fn keys_under(store: &impl ObjectStore, prefix: &str) -> BTreeSet<String> {
    store
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

fn key_of(digest: &str) -> String {
    format!("{PREFIX}/sha256/{}/{}", &digest[..2], &digest[2..])
}

/// The device's signing key and the MQTT secret its enrolment issued.
async fn enrol(server: &Running, device: &str) -> (SigningKey, String) {
    let k = key();
    let e = devices::enrol_with_credentials(
        &server.ingestor.context().db,
        device,
        SITE,
        &public_hex(&k),
    )
    .await
    .unwrap();
    (k, e.mqtt_password)
}

async fn post_bundle(server: &Running, bundle: Vec<u8>) -> (u16, Vec<u8>) {
    let ct = ("Content-Type", "application/vnd.tv.bundle".to_string());
    let path = "/api/v1/violations".to_string();
    http(server.http_addr, "POST", path, vec![ct], bundle).await
}

async fn get_evidence(server: &Running, digest: &str) -> (u16, Vec<u8>) {
    let auth = ("Authorization", format!("Bearer {TOKEN}"));
    let path = format!("/api/v1/evidence/{digest}");
    http(server.http_addr, "GET", path, vec![auth], Vec::new()).await
}

fn start_error(r: Result<Running, app::StartError>) -> String {
    match r {
        Ok(_) => panic!("the server started with a store it cannot use"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evidence_lives_in_the_bucket_by_hash_and_is_checked_on_read() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,rumqttd=warn")
        .try_init();
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &s3, BUCKET, ACCESS_KEY, SECRET_KEY);
    let server = app::start(&cfg).await.unwrap();
    let (k, mqtt_secret) = enrol(&server, "edge-s3").await;
    let mut edge = Edge::connect(cfg.mqtt.listen.port(), SITE, "edge-s3", &mqtt_secret).await;

    // One event over MQTT, its clip after it in chunks.
    let files = Files::new(700_000);
    let ev = event("edge-s3", SITE, &files);
    edge.publish("events", bundle(&ev, &k, &files)).await;
    assert_eq!(edge.next_ack().await, Ack::stored(ev.event_id));
    for c in split_clip(ev.event_id, "clip.mp4", &files.clip) {
        edge.publish("evidence", c.encode().unwrap()).await;
    }
    assert_eq!(
        edge.next_ack().await,
        Ack::stored(ev.event_id).for_item("clip.mp4")
    );
    // Another over HTTP, with a still of its own and the same plate crop.
    let mut files2 = Files::new(1000);
    files2.overview[0] ^= 0xff;
    let ev2 = event("edge-s3", SITE, &files2);
    let (st, body) = post_bundle(&server, bundle(&ev2, &k, &files2)).await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(Ack::from_json(&body).unwrap(), Ack::stored(ev2.event_id));

    let db = &server.ingestor.context().db;
    let case = cases::case(db, &ev.event_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((case.evidence_stored, case.evidence_total), (3, 3));

    // In the bucket, through the S3 API: each event's stills in one pack
    // (the second event's plate crop, already stored, not written again),
    // the clip as its own object under its hash, the staged chunks gone.
    let stored: Vec<(String, &[u8])> = [
        &files.overview[..],
        &files.plate[..],
        &files.clip[..],
        &files2.overview[..],
    ]
    .into_iter()
    .map(|b| (protocol::sha256_hex(b), b))
    .collect();
    let evidence = &server.ingestor.context().evidence;
    let s3_client = bucket(&s3);
    assert_eq!(
        keys_under(&s3_client, &format!("{PREFIX}/sha256")).await,
        BTreeSet::from([key_of(&stored[2].0)])
    );
    let packs = keys_under(&s3_client, &format!("{PREFIX}/packs")).await;
    assert_eq!(packs.len(), 2, "{packs:?}");
    assert!(
        keys_under(&s3_client, &format!("{PREFIX}/staging"))
            .await
            .is_empty()
    );
    let everything = keys_under(&s3_client, "").await;
    assert!(
        everything
            .iter()
            .all(|k| k.starts_with(&format!("{PREFIX}/"))),
        "{everything:?}"
    );
    for (digest, bytes) in &stored {
        // The bucket has exactly these bytes where the index says, read
        // whole through the S3 API by the test's own client (no file to
        // read: Garage keeps objects in compressed blocks) ...
        let at = evidence.locate(digest).await.unwrap();
        let object = s3_client
            .get(&ObjectPath::from(format!("{PREFIX}/{}", at.key)))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let range = at
            .range
            .map_or(0..object.len(), |r| r.start as usize..r.end as usize);
        assert_eq!(&object[range], *bytes, "{digest} in the bucket");
        // ... and the admin API serves them back, checked.
        let (st, body) = get_evidence(&server, digest).await;
        assert_eq!((st, &body[..]), (200, *bytes), "{digest} served");
    }

    // The database loses the pack index (a restore older than the
    // evidence): the stills are unreachable until `evidence reindex`
    // rebuilds it from the packs' own headers, read from the bucket.
    sqlx::query("DELETE FROM evidence_index")
        .execute(db.pool())
        .await
        .unwrap();
    assert!(evidence.get(&stored[0].0).await.is_err());
    let report = evidence.reindex(false).await.unwrap();
    assert_eq!(
        (
            report.packs,
            report.files,
            report.added,
            report.problems.len()
        ),
        (2, 3, 3, 0),
        "{report:?}"
    );
    for (digest, bytes) in &stored {
        assert_eq!(&evidence.get(digest).await.unwrap()[..], *bytes);
    }

    // Someone with write access to the bucket changes a still inside its
    // pack (same size): the read is an error, never the wrong bytes.
    let (digest, original) = &stored[0];
    let at = evidence.locate(digest).await.unwrap();
    let range = at.range.clone().expect("stills are packed");
    let pack_key = ObjectPath::from(format!("{PREFIX}/{}", at.key));
    let mut pack = s3_client
        .get(&pack_key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    pack[range.start as usize + 100] ^= 0x01;
    let mut tampered = original.to_vec();
    tampered[100] ^= 0x01;
    s3_client
        .put(&pack_key, PutPayload::from(pack))
        .await
        .unwrap();
    let err = evidence.get(digest).await.unwrap_err();
    assert!(
        matches!(&err, EvidenceStoreError::Corrupt { actual, .. } if *actual == protocol::sha256_hex(&tampered)),
        "{err}"
    );
    let (st, body) = get_evidence(&server, digest).await;
    assert_eq!(st, 500, "{}", String::from_utf8_lossy(&body));
    assert!(
        !body.windows(tampered.len()).any(|w| w == &tampered[..]),
        "the tampered bytes must not be served"
    );
    // The other files are untouched and still served.
    let (st, _) = get_evidence(&server, &stored[1].0).await;
    assert_eq!(st, 200);
    // A verifying reindex leaves the changed still out and names it.
    sqlx::query("DELETE FROM evidence_index")
        .execute(db.pool())
        .await
        .unwrap();
    let report = evidence.reindex(true).await.unwrap();
    assert_eq!((report.verified, report.added), (2, 2), "{report:?}");
    assert!(
        report.problems.len() == 1 && report.problems[0].contains(digest.as_str()),
        "{report:?}"
    );
    assert_eq!(&evidence.get(&stored[1].0).await.unwrap()[..], stored[1].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_key_stops_the_start_and_refused_writes_acknowledge_nothing() {
    let mut s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();

    // At start: a wrong secret, an unknown key id, a missing bucket, an
    // endpoint where nothing listens: each stops the start, saying which.
    for (key_id, secret) in [
        (ACCESS_KEY, "not-the-secret-0123456789"),
        ("GKnobody0123456789", SECRET_KEY),
    ] {
        let cfg = config(dir.path(), &s3, BUCKET, key_id, secret);
        let err = start_error(app::start(&cfg).await);
        assert!(
            err.contains("refused access key")
                && err.contains(key_id)
                && err.contains("storage.s3.access_key_id"),
            "{err}"
        );
        assert!(!err.contains(secret), "the secret is never shown: {err}");
    }
    let cfg = config(dir.path(), &s3, "no-such-bucket", ACCESS_KEY, SECRET_KEY);
    let err = start_error(app::start(&cfg).await);
    assert!(
        err.contains("bucket `no-such-bucket` not found") && err.contains("storage.s3.bucket"),
        "{err}"
    );
    let mut cfg = config(dir.path(), &s3, BUCKET, ACCESS_KEY, SECRET_KEY);
    if let Some(s) = cfg.storage.s3.as_mut() {
        s.endpoint = format!("http://127.0.0.1:{}", free_port());
        s.retries = 0;
    }
    let err = start_error(app::start(&cfg).await);
    assert!(err.contains("storage.s3.endpoint"), "{err}");

    // The real binary, configured through the environment, says the same
    // and exits; the secret appears nowhere in what it prints.
    let wrong = "wrong-secret-from-env-0123456789";
    let (code, out) = run_server_binary(dir.path(), &s3, wrong);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("refused access key"), "{out}");
    assert!(!out.contains(wrong), "{out}");

    // Running, then the key is withdrawn (the bucket now accepts only
    // another): nothing is acknowledged, over HTTP or MQTT, and nothing is
    // lost: the event is not recorded as stored, so the device resends.
    let cfg = config(dir.path(), &s3, BUCKET, ACCESS_KEY, SECRET_KEY);
    let server = app::start(&cfg).await.unwrap();
    let (k, mqtt_secret) = enrol(&server, "edge-s3").await;
    let mut edge = Edge::connect(cfg.mqtt.listen.port(), SITE, "edge-s3", &mqtt_secret).await;
    s3.accept_only_key("GKsomeoneelse0123", "another-secret-0123456789abcdef");
    let files = Files::new(300_000);
    let ev = event("edge-s3", SITE, &files);
    let b = bundle(&ev, &k, &files);
    let (st, body) = post_bundle(&server, b.clone()).await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    edge.publish("events", b.clone()).await;
    edge.no_ack_for(Duration::from_secs(3)).await;
    let db = &server.ingestor.context().db;
    let id = ev.event_id.to_string();
    assert!(cases::case(db, &id).await.unwrap().is_none());
    assert!(
        quarantine::list(db, 10).await.unwrap().is_empty(),
        "a store failure is not the device's fault: nothing quarantined"
    );

    // The key is back: the device's resend is stored and acknowledged.
    s3.accept_only_key(ACCESS_KEY, SECRET_KEY);
    edge.publish("events", b.clone()).await;
    assert_eq!(edge.next_ack().await, Ack::stored(ev.event_id));
    let (st, body) = post_bundle(&server, b).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(Ack::from_json(&body).unwrap(), Ack::duplicate(ev.event_id));

    // The same for a clip: chunks refused while the key is withdrawn get
    // no item ack; sent again afterwards, the clip is stored.
    let chunks = split_clip(ev.event_id, "clip.mp4", &files.clip);
    assert_eq!(chunks.len(), 2);
    s3.accept_only_key("GKsomeoneelse0123", "another-secret-0123456789abcdef");
    for c in &chunks {
        edge.publish("evidence", c.encode().unwrap()).await;
    }
    edge.no_ack_for(Duration::from_secs(3)).await;
    s3.accept_only_key(ACCESS_KEY, SECRET_KEY);
    for c in &chunks {
        edge.publish("evidence", c.encode().unwrap()).await;
    }
    assert_eq!(
        edge.next_ack().await,
        Ack::stored(ev.event_id).for_item("clip.mp4")
    );
    let digest = protocol::sha256_hex(&files.clip);
    let (st, body) = get_evidence(&server, &digest).await;
    assert_eq!((st, &body[..]), (200, &files.clip[..]));
    let case = cases::case(db, &id).await.unwrap().unwrap();
    assert_eq!((case.evidence_stored, case.evidence_total), (3, 3));
}

/// `ingest-server serve` configured for `s3` by environment variables with
/// `secret`: its exit code (None: still running after 60 s, then killed)
/// and everything it printed.
fn run_server_binary(dir: &Path, s3: &S3Server, secret: &str) -> (Option<i32>, String) {
    let data = dir.join("bin-data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .arg("serve")
        .env_remove("INGEST_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("INGEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE")
        .env("INGEST_DATA_DIR", &data)
        .env("INGEST_HTTP_LISTEN", "127.0.0.1:0")
        .env("INGEST_MQTT_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("INGEST_STORAGE_BACKEND", "s3")
        .env("INGEST_STORAGE_S3_ENDPOINT", s3.endpoint())
        .env("INGEST_STORAGE_S3_BUCKET", BUCKET)
        // Garage refuses a request signed for another region (s3s-fs
        // ignores it), so the variable an operator would set is set.
        .env("INGEST_STORAGE_S3_REGION", "garage")
        .env("INGEST_STORAGE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("INGEST_STORAGE_S3_SECRET_ACCESS_KEY", secret)
        .env("INGEST_STORAGE_S3_RETRIES", "0")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained while it runs: a debug log larger than a pipe's buffer would
    // otherwise block the server on its next write, and it never exits.
    fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.wait();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout.join().unwrap()),
        String::from_utf8_lossy(&stderr.join().unwrap())
    );
    (code, text)
}

#[test]
fn bad_storage_settings_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t-0123456789\n").unwrap();
    let s3 = |body: &str| {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\naccess_key_id = \"GK1\"\n\
             secret_access_key_file = \"{}\"\n{body}",
            secret.display()
        )
    };
    let ok = "endpoint = \"https://s3.ioc.example.vn\"\nbucket = \"evidence\"\n";
    let cases = [
        (
            s3("endpoint = \"https://s3.ioc.example.vn\"\n"),
            "storage.s3.bucket",
        ),
        (s3("bucket = \"evidence\"\n"), "storage.s3.endpoint"),
        (
            s3("endpoint = \"not a url\"\nbucket = \"evidence\"\n"),
            "storage.s3.endpoint",
        ),
        (
            s3("endpoint = \"http://s3.ioc.example.vn:3900\"\nbucket = \"evidence\"\n"),
            "storage.s3.endpoint",
        ),
        (
            s3("endpoint = \"https://s3.ioc.example.vn\"\nbucket = \"Evidence!\"\n"),
            "storage.s3.bucket",
        ),
        (
            format!("[storage]\nbackend = \"s3\"\n[storage.s3]\naccess_key_id = \"GK1\"\n{ok}"),
            "storage.s3.secret_access_key_file",
        ),
        (
            s3(&format!("{ok}secret_access_key = \"inline\"\n")),
            "secret_access_key",
        ),
        ("[storage]\nbackend = \"s3\"\n".to_string(), "storage.s3"),
        ("[storage]\nbackend = \"gcs\"\n".to_string(), "backend"),
    ];
    for (text, field) in &cases {
        let err = Config::parse(text, "bad.toml")
            .and_then(|c| c.validate())
            .expect_err(text)
            .to_string();
        assert!(err.contains(field), "{field}: {err}\n{text}");
    }
    // A good section passes, and the allow_http opt-in lifts the loopback
    // rule.
    Config::parse(&s3(ok), "good.toml")
        .unwrap()
        .validate()
        .unwrap();
    let opt_in =
        s3("endpoint = \"http://s3.ioc.lan:3900\"\nbucket = \"evidence\"\nallow_http = true\n");
    Config::parse(&opt_in, "good.toml")
        .unwrap()
        .validate()
        .unwrap();

    // The real binary refuses a bad file at start, naming file and field.
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, &cases[0].0).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .arg("--config")
        .arg(&file)
        .args(["device", "list"])
        .env_remove("INGEST_CONFIG")
        .env("INGEST_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("storage.s3.bucket"), "{stderr}");
}
