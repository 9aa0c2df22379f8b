//! The citizen app over HTTP against a running server, with sessions made
//! as the sign-in makes them (the OpenID Connect path itself is in
//! `citizen_sso.rs`): only confirmed cases of the citizen's own vehicles
//! are listed; someone else's case and its evidence answer 404 and the
//! attempt is audited; the owner accepts, or contests with a reason and a
//! photo, which sends the case back to police, who see the contest in the
//! console and uphold the fine.

mod common;

use common::seed::{self, PASSWORD};
use common::web::{Client, csrf};
use common::*;
use ingest_server::app;
use ingest_server::citizen::{self, CITIZEN_COOKIE};
use ingest_server::db::now_ms;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use sqlx::Row;

const SITE: &str = "hp-lechan-tolang";
/// The owner of 30A12345 in the seeded registry (see `seed.rs`).
const OWNER_NID: &str = "001199012345";
/// The owner of 30A12346.
const OTHER_NID: &str = "001088054321";

fn signed_in(addr: std::net::SocketAddr, token: &str) -> Client {
    let mut c = Client::new(addr);
    c.cookies.insert(CITIZEN_COOKIE.into(), token.into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_see_only_their_confirmed_cases_and_answer_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 3).await;
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.clone();
    let r = Reviewer {
        db: &db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    let police = Actor {
        id: "police".into(),
        role: Role::Police,
    };
    let system = Actor {
        id: "notices".into(),
        role: Role::System,
    };
    let now = now_ms();
    // Case 0: confirmed and notified. Case 1: confirmed and notified.
    // Case 2: still waiting for review — never shown to the citizen.
    for id in &ids[..2] {
        r.act(id, &Action::Claim, &op, "", now).await.unwrap();
        r.act(id, &Action::Accept, &op, "", now).await.unwrap();
        r.act(id, &Action::Confirm, &police, "", now).await.unwrap();
        r.act(id, &Action::IssueNotice, &system, "", now)
            .await
            .unwrap();
    }
    let owner = citizen::start_session(&db, OWNER_NID, "Hoàng Thị Giang", now)
        .await
        .unwrap();
    let other = citizen::start_session(&db, OTHER_NID, "Vũ Văn Hải", now)
        .await
        .unwrap();
    let (first, second, unreviewed) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

    let photo = Files::new(10).overview; // not an image: refused
    // A payment of the second case is open at the gateway (the person
    // pressed Pay in another tab): a contest now would leave the money on
    // a contested case.
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at) VALUES ('t-open', $1, 'vnpay', 1000, 'pending', \
         '203.0.113.7', $2, $3, $2)",
    )
    .bind(&ids[1])
    .bind(now)
    .bind(now + 15 * 60_000)
    .execute(db.pool())
    .await
    .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let db_in = db.clone();
    tokio::task::spawn_blocking(move || {
        // Without a session: the sign-in page.
        let mut anon = Client::new(addr);
        assert_eq!(anon.get("/app/").status, 303);
        assert_eq!(
            anon.get(&format!("/app/cases/{first}/evidence/overview.jpg"))
                .status,
            303
        );
        assert_eq!(
            anon.get("/app/manifest.webmanifest").status,
            200,
            "the PWA manifest is public"
        );
        assert_eq!(anon.get("/app/sw.js").status, 200);

        let mut me = signed_in(addr, &owner.token);
        let list = me.get("/app/");
        assert_eq!(list.status, 200);
        assert_eq!(
            list.headers.get("cache-control").map(String::as_str),
            Some("no-store"),
            "a citizen's notices are not kept in the browser's cache"
        );
        assert!(
            !list.headers.contains_key("strict-transport-security"),
            "plain HTTP on loopback: HTTPS is not pinned"
        );
        assert_eq!(
            anon.get("/app/app.css")
                .headers
                .get("cache-control")
                .map(String::as_str),
            Some("public, max-age=3600"),
            "static files keep their own caching"
        );
        assert!(list.body.contains(&first) && list.body.contains(&second));
        assert!(
            !list.body.contains(&unreviewed),
            "nothing reaches a citizen before police confirm it"
        );
        assert!(
            list.body.contains("19.000.000 ₫") || list.body.contains("₫"),
            "{}",
            list.body
        );
        let page = me.get(&format!("/app/cases/{first}"));
        assert_eq!(page.status, 200);
        assert!(page.body.contains("id=\"pay\"") && page.body.contains("id=\"contest\""));
        let img = me.get(&format!("/app/cases/{first}/evidence/overview.jpg"));
        assert_eq!(
            (img.status, img.headers["cache-control"].as_str()),
            (200, "private, no-store")
        );
        assert_eq!(img.headers["content-type"], "image/jpeg");
        assert!(img.headers["content-security-policy"].contains("sandbox"));
        // A device that declared a still as HTML does not get it served as
        // HTML on the citizen's origin.
        runtime.block_on(async {
            sqlx::query(
                "UPDATE evidence SET media_type = 'text/html' WHERE event_id = $1 AND name = 'overview.jpg'",
            )
            .bind(&first)
            .execute(db_in.pool())
            .await
            .unwrap();
        });
        let odd = me.get(&format!("/app/cases/{first}/evidence/overview.jpg"));
        assert_eq!(odd.headers["content-type"], "application/octet-stream");
        assert_eq!(me.get(&format!("/app/cases/{unreviewed}")).status, 404);

        // Web Push: the VAPID key for the app, and subscriptions checked.
        let key = me.get("/app/push/key");
        assert_eq!(key.status, 200);
        let k: serde_json::Value = serde_json::from_str(&key.body).unwrap();
        assert_eq!(
            k["publicKey"].as_str().unwrap().len(),
            87,
            "65-byte P-256 point, base64url"
        );
        assert!(list.body.contains("id=\"push\" data-csrf="));
        let t0 = csrf(&list.body);
        let sub = br#"{"endpoint":"https://push.example/x","keys":{"p256dh":"bad","auth":"bad"}}"#;
        let r = me.send_raw("POST", "/app/push/subscribe", Some("application/json"), sub);
        assert_eq!(r.status, 403, "no CSRF header");
        me.extra_headers.push(("X-CSRF-Token".into(), t0.clone()));
        let r = me.send_raw("POST", "/app/push/subscribe", Some("application/json"), sub);
        me.extra_headers.clear();
        assert_eq!(
            r.status, 409,
            "keys that are not a P-256 point and a 16-byte secret: {}",
            r.body
        );

        // Someone else: not found, for the case and for its evidence.
        let mut them = signed_in(addr, &other.token);
        assert!(them.get("/app/").body.contains("id=\"empty\""));
        assert_eq!(them.get(&format!("/app/cases/{first}")).status, 404);
        assert_eq!(
            them.get(&format!("/app/cases/{first}/evidence/overview.jpg"))
                .status,
            404
        );

        // Accept the first case (a forged form changes nothing).
        let t = csrf(&page.body);
        assert_eq!(
            me.post(&format!("/app/cases/{first}/accept"), &[("csrf", "bad")])
                .status,
            403
        );
        assert_eq!(
            me.post(&format!("/app/cases/{first}/accept"), &[("csrf", &t)])
                .status,
            303
        );
        assert_eq!(
            me.post(&format!("/app/cases/{first}/accept"), &[("csrf", &t)])
                .status,
            409,
            "answered once"
        );

        // Contest the second: no reason, a non-image "photo", then a real one.
        let url = format!("/app/cases/{second}/contest");
        let r = me.post_multipart(&url, &[("csrf", &t), ("reason", " ")], &[]);
        assert_eq!(r.status, 409);
        let r = me.post_multipart(
            &url,
            &[("csrf", &t), ("reason", "Xe đã bán")],
            &[("photo", "x.jpg", "image/jpeg", &photo)],
        );
        assert_eq!(r.status, 409, "not a JPEG or PNG");
        // A small real PNG (its header is read for the dimensions).
        let png = &small_png()[..];
        let reason = [
            ("csrf", t.as_str()),
            ("reason", "Tôi đã bán xe này trước ngày vi phạm"),
        ];
        let r = me.post_multipart(&url, &reason, &[]);
        assert_eq!(r.status, 409, "a payment is open: {}", r.body);
        assert!(r.body.contains("đang được thanh toán"), "{}", r.body);
        // The order expired unpaid and the reconciler cancelled it.
        runtime.block_on(async {
            sqlx::query("UPDATE payments SET state = 'cancelled' WHERE txn_ref = 't-open'")
                .execute(db_in.pool())
                .await
                .unwrap();
        });
        // A reason longer than the form allows is refused with the limit.
        let long = "x".repeat(1001);
        let r = me.post_multipart(&url, &[("csrf", &t), ("reason", &long)], &[]);
        assert_eq!(r.status, 409);
        assert!(r.body.contains("1000"), "{}", r.body);
        let r = me.post_multipart(
            &url,
            &[
                ("csrf", &t),
                ("reason", "Tôi đã bán xe này trước ngày vi phạm"),
            ],
            &[("photo", "hop-dong.png", "image/png", png)],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        let page = me.get(&format!("/app/cases/{second}"));
        assert!(page.body.contains("Đang khiếu nại"));

        // Police see the contest with its photo and uphold the fine.
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", PASSWORD).status, 303);
        let case = cuong.get(&format!("/console/cases/{second}"));
        assert!(case.body.contains("id=\"contests\"") && case.body.contains("Tôi đã bán xe này"));
        let i = case.body.find("/contest-photo/").unwrap();
        let photo_url = case.body[..i]
            .rfind('"')
            .map(|s| &case.body[s + 1..])
            .unwrap();
        let photo_url = &photo_url[..photo_url.find('"').unwrap()];
        let got = cuong.get(photo_url);
        assert_eq!((got.status, &got.bytes[..]), (200, png));
        // An operator sees neither the contested case (past review: the
        // police's and the owner's) nor the owner's contest photo.
        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", PASSWORD).status, 303);
        let seen = an.get(&format!("/console/cases/{second}"));
        assert_eq!(seen.status, 404);
        assert!(!seen.body.contains("Tôi đã bán xe này"), "an operator sees the contest");
        assert_eq!(an.get(photo_url).status, 403);
        let tok = csrf(&case.body);
        let r = cuong.post(
            &format!("/console/cases/{second}/action"),
            &[("csrf", &tok), ("action", "uphold")],
        );
        assert_eq!(r.status, 409, "upholding needs a reason for the owner");
        let r = cuong.post(
            &format!("/console/cases/{second}/action"),
            &[
                ("csrf", &tok),
                ("action", "uphold"),
                ("reason", "Hợp đồng mua bán chưa sang tên"),
            ],
        );
        assert_eq!(r.status, 303);
        assert!(
            me.get(&format!("/app/cases/{second}"))
                .body
                .contains("Chờ nộp phạt")
        );
    })
    .await
    .unwrap();

    // The owner's words stay in the contest record: the case's history
    // and the audit log (read by supervisors and admins, copied into the
    // court package) only name the contest.
    let leaked: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%Tôi đã bán xe này%') \
         + (SELECT COUNT(*) FROM case_transitions WHERE reason LIKE '%Tôi đã bán xe này%' \
            OR detail LIKE '%Tôi đã bán xe này%')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap()
    .get(0);
    assert_eq!(leaked, 0);

    let denied: i64 =
        sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = 'citizen.case_denied'")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(denied, 3, "every refused look is audited");
    let leaked: i64 =
        sqlx::query("SELECT COUNT(*) FROM audit_log WHERE actor LIKE $1 OR detail LIKE $1")
            .bind(format!("%{OWNER_NID}%"))
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(leaked, 0, "national ID numbers stay out of the audit log");
    let response: Option<String> =
        sqlx::query("SELECT owner_response FROM events WHERE event_id = $1")
            .bind(&ids[0])
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(response.as_deref(), Some("accepted"));
}

