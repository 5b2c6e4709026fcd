//! The error of a TLS configuration that cannot be built.

/// A TLS configuration that cannot be built: what is wrong, naming the file
/// at fault when there is one (`cert.pem: no certificate found`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }

    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {message}", path.display()))
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
