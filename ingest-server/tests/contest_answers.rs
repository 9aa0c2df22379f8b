//! Police's answer to a contest when no channel reaches the owner (no app,
//! e-mail or partner: the notice went by post), against a running server:
//! upholding the fine records that the owner was not told and lists the
//! answer for the police to post; until it is posted the owner's new 20
//! days do not run out (the case is held, not marked overdue and warned to
//! the inspection register); once posted they run from the letter, and a
//! warning then says the owner contested. The console lists the answer and
//! records the letter; the citizen app shows the police's answer and
//! reason.

mod common;

use common::seed;
use common::web::{Client, csrf};
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::audit::Who;
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::db::now_ms;
use ingest_server::notices::{self, outbox::respond_until, paper};
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};

const SITE: &str = "hn-hoankiem-trangtien";
const DAY: i64 = 86_400_000;
/// The owner of the seeded plate (`seed.rs`).
const OWNER_NID: &str = "001199012345";

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
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

/// Confirmed at `t0` with no channel to the owner, and the notice posted
/// (listed for it first).
async fn noticed_by_post(server: &Running, id: &str, t0: i64) {
    let ctx = server.ingestor.context();
    let r = reviewer(server);
    let op = actor("op.an", Role::Operator);
    let police = actor("csgt.cuong", Role::Police);
    r.act(id, &Action::Claim, &op, "", t0).await.unwrap();
    r.act(id, &Action::Accept, &op, "", t0).await.unwrap();
    r.act(id, &Action::Confirm, &police, "", t0).await.unwrap();
    let listed = paper::needing_paper(&ctx.db, t0, 10).await.unwrap();
    assert!(
        listed.iter().any(|n| n.event_id == id),
        "no channel: {listed:?}"
    );
    let who = Who::new("csgt.cuong", Role::Police);
    paper::record_paper(ctx, id, &who, "RR-NOTICE", t0)
        .await
        .unwrap();
}

/// [`noticed_by_post`], contested at `t0 + 1 day` and upheld at `upheld`.
async fn upheld_without_a_channel(server: &Running, id: &str, t0: i64, upheld: i64) {
    noticed_by_post(server, id, t0).await;
    let r = reviewer(server);
    r.act(
        id,
        &Action::Contest,
        &actor("citizen", Role::System),
        "contest 1",
        t0 + DAY,
    )
    .await
    .unwrap();
    r.act(
        id,
        &Action::Uphold,
        &actor("csgt.cuong", Role::Police),
        "Ảnh cho thấy rõ xe vượt đèn đỏ",
        upheld,
    )
    .await
    .unwrap();
}

/// The owner's page of case `id` in the citizen app.
async fn owner_page(server: &Running, id: &str) -> String {
    let ctx = server.ingestor.context();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let (addr, path) = (server.http_addr, format!("/app/cases/{id}"));
    tokio::task::spawn_blocking(move || {
        let mut me = Client::new(addr);
        me.cookies
            .insert(CITIZEN_COOKIE.into(), session.token.clone());
        me.get(&path).body
    })
    .await
    .unwrap()
}

async fn state(server: &Running, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
        .bind(id)
        .fetch_one(server.ingestor.context().db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_no_channel_carries_is_posted_and_its_20_days_run_from_the_letter() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.notices.enabled = false;
    let server = app::start(&cfg).await.unwrap();
    let ctx = server.ingestor.context().clone();
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let t0 = now_ms();
    let upheld = t0 + 2 * DAY;
    upheld_without_a_channel(&server, &id, t0, upheld).await;
    assert_eq!(state(&server, &id).await, "notice_issued");

    // Nobody was told: the audit entry says so, and the answer is listed.
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{id}"))
        .await
        .unwrap();
    let e = trail.iter().find(|e| e.action == "case.uphold").unwrap();
    assert!(
        e.detail.contains("\"owner_told\":false") && e.detail.contains("\"paper_needed\":true"),
        "{}",
        e.detail
    );
    let listed = paper::answers_needing_paper(&ctx.db, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].event_id.as_str(), listed[0].written_at),
        (id.as_str(), upheld)
    );

    // Unsent: the app shows no deadline running.
    let page = owner_page(&server, &id).await;
    assert!(!page.contains("id=\"deadline\""), "{page}");
    // Long past 20 days from the answer, unsent: held, not overdue.
    let r = notices::check_deadlines(&ctx, upheld + 25 * DAY)
        .await
        .unwrap();
    assert_eq!(r.held_for_answer, std::slice::from_ref(&id), "{r:?}");
    assert!(r.marked_overdue.is_empty(), "{r:?}");
    assert_eq!(state(&server, &id).await, "notice_issued");

    // Posted 30 days after the answer: 20 days from the letter.
    let posted = upheld + 30 * DAY;
    let who = Who::new("csgt.cuong", Role::Police);
    assert!(matches!(
        paper::record_paper_answer(&ctx.db, &id, &who, " ", posted).await,
        Err(paper::PaperError::Reference)
    ));
    paper::record_paper_answer(&ctx.db, &id, &who, "RR-ANSWER", posted)
        .await
        .unwrap();
    assert!(
        paper::answers_needing_paper(&ctx.db, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        paper::record_paper_answer(&ctx.db, &id, &who, "RR-AGAIN", posted).await,
        Err(paper::PaperError::NotNeeded)
    ));
    let deadline = respond_until(posted);
    // The owner's app shows what police answered, and the deadline the
    // check now holds them to: from the letter.
    let page = owner_page(&server, &id).await;
    assert!(
        page.contains("id=\"contest-answer\"") && page.contains("Ảnh cho thấy rõ xe vượt đèn đỏ"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "id=\"deadline\">{}",
            ingest_server::console::html::local_time(deadline)
        )),
        "{page}"
    );
    let r = notices::check_deadlines(&ctx, deadline).await.unwrap();
    assert!(
        r.marked_overdue.is_empty() && r.held_for_answer.is_empty(),
        "{r:?}"
    );
    let r = notices::check_deadlines(&ctx, deadline + 1).await.unwrap();
    assert_eq!(r.marked_overdue, std::slice::from_ref(&id), "{r:?}");
    let w = notices::inspection_warnings(&ctx.db, 10).await.unwrap();
    assert!(
        w[0].reason.contains("contest not accepted"),
        "{}",
        w[0].reason
    );
}

