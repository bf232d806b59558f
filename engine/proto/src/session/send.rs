//! Assembling, sealing and accounting outgoing packets.
//!
//! One packet carries, in order: an ACK if anything arrived since our last
//! one (so ACKs ride on whatever goes the other way), then queued frames
//! front to back as long as they fit. A packet with only an ACK is sent only
//! when the delayed-ACK timer has fired.

use super::sent::Written;
use super::{Ctx, Phase, Sent, Session, Transport, MAX_COUNTER};
use crate::event::CloseReason;
use std::time::{Duration, Instant};

use crate::cookie::{mac1_of, EPOCH_SECS};
use crate::handshake::{Initiation, Local, INIT_LEN, RESP_LEN};
use crate::ids::ReceiverIndex;
use crate::recovery::Carries;
use crate::wire::{
    encode_ack, encode_padding, Credit, DataHeader, Frame, Writer, DATA_HEADER_LEN, TAG_LEN,
};

/// How long an initiator uses a cookie: a little under the responder's
/// epoch, so it is not sent just as the responder stops accepting it.
const COOKIE_LIFETIME: Duration = Duration::from_secs(EPOCH_SECS - 5);

/// Most ACK ranges, the first included, this session puts in one ACK frame
/// (the `max_ranges` of [`encode_ack`]).
///
/// Not the wire limit [`crate::wire::MAX_ACK_RANGES`], which counts
/// *additional* ranges (64, so 65 in all) and bounds what a decoder accepts
/// from a peer. This one bounds what we send, and is smaller on purpose: an
/// ACK rides in front of every packet we send, and the ranges it leaves out
/// are the oldest, which the peer has most likely learned of from earlier
/// ACKs. Changing either does not change the other.
const MAX_ACK_RANGES_SENT: usize = 16;

struct QueueOutcome {
    /// A CLOSE frame was written: the session ends once this packet is out.
    close: bool,
    /// What the packet carries, for the pacer and congestion control.
    carries: Carries,
}

