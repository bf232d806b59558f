//! Endpoint configuration and the transport parameters exchanged in the handshake.

use std::collections::HashSet;
use std::time::Duration;

use net_crypto::{Backend, Identity, NodeId, Suite};
use zeroize::Zeroizing;

use crate::wire::{Reader, WireError, Writer};

/// Largest UDP payload the endpoint writes by default: the ceiling of
/// path-MTU discovery (PROTOCOL §7.1). Loopback carries it; an Ethernet
/// path stops the search at its MTU.
pub const DEFAULT_MAX_DATAGRAM: usize = 16_384;

/// Default [`EndpointConfig::max_sessions`]: sessions per endpoint (core).
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
/// Default [`EndpointConfig::max_sessions_per_peer`]: a peer opens one
/// session per core, and the engine runs at most 64 cores.
pub const DEFAULT_MAX_SESSIONS_PER_PEER: usize = 64;
/// Default [`EndpointConfig::reserved_sessions`]: a quarter of the table.
pub const DEFAULT_RESERVED_SESSIONS: usize = 1024;

/// Everything an [`Endpoint`](crate::Endpoint) needs that does not change at run time.
///
/// Timers are durations; the endpoint never reads a clock (time comes in as
/// `now`). Defaults suit a LAN or loopback mesh.
pub struct EndpointConfig {
    /// This node's long-term identity; its Noise static key is derived from it.
    pub identity: Identity,
    /// Mesh pre-shared key mixed into every handshake (Noise `psk2`): strangers
    /// without it cannot complete a handshake.
    pub psk: Zeroizing<[u8; 32]>,
    /// AEAD implementation for transport packets.
    pub aead: Backend,
    /// Largest datagram this endpoint writes: the ceiling of path-MTU
    /// discovery, which finds what each path carries (loopback's 64 KiB
    /// lets many calls of a KiB or more share one datagram, one AEAD pass
    /// and one trip through the kernel).
    pub max_datagram: usize,
    /// The size every session starts at, before discovery: what any path
    /// carries (RFC 8899 `BASE_PLPMTU`, 1 200). Equal to `max_datagram`,
    /// it turns discovery off.
    pub base_datagram: usize,
    /// Transport parameters offered to peers.
    pub params: TransportParams,
    /// First handshake retransmission timeout; doubles per attempt.
    pub handshake_retry: Duration,
    /// Handshake attempts before `HandshakeFailed` is reported.
    pub handshake_attempts: u32,
    /// RTT assumed before the first sample (RFC 9002 `kInitialRtt`).
    pub initial_rtt: Duration,
    /// A session with nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// The failure detector (Up / Suspect / Down per peer). Its `heartbeat`
    /// is also the keepalive: a session that has sent nothing for that
    /// long sends a PING, so a live peer is heard at least that often.
    /// Must pass [`DetectorConfig::validate`](crate::DetectorConfig::validate).
    pub detector: crate::DetectorConfig,
    /// Update keys after this many packets sent under one key phase.
    pub rekey_after_packets: u64,
    /// Update keys after a key phase is this old.
    pub rekey_after_time: Duration,
    /// How long the previous receive key stays usable after a key update,
    /// for packets reordered across the update.
    pub key_grace: Duration,
    /// Bound on responder sessions whose handshake is not yet confirmed;
    /// initiations beyond it are dropped and counted, except from peers in
    /// `reserved_peers` (bounded by `max_sessions_per_peer` instead).
    pub max_half_open: usize,
    /// Bound on sessions of any phase and role (the session table). When it
    /// is full, an unreserved peer's session is evicted to make room; see
    /// the admission policy in `engine/proto/src/admission.rs`.
    pub max_sessions: usize,
    /// Responder sessions (half-open and established) one peer identity may
    /// hold; an initiation on a new lane beyond it is refused and counted
    /// (`handshake_peer_limit`). A peer legitimately opens one per core.
    pub max_sessions_per_peer: usize,
    /// Slots of `max_sessions` that peers outside `reserved_peers` cannot
    /// take: unreserved peers together hold at most `max_sessions −
    /// reserved_sessions` responder sessions.
    pub reserved_sessions: usize,
    /// Node ids of the configured peers: their sessions use the reservation
    /// and are never evicted. Empty by default; the engine fills it from its
    /// configured peers.
    pub reserved_peers: HashSet<NodeId, ahash::RandomState>,
    /// Seed for the endpoint's receiver-index RNG (deterministic simulations).
    pub rng_seed: u64,
    /// The low `core_bits` bits of every receiver index this endpoint chooses
    /// equal `core_id`, so the kernel can steer packets to the owning core.
    pub core_id: u32,
    /// See `core_id`.
    pub core_bits: u32,
    /// Lane sent in handshake initiations: replay protection keeps one
    /// timestamp per (peer, lane), so per-core sessions do not collide.
    pub lane: u16,
    /// Caps on initiations processed per second (global, and per source
    /// under load) before any public-key work.
    pub handshake_limits: crate::HandshakeLimits,
    /// Stateless resets this endpoint sends per second at most (answers to
    /// data packets for sessions it does not hold; see `crate::reset`).
    pub reset_limit: crate::RateLimit,
    /// Congestion controller of every session (default CUBIC).
    pub congestion: crate::CongestionControl,
    /// Test hook: ignore the peer's call and stream credit, to play a
    /// misbehaving peer in hostile-input tests. Never set in production.
    #[doc(hidden)]
    pub testing_ignore_credit: bool,
}

