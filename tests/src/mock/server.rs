//! The listener: TLS, HTTP/1.1, routing, the request log, and startup/shutdown.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use duo_push_common::secret::Secret;

use crate::mock::cert::{CertError, Pki};
use crate::mock::fault::{self, FaultIo, FaultSlot, FloodBody, WriteFault};
use crate::mock::reply::{self, HttpResponse};
use crate::mock::state::{MockState, RequestRecord, Timing};
use crate::mock::verify::{RequestParts, SigVersion, Verifier};
use crate::mock::{control, legacy, phone, v2};

/// Largest request body accepted (Duo's own limit is in this range; pushinfo is < 20 kB).
const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on how long a `hang` request is held (so nothing lives forever).
const HANG_LIMIT: Duration = Duration::from_secs(600);

/// How to run a mock-duo.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Loopback address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The integration key requests must carry.
    pub ikey: String,
    /// The secret key signatures are checked with.
    pub skey: String,
    /// Where `ca.pem` and `port` are written, if anywhere.
    pub state_dir: Option<PathBuf>,
    /// Delay before an ordinary user's push is approved.
    pub approve_delay: Duration,
    /// Added to real time to make the mock's clock (for skew tests).
    pub clock_offset_secs: i64,
    /// subjectAltNames of the server certificate.
    pub cert_sans: Vec<String>,
    /// When an unanswered push expires.
    pub push_expiry: Duration,
    /// How long a status long-poll holds a pending transaction.
    pub long_poll: Duration,
    /// Print one line per request to stderr.
    pub log_to_stderr: bool,
    /// Every unscripted push waits for a live decision (see [`MockState::set_manual_all`]).
    pub manual_all: bool,
    /// Also serve the phone page (and only what it needs) over plain HTTP on this loopback
    /// address; its port is written to `phone-port` in the state dir.
    pub phone_listen: Option<SocketAddr>,
    /// Serve a server certificate whose validity ended yesterday (`--cert-expired`).
    pub cert_expired: bool,
    /// How late the `late` fault answers (see [`crate::mock::fault`]).
    pub fault_delay: Duration,
}

impl MockConfig {
    /// Defaults: 127.0.0.1 port 0, SANs `localhost` and `127.0.0.1`, approval at once, pushes
    /// expire after 60 s, long-polls of 20 s, no state dir, logging on, a valid certificate,
    /// `late` faults 1.5 s late.
    pub fn new(ikey: &str, skey: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ikey: ikey.to_owned(),
            skey: skey.to_owned(),
            state_dir: None,
            approve_delay: Duration::ZERO,
            clock_offset_secs: 0,
            cert_sans: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            push_expiry: Duration::from_secs(60),
            long_poll: Duration::from_secs(20),
            log_to_stderr: true,
            manual_all: false,
            phone_listen: None,
            cert_expired: false,
            fault_delay: Duration::from_millis(1500),
        }
    }
}

/// Why mock-duo could not start.
#[derive(Debug)]
pub enum MockError {
    /// The listen address is not a loopback address.
    NotLoopback(SocketAddr),
    /// Binding failed.
    Bind(SocketAddr, std::io::Error),
    /// The state directory or a file in it could not be written.
    StateDir(PathBuf, std::io::Error),
    /// Certificates could not be made.
    Cert(CertError),
}

impl std::fmt::Display for MockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotLoopback(a) => {
                write!(
                    f,
                    "refusing to listen on {a}: mock-duo listens on loopback addresses only"
                )
            }
            Self::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            Self::StateDir(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            Self::Cert(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for MockError {}

/// What every request handler can reach.
pub(crate) struct Ctx {
    pub(crate) state: Arc<MockState>,
    pub(crate) verifier: Verifier,
    shutdown: watch::Receiver<bool>,
    log_to_stderr: bool,
    /// How late the `late` fault answers.
    pub(crate) fault_delay: Duration,
}

impl Ctx {
    /// Holds a `hang` request until shutdown or [`HANG_LIMIT`]; hyper drops this future
    /// earlier when the client closes the connection.
    async fn hang(&self) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(HANG_LIMIT) => {}
            _ = stopped(&mut shutdown) => {}
        }
    }
}

