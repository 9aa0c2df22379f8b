//! An owner no channel reaches (no e-mail, no push subscription, no partner
//! app): the confirmed case is listed at once on the console's deadlines
//! page for a notice by post, and recording the posted notice issues it
//! (audited, by the person); a push subscription made later gives the
//! owner's notices not yet out their deliveries; and the citizen app shows
//! no deadline and no "awaiting payment" while no clock runs.

mod common;

use common::seed::{self, PASSWORD};
use common::web::{Client, csrf};
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::db::now_ms;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use sqlx::Row;

const SITE: &str = "hn-hoankiem-trangtien";
/// The owner of 30A12345 in the seeded registry (see `seed.rs`).
const OWNER_NID: &str = "001199012345";

async fn start() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    // The test drives everything; nothing is sent anywhere.
    cfg.notices.enabled = false;
    let server = app::start(&cfg).await.unwrap();
    (dir, server)
}

fn reviewer(server: &Running) -> Reviewer<'_> {
    let ctx = server.ingestor.context();
    Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    }
}

async fn confirm(server: &Running, id: &str) {
    let r = reviewer(server);
    let now = now_ms();
    for (action, who, role) in [
        (Action::Claim, "op.an", Role::Operator),
        (Action::Accept, "op.an", Role::Operator),
        (Action::Confirm, "csgt.cuong", Role::Police),
    ] {
        let actor = Actor {
            id: who.into(),
            role,
        };
        r.act(id, &action, &actor, "", now).await.unwrap();
    }
}

