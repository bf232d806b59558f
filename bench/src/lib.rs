//! Net benchmarks. Criterion micro-benches live in `benches/`.
