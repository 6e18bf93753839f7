//! The keyring's canaries (EN-2, AV-4): before `serve` answers anything it opens, with each key
//! version its keyring holds, the value sealed by the first process that used that version,
//! and it does not start if one does not open. A replica with the wrong key (or a wrong key
//! under a version the others use) would otherwise answer `/readyz` 200 and wrap new orgs' data
//! keys so that no correct replica could open them. A version no longer in the keyring (a
//! retired key) is not asked for.

use anyhow::{Context, bail};
use portcullis_core::crypto::Keyring;
use portcullis_storage::Db;
use portcullis_storage::platform;

const CANARY: &[u8] = b"portcullis keyring canary";
/// Bound to its purpose: no other sealed value of the gateway opens as the canary.
const CONTEXT: &[u8] = b"portcullis/keyring-canary";

/// Opens every canary of a version `ring` holds, writing the current version's when it has
/// none.
pub async fn check(db: &Db, ring: &Keyring) -> anyhow::Result<()> {
    let mine = ring
        .seal(CANARY, CONTEXT)
        .context("sealing the keyring canary")?;
    let canaries = platform::keyring_canaries(db, ring.current_version(), &mine)
        .await
        .context("reading the keyring canaries")?;
    for (version, sealed) in &canaries {
        match ring.open(sealed, CONTEXT) {
            Ok(plain) if plain == CANARY => {}
            Err(portcullis_core::crypto::CryptoError::UnknownVersion(_)) => {}
            _ => bail!(
                "the configured key-encryption keyring does not open this database's canary \
                 for key version {version}: the key configured as version {version} is not the \
                 one this database's data was sealed with. Check secrets.kek, \
                 secrets.kek_version and secrets.previous_keks; nothing was served"
            ),
        }
    }
    Ok(())
}
