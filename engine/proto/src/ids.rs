//! Identifier newtypes carried on the wire.
//!
//! Each wraps the exact integer the wire carries so that conversion is free
//! and lossless in both directions; the newtypes exist so that a call id can
//! never be passed where a service id is expected.

use std::fmt;

use blake2::{Blake2s256, Digest};

use crate::wire::registry::wire_registry;
use crate::wire::WireError;

/// Session index chosen by the receiving end of a session.
///
/// Every packet after the first handshake message carries the receiver's
/// index in bytes 4..8, where the kernel's BPF steering program reads it; its
/// low bits therefore name the core that owns the session (an engine concern,
/// opaque to the protocol). The protocol only requires it to be unique among
/// the receiver's live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverIndex(u32);

impl ReceiverIndex {
    /// Wraps a raw index.
    #[inline]
    pub const fn new(v: u32) -> Self {
        Self(v)
    }

    /// The raw index as carried on the wire.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ReceiverIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Which end of a session a party is: the one that sent the handshake
/// initiation, or the one that answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Sent HandshakeInit.
    Initiator,
    /// Answered with HandshakeResponse.
    Responder,
}

impl Side {
    /// The other end of the same session.
    #[inline]
    pub const fn opposite(self) -> Side {
        match self {
            Side::Initiator => Side::Responder,
            Side::Responder => Side::Initiator,
        }
    }
}

/// Identifier of one nRPC call within a session.
///
/// Both ends open calls, so the low bit names the opener (0 = session
/// Initiator, 1 = Responder) and the remaining bits are the opener's own
/// sequence number: the two ends allocate ids independently without ever
/// colliding. On the wire it is a varint of the raw value, so the raw value
/// must stay ≤ 2^62 − 1, which bounds the sequence to [`CallId::MAX_SEQ`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl CallId {
    /// Largest per-opener sequence number whose id still fits a varint.
    pub const MAX_SEQ: u64 = (1 << 61) - 1;

    /// The id of the `seq`-th call opened by `opener`.
    ///
    /// # Panics
    /// If `seq > MAX_SEQ`: such an id could not be sent. Call-credit limits
    /// keep real sequences many orders of magnitude below this; use
    /// [`CallId::try_new`] where the sequence is not already bounded.
    #[inline]
    pub const fn new(seq: u64, opener: Side) -> Self {
        match Self::try_new(seq, opener) {
            Some(id) => id,
            None => panic!("CallId sequence exceeds CallId::MAX_SEQ"),
        }
    }

    /// Like [`CallId::new`], but `None` when `seq > MAX_SEQ`.
    #[inline]
    pub const fn try_new(seq: u64, opener: Side) -> Option<Self> {
        if seq > Self::MAX_SEQ {
            return None;
        }
        let bit = match opener {
            Side::Initiator => 0,
            Side::Responder => 1,
        };
        Some(Self(seq << 1 | bit))
    }

    /// The per-opener sequence number.
    #[inline]
    pub const fn seq(self) -> u64 {
        self.0 >> 1
    }

    /// Which end of the session opened the call.
    #[inline]
    pub const fn opener(self) -> Side {
        if self.0 & 1 == 0 {
            Side::Initiator
        } else {
            Side::Responder
        }
    }

    /// The raw value carried on the wire.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Wraps a raw wire value. Any u64 is a valid id; one above 2^62 − 1
    /// fails to encode with [`WireError::VarintOverflow`].
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.opener() {
            Side::Initiator => 'i',
            Side::Responder => 'r',
        };
        write!(f, "{who}{}", self.seq())
    }
}

/// Service identifier: a hash of the service name, so that names of any
/// length cost 8 bytes on the wire and need no registry.
///
/// 64 bits make an accidental collision among the services of one mesh
/// negligible; a deliberate one buys nothing, since the callee gate
/// authorizes by the caller's authenticated node id, not by service id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(u64);

impl ServiceId {
    /// Domain separator so that service ids never coincide with any other
    /// BLAKE2s use in the protocol.
    const DOMAIN: &'static [u8] = b"net/service/v1\0";

