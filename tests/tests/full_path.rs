//! The whole path of a violation, from a camera to a paid fine, through
//! public interfaces only: the real binaries as child processes, HTTP, the
//! console's and the citizen app's HTML forms, and the stand-ins for the
//! outside world (the VNPay sandbox, the OpenID Connect test provider, a
//! partner app receiving signed webhooks).
//!
//! A rendered intersection is served as a looping live RTSP stream by
//! `camera-sim`; `edge-agent run` watches it (motion detector, no plate
//! reader), catches the red-light runner, signs the event and delivers it
//! over MQTT; `ingest-server` verifies, stores and prices it. An operator
//! signs in to the console, claims the case, reads the plate off the still
//! and corrects it (with a reason) to a plate imported into the SQL
//! registry with `ingest-server registry import`, and accepts; the owner is
//! resolved. A police officer (another account) confirms it; the notice
//! goes out as a webhook whose HMAC signature and content (plate, fine,
//! owner's national ID, link) the partner checks. The owner signs in to the
//! citizen app through the identity provider, opens the case and pays
//! through the sandbox (its pay page, its IPN to the server, its return to
//! our page); the case is paid in the citizen app and in the console, and
//! the audit log holds every step with its chain intact. The state is
//! asserted after every action.
//!
//! Run twice, with the same body:
//! - on the **embedded defaults**: one server, its embedded MQTT broker
//!   (rumqttd), SQLite and the local evidence directory;
//! - **scaled out**: a real Mosquitto and a real PostgreSQL started by the
//!   test, and two `ingest-server` replicas sharing one `$share/ingest/...`
//!   subscription, one database and one evidence directory. Review happens
//!   on one replica, the citizen (and the notice link) on the other, and
//!   the payment gateway's IPN goes to the first: they share state. A second
//!   edge device (enrolled through the other replica) adds a burst of ten
//!   red-light runners from a recording; every event of both devices is
//!   stored exactly once (the case count, each case by id, and the
//!   replicas' stored counters sum to the number of events); how the
//!   replicas split the stream is printed, not asserted.
//!
//! Needs `cargo build --workspace` first, Node.js with `make setup-node`,
//! GStreamer (as the edge does), and for the scaled-out run Mosquitto and
//! PostgreSQL (`scripts/setup-system.sh`); a missing one fails the test
//! saying what to install.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e_tests::mosquitto::Mosquitto;
use e2e_tests::oidc::{self, Provider};
use e2e_tests::postgres::Postgres;
use e2e_tests::web::{self, Browser, Resp};
use e2e_tests::webhook::{self, Receiver};
use e2e_tests::{
    Proc, apply_enrolment, binary, free_port, http_request, start_logged, tail, wait_for,
};
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token-0123456789";
const STAFF_PASSWORD: &str = "e2e staff password 0123";
const CITIZEN_PASSWORD: &str = "e2e citizen password 0123";
const HOOK_SECRET: &str = "e2e-partner-secret-0123456789";
const IDP_SECRET: &str = "e2e-citizen-client-secret-0123456789";
const TMN: &str = "TVE2E001";
const PAY_SECRET: &str = "E2ESANDBOXSECRET0123456789ABCDEF";
const SITE: &str = "e2e-site";
/// The plate drawn on the scene's red-light runner, as the operator reads
/// it off the still.
const PLATE_DISPLAY: &str = "29B-678.90";
const PLATE: &str = "29B67890";
/// Its registered owner in the registry the test imports (fictitious).
const OWNER_ID: &str = "e2e-o1";
const OWNER_NAME: &str = "Đặng Văn Kiểm Thử (DỮ LIỆU THỬ)";
const OWNER_NID: &str = "000099777001";
/// Red-light runners in the burst recording of the scaled-out run.
const BURST: usize = 10;

/// The variants run one after the other: each runs real-time video, and
/// CI has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn embedded_defaults_camera_to_paid_fine() {
    full_path(false);
}

#[test]
fn scaled_out_mosquitto_postgres_two_replicas_camera_to_paid_fine() {
    full_path(true);
}

/// Prints the tail of every log when the test fails (before the temporary
/// directory goes).
struct Logs(Vec<(String, PathBuf)>);

impl Logs {
    fn add(&mut self, name: &str, path: &Path) -> PathBuf {
        self.0.push((name.to_string(), path.to_path_buf()));
        path.to_path_buf()
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, path) in &self.0 {
                eprintln!("----- {name} ({}):\n{}", path.display(), tail(path, 40));
            }
        }
    }
}

/// A running `ingest-server`.
struct Server {
    name: &'static str,
    base: String,
    addr: SocketAddr,
    _proc: Proc,
}

/// A running `edge-agent run` (killed when dropped; [`Edge::stop`] asks
/// it to end first).
struct Edge {
    config: PathBuf,
    proc: Proc,
}

