//! `plate-ocr`: read Vietnamese licence plates in images, and measure how well
//! it does.
//!
//! - `plate-ocr read [--json] [--crop] [--recognizer ppocr|vn] PATH...` reads
//!   images (or every image in a directory); a file that cannot be read is
//!   reported on its own line and the run goes on; the exit status is 1 if
//!   any input failed.
//! - `plate-ocr eval DATASET_DIR [--recognizer ..] [--raw|--no-grammar]`
//!   measures a `labels.csv` crop data set; `plate-ocr eval --detect DIR`
//!   measures detection recall on an openalpr-style directory (`--images`
//!   when the images lie elsewhere, `--iou` thresholds, per-class recall
//!   when the labels have a vehicle-class column).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use plate_ocr::crosscheck::CrossCheck;
use plate_ocr::detect::{PlateDetector, Y5fuDetector, Y5fuSize};
use plate_ocr::eval::{
    DetectReport, evaluate_crops, evaluate_detection_at, evaluate_in_vehicle_boxes,
};
use plate_ocr::image_file::ImageLimits;
use plate_ocr::pipeline::{Pipeline, PipelineConfig, ReadMode};
use plate_ocr::recognize::{PpOcrRecognizer, Recognizer, SlotRecognizer};
use plate_ocr::runtime::SessionConfig;
use plate_ocr::search::WindowSearch;

#[derive(Parser, Debug)]
#[command(
    name = "plate-ocr",
    version,
    about = "Find and read Vietnamese licence plates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum RecognizerKind {
    /// PP-OCRv4 baseline, restricted to the plate alphabet.
    Ppocr,
    /// The project's own slot recogniser (`vn_plate_rec`).
    Vn,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DetectorKind {
    #[value(name = "y5fu-320")]
    Y5fu320,
    #[value(name = "y5fu-640")]
    Y5fu640,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Which recogniser reads the plates.
    #[arg(long, value_enum, default_value = "ppocr")]
    recognizer: RecognizerKind,
    /// ONNX Runtime threads inside one model run.
    #[arg(long, default_value_t = 1, env = "PLATE_OCR_THREADS")]
    threads: usize,
    /// Views of each crop the `vn` recogniser reads and averages: 1, or 3
    /// (as given, trimmed, padded); 3 needs `--recognizer vn` or
    /// `--cross-check vn`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    views: u8,
    /// Below this confidence a plate is reported unreadable (0 to 1).
    #[arg(long, default_value_t = PipelineConfig::default().min_confidence, value_parser = unit_interval)]
    min_confidence: f32,
    /// Read every plate again with this second recogniser and answer only
    /// when the two agree, or one alone is confident enough (see `--single-factor`).
    #[arg(long, value_enum)]
    cross_check: Option<RecognizerKind>,
    /// With `--cross-check`: factor on the confidence of a plate only one
    /// recogniser read (0 = answer only when both agree).
    #[arg(long, default_value_t = CrossCheck::default().single_factor, value_parser = unit_interval)]
    single_factor: f32,
    /// Largest image accepted, in pixels (checked from the header before decoding).
    #[arg(long, default_value_t = ImageLimits::default().max_pixels)]
    max_pixels: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read the plates in images or directories of images.
    Read {
        #[command(flatten)]
        common: Common,
        /// The inputs are plate crops already: skip detection.
        #[arg(long)]
        crop: bool,
        /// Plate detector for whole images.
        #[arg(long, value_enum, default_value = "y5fu-640")]
        detector: DetectorKind,
        /// Images, or directories (their image files, not recursive).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Measure accuracy on a labelled crop data set, or detection recall.
    Eval {
        #[command(flatten)]
        common: Common,
        /// Baseline: the recogniser's unrestricted read, canonicalised, no grammar.
        #[arg(long, conflicts_with = "no_grammar")]
        raw: bool,
        /// Restricted to the plate alphabet but without the grammar.
        #[arg(long)]
        no_grammar: bool,
        /// Evaluate plate detection recall on an openalpr-style directory
        /// (`file x y w h text [car|motorbike]`, one `.txt` per image); with a
        /// seventh column, recall is also reported per vehicle class.
        #[arg(long)]
        detect: bool,
        /// Detectors for --detect (default: both sizes).
        #[arg(long, value_enum)]
        detector: Vec<DetectorKind>,
        /// With --detect: the images are in this directory, not beside the
        /// labels (e.g. `.cache/vn_detect` for `plate-ocr/data/vn_detect`).
        #[arg(long, requires = "detect")]
        images: Option<PathBuf>,
        /// With --detect: IoU thresholds for a match (repeatable; default 0.5).
        #[arg(long, requires = "detect")]
        iou: Vec<f32>,
        /// With --detect: also run the detectors inside a vehicle-sized box
        /// around each labelled plate (padded by 10%), as the edge does after
        /// its vehicle detector.
        #[arg(long, requires = "detect")]
        in_vehicle_box: bool,
        /// With --detect: also measure the motorbike window search (the
        /// configured recogniser reads plate-shaped windows in the vehicle
        /// box; a valid read's window is the detection).
        #[arg(long, requires = "detect")]
        window_search: bool,
        /// Print this many disagreements (image, label, read) for inspection.
        #[arg(long, default_value_t = 0)]
        errors: usize,
        /// The data set directory.
        dataset: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // The reader of the output went away; what was written stands.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plate-ocr: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A number in [0, 1] (`--min-confidence`, `--single-factor`): `-1` would
/// answer every plate, `nan` none.
fn unit_interval(s: &str) -> std::result::Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} must be a number between 0 and 1"))
    }
}

