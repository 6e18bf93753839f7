//! Passwords and recovery codes: argon2id, in PHC strings that carry their own parameters.
//! Verification is slow on purpose (tens of milliseconds): run it off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::token::{RandomnessUnavailable, random_bytes};

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longer inputs are refused before hashing, so that nobody can make us hash megabytes.
pub const MAX_PASSWORD_LEN: usize = 256;

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a secret with a fresh random salt.
pub fn hash(secret: &str) -> Result<String, RandomnessUnavailable> {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| RandomnessUnavailable)?;
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| RandomnessUnavailable)
}

/// Whether `secret` matches a stored PHC string. A malformed stored hash never matches.
pub fn verify(secret: &str, stored: &str) -> bool {
    if secret.len() > MAX_PASSWORD_LEN {
        return false;
    }
    PasswordHash::new(stored)
        .is_ok_and(|parsed| argon2().verify_password(secret.as_bytes(), &parsed).is_ok())
}

/// Spends the time of one verification without a stored hash, so that a login for an unknown
/// email takes as long as one with a wrong password.
pub fn verify_nothing(secret: &str) {
    let _ = verify(secret, DUMMY_HASH);
}

/// A well-formed hash with our parameters that no password is known to match.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$pL1ytWuq4r1N6lOKx9SvQlrR0ySbHqpTsrSRVsE5Kmo";

/// Why a new password is refused. Never contains the password.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
}

pub fn check_new_password(password: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        Err(WeakPassword::TooShort)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(WeakPassword::TooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn the_timing_dummy_is_a_real_hash_so_it_costs_a_real_verification() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(
            hash("same password!").unwrap(),
            hash("same password!").unwrap()
        );
    }

    #[test]
    fn new_passwords_have_bounds() {
        assert_eq!(check_new_password("short"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_new_password(&"x".repeat(300)),
            Err(WeakPassword::TooLong)
        );
        assert!(check_new_password("long enough pass").is_ok());
    }
}
