//! `[retention]`: how long evidence is kept once a case no longer needs it.
//!
//! The floors are the law's, not taste: a violation can be penalised for a
//! year (the limitation period), and a citizen may go to court over a
//! decision within a year of it, so the evidence of a paid or closed case
//! is kept at least 365 days after it closed. A rejected case fines no one;
//! its evidence (a stranger's car, a plate that was misread) is exactly the
//! data Decree 13/2023 wants deleted once it is not needed, so it goes
//! after `rejected_days` (a supervisor may reopen a rejection until then).

use serde::Deserialize;

use crate::config::ConfigError;

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Run the purge in the server (once at start, then every
    /// `check_hours`); `INGEST_RETENTION_ENABLED`. Off: only the CLI
    /// (`ingest-server evidence purge`) deletes.
    pub enabled: bool,
    /// Days after a case was rejected; `INGEST_RETENTION_REJECTED_DAYS`.
    pub rejected_days: u32,
    /// Days after a case was paid or closed, at least 365;
    /// `INGEST_RETENTION_CLOSED_DAYS`.
    pub closed_days: u32,
    /// Days a quarantined message's raw bytes are kept;
    /// `INGEST_RETENTION_QUARANTINE_DAYS`.
    pub quarantine_days: u32,
    /// Hours between runs in the server; `INGEST_RETENTION_CHECK_HOURS`.
    pub check_hours: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rejected_days: 90,
            closed_days: 730,
            quarantine_days: 90,
            check_hours: 24,
        }
    }
}

/// The limitation period, below which `closed_days` may not go.
pub const MIN_CLOSED_DAYS: u32 = 365;

impl RetentionConfig {
    /// Environment overrides (`INGEST_RETENTION_*`).
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INGEST_RETENTION_ENABLED") {
            self.enabled = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "INGEST_RETENTION_ENABLED".into(),
                message: format!("`{v}` is not true or false"),
            })?;
        }
        for (var, field) in [
            ("INGEST_RETENTION_REJECTED_DAYS", &mut self.rejected_days),
            ("INGEST_RETENTION_CLOSED_DAYS", &mut self.closed_days),
            (
                "INGEST_RETENTION_QUARANTINE_DAYS",
                &mut self.quarantine_days,
            ),
            ("INGEST_RETENTION_CHECK_HOURS", &mut self.check_hours),
        ] {
            if let Some(v) = get(var) {
                *field = v.trim().parse().map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{v}` is not a whole number"),
                })?;
            }
        }
        Ok(())
    }

    /// Checks the ranges; errors name `retention.…`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |field: &str, v: u32, range: std::ops::RangeInclusive<u32>, why: &str| {
            if range.contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    field: format!("retention.{field}"),
                    message: format!("{v} is outside {}..={} ({why})", range.start(), range.end()),
                })
            }
        };
        check("rejected_days", self.rejected_days, 7..=3650, "days")?;
        check(
            "closed_days",
            self.closed_days,
            MIN_CLOSED_DAYS..=3650,
            "evidence is kept at least the one-year limitation period",
        )?;
        check("quarantine_days", self.quarantine_days, 7..=3650, "days")?;
        check("check_hours", self.check_hours, 1..=168, "hours")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_floor_is_the_limitation_period() {
        RetentionConfig::default().validate().unwrap();
        let short = RetentionConfig {
            closed_days: 200,
            ..RetentionConfig::default()
        };
        let e = short.validate().unwrap_err().to_string();
        assert!(
            e.contains("retention.closed_days") && e.contains("limitation"),
            "{e}"
        );
    }

    #[test]
    fn environment_overrides_are_parsed_and_bad_ones_named() {
        let mut c = RetentionConfig::default();
        c.apply_env(&|k| match k {
            "INGEST_RETENTION_REJECTED_DAYS" => Some("30".into()),
            "INGEST_RETENTION_ENABLED" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.rejected_days, c.enabled), (30, false));
        let e = c
            .apply_env(&|k| (k == "INGEST_RETENTION_CLOSED_DAYS").then(|| "a year".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("INGEST_RETENTION_CLOSED_DAYS"), "{e}");
    }
}
