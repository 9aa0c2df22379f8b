//! Where evidence is kept (`[storage]`): the local directory under
//! `data_dir` (the embedded default) or an S3-compatible object store
//! (`[storage.s3]`: Garage at the IOC, any S3 API in general).
//!
//! Kept beside the store rather than in `crate::config` so the settings,
//! their environment overrides (`INGEST_STORAGE_BACKEND`,
//! `INGEST_STORAGE_S3_*`) and their checks live next to the code that uses
//! them. Checked once at start like the rest of the configuration; errors
//! name the field (`storage.s3.bucket`) or the variable. The secret access
//! key never sits in the TOML file: it comes from a file
//! (`secret_access_key_file`, read during the check) or from the
//! environment, and its `Debug` form is redacted so it cannot reach a log.

use std::fmt;

use serde::Deserialize;
use url::Url;

use crate::config::ConfigError;

/// Which store holds evidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// `{data_dir}/evidence`; every object fsynced before its write returns.
    #[default]
    Local,
    /// The S3-compatible store of `[storage.s3]`.
    S3,
}

/// `[storage]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local` (default) or `s3`; env `INGEST_STORAGE_BACKEND`.
    pub backend: StorageBackend,
    /// The S3-compatible store; required with `backend = "s3"`.
    pub s3: Option<S3Config>,
}

/// A secret that never shows in `Debug` output (and so in no log line or
/// error that formats the configuration).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Read from TOML as a plain string (the `[mqtt] password`); the S3 secret
/// is never read from TOML (`#[serde(skip)]` on its field).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// `[storage.s3]`: an S3-compatible object store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The S3 API's base URL (`https://garage.ioc.example:3900`): a host,
    /// an optional port, no path, query or credentials. `http://` only on a
    /// loopback host or with `allow_http`.
    pub endpoint: String,
    /// The bucket (3-63 of `a-z 0-9 . -`, starting and ending with a letter
    /// or digit). It must exist: the server does not create it.
    pub bucket: String,
    /// The region the requests are signed for (`garage` on a default
    /// Garage, `us-east-1` on most others).
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// A file whose first line is the secret access key (or env
    /// `INGEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE`).
    pub secret_access_key_file: String,
    /// The secret itself, from env `INGEST_STORAGE_S3_SECRET_ACCESS_KEY`
    /// only (never from the file, which would put it beside the rest).
    #[serde(skip)]
    pub secret_access_key: Secret,
    /// Path-style addressing (`{endpoint}/{bucket}/{key}`), which Garage,
    /// MinIO and most self-hosted stores want; `false`: virtual-hosted
    /// style (`{bucket}.{endpoint host}/{key}`).
    pub path_style: bool,
    /// Allow `http://` on a host that is not loopback (a private network
    /// the operator vouches for). Credentials are not sent in clear text
    /// (requests are signed), but evidence is.
    pub allow_http: bool,
    /// Keys go under this prefix (`ingest/prod` → `ingest/prod/sha256/…`),
    /// so one bucket can serve several deployments; empty: the bucket's root.
    pub prefix: String,
    /// Longest one request may take (connection included), ms.
    pub timeout_ms: u64,
    /// Further attempts after a connection failure, a timeout or a 5xx
    /// (never after a 4xx: a refused key stays refused).
    pub retries: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key_file: String::new(),
            secret_access_key: Secret::default(),
            path_style: true,
            allow_http: false,
            prefix: String::new(),
            timeout_ms: 30_000,
            retries: 3,
        }
    }
}

const VARS: [&str; 11] = [
    "INGEST_STORAGE_S3_ENDPOINT",
    "INGEST_STORAGE_S3_BUCKET",
    "INGEST_STORAGE_S3_REGION",
    "INGEST_STORAGE_S3_ACCESS_KEY_ID",
    "INGEST_STORAGE_S3_SECRET_ACCESS_KEY",
    "INGEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE",
    "INGEST_STORAGE_S3_PATH_STYLE",
    "INGEST_STORAGE_S3_ALLOW_HTTP",
    "INGEST_STORAGE_S3_PREFIX",
    "INGEST_STORAGE_S3_TIMEOUT_MS",
    "INGEST_STORAGE_S3_RETRIES",
];

