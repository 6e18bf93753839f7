//! Each kind's shape (a pattern, ASCII only) and the rules a candidate of that shape must pass.
//! Earlier rules take precedence where two match at the same place.

use regex_automata::meta::Regex;

use super::{PiiKind, iban_checksum, luhn, parses_as_ipv6};

/// Decides a candidate `bytes[start..end]`: `None`, or the span that is the finding.
type Check = fn(&[u8], usize, usize) -> Option<(usize, usize)>;

#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub kind: PiiKind,
    pub pattern: String,
    /// The pattern alone, searched anchored at a candidate's start (with the text before it
    /// in view, so that `\b` sees what precedes).
    pub alone: Regex,
    pub check: Check,
}

const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/// Bytes, not Unicode: the patterns are ASCII, and `\x80-\xFF` stands for any byte of a
/// non-ASCII character.
pub(super) fn bytes_syntax() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
}

pub(super) fn all() -> Result<Vec<Rule>, Box<regex_automata::meta::BuildError>> {
    let ipv4 = format!(r"\b{OCTET}(?:\.{OCTET}){{3}}\b");
    let table: [(PiiKind, &str, Check); 14] = [
        (
            PiiKind::Secret,
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----",
            private_key,
        ),
        (
            PiiKind::Secret,
            r"\beyJ[A-Za-z0-9_-]{5,4096}\.eyJ[A-Za-z0-9_-]{5,8192}\.[A-Za-z0-9_-]{0,1024}",
            jwt,
        ),
        (
            PiiKind::Secret,
            r"\b(?:sk-[A-Za-z0-9_-]{20,256}|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}|xox[abposre]-[A-Za-z0-9-]{10,255}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}|AIza[A-Za-z0-9_-]{35}|pc[vmsci]_[A-Za-z0-9]{30,64})",
            api_key,
        ),
        (
            PiiKind::Secret,
            r#"\b(?i:aws_secret_access_key)["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9/+]{40}"#,
            aws_secret,
        ),
        (
            PiiKind::Email,
            // Internationalised addresses too: any byte of a non-ASCII character in the local
            // part, the labels and the top-level domain (checked as UTF-8 in `email`).
            r"[A-Za-z0-9._%+\x80-\xFF-]{1,64}@(?:[A-Za-z0-9\x80-\xFF-]{1,63}\.){1,8}(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59}|[\x80-\xFF]{2,64})",
            email,
        ),
        (
            PiiKind::Iban,
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?",
            iban,
        ),
        (PiiKind::PaymentCard, r"\b[0-9](?:[ -]?[0-9]){12,18}", card),
        (PiiKind::UsSsn, r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b", ssn),
        (
            PiiKind::Phone,
            r"\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,5}\)?){1,7}",
            phone_international,
        ),
        (
            PiiKind::Phone,
            r"\(?\b[2-9][0-9]{2}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}\b",
            phone_us,
        ),
        (
            PiiKind::Phone,
            r"\b0[1-9][0-9]{0,4}(?:[ .-][0-9]{2,4}){1,4}\b",
            phone_national,
        ),
        (
            // Every other way numbers are written: a trunk digit or `00` first, parentheses
            // anywhere, `/` between groups, no separator at all (then only where the text
            // before says it is a number to call).
            PiiKind::Phone,
            r"(?:\+|\(\+?)?[0-9](?:[0-9]|[ ]?[./-]?[ ]?\(?[0-9]|\)[ ]?[./-]?[ ]?[0-9]){6,28}",
            phone_grouped,
        ),
        (
            PiiKind::IpAddress,
            r"(?:[0-9A-Fa-f]{0,4}:){2,8}[0-9A-Fa-f]{0,4}(?:\.[0-9]{1,3}){0,3}",
            ipv6,
        ),
        (PiiKind::IpAddress, ipv4.as_str(), ipv4_check),
    ];
    table
        .into_iter()
        .map(|(kind, pattern, check)| {
            Ok(Rule {
                kind,
                pattern: pattern.to_owned(),
                alone: Regex::builder()
                    .syntax(bytes_syntax())
                    .configure(Regex::config().utf8_empty(false))
                    .build(pattern)
                    .map_err(Box::new)?,
                check,
            })
        })
        .collect()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn before(bytes: &[u8], start: usize) -> Option<u8> {
    start.checked_sub(1).and_then(|i| bytes.get(i)).copied()
}

fn after(bytes: &[u8], end: usize) -> Option<u8> {
    bytes.get(end).copied()
}

/// Nothing word-like runs on past the end (a key is not a prefix of a longer word).
fn ends_cleanly(bytes: &[u8], end: usize) -> bool {
    after(bytes, end).is_none_or(|b| !is_word(b) && b != b'-')
}

/// A number does not continue past the end as `.5` or `-12`.
fn number_ends(bytes: &[u8], end: usize) -> bool {
    match after(bytes, end) {
        None => true,
        Some(b) if b.is_ascii_digit() || b.is_ascii_alphabetic() || b == b'_' => false,
        Some(b'.' | b'-' | b'/' | b':') => {
            after(bytes, end + 1).is_none_or(|n| !n.is_ascii_digit())
        }
        Some(_) => true,
    }
}

/// A number does not continue before the start (`v1.2`, `x-12`, `3.14`).
fn number_starts(bytes: &[u8], start: usize) -> bool {
    match before(bytes, start) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'.' | b'-' | b'+' | b'/') => false,
        Some(_) => true,
    }
}

