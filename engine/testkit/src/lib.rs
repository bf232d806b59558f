//! Test support shared by Net's test suites (a dev-dependency only).
//!
//! * [`eventually`] / [`eventually_async`]: the one way a test waits for a
//!   condition another thread makes true (a counter moves, a node is
//!   discovered). It re-checks on a short interval and fails with `what`
//!   after [`PATIENCE`] — a bound only a failure reaches, never a timing
//!   assertion.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// How long [`eventually`] waits before it declares a condition never met.
/// Generous: a loaded 2-core machine may stall a thread for seconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is re-checked.
const INTERVAL: Duration = Duration::from_millis(2);

/// Blocks until `cond` holds; panics naming `what` after [`PATIENCE`].
#[track_caller]
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(INTERVAL);
    }
}

/// [`eventually`] for async tests: yields to the runtime between checks.
pub async fn eventually_async(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(INTERVAL).await;
    }
}
