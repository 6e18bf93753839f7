//! The one error type at storage's boundary.

/// What can go wrong in storage. Callers map these to API errors; the cause of `Database` is
/// logged by the gateway once and never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The row does not exist, or belongs to another org: the two are not distinguished.
    #[error("not found")]
    NotFound,
    /// A named uniqueness or state rule was broken.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A value broke a check constraint (named): the caller's input was out of range.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The runtime role has privileges it must not have; the gateway refuses to serve.
    #[error("unsafe database role: {0}")]
    UnsafeRole(String),
    /// PostgreSQL cannot be reached or no connection is free: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A secret could not be sealed or opened: a wrong or retired key-encryption key, or a
    /// ciphertext moved to a record it was not sealed for.
    #[error("secret could not be sealed or opened: {0}")]
    Crypto(portcullis_core::crypto::CryptoError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("audit chain broken in org {org_id}: {cause}")]
    AuditChain {
        org_id: portcullis_core::OrgId,
        cause: portcullis_core::audit::ChainBreak,
    },
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error)
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // Connection trouble (08), a server shutting down or starting (57), a
                // serialization failure or deadlock (40), out of resources (53): retry later.
                Some(code)
                    if ["08", "57", "40", "53"]
                        .iter()
                        .any(|class| code.starts_with(class)) =>
                {
                    Self::Unavailable(error)
                }
                // Text PostgreSQL cannot hold (a NUL character): the caller's input.
                Some("22021" | "22P05") => {
                    Self::Invalid("text with a character PostgreSQL cannot store".to_owned())
                }
                _ => Self::Database(error),
            },
            _ => Self::Database(error),
        }
    }
}

impl StorageError {
    /// A refusal by row-level security (SQLSTATE 42501) on an insert into another org is, to
    /// a client, the same as that org's row not existing.
    pub(crate) fn from_write(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => Self::NotFound,
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23514") => {
                Self::Invalid(db.constraint().unwrap_or("check").to_owned())
            }
            _ => Self::from(error),
        }
    }

    /// Maps a violation of the named foreign key to `NotFound`: the referenced row is absent
    /// or belongs to another org, and the two must look alike (CF-1).
    pub(crate) fn on_foreign_key(constraint: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some(constraint) => Self::NotFound,
            _ => Self::from_write(error),
        }
    }

    /// Maps a violation of the named unique constraint to `Conflict`, anything else as a
    /// write error.
    pub(crate) fn on_constraint(
        constraint: &'static str,
        message: &'static str,
    ) -> impl Fn(sqlx::Error) -> Self {
        move |error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some(constraint) => {
                Self::Conflict(message)
            }
            _ => Self::from_write(error),
        }
    }
}

/// A change that must touch a row: none touched means the row is absent, or another org's.
pub(crate) fn expect_row(done: sqlx::postgres::PgQueryResult) -> Result<(), StorageError> {
    if done.rows_affected() == 0 {
        Err(StorageError::NotFound)
    } else {
        Ok(())
    }
}
