//! Duo's replies, as `DuoClient` reads them, for every endpoint: ping, check, preauth, auth
//! (push and passcode), auth_status, and the error envelope with any HTTP status.
//!
//! The reply parsers in `common/src/client.rs` are private, so this target runs the real
//! client against a loopback HTTPS server inside the fuzz process (test CA from rcgen); the
//! server answers every request with the fuzzed status, headers and body. Checked, for every
//! input:
//! - no panic (in particular none from the body, the status, or `Retry-After`);
//! - the client grants nothing the reply does not say: `Allow` (preauth, passcode, auth_status)
//!   only from HTTP 200 with `"stat":"OK"` and `response.result` exactly `"allow"` (an
//!   independent serde_json reading of the same bytes is the oracle); a txid or a time only as
//!   the reply has it; any other status or envelope is an error;
//! - a call sends exactly one request unless Duo answered 429 (no duplicate pushes);
//! - error messages stay bounded (they go into logs).
//!
//! Input: byte 0 picks the call, byte 1 the HTTP status, byte 2 flags (bit 0: the first line
//! of the rest is a `Retry-After` value; bits 1-3 = 001: announce a Content-Length over the
//! client's limit); the rest is the body.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use duo_push_common::api::{
    AuthResult, DuoApi, DuoError, PreauthResult, PushRequest, Subject, Txid,
};
use duo_push_common::client::{ClientSettings, DuoClient, MAX_REPLY_BYTES};
use duo_push_common::secret::Secret;
use duo_push_common::signing::SignatureVersion;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// What the server answers next, and what it was asked.
#[derive(Default)]
struct Script {
    status: u16,
    retry_after: Option<String>,
    oversize: bool,
    body: Vec<u8>,
    /// `METHOD PATH` of every request since the last reset.
    requests: Vec<String>,
}

struct Harness {
    rt: Runtime,
    client: DuoClient,
    settings: ClientSettings,
    script: Arc<Mutex<Script>>,
}

/// Longest error text accepted: code and message are capped at 256 characters each by the
/// client; the rest is fixed text.
const MAX_ERROR_DISPLAY: usize = 2048;