impl Edge {
    fn outbox(&self) -> Value {
        let out = Command::new(binary("edge-agent"))
            .args(["outbox", "--config"])
            .arg(&self.config)
            .output()
            .expect("edge-agent outbox");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// Events the server acknowledged whole (the event, then its clip),
    /// oldest first, among the outbox's 20 most recent.
    fn acked(&self) -> Vec<String> {
        let o = self.outbox();
        let mut ids: Vec<String> = o["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["state"] == "acked" && r["done"] == true)
            .filter_map(|r| r["event_id"].as_str().map(String::from))
            .collect();
        ids.reverse();
        ids
    }

    /// SIGTERM, then up to `patience` for the process to end; how long it
    /// took (`None`: it had not ended; it is killed when dropped).
    fn stop(&mut self, patience: Duration) -> Option<Duration> {
        if let Ok(Some(_)) = self.proc.child.try_wait() {
            return Some(Duration::ZERO);
        }
        let t = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.proc.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        while t.elapsed() < patience {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

fn elapsed(t0: Instant) -> String {
    format!("{:.1} s", t0.elapsed().as_secs_f64())
}

fn full_path(scale_out: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let variant = if scale_out { "scaled out" } else { "embedded" };
    let t0 = Instant::now();
    oidc::require_node();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut logs = Logs(Vec::new());

    // --- the recordings: the intersection the camera serves (two cars
    // arrive on red, the left one runs it, the right one stops; 14 s,
    // looping, so a runner every 14 s) and, scaled out, the burst.
    let mut scene = edge_agent::scene::runner_and_stopper(
        time::OffsetDateTime::now_utc() - time::Duration::seconds(30),
    );
    // Red from frame 50 (not 90), after a 3 s yellow (the lamp filter does
    // not believe a red after a shorter one), the cars on it from frame 30
    // (not 110): the first runner is on camera 8 s after the stream starts.
    scene.signal = edge_agent::scene::SignalCycle {
        green: 20,
        yellow: 30,
        red: 90,
    };
    for v in &mut scene.vehicles {
        v.enter_frame = 30;
    }
    const LOOP: u64 = 140;
    assert_eq!(
        scene.red_light_runners(LOOP),
        vec![0],
        "one runner per loop"
    );
    assert_eq!(scene.vehicles[0].plate, PLATE);
    let video = d.join("camera.mp4");
    {
        let frames: Vec<_> = (0..LOOP).map(|n| scene.render(n).unwrap()).collect();
        edge_agent::evidence::encode_clip(&frames, &[], &video, 4000, Duration::from_secs(120))
            .unwrap();
    }
    std::fs::write(d.join("site.toml"), scene.site_toml()).unwrap();
    if scale_out {
        burst_recording(d);
    }
    eprintln!("[{variant}] recordings rendered: {}", elapsed(t0));

    // --- the outside parts
    let pg = scale_out.then(Postgres::start);
    let database_url = pg.as_ref().map(|pg| pg.create_database("tv"));
    let mosquitto = scale_out.then(Mosquitto::start);
    let ports: Vec<u16> = (0..if scale_out { 2 } else { 1 })
        .map(|_| free_port())
        .collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    // Review on the first replica; the citizen (and the notice's link) on
    // the last; the gateway's IPN to the first.
    let review_base = bases[0].clone();
    let citizen_base = bases[bases.len() - 1].clone();

    let hooks = Receiver::start();
    let idp = Provider::start(
        &json!({
            "port": free_port(),
            "clients": [{
                "clientId": "tv-citizen", "clientSecret": IDP_SECRET,
                "redirectUris": bases.iter().map(|b| format!("{b}/app/sso/callback")).collect::<Vec<_>>(),
            }],
            "accountsOnly": true,
            "accounts": {"chuxe": {"name": OWNER_NAME, "national_id": OWNER_NID, "password": CITIZEN_PASSWORD}},
        }),
        logs.add("identity provider", &d.join("idp.log")),
    );
    let mut cmd = Command::new(binary("vnpay-sandbox"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--tmn-code",
        TMN,
        "--hash-secret",
        PAY_SECRET,
    ])
    .arg("--ipn-url")
    .arg(format!("{review_base}/api/v1/payments/vnpay/ipn"));
    let (_sandbox, line) = start_logged(
        cmd,
        "vnpay-sandbox listening on http://",
        &logs.add("vnpay-sandbox", &d.join("vnpay.log")),
        Duration::from_secs(30),
    );
    let sandbox = format!("http://{}", line.rsplit("http://").next().unwrap().trim());

    // --- the server's state: accounts and the registry, through its CLI
    let mut env: Vec<(String, String)> = vec![
        (
            "INGEST_DATA_DIR".into(),
            d.join("server").display().to_string(),
        ),
        ("INGEST_ADMIN_TOKEN".into(), TOKEN.into()),
        ("RUST_LOG".into(), "info,rumqttd=warn".into()),
    ];
    if let Some(url) = &database_url {
        env.push(("DATABASE_URL".into(), url.clone()));
    }
    for (user, name, role) in [
        ("op.e2e", "Điều hành viên E2E", "operator"),
        ("csgt.e2e", "CSGT E2E", "police"),
        ("kt.e2e", "Kiểm toán E2E", "auditor"),
    ] {
        cli(
            &env,
            &[
                "user",
                "add",
                "--username",
                user,
                "--display-name",
                name,
                "--role",
                role,
            ],
            Some(STAFF_PASSWORD),
        );
    }
    std::fs::write(
        d.join("vehicles.csv"),
        format!(
            "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
             {PLATE_DISPLAY},white,car,Xe thử (dữ liệu thử),blue,active,{OWNER_ID}\n\
             30A-000.01,white,car,Xe thử (dữ liệu thử),red,active,e2e-o2\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("owners.csv"),
        format!(
            "owner_id,full_name,national_id,address,phone,email,vneid\n\
             {OWNER_ID},{OWNER_NAME},{OWNER_NID},\"Số 9 Phố Thử Nghiệm, Hà Nội (dữ liệu thử)\",,,\n\
             e2e-o2,Người Khác (DỮ LIỆU THỬ),000099777002,\"Số 10 Phố Thử Nghiệm, Hà Nội (dữ liệu thử)\",,,\n"
        ),
    )
    .unwrap();
    let out = cli(
        &env,
        &[
            "registry",
            "import",
            d.join("vehicles.csv").to_str().unwrap(),
            d.join("owners.csv").to_str().unwrap(),
        ],
        None,
    );
    assert!(out.contains("imported 2 vehicles and 2 owners"), "{out}");

    // --- the server: one, or two replicas
    let mqtt_port = free_port();
    let mut servers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let name = ["replica-a", "replica-b"][i];
        let base = &bases[i];
        let cfg = d.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[notices]\npoll_ms = 200\npublic_base_url = \"{citizen_base}\"\n\
                 [[notices.webhooks]]\nname = \"city-app\"\nurl = \"{hook}\"\nsecret = \"{HOOK_SECRET}\"\n\n\
                 [payments.vnpay]\ntmn_code = \"{TMN}\"\nhash_secret = \"{PAY_SECRET}\"\n\
                 pay_url = \"{sandbox}/paymentv2/vpcpay.html\"\n\
                 api_url = \"{sandbox}/merchant_webapi/api/transaction\"\n\
                 return_url = \"{base}/pay/vnpay/return\"\n\n\
                 [citizen_sso]\nissuer = \"{issuer}\"\nclient_id = \"tv-citizen\"\n\
                 client_secret = \"{IDP_SECRET}\"\nredirect_url = \"{base}/app/sso/callback\"\n\
                 extra_scopes = [\"national_id\"]\n",
                hook = hooks.url("/hook"),
                issuer = idp.issuer,
            ),
        )
        .unwrap();
        let mut cmd = Command::new(binary("ingest-server"));
        cmd.arg("--config")
            .arg(&cfg)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("INGEST_HTTP_LISTEN", format!("127.0.0.1:{port}"));
        match &mosquitto {
            Some(m) => cmd
                .env("INGEST_MQTT_URL", m.url())
                .env("INGEST_MQTT_CLIENT_ID", format!("ingest-{name}")),
            None => cmd.env("INGEST_MQTT_LISTEN", format!("127.0.0.1:{mqtt_port}")),
        };
        let (proc, line) = start_logged(
            cmd,
            "listening on http://",
            &logs.add(name, &d.join(format!("{name}.log"))),
            Duration::from_secs(60),
        );
        let addr: SocketAddr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(&format!("http://{addr}"), base);
        servers.push(Server {
            name,
            base: base.clone(),
            addr,
            _proc: proc,
        });
    }
    let broker = match &mosquitto {
        Some(m) => m.url(),
        None => format!("mqtt://127.0.0.1:{mqtt_port}"),
    };
    eprintln!(
        "[{variant}] {} server(s) up (broker {broker}, database {}): {}",
        servers.len(),
        if scale_out { "PostgreSQL" } else { "SQLite" },
        elapsed(t0)
    );

    // --- the camera, and the edge that watches it
    let (camera, line) = {
        let mut cmd = Command::new(binary("camera-sim"));
        cmd.arg("--file")
            .arg(&video)
            .args(["--listen", "127.0.0.1:0", "--mount", "/cam1"]);
        start_logged(
            cmd,
            "camera-sim serving rtsp://",
            &logs.add("camera-sim", &d.join("camera.log")),
            Duration::from_secs(30),
        )
    };
    let rtsp = line.rsplit("serving ").next().unwrap().trim().to_string();
    let mut camera = Some(camera);
    let mut edge = start_edge(
        d,
        &mut logs,
        "e2e-edge-01",
        &broker,
        &rtsp,
        &d.join("site.toml"),
        &servers[0],
    );
    // Scaled out, a second device, enrolled through the other replica,
    // with the burst recording as its camera.
    let mut burst = scale_out.then(|| {
        start_edge(
            d,
            &mut logs,
            "e2e-edge-02",
            &broker,
            &d.join("burst.mp4").display().to_string(),
            &d.join("burst-site.toml"),
            &servers[servers.len() - 1],
        )
    });

    // --- the first red-light runner on camera becomes a case
    let mut event_id = None;
    let delivered = wait_for(120, || {
        event_id = edge.acked().first().cloned();
        event_id.is_some()
    });
    assert!(
        delivered,
        "the edge delivered the runner's event: {}",
        edge.outbox()
    );
    let id = event_id.unwrap();
    eprintln!("[{variant}] case {id} delivered: {}", elapsed(t0));
    for s in &servers {
        let case = api_case(s, &id);
        assert_eq!(case["device_id"], "e2e-edge-01", "{case}");
        assert_eq!(case["violation_type"], "red_light", "{case}");
        assert_eq!(case["fine_status"], "priced", "{case}");
        assert_eq!(
            case["evidence_stored"], case["evidence_total"],
            "stills and clip stored, seen from {}: {case}",
            s.name
        );
        assert!(case["plate_text"].is_null(), "no plate reader ran: {case}");
        assert!(case["owner_id"].is_null(), "no plate, no owner yet: {case}");
    }
    let case = api_case(&servers[0], &id);
    let (fine_min, fine_max) = (
        case["fine_min_vnd"].as_i64().unwrap(),
        case["fine_max_vnd"].as_i64().unwrap(),
    );
    assert!(0 < fine_min && fine_min <= fine_max, "{case}");

    // --- the operator: claims, corrects the plate (with a reason), accepts
    let case_url = format!("{review_base}/console/cases/{id}");
    let mut op = Browser::new();
    sign_in_console(&mut op, &review_base, "op.e2e");
    let queue = op.get(&format!("{review_base}/console/queue"));
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains(&id), "the case is in the review queue");
    let page = op.get(&case_url);
    assert_eq!(state(&page), "Mới", "new");
    let r = submit(&mut op, &review_base, &page, "claim-form", &[]);
    assert_eq!(r.status, 303, "claim: {}", r.body);
    let page = op.get(&case_url);
    assert_eq!(state(&page), "Đang xem xét", "claimed: in review");
    assert!(
        !page.body.contains("id=\"owner\""),
        "operators never see the owner"
    );
    let r = submit(
        &mut op,
        &review_base,
        &page,
        "plate-form",
        &[
            ("plate", PLATE_DISPLAY),
            ("reason", "không có kết quả đọc biển; đọc từ ảnh toàn cảnh"),
        ],
    );
    assert_eq!(r.status, 303, "plate correction: {}", r.body);
    let page = op.get(&case_url);
    assert_eq!(state(&page), "Đang xem xét", "a correction keeps the state");
    assert_eq!(
        web::text_of(&page.body, "plate").as_deref(),
        Some(PLATE),
        "the corrected plate shows"
    );
    let case = api_case(&servers[servers.len() - 1], &id);
    assert_eq!(
        (case["owner_status"].as_str(), case["owner_id"].as_str()),
        (Some("resolved"), Some(OWNER_ID)),
        "the owner of the corrected plate is resolved in the imported registry: {case}"
    );
    assert!(
        case["plate_text"].is_null(),
        "the machine read is kept as it was: {case}"
    );
    let r = submit(&mut op, &review_base, &page, "accept-form", &[]);
    assert_eq!(r.status, 303, "accept: {}", r.body);
    let page = op.get(&case_url);
    assert_eq!(
        state(&page),
        "Chờ CSGT xác nhận",
        "accepted: waits for police"
    );
    assert!(
        !page.body.contains("id=\"confirm-form\""),
        "an operator cannot confirm"
    );
    eprintln!("[{variant}] operator accepted: {}", elapsed(t0));

    // --- the police officer (another account): confirms, the owner beside
    // the evidence
    let mut csgt = Browser::new();
    sign_in_console(&mut csgt, &review_base, "csgt.e2e");
    let list = csgt.get(&format!("{review_base}/console/confirm"));
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(&id) && list.body.contains(OWNER_NAME),
        "the case waits for confirmation with its owner"
    );
    let case_page = csgt.get(&case_url);
    if case_page.body.contains("id=\"clock-ack\"") {
        // The edge's clock was not known to be synchronised (no chrony on
        // this machine): the batch list does not confirm such a case; the
        // officer does, on its page, ticking that the clock state was seen.
        let r = submit(
            &mut csgt,
            &review_base,
            &case_page,
            "confirm-form",
            &[("clock_ack", "1")],
        );
        assert_eq!(
            r.status, 303,
            "confirm with the clock acknowledged: {}",
            r.body
        );
    } else {
        // The row carries the case's revision as shown (a case changed
        // since the page was rendered is not confirmed); a browser posts
        // it back.
        let rev_key = format!("rev.{id}");
        let shown = {
            let key = format!("name=\"{rev_key}\" value=\"");
            let at = list.body.find(&key).expect("the row carries its revision") + key.len();
            list.body[at..at + list.body[at..].find('"').unwrap()].to_string()
        };
        let r = csgt.post_form(
            &format!("{review_base}/console/confirm"),
            &[
                ("csrf", &web::csrf(&list.body)),
                ("case", &id),
                (&rev_key, &shown),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            web::text_of(&r.body, "flash").is_some_and(|f| f.contains("Đã xác nhận 1")),
            "{}",
            r.body
        );
    }
    let page = csgt.get(&case_url);
    assert!(
        ["CSGT đã xác nhận", "Đã gửi thông báo"].contains(&state(&page).as_str()),
        "confirmed: {}",
        state(&page)
    );
    assert!(
        page.body.contains("Điều hành viên E2E") && page.body.contains("CSGT E2E"),
        "who accepted and who confirmed"
    );
    let fine_text = web::text_of(&page.body, "fine").unwrap();

    // --- the notice: issued, delivered once to the partner, signed
    let noticed = wait_for(30, || {
        !hooks.received().is_empty() && state(&csgt.get(&case_url)) == "Đã gửi thông báo"
    });
    assert!(
        noticed,
        "the notice was delivered and the case is noticed: {} hooks, state {}",
        hooks.received().len(),
        state(&csgt.get(&case_url))
    );
    eprintln!("[{variant}] notice delivered: {}", elapsed(t0));
    let hook = hooks.received().remove(0);
    assert_eq!(
        (hook.method.as_str(), hook.path.as_str()),
        ("POST", "/hook")
    );
    let ts = hook.header("x-tv-timestamp").expect("X-TV-Timestamp");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (ts.parse::<i64>().unwrap() - now).abs() < 300,
        "signed just now: {ts}"
    );
    assert_eq!(
        hook.header("x-tv-signature"),
        Some(webhook::notice_signature(HOOK_SECRET.as_bytes(), ts, &hook.body).as_str()),
        "the partner checks the signature over the exact body"
    );
    assert!(hook.header("x-tv-delivery").is_some_and(|k| !k.is_empty()));
    let notice: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(notice["type"], "fine_notice", "{notice}");
    assert_eq!(notice["event_id"], id.as_str(), "{notice}");
    assert_eq!(notice["recipient"]["national_id"], OWNER_NID, "{notice}");
    assert_eq!(notice["vehicle"]["plate"], PLATE, "{notice}");
    assert_eq!(
        notice["vehicle"]["plate_display"], PLATE_DISPLAY,
        "{notice}"
    );
    assert_eq!(notice["violation"]["code"], "red_light", "{notice}");
    let amount = notice["fine"]["amount_vnd"].as_i64().expect("an amount");
    assert!(
        fine_min <= amount && amount <= fine_max,
        "the amount fixed at confirmation lies in the fine's range: {notice}"
    );
    let amount_text = vnd(amount);
    assert!(
        fine_text.contains(&vnd(fine_min)) && fine_text.contains(&vnd(fine_max)),
        "the console shows the fine's range: {fine_text}"
    );
    assert_eq!(
        notice["case_url"],
        format!("{citizen_base}/app/cases/{id}"),
        "{notice}"
    );
    let title = notice["text"]["title"].as_str().unwrap_or_default();
    let body = notice["text"]["body"].as_str().unwrap_or_default();
    assert!(title.contains(PLATE_DISPLAY), "{title}");
    assert!(
        body.contains(PLATE_DISPLAY) && body.contains(&amount_text.replace(" ₫", "")),
        "the notice names the plate and the fine: {body}"
    );

    // --- the citizen: signs in through the provider, opens the case, pays
    let mut citizen = Browser::new();
    let callback = idp.through(
        &mut citizen,
        &format!("{citizen_base}/app/sso/login"),
        "chuxe",
        CITIZEN_PASSWORD,
    );
    assert!(
        callback.starts_with(&format!("{citizen_base}/app/sso/callback?")),
        "{callback}"
    );
    let r = citizen.get(&callback);
    assert_eq!(r.status, 303, "{}\n{}", r.body, idp.log());
    assert_eq!(r.header("location"), Some("/app/"));
    assert!(citizen.cookie(&citizen_base, "tv_citizen").is_some());
    let list = citizen.get(&format!("{citizen_base}/app/"));
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(&format!("data-id=\"{id}\"")),
        "the owner's case is listed"
    );
    let case_app = format!("{citizen_base}/app/cases/{id}");
    let page = citizen.get(&case_app);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(web::text_of(&page.body, "plate").as_deref(), Some(PLATE));
    assert!(
        page.body.contains("class=\"state notice_issued\""),
        "noticed, in the app"
    );
    assert_eq!(
        web::text_of(&page.body, "amount").as_deref(),
        Some(amount_text.as_str())
    );
    let r = submit(&mut citizen, &citizen_base, &page, "pay", &[]);
    assert_eq!(r.status, 303, "pay: {}", r.body);
    let pay_url = r.location();
    assert!(
        pay_url.starts_with(&format!("{sandbox}/paymentv2/vpcpay.html?")),
        "{pay_url}"
    );
    let params = web::query_pairs(pay_url.split_once('?').unwrap().1);
    let param = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(param("vnp_Amount"), (amount * 100).to_string(), "VND × 100");
    assert_eq!(param("vnp_TmnCode"), TMN);
    assert_eq!(
        param("vnp_ReturnUrl"),
        format!("{citizen_base}/pay/vnpay/return")
    );
    let gateway = citizen.get(&pay_url);
    assert_eq!(gateway.status, 200, "{}", gateway.body);
    assert!(
        gateway.body.contains("VNPAY SANDBOX"),
        "the stand-in says so"
    );
    let r = submit(&mut citizen, &sandbox, &gateway, "pay", &[]);
    assert_eq!(r.status, 303, "the gateway's pay button: {}", r.body);
    let back = r.location();
    assert!(
        back.starts_with(&format!("{citizen_base}/pay/vnpay/return?")),
        "{back}"
    );
    let result = citizen.get(&back);
    assert_eq!(result.status, 200, "{}", result.body);
    assert!(
        result.body.contains("data-state=\"ok\""),
        "the return page says paid: {}",
        result.body
    );
    let page = citizen.get(&case_app);
    assert!(
        page.body.contains("class=\"state paid\""),
        "paid, in the app"
    );
    let receipt = web::text_of(&page.body, "receipt").expect("a receipt");
    assert!(
        receipt.contains("Biên lai") && receipt.contains(&amount_text.replace(" ₫", "")),
        "{receipt}"
    );
    eprintln!("[{variant}] citizen paid: {}", elapsed(t0));