/// The console lists the answer for police (not operators) and records the
/// letter with its postal reference, audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn police_post_the_answer_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.notices.enabled = false;
    let server = app::start(&cfg).await.unwrap();
    let ctx = server.ingestor.context().clone();
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let t0 = now_ms() - 3 * DAY;
    upheld_without_a_channel(&server, &id, t0, t0 + 2 * DAY).await;
    let addr = server.http_addr;
    let case = id.clone();
    tokio::task::spawn_blocking(move || {
        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", seed::PASSWORD).status, 303);
        assert_eq!(an.get("/console/deadlines").status, 403);
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", seed::PASSWORD).status, 303);
        let page = cuong.get("/console/deadlines");
        assert_eq!(page.status, 200, "{}", page.body);
        let table = page.body.split("id=\"paper-answers\"").nth(1).unwrap_or("");
        assert!(
            table.contains(&format!("data-event=\"{case}\"")),
            "{}",
            page.body
        );
        let path = format!("/console/cases/{case}/paper-answer");
        let token = csrf(&page.body);
        assert_eq!(
            cuong
                .post(&path, &[("csrf", "forged"), ("reference", "RR1")])
                .status,
            403
        );
        let r = cuong.post(&path, &[("csrf", &token), ("reference", "RR-123")]);
        assert_eq!(r.status, 303, "{}", r.body);
        let page = cuong.get("/console/deadlines");
        let table = page.body.split("id=\"paper-answers\"").nth(1).unwrap_or("");
        let table = table.split("</table>").next().unwrap_or("");
        assert!(
            !table.contains(&format!("data-event=\"{case}\"")),
            "{table}"
        );
        assert_eq!(
            cuong
                .post(&path, &[("csrf", &token), ("reference", "RR-123")])
                .status,
            409
        );
    })
    .await
    .unwrap();
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{id}"))
        .await
        .unwrap();
    let e = trail
        .iter()
        .rfind(|e| e.action == "notice.paper_sent")
        .unwrap();
    assert!(
        e.detail.contains("RR-123") && e.detail.contains("message_id"),
        "{}",
        e.detail
    );
    assert_eq!(e.role, "police");
}

/// A fine withdrawn after its notice went by post: the owner, who knew of
/// the fine, is told by post too — the withdrawal is listed for police
/// (`owner_told: false, paper_needed: true` in the audit entry) and
/// recorded like an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_no_channel_carries_is_posted_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.notices.enabled = false;
    let server = app::start(&cfg).await.unwrap();
    let ctx = server.ingestor.context().clone();
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let t0 = now_ms();
    noticed_by_post(&server, &id, t0).await;
    let (r, police) = (reviewer(&server), actor("csgt.cuong", Role::Police));
    let who = Who::new("csgt.cuong", Role::Police);
    assert_eq!(state(&server, &id).await, "notice_issued");
    let why = "Xe đã được chuyển nhượng trước ngày vi phạm";
    r.act(&id, &Action::Withdraw, &police, why, t0 + DAY)
        .await
        .unwrap();
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{id}"))
        .await
        .unwrap();
    let e = trail.iter().find(|e| e.action == "case.withdraw").unwrap();
    assert!(
        e.detail.contains("\"owner_told\":false") && e.detail.contains("\"paper_needed\":true"),
        "{}",
        e.detail
    );
    let listed = paper::answers_needing_paper(&ctx.db, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].event_id.as_str(), listed[0].kind.as_str()),
        (id.as_str(), "withdrawn")
    );
    paper::record_paper_answer(&ctx.db, &id, &who, "RR-WITHDRAWN", t0 + 2 * DAY)
        .await
        .unwrap();
    assert!(
        paper::answers_needing_paper(&ctx.db, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
