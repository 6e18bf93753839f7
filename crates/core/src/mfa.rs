//! Second factors (AC-4): TOTP (RFC 6238: SHA-1, 6 digits, 30 s) and single-use recovery codes.

use totp_rs::{Algorithm, TOTP};

use crate::token::{RandomnessUnavailable, random_bytes};

const STEP_SECS: u64 = 30;
const ISSUER: &str = "Portcullis";
/// Codes one step early or late are accepted, for clocks that drift.
const SKEW_STEPS: u64 = 1;

/// A TOTP generator/verifier for one secret.
pub struct Totp {
    inner: TOTP,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp(..)")
    }
}

/// A TOTP secret that does not decode or is too short to use.
#[derive(Debug, thiserror::Error)]
#[error("invalid TOTP secret or account name")]
pub struct InvalidTotp;

impl Totp {
    /// A fresh 160-bit secret.
    pub fn generate_secret() -> Result<Vec<u8>, RandomnessUnavailable> {
        let mut secret = vec![0u8; 20];
        random_bytes(&mut secret)?;
        Ok(secret)
    }

    /// `account` names the person in their authenticator app (their email).
    pub fn new(secret: Vec<u8>, account: &str) -> Result<Self, InvalidTotp> {
        let account = account.replace(':', "_");
        TOTP::new(
            Algorithm::SHA1,
            6,
            0,
            STEP_SECS,
            secret,
            Some(ISSUER.to_owned()),
            account,
        )
        .map(|inner| Self { inner })
        .map_err(|_| InvalidTotp)
    }

    /// From the base32 secret that enrolment shows (what an authenticator app stores).
    pub fn from_base32(secret: &str, account: &str) -> Result<Self, InvalidTotp> {
        let bytes = totp_rs::Secret::Encoded(secret.to_owned())
            .to_bytes()
            .map_err(|_| InvalidTotp)?;
        Self::new(bytes, account)
    }

    /// The secret in base32, as authenticator apps take it by hand.
    pub fn secret_base32(&self) -> String {
        self.inner.get_secret_base32()
    }

    /// The `otpauth://` URI for a QR code.
    pub fn uri(&self) -> String {
        self.inner.get_url()
    }

    /// The code for a moment (tests and tools).
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.inner.generate(unix_secs)
    }

    /// The time step a code belongs to, if it is valid now (within one step of drift). The
    /// caller refuses a step at or before the last one used, so that a code works only once.
    pub fn matching_step(&self, code: &str, unix_secs: u64) -> Option<u64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now_step = unix_secs / STEP_SECS;
        (now_step.saturating_sub(SKEW_STEPS)..=now_step + SKEW_STEPS)
            .find(|step| self.inner.check(code, step * STEP_SECS))
    }
}

/// Characters for codes a person types, without the look-alikes 0/O and 1/I. Exactly 32, so
/// that a random byte maps onto them without bias.
const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// How many recovery codes a person gets.
pub const RECOVERY_CODES: usize = 10;

/// A recovery code: `LOOKUP-SECRET`. The 4-character lookup finds the stored row without
/// trying every hash; the 12-character secret (60 bits) is what the argon2id hash protects.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode {
    /// Four characters that find the stored row; not secret.
    pub lookup: String,
    /// Twelve characters (60 bits) that only the stored argon2id hash can confirm.
    pub secret: String,
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCode({}-…)", self.lookup)
    }
}

impl RecoveryCode {
    /// A fresh random code, in characters without look-alikes.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let mut bytes = [0u8; 16];
        random_bytes(&mut bytes)?;
        let text: String = bytes
            .iter()
            .map(|b| char::from(CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()]))
            .collect();
        Ok(Self {
            lookup: text[..4].to_owned(),
            secret: text[4..].to_owned(),
        })
    }

    /// As shown to the person, once.
    pub fn display(&self) -> String {
        format!("{}-{}", self.lookup, self.secret)
    }

    /// Parses what a person typed: case and dashes do not matter.
    pub fn parse(text: &str) -> Option<Self> {
        let cleaned: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if cleaned.len() != 16 || !cleaned.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
            return None;
        }
        Some(Self {
            lookup: cleaned[..4].to_owned(),
            secret: cleaned[4..].to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ac_4_a_current_code_matches_its_step_and_drift_is_bounded() {
        let totp = Totp::new(Totp::generate_secret().unwrap(), "ana@example.com").unwrap();
        let now = 1_800_000_000;
        let code = totp.code_at(now);
        assert_eq!(totp.matching_step(&code, now), Some(now / 30));
        assert_eq!(totp.matching_step(&code, now + 30), Some(now / 30));
        assert_eq!(totp.matching_step(&code, now + 90), None);
        assert_eq!(totp.matching_step("12345", now), None);
        assert_eq!(totp.matching_step("abcdef", now), None);
        assert!(totp.uri().starts_with("otpauth://totp/Portcullis:"));
        let again = Totp::from_base32(&totp.secret_base32(), "ana@example.com").unwrap();
        assert_eq!(again.code_at(now), code);
    }

    #[test]
    fn ac_4_recovery_codes_parse_back_from_what_a_person_types() {
        let code = RecoveryCode::generate().unwrap();
        let shown = code.display();
        assert_eq!(RecoveryCode::parse(&shown), Some(code.clone()));
        assert_eq!(
            RecoveryCode::parse(&shown.to_lowercase()),
            Some(code.clone())
        );
        assert_eq!(RecoveryCode::parse("short"), None);
        assert!(!format!("{code:?}").contains(&code.secret));
    }
}
