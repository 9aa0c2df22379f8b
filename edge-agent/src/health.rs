//! What the box says about itself: the signed heartbeat (cameras, outbox,
//! disk, alarms, clock) and Prometheus metrics on a local port.
//!
//! Cameras report into a shared [`HealthBoard`]; the delivery loop reads it,
//! adds the outbox figures, and publishes a heartbeat (retained, so the
//! server and operators see the latest state even after a restart). Metrics
//! are plain counters and gauges served as Prometheus text by a tiny HTTP
//! listener on loopback, so a site technician or node exporter can scrape
//! them without the network to the IOC.

use crate::identity::DeviceIdentity;
use crate::outbox::OutboxStats;
use protocol::{
    Alarm, BootSeq, CameraState, CameraStatus, ClockSync, ClockSyncStatus, Heartbeat, OutboxStatus,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The agent's software version as it appears in events and heartbeats.
pub const SOFTWARE_VERSION: &str = concat!("edge-agent ", env!("CARGO_PKG_VERSION"));

/// Alarm code: since the last heartbeat, a violation was found whose
/// evidence or event could not be made or queued (see the agent's log).
pub const ALARM_VIOLATIONS_UNREPORTED: &str = "violations_unreported";

/// Heartbeat alarm: a lane group whose signal comes from its controller's
/// phase feed is unknown (nothing heard for its `feed_silence_s`, or not
/// yet since start), so red-light running in its lanes is not judged.
pub const ALARM_SIGNAL_FEED_SILENT: &str = "signal_feed_silent";

/// The outbox dropped evidence (a clip, stills or a whole event) to keep
/// within its limits in the last day; which, in its `evictions` table and
/// the log. Raised for a day after each eviction, so a daily look at the
/// fleet does not miss it.
pub const ALARM_EVIDENCE_EVICTED: &str = "evidence_evicted";

/// A camera reported streaming whose last frame has not changed for this
/// long is reported `stalled` (fps 0, alarm `camera_stalled`) whatever its
/// last report said: its analysis thread stopped reporting, or hangs. Longer
/// than the capture's own frame timeout (10 s), after which a silent stream
/// already reports itself stalled.
pub const CAMERA_SILENT_AFTER: Duration = Duration::from_secs(15);

/// Heartbeat alarm: a live camera's frames have shown the same picture for
/// `[health] camera_frozen_s` (a stuck encoder or ISP): it is blind though
/// frames arrive. The camera is also given as `stalled` (fps 0), which
/// raises `camera_stalled`; this names why.
pub const ALARM_CAMERA_FROZEN: &str = "camera_frozen";

/// Disk below this many free bytes raises `disk_low`.
pub const DISK_LOW_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Camera states, written by the cameras, read by the heartbeat.
#[derive(Debug, Default)]
pub struct HealthBoard {
    /// Each camera's last report, and when its last frame time last
    /// changed (this box's monotonic clock).
    cameras: Mutex<BTreeMap<String, (CameraStatus, Instant)>>,
    /// Bytes each camera's evidence ring holds (local metrics only, not in
    /// the heartbeat).
    ring_bytes: Mutex<BTreeMap<String, u64>>,
    /// Violations the rules found that never reached the outbox
    /// (post-processing or queueing failed); how many of them the last
    /// heartbeat built counted; and how many a published heartbeat raised
    /// its alarm for (an alarm in a heartbeat that was not published is
    /// raised again).
    unreported: AtomicU64,
    unreported_in_heartbeat: AtomicU64,
    unreported_alarmed: AtomicU64,
    /// Fed lane groups whose signal is unknown, by camera.
    silent_feeds: Mutex<BTreeMap<String, usize>>,
    /// Cameras whose picture is frozen (`detect::FreezeWatch`).
    frozen: Mutex<BTreeSet<String>>,
}

impl HealthBoard {
    /// Records one camera's current state.
    pub fn set_camera(&self, status: CameraStatus) {
        self.set_camera_at(status, Instant::now());
    }

    fn set_camera_at(&self, status: CameraStatus, now: Instant) {
        if let Ok(mut map) = self.cameras.lock() {
            let since = match map.get(&status.camera_id) {
                Some((old, since)) if old.last_frame_time == status.last_frame_time => *since,
                _ => now,
            };
            map.insert(status.camera_id.clone(), (status, since));
        }
    }

    /// Records that a camera's analysis ended for good (not at shutdown: a
    /// recording finished, the analysis could not go on, it panicked): it
    /// is `failed` with no fps from now on, its last frame time kept.
    pub fn camera_ended(&self, camera_id: &str) {
        self.set_frozen(camera_id, false);
        let last_frame_time = self.cameras.lock().ok().and_then(|m| {
            m.get(camera_id)
                .and_then(|(status, _)| status.last_frame_time)
        });
        self.set_camera(CameraStatus {
            camera_id: camera_id.to_owned(),
            state: CameraState::Failed,
            last_frame_time,
            analysed_fps: 0.0,
        });
    }

    /// Records the bytes one camera's evidence ring holds.
    pub fn set_ring_bytes(&self, camera_id: &str, bytes: u64) {
        if let Ok(mut map) = self.ring_bytes.lock() {
            map.insert(camera_id.to_owned(), bytes);
        }
    }

    /// Every camera's last reported evidence ring size, by camera id.
    pub fn ring_bytes(&self) -> Vec<(String, u64)> {
        self.ring_bytes
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Counts a violation that was found but could not be reported (its
    /// evidence could not be made, or the outbox refused it): never silent,
    /// it raises the heartbeat's `violations_unreported` alarm.
    pub fn violation_unreported(&self) {
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }

    /// Violations found but not reported since start.
    pub fn unreported(&self) -> u64 {
        self.unreported.load(Ordering::Relaxed)
    }

    /// How many were added since the last published heartbeat's alarm;
    /// remembered for [`HealthBoard::heartbeat_sent`].
    fn newly_unreported(&self) -> u64 {
        let now = self.unreported();
        self.unreported_in_heartbeat.store(now, Ordering::Relaxed);
        now.saturating_sub(self.unreported_alarmed.load(Ordering::Relaxed))
    }

    /// The heartbeat last built was published: its alarm was raised.
    pub fn heartbeat_sent(&self) {
        let built = self.unreported_in_heartbeat.load(Ordering::Relaxed);
        self.unreported_alarmed.fetch_max(built, Ordering::Relaxed);
    }

    /// Records how many of a camera's fed lane groups are unknown now.
    pub fn set_silent_feeds(&self, camera_id: &str, groups: usize) {
        // Called every analysed frame: no allocation once the camera is in.
        if let Ok(mut map) = self.silent_feeds.lock() {
            match map.get_mut(camera_id) {
                Some(n) => *n = groups,
                None => {
                    map.insert(camera_id.to_owned(), groups);
                }
            }
        }
    }

    /// Records whether a camera's picture is frozen: while it is, a camera
    /// reported streaming is given as stalled, no fps, and the heartbeat
    /// carries `camera_frozen`.
    pub fn set_frozen(&self, camera_id: &str, frozen: bool) {
        if let Ok(mut set) = self.frozen.lock() {
            if frozen {
                set.insert(camera_id.to_owned());
            } else {
                set.remove(camera_id);
            }
        }
    }

    /// Whether any camera's picture is frozen.
    pub fn any_frozen(&self) -> bool {
        self.frozen.lock().map(|s| !s.is_empty()).unwrap_or(false)
    }

    /// Whether any camera has a fed lane group whose signal is unknown.
    pub fn any_feed_silent(&self) -> bool {
        self.silent_feeds
            .lock()
            .map(|m| m.values().any(|&n| n > 0))
            .unwrap_or(false)
    }

    /// Every camera's last reported state; one reported streaming with no
    /// new frame for [`CAMERA_SILENT_AFTER`] is given as stalled, no fps.
    /// A frozen picture ([`HealthBoard::set_frozen`]) does not change the
    /// state: frames do arrive, and an unchanging picture may also be a
    /// quiet scene an encoder sends without noise, so it is an alarm for a
    /// person to look (`camera_frozen`), not a claim that the camera
    /// stopped.
    pub fn cameras(&self) -> Vec<CameraStatus> {
        self.cameras_at(Instant::now())
    }

    fn cameras_at(&self, now: Instant) -> Vec<CameraStatus> {
        let Ok(map) = self.cameras.lock() else {
            return Vec::new();
        };
        map.values()
            .map(|(status, since)| {
                let mut status = status.clone();
                if status.state == CameraState::Streaming
                    && now.saturating_duration_since(*since) >= CAMERA_SILENT_AFTER
                {
                    status.state = CameraState::Stalled;
                    status.analysed_fps = 0.0;
                }
                status
            })
            .collect()
    }
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bundles published (first sends and resends).
    pub events_published: AtomicU64,
    /// Events the server acknowledged as stored or duplicate.
    pub events_acked: AtomicU64,
    /// Events the server rejected.
    pub events_rejected: AtomicU64,
    /// Acks refused (unsigned, forged, for another device, malformed).
    pub acks_refused: AtomicU64,
    /// Signed rejections of bytes this device did not send (an altered
    /// copy published under its event id): ignored.
    pub foreign_rejections: AtomicU64,
    /// Signal controllers' phases handed to the cameras.
    pub signal_phases: AtomicU64,
    /// Phase messages refused (malformed, wrong group, clock off).
    pub signal_phases_refused: AtomicU64,
    /// Clip chunks published.
    pub chunks_published: AtomicU64,
    /// Heartbeats published.
    pub heartbeats: AtomicU64,
    /// Broker connections made.
    pub connects: AtomicU64,
    /// 1 while connected.
    pub connected: AtomicU64,
    /// Outbox depth (undelivered events).
    pub outbox_depth: AtomicU64,
    /// Evidence bytes in the outbox.
    pub outbox_bytes: AtomicU64,
    /// Age of the oldest undelivered event, seconds.
    pub outbox_oldest_s: AtomicU64,
    /// Evictions recorded.
    pub evictions: AtomicU64,
}

impl Metrics {
    /// Updates the outbox gauges.
    pub fn set_outbox(&self, s: &OutboxStats) {
        self.outbox_depth.store(s.depth, Ordering::Relaxed);
        self.outbox_bytes.store(s.bytes, Ordering::Relaxed);
        self.outbox_oldest_s
            .store(s.oldest_age_s.unwrap_or(0), Ordering::Relaxed);
        self.evictions.store(s.evictions, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, board: &HealthBoard) -> String {
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        };
        put(
            "edge_events_published_total",
            "counter",
            "Event bundles published.",
            &self.events_published,
        );
        put(
            "edge_events_acked_total",
            "counter",
            "Events acknowledged by the server.",
            &self.events_acked,
        );
        put(
            "edge_events_rejected_total",
            "counter",
            "Events rejected by the server.",
            &self.events_rejected,
        );
        put(
            "edge_acks_refused_total",
            "counter",
            "Acks refused: not signed by a trusted server key for this device, or malformed.",
            &self.acks_refused,
        );
        put(
            "edge_foreign_rejections_total",
            "counter",
            "Rejections of bytes this device did not send (an altered copy under its event id): ignored.",
            &self.foreign_rejections,
        );
        put(
            "edge_signal_phases_total",
            "counter",
            "Signal controllers' phase messages handed to the cameras.",
            &self.signal_phases,
        );
        put(
            "edge_signal_phases_refused_total",
            "counter",
            "Phase messages refused: malformed, for another group, or stamped by a clock too far from this box's.",
            &self.signal_phases_refused,
        );
        put(
            "edge_clip_chunks_published_total",
            "counter",
            "Clip chunks published.",
            &self.chunks_published,
        );
        put(
            "edge_heartbeats_total",
            "counter",
            "Heartbeats published.",
            &self.heartbeats,
        );
        put(
            "edge_mqtt_connects_total",
            "counter",
            "Broker connections made.",
            &self.connects,
        );
        put(
            "edge_mqtt_connected",
            "gauge",
            "1 while connected to the broker.",
            &self.connected,
        );
        put(
            "edge_outbox_depth",
            "gauge",
            "Undelivered events.",
            &self.outbox_depth,
        );
        put(
            "edge_outbox_bytes",
            "gauge",
            "Evidence bytes held for undelivered events.",
            &self.outbox_bytes,
        );
        put(
            "edge_outbox_oldest_seconds",
            "gauge",
            "Age of the oldest undelivered event.",
            &self.outbox_oldest_s,
        );
        put(
            "edge_outbox_evictions_total",
            "counter",
            "Evictions recorded.",
            &self.evictions,
        );
        out.push_str(
            "# HELP edge_camera_fps Frames analysed per second.\n# TYPE edge_camera_fps gauge\n",
        );
        for c in board.cameras() {
            out.push_str(&format!(
                "edge_camera_fps{{camera=\"{}\"}} {}\n",
                c.camera_id, c.analysed_fps
            ));
        }
        out.push_str(
            "# HELP edge_evidence_ring_bytes Bytes held for evidence from before a violation (coded stream, or decoded frames).
# TYPE edge_evidence_ring_bytes gauge
",
        );
        for (camera, bytes) in board.ring_bytes() {
            out.push_str(&format!(
                "edge_evidence_ring_bytes{{camera=\"{camera}\"}} {bytes}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP edge_violations_unreported_total Violations found whose evidence or event could not be made or queued.\n# TYPE edge_violations_unreported_total counter\nedge_violations_unreported_total {}\n",
            board.unreported()
        ));
        out
    }
}

/// Serves `GET /metrics` on `listen` until `stop`. Returns the bound address.
pub fn serve_metrics(
    listen: &str,
    metrics: Arc<Metrics>,
    board: Arc<HealthBoard>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut line = String::new();
                        // Only the request line matters, and it is short:
                        // a client sending an endless line gets 404, not
                        // this box's memory.
                        let _ = BufReader::new(std::io::Read::take(&stream, 8 * 1024))
                            .read_line(&mut line);
                        let (status, body) = if line.starts_with("GET /metrics ") {
                            ("200 OK", metrics.render(&board))
                        } else {
                            ("404 Not Found", "not found\n".to_owned())
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })?;
    Ok(addr)
}

/// Free bytes on the file system holding `path` (0 if it cannot be read).
pub fn disk_free_bytes(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .unwrap_or(0)
}

/// The clock's sync state from `chronyc -c tracking` (chrony is what the
/// deployment installs); `unknown` when chrony is not there.
pub fn clock_sync() -> ClockSync {
    let Ok(out) = Command::new("chronyc").args(["-c", "tracking"]).output() else {
        return ClockSync::unknown();
    };
    if !out.status.success() {
        return ClockSync::unknown();
    }
    parse_chrony_tracking(&String::from_utf8_lossy(&out.stdout)).unwrap_or_else(ClockSync::unknown)
}

/// Parses `chronyc -c tracking`: field 2 is the reference name, field 5 the
/// system clock's offset in seconds (positive: slow), the last field the
/// leap status (`Not synchronised` when unsynced).
pub fn parse_chrony_tracking(line: &str) -> Option<ClockSync> {
    let f: Vec<&str> = line.trim().split(',').collect();
    if f.len() < 14 {
        return None;
    }
    let offset_s: f64 = f[4].parse().ok()?;
    // `inf`, `nan` or a huge figure is no offset: unread, not "synced".
    if !offset_s.is_finite() || offset_s.abs() > 1e9 {
        return None;
    }
    // chrony reports how far the system clock is *behind* (positive = slow);
    // the protocol's offset is positive when the local clock is ahead.
    let offset_ms = (-offset_s * 1000.0).round() as i64;
    let synced = !f[f.len() - 1].contains("Not synchronised") && !f[1].is_empty();
    let source: String = format!("ntp:{}", f[1]).chars().take(64).collect();
    Some(ClockSync {
        status: if synced && offset_ms.unsigned_abs() < 500 {
            ClockSyncStatus::Synced
        } else {
            ClockSyncStatus::Unsynced
        },
        offset_ms: Some(offset_ms.clamp(
            -protocol::clock::MAX_CLOCK_OFFSET_MS,
            protocol::clock::MAX_CLOCK_OFFSET_MS,
        )),
        source: Some(source),
    })
}

/// This run of the agent: the heartbeat's `boot` (`protocol::BootSeq`), by
/// which the server orders this box's reports without trusting its clock.
#[derive(Debug)]
pub struct AgentRun {
    boot_id: uuid::Uuid,
    started: Instant,
    made: u64,
}

impl AgentRun {
    /// A new run: a fresh random id, no heartbeat made yet.
    pub fn start() -> Self {
        Self {
            boot_id: uuid::Uuid::new_v4(),
            started: Instant::now(),
            made: 0,
        }
    }

    /// The next heartbeat's place in this run (1, 2, …).
    fn next(&mut self) -> BootSeq {
        self.made += 1;
        BootSeq {
            boot_id: self.boot_id,
            seq: self.made,
        }
    }
}

/// Builds the heartbeat from the board, the outbox and the system; each call
/// takes the next place in `run`.
pub fn heartbeat(
    identity: &DeviceIdentity,
    run: &mut AgentRun,
    board: &HealthBoard,
    outbox: &OutboxStats,
    outbox_alarm: Option<Alarm>,
    data_dir: &Path,
    clock: ClockSync,
) -> Heartbeat {
    let cameras: Vec<CameraStatus> = board.cameras().into_iter().take(32).collect();
    let disk_free = disk_free_bytes(data_dir);
    let mut alarms: Vec<Alarm> = outbox_alarm.into_iter().collect();
    if disk_free < DISK_LOW_BYTES {
        alarms.push(Alarm::DiskLow);
    }
    if clock.status == ClockSyncStatus::Unsynced {
        alarms.push(Alarm::ClockUnsynced);
    }
    if cameras.iter().any(|c| c.state == CameraState::Stalled) {
        alarms.push(Alarm::CameraStalled);
    }
    if cameras.iter().any(|c| c.state == CameraState::Failed) {
        alarms.push(Alarm::CameraFailed);
    }
    if board.any_frozen() {
        alarms.push(Alarm::Other(ALARM_CAMERA_FROZEN.into()));
    }
    if board.any_feed_silent() {
        alarms.push(Alarm::Other(ALARM_SIGNAL_FEED_SILENT.into()));
    }
    if board.newly_unreported() > 0 {
        alarms.push(Alarm::Other(ALARM_VIOLATIONS_UNREPORTED.into()));
    }
    if outbox.evictions_last_day > 0 {
        alarms.push(Alarm::Other(ALARM_EVIDENCE_EVICTED.into()));
    }
    Heartbeat {
        schema_version: protocol::SchemaVersion::CURRENT,
        device_id: identity.device_id.clone(),
        site: identity.site.clone(),
        time: OffsetDateTime::now_utc(),
        software_version: SOFTWARE_VERSION.into(),
        uptime_s: run.started.elapsed().as_secs(),
        cameras,
        outbox: OutboxStatus {
            depth: outbox.depth,
            oldest_age_s: outbox.oldest_age_s,
            evictions: Some(outbox.evictions),
        },
        disk_free_bytes: disk_free,
        alarms,
        clock,
        boot: Some(run.next()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrony_tracking_is_parsed() {
        let line = "A29FC87B,ntp1.example.vn,3,1700000000.123,0.000012345,-0.000002,0.000010,-12.3,0.001,0.02,0.004,0.001,64.0,Normal\n";
        let c = parse_chrony_tracking(line).unwrap();
        assert_eq!(c.status, ClockSyncStatus::Synced);
        assert_eq!(c.offset_ms, Some(0));
        assert_eq!(c.source.as_deref(), Some("ntp:ntp1.example.vn"));
        let off = line
            .replace("0.000012345", "-2.5")
            .replace("Normal", "Not synchronised");
        let c = parse_chrony_tracking(&off).unwrap();
        assert_eq!(c.status, ClockSyncStatus::Unsynced);
        assert_eq!(c.offset_ms, Some(2500));
        assert!(parse_chrony_tracking("garbage").is_none());
        // No offset at all is unread, never "synced".
        for bad in ["inf", "-inf", "nan", "1e300"] {
            assert!(
                parse_chrony_tracking(&line.replace("0.000012345", bad)).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        m.events_acked.store(7, Ordering::Relaxed);
        let board = HealthBoard::default();
        board.set_camera(CameraStatus {
            camera_id: "cam-n".into(),
            state: CameraState::Streaming,
            last_frame_time: None,
            analysed_fps: 12.5,
        });
        board.set_ring_bytes("cam-n", 9_000_000);
        let text = m.render(&board);
        assert!(text.contains("edge_events_acked_total 7\n"), "{text}");
        assert!(
            text.contains("edge_evidence_ring_bytes{camera=\"cam-n\"} 9000000\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_camera_fps{camera=\"cam-n\"} 12.5\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_violations_unreported_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn heartbeats_count_up_within_a_run_and_a_new_run_has_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            DeviceIdentity::load_or_create("hn-test-01", "hn-site", &dir.path().join("key"))
                .unwrap();
        let (board, stats) = (HealthBoard::default(), OutboxStats::default());
        let beat = |run: &mut AgentRun| {
            let hb = heartbeat(
                &identity,
                run,
                &board,
                &stats,
                None,
                dir.path(),
                ClockSync::unknown(),
            );
            protocol::Message::validate(&hb).unwrap();
            hb.boot.unwrap()
        };
        let mut first = AgentRun::start();
        let (a, b) = (beat(&mut first), beat(&mut first));
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.boot_id, b.boot_id);
        let c = beat(&mut AgentRun::start());
        assert_eq!(c.seq, 1);
        assert_ne!(c.boot_id, a.boot_id, "a restarted agent is a new run");
    }

    #[test]
    fn evidence_evicted_in_the_last_day_raises_the_alarm_and_every_eviction_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            DeviceIdentity::load_or_create("hn-test-01", "hn-site", &dir.path().join("key"))
                .unwrap();
        let board = HealthBoard::default();
        let beat = |stats: &OutboxStats| {
            heartbeat(
                &identity,
                &mut AgentRun::start(),
                &board,
                stats,
                None,
                dir.path(),
                ClockSync::unknown(),
            )
        };
        let evicted = Alarm::Other(ALARM_EVIDENCE_EVICTED.into());
        let none = beat(&OutboxStats::default());
        assert!(!none.alarms.contains(&evicted));
        assert_eq!(none.outbox.evictions, Some(0));
        let recent = OutboxStats {
            evictions: 5,
            evictions_last_day: 2,
            ..OutboxStats::default()
        };
        let hb = beat(&recent);
        assert!(hb.alarms.contains(&evicted), "{:?}", hb.alarms);
        assert_eq!(hb.outbox.evictions, Some(5));
        let older = OutboxStats {
            evictions_last_day: 0,
            ..recent
        };
        assert!(!beat(&older).alarms.contains(&evicted));
    }

    #[test]
    fn a_violation_that_could_not_be_reported_raises_the_alarm_once_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            DeviceIdentity::load_or_create("hn-test-01", "hn-site", &dir.path().join("key"))
                .unwrap();
        let board = HealthBoard::default();
        let stats = OutboxStats::default();
        let mut run = AgentRun::start();
        let mut beat = |board: &HealthBoard| {
            heartbeat(
                &identity,
                &mut run,
                board,
                &stats,
                None,
                dir.path(),
                ClockSync::unknown(),
            )
            .alarms
        };
        let raised = |alarms: &[Alarm]| {
            alarms
                .iter()
                .any(|a| *a == Alarm::Other(ALARM_VIOLATIONS_UNREPORTED.into()))
        };
        assert!(!raised(&beat(&board)));
        // A camera whose controller's phases stopped: raised while silent.
        let silent = Alarm::Other(ALARM_SIGNAL_FEED_SILENT.into());
        board.set_silent_feeds("cam-a", 0);
        board.set_silent_feeds("cam-b", 1);
        assert!(beat(&board).contains(&silent));
        board.set_silent_feeds("cam-b", 0);
        assert!(!beat(&board).contains(&silent));
        board.violation_unreported();
        board.violation_unreported();
        assert!(raised(&beat(&board)), "raised by the next heartbeat");
        assert!(raised(&beat(&board)), "again while none was published");
        board.heartbeat_sent();
        assert!(!raised(&beat(&board)), "and not again without a new one");
        let text = Metrics::default().render(&board);
        assert!(
            text.contains("edge_violations_unreported_total 2\n"),
            "{text}"
        );
    }

    /// A heartbeat of `board` with an empty outbox and an unknown clock.
    fn beat_of(identity: &DeviceIdentity, board: &HealthBoard, dir: &Path) -> Heartbeat {
        heartbeat(
            identity,
            &mut AgentRun::start(),
            board,
            &OutboxStats::default(),
            None,
            dir,
            ClockSync::unknown(),
        )
    }

    #[test]
    fn a_camera_with_no_new_frame_for_too_long_is_stalled_in_the_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            DeviceIdentity::load_or_create("hn-test-01", "hn-site", &dir.path().join("key"))
                .unwrap();
        let board = HealthBoard::default();
        let beat = |board: &HealthBoard| beat_of(&identity, board, dir.path());
        let frame_at = OffsetDateTime::now_utc() - time::Duration::seconds(20);
        let streaming = |camera_id: &str| CameraStatus {
            camera_id: camera_id.into(),
            state: CameraState::Streaming,
            last_frame_time: Some(frame_at),
            analysed_fps: 12.5,
        };
        let now = Instant::now();
        board.set_camera_at(streaming("cam-a"), now);
        board.set_camera_at(streaming("cam-b"), now);
        let hb = beat(&board);
        assert!(hb.cameras.iter().all(|c| c.state == CameraState::Streaming));
        assert!(
            !hb.alarms.contains(&Alarm::CameraStalled),
            "{:?}",
            hb.alarms
        );
        // cam-a goes on reporting streaming, its last frame never moving
        // (frames stopped, nothing else noticed); cam-b has a new frame.
        let later = now + CAMERA_SILENT_AFTER;
        board.set_camera_at(streaming("cam-a"), later);
        board.set_camera_at(
            CameraStatus {
                last_frame_time: Some(frame_at + time::Duration::seconds(15)),
                ..streaming("cam-b")
            },
            later,
        );
        let seen = board.cameras_at(later);
        assert_eq!(seen[0].state, CameraState::Stalled, "{seen:?}");
        assert_eq!(seen[0].analysed_fps, 0.0);
        assert_eq!(seen[0].last_frame_time, Some(frame_at), "last frame kept");
        assert_eq!(seen[1].state, CameraState::Streaming, "{seen:?}");
        // The heartbeat says so, with its alarm, long after.
        let long_ago = Instant::now()
            .checked_sub(CAMERA_SILENT_AFTER + Duration::from_secs(5))
            .unwrap();
        board.set_camera_at(streaming("cam-c"), long_ago);
        let hb = beat(&board);
        protocol::Message::validate(&hb).unwrap();
        let c = hb.cameras.iter().find(|c| c.camera_id == "cam-c").unwrap();
        assert_eq!(
            (c.state, c.analysed_fps, c.last_frame_time),
            (CameraState::Stalled, 0.0, Some(frame_at))
        );
        assert!(hb.alarms.contains(&Alarm::CameraStalled), "{:?}", hb.alarms);
        assert!(
            Metrics::default()
                .render(&board)
                .contains("edge_camera_fps{camera=\"cam-c\"} 0\n")
        );
        // A camera whose analysis ended is failed, its last frame kept.
        board.camera_ended("cam-b");
        board.camera_ended("cam-new");
        let hb = beat(&board);
        let c = hb.cameras.iter().find(|c| c.camera_id == "cam-b").unwrap();
        assert_eq!(
            (c.state, c.analysed_fps, c.last_frame_time),
            (
                CameraState::Failed,
                0.0,
                Some(frame_at + time::Duration::seconds(15))
            )
        );
        let c = hb
            .cameras
            .iter()
            .find(|c| c.camera_id == "cam-new")
            .unwrap();
        assert_eq!((c.state, c.last_frame_time), (CameraState::Failed, None));
        assert!(hb.alarms.contains(&Alarm::CameraFailed), "{:?}", hb.alarms);
    }

    #[test]
    fn a_frozen_camera_raises_its_alarm_until_its_picture_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            DeviceIdentity::load_or_create("hn-test-01", "hn-site", &dir.path().join("key"))
                .unwrap();
        let board = HealthBoard::default();
        let beat = |board: &HealthBoard| {
            let hb = beat_of(&identity, board, dir.path());
            protocol::Message::validate(&hb).unwrap();
            hb
        };
        let frozen = Alarm::Other(ALARM_CAMERA_FROZEN.into());
        let streaming = |camera_id: &str| CameraStatus {
            camera_id: camera_id.into(),
            state: CameraState::Streaming,
            // Frames keep coming: only their picture is the same.
            last_frame_time: Some(OffsetDateTime::now_utc()),
            analysed_fps: 10.0,
        };
        board.set_camera(streaming("cam-a"));
        board.set_camera(streaming("cam-b"));
        board.set_frozen("cam-a", true);
        let hb = beat(&board);
        let state = |hb: &Heartbeat, id: &str| {
            let c = hb.cameras.iter().find(|c| c.camera_id == id).unwrap();
            (c.state, c.analysed_fps)
        };
        // Frames arrive: still streaming, with the alarm for a person.
        assert_eq!(state(&hb, "cam-a"), (CameraState::Streaming, 10.0));
        assert_eq!(state(&hb, "cam-b"), (CameraState::Streaming, 10.0));
        assert!(hb.alarms.contains(&frozen), "{:?}", hb.alarms);
        assert!(
            !hb.alarms.contains(&Alarm::CameraStalled),
            "{:?}",
            hb.alarms
        );
        // The picture moves again.
        board.set_frozen("cam-a", false);
        board.set_camera(streaming("cam-a"));
        let hb = beat(&board);
        assert_eq!(state(&hb, "cam-a"), (CameraState::Streaming, 10.0));
        assert!(!hb.alarms.contains(&frozen), "{:?}", hb.alarms);
        assert!(
            !hb.alarms.contains(&Alarm::CameraStalled),
            "{:?}",
            hb.alarms
        );
        // A camera whose analysis ended is failed, not frozen.
        board.set_frozen("cam-b", true);
        board.camera_ended("cam-b");
        let hb = beat(&board);
        assert_eq!(state(&hb, "cam-b"), (CameraState::Failed, 0.0));
        assert!(!hb.alarms.contains(&frozen), "{:?}", hb.alarms);
    }
}
