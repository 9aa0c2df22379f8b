//! The review console over real HTTP against a running server: signing in
//! (and the lock-out), CSRF on every state change, role checks on every
//! page, the operator's review of a case with a plate correction, the
//! officer's batch confirmation with the owner beside the evidence (and that
//! view logged), and the two-person rule across the web.

mod common;

use common::seed;
use common::web::{Client, csrf};
use common::*;
use ingest_server::accounts;
use ingest_server::app;
use ingest_server::audit::{self, Verification};
use sqlx::Row;

const SITE: &str = "hn-hoankiem-trangtien";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_review_and_police_confirm_through_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    let db = server.ingestor.context().db.clone();

    let ids = seed::seed(&server, SITE, 2).await;
    let admin = ingest_server::audit::Who::new("test", ingest_server::workflow::Role::Admin);
    accounts::create(
        &db,
        "qt.em",
        "Đỗ Em",
        ingest_server::workflow::Role::Admin,
        Some(seed::PASSWORD),
        &admin,
    )
    .await
    .unwrap();
    let db2 = db.clone();
    let ids2 = ids.clone();
    let db3 = db.clone();
    tokio::task::spawn_blocking(move || {
        let (first, second) = (ids2[0].clone(), ids2[1].clone());
        // --- not signed in: pages send you to the sign-in form, actions are refused
        let mut anon = Client::new(addr);
        let r = anon.get("/console/queue");
        assert_eq!(
            (r.status, r.headers.get("location").map(String::as_str)),
            (303, Some("/console/login"))
        );
        let r = anon.post(
            &format!("/console/cases/{first}/action"),
            &[("csrf", "x"), ("action", "claim")],
        );
        assert_eq!(r.status, 401);
        let r = anon.get(&format!("/console/cases/{first}/evidence/overview.jpg"));
        assert_eq!(r.status, 303, "evidence needs a session");
        assert_eq!(anon.login("op.an", "wrong password here").status, 401);

        // --- the operator
        let mut an = Client::new(addr);
        let r = an.login("op.an", "correct horse battery");
        assert_eq!(r.status, 303, "{}", r.body);
        let cookie = r.headers.get("set-cookie").unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let q = an.get("/console/queue");
        assert_eq!(q.status, 200);
        assert!(
            q.body.contains(&first) && q.body.contains(&second),
            "both cases queued"
        );
        let token = csrf(&q.body);
        // A forged form (no or a wrong token) changes nothing.
        let r = an.post("/console/queue/next", &[("csrf", "0000")]);
        assert_eq!(r.status, 403);
        let r = an.post("/console/queue/next", &[("csrf", &token)]);
        assert_eq!(r.status, 303);
        let case_url = r.headers["location"].clone();
        assert_eq!(case_url, format!("/console/cases/{first}"), "oldest first");
        let page = an.get(&case_url);
        assert_eq!(page.status, 200);
        assert_eq!(
            page.headers.get("cache-control").map(String::as_str),
            Some("no-store"),
            "a case page is never kept in a shared workstation's cache"
        );
        assert!(
            page.body.contains("id=\"accept-form\""),
            "claimed: the decision forms are there"
        );
        assert!(page.body.contains("30A12345"));
        assert!(
            page.body.contains("Đọc biển ở khung hình 120372")
                && page.body.contains("90×30 @ (905, 745)"),
            "where the plate was read, from the signed event"
        );
        assert!(
            page.body.contains("id=\"limitation\""),
            "the one-year limitation is shown"
        );
        assert!(
            !page.body.contains("Hoàng Thị Giang") && !page.body.contains("id=\"owner\""),
            "operators never see the owner"
        );
        let img = an.get(&format!("{case_url}/evidence/overview.jpg"));
        assert_eq!(
            (img.status, img.headers["content-type"].as_str()),
            (200, "image/jpeg")
        );
        // The operator may not open the officer's queue, nor confirm.
        assert_eq!(an.get("/console/confirm").status, 403);
        let act = format!("{case_url}/action");
        let r = an.post(
            &act,
            &[
                ("csrf", &token),
                ("action", "correct_plate"),
                ("plate", "30A-123.46"),
                ("reason", ""),
            ],
        );
        assert_eq!(r.status, 409, "a correction needs a reason");
        // A character the grammar does not know is refused, not dropped
        // (dropping `ɱ` would leave the valid plate 30A12346 of someone
        // the operator did not mean).
        let r = an.post(
            &act,
            &[
                ("csrf", &token),
                ("action", "correct_plate"),
                ("plate", "30Aɱ-123.46"),
                ("reason", "typo"),
            ],
        );
        assert!(
            (400..500).contains(&r.status),
            "refused: {} {}",
            r.status,
            r.body
        );
        let r = an.post(
            &act,
            &[
                ("csrf", &token),
                ("action", "correct_plate"),
                ("plate", "30A-123.46"),
                ("reason", "5 read as 6"),
            ],
        );
        assert_eq!(r.status, 303);
        let r = an.post(&act, &[("csrf", &token), ("action", "accept")]);
        assert_eq!(r.status, 303);
        assert_eq!(
            r.headers["location"],
            format!("/console/cases/{second}"),
            "on to the next case"
        );
        let r = an.post(&act, &[("csrf", &token), ("action", "confirm")]);
        assert_eq!(r.status, 403, "an operator cannot confirm");

        // A second operator does not get the case the first one holds.
        let mut binh = Client::new(addr);
        assert_eq!(binh.login("op.binh", "correct horse battery").status, 303);
        let q = binh.get("/console/queue");
        assert!(!q.body.contains(&second), "held by op.an");
        let page = binh.get(&format!("/console/cases/{second}"));
        assert!(page.body.contains("id=\"claimed\""));
        let t = csrf(&q.body);
        let r = binh.post(
            &format!("/console/cases/{second}/action"),
            &[("csrf", &t), ("action", "accept")],
        );
        assert_eq!(r.status, 409);

        // --- the officer: owner beside the evidence, batch confirmation
        let mut cuong = Client::new(addr);
        assert_eq!(
            cuong.login("csgt.cuong", "correct horse battery").status,
            303
        );
        let list = cuong.get("/console/confirm");
        assert_eq!(list.status, 200);
        assert!(list.body.contains(&first) && !list.body.contains(&second));
        // Before confirming, the officer reads what confirming charges (the
        // middle of the 18–20 million range), beside the range.
        assert!(
            list.body.contains("Số tiền phạt khi xác nhận")
                && list.body.contains("19.000.000 ₫")
                && list.body.contains("18.000.000 ₫ – 20.000.000 ₫"),
            "the amount to charge beside the legal range: {}",
            list.body
        );
        assert!(
            list.body.contains("Vũ Văn Hải"),
            "owner of the corrected plate 30A12346"
        );
        let t = csrf(&list.body);
        let (rev_key, rev) = (format!("rev.{first}"), shown_revision(&list.body, &first));
        let r = cuong.post(
            "/console/confirm",
            &[
                ("csrf", &t),
                ("case", &first),
                (&rev_key, &rev),
                ("case", "no-such-case"),
            ],
        );
        assert_eq!(r.status, 200);
        assert!(r.body.contains("id=\"flash\""), "{}", r.body);
        let page = cuong.get(&format!("/console/cases/{first}"));
        assert!(page.body.contains("CSGT đã xác nhận"), "confirmed");
        // The amount the notice and the payment carry, beside the range.
        assert!(
            page.body
                .contains("<strong id=\"fine-amount\">19.000.000 ₫</strong>")
                && page.body.contains("18.000.000 ₫ – 20.000.000 ₫"),
            "the amount charged on the case page: {}",
            page.body
        );
        assert!(
            page.body.contains("Lê Cường") && page.body.contains("Nguyễn An"),
            "who accepted and who confirmed"
        );
        // Confirmed, it is the police's and the owner's: not the
        // operator's to open, nor its evidence.
        assert_eq!(an.get(&format!("/console/cases/{first}")).status, 404);
        assert_eq!(
            an.get(&format!("/console/cases/{first}/evidence/overview.jpg"))
                .status,
            404
        );
        assert!(
            page.body.contains("id=\"owner\""),
            "the owner beside the evidence"
        );
        // A case no operator has accepted: its plate may be a misread, so
        // nobody's registration is looked up for it.
        let views = |db: ingest_server::db::Db| async move {
            sqlx::query("SELECT COUNT(*) FROM registry_access_log")
                .fetch_one(db.pool())
                .await
                .unwrap()
                .get::<i64, _>(0)
        };
        let before = tokio::runtime::Handle::current().block_on(views(db3.clone()));
        let undecided = cuong.get(&format!("/console/cases/{second}"));
        assert_eq!(undecided.status, 200);
        assert!(
            undecided.body.contains("id=\"owner-pending\"")
                && !undecided.body.contains("id=\"owner\""),
            "no owner before acceptance"
        );
        let after = tokio::runtime::Handle::current().block_on(views(db3.clone()));
        assert_eq!(before, after, "and no look-up logged");
        // Signing out ends the session on the server.
        let t = csrf(&page.body);
        assert_eq!(cuong.post("/console/logout", &[("csrf", &t)]).status, 303);
        assert_eq!(cuong.get("/console/confirm").status, 303);

        // --- the auditor reads the audit log and the chain's verification
        let mut dung = Client::new(addr);
        assert_eq!(dung.login("kt.dung", "correct horse battery").status, 303);
        let a = dung.get("/console/audit");
        assert!(a.body.contains("case.confirm") && a.body.contains("owner.view"));
        assert!(a.body.contains("id=\"chain\"") && !a.body.contains("flash error"));
        // A signed anchor of the chain to keep outside the database; the
        // download itself is audited.
        assert!(a.body.contains("href=\"/console/audit/anchor\""));
        let anc = dung.get("/console/audit/anchor");
        assert_eq!(anc.status, 200, "{}", anc.body);
        assert!(anc.headers["content-disposition"].starts_with("attachment"));
        let anchored = ingest_server::audit::anchor::parse(&anc.body).unwrap();
        tokio::runtime::Handle::current()
            .block_on(ingest_server::audit::anchor::check(&db3, &anchored))
            .unwrap();
        assert!(dung.get("/console/audit").body.contains("audit.anchor"));
        assert_eq!(
            dung.get("/console/queue").status,
            403,
            "auditors do not review"
        );
        assert_eq!(dung.get("/console/health").status, 200);

        // --- administration: reasons by a supervisor-or-admin, accounts by an admin
        assert_eq!(
            dung.get("/console/admin").status,
            403,
            "auditors do not administer"
        );
        let mut em = Client::new(addr);
        assert_eq!(em.login("qt.em", seed::PASSWORD).status, 303);
        let page = em.get("/console/admin");
        assert_eq!(page.status, 200);
        let t = csrf(&page.body);
        assert_eq!(
            em.get(&format!("/console/cases/{first}")).status,
            403,
            "admins see no case data"
        );
        let user = |pw: &'static str| {
            [
                ("username", "op.giau"),
                ("display_name", "Mai Giàu"),
                ("role", "operator"),
                ("password", pw),
            ]
        };
        let with_csrf = |f: [(&'static str, &'static str); 4]| {
            let mut v = vec![("csrf", t.as_str())];
            v.extend(f);
            v
        };
        assert_eq!(
            em.post("/console/admin/users", &with_csrf(user("short")))
                .status,
            409,
            "weak password refused"
        );
        let good = with_csrf(user("giau's long passphrase"));
        assert_eq!(em.post("/console/admin/users", &good).status, 303);
        let mut giau = Client::new(addr);
        assert_eq!(giau.login("op.giau", "giau's long passphrase").status, 303);
        assert_eq!(giau.get("/console/queue").status, 200);
        assert_eq!(
            em.post(
                "/console/admin/users/disable",
                &[("csrf", &t), ("username", "op.giau")]
            )
            .status,
            303
        );
        assert_eq!(
            giau.get("/console/queue").status,
            303,
            "a disabled account's session ends"
        );
        assert_eq!(
            em.post(
                "/console/admin/reasons",
                &[
                    ("csrf", &t),
                    ("code", "road_works"),
                    ("label_vi", "Thi công trên đường"),
                    ("label_en", "Road works")
                ]
            )
            .status,
            303
        );
        assert_eq!(
            em.post(
                "/console/admin/reasons",
                &[
                    ("csrf", &t),
                    ("code", "Bad Code"),
                    ("label_vi", "x"),
                    ("label_en", "x")
                ]
            )
            .status,
            409
        );
        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", seed::PASSWORD).status, 303);
        let tok = csrf(&an.get("/console/queue").body);
        let r = an.post("/console/queue/next", &[("csrf", &tok)]);
        let case_page = an.get(&r.headers["location"]).body;
        assert!(
            case_page.contains("value=\"road_works\""),
            "new reason offered"
        );
        assert_eq!(
            em.post(
                "/console/admin/reasons/retire",
                &[("csrf", &t), ("code", "road_works")]
            )
            .status,
            303
        );
        assert!(
            !an.get(&r.headers["location"]).body.contains("road_works"),
            "retired reason gone"
        );

        // --- lock-out after five failures, with the same message for everyone
        let mut m = Client::new(addr);
        for _ in 0..5 {
            assert_eq!(m.login("op.binh", "not the password").status, 401);
        }
        let r = m.login("op.binh", "correct horse battery");
        assert_eq!(r.status, 401);
        assert!(r.body.contains("15"), "locked: try again later");

        // --- one address trying a password on many accounts is held back
        // (20 failures), before any password check, while another address
        // still signs in.
        let from = |ip: &str| {
            let mut c = Client::new(addr);
            c.extra_headers.push(("X-Forwarded-For".into(), ip.into()));
            c
        };
        let mut sprayer = from("198.51.100.9");
        for i in 0..20 {
            let r = sprayer.login(&format!("user{i}"), "123456");
            assert_eq!(r.status, 401, "attempt {i}");
        }
        let r = sprayer.login("csgt.cuong", "correct horse battery");
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(r.headers.contains_key("retry-after"));
        assert!(r.body.contains("15"), "{}", r.body);
        assert_eq!(
            from("198.51.100.10")
                .login("csgt.cuong", "correct horse battery")
                .status,
            303
        );
    })
    .await
    .unwrap();

    // Every owner view by the officer was logged by the registry under his id.
    let cuong = accounts::by_username(&db2, "csgt.cuong")
        .await
        .unwrap()
        .unwrap();
    let views: i64 = sqlx::query("SELECT COUNT(*) FROM registry_access_log WHERE actor = $1")
        .bind(&cuong.user_id)
        .fetch_one(db2.pool())
        .await
        .unwrap()
        .get(0);
    assert!(views >= 2, "{views}");
    let state: String = sqlx::query("SELECT state FROM events WHERE event_id = $1")
        .bind(&ids[0])
        .fetch_one(db2.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "confirmed");
    assert!(matches!(
        audit::verify(&db2).await.unwrap(),
        Verification::Intact { .. }
    ));
    // An entry inserted past the head, outside the chain (not an append,
    // which moves the head in the same transaction), is a break.
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, role, action, subject, detail, prev_hash, hash) \
         SELECT seq + 1000000, at, actor, role, action, subject, detail, prev_hash, hash \
         FROM audit_log WHERE seq = 1",
    )
    .execute(db2.pool())
    .await
    .unwrap();
    assert!(matches!(
        audit::verify(&db2).await.unwrap(),
        Verification::Broken { .. }
    ));
}

