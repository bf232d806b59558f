//! Endpoint counters. Every input the endpoint refuses is counted under a
//! reason; nothing is dropped silently.

use crate::handshake::HandshakeError;

/// Counters for one endpoint. Monotonic except the gauges marked so; plain
/// integers (the endpoint is single-threaded; the engine aggregates per core).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed to `handle`.
    pub datagrams_rx: u64,
    /// Datagrams produced by `poll_transmit`.
    pub datagrams_tx: u64,
    /// Bytes handed to `handle`.
    pub bytes_rx: u64,
    /// Bytes produced by `poll_transmit`.
    pub bytes_tx: u64,
    /// Data packets that authenticated and were processed.
    pub data_packets_rx: u64,
    /// Data packets sent.
    pub data_packets_tx: u64,
    /// Data packets sent carrying only an ACK frame.
    pub ack_only_tx: u64,
    /// Handshake initiations sent (including retransmissions).
    pub handshake_init_tx: u64,
    /// Handshake responses sent.
    pub handshake_resp_tx: u64,
    /// Handshakes completed (either role).
    pub handshakes_completed: u64,
    /// Dropped: header did not parse (type, version, flags, length).
    pub drop_malformed: u64,
    /// Dropped: no session with that receiver index.
    pub drop_unknown_index: u64,
    /// Dropped: packet counter already seen or below the replay window.
    pub drop_replay: u64,
    /// Dropped: AEAD authentication failed (corrupt, forged, or stale key).
    pub drop_decrypt: u64,
    /// Dropped: a data packet for a session whose handshake is unconfirmed on our side.
    pub drop_not_ready: u64,
    /// Handshake messages refused, by reason.
    pub handshake_mac1: u64,
    /// See [`HandshakeError::InvalidIdentity`].
    pub handshake_invalid_identity: u64,
    /// See [`HandshakeError::Decrypt`].
    pub handshake_decrypt: u64,
    /// See [`HandshakeError::IdentityMismatch`].
    pub handshake_identity_mismatch: u64,
    /// See [`HandshakeError::Replay`].
    pub handshake_replay: u64,
    /// See [`HandshakeError::Overloaded`].
    pub handshake_overloaded: u64,
    /// See [`HandshakeError::PeerSessionLimit`].
    pub handshake_peer_limit: u64,
    /// See [`HandshakeError::SessionTableFull`].
    pub handshake_table_full: u64,
    /// Initiations dropped by the rate limiter (valid-looking, mac1 correct,
    /// over the per-second budget).
    pub handshake_rate_limited: u64,
    /// Cookie replies sent: initiations refused under load for lack of a
    /// valid mac2 (no public-key work was done for them).
    pub cookie_replies_tx: u64,
    /// Cookie replies not sent: over the per-source or total rate limit, or
    /// the per-pass queue was full.
    pub cookie_replies_dropped: u64,
    /// Valid cookie replies received (this node's initiations were challenged).
    pub cookie_replies_rx: u64,
    /// Keepalive PINGs (heartbeats): sent only by a session that sent
    /// nothing for a whole heartbeat interval, never while calls flow.
    pub keepalives_tx: u64,
    /// Peers the failure detector could not watch (its table was full).
    pub detector_full: u64,
    /// Retransmitted initiations answered again with the stored response.
    pub handshake_duplicates: u64,
    /// Responder sessions whose initiator never confirmed our response.
    pub handshake_unconfirmed: u64,
    /// Rejected handshakes not reported as events (over the report rate).
    pub handshake_rejects_unreported: u64,
    /// Stateless resets sent (answers to data for sessions we do not hold).
    pub resets_tx: u64,
    /// Resets not sent: over the reset rate limit, or the per-pass queue
    /// was full.
    pub resets_rate_limited: u64,
    /// Data for an unknown index another core of this node would own
    /// (mis-steered): dropped without a reset, which could end a live
    /// session there.
    pub resets_not_ours: u64,
    /// Valid resets received: a peer lost its state and the session closed.
    pub resets_rx: u64,
    /// Resets refused: malformed, for no session of ours, or a wrong token
    /// (forged, replayed or stale).
    pub resets_invalid: u64,
    /// See [`HandshakeError::Malformed`].
    pub handshake_malformed: u64,
    /// See [`HandshakeError::UnknownIndex`].
    pub handshake_unknown_index: u64,
    /// Sessions closed for a protocol violation by an authenticated peer.
    pub protocol_violations: u64,
    /// Gauge (not monotonic): stream payload bytes held right now, received
    /// but not yet delivered to the application plus sent but not yet
    /// acknowledged. Bounded by the stream windows (docs/SECURITY.md).
    pub stream_bytes_buffered: u64,
    /// Highest value `stream_bytes_buffered` has reached.
    pub stream_bytes_buffered_peak: u64,
    /// Stream payload bytes received for calls already answered or
    /// abandoned: checked against credit, then dropped unbuffered.
    pub stream_bytes_discarded: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Probe timeouts fired.
    pub ptos: u64,
    /// Frames re-queued after loss.
    pub frames_retransmitted: u64,
    /// Key updates (either side starting them).
    pub key_updates: u64,
    /// Duplicate requests ignored (a retransmission of a call already seen).
    pub duplicate_requests: u64,
    /// Calls refused with NOT_FOUND.
    pub calls_not_found: u64,
    /// Calls refused with BACKPRESSURE.
    pub calls_backpressure: u64,
    /// Calls refused with PAYLOAD_TOO_LARGE (a body over our `max_message`).
    pub calls_too_large: u64,
    /// Segmented-body bytes received and kept for reassembly (duplicates
    /// included).
    pub segment_bytes_rx: u64,
    /// Segmented-body bytes received for bodies no longer wanted
    /// (delivered, or their call answered, cancelled or gone): dropped.
    pub segment_bytes_discarded: u64,
    /// Segmented bodies reassembled and handed over.
    pub segmented_bodies_rx: u64,
    /// Path-MTU probes sent, acknowledged and lost.
    pub pmtu_probes_tx: u64,
    /// Path-MTU probes acknowledged (each may raise the datagram size).
    pub pmtu_probes_acked: u64,
    /// Path-MTU probes lost (the path does not carry that size, or loss).
    pub pmtu_probes_lost: u64,
    /// Times a session's datagram size fell back to the base because
    /// packets stopped arriving (black-hole detection, RFC 8899 §4.3).
    pub pmtu_black_holes: u64,
    /// Open calls the caller cancelled (or whose deadline passed) before the answer.
    pub calls_cancelled: u64,
    /// Requests delivered to the application.
    pub requests_delivered: u64,
    /// Calls this endpoint made that completed (any status).
    pub calls_completed: u64,
    /// Sessions closed (any reason).
    pub sessions_closed: u64,
    /// Sessions of unreserved peers evicted to make room in a full session
    /// table (also counted in `sessions_closed`).
    pub sessions_evicted: u64,
}

