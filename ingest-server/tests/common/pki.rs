//! Certificates for the TLS tests (the registry gateway's mutual TLS, the
//! server's TLS connection to an external MQTT broker), made with the
//! `openssl` CLI in a temporary directory: quick P-256 keys, version 3
//! certificates with extensions (rustls refuses version 1).

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `name`-ca.crt and, signed by it, a certificate `name`.crt with its
/// key for each `(name, cn, ext)`. P-256 keys: quick to make.
fn issue(dir: &Path, ca: &str, leaves: &[(&str, &str, &str)]) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(ec);
    let subj = format!("/CN={ca}");
    let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
    args.extend(["-subj", &subj, "-keyout", &key, "-out", &crt]);
    openssl(dir, &args);
    for (name, cn, ext) in leaves {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (k, csr, c, e) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-new", "-nodes"];
        args.extend(ec);
        args.extend(["-subj", &subj, "-keyout", &k, "-out", &csr]);
        openssl(dir, &args);
        // Version 3 certificates (with extensions): rustls refuses v1.
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &crt,
                "-CAkey",
                &key,
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &c,
                "-extfile",
                &e,
            ],
        );
    }
}

/// A test PKI in a temporary directory: `ca.crt` signing `server.crt`
/// (for 127.0.0.1 and localhost, serverAuth) and `client.crt`
/// (clientAuth, CN `ingest-test`), and `rogue-ca.crt` signing `rogue.crt`
/// (a client certificate the servers do not trust); keys beside them.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// The gateway's CA with the server's and our client's certificates,
    /// and a second CA with a client certificate the gateway does not
    /// trust.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        issue(
            d,
            "ca",
            &[
                (
                    "server",
                    "127.0.0.1",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
                ),
                (
                    "client",
                    "ingest-test",
                    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
                ),
            ],
        );
        issue(
            d,
            "rogue-ca",
            &[(
                "rogue",
                "ingest-test",
                "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            )],
        );
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
