//! Server-side faults on the scale-out parts (a real Mosquitto, a real
//! PostgreSQL, `ingest-server` replicas sharing `$share/ingest/...`), with a
//! real `edge-agent deliver` as the device: its outbox is filled with signed
//! events (stills and a clip each, made as the edge's post-processing makes
//! them) and it delivers them as it would after an outage, resending what is
//! not acknowledged. Everything is checked through public interfaces: the
//! edge's outbox (`edge-agent outbox`) and `/metrics`, the server's admin
//! API (cases, evidence by hash, quarantine), `/readyz` and the console's
//! case count.
//!
//! Needs `cargo build --workspace` first, Mosquitto and PostgreSQL
//! (`scripts/setup-system.sh`); a missing one fails the test saying what to
//! install.

#[path = "faults_server/support.rs"]
mod support;

use std::time::{Duration, Instant};

use e2e_tests::wait_for;
use support::*;

/// Events in each burst.
const BURST: usize = 60;
/// Size of each event's clip (three 256 KiB chunks, which the replicas
/// share between them).
const CLIP_BYTES: usize = 600_000;

/// The scale-out parts of one test.
/// (Fields drop in order: the logs are printed on a failure while the
/// processes and the directory are still there.)
struct Cluster {
    logs: Logs,
    servers: Vec<Server>,
    broker: Broker,
    pg: Pg,
    dir: tempfile::TempDir,
}

fn cluster(replicas: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Logs::default();
    let pg = Pg::start();
    logs.add("postgres", &pg.log_path());
    let url = pg.create_database("tv");
    let broker = Broker::start();
    logs.add("mosquitto", &broker.log_path());
    let mut servers = Vec::new();
    for i in 0..replicas {
        let name = ["replica-a", "replica-b"][i];
        let mut s = Server::new(
            name,
            dir.path(),
            &[
                ("DATABASE_URL", url.clone()),
                ("INGEST_MQTT_URL", broker.url()),
                ("INGEST_MQTT_CLIENT_ID", format!("ingest-{name}")),
            ],
        );
        s.up(&mut logs);
        servers.push(s);
    }
    add_auditor(&servers[0], "kt.fault");
    Cluster {
        logs,
        servers,
        broker,
        pg,
        dir,
    }
}

/// The edge's `edge_events_acked_total`.
fn acked(edge: &Edge) -> u64 {
    metric_value(&edge.metrics_text(), "edge_events_acked_total")
}

