//! Thread-per-core runtime for Net. Filled in by the engine issue.