impl EndpointStats {
    /// `n` more stream bytes are held (see `stream_bytes_buffered`).
    pub(crate) fn stream_hold(&mut self, n: u64) {
        self.stream_bytes_buffered += n;
        self.stream_bytes_buffered_peak = self
            .stream_bytes_buffered_peak
            .max(self.stream_bytes_buffered);
    }

    /// `n` held stream bytes were delivered, acknowledged or dropped.
    pub(crate) fn stream_release(&mut self, n: u64) {
        debug_assert!(n <= self.stream_bytes_buffered, "stream gauge underflow");
        self.stream_bytes_buffered = self.stream_bytes_buffered.saturating_sub(n);
    }

    /// Counts a refused handshake message under its reason.
    pub fn handshake_error(&mut self, e: &HandshakeError) {
        let c = match e {
            HandshakeError::Malformed(_) => &mut self.handshake_malformed,
            HandshakeError::Mac1 => &mut self.handshake_mac1,
            HandshakeError::InvalidIdentity => &mut self.handshake_invalid_identity,
            HandshakeError::Decrypt => &mut self.handshake_decrypt,
            HandshakeError::IdentityMismatch => &mut self.handshake_identity_mismatch,
            HandshakeError::Replay => &mut self.handshake_replay,
            HandshakeError::Overloaded => &mut self.handshake_overloaded,
            HandshakeError::PeerSessionLimit => &mut self.handshake_peer_limit,
            HandshakeError::SessionTableFull => &mut self.handshake_table_full,
            HandshakeError::UnknownIndex => &mut self.handshake_unknown_index,
            HandshakeError::Duplicate => &mut self.handshake_duplicates,
            HandshakeError::WrongPsk => &mut self.handshake_decrypt,
            HandshakeError::Unconfirmed => &mut self.handshake_unconfirmed,
            HandshakeError::NoAnswer { .. } | HandshakeError::CookieLoop { .. } => return,
        };
        *c += 1;
    }
}
