//! Message heads: parsing received ones ([`parse`]) and serialising our own
//! ([`mod@write`]).

pub mod parse;
pub mod write;