/// The notice deadlines page: a case with no notice 10 days after
/// detection is listed for police (and badged on its page); an operator is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_notices_are_listed_for_police_not_operators() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 1).await;
    let late = ids[0].clone();
    let ctx = server.ingestor.context().clone();
    let now = ingest_server::db::now_ms();
    let r = ingest_server::notices::check_deadlines(&ctx, now + 11 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(r.flagged_late, 1);
    // A warning to the inspection register withdrawn when the fine was
    // paid after it stays listed, marked.
    sqlx::query(
        "INSERT INTO inspection_warnings (event_id, plate, plate_colour, created_at, reason, \
         withdrawn_at, withdrawn_reason) VALUES ($1, '30A12345', 'white', $2, 'no response', $3, \
         'paid late')",
    )
    .bind(&late)
    .bind(now)
    .bind(now + 60_000)
    .execute(ctx.db.pool())
    .await
    .unwrap();
    // Money taken at another amount waits for a person, listed for police.
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at, note) VALUES ('t-held', $1, 'vnpay', 1000, \
         'needs_person', '203.0.113.7', $2, $2, $2, 'needs a person: paid 1100')",
    )
    .bind(&late)
    .bind(now)
    .execute(ctx.db.pool())
    .await
    .unwrap();

    tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", seed::PASSWORD).status, 303);
        let page = cuong.get("/console/deadlines");
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("id=\"late-notices\""));
        assert!(page.body.contains("id=\"inspection-warnings\""));
        assert!(
            page.body.contains("id=\"payments-needing-a-person\"")
                && page.body.contains("data-txn=\"t-held\"")
                && page.body.contains("paid 1100"),
            "{}",
            page.body
        );
        assert!(
            page.body
                .contains(&format!("data-event=\"{late}\" class=\"withdrawn\""))
                && page.body.contains("Đã rút")
                && page.body.contains("paid late"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains(&format!("data-event=\"{late}\"")),
            "the late case is listed"
        );
        assert!(page.body.contains("Quá hạn gửi thông báo (10 ngày)"));
        assert!(
            cuong
                .get("/console/cases")
                .body
                .contains("href=\"/console/deadlines\""),
            "in the navigation"
        );
        let case = cuong.get(&format!("/console/cases/{late}"));
        assert!(case.body.contains("id=\"notice-late\""), "badged");

        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", seed::PASSWORD).status, 303);
        assert_eq!(an.get("/console/deadlines").status, 403);
        let page = an.get(&format!("/console/cases/{late}"));
        assert!(page.body.contains("Quá hạn gửi thông báo (10 ngày)"));
    })
    .await
    .unwrap();
}

