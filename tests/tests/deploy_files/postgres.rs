//! PostgreSQL: `postgres/postgresql.conf` read for what it promises
//! (durable commits, WAL archiving, enough connections for the manifest's
//! replicas times the server's pool), then included in a real PostgreSQL
//! with `postgres/pg_hba.conf` as its hba file: every setting applied
//! without error, the server running with them, no `trust` rule, a wrong
//! password refused. And `postgres/README.md`: the files it points to
//! exist and the `DATABASE_URL` it exports is one the server accepts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{free_port, workspace_root};

use crate::kubernetes::deployment_replicas;
use crate::pki::self_signed;
use crate::support::{deploy, is_root, listening, read, signal_and_wait};

/// Connections in one ingest-server replica's PostgreSQL pool
/// (`ingest-server/src/db.rs`, checked against the source by
/// [`postgres_settings_in_a_real_postgres`]).
const POOL_PER_REPLICA: u64 = 16;

/// The directory of the newest installed PostgreSQL's programs (`$PG_BIN`
/// overrides).
fn pg_bin() -> PathBuf {
    if let Ok(d) = std::env::var("PG_BIN") {
        return PathBuf::from(d);
    }
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").is_file())
        .collect();
    v.sort();
    v.pop()
        .map(|(_, p)| p)
        .expect("PostgreSQL is not installed: scripts/setup-system.sh (Debian package postgresql), or set PG_BIN")
}

/// `key = value` pairs of a postgresql.conf (quotes removed).
fn pg_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.split_once(" #").map(|(a, _)| a).unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not key = value: {l}"));
            (k.trim().to_owned(), v.trim().trim_matches('\'').to_owned())
        })
        .collect()
}