/// A 4×3 PNG: a stand-in for a photo of the sale contract.
fn small_png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(4, 3)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A valid subscription of a browser at `endpoint` (keys of the right shape).
fn subscription(endpoint: &str) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    serde_json::json!({"endpoint": endpoint, "keys": {
        "p256dh": b64.encode([4u8; 65]), "auth": b64.encode([7u8; 16])}})
    .to_string()
    .into_bytes()
}

/// Signing out removes the push subscriptions this browser registered (the
/// ones the server remembers in its cookie, and the endpoint the page's
/// script sends), not the citizen's other devices; so the next person on a
/// shared phone gets none of the previous one's notices, and may subscribe
/// that browser. One subscription is also removed on its own. A sign-out
/// without the cookie still removes what its session registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_forgets_this_browsers_push_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let db = server.ingestor.context().db.clone();
    let now = now_ms();
    let mut sessions = Vec::new();
    for nid in [OWNER_NID, OWNER_NID, OTHER_NID] {
        sessions.push(
            citizen::start_session(&db, nid, "Giang", now)
                .await
                .unwrap(),
        );
    }
    let (phone, tablet, next) = ("/fcm/send/phone", "/fcm/send/tablet", "/fcm/send/x");
    let endpoints = tokio::task::spawn_blocking(move || {
        let url = |p: &str| format!("https://fcm.googleapis.com{p}");
        let subscribe = |c: &mut Client, endpoint: &str| {
            let t = csrf(&c.get("/app/").body);
            c.extra_headers = vec![("X-CSRF-Token".into(), t)];
            let body = subscription(&url(endpoint));
            let r = c.send_raw(
                "POST",
                "/app/push/subscribe",
                Some("application/json"),
                &body,
            );
            c.extra_headers.clear();
            r.status
        };
        let mut me = signed_in(addr, &sessions[0].token);
        assert_eq!(subscribe(&mut me, phone), 201);
        assert!(me.cookies.contains_key("tv_push"), "the browser's ids kept");
        let mut my_tablet = signed_in(addr, &sessions[1].token);
        assert_eq!(subscribe(&mut my_tablet, tablet), 201);
        let t = csrf(&me.get("/app/").body);
        assert_eq!(me.post("/app/logout", &[("csrf", &t)]).status, 303);
        assert!(!me.cookies.contains_key("tv_push"));
        // The next person on that phone subscribes it for themselves.
        let mut them = signed_in(addr, &sessions[2].token);
        assert_eq!(subscribe(&mut them, phone), 201, "the endpoint is free");
        // The page's script sends the endpoint with the sign-out form.
        assert_eq!(subscribe(&mut them, next), 201);
        them.cookies.remove("tv_push");
        let t = csrf(&them.get("/app/").body);
        let r = them.post("/app/logout", &[("csrf", &t), ("endpoint", &url(next))]);
        assert_eq!(r.status, 303);
        // One subscription removed on its own: CSRF-checked.
        let body = serde_json::json!({"endpoint": url(tablet)}).to_string();
        let path = "/app/push/unsubscribe";
        let r = my_tablet.send_raw("POST", path, Some("application/json"), body.as_bytes());
        assert_eq!(r.status, 403, "no CSRF header");
        let t = csrf(&my_tablet.get("/app/").body);
        my_tablet.extra_headers = vec![("X-CSRF-Token".into(), t)];
        let r = my_tablet.send_raw("POST", path, Some("application/json"), body.as_bytes());
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"removed":true}"#));
    })
    .await;
    endpoints.unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT national_id FROM push_subscriptions")
        .fetch_all(db.pool())
        .await
        .unwrap();
    // The next person's phone subscription went with their session at
    // sign-out, although their cookie was lost (the session names it);
    // the tablet's survived the phone's sign-out (removed on its own above).
    assert!(left.is_empty(), "{left:?}");
}

