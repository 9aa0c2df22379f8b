//! A camera simulator: serves a recording as a live, endlessly looping
//! H.264 RTSP stream through gst-rtsp-server, the way an intersection
//! camera serves its feed. The demo points an edge agent at it, and the
//! end-to-end tests kill and restart it to prove the edge survives a camera
//! that drops and returns.
//!
//! Why decode and re-encode instead of passing the file's packets through:
//! a file ends; a camera does not. A feeder thread decodes the recording,
//! restamps every frame on one continuous clock (so timestamps never jump
//! back when the file starts over), paces it in real time and pushes it
//! into the RTSP media's `appsrc`, which x264 encodes with a short key-frame
//! interval so a client that joins late starts within a second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use thiserror::Error;

/// Why the simulator could not start or feed.
#[derive(Debug, Error)]
pub enum SimError {
    /// The recording is not there.
    #[error("recording {0} does not exist")]
    NoFile(PathBuf),
    /// GStreamer refused something (plugin missing, bad pipeline, ...).
    #[error("gstreamer: {0}")]
    Gst(String),
    /// The RTSP server could not listen.
    #[error("RTSP server on {addr}:{port}: {why}")]
    Listen {
        /// Address.
        addr: String,
        /// Port asked for.
        port: u16,
        /// Why.
        why: String,
    },
}

impl From<glib::BoolError> for SimError {
    fn from(e: glib::BoolError) -> Self {
        SimError::Gst(e.to_string())
    }
}

impl From<glib::Error> for SimError {
    fn from(e: glib::Error) -> Self {
        SimError::Gst(e.to_string())
    }
}

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The recording (anything decodebin reads).
    pub file: PathBuf,
    /// Listen address.
    pub address: String,
    /// Port (0: any free port).
    pub port: u16,
    /// Mount path, e.g. `/cam1`.
    pub mount: String,
}

/// A running simulator; stops when dropped.
pub struct Running {
    /// The stream's URL.
    pub url: String,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops serving (clients see the camera go away).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const ENCODE: &str = "( appsrc name=src is-live=true format=time ! videoconvert ! \
     video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 \
     bitrate=6000 ! video/x-h264,profile=baseline ! h264parse config-interval=1 ! \
     rtph264pay name=pay0 pt=96 config-interval=1 )";

/// Starts serving `cfg.file` at `rtsp://{address}:{port}{mount}`; returns
/// once the server listens.
pub fn start(cfg: &SimConfig) -> Result<Running, SimError> {
    if !cfg.file.is_file() {
        return Err(SimError::NoFile(cfg.file.clone()));
    }
    gst::init()?;
    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u16, SimError>>();
    let cfg2 = cfg.clone();
    let ml = main_loop.clone();
    let thread = std::thread::Builder::new()
        .name("camera-sim".into())
        .spawn(move || {
            let guard = match context.acquire() {
                Ok(g) => g,
                Err(e) => {
                    let _ = ready_tx.send(Err(SimError::Gst(e.to_string())));
                    return;
                }
            };
            match serve(&cfg2, &context) {
                Ok((server, source, port)) => {
                    let _ = ready_tx.send(Ok(port));
                    ml.run();
                    if let Some(s) = context.find_source_by_id(&source) {
                        s.destroy();
                    }
                    drop(server);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            drop(guard);
        })
        .map_err(|e| SimError::Gst(e.to_string()))?;
    let port = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| SimError::Gst(format!("server thread: {e}")))??;
    Ok(Running {
        url: format!("rtsp://{}:{port}{}", cfg.address, cfg.mount),
        main_loop,
        thread: Some(thread),
    })
}

fn serve(
    cfg: &SimConfig,
    context: &glib::MainContext,
) -> Result<(rtsp::RTSPServer, glib::SourceId, u16), SimError> {
    let server = rtsp::RTSPServer::new();
    server.set_address(&cfg.address);
    server.set_service(&cfg.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or_else(|| SimError::Gst("no mount points".into()))?;
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(ENCODE);
    factory.set_shared(true);
    let file = cfg.file.clone();
    factory.connect_media_configure(move |_, media| {
        let Some(bin) = media.element().downcast::<gst::Bin>().ok() else {
            tracing::error!("media element is not a bin");
            return;
        };
        let Some(src) = bin
            .by_name_recurse_up("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        else {
            tracing::error!("no appsrc in the media");
            return;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        media.connect_unprepared(move |_| stop2.store(true, Ordering::SeqCst));
        let file = file.clone();
        let spawned = std::thread::Builder::new()
            .name("camera-sim-feed".into())
            .spawn(move || {
                if let Err(e) = feed(&file, &src, &stop) {
                    tracing::warn!(error = %e, "feeder stopped");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the feeder");
        }
    });
    mounts.add_factory(&cfg.mount, factory);
    let source = server.attach(Some(context)).map_err(|e| SimError::Listen {
        addr: cfg.address.clone(),
        port: cfg.port,
        why: e.to_string(),
    })?;
    let port = u16::try_from(server.bound_port()).map_err(|_| SimError::Listen {
        addr: cfg.address.clone(),
        port: cfg.port,
        why: "no bound port".into(),
    })?;
    Ok((server, source, port))
}

/// Decodes `file` over and over and pushes its frames, restamped on one
/// clock and paced in real time, until the media goes away.
fn feed(file: &Path, src: &gst_app::AppSrc, stop: &AtomicBool) -> Result<(), SimError> {
    let decode = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=4",
        file.display()
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| SimError::Gst("decode pipeline is not a pipeline".into()))?;
    let sink = decode
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| SimError::Gst("no appsink".into()))?;
    decode
        .set_state(gst::State::Playing)
        .map_err(|e| SimError::Gst(e.to_string()))?;
    let started = Instant::now();
    let mut pts = gst::ClockTime::ZERO;
    let mut caps_set = false;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let sample = match sink.try_pull_sample(gst::ClockTime::from_seconds(2)) {
            Some(s) => s,
            None if sink.is_eos() => {
                // The recording ended: start it over, the clock goes on.
                if let Err(e) = decode.seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                    gst::ClockTime::ZERO,
                ) {
                    break Err(SimError::Gst(format!("loop seek: {e}")));
                }
                continue;
            }
            None => continue,
        };
        let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
            continue;
        };
        let frame = caps
            .structure(0)
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map(|f| {
                gst::ClockTime::from_nseconds(1_000_000_000 * f.denom() as u64 / f.numer() as u64)
            })
            .unwrap_or(gst::ClockTime::from_mseconds(40));
        if !caps_set {
            src.set_caps(Some(&caps.to_owned()));
            caps_set = true;
        }
        let mut out = buffer.copy();
        {
            let Some(b) = out.get_mut() else { continue };
            b.set_pts(pts);
            b.set_dts(pts);
            b.set_duration(frame);
        }
        // Real time: a camera does not run ahead of the wall clock.
        let due = started + Duration::from_nanos(pts.nseconds());
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if src.push_buffer(out).is_err() {
            break Ok(()); // the media is shutting down
        }
        pts += frame;
    };
    let _ = decode.set_state(gst::State::Null);
    result
}
