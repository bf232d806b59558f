//! Identifier newtypes.
