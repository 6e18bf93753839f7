//! TLS for the listener (EN-1): rustls with the certificate chain and key from PEM files,
//! HTTP/2 and HTTP/1.1 offered by ALPN, TLS 1.2 and 1.3 only. The files are watched and a
//! changed pair is loaded for new connections without a restart; a pair that does not load
//! leaves the current one in place (and says so in the log).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// Where the certificate chain and its private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The listener's TLS: an acceptor whose certificate can be swapped while it serves.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.current.files)
            .finish_non_exhaustive()
    }
}

/// The certificate in use, and the files' modification times it was loaded from.
#[derive(Debug)]
struct Current {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    key: RwLock<Arc<CertifiedKey>>,
    loaded: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = self.key.read().unwrap_or_else(|p| p.into_inner());
        Some(Arc::clone(&key))
    }
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| TlsError(format!("{}: {e}", files.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", files.cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate in it",
            files.cert.display()
        )));
    }
    // The key's own error would not name its contents; only the path is said.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|_| TlsError(format!("{}: no private key in it", files.key.display())))?;
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| TlsError(format!("the key does not fit the certificate: {e}")))?;
    Ok(key)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// Loads the pair, failing now (before a port is bound) if it does not load.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(&files, &provider)?;
        let current = Arc::new(Current {
            loaded: Mutex::new(modified(&files.cert).zip(modified(&files.key))),
            files,
            provider: Arc::clone(&provider),
            key: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
        }))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Loads the pair again if either file changed; `Ok(true)` when a new one is in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let files = &self.current.files;
        let stamp = modified(&files.cert).zip(modified(&files.key));
        let mut loaded = self
            .current
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if stamp.is_none() || stamp == *loaded {
            return Ok(false);
        }
        let key = load(files, &self.current.provider)?;
        *self.current.key.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        *loaded = stamp;
        Ok(true)
    }

    /// Looks for changed files every `every`, for as long as the process runs.
    pub fn spawn_reload(self: &Arc<Self>, background: &crate::Background, every: Duration) {
        let tls = Arc::downgrade(self);
        background.spawn_loop(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(tls) = tls.upgrade() else { return };
                match tls.reload_if_changed() {
                    Ok(true) => tracing::info!("TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, "TLS certificate changed but does not load; keeping the current one");
                    }
                }
            }
        });
    }
}
