//! Transport and reply faults at a chosen stage of the Auth API v2 flow, for the fault matrix.
//!
//! A username of the form `f-<fault>-<stage>` (optionally followed by `-anything`, to keep
//! concurrent tests apart) makes mock-duo misbehave on that user's requests of one stage and
//! behave like an ordinary user (push approved) everywhere else. Stages: `preauth`
//! (`/auth/v2/preauth`), `auth` (`/auth/v2/auth`), `status` (`/auth/v2/auth_status` of the
//! user's transactions) and `all` (every one of them).
//!
//! | fault | what the reply looks like |
//! |---|---|
//! | `resethead` | half of the status line and headers, then a TCP reset |
//! | `resetbody` | the headers and 8 bytes of the body, then a TCP reset |
//! | `stall` | the request is read, nothing is ever answered ("slow headers") |
//! | `driphead` | the reply, one byte per second from its first byte |
//! | `drip` | the headers at once, then the body one byte per second ("slow body") |
//! | `e500`, `e503` | that status with Duo's FAIL body |
//! | `e429` | 429 with `Retry-After: 1`, every time (a 429 storm) |
//! | `trunc` | the real reply cut in half: valid HTTP, truncated JSON |
//! | `noresult` | `stat: OK` without `result` (preauth: no result; auth: no txid, no result; status: `status: allow` but no `result`) |
//! | `maybe` | `result: "maybe"` (auth: without a txid) |
//! | `huge` | a 2 MiB JSON body with a Content-Length |
//! | `flood` | a chunked body without a length that never ends (256 MiB) |
//! | `late` | the real reply after `--fault-delay-ms` (default 1500 ms) |
//! | `othertx` | stage `status` only: `/auth` also makes a second push of the user that is approved at once (txid B) and returns txid A, which stays pending; `auth_status` for A answers `result: allow` with a `txid` field naming B. Duo's reply has no txid field: a client must never take this as approval of A |
//! | `earlyallow` | stage `auth` only: the asynchronous `/auth` reply carries `result: allow` next to txid A, while A is denied: the approval is only what `auth_status` says about A |
//!
//! At the `auth` stage the push is made before the fault hits (the phone would buzz and, for an
//! ordinary user, approve): the reply was lost, not the request. The exceptions are `e500`,
//! `e503` and `e429`, which refuse the request, and `othertx`/`earlyallow` (see above).
//! Faults apply to the Auth API v2 only (not to the legacy REST v1 endpoints).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

/// The username prefix that selects a fault.
pub const PREFIX: &str = "f-";

/// Where in the flow a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `POST /auth/v2/preauth`.
    Preauth,
    /// `POST /auth/v2/auth`.
    Auth,
    /// `GET /auth/v2/auth_status`.
    Status,
    /// Every one of them.
    All,
}

impl Stage {
    /// The word used in usernames.
    pub fn word(self) -> &'static str {
        match self {
            Self::Preauth => "preauth",
            Self::Auth => "auth",
            Self::Status => "status",
            Self::All => "all",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        [Self::Preauth, Self::Auth, Self::Status, Self::All]
            .into_iter()
            .find(|s| s.word() == word)
    }

    /// Whether a fault of this stage hits a request of stage `at` (never `All`).
    pub fn hits(self, at: Stage) -> bool {
        self == Self::All || self == at
    }
}

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Part of the status line and headers, then a reset.
    ResetHead,
    /// The headers and a few body bytes, then a reset.
    ResetBody,
    /// No answer at all.
    Stall,
    /// The whole reply one byte per second.
    DripHead,
    /// The headers, then the body one byte per second.
    Drip,
    /// HTTP 500.
    E500,
    /// HTTP 503.
    E503,
    /// HTTP 429 with `Retry-After: 1`, always.
    E429,
    /// The real reply's JSON cut in half.
    Truncated,
    /// `stat: OK` without `result`.
    NoResult,
    /// `result: maybe`.
    UnknownResult,
    /// A 2 MiB body with a Content-Length.
    Huge,
    /// An endless chunked body.
    Flood,
    /// The real reply, late.
    Late,
    /// `auth_status` answers `allow` naming another transaction (stage `status` only).
    OtherTxid,
    /// The async `/auth` reply claims `result: allow`; the push is denied (stage `auth` only).
    EarlyAllow,
}

impl Fault {
    /// Every fault, in the order of the documentation table.
    pub const ALL: [Fault; 16] = [
        Self::ResetHead,
        Self::ResetBody,
        Self::Stall,
        Self::DripHead,
        Self::Drip,
        Self::E500,
        Self::E503,
        Self::E429,
        Self::Truncated,
        Self::NoResult,
        Self::UnknownResult,
        Self::Huge,
        Self::Flood,
        Self::Late,
        Self::OtherTxid,
        Self::EarlyAllow,
    ];

