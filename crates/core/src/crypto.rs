//! Secrets at rest (EN-2): AES-256-GCM under a key-encryption key (KEK) that lives outside the
//! database. Each ciphertext names the KEK version that sealed it, so that keys can rotate
//! while old ciphertexts still open, and is bound by associated data to the record it belongs
//! to: moved to another record or org, it no longer opens.
//!
//! Layout: `b"pc1" || kek version (u32, big-endian) || nonce (12 bytes) || ciphertext+tag`.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use crate::token::{RandomnessUnavailable, random_bytes};

const MAGIC: &[u8; 3] = b"pc1";
const HEADER_LEN: usize = 3 + 4 + 12;

/// The key-encryption keys this process holds: one to seal with, all to open with.
#[derive(Clone)]
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, Key<Aes256Gcm>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a key does not load, or a secret does not seal or open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key that is not 32 bytes (AES-256).
    #[error("a key-encryption key must be 32 bytes")]
    BadKeyLength,
    /// A version the keyring holds no key for: the current one, or the one a ciphertext names.
    #[error("the keyring has no key version {0}")]
    UnknownVersion(u32),
    /// The ciphertext is malformed, altered or bound to another context: AES-GCM cannot tell which.
    #[error("ciphertext is malformed, altered, or bound to another record")]
    Unsealable,
    /// The operating system's random number generator failed, so no nonce or key was drawn.
    #[error("randomness unavailable")]
    Randomness,
}

impl From<RandomnessUnavailable> for CryptoError {
    fn from(_: RandomnessUnavailable) -> Self {
        Self::Randomness
    }
}

impl Keyring {
    /// A keyring that seals with `current`; `keys` holds every version still to be opened.
    pub fn new(current: u32, keys: Vec<(u32, Vec<u8>)>) -> Result<Self, CryptoError> {
        let mut map = BTreeMap::new();
        for (version, bytes) in keys {
            if bytes.len() != 32 {
                return Err(CryptoError::BadKeyLength);
            }
            map.insert(version, *Key::<Aes256Gcm>::from_slice(&bytes));
        }
        if !map.contains_key(&current) {
            return Err(CryptoError::UnknownVersion(current));
        }
        Ok(Self { current, keys: map })
    }

    /// A keyring with one fresh random key: for tests and demos.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = vec![0u8; 32];
        random_bytes(&mut bytes)?;
        Self::new(1, vec![(1, bytes)])
    }

    /// The version new seals are made with, and what key rotation compares old ones against.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Encrypts `plaintext` under the current key, bound to `context` (e.g. `totp:<user id>`).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .keys
            .get(&self.current)
            .ok_or(CryptoError::UnknownVersion(self.current))?;
        let mut nonce = [0u8; 12];
        random_bytes(&mut nonce)?;
        let mut header = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&self.current.to_be_bytes());
        header.extend_from_slice(&nonce);
        let aad = associated_data(&header[..7], context);
        let sealed = Aes256Gcm::new(key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unsealable)?;
        header.extend_from_slice(&sealed);
        Ok(header)
    }

    /// Decrypts what `seal` produced with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < HEADER_LEN + 16 || &sealed[..3] != MAGIC {
            return Err(CryptoError::Unsealable);
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&sealed[3..7]);
        let version = u32::from_be_bytes(version);
        let key = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownVersion(version))?;
        let aad = associated_data(&sealed[..7], context);
        Aes256Gcm::new(key)
            .decrypt(
                Nonce::from_slice(&sealed[7..HEADER_LEN]),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unsealable)
    }
}

/// The version of the key that sealed `sealed`, read from its header: what key rotation
/// compares with the current version.
pub fn sealed_version(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER_LEN || &sealed[..3] != MAGIC {
        return None;
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&sealed[3..7]);
    Some(u32::from_be_bytes(version))
}

const DATA_MAGIC: &[u8; 3] = b"pd1";
const DATA_HEADER_LEN: usize = 3 + 12;