/// Options that parse but do not fit together.
fn check_options(common: &Common) -> Result<()> {
    let vn =
        common.recognizer == RecognizerKind::Vn || common.cross_check == Some(RecognizerKind::Vn);
    if common.views > 1 && !vn {
        bail!(
            "--views {}: only the `vn` recogniser reads several views \
             (use --recognizer vn or --cross-check vn)",
            common.views
        );
    }
    Ok(())
}

/// Whether `e` is the output's reader having gone away
/// (`plate-ocr read --json DIR | head -1`): a clean stop, not a failure.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn session(common: &Common) -> SessionConfig {
    SessionConfig {
        intra_threads: common.threads.max(1),
    }
}

fn recognizer(common: &Common) -> Result<Box<dyn Recognizer>> {
    load_recognizer(common.recognizer, common)
}

fn load_recognizer(kind: RecognizerKind, common: &Common) -> Result<Box<dyn Recognizer>> {
    if common.views == 2 {
        bail!("--views: 1 or 3, not 2");
    }
    Ok(match kind {
        RecognizerKind::Ppocr => Box::new(PpOcrRecognizer::load(session(common))?),
        RecognizerKind::Vn => {
            Box::new(SlotRecognizer::load(session(common))?.with_views(common.views))
        }
    })
}

fn with_cross_check(pipeline: Pipeline, common: &Common) -> Result<Pipeline> {
    Ok(match common.cross_check {
        Some(kind) => pipeline.with_cross_check(
            load_recognizer(kind, common)?,
            CrossCheck {
                single_factor: common.single_factor,
            },
        ),
        None => pipeline,
    })
}

fn detector(kind: DetectorKind, common: &Common) -> Result<Box<dyn PlateDetector>> {
    let size = match kind {
        DetectorKind::Y5fu320 => Y5fuSize::S320,
        DetectorKind::Y5fu640 => Y5fuSize::S640,
    };
    Ok(Box::new(Y5fuDetector::load(size, session(common))?))
}

fn config(common: &Common, mode: ReadMode) -> PipelineConfig {
    let mut c = PipelineConfig {
        min_confidence: common.min_confidence,
        mode,
        ..PipelineConfig::default()
    };
    c.limits.max_pixels = common.max_pixels;
    c
}

const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

/// The files to read: files as given, directories' image files sorted.
fn inputs(paths: &[PathBuf]) -> Vec<(PathBuf, Option<String>)> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    // An entry that cannot be read, or an image name that
                    // cannot be opened (a link to nothing), is reported
                    // like an unreadable file, not left out unseen.
                    let mut files: Vec<(PathBuf, Option<String>)> = entries
                        .filter_map(|e| match e {
                            Err(e) => Some((p.clone(), Some(format!("cannot read an entry: {e}")))),
                            Ok(e) => {
                                let f = e.path();
                                let image =
                                    f.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                                        IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str())
                                    });
                                if !image {
                                    return None;
                                }
                                match std::fs::metadata(&f) {
                                    Ok(m) => m.is_file().then_some((f, None)),
                                    Err(e) => Some((f, Some(format!("cannot read: {e}")))),
                                }
                            }
                        })
                        .collect();
                    files.sort();
                    out.extend(files);
                }
                Err(e) => out.push((p.clone(), Some(format!("cannot list directory: {e}")))),
            }
        } else {
            out.push((p.clone(), None));
        }
    }
    out
}

