//! The console in a real browser: headless Chromium (Debian's `chromium`)
//! driven over WebDriver (`chromedriver`) with fantoccini, at 1366×768. An
//! operator signs in, opens the queue, takes the next case with the `n`
//! key, accepts it with `a`; an officer signs in, sees the owner beside the
//! evidence and confirms the case in a batch; the operator can neither
//! confirm nor see owner data. Screenshots of the queue, the case page and
//! the confirmation queue are written to
//! `target/tmp/console-screenshots/` for people to look at.

mod common;

use std::time::Duration;

use common::chrome::{Driver, screenshots};
use common::seed::{self, OWNERS, PASSWORD};
use common::*;
use fantoccini::{Client, Locator};
use ingest_server::app;

const SITE: &str = "dn-haichau-bachdang";
async fn sign_in(c: &Client, base: &str, user: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("sign-in")).await.unwrap();
}

async fn press(c: &Client, key: &str) {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
}

async fn text_of(c: &Client, id: &str) -> String {
    c.wait()
        .for_element(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_accepts_and_officer_confirms_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_config(dir.path());
    let server = app::start(&cfg).await.unwrap();
    let base = format!("http://{}", server.http_addr);
    let (files, plate) = seed::photos();
    let ids = seed::seed_with(&server, SITE, 2, &files, Some(&plate)).await;
    let driver = Driver::start();
    let c = driver.browser(1366, 768).await;
    c.set_window_size(1366, 768).await.unwrap();
    let out = screenshots("console-screenshots");

    // --- the operator: queue, `n` for the next case, `a` to accept
    sign_in(&c, &base, "op.an").await;
    c.wait().for_element(Locator::Id("cases")).await.unwrap();
    let queue = c.source().await.unwrap();
    assert!(queue.contains(&ids[0]) && queue.contains(&ids[1]));
    std::fs::write(out.join("queue.png"), c.screenshot().await.unwrap()).unwrap();
    press(&c, "n").await;
    c.wait()
        .for_element(Locator::Id("accept-form"))
        .await
        .unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with(&ids[0]));
    assert_eq!(text_of(&c, "plate").await, plate);
    assert!(
        !c.source().await.unwrap().contains(OWNERS[0]),
        "operators never see the owner"
    );
    assert!(c.find(Locator::Id("owner")).await.is_err());
    // Let the stills load before the picture is taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(out.join("case.png"), c.screenshot().await.unwrap()).unwrap();
    press(&c, "a").await;
    // Accepting moves straight on to the next case.
    let next = url::Url::parse(&format!("{base}/console/cases/{}", ids[1])).unwrap();
    c.wait().for_url(&next).await.unwrap();
    // The operator cannot open the officer's queue.
    c.goto(&format!("{base}/console/confirm")).await.unwrap();
    assert!(text_of(&c, "error").await.contains("không được phép"));
    c.goto(&format!("{base}/console/queue")).await.unwrap();
    sign_out(&c).await;

    // --- the officer: the owner beside the evidence, batch confirmation
    sign_in(&c, &base, "csgt.cuong").await;
    c.wait()
        .for_element(Locator::Id("confirm-list"))
        .await
        .unwrap();
    let list = c.source().await.unwrap();
    assert!(list.contains(&ids[0]) && list.contains(OWNERS[0]));
    std::fs::write(out.join("confirm.png"), c.screenshot().await.unwrap()).unwrap();
    c.find(Locator::Css(&format!("input.pick[value='{}']", ids[0])))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("confirm-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text_of(&c, "flash").await.contains("1"),
        "one case confirmed"
    );
    c.goto(&format!("{base}/console/cases/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(text_of(&c, "state").await, "CSGT đã xác nhận");
    assert!(text_of(&c, "owner").await.contains(OWNERS[0]));
    c.close().await.unwrap();

    for shot in ["queue.png", "case.png", "confirm.png"] {
        let bytes = std::fs::read(out.join(shot)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot}"
        );
    }
    drop(driver);
}