/// A failure on our side while a contest is recorded answers the generic
/// server error page, never the database's text, and keeps no contest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_failure_is_not_shown_to_the_citizen() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let ctx = server.ingestor.context().clone();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = now_ms();
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
        r.act(&id, &action, &actor, "", now).await.unwrap();
    }
    sqlx::query(
        "CREATE TRIGGER fail_transitions BEFORE INSERT ON case_transitions \
         BEGIN SELECT RAISE(ABORT, 'internal-xyz'); END",
    )
    .execute(ctx.db.pool())
    .await
    .unwrap();
    let session = citizen::start_session(&ctx.db, OWNER_NID, "Giang", now)
        .await
        .unwrap();
    let r = tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &session.token);
        let t = csrf(&me.get(&format!("/app/cases/{id}")).body);
        let form = [("csrf", t.as_str()), ("reason", "Tôi đã bán xe này")];
        me.post_multipart(&format!("/app/cases/{id}/contest"), &form, &[])
    })
    .await
    .unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(!r.body.contains("internal-xyz"), "{}", r.body);
    assert!(r.body.contains("Lỗi hệ thống"), "{}", r.body);
    let kept: i64 = sqlx::query("SELECT COUNT(*) FROM contests")
        .fetch_one(ctx.db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 0);
}

