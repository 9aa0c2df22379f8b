//! A small PDF writer for the printable case summary: A4 pages of text in
//! one embedded TrueType font, thin rules, and JPEG pictures passed through
//! unchanged (`DCTDecode`), so the picture in the summary is byte for byte
//! the evidence file whose hash the summary prints.
//!
//! Why by hand: the summary needs little (text, lines, one picture), and the
//! crates that write PDFs either cannot embed a font for Vietnamese or pull
//! in far more than that. Text is shown as glyph ids through a `Type0` font
//! with `Identity-H` encoding over a `CIDFontType2` (the TrueType outlines,
//! subset, see `font.rs`), with per-glyph widths and a `ToUnicode` map so
//! that copying or `pdftotext` gives back the Vietnamese text, diacritics
//! included. Layout is a single column that flows onto new pages; each page
//! gets a footer with its number once the page count is known.

use std::fmt::Write as _;
use std::io::Write as _;

use super::font::Font;

/// A4 in points.
pub const PAGE_W: f64 = 595.28;
/// A4 in points.
pub const PAGE_H: f64 = 841.89;
/// Page margin.
pub const MARGIN: f64 = 48.0;
/// Where values start in a label/value row.
const LABEL_W: f64 = 150.0;
/// Space kept for the footer.
const FOOTER: f64 = 36.0;

/// One drawing operation on a page, in points from the bottom left.
enum Op {
    Text {
        x: f64,
        y: f64,
        size: f64,
        text: String,
        bold: bool,
        grey: bool,
    },
    Rule {
        y: f64,
    },
    /// Raw content-stream operators (vector overlays).
    Raw(String),
    Image {
        index: usize,
        x: f64,
        y: f64,
        w: f64,
        h: f64,
    },
}

/// A JPEG to embed.
pub struct Jpeg {
    /// The file, unchanged.
    pub data: Vec<u8>,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub components: u8,
}

impl Jpeg {
    /// Reads width, height and components from the frame header; `None` if
    /// it is not a baseline or progressive JPEG with 1 or 3 components.
    pub fn parse(data: Vec<u8>) -> Option<Jpeg> {
        if data.get(..2) != Some(&[0xFF, 0xD8]) {
            return None;
        }
        let mut at = 2;
        while at + 4 <= data.len() {
            if data[at] != 0xFF {
                return None;
            }
            let marker = data[at + 1];
            if marker == 0xFF {
                at += 1;
                continue;
            }
            let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
            let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if sof {
                let seg = data.get(at + 4..at + 2 + len)?;
                let height = u32::from(u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]));
                let width = u32::from(u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]));
                let components = *seg.get(5)?;
                if width == 0 || height == 0 || !matches!(components, 1 | 3) {
                    return None;
                }
                return Some(Jpeg {
                    data,
                    width,
                    height,
                    components,
                });
            }
            at += 2 + len;
        }
        None
    }
}

/// A document being laid out.
pub struct Doc {
    font: Font,
    pages: Vec<Vec<Op>>,
    y: f64,
    images: Vec<Jpeg>,
}

impl Doc {
    /// An empty document on one blank page.
    pub fn new(font: Font) -> Doc {
        Doc {
            font,
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
            images: Vec::new(),
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Starts a new page.
    pub fn page_break(&mut self) {
        self.pages.push(Vec::new());
        self.y = PAGE_H - MARGIN;
    }

    /// Makes room for `h` points, breaking the page if needed.
    pub fn ensure(&mut self, h: f64) {
        if self.y - h < MARGIN + FOOTER {
            self.page_break();
        }
    }

    fn text_at(&mut self, x: f64, size: f64, text: &str, bold: bool, grey: bool) {
        let y = self.y;
        self.ops().push(Op::Text {
            x,
            y,
            size,
            text: text.to_string(),
            bold,
            grey,
        });
    }

    /// Lines of `text` no wider than `width` at `size`.
    fn wrap(&self, text: &str, size: f64, width: f64) -> Vec<String> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            for word in para.split(' ') {
                let candidate = if line.is_empty() {
                    word.to_string()
                } else {
                    format!("{line} {word}")
                };
                if self.font.width(&candidate, size) <= width || line.is_empty() {
                    line = candidate;
                } else {
                    lines.push(std::mem::take(&mut line));
                    line = word.to_string();
                }
                // A word longer than the line (a hash): cut it.
                while self.font.width(&line, size) > width && line.chars().count() > 1 {
                    let mut cut = String::new();
                    for c in line.chars() {
                        if self.font.width(&format!("{cut}{c}"), size) > width {
                            break;
                        }
                        cut.push(c);
                    }
                    if cut.is_empty() {
                        break;
                    }
                    line = line[cut.len()..].to_string();
                    lines.push(cut);
                }
            }
            lines.push(line);
        }
        lines
    }

