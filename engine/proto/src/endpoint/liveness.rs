//! The endpoint's liveness machinery: the failure detector's bookkeeping
//! (which peers are watched, what Down does to our calls), stateless
//! resets sent and received (`crate::reset`), and reports of refused
//! handshakes for the operator's log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::NodeId;

use super::{Endpoint, MAX_RESETS};
use crate::detector::PeerState;
use crate::event::{Cause, CloseReason, Event};
use crate::handshake::{self, HandshakeError};
use crate::ids::ReceiverIndex;
use crate::session::Ctx;
use crate::wire::{DataHeader, ResetPacket, RESET_LEN};

impl Endpoint {
    /// A session is established: the detector watches its peer (a peer
    /// heard from anew is Up).
    pub(super) fn watch(&mut self, now: Instant, idx: ReceiverIndex) {
        let Some(s) = self.sessions.get_mut(&idx) else {
            return;
        };
        let peer = s.peer_node();
        if self.detector.state(&peer).is_none() {
            // A newly watched peer: its first state (later ones come from
            // the detector).
            self.events.push_back(Event::PeerState {
                peer,
                state: PeerState::Up,
                silent_for: Duration::ZERO,
            });
        }
        match self.detector.track(peer, now) {
            Ok(slot) => {
                self.detector.heard(slot, now);
                s.set_watch(slot);
                *self.watched.entry(peer).or_default() += 1;
            }
            Err(_) => self.stats.detector_full += 1,
        }
    }

    /// A watched session ended: forget its peer with its last session,
    /// unless the peer is Down.
    pub(super) fn unwatch(&mut self, peer: NodeId) {
        let Some(n) = self.watched.get_mut(&peer) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.watched.remove(&peer);
            if self.detector.state(&peer) != Some(PeerState::Down) {
                self.detector.forget(&peer);
            }
        }
    }

    /// The failure detector's changes become events; a peer gone Down has
    /// every call we made to it failed at once (`Cause::PeerDown`).
    pub(super) fn detector_events(&mut self, now: Instant) {
        while let Some(e) = self.detector.poll_event() {
            if e.state == PeerState::Down {
                let ids: Vec<ReceiverIndex> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.peer_node() == e.peer)
                    .map(|(&i, _)| i)
                    .collect();
                for idx in ids {
                    if let Some(s) = self.sessions.get_mut(&idx) {
                        s.fail_own_calls(&mut ctx!(self, now), Cause::PeerDown);
                    }
                    self.touch(idx);
                }
            }
            self.events.push_back(Event::PeerState {
                peer: e.peer,
                state: e.state,
                silent_for: e.silent_for,
            });
        }
    }

    /// The failure detector's view of `peer`, if it is watched.
    pub fn peer_state(&self, peer: &NodeId) -> Option<PeerState> {
        self.detector.state(peer)
    }

    /// A refused initiation becomes a `HandshakeRejected` event, within the
    /// report rate (always counted in the stats by the caller). The
    /// identity it names in clear is reported, unauthenticated.
    pub(super) fn report_reject(
        &mut self,
        now: Instant,
        src: SocketAddr,
        init: &[u8],
        error: HandshakeError,
    ) {
        let peer = handshake::claimed_initiator(init).map(|p| p.node_id());
        self.report(now, src, peer, error);
    }

    pub(super) fn report(
        &mut self,
        now: Instant,
        src: SocketAddr,
        peer: Option<NodeId>,
        error: HandshakeError,
    ) {
        if self.rejects.allow(now) {
            self.events
                .push_back(Event::HandshakeRejected { src, peer, error });
        } else {
            self.stats.handshake_rejects_unreported += 1;
        }
    }

    /// A data packet for a session we do not hold: answer with a stateless
    /// reset (within the rate limit), so a peer whose session we lost —
    /// we restarted — handshakes again at once. Never for a reset (those
    /// are not data packets), so two nodes cannot loop.
    ///
    /// Only for an index this core would own (its low `core_bits` name this
    /// core): a packet steered to the wrong core of a live node — the
    /// kernel's group reshuffling while a socket closes, say — belongs to a
    /// session another core holds, and a reset would end it.
    pub(super) fn queue_reset(&mut self, now: Instant, src: SocketAddr, hdr: DataHeader) {
        let mask = (1u32 << self.cfg.core_bits.min(16)) - 1;
        if hdr.receiver.get() & mask != self.cfg.core_id & mask {
            self.stats.resets_not_ours += 1;
            return;
        }
        if self.reset_out.len() >= MAX_RESETS || !self.reset.allow(now) {
            self.stats.resets_rate_limited += 1;
            return;
        }
        let packet = ResetPacket {
            steer: hdr.reply_hint,
            index: hdr.receiver,
            token: self.reset.token(hdr.receiver, &src),
        };
        let mut out = [0u8; RESET_LEN];
        packet.encode(&mut out);
        self.reset.burn(hdr.receiver);
        self.reset_out.push_back((src, out));
    }

    /// A reset from a peer: if it names a session's peer index and carries
    /// that peer's token, the peer lost the session; close it (`PeerReset`).
    pub(super) fn handle_reset(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(reset) = ResetPacket::decode(datagram) else {
            self.stats.resets_invalid += 1;
            return;
        };
        let Some(&idx) = self.by_peer_index.get(&reset.index) else {
            self.stats.resets_invalid += 1;
            return;
        };
        let Some(s) = self
            .sessions
            .get_mut(&idx)
            .filter(|s| s.is_reset_token(&reset.token))
        else {
            self.stats.resets_invalid += 1;
            return;
        };
        self.stats.resets_rx += 1;
        s.close(&mut ctx!(self, now), CloseReason::PeerReset);
        self.touch(idx);
    }
}