/// Claim, accept and confirm `id` (an operator, then police).
async fn confirm(server: &app::Running, id: &str) {
    let ctx = server.ingestor.context();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = now_ms();
    for (action, who, role) in [
        (Action::Claim, "op", Role::Operator),
        (Action::Accept, "op", Role::Operator),
        (Action::Confirm, "police", Role::Police),
    ] {
        let actor = Actor {
            id: who.into(),
            role,
        };
        r.act(id, &action, &actor, "", now).await.unwrap();
    }
}

/// A case held back for a person — the registration does not fit the
/// vehicle the camera saw (a misread or cloned plate), or is not active —
/// keeps the registered owner's id, but that owner, possibly innocent, is
/// not shown it (the fine, someone else's car and driver): not listed, and
/// its page, evidence and answers are "not found" as for any case not
/// theirs. Their case whose owner is resolved is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_held_back_for_a_person_is_not_shown_to_the_registered_owner() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 3).await;
    let db = server.ingestor.context().db.clone();
    for (id, status) in [
        (&ids[1], "vehicle_mismatch"),
        (&ids[2], "registration_not_active"),
    ] {
        sqlx::query("UPDATE events SET owner_status = $1 WHERE event_id = $2")
            .bind(status)
            .bind(id)
            .execute(db.pool())
            .await
            .unwrap();
    }
    for id in &ids {
        confirm(&server, id).await;
    }
    let owners: Vec<Option<String>> =
        sqlx::query_scalar("SELECT owner_id FROM events ORDER BY event_time_ms")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(owners, vec![Some("o1".to_string()); 3], "all carry o1's id");
    let session = citizen::start_session(&db, OWNER_NID, "Hoàng Thị Giang", now_ms())
        .await
        .unwrap();
    let ids2 = ids.clone();
    tokio::task::spawn_blocking(move || {
        let mut me = signed_in(addr, &session.token);
        let list = me.get("/app/");
        assert_eq!(list.status, 200);
        assert!(list.body.contains(&ids2[0]), "the resolved case is theirs");
        let t = csrf(&list.body);
        for held in &ids2[1..] {
            assert!(!list.body.contains(held.as_str()), "{held} listed");
            assert_eq!(me.get(&format!("/app/cases/{held}")).status, 404);
            assert_eq!(
                me.get(&format!("/app/cases/{held}/evidence/overview.jpg"))
                    .status,
                404
            );
            let r = me.post(&format!("/app/cases/{held}/accept"), &[("csrf", &t)]);
            assert_eq!(r.status, 404);
            let r = me.post(&format!("/app/cases/{held}/pay"), &[("csrf", &t)]);
            assert_eq!(r.status, 404);
        }
        assert_eq!(
            me.get(&format!("/app/cases/{}/evidence/overview.jpg", ids2[0]))
                .status,
            200
        );
    })
    .await
    .unwrap();
    let answered: i64 = sqlx::query("SELECT COUNT(*) FROM events WHERE owner_response IS NOT NULL")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(answered, 0);
}

