//! A bounded cache keyed by a wire-claimed value.

use std::num::NonZeroUsize;

use lru::LruCache;

/// Default [`OriginCache`] capacity: the legitimate active-caller working
/// set of one service.
pub const DEFAULT_ORIGIN_CACHE_CAPACITY: usize = 4096;

/// A least-recently-used cache keyed by a value a peer writes on the wire
/// (a caller origin, a reply route), for state derived from it.
///
/// Invariant: never more than [`OriginCache::capacity`] entries, whatever
/// keys arrive — a peer spraying distinct keys evicts older entries and
/// cannot grow memory. Eviction must always be safe for the user: a miss
/// only means recomputing the value. The hasher is std's randomly seeded
/// SipHash, so chosen keys cannot force collisions either.
pub struct OriginCache<V> {
    inner: LruCache<u64, V>,
}

impl<V> OriginCache<V> {
    /// A cache of at most `cap` entries (a `cap` of 0 is taken as 1).
    pub fn new(cap: usize) -> OriginCache<V> {
        OriginCache {
            inner: LruCache::new(NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// The value for `k`, marking it most recently used.
    pub fn get(&mut self, k: u64) -> Option<&V> {
        self.inner.get(&k)
    }

    /// Inserts or replaces `k`, evicting the least recently used entry if
    /// full.
    pub fn insert(&mut self, k: u64, v: V) {
        self.inner.put(k, v);
    }

    /// The value for `k`, computing and inserting it on a miss.
    pub fn get_or_insert_with(&mut self, k: u64, f: impl FnOnce() -> V) -> &V {
        self.inner.get_or_insert(k, f)
    }

    /// Number of entries (never above the capacity).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.inner.cap().get()
    }
}

impl<V> Default for OriginCache<V> {
    /// A cache of [`DEFAULT_ORIGIN_CACHE_CAPACITY`] entries.
    fn default() -> Self {
        OriginCache::new(DEFAULT_ORIGIN_CACHE_CAPACITY)
    }
}

impl<V> std::fmt::Debug for OriginCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}
