//! Passwords and recovery codes: argon2id, in PHC strings that carry their own parameters.
//! Verification is slow on purpose (tens of milliseconds): run it off the async threads.

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::token::{RandomnessUnavailable, random_bytes};

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longer inputs are refused before hashing, so that nobody can make us hash megabytes.
pub const MAX_PASSWORD_LEN: usize = 256;
/// A stored hash asking for more memory than this (KiB) never matches.
const MAX_MEMORY_KIB: u32 = 64 * 1024;

fn params() -> Params {
    // OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane.
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

thread_local! {
    /// Each thread's argon2 memory, kept between checks. Allocating 19 MiB per check and
    /// freeing it lets the allocator keep every freed block (it raises its mmap threshold),
    /// so concurrent logins grew the process by 19 MiB each (AV-4). A thread that hashes keeps
    /// one block set; the gateway hashes on a few threads of its own.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 into `out` with this thread's memory.
fn compute(argon2: &Argon2<'_>, blocks: usize, secret: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2
            .hash_password_into_with_memory(secret, salt, out, &mut memory[..blocks])
            .is_ok()
    })
}

/// Hashes a secret with a fresh random salt.
pub fn hash(secret: &str) -> Result<String, RandomnessUnavailable> {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let params = params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    if !compute(
        &argon2,
        params.block_count(),
        secret.as_bytes(),
        &salt,
        &mut out,
    ) {
        return Err(RandomnessUnavailable);
    }
    let salt = SaltString::encode_b64(&salt).map_err(|_| RandomnessUnavailable)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| RandomnessUnavailable)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| RandomnessUnavailable)?),
    };
    Ok(hash.to_string())
}

/// Whether `secret` matches a stored PHC string. A malformed stored hash never matches.
pub fn verify(secret: &str, stored: &str) -> bool {
    if secret.len() > MAX_PASSWORD_LEN {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| matches(secret.as_bytes(), &parsed))
}

fn matches(secret: &[u8], stored: &PasswordHash<'_>) -> bool {
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(stored.algorithm),
        Params::try_from(stored),
        stored.salt,
        stored.hash,
    ) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    if params.m_cost() > MAX_MEMORY_KIB {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    // Output's equality is constant-time.
    compute(&argon2, blocks, secret, salt, &mut out)
        && Output::new(&out).is_ok_and(|actual| actual == expected)
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
    /// Fewer than [`MIN_PASSWORD_LEN`] characters.
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    /// More than [`MAX_PASSWORD_LEN`] bytes: refused before any hashing.
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

/// Checks a new password's length: the only rule a new password must meet.
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
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash("correct horse battery").unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(
                b"correct horse battery",
                &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
            )
            .unwrap()
            .to_string();
        assert!(verify("correct horse battery", &theirs));
        assert!(!verify("correct horse batterz", &theirs));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn a_stored_hash_asking_for_too_much_memory_never_matches() {
        let greedy = "$argon2id$v=19$m=1048576,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$pL1ytWuq4r1N6lOKx9SvQlrR0ySbHqpTsrSRVsE5Kmo";
        assert!(!verify("anything at all", greedy));
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