/// The case page says the legal basis and the place as the notice does:
/// the article in the case's own fine schedule (`notices::text::article`),
/// not a fixed decree and a raw code; the camera's description from the
/// camera registry, not its ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_page_gives_the_basis_and_place_in_the_notices_words() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let db = server.ingestor.context().db.clone();
    confirm(&server, &id).await;
    // A later decree's schedule, as a case dated under it would carry.
    sqlx::query("UPDATE events SET fine_schedule = 'decree-999-2026' WHERE event_id = $1")
        .bind(&id)
        .execute(db.pool())
        .await
        .unwrap();
    let desc = "Ngã tư Lê Chân – Tô Lăng, hướng Bắc";
    ingest_server::cameras::enrol(
        &db,
        &ingest_server::cameras::NewCamera {
            device_id: "edge-c1".into(),
            camera_id: "cam-north".into(),
            site: None,
            description: desc.into(),
            latitude: None,
            longitude: None,
            enabled_rules: None,
            certificate_no: None,
            certified_until: None,
        },
    )
    .await
    .unwrap();
    let session = citizen::start_session(&db, OWNER_NID, "Giang", now_ms())
        .await
        .unwrap();
    let page = tokio::task::spawn_blocking(move || {
        signed_in(addr, &session.token).get(&format!("/app/cases/{id}"))
    })
    .await
    .unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("điểm b khoản 9 Điều 6 Nghị định 999/2026/NĐ-CP"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("168/2024") && !page.body.contains("6.9.b"),
        "{}",
        page.body
    );
    assert!(page.body.contains(desc), "{}", page.body);
    assert!(!page.body.contains("cam-north"), "{}", page.body);
}