fn run(cli: Cli) -> Result<bool> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let ok = run_to(cli, &mut out)?;
    out.flush()?;
    Ok(ok)
}

/// Runs the command, writing its results to `out`. A write that fails
/// because the reader went away stops the run ([`broken_pipe`]).
fn run_to(cli: Cli, out: &mut impl Write) -> Result<bool> {
    match &cli.command {
        Command::Read { common, .. } | Command::Eval { common, .. } => check_options(common)?,
    }
    match cli.command {
        Command::Read {
            common,
            crop,
            detector: det,
            paths,
        } => {
            let detector = if crop {
                None
            } else {
                Some(detector(det, &common)?)
            };
            let pipeline = with_cross_check(
                Pipeline::new(
                    detector,
                    recognizer(&common)?,
                    config(&common, ReadMode::Grammar),
                ),
                &common,
            )?;
            let mut all_ok = true;
            for (path, listing_error) in inputs(&paths) {
                let result = match listing_error {
                    Some(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
                    None => pipeline.read_path(&path, crop).map_err(anyhow::Error::from),
                };
                match report(out, &path, result, common.json, &mut all_ok) {
                    Ok(()) => {}
                    // `read --json DIR | head -1`: stop, with the status so far.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(all_ok),
                    Err(e) => return Err(anyhow::Error::from(e).context("writing the results")),
                }
            }
            Ok(all_ok)
        }
        Command::Eval {
            common,
            raw,
            no_grammar,
            detect,
            detector: detectors,
            images,
            iou,
            in_vehicle_box,
            window_search,
            errors,
            dataset,
        } => {
            if !dataset.is_dir() {
                bail!("data set {} is not a directory", dataset.display());
            }
            if detect {
                let images = images.unwrap_or_else(|| dataset.clone());
                if !images.is_dir() {
                    bail!("image directory {} is not a directory", images.display());
                }
                let extra = DetectExtras {
                    in_vehicle_box,
                    window_search,
                };
                return eval_detect(out, &common, &detectors, &dataset, &images, &iou, extra);
            }
            let mode = if raw {
                ReadMode::Raw
            } else if no_grammar {
                ReadMode::Alphabet
            } else {
                ReadMode::Grammar
            };
            let pipeline = with_cross_check(
                Pipeline::new(None, recognizer(&common)?, config(&common, mode)),
                &common,
            )?;
            let report = evaluate_crops(&pipeline, &dataset)
                .with_context(|| format!("evaluating {}", dataset.display()))?;
            if common.json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                write!(out, "{}", report.summary())?;
                for o in report
                    .outcomes
                    .iter()
                    .filter(|o| o.read != o.label)
                    .take(errors)
                {
                    let name = Path::new(&o.image)
                        .file_name()
                        .map_or_else(|| o.image.clone(), |n| n.to_string_lossy().into_owned());
                    writeln!(
                        out,
                        "    {name}\tlabel {}\tread {}\traw {}\tconf {:.2}{}",
                        o.label,
                        if o.read.is_empty() { "-" } else { &o.read },
                        o.raw,
                        o.confidence,
                        o.error
                            .as_ref()
                            .map(|e| format!("\terror {e}"))
                            .unwrap_or_default()
                    )?;
                }
            }
            Ok(report.failed == 0)
        }
    }
}

/// Optional detection measurements besides the whole-image one.
#[derive(Debug, Clone, Copy)]
struct DetectExtras {
    in_vehicle_box: bool,
    window_search: bool,
}

/// Padding of the vehicle box (fraction of its size on each side).
const VEHICLE_PAD: f32 = 0.1;

