//! Recognisers that read what the test tells them, for tests of what the
//! pipeline makes of a read (the grammar, the threshold, the cross-check,
//! the window search) without a model.
#![allow(dead_code)]

use opencv::core::Mat;
use plate_ocr::recognize::{CharRead, LineRead, Recognizer, TextRead};

/// A one-line read of `chars`, each character with its own probability and
/// no other candidate; `plate_lines` as the reader would guess it.
pub fn text_read(chars: &[(char, f32)], plate_lines: Option<u8>) -> TextRead {
    TextRead {
        lines: vec![LineRead {
            chars: chars
                .iter()
                .map(|&(ch, prob)| CharRead {
                    ch,
                    prob,
                    alternatives: vec![(ch, prob)],
                })
                .collect(),
            text: chars.iter().map(|(c, _)| c).collect(),
        }],
        plate_lines,
    }
}

/// A recogniser that reads the same characters from every crop.
pub struct Scored {
    pub chars: Vec<(char, f32)>,
    pub plate_lines: Option<u8>,
}

impl Scored {
    /// `text`, each character with probability `p`, one line.
    pub fn uniform(text: &str, p: f32) -> Scored {
        Scored::new(text.chars().map(|c| (c, p)).collect())
    }

    /// `text`, each character certain.
    pub fn certain(text: &str) -> Scored {
        Scored::uniform(text, 1.0)
    }

    /// These characters and probabilities, one line.
    pub fn new(chars: Vec<(char, f32)>) -> Scored {
        Scored {
            chars,
            plate_lines: Some(1),
        }
    }

    /// The same, guessing `lines` for the crop (`None`: no guess).
    pub fn lines(self, lines: Option<u8>) -> Scored {
        Scored {
            plate_lines: lines,
            ..self
        }
    }
}

impl Recognizer for Scored {
    fn name(&self) -> &str {
        "scored"
    }

    fn read(&self, _crop: &Mat, _lines: Option<u8>) -> plate_ocr::error::Result<TextRead> {
        Ok(text_read(&self.chars, self.plate_lines))
    }
}