/// Police see the case's own owner (`events.owner_id`, the person its
/// notice went to), not whoever the plate's registration names now: after
/// the vehicle is transferred (or the registry re-imported) the page still
/// shows owner A, and the new owner B's data is not read for a case that
/// is not about them. Only a case with no owner is looked up afresh, and
/// that is labelled; such a case awaiting confirmation is warned about,
/// and "select all" leaves it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn police_see_the_cases_own_owner_not_the_plates_new_one() {
    use ingest_server::review::Reviewer;
    use ingest_server::workflow::{Action, Actor, Role};
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 2).await;
    let ctx = server.ingestor.context().clone();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = ingest_server::db::now_ms();
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    let police = Actor {
        id: "police".into(),
        role: Role::Police,
    };
    let (confirmed, waiting) = (ids[0].clone(), ids[1].clone());
    for id in &ids {
        r.act(id, &Action::Claim, &op, "", now).await.unwrap();
        r.act(id, &Action::Accept, &op, "", now).await.unwrap();
    }
    r.act(&confirmed, &Action::Confirm, &police, "", now)
        .await
        .unwrap();
    // The vehicle changes hands: the registry now names o2 (Vũ Văn Hải).
    sqlx::query("UPDATE vehicles SET owner_id = 'o2' WHERE plate_text = '30A12345'")
        .execute(ctx.db.pool())
        .await
        .unwrap();
    // The other case's lookup failed: no owner yet.
    sqlx::query("UPDATE events SET owner_status = 'error', owner_id = NULL WHERE event_id = $1")
        .bind(&waiting)
        .execute(ctx.db.pool())
        .await
        .unwrap();
    let (c2, w2) = (confirmed.clone(), waiting.clone());
    tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", seed::PASSWORD).status, 303);
        let page = cuong.get(&format!("/console/cases/{c2}"));
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains(seed::OWNERS[0]),
            "the case's owner: {}",
            page.body
        );
        assert!(!page.body.contains(seed::OWNERS[1]), "not the new owner");
        assert!(
            page.body.contains("id=\"owner-moved\""),
            "the transfer is noted"
        );
        assert!(!page.body.contains("id=\"owner-fresh\""));

        // No owner: a fresh lookup (here it finds o2), labelled as such,
        // and the warning before confirming.
        let page = cuong.get(&format!("/console/cases/{w2}"));
        assert!(page.body.contains("id=\"owner-fresh\""), "{}", page.body);
        assert!(page.body.contains("id=\"owner-hold\""), "{}", page.body);
        let list = cuong.get("/console/confirm");
        let row = &list.body[list.body.find(&format!("data-id=\"{w2}\"")).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("class=\"pick-held\"") && row.contains("id=\"owner-hold\""),
            "{row}"
        );
    })
    .await
    .unwrap();
    // Reading the case's owner is logged under the officer, found.
    let cuong = accounts::by_username(&ctx.db, "csgt.cuong")
        .await
        .unwrap()
        .unwrap();
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM registry_access_log WHERE actor = $1 AND event_id = $2",
    )
    .bind(&cuong.user_id)
    .bind(&confirmed)
    .fetch_all(ctx.db.pool())
    .await
    .unwrap();
    assert_eq!(outcomes, ["found"]);
}

