//! Prometheus metrics of ingest, served at `GET /metrics` in the text
//! exposition format: bundles by outcome, quarantined messages by reason,
//! batches and their sizes, clips stored, heartbeats kept. Plain atomics and
//! a small map, no metrics framework: the set is small and fixed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    quarantined: Mutex<BTreeMap<String, u64>>,
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
        out
    }
}

#[cfg(test)]
mod tests {
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
}
