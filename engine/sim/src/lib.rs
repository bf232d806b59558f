//! Deterministic simulated network.
