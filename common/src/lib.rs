//! Shared core of the Duo Push terminal proxy.
#![forbid(unsafe_code)]

pub mod signing;
pub mod secret;
