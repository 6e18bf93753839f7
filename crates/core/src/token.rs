//! Credential formats (AC-5): a kind prefix, 32 random bytes in base62, and a CRC32 checksum
//! in base62, as GitHub's tokens do. A scanner recognises a leaked Portcullis secret offline,
//! and the gateway refuses a malformed one before any database work. Tokens are stored only
//! as their SHA-256: they carry 256 bits of entropy, so a slow hash would add nothing but cost.

use std::fmt;

use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 62^43 > 2^256: 43 digits hold any 32 bytes.
const BODY_LEN: usize = 43;
/// 62^6 > 2^32: 6 digits hold any CRC32.
const CHECK_LEN: usize = 6;

/// What a credential is for. The prefix says it, so that a key of the wrong kind is refused
/// with `wrong_key_kind` before any look-up (AC-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Data plane traffic: `pcv_`.
    Virtual,
    /// Platform administration: `pcm_`.
    Master,
    /// A person's login: `pcs_`.
    Session,
    /// The second step of a login with MFA: `pcc_`.
    MfaChallenge,
    /// An invitation to set a password: `pci_`.
    Invite,
}

impl TokenKind {
    /// Every kind, in one place, so that `Token::parse` tries every prefix.
    pub const ALL: [TokenKind; 5] = [
        TokenKind::Virtual,
        TokenKind::Master,
        TokenKind::Session,
        TokenKind::MfaChallenge,
        TokenKind::Invite,
    ];

    /// The four characters that begin a credential of this kind.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Virtual => "pcv_",
            TokenKind::Master => "pcm_",
            TokenKind::Session => "pcs_",
            TokenKind::MfaChallenge => "pcc_",
            TokenKind::Invite => "pci_",
        }
    }
}

/// A secret credential. `Debug` shows only its kind and last four characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    kind: TokenKind,
    text: String,
}

/// The SHA-256 of a token: what the database stores and looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

/// Why a string is not a Portcullis credential; found without any database work.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    /// It starts with none of the kinds' prefixes.
    #[error("not a Portcullis credential")]
    UnknownPrefix,
    /// After the prefix, not exactly 49 base62 characters.
    #[error("credential has the wrong length or characters")]
    BadShape,
    /// The CRC32 does not match the rest: mistyped, cut short or made up.
    #[error("credential checksum does not match")]
    BadChecksum,
}

/// The operating system's random number generator failed: an error, never a weaker source.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomnessUnavailable;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomnessUnavailable> {
    getrandom::getrandom(buf).map_err(|_| RandomnessUnavailable)
}

impl Token {
    /// A new random token of this kind.
    pub fn generate(kind: TokenKind) -> Result<Self, RandomnessUnavailable> {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes)?;
        Ok(Self::from_bytes(kind, &bytes))
    }

    fn from_bytes(kind: TokenKind, bytes: &[u8; 32]) -> Self {
        let mut text = String::with_capacity(4 + BODY_LEN + CHECK_LEN);
        text.push_str(kind.prefix());
        push_base62(&mut text, bytes, BODY_LEN);
        let checksum = crc32fast::hash(text.as_bytes());
        push_base62(&mut text, &checksum.to_be_bytes(), CHECK_LEN);
        Self { kind, text }
    }

    /// Checks prefix, shape and checksum: no database work for a malformed credential.
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        let kind = TokenKind::ALL
            .into_iter()
            .find(|kind| text.starts_with(kind.prefix()))
            .ok_or(MalformedToken::UnknownPrefix)?;
        let rest = &text[kind.prefix().len()..];
        if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedToken::BadShape);
        }
        let (signed, check) = text.split_at(text.len() - CHECK_LEN);
        let mut expected = String::with_capacity(CHECK_LEN);
        push_base62(
            &mut expected,
            &crc32fast::hash(signed.as_bytes()).to_be_bytes(),
            CHECK_LEN,
        );
        if expected != check {
            return Err(MalformedToken::BadChecksum);
        }
        Ok(Self {
            kind,
            text: text.to_owned(),
        })
    }

    /// What the credential is for, as its prefix says.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The secret itself: to be shown once, at creation or rotation, and never logged.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The last four characters: what listings show afterwards.
    pub fn last4(&self) -> String {
        self.text[self.text.len() - 4..].to_owned()
    }

    /// The SHA-256 of the whole text: what the database keeps and looks up instead of the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.text.as_bytes()).into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…{})", self.kind.prefix(), self.last4())
    }
}

/// Appends `bytes` (big-endian) as exactly `width` base62 digits.
fn push_base62(out: &mut String, bytes: &[u8], width: usize) {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    out.extend(digits.into_iter().map(char::from));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ac_2_generated_tokens_parse_and_carry_their_kind() {
        for kind in TokenKind::ALL {
            let token = Token::generate(kind).unwrap();
            assert!(token.expose().starts_with(kind.prefix()));
            assert_eq!(token.expose().len(), 4 + BODY_LEN + CHECK_LEN);
            assert_eq!(Token::parse(token.expose()).unwrap().kind(), kind);
        }
    }

    #[test]
    fn ac_5_debug_shows_only_the_last_four_characters() {
        let token = Token::generate(TokenKind::Virtual).unwrap();
        let shown = format!("{token:?}");
        assert!(shown.ends_with(&format!("{})", token.last4())));
        assert!(!shown.contains(&token.expose()[4..20]));
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_lookup() {
        let token = Token::generate(TokenKind::Master).unwrap();
        let text = token.expose();
        assert_eq!(Token::parse("sk-abc"), Err(MalformedToken::UnknownPrefix));
        assert_eq!(Token::parse("pcm_short"), Err(MalformedToken::BadShape));
        let mut flipped = text.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(Token::parse(&flipped), Err(MalformedToken::BadChecksum));
        // Another kind's prefix breaks the checksum too: kinds cannot be swapped.
        let swapped = format!("pcv_{}", &text[4..]);
        assert_eq!(Token::parse(&swapped), Err(MalformedToken::BadChecksum));
    }

    #[test]
    fn base62_is_fixed_width_and_big_endian() {
        let mut out = String::new();
        push_base62(&mut out, &[0, 0, 0, 61], 3);
        assert_eq!(out, "00z");
        out.clear();
        push_base62(&mut out, &[0, 0, 0, 62], 3);
        assert_eq!(out, "010");
        out.clear();
        push_base62(&mut out, &[0xff; 32], BODY_LEN);
        assert_eq!(out.len(), BODY_LEN);
    }

    proptest! {
        #[test]
        fn ac_5_any_token_round_trips_and_hashes_stably(bytes in proptest::array::uniform32(any::<u8>())) {
            let token = Token::from_bytes(TokenKind::Session, &bytes);
            let parsed = Token::parse(token.expose()).unwrap();
            prop_assert_eq!(parsed.hash(), token.hash());
        }
    }
}
