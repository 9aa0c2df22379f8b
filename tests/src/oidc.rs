//! The OpenID Connect test provider of the ingest server's tests
//! (`ingest-server/tests/oidc/provider.js`: panva's oidc-provider on
//! Node.js, fictitious accounts only), started as a child process, and the
//! way through its login as a browser would go. Node.js and the provider's
//! `node_modules` (`make setup-node`) are required: missing, the test fails
//! saying so.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::web::Browser;

/// The provider, stopped when dropped.
pub struct Provider {
    child: Child,
    /// Its issuer identifier, `http://127.0.0.1:{port}`.
    pub issuer: String,
    log: PathBuf,
}

/// Where `provider.js` and its `node_modules` are.
pub fn provider_dir() -> PathBuf {
    crate::workspace_root().join("ingest-server/tests/oidc")
}

/// Fails, saying what to install, unless Node.js and the provider's
/// packages are there.
pub fn require_node() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "Node.js is missing: the end-to-end test signs the citizen in through a real OpenID \
         Connect provider (oidc-provider) on Node.js 20 or later. Install it (apt-get install \
         nodejs npm), then run `make setup-node`."
    );
    assert!(
        provider_dir().join("node_modules/oidc-provider").is_dir(),
        "{} has no node_modules/oidc-provider: run `make setup-node` \
         (npm ci --prefix ingest-server/tests/oidc)",
        provider_dir().display()
    );
}

impl Provider {
    /// Starts one with `provider.js`'s options (`port` among them); its log
    /// goes to `log`.
    pub fn start(opts: &serde_json::Value, log: PathBuf) -> Provider {
        require_node();
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.js"))
            .arg(opts.to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("provider log"))
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading: the provider logs to stdout, and a closed pipe
            // would kill it.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(issuer) = line.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the OpenID provider did not start: {line}\n{}",
                crate::tail(&log, 40)
            );
        };
        Provider {
            issuer: issuer.to_string(),
            child,
            log,
        }
    }

    /// The provider's log so far.
    pub fn log(&self) -> String {
        crate::tail(&self.log, 40)
    }

    /// From `login_url` (a sign-in link of ours, answering 303 to the
    /// provider) through the provider's login as `account` with `password`:
    /// the callback URL the provider sends the browser back to (not yet
    /// visited).
    pub fn through(
        &self,
        b: &mut Browser,
        login_url: &str,
        account: &str,
        password: &str,
    ) -> String {
        let r = b.get(login_url);
        assert_eq!(r.status, 303, "{login_url}: {}", r.body);
        let mut next = r.location();
        for _ in 0..10 {
            assert!(
                next.starts_with(&self.issuer),
                "left the provider too early: {next}"
            );
            let r = b.get(&next);
            assert!(
                matches!(r.status, 302 | 303),
                "{next}: {} {}\n{}",
                r.status,
                r.body,
                self.log()
            );
            next = r.location();
            if next.starts_with(&format!("{}/interaction/", self.issuer)) {
                let page = b.get(&next);
                assert_eq!(page.status, 200, "interaction: {}", page.body);
                let r = b.post_form(
                    &format!("{next}/login"),
                    &[("login", account), ("password", password)],
                );
                assert!(
                    matches!(r.status, 302 | 303),
                    "login as {account}: {} {}",
                    r.status,
                    r.body
                );
                next = r.location();
            }
            if !next.starts_with(&self.issuer) {
                return next;
            }
        }
        panic!("the provider kept redirecting: {next}\n{}", self.log());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