/// A PEM private key: from its BEGIN line through its END line, or, with no END line within
/// reach, through the base64 body that follows (bounded, so a lone header costs little).
fn private_key(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    const REACH: usize = 16 * 1024;
    const END: &[u8] = b"-----END ";
    const TAIL: &[u8] = b"PRIVATE KEY-----";
    let window = &bytes[end..bytes.len().min(end + REACH)];
    if let Some(at) = window.windows(END.len()).position(|w| w == END) {
        let after_end = &window[at..];
        if let Some(tail) = after_end.windows(TAIL.len()).position(|w| w == TAIL) {
            if tail <= END.len() + 40 {
                return Some((start, end + at + tail + TAIL.len()));
            }
        }
    }
    let body = window
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"+/=\r\n\t :,-".contains(b))
        .count();
    Some((start, end + body))
}

/// Generated keys look random: letters and digits, many distinct, in long runs.
fn random_enough(body: &[u8]) -> bool {
    let longest_run = body
        .split(|b| !b.is_ascii_alphanumeric())
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    let mut distinct = [false; 256];
    for &b in body {
        distinct[usize::from(b)] = true;
    }
    body.iter().any(u8::is_ascii_digit)
        && body.iter().any(u8::is_ascii_alphabetic)
        && distinct.iter().filter(|d| **d).count() >= 8
        && longest_run >= 12
}

fn jwt(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &bytes[start..end];
    let parts: Vec<&[u8]> = text.split(|b| *b == b'.').collect();
    (parts.len() == 3
        && parts[0].len() >= 10
        && parts[1].len() >= 10
        && before(bytes, start).is_none_or(|b| b != b'-')
        && ends_cleanly(bytes, end))
    .then_some((start, end))
}

/// Prefixes that only issued keys carry (Google, AWS, GitHub, Slack, Stripe): with the
/// length the pattern holds them to, the shape alone is the finding. `sk-` is also a word's
/// start, and needs the randomness too.
const ISSUED: [&[u8]; 12] = [
    b"AIza",
    b"AKIA",
    b"ASIA",
    b"ABIA",
    b"ACCA",
    b"gh",
    b"github_pat_",
    b"xox",
    b"sk_live_",
    b"rk_live_",
    b"sk_test_",
    b"rk_test_",
];

fn api_key(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let key = &bytes[start..end];
    let issued = ISSUED.iter().any(|prefix| key.starts_with(prefix));
    (before(bytes, start).is_none_or(|b| b != b'-' && b != b'.' && b != b'/')
        && ends_cleanly(bytes, end)
        && (issued || random_enough(key)))
    .then_some((start, end))
}

fn aws_secret(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let value = end.checked_sub(40)?;
    (after(bytes, end).is_none_or(|b| !b.is_ascii_alphanumeric() && b != b'/' && b != b'+')
        && random_enough(&bytes[value..end])
        && start < value)
        .then_some((value, end))
}

/// Extensions that make `logo@2x.png` a file name, not an address.
const FILE_EXTENSIONS: [&str; 16] = [
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "json", "html", "md",
    "txt", "pdf", "zip",
];

