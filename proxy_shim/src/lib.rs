//! `duo-proxy-shim`: the sshd `ForceCommand` of the Duo Push terminal proxy. It learns the target
//! (a menu, or named in the ssh command), checks that the user may reach it, sends the
//! target-hop Duo Push, and only after approval runs the connection (an OpenSSH client, or a raw
//! byte relay for `connect`).
//!
//! The binary's `main` only gathers inputs; the logic lives in these modules so that it can be
//! tested without sshd, a terminal or Duo.
#![forbid(unsafe_code)]

pub mod app;
pub mod catalog;
pub mod check;
pub mod command;
pub mod connect;
pub mod environment;
pub mod menu;
pub mod privilege;
pub mod push;
pub mod relay;
pub mod target_ssh;

/// The product name in the User-Agent of requests to Duo.
pub const USER_AGENT_PRODUCT: &str = "duo-proxy-shim";
