//! UDP generic receive offload (`UDP_GRO`): the kernel hands a driver up to
//! [`MAX_GRO_SEGMENTS`] datagrams of one flow in one buffer, with a control
//! message giving the segment size; the driver splits the buffer back into
//! datagrams before the caller sees it.
//!
//! What it saves: a GSO run sent over loopback or a veth reaches the
//! receiving socket as one buffer instead of being cut into one socket-buffer
//! per datagram (one enqueue, one wake, one copy, one completion), and a NIC
//! that coalesces a flow does the same for traffic from other hosts.
//!
//! # When it is on
//!
//! Only for a group of **one** socket (one receiving core) and only for the
//! drivers that read control messages (uring, mmsg). The kernel picks a
//! group socket once per buffer, by its first datagram, and a NIC coalesces
//! a flow by its addresses alone: with several cores, datagrams of sessions
//! owned by different cores could share a buffer and all land on one core.
//! (Senders avoid the same hazard on their side: a GSO run only joins
//! datagrams of one session, see `txq`.)

use std::os::fd::AsRawFd;

use crate::sock::setsockopt_int;

/// The most datagrams one coalesced buffer is split into. The kernel's own
/// caps are 64 (`UDP_GRO_CNT_MAX`, network GRO) and 64 or 128
/// (`UDP_MAX_SEGMENTS`, a local GSO send); anything beyond this is dropped
/// and counted in `rx_errors`.
pub(crate) const MAX_GRO_SEGMENTS: usize = 128;

/// The receive slot for a coalesced buffer: the largest UDP payload.
pub(crate) const GRO_SLOT: usize = 65_535;

/// Control buffer per received message: room for the `UDP_GRO` cmsg
/// (`CMSG_SPACE(sizeof(int))` = 24 on 64-bit) with margin.
pub(crate) const CTRL_LEN: usize = 64;

/// Turns `UDP_GRO` on or off for `s`. `false` if the kernel refused (then
/// the socket delivers one datagram per message, which is always correct).
pub(crate) fn set(s: &socket2::Socket, on: bool) -> bool {
    match setsockopt_int(s.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, i32::from(on)) {
        Ok(()) => true,
        Err(e) => {
            if on {
                tracing::debug!(error = %e, "net-io: UDP GRO unavailable");
            }
            false
        }
    }
}

/// The segment size from a received message's control data: the `UDP_GRO`
/// cmsg's value, or `None` if there is none (one datagram) or it is
/// malformed. Parses the kernel's `cmsghdr` layout (native-endian
/// `usize len, i32 level, i32 type`, data, padding to `usize`).
pub(crate) fn segment_size(mut ctrl: &[u8]) -> Option<usize> {
    const W: usize = std::mem::size_of::<usize>();
    const HDR: usize = W + 8;
    while ctrl.len() >= HDR {
        let len = usize::from_ne_bytes(ctrl[..W].try_into().ok()?);
        let level = i32::from_ne_bytes(ctrl[W..W + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(ctrl[W + 4..HDR].try_into().ok()?);
        if len < HDR || len > ctrl.len() {
            return None;
        }
        if level == libc::SOL_UDP && kind == libc::UDP_GRO && len >= HDR + 4 {
            let v = i32::from_ne_bytes(ctrl[HDR..HDR + 4].try_into().ok()?);
            return usize::try_from(v).ok().filter(|&s| s > 0);
        }
        let step = len.div_ceil(W) * W;
        ctrl = ctrl.get(step..)?;
    }
    None
}

/// The datagrams of one received message of `len` bytes: with segment size
/// `seg` (from [`segment_size`]; `None` = one datagram), consecutive pieces
/// of `seg` bytes, the last possibly shorter. Yields `(offset, length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    len: u32,
    seg: u32,
    pos: u32,
    left: u32,
}

impl Cut {
    /// The cut of a message, and how many of its datagrams are refused
    /// (counted by the caller in `rx_errors`): every one if a datagram would
    /// exceed `max_datagram`, and those beyond [`MAX_GRO_SEGMENTS`].
    pub(crate) fn new(len: usize, seg: Option<usize>, max_datagram: usize) -> (Cut, u64) {
        let seg = seg.filter(|&s| s < len).unwrap_or(len).max(1);
        let count = len.div_ceil(seg).max(1);
        let none = Cut {
            len: 0,
            seg: 1,
            pos: 0,
            left: 0,
        };
        if seg > max_datagram || len > GRO_SLOT {
            return (none, count as u64);
        }
        let kept = count.min(MAX_GRO_SEGMENTS);
        let cut = Cut {
            len: len as u32,
            seg: seg as u32,
            pos: 0,
            left: kept as u32,
        };
        (cut, (count - kept) as u64)
    }

    /// Datagrams not yet yielded.
    pub(crate) fn remaining(&self) -> usize {
        self.left as usize
    }
}

impl Iterator for Cut {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let off = self.pos;
        let l = self.seg.min(self.len - off);
        self.pos += l;
        Some((off as usize, l as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, val: i32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(std::mem::size_of::<usize>() + 12).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&val.to_ne_bytes());
        v.resize(v.len().div_ceil(8) * 8, 0);
        v
    }

    #[test]
    fn finds_the_gro_cmsg_after_others() {
        let mut c = cmsg(libc::SOL_IP, libc::IP_TOS, 7);
        c.extend(cmsg(libc::SOL_UDP, libc::UDP_GRO, 1400));
        assert_eq!(segment_size(&c), Some(1400));
        assert_eq!(segment_size(&cmsg(libc::SOL_IP, libc::IP_TOS, 7)), None);
        assert_eq!(segment_size(&[]), None);
    }

    #[test]
    fn malformed_control_data_is_no_segment_size() {
        let mut c = cmsg(libc::SOL_UDP, libc::UDP_GRO, 1400);
        c[0] = 200; // length past the buffer
        assert_eq!(segment_size(&c), None);
        assert_eq!(segment_size(&cmsg(libc::SOL_UDP, libc::UDP_GRO, -1)), None);
        assert_eq!(segment_size(&cmsg(libc::SOL_UDP, libc::UDP_GRO, 0)), None);
        for n in 0..c.len() {
            let _ = segment_size(&c[..n]);
        }
    }

    fn cut(len: usize, seg: Option<usize>, max: usize) -> (Vec<(usize, usize)>, u64) {
        let (c, refused) = Cut::new(len, seg, max);
        assert_eq!(c.remaining(), c.collect::<Vec<_>>().len());
        (c.collect(), refused)
    }

    #[test]
    fn splits_into_segments_with_a_short_tail() {
        assert_eq!(
            cut(3500, Some(1400), 1500).0,
            [(0, 1400), (1400, 1400), (2800, 700)]
        );
        assert_eq!(cut(2800, Some(1400), 1500).0, [(0, 1400), (1400, 1400)]);
        assert_eq!(cut(900, Some(1400), 1500).0, [(0, 900)]);
        assert_eq!(cut(900, None, 1500).0, [(0, 900)]);
        assert_eq!(cut(0, None, 1500).0, [(0, 0)]);
    }

    #[test]
    fn oversized_or_too_many_segments_are_refused_and_counted() {
        assert_eq!(cut(4000, None, 1500), (vec![], 1));
        assert_eq!(cut(4000, Some(2000), 1500), (vec![], 2));
        let (v, refused) = cut(200 * 10, Some(10), 1500);
        assert_eq!(
            (v.len(), refused),
            (MAX_GRO_SEGMENTS, 200 - MAX_GRO_SEGMENTS as u64)
        );
    }
}
