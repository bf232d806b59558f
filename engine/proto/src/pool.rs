//! Reuse of payload buffers, so a steady call rate allocates nothing.

/// Free list of byte vectors. Bounded: beyond `MAX_POOLED` returned buffers
/// are simply dropped, so a burst cannot pin memory forever.
#[derive(Default)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
}

const MAX_POOLED: usize = 4096;
/// Buffers larger than this are not kept: one jumbo message must not turn
/// every pooled buffer into a jumbo buffer.
const MAX_POOLED_CAPACITY: usize = 64 * 1024;

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
