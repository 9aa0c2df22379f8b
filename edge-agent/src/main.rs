//! `edge-agent` command line.

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use edge_agent::capture::{FrameSource, Pacing, SourceSpec};
use edge_agent::detect::{
    MotionConfig, MotionDetector, VehicleDetector, YoloxConfig, YoloxDetector,
};
use edge_agent::replay::EvidenceOutput;
use edge_agent::site::SiteConfig;
use plate_ocr::detect::{Y5fuDetector, Y5fuSize};
use plate_ocr::pipeline::{Pipeline, PipelineConfig};
use plate_ocr::recognize::{PpOcrRecognizer, Recognizer, SlotRecognizer};
use plate_ocr::runtime::SessionConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Traffic enforcement edge agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that every model this box needs is present and verified.
    CheckModels,
    /// Draw the whole site configuration on frame N of a recording or stream
    /// (a PNG a technician checks the configuration with).
    Calibrate {
        /// Site configuration.
        #[arg(long)]
        config: PathBuf,
        /// Video file or stream address.
        #[arg(long)]
        source: String,
        /// Frame number to draw on.
        #[arg(long, default_value_t = 0)]
        frame: u64,
        /// Output PNG.
        #[arg(long, default_value = "calibration.png")]
        out: PathBuf,
    },
    /// Process a recording as fast as possible and print a JSON summary
    /// (tracks per class, violations, analysed fps).
    Replay {
        /// Video file or stream address.
        video: String,
        /// Site configuration (enables the rules).
        #[arg(long)]
        site: Option<PathBuf>,
        /// Vehicle detector: yolox (production) or motion (MOG2).
        #[arg(long, default_value = "yolox")]
        detector: String,
        /// Stop after this many frames.
        #[arg(long)]
        max_frames: Option<u64>,
        /// ONNX Runtime threads for the detector.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Write each violation's evidence (and plate read) under this spool
        /// directory; needs `--site`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plate recogniser for violators: ppocr (baseline) or vn (our own).
        #[arg(long, default_value = "ppocr")]
        recognizer: String,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::CheckModels => {
            let resolver = edge_agent::models::resolver_from_env()?;
            let paths = edge_agent::models::resolve_required(&resolver).map_err(|e| anyhow!(e))?;
            for p in paths {
                println!("ok {}", p.display());
            }
            Ok(())
        }
        Cmd::Calibrate {
            config,
            source,
            frame,
            out,
        } => {
            let site = SiteConfig::load(&config)
                .with_context(|| format!("site configuration {}", config.display()))?;
            let spec = SourceSpec::parse(&source)?;
            let expect = Some((site.frame.width, site.frame.height));
            let mut frames = FrameSource::open(&spec, Pacing::AsFastAsPossible, expect)?;
            let picked = loop {
                match frames.next_frame(Duration::from_secs(10))? {
                    Some(f) if f.number == frame => break f,
                    Some(_) => continue,
                    None => return Err(anyhow!("{source} ended before frame {frame}")),
                }
            };
            let png = edge_agent::evidence::calibration_png(&picked, &site)?;
            std::fs::write(&out, png).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Replay {
            video,
            site,
            detector,
            max_frames,
            threads,
            out,
            recognizer,
        } => {
            let site = site
                .map(|p| {
                    SiteConfig::load(&p)
                        .with_context(|| format!("site configuration {}", p.display()))
                })
                .transpose()?;
            let det: Box<dyn VehicleDetector> = match detector.as_str() {
                "yolox" => Box::new(YoloxDetector::new(YoloxConfig {
                    threads,
                    ..YoloxConfig::default()
                })?),
                "motion" => Box::new(MotionDetector::new(MotionConfig::default())?),
                other => return Err(anyhow!("unknown detector `{other}` (yolox or motion)")),
            };
            let spec = SourceSpec::parse(&video)?;
            let output = match out {
                Some(spool) => Some(EvidenceOutput {
                    spool,
                    reader: Some(plate_reader(&recognizer)?),
                }),
                None => None,
            };
            let summary =
                edge_agent::replay::replay(&spec, det, site.as_ref(), max_frames, output.as_ref())?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}

/// The plate reader for violators: y5fu-320 inside the vehicle box, then the
/// chosen recogniser and the grammar.
fn plate_reader(recognizer: &str) -> Result<Pipeline> {
    let cfg = SessionConfig::default();
    let rec: Box<dyn Recognizer> = match recognizer {
        "ppocr" => Box::new(PpOcrRecognizer::load(cfg)?),
        "vn" => Box::new(SlotRecognizer::load(cfg)?),
        other => return Err(anyhow!("unknown recogniser `{other}` (ppocr or vn)")),
    };
    let det = Y5fuDetector::load(Y5fuSize::S320, cfg)?;
    Ok(Pipeline::new(
        Some(Box::new(det)),
        rec,
        PipelineConfig::default(),
    ))
}
