//! Reading certificates and keys from PEM files, each error naming the file.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::ConfigError;

/// Reads `path` first, so a missing or unreadable file says so (the PEM
/// parser's own I/O errors name no file).
fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::file(path, e))
}

/// Every certificate in `path`, in order (a chain: the leaf first).
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| ConfigError::file(path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(ConfigError::file(path, "no certificate found"));
    }
    Ok(certs)
}

/// The private key in `path` (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => ConfigError::file(path, "no private key found"),
        e => ConfigError::file(path, format!("not a PEM private key file ({e})")),
    })
}