/// What a Duo API handler decided.
pub(crate) struct Handled {
    pub(crate) reply: Reply,
    pub(crate) signature: SigVersion,
    pub(crate) verified: bool,
    pub(crate) username: Option<String>,
    pub(crate) param_names: Vec<String>,
}

/// A response now, or none at all.
pub(crate) enum Reply {
    Now(HttpResponse),
    Hang,
    /// A response whose bytes are mangled on the way out (see [`crate::mock::fault`]).
    Faulty(HttpResponse, WriteFault),
    /// 200 with an endless chunked body ([`FloodBody`]).
    Flood,
}

/// What the connection serves: a whole body, or the endless one of the `flood` fault.
type ServedBody = Either<Full<Bytes>, FloodBody>;

impl Handled {
    /// A reply to a request whose credentials were not checked.
    pub(crate) fn unsigned(resp: HttpResponse) -> Self {
        Self {
            reply: Reply::Now(resp),
            signature: SigVersion::None,
            verified: false,
            username: None,
            param_names: Vec::new(),
        }
    }
}

/// A running mock-duo.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<MockState>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Makes the certificates, binds, writes `ca.pem` and then `port` into the state dir, and
    /// starts serving on the current tokio runtime.
    pub async fn start(config: MockConfig) -> Result<Self, MockError> {
        if !config.listen.ip().is_loopback() {
            return Err(MockError::NotLoopback(config.listen));
        }
        if let Some(phone) = config.phone_listen.filter(|a| !a.ip().is_loopback()) {
            return Err(MockError::NotLoopback(phone));
        }
        let pki = if config.cert_expired {
            Pki::generate_expired(&config.cert_sans)
        } else {
            Pki::generate(&config.cert_sans)
        }
        .map_err(MockError::Cert)?;
        let tls = pki.server_config().map_err(MockError::Cert)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| MockError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| MockError::Bind(config.listen, e))?;
        let phone_listener = match config.phone_listen {
            Some(phone) => Some(
                TcpListener::bind(phone)
                    .await
                    .map_err(|e| MockError::Bind(phone, e))?,
            ),
            None => None,
        };
        if let Some(dir) = &config.state_dir {
            std::fs::create_dir_all(dir).map_err(|e| MockError::StateDir(dir.clone(), e))?;
            if let Some(listener) = &phone_listener {
                let port = listener.local_addr().map_or(0, |a| a.port());
                write_atomically(&dir.join("phone-port"), format!("{port}\n").as_bytes())?;
            }
            write_atomically(&dir.join("ca.pem"), pki.ca_pem.as_bytes())?;
            // The socket is already listening: clients that see `port` can connect.
            write_atomically(&dir.join("port"), format!("{}\n", addr.port()).as_bytes())?;
        }
        let state = Arc::new(MockState::new(Timing {
            approve_delay: config.approve_delay,
            push_expiry: config.push_expiry,
            long_poll: config.long_poll,
        }));
        state.set_manual_all(config.manual_all);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            state: Arc::clone(&state),
            verifier: Verifier::new(
                config.ikey.clone(),
                Secret::new(config.skey.clone()),
                config.clock_offset_secs,
            ),
            shutdown: shutdown_rx.clone(),
            log_to_stderr: config.log_to_stderr,
            fault_delay: config.fault_delay,
        });
        if let Some(listener) = phone_listener {
            tokio::spawn(phone::serve_http(
                listener,
                Arc::clone(&state),
                shutdown_rx.clone(),
                config.log_to_stderr,
            ));
        }
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            ctx,
            shutdown_rx,
        ));
        Ok(Self {
            addr,
            ca_pem: pki.ca_pem,
            state,
            shutdown,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The CA certificate (PEM) that issued the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The shared state (push log, scripts, request log, counters).
    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    /// Stops accepting, ends every connection and waits for the listener task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Resolves once shutdown was requested (or the sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), MockError> {
    let fail = |e| MockError::StateDir(path.to_path_buf(), e);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(data).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    tokio::spawn(serve_connection(tcp, acceptor.clone(), Arc::clone(&ctx)));
                }
                Err(e) => {
                    eprintln!("mock-duo: accept failed: {e}");
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, ctx: Arc<Ctx>) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            if ctx.log_to_stderr {
                eprintln!("mock-duo: TLS handshake failed: {e}");
            }
            return;
        }
        Err(_) => return,
    };
    let connection = ctx.state.count_handshake();
    let mut shutdown = ctx.shutdown.clone();
    let service_ctx = Arc::clone(&ctx);
    let slot = fault::new_slot();
    let service_slot = Arc::clone(&slot);
    let service = service_fn(move |req| {
        let ctx = Arc::clone(&service_ctx);
        let slot = Arc::clone(&service_slot);
        async move { Ok::<_, Infallible>(handle(&ctx, connection, &slot, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(FaultIo::new(tls, slot)), service);
    tokio::select! {
        _ = conn => {}
        _ = stopped(&mut shutdown) => {}
    }
}

async fn handle(
    ctx: &Ctx,
    connection: u64,
    slot: &FaultSlot,
    req: Request<Incoming>,
) -> Response<ServedBody> {
    match route(ctx, connection, req).await {
        Reply::Now(resp) => resp.map(Either::Left),
        Reply::Faulty(resp, fault) => {
            fault::arm(slot, fault);
            resp.map(Either::Left)
        }
        Reply::Flood => flood(),
        Reply::Hang => {
            ctx.hang().await;
            reply::json_fail(503, 50301, "Service unavailable (hang released)", None)
                .map(Either::Left)
        }
    }
}

/// The flood reply: 200, JSON, no length.
fn flood() -> Response<ServedBody> {
    let mut resp = Response::new(Either::Right(FloodBody::default()));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Handles one request; a `Hang` is held by the caller after the request was logged.
async fn route(ctx: &Ctx, connection: u64, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let body: Bytes = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Reply::Now(reply::json_fail(
                413,
                41301,
                "Request body too large or unreadable",
                None,
            ));
        }
    };

    let is_phone = path == "/phone" || path.starts_with("/phone/");
    if is_phone || path.starts_with("/mock/") || path == "/mock" {
        // A web page of another origin must not drive the control API from a browser.
        if let Some(refusal) = phone::cross_origin_refusal(&parts.headers, "https") {
            return Reply::Now(refusal);
        }
    }
    if is_phone {
        return Reply::Now(phone::page(&method, &path));
    }
    if path.starts_with("/mock/") || path == "/mock" {
        let resp = control::handle(&ctx.state, &method, &path, &body);
        if ctx.log_to_stderr {
            eprintln!(
                "mock-duo: conn={connection} {method} {path} control status={}",
                resp.status().as_u16()
            );
        }
        return Reply::Now(resp);
    }

    let request = RequestParts {
        method: &method,
        path: &path,
        query: &query,
        headers: &parts.headers,
        body: &body,
    };
    let handled = if path.starts_with("/rest/v1/") {
        legacy::handle(ctx, &request).await
    } else if path.starts_with("/auth/v2/") {
        v2::handle(ctx, &request).await
    } else {
        Handled::unsigned(reply::json_fail(
            404,
            40401,
            "Resource not found",
            Some(&path),
        ))
    };

    let status = match &handled.reply {
        Reply::Now(resp) | Reply::Faulty(resp, _) => resp.status().as_u16(),
        Reply::Flood => 200,
        Reply::Hang => 0,
    };
    if ctx.log_to_stderr {
        eprintln!(
            "mock-duo: conn={connection} {method} {path} sig={} verified={} status={status} user={}",
            handled.signature.label(),
            handled.verified,
            handled.username.as_deref().unwrap_or("-")
        );
    }
    ctx.state.record_request(RequestRecord {
        seq: 0,
        method,
        path,
        signature: handled.signature.label(),
        verified: handled.verified,
        status,
        connection,
        username: handled.username,
        params: handled.param_names,
    });
    handled.reply
}
