//! Instructions per TLS handshake and per small record, for one crypto
//! provider (chosen by feature), all in memory: `tls-provider handshakes N`
//! runs N full TLS 1.3 handshakes (ECDSA P-256 certificate, X25519), and
//! `tls-provider records N` sends N records of 64 bytes each way over one
//! connection. Run each under `valgrind --tool=callgrind` and divide the
//! instruction count by N (the one-time setup is measured by N = 0).

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

#[cfg(feature = "ring")]
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(feature = "aws-lc-rs")]
fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let provider = Arc::new(provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    // Full handshakes only: no session to resume.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    // The self-signed leaf (not a CA) is its own root.
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    (Arc::new(client), Arc::new(server))
}

/// Moves every pending TLS byte from one side to the other until both are
/// quiet.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(32 * 1024);
    loop {
        let mut moved = false;
        while client.wants_write() {
            buf.clear();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap();
            moved = true;
        }
        while server.wants_write() {
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn connect(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> (ClientConnection, ServerConnection) {
    let mut c = ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    pump(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "handshakes".into());
    let n: usize = args.next().map_or(1000, |n| n.parse().unwrap());
    let (client, server) = configs();
    match what.as_str() {
        "handshakes" => {
            for _ in 0..n {
                connect(&client, &server);
            }
        }
        "records" => {
            let (mut c, mut s) = connect(&client, &server);
            let payload = [b'x'; 64];
            let mut got = [0u8; 64];
            for _ in 0..n {
                c.writer().write_all(&payload).unwrap();
                pump(&mut c, &mut s);
                s.reader().read_exact(&mut got).unwrap();
                s.writer().write_all(&got).unwrap();
                pump(&mut c, &mut s);
                c.reader().read_exact(&mut got).unwrap();
            }
        }
        other => panic!("unknown {other}: handshakes | records"),
    }
}
