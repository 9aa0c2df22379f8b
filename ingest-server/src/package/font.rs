//! The TrueType font of the PDF summary: read at run time from a file (by
//! default DejaVu Sans from Debian's `fonts-dejavu-core`, which covers
//! Vietnamese), mapped from characters to glyph ids and advance widths with
//! `ttf-parser`, and cut down to the glyphs a document uses before it is
//! embedded.
//!
//! Why a subset: the whole DejaVu Sans is 760 KB; a summary uses about a
//! hundred glyphs. The subset keeps every glyph id where it was (unused
//! glyphs become empty outlines, composite glyphs keep their components), so
//! the PDF can address glyphs by their ids directly (`CIDToGIDMap
//! /Identity`) and the widths and the ToUnicode map read straight from the
//! original font. Only the tables a PDF reader needs to draw TrueType
//! outlines are kept (`head hhea maxp hmtx loca glyf cvt fpgm prep`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ttf_parser::{Face, GlyphId, Tag};

/// A loaded font and the glyphs used so far.
pub struct Font {
    data: Vec<u8>,
    units_per_em: f64,
    /// Glyph id → the character it was first used for (ToUnicode).
    used: BTreeMap<u16, char>,
    /// Font name for the PDF (`DejaVuSans`).
    pub name: String,
    /// Ascender, descender, cap height, in 1/1000 em; bounding box.
    pub ascent: i32,
    /// Descender (negative).
    pub descent: i32,
    /// Cap height.
    pub cap_height: i32,
    /// x_min, y_min, x_max, y_max, 1/1000 em.
    pub bbox: [i32; 4],
    /// Italic angle.
    pub italic_angle: f32,
}

impl Font {
    /// Reads and parses the font file at `path`; the error is a sentence.
    pub fn load(path: &Path) -> Result<Font, String> {
        let data = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        let face = Face::parse(&data, 0).map_err(|e| format!("not a TrueType font: {e}"))?;
        if face.raw_face().table(Tag::from_bytes(b"glyf")).is_none() {
            return Err("has no TrueType outlines (glyf table); use a .ttf font".into());
        }
        if face.glyph_index('ệ').is_none() || face.glyph_index('Đ').is_none() {
            return Err("has no Vietnamese letters (ệ, Đ)".into());
        }
        let upem = f64::from(face.units_per_em().max(1));
        let em = |v: i16| (f64::from(v) * 1000.0 / upem).round() as i32;
        let b = face.global_bounding_box();
        let name = face
            .names()
            .into_iter()
            .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
            .and_then(|n| n.to_string())
            .unwrap_or_else(|| "Font".into())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let font = Font {
            units_per_em: upem,
            used: BTreeMap::new(),
            name,
            ascent: em(face.ascender()),
            descent: em(face.descender()),
            cap_height: em(face.capital_height().unwrap_or(face.ascender())),
            bbox: [em(b.x_min), em(b.y_min), em(b.x_max), em(b.y_max)],
            italic_angle: face.italic_angle(),
            data: Vec::new(),
        };
        Ok(Font { data, ..font })
    }

    fn face(&self) -> Option<Face<'_>> {
        Face::parse(&self.data, 0).ok()
    }

    /// The glyph ids of `text` (characters without a glyph become `?`),
    /// recorded as used.
    pub fn glyphs(&mut self, text: &str) -> Vec<u16> {
        let Some(face) = self.face() else {
            return Vec::new();
        };
        let fallback = face.glyph_index('?').map_or(0, |g| g.0);
        let ids: Vec<(u16, char)> = text
            .chars()
            .map(|c| match face.glyph_index(c) {
                Some(g) => (g.0, c),
                None => (fallback, '?'),
            })
            .collect();
        for (g, c) in &ids {
            self.used.entry(*g).or_insert(*c);
        }
        ids.into_iter().map(|(g, _)| g).collect()
    }

    /// Advance width of a glyph in 1/1000 em.
    pub fn advance(&self, glyph: u16) -> f64 {
        self.face()
            .and_then(|f| f.glyph_hor_advance(GlyphId(glyph)))
            .map_or(0.0, |a| f64::from(a) * 1000.0 / self.units_per_em)
    }

    /// Width of `text` at `size` points (does not record glyphs as used).
    pub fn width(&self, text: &str, size: f64) -> f64 {
        let Some(face) = self.face() else { return 0.0 };
        let units: f64 = text
            .chars()
            .filter_map(|c| face.glyph_index(c).or_else(|| face.glyph_index('?')))
            .filter_map(|g| face.glyph_hor_advance(g))
            .map(f64::from)
            .sum();
        units * size / self.units_per_em
    }

    /// The used glyphs with the character each stands for.
    pub fn used(&self) -> &BTreeMap<u16, char> {
        &self.used
    }

    /// A TrueType file with only the used glyphs' outlines (ids unchanged).
    pub fn subset(&self) -> Result<Vec<u8>, String> {
        let face = self.face().ok_or("font no longer parses")?;
        let table = |t: &[u8; 4]| face.raw_face().table(Tag::from_bytes(t));
        let need = |t: &[u8; 4]| table(t).ok_or(format!("no {} table", String::from_utf8_lossy(t)));
        let head = need(b"head")?;
        let glyf = need(b"glyf")?;
        let loca = need(b"loca")?;
        if head.len() < 54 {
            return Err("short head table".into());
        }
        let long_loca = be16(head, 50) == Some(1);
        let n = usize::from(face.number_of_glyphs());
        let offset = |i: usize| -> Option<usize> {
            if long_loca {
                be32(loca, i * 4).map(|v| v as usize)
            } else {
                be16(loca, i * 2).map(|v| usize::from(v) * 2)
            }
        };
        let outline = |g: usize| -> Option<&[u8]> {
            let (a, b) = (offset(g)?, offset(g + 1)?);
            glyf.get(a..b.max(a))
        };
        // Glyph 0 (.notdef) always; components of composites transitively.
        let mut keep: BTreeSet<usize> = self.used.keys().map(|g| usize::from(*g)).collect();
        keep.insert(0);
        let mut todo: Vec<usize> = keep.iter().copied().collect();
        while let Some(g) = todo.pop() {
            for c in components(outline(g).unwrap_or(&[])) {
                if c < n && keep.insert(c) {
                    todo.push(c);
                }
            }
        }
        let mut new_glyf = Vec::new();
        let mut new_loca = Vec::with_capacity((n + 1) * 4);
        for g in 0..n {
            new_loca.extend_from_slice(&(new_glyf.len() as u32).to_be_bytes());
            if keep.contains(&g) {
                new_glyf.extend_from_slice(outline(g).unwrap_or(&[]));
                while new_glyf.len() % 4 != 0 {
                    new_glyf.push(0);
                }
            }
        }
        new_loca.extend_from_slice(&(new_glyf.len() as u32).to_be_bytes());
        let mut new_head = head.to_vec();
        new_head[8..12].copy_from_slice(&[0; 4]); // checkSumAdjustment, set below
        new_head[50..52].copy_from_slice(&1u16.to_be_bytes()); // long loca
        let mut tables: Vec<([u8; 4], Vec<u8>)> = vec![
            (*b"glyf", new_glyf),
            (*b"head", new_head),
            (*b"loca", new_loca),
        ];
        for t in [b"hhea", b"maxp", b"hmtx", b"cvt ", b"fpgm", b"prep"] {
            if let Some(d) = table(t) {
                tables.push((*t, d.to_vec()));
            }
        }
        tables.sort_by_key(|a| a.0);
        Ok(assemble(tables))
    }
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *d.get(at)?,
        *d.get(at + 1)?,
        *d.get(at + 2)?,
        *d.get(at + 3)?,
    ]))
}

