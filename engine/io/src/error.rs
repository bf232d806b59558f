//! The error type of opening drivers.

use crate::DriverKind;

/// Why [`crate::open_group`] / [`crate::open`] failed. Runtime send/receive
/// problems are not errors: they are counted in [`crate::DriverStats`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// Creating, configuring or binding a socket of the group failed
    /// (address in use, permission, bad address family...).
    #[error("bind: {0}")]
    Bind(std::io::Error),
    /// The requested driver kind cannot run here (kernel too old, io_uring
    /// disabled by sysctl or seccomp...). Only returned for
    /// `DriverChoice::Force`; `Auto` downgrades instead.
    #[error("{kind} driver unavailable: {reason}")]
    Unavailable {
        /// The kind that was refused.
        kind: DriverKind,
        /// What the kernel said.
        reason: String,
    },
    /// Attaching the reuseport steering program failed, or the steering
    /// parameters are out of range.
    #[error("steering: {0}")]
    Steering(std::io::Error),
    /// Any other failure while setting up a driver (including an invalid
    /// [`crate::DriverConfig`], reported as `InvalidInput`).
    #[error("io: {0}")]
    Io(std::io::Error),
}

/// True for the errno values that mean "this kernel/sandbox does not offer
/// the feature" rather than "something is broken": the ones `Auto` downgrades
/// on. ENOMEM is included because kernels before 5.12 charge io_uring rings
/// against `RLIMIT_MEMLOCK` and report exhaustion that way.
pub(crate) fn is_unsupported(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            err.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP | libc::ENOMEM)
        )
}

/// An `InvalidInput` error with a message.
pub(crate) fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.into())
}
