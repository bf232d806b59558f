//! Driver selection, configuration and counters.

use std::fmt;
use std::str::FromStr;

/// Which UDP driver implementation serves a socket.
///
/// All implement the same [`crate::Driver`] contract; the socket kinds differ
/// only in how they cross into the kernel (and so in syscalls per datagram).
/// [`DriverKind::Memory`] does not cross at all (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// io_uring: multishot `recvmsg` into a provided-buffer ring, `sendmsg`
    /// SQEs submitted together with the next wait (one `io_uring_enter` per
    /// loop iteration, none at all while spinning on an idle ring).
    Uring,
    /// `recvmmsg`/`sendmmsg` on a nonblocking socket, `ppoll` on the socket
    /// and an eventfd to park.
    Mmsg,
    /// `std::net::UdpSocket`, one syscall per datagram. Works anywhere.
    Portable,
    /// An in-process [`crate::MemNet`] port: no socket, no syscall. Bound
    /// with [`crate::MemNet::bind`]; [`crate::open_group`] refuses it
    /// (it needs the network handle), and [`DriverChoice::Auto`] never
    /// picks it.
    Memory,
}

impl DriverKind {
    /// Every socket kind, in the order [`DriverChoice::Auto`] tries them
    /// ([`DriverKind::Memory`] is not one: see [`DriverKind::NAMED`]).
    pub const ALL: [DriverKind; 3] = [DriverKind::Uring, DriverKind::Mmsg, DriverKind::Portable];

    /// Every kind a name parses to: [`DriverKind::ALL`] and `Memory`.
    pub const NAMED: [DriverKind; 4] = [
        DriverKind::Uring,
        DriverKind::Mmsg,
        DriverKind::Portable,
        DriverKind::Memory,
    ];

    /// The lowercase name used by `Display`, `FromStr` and `NET_DRIVER`.
    pub const fn name(self) -> &'static str {
        match self {
            DriverKind::Uring => "uring",
            DriverKind::Mmsg => "mmsg",
            DriverKind::Portable => "portable",
            DriverKind::Memory => "memory",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A driver name that is not `uring`, `mmsg`, `portable`, `memory` (or
/// `auto` where a [`DriverChoice`] is parsed). Carries the rejected text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown UDP driver {0:?} (expected auto, uring, mmsg, portable or memory)")]
pub struct ParseDriverError(pub String);

impl FromStr for DriverKind {
    type Err = ParseDriverError;

    /// Accepts the names case-insensitively, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        DriverKind::NAMED
            .into_iter()
            .find(|k| t.eq_ignore_ascii_case(k.name()))
            .ok_or_else(|| ParseDriverError(s.to_owned()))
    }
}

/// Which driver [`crate::open_group`] should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DriverChoice {
    /// Try uring → mmsg → portable, downgrading when the kernel refuses one
    /// (each downgrade is logged and counted in [`DriverStats::downgrades`]).
    #[default]
    Auto,
    /// Exactly this kind, or [`crate::IoError::Unavailable`].
    Force(DriverKind),
}

/// The environment variable [`DriverChoice::from_env`] reads.
pub const DRIVER_ENV: &str = "NET_DRIVER";

impl DriverChoice {
    /// Reads [`DRIVER_ENV`] (`NET_DRIVER`): unset or empty means `Auto`;
    /// anything else must parse (see [`DriverChoice::from_env_value`]).
    pub fn from_env() -> Result<Self, ParseDriverError> {
        match std::env::var(DRIVER_ENV) {
            Ok(v) => Self::from_env_value(Some(&v)),
            Err(std::env::VarError::NotPresent) => Ok(DriverChoice::Auto),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(ParseDriverError(v.to_string_lossy().into_owned()))
            }
        }
    }

    /// The parser behind [`DriverChoice::from_env`], testable without touching
    /// the process environment: `None` or blank → `Auto`, else [`FromStr`].
    pub fn from_env_value(value: Option<&str>) -> Result<Self, ParseDriverError> {
        match value {
            None => Ok(DriverChoice::Auto),
            Some(v) if v.trim().is_empty() => Ok(DriverChoice::Auto),
            Some(v) => v.parse(),
        }
    }

