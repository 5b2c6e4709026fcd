//! Command-line arguments.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// drainpipe: an HTTP/1.x connection engine.
#[derive(Debug, Parser)]
#[command(name = "drainpipe", version, about)]
pub struct Args {
    /// Worker threads (default: one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// What to run; with none, the default config.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the built-in origin routes (/, /echo, /bytes/N, /chunked/N,
    /// /delay/MS, /status/CODE, /close, /conn, /truncate/N, /reset).
    Origin {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Requests per connection before it closes.
        #[arg(long)]
        max_requests: Option<u32>,
        /// Seconds a drain waits for requests in progress.
        #[arg(long, default_value_t = 30)]
        drain_timeout: u64,
    },
}
