//! Sliding replay window.
