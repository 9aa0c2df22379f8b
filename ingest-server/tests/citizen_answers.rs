//! The owner's answers in the citizen app, against a running server:
//! accepting does not stop the 20-day clock and the page says the fine is
//! still to be paid by the date; the contest rule is one rule on the page
//! and in the handler (no form once overdue or past the deadline, and a
//! contest after the deadline is refused); a photo over the size limit is
//! answered 413 in Vietnamese; a photo whose header claims huge dimensions
//! is refused; a paid case that is then closed keeps its receipt.

mod common;

use common::seed;
use common::web::{Client, csrf};
use common::*;
use ingest_server::app::{self, Running};
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::console::html::local_time;
use ingest_server::db::now_ms;
use ingest_server::notices;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use sqlx::Row;

const SITE: &str = "hp-lechan-tolang";
/// The owner of 30A12345 in the seeded registry (see `seed.rs`).
const OWNER_NID: &str = "001199012345";
const DAY: i64 = 86_400_000;

fn signed_in(addr: std::net::SocketAddr, token: &str) -> Client {
    let mut c = Client::new(addr);
    c.cookies.insert(CITIZEN_COOKIE.into(), token.into());
    c
}

/// Claim, accept and confirm `id`, then issue its notice at `at`.
async fn confirm_and_issue(server: &Running, id: &str, at: i64) {
    let ctx = server.ingestor.context();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    for (action, who, role) in [
        (Action::Claim, "op", Role::Operator),
        (Action::Accept, "op", Role::Operator),
        (Action::Confirm, "police", Role::Police),
        (Action::IssueNotice, "notices", Role::System),
    ] {
        let actor = Actor {
            id: who.into(),
            role,
        };
        r.act(id, &action, &actor, "", at).await.unwrap();
    }
}

/// The deadline the check enforces for case `id`.
async fn enforced(server: &Running, id: &str) -> i64 {
    let row = sqlx::query(
        "SELECT n.respond_by, e.state_changed_at FROM notices n \
         JOIN events e ON e.event_id = n.event_id WHERE n.event_id = $1",
    )
    .bind(id)
    .fetch_one(server.ingestor.context().db.pool())
    .await
    .unwrap();
    notices::deadlines::effective_deadline(row.get(0), row.get(1))
}

/// Moves case `id`'s notice and its entry into `notice_issued` back by
/// `days`, as if it had been issued that long ago.
async fn age(server: &Running, id: &str, days: i64) {
    let db = &server.ingestor.context().db;
    sqlx::query("UPDATE notices SET respond_by = respond_by - $1, created_at = created_at - $1 WHERE event_id = $2")
        .bind(days * DAY)
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE events SET state_changed_at = state_changed_at - $1 WHERE event_id = $2")
        .bind(days * DAY)
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();
}

async fn start() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    (dir, server)
}

/// Accepting records the answer but the fine is still due: the page says
/// it must be paid by the deadline (with the date), the deadline is
/// labelled as the one to pay by, a second press says the same, and an
/// owner who accepted and did not pay is marked overdue and warned, the
/// warning saying they accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_says_the_fine_is_still_due_and_the_clock_runs_on() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm_and_issue(&server, &id, now_ms()).await;
    let deadline = enforced(&server, &id).await;
    let ctx = server.ingestor.context().clone();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let path = format!("/app/cases/{id}");
    let (before, after, again) = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &session.token);
        let before = me.get(&path);
        let t = csrf(&before.body);
        let r = me.post(&format!("{path}/accept"), &[("csrf", &t)]);
        assert_eq!(r.status, 303, "{}", r.body);
        let after = me.get(&path);
        let again = me.post(&format!("{path}/accept"), &[("csrf", &t)]);
        (before, after, again)
    })
    .await
    .unwrap();
    let date = local_time(deadline);
    assert!(
        before.body.contains(&format!(
            "<dt>Hạn nộp phạt hoặc khiếu nại</dt><dd id=\"deadline\">{date}"
        )),
        "{}",
        before.body
    );
    for body in [&before.body, &after.body] {
        assert!(!body.contains("Hạn phản hồi"), "{body}");
    }
    assert!(
        after.body.contains("id=\"accepted\"")
            && after.body.contains("vẫn phải nộp")
            && after.body.contains(&format!("chậm nhất đến {date}")),
        "{}",
        after.body
    );
    assert!(
        !after.body.contains("Bạn đã xác nhận vi phạm.</div>"),
        "{}",
        after.body
    );
    assert!(
        after
            .body
            .contains(&format!("<dt>Hạn nộp phạt</dt><dd id=\"deadline\">{date}")),
        "{}",
        after.body
    );
    assert!(after.body.contains("id=\"pay\""), "{}", after.body);
    assert_eq!(again.status, 409);
    assert!(
        again.body.contains("vẫn phải nộp") && again.body.contains(&date),
        "{}",
        again.body
    );
    assert!(!again.body.contains("Bạn đã phản hồi"), "{}", again.body);

    // The clock ran on: not overdue at its last millisecond, overdue and
    // warned the next, the warning saying the owner accepted.
    let r = notices::check_deadlines(&ctx, deadline).await.unwrap();
    assert!(r.marked_overdue.is_empty(), "{r:?}");
    let r = notices::check_deadlines(&ctx, deadline + 1).await.unwrap();
    assert_eq!(r.marked_overdue, std::slice::from_ref(&id), "{r:?}");
    let w = notices::inspection_warnings(&ctx.db, 10).await.unwrap();
    assert_eq!(w.len(), 1);
    assert!(w[0].reason.contains("accepted"), "{}", w[0].reason);
}

