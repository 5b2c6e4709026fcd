//! Puts the library's pieces to work for a command: binds the listeners, starts
//! the servers, waits for a signal, drains.

use std::net::SocketAddr;
use std::time::Duration;

use drainpipe::admin::Admin;
use drainpipe::metrics::Registry;
use drainpipe::origin::Origin;
use drainpipe::server::{DrainReport, Server};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// `drainpipe origin`: the built-in origin on one listener.
pub async fn origin(
    listen: SocketAddr,
    max_requests: Option<u32>,
    drain_timeout: Duration,
) -> Result<(), String> {
    let listener = bind(listen).await?;
    let mut builder = Server::builder().drain_timeout(drain_timeout);
    if let Some(n) = max_requests {
        builder = builder.max_requests_per_connection(n);
    }
    let server = builder.build();
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("drainpipe origin listening on http://{addr}");
    let report = server.serve(listener, Origin, shutdown_signal()).await;
    log_report("origin", &report);
    Ok(())
}

/// Runs what a configuration describes: the proxy listeners, the built-in
/// origin and the admin listener if configured. A signal drains them all:
/// readiness goes to 503 first, the admin listener last.
pub async fn config(config: Config) -> Result<(), String> {
    // Bind everything first: a bad address fails before anything serves.
    let origin = match &config.origin {
        Some(o) => Some(bind(o.listen).await?),
        None => None,
    };
    let mut proxies = Vec::new();
    for l in &config.listener {
        proxies.push(bind(l.listen).await?);
    }
    let admin = match &config.admin {
        Some(a) => Some(bind(a.listen).await?),
        None => None,
    };

    let (stop, stopped) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut registry = Registry::new();
    let mut serving: JoinSet<(String, DrainReport)> = JoinSet::new();
    if let Some(listener) = origin {
        let server = Server::builder().build();
        registry = registry.server("origin", server.stats());
        println!("drainpipe origin listening on http://{}", local(&listener));
        let until = wait(stopped.clone());
        serving
            .spawn(async move { ("origin".into(), server.serve(listener, Origin, until).await) });
    }
    if !proxies.is_empty() {
        let proxy = config.proxy();
        registry = registry.proxy("proxy", proxy.clone());
        let many = proxies.len() > 1;
        for listener in proxies {
            let addr = local(&listener);
            let name = if many {
                format!("proxy {addr}")
            } else {
                "proxy".into()
            };
            let server = config.server().build();
            registry = registry.server(name.clone(), server.stats());
            println!("drainpipe proxy listening on http://{addr}");
            let until = wait(stopped.clone());
            let proxy = proxy.clone();
            serving.spawn(async move { (name, server.serve(listener, proxy, until).await) });
        }
    }
    let (admin_stop, admin_stopped) = watch::channel(false);
    let admin_task = admin.map(|listener| {
        println!("drainpipe admin listening on http://{}", local(&listener));
        let service = Admin::new(registry.clone());
        let until = wait(admin_stopped);
        tokio::spawn(async move {
            Server::builder()
                .build()
                .serve(listener, service, until)
                .await
        })
    });

    shutdown_signal().await;
    registry.set_not_ready();
    let _ = stop.send(true);
    while let Some(done) = serving.join_next().await {
        if let Ok((name, report)) = done {
            log_report(&name, &report);
        }
    }
    let _ = admin_stop.send(true);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    Ok(())
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn log_report(name: &str, report: &DrainReport) {
    tracing::info!(
        listener = name,
        open = report.open_at_start,
        clean = report.clean,
        cut = report.cut,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "drained"
    );
}

/// Resolves on SIGTERM or SIGINT: the cue to drain.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received: draining");
}
