//! TLS settings in the configuration: a listener's certificates
//! (`[[listener]] tls`) and an upstream group's (`tls_ca`, `tls_client_cert`,
//! `tls_client_key`, `tls_server_name`), turned into the library's
//! [`ServerTls`] and [`ClientTls`]. Files are read when the configuration
//! is checked (start, `check`, reload) and again when it is served.

use std::path::PathBuf;

use drainpipe::tls::{CertKey, ClientTls, ServerTls};
use serde::Deserialize;

/// A listener's certificates: one `{ cert, key }` table, or an array of them
/// (the first is the default, the others are chosen by SNI).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListenerTls {
    /// One certificate.
    One(CertKeyConf),
    /// Several, chosen by the name the client asks for.
    Many(Vec<CertKeyConf>),
}

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertKeyConf {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl ListenerTls {
    /// Reads the certificates; the error names the file.
    pub fn server_tls(&self) -> Result<ServerTls, String> {
        let pairs: Vec<CertKey> = match self {
            ListenerTls::One(c) => vec![c.pair()],
            ListenerTls::Many(cs) => cs.iter().map(CertKeyConf::pair).collect(),
        };
        ServerTls::from_files(&pairs).map_err(|e| e.to_string())
    }

    /// `--tls-cert FILE --tls-key FILE`, when given.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<ListenerTls>, String> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(ListenerTls::One(CertKeyConf { cert, key }))),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert: needs --tls-key too".into()),
            (None, Some(_)) => Err("--tls-key: needs --tls-cert too".into()),
        }
    }
}

impl CertKeyConf {
    fn pair(&self) -> CertKey {
        CertKey {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// An upstream group's TLS settings (for its `https://` servers).
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls<'a> {
    /// Trusted roots instead of the system's.
    pub ca: Option<&'a PathBuf>,
    /// A client certificate and its key.
    pub client_cert: Option<&'a PathBuf>,
    /// The key of `client_cert`.
    pub client_key: Option<&'a PathBuf>,
    /// The name sent as SNI and verified.
    pub server_name: Option<&'a str>,
}

impl UpstreamTls<'_> {
    /// The client TLS configuration, `None` when nothing is set (the
    /// system's roots, shared by every group). The error is the key at
    /// fault (`tls_ca`) and what is wrong.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, (&'static str, String)> {
        if self.ca.is_none()
            && self.client_cert.is_none()
            && self.client_key.is_none()
            && self.server_name.is_none()
        {
            return Ok(None);
        }
        let mut builder = ClientTls::builder();
        if let Some(ca) = self.ca {
            builder = builder.ca_file(ca);
        }
        match (self.client_cert, self.client_key) {
            (Some(cert), Some(key)) => builder = builder.client_auth_files(cert, key),
            (None, None) => {}
            (Some(_), None) => return Err(("tls_client_cert", "needs tls_client_key too".into())),
            (None, Some(_)) => return Err(("tls_client_key", "needs tls_client_cert too".into())),
        }
        let key = if self.ca.is_some() {
            "tls_ca"
        } else {
            "tls_client_cert"
        };
        let mut tls = builder.build().map_err(|e| (key, e.to_string()))?;
        if let Some(name) = self.server_name {
            tls = tls
                .with_server_name(name)
                .map_err(|e| ("tls_server_name", e.to_string()))?;
        }
        Ok(Some(tls))
    }
}