/// One contest rule for the page and the handler: the form is offered
/// only while the notice stands unanswered and before its deadline (end
/// of the 20th day, Vietnam time); a contest sent after the deadline —
/// before the deadline check has marked the case — is refused, not taken;
/// an overdue case offers no form. Within the deadline the form is there,
/// each field with its label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contest_rule_is_the_same_on_the_page_and_in_the_handler() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 2).await;
    for id in &ids {
        confirm_and_issue(&server, id, now_ms()).await;
    }
    let (late, open) = (ids[0].clone(), ids[1].clone());
    // The first was issued 25 days ago: its deadline passed, and the check
    // has not run yet.
    age(&server, &late, 25).await;
    assert!(enforced(&server, &late).await < now_ms());
    let ctx = server.ingestor.context().clone();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let token = session.token.clone();
    let (late_in, open_page) = (late.clone(), open.clone());
    let (late_page, refused, open_page) = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &token);
        let late_page = me.get(&format!("/app/cases/{late_in}"));
        let t = csrf(&late_page.body);
        let refused = me.post_multipart(
            &format!("/app/cases/{late_in}/contest"),
            &[("csrf", &t), ("reason", "Tôi không điều khiển xe hôm đó")],
            &[],
        );
        (
            late_page,
            refused,
            me.get(&format!("/app/cases/{open_page}")),
        )
    })
    .await
    .unwrap();
    assert!(
        !late_page.body.contains("/contest\"") && !late_page.body.contains("id=\"contest\""),
        "past the deadline: no contest form\n{}",
        late_page.body
    );
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("quá thời hạn khiếu nại"),
        "{}",
        refused.body
    );
    let state: String = sqlx::query_scalar("SELECT state FROM events WHERE event_id = $1")
        .bind(&late)
        .fetch_one(ctx.db.pool())
        .await
        .unwrap();
    assert_eq!(state, "notice_issued", "the late contest was not taken");
    let contests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contests")
        .fetch_one(ctx.db.pool())
        .await
        .unwrap();
    assert_eq!(contests, 0);
    assert!(
        open_page.body.contains("id=\"contest\"")
            && open_page.body.contains("<label for=\"contest-reason\">")
            && open_page.body.contains("<label for=\"contest-photo\">")
            && open_page.body.contains("id=\"contest-photo\""),
        "{}",
        open_page.body
    );

    // Marked overdue: the page has no contest form, and says why.
    let r = notices::check_deadlines(&ctx, now_ms()).await.unwrap();
    assert_eq!(r.marked_overdue, std::slice::from_ref(&late), "{r:?}");
    let token = session.token.clone();
    let (page, refused) = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &token);
        let page = me.get(&format!("/app/cases/{late}"));
        let t = csrf(&page.body);
        let refused = me.post_multipart(
            &format!("/app/cases/{late}/contest"),
            &[("csrf", &t), ("reason", "Tôi không điều khiển xe hôm đó")],
            &[],
        );
        (page, refused)
    })
    .await
    .unwrap();
    assert!(
        !page.body.contains("/contest\"") && !page.body.contains("id=\"contest-reason\""),
        "overdue: no contest form\n{}",
        page.body
    );
    assert!(page.body.contains("id=\"pay\""), "still payable");
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains("quá thời hạn khiếu nại"),
        "{}",
        refused.body
    );
}