impl Session {
    /// Writes the next datagram for this session into `buf`; returns its length.
    pub fn write_datagram(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Option<usize> {
        match &mut self.phase {
            Phase::Initiating(_) => self.write_initiation(ctx, buf),
            Phase::Responding {
                response,
                response_sent,
                ..
            } => {
                if *response_sent || buf.len() < RESP_LEN {
                    return None;
                }
                *response_sent = true;
                buf[..RESP_LEN].copy_from_slice(&response[..]);
                ctx.stats.handshake_resp_tx += 1;
                Some(RESP_LEN)
            }
            Phase::Established(_) => self.write_data(ctx, buf),
            Phase::Closed => None,
        }
    }

    fn write_initiation(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Option<usize> {
        let Phase::Initiating(i) = &mut self.phase else {
            return None;
        };
        if !i.send_now || buf.len() < INIT_LEN {
            return None;
        }
        let cfg = ctx.cfg;
        let ts = super::wall_nanos(ctx.wall_base, ctx.now);
        let sender: ReceiverIndex = self.id.0;
        // mac1 is only checked on messages to us; initiating needs no key of ours.
        let me = Local {
            identity: &cfg.identity,
            psk: &cfg.psk,
            params: &cfg.params,
            mac1: &[0; 32],
        };
        let cookie = i
            .cookie
            .as_ref()
            .filter(|(_, at)| ctx.now.saturating_duration_since(*at) < COOKIE_LIFETIME)
            .map(|(c, _)| c);
        if let (Some(_), Some(sent)) = (&i.init, &i.sent) {
            // A retransmission: the same initiation, with the latest cookie.
            let out = &mut buf[..INIT_LEN];
            out.copy_from_slice(&sent[..]);
            crate::handshake::refresh_macs(out, &self.peer.identity, cookie);
            i.last_mac1 = mac1_of(out).try_into().ok();
            i.send_now = false;
            i.attempts += 1;
            i.retry_at = ctx.now + i.retry * (1u32 << (i.attempts - 1).min(6));
            ctx.stats.handshake_init_tx += 1;
            return Some(INIT_LEN);
        }
        match Initiation::start(
            &me,
            &self.peer.identity,
            (sender, ts, self.peer.lane),
            &i.reset_token,
            cookie,
            buf,
        ) {
            Ok((init, len)) => {
                i.last_mac1 = mac1_of(&buf[..len]).try_into().ok();
                i.sent = buf[..len].try_into().ok().map(Box::new);
                i.init = Some(init);
                i.send_now = false;
                i.sent_at = ctx.now;
                i.attempts += 1;
                i.retry_at = ctx.now + i.retry * (1u32 << (i.attempts - 1).min(6));
                ctx.stats.handshake_init_tx += 1;
                Some(len)
            }
            Err(e) => {
                i.last_error = Some(e);
                i.send_now = false;
                None
            }
        }
    }

    fn write_data(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Option<usize> {
        let now = ctx.now;
        let budget = self.datagram_budget(ctx.cfg).min(buf.len());
        let receiver = self.peer.index?;
        let Phase::Established(t) = &mut self.phase else {
            return None;
        };
        if t.next_pn >= MAX_COUNTER {
            self.close(ctx, CloseReason::CounterExhausted);
            return None;
        }
        if t.keys.maybe_update(
            now,
            ctx.cfg.rekey_after_packets,
            ctx.cfg.rekey_after_time,
            ctx.cfg.key_grace,
        ) {
            ctx.stats.key_updates += 1;
        }
        let probe = t.pmtu.probe_due(now, buf.len());
        let size = probe.unwrap_or(budget);
        let (header, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        let body_len = size.checked_sub(DATA_HEADER_LEN + TAG_LEN)?;
        let mut w = Writer::new(&mut rest[..body_len]);
        let mut frames = t.ledger.frame_vec();
        let acked = write_ack(t, now, &mut w);
        let out = match probe {
            Some(size) => {
                ctx.stats.pmtu_probes_tx += 1;
                write_probe(&mut w, &mut frames, size)
            }
            None => {
                let bulk_open = t.ledger.bulk_open();
                self.write_queued(now, &mut w, &mut frames, bulk_open)
            }
        };
        let Phase::Established(t) = &mut self.phase else {
            return None;
        };
        if frames.is_empty() && !acked && !out.close {
            t.ledger.recycle(frames);
            return None;
        }
        let len = w.position();
        let pn = t.next_pn;
        t.next_pn += 1;
        let hdr = DataHeader {
            key_phase: t.keys.phase(),
            // The low byte: core bits never exceed 8 (groups of ≤ 256).
            reply_hint: self.id.0.get() as u8,
            receiver,
            counter: pn,
        };
        let header: &mut [u8; DATA_HEADER_LEN] = header.try_into().ok()?;
        hdr.encode(header);
        let sealed = t.keys.seal(pn, header, rest, len)?;
        if frames.is_empty() {
            ctx.stats.ack_only_tx += 1;
        }
        t.ledger
            .on_sent(pn, now, frames, (DATA_HEADER_LEN + sealed, out.carries));
        self.liveness.last_sent = now;
        ctx.stats.data_packets_tx += 1;
        if out.close {
            self.close(ctx, CloseReason::Local);
        }
        Some(DATA_HEADER_LEN + sealed)
    }

    fn write_queued(
        &mut self,
        now: Instant,
        w: &mut Writer<'_>,
        frames: &mut Vec<Sent>,
        bulk_open: bool,
    ) -> QueueOutcome {
        if let Some(code) = self.close_pending {
            let close = (Frame::Close { code, reason: &[] }).encode(w).is_ok();
            if close {
                self.close_pending = None;
            }
            return QueueOutcome {
                close,
                carries: Carries::Calls,
            };
        }
        if self.theirs.credit_pending {
            let f = Frame::Credit(Credit::Calls {
                limit: self.theirs.granted,
            });
            if f.encode(w).is_ok() {
                self.theirs.credit_pending = false;
                frames.push(Sent::CallCredit);
            }
        }
        while let Some(&item) = self.queue.front() {
            match self.write_item(item, w, now) {
                Written::Yes => frames.push(item),
                Written::Stale => {}
                // Larger than an empty packet: the path shrank since the
                // frame was first written. Its body goes segmented.
                Written::NoRoom if frames.is_empty() && self.resegment(item) => continue,
                Written::NoRoom => break,
            }
            self.queue.pop_front();
        }
        // Bulk data waits for the congestion window; frames of calls do not
        // (a LAN call is one packet each way, and holding it back would
        // only add latency).
        let before = frames.len();
        if bulk_open && self.segs.has_active() {
            self.write_segments(w, frames);
        }
        let carries = match frames.len() > before {
            true => Carries::Bulk,
            false => Carries::Calls,
        };
        if self.liveness.ping_pending && (frames.is_empty() && Frame::Ping.encode(w).is_ok()) {
            frames.push(Sent::Ping);
        }
        if !frames.is_empty() {
            self.liveness.ping_pending = false;
        }
        QueueOutcome {
            close: false,
            carries,
        }
    }
}

/// A path-MTU probe: PING, then PADDING to the end of the packet, so the
/// datagram is exactly `size` bytes.
fn write_probe(w: &mut Writer<'_>, frames: &mut Vec<Sent>, size: usize) -> QueueOutcome {
    if Frame::Ping.encode(w).is_ok() && encode_padding(w, w.remaining()).is_ok() {
        frames.push(Sent::MtuProbe(size as u16));
    }
    QueueOutcome {
        close: false,
        carries: Carries::Probe,
    }
}

/// Writes an ACK if anything arrived since the last one. Returns whether it did.
fn write_ack(t: &mut Transport, now: Instant, w: &mut Writer<'_>) -> bool {
    let acks = &mut t.acks;
    if !acks.dirty {
        return false;
    }
    let delay = now
        .saturating_duration_since(acks.largest_recv_time)
        .as_micros() as u64;
    if let Ok(true) = encode_ack(w, delay, &acks.received, MAX_ACK_RANGES_SENT) {
        acks.on_written();
        return true;
    }
    false
}
