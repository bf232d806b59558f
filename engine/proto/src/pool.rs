//! Reuse of payload buffers, so a steady call rate allocates nothing.

/// Free list of byte vectors. Bounded: beyond `MAX_POOLED` returned buffers
/// are simply dropped, so a burst cannot pin memory forever.
#[derive(Default)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
}

const MAX_POOLED: usize = 4096;
/// Buffers larger than this are not kept: one jumbo message must not turn
/// every pooled buffer into a jumbo buffer. A larger body handed over as
/// [`Payload::Take`] is moved, not copied.
pub const MAX_POOLED_CAPACITY: usize = 64 * 1024;

/// A body handed to the endpoint: borrowed (copied into a pooled buffer) or
/// a buffer the caller gives up.
#[derive(Debug)]
pub enum Payload<'a> {
    /// Copied: the caller keeps its bytes.
    Copy(&'a [u8]),
    /// Taken, without a copy, when larger than the pool keeps (64 KiB; a
    /// 16-MiB body would otherwise be copied once more before it is sent);
    /// smaller ones are copied, so the caller's buffer stays reusable. The
    /// vector is left empty when taken, and untouched when the call fails.
    Take(&'a mut Vec<u8>),
}

impl<'a> From<&'a [u8]> for Payload<'a> {
    fn from(d: &'a [u8]) -> Self {
        Payload::Copy(d)
    }
}

impl<'a> From<&'a Vec<u8>> for Payload<'a> {
    fn from(d: &'a Vec<u8>) -> Self {
        Payload::Copy(d)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Payload<'a> {
    fn from(d: &'a [u8; N]) -> Self {
        Payload::Copy(d)
    }
}

impl Payload<'_> {
    /// The body's length.
    pub fn len(&self) -> usize {
        match self {
            Payload::Copy(d) => d.len(),
            Payload::Take(v) => v.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as an owned buffer: taken or copied into one of `pool`'s.
    pub(crate) fn into_buf(self, pool: &mut BufPool) -> Vec<u8> {
        match self {
            Payload::Take(v) if v.len() > MAX_POOLED_CAPACITY => std::mem::take(v),
            Payload::Take(v) => pool.copy_of(v),
            Payload::Copy(d) => pool.copy_of(d),
        }
    }
}

impl BufPool {
    /// A buffer holding a copy of `data`.
    pub fn copy_of(&mut self, data: &[u8]) -> Vec<u8> {
        let mut v = self.free.pop().unwrap_or_default();
        v.extend_from_slice(data);
        v
    }

    /// Returns a buffer for reuse.
    pub fn put(&mut self, mut v: Vec<u8>) {
        if self.free.len() < MAX_POOLED && v.capacity() <= MAX_POOLED_CAPACITY && v.capacity() > 0 {
            v.clear();
            self.free.push(v);
        }
    }
}