/// A phone photo over 5 MiB is answered 413 with "Ảnh quá lớn", not the
/// multipart parser's English error; the page's error is an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_over_the_limit_is_answered_413_in_vietnamese() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm_and_issue(&server, &id, now_ms()).await;
    let db = server.ingestor.context().db.clone();
    let session = citizen::start_session(&db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let r = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &session.token);
        let page = me.get(&format!("/app/cases/{id}"));
        let t = csrf(&page.body);
        let mut photo = vec![0xFF, 0xD8, 0xFF, 0xE0];
        photo.resize(6 * 1024 * 1024, 0x5A);
        me.post_multipart(
            &format!("/app/cases/{id}/contest"),
            &[("csrf", &t), ("reason", "Ảnh chụp giấy tờ xe")],
            &[("photo", "IMG_0001.jpg", "image/jpeg", &photo)],
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("Ảnh quá lớn"), "{}", r.body);
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    for english in ["multipart", "length limit", "Error"] {
        assert!(!r.body.contains(english), "{english}: {}", r.body);
    }
}

/// A PNG of a few bytes whose header says 20000 × 20000 pixels (400 MP:
/// gigabytes once decoded) is refused at upload and never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_with_huge_dimensions_is_refused_at_upload() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    confirm_and_issue(&server, &id, now_ms()).await;
    let db = server.ingestor.context().db.clone();
    let session = citizen::start_session(&db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let bomb = png_header(20_000, 20_000);
    let wide = png_header(9_000, 10);
    let r = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &session.token);
        let page = me.get(&format!("/app/cases/{id}"));
        let t = csrf(&page.body);
        let url = format!("/app/cases/{id}/contest");
        let fields = [("csrf", t.as_str()), ("reason", "Ảnh hợp đồng mua bán")];
        [bomb, wide]
            .map(|png| me.post_multipart(&url, &fields, &[("photo", "a.png", "image/png", &png)]))
    })
    .await
    .unwrap();
    for r in &r {
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(r.body.contains("kích thước quá lớn"), "{}", r.body);
    }
    let contests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contests")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(contests, 0);
}

/// The signature, an IHDR chunk of `w` × `h` (8-bit RGB) with its CRC, and
/// IEND: what a decoder reads the size from.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// A paid case that a supervisor then closes still shows its receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_case_closed_later_keeps_its_receipt() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let now = now_ms();
    confirm_and_issue(&server, &id, now).await;
    let ctx = server.ingestor.context().clone();
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at, transaction_no) VALUES ('t-paid', $1, 'vnpay', \
         19000000, 'paid', '203.0.113.7', $2, $3, $2, '14012345')",
    )
    .bind(&id)
    .bind(now)
    .bind(now + 15 * 60_000)
    .execute(ctx.db.pool())
    .await
    .unwrap();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let system = Actor {
        id: "payments".into(),
        role: Role::System,
    };
    r.act(&id, &Action::Pay, &system, "", now).await.unwrap();
    let supervisor = Actor {
        id: "gs.em".into(),
        role: Role::Supervisor,
    };
    r.act(&id, &Action::Close, &supervisor, "", now)
        .await
        .unwrap();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let page = tokio::task::spawn_blocking(move || {
        signed_in(addr, &session.token).get(&format!("/app/cases/{id}"))
    })
    .await
    .unwrap();
    assert!(
        page.body.contains("id=\"receipt\"") && page.body.contains("14012345"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=\"deadline\""), "{}", page.body);
}

