//! Trust layer (being written).
