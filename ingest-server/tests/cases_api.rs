//! `GET /api/v1/cases`: the paged list of cases with their workflow state,
//! on SQLite and on a real PostgreSQL. Proves that paging with `next` sees
//! every case exactly once in stored order, that `state` and `device_id`
//! filter, that a case's state follows the review workflow, and that bad
//! parameters (unknown state, cursor, limit, a misspelt parameter) are
//! refused with a stable code instead of silently widening the query.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use common::*;
use ingest_server::app;
use ingest_server::config::Config;
use ingest_server::db::now_ms;
use ingest_server::devices;
use ingest_server::ingest::Source;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use serde_json::Value;

const SITE: &str = "hn-hoankiem-07";
const TOKEN: &str = "cases-admin-token-0123456789";

/// One GET with the admin token (unless `auth` is false): status and JSON.
fn get(addr: SocketAddr, path: &str, auth: bool) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let bearer = if auth {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{bearer}\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "answers are sent whole"
    );
    let body = serde_json::from_slice(&out[split + 4..]).unwrap_or(Value::Null);
    (status, body)
}

fn ids(page: &Value) -> Vec<String> {
    page["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event_id"].as_str().unwrap().to_string())
        .collect()
}

async fn suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = url;
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.admin.token = TOKEN.into();
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    let ctx = server.ingestor.context().clone();
    let files = Files::new(500);
    let mut stored = Vec::new();
    for (device, n) in [("edge-l1", 4), ("edge-l2", 3)] {
        let k = key();
        devices::enrol(&ctx.db, device, SITE, &public_hex(&k))
            .await
            .unwrap();
        for _ in 0..n {
            let ev = event(device, SITE, &files);
            stored.push(ev.event_id.to_string());
            let o = server
                .ingestor
                .submit(Bytes::from(bundle(&ev, &k, &files)), Source::Http)
                .await
                .unwrap();
            assert!(o.rejection.is_none(), "{:?}", o.rejection);
        }
    }
    // The first case goes through review: claimed, then accepted.
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op.lan".into(),
        role: Role::Operator,
    };
    let now = now_ms();
    r.act(&stored[0], &Action::Claim, &op, "", now)
        .await
        .unwrap();
    r.act(
        &stored[0],
        &Action::Accept,
        &op,
        "clear red-light run",
        now + 1,
    )
    .await
    .unwrap();

    let first = stored[0].clone();
    let want = stored.clone();
    tokio::task::spawn_blocking(move || {
        // Page through everything, two at a time.
        let mut seen = Vec::new();
        let mut path = "/api/v1/cases?limit=2".to_string();
        let mut pages = 0;
        loop {
            let (st, page) = get(addr, &path, true);
            assert_eq!(st, 200, "{page}");
            pages += 1;
            seen.extend(ids(&page));
            match page["next"].as_str() {
                Some(next) => path = format!("/api/v1/cases?limit=2&after={next}"),
                None => break,
            }
        }
        assert_eq!(pages, 4, "7 cases, 2 a page");
        let mut sorted_seen = seen.clone();
        sorted_seen.sort();
        let mut sorted_want = want.clone();
        sorted_want.sort();
        assert_eq!(sorted_seen, sorted_want, "every case exactly once");

        // The workflow state is in the case.
        let (st, accepted) = get(addr, "/api/v1/cases?state=accepted", true);
        assert_eq!(st, 200);
        assert_eq!(ids(&accepted), vec![first.clone()]);
        let case = &accepted["cases"][0];
        assert_eq!(case["state"], "accepted");
        assert!(
            case["state_changed_at"]
                .as_str()
                .unwrap()
                .ends_with("+07:00")
        );
        assert!(case["received_at"].as_str().unwrap().ends_with("+07:00"));
        assert_eq!(case["device_id"], "edge-l1");
        let (_, one) = get(addr, &format!("/api/v1/cases/{first}"), true);
        assert_eq!(one["state"], "accepted");
        let (_, new) = get(addr, "/api/v1/cases?state=new", true);
        assert_eq!(ids(&new).len(), 6);
        assert!(!ids(&new).contains(&first));
        assert!(new["cases"][0]["state_changed_at"].is_null());
        let (_, l2) = get(addr, "/api/v1/cases?device_id=edge-l2&state=new", true);
        assert_eq!(ids(&l2).len(), 3);
        assert!(l2["next"].is_null());

        // Refusals, each with its stable code.
        for (path, code) in [
            ("/api/v1/cases?state=approved", "bad_state"),
            ("/api/v1/cases?after=yesterday", "bad_cursor"),
            ("/api/v1/cases?limit=0", "bad_limit"),
            ("/api/v1/cases?limit=501", "bad_limit"),
            ("/api/v1/cases?limit=ten", "bad_limit"),
            ("/api/v1/cases?stat=new", "unknown_parameter"),
        ] {
            let (st, body) = get(addr, path, true);
            assert_eq!(
                (st, body["error"]["code"].as_str()),
                (400, Some(code)),
                "{path}"
            );
        }
        let (st, body) = get(addr, "/api/v1/cases", false);
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
    })
    .await
    .unwrap();
    server.http.abort();
    server.mqtt.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_list_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(ingest_server::db::Db::sqlite_url(
        &dir.path().join("cases.db"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_list_on_postgres() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    suite(url).await;
    drop(pg);
}