    /// The id of the service called `name`: the first 8 bytes, big-endian,
    /// of BLAKE2s-256(`"net/service/v1\0"` ‖ name).
    pub fn of(name: &str) -> Self {
        let digest = Blake2s256::new()
            .chain_update(Self::DOMAIN)
            .chain_update(name.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self(u64::from_be_bytes(first))
    }

    /// Wraps a raw wire value.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value carried on the wire.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Outcome of an nRPC call, as carried in RPC_RESPONSE and CANCEL.
///
/// Codes below [`Status::APP_BASE`] are defined by the protocol; codes at or
/// above it belong to the application. Unknown protocol codes are preserved,
/// not rejected, so that a newer peer's code reaches the caller intact.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(u16);

/// By name, as [`Display`](fmt::Display) writes it: `Status(NotFound)`,
/// `Status(app(3))`, `Status(unknown(42))`.
impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({self})")
    }
}

impl Status {
    /// The call succeeded.
    pub const OK: Status = Status(0);
    /// No such service on the callee.
    pub const NOT_FOUND: Status = Status(1);
    /// The callee gate refused the caller's node id.
    pub const CAPABILITY_DENIED: Status = Status(2);
    /// The deadline expired before a response.
    pub const TIMEOUT: Status = Status(3);
    /// The callee is over its limits; retry later.
    pub const BACKPRESSURE: Status = Status(4);
    /// The caller cancelled the call.
    pub const CANCELLED: Status = Status(5);
    /// The handler failed.
    pub const INTERNAL: Status = Status(6);
    /// A payload exceeded the receiver's limit.
    pub const PAYLOAD_TOO_LARGE: Status = Status(7);
    /// The peer violated the call protocol (for example sent stream data on
    /// a unary call).
    pub const PROTOCOL_ERROR: Status = Status(8);
    /// The session carrying the call closed (idle timeout, handshake failure,
    /// peer gone) before an answer arrived.
    pub const UNAVAILABLE: Status = Status(9);
    /// The call ended before every stream message the caller sent was
    /// delivered (for example the callee answered early). Set locally by
    /// the caller's side instead of an OK that would claim too much.
    pub const INCOMPLETE: Status = Status(10);
    /// First application-defined code.
    pub const APP_BASE: u16 = 0x1000;

    const NAMES: [&'static str; 11] = [
        "Ok",
        "NotFound",
        "CapabilityDenied",
        "Timeout",
        "Backpressure",
        "Cancelled",
        "Internal",
        "PayloadTooLarge",
        "ProtocolError",
        "Unavailable",
        "Incomplete",
    ];

    /// Application code `code`, carried as `0x1000 + code`; `None` if that
    /// does not fit a u16 (`code > 0xefff`).
    #[inline]
    pub const fn app(code: u16) -> Option<Status> {
        match code.checked_add(Self::APP_BASE) {
            Some(raw) => Some(Status(raw)),
            None => None,
        }
    }

    /// The application code if this is an application status.
    #[inline]
    pub const fn app_code(self) -> Option<u16> {
        self.0.checked_sub(Self::APP_BASE)
    }

    /// True for [`Status::OK`].
    #[inline]
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// True for application-defined codes.
    #[inline]
    pub const fn is_app(self) -> bool {
        self.0 >= Self::APP_BASE
    }

