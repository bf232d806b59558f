//! Crypto for Net.
