//! Certificates made by the tests (rcgen): a CA and leaf certificates it
//! signs, written as PEM files into a temporary directory. Shared with the
//! binary's tests (`#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SignatureAlgorithm};

/// Key types a leaf can have (RSA comes from `openssl genrsa`: ring cannot
/// generate RSA keys).
pub const ECDSA: &SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;
/// Ed25519 keys.
pub const ED25519: &SignatureAlgorithm = &rcgen::PKCS_ED25519;

/// A CA in a temporary directory (removed on drop) that signs leaves.
pub struct Ca {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate file (for `--cacert`, `--upstream-ca`).
    pub cert: PathBuf,
}

/// A leaf's files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The chain: the leaf, then the CA.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA, its files under a fresh temporary directory named after
    /// `name`.
    pub fn new(name: &str) -> Ca {
        let dir = std::env::temp_dir().join(format!(
            "drainpipe-tls-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("drainpipe test CA {name}"),
        );
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.join("ca.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        Ca {
            dir,
            issuer: Issuer::new(params, key),
            cert: cert_path,
        }
    }

    /// A leaf valid for `names`, with a key of `alg`, in files named after
    /// `file`.
    pub fn leaf(&self, file: &str, names: &[&str], alg: &'static SignatureAlgorithm) -> Leaf {
        let key = KeyPair::generate_for(alg).unwrap();
        self.leaf_with_key(file, names, key)
    }

    /// A leaf for `names` whose key is the PEM in `key_file` (made
    /// elsewhere, e.g. RSA by openssl).
    pub fn leaf_for_key_file(&self, file: &str, names: &[&str], key_file: &Path) -> Leaf {
        let pem = std::fs::read_to_string(key_file).unwrap();
        let key = KeyPair::from_pem(&pem).unwrap();
        self.leaf_with_key(file, names, key)
    }

    fn leaf_with_key(&self, file: &str, names: &[&str], key: KeyPair) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let ca_pem = std::fs::read_to_string(&self.cert).unwrap();
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_pem)).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            cert: cert_path,
            key: key_path,
        }
    }

    /// A file in the CA's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
