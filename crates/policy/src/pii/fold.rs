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
/// A run of characters that folding changed alike: `count` characters of `original_len`
/// bytes each at `original`, each become `folded_len` bytes at `folded`. A run of full-width
/// text is one entry, so the map stays small whatever the text.
#[derive(Debug, Clone, Copy)]
struct Run {
    folded: u32,
    original: u32,
    count: u32,
    folded_len: u8,
    original_len: u8,
}

impl Run {
    fn folded_end(&self) -> usize {
        self.folded as usize + self.count as usize * usize::from(self.folded_len)
    }

    fn original_end(&self) -> usize {
        self.original as usize + self.count as usize * usize::from(self.original_len)
    }
}

/// The folded text, and the characters that differ from the original.
#[derive(Debug)]
pub(super) struct Folded {
    pub text: String,
    runs: Vec<Run>,
}

/// `None` when folding changes nothing (or the text is too large to map in 32 bits). A
/// character is folded only into a form no longer than itself (`４` into `4`, not `½` into
/// `1⁄2` or `ﷺ` into 33 bytes), so the folded text is never larger than the original.
pub(super) fn fold(text: &str) -> Option<Folded> {
    if text.is_ascii() || u32::try_from(text.len()).is_err() {
        return None;
    }
    let bmp = stable_bmp();
    let mut folded: Option<Folded> = None;
    for (at, c) in text.char_indices() {
        let form = (!stable(c, bmp))
            .then(|| std::iter::once(c).nfkc().collect::<String>())
            .filter(|form| form.len() <= c.len_utf8() && !form.is_empty());
        let Some(form) = form else {
            if let Some(f) = &mut folded {
                f.text.push(c);
            }
            continue;
        };
        let f = folded.get_or_insert_with(|| {
            let mut copy = String::with_capacity(text.len());
            copy.push_str(&text[..at]);
            Folded {
                text: copy,
                runs: Vec::new(),
            }
        });
        // Lengths fit: at most four bytes each. Offsets fit: the text is under 4 GiB.
        let (folded_len, original_len) = (form.len() as u8, c.len_utf8() as u8);
        match f.runs.last_mut() {
            Some(run)
                if run.folded_end() == f.text.len()
                    && run.original_end() == at
                    && run.folded_len == folded_len
                    && run.original_len == original_len =>
            {
                run.count += 1;
            }
            _ => f.runs.push(Run {
                folded: f.text.len() as u32,
                original: at as u32,
                count: 1,
                folded_len,
                original_len,
            }),
        }
        f.text.push_str(&form);
    }
    folded
}

impl Folded {
    /// The run at or before folded offset `at` (`strict`: before it).
    fn last(&self, at: usize, strict: bool) -> Option<&Run> {
        let n = self.runs.partition_point(|r| {
            let folded = r.folded as usize;
            if strict { folded < at } else { folded <= at }
        });
        n.checked_sub(1).map(|i| &self.runs[i])
    }

    /// Where a finding that starts at folded `at` starts in the original.
    pub fn start(&self, at: usize) -> usize {
        match self.last(at, false) {
            None => at,
            Some(r) if at < r.folded_end() => {
                let i = (at - r.folded as usize) / usize::from(r.folded_len);
                r.original as usize + i * usize::from(r.original_len)
            }
            Some(r) => r.original_end() + (at - r.folded_end()),
        }
    }

    /// Where a finding that ends at folded `at` ends in the original.
    pub fn end(&self, at: usize) -> usize {
        match self.last(at, true) {
            None => at,
            Some(r) if at <= r.folded_end() => {
                let i = (at - r.folded as usize).div_ceil(usize::from(r.folded_len));
                r.original as usize + i * usize::from(r.original_len)
            }
            Some(r) => r.original_end() + (at - r.folded_end()),
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
        // A run of full-width characters is one entry, and growing forms are left alone.
        assert_eq!(folded.runs.len(), 2);
        assert!(fold("½ and ﷺ").is_none());
        let bang = folded.text.len() - 1;
        assert_eq!(&text[folded.start(bang)..folded.end(bang + 1)], "!");
    }
}