fn lock(script: &Mutex<Script>) -> std::sync::MutexGuard<'_, Script> {
    match script.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    script: Arc<Mutex<Script>>,
) -> std::io::Result<()> {
    let tls = acceptor.accept(stream).await?;
    let mut tls = BufReader::new(tls);
    loop {
        let mut request_line = String::new();
        if tls.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if tls.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; content_length];
        tls.read_exact(&mut body).await?;
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        let path = words
            .next()
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .to_owned();
        let response = {
            let mut s = lock(&script);
            s.requests.push(format!("{method} {path}"));
            let declared = if s.oversize {
                s.body.len() + MAX_REPLY_BYTES + 1
            } else {
                s.body.len()
            };
            let mut head = format!(
                "HTTP/1.1 {} Fuzz\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n",
                s.status
            );
            if let Some(value) = &s.retry_after {
                head.push_str(&format!("Retry-After: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut response = head.into_bytes();
            response.extend_from_slice(&s.body);
            (response, s.oversize)
        };
        tls.get_mut().write_all(&response.0).await?;
        tls.get_mut().flush().await?;
        if response.1 {
            // The announced body never comes; the client gives up on this connection.
            return Ok(());
        }
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| match build_harness() {
        Ok(h) => h,
        Err(e) => panic!("cannot set up the duo_replies harness: {e}"),
    })
}

fn build_harness() -> Result<Harness, Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "duo_replies fuzz CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    let ca_path: PathBuf =
        std::env::temp_dir().join(format!("duo_replies_fuzz_ca_{}.pem", std::process::id()));
    std::fs::File::create(&ca_path)?.write_all(ca_cert.pem().as_bytes())?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let script = Arc::new(Mutex::new(Script::default()));
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let server_script = Arc::clone(&script);
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_connection(
                stream,
                acceptor.clone(),
                Arc::clone(&server_script),
            ));
        }
    });

    let settings = ClientSettings {
        host: format!("127.0.0.1:{port}"),
        ikey: "DIXXXXXXXXXXXXXXXXXX".to_owned(),
        skey: Secret::new("deadbeefdeadbeefdeadbeefdeadbeefdeadbeef".to_owned()),
        signature_version: SignatureVersion::V5,
        // Short, so that a Retry-After of a second or more gives up at once instead of
        // sleeping; loopback answers take well under a millisecond.
        https_timeout: Duration::from_secs(1),
        cafile: Some(ca_path),
        http_proxy: None,
        user_agent_product: "duo_replies_fuzz",
    };
    let client = DuoClient::new(settings.clone())?;
    {
        let mut s = lock(&script);
        s.status = 200;
        s.body = format!(
            r#"{{"stat":"OK","response":{{"time":{}}}}}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        )
        .into_bytes();
    }
    rt.block_on(client.ping())?;
    Ok(Harness {
        rt,
        client,
        settings,
        script,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Ping,
    Check,
    Preauth,
    Push,
    Passcode,
    AuthStatus,
    /// A new client: its first ping measures the clock offset from the fuzzed reply, then a
    /// signed check runs with that offset.
    FreshPingCheck,
}

/// Byte 0 modulo 16 picks the call. A fresh client costs a TLS handshake (milliseconds), so it
/// gets one slot in 16.
const CALLS: [Call; 16] = [
    Call::Ping,
    Call::Check,
    Call::Preauth,
    Call::Push,
    Call::Passcode,
    Call::AuthStatus,
    Call::Ping,
    Call::Check,
    Call::Preauth,
    Call::Push,
    Call::Passcode,
    Call::AuthStatus,
    Call::Preauth,
    Call::Passcode,
    Call::AuthStatus,
    Call::FreshPingCheck,
];

/// Statuses for GET calls. No 5xx: the client waits 250 ms before retrying a GET after one,
/// which would only slow the fuzzer down (the retry path reads the reply the same way). No
/// 1xx, 204 or 304: they carry no body, and this server always sends one.
const GET_STATUSES: [u16; 12] = [200, 200, 200, 200, 200, 201, 302, 400, 401, 403, 404, 429];
const POST_STATUSES: [u16; 15] = [
    200, 200, 200, 200, 200, 201, 302, 400, 401, 403, 404, 429, 500, 502, 503,
];

/// The oracle: the `response` object, when the reply is HTTP 200 with `"stat":"OK"`.
fn ok_response(status: u16, body: &[u8]) -> Option<Map<String, Value>> {
    if status != 200 {
        return None;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut envelope)) => {
            if envelope.get("stat").and_then(Value::as_str) != Some("OK") {
                return None;
            }
            match envelope.remove("response") {
                Some(Value::Object(response)) => Some(response),
                _ => None,
            }
        }
        _ => None,
    }
}

fn result_is_allow(response: &Option<Map<String, Value>>) -> bool {
    response
        .as_ref()
        .and_then(|r| r.get("result"))
        .and_then(Value::as_str)
        == Some("allow")
}

fn check_error(call: Call, e: &DuoError) {
    let shown = e.to_string();
    assert!(
        shown.len() <= MAX_ERROR_DISPLAY,
        "{call:?}: error message of {} bytes: {}...",
        shown.len(),
        shown.chars().take(200).collect::<String>()
    );
}

