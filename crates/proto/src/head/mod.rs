//! Message heads: parsing received ones ([`parse`]) and serialising our own
//! ([`write`]).

pub mod parse;
pub mod write;
