//! Announcement classes, capabilities and the announcement body.

use net_crypto::{blake2s, NodeId};
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};

use crate::envelope::{sealed, EnvelopeBody};
use crate::secret::{GroupId, SubnetId};
use crate::{serde_util, MAX_ALLOW_LIST, MAX_ANNOUNCEMENT, MAX_CAPABILITIES, MAX_TAG_LEN};

/// Domain separator for [`ClassHash::of`].
const CLASS_DOMAIN: &[u8] = b"net/class/v1\0";

/// Prefix of the capability tag a service advertises: `nrpc:<service>`.
/// The same string in a token chain's scope grants the right to *call*
/// the service where it is served with `require_token`.
pub const NRPC_TAG_PREFIX: &str = "nrpc:";

/// Prefix of the token scope item that grants the right to *serve* a
/// service: a caller routing by service name (`call_service`) trusts a
/// provider that presents a chain, rooted in the caller's token roots,
/// whose leaf scope holds `nrpc-serve:<service>`.
///
/// Distinct from [`NRPC_TAG_PREFIX`] on purpose: a token that lets a node
/// call `vault` must not make every other caller send it their `vault`
/// requests. A scope item is at most [`crate::MAX_SCOPE_ITEM_LEN`] bytes,
/// so a grant can name services of up to 53 bytes.
pub const NRPC_SERVE_SCOPE_PREFIX: &str = "nrpc-serve:";

/// What kind of state an announcement carries, named by a hash of a
/// string: the first 8 bytes (big-endian) of a domain-separated BLAKE2s.
///
/// Part of the signed transcript, so a signature made for one class can
/// never be replayed as another.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Ord, PartialOrd, Debug, Serialize, Deserialize)]
pub struct ClassHash(pub u64);

impl ClassHash {
    /// `ClassHash::of("capabilities")`, the class the callee gate reads.
    pub const CAPABILITIES: ClassHash = ClassHash(0xe690_1e4b_bd74_a89d);
    /// `ClassHash::of("reservations")`, reserved for
    /// [`crate::SignedReservation`]: an announcement may not use it.
    pub const RESERVATIONS: ClassHash = ClassHash(0x060b_7982_4d0e_e644);

    /// The class named `name`.
    pub fn of(name: &str) -> ClassHash {
        let h = blake2s(&[CLASS_DOMAIN, name.as_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        ClassHash(u64::from_be_bytes(first))
    }
}

/// One advertised capability (e.g. `nrpc:echo`) and who may use it.
///
/// Allow-list semantics ([`Capability::allows`]): if all three lists are
/// empty the capability is open to any authenticated peer; otherwise a
/// peer is allowed if it is listed in `allowed_nodes`, **or** holds a group
/// whose tag is in `allowed_groups`, **or** holds a subnet whose tag is in
/// `allowed_subnets` (a union). `allowed_groups` / `allowed_subnets` hold
/// the public *tags* ([`GroupId::tag`], [`SubnetId::tag`]), never the
/// secrets: announcements are broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// The tag, e.g. `nrpc:echo`; 1 to [`MAX_TAG_LEN`] bytes.
    pub tag: String,
    /// Node ids allowed to use it; at most [`MAX_ALLOW_LIST`].
    #[serde(with = "serde_util::node_ids")]
    pub allowed_nodes: Vec<NodeId>,
    /// Group tags ([`GroupId::tag`]) whose members may use it; at most
    /// [`MAX_ALLOW_LIST`].
    #[serde(deserialize_with = "serde_util::allow_list")]
    pub allowed_groups: Vec<[u8; 32]>,
    /// Subnet tags ([`SubnetId::tag`]) whose members may use it; at most
    /// [`MAX_ALLOW_LIST`].
    #[serde(deserialize_with = "serde_util::allow_list")]
    pub allowed_subnets: Vec<[u8; 16]>,
}

/// Constant-time membership of a public tag in a list (tags are not
/// secret, but the loop has no early exit anyway).
fn contains_tag<const N: usize>(list: &[[u8; N]], tag: &[u8; N]) -> bool {
    let hit = list
        .iter()
        .fold(Choice::from(0), |acc, t| acc | t[..].ct_eq(&tag[..]));
    bool::from(hit)
}

impl Capability {
    /// A capability open to any authenticated peer.
    pub fn open(tag: impl Into<String>) -> Capability {
        Capability {
            tag: tag.into(),
            allowed_nodes: Vec::new(),
            allowed_groups: Vec::new(),
            allowed_subnets: Vec::new(),
        }
    }

    /// A capability only the listed nodes may use.
    pub fn for_nodes(tag: impl Into<String>, nodes: Vec<NodeId>) -> Capability {
        Capability {
            allowed_nodes: nodes,
            ..Capability::open(tag)
        }
    }

    /// The tag of service `service`: `nrpc:<service>`.
    pub fn service_tag(service: &str) -> String {
        format!("{NRPC_TAG_PREFIX}{service}")
    }

    /// Whether this is the capability of service `service` (without
    /// allocating the tag).
    pub fn is_service(&self, service: &str) -> bool {
        self.tag.strip_prefix(NRPC_TAG_PREFIX) == Some(service)
    }

    /// Whether no allow-list restricts it.
    pub fn is_open(&self) -> bool {
        self.allowed_nodes.is_empty()
            && self.allowed_groups.is_empty()
            && self.allowed_subnets.is_empty()
    }

