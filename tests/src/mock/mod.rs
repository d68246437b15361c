//! mock-duo: a strict simulated Duo Auth API server for tests and benchmarks.
//!
//! It serves HTTPS on a loopback address with a certificate issued by its own CA, verifies every
//! request signature (v1, v2 with HMAC-SHA1 or HMAC-SHA512, v5) and the date window the way Duo
//! does, and answers ping, check, preauth, auth (sync and async) and auth_status, the duo_unix
//! 2.x text-menu flow, and the legacy REST v1 BSON protocol of duo_unix 1.x. The username's
//! prefix chooses the behaviour (see [`behavior`], and [`fault`] for transport and reply faults
//! at a chosen stage); an unsigned control API under `/mock/`
//! scripts outcomes, approves or denies pending pushes, and returns the push and request logs;
//! `/phone` is a phone simulator page for the demo (see [`phone`]).
//!
//! Start it in-process with [`MockServer::start`], or run the `mock-duo` binary.

pub mod behavior;
pub mod cert;
mod control;
pub mod fault;
pub mod harness;
mod legacy;
pub mod phone;
pub mod reply;
pub mod server;
pub mod state;
mod v2;
pub mod verify;

pub use server::{MockConfig, MockError, MockServer};