/// Every failed sign-in is counted under some address, never none: a
/// forwarding header that names nobody (or a proxy that adds none) counts
/// as the nearest proxy, a chain of trusted proxies only as its left-most
/// hop. With `Secure` cookies every answer pins HTTPS
/// (`Strict-Transport-Security`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_sign_in_is_counted_and_https_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.http.trusted_proxies = vec!["10.0.0.0/8".into()];
    cfg.http.secure_cookies = Some(true);
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    tokio::task::spawn_blocking(move || {
        for hops in ["unknown", "10.1.1.1, 10.2.2.2"] {
            let mut c = Client::new(addr);
            c.extra_headers
                .push(("X-Forwarded-For".into(), hops.into()));
            for i in 0..20 {
                let r = c.login(&format!("nobody{i}"), "123456");
                assert_eq!(r.status, 401, "{hops}: attempt {i}");
            }
            let r = c.login("nobody", "123456");
            assert_eq!(r.status, 429, "{hops}: held back: {}", r.body);
        }
        let page = Client::new(addr).get("/console/login");
        assert_eq!(
            page.headers
                .get("strict-transport-security")
                .map(String::as_str),
            Some("max-age=31536000")
        );
    })
    .await
    .unwrap();
}

/// Edge devices and cameras administered in the console: an administrator
/// enrols a device (its MQTT password shown on the answer page), the
/// device's login works on the embedded broker's check, a camera is
/// enrolled and retired, the device revoked; an operator may not see the
/// page, a form without the CSRF token changes nothing, a bad key is
/// refused with the reason; and each change is audited under the
/// administrator's own account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_manage_edge_devices_in_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let addr = server.http_addr;
    let db = server.ingestor.context().db.clone();
    let boot = ingest_server::audit::Who::new("test", ingest_server::workflow::Role::Admin);
    let admin = accounts::create(
        &db,
        "qt.em",
        "Đỗ Em",
        ingest_server::workflow::Role::Admin,
        Some(seed::PASSWORD),
        &boot,
    )
    .await
    .unwrap();
    accounts::create(
        &db,
        "op.an",
        "Trần An",
        ingest_server::workflow::Role::Operator,
        Some(seed::PASSWORD),
        &boot,
    )
    .await
    .unwrap();
    let public_key = public_hex(&key());
    let rt = tokio::runtime::Handle::current();
    let db2 = db.clone();
    let login = move |password: &str| {
        rt.block_on(ingest_server::devices::check_mqtt_login(
            &db2, "edge-q", password,
        ))
        .unwrap()
    };
    let password = tokio::task::spawn_blocking(move || {
        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", seed::PASSWORD).status, 303);
        assert_eq!(
            an.get("/console/devices").status,
            403,
            "operators do not administer"
        );

        let mut em = Client::new(addr);
        assert_eq!(em.login("qt.em", seed::PASSWORD).status, 303);
        let page = em.get("/console/devices");
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("href=\"/console/devices\""),
            "in the navigation"
        );
        let t = csrf(&page.body);
        let new = |csrf: &str, key: &str| {
            vec![
                ("csrf", csrf.to_owned()),
                ("device_id", "edge-q".to_owned()),
                ("site", SITE.to_owned()),
                ("public_key", key.to_owned()),
            ]
        };
        let send = |c: &mut Client, path: &str, f: &[(&str, String)]| {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.post(path, &f)
        };
        let r = send(&mut em, "/console/devices", &new("0000", &public_key));
        assert_eq!(r.status, 403, "no CSRF token, no enrolment");
        let r = send(&mut em, "/console/devices", &new(&t, "00"));
        assert_eq!(r.status, 409);
        assert!(r.body.contains("invalid public key"), "{}", r.body);
        let r = send(&mut em, "/console/devices", &new(&t, &public_key));
        assert_eq!(r.status, 200, "{}", r.body);
        let password = r
            .body
            .split("id=\"mqtt-password\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap()
            .to_owned();
        assert_eq!(password.len(), 64, "{password}");
        assert!(
            !em.get("/console/devices").body.contains(&password),
            "shown once"
        );
        assert_eq!(
            login(&password),
            ingest_server::devices::MqttLogin::Accepted,
            "the page's password is the device's broker login"
        );

        let camera = [
            ("csrf", t.clone()),
            ("device_id", "edge-q".into()),
            ("camera_id", "cam-1".into()),
            ("site", SITE.into()),
            ("description", "Tràng Tiền, hướng Bắc".into()),
            ("certificate_no", "".into()),
            ("certified_until", "".into()),
        ];
        assert_eq!(send(&mut em, "/console/cameras", &camera).status, 303);
        assert!(
            em.get("/console/devices")
                .body
                .contains("Tràng Tiền, hướng Bắc")
        );
        let retire = [
            ("csrf", t.clone()),
            ("device_id", "edge-q".into()),
            ("camera_id", "cam-1".into()),
            ("reason", "moved".into()),
        ];
        assert_eq!(
            send(&mut em, "/console/cameras/retire", &retire).status,
            303
        );
        let revoke = [
            ("csrf", t.clone()),
            ("device_id", "edge-q".into()),
            ("reason", "stolen".into()),
        ];
        assert_eq!(
            send(&mut em, "/console/devices/revoke", &revoke).status,
            303
        );
        assert_eq!(
            send(&mut em, "/console/devices/revoke", &revoke).status,
            303
        );
        assert!(em.get("/console/devices").body.contains("stolen"));
        password
    })
    .await
    .unwrap();

    use ingest_server::devices::{self, MqttLogin};
    assert_ne!(
        devices::check_mqtt_login(&db, "edge-q", &password)
            .await
            .unwrap(),
        MqttLogin::Accepted,
        "a revoked device's login is refused"
    );
    let mut log: Vec<_> = audit::recent(&db, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == admin.user_id)
        .map(|e| (e.seq, e.action, e.subject))
        .collect();
    log.sort();
    let log: Vec<_> = log.into_iter().map(|(_, a, s)| (a, s)).collect();
    assert_eq!(
        log,
        [
            ("device.enrol", "edge-q"),
            ("camera.enrol", "edge-q/cam-1"),
            ("camera.retire", "edge-q/cam-1"),
            ("device.revoke", "edge-q"),
        ]
        .map(|(a, s)| (a.to_owned(), s.to_owned())),
        "one entry per change, the repeated revocation none"
    );
}