/// A contest commits whole or not at all: the contest's row, the case's
/// move to `contested` and the owner's answer are one transaction (they
/// were three writes: a failure after the first left a reason with no
/// contest, after the second a contested case the page still called
/// unanswered). A write that fails at the last step (staged with a
/// trigger) leaves the case as it was, with no contest row; without the
/// trigger the same request contests the case with its answer recorded.
/// Accepting a case a contest has answered is refused, and does not
/// overwrite the contest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contest_commits_whole_or_not_at_all() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let mut ids = seed::seed(&server, SITE, 2).await;
    let (id, other) = (ids.remove(0), ids.remove(0));
    confirm_and_issue(&server, &id, now_ms()).await;
    confirm_and_issue(&server, &other, now_ms()).await;
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.pool();
    sqlx::query(
        "CREATE TRIGGER fail_contested BEFORE UPDATE OF owner_response ON events \
         WHEN NEW.owner_response = 'contested' BEGIN SELECT RAISE(ABORT, 'staged failure'); END",
    )
    .execute(db)
    .await
    .unwrap();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let contest = move |token: String, id: String| {
        let mut me = signed_in(addr, &token);
        let page = me.get(&format!("/app/cases/{id}"));
        let t = csrf(&page.body);
        me.post_multipart(
            &format!("/app/cases/{id}/contest"),
            &[("csrf", &t), ("reason", "Tôi không điều khiển xe hôm đó")],
            &[],
        )
    };
    let (token, case) = (session.token.clone(), id.clone());
    let failed = tokio::task::spawn_blocking(move || contest(token, case))
        .await
        .unwrap();
    assert_eq!(failed.status, 500, "{}", failed.body);
    let row = |id: String| async move {
        let r = sqlx::query(
            "SELECT state, owner_response, (SELECT COUNT(*) FROM contests c \
             WHERE c.event_id = e.event_id) FROM events e WHERE event_id = $1",
        )
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap();
        (
            r.get::<String, _>(0),
            r.get::<Option<String>, _>(1),
            r.get::<i64, _>(2),
        )
    };
    assert_eq!(row(id.clone()).await, ("notice_issued".into(), None, 0));

    sqlx::query("DROP TRIGGER fail_contested")
        .execute(db)
        .await
        .unwrap();
    let (token, case) = (session.token.clone(), id.clone());
    let (done, accepted) = tokio::task::spawn_blocking(move || {
        let done = contest(token.clone(), case.clone());
        let mut me = signed_in(addr, &token);
        let page = me.get(&format!("/app/cases/{case}"));
        let accepted = me.post(
            &format!("/app/cases/{case}/accept"),
            &[("csrf", &csrf(&page.body))],
        );
        (done, accepted)
    })
    .await
    .unwrap();
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        row(id.clone()).await,
        ("contested".into(), Some("contested".into()), 1)
    );
    assert_eq!(accepted.status, 409, "{}", accepted.body);
    assert_eq!(row(id).await.1.as_deref(), Some("contested"));

    // The other way round: an acceptance committed after the contest form
    // was read (another tab) is not overwritten by the contest.
    sqlx::query("UPDATE events SET owner_response = 'accepted' WHERE event_id = $1")
        .bind(&other)
        .execute(db)
        .await
        .unwrap();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: None,
    };
    let mut tx = ingest_server::audit::begin(&ctx.db).await.unwrap();
    let citizen = Actor {
        id: "citizen:x".into(),
        role: Role::System,
    };
    let refused = r
        .contest_in(&mut tx, &other, &citizen, "contest 2", now_ms())
        .await;
    assert!(
        matches!(refused, Err(ingest_server::review::ReviewError::Conflict)),
        "{refused:?}"
    );
    drop(tx);
    assert_eq!(
        row(other).await,
        ("notice_issued".into(), Some("accepted".into()), 0)
    );
}

/// A contest refused after its photo was stored (here a failure staged in
/// its transaction) leaves no photo behind: the bytes are deleted, unless
/// something else names the same bytes (another contest's photo, here),
/// which keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_contest_leaves_no_photo() {
    let (_dir, server) = start().await;
    let addr = server.http_addr;
    let mut ids = seed::seed(&server, SITE, 2).await;
    let (id, other) = (ids.remove(0), ids.remove(0));
    confirm_and_issue(&server, &id, now_ms()).await;
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.pool();
    // The same bytes as one photo below, already another contest's.
    let shared = png_header(640, 480);
    let mut own = png_header(800, 600);
    own.extend_from_slice(b"own photo");
    let shared_sha = ctx
        .evidence
        .put(bytes::Bytes::from(shared.clone()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO contests (id, event_id, owner_id, reason, photo_sha256, photo_type, \
         created_at) VALUES ('earlier', $1, 'o', 'r', $2, 'image/png', $3)",
    )
    .bind(&other)
    .bind(&shared_sha)
    .bind(now_ms())
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER fail_contested BEFORE UPDATE OF owner_response ON events \
         WHEN NEW.owner_response = 'contested' BEGIN SELECT RAISE(ABORT, 'staged failure'); END",
    )
    .execute(db)
    .await
    .unwrap();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let (photos, case) = ([own.clone(), shared.clone()], id.clone());
    let answers = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &session.token);
        photos.map(|png| {
            let t = csrf(&me.get(&format!("/app/cases/{case}")).body);
            me.post_multipart(
                &format!("/app/cases/{case}/contest"),
                &[("csrf", &t), ("reason", "Ảnh giấy tờ bán xe")],
                &[("photo", "a.png", "image/png", &png)],
            )
            .status
        })
    })
    .await
    .unwrap();
    assert_eq!(answers, [500, 500]);
    let sha = protocol::sha256_hex(&own);
    assert!(
        !ctx.evidence.contains(&sha).await.unwrap(),
        "the refused contest's photo is gone"
    );
    assert_eq!(
        ctx.evidence.get(&shared_sha).await.unwrap(),
        bytes::Bytes::from(shared),
        "bytes another contest names stay"
    );
    let contests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contests")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(contests, 1);
}
