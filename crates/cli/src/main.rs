//! The `drainpipe` binary: parses arguments, sets up logging and the runtime,
//! and hands over to the library. No logic lives here.

mod addr;
mod alloc;
mod args;
mod bench;
mod check;
mod config;
mod control;
#[cfg(test)]
mod keys;
mod pidfile;
mod run;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use args::{Args, Command};
use config::Config;

/// The repository's default configuration, run when no command is given.
const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");
/// The name the default configuration goes by in messages.
const DEFAULT_CONFIG_NAME: &str = "config/default.toml";

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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        args::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        args::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // bench is a client: tokio's multi-thread runtime (one thread with
    // --threads 1). It has exit statuses of its own (1: a request failed, 2:
    // bad usage).
    let command = match args.command {
        Some(Command::Bench(bench)) => {
            let mut runtime = match args.threads {
                Some(1) => tokio::runtime::Builder::new_current_thread(),
                Some(n) => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n);
                    b
                }
                None => tokio::runtime::Builder::new_multi_thread(),
            };
            return match runtime.enable_all().build() {
                Ok(rt) => rt.block_on(async {
                    alloc::spawn_housekeeping();
                    bench::main(bench).await
                }),
                Err(e) => {
                    eprintln!("drainpipe: cannot start the runtime: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        other => other,
    };
    // The servers run on workers (one current-thread runtime per thread,
    // see drainpipe::server::workers); this thread's runtime is the control
    // one: signals, hand-off, admin, health checks, DNS.
    let workers = args
        .threads
        .unwrap_or_else(drainpipe::server::workers::default_count);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drainpipe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        alloc::spawn_housekeeping();
        match command {
            Some(Command::Origin {
                listen,
                max_requests,
                drain_timeout,
                tls,
            }) => match tls::ListenerTls::from_flags(tls.tls_cert, tls.tls_key)
                .and_then(|t| t.map(|t| t.server_tls()).transpose())
                .map_err(|e| format!("--tls-cert: {e}"))
            {
                Ok(tls) => {
                    let drain_timeout = Duration::from_secs(drain_timeout);
                    run::origin(listen, max_requests, drain_timeout, workers, tls).await
                }
                Err(e) => Err(e),
            },
            Some(Command::Proxy {
                config: Some(path),
                pid_file,
                ..
            }) => {
                let load = move || Config::load(&path);
                run::config(std::sync::Arc::new(load), pid_file, workers).await
            }
            Some(Command::Proxy {
                config: None,
                listen,
                upstream,
                balance,
                admin,
                access_log,
                pid_file,
                tls,
                upstream_ca,
            }) => {
                let load = move || {
                    Config::quick(
                        listen.clone(),
                        &upstream,
                        balance,
                        admin.clone(),
                        access_log,
                        tls::ListenerTls::from_flags(tls.tls_cert.clone(), tls.tls_key.clone())?,
                        upstream_ca.clone(),
                    )
                };
                run::config(std::sync::Arc::new(load), pid_file, workers).await
            }
            Some(Command::Upgrade(t)) => {
                control::run(control::Ask::Upgrade, t.pid, t.pid_file.as_deref())
            }
            Some(Command::Reload(t)) => {
                control::run(control::Ask::Reload, t.pid, t.pid_file.as_deref())
            }
            Some(Command::Check { config }) => check::run(config.as_deref()),
            Some(Command::Forward {
                listen,
                allow_private,
                allow_port,
                credentials,
                admin,
                access_log,
                pid_file,
            }) => {
                let load = move || {
                    Config::quick_forward(
                        listen.clone(),
                        allow_private,
                        &allow_port,
                        credentials.clone(),
                        admin.clone(),
                        access_log,
                    )
                };
                run::config(std::sync::Arc::new(load), pid_file, workers).await
            }
            Some(Command::Bench(_)) => unreachable!("bench ran above"),
            None => {
                let load = || Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME);
                run::config(std::sync::Arc::new(load), None, workers).await
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
