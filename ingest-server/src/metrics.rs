//! Prometheus metrics of ingest, served at `GET /metrics` in the text
//! exposition format: bundles by outcome, quarantined messages by reason,
//! batches and their sizes, clips stored, heartbeats kept, and how long a
//! group commit takes (evidence write and database transaction apart, as
//! histograms: the two phases fail differently, a slow disk or object store
//! against a slow database). Plain atomics and a small map, no metrics
//! framework: the set is small and fixed.
//!
//! Who may read them ([`scrape_allowed`]): with `http.metrics_token` set, a
//! scraper presenting it as a bearer token; without, only a client on this
//! machine talking to the server directly. The figures hold no personal
//! data, but load, rejection and quarantine counts are the city's
//! operational picture, not the public's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a `GET /metrics` may be answered: the bearer `token` when one
/// is configured; otherwise a loopback `peer` that forwards nobody (a
/// local reverse proxy adds `X-Forwarded-For` or `Forwarded`, and must not
/// open the metrics to the whole network).
pub fn scrape_allowed(token: Option<&str>, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    match token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| crate::web::same_secret(given, token)),
        None => {
            peer.is_some_and(|p| p.is_loopback())
                && !headers.contains_key("x-forwarded-for")
                && !headers.contains_key(header::FORWARDED)
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    stored: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    batches: AtomicU64,
    batched_bundles: AtomicU64,
    clips_stored: AtomicU64,
    heartbeats: AtomicU64,
    /// How many of the server's MQTT connections are up.
    mqtt_connected: AtomicU64,
    quarantined: Mutex<BTreeMap<String, u64>>,
    evidence_write: Histogram,
    db_commit: Histogram,
}