/// The file's promises, then both files in a real PostgreSQL.
pub fn postgres_settings_in_a_real_postgres() {
    use std::os::unix::process::CommandExt;
    let conf = read("postgres/postgresql.conf");
    let settings = pg_settings(&conf);
    let get = |k: &str| {
        settings
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} not set"))
    };
    // The promises, in the file.
    for (k, v) in [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
        ("archive_mode", "on"),
    ] {
        assert_eq!(get(k), v, "{k}");
    }
    assert!(["replica", "logical"].contains(&get("wal_level").as_str()));
    // Connections for the manifest's replicas × pool, plus slack.
    let db_rs = std::fs::read_to_string(workspace_root().join("ingest-server/src/db.rs")).unwrap();
    assert!(
        db_rs.contains(&format!(".max_connections({POOL_PER_REPLICA})")),
        "the server's PostgreSQL pool is no longer {POOL_PER_REPLICA}: update this test and postgresql.conf"
    );
    let replicas = deployment_replicas();
    let max: u64 = get("max_connections").parse().unwrap();
    let reserved: u64 = get("superuser_reserved_connections").parse().unwrap();
    assert!(
        max >= replicas * POOL_PER_REPLICA + reserved + 10,
        "max_connections {max} is too few for {replicas} replicas × {POOL_PER_REPLICA} + {reserved} reserved + 10 for the CLI and backups"
    );

    // A real PostgreSQL with the file included and pg_hba.conf as its hba_file.
    let bin = pg_bin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = is_root().then(|| {
        let id = |f: &str| -> u32 {
            let o = Command::new("id").args([f, "postgres"]).output().unwrap();
            assert!(
                o.status.success(),
                "no `postgres` user to run PostgreSQL as (initdb refuses root)"
            );
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        (id("-u"), id("-g"))
    });
    let own = |p: &Path| {
        if let Some((u, g)) = ids {
            std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
        }
    };
    own(d);
    let password = "test-superuser-password";
    std::fs::write(d.join("pw"), format!("{password}\n")).unwrap();
    own(&d.join("pw"));
    let run_as = |c: &mut Command| {
        if let Some((u, g)) = ids {
            c.uid(u).gid(g);
        }
    };
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(d.join("data"))
        .args([
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--data-checksums",
        ])
        .arg(format!("--pwfile={}", d.join("pw").display()))
        .stdout(Stdio::null());
    run_as(&mut initdb);
    let out = initdb.output().expect("run initdb");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // TLS material for `ssl = on`, and the WAL archive directory.
    let tls = d.join("tls");
    std::fs::create_dir(&tls).unwrap();
    self_signed(&tls, "127.0.0.1", "server");
    std::fs::set_permissions(
        tls.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for f in ["", "server.key", "server.crt"] {
        own(&tls.join(f));
    }
    let archive = d.join("wal-archive");
    std::fs::create_dir(&archive).unwrap();
    own(&archive);
    let ours = d.join("traffic.conf");
    std::fs::write(
        &ours,
        conf.replace("/etc/postgresql/tls/", &format!("{}/", tls.display()))
            .replace(
                "/var/lib/postgresql/wal-archive",
                &archive.display().to_string(),
            ),
    )
    .unwrap();
    let hba = d.join("pg_hba.conf");
    std::fs::write(&hba, read("postgres/pg_hba.conf")).unwrap();
    for p in [&ours, &hba] {
        own(p);
    }
    let main_conf = d.join("data/postgresql.conf");
    let mut main = std::fs::read_to_string(&main_conf).unwrap();
    main.push_str(&format!(
        "\ninclude '{}'\nhba_file = '{}'\n",
        ours.display(),
        hba.display()
    ));
    std::fs::write(&main_conf, main).unwrap();

    let port = free_port();
    // Overridden for this machine only: where it listens, and shared_buffers
    // (the file's 4GB is for the database host; its value was read above).
    let overridden = ["listen_addresses", "shared_buffers"];
    let mut pg = Command::new(bin.join("postgres"));
    pg.arg("-D")
        .arg(d.join("data"))
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "shared_buffers=128MB",
        ])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", d.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("pg.log")).unwrap());
    run_as(&mut pg);
    let mut child = pg.spawn().expect("start postgres");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            if !signal_and_wait(&mut self.0, "INT", Duration::from_secs(10)) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let log = || std::fs::read_to_string(d.join("pg.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    if !listening(&mut child, port, deadline) {
        panic!("PostgreSQL did not start with deploy/postgres/:\n{}", log());
    }
    let _pg = Kill(child);
    let psql = |pw: &str, sql: &str| {
        Command::new(bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtc",
                sql,
            ])
            .env("PGPASSWORD", pw)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    };
    let query = |sql: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = psql(password, sql);
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).trim().to_owned();
            }
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(
                Instant::now() < deadline && err.contains("starting up"),
                "psql {sql}: {err}\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Every line of our file was read and applied, with no error.
    let file_rows = query(&format!(
        "SELECT name || '|' || applied || '|' || coalesce(error, '') FROM pg_file_settings WHERE sourcefile = '{}' ORDER BY sourceline",
        ours.display()
    ));
    let rows: Vec<&str> = file_rows.lines().collect();
    assert_eq!(
        rows.len(),
        settings.len(),
        "PostgreSQL read every setting of the file: {rows:?}"
    );
    for r in &rows {
        let p: Vec<&str> = r.split('|').collect();
        // The command line's values win over the file's for these two:
        // PostgreSQL says it could not apply the file's.
        if overridden.contains(&p[0]) {
            continue;
        }
        assert_eq!(p[2], "", "{}: error {}", p[0], p[2]);
        assert!(
            p[1] == "t" || p[1] == "true",
            "{} was not applied ({})",
            p[0],
            p[1]
        );
    }
    // And the server runs with them.
    for (k, v) in [
        ("synchronous_commit", "on"),
        ("fsync", "on"),
        ("full_page_writes", "on"),
        ("wal_level", get("wal_level").as_str()),
        ("archive_mode", "on"),
        ("ssl", "on"),
        ("password_encryption", "scram-sha-256"),
        ("max_connections", get("max_connections").as_str()),
        ("data_checksums", "on"),
    ] {
        assert_eq!(query(&format!("SHOW {k}")), v, "SHOW {k}");
    }
    // pg_hba.conf: loaded without errors, no `trust`, and in force.
    let hba_rows = query(
        "SELECT count(*) || '|' || count(error) || '|' || count(*) FILTER (WHERE auth_method = 'trust') FROM pg_hba_file_rules",
    );
    let p: Vec<u64> = hba_rows.split('|').map(|x| x.parse().unwrap()).collect();
    assert!(
        p[0] >= 4 && p[1] == 0 && p[2] == 0,
        "pg_hba.conf rules: {hba_rows}"
    );
    let wrong = psql("wrong-password", "SELECT 1");
    assert!(!wrong.status.success(), "a wrong password is refused");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
}

/// `postgres/README.md`: its pointers and its `DATABASE_URL`.
pub fn postgres_readme() {
    let text = read("postgres/README.md");
    for f in ["postgresql.conf", "pg_hba.conf", "deploy/README.md"] {
        assert!(text.contains(f), "postgres/README.md points to {f}");
        let rel = f.strip_prefix("deploy/").unwrap_or(f);
        let path = if rel == f {
            deploy().join("postgres").join(rel)
        } else {
            deploy().join(rel)
        };
        assert!(path.is_file(), "{f} exists");
    }
    // The URL it exports is one the server accepts.
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("export DATABASE_URL="))
        .map(|u| u.trim_matches('\''))
        .expect("export DATABASE_URL=...");
    let mut cfg = ingest_server::config::Config::default();
    cfg.apply_env(|k| (k == "DATABASE_URL").then(|| url.to_owned()))
        .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.database_url(), url);
    assert!(text.contains("--data-checksums"));
    // Over TLS, verified, as pg_hba.conf demands of the replicas.
    assert!(url.contains("sslmode=verify-full&sslrootcert="), "{url}");
    let hba = read("postgres/pg_hba.conf");
    assert!(
        hba.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..]
                .starts_with(&["hostssl", "traffic", "traffic"])),
        "pg_hba.conf admits the replicas over TLS only"
    );
}
