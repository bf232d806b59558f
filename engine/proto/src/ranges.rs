//! Sets of u64 ranges.