/// A push subscription outlives its session's expiry (a notice comes days
/// after the two-hour session: reaching the citizen then is what Web Push
/// is for), but goes when that session signs out; another session's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscriptions_outlive_expiry_and_go_at_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let db = server.ingestor.context().db.clone();
    let now = now_ms();
    let hour = 3_600_000;
    // A session started now, and one an hour later (still running when
    // the first expires).
    let early = citizen::start_session(&db, OWNER_NID, "Giang", now)
        .await
        .unwrap();
    let later = citizen::start_session(&db, OTHER_NID, "Hải", now + hour)
        .await
        .unwrap();
    let later_token = later.token.clone();
    tokio::task::spawn_blocking(move || {
        for (token, endpoint) in [(&early.token, "/fcm/send/a"), (&later.token, "/fcm/send/b")] {
            let mut c = signed_in(addr, token);
            let t = csrf(&c.get("/app/").body);
            c.extra_headers = vec![("X-CSRF-Token".into(), t)];
            let body = subscription(&format!("https://fcm.googleapis.com{endpoint}"));
            let r = c.send_raw(
                "POST",
                "/app/push/subscribe",
                Some("application/json"),
                &body,
            );
            assert_eq!(r.status, 201, "{}", r.body);
        }
    })
    .await
    .unwrap();
    let left = || async {
        sqlx::query_scalar::<_, String>("SELECT national_id FROM push_subscriptions")
            .fetch_all(db.pool())
            .await
            .unwrap()
    };
    assert_eq!(left().await.len(), 2);
    let swept = citizen::delete_expired_sessions(&db, now + citizen::SESSION_MS + 1)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(left().await.len(), 2, "expiry keeps both");
    tokio::task::spawn_blocking(move || {
        let mut c = signed_in(addr, &later_token);
        let t = csrf(&c.get("/app/").body);
        assert_eq!(c.post("/app/logout", &[("csrf", &t)]).status, 303);
    })
    .await
    .unwrap();
    assert_eq!(
        left().await,
        [OWNER_NID],
        "the signed-out session's is gone"
    );
}
