//! The library half of the `net` command-line tool (binary `src/bin/net.rs`):
//! node configuration files and the secret files they name. Kept out of the
//! `net` SDK, which takes a [`net_engine::MeshNodeConfig`] and reads no files.
//! Not a stable API; only the binary, its tests and `fuzz/` use it.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
// Fuzz target bodies: compiled for tests and for the fuzz crate (feature
// `fuzzing`), never into a normal build.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