fuzz_target!(|data: &[u8]| {
    let [selector, status_byte, flags, rest @ ..] = data else {
        return;
    };
    let call = CALLS[usize::from(*selector) % CALLS.len()];
    let status = match call {
        Call::Ping | Call::Check | Call::AuthStatus | Call::FreshPingCheck => {
            GET_STATUSES[usize::from(*status_byte) % GET_STATUSES.len()]
        }
        Call::Preauth | Call::Push | Call::Passcode => {
            POST_STATUSES[usize::from(*status_byte) % POST_STATUSES.len()]
        }
    };
    let (retry_after, body) = if flags & 1 == 1 {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        // A header value the server can send: visible ASCII and spaces only.
        let value: String = rest[..end]
            .iter()
            .filter(|b| (0x20..0x7f).contains(*b))
            .map(|&b| char::from(b))
            .collect();
        (
            Some(value.trim().to_owned()),
            rest.get(end + 1..).unwrap_or(&[]),
        )
    } else {
        (None, rest)
    };
    // Costs a new connection for the next call: one input in eight.
    let oversize = flags & 0x0e == 0x02;

    let h = harness();
    {
        let mut s = lock(&h.script);
        s.status = status;
        s.retry_after = retry_after;
        s.oversize = oversize;
        s.body = body.to_vec();
        s.requests.clear();
    }
    let oracle = if oversize {
        None
    } else {
        ok_response(status, body)
    };
    let subject = Subject {
        username: "alice".to_owned(),
        ipaddr: Some("192.0.2.1".to_owned()),
        hostname: Some("jump01".to_owned()),
    };

    match call {
        Call::Ping | Call::Check => {
            let result = h.rt.block_on(async {
                if call == Call::Ping {
                    h.client.ping().await
                } else {
                    h.client.check().await
                }
            });
            match &result {
                Ok(time) => {
                    let expected = oracle
                        .as_ref()
                        .and_then(|r| r.get("time"))
                        .and_then(Value::as_i64);
                    assert_eq!(Some(*time), expected, "{call:?} time not from an OK reply");
                }
                Err(e) => check_error(call, e),
            }
        }
        Call::Preauth => {
            let result = h.rt.block_on(h.client.preauth(&subject));
            match &result {
                Ok(preauth) => {
                    let wire = oracle
                        .as_ref()
                        .and_then(|r| r.get("result"))
                        .and_then(Value::as_str);
                    assert!(
                        wire.is_some(),
                        "preauth Ok without an OK reply holding a result"
                    );
                    assert_eq!(preauth.result, PreauthResult::from_wire(wire.unwrap_or("")));
                    if preauth.result == PreauthResult::Allow {
                        assert!(result_is_allow(&oracle), "preauth allow without \"allow\"");
                    }
                }
                Err(e) => check_error(call, e),
            }
        }
        Call::Push => {
            let request = PushRequest {
                subject: subject.clone(),
                device: "auto".to_owned(),
                kind: "Login".to_owned(),
                display_username: None,
                pushinfo: vec![("target".to_owned(), "web01".to_owned())],
            };
            match &h.rt.block_on(h.client.push(&request)) {
                Ok(Txid(txid)) => {
                    let expected = oracle
                        .as_ref()
                        .and_then(|r| r.get("txid"))
                        .and_then(Value::as_str);
                    assert_eq!(Some(txid.as_str()), expected, "txid not from an OK reply");
                    assert!(!txid.is_empty(), "empty txid accepted");
                }
                Err(e) => check_error(call, e),
            }
        }
        Call::Passcode | Call::AuthStatus => {
            let result = h.rt.block_on(async {
                if call == Call::Passcode {
                    let passcode = Secret::new("123456".to_owned());
                    h.client.passcode(&subject, &passcode).await
                } else {
                    // The flow's form: bounded by the push deadline. (The trait's `auth_status`
                    // allows a 60 s long-poll, which would stall the fuzzer on a 429.)
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    h.client
                        .auth_status_until(&Txid("fuzz-txid".to_owned()), deadline)
                        .await
                }
            });
            match &result {
                Ok(status) => {
                    let wire = oracle
                        .as_ref()
                        .and_then(|r| r.get("result"))
                        .and_then(Value::as_str);
                    assert!(
                        wire.is_some(),
                        "{call:?} Ok without an OK reply holding a result"
                    );
                    assert_eq!(status.result, AuthResult::from_wire(wire.unwrap_or("")));
                    if status.result == AuthResult::Allow {
                        assert!(result_is_allow(&oracle), "{call:?} allow without \"allow\"");
                    }
                }
                Err(e) => check_error(call, e),
            }
        }
        Call::FreshPingCheck => {
            let client = match DuoClient::new(h.settings.clone()) {
                Ok(c) => c,
                Err(e) => panic!("DuoClient::new failed in the harness: {e}"),
            };
            let result = h.rt.block_on(async {
                let ping = client.ping().await;
                let check = client.check().await;
                (ping, check)
            });
            if let Ok(time) = &result.0 {
                let expected = oracle
                    .as_ref()
                    .and_then(|r| r.get("time"))
                    .and_then(Value::as_i64);
                assert_eq!(Some(*time), expected, "ping time not from an OK reply");
            }
            for r in [&result.0, &result.1] {
                if let Err(e) = r {
                    check_error(call, e);
                }
            }
        }
    }

    if status != 429 && call != Call::FreshPingCheck {
        let requests = lock(&h.script).requests.clone();
        assert_eq!(requests.len(), 1, "{call:?} sent {requests:?} for one call");
    }
});
