//! The keyring's canary (EN-2, AV-4): before `serve` answers anything it opens a value sealed
//! with the key-encryption keyring, written by the first `bootstrap` or `serve`, and it does not
//! start if the value does not open. A replica with the wrong key would otherwise answer
//! `/readyz` 200 and wrap new orgs' data keys so that no correct replica could open them.

use anyhow::{Context, bail};
use portcullis_core::crypto::{Keyring, sealed_version};
use portcullis_storage::Db;
use portcullis_storage::platform;

const CANARY: &[u8] = b"portcullis keyring canary";
/// Bound to its purpose: no other sealed value of the gateway opens as the canary.
const CONTEXT: &[u8] = b"portcullis/keyring-canary";

/// Opens the database's canary with `ring`, writing one sealed by it when there is none.
pub async fn check(db: &Db, ring: &Keyring) -> anyhow::Result<()> {
    let mine = ring
        .seal(CANARY, CONTEXT)
        .context("sealing the keyring canary")?;
    let stored = platform::keyring_canary(db, &mine)
        .await
        .context("reading the keyring canary")?;
    open(ring, &stored)
}

/// `kek rotate`: the canary sealed anew with the current key, once the old one opened it.
pub async fn reseal(db: &Db, ring: &Keyring) -> anyhow::Result<()> {
    let mine = ring
        .seal(CANARY, CONTEXT)
        .context("sealing the keyring canary")?;
    let stored = platform::keyring_canary(db, &mine)
        .await
        .context("reading the keyring canary")?;
    open(ring, &stored)?;
    if stored != mine && !platform::reseal_keyring_canary(db, &stored, &mine).await? {
        bail!("the keyring canary changed while it was re-sealed: run `kek rotate` again");
    }
    Ok(())
}

fn open(ring: &Keyring, stored: &[u8]) -> anyhow::Result<()> {
    match ring.open(stored, CONTEXT) {
        Ok(plain) if plain == CANARY => Ok(()),
        _ => {
            let version = sealed_version(stored).map_or_else(
                || "an unknown version".to_owned(),
                |v| format!("version {v}"),
            );
            bail!(
                "the configured key-encryption keyring does not open this database's canary, \
                 sealed with key {version}: it is not the keyring this database's data keys \
                 were wrapped with. Check secrets.kek, secrets.kek_version and \
                 secrets.previous_keks; nothing was served"
            )
        }
    }
}
