//! Sans-IO protocol core for Net.
//!
//! No sockets, no threads, no clock reads: every entry point takes `now` as a
//! parameter and output is pulled with `poll_*`. See [`Endpoint`] for the call
//! contract.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fuzzing;
pub mod ids;
pub mod ranges;
pub mod replay;
pub mod wire;