impl EndpointConfig {
    /// A configuration with defaults for everything but the identity and PSK.
    pub fn new(identity: Identity, psk: [u8; 32]) -> Self {
        EndpointConfig {
            identity,
            psk: Zeroizing::new(psk),
            aead: Backend::Ring,
            max_datagram: DEFAULT_MAX_DATAGRAM,
            base_datagram: crate::pmtu::BASE_DATAGRAM,
            params: TransportParams::default(),
            handshake_retry: Duration::from_millis(250),
            handshake_attempts: 8,
            initial_rtt: Duration::from_millis(50),
            idle_timeout: Duration::from_secs(30),
            detector: crate::DetectorConfig::default(),
            rekey_after_packets: 1 << 32,
            rekey_after_time: Duration::from_secs(120),
            key_grace: Duration::from_secs(2),
            max_half_open: 1024,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_peer: DEFAULT_MAX_SESSIONS_PER_PEER,
            reserved_sessions: DEFAULT_RESERVED_SESSIONS,
            reserved_peers: HashSet::default(),
            rng_seed: 0,
            core_id: 0,
            core_bits: 0,
            lane: 0,
            handshake_limits: crate::HandshakeLimits::default(),
            reset_limit: crate::DEFAULT_RESET_LIMIT,
            congestion: crate::CongestionControl::default(),
            testing_ignore_credit: false,
        }
    }
}

/// Smallest `max_calls` a peer may announce (so calls can be queued before
/// the handshake completes).
pub const MIN_MAX_CALLS: u32 = 16;
/// Smallest `stream_window` a peer may announce.
pub const MIN_STREAM_WINDOW: u32 = 4096;
/// Default `max_message`: the largest body we accept (gRPC's default is 4 MiB).
pub const DEFAULT_MAX_MESSAGE: u32 = 16 << 20;
/// Default `reassembly_window`: two largest messages at once, so one large
/// transfer does not hold up every other call's segmented bodies.
pub const DEFAULT_REASSEMBLY_WINDOW: u32 = 32 << 20;
/// Credit units a body under reassembly costs on top of its length (its
/// table entry and piece record), so tiny segmented bodies are not free
/// (`docs/PROTOCOL.md` §9).
pub const PARTIAL_CHARGE: u64 = 1024;

/// Limits each side announces in its handshake message; they bound what the
/// *peer* may send, so a receiver's memory is bounded by its own choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportParams {
    /// Concurrent calls the peer may have open towards us.
    pub max_calls: u32,
    /// Bytes of stream data the peer may send per call direction ahead of
    /// what we have delivered.
    pub stream_window: u32,
    /// Longest we delay an ACK; the peer adds it to its PTO.
    pub max_ack_delay_us: u32,
    /// Largest datagram we accept.
    pub max_datagram: u16,
    /// AEAD suites we run fast, as [`Suite::bit`]s: both sides key the
    /// session with [`Suite::agree`] of the two offers.
    pub aead_suites: u8,
    /// Largest message body (request, response or stream message) we
    /// accept; larger ones are refused with `PAYLOAD_TOO_LARGE`.
    pub max_message: u32,
    /// Credit units of segmented bodies the peer may have under reassembly
    /// with us at once (each costs its length plus [`PARTIAL_CHARGE`]);
    /// never below `max_message + PARTIAL_CHARGE` as decoded.
    pub reassembly_window: u32,
}

impl Default for TransportParams {
    fn default() -> Self {
        TransportParams {
            max_calls: 1024,
            stream_window: 1 << 20,
            max_ack_delay_us: 5_000,
            max_datagram: 65_000,
            aead_suites: Suite::offer(Backend::Ring),
            max_message: DEFAULT_MAX_MESSAGE,
            reassembly_window: DEFAULT_REASSEMBLY_WINDOW,
        }
    }
}

impl TransportParams {
    /// Encoded size (fixed).
    pub const LEN: usize = 23;

    /// Writes the parameters (fixed layout, big-endian).
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u32(self.max_calls)?;
        w.put_u32(self.stream_window)?;
        w.put_u32(self.max_ack_delay_us)?;
        w.put_u16(self.max_datagram)?;
        w.put_u8(self.aead_suites)?;
        w.put_u32(self.max_message)?;
        w.put_u32(self.reassembly_window)
    }

    /// Reads parameters; values are clamped to sane ranges so a hostile peer
    /// cannot make us wait for minutes or send datagrams nobody can carry.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(TransportParams {
            max_calls: r.get_u32()?.max(MIN_MAX_CALLS),
            stream_window: r.get_u32()?.max(MIN_STREAM_WINDOW),
            max_ack_delay_us: r.get_u32()?.min(100_000),
            max_datagram: r.get_u16()?.max(1200),
            aead_suites: r.get_u8()?,
            max_message: r.get_u32()?,
            reassembly_window: r.get_u32()?,
        }
        .with_room_for_a_message())
    }

    /// `reassembly_window` raised to hold one `max_message` body, so a
    /// peer cannot announce a limit that no message of its own could meet.
    fn with_room_for_a_message(mut self) -> Self {
        let least = u64::from(self.max_message) + PARTIAL_CHARGE;
        self.reassembly_window = u32::try_from(least)
            .unwrap_or(u32::MAX)
            .max(self.reassembly_window);
        self
    }

    /// Credit units a segmented body of `len` bytes uses of the peer's
    /// `reassembly_window`.
    pub fn reassembly_charge(len: u64) -> u64 {
        len + PARTIAL_CHARGE
    }

    /// Peer's ACK delay as a duration.
    pub fn max_ack_delay(&self) -> Duration {
        Duration::from_micros(u64::from(self.max_ack_delay_us))
    }
}
