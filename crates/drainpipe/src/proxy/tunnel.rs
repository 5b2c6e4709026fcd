//! The tunnel after a protocol switch (WebSocket after `101`): the client's
//! connection, handed over by the server once the `101` is written, joined to
//! the upstream's.

use crate::upgrade::{tunnel, OnUpgrade, Upgraded};

/// Joins the client's connection (when the server hands it over) to the
/// upstream's, in a task of its own.
pub(crate) fn spawn(down: OnUpgrade, up: Upgraded) {
    tokio::spawn(async move {
        match down.await {
            Ok(down) => match tunnel(down, up).await {
                Ok((sent, received)) => tracing::debug!(sent, received, "tunnel closed"),
                Err(e) => tracing::debug!(error = %e, "tunnel ended"),
            },
            Err(e) => tracing::debug!(error = %e, "client connection not handed over"),
        }
    });
}
