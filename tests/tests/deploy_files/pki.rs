//! Throwaway TLS material made with the real `openssl`: a self-signed
//! certificate (PostgreSQL's `ssl = on`), and a site CA with a server
//! certificate for 127.0.0.1 and client certificates (Mosquitto's TLS
//! listener, which demands a client certificate). The files under `deploy/`
//! name their production paths; the checks point those at these.

use std::path::Path;
use std::process::Command;

/// Runs `openssl args...` in `dir` and demands success.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate for `/CN={cn}`, valid two days: `{name}.key`
/// and `{name}.crt` in `dir`.
pub fn self_signed(dir: &Path, cn: &str, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A CA, a server certificate for 127.0.0.1 and client certificates
/// `{name}.crt`/`{name}.key` for each client.
pub fn make_pki(dir: &Path, clients: &[&str]) {
    self_signed(dir, "test-site-ca", "ca");
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let mut all = vec![("server", "127.0.0.1", "server.ext")];
    all.extend(clients.iter().map(|c| (*c, *c, "client.ext")));
    for (name, cn, ext) in all {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                ext,
            ],
        );
    }
}
