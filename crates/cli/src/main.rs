//! The `drainpipe` binary: parses arguments, sets up logging and the runtime,
//! and hands over to the library. No logic lives here.

mod args;
mod bench;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use drainpipe::origin::Origin;
use drainpipe::server::Server;

use args::{Args, Command};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() => {
            // One line that names the bad flag or value: clap's first line,
            // joined with the next when it only announces a list.
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut line = lines.next().unwrap_or("invalid arguments").to_string();
            if line.ends_with(':') {
                if let Some(next) = lines.next() {
                    line = format!("{line} {next}");
                }
            }
            eprintln!("drainpipe: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drainpipe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Some(Command::Origin {
                listen,
                max_requests,
                drain_timeout,
            }) => origin(listen, max_requests, Duration::from_secs(drain_timeout)).await,
            Some(Command::Bench(bench)) => bench::run(bench).await,
            None => {
                origin(
                    "127.0.0.1:8080".parse().unwrap(),
                    None,
                    Duration::from_secs(30),
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drainpipe: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn origin(
    listen: SocketAddr,
    max_requests: Option<u32>,
    drain_timeout: Duration,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let mut builder = Server::builder().drain_timeout(drain_timeout);
    if let Some(n) = max_requests {
        builder = builder.max_requests_per_connection(n);
    }
    let server = builder.build();
    println!(
        "drainpipe origin listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let report = server.serve(listener, Origin, shutdown_signal()).await;
    tracing::info!(
        open = report.open_at_start,
        clean = report.clean,
        cut = report.cut,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "drained"
    );
    Ok(())
}

/// Resolves on SIGTERM or SIGINT: the cue to drain.
async fn shutdown_signal() {
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
