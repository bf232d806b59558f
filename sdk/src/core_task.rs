//! Futures on an engine core: [`Mesh::spawn_on_core`].
//!
//! A call awaited on tokio crosses threads twice: the caller hands it to a
//! core, and the core wakes the caller's task when the answer is in. On a
//! small machine those hand-offs (and the CPU the tokio worker and the core
//! share) cost more than the protocol. A future spawned on a core is
//! polled by the core loop itself, so the calls it makes go into that
//! core's own inbox, are taken in the same pass, and their answers wake it
//! without a syscall (docs/ARCHITECTURE.md, "On-core tasks").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::MeshError;
use crate::mesh::Mesh;

/// Why an on-core task gave no output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task ended without finishing: it panicked (the core dropped it
    /// and counted it in `CoreStats::task_panics`), the core held
    /// [`MAX_TASKS`](crate::MAX_TASKS) tasks already (`tasks_refused`), or
    /// the core stopped first.
    #[error("on-core task ended without output (it panicked, was refused, or its core stopped)")]
    Ended,
}

/// The output of a future spawned with [`Mesh::spawn_on_core`]; await it
/// from anywhere. Dropping it does not stop the task.
#[must_use = "the task runs anyway; await this to get its output"]
pub struct CoreTask<T>(oneshot::Receiver<T>);

impl<T> Future for CoreTask<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| TaskError::Ended))
    }
}

impl Mesh {
    /// Runs `fut` on engine core `core` (0-based, below the node's core
    /// count): the core loop polls it, so the calls it makes (`call`,
    /// `call_with`, …) go to that core with no cross-thread hand-off and no
    /// wake-up syscall. Use it for request loops that only talk to the
    /// mesh; keep anything that needs tokio (timers, sockets, blocking
    /// work) on tokio: `fut` must not need a tokio runtime, and while it
    /// runs the core does nothing else. A panic in `fut` drops the task,
    /// not the core.
    ///
    /// Fails with `Engine(Backpressure)` if the core's inbox is full, or
    /// `Engine(NotRunning)` if the mesh is not started or `core` is out of
    /// range.
    pub fn spawn_on_core<F>(&self, core: usize, fut: F) -> Result<CoreTask<F::Output>, MeshError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.engine().spawn_on_core(
            core,
            Box::pin(async move {
                // The awaiting side may have dropped its `CoreTask`: then
                // nobody wants the output.
                let _ = tx.send(fut.await);
            }),
        )?;
        Ok(CoreTask(rx))
    }
}
