//! The `connect` relay: bytes between the user's channel (stdin/stdout, from sshd) and a TCP
//! connection to the target, in both directions at once, with correct half-close.
//!
//! * user -> target: at EOF on the input, `shutdown(Write)` on the socket, and keep reading the
//!   socket (the target may still be sending);
//! * target -> user: at EOF on the socket, the output is closed so the user's client sees EOF;
//! * the relay ends when both directions have ended; an error in either direction shuts the
//!   socket down completely so that the other direction ends too.
//!
//! Each direction runs on its own thread with blocking I/O, moving bytes with read/write through a
//! 256 KiB buffer ([`Mode::Copy`], what `connect` uses) or with splice(2) through a private pipe
//! ([`Mode::Auto`], falling back to read/write where the kernel cannot splice). On loopback the
//! two were equally fast from the user and read/write was faster towards the user
//! (`examples/relay_bench.rs`), so splice is kept only as a measured alternative.

use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

/// Bytes asked of one splice(2) call.
const SPLICE_CHUNK: usize = 1 << 20;
/// Pipe capacity requested for splice pipes (the unprivileged maximum by default).
const PIPE_SIZE: i32 = 1 << 20;
/// Buffer of the read/write path.
pub const COPY_BUFFER: usize = 256 * 1024;

/// How bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// splice(2) where the kernel supports it, read/write otherwise.
    Auto,
    /// read/write only (for comparison and tests).
    Copy,
}

/// What one direction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Direction {
    /// Bytes written to the destination.
    pub bytes: u64,
    /// The error that ended it, if it did not end at EOF.
    pub error: Option<String>,
}

/// What the relay did, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayReport {
    /// User -> target.
    pub to_target: Direction,
    /// Target -> user.
    pub from_target: Direction,
    /// Wall time from start to the end of both directions.
    pub duration: Duration,
}

impl RelayReport {
    /// Whether both directions ended at EOF.
    pub fn clean(&self) -> bool {
        self.to_target.error.is_none() && self.from_target.error.is_none()
    }
}

impl fmt::Display for RelayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes to target, {} bytes from target in {} ms",
            self.to_target.bytes,
            self.from_target.bytes,
            self.duration.as_millis()
        )?;
        if let Some(e) = &self.to_target.error {
            write!(f, "; to target: {e}")?;
        }
        if let Some(e) = &self.from_target.error {
            write!(f, "; from target: {e}")?;
        }
        Ok(())
    }
}

/// Relays between `input`/`output` (the user's side) and `socket` until both directions end.
/// `output` is closed as soon as the target's side reaches EOF.
pub fn relay(input: OwnedFd, output: OwnedFd, socket: &TcpStream, mode: Mode) -> RelayReport {
    let start = Instant::now();
    let (to_target, from_target) = std::thread::scope(|scope| {
        let upstream = scope.spawn(move || {
            let result = pump(input.as_fd(), socket.as_fd(), mode);
            drop(input);
            match result.error {
                // The target still may send: only our sending side ends.
                None => {
                    let _ = socket.shutdown(Shutdown::Write);
                }
                Some(_) => {
                    let _ = socket.shutdown(Shutdown::Both);
                }
            }
            result
        });
        let downstream = pump(socket.as_fd(), output.as_fd(), mode);
        drop(output);
        if downstream.error.is_some() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let upstream = upstream.join().unwrap_or_else(|_| Direction {
            bytes: 0,
            error: Some("relay thread panicked".to_owned()),
        });
        (upstream, downstream)
    });
    RelayReport {
        to_target,
        from_target,
        duration: start.elapsed(),
    }
}

/// Moves bytes from `src` to `dst` until EOF on `src` or an error.
pub fn pump(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, mode: Mode) -> Direction {
    let mut moved: u64 = 0;
    let result = match mode {
        Mode::Copy => copy(src, dst, &mut moved),
        Mode::Auto => match splice_all(src, dst, &mut moved) {
            Err(Errno::EINVAL) if moved == 0 => copy(src, dst, &mut moved),
            other => other,
        },
    };
    Direction {
        bytes: moved,
        error: result.err().map(|e| io::Error::from(e).to_string()),
    }
}