    /// A title line.
    pub fn title(&mut self, text: &str, size: f64) {
        for line in self.wrap(text, size, PAGE_W - 2.0 * MARGIN) {
            self.ensure(size * 1.4);
            self.y -= size * 1.1;
            let x = (PAGE_W - self.font.width(&line, size)) / 2.0;
            self.text_at(x, size, &line, true, false);
            self.y -= size * 0.3;
        }
    }

    /// A section heading with a rule under it.
    pub fn heading(&mut self, text: &str) {
        self.ensure(48.0);
        self.y -= 24.0;
        self.text_at(MARGIN, 11.5, text, true, false);
        self.y -= 4.0;
        let y = self.y;
        self.ops().push(Op::Rule { y });
        self.y -= 6.0;
    }

    /// A paragraph over the full width.
    pub fn para(&mut self, text: &str, size: f64, grey: bool) {
        for line in self.wrap(text, size, PAGE_W - 2.0 * MARGIN) {
            self.ensure(size * 1.35);
            self.y -= size * 1.35;
            self.text_at(MARGIN, size, &line, false, grey);
        }
    }

    /// A label and its value (wrapped beside it).
    pub fn field(&mut self, label: &str, value: &str) {
        self.field_with(label, value, 9.5, false);
    }

    /// [`Doc::field`] with the value at `size`, in bold if `bold`.
    pub fn field_with(&mut self, label: &str, value: &str, size: f64, bold: bool) {
        let lines = self.wrap(value, size, PAGE_W - 2.0 * MARGIN - LABEL_W);
        self.ensure(size * 1.4 * lines.len().min(3) as f64);
        for (i, line) in lines.iter().enumerate() {
            self.ensure(size * 1.4);
            self.y -= size * 1.4;
            if i == 0 {
                self.text_at(MARGIN, 9.5, label, false, true);
            }
            self.text_at(MARGIN + LABEL_W, size, line, bold, false);
        }
    }

    /// A picture `w` points wide (height from its aspect, at most `max_h`),
    /// centred, with optional vector drawing over it: `overlay` gets the
    /// picture's placement `(x, y, w, h)` and returns content operators.
    pub fn image(
        &mut self,
        jpeg: Jpeg,
        w: f64,
        max_h: f64,
        overlay: impl FnOnce(f64, f64, f64, f64) -> String,
    ) {
        let aspect = f64::from(jpeg.height) / f64::from(jpeg.width.max(1));
        let (mut w, mut h) = (w, w * aspect);
        if h > max_h {
            (w, h) = (max_h / aspect, max_h);
        }
        self.ensure(h + 8.0);
        self.y -= h + 4.0;
        let x = (PAGE_W - w) / 2.0;
        let y = self.y;
        let index = self.images.len();
        self.images.push(jpeg);
        self.ops().push(Op::Image { index, x, y, w, h });
        let extra = overlay(x, y, w, h);
        self.ops().push(Op::Raw(extra));
        self.y -= 4.0;
    }