/// A data key (DEK): one per org, AES-256-GCM. It seals that org's secrets (provider keys) and
/// is stored only wrapped by the keyring, so that rotating the key-encryption key re-wraps a
/// few data keys instead of re-encrypting every secret.
#[derive(Clone)]
pub struct DataKey(Key<Aes256Gcm>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random data key, made when an org stores its first secret.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes)?;
        Ok(Self(*Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    /// Seals the data key under the keyring's current key, bound to `context` (its org and id).
    pub fn wrap(&self, ring: &Keyring, context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        ring.seal(self.0.as_slice(), context)
    }

    /// Opens a data key that `wrap` sealed, with the same `context`; refused if it is not 32 bytes.
    pub fn unwrap(ring: &Keyring, wrapped: &[u8], context: &[u8]) -> Result<Self, CryptoError> {
        let bytes = ring.open(wrapped, context)?;
        if bytes.len() != 32 {
            return Err(CryptoError::Unsealable);
        }
        Ok(Self(*Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    /// Layout: `b"pd1" || nonce (12 bytes) || ciphertext+tag`, bound to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; 12];
        random_bytes(&mut nonce)?;
        let mut out = Vec::with_capacity(DATA_HEADER_LEN + plaintext.len() + 16);
        out.extend_from_slice(DATA_MAGIC);
        out.extend_from_slice(&nonce);
        let aad = associated_data(DATA_MAGIC, context);
        let sealed = Aes256Gcm::new(&self.0)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unsealable)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what `seal` produced with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < DATA_HEADER_LEN + 16 || &sealed[..3] != DATA_MAGIC {
            return Err(CryptoError::Unsealable);
        }
        let aad = associated_data(DATA_MAGIC, context);
        Aes256Gcm::new(&self.0)
            .decrypt(
                Nonce::from_slice(&sealed[3..DATA_HEADER_LEN]),
                Payload {
                    msg: &sealed[DATA_HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unsealable)
    }
}

/// The header is authenticated too, so that the version cannot be swapped.
fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn en_2_sealed_secrets_open_only_in_their_context() {
        let ring = Keyring::generate().unwrap();
        let sealed = ring.seal(b"JBSWY3DPEHPK3PXP", b"totp:user-1").unwrap();
        assert!(!sealed.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(
            ring.open(&sealed, b"totp:user-1").unwrap(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert_eq!(
            ring.open(&sealed, b"totp:user-2"),
            Err(CryptoError::Unsealable)
        );
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            ring.open(&altered, b"totp:user-1"),
            Err(CryptoError::Unsealable)
        );
    }

    #[test]
    fn en_2_old_versions_still_open_after_rotation() {
        let old = vec![7u8; 32];
        let new = vec![9u8; 32];
        let before = Keyring::new(1, vec![(1, old.clone())]).unwrap();
        let sealed = before.seal(b"seed", b"ctx").unwrap();
        let after = Keyring::new(2, vec![(1, old), (2, new)]).unwrap();
        assert_eq!(after.open(&sealed, b"ctx").unwrap(), b"seed");
        let resealed = after.seal(b"seed", b"ctx").unwrap();
        assert_eq!(resealed[3..7], 2u32.to_be_bytes());
        assert_eq!(
            before.open(&resealed, b"ctx"),
            Err(CryptoError::UnknownVersion(2))
        );
    }

    #[test]
    fn en_2_data_keys_survive_a_rewrap_and_bind_their_secrets() {
        let old = Keyring::new(1, vec![(1, vec![1; 32])]).unwrap();
        let dek = DataKey::generate().unwrap();
        let wrapped = dek.wrap(&old, b"dek:org-a").unwrap();
        assert_eq!(sealed_version(&wrapped), Some(1));
        let secret = dek.seal(b"sk-provider-key", b"credential:org-a:1").unwrap();

        let both = Keyring::new(2, vec![(1, vec![1; 32]), (2, vec![2; 32])]).unwrap();
        let rewrapped = DataKey::unwrap(&both, &wrapped, b"dek:org-a")
            .unwrap()
            .wrap(&both, b"dek:org-a")
            .unwrap();
        assert_eq!(sealed_version(&rewrapped), Some(2));
        let retired = Keyring::new(2, vec![(2, vec![2; 32])]).unwrap();
        let reopened = DataKey::unwrap(&retired, &rewrapped, b"dek:org-a").unwrap();
        assert_eq!(
            reopened.open(&secret, b"credential:org-a:1").unwrap(),
            b"sk-provider-key"
        );
        assert_eq!(
            reopened.open(&secret, b"credential:org-b:1"),
            Err(CryptoError::Unsealable)
        );
        assert!(DataKey::unwrap(&retired, &wrapped, b"dek:org-a").is_err());
        assert!(DataKey::unwrap(&old, &wrapped, b"dek:org-b").is_err());
    }

    #[test]
    fn keyrings_refuse_bad_keys_and_never_print_them() {
        assert_eq!(
            Keyring::new(1, vec![(1, vec![0; 16])]).err(),
            Some(CryptoError::BadKeyLength)
        );
        assert_eq!(
            Keyring::new(2, vec![(1, vec![0; 32])]).err(),
            Some(CryptoError::UnknownVersion(2))
        );
        let ring = Keyring::new(1, vec![(1, vec![0xAB; 32])]).unwrap();
        assert!(!format!("{ring:?}").to_lowercase().contains("abab"));
    }
}