impl StorageConfig {
    /// Environment overrides `INGEST_STORAGE_BACKEND` (`local`/`s3`) and
    /// `INGEST_STORAGE_S3_ENDPOINT`, `_BUCKET`, `_REGION`,
    /// `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY`, `_SECRET_ACCESS_KEY_FILE`,
    /// `_PATH_STYLE`, `_ALLOW_HTTP`, `_PREFIX`, `_TIMEOUT_MS`, `_RETRIES`
    /// (any of these adds a `[storage.s3]` section; only `backend` chooses
    /// it).
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INGEST_STORAGE_BACKEND") {
            self.backend = match v.trim() {
                "local" => StorageBackend::Local,
                "s3" => StorageBackend::S3,
                _ => {
                    return Err(ConfigError::Env {
                        var: "INGEST_STORAGE_BACKEND".into(),
                        message: format!("`{v}` is not local or s3"),
                    });
                }
            };
        }
        for var in VARS {
            let Some(v) = get(var) else { continue };
            let env = |message: String| ConfigError::Env {
                var: var.into(),
                message,
            };
            let flag = |v: &str| {
                v.trim()
                    .parse::<bool>()
                    .map_err(|_| env(format!("`{v}` is not true or false")))
            };
            let number = |v: &str| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| env(format!("`{v}` is not a whole number")))
            };
            let c = self.s3.get_or_insert_with(S3Config::default);
            match var {
                "INGEST_STORAGE_S3_ENDPOINT" => c.endpoint = v,
                "INGEST_STORAGE_S3_BUCKET" => c.bucket = v,
                "INGEST_STORAGE_S3_REGION" => c.region = v,
                "INGEST_STORAGE_S3_ACCESS_KEY_ID" => c.access_key_id = v,
                "INGEST_STORAGE_S3_SECRET_ACCESS_KEY" => c.secret_access_key = Secret::new(v),
                "INGEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE" => c.secret_access_key_file = v,
                "INGEST_STORAGE_S3_PATH_STYLE" => c.path_style = flag(&v)?,
                "INGEST_STORAGE_S3_ALLOW_HTTP" => c.allow_http = flag(&v)?,
                "INGEST_STORAGE_S3_PREFIX" => c.prefix = v,
                "INGEST_STORAGE_S3_TIMEOUT_MS" => c.timeout_ms = number(&v)?,
                _ => {
                    c.retries = u32::try_from(number(&v)?)
                        .map_err(|_| env(format!("`{v}` is too large")))?;
                }
            }
        }
        Ok(())
    }

    /// Checks the section the backend uses; errors name `storage.…`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (self.backend, &self.s3) {
            (StorageBackend::S3, None) => Err(ConfigError::Invalid {
                field: "storage.s3".into(),
                message: "required with backend = \"s3\" (endpoint, bucket, access key)".into(),
            }),
            (StorageBackend::S3, Some(s3)) => s3.validate(),
            // A section that is not chosen is still checked, so a typo
            // does not wait for the day someone switches to it.
            (StorageBackend::Local, Some(s3)) => s3.validate(),
            (StorageBackend::Local, None) => Ok(()),
        }
    }
}