fn eval_detect(
    out: &mut impl Write,
    common: &Common,
    detectors: &[DetectorKind],
    dataset: &Path,
    images: &Path,
    ious: &[f32],
    extras: DetectExtras,
) -> Result<bool> {
    let kinds = if detectors.is_empty() {
        vec![DetectorKind::Y5fu320, DetectorKind::Y5fu640]
    } else {
        detectors.to_vec()
    };
    let ious = if ious.is_empty() { &[0.5][..] } else { ious };
    if let Some(bad) = ious.iter().find(|t| !(**t > 0.0 && **t <= 1.0)) {
        bail!("--iou {bad}: must be in (0, 1]");
    }
    let limits = config(common, ReadMode::Grammar).limits;
    let mut ok = true;
    for k in kinds {
        let d = detector(k, common)?;
        let reports = evaluate_detection_at(d.as_ref(), dataset, images, &limits, ious)
            .with_context(|| format!("evaluating detection on {}", dataset.display()))?;
        let mut all = reports;
        if extras.in_vehicle_box {
            let find = |crop: &opencv::core::Mat| {
                Ok(d.detect(crop)?.into_iter().map(|p| p.bbox).collect())
            };
            all.extend(
                evaluate_in_vehicle_boxes(
                    d.name(),
                    &find,
                    dataset,
                    images,
                    &limits,
                    VEHICLE_PAD,
                    ious,
                )
                .with_context(|| format!("evaluating detection on {}", dataset.display()))?,
            );
        }
        for report in all {
            ok &= print_detect(out, &report, common.json)?;
        }
    }
    if extras.window_search {
        let pipeline = Pipeline::new(None, recognizer(common)?, config(common, ReadMode::Grammar));
        let search = WindowSearch::motorbike();
        let find = |crop: &opencv::core::Mat| {
            Ok(pipeline
                .search_windows(crop, &search)?
                .map(|r| vec![r.bbox])
                .unwrap_or_default())
        };
        let name = format!("window search ({})", pipeline.recognizer().name());
        for report in
            evaluate_in_vehicle_boxes(&name, &find, dataset, images, &limits, VEHICLE_PAD, ious)
                .with_context(|| format!("evaluating window search on {}", dataset.display()))?
        {
            ok &= print_detect(out, &report, common.json)?;
        }
    }
    Ok(ok)
}

/// Prints one detection report; whether no image failed.
fn print_detect(out: &mut impl Write, report: &DetectReport, json: bool) -> Result<bool> {
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
    } else {
        write!(out, "{}", report.summary())?;
    }
    Ok(report.failed == 0)
}

/// Writes one input's line(s); fails only when `out` does.
fn report(
    out: &mut impl Write,
    path: &Path,
    result: Result<plate_ocr::pipeline::ImageRead>,
    as_json: bool,
    all_ok: &mut bool,
) -> io::Result<()> {
    let name = path.display().to_string();
    match result {
        Ok(read) => {
            if as_json {
                let plates: Vec<_> = read
                    .plates
                    .iter()
                    .map(|p| {
                        json!({
                            "text": p.text,
                            "display": p.display,
                            "confidence": p.confidence,
                            "bbox": p.bbox,
                            "corners": p.corners,
                            "lines": p.lines,
                            "colour": p.colour,
                            "valid": p.valid,
                            "unreadable": p.unreadable,
                            "raw": p.raw,
                            "layout": p.layout,
                            "detector_score": p.detector_score,
                            "char_conf": p.chars.iter().map(|c| c.prob).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({"path": name, "plates": plates, "ms": read.ms})
                )?;
            } else if read.plates.is_empty() {
                writeln!(out, "{name}: no plate found ({:.1} ms)", read.ms)?;
            } else {
                for p in &read.plates {
                    let colour = serde_json::to_value(p.colour)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    match (&p.display, &p.text) {
                        (Some(d), _) | (None, Some(d)) => writeln!(
                            out,
                            "{name}: {d} (confidence {:.2}, {colour}, {} line(s), {:.1} ms)",
                            p.confidence,
                            p.lines.unwrap_or(1),
                            read.ms
                        )?,
                        (None, None) => writeln!(
                            out,
                            "{name}: unreadable (read {:?}, confidence {:.2}, {colour})",
                            p.raw, p.confidence
                        )?,
                    }
                }
            }
        }
        Err(e) => {
            *all_ok = false;
            if as_json {
                writeln!(out, "{}", json!({"path": name, "error": format!("{e:#}")}))?;
            } else {
                writeln!(out, "{name}: error: {e:#}")?;
            }
        }
    }
    Ok(())
}
