//! TLS on every hop: a TLS listener (SNI, ALPN, resumption, the handshake
//! under the head timeout, close_notify), the client to `https://` origins
//! (verification, reuse, truncation without close_notify), the proxy
//! TLS → TLS, and real peers (curl, python3 ssl, openssl s_client).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use drainpipe::client::{Client, Origin};
use drainpipe::server::{Accept, Listen, Server};
use drainpipe::tls::{CertKey, ClientTls, ServerTls};
use http_body_util::BodyExt;
use support::certs::{Ca, Leaf, ECDSA, ED25519};
use support::peers::nginx_with;
use support::{eventually, peer, proxy_to, run_peer, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pair(leaf: &Leaf) -> CertKey {
    CertKey {
        cert: leaf.cert.clone(),
        key: leaf.key.clone(),
    }
}

/// The built-in origin behind TLS with `leaves` (the first is the default).
async fn tls_origin(leaves: &[&Leaf], builder: drainpipe::server::Builder) -> TestServer {
    let pairs: Vec<CertKey> = leaves.iter().map(|l| pair(l)).collect();
    let tls = ServerTls::from_files(&pairs).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    TestServer::start_on(
        tls.listen(listener),
        addr,
        builder,
        drainpipe::origin::Origin,
    )
}

/// A CA named `name`, a localhost certificate (ECDSA) it signs, and the
/// built-in origin serving TLS with it.
async fn localhost_origin(name: &str) -> (Ca, Leaf, TestServer) {
    let ca = Ca::new(name);
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let srv = tls_origin(&[&leaf], Server::builder()).await;
    (ca, leaf, srv)
}

fn trusting(ca: &Ca) -> ClientTls {
    ClientTls::builder().ca_file(&ca.cert).build().unwrap()
}

async fn get_text(client: &Client, url: &str) -> (http::response::Parts, String) {
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(http::Request::get(url).body(()).unwrap()),
    )
    .await
    .expect("answered in time")
    .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts, String::from_utf8_lossy(&body).into_owned())
}

// The client library fetches `https://` URLs with its own root store; a
// keep-alive TLS connection serves them all (the origin's `/conn` counts
// requests per connection).
#[tokio::test]
async fn client_reuses_one_tls_connection_for_https_urls() {
    let (ca, _, srv) = localhost_origin("reuse").await;
    let client = Client::builder().tls(trusting(&ca)).build();
    let url = format!("https://localhost:{}/conn", srv.addr.port());
    let mut ids = Vec::new();
    for n in 1..=3 {
        let (parts, body) = get_text(&client, &url).await;
        assert_eq!(parts.status, 200);
        let (id, request) = body.trim().split_once(' ').unwrap();
        assert_eq!(request, format!("request={n}"), "{body}");
        ids.push(id.to_string());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 1);
}

// Without the test CA the same server fails verification: an error, no
// response, and the system roots are what the default client trusts.
#[tokio::test]
async fn default_client_does_not_trust_an_unknown_ca() {
    let (_ca, _, srv) = localhost_origin("untrusted").await;
    let url = format!("https://localhost:{}/", srv.addr.port());
    let err = Client::new()
        .request(http::Request::get(&url).body(()).unwrap())
        .await
        .unwrap_err();
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(
        text.contains("UnknownIssuer") || text.contains("issuer"),
        "{text}"
    );
}

// SNI chooses among several certificates; a name none covers gets the
// first. ECDSA and Ed25519 keys both load.
#[tokio::test]
async fn sni_chooses_the_certificate() {
    let ca = Ca::new("sni");
    let a = ca.leaf("a", &["a.test"], ECDSA);
    let b = ca.leaf("b", &["b.test", "*.wild.test"], ED25519);
    let srv = tls_origin(&[&a, &b], Server::builder()).await;
    let tls = trusting(&ca);
    let leaf_der = |leaf: &Leaf| {
        let text = std::fs::read_to_string(&leaf.cert).unwrap();
        let b64: String = text
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----"))
            .collect();
        b64
    };
    for (name, want) in [
        ("a.test", &a),
        ("b.test", &b),
        ("x.wild.test", &b),
        ("a.test", &a),
    ] {
        let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let stream = tls.connect(name, tcp).await.unwrap();
        let session = stream.get_ref().1;
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        let presented = session.peer_certificates().unwrap()[0].to_vec();
        let want_b64 = leaf_der(want);
        let presented_b64 = base64_encode(&presented);
        assert_eq!(presented_b64, want_b64, "certificate for {name}");
    }
    // A name no certificate covers: the default (first) one, which then
    // fails verification for that name.
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    assert!(tls.connect("other.test", tcp).await.is_err());
}