/// The revision of case `id` that a confirmation page's row carries.
fn shown_revision(page: &str, id: &str) -> String {
    let key = format!("name=\"rev.{id}\" value=\"");
    let i = page
        .find(&key)
        .expect("the row carries the case's revision")
        + key.len();
    page[i..i + page[i..].find('"').unwrap()].to_string()
}

/// A confirmation is tied to what the officer saw. Officer 1 opens the
/// confirmation queue showing case X (plate 30A12345, red light, owner
/// Hoàng Thị Giang); officer 2 sends X back; an operator corrects its plate
/// and type and accepts it again. Officer 1 then submits the page he had:
/// X is refused (listed as such), the other case on the page confirmed;
/// the case page's confirm form is held to the same rule; only after
/// reloading does officer 1 confirm X, with what he now sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_is_refused_for_a_case_changed_since_it_was_shown() {
    use ingest_server::review::Reviewer;
    use ingest_server::workflow::{Action, Actor, Role};
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 2).await;
    let ctx = server.ingestor.context().clone();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = ingest_server::db::now_ms();
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    for id in &ids {
        r.act(id, &Action::Claim, &op, "", now).await.unwrap();
        r.act(id, &Action::Accept, &op, "", now).await.unwrap();
    }
    let (x, y) = (ids[0].clone(), ids[1].clone());
    let (x2, y2) = (x.clone(), y.clone());
    let (page, mut cuong) = tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", seed::PASSWORD).status, 303);
        let page = cuong.get("/console/confirm").body;
        assert!(page.contains(&x2) && page.contains(&y2) && page.contains(seed::OWNERS[0]));
        (page, cuong)
    })
    .await
    .unwrap();

    // Meanwhile: sent back, corrected (plate, type), accepted again.
    let p2 = Actor {
        id: "p2".into(),
        role: Role::Police,
    };
    let op2 = Actor {
        id: "op2".into(),
        role: Role::Operator,
    };
    r.act(&x, &Action::SendBack, &p2, "check the plate", now + 1)
        .await
        .unwrap();
    r.act(&x, &Action::Claim, &op2, "", now + 2).await.unwrap();
    let plate = Action::CorrectPlate {
        plate: "30A12346".into(),
    };
    r.act(&x, &plate, &op2, "5 read as 6", now + 3)
        .await
        .unwrap();
    let typ = Action::CorrectType {
        violation_type: "stop_line".into(),
    };
    r.act(&x, &typ, &op2, "stopped over the line", now + 4)
        .await
        .unwrap();
    r.act(&x, &Action::Accept, &op2, "", now + 5).await.unwrap();

    let (x2, y2) = (x.clone(), y.clone());
    tokio::task::spawn_blocking(move || {
        let t = csrf(&page);
        let (rx, ry) = (shown_revision(&page, &x2), shown_revision(&page, &y2));
        let (kx, ky) = (format!("rev.{x2}"), format!("rev.{y2}"));
        let r = cuong.post(
            "/console/confirm",
            &[
                ("csrf", t.as_str()),
                ("case", x2.as_str()),
                (kx.as_str(), rx.as_str()),
                ("case", y2.as_str()),
                (ky.as_str(), ry.as_str()),
            ],
        );
        assert_eq!(r.status, 200);
        let flash = &r.body[r.body.find("id=\"flash\"").unwrap()..];
        let flash = &flash[..flash.find("</div>").unwrap()];
        assert!(flash.contains("Đã xác nhận 1 vụ"), "{flash}");
        assert!(
            flash.contains(&format!("{x2}: the case changed after the page")),
            "X refused, and why: {flash}"
        );
        // A form without the revision is refused too.
        let fresh = cuong.get("/console/confirm").body;
        let t = csrf(&fresh);
        let r = cuong.post("/console/confirm", &[("csrf", &t), ("case", &x2)]);
        assert!(r.body.contains(&format!("{x2}: ")), "{}", r.body);
        // The case page's form is held to the revision it shows.
        let case = cuong.get(&format!("/console/cases/{x2}"));
        assert!(case.body.contains("30A12346") && case.body.contains("name=\"revision\""));
        let act = format!("/console/cases/{x2}/action");
        let stale = cuong.post(
            &act,
            &[("csrf", &t), ("action", "confirm"), ("revision", &rx)],
        );
        assert_eq!(stale.status, 409, "{}", stale.body);
        let bare = cuong.post(&act, &[("csrf", &t), ("action", "confirm")]);
        assert_eq!(bare.status, 409, "{}", bare.body);
        // Reloaded: confirmed with what is shown now.
        let now_shown = shown_revision(&fresh, &x2);
        let ok = cuong.post(
            &act,
            &[
                ("csrf", &t),
                ("action", "confirm"),
                ("revision", &now_shown),
            ],
        );
        assert_eq!(ok.status, 303, "{}", ok.body);
    })
    .await
    .unwrap();
    for (id, plate) in [(&x, Some("30A12346")), (&y, None)] {
        let row = sqlx::query("SELECT state, reviewed_plate FROM events WHERE event_id = $1")
            .bind(id)
            .fetch_one(ctx.db.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>(0), "confirmed");
        assert_eq!(row.get::<Option<String>, _>(1).as_deref(), plate);
    }
}

