//! The proxy in front of real origins (nginx, h2o) with real clients in front
//! (curl, drainpipe's client): hop-by-hop stripping seen at the origin and at
//! the client, and upstream connections reused (the origins' own access logs
//! name the connection of every request).

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use drainpipe::client::Client;
use http_body_util::BodyExt;
use support::peers::{free_port, nginx_with, temp_dir, wait_listening, PeerServer};
use support::*;

async fn nginx() -> PeerServer {
    nginx_with(|port, _| {
        format!(
            r#"  server {{
    listen 127.0.0.1:{port};
    location /echo {{
      default_type text/plain;
      return 200 "connection=[$http_connection] keep-alive=[$http_keep_alive] x-secret=[$http_x_secret] te=[$http_te] proxy-authorization=[$http_proxy_authorization] upgrade=[$http_upgrade] via=[$http_via] xff=[$http_x_forwarded_for] host=[$host]\n";
    }}
    location / {{
      default_type text/plain;
      return 200 "nginx says hi\n";
    }}
  }}
"#
        )
    })
    .await
}

async fn h2o() -> PeerServer {
    let dir = temp_dir("h2o");
    let port = free_port();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "h2o says hi\n").unwrap();
    let d = dir.display();
    let conf = format!(
        "listen:\n  host: 127.0.0.1\n  port: {port}\nerror-log: {d}/error.log\naccess-log:\n  path: {d}/access.log\n  format: \"%{{connection-id}}x %r\"\nhosts:\n  default:\n    paths:\n      /:\n        file.dir: {d}/www\n"
    );
    std::fs::write(dir.join("h2o.conf"), conf).unwrap();
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&dir)
        .status();
    let child = Command::new("h2o")
        .arg("-c")
        .arg(dir.join("h2o.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("h2o starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    PeerServer { child, addr, dir }
}

/// `clients` concurrent keep-alive clients make `each` requests through the
/// proxy; every answer must be `want`.
async fn load(url: String, clients: usize, each: usize, want: &'static str) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::new();
            for _ in 0..each {
                let res = client
                    .request(http::Request::get(&url).body(()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), want);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_origin_hop_by_hop_and_reuse() {
    if !peer("nginx") || !peer("curl") {
        return;
    }
    let nginx = nginx().await;
    let (srv, proxy) = proxy_in_front_of(nginx.addr).await;

    // Hop-by-hop fields from curl never reach nginx.
    let out = run_peer(
        "curl",
        &[
            "-sS",
            "-v",
            "--noproxy",
            "*",
            "-H",
            "Connection: keep-alive, X-Secret",
            "-H",
            "X-Secret: s",
            "-H",
            "Keep-Alive: timeout=5",
            "-H",
            "TE: trailers",
            "-H",
            "Proxy-Authorization: Basic eA==",
            "-H",
            "Upgrade: h2c",
            &srv.url("/echo"),
        ],
        Duration::from_secs(20),
    )
    .await;
    let body = String::from_utf8_lossy(&out.stdout);
    let verbose = String::from_utf8_lossy(&out.stderr).to_lowercase();
    for empty in [
        "connection=[]",
        "keep-alive=[]",
        "x-secret=[]",
        "te=[]",
        "proxy-authorization=[]",
        "upgrade=[]",
    ] {
        assert!(body.contains(empty), "nginx saw a hop-by-hop field: {body}");
    }
    assert!(
        body.contains("via=[1.1 drainpipe]") && body.contains("xff=[127.0.0.1]"),
        "{body}"
    );
    // nginx answers with `Connection: keep-alive`: it stays on nginx's hop.
    assert!(!verbose.contains("< connection:"), "{verbose}");
    assert!(verbose.contains("< via: 1.1 drainpipe"), "{verbose}");
    assert!(verbose.contains("< server: nginx"), "{verbose}");

    // Reuse: 4 concurrent clients, 50 requests each: nginx sees at most 4
    // connections from the proxy.
    load(srv.url("/"), 4, 50, "nginx says hi\n").await;
    let connections = nginx.connections_seen();
    let opened = proxy
        .client()
        .stats()
        .opened
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("nginx: 201 requests over {connections} upstream connections ({opened} opened by the proxy)");
    assert!(
        connections <= 5,
        "{connections} upstream connections for 4 clients (+1 for curl)"
    );
    // The peer logs a request after answering it: its last line may come a
    // moment after the last response.
    let logged = eventually(WAIT, || nginx.access_log().lines().count() == 201).await;
    assert!(logged, "{}", nginx.access_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2o_origin_reuse_and_clean_responses() {
    if !peer("h2o") || !peer("curl") {
        return;
    }
    let h2o = h2o().await;
    let (srv, proxy) = proxy_in_front_of(h2o.addr).await;
    let out = run_peer(
        "curl",
        &["-sS", "-v", "--noproxy", "*", &srv.url("/"), &srv.url("/")],
        Duration::from_secs(20),
    )
    .await;
    let body = String::from_utf8_lossy(&out.stdout);
    let verbose = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert_eq!(body, "h2o says hi\nh2o says hi\n");
    assert!(
        verbose.contains("re-using existing connection"),
        "{verbose}"
    );
    assert!(
        !verbose.contains("< connection:"),
        "h2o's Connection field crossed: {verbose}"
    );
    assert!(verbose.contains("< server: h2o"), "{verbose}");
    load(srv.url("/"), 4, 50, "h2o says hi\n").await;
    let connections = h2o.connections_seen();
    let opened = proxy
        .client()
        .stats()
        .opened
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "h2o: 202 requests over {connections} upstream connections ({opened} opened by the proxy)"
    );
    assert!(
        connections <= 5,
        "{connections} upstream connections for 4 clients (+1 for curl)"
    );
    // The peer logs a request after answering it: its last line may come a
    // moment after the last response.
    let logged = eventually(WAIT, || h2o.access_log().lines().count() == 202).await;
    assert!(logged, "{}", h2o.access_log());
}
