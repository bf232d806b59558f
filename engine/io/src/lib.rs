//! UDP drivers for Net. Filled in by the engine issue; the protocol core does no IO.