    /// The word used in usernames.
    pub fn word(self) -> &'static str {
        match self {
            Self::ResetHead => "resethead",
            Self::ResetBody => "resetbody",
            Self::Stall => "stall",
            Self::DripHead => "driphead",
            Self::Drip => "drip",
            Self::E500 => "e500",
            Self::E503 => "e503",
            Self::E429 => "e429",
            Self::Truncated => "trunc",
            Self::NoResult => "noresult",
            Self::UnknownResult => "maybe",
            Self::Huge => "huge",
            Self::Flood => "flood",
            Self::Late => "late",
            Self::OtherTxid => "othertx",
            Self::EarlyAllow => "earlyallow",
        }
    }

    /// Whether the fault can hit `stage` (`othertx` only at `status`, `earlyallow` only at
    /// `auth`).
    pub fn valid_at(self, stage: Stage) -> bool {
        match self {
            Self::OtherTxid => stage == Stage::Status,
            Self::EarlyAllow => stage == Stage::Auth,
            _ => true,
        }
    }
}

/// A fault and where it hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    /// What goes wrong.
    pub fault: Fault,
    /// Where.
    pub stage: Stage,
}

impl FaultSpec {
    /// Whether this spec hits a request of stage `at`.
    pub fn hits(&self, at: Stage) -> bool {
        self.stage.hits(at)
    }

    /// The username prefix for this spec, e.g. `f-stall-status`.
    pub fn username_prefix(&self) -> String {
        format!("{PREFIX}{}-{}", self.fault.word(), self.stage.word())
    }
}

/// The fault a username selects: `f-<fault>-<stage>` or `f-<fault>-<stage>-<anything>`.
/// Anything else (including an unknown fault or stage, or a fault at a stage it cannot hit)
/// selects none, and the user is ordinary.
pub fn fault_for(username: &str) -> Option<FaultSpec> {
    let rest = username.strip_prefix(PREFIX)?;
    let mut words = rest.splitn(3, '-');
    let fault_word = words.next()?;
    let stage = Stage::from_word(words.next()?)?;
    let fault = Fault::ALL.into_iter().find(|f| f.word() == fault_word)?;
    fault.valid_at(stage).then_some(FaultSpec { fault, stage })
}

/// How the bytes of one reply are mangled on their way out (see [`FaultIo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// Half of the head, then a reset.
    CutHead,
    /// The head and this many body bytes, then a reset.
    CutBody(usize),
    /// One byte per second from the first byte.
    DripAll,
    /// The head at once, then one byte per second.
    DripBody,
}

/// Shared between a connection's [`FaultIo`] and its request handler: the handler puts the
/// fault for the reply it is about to return, the writer takes it at the reply's first byte.
pub type FaultSlot = Arc<Mutex<Option<WriteFault>>>;

/// A new, empty slot.
pub fn new_slot() -> FaultSlot {
    Arc::new(Mutex::new(None))
}

/// Puts `fault` into `slot` for the next reply.
pub fn arm(slot: &FaultSlot, fault: WriteFault) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fault);
}

const DRIP_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of the head remembered while looking for its end.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug)]
struct Active {
    fault: WriteFault,
    written: usize,
    head: Vec<u8>,
    head_end: Option<usize>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Active {
    fn new(fault: WriteFault) -> Self {
        Self {
            fault,
            written: 0,
            head: Vec::new(),
            head_end: None,
            sleep: None,
        }
    }

    /// Looks for the end of the head (`\r\n\r\n`) in what was written plus `upcoming`.
    fn find_head_end(&mut self, upcoming: &[u8]) {
        if self.head_end.is_some() {
            return;
        }
        let mut seen = self.head.clone();
        seen.extend_from_slice(upcoming.get(..MAX_HEAD.min(upcoming.len())).unwrap_or(&[]));
        if let Some(pos) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            self.head_end = Some(pos + 4);
        }
    }

    fn remember(&mut self, written: &[u8]) {
        if self.head_end.is_none() && self.head.len() < MAX_HEAD {
            self.head.extend_from_slice(written);
        }
        self.written += written.len();
    }
}

/// The plaintext side of a mock-duo TLS connection, with the reply faults of [`WriteFault`].
/// Reads and, without a fault, writes go straight through.
#[derive(Debug)]
pub struct FaultIo {
    inner: TlsStream<TcpStream>,
    slot: FaultSlot,
    active: Option<Active>,
}

impl FaultIo {
    /// Wraps an accepted TLS stream.
    pub fn new(inner: TlsStream<TcpStream>, slot: FaultSlot) -> Self {
        Self {
            inner,
            slot,
            active: None,
        }
    }

