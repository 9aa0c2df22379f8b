//! Closed cases in the citizen app, against a running server: a fine police
//! took back is not the registered owner's any more. Withdrawn before any
//! notice reached the owner (a misread plate): not listed, its page and
//! evidence answer 404 like a case not theirs, the refusal audited.
//! Cancelled after the owner's "not my car" contest: its page stays, with
//! police's reason, but not its evidence (stills of possibly someone
//! else's car and driver). A paid case that is then closed stays, with its
//! receipt and its evidence.

mod common;

use common::seed;
use common::web::{Client, csrf};
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::db::now_ms;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use sqlx::Row;

const SITE: &str = "hp-lechan-tolang";
/// The owner of 30A12345 in the seeded registry (see `seed.rs`).
const OWNER_NID: &str = "001199012345";

fn signed_in(addr: std::net::SocketAddr, token: &str) -> Client {
    let mut c = Client::new(addr);
    c.cookies.insert(CITIZEN_COOKIE.into(), token.into());
    c
}

/// Case `id` moved by `action` of `who` in `role`, with `reason`.
async fn act(server: &Running, id: &str, action: Action, who: &str, role: Role, reason: &str) {
    let ctx = server.ingestor.context();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let actor = Actor {
        id: who.into(),
        role,
    };
    r.act(id, &action, &actor, reason, now_ms()).await.unwrap();
}

/// Claim, accept and confirm `id` (an operator, then police).
async fn confirm(server: &Running, id: &str) {
    act(server, id, Action::Claim, "op", Role::Operator, "").await;
    act(server, id, Action::Accept, "op", Role::Operator, "").await;
    act(server, id, Action::Confirm, "police", Role::Police, "").await;
}

/// The state of case `id`.
async fn state(server: &Running, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
        .bind(id)
        .fetch_one(server.ingestor.context().db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fine_taken_back_leaves_the_app_and_a_paid_one_keeps_its_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 3).await;
    let (withdrawn, cancelled, paid) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let db = server.ingestor.context().db.clone();
    for id in &ids {
        confirm(&server, id).await;
    }
    let session = citizen::start_session(&db, OWNER_NID, "Hoàng Thị Giang", now_ms())
        .await
        .unwrap();

    // Confirmed, the notice not yet through: the owner sees the case and
    // its stills (as before any change here).
    let (token, w) = (session.token.clone(), withdrawn.clone());
    tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &token);
        assert!(me.get("/app/").body.contains(&w));
        assert_eq!(
            me.get(&format!("/app/cases/{w}/evidence/overview.jpg"))
                .status,
            200
        );
    })
    .await
    .unwrap();
    // Police find the plate was misread and withdraw the fine before any
    // notice was issued: the owner was never told of it.
    act(
        &server,
        &withdrawn,
        Action::Withdraw,
        "police",
        Role::Police,
        "Đọc sai biển số, phương tiện khác",
    )
    .await;
    let issued: Option<i64> =
        sqlx::query_scalar("SELECT issued_at FROM notices WHERE event_id = $1")
            .bind(&withdrawn)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(issued, None, "no notice reached the owner");

    // The second: the notice reached the owner, who contests ("not my
    // car"); police cancel the fine.
    act(
        &server,
        &cancelled,
        Action::IssueNotice,
        "notices",
        Role::System,
        "",
    )
    .await;
    let (token, c) = (session.token.clone(), cancelled.clone());
    tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &token);
        let page = me.get(&format!("/app/cases/{c}"));
        assert_eq!(page.status, 200);
        let t = csrf(&page.body);
        let r = me.post_multipart(
            &format!("/app/cases/{c}/contest"),
            &[
                ("csrf", &t),
                ("reason", "Xe trong ảnh không phải xe của tôi"),
            ],
            &[],
        );
        assert_eq!(r.status, 303, "{}", r.body);
    })
    .await
    .unwrap();
    assert_eq!(state(&server, &cancelled).await, "contested");
    act(
        &server,
        &cancelled,
        Action::Close,
        "police",
        Role::Police,
        "Chấp nhận khiếu nại: không phải xe của chủ phương tiện",
    )
    .await;

    // The third: paid through the gateway, then closed by a supervisor.
    act(
        &server,
        &paid,
        Action::IssueNotice,
        "notices",
        Role::System,
        "",
    )
    .await;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at, transaction_no) VALUES ('t-paid', $1, 'vnpay', \
         19000000, 'paid', '203.0.113.7', $2, $3, $2, '14012345')",
    )
    .bind(&paid)
    .bind(now)
    .bind(now + 15 * 60_000)
    .execute(db.pool())
    .await
    .unwrap();
    act(&server, &paid, Action::Pay, "payments", Role::System, "").await;
    act(&server, &paid, Action::Close, "gs.em", Role::Supervisor, "").await;
    for id in &ids {
        assert_eq!(state(&server, id).await, "closed");
    }

    let (token, (w, c, p)) = (session.token.clone(), (withdrawn, cancelled, paid));
    tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &token);
        let list = me.get("/app/");
        assert_eq!(list.status, 200);
        assert!(list.body.contains(&p), "the paid case stays: {}", list.body);
        assert!(!list.body.contains(w.as_str()), "{w} listed");
        assert_eq!(me.get(&format!("/app/cases/{w}")).status, 404);
        for gone in [&w, &c] {
            assert_eq!(
                me.get(&format!("/app/cases/{gone}/evidence/overview.jpg"))
                    .status,
                404,
                "someone else's car, possibly: not served"
            );
        }
        // The owner who contested sees the answer: cancelled, and why.
        assert!(list.body.contains(c.as_str()), "{}", list.body);
        let page = me.get(&format!("/app/cases/{c}"));
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains("id=\"evidence-withheld\"")
                && !page.body.contains("class=\"still\"")
                && !page.body.contains("<video"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("id=\"withdrawn\"")
                && page
                    .body
                    .contains("Chấp nhận khiếu nại: không phải xe của chủ phương tiện"),
            "police's reason: {}",
            page.body
        );
        let page = me.get(&format!("/app/cases/{p}"));
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("id=\"receipt\"") && page.body.contains("14012345"),
            "{}",
            page.body
        );
        assert!(page.body.contains("Đã đóng"), "{}", page.body);
        assert_eq!(
            me.get(&format!("/app/cases/{p}/evidence/overview.jpg"))
                .status,
            200,
            "the evidence of what the owner paid for"
        );
    })
    .await
    .unwrap();

    // Refused like any case not theirs: each look audited, under the
    // citizen's digest, never the ID number.
    let rows =
        sqlx::query("SELECT actor, subject FROM audit_log WHERE action = 'citizen.case_denied'")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "two looks at the withdrawn case");
    for r in &rows {
        let (actor, subject): (String, String) = (r.get(0), r.get(1));
        assert!(!actor.contains(OWNER_NID));
        assert_eq!(subject, format!("case:{}", ids[0]));
    }
}