/// A server's ingest counters, for failure messages.
fn counters(server: &Server) -> String {
    e2e_tests::http_get(server.addr, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("ingest_"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the edge's outbox holds nothing undelivered and `n` events
/// delivered, then checks that every made event is one case on `server`
/// with every evidence object stored and verifying by its hash, that the
/// console counts exactly `n` cases, and that nothing was quarantined or
/// rejected.
fn assert_each_stored_once(edge: &Edge, made: &[Made], server: &Server) {
    let n = made.len();
    let drained = wait_for(180, || {
        let o = edge.outbox();
        o["depth"] == 0 && o["delivered"].as_u64() == Some(n as u64)
    });
    let o = edge.outbox();
    assert!(drained, "the edge delivered all {n} events: {o}");
    assert_eq!(o["rejected"], 0, "{o}");
    assert_eq!(o["evictions"], 0, "{o}");
    for m in made {
        let case = server
            .case(&m.id)
            .unwrap_or_else(|| panic!("event {} is not a case", m.id));
        assert_eq!(
            (
                case["evidence_stored"].as_i64(),
                case["evidence_total"].as_i64()
            ),
            (Some(m.files.len() as i64), Some(m.files.len() as i64)),
            "no partially stored case: {case}"
        );
        assert_eq!(case["device_id"], edge.id.as_str(), "{case}");
        for (name, bytes) in &m.files {
            let sha = protocol::sha256_hex(bytes);
            assert!(
                server.evidence_ok(&sha, bytes),
                "{name} of {} is stored and verifies by its hash {sha}",
                m.id
            );
        }
    }
    let count = console_case_count(server, "kt.fault");
    assert_eq!(count, n, "the console counts one case per event, no more");
    let q = server.quarantine();
    assert!(q.is_empty(), "nothing quarantined: {q:?}");
}

/// **An ingest-server replica SIGKILLed in the middle of a burst loses and
/// duplicates nothing.** Two replicas share one `$share/ingest/...`
/// subscription on Mosquitto and one PostgreSQL. A device delivers a burst
/// of 60 signed events (three stills in the bundle, a 600 kB clip after it
/// in three chunks, so a clip's chunks land on both replicas); when about a
/// quarter are acknowledged, replica A is killed with SIGKILL. Proves: the
/// burst goes on without A (replica B acknowledges at least ten more events
/// while A is down); after A restarts (same client id, so it gets what
/// Mosquitto kept for its session), every event is exactly one case
/// (each found by id, the console counting exactly 60), no case is
/// partially stored (every still and clip stored and served back with the
/// bytes its signed hash names), the device had nothing rejected, and
/// nothing is in the quarantine.
///
/// Also proves that B alone finishes the burst while A stays down: the
/// broker keeps routing part of the shared stream to A's session until it
/// expires (`SHARED_SESSION_EXPIRY_S`), and the edge sends again whatever
/// timed out there, without those lost sends holding its window.
#[test]
fn replica_sigkilled_mid_burst_every_event_stored_once() {
    let t0 = Instant::now();
    let mut c = cluster(2);
    let mut edge = Edge::new(
        c.dir.path(),
        "fault-burst-01",
        &c.broker.url(),
        EdgeOptions {
            ack_timeout_s: 5,
            backlog_per_s: 10.0,
            ..EdgeOptions::default()
        },
        &c.servers[0],
    );
    let made = fill_outbox(&edge, BURST, CLIP_BYTES);
    eprintln!("[replica kill] {BURST} events queued: {}", elapsed(t0));
    edge.up("deliver", &mut c.logs);

    let started = wait_for(60, || acked(&edge) >= (BURST / 4) as u64);
    assert!(started, "the burst started: {}", edge.metrics_text());
    let before = acked(&edge);
    let depth = edge.outbox()["depth"].as_u64().unwrap_or(0);
    c.servers[0].kill9();
    eprintln!(
        "[replica kill] replica-a SIGKILLed with {before} acknowledged, {depth} undelivered: {}",
        elapsed(t0)
    );
    assert!(depth > 0, "killed in the middle of the burst");

    // Replica B goes on with the burst.
    let took_over = wait_for(60, || acked(&edge) >= before + 10);
    assert!(
        took_over,
        "replica-b takes over: acknowledged {before} -> {} while replica-a is down\n\
         replica-b's counters:\n{}",
        acked(&edge),
        counters(&c.servers[1])
    );
    assert_eq!(
        c.servers[1].ready_status(),
        200,
        "replica-b stayed up and ready"
    );
    eprintln!(
        "[replica kill] replica-b took over ({} acknowledged): {}",
        acked(&edge),
        elapsed(t0)
    );
    // B alone finishes the burst: once A's broker session expires the
    // broker stops handing A its share, and what waited there is sent
    // again by the edge after its ack timeout.
    let alone = wait_for(120, || {
        edge.outbox()["depth"].as_u64() == Some(0) && acked(&edge) >= BURST as u64
    });
    assert!(
        alone,
        "replica-b alone finishes the burst: {} acknowledged; outbox {}",
        acked(&edge),
        edge.outbox()
    );
    eprintln!(
        "[replica kill] replica-b alone finished the burst: {}",
        elapsed(t0)
    );
    c.servers[0].up(&mut c.logs);
    eprintln!("[replica kill] replica-a restarted: {}", elapsed(t0));

    assert_each_stored_once(&edge, &made, &c.servers[1]);
    for s in &c.servers {
        eprintln!(
            "[replica kill] {}: stored {}, duplicate {} (since its last start)",
            s.name,
            s.metric("ingest_bundles_total{outcome=\"stored\"}"),
            s.metric("ingest_bundles_total{outcome=\"duplicate\"}")
        );
    }
    eprintln!("[replica kill] done: {}", elapsed(t0));
}

/// **PostgreSQL restarting during ingest loses and duplicates nothing.**
/// One replica on Mosquitto and PostgreSQL; a device delivers a burst of 60
/// signed events; when about a fifth are acknowledged, PostgreSQL is
/// stopped (fast shutdown, every session cut) and, once the server has
/// said it is not ready, started again on the same data directory and port.
/// Proves: `/readyz` answers 200 before, 503 (promptly) while the database is down
/// and 200 again after (the server reconnects by itself, without a
/// restart); the server process stays up throughout; and every event ends
/// as exactly one case with all its evidence stored and verifying, nothing
/// rejected, nothing in the quarantine.
#[test]
fn postgres_restart_during_ingest_server_reconnects_nothing_lost() {
    let t0 = Instant::now();
    let mut c = cluster(1);
    let mut edge = Edge::new(
        c.dir.path(),
        "fault-pg-01",
        &c.broker.url(),
        EdgeOptions {
            ack_timeout_s: 5,
            backlog_per_s: 10.0,
            ..EdgeOptions::default()
        },
        &c.servers[0],
    );
    let made = fill_outbox(&edge, BURST, CLIP_BYTES);
    assert_eq!(c.servers[0].ready_status(), 200, "ready before");
    edge.up("deliver", &mut c.logs);

    let started = wait_for(60, || acked(&edge) >= (BURST / 5) as u64);
    assert!(started, "the burst started: {}", edge.metrics_text());
    c.pg.down();
    let down_at = acked(&edge);
    eprintln!(
        "[pg restart] PostgreSQL stopped with {down_at} acknowledged: {}",
        elapsed(t0)
    );
    let t_down = Instant::now();
    // 503 within a few seconds, not a hang: a probe that hangs reads as a
    // dead process to a load balancer.
    let not_ready = wait_for(60, || c.servers[0].ready_status() == 503);
    assert!(not_ready, "/readyz answers 503 while the database is down");
    eprintln!(
        "[pg restart] /readyz not ready after {:.1} s",
        t_down.elapsed().as_secs_f64()
    );
    // Some of the burst meets the missing database.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        acked(&edge) < BURST as u64,
        "the burst was still under way while the database was down"
    );
    c.pg.up();
    eprintln!("[pg restart] PostgreSQL started again: {}", elapsed(t0));
    let ready = wait_for(60, || c.servers[0].ready_status() == 200);
    assert!(ready, "/readyz is ready again once the database is back");
    assert!(c.servers[0].running(), "the server survived the outage");

    assert_each_stored_once(&edge, &made, &c.servers[0]);
    assert!(c.servers[0].running(), "the server survived the outage");
    eprintln!("[pg restart] done: {}", elapsed(t0));
}