    /// Wraps a raw wire value.
    #[inline]
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }

    /// The raw value carried on the wire.
    #[inline]
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = self.app_code() {
            return write!(f, "app({code})");
        }
        match Self::NAMES.get(usize::from(self.0)) {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

wire_registry! {
    /// Shape of an nRPC call: which directions carry a stream of messages
    /// rather than exactly one (`docs/PROTOCOL.md` §1.3). An undefined byte in
    /// an RPC_REQUEST is [`WireError::InvalidCallKind`].
    pub enum CallKind: u8, unknown = WireError::InvalidCallKind {
        /// One request, one response.
        Unary = 0 => "Unary",
        /// One request, a stream of responses.
        ServerStream = 1 => "ServerStream",
        /// A stream of requests, one response.
        ClientStream = 2 => "ClientStream",
        /// Streams in both directions.
        Duplex = 3 => "Duplex",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_id_packs_opener_in_low_bit() {
        let a = CallId::new(5, Side::Initiator);
        let b = CallId::new(5, Side::Responder);
        assert_eq!((a.get(), b.get()), (10, 11));
        assert_eq!((a.seq(), a.opener()), (5, Side::Initiator));
        assert_eq!((b.seq(), b.opener()), (5, Side::Responder));
        assert_eq!(CallId::from_raw(11), b);
        assert_eq!(a.to_string(), "i5");
        assert_eq!(b.to_string(), "r5");
        let max = CallId::new(CallId::MAX_SEQ, Side::Responder);
        assert_eq!(max.get(), crate::wire::MAX_VARINT);
        assert_eq!(CallId::try_new(CallId::MAX_SEQ + 1, Side::Initiator), None);
        assert_eq!(Side::Initiator.opposite(), Side::Responder);
        assert_eq!(Side::Responder.opposite(), Side::Initiator);
    }

    #[test]
    fn status_debug_names_the_code() {
        assert_eq!(format!("{:?}", Status::NOT_FOUND), "Status(NotFound)");
        let app = Status::app(3).expect("fits");
        assert_eq!(format!("{app:?}"), "Status(app(3))");
        assert_eq!(format!("{:?}", Status::from_raw(42)), "Status(unknown(42))");
    }

    #[test]
    #[should_panic(expected = "MAX_SEQ")]
    fn call_id_new_rejects_unsendable_sequence() {
        let _ = CallId::new(1 << 61, Side::Initiator);
    }

    #[test]
    fn service_id_is_domain_separated_blake2s_prefix() {
        let expected = {
            let d = Blake2s256::digest(b"net/service/v1\0echo");
            u64::from_be_bytes(d[..8].try_into().unwrap())
        };
        assert_eq!(ServiceId::of("echo").get(), expected);
        // Test vectors quoted in docs/PROTOCOL.md §1.3.
        assert_eq!(ServiceId::of("echo").get(), 0xcc47_ecfa_3de9_d949);
        assert_eq!(ServiceId::of("").get(), 0x1f47_6b49_cce5_6391);
        assert_ne!(ServiceId::of("echo"), ServiceId::of("echo2"));
        assert_ne!(ServiceId::of(""), ServiceId::from_raw(0));
        assert_eq!(ServiceId::from_raw(0xab).to_string(), "00000000000000ab");
    }

    #[test]
    fn status_codes_and_names() {
        assert!(Status::OK.is_ok());
        assert!(!Status::CANCELLED.is_ok());
        assert_eq!(Status::OK.to_string(), "Ok");
        assert_eq!(Status::CAPABILITY_DENIED.to_string(), "CapabilityDenied");
        assert_eq!(Status::PROTOCOL_ERROR.to_string(), "ProtocolError");
        assert_eq!(Status::from_raw(42).to_string(), "unknown(42)");
        let app = Status::app(7).unwrap();
        assert_eq!(app.get(), 0x1007);
        assert!(app.is_app() && !app.is_ok());
        assert_eq!(app.app_code(), Some(7));
        assert_eq!(app.to_string(), "app(7)");
        assert_eq!(Status::app(0xefff).map(Status::get), Some(u16::MAX));
        assert_eq!(Status::app(0xf000), None);
        assert!(!Status::INTERNAL.is_app());
        assert_eq!(Status::INTERNAL.app_code(), None);
    }

    #[test]
    fn call_kind_from_u8() {
        for k in [
            CallKind::Unary,
            CallKind::ServerStream,
            CallKind::ClientStream,
            CallKind::Duplex,
        ] {
            assert_eq!(CallKind::try_from(k as u8), Ok(k));
        }
        assert_eq!(CallKind::try_from(4), Err(WireError::InvalidCallKind(4)));
    }

    #[test]
    fn receiver_index_display_is_fixed_width_hex() {
        assert_eq!(ReceiverIndex::new(0x1f).to_string(), "0000001f");
        assert_eq!(ReceiverIndex::new(7).get(), 7);
    }
}