/// Upper bounds (seconds) of the commit histograms' buckets.
const BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A Prometheus histogram over [`BUCKETS_S`]: a count per bucket (not
/// cumulative; summed when rendered), the count and the sum in microseconds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS_S.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// What happened to one bundle.
#[derive(Debug, Clone, Copy)]
pub enum BundleOutcome {
    /// Stored.
    Stored,
    /// Already stored.
    Duplicate,
    /// Quarantined.
    Rejected,
}

impl Metrics {
    /// One bundle answered.
    pub fn bundle(&self, outcome: BundleOutcome) {
        let c = match outcome {
            BundleOutcome::Stored => &self.stored,
            BundleOutcome::Duplicate => &self.duplicate,
            BundleOutcome::Rejected => &self.rejected,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One batch committed.
    pub fn batch(&self, size: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_bundles
            .fetch_add(size as u64, Ordering::Relaxed);
    }

    /// How long one group commit's two phases took: writing the evidence
    /// (one sync for the batch) and the database transaction.
    pub fn commit_phases(&self, evidence: std::time::Duration, db: std::time::Duration) {
        self.evidence_write.observe(evidence);
        self.db_commit.observe(db);
    }

    /// One message quarantined, by reason code.
    pub fn quarantined(&self, reason: &str) {
        if let Ok(mut m) = self.quarantined.lock() {
            *m.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// One clip assembled and stored.
    pub fn clip_stored(&self) {
        self.clips_stored.fetch_add(1, Ordering::Relaxed);
    }

    /// One heartbeat kept.
    pub fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// One of the server's MQTT connections came up (or went down).
    pub fn mqtt_connection(&self, up: bool) {
        if up {
            self.mqtt_connected.fetch_add(1, Ordering::Relaxed);
        } else {
            // Never below zero, whatever the order of reports.
            let _ = self
                .mqtt_connected
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ingest_bundles_total Event bundles answered, by outcome."
        );
        let _ = writeln!(out, "# TYPE ingest_bundles_total counter");
        for (label, c) in [
            ("stored", &self.stored),
            ("duplicate", &self.duplicate),
            ("rejected", &self.rejected),
        ] {
            let _ = writeln!(
                out,
                "ingest_bundles_total{{outcome=\"{label}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ingest_quarantined_total Messages quarantined, by reason code."
        );
        let _ = writeln!(out, "# TYPE ingest_quarantined_total counter");
        if let Ok(m) = self.quarantined.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "ingest_quarantined_total{{reason=\"{reason}\"}} {n}");
            }
        }
        for (name, help, c) in [
            ("ingest_batches_total", "Group commits.", &self.batches),
            (
                "ingest_batched_bundles_total",
                "Bundles in group commits.",
                &self.batched_bundles,
            ),
            (
                "ingest_clips_stored_total",
                "Clips assembled and stored.",
                &self.clips_stored,
            ),
            (
                "ingest_heartbeats_total",
                "Heartbeats verified and kept.",
                &self.heartbeats,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", get(c));
        }
        let _ = writeln!(
            out,
            "# HELP ingest_mqtt_connected How many of this server's MQTT connections ([mqtt] connections) are up; 0 means it takes no events."
        );
        let _ = writeln!(out, "# TYPE ingest_mqtt_connected gauge");
        let _ = writeln!(out, "ingest_mqtt_connected {}", get(&self.mqtt_connected));
        self.evidence_write.render(
            &mut out,
            "ingest_evidence_write_seconds",
            "Writing one group commit's evidence (one pack object for the batch).",
        );
        self.db_commit.render(
            &mut out,
            "ingest_db_commit_seconds",
            "One group commit's database transaction.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_go_to_the_token_or_to_a_direct_local_client_only() {
        use super::scrape_allowed;
        let local = Some(std::net::IpAddr::from([127, 0, 0, 1]));
        let remote = Some(std::net::IpAddr::from([10, 0, 0, 7]));
        let none = HeaderMap::new();
        let mut fwd = HeaderMap::new();
        fwd.insert("x-forwarded-for", "203.0.113.5".parse().unwrap());
        let bearer = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
            h
        };
        assert!(scrape_allowed(None, local, &none));
        assert!(
            !scrape_allowed(None, local, &fwd),
            "a proxy forwarding someone"
        );
        assert!(!scrape_allowed(None, remote, &none));
        assert!(!scrape_allowed(None, None, &none));
        assert!(scrape_allowed(
            Some("s3cret-token"),
            remote,
            &bearer("s3cret-token")
        ));
        assert!(!scrape_allowed(
            Some("s3cret-token"),
            remote,
            &bearer("s3cret-tokeX")
        ));
        assert!(
            !scrape_allowed(Some("s3cret-token"), local, &none),
            "the token, even locally"
        );
    }

    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.bundle(BundleOutcome::Stored);
        m.bundle(BundleOutcome::Stored);
        m.quarantined("bad_signature");
        m.batch(2);
        let text = m.render();
        assert!(
            text.contains("ingest_bundles_total{outcome=\"stored\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ingest_quarantined_total{reason=\"bad_signature\"} 1"),
            "{text}"
        );
        assert!(text.contains("ingest_batched_bundles_total 2"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        use std::time::Duration;
        let m = Metrics::default();
        m.commit_phases(Duration::from_micros(800), Duration::from_millis(30));
        m.commit_phases(Duration::from_millis(20), Duration::from_secs(9));
        let text = m.render();
        for line in [
            "ingest_evidence_write_seconds_bucket{le=\"0.001\"} 1",
            "ingest_evidence_write_seconds_bucket{le=\"0.025\"} 2",
            "ingest_evidence_write_seconds_bucket{le=\"+Inf\"} 2",
            "ingest_evidence_write_seconds_count 2",
            "ingest_evidence_write_seconds_sum 0.0208",
            "ingest_db_commit_seconds_bucket{le=\"0.025\"} 0",
            "ingest_db_commit_seconds_bucket{le=\"0.05\"} 1",
            "ingest_db_commit_seconds_bucket{le=\"5\"} 1",
            "ingest_db_commit_seconds_bucket{le=\"+Inf\"} 2",
            "# TYPE ingest_db_commit_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
