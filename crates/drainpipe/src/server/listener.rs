//! The accept loop: max connections (accept waits for a free slot), accept
//! errors such as EMFILE backing off instead of spinning, one task per
//! connection.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::conn;
use super::drain::Shared;
use crate::body::Incoming;
use crate::error::BoxError;

/// The first pause after a resource error from accept; doubled up to
/// [`MAX_BACKOFF`] while errors repeat.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown` resolves.
pub(crate) async fn accept_until<S, B, F>(
    listener: &TcpListener,
    service: S,
    shared: &Arc<Shared>,
    shutdown: F,
) where
    S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut backoff = MIN_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => return,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                let service = service.clone();
                let shared = shared.clone();
                shared.opened();
                tokio::spawn(async move {
                    let reason = conn::run(stream, peer, service, &shared).await;
                    shared.closed(reason);
                    drop(permit);
                });
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: nothing to accept with until
                // something is freed; wait instead of spinning.
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Errors that concern one connection only (it was reset before accept
/// finished); the next accept can go on at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