fn base64_encode(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

// The second connection with the same client configuration resumes the
// session (no certificate exchange); the first one is a full handshake.
#[tokio::test]
async fn second_connection_resumes_the_session() {
    let (ca, _, srv) = localhost_origin("resume").await;
    let tls = trusting(&ca);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let mut stream = tls.connect("localhost", tcp).await.unwrap();
        // TLS 1.3 tickets come after the handshake: one exchange reads them.
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        assert!(response.ends_with(b"Hello, World!"));
        kinds.push(format!("{:?}", stream.get_ref().1.handshake_kind()));
    }
    assert_eq!(kinds, ["Some(Full)", "Some(Resumed)"]);
}

// A cleartext request on a TLS port: the connection closes without an HTTP
// answer, and a TLS client at the same time is served as usual.
#[tokio::test]
async fn cleartext_client_on_a_tls_port_is_closed_alone() {
    let (ca, _, srv) = localhost_origin("cleartext").await;
    let client = Client::builder().tls(trusting(&ca)).build();
    let url = format!("https://localhost:{}/", srv.addr.port());
    let (_, body) = get_text(&client, &url).await;
    assert_eq!(body, "Hello, World!");

    let mut raw = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the cleartext connection was closed");
    assert!(!got.starts_with(b"HTTP/"), "no HTTP answer in cleartext");

    // The kept-alive TLS connection is undisturbed.
    let (_, body) = get_text(
        &client,
        &format!("https://localhost:{}/conn", srv.addr.port()),
    )
    .await;
    assert!(body.trim().ends_with("request=2"), "{body}");
}

// A client that connects and never sends a ClientHello is closed when the
// head timeout runs out: the handshake counts against it.
#[tokio::test]
async fn the_head_timeout_bounds_the_handshake() {
    let ca = Ca::new("slow");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let srv = tls_origin(
        &[&leaf],
        Server::builder().head_timeout(Duration::from_millis(300)),
    )
    .await;
    let started = std::time::Instant::now();
    let mut raw = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    // Half a ClientHello record header, then nothing.
    raw.write_all(&[0x16, 0x03]).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut got))
        .await
        .expect("closed by the head timeout")
        .ok();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(got.is_empty() || !got.starts_with(b"HTTP/"), "{got:?}");
}