/// A UTF-8 continuation byte: inside a character, not at its start.
fn continues(b: u8) -> bool {
    (0x80..0xC0).contains(&b)
}

fn email(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &bytes[start..end];
    // Whole characters only: a candidate that starts or ends inside one is not an address.
    if continues(bytes[start]) || after(bytes, end).is_some_and(continues) {
        return None;
    }
    let at = text.iter().position(|b| *b == b'@')?;
    let (local, domain) = (&text[..at], &text[at + 1..]);
    let tld = domain.rsplit(|b| *b == b'.').next()?;
    let tld = std::str::from_utf8(tld).ok()?.to_ascii_lowercase();
    let prev_ok = before(bytes, start)
        .is_none_or(|b| !(is_word(b) || b >= 0x80 || matches!(b, b'%' | b'+' | b'-' | b'/')));
    (prev_ok
        && local.len() <= 64
        && domain.len() <= 253
        && !local.starts_with(b".")
        && !local.ends_with(b".")
        && !domain
            .split(|b| *b == b'.')
            .any(|label| label.is_empty() || label.starts_with(b"-"))
        && !FILE_EXTENSIONS.contains(&tld.as_str()))
    .then_some((start, end))
}

/// The IBAN length of each country that issues them (SWIFT's registry).
const IBAN_LENGTHS: [(&[u8; 2], usize); 78] = [
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"LY", 25),
];

fn iban(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let country = bytes.get(start..start + 2)?;
    let (_, length) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country)?;
    // The candidate may have run on into a following word: cut it at the country's length.
    let mut compact = Vec::with_capacity(34);
    let mut cut = None;
    for (i, &b) in bytes[start..end].iter().enumerate() {
        if b != b' ' {
            compact.push(b);
            if compact.len() == *length {
                cut = Some(start + i + 1);
                break;
            }
        }
    }
    let cut = cut?;
    (after(bytes, cut).is_none_or(|b| !is_word(b)) && iban_checksum(&compact))
        .then_some((start, cut))
}