    // --- paid, in the console (on the review replica) and at the gateway
    let page = csgt.get(&case_url);
    assert_eq!(state(&page), "Đã nộp phạt", "paid, in the console");
    let (status, log) = get_json(&format!("{sandbox}/sandbox/ipn-log"));
    assert_eq!(status, 200);
    let ipns = log.as_array().unwrap();
    assert_eq!(ipns.len(), 1, "one IPN: {log}");
    assert_eq!(ipns[0]["rsp_code"], "00", "the server took it: {log}");
    let hooks_now = hooks.received();
    assert_eq!(hooks_now.len(), 1, "one notice, delivered once");

    // --- the audit trail: every step, by whom, the chain intact
    let mut kt = Browser::new();
    sign_in_console(&mut kt, &review_base, "kt.e2e");
    let audit = kt.get(&format!("{review_base}/console/audit"));
    assert_eq!(audit.status, 200);
    let chain = web::text_of(&audit.body, "chain").unwrap_or_default();
    assert!(
        audit.body.contains("class=\"flash\" id=\"chain\""),
        "the chain verifies: {chain}"
    );
    let trail = audit_trail(&audit.body, &format!("case:{id}"));
    let steps: Vec<(&str, &str)> = trail
        .iter()
        .map(|(_, role, action)| (role.as_str(), action.as_str()))
        .filter(|(_, a)| a.starts_with("case."))
        .collect();
    assert_eq!(
        steps,
        [
            ("operator", "case.claim"),
            ("operator", "case.correct_plate"),
            // The corrected plate's owner, found by the registry (what
            // changed, not who the owner is).
            ("system", "case.owner_lookup"),
            ("operator", "case.accept"),
            ("police", "case.confirm"),
            ("system", "case.issue_notice"),
            ("system", "case.pay"),
        ],
        "the case's audit trail: {trail:?}"
    );
    let actor = |a: &str| trail.iter().find(|t| t.2 == a).unwrap().0.clone();
    assert_ne!(
        actor("case.accept"),
        actor("case.confirm"),
        "two people decided"
    );
    let out = cli(&env, &["audit", "verify"], None);
    assert!(out.contains("audit log intact"), "{out}");
    eprintln!("[{variant}] audit trail checked: {}", elapsed(t0));

