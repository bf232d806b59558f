//! The node's view of its peers' liveness, merged from its cores' failure
//! detectors.
//!
//! Each core's endpoint judges the peers it has sessions with
//! (`net_proto::detector`); a core reports every change of its view here.
//! The node's state of a peer is the best any core holds (Up over Suspect
//! over Down): one core still hearing a peer means the peer is alive. A
//! change of that merged state is published to every subscriber, from the
//! core thread that caused it (changes are rare; subscribers must not
//! block).

use std::sync::{Arc, Mutex};

use net_crypto::NodeId;
use net_proto::{FastMap, PeerEvent, PeerState};

/// A subscriber to merged peer-state changes.
pub type PeerListener = Arc<dyn Fn(&PeerEvent) + Send + Sync>;

/// Most peers the board remembers: beyond it, peers that every core
/// reports Down are forgotten first (each core's detector is bounded the
/// same way, by `DetectorConfig::max_peers`).
const MAX_PEERS: usize = 65_536;

#[derive(Default)]
struct Board {
    /// Per peer, each core's latest view (`None`: that core does not watch it).
    views: FastMap<NodeId, Vec<Option<PeerState>>>,
    listeners: Vec<PeerListener>,
}

/// Shared by the node and its cores; locked only when a view changes or a
/// query runs.
pub(crate) struct PeerBoard {
    cores: usize,
    inner: Mutex<Board>,
}

/// Best of the views: Up over Suspect over Down; `None` if no core watches.
fn merged(views: &[Option<PeerState>]) -> Option<PeerState> {
    let rank = |s: &PeerState| match s {
        PeerState::Up => 2,
        PeerState::Suspect => 1,
        _ => 0,
    };
    views.iter().flatten().copied().max_by_key(rank)
}

impl PeerBoard {
    pub fn new(cores: usize) -> Self {
        PeerBoard {
            cores: cores.max(1),
            inner: Mutex::new(Board::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Core `core` now sees `e.peer` as `e.state`; listeners hear of it if
    /// the node's merged state changed.
    pub fn report(&self, core: usize, e: &PeerEvent) {
        let mut b = self.lock();
        if !b.views.contains_key(&e.peer) && b.views.len() >= MAX_PEERS {
            let down: Vec<NodeId> = b
                .views
                .iter()
                .filter(|(_, v)| merged(v) != Some(PeerState::Up))
                .map(|(n, _)| *n)
                .take(MAX_PEERS / 16)
                .collect();
            for n in down {
                b.views.remove(&n);
            }
        }
        let cores = self.cores;
        let views = b.views.entry(e.peer).or_insert_with(|| vec![None; cores]);
        let before = merged(views);
        if let Some(v) = views.get_mut(core) {
            *v = Some(e.state);
        }
        let after = merged(views);
        if after == before {
            return;
        }
        let Some(state) = after else { return };
        let event = PeerEvent {
            peer: e.peer,
            state,
            silent_for: e.silent_for,
        };
        let listeners = b.listeners.clone();
        drop(b);
        for l in listeners {
            l(&event);
        }
    }

    /// The node's merged view of `peer`, if any core watches it.
    pub fn state(&self, peer: &NodeId) -> Option<PeerState> {
        self.lock().views.get(peer).and_then(|v| merged(v))
    }

    /// Whether `peer` may be routed to: not Suspect or Down (unknown is fine).
    pub fn routable(&self, peer: &NodeId) -> bool {
        self.state(peer).is_none_or(|s| s == PeerState::Up)
    }

    /// Adds a listener for merged changes.
    pub fn listen(&self, l: PeerListener) {
        self.lock().listeners.push(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(peer: u8, state: PeerState) -> PeerEvent {
        PeerEvent {
            peer: NodeId([peer; 32]),
            state,
            silent_for: Duration::ZERO,
        }
    }

    #[test]
    fn merged_state_is_the_best_core_view_and_only_changes_are_published() {
        let board = PeerBoard::new(2);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        board.listen(Arc::new(move |e: &PeerEvent| {
            h.lock().unwrap().push(e.state)
        }));
        let p = NodeId([1; 32]);
        assert_eq!(board.state(&p), None);
        board.report(0, &ev(1, PeerState::Suspect));
        board.report(1, &ev(1, PeerState::Up));
        assert_eq!(board.state(&p), Some(PeerState::Up));
        board.report(0, &ev(1, PeerState::Down));
        assert_eq!(
            board.state(&p),
            Some(PeerState::Up),
            "core 1 still hears it"
        );
        assert!(board.routable(&p));
        board.report(1, &ev(1, PeerState::Down));
        assert!(!board.routable(&p));
        assert_eq!(
            *heard.lock().unwrap(),
            vec![PeerState::Suspect, PeerState::Up, PeerState::Down]
        );
    }

    #[test]
    fn the_board_is_bounded() {
        let board = PeerBoard::new(1);
        for i in 0..(MAX_PEERS + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            board.report(
                0,
                &PeerEvent {
                    peer: NodeId(id),
                    state: PeerState::Down,
                    silent_for: Duration::ZERO,
                },
            );
        }
        assert!(board.lock().views.len() <= MAX_PEERS);
    }
}