/// Retries `op` on EINTR.
fn retry<T>(mut op: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match op() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Zero-copy path: `src` -> private pipe -> `dst`. EINVAL on the first call means the kernel
/// cannot splice these descriptors.
///
/// Bytes always pass through a private pipe, and the second splice asks for exactly the bytes
/// that pipe holds. Direct splices between sshd's pipes and the TCP socket with a large length
/// stalled request/response traffic such as SSH's key exchange (seen on Linux 6.18: bytes taken
/// from the source did not reach the other side until more data came;
/// `a_conversation_flows_both_ways_through_pipes` reproduces it), which a relay must never do.
fn splice_all(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, moved: &mut u64) -> nix::Result<()> {
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let (pipe_r, pipe_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let _ = fcntl(&pipe_w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    loop {
        let n = retry(|| splice(src, None, &pipe_w, None, SPLICE_CHUNK, flags))?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let m = retry(|| splice(&pipe_r, None, dst, None, left, flags))?;
            if m == 0 {
                return Err(Errno::EPIPE);
            }
            left = left.saturating_sub(m);
            *moved = moved.saturating_add(m as u64);
        }
    }
}

/// read/write path.
fn copy(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, moved: &mut u64) -> nix::Result<()> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = retry(|| nix::unistd::read(src, &mut buffer))?;
        if n == 0 {
            return Ok(());
        }
        let mut pending = buffer.get(..n).ok_or(Errno::EIO)?;
        while !pending.is_empty() {
            let m = retry(|| nix::unistd::write(dst, pending))?;
            if m == 0 {
                return Err(Errno::EPIPE);
            }
            pending = pending.get(m..).ok_or(Errno::EIO)?;
            *moved = moved.saturating_add(m as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::unix::net::UnixStream;
    use std::thread;

    use super::*;

    /// A target that reads everything until the client half-closes, then answers with the
    /// byte count and a checksum and closes. It only answers if half-close works.
    fn counting_target() -> (std::net::SocketAddr, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            let sum: u64 = got.iter().map(|b| u64::from(*b)).sum();
            conn.write_all(format!("{} {}\n", got.len(), sum).as_bytes())
                .unwrap();
            got
        });
        (addr, handle)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn run_half_close(mode: Mode, pipes: bool) {
        let (addr, target) = counting_target();
        let socket = TcpStream::connect(addr).unwrap();
        let data = pattern(3 * 1024 * 1024 + 17);
        let expected_sum: u64 = data.iter().map(|b| u64::from(*b)).sum();

        let (input, mut feed): (OwnedFd, Box<dyn Write + Send>) = if pipes {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
            (r, Box::new(std::fs::File::from(w)))
        } else {
            let (a, b) = UnixStream::pair().unwrap();
            (a.into(), Box::new(b))
        };
        let (output, mut drain): (OwnedFd, Box<dyn Read + Send>) = if pipes {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
            (w, Box::new(std::fs::File::from(r)))
        } else {
            let (a, b) = UnixStream::pair().unwrap();
            (a.into(), Box::new(b))
        };
        let writer = {
            let data = data.clone();
            thread::spawn(move || {
                feed.write_all(&data).unwrap();
                // dropping `feed` is the user's EOF
            })
        };
        let reader = thread::spawn(move || {
            let mut answer = Vec::new();
            drain.read_to_end(&mut answer).unwrap();
            answer
        });
        let report = relay(input, output, &socket, mode);
        writer.join().unwrap();
        let answer = reader.join().unwrap();
        let received = target.join().unwrap();
        assert_eq!(received, data);
        assert_eq!(
            String::from_utf8(answer.clone()).unwrap(),
            format!("{} {expected_sum}\n", data.len())
        );
        assert!(report.clean(), "{report}");
        assert_eq!(report.to_target.bytes, data.len() as u64);
        assert_eq!(report.from_target.bytes, answer.len() as u64);
    }

    #[test]
    fn half_close_reaches_the_target_and_its_answer_comes_back_spliced_through_pipes() {
        run_half_close(Mode::Auto, true);
    }

    #[test]
    fn half_close_works_through_a_private_pipe_between_sockets() {
        run_half_close(Mode::Auto, false);
    }

    #[test]
    fn half_close_works_with_read_and_write() {
        run_half_close(Mode::Copy, true);
        run_half_close(Mode::Copy, false);
    }

    /// A conversation: each side waits for the other's message before answering, as SSH's
    /// key exchange does. Stalls if a direction holds data back.
    fn run_ping_pong(mode: Mode, pipes: bool) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            for i in 0..50u32 {
                conn.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"ping\n");
                conn.write_all(format!("pong{}\n", i % 10).as_bytes())
                    .unwrap();
            }
        });
        let socket = TcpStream::connect(addr).unwrap();
        let (input, mut feed): (OwnedFd, Box<dyn Write + Send>) = if pipes {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
            (r, Box::new(std::fs::File::from(w)))
        } else {
            let (a, b) = UnixStream::pair().unwrap();
            (a.into(), Box::new(b))
        };
        let (output, mut drain): (OwnedFd, Box<dyn Read + Send>) = if pipes {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
            (w, Box::new(std::fs::File::from(r)))
        } else {
            let (a, b) = UnixStream::pair().unwrap();
            (a.into(), Box::new(b))
        };
        let client = thread::spawn(move || {
            let mut buf = [0u8; 6];
            for i in 0..50u32 {
                feed.write_all(b"ping\n").unwrap();
                drain.read_exact(&mut buf).unwrap();
                assert_eq!(buf, *format!("pong{}\n", i % 10).as_bytes());
            }
            drop(feed);
            let mut rest = Vec::new();
            drain.read_to_end(&mut rest).unwrap();
            rest
        });
        let report = relay(input, output, &socket, mode);
        target.join().unwrap();
        assert!(client.join().unwrap().is_empty());
        assert_eq!(report.to_target.bytes, 250);
        assert_eq!(report.from_target.bytes, 300);
    }

    #[test]
    fn a_conversation_flows_both_ways_through_pipes() {
        run_ping_pong(Mode::Auto, true);
        run_ping_pong(Mode::Copy, true);
    }

    #[test]
    fn a_conversation_flows_both_ways_through_sockets() {
        run_ping_pong(Mode::Auto, false);
        run_ping_pong(Mode::Copy, false);
    }

    #[test]
    fn target_closing_first_closes_the_output_and_the_relay_ends_at_input_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"SSH-2.0-banner\r\n").unwrap();
            // closes without reading
        });
        let socket = TcpStream::connect(addr).unwrap();
        let (input, feed) = UnixStream::pair().unwrap();
        let (output, mut drain) = UnixStream::pair().unwrap();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            drain.read_to_end(&mut got).unwrap();
            // The user's client sees EOF, then closes its side.
            drop(feed);
            got
        });
        let report = relay(input.into(), output.into(), &socket, Mode::Auto);
        target.join().unwrap();
        assert_eq!(reader.join().unwrap(), b"SSH-2.0-banner\r\n");
        assert_eq!(report.from_target.bytes, 16);
        assert_eq!(report.to_target.bytes, 0);
    }

    #[test]
    fn a_regular_file_source_goes_through_the_private_pipe() {
        let file = tempfile_with(b"hello through a file\n");
        let (out_a, mut out_b) = UnixStream::pair().unwrap();
        let result = pump(file.as_fd(), out_a.as_fd(), Mode::Auto);
        drop(out_a);
        let mut got = Vec::new();
        out_b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello through a file\n");
        assert_eq!(result.bytes, 21);
        assert!(result.error.is_none());
    }

    #[test]
    fn write_errors_end_the_direction_with_an_error() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        drop(r);
        for mode in [Mode::Auto, Mode::Copy] {
            let (src_a, mut src_b) = UnixStream::pair().unwrap();
            src_b.write_all(b"data").unwrap();
            drop(src_b);
            let result = pump(src_a.as_fd(), w.as_fd(), mode);
            assert!(result.error.is_some(), "{mode:?}: {result:?}");
        }
    }

    fn tempfile_with(content: &[u8]) -> std::fs::File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "relay-test-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}