/// A card's number is the right length for its network.
fn card_network(digits: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        digits[..n]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let len = digits.len();
    match digits[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' => (51..=55).contains(&prefix(2)) && len == 16,
        b'2' => (2221..=2720).contains(&prefix(4)) && len == 16,
        b'3' => match prefix(2) {
            34 | 37 => len == 15,
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len),
            30 => (300..=305).contains(&prefix(3)) && (14..=19).contains(&len),
            36 | 38 | 39 => (14..=19).contains(&len),
            _ => false,
        },
        b'6' => {
            (prefix(4) == 6011
                || prefix(2) == 65
                || (644..=649).contains(&prefix(3))
                || prefix(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// The ends worth trying for a grouped number: the whole candidate, then each earlier group
/// boundary (a number may be followed by another group that is not part of it).
fn group_ends(bytes: &[u8], start: usize, end: usize) -> Vec<usize> {
    let mut ends = vec![end];
    for i in (start..end).rev() {
        if matches!(bytes[i], b' ' | b'-' | b'.') {
            ends.push(i);
        }
    }
    ends
}

fn card(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if !number_starts(bytes, start) {
        return None;
    }
    group_ends(bytes, start, end).into_iter().find_map(|end| {
        let text = &bytes[start..end];
        let digits: Vec<u8> = text.iter().copied().filter(u8::is_ascii_digit).collect();
        let separators: Vec<u8> = text
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_digit())
            .collect();
        let groups: Vec<&[u8]> = text.split(|b| !b.is_ascii_digit()).collect();
        let grouped = separators.windows(2).all(|w| w[0] == w[1])
            && groups[..groups.len() - 1].iter().all(|g| g.len() >= 3);
        ((13..=19).contains(&digits.len())
            && grouped
            && number_ends(bytes, end)
            && card_network(&digits)
            && luhn(&digits))
        .then_some((start, end))
    })
}

fn ssn(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &bytes[start..end];
    let number = |range: std::ops::Range<usize>| -> u32 {
        text[range]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let (area, group, serial) = (number(0..3), number(4..6), number(7..11));
    (text[3] == text[6]
        && area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && number_starts(bytes, start)
        && number_ends(bytes, end))
    .then_some((start, end))
}

fn digit_count(text: &[u8]) -> usize {
    text.iter().filter(|b| b.is_ascii_digit()).count()
}

fn balanced(text: &[u8]) -> bool {
    let open = text.iter().filter(|b| **b == b'(').count();
    let close = text.iter().filter(|b| **b == b')').count();
    open == close && open <= 1
}

/// Where a phone number that ends at `end` really ends: after its extension (`x123`,
/// `ext. 123`) if it has one, so long as the number ends there.
fn phone_end(bytes: &[u8], end: usize) -> Option<usize> {
    let rest = &bytes[end..bytes.len().min(end + 24)];
    let spaced = usize::from(rest.first() == Some(&b' '));
    let word = &rest[spaced..];
    let marker = [&b"extension"[..], b"ext.", b"ext", b"x"]
        .into_iter()
        .find(|m| word.len() >= m.len() && word[..m.len()].eq_ignore_ascii_case(m))
        .map_or(0, <[u8]>::len);
    if marker > 0 {
        let after = spaced + marker;
        let gap = usize::from(rest.get(after) == Some(&b' '));
        let digits = rest[after + gap..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let at = end + after + gap + digits;
        if (1..=6).contains(&digits) && number_ends(bytes, at) {
            return Some(at);
        }
    }
    number_ends(bytes, end).then_some(end)
}

/// Words that say the number after them is one to call (as a word's start: `tel`, `tel.`,
/// `telephone`, `Telefon`).
const PHONE_WORDS: [&[u8]; 21] = [
    b"tel",
    b"phone",
    b"call",
    b"mob",
    b"cell",
    b"text",
    b"sms",
    b"fax",
    b"whatsapp",
    b"reach",
    b"contact",
    b"kontakt",
    b"tlf",
    b"puh",
    b"fone",
    "電話".as_bytes(),
    "电话".as_bytes(),
    "전화".as_bytes(),
    "телефон".as_bytes(),
    "тел".as_bytes(),
    "Тел".as_bytes(),
];

/// Words that say the number after them is an identifier.
const ID_WORDS: [&[u8]; 11] = [
    b"id",
    b"order",
    b"invoice",
    b"customer",
    b"account",
    b"meeting",
    b"ticket",
    b"ref",
    b"passcode",
    b"serial",
    b"case",
];

/// What the words just before `start` say the number is: `Some(true)` a phone, `Some(false)`
/// an identifier, whichever word came last. One pass over at most 32 bytes.
fn said_before(bytes: &[u8], start: usize) -> Option<bool> {
    let window = &bytes[start.saturating_sub(32)..start];
    let starts_word = |word: &[u8], prefix: &[u8]| {
        word.len() >= prefix.len() && word[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    window
        .split(|b| b.is_ascii() && !b.is_ascii_alphabetic())
        .rev()
        .filter(|word| !word.is_empty())
        .find_map(|word| {
            if PHONE_WORDS.iter().any(|p| starts_word(word, p)) {
                Some(true)
            } else if word.eq_ignore_ascii_case(b"po")
                || ID_WORDS.iter().any(|p| starts_word(word, p))
            {
                Some(false)
            } else {
                None
            }
        })
}

/// Shapes of digits that are something else: a date, an IPv4 address, an SSN, blocks of four
/// (cards, account numbers).
fn other_number(text: &[u8], groups: &[&[u8]]) -> bool {
    let separators: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_digit())
        .collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let dated = separators.len() == 2
        && separators[0] == separators[1]
        && matches!(separators[0], b'-' | b'/' | b'.')
        && matches!(
            lengths.as_slice(),
            [4, 1 | 2, 1 | 2] | [1 | 2, 1 | 2, 2 | 4]
        );
    let address = separators.iter().all(|b| *b == b'.')
        && lengths.len() == 4
        && lengths.iter().all(|l| *l <= 3);
    let ssn = separators == [b'-', b'-'] && lengths == [3, 2, 4];
    let blocks = lengths.iter().filter(|l| **l == 4).count() >= 3;
    // `2024-00871`, `55123/2024`, `20240115-88213`: a reference with its year or date.
    let year = |g: &&[u8]| {
        (g.len() == 4 || g.len() == 8) && (g.starts_with(b"19") || g.starts_with(b"20"))
    };
    let referenced = (matches!(separators.first(), Some(b'-' | b'/'))
        && groups.first().is_some_and(year))
        || (separators.last() == Some(&b'/') && groups.last().is_some_and(year));
    dated || address || ssn || blocks || referenced
}

fn phone_grouped(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if before(bytes, start).is_some_and(|b| is_word(b) || matches!(b, b'.' | b'-' | b'/' | b'+')) {
        return None;
    }
    // The tail of a longer run of groups (`1111 1112` of a card) is not a number of its own.
    if before(bytes, start) == Some(b' ')
        && before(bytes, start - 1).is_some_and(|b| b.is_ascii_digit())
    {
        return None;
    }
    let text = &bytes[start..end];
    if !balanced(text) {
        return None;
    }
    let groups: Vec<&[u8]> = text
        .split(|b| !b.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    // Versions and decimals: a group of one digit after the first.
    if groups.iter().skip(1).any(|g| g.len() < 2) || other_number(text, &groups) {
        return None;
    }
    let digits = digit_count(text);
    let international =
        text.starts_with(b"+") || text.starts_with(b"(+") || text.starts_with(b"00");
    let phone = if international {
        (8..=15).contains(&digits)
    } else if groups.len() >= 2 {
        (7..=13).contains(&digits) && said_before(bytes, start) != Some(false)
    } else {
        (7..=12).contains(&digits) && said_before(bytes, start) == Some(true)
    };
    if !phone {
        return None;
    }
    phone_end(bytes, end).map(|end| (start, end))
}

fn phone_international(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if before(bytes, start).is_some_and(|b| is_word(b) || b == b'+') {
        return None;
    }
    // `(+44 131 496 0989)`: the closing parenthesis is the sentence's, not the number's.
    let end = if bytes[end - 1] == b')' && !balanced(&bytes[start..end]) {
        end - 1
    } else {
        end
    };
    let mut ends = group_ends(bytes, start, end);
    // A closing parenthesis is a group boundary too.
    ends.retain(|e| *e > start + 1);
    ends.into_iter().find_map(|end| {
        let text = &bytes[start..end];
        let digits = digit_count(text);
        ((8..=15).contains(&digits) && balanced(text) && !text.ends_with(b"("))
            .then(|| phone_end(bytes, end))
            .flatten()
            .map(|end| (start, end))
    })
}

fn phone_us(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &bytes[start..end];
    let parens = text.starts_with(b"(");
    if parens != text.contains(&b')') || !number_starts(bytes, start) {
        return None;
    }
    let separators: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| matches!(b, b' ' | b'.' | b'-'))
        .collect();
    let consistent = parens
        || (separators.len() == 2 && (separators[0] == separators[1] || separators[0] == b' '));
    consistent
        .then(|| phone_end(bytes, end))
        .flatten()
        .map(|end| (start, end))
}

fn phone_national(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &bytes[start..end];
    let separators: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_digit())
        .collect();
    ((9..=12).contains(&digit_count(text))
        && separators.windows(2).all(|w| w[0] == w[1])
        && number_starts(bytes, start))
    .then(|| phone_end(bytes, end))
    .flatten()
    .map(|end| (start, end))
}

fn ipv6(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let mut end = end;
    // A sentence's full stop or a trailing colon is not part of the address.
    while end > start && bytes[end - 1] == b'.' {
        end -= 1;
    }
    if end >= start + 2 && bytes[end - 1] == b':' && bytes[end - 2] != b':' {
        end -= 1;
    }
    let text = &bytes[start..end];
    let groups = text.split(|b| *b == b':').filter(|g| !g.is_empty()).count();
    let colons = text.iter().filter(|b| **b == b':').count();
    let compressed = text.windows(2).any(|w| w == b"::");
    let shaped =
        (colons >= 7 || compressed) && (groups >= 2 || (text.starts_with(b"::") && groups == 1));
    (shaped
        && before(bytes, start).is_none_or(|b| !is_word(b) && b != b':' && b != b'.')
        && after(bytes, end).is_none_or(|b| !is_word(b))
        && parses_as_ipv6(text))
    .then_some((start, end))
}

/// An address may carry a port (`:8080`) or a prefix length (`/24`), not a fifth part.
fn ipv4_check(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let ends = match after(bytes, end) {
        Some(b'.') => after(bytes, end + 1).is_none_or(|n| !n.is_ascii_digit()),
        Some(b) => !is_word(b),
        None => true,
    };
    (before(bytes, start).is_none_or(|b| b != b'.' && b != b'-') && ends).then_some((start, end))
}