    /// The finished PDF; `footer` is printed on every page with
    /// `{page}`/`{pages}` filled in.
    pub fn finish(mut self, title: &str, footer: &str, created: &str) -> Result<Vec<u8>, String> {
        let pages = std::mem::take(&mut self.pages);
        let count = pages.len();
        let mut w = Writer::default();
        let catalog = w.reserve();
        let pages_id = w.reserve();
        let font_id = w.reserve();
        let image_ids: Vec<usize> = self
            .images
            .iter()
            .map(|j| {
                let cs = if j.components == 1 {
                    "DeviceGray"
                } else {
                    "DeviceRGB"
                };
                let dict = format!(
                    "/Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /{cs} \
                     /BitsPerComponent 8 /Filter /DCTDecode",
                    j.width, j.height
                );
                w.add(stream(&dict, &j.data))
            })
            .collect();
        let mut xobjects = String::new();
        for (i, id) in image_ids.iter().enumerate() {
            let _ = write!(xobjects, "/Im{i} {id} 0 R ");
        }
        let mut kids = Vec::new();
        for (n, mut ops) in pages.into_iter().enumerate() {
            let text = footer
                .replace("{page}", &(n + 1).to_string())
                .replace("{pages}", &count.to_string());
            let fw = self.font.width(&text, 8.0);
            ops.push(Op::Text {
                x: PAGE_W - MARGIN - fw,
                y: MARGIN - 8.0,
                size: 8.0,
                text,
                bold: false,
                grey: true,
            });
            let content = self.content(&ops);
            let contents = w.add(deflated("", content.as_bytes())?);
            kids.push(
                w.add(
                    format!(
                        "<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] \
                     /Resources << /Font << /F1 {font_id} 0 R >> /XObject << {xobjects}>> >> \
                     /Contents {contents} 0 R >>"
                    )
                    .into_bytes(),
                ),
            );
        }
        self.write_font(&mut w, font_id)?;
        let kids_list: Vec<String> = kids.iter().map(|k| format!("{k} 0 R")).collect();
        w.set(
            pages_id,
            format!(
                "<< /Type /Pages /Kids [{}] /Count {count} >>",
                kids_list.join(" ")
            )
            .into_bytes(),
        );
        w.set(
            catalog,
            format!("<< /Type /Catalog /Pages {pages_id} 0 R /Lang (vi-VN) >>").into_bytes(),
        );
        let info = w.add(
            format!(
                "<< /Title {} /Producer (ingest-server evidence package) /CreationDate ({created}) >>",
                utf16_string(title)
            )
            .into_bytes(),
        );
        Ok(w.finish(catalog, info))
    }

    fn content(&mut self, ops: &[Op]) -> String {
        let mut s = String::new();
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    text,
                    bold,
                    grey,
                } => {
                    let glyphs = self.font.glyphs(text);
                    let hex: String = glyphs.iter().map(|g| format!("{g:04X}")).collect();
                    let colour = if *grey { "0.35 g 0.35 G" } else { "0 g 0 G" };
                    // Bold by outlining the fill (one font file only).
                    let mode = if *bold { "2 Tr 0.35 w" } else { "0 Tr" };
                    let _ = writeln!(
                        s,
                        "BT {colour} {mode} /F1 {size:.2} Tf 1 0 0 1 {x:.2} {y:.2} Tm <{hex}> Tj ET"
                    );
                }
                Op::Rule { y } => {
                    let _ = writeln!(
                        s,
                        "q 0.6 G 0.6 w {MARGIN:.2} {y:.2} m {:.2} {y:.2} l S Q",
                        PAGE_W - MARGIN
                    );
                }
                Op::Raw(raw) => s.push_str(raw),
                Op::Image { index, x, y, w, h } => {
                    let _ = writeln!(s, "q {w:.2} 0 0 {h:.2} {x:.2} {y:.2} cm /Im{index} Do Q");
                }
            }
        }
        s
    }

    fn write_font(&self, w: &mut Writer, font_id: usize) -> Result<(), String> {
        let f = &self.font;
        let name = format!("{}+{}", subset_tag(f.used()), f.name);
        let file = f.subset()?;
        let file_id = w.add(deflated(&format!("/Length1 {}", file.len()), &file)?);
        let [x0, y0, x1, y1] = f.bbox;
        let descriptor = w.add(
            format!(
                "<< /Type /FontDescriptor /FontName /{name} /Flags 32 /FontBBox [{x0} {y0} {x1} {y1}] \
                 /ItalicAngle {} /Ascent {} /Descent {} /CapHeight {} /StemV 80 /FontFile2 {file_id} 0 R >>",
                f.italic_angle, f.ascent, f.descent, f.cap_height
            )
            .into_bytes(),
        );
        let mut widths = String::new();
        for g in f.used().keys() {
            let _ = write!(widths, "{g} [{:.0}] ", f.advance(*g));
        }
        let cid = w.add(
            format!(
                "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} \
                 /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
                 /FontDescriptor {descriptor} 0 R /DW 1000 /W [{widths}] /CIDToGIDMap /Identity >>"
            )
            .into_bytes(),
        );
        let cmap = w.add(deflated("", to_unicode(f.used()).as_bytes())?);
        w.set(
            font_id,
            format!(
                "<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H \
                 /DescendantFonts [{cid} 0 R] /ToUnicode {cmap} 0 R >>"
            )
            .into_bytes(),
        );
        Ok(())
    }
}