/// Attaching an owner to a case (the lookup after ingest, and again after
/// a plate correction) is audited, naming the plate and who asked but no
/// owner data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_an_owner_to_a_case_is_audited_without_personal_data() {
    use ingest_server::review::Reviewer;
    use ingest_server::workflow::{Action, Actor, Role};
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let ctx = server.ingestor.context().clone();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op".into(),
        role: Role::Operator,
    };
    let now = ingest_server::db::now_ms();
    r.act(&id, &Action::Claim, &op, "", now).await.unwrap();
    let plate = Action::CorrectPlate {
        plate: "30A12346".into(),
    };
    r.act(&id, &plate, &op, "5 read as 6", now + 1)
        .await
        .unwrap();
    let lookups: Vec<_> = audit::for_subject(&ctx.db, &format!("case:{id}"))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "case.owner_lookup")
        .collect();
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert!(
        lookups[0].detail.contains("30A12345"),
        "{}",
        lookups[0].detail
    );
    let corrected: serde_json::Value = serde_json::from_str(&lookups[1].detail).unwrap();
    assert_eq!(corrected["plate"], "30A12346");
    assert_eq!(corrected["owner"], "attached");
    assert_eq!(corrected["requested_by"], "op");
    assert_eq!(corrected["owner_status"]["to"], "resolved");
    for e in &lookups {
        for personal in [
            seed::OWNERS[0],
            seed::OWNERS[1],
            "001199012345",
            "Hoàn Kiếm",
        ] {
            assert!(!e.detail.contains(personal), "{}", e.detail);
        }
    }
}

