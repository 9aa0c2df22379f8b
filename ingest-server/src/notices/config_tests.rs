//! Tests of the `[notices]` configuration (`config.rs`): the section as
//! written, every error naming its field, environment overrides.

use super::*;
use crate::config::Config;

fn field_of(n: NoticesConfig) -> String {
    match n.validate() {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => format!("{other:?}"),
    }
}

#[test]
fn notices_section_parses_and_validates() {
    let cfg = Config::parse(
        "[notices]\npublic_base_url = \"https://phatnguoi.example.gov.vn/\"\n\
         [notices.vapid]\nsubject = \"mailto:ioc@example.gov.vn\"\n\
         [[notices.webhooks]]\nname = \"vneid\"\nurl = \"https://vneid.example/hook\"\n\
         secret = \"0123456789abcdef\"\n\
         [notices.smtp]\nhost = \"smtp.example.gov.vn\"\nfrom = \"notices@example.gov.vn\"\n",
        "t.toml",
    )
    .unwrap();
    cfg.validate().unwrap();
    let n = &cfg.notices;
    assert_eq!(
        n.base_url(cfg.http.listen),
        "https://phatnguoi.example.gov.vn"
    );
    assert_eq!(n.smtp.as_ref().unwrap().port, 587);
    assert!(n.smtp.as_ref().unwrap().starttls);
    assert!(
        !format!("{cfg:?}").contains("0123456789abcdef"),
        "secret printed"
    );
    assert_eq!(
        Config::default()
            .notices
            .base_url(Config::default().http.listen),
        "http://127.0.0.1:8080"
    );
}

#[test]
fn notices_errors_name_the_field() {
    let with = |f: fn(&mut NoticesConfig)| {
        let mut n = NoticesConfig::default();
        f(&mut n);
        field_of(n)
    };
    assert_eq!(with(|_| {}), "Ok(())");
    assert_eq!(
        with(|n| n.public_base_url = "ftp://x".into()),
        "notices.public_base_url"
    );
    assert_eq!(with(|n| n.poll_ms = 1), "notices.poll_ms");
    assert_eq!(with(|n| n.retry_base_ms = 0), "notices.retry_base_ms");
    assert_eq!(
        with(|n| n.vapid.subject = "ioc@example".into()),
        "notices.vapid.subject"
    );
    let hook = |url: &str, secret: &str| WebhookConfig {
        name: "vneid".into(),
        url: url.into(),
        secret: secret.into(),
        secret_file: String::new(),
    };
    let mut n = NoticesConfig {
        webhooks: vec![hook("http://partner.example/h", "0123456789abcdef")],
        ..NoticesConfig::default()
    };
    assert_eq!(field_of(n.clone()), "notices.webhooks[0].url");
    n.webhooks = vec![hook("http://127.0.0.1:9/h", "short")];
    assert_eq!(field_of(n.clone()), "notices.webhooks[0].secret");
    n.webhooks = vec![
        hook("https://a.example/h", "0123456789abcdef"),
        hook("https://b.example/h", "0123456789abcdef"),
    ];
    assert_eq!(field_of(n.clone()), "notices.webhooks[1].name");
    let smtp = |host: &str, starttls: bool| SmtpConfig {
        host: host.into(),
        from: "notices@example.gov.vn".into(),
        starttls,
        ..SmtpConfig::default()
    };
    let mut n = NoticesConfig {
        smtp: Some(smtp("mail.example", false)),
        ..NoticesConfig::default()
    };
    assert_eq!(field_of(n.clone()), "notices.smtp.starttls");
    n.smtp = Some(smtp("127.0.0.1", false));
    assert_eq!(field_of(n.clone()), "Ok(())");
    n.smtp = Some(SmtpConfig {
        from: "Notices <n@x>".into(),
        ..smtp("mail.example", true)
    });
    assert_eq!(field_of(n.clone()), "notices.smtp.from");
    n.smtp = Some(SmtpConfig {
        username: "u".into(),
        ..smtp("mail.example", true)
    });
    assert_eq!(field_of(n), "notices.smtp.password_file");
}

#[test]
fn notices_env_overrides() {
    let mut c = Config::default();
    c.apply_env(|k| match k {
        "INGEST_NOTICES_PUBLIC_BASE_URL" => Some("https://app.example".into()),
        "INGEST_NOTICES_SMTP_HOST" => Some("127.0.0.1".into()),
        "INGEST_NOTICES_SMTP_PORT" => Some("2525".into()),
        "INGEST_NOTICES_SMTP_FROM" => Some("n@example.gov.vn".into()),
        "INGEST_NOTICES_SMTP_STARTTLS" => Some("false".into()),
        "INGEST_NOTICES_ENABLED" => Some("false".into()),
        _ => None,
    })
    .unwrap();
    c.validate().unwrap();
    assert!(!c.notices.enabled);
    assert_eq!(c.notices.smtp.as_ref().unwrap().port, 2525);
    let err = c
        .apply_env(|k| (k == "INGEST_NOTICES_SMTP_PORT").then(|| "x".into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("INGEST_NOTICES_SMTP_PORT"), "{err}");
    let err = c
        .apply_env(|k| (k == "INGEST_NOTICES_WEBHOOKS").then(|| "vneid".into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("INGEST_NOTICES_WEBHOOKS"), "{err}");
}
