//! `connect`: the TCP connection to the target and the relay over the shim's stdin/stdout.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use duo_push_common::policy::Approval;

use crate::relay::{self, Mode, RelayReport};

/// The target could not be reached, or stdio could not be set up.
#[derive(Debug)]
pub enum ConnectError {
    /// The host did not resolve.
    Resolve(String),
    /// No address accepted the connection.
    Connect(String),
    /// stdin/stdout could not be taken over.
    Stdio(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(e) => write!(f, "cannot resolve the target: {e}"),
            Self::Connect(e) => write!(f, "cannot connect to the target: {e}"),
            Self::Stdio(e) => write!(f, "cannot use stdin/stdout: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Opens the TCP connection to `host:port`, trying each address with `timeout`. Takes the
/// target push's [`Approval`] by value: no connection without one.
pub fn open(
    approval: Approval,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    drop(approval);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve(e.to_string()))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                // Interactive SSH through the relay must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(ConnectError::Connect(last))
}

/// Relays between this process's stdin/stdout and `socket`.
///
/// The relay works on duplicates of descriptors 0 and 1, and `/dev/null` is put in place of the
/// originals, so that closing the duplicate really closes sshd's channel (the user's side sees
/// EOF when the target's side ends) and nothing else in the process can write into the
/// channel.
///
/// It uses read/write ([`Mode::Copy`]): on loopback with 1 GiB it was as fast as splice(2)
/// from the user and faster towards the user (`examples/relay_bench.rs`), and it is the simpler
/// path.
pub fn relay_stdio(socket: &TcpStream) -> Result<RelayReport, ConnectError> {
    let input: OwnedFd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(ConnectError::Stdio)?;
    let output: OwnedFd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(ConnectError::Stdio)?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(ConnectError::Stdio)?;
    nix::unistd::dup2_stdin(&null).map_err(|e| ConnectError::Stdio(e.into()))?;
    nix::unistd::dup2_stdout(&null).map_err(|e| ConnectError::Stdio(e.into()))?;
    drop(null);
    Ok(relay::relay(input, output, socket, Mode::Copy))
}
