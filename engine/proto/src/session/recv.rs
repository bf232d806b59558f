//! Opening incoming data packets and dispatching their frames.
//!
//! Order per packet: replay check (no state change) → AEAD open in place →
//! replay commit and key-phase commit → frames. A packet that fails any step
//! before the frames changes nothing but a drop counter. Once it has
//! authenticated, a frame that breaks the protocol closes the session: only
//! the holder of the session keys can have sent it.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Ctx, Phase, Session};
use crate::cookie;
use crate::event::{CloseReason, Event, ProtocolViolation};
use crate::handshake::HandshakeError;
use crate::keys::Opened;
use crate::wire::{frames, Credit, DataHeader, Frame, DATA_HEADER_LEN};

impl Session {
    /// Handles a cookie reply addressed to this (initiating) session: the
    /// responder is under load and wants mac2. A valid reply stores the
    /// cookie and sends a fresh initiation at once (if attempts remain);
    /// only the first valid reply per initiation counts.
    pub fn handle_cookie_reply(&mut self, ctx: &mut Ctx<'_>, reply: &[u8]) {
        let Phase::Initiating(i) = &mut self.phase else {
            ctx.stats.handshake_error(&HandshakeError::UnknownIndex);
            return;
        };
        let Some(mac1) = i.last_mac1 else {
            ctx.stats.handshake_error(&HandshakeError::UnknownIndex);
            return;
        };
        match cookie::open_reply(reply, &self.peer.identity, &mac1, ctx.cfg.aead) {
            Ok(c) => {
                ctx.stats.cookie_replies_rx += 1;
                i.cookies += 1;
                i.last_mac1 = None;
                i.cookie = Some((c, ctx.now));
                i.send_now = i.attempts < ctx.cfg.handshake_attempts;
            }
            Err(e) => ctx.stats.handshake_error(&e),
        }
    }

    /// Handles a data packet addressed to this session.
    pub fn handle_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        src: SocketAddr,
        hdr: DataHeader,
        datagram: &mut [u8],
    ) {
        let Some(len) = self.open_packet(ctx, hdr, datagram) else {
            return;
        };
        if datagram.len() > usize::from(ctx.cfg.params.max_datagram) {
            // Authenticated, so the peer itself broke the limit we announced.
            ctx.stats.protocol_violations += 1;
            self.close(
                ctx,
                CloseReason::Protocol(ProtocolViolation::DatagramTooLarge),
            );
            return;
        }
        self.peer.addr = src;
        self.liveness.last_recv = ctx.now;
        if self.is_half_open() {
            self.confirm(ctx);
        }
        let body = &datagram[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
        let mut eliciting = false;
        for frame in frames(body) {
            let result = match frame {
                Ok(f) => {
                    eliciting |= f.is_ack_eliciting();
                    self.handle_frame(ctx, f)
                }
                Err(e) => Err(ProtocolViolation::Frame(e)),
            };
            if let Err(v) = result {
                ctx.stats.protocol_violations += 1;
                self.close(ctx, CloseReason::Protocol(v));
                return;
            }
            if self.is_closed() {
                return;
            }
        }
        if let Some(t) = self.transport_mut() {
            if eliciting {
                let delay = t.ledger.ack_delay();
                t.acks.on_eliciting(ctx.now, delay);
            }
        }
    }

    /// Replay check, decrypt, commit. Returns the plaintext length.
    fn open_packet(
        &mut self,
        ctx: &mut Ctx<'_>,
        hdr: DataHeader,
        datagram: &mut [u8],
    ) -> Option<usize> {
        let now = ctx.now;
        let Some(t) = self.transport_mut() else {
            ctx.stats.drop_not_ready += 1;
            return None;
        };
        if t.replay.check(hdr.counter).is_err() {
            ctx.stats.drop_replay += 1;
            return None;
        }
        let (head, body) = datagram.split_at_mut(DATA_HEADER_LEN);
        let Some((len, opened)) = t.keys.open(now, hdr.key_phase, hdr.counter, head, body) else {
            ctx.stats.drop_decrypt += 1;
            return None;
        };
        t.replay.commit(hdr.counter);
        t.keys.commit(now, opened, hdr.counter, ctx.cfg.key_grace);
        if opened == Opened::Next {
            ctx.stats.key_updates += 1;
        }
        t.acks.on_received(hdr.counter, now);
        ctx.stats.data_packets_rx += 1;
        Some(len)
    }

    fn handle_frame(
        &mut self,
        ctx: &mut Ctx<'_>,
        frame: Frame<'_>,
    ) -> Result<(), ProtocolViolation> {
        match frame {
            Frame::Ack(ack) => {
                self.on_ack_frame(ctx, ack.ranges(), ack.ack_delay_us);
                Ok(())
            }
            f @ Frame::RpcRequest { .. } => self.on_request(ctx, f),
            Frame::RpcResponse {
                call,
                status,
                stream_count,
                body,
            } => self.on_response(ctx, call, status, stream_count, body),
            Frame::Cancel { call, status } => self.on_cancel(ctx, call, status),
            Frame::StreamData {
                call,
                seq,
                offset,
                body,
            } => self.on_stream_data(ctx, call, seq, offset, body),
            Frame::Segment {
                call,
                part,
                total,
                offset,
                payload,
            } => self.on_segment(ctx, call, part, total, offset, payload),
            Frame::StreamEnd { call, count } => self.on_stream_end(ctx, call, count),
            Frame::Credit(Credit::Calls { limit }) => {
                self.on_call_credit(ctx, limit);
                Ok(())
            }
            Frame::Credit(Credit::Stream { call, limit }) => {
                self.on_stream_credit(ctx, call, limit);
                Ok(())
            }
            Frame::Announce { payload } => {
                let payload = ctx.pool.copy_of(payload);
                ctx.events.push_back(Event::Announce {
                    session: self.id,
                    peer: self.peer.node,
                    payload,
                });
                Ok(())
            }
            Frame::Ping => Ok(()),
            Frame::Close { code, .. } => {
                self.close(ctx, CloseReason::Peer(code));
                Ok(())
            }
        }
    }

    fn on_ack_frame(
        &mut self,
        ctx: &mut Ctx<'_>,
        ranges: impl Iterator<Item = std::ops::RangeInclusive<u64>>,
        ack_delay_us: u64,
    ) {
        let now = ctx.now;
        let Some(t) = self.transport_mut() else {
            return;
        };
        let ack_delay = Duration::from_micros(ack_delay_us).min(t.peer_params.max_ack_delay());
        let mut acked = std::mem::take(&mut self.scratch.acked);
        let mut lost = std::mem::take(&mut self.scratch.lost);
        let Some(t) = self.transport_mut() else {
            return;
        };
        t.ledger.on_ack(now, ranges, ack_delay, |f| acked.push(f));
        let newly_lost = t.ledger.detect_lost(now, |f| lost.push(f));
        ctx.stats.packets_lost += newly_lost;
        if newly_lost > 0 {
            super::check_black_hole(t, ctx);
        }
        for f in acked.drain(..) {
            self.on_acked(ctx, f);
        }
        for f in lost.drain(..) {
            self.on_lost(ctx, f);
        }
        self.scratch.acked = acked;
        self.scratch.lost = lost;
    }
}
