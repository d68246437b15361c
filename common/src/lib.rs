//! Shared core of the Duo Push terminal proxy: Duo request signing and the Auth API client,
//! configuration, the forced-MFA policy, the push flow, the Duo identity of a user, and the audit
//! log. Used by the PAM module `pam_duo_push` and by `duo-proxy-shim`.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod client;
pub mod config;
pub mod flow;
pub mod identity;
pub mod ini;
pub mod policy;
pub mod secret;
pub mod secure_open;
pub mod signing;
pub mod tls;
