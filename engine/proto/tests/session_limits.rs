//! Sessions a peer can make a node hold (issue 12), driven by hand in
//! virtual time: one identity opening a session per lane is held to
//! `max_sessions_per_peer`, and a table filled by freshly minted identities
//! that keep their sessions alive locks out neither a configured peer (its
//! reservation) nor an honest newcomer (who evicts the stalest unreserved
//! session). Figures are printed with `--nocapture`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::{Identity, NodeId};
use net_proto::{
    CallKind, CloseReason, Endpoint, EndpointConfig, Event, HandshakeLimits, ServiceId, SessionId,
    CLOSE_EVICTED,
};

const PSK: [u8; 32] = [7; 32];
/// Wall clock at `t0` (handshake timestamps derive from it).
const WALL: u64 = 1_000_000_000;

fn server_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 4000))
}

/// A distinct address per `n`.
fn addr(n: u32) -> SocketAddr {
    let [_, b, c, d] = n.to_be_bytes();
    SocketAddr::from(([10, b, c, d], 5000))
}

/// Identity number `n` (the server is 0).
fn identity(n: u64) -> Identity {
    let mut seed = [0xa5; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    Identity::from_seed(&seed)
}

fn server_config() -> EndpointConfig {
    let mut cfg = EndpointConfig::new(identity(0), PSK);
    cfg.handshake_limits = HandshakeLimits::unlimited();
    cfg
}

struct Peer {
    ep: Endpoint,
    addr: SocketAddr,
    session: Option<SessionId>,
}

/// One server and its peers, datagrams delivered at once in virtual time.
struct Mesh {
    t0: Instant,
    now: Instant,
    server: Endpoint,
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, usize>,
    buf: Vec<u8>,
    /// Peers whose session the server reported `Connected`, in order.
    connected: Vec<NodeId>,
    /// `Closed` reasons the server reported.
    closed: Vec<CloseReason>,
}

impl Mesh {
    fn new(cfg: EndpointConfig) -> Self {
        let t0 = Instant::now();
        let mut server = Endpoint::new(cfg, t0, WALL);
        server.register_service(ServiceId::of("slow"), 1000);
        Mesh {
            t0,
            now: t0,
            server,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            buf: vec![0; 65536],
            connected: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// A peer endpoint for `id` on `lane` at `addr`; its wall clock moves
    /// with virtual time, so a later endpoint on the same lane is newer.
    fn add_peer(&mut self, id: Identity, lane: u16, addr: SocketAddr) -> usize {
        let mut cfg = EndpointConfig::new(id, PSK);
        cfg.lane = lane;
        let wall = WALL + (self.now - self.t0).as_nanos() as u64;
        let i = self.peers.len();
        self.peers.push(Peer {
            ep: Endpoint::new(cfg, self.now, wall),
            addr,
            session: None,
        });
        self.by_addr.insert(addr, i);
        i
    }

    /// Peer `i` connects, and once established sends an ANNOUNCE, which
    /// confirms the server's half of the session. Whether both sides
    /// hold it afterwards.
    fn connect(&mut self, i: usize) -> bool {
        let (now, id) = (self.now, self.server.public_identity());
        let s = self.peers[i].ep.connect(now, id, server_addr()).unwrap();
        self.peers[i].session = Some(s);
        let seen = self.connected.len();
        self.pump(vec![i]);
        if !self.peers[i].ep.is_established(s) {
            return false;
        }
        self.touch(i);
        let peer = self.peers[i].ep.node_id();
        self.connected[seen..].contains(&peer)
    }

    /// Peer `i` sends something on its session (keeps it alive).
    fn touch(&mut self, i: usize) {
        let now = self.now;
        let p = &mut self.peers[i];
        if let Some(s) = p.session.filter(|&s| p.ep.is_established(s)) {
            p.ep.announce(now, s, b"alive").unwrap();
            self.pump(vec![i]);
        }
    }

    /// Delivers datagrams until nobody has anything to send.
    fn pump(&mut self, mut dirty: Vec<usize>) {
        let Mesh {
            now,
            server,
            peers,
            by_addr,
            buf,
            ..
        } = self;
        let now = *now;
        loop {
            for i in dirty.drain(..) {
                let p = &mut peers[i];
                while let Some(t) = p.ep.poll_transmit(now, buf) {
                    server.handle(now, p.addr, &mut buf[..t.len]);
                }
            }
            server.handle_timeout(now);
            while let Some(t) = server.poll_transmit(now, buf) {
                if let Some(&j) = by_addr.get(&t.dst) {
                    peers[j].ep.handle(now, server_addr(), &mut buf[..t.len]);
                    dirty.push(j);
                }
            }
            if dirty.is_empty() {
                break;
            }
            dirty.sort_unstable();
            dirty.dedup();
        }
        while let Some(e) = self.server.poll_event() {
            match e {
                Event::Connected { peer, .. } => self.connected.push(peer),
                Event::Closed { reason, .. } => self.closed.push(reason),
                Event::Announce { payload, .. } | Event::Request { payload, .. } => {
                    self.server.recycle(payload)
                }
                _ => {}
            }
        }
    }

    /// Peers that were told of their eviction (CLOSE with `CLOSE_EVICTED`).
    fn told_evicted(&mut self) -> usize {
        let mut n = 0;
        for p in &mut self.peers {
            while let Some(e) = p.ep.poll_event() {
                if matches!(
                    e,
                    Event::Closed {
                        reason: CloseReason::Peer(CLOSE_EVICTED),
                        ..
                    }
                ) {
                    n += 1;
                }
            }
        }
        n
    }

    fn evicted_on_server(&self) -> usize {
        self.closed
            .iter()
            .filter(|r| **r == CloseReason::Evicted)
            .count()
    }
}

/// (a) One identity naming 100 lanes holds at most `max_sessions_per_peer`
/// (64) sessions; the other initiations are refused, counted, and leave no
/// state. A reconnect on a lane it holds is still admitted at the limit
/// (it replaces that lane's session, as after a restart).
#[test]
fn one_identity_is_held_to_its_session_limit() {
    let mut m = Mesh::new(server_config());
    let limit = m.server.config().max_sessions_per_peer;
    assert_eq!(limit, 64, "the default");
    let mut held = 0;
    for lane in 0..100u16 {
        m.advance(Duration::from_millis(1));
        let i = m.add_peer(identity(1), lane, addr(1 + u32::from(lane)));
        held += usize::from(m.connect(i));
    }
    let st = m.server.stats().clone();
    eprintln!(
        "one identity, 100 lanes: sessions held {held}, refused {} (peer limit), table {}",
        st.handshake_peer_limit,
        m.server.session_count()
    );
    assert_eq!(held, limit);
    assert_eq!(m.server.session_count(), limit);
    assert_eq!(st.handshake_peer_limit, (100 - limit) as u64);
    assert_eq!(st.handshake_resp_tx, limit as u64, "refusals send nothing");

    // The identity restarts: lane 5 again, newer timestamp. Admitted at the
    // limit; the old lane-5 session gives way once the new one confirms.
    m.advance(Duration::from_secs(1));
    let i = m.add_peer(identity(1), 5, addr(1000));
    assert!(m.connect(i));
    assert_eq!(m.server.session_count(), limit);
    assert!(m.closed.contains(&CloseReason::Superseded));
    // A new lane is still refused.
    let j = m.add_peer(identity(1), 200, addr(1001));
    assert!(!m.connect(j));
    assert_eq!(
        m.server.stats().handshake_peer_limit,
        (100 - limit + 1) as u64
    );
}

/// What a flood left behind.
struct Figures {
    held_by_flood: usize,
    refused: u64,
    evicted: u64,
}

/// `flood` freshly minted identities (one session each, distinct
/// addresses, one per virtual millisecond) fill a table of `max_sessions`
/// with `reserved` slots, then all send again (alive and fresh); then a
/// configured peer and an honest newcomer connect, and the flood goes on
/// for `churn` more identities while the newcomer stays active.
fn flood(max_sessions: usize, reserved: usize, flood: u32, churn: u32) -> Figures {
    let configured = identity(2);
    let mut cfg = server_config();
    cfg.max_sessions = max_sessions;
    cfg.reserved_sessions = reserved;
    cfg.reserved_peers.insert(configured.node_id());
    let mut m = Mesh::new(cfg);
    let started = Instant::now();
    let mut flooders = Vec::new();
    for n in 0..flood {
        m.advance(Duration::from_millis(1));
        let i = m.add_peer(identity(1_000 + u64::from(n)), 0, addr(1_000 + n));
        assert!(
            m.connect(i),
            "a fresh identity connects (evicting if need be)"
        );
        flooders.push(i);
    }
    m.advance(Duration::from_millis(100));
    for &i in &flooders {
        m.touch(i);
    }
    let share = max_sessions - reserved;
    let held_by_flood = m.server.session_count();
    assert_eq!(held_by_flood, (flood as usize).min(share));

    // The configured peer connects into its reservation: nothing evicted.
    let evicted_before = m.server.stats().sessions_evicted;
    m.advance(Duration::from_millis(1));
    let c = m.add_peer(configured, 0, addr(1));
    assert!(m.connect(c), "the configured peer connects");
    assert_eq!(m.server.stats().sessions_evicted, evicted_before);

    // The honest newcomer connects by evicting the stalest flood session.
    m.advance(Duration::from_millis(1));
    let h = m.add_peer(identity(3), 0, addr(2));
    assert!(m.connect(h), "the honest newcomer connects");
    let (hs, cs) = (m.peers[h].session.unwrap(), m.peers[c].session.unwrap());

    // The flood goes on; the newcomer keeps talking and stays.
    for n in 0..churn {
        m.advance(Duration::from_millis(1));
        let i = m.add_peer(identity(100_000 + u64::from(n)), 0, addr(100_000 + n));
        assert!(m.connect(i));
        if n % 16 == 0 {
            m.touch(h);
        }
    }
    m.touch(h);
    m.touch(c);
    assert!(
        m.peers[h].ep.is_established(hs),
        "the newcomer was not evicted"
    );
    assert!(
        m.peers[c].ep.is_established(cs),
        "the configured peer was not evicted"
    );
    // The unreserved share is full (of flood, churn and the newcomer), plus
    // the configured peer.
    let unreserved = (flood + 1 + churn) as usize;
    assert_eq!(m.server.session_count(), unreserved.min(share) + 1);

    let st = m.server.stats().clone();
    let told = m.told_evicted();
    let expected_evictions = unreserved.saturating_sub(share);
    assert_eq!(st.sessions_evicted as usize, expected_evictions);
    assert_eq!(m.evicted_on_server(), expected_evictions);
    assert_eq!(told, expected_evictions, "every evicted peer got CLOSE");
    let refused = st.handshake_peer_limit + st.handshake_table_full + st.handshake_overloaded;
    assert_eq!(refused, 0, "nobody was refused: room was made");
    eprintln!(
        "flood of {flood} fresh identities (+{churn} later) against max_sessions {max_sessions} \
         (reserved {reserved}): held by the flood {held_by_flood}, refused {refused}, evicted {} \
         (CLOSE received by {told}); configured peer and newcomer connected and kept; \
         {:.1} s of wall time",
        st.sessions_evicted,
        started.elapsed().as_secs_f64()
    );
    Figures {
        held_by_flood,
        refused,
        evicted: st.sessions_evicted,
    }
}

/// (b) A small table (256, 32 reserved) filled by 400 fresh identities.
#[test]
fn fresh_identities_lock_out_neither_configured_peer_nor_newcomer() {
    let f = flood(256, 32, 400, 64);
    assert_eq!(f.held_by_flood, 224);
    assert_eq!(f.refused, 0);
    assert_eq!(f.evicted, 400 - 224 + 1 + 64);
}

/// (c) The figure: 4 000 fresh identities against the default table
/// (4 096 sessions, 1 024 reserved).
#[test]
fn four_thousand_fresh_identities_against_the_default_table() {
    let d = EndpointConfig::new(identity(0), PSK);
    let f = flood(d.max_sessions, d.reserved_sessions, 4_000, 64);
    assert_eq!(f.held_by_flood, 3_072);
    assert_eq!(f.evicted, 4_000 - 3_072 + 1 + 64);
}

/// The victim: first from the address holding the most unreserved
/// sessions, then one with no calls in flight, then the one heard from
/// longest ago.
#[test]
fn eviction_prefers_the_crowded_address_then_idle_then_stalest() {
    let mut cfg = server_config();
    cfg.max_sessions = 4;
    cfg.reserved_sessions = 0;
    let mut m = Mesh::new(cfg);
    let join = |m: &mut Mesh, n: u64, a: SocketAddr| {
        m.advance(Duration::from_millis(1));
        let i = m.add_peer(identity(n), 0, a);
        assert!(m.connect(i));
        i
    };
    let alive = |m: &Mesh, i: usize| m.peers[i].ep.is_established(m.peers[i].session.unwrap());
    let same_host = |port| SocketAddr::from(([10, 9, 9, 9], port));
    // Heard from longest ago, but with a call in flight (never answered).
    let busy = join(&mut m, 10, addr(10));
    let (now, s) = (m.now, m.peers[busy].session.unwrap());
    m.peers[busy]
        .ep
        .call(now, s, ServiceId::of("slow"), CallKind::Unary, None, b"q")
        .unwrap();
    m.pump(vec![busy]);
    let idle = join(&mut m, 11, addr(11));
    let crowd_a = join(&mut m, 12, same_host(1));
    let crowd_b = join(&mut m, 13, same_host(2));
    assert_eq!(m.server.session_count(), 4);

    // 1: the crowded address gives way first (its staler session)...
    join(&mut m, 20, addr(20));
    assert!(!alive(&m, crowd_a) && alive(&m, crowd_b) && alive(&m, idle));
    // 2: ...then, all addresses alike, the idle session rather than the
    // busy one, although the busy one was heard from longer ago...
    join(&mut m, 21, addr(21));
    assert!(!alive(&m, idle) && alive(&m, busy) && alive(&m, crowd_b));
    // 3: ...then the stalest idle one.
    join(&mut m, 22, addr(22));
    assert!(!alive(&m, crowd_b) && alive(&m, busy));
    assert_eq!(m.server.stats().sessions_evicted, 3);
    assert_eq!(m.server.session_count(), 4);
    assert_eq!(m.told_evicted(), 3, "each victim got CLOSE");
}

/// Reserved peers: exempt from the half-open bound, never evicted; when
/// only reserved sessions are left, a newcomer is refused (counted) and
/// nothing is kept.
#[test]
fn reserved_sessions_are_never_evicted() {
    let (r1, r2) = (identity(50), identity(51));
    let mut cfg = server_config();
    cfg.max_sessions = 2;
    cfg.reserved_sessions = 1;
    cfg.max_half_open = 1;
    cfg.reserved_peers.extend([r1.node_id(), r2.node_id()]);
    let mut m = Mesh::new(cfg);
    // An unreserved peer's initiation takes the only half-open slot (it
    // never confirms: its response is lost).
    let stranger = m.add_peer(identity(52), 0, addr(52));
    let now = m.now;
    let id = m.server.public_identity();
    m.peers[stranger]
        .ep
        .connect(now, id, server_addr())
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let t = m.peers[stranger].ep.poll_transmit(now, &mut buf).unwrap();
    m.server.handle(now, addr(52), &mut buf[..t.len]);
    while m.server.poll_transmit(now, &mut buf).is_some() {}
    assert_eq!(m.server.session_count(), 1);
    // A reserved peer is not held back by the half-open bound; in the
    // full table, the stranger's half-open session is evicted for the
    // second one.
    let a = m.add_peer(r1, 0, addr(50));
    assert!(m.connect(a));
    let b = m.add_peer(r2, 0, addr(51));
    assert!(m.connect(b));
    assert_eq!(m.server.stats().sessions_evicted, 1);
    // Full of reserved sessions: a newcomer is refused before any
    // public-key work, and nothing is kept.
    let c = m.add_peer(identity(53), 0, addr(53));
    assert!(!m.connect(c));
    let st = m.server.stats();
    assert_eq!(st.handshake_table_full, 1);
    assert_eq!(st.handshake_resp_tx, 3);
    assert_eq!(m.server.session_count(), 2);
}