/// Six capital letters naming the subset (PDF convention), from the glyphs.
fn subset_tag(used: &std::collections::BTreeMap<u16, char>) -> String {
    let mut h: u32 = 2_166_136_261;
    for g in used.keys() {
        h = (h ^ u32::from(*g)).wrapping_mul(16_777_619);
    }
    (0..6)
        .map(|i| char::from(b'A' + ((h >> (i * 5)) % 26) as u8))
        .collect()
}

/// The ToUnicode CMap: glyph id → the character it shows.
fn to_unicode(used: &std::collections::BTreeMap<u16, char>) -> String {
    let mut s = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
         1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    let entries: Vec<(&u16, &char)> = used.iter().collect();
    for chunk in entries.chunks(100) {
        let _ = writeln!(s, "{} beginbfchar", chunk.len());
        for (g, c) in chunk {
            let mut units = [0u16; 2];
            let hex: String = c
                .encode_utf16(&mut units)
                .iter()
                .map(|u| format!("{u:04X}"))
                .collect();
            let _ = writeln!(s, "<{g:04X}> <{hex}>");
        }
        s.push_str("endbfchar\n");
    }
    s.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    s
}

/// A PDF text string in UTF-16BE with a byte-order mark, as hex.
fn utf16_string(text: &str) -> String {
    let hex: String = text.encode_utf16().map(|u| format!("{u:04X}")).collect();
    format!("<FEFF{hex}>")
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\nendstream");
    out
}

fn deflated(dict: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).map_err(|e| e.to_string())?;
    let packed = z.finish().map_err(|e| e.to_string())?;
    Ok(stream(&format!("{dict} /Filter /FlateDecode"), &packed))
}

/// Numbered objects and the cross-reference table.
#[derive(Default)]
struct Writer {
    objects: Vec<Vec<u8>>,
}

impl Writer {
    fn reserve(&mut self) -> usize {
        self.objects.push(Vec::new());
        self.objects.len()
    }

    fn set(&mut self, id: usize, body: Vec<u8>) {
        if let Some(slot) = self.objects.get_mut(id - 1) {
            *slot = body;
        }
    }

    fn add(&mut self, body: Vec<u8>) -> usize {
        self.objects.push(body);
        self.objects.len()
    }

    fn finish(self, root: usize, info: usize) -> Vec<u8> {
        let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::with_capacity(self.objects.len());
        for (i, body) in self.objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", self.objects.len() + 1);
        for o in offsets {
            let _ = writeln!(table, "{o:010} 00000 n ");
        }
        let _ = write!(
            table,
            "trailer\n<< /Size {} /Root {root} 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            self.objects.len() + 1
        );
        out.extend_from_slice(table.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_jpeg_frame_header() {
        let img = image::RgbImage::from_pixel(40, 30, image::Rgb([10, 200, 30]));
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 80)
            .encode_image(&img)
            .unwrap();
        let j = Jpeg::parse(buf).unwrap();
        assert_eq!((j.width, j.height, j.components), (40, 30, 3));
        assert!(Jpeg::parse(b"not a jpeg".to_vec()).is_none());
        assert!(Jpeg::parse(vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00]).is_none());
    }

    #[test]
    fn wraps_long_words_and_text() {
        let path = std::path::Path::new(super::super::DEFAULT_FONT);
        let doc = Doc::new(Font::load(path).unwrap());
        let hash = "ab".repeat(32);
        let lines = doc.wrap(&format!("Giá trị băm {hash} kết thúc"), 9.5, 120.0);
        assert!(lines.len() >= 3, "{lines:?}");
        assert_eq!(
            lines.concat().replace(' ', ""),
            format!("Giátrịbăm{hash}kếtthúc")
        );
        for l in &lines {
            assert!(doc.font.width(l, 9.5) <= 120.0, "{l}");
        }
    }
}
