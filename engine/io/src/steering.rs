//! Kernel steering of a reuseport group: which socket (core) gets a datagram.
//!
//! # Layout read
//!
//! The program sees the UDP payload at offset 0 (the kernel pulls the UDP
//! header before running it) and loads big-endian:
//!
//! ```text
//!  byte 0            packet type; == init_type (1) marks a handshake initiation
//!  bytes index_offset..+4   u32 index: the receiver's index for every packet
//!                    type except the initiation, which carries the sender's
//! ```
//!
//! * initiation (`byte0 == init_type`): socket = `(index >> core_bits) % n`,
//!   spreading new handshakes over the cores by the random high bits;
//! * anything else: socket = `index & ((1 << core_bits) - 1)`: by engine
//!   convention the low `core_bits` bits of a receiver index name the core
//!   that owns the session.
//!
//! A result `>= n` (only possible for a non-power-of-two `n` on the data
//! branch) makes the kernel fall back to its 4-tuple hash.
//!
//! # Short datagrams
//!
//! A classic-BPF load past the end of the packet aborts the program with
//! return value 0, which the kernel would take as "socket 0": every runt
//! datagram would land on core 0. The program therefore checks the length
//! first and returns `u32::MAX` for datagrams shorter than
//! `index_offset + 4`, which the kernel treats as an out-of-range index and
//! resolves with its hash (`reuseport_select_sock` → `select_by_hash`). Either
//! way the datagram is delivered to exactly one socket of the group and
//! nothing crashes; Net drops such runts at classification.
//!
//! The group index of a socket is its bind order. If a socket of the group
//! is closed, the kernel moves the last socket into its slot, so steering
//! of the remaining drivers is only meaningful while the whole group lives.

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic value).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// The largest reuseport group [`crate::open_group`] accepts.
pub const MAX_GROUP: usize = 256;

/// Kernel steering for a reuseport group of `n` sockets (n ≤ 256). See the
/// module docs for the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Steering {
    /// Payload offset of the big-endian u32 index (Net: 4).
    pub index_offset: u32,
    /// Low index bits naming the core: `ceil(log2 n)` (0..=31).
    pub core_bits: u32,
    /// Byte-0 value of a handshake initiation (Net: 1).
    pub init_type: u8,
}

impl Default for Steering {
    /// Net's layout for a single core: offset 4, no core bits, type 1.
    fn default() -> Self {
        Steering {
            index_offset: 4,
            core_bits: 0,
            init_type: 1,
        }
    }
}

