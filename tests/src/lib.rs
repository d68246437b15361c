//! Test support.
pub mod mock;
pub mod lab;