/// Once the notice is out, the case lists show the owner's deadline to
/// respond (20 days, the one enforced), not the 10-day notice clock: a case
/// whose notice went out 11 days after the violation is not late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_notice_the_badge_is_the_owners_deadline_not_the_notice_clock() {
    use ingest_server::review::Reviewer;
    use ingest_server::workflow::{Action, Actor, Role};
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 1).await;
    let id = ids[0].clone();
    let ctx = server.ingestor.context().clone();
    let now = ingest_server::db::now_ms();
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let actor = |id: &str, role| Actor {
        id: id.into(),
        role,
    };
    let op = actor("op", Role::Operator);
    r.act(&id, &Action::Claim, &op, "", now).await.unwrap();
    r.act(&id, &Action::Accept, &op, "", now).await.unwrap();
    r.act(&id, &Action::Confirm, &actor("p", Role::Police), "", now)
        .await
        .unwrap();
    // Seen 11 days ago (after the confirmation, which refuses a row whose
    // time is not the signed one).
    sqlx::query("UPDATE events SET event_time_ms = $1 WHERE event_id = $2")
        .bind(now - 11 * 86_400_000)
        .bind(&id)
        .execute(ctx.db.pool())
        .await
        .unwrap();
    r.act(
        &id,
        &Action::IssueNotice,
        &actor("notices", Role::System),
        "",
        now,
    )
    .await
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut cuong = Client::new(addr);
        assert_eq!(cuong.login("csgt.cuong", seed::PASSWORD).status, 303);
        let list = cuong.get("/console/cases");
        let row = &list.body[list.body.find(&format!("data-id=\"{id}\"")).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(!row.contains("clock late"), "{row}");
        assert!(row.contains("clock reply ok"), "the 20-day deadline: {row}");
        let page = cuong.get(&format!("/console/cases/{id}"));
        assert!(!page.body.contains("clock late"), "{}", page.body);
    })
    .await
    .unwrap();
}