    // --- every event stored exactly once
    if let Some(b) = &burst {
        let done = wait_for(90, || b.acked().len() >= BURST && b.outbox()["depth"] == 0);
        assert!(
            done,
            "the burst device delivered its {BURST} events: {}",
            b.outbox()
        );
    }
    // The camera goes away, so violations stop coming (one under way may
    // still arrive). Then one consistent view, read edges first, console
    // and counters after: every edge's outbox empty, the console counting
    // one case per event the edges had acknowledged, and the servers'
    // stored counters adding up to the same, seen twice running. (An event
    // arriving between the reads makes the view inconsistent and it is
    // read again; an event stored twice makes it never consistent.)
    drop(camera.take());
    let servers_ref = &servers;
    let snapshot = |csgt: &mut Browser| {
        let mut drained = edge.outbox()["depth"] == 0;
        let mut ids: Vec<String> = edge.acked();
        let from_camera = ids.len();
        if let Some(b) = &burst {
            drained &= b.outbox()["depth"] == 0;
            ids.extend(b.acked());
        }
        let count = console_case_count(csgt, &review_base);
        let per_server: Vec<(&str, u64, u64)> = servers_ref
            .iter()
            .map(|s| {
                let (stored, duplicate) = metrics(s);
                (s.name, stored, duplicate)
            })
            .collect();
        (drained, ids, count, per_server, from_camera)
    };
    let mut last = None;
    let settled = wait_for(90, || {
        let snap = snapshot(&mut csgt);
        let stored: u64 = snap.3.iter().map(|s| s.1).sum();
        let consistent = snap.0 && snap.2 == snap.1.len() && stored as usize == snap.1.len();
        let again = consistent && last.as_ref() == Some(&snap);
        last = consistent.then_some(snap);
        again
    });
    let (_, ids, total, stored, from_camera) = last.unwrap_or_else(|| snapshot(&mut csgt));
    assert!(
        settled,
        "every acknowledged event is one case, stored once: the console counts {total} \
         cases, the edges have {} acknowledged ({ids:?}), the servers stored {stored:?}",
        ids.len()
    );
    eprintln!("[{variant}] settled: {}", elapsed(t0));
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "event ids are unique: {ids:?}");
    assert!(ids.contains(&id));
    let all = csgt.get(&format!("{review_base}/console/cases"));
    for (n, e) in ids.iter().enumerate() {
        assert!(
            all.body.contains(e.as_str()),
            "{e} is listed in the console"
        );
        let case = api_case(&servers[n % servers.len()], e);
        assert_eq!(case["evidence_stored"], case["evidence_total"], "{case}");
        assert_eq!(case["violation_type"], "red_light", "{case}");
    }
    if let Some(b) = &burst {
        let o = b.outbox();
        assert_eq!(
            b.acked().len(),
            BURST,
            "exactly the {BURST} runners of the burst: {o}"
        );
        assert_eq!(o["rejected"], 0, "{o}");
    }
    assert_eq!(edge.outbox()["rejected"], 0, "{}", edge.outbox());
    let (status, quarantine) = http_request(
        servers[0].addr,
        "GET",
        "/api/v1/quarantine",
        Some(TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(quarantine.trim(), "[]", "nothing quarantined: {quarantine}");
    eprintln!(
        "[{variant}] {} events ({} from the camera{}), stored once each; \
         per server (stored, duplicate redeliveries answered): {stored:?}",
        ids.len(),
        from_camera,
        if scale_out {
            format!(", {BURST} from the burst")
        } else {
            String::new()
        },
    );
    // A clean stop is not what this test is about (and an edge whose RTSP
    // camera is gone may take a while to notice SIGTERM): a short wait,
    // then the processes are killed when dropped.
    let patience = Duration::from_secs(2);
    let stopped = (
        edge.stop(patience),
        burst.as_mut().and_then(|b| b.stop(patience)),
    );
    eprintln!(
        "[{variant}] done: {} (edges ended on SIGTERM after {stopped:?})",
        elapsed(t0)
    );
    if std::env::var_os("E2E_KEEP").is_some() {
        eprintln!("[{variant}] kept {}", dir.keep().display());
    }
}

/// The burst recording of the scaled-out run: ten cars running the red in
/// three lanes over four short signal cycles (a 3 s yellow, as the lamp
/// filter expects, and 3.2 s of red), 25 frames a second (25.6 s, starting
/// 30 s ago; analysed as fast as the box can).
fn burst_recording(d: &Path) {
    use edge_agent::scene::{Scene, ScriptedVehicle, SignalCycle};
    let mut vehicles = Vec::new();
    for cycle in 0..4u64 {
        let lanes: &[i32] = if cycle < 3 { &[60, 230, 400] } else { &[230] };
        for (k, &x) in lanes.iter().enumerate() {
            let n = vehicles.len();
            // On camera 65 frames into the cycle: its front reaches the
            // line 0.2 s into the red (a front on the line on yellow may go
            // on), its bottom 1.2 s in.
            vehicles.push(ScriptedVehicle::car(
                x,
                160 * cycle + 65,
                5.0,
                None,
                &format!("30A1110{n}"),
                [[40, 60, 200], [160, 90, 30], [30, 140, 160]][k],
            ));
        }
    }
    let mut scene = Scene::standard(
        vehicles,
        time::OffsetDateTime::now_utc() - time::Duration::seconds(30),
    );
    scene.fps = 25;
    scene.signal = SignalCycle {
        green: 5,
        yellow: 75,
        red: 80,
    };
    let frames_n = 640;
    assert_eq!(
        scene.red_light_runners(frames_n).len(),
        BURST,
        "the burst's ground truth"
    );
    let frames: Vec<_> = (0..frames_n).map(|n| scene.render(n).unwrap()).collect();
    edge_agent::evidence::encode_clip(
        &frames,
        &[],
        &d.join("burst.mp4"),
        4000,
        Duration::from_secs(120),
    )
    .unwrap();
    std::fs::write(
        d.join("burst-site.toml"),
        scene
            .site_toml()
            .replace("camera_id = \"synthetic\"", "camera_id = \"burst\""),
    )
    .unwrap();
}

/// Writes an edge's configuration, enrols its key at `server` through the
/// admin API, and starts `edge-agent run` on `source`.
fn start_edge(
    d: &Path,
    logs: &mut Logs,
    device: &str,
    broker: &str,
    source: &str,
    site: &Path,
    server: &Server,
) -> Edge {
    let config = d.join(format!("{device}.toml"));
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"{device}\"\nsite = \"{SITE}\"\ndata_dir = \"{data}\"\n\n\
             [mqtt]\nurl = \"{broker}\"\nack_timeout_s = 5\nreconnect_max_s = 1.0\n\n\
             [health]\nheartbeat_s = 1\nmetrics_listen = \"\"\n\n[plates]\nrecognizer = \"none\"\n\n\
             [[cameras]]\nsource = \"{source}\"\nsite = \"{site}\"\ndetector = \"motion\"\n\
             [cameras.motion]\nanalysis_width = 640\nmin_area = 1500.0\nhistory = 5000\nlearning_rate = 0.0003\n",
            data = d.join(device).display(),
            site = site.display()
        ),
    )
    .unwrap();
    let out = Command::new(binary("edge-agent"))
        .args(["enroll", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrol: Value = serde_json::from_slice(&out.stdout).unwrap();
    let body = json!({
        "device_id": enrol["device_id"], "site": enrol["site"], "public_key": enrol["public_key"],
    })
    .to_string();
    let (status, answer) = http_request(
        server.addr,
        "POST",
        "/api/v1/devices",
        Some(TOKEN),
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 201, "enrol {device} at {}: {answer}", server.name);
    apply_enrolment(&config, &answer);
    let log = logs.add(device, &d.join(format!("{device}.log")));
    let child = Command::new(binary("edge-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Edge {
        config,
        proc: Proc { child },
    }
}

/// Runs `ingest-server` with `args` (the password on stdin when given);
/// its standard output. Fails the test when it fails.
fn cli(env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(binary("ingest-server"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        writeln!(input, "{s}").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ingest-server {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET /api/v1/cases/{id}` on `server`, as JSON.
fn api_case(server: &Server, id: &str) -> Value {
    let (status, body) = http_request(
        server.addr,
        "GET",
        &format!("/api/v1/cases/{id}"),
        Some(TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "case {id} on {}: {body}", server.name);
    serde_json::from_str(&body).unwrap()
}

fn get_json(url: &str) -> (u16, Value) {
    let r = Browser::new().get(url);
    (r.status, serde_json::from_str(&r.body).unwrap_or_default())
}

/// Signs in to the console with the staff password.
fn sign_in_console(b: &mut Browser, base: &str, user: &str) {
    let r = b.post_form(
        &format!("{base}/console/login"),
        &[("username", user), ("password", STAFF_PASSWORD)],
    );
    assert_eq!(r.status, 303, "{user} signs in: {}", r.body);
}

/// Submits the form `id` of `page` (its hidden fields, with `fields` set).
fn submit(b: &mut Browser, base: &str, page: &Resp, id: &str, fields: &[(&str, &str)]) -> Resp {
    let (action, mut form) = web::form(&page.body, id)
        .unwrap_or_else(|| panic!("no form {id} on {}:\n{}", page.url, page.body));
    for (k, v) in fields {
        form.retain(|(n, _)| n != k);
        form.push((k.to_string(), v.to_string()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post_form(&web::absolute(&format!("{base}/"), &action), &form)
}

/// The state a console case page shows.
fn state(page: &Resp) -> String {
    assert_eq!(page.status, 200, "{}: {}", page.url, page.body);
    web::text_of(&page.body, "state").unwrap_or_else(|| panic!("no state on {}", page.url))
}

/// The number of cases in the console's "all cases" list.
fn console_case_count(b: &mut Browser, base: &str) -> usize {
    let page = b.get(&format!("{base}/console/cases"));
    assert_eq!(page.status, 200);
    let at = page.body.find("<h1>").expect("a heading");
    let h1 = &page.body[at..at + page.body[at..].find("</h1>").unwrap()];
    let open = h1.find('(').expect("a count in the heading");
    let close = open + h1[open..].find(')').unwrap();
    h1[open + 1..close].trim().parse().unwrap()
}

/// The audit log page's rows about `subject`, oldest first: (actor, role,
/// action).
fn audit_trail(page: &str, subject: &str) -> Vec<(String, String, String)> {
    let table = &page[page.find("id=\"audit\"").expect("the audit table")..];
    let mut rows: Vec<(u64, String, String, String)> = Vec::new();
    for row in table.split("<tr>").skip(2) {
        let cells: Vec<String> = row
            .split("<td>")
            .skip(1)
            .map(|c| web::html_unescape(&c[..c.find("</td>").unwrap_or(c.len())]))
            .collect();
        if cells.len() < 5 || cells[4] != subject {
            continue;
        }
        let (actor, role) = cells[2]
            .rsplit_once(" (")
            .map(|(a, r)| (a.to_string(), r.trim_end_matches(')').to_string()))
            .unwrap_or_default();
        rows.push((cells[0].parse().unwrap_or(0), actor, role, cells[3].clone()));
    }
    rows.sort_by_key(|r| r.0);
    rows.into_iter().map(|(_, a, r, x)| (a, r, x)).collect()
}

/// (stored, duplicate) from a server's Prometheus counters.
fn metrics(server: &Server) -> (u64, u64) {
    let text = Browser::new().get(&format!("{}/metrics", server.base)).body;
    let get = |outcome: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("ingest_bundles_total{{outcome=\"{outcome}\"}} "))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("stored"), get("duplicate"))
}

/// An amount as the app and the notice write it: `19.000.000 ₫`.
fn vnd(amount: i64) -> String {
    let digits = amount.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out + " ₫"
}