/// The glyph ids a composite glyph refers to (none for a simple one).
fn components(glyph: &[u8]) -> Vec<usize> {
    const WORDS: u16 = 0x0001;
    const SCALE: u16 = 0x0008;
    const MORE: u16 = 0x0020;
    const XY_SCALE: u16 = 0x0040;
    const TWO_BY_TWO: u16 = 0x0080;
    let mut out = Vec::new();
    match be16(glyph, 0) {
        Some(c) if (c as i16) < 0 => {}
        _ => return out,
    }
    let mut at = 10;
    while let (Some(flags), Some(id)) = (be16(glyph, at), be16(glyph, at + 2)) {
        out.push(usize::from(id));
        at += 4 + if flags & WORDS != 0 { 4 } else { 2 };
        at += if flags & SCALE != 0 {
            2
        } else if flags & XY_SCALE != 0 {
            4
        } else if flags & TWO_BY_TWO != 0 {
            8
        } else {
            0
        };
        if flags & MORE == 0 {
            break;
        }
    }
    out
}

fn checksum(d: &[u8]) -> u32 {
    d.chunks(4).fold(0u32, |sum, c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        sum.wrapping_add(u32::from_be_bytes(w))
    })
}

/// An sfnt file from tables sorted by tag.
fn assemble(tables: Vec<([u8; 4], Vec<u8>)>) -> Vec<u8> {
    let num = tables.len() as u16;
    let mut pow = 1u16;
    let mut log = 0u16;
    while pow * 2 <= num {
        pow *= 2;
        log += 1;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    for v in [num, pow * 16, log, num * 16 - pow * 16] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let mut offset = 12 + 16 * tables.len();
    let mut body = Vec::new();
    let mut head_at = None;
    for (tag, data) in &tables {
        if tag == b"head" {
            head_at = Some(offset);
        }
        out.extend_from_slice(tag);
        out.extend_from_slice(&checksum(data).to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        offset = 12 + 16 * tables.len() + body.len();
    }
    out.extend_from_slice(&body);
    if let Some(at) = head_at {
        let adjust = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
        out[at + 8..at + 12].copy_from_slice(&adjust.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_keeps_used_glyphs_and_their_components() {
        let path = Path::new(super::super::DEFAULT_FONT);
        let mut font = Font::load(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install fonts-dejavu-core: scripts/setup-system.sh)",
                path.display()
            )
        });
        let ids = font.glyphs("Biển số Đ ệ");
        assert!(
            ids.iter().all(|g| *g != 0),
            "every character has a glyph: {ids:?}"
        );
        let sub = font.subset().unwrap();
        assert!(sub.len() < 200_000, "subset is {} bytes", sub.len());
        let face = Face::parse(&sub, 0).unwrap();
        let g = face.number_of_glyphs();
        assert_eq!(g, Face::parse(&font.data, 0).unwrap().number_of_glyphs());
        // A used glyph still has its outline; an unused one has none.
        let used = GlyphId(ids[1]);
        assert!(face.glyph_bounding_box(used).is_some());
        let unused = Face::parse(&font.data, 0)
            .unwrap()
            .glyph_index('Z')
            .unwrap();
        assert!(face.glyph_bounding_box(unused).is_none());
        assert!(font.width("Biển số", 10.0) > 20.0);
        assert!(Font::load(Path::new("/nonexistent/font.ttf")).is_err());
    }
}
