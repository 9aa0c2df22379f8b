//! `plate-ocr` command line (being built).
fn main() {}