    /// Makes the close that follows a reset (RST instead of FIN).
    fn abort(&mut self) -> io::Error {
        // Linger 0 makes the close send RST at once; it does not block on close.
        #[allow(deprecated, reason = "SO_LINGER 0 does not block: it resets at once")]
        let _ = self.inner.get_ref().0.set_linger(Some(Duration::ZERO));
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            "mock-duo fault: reset mid-reply",
        )
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.active.is_none() {
            let armed = this
                .slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            this.active = armed.map(Active::new);
        }
        let Some(active) = this.active.as_mut() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        active.find_head_end(buf);
        let limit = match active.fault {
            WriteFault::CutHead => Some(active.head_end.map_or(16, |end| end / 2)),
            WriteFault::CutBody(n) => Some(active.head_end.map_or(16, |end| end + n)),
            WriteFault::DripAll | WriteFault::DripBody => None,
        };
        if let Some(limit) = limit {
            let allowed = limit.saturating_sub(active.written);
            if allowed == 0 {
                // Push out what was written, then reset.
                ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
                return Poll::Ready(Err(this.abort()));
            }
            let part = buf.get(..allowed.min(buf.len())).unwrap_or(buf);
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, part))?;
            if let Some(active) = this.active.as_mut() {
                active.remember(part.get(..n).unwrap_or(part));
            }
            return Poll::Ready(Ok(n));
        }
        let at_once = match active.fault {
            WriteFault::DripBody => active.head_end.unwrap_or(0).saturating_sub(active.written),
            _ => 0,
        };
        if at_once > 0 {
            let part = buf.get(..at_once.min(buf.len())).unwrap_or(buf);
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, part))?;
            active.remember(part.get(..n).unwrap_or(part));
            return Poll::Ready(Ok(n));
        }
        if let Some(sleep) = active.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
        }
        let one = buf.get(..1).unwrap_or(buf);
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, one))?;
        active.remember(one.get(..n).unwrap_or(one));
        active.sleep = Some(Box::pin(tokio::time::sleep(DRIP_INTERVAL)));
        // Best effort: get the byte onto the wire now rather than with the next one.
        let _ = Pin::new(&mut this.inner).poll_flush(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then puts the head and the body into one buffer (its "flatten"
    // strategy), which is what the faults above cut and drip.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Total size of a `flood` body.
pub const FLOOD_BYTES: u64 = 256 * 1024 * 1024;
const FLOOD_CHUNK: usize = 64 * 1024;
static FLOOD_PADDING: [u8; FLOOD_CHUNK] = [b'x'; FLOOD_CHUNK];
const FLOOD_HEAD: &[u8] = br#"{"stat":"OK","response":{"result":"auth","padding":""#;
const FLOOD_TAIL: &[u8] = br#""}}"#;

/// A JSON body of [`FLOOD_BYTES`] sent in chunks, with no length announced (chunked transfer
/// encoding): only a client that counts what it reads stops it.
#[derive(Debug, Default)]
pub struct FloodBody {
    sent: u64,
    done: bool,
}

impl Body for FloodBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let chunk = if self.sent == 0 {
            Bytes::from_static(FLOOD_HEAD)
        } else if self.sent >= FLOOD_BYTES {
            self.done = true;
            Bytes::from_static(FLOOD_TAIL)
        } else {
            Bytes::from_static(&FLOOD_PADDING)
        };
        self.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown: hyper sends it chunked, without a Content-Length.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_select_a_fault_and_a_stage() {
        assert_eq!(
            fault_for("f-stall-status-x1"),
            Some(FaultSpec {
                fault: Fault::Stall,
                stage: Stage::Status
            })
        );
        assert_eq!(
            fault_for("f-resethead-preauth"),
            Some(FaultSpec {
                fault: Fault::ResetHead,
                stage: Stage::Preauth
            })
        );
        assert_eq!(
            fault_for("f-e429-all-a-b-c").map(|s| s.stage),
            Some(Stage::All)
        );
        for ordinary in [
            "alice",
            "f-",
            "f-stall",
            "f-stall-nowhere",
            "f-bogus-auth",
            "f-othertx-auth",
            "f-earlyallow-status",
            "x-stall-auth",
        ] {
            assert_eq!(fault_for(ordinary), None, "{ordinary}");
        }
    }

    #[test]
    fn every_fault_round_trips_through_its_username() {
        for fault in Fault::ALL {
            for stage in [Stage::Preauth, Stage::Auth, Stage::Status, Stage::All] {
                let spec = FaultSpec { fault, stage };
                let parsed = fault_for(&format!("{}-u1", spec.username_prefix()));
                if fault.valid_at(stage) {
                    assert_eq!(parsed, Some(spec));
                } else {
                    assert_eq!(parsed, None, "{spec:?}");
                }
            }
        }
    }

    #[test]
    fn all_hits_every_stage_and_a_stage_only_itself() {
        assert!(Stage::All.hits(Stage::Auth));
        assert!(Stage::Auth.hits(Stage::Auth));
        assert!(!Stage::Auth.hits(Stage::Status));
    }
}