impl S3Config {
    /// Checks every field; the error names it (`storage.s3.…`). Reads the
    /// secret's file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.endpoint_url()?;
        bucket_name(&self.bucket).map_err(|m| invalid("bucket", m))?;
        let r = &self.region;
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("region", "1-64 of A-Z a-z 0-9 - _".into()));
        }
        let k = &self.access_key_id;
        if k.is_empty() {
            return Err(invalid("access_key_id", "must not be empty".into()));
        }
        if k.len() > 128 || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "access_key_id",
                "at most 128 printable ASCII characters, no spaces".into(),
            ));
        }
        self.secret()?;
        prefix(&self.prefix).map_err(|m| invalid("prefix", m))?;
        if !(100..=600_000).contains(&self.timeout_ms) {
            return Err(invalid("timeout_ms", "within 100..=600000".into()));
        }
        if self.retries > 10 {
            return Err(invalid("retries", "within 0..=10".into()));
        }
        Ok(())
    }

    /// The endpoint, checked: `https://`, or `http://` on loopback or with
    /// `allow_http`; a host; no credentials, path, query or fragment.
    pub fn endpoint_url(&self) -> Result<Url, ConfigError> {
        let s = &self.endpoint;
        let bad = |m: String| invalid("endpoint", m);
        if s.is_empty() {
            return Err(bad("must not be empty (the S3 API's URL)".into()));
        }
        let u = Url::parse(s).map_err(|e| bad(format!("`{s}` is not a URL: {e}")))?;
        match u.scheme() {
            "https" => {}
            "http" if crate::outbound::is_loopback(&u) || self.allow_http => {}
            "http" => {
                return Err(bad(format!(
                    "`{s}`: http:// only on a loopback host, or with allow_http = true"
                )));
            }
            other => return Err(bad(format!("`{s}`: scheme {other}, expected https://"))),
        }
        if u.host().is_none() {
            return Err(bad(format!("`{s}`: no host")));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL: use access_key_id and the secret".into(),
            ));
        }
        if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
            return Err(bad(format!(
                "`{s}`: scheme, host and port only (no path, ?query or #fragment)"
            )));
        }
        Ok(u)
    }

    /// The secret access key: from the environment, or the first line of
    /// `secret_access_key_file`. Exactly one of them.
    pub fn secret(&self) -> Result<Secret, ConfigError> {
        let field = "secret_access_key_file";
        match (
            self.secret_access_key.expose().is_empty(),
            self.secret_access_key_file.is_empty(),
        ) {
            (false, true) => Ok(self.secret_access_key.clone()),
            (false, false) => Err(invalid(
                field,
                "set either the file or INGEST_STORAGE_S3_SECRET_ACCESS_KEY, not both".into(),
            )),
            (true, true) => Err(invalid(
                field,
                "required: a file holding the secret access key \
                 (or INGEST_STORAGE_S3_SECRET_ACCESS_KEY)"
                    .into(),
            )),
            (true, false) => {
                let path = &self.secret_access_key_file;
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid(field, format!("cannot read `{path}`: {e}")))?;
                let secret = text.lines().next().unwrap_or("").trim();
                if secret.is_empty() {
                    return Err(invalid(field, format!("`{path}` is empty")));
                }
                Ok(Secret::new(secret))
            }
        }
    }

    /// Where requests for the bucket go: the endpoint itself (path style,
    /// the bucket is appended by the client) or `{bucket}.{host}`
    /// (virtual-hosted style).
    pub fn bucket_endpoint(&self) -> Result<String, ConfigError> {
        let u = self.endpoint_url()?;
        if self.path_style {
            return Ok(u.as_str().trim_end_matches('/').to_owned());
        }
        let host = u.host_str().unwrap_or_default();
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(format!("{}://{}.{host}{port}", u.scheme(), self.bucket))
    }

    /// How the store is named in logs and errors: endpoint, bucket and
    /// prefix (never the key or the secret).
    pub fn describe(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", self.prefix)
        };
        format!(
            "s3 {} bucket {}{prefix}",
            self.endpoint.trim_end_matches('/'),
            self.bucket
        )
    }
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        field: format!("storage.s3.{field}"),
        message,
    }
}