    /// Whether `peer`, holding `peer_groups` and `peer_subnets`, may use
    /// this capability (see the type docs for the semantics).
    ///
    /// `peer` must be the session's authenticated node id and the
    /// memberships must come from the engine's own knowledge of that
    /// session, never from anything the peer wrote into a frame.
    pub fn allows(
        &self,
        peer: &NodeId,
        peer_groups: &[GroupId],
        peer_subnets: &[SubnetId],
    ) -> bool {
        if self.is_open() || self.allowed_nodes.contains(peer) {
            return true;
        }
        let group = !self.allowed_groups.is_empty()
            && peer_groups
                .iter()
                .any(|g| contains_tag(&self.allowed_groups, &g.tag()));
        let subnet = !self.allowed_subnets.is_empty()
            && peer_subnets
                .iter()
                .any(|s| contains_tag(&self.allowed_subnets, &s.tag()));
        group || subnet
    }

    /// Field limits: a non-empty tag of at most [`MAX_TAG_LEN`] bytes and
    /// allow-lists of at most [`MAX_ALLOW_LIST`] entries each.
    fn within_limits(&self) -> bool {
        !self.tag.is_empty()
            && self.tag.len() <= MAX_TAG_LEN
            && self.allowed_nodes.len() <= MAX_ALLOW_LIST
            && self.allowed_groups.len() <= MAX_ALLOW_LIST
            && self.allowed_subnets.len() <= MAX_ALLOW_LIST
    }
}

/// The signed content of an announcement: a node's capabilities of one
/// class, with a sequence number and a lifetime.
///
/// Invariants checked by [`crate::Signed::verify`]: `version ==
/// VERSION`, `class != RESERVATIONS`, `node_id` is the signer's,
/// `ttl_ms <= MAX_TTL_MS`, and `issued_at_ms` is neither in the future
/// (beyond skew) nor so old that `issued_at_ms + ttl_ms <= now`. Field
/// limits (checked on decode and sign): at most [`MAX_CAPABILITIES`]
/// capabilities, with distinct tags.
///
/// `seq` must increase with every announcement a node makes, across
/// restarts too (a fold refuses a seq that is not newer); deriving it from
/// the issuing time (`issued_at_ms`) achieves that without storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementBody {
    /// Format version; [`crate::VERSION`].
    pub version: u8,
    /// What kind of state this is; [`ClassHash::CAPABILITIES`] for the gate.
    pub class: ClassHash,
    /// The announcing node; must be the signer's node id.
    #[serde(with = "serde_util::node_id")]
    pub node_id: NodeId,
    /// Sequence number; a fold applies only a newer one.
    pub seq: u64,
    /// When it was issued (Unix ms).
    pub issued_at_ms: u64,
    /// How long it stays valid after `issued_at_ms`.
    pub ttl_ms: u64,
    /// The capabilities.
    #[serde(deserialize_with = "serde_util::capabilities")]
    pub capabilities: Vec<Capability>,
}

impl AnnouncementBody {
    /// A version-1 capabilities announcement.
    pub fn new(
        node_id: NodeId,
        seq: u64,
        issued_at_ms: u64,
        ttl_ms: u64,
        capabilities: Vec<Capability>,
    ) -> AnnouncementBody {
        AnnouncementBody {
            version: crate::VERSION,
            class: ClassHash::CAPABILITIES,
            node_id,
            seq,
            issued_at_ms,
            ttl_ms,
            capabilities,
        }
    }

    /// When it expires: `issued_at_ms + ttl_ms` (saturating).
    pub fn expires_at_ms(&self) -> u64 {
        self.issued_at_ms.saturating_add(self.ttl_ms)
    }

    /// The capability with tag `tag`, if any.
    pub fn capability(&self, tag: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.tag == tag)
    }
}

impl sealed::Sealed for AnnouncementBody {}

impl EnvelopeBody for AnnouncementBody {
    const DOMAIN: &'static [u8] = b"net/announce/v1\0";
    const MAX_WIRE: usize = MAX_ANNOUNCEMENT;

    fn version(&self) -> u8 {
        self.version
    }
    fn class(&self) -> ClassHash {
        self.class
    }
    fn class_ok(&self) -> bool {
        self.class != ClassHash::RESERVATIONS
    }
    fn node_id(&self) -> &NodeId {
        &self.node_id
    }
    fn issued_at_ms(&self) -> u64 {
        self.issued_at_ms
    }
    fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }
    fn within_limits(&self) -> bool {
        let caps = &self.capabilities;
        caps.len() <= MAX_CAPABILITIES
            && caps.iter().all(Capability::within_limits)
            && caps
                .iter()
                .enumerate()
                .all(|(i, c)| caps[..i].iter().all(|p| p.tag != c.tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_constants_match_their_names() {
        assert_eq!(ClassHash::of("capabilities"), ClassHash::CAPABILITIES);
        assert_eq!(ClassHash::of("reservations"), ClassHash::RESERVATIONS);
        assert_ne!(ClassHash::of("capabilities"), ClassHash::of("capabilitie"));
    }

    #[test]
    fn service_tags() {
        let c = Capability::open(Capability::service_tag("echo"));
        assert_eq!(c.tag, "nrpc:echo");
        assert!(c.is_service("echo"));
        assert!(!c.is_service("ech"));
        assert!(!Capability::open("echo").is_service("echo"));
    }

    #[test]
    fn limits() {
        let id = NodeId([1; 32]);
        let mut b = AnnouncementBody::new(id, 1, 0, 1, vec![Capability::open("a")]);
        assert!(b.within_limits());
        b.capabilities.push(Capability::open("a"));
        assert!(!b.within_limits(), "duplicate tags");
        b.capabilities[1].tag = String::new();
        assert!(!b.within_limits(), "empty tag");
        b.capabilities[1].tag = "x".repeat(MAX_TAG_LEN + 1);
        assert!(!b.within_limits(), "long tag");
        b.capabilities[1].tag = "x".repeat(MAX_TAG_LEN);
        assert!(b.within_limits());
    }
}
