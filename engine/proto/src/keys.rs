//! Transport keys with key-phase updates (rekey without a round trip).
//!
//! Each direction starts from the handshake split. A key update replaces both
//! directions' keys with `HKDF(key, "net/v1 key update")` and flips the key
//! phase bit in the header (as QUIC does). Either side may start an update
//! when its packet count or key age passes the configured limit; it may not
//! start another until it has received a packet in the new phase. The
//! previous receive key is kept for `key_grace` so packets reordered across
//! the update still open. Packet counters (the AEAD nonces) are never reset
//! within a session, so no (key, nonce) pair repeats and the replay window is
//! unaffected by updates.

use std::time::{Duration, Instant};

use net_crypto::{hkdf_sha256, AeadKey, Backend, Suite};
use zeroize::Zeroizing;

type Secret = Zeroizing<[u8; 32]>;

fn next_secret(s: &Secret) -> Secret {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf_sha256(&[], &s[..], &[b"net/v1 key update"], &mut out[..]);
    out
}

struct DirKey {
    secret: Secret,
    key: AeadKey,
}

impl DirKey {
    fn new((backend, suite): (Backend, Suite), secret: Secret) -> Self {
        let key = AeadKey::with_suite(backend, suite, &secret);
        DirKey { secret, key }
    }
    fn next(&self, alg: (Backend, Suite)) -> Self {
        DirKey::new(alg, next_secret(&self.secret))
    }
}

/// Which key opened a packet; the caller commits the update only after the
/// packet also passed the replay check and its frames were accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Current phase.
    Current,
    /// Previous phase, inside its grace period.
    Previous,
    /// The peer has started a key update; [`TransportKeys::commit_peer_update`]
    /// switches to it.
    Next,
}

/// Both directions' keys for one session.
pub(crate) struct TransportKeys {
    alg: (Backend, Suite),
    phase: bool,
    send: DirKey,
    recv: DirKey,
    next_recv: Option<DirKey>,
    prev_recv: Option<(DirKey, Instant)>,
    /// We updated and have not yet seen the peer use the new phase.
    awaiting_peer: bool,
    /// Lowest counter received in the current phase: older counters carrying
    /// the other phase bit belong to the previous phase.
    lowest_in_phase: Option<u64>,
    phase_start: Instant,
    sent_in_phase: u64,
}

impl TransportKeys {
    /// The AEAD suite both sides agreed on in the handshake.
    pub fn suite(&self) -> Suite {
        self.alg.1
    }

    /// Keys from the handshake split; `send`/`recv` are this side's directions.
    pub fn new(alg: (Backend, Suite), send: Secret, recv: Secret, now: Instant) -> Self {
        TransportKeys {
            alg,
            phase: false,
            send: DirKey::new(alg, send),
            recv: DirKey::new(alg, recv),
            next_recv: None,
            prev_recv: None,
            awaiting_peer: false,
            lowest_in_phase: None,
            phase_start: now,
            sent_in_phase: 0,
        }
    }

    /// Current key phase bit for outgoing packets.
    pub fn phase(&self) -> bool {
        self.phase
    }

    /// Starts a key update if a limit is reached and the last update is
    /// confirmed. Returns true if it did. `grace` bounds the old receive key.
    pub fn maybe_update(
        &mut self,
        now: Instant,
        max_packets: u64,
        max_age: Duration,
        grace: Duration,
    ) -> bool {
        let due = self.sent_in_phase >= max_packets
            || now.saturating_duration_since(self.phase_start) >= max_age;
        if !due || self.awaiting_peer {
            return false;
        }
        self.switch_phase(now, grace, None);
        true
    }

    /// Moves both directions to the next phase. `first_counter` is the
    /// peer's first packet in it when the peer started the update; `None`
    /// when we did (we then wait for the peer to follow).
    fn switch_phase(&mut self, now: Instant, grace: Duration, first_counter: Option<u64>) {
        let next = self
            .next_recv
            .take()
            .unwrap_or_else(|| self.recv.next(self.alg));
        let old = std::mem::replace(&mut self.recv, next);
        self.prev_recv = Some((old, now + grace));
        self.send = self.send.next(self.alg);
        self.phase = !self.phase;
        self.awaiting_peer = first_counter.is_none();
        self.lowest_in_phase = first_counter;
        self.phase_start = now;
        self.sent_in_phase = 0;
    }

    /// Seals `buf[..len]` for packet `counter`, tag appended.
    pub fn seal(&mut self, counter: u64, aad: &[u8], buf: &mut [u8], len: usize) -> Option<usize> {
        self.sent_in_phase += 1;
        self.send.key.seal_in_place(counter, aad, buf, len).ok()
    }