/// A TLS server that answers one close-delimited response and then closes,
/// with or without close_notify.
async fn close_delimited_server(ca: &Ca, close_notify: bool) -> SocketAddr {
    let leaf = ca.leaf("cd", &["localhost"], ECDSA);
    let tls = ServerTls::from_files(&[pair(&leaf)]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.listen(listener).into_acceptor().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = acceptor.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
            .await
            .unwrap();
        stream.flush().await.unwrap();
        if close_notify {
            stream.shutdown().await.unwrap();
        }
        // Dropped: without a shutdown, a FIN with no close_notify.
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    addr
}

// A close-delimited body that ends without close_notify could have been cut
// by anyone on the path: it is Truncated, never complete. With
// close_notify the same body is complete.
#[tokio::test]
async fn close_delimited_body_without_close_notify_is_truncated() {
    let ca = Ca::new("truncated");
    let client = Client::builder().tls(trusting(&ca)).build();

    let addr = close_delimited_server(&ca, true).await;
    let (_, body) = get_text(&client, &format!("https://localhost:{}/", addr.port())).await;
    assert_eq!(body, "hello");

    let addr = close_delimited_server(&ca, false).await;
    let res = client
        .request(
            http::Request::get(format!("https://localhost:{}/", addr.port()))
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.is_truncated(), "{err}");
    assert_eq!(err.truncation(), Some((None, 5)), "{err}");
}

/// A proxy on a TLS listener (certificate `leaf`) with one route to the
/// upstream on `port` of localhost, verified with `ca`.
async fn tls_proxy(leaf: &Leaf, port: u16, ca: &Ca) -> TestServer {
    let upstream = Origin {
        host: "localhost".into(),
        port,
        tls: Some(trusting(ca)),
    };
    let proxy = proxy_to(upstream, Client::new());
    let tls = ServerTls::from_files(&[pair(leaf)]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    TestServer::start_on(tls.listen(listener), addr, Server::builder(), proxy)
}

// TLS on both hops: the client's keep-alive connection to the proxy and the
// proxy's pooled connection to the origin are each reused (connection ids
// on both sides), and the origin sees `X-Forwarded-Proto: https`.
#[tokio::test]
async fn proxy_tls_to_tls_reuses_both_hops() {
    let (ca, leaf, origin) = localhost_origin("proxy").await;
    let proxy = tls_proxy(&leaf, origin.addr.port(), &ca).await;
    let client = Client::builder().tls(trusting(&ca)).build();
    let base = format!("https://localhost:{}", proxy.addr.port());
    let mut upstream_ids = Vec::new();
    for n in 1..=3 {
        let (_, body) = get_text(&client, &format!("{base}/conn")).await;
        let (id, request) = body.trim().split_once(' ').unwrap();
        assert_eq!(request, format!("request={n}"), "upstream reused: {body}");
        upstream_ids.push(id.to_string());
    }
    assert!(upstream_ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        proxy.stats.accepted.load(Ordering::Relaxed),
        1,
        "client hop reused"
    );
    let (_, echo) = get_text(&client, &format!("{base}/echo")).await;
    assert!(
        echo.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{echo}"
    );
}

// An upstream whose certificate does not verify: 502, and the upstream
// never sees a request.
#[tokio::test]
async fn upstream_that_does_not_verify_is_a_502() {
    let ca = Ca::new("bad-upstream");
    let other = Ca::new("other");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let origin = tls_origin(&[&leaf], Server::builder()).await;
    let proxy = tls_proxy(&leaf, origin.addr.port(), &other).await;
    let client = Client::builder().tls(trusting(&ca)).build();
    let (parts, _) = get_text(
        &client,
        &format!("https://localhost:{}/", proxy.addr.port()),
    )
    .await;
    assert_eq!(parts.status, 502);
    assert_eq!(origin.stats.requests.load(Ordering::Relaxed), 0);
}

// Certificate and key files that are missing, empty or do not match: the
// error names the file.
#[test]
fn bad_certificate_files_are_named() {
    let ca = Ca::new("bad-files");
    let a = ca.leaf("a", &["a.test"], ECDSA);
    let b = ca.leaf("b", &["b.test"], ECDSA);
    let missing = ca.path("missing.pem");
    let empty = ca.path("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let cases = [
        (missing.clone(), a.key.clone(), missing.clone()),
        (empty.clone(), a.key.clone(), empty.clone()),
        (a.cert.clone(), empty.clone(), empty.clone()),
        (a.cert.clone(), b.key.clone(), b.key.clone()),
    ];
    for (cert, key, named) in cases {
        let err = ServerTls::from_files(&[CertKey { cert, key }]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&named.display().to_string()), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}

// curl with --cacert: verified, ALPN http/1.1, keep-alive over TLS.
#[tokio::test]
async fn curl_with_cacert() {
    if !peer("curl") {
        return;
    }
    let (ca, _, srv) = localhost_origin("curl").await;
    let url = format!("https://localhost:{}/conn", srv.addr.port());
    let out = run_peer(
        "curl",
        &["-sv", "--cacert", ca.cert.to_str().unwrap(), &url, &url],
        Duration::from_secs(20),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("request=1") && stdout.contains("request=2"),
        "{stdout}"
    );
    assert!(stderr.contains("http/1.1"), "ALPN: {stderr}");
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 1);
}

// Python's ssl with suppress_ragged_eofs=False raises on an EOF without
// close_notify: a clean read to the end proves the server sent it before
// its FIN.
#[tokio::test]
async fn python_sees_close_notify_before_fin() {
    if !peer("python3") {
        return;
    }
    let (ca, _, srv) = localhost_origin("python").await;
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
s.sendall(b"GET /close HTTP/1.1\r\nHost: localhost\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print("CLEAN-EOF", s.version(), data.split(b"\r\n")[0].decode())
"#;
    let port = srv.addr.port().to_string();
    let out = run_peer(
        "python3",
        &["-c", script, ca.cert.to_str().unwrap(), &port],
        Duration::from_secs(20),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("CLEAN-EOF TLSv1.3 HTTP/1.1 200 OK"),
        "{stdout}"
    );
}

// openssl s_client: offering only h2 fails the handshake (no application
// protocol); http/1.1 and TLS 1.2 work.
#[tokio::test]
async fn openssl_alpn_h2_only_is_refused() {
    if !peer("openssl") {
        return;
    }
    let (ca, _, srv) = localhost_origin("openssl").await;
    let connect = format!("127.0.0.1:{}", srv.addr.port());
    let run = |alpn: &'static str, version: &'static str| {
        let connect = connect.clone();
        let ca = ca.cert.to_str().unwrap().to_string();
        async move {
            let out = run_peer(
                "sh",
                &[
                    "-c",
                    &format!(
                        "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -connect {connect} -servername localhost -CAfile {ca} -alpn {alpn} {version} -ign_eof 2>&1"
                    ),
                ],
                Duration::from_secs(20),
            )
            .await;
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let refused = run("h2", "-tls1_3").await;
    assert!(
        refused.contains("no application protocol") || refused.contains("alert number 120"),
        "{refused}"
    );
    assert!(!refused.contains("Hello, World!"), "{refused}");
    let ok = run("http/1.1", "-tls1_2").await;
    assert!(ok.contains("ALPN protocol: http/1.1"), "{ok}");
    assert!(
        ok.contains("Protocol  : TLSv1.2") || ok.contains("TLSv1.2"),
        "{ok}"
    );
    assert!(ok.contains("Hello, World!"), "{ok}");
}

// An RSA key (made by openssl; ring cannot generate RSA keys) loads and
// serves.
#[tokio::test]
async fn rsa_key_serves() {
    if !peer("openssl") {
        return;
    }
    let ca = Ca::new("rsa");
    let key = ca.path("rsa-input.key");
    let out = run_peer(
        "openssl",
        &["genrsa", "-out", key.to_str().unwrap(), "2048"],
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success());
    let leaf = ca.leaf_for_key_file("rsa", &["localhost"], &key);
    let srv = tls_origin(&[&leaf], Server::builder()).await;
    let client = Client::builder().tls(trusting(&ca)).build();
    let (_, body) = get_text(&client, &format!("https://localhost:{}/", srv.addr.port())).await;
    assert_eq!(body, "Hello, World!");
}

// nginx as a TLS upstream: the proxy verifies it with the test CA and keeps
// one TLS connection to it (nginx's access log names the connection of
// every request).
#[tokio::test]
async fn nginx_as_a_tls_upstream_is_reused() {
    if !peer("nginx") {
        return;
    }
    let ca = Ca::new("nginx-upstream");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let (cert, key) = (leaf.cert.clone(), leaf.key.clone());
    let nginx = nginx_with(|port, _| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ default_type text/plain; return 200 \"nginx over tls $ssl_protocol $ssl_server_name\\n\"; }}\n  }}\n",
            cert.display(),
            key.display()
        )
    })
    .await;
    let proxy = tls_proxy(&leaf, nginx.addr.port(), &ca).await;
    let client = Client::builder().tls(trusting(&ca)).build();
    for _ in 0..5 {
        let (parts, body) = get_text(
            &client,
            &format!("https://localhost:{}/", proxy.addr.port()),
        )
        .await;
        assert_eq!(parts.status, 200);
        assert!(
            body.starts_with("nginx over tls TLSv1.3 localhost"),
            "{body}"
        );
    }
    // The peer logs a request after answering it: its last line may come a
    // moment after the last response.
    let logged = eventually(WAIT, || nginx.access_log().lines().count() == 5).await;
    assert!(logged, "{}", nginx.access_log());
    assert_eq!(nginx.connections_seen(), 1, "{}", nginx.access_log());
}

// nginx as a TLS client in front of drainpipe (`proxy_pass https://` with
// keepalive): drainpipe's `/conn` shows nginx reusing one TLS connection,
// verified against the test CA with SNI.
#[tokio::test]
async fn nginx_as_a_tls_client_reuses_its_connection() {
    if !peer("nginx") || !peer("curl") {
        return;
    }
    let (ca, _, origin) = localhost_origin("nginx-client").await;
    let (ca_file, dp) = (ca.cert.clone(), origin.addr);
    let nginx = nginx_with(|port, _| {
        format!(
            "  upstream dp {{ server {dp}; keepalive 4; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass https://dp;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_ssl_verify on;\n      proxy_ssl_trusted_certificate {};\n      proxy_ssl_name localhost;\n      proxy_ssl_server_name on;\n      proxy_ssl_session_reuse on;\n    }}\n  }}\n",
            ca_file.display()
        )
    })
    .await;
    let url = format!("http://{}/conn", nginx.addr);
    let out = run_peer("curl", &["-sS", &url, &url, &url], Duration::from_secs(20)).await;
    let body = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 3, "{body}");
    let ids: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{body}");
    assert!(lines[2].ends_with("request=3"), "{body}");
    assert_eq!(origin.stats.accepted.load(Ordering::Relaxed), 1);
}

// A server that asks for client certificates (a configuration built by hand
// with rustls, ServerTls::from_config): a client with a certificate from the
// CA gets in and is seen with it; one without is refused.
#[tokio::test]
async fn client_certificate_from_files_is_presented() {
    use drainpipe::tls::rustls;
    use rustls::pki_types::pem::PemObject;
    let ca = Ca::new("mtls");
    let server_leaf = ca.leaf("server", &["localhost"], ECDSA);
    let client_leaf = ca.leaf("client", &["client.test"], ED25519);
    let read = |path: &std::path::Path| std::fs::read(path).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(&read(&ca.cert)).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&read(&server_leaf.cert))
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(&server_leaf.key)).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = ServerTls::from_config(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = TestServer::start_on(
        tls.listen(listener),
        addr,
        Server::builder(),
        drainpipe::origin::Origin,
    );
    let url = format!("https://localhost:{}/", srv.addr.port());

    let with_cert = ClientTls::builder()
        .ca_file(&ca.cert)
        .client_auth_files(&client_leaf.cert, &client_leaf.key)
        .build()
        .unwrap();
    let client = Client::builder().tls(with_cert).build();
    let (parts, body) = get_text(&client, &url).await;
    assert_eq!(
        (parts.status.as_u16(), body.as_str()),
        (200, "Hello, World!")
    );

    let without = Client::builder().tls(trusting(&ca)).build();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        without.request(http::Request::get(&url).body(()).unwrap()),
    )
    .await
    .unwrap();
    assert!(refused.is_err(), "{refused:?}");
}

// `tls_server_name`: an upstream written as an IP address is verified
// against the name given instead (the certificate names only localhost).
#[tokio::test]
async fn server_name_override_verifies_an_address() {
    let (ca, _, srv) = localhost_origin("server-name").await;
    let url = format!("https://127.0.0.1:{}/", srv.addr.port());
    let plain = Client::builder().tls(trusting(&ca)).build();
    assert!(plain
        .request(http::Request::get(&url).body(()).unwrap())
        .await
        .is_err());
    let named = trusting(&ca).with_server_name("localhost").unwrap();
    let client = Client::builder().tls(named).build();
    let (_, body) = get_text(&client, &url).await;
    assert_eq!(body, "Hello, World!");
    // A bad name is refused when it is given, naming it.
    let err = trusting(&ca).with_server_name("not a name!").unwrap_err();
    assert!(err.to_string().starts_with("not a name!: "), "{err}");
}
