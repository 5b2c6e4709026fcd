//! Informational (1xx) responses a handler sends ahead of its final one:
//! `103 Early Hints`, a `100 Continue` relayed from an upstream, and any other
//! 1xx but `101` (which only a final, switching response can be).
//!
//! A handler takes an [`Interim`] from the request's body
//! ([`Incoming::interim`](crate::body::Incoming::interim)) and sends through
//! it, from its own task or another. The connection writes each one before
//! the final response of the same request, in order, and drops the ones that
//! come too late (after the final head) or for another request. To an
//! HTTP/1.0 client nothing is written (RFC 9110 §15.2); the core decides.
//!
//! The queue is one per connection and small, and the connection moves
//! nothing from it while its outgoing bytes are not being read: a handler
//! that sends faster than the client reads gets [`InterimError::Full`], never
//! unbounded memory.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use atomic_waker::AtomicWaker;
use http::response;

/// Informational responses queued and not yet written, per connection.
const MAX_QUEUED: usize = 8;

/// Sends informational (1xx) responses for one request; cheap to clone.
#[derive(Clone)]
pub struct Interim {
    queue: Arc<Queue>,
    /// The request (its number on the connection) these responses belong to.
    request: u32,
}

/// Why an informational response was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterimError {
    /// The status is not 1xx, or it is `101` (a final response switches).
    NotInformational,
    /// The client has not read the ones already queued.
    Full,
}

impl fmt::Display for InterimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InterimError::NotInformational => "not an informational (1xx, not 101) status",
            InterimError::Full => "too many informational responses waiting to be written",
        })
    }
}

impl std::error::Error for InterimError {}

impl fmt::Debug for Interim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interim")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl Interim {
    /// Queues `head` (its status and fields; `Connection` and framing fields
    /// are the connection's business and are not to be set) to be written
    /// before the request's final response.
    pub fn send(&self, head: response::Parts) -> Result<(), InterimError> {
        let status = head.status;
        if !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(InterimError::NotInformational);
        }
        let mut state = self.queue.state.lock().unwrap();
        if state.items.len() >= MAX_QUEUED {
            return Err(InterimError::Full);
        }
        state.items.push_back((self.request, head));
        self.queue.pending.store(true, Ordering::Release);
        drop(state);
        self.queue.waker.wake();
        Ok(())
    }
}

/// The connection's end: one per connection, shared by every [`Interim`].
#[derive(Default)]
pub(crate) struct Queue {
    /// Whether `items` may hold something: one load for the connection to
    /// find out there is nothing to write.
    pending: AtomicBool,
    state: Mutex<State>,
    /// The connection's task, registered while its handler works (each
    /// time it waits: a few atomic operations, no lock).
    waker: AtomicWaker,
}

#[derive(Default)]
struct State {
    items: VecDeque<(u32, response::Parts)>,
}

impl Queue {
    /// A handle for request number `request`.
    pub(crate) fn handle(self: &Arc<Self>, request: u32) -> Interim {
        Interim {
            queue: self.clone(),
            request,
        }
    }

    /// Whether anything may be queued: one atomic load, for the connection
    /// to skip the rest when nothing is (nearly always).
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The responses queued for `request`, in order; those for any other
    /// request are dropped (they came too late).
    pub(crate) fn take(&self, request: u32) -> Vec<response::Parts> {
        if !self.is_pending() {
            return Vec::new();
        }
        let mut state = self.state.lock().unwrap();
        self.pending.store(false, Ordering::Release);
        state
            .items
            .drain(..)
            .filter(|(r, _)| *r == request)
            .map(|(_, head)| head)
            .collect()
    }

    /// Wakes `waker` when something is queued from another task.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }
}
