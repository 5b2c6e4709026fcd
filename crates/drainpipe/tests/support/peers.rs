//! Peer server processes (nginx, h2o) in temporary directories, on free
//! ports of 127.0.0.1, killed on drop; their access logs name the
//! connection of every request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A peer server process in a temporary directory, killed on drop.
pub struct PeerServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PeerServer {
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Distinct connection ids in the access log (its first field).
    pub fn connections_seen(&self) -> usize {
        let log = self.access_log();
        let mut ids: Vec<&str> = log.lines().filter_map(|l| l.split(' ').next()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "drainpipe-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("peer server never listened on {addr}");
}

/// nginx (one process, no daemon) whose `http {}` holds the server blocks
/// `servers(port, dir)` returns; `port` is the free port it must listen on.
/// Its access log lines are `CONNECTION REQUESTS_ON_IT REQUEST_LINE`.
pub async fn nginx_with(servers: impl FnOnce(u16, &Path) -> String) -> PeerServer {
    let dir = temp_dir("nginx");
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format conn '$connection $connection_requests $request';
  access_log {d}/access.log conn;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_timeout 60;
  keepalive_requests 10000;
{servers}}}
"#,
        servers = servers(port, &dir)
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    PeerServer { child, addr, dir }
}
