//! Which end of the connection a [`Connection`](crate::Connection) plays.

/// The end of the connection this side plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends requests, receives responses.
    Client,
    /// Receives requests, sends responses.
    Server,
}