    /// The kinds to try, best first.
    pub(crate) fn candidates(self) -> &'static [DriverKind] {
        match self {
            DriverChoice::Auto => &DriverKind::ALL,
            DriverChoice::Force(DriverKind::Uring) => &DriverKind::ALL[0..1],
            DriverChoice::Force(DriverKind::Mmsg) => &DriverKind::ALL[1..2],
            DriverChoice::Force(DriverKind::Portable) => &DriverKind::ALL[2..3],
            DriverChoice::Force(DriverKind::Memory) => &[],
        }
    }
}

impl fmt::Display for DriverChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverChoice::Auto => f.write_str("auto"),
            DriverChoice::Force(k) => k.fmt(f),
        }
    }
}

impl FromStr for DriverChoice {
    type Err = ParseDriverError;

    /// `auto` or a [`DriverKind`] name, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(DriverChoice::Auto);
        }
        s.parse().map(DriverChoice::Force)
    }
}

/// The largest UDP payload an IPv4 datagram can carry (65535 − 20 − 8); also
/// the cap on one GSO super-buffer.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// The largest `batch` accepted (the kernel's `UIO_MAXIOV` bounds `sendmmsg`).
pub const MAX_BATCH: usize = 1024;

/// Per-driver sizing. Validated by [`crate::open_group`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Datagrams per rx and per tx batch (default 64, 1..=1024).
    pub batch: usize,
    /// Slot size in bytes (default 16 384, 1..=65535: loopback peers get
    /// datagrams up to 16 KiB, see `net_proto::EndpointConfig`). Must hold a full packet:
    /// a received datagram larger than this is dropped and counted in
    /// `rx_errors`; `tx_commit` of a longer one is dropped and counted in
    /// `tx_errors`.
    pub max_datagram: usize,
    /// Use UDP GSO (`UDP_SEGMENT`) when consecutive queued datagrams go to one
    /// destination with equal size (default true). A kernel that refuses it
    /// turns it off for that driver (counted as a downgrade).
    pub gso: bool,
    /// Use UDP GRO (`UDP_GRO`) on receive (default true): the kernel hands
    /// over up to 64 datagrams of one flow in one buffer, which the driver
    /// splits. Takes effect only for a group of one socket and the uring and
    /// mmsg drivers (see the `gro` module for why); receive buffers then
    /// hold 64 KiB each (memory is touched only as far as datagrams fill it).
    pub gro: bool,
    /// `SO_BUSY_POLL` in microseconds, if permitted (EPERM is ignored).
    pub busy_poll_us: Option<u32>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            batch: 64,
            max_datagram: 16_384,
            gso: true,
            gro: true,
            busy_poll_us: None,
        }
    }
}

impl DriverConfig {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(format!("batch {} not in 1..={MAX_BATCH}", self.batch));
        }
        if self.max_datagram == 0 || self.max_datagram > 65_535 {
            return Err(format!(
                "max_datagram {} not in 1..=65535",
                self.max_datagram
            ));
        }
        Ok(())
    }
}

/// Counters of one driver. Plain numbers, read with [`crate::Driver::stats`].
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverStats {
    /// Kernel crossings made by the driver (recv/send/poll/enter/eventfd...).
    pub syscalls: u64,
    /// `recv` calls that returned at least one datagram.
    pub rx_batches: u64,
    /// Datagrams handed to the caller.
    pub rx_datagrams: u64,
    /// `flush` calls that had something to send.
    pub tx_batches: u64,
    /// Datagrams the kernel accepted.
    pub tx_datagrams: u64,
    /// GSO super-buffers the kernel accepted (each carries ≥ 2 datagrams).
    pub gso_sends: u64,
    /// Coalesced receive buffers (GRO) the driver split into ≥ 2 datagrams.
    pub gro_buffers: u64,
    /// Times `recv` actually blocked in the kernel.
    pub parks: u64,
    /// Times `recv` observed a [`crate::Waker::wake`].
    pub wakes: u64,
    /// Datagrams dropped on receive (truncated, socket errors).
    pub rx_errors: u64,
    /// Datagrams dropped on transmit (kernel refused, oversize, no slot).
    pub tx_errors: u64,
    /// Capability downgrades: a driver kind refused at open under
    /// `DriverChoice::Auto`, or GSO turned off after the kernel refused it.
    pub downgrades: u64,
    /// Times the tx path had to wait for in-flight sends to complete before
    /// reusing its buffer (uring only: its sends complete asynchronously).
    pub tx_waits: u64,
}
