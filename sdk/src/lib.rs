//! Net SDK. Filled in by the engine issue.
