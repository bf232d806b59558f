//! What this side owes the peer in acknowledgements (`docs/PROTOCOL.md`
//! §7): which packet numbers to report and when an ACK is due.

use std::time::{Duration, Instant};

use crate::ranges::RangeSet;

/// Ranges of received packet numbers remembered for ACKs.
const ACK_RANGES: usize = 32;
/// Immediately acknowledge after this many ack-eliciting packets.
const ACK_EVERY: u32 = 2;

/// What this side owes the peer in acknowledgements.
pub(super) struct Acks {
    /// Received packet numbers still to acknowledge (at most `ACK_RANGES`
    /// ranges, oldest dropped).
    pub(super) received: RangeSet,
    /// Something arrived since our last ACK.
    pub(super) dirty: bool,
    /// Ack-eliciting packets since our last ACK; at `ACK_EVERY` one is due now.
    pub(super) unacked_eliciting: u32,
    /// When the delayed ACK is due; cleared into `now` when it fires.
    pub(super) deadline: Option<Instant>,
    /// An ACK must go out at the next transmit, alone if need be.
    pub(super) now: bool,
    /// A packet arrived out of order since our last ACK.
    pub(super) reordered: bool,
    /// When the largest packet number received so far arrived (its ACK
    /// delay is measured from here).
    pub(super) largest_recv_time: Instant,
}

impl Acks {
    pub(super) fn new(now: Instant) -> Self {
        Acks {
            received: RangeSet::with_capacity_limit(ACK_RANGES),
            dirty: false,
            unacked_eliciting: 0,
            deadline: None,
            now: false,
            reordered: false,
            largest_recv_time: now,
        }
    }

    /// Packet `pn` authenticated at `now`: it is to be acknowledged.
    /// Out of order (below the largest seen, or past a gap) means a loss
    /// or reordering the sender should learn of at once (RFC 9000
    /// §13.2.1): the next ack-eliciting packet is then acknowledged
    /// without delay.
    pub(super) fn on_received(&mut self, pn: u64, now: Instant) {
        match self.received.max() {
            Some(m) if pn > m => {
                self.largest_recv_time = now;
                self.reordered |= pn > m + 1;
            }
            Some(_) => self.reordered = true,
            None => self.largest_recv_time = now,
        }
        self.received.insert(pn);
        self.dirty = true;
    }

    /// An ack-eliciting packet was handled: acknowledged at once if every
    /// `ACK_EVERY`th or out of order, else within `delay` (RTT-sized, see
    /// `Rtt::ack_delay`).
    pub(super) fn on_eliciting(&mut self, now: Instant, delay: Duration) {
        self.unacked_eliciting += 1;
        if self.unacked_eliciting >= ACK_EVERY || self.reordered {
            self.now = true;
        } else if self.deadline.is_none() {
            self.deadline = Some(now + delay);
        }
    }

    /// Whether an ACK must go out now, alone if need be.
    pub(super) fn due_now(&self) -> bool {
        self.dirty && self.now
    }

    /// When the delayed ACK timer fires, if an ACK is owed.
    pub(super) fn timer(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.dirty)
    }

    /// Timers at `now`: a delayed ACK whose time came is due now.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            self.now = true;
        }
    }

    /// An ACK covering everything received was written.
    pub(super) fn on_written(&mut self) {
        self.dirty = false;
        self.unacked_eliciting = 0;
        self.deadline = None;
        self.now = false;
        self.reordered = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_micros(40);

    #[test]
    fn in_order_packets_are_acknowledged_within_the_delay_or_every_second() {
        let now = Instant::now();
        let mut a = Acks::new(now);
        a.on_received(0, now);
        a.on_eliciting(now, DELAY);
        assert!(!a.due_now());
        assert_eq!(a.timer(), Some(now + DELAY));
        a.on_received(1, now);
        a.on_eliciting(now, DELAY);
        assert!(a.due_now(), "every second ack-eliciting packet");
    }

    #[test]
    fn out_of_order_packets_are_acknowledged_at_once() {
        let now = Instant::now();
        // A gap: packet 1 is missing when 2 arrives.
        let mut a = Acks::new(now);
        a.on_received(0, now);
        a.on_written();
        a.on_received(2, now);
        a.on_eliciting(now, DELAY);
        assert!(a.due_now(), "past a gap");
        // Reordered: 1 arrives after 2.
        a.on_written();
        a.on_received(1, now);
        a.on_eliciting(now, DELAY);
        assert!(a.due_now(), "below the largest");
        // Back in order: delayed again.
        a.on_written();
        a.on_received(3, now);
        a.on_eliciting(now, DELAY);
        assert!(!a.due_now());
    }
}
