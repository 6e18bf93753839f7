//! Text as the detector reads it (CF-3, AV-4): each character in its compatibility form
//! (NFKC), so that full-width digits are digits and `＠` is `@`, with a map back to the text as
//! sent so that findings and redaction name the original bytes. ASCII text, and text with no
//! character that folding changes, is read as it is, without a copy.

use std::sync::OnceLock;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// For each character of the Basic Multilingual Plane, whether NFKC leaves it as it is: one
/// bit each (8 KiB), computed once, so that prose in any script costs a lookup per character.
fn stable_bmp() -> &'static [u64; 1024] {
    static TABLE: OnceLock<Box<[u64; 1024]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0u64; 1024]);
        for code in 0..=0xFFFFu32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            if unchanged(c) {
                table[(code / 64) as usize] |= 1 << (code % 64);
            }
        }
        table
    })
}

fn unchanged(c: char) -> bool {
    is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes
        || std::iter::once(c).nfkc().eq(std::iter::once(c))
}

fn stable(c: char, bmp: &[u64; 1024]) -> bool {
    let code = u32::from(c);
    if code < 0x80 {
        true
    } else if code <= 0xFFFF {
        bmp[(code / 64) as usize] & (1 << (code % 64)) != 0
    } else {
        unchanged(c)
    }
}

/// One character that folding changed: where it is in each text, and how long.
#[derive(Debug, Clone, Copy)]
struct Change {
    folded: usize,
    folded_len: usize,
    original: usize,
    original_len: usize,
}

/// The folded text, and the characters that differ from the original.
#[derive(Debug)]
pub(super) struct Folded {
    pub text: String,
    changes: Vec<Change>,
}

/// `None` when folding changes nothing.
pub(super) fn fold(text: &str) -> Option<Folded> {
    if text.is_ascii() {
        return None;
    }
    let bmp = stable_bmp();
    let mut folded: Option<Folded> = None;
    for (at, c) in text.char_indices() {
        if stable(c, bmp) {
            if let Some(f) = &mut folded {
                f.text.push(c);
            }
            continue;
        }
        let form: String = std::iter::once(c).nfkc().collect();
        let f = folded.get_or_insert_with(|| {
            let mut copy = String::with_capacity(text.len());
            copy.push_str(&text[..at]);
            Folded {
                text: copy,
                changes: Vec::new(),
            }
        });
        f.changes.push(Change {
            folded: f.text.len(),
            folded_len: form.len(),
            original: at,
            original_len: c.len_utf8(),
        });
        f.text.push_str(&form);
    }
    folded
}

impl Folded {
    /// The change at or before folded offset `at` (`strict`: before it).
    fn last(&self, at: usize, strict: bool) -> Option<&Change> {
        let n = self.changes.partition_point(|c| {
            if strict {
                c.folded < at
            } else {
                c.folded <= at
            }
        });
        n.checked_sub(1).map(|i| &self.changes[i])
    }

    /// Where a finding that starts at folded `at` starts in the original.
    pub fn start(&self, at: usize) -> usize {
        match self.last(at, false) {
            None => at,
            Some(c) if at < c.folded + c.folded_len => c.original,
            Some(c) => c.original + c.original_len + (at - c.folded - c.folded_len),
        }
    }

    /// Where a finding that ends at folded `at` ends in the original.
    pub fn end(&self, at: usize) -> usize {
        match self.last(at, true) {
            None => at,
            Some(c) if at <= c.folded + c.folded_len => c.original + c.original_len,
            Some(c) => c.original + c.original_len + (at - c.folded - c.folded_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_forms_fold_and_map_back() {
        assert!(fold("plain ascii").is_none());
        assert!(fold("café, naïve, Zoë, 日本語").is_none());
        let text = "card ４１１１ and mail ａ＠ｂ.io!";
        let folded = fold(text).unwrap();
        assert_eq!(folded.text, "card 4111 and mail a@b.io!");
        let card = folded.text.find("4111").unwrap();
        assert_eq!(&text[folded.start(card)..folded.end(card + 4)], "４１１１");
        let mail = folded.text.find("a@b.io").unwrap();
        assert_eq!(&text[folded.start(mail)..folded.end(mail + 6)], "ａ＠ｂ.io");
        let bang = folded.text.len() - 1;
        assert_eq!(&text[folded.start(bang)..folded.end(bang + 1)], "!");
    }
}