/// `ceil(log2 n)`, 0 for n ≤ 1.
pub const fn core_bits_for(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

impl Steering {
    /// Net's layout for a group of `n` sockets: offset 4,
    /// `core_bits = ceil(log2 n)`, initiation type 1.
    pub const fn for_group(n: usize) -> Self {
        Steering {
            index_offset: 4,
            core_bits: core_bits_for(n),
            init_type: 1,
        }
    }

    /// The mask of core bits.
    pub const fn core_mask(&self) -> u32 {
        if self.core_bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.core_bits) - 1
        }
    }

    /// The core a receiver index belongs to (its masked low bits). Engines
    /// allocate receiver indices with `index & core_mask() == core`.
    pub const fn core_of(&self, index: u32) -> u32 {
        index & self.core_mask()
    }

    /// A Rust model of the kernel program: the socket index it returns for
    /// `payload` in a group of `n`, or `None` where the kernel falls back to
    /// its hash (runt datagram, or result ≥ n).
    pub fn select(&self, payload: &[u8], n: usize) -> Option<usize> {
        let off = self.index_offset as usize;
        let word = payload.get(off..off.checked_add(4)?)?;
        let index = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        let r = if payload[0] == self.init_type {
            (index >> self.core_bits) % (n.max(1) as u32)
        } else {
            index & self.core_mask()
        };
        ((r as usize) < n).then_some(r as usize)
    }

    /// Checks the parameters for a group of `n`.
    pub fn validate(&self, n: usize) -> io::Result<()> {
        if n == 0 || n > MAX_GROUP {
            return Err(crate::error::invalid(format!(
                "group of {n} sockets not in 1..={MAX_GROUP}"
            )));
        }
        if self.core_bits > 31 {
            return Err(crate::error::invalid("core_bits above 31"));
        }
        if self.index_offset > (1 << 16) {
            return Err(crate::error::invalid("index_offset above 65536"));
        }
        if (1usize << self.core_bits) < n {
            tracing::warn!(
                core_bits = self.core_bits,
                n,
                "net-io: core_bits cannot name every socket of the group"
            );
        }
        Ok(())
    }

    /// The classic-BPF program for a group of `n` (validated) sockets.
    pub fn program(&self, n: usize) -> Vec<libc::sock_filter> {
        const LD_LEN: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_LEN) as u16;
        const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
        const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
        const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const RSH_K: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16;
        const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
        const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
        const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
        const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        let off = self.index_offset;
        vec![
            /* 0 */ ins(LD_LEN, 0, 0, 0),
            /* 1 */ ins(JGE_K, 0, 9, off + 4), // runt → 11
            /* 2 */ ins(LD_B_ABS, 0, 0, 0),
            /* 3 */ ins(JEQ_K, 0, 4, u32::from(self.init_type)), // data → 8
            /* 4 */ ins(LD_W_ABS, 0, 0, off),
            /* 5 */ ins(RSH_K, 0, 0, self.core_bits),
            /* 6 */ ins(MOD_K, 0, 0, n as u32),
            /* 7 */ ins(RET_A, 0, 0, 0),
            /* 8 */ ins(LD_W_ABS, 0, 0, off),
            /* 9 */ ins(AND_K, 0, 0, self.core_mask()),
            /* 10 */ ins(RET_A, 0, 0, 0),
            /* 11 */ ins(RET_K, 0, 0, u32::MAX),
        ]
    }

    /// Attaches the program to the group `sock` belongs to (any member).
    pub(crate) fn attach(&self, sock: &Socket, n: usize) -> io::Result<()> {
        self.validate(n)?;
        let prog = self.program(n);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `fprog` points at `prog`, which lives until after the call;
        // the kernel copies the program during setsockopt and keeps no
        // pointer into our memory. The length is that of sock_fprog.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_bits() {
        assert_eq!(core_bits_for(1), 0);
        assert_eq!(core_bits_for(2), 1);
        assert_eq!(core_bits_for(3), 2);
        assert_eq!(core_bits_for(4), 2);
        assert_eq!(core_bits_for(5), 3);
        assert_eq!(core_bits_for(256), 8);
    }

    /// A classic-BPF interpreter for the opcodes the program uses; a failed
    /// load returns 0 like the kernel's.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            let class = u32::from(i.code) & 0x07;
            let op = u32::from(i.code) & 0xf0;
            pc += 1;
            match class {
                c if c == libc::BPF_LD => {
                    let mode = u32::from(i.code) & 0xe0;
                    let size = u32::from(i.code) & 0x18;
                    if mode == libc::BPF_LEN {
                        a = pkt.len() as u32;
                    } else {
                        let k = i.k as usize;
                        let n = if size == libc::BPF_B { 1 } else { 4 };
                        let Some(b) = pkt.get(k..k + n) else { return 0 };
                        a = b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
                    }
                }
                c if c == libc::BPF_JMP => {
                    let taken = if op == libc::BPF_JGE {
                        a >= i.k
                    } else {
                        a == i.k
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                c if c == libc::BPF_ALU => {
                    a = match op {
                        o if o == libc::BPF_RSH => a >> i.k,
                        o if o == libc::BPF_MOD => a % i.k,
                        _ => a & i.k,
                    };
                }
                _ => {
                    let src = u32::from(i.code) & 0x18;
                    return if src == libc::BPF_A { a } else { i.k };
                }
            }
        }
    }

    #[test]
    fn program_matches_model() {
        for n in [2usize, 3, 4, 7, 256] {
            let s = Steering::for_group(n);
            let prog = s.program(n);
            let mut x = 0x9e37_79b9u32;
            for len in [0usize, 1, 7, 8, 9, 64] {
                for ptype in [1u8, 4, 2, 0] {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let mut p = vec![0u8; len];
                    if len > 0 {
                        p[0] = ptype;
                    }
                    if len >= 8 {
                        p[4..8].copy_from_slice(&x.to_be_bytes());
                    }
                    let r = run(&prog, &p);
                    let model = s.select(&p, n);
                    match model {
                        Some(sock) => assert_eq!(r as usize, sock),
                        None => assert!(r as usize >= n, "len {len}: {r} should be out of range"),
                    }
                }
            }
        }
    }

    #[test]
    fn model() {
        let s = Steering::for_group(4);
        let mut p = [0u8; 16];
        p[0] = 4;
        p[4..8].copy_from_slice(&0x1234_5677u32.to_be_bytes());
        assert_eq!(s.select(&p, 4), Some(3));
        p[0] = 1;
        assert_eq!(s.select(&p, 4), Some(((0x1234_5677u32 >> 2) % 4) as usize));
        assert_eq!(s.select(&p[..7], 4), None);
        let s3 = Steering::for_group(3);
        p[0] = 4;
        assert_eq!(s3.select(&p, 3), None); // low bits 3 ≥ n: kernel hash
    }
}