/// Administrators see no case data: not the audit log (its entries name
/// plates) nor the quarantine; supervisors and auditors keep both.
/// Evidence read through the console is audited as through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_no_audit_log_and_console_evidence_reads_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = app::start(&local_config(dir.path())).await.unwrap();
    let addr = server.http_addr;
    let ids = seed::seed(&server, SITE, 1).await;
    let db = server.ingestor.context().db.clone();
    let boot = ingest_server::audit::Who::new("test", ingest_server::workflow::Role::Admin);
    accounts::create(
        &db,
        "qt.em",
        "Đỗ Em",
        ingest_server::workflow::Role::Admin,
        Some(seed::PASSWORD),
        &boot,
    )
    .await
    .unwrap();
    let id = ids[0].clone();
    tokio::task::spawn_blocking(move || {
        let mut em = Client::new(addr);
        assert_eq!(em.login("qt.em", seed::PASSWORD).status, 303);
        assert_eq!(em.get("/console/audit").status, 403);
        assert_eq!(em.get("/console/audit/anchor").status, 403);
        assert_eq!(em.get("/console/quarantine").status, 403);
        let health = em.get("/console/health");
        assert!(
            !health.body.contains("href=\"/console/audit\"")
                && !health.body.contains("href=\"/console/quarantine\""),
            "not offered"
        );
        let mut dung = Client::new(addr);
        assert_eq!(dung.login("kt.dung", seed::PASSWORD).status, 303);
        assert_eq!(dung.get("/console/audit").status, 200);
        assert_eq!(dung.get("/console/quarantine").status, 200);
        let mut an = Client::new(addr);
        assert_eq!(an.login("op.an", seed::PASSWORD).status, 303);
        let img = an.get(&format!("/console/cases/{id}/evidence/overview.jpg"));
        assert_eq!(img.status, 200);
    })
    .await
    .unwrap();
    let an = accounts::by_username(&db, "op.an").await.unwrap().unwrap();
    let reads: Vec<_> = audit::for_subject(&db, &format!("case:{}", ids[0]))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "console.evidence.read")
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].actor, an.user_id);
    assert!(
        reads[0].detail.contains("overview.jpg"),
        "{}",
        reads[0].detail
    );
}