async fn deliveries(server: &Running, id: &str) -> Vec<(String, String)> {
    sqlx::query("SELECT channel, state FROM notice_deliveries WHERE event_id = $1 ORDER BY channel")
        .bind(id)
        .fetch_all(server.ingestor.context().db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// (a) Listed for a paper notice at once; an operator cannot record it, a
/// police officer can (with the postal reference): the case is issued via
/// `paper`, its 20 days from now, the person in the audit log; it leaves
/// the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_no_channel_reaches_gets_a_paper_notice_that_issues_the_case() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm(&server, &id).await;
    assert!(deliveries(&server, &id).await.is_empty(), "no channel");

    let id2 = id.clone();
    tokio::task::spawn_blocking(move || {
        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", PASSWORD).status, 303);
        let queue = an.get("/console/queue");
        let r = an.post(
            &format!("/console/cases/{id2}/paper-notice"),
            &[("csrf", &csrf(&queue.body)), ("reference", "RR123456789VN")],
        );
        assert_eq!(r.status, 403, "an operator does not record notices");

        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", PASSWORD).status, 303);
        let page = cuong.get("/console/deadlines");
        assert_eq!(page.status, 200);
        let table = &page.body[page.body.find("id=\"paper-notices\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert!(table.contains(&id2), "{table}");
        assert!(
            table.contains(&format!("action=\"/console/cases/{id2}/paper-notice\"")),
            "{table}"
        );
        let t = csrf(&page.body);
        let r = cuong.post(
            &format!("/console/cases/{id2}/paper-notice"),
            &[("csrf", &t), ("reference", " ")],
        );
        assert_eq!(r.status, 409, "the postal reference is required");
        let r = cuong.post(
            &format!("/console/cases/{id2}/paper-notice"),
            &[("csrf", &t), ("reference", "RR123456789VN")],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        let page = cuong.get("/console/deadlines");
        let table = &page.body[page.body.find("id=\"paper-notices\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert!(!table.contains(&id2), "{table}");
        let again = cuong.post(
            &format!("/console/cases/{id2}/paper-notice"),
            &[("csrf", &t), ("reference", "RR123456789VN")],
        );
        assert_eq!(again.status, 409, "recorded once");
    })
    .await
    .unwrap();

    let db = server.ingestor.context().db.clone();
    let row = sqlx::query(
        "SELECT e.state, n.issued_via, n.respond_by FROM events e JOIN notices n \
         ON n.event_id = e.event_id WHERE e.event_id = $1",
    )
    .bind(&id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let (state, via, respond_by): (String, Option<String>, i64) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(state, "notice_issued");
    assert_eq!(via.as_deref(), Some("paper"));
    assert!(
        respond_by > now_ms() + 19 * 86_400_000,
        "20 days from the posting"
    );
    assert_eq!(
        deliveries(&server, &id).await,
        vec![("paper".to_string(), "sent".to_string())]
    );
    let trail = ingest_server::audit::for_subject(&db, &format!("case:{id}"))
        .await
        .unwrap();
    let paper = trail
        .iter()
        .find(|e| e.action == "notice.paper_sent")
        .expect("audited");
    assert_eq!(
        paper.role, "police",
        "recorded by the officer, not the system"
    );
    assert!(paper.detail.contains("RR123456789VN"), "{}", paper.detail);
    assert!(trail.iter().any(|e| e.action == "case.issue_notice"));
}

/// (b) A push subscription made after the confirmation gives the owner's
/// notice not yet out a Web Push delivery; the notice then leaves the
/// paper list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_subscription_enqueues_the_owners_notices_not_yet_out() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm(&server, &id).await;
    assert!(deliveries(&server, &id).await.is_empty());
    let db = server.ingestor.context().db.clone();
    let session = citizen::start_session(&db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let r = tokio::task::spawn_blocking(move || {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut me = Client::new(addr);
        me.cookies
            .insert(CITIZEN_COOKIE.into(), session.token.clone());
        let list = me.get("/app/");
        me.extra_headers
            .push(("X-CSRF-Token".into(), csrf(&list.body)));
        let sub = serde_json::json!({"endpoint": "https://fcm.googleapis.com/fcm/send/abc123",
            "keys": {"p256dh": b64.encode([4u8; 65]), "auth": b64.encode([7u8; 16])}});
        me.send_raw(
            "POST",
            "/app/push/subscribe",
            Some("application/json"),
            sub.to_string().as_bytes(),
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        deliveries(&server, &id).await,
        vec![("webpush".to_string(), "pending".to_string())]
    );
}

/// (c) Before the notice is out the app says what is happening, with no
/// deadline and no "awaiting payment" nor pay button; once issued, the
/// deadline and the button; once contested, no deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_shows_a_deadline_only_where_a_clock_runs() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm(&server, &id).await;
    let db = server.ingestor.context().db.clone();
    let session = citizen::start_session(&db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let token = session.token.clone();
    let get = move |path: String| {
        let token = token.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut me = Client::new(addr);
                me.cookies.insert(CITIZEN_COOKIE.into(), token);
                me.get(&path)
            })
            .await
            .unwrap()
        }
    };
    let case = format!("/app/cases/{id}");
    for body in [get("/app/".into()).await.body, get(case.clone()).await.body] {
        assert!(!body.contains("Chờ nộp phạt"), "{body}");
        assert!(!body.contains("Hạn"), "{body}");
        assert!(body.contains("Đang gửi thông báo"), "{body}");
    }
    let page = get(case.clone()).await.body;
    assert!(!page.contains("id=\"pay\"") && !page.contains("id=\"deadline\""));
    assert!(page.contains("id=\"state-note\""), "{page}");

    let system = Actor {
        id: "notices".into(),
        role: Role::System,
    };
    reviewer(&server)
        .act(&id, &Action::IssueNotice, &system, "", now_ms())
        .await
        .unwrap();
    let page = get(case.clone()).await.body;
    assert!(
        page.contains("id=\"deadline\"") && page.contains("id=\"pay\""),
        "{page}"
    );
    assert!(page.contains("Chờ nộp phạt"));

    let citizen_actor = Actor {
        id: "citizen:test".into(),
        role: Role::System,
    };
    reviewer(&server)
        .act(&id, &Action::Contest, &citizen_actor, "contest x", now_ms())
        .await
        .unwrap();
    for body in [get("/app/".into()).await.body, get(case.clone()).await.body] {
        assert!(!body.contains("Hạn"), "{body}");
        assert!(body.contains("Đang khiếu nại"), "{body}");
    }
}

/// Past the one-year limitation period no notice may go out, by post
/// either: the case is not listed for a paper notice, and recording one
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_paper_notice_past_the_limitation_period() {
    use ingest_server::audit::Who;
    use ingest_server::notices::paper::{PaperError, needing_paper, record_paper};
    let (_dir, server) = start().await;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm(&server, &id).await;
    let ctx = server.ingestor.context();
    let now = now_ms();
    let listed =
        |v: Vec<ingest_server::notices::paper::PaperNotice>| v.iter().any(|p| p.event_id == id);
    assert!(listed(needing_paper(&ctx.db, now, 50).await.unwrap()));
    let later = now + 366 * 86_400_000;
    assert!(!listed(needing_paper(&ctx.db, later, 50).await.unwrap()));
    let who = Who::new("csgt.cuong", Role::Police);
    let r = record_paper(ctx, &id, &who, "RR123456789VN", later).await;
    assert!(matches!(r, Err(PaperError::PastLimitation)), "{r:?}");
    assert!(deliveries(&server, &id).await.is_empty());
}

/// A delivery waiting for a channel that no live replica has any more (the
/// partner app taken out of every replica's configuration) will never be
/// sent: once the channel has been gone for `STALE_MS`, the notice is
/// listed for a paper notice and may be recorded; while the channel is
/// there it is not. Rows of replicas gone for a day are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waiting_for_a_channel_no_replica_has_leaves_the_owner_to_paper() {
    stranded_delivery(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_delivery_on_postgres() {
    let pg = Postgres::start();
    stranded_delivery(Some(pg.fresh_database().await)).await;
}

async fn stranded_delivery(db_url: Option<String>) {
    use ingest_server::audit::Who;
    use ingest_server::notices::paper::{needing_paper, record_paper};
    use ingest_server::notices::replicas::{RETIRE_MS, STALE_MS, heartbeat};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.notices.enabled = false;
    if let Some(url) = db_url {
        cfg.database.url = url;
    }
    let server = app::start(&cfg).await.unwrap();
    let ctx = server.ingestor.context();
    let db = &ctx.db;
    let t0 = now_ms();
    heartbeat(
        db,
        "gone-long-ago",
        &["email".into()],
        t0 - RETIRE_MS - 60_000,
    )
    .await
    .unwrap();
    heartbeat(db, "a", &["webhook:vneid".into()], t0)
        .await
        .unwrap();
    assert_eq!(
        channel_rows(db, "gone-long-ago").await,
        0,
        "retired at a's beat"
    );
    assert_eq!(channel_rows(db, "a").await, 1);

    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm(&server, &id).await;
    assert_eq!(
        deliveries(&server, &id).await,
        vec![("webhook".into(), "pending".into())]
    );
    let listed = |v: Vec<ingest_server::notices::paper::PaperNotice>| {
        v.into_iter().find(|p| p.event_id == id)
    };
    assert!(listed(needing_paper(db, t0, 50).await.unwrap()).is_none());

    // Replica b, without the partner, beats on; a is gone.
    let t1 = t0 + STALE_MS - 60_000;
    heartbeat(db, "b", &["email".into()], t1).await.unwrap();
    assert!(
        listed(needing_paper(db, t1, 50).await.unwrap()).is_none(),
        "a's partner is active until a has been silent for STALE_MS"
    );
    let t2 = t0 + STALE_MS + 60_000;
    heartbeat(db, "b", &["email".into()], t2).await.unwrap();
    let p = listed(needing_paper(db, t2, 50).await.unwrap()).expect("listed for paper");
    assert_eq!(p.given_up, 1, "the stranded delivery cannot get through");

    // A replica with the partner comes back: off the list again.
    heartbeat(db, "a2", &["webhook:vneid".into()], t2 + 1)
        .await
        .unwrap();
    assert!(listed(needing_paper(db, t2 + 1, 50).await.unwrap()).is_none());
    // And gone again: the paper notice is recorded and issues the case.
    let t3 = t2 + 2 * STALE_MS;
    heartbeat(db, "b", &["email".into()], t3).await.unwrap();
    let who = Who::new("csgt.cuong", Role::Police);
    record_paper(ctx, &id, &who, "RR123456789VN", t3)
        .await
        .unwrap();
    // The stranded delivery will not follow the letter should the partner
    // come back.
    assert_eq!(
        deliveries_of(db, &id).await,
        vec![
            ("paper".to_string(), "sent".to_string()),
            ("webhook".to_string(), "dropped".to_string())
        ]
    );
    let state: String = sqlx::query("SELECT state FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "notice_issued");
}

async fn channel_rows(db: &ingest_server::db::Db, replica: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM notice_channels WHERE name LIKE $1")
        .bind(format!("{replica}|%"))
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn deliveries_of(db: &ingest_server::db::Db, id: &str) -> Vec<(String, String)> {
    sqlx::query("SELECT channel, state FROM notice_deliveries WHERE event_id = $1 ORDER BY channel")
        .bind(id)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
