//! A minimal, raw HTTPS/1.1 server on loopback for the client tests: a test CA from rcgen,
//! tokio-rustls, and a hand-written request reader, so that each test can produce an exact
//! fault (silence, a trickle, a reset after the request, an oversized body).
//!
//! This is not mock-duo (that lives in the tests package); it knows nothing about Duo beyond
//! what a test's handler returns.

#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test support: a failure here is a test failure"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use duo_push_common::client::{ClientSettings, DuoClient};
use duo_push_common::secret::Secret;
use duo_push_common::signing::{self, SignatureVersion};

pub const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
pub const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";

/// A test CA and a server certificate it issued.
pub struct Pki {
    /// The CA certificate as PEM, written to a file (the client's `cafile`).
    pub ca_file: PathBuf,
    /// Server configuration presenting the server certificate.
    pub server: Arc<rustls::ServerConfig>,
}

static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `contents` to a fresh file under Cargo's per-target temporary directory.
pub fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let n = FILE_COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("duo-client-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

/// A new CA and a server certificate for `names` (IP addresses become IP SANs).
pub fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "duo-push client test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "duo-push test server");
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .unwrap();
    Pki {
        ca_file: temp_file("ca.pem", ca_cert.pem().as_bytes()),
        server: Arc::new(server),
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which accepted connection it came on (0-based).
    pub conn: usize,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The parameters, decoded: from the query (GET), the form body (v2 POST) or the JSON
    /// object body (v5 POST).
    pub fn params(&self) -> Vec<(String, String)> {
        if self.method == "GET" {
            return parse_form(&self.query);
        }
        if self
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"))
        {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&self.body).unwrap();
            return object
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
                .collect();
        }
        parse_form(std::str::from_utf8(&self.body).unwrap())
    }

    /// One parameter's decoded value.
    pub fn param(&self, key: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Percent-decodes (no `+` handling: Duo's encoding never produces it).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `k=v&k=v`, each side percent-decoded.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Checks the request's signature the way Duo does, with the signing module's canonical
/// strings. Returns why it does not verify.
pub fn verify_signature(req: &Request, version: SignatureVersion) -> Result<(), String> {
    let (canon, alg) = version.scheme();
    let auth = req.header("authorization").ok_or("no Authorization")?;
    let b64 = auth.strip_prefix("Basic ").ok_or("not Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    let decoded = String::from_utf8(decoded).map_err(|e| e.to_string())?;
    let (ikey, sig) = decoded.split_once(':').ok_or("no colon")?;
    if ikey != IKEY {
        return Err(format!("wrong ikey {ikey}"));
    }
    let date_header = match version {
        SignatureVersion::V5 => "x-duo-date",
        _ => "date",
    };
    let date = req.header(date_header).ok_or("no date header")?;
    let host = req.header("host").ok_or("no Host")?;
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let params = match (version, req.method.as_str()) {
        (SignatureVersion::V5, "POST") => String::new(),
        _ => signing::canon_params(&req.params()),
    };
    let x_duo: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-duo"))
        .cloned()
        .collect();
    let x_duo_hash = signing::x_duo_headers_hash(&x_duo);
    let canonical = signing::canonicalize(
        canon,
        &signing::CanonicalInput {
            date,
            method: &req.method,
            host,
            path: &req.path,
            params: &params,
            body: &req.body,
            x_duo_hash: &x_duo_hash,
        },
    );
    if signing::signature_matches(alg, SKEY.as_bytes(), &canonical, sig) {
        Ok(())
    } else {
        Err(format!("signature mismatch for {canonical:?}"))
    }
}

/// What the server does with a request.
pub enum Action {
    /// A complete reply with Content-Length; the connection stays open.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// These exact bytes, then close.
    Raw(Vec<u8>),
    /// Say nothing, keep the connection open.
    Hang,
    /// Drop the connection right after reading the request.
    Close,
    /// Headers announcing `len` bytes, then one byte every `every`.
    Trickle { len: usize, every: Duration },
}

impl Action {
    /// A JSON reply.
    pub fn json(status: u16, body: serde_json::Value) -> Action {
        Action::Reply {
            status,
            headers: vec![],
            body: body.to_string().into_bytes(),
        }
    }

    /// `{"stat":"OK","response":response}`.
    pub fn ok(response: serde_json::Value) -> Action {
        Action::json(200, serde_json::json!({"stat": "OK", "response": response}))
    }

    /// A ping reply with the server clock `offset` seconds from ours.
    pub fn ping(offset: i64) -> Action {
        Action::ok(serde_json::json!({ "time": now() + offset }))
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

type Handler = Arc<dyn Fn(&Request) -> Action + Send + Sync>;

/// A running server. Stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts serving on 127.0.0.1 with `config`, answering each request with `handler`.
    pub async fn start(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (reqs, conns) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, handler, reqs) = (acceptor.clone(), handler.clone(), reqs.clone());
                // The JoinSet aborts every connection when the server task is aborted.
                tasks.spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, conn, handler, reqs).await;
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            connections,
            task,
        }
    }

    /// `127.0.0.1:PORT`, the client's `host`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests seen to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    conn: usize,
    handler: Handler,
    requests: Arc<Mutex<Vec<Request>>>,
) {
    let mut stream = BufReader::new(tls);
    loop {
        let Some(req) = read_request(&mut stream, conn).await else {
            return;
        };
        let action = handler(&req);
        requests.lock().unwrap().push(req);
        match action {
            Action::Reply {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (n, v) in headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let w = stream.get_mut();
                if w.write_all(head.as_bytes()).await.is_err()
                    || w.write_all(&body).await.is_err()
                    || w.flush().await.is_err()
                {
                    return;
                }
            }
            Action::Raw(bytes) => {
                let w = stream.get_mut();
                let _ = w.write_all(&bytes).await;
                let _ = w.shutdown().await;
                return;
            }
            Action::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Action::Close => return,
            Action::Trickle { len, every } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
                );
                let w = stream.get_mut();
                if w.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..len {
                    if w.write_all(b" ").await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
                return;
            }
        }
    }
}

async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    stream: &mut R,
    conn: usize,
) -> Option<Request> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if stream.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Request {
        conn,
        method,
        path,
        query,
        headers,
        body,
    })
}

/// Client settings for `host`, trusting `cafile`.
pub fn settings(host: &str, cafile: Option<PathBuf>, timeout: Duration) -> ClientSettings {
    ClientSettings {
        host: host.to_owned(),
        ikey: IKEY.to_owned(),
        skey: Secret::new(SKEY.to_owned()),
        signature_version: SignatureVersion::V5,
        https_timeout: timeout,
        cafile,
        http_proxy: None,
        user_agent_product: "pam_duo_push",
    }
}

/// A client for `server`'s host trusting `pki`'s CA.
pub fn client(server: &Server, pki: &Pki, timeout: Duration) -> DuoClient {
    DuoClient::new(settings(&server.host(), Some(pki.ca_file.clone()), timeout)).unwrap()
}

/// A subject for preauth and auth.
pub fn alice() -> duo_push_common::api::Subject {
    duo_push_common::api::Subject {
        username: "alice".to_owned(),
        ipaddr: Some("192.0.2.7".to_owned()),
        hostname: Some("proxy.example".to_owned()),
    }
}

/// Asserts `elapsed` stayed below `limit` plus a margin for scheduling.
pub fn assert_within(elapsed: Duration, limit: Duration) {
    let margin = Duration::from_millis(1500);
    assert!(
        elapsed < limit + margin,
        "took {elapsed:?}, limit {limit:?} + {margin:?}"
    );
}