/// S3's bucket naming rules, the strict (DNS-compatible) form.
fn bucket_name(b: &str) -> Result<(), String> {
    if b.is_empty() {
        return Err("must not be empty (the bucket that holds evidence)".into());
    }
    let ok_chars = b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&b.len())
        || !ok_chars
        || !edge(b.bytes().next())
        || !edge(b.bytes().last())
        || b.contains("..")
        || b.parse::<std::net::Ipv4Addr>().is_ok()
    {
        return Err(format!(
            "`{b}`: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Empty, or segments of `A-Z a-z 0-9 - _ .` joined by `/` (no empty, `.`
/// or `..` segment, no leading or trailing `/`).
fn prefix(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    let ok = p.len() <= 256
        && p.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{p}`: segments of A-Z a-z 0-9 - _ . joined by / (like ingest/prod), \
             no leading or trailing /"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with_env(vars: &[(&str, &str)]) -> Result<StorageConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = StorageConfig::default();
        c.apply_env(&|k: &str| map.get(k).cloned())?;
        c.validate()?;
        Ok(c)
    }

    const GOOD: [(&str, &str); 5] = [
        ("INGEST_STORAGE_BACKEND", "s3"),
        ("INGEST_STORAGE_S3_ENDPOINT", "http://127.0.0.1:3900"),
        ("INGEST_STORAGE_S3_BUCKET", "evidence"),
        ("INGEST_STORAGE_S3_ACCESS_KEY_ID", "GK0123"),
        ("INGEST_STORAGE_S3_SECRET_ACCESS_KEY", "very-secret-value"),
    ];

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            ConfigError::Env { var, .. } => var,
            other => panic!("{other}"),
        }
    }

    fn changed(var: &str, value: &str) -> Result<StorageConfig, ConfigError> {
        let mut v: Vec<_> = GOOD.iter().filter(|(k, _)| *k != var).copied().collect();
        if !value.is_empty() {
            v.push((var, value));
        }
        with_env(&v)
    }

    #[test]
    fn local_is_the_default_and_needs_nothing() {
        let c = with_env(&[]).unwrap();
        assert_eq!(c.backend, StorageBackend::Local);
        assert!(c.s3.is_none());
    }

    #[test]
    fn a_complete_s3_section_from_the_environment() {
        let c = with_env(&GOOD).unwrap();
        let s3 = c.s3.unwrap();
        assert_eq!(s3.bucket_endpoint().unwrap(), "http://127.0.0.1:3900");
        assert_eq!(s3.secret().unwrap().expose(), "very-secret-value");
        assert!(!format!("{s3:?}").contains("very-secret-value"));
        assert_eq!(s3.describe(), "s3 http://127.0.0.1:3900 bucket evidence");
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases = [
            ("INGEST_STORAGE_S3_BUCKET", "", "storage.s3.bucket"),
            ("INGEST_STORAGE_S3_BUCKET", "Evidence_", "storage.s3.bucket"),
            ("INGEST_STORAGE_S3_ENDPOINT", "", "storage.s3.endpoint"),
            (
                "INGEST_STORAGE_S3_ENDPOINT",
                "not a url",
                "storage.s3.endpoint",
            ),
            (
                "INGEST_STORAGE_S3_ENDPOINT",
                "ftp://x",
                "storage.s3.endpoint",
            ),
            (
                "INGEST_STORAGE_S3_ENDPOINT",
                "http://s3.ioc.example",
                "storage.s3.endpoint",
            ),
            (
                "INGEST_STORAGE_S3_ENDPOINT",
                "https://k:s@s3.example",
                "storage.s3.endpoint",
            ),
            (
                "INGEST_STORAGE_S3_ENDPOINT",
                "https://s3.example/bucket",
                "storage.s3.endpoint",
            ),
            (
                "INGEST_STORAGE_S3_ACCESS_KEY_ID",
                "",
                "storage.s3.access_key_id",
            ),
            (
                "INGEST_STORAGE_S3_SECRET_ACCESS_KEY",
                "",
                "storage.s3.secret_access_key_file",
            ),
            ("INGEST_STORAGE_S3_PREFIX", "/a", "storage.s3.prefix"),
            ("INGEST_STORAGE_S3_PREFIX", "a/../b", "storage.s3.prefix"),
            ("INGEST_STORAGE_S3_REGION", "eu west", "storage.s3.region"),
            ("INGEST_STORAGE_S3_TIMEOUT_MS", "1", "storage.s3.timeout_ms"),
            ("INGEST_STORAGE_S3_RETRIES", "11", "storage.s3.retries"),
            (
                "INGEST_STORAGE_S3_RETRIES",
                "x",
                "INGEST_STORAGE_S3_RETRIES",
            ),
            (
                "INGEST_STORAGE_S3_PATH_STYLE",
                "yes",
                "INGEST_STORAGE_S3_PATH_STYLE",
            ),
            ("INGEST_STORAGE_BACKEND", "gcs", "INGEST_STORAGE_BACKEND"),
        ];
        for (var, value, field) in cases {
            let e = changed(var, value).expect_err(var);
            let msg = e.to_string();
            assert_eq!(field_of(e), field, "{var}={value}: {msg}");
            assert!(!msg.contains("very-secret-value"), "{msg}");
        }
    }

    #[test]
    fn s3_backend_without_a_section_is_refused() {
        let e = with_env(&[("INGEST_STORAGE_BACKEND", "s3")]).unwrap_err();
        assert_eq!(field_of(e), "storage.s3");
    }

    #[test]
    fn http_needs_loopback_or_the_explicit_opt_in() {
        assert!(changed("INGEST_STORAGE_S3_ENDPOINT", "http://localhost:9000").is_ok());
        let mut v = GOOD.to_vec();
        v.retain(|(k, _)| *k != "INGEST_STORAGE_S3_ENDPOINT");
        v.push(("INGEST_STORAGE_S3_ENDPOINT", "http://garage.ioc.lan:3900"));
        assert!(with_env(&v).is_err());
        v.push(("INGEST_STORAGE_S3_ALLOW_HTTP", "true"));
        assert!(with_env(&v).is_ok());
    }

    #[test]
    fn the_secret_comes_from_one_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let path = file.to_str().unwrap();
        let mut v: Vec<_> = GOOD[..4].to_vec();
        v.push(("INGEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE", path));
        let c = with_env(&v).unwrap();
        assert_eq!(c.s3.unwrap().secret().unwrap().expose(), "from-the-file");
        v.push(("INGEST_STORAGE_S3_SECRET_ACCESS_KEY", "x"));
        assert_eq!(
            field_of(with_env(&v).unwrap_err()),
            "storage.s3.secret_access_key_file"
        );
        let missing = dir.path().join("nope");
        let mut v: Vec<_> = GOOD[..4].to_vec();
        v.push((
            "INGEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE",
            missing.to_str().unwrap(),
        ));
        let e = with_env(&v).unwrap_err().to_string();
        assert!(
            e.contains("storage.s3.secret_access_key_file") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn virtual_hosted_style_puts_the_bucket_in_the_host() {
        let mut v = GOOD.to_vec();
        v.retain(|(k, _)| *k != "INGEST_STORAGE_S3_ENDPOINT");
        v.push(("INGEST_STORAGE_S3_ENDPOINT", "https://s3.example.vn:8443/"));
        v.push(("INGEST_STORAGE_S3_PATH_STYLE", "false"));
        let s3 = with_env(&v).unwrap().s3.unwrap();
        assert_eq!(
            s3.bucket_endpoint().unwrap(),
            "https://evidence.s3.example.vn:8443"
        );
    }

    #[test]
    fn toml_section_parses_and_refuses_an_inline_secret() {
        let c: StorageConfig = toml::from_str(
            "backend = \"s3\"\n[s3]\nendpoint = \"https://s3.example.vn\"\nbucket = \"ev\"\n",
        )
        .unwrap();
        assert_eq!(c.backend, StorageBackend::S3);
        let e = toml::from_str::<StorageConfig>("[s3]\nsecret_access_key = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("secret_access_key"), "{e}");
    }
}
