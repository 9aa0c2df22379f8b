//! The production transport: Mosquitto with TLS (the broker's certificate
//! checked against the site CA, a client certificate required), per-device
//! passwords, and the ACL from `deploy/mosquitto/acl`. Proves a device
//! delivers through it, and that a wrong password delivers nothing.

mod delivery_support;

use delivery_support::*;
use edge_agent::outbox::{Outbox, OutboxLimits, now_ms};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_pki(dir: &Path) {
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
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
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
    for (name, cn) in [("server", "127.0.0.1"), ("client", DEVICE)] {
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
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &*format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &*format!("{name}.crt"),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        // Version 3 certificates (with extensions): rustls refuses v1.
        args.extend(["-extfile".to_owned(), format!("{name}.ext")]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &args);
    }
}

#[test]
fn device_delivers_over_tls_with_client_certificate_and_password_and_a_wrong_password_delivers_nothing()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let passwd = d.join("passwd");
    for (i, (user, pass)) in [(DEVICE, "device-secret"), ("ingest", "server-secret")]
        .iter()
        .enumerate()
    {
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg("-b")
            .arg(&passwd)
            .arg(user)
            .arg(pass)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/acl");
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = d.join("mosquitto.conf");
    std::fs::write(&conf, format!(
        "user {user}\nper_listener_settings false\nallow_anonymous false\npassword_file {p}\nacl_file {acl}\nmessage_size_limit 0\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n\
         listener {plain_port} 127.0.0.1\n",
        p = passwd.display(),
            user = broker_user(), acl = acl.display(), d = d.display())).unwrap();
    let mut broker = Command::new(mosquitto_path())
        .arg("-c")
        .arg(&conf)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(10, || std::net::TcpStream::connect((
        "127.0.0.1",
        tls_port
    ))
    .is_ok()));

    let tls = format!(
        "\n[mqtt]\nurl = \"mqtts://127.0.0.1:{tls_port}\"\nusername = \"{DEVICE}\"\npassword_file = \"{d}/device.pass\"\n\
         ca_file = \"{d}/ca.crt\"\ncert_file = \"{d}/client.crt\"\nkey_file = \"{d}/client.key\"\nack_timeout_s = 5\nreconnect_max_s = 1.0\n",
        d = d.display()
    );
    // agent_config writes its own [mqtt]; replace it with the TLS one.
    let cfg_path = agent_config(d, tls_port, "");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let (head, rest) = text.split_once("[mqtt]").unwrap();
    let rest = &rest[rest.find("[health]").unwrap()..];
    std::fs::write(&cfg_path, format!("{head}{tls}\n{rest}")).unwrap();
    std::fs::write(d.join("device.pass"), "wrong-secret\n").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["enroll", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (id, _) = edge_agent::identity::DeviceIdentity::load_or_create(
        DEVICE,
        SITE,
        &d.join("data/device.key"),
    )
    .unwrap();
    let server = TestServer::start_as(
        plain_port,
        id.verifying_key(),
        Some(("ingest", "server-secret")),
    );
    let mut outbox = Outbox::open(&d.join("data/outbox.sqlite"), OutboxLimits::default()).unwrap();
    for n in 0..5 {
        let (ev, evdir) = violation(&id, &d.join("data/spool"), "cam-north", n, 50_000, 300_000);
        outbox.enqueue(&ev, "cam-north", &evdir).unwrap();
    }
    let run = |log: &str| {
        Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["deliver", "--config"])
            .arg(&cfg_path)
            .stderr(std::fs::File::create(d.join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut agent = run("wrong.log");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        server.seen.lock().unwrap().bundles,
        0,
        "nothing gets through with a wrong password"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let log = std::fs::read_to_string(d.join("wrong.log")).unwrap();
    assert!(!log.contains("connected to the broker"), "{log}");

    std::fs::write(d.join("device.pass"), "device-secret\n").unwrap();
    let mut agent = run("right.log");
    let ok = wait_for(30, || {
        let s = server.seen.lock().unwrap();
        s.first.len() == 5 && s.clips.len() == 5
    }) && wait_for(10, || outbox.stats(now_ms()).unwrap().depth == 0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status();
    let _ = agent.wait();
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        ok,
        "5 events and clips over TLS; log:\n{}",
        std::fs::read_to_string(d.join("right.log")).unwrap()
    );
}
