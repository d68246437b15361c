//! Test support.
pub mod lab;
pub mod mock;