    /// Opens a packet in place, choosing the key by phase bit and counter.
    pub fn open(
        &mut self,
        now: Instant,
        phase: bool,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Option<(usize, Opened)> {
        if phase == self.phase {
            let n = self.recv.key.open_in_place(counter, aad, buf).ok()?;
            return Some((n, Opened::Current));
        }
        let older = self.awaiting_peer || self.lowest_in_phase.is_some_and(|l| counter < l);
        if older {
            let (key, expiry) = self.prev_recv.as_ref()?;
            if now >= *expiry {
                return None;
            }
            let n = key.key.open_in_place(counter, aad, buf).ok()?;
            return Some((n, Opened::Previous));
        }
        let alg = self.alg;
        let next = self.next_recv.get_or_insert_with(|| self.recv.next(alg));
        let n = next.key.open_in_place(counter, aad, buf).ok()?;
        Some((n, Opened::Next))
    }

    /// Records an accepted packet. For [`Opened::Next`] this follows the
    /// peer's key update (both directions move to the new phase).
    pub fn commit(&mut self, now: Instant, opened: Opened, counter: u64, grace: Duration) {
        match opened {
            Opened::Previous => {}
            Opened::Current => {
                self.awaiting_peer = false;
                self.lowest_in_phase =
                    Some(self.lowest_in_phase.map_or(counter, |l| l.min(counter)));
            }
            Opened::Next => self.switch_phase(now, grace, Some(counter)),
        }
    }

    /// Forgets the previous key once its grace period is over.
    pub fn expire(&mut self, now: Instant) {
        if self.prev_recv.as_ref().is_some_and(|(_, e)| now >= *e) {
            self.prev_recv = None;
        }
    }

    /// When the previous key expires, if one is held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.prev_recv.as_ref().map(|(_, e)| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(now: Instant) -> (TransportKeys, TransportKeys) {
        let a = Zeroizing::new([1u8; 32]);
        let b = Zeroizing::new([2u8; 32]);
        (
            // AES here, ChaCha below: key updates work the same for both.
            TransportKeys::new((Backend::Ring, Suite::Aes256Gcm), a.clone(), b.clone(), now),
            TransportKeys::new((Backend::Ring, Suite::Aes256Gcm), b, a, now),
        )
    }

    fn send(
        from: &mut TransportKeys,
        to: &mut TransportKeys,
        now: Instant,
        counter: u64,
    ) -> Option<Opened> {
        let mut buf = [0u8; 64];
        buf[..5].copy_from_slice(b"hello");
        let phase = from.phase();
        let n = from.seal(counter, b"aad", &mut buf, 5)?;
        let (len, opened) = to.open(now, phase, counter, b"aad", &mut buf[..n])?;
        assert_eq!(&buf[..len], b"hello");
        to.commit(now, opened, counter, Duration::from_secs(1));
        Some(opened)
    }

    #[test]
    fn update_is_followed_and_old_packets_open_during_grace() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        assert_eq!(send(&mut a, &mut b, t0, 0), Some(Opened::Current));
        // Two old-phase packets sealed before the update, delivered after it.
        let (mut late1, mut late2) = ([0u8; 64], [0u8; 64]);
        let n1 = a.seal(1, b"aad", &mut late1, 0).unwrap();
        let n2 = a.seal(2, b"aad", &mut late2, 0).unwrap();
        assert!(a.maybe_update(t0, 2, Duration::MAX, Duration::from_secs(1)));
        assert!(
            !a.maybe_update(t0, 0, Duration::MAX, Duration::from_secs(1)),
            "second update before confirmation"
        );
        assert_eq!(send(&mut a, &mut b, t0, 3), Some(Opened::Next));
        assert_eq!(b.phase(), a.phase());
        // Inside the grace period the previous key still opens old packets...
        let (_, opened) = b.open(t0, !b.phase(), 1, b"aad", &mut late1[..n1]).unwrap();
        assert_eq!(opened, Opened::Previous);
        assert_eq!(send(&mut b, &mut a, t0, 0), Some(Opened::Current));
        // ...and after it, it is gone.
        let later = t0 + Duration::from_secs(2);
        assert!(b
            .open(later, !b.phase(), 2, b"aad", &mut late2[..n2])
            .is_none());
        // Control: the same packet does open inside the grace period.
        let mut again = [0u8; 64];
        let mut k = TransportKeys::new(
            (Backend::Ring, Suite::Aes256Gcm),
            Zeroizing::new([1u8; 32]),
            Zeroizing::new([2u8; 32]),
            t0,
        );
        let n = k.seal(2, b"aad", &mut again, 0).unwrap();
        assert!(b.open(t0, !b.phase(), 2, b"aad", &mut again[..n]).is_some());
    }

    #[test]
    fn update_by_age() {
        let t0 = Instant::now();
        let (mut a, _) = pair(t0);
        assert!(!a.maybe_update(t0, u64::MAX, Duration::from_secs(5), Duration::ZERO));
        assert!(a.maybe_update(
            t0 + Duration::from_secs(5),
            u64::MAX,
            Duration::from_secs(5),
            Duration::ZERO
        ));
    }
}
