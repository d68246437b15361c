//! A running `mock-duo` process and a client for its control API.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::paths::{binary_path, TempDir};

/// The integration key every lab test uses (20 characters, `[A-Z0-9]`).
pub const TEST_IKEY: &str = "DIXXXXXXXXXXXXXXXXXX";
/// The secret key every lab test uses (40 characters).
pub const TEST_SKEY: &str = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

/// Options for [`MockDuo::start`]; `MockOpts::default()` uses the test keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockOpts {
    /// `--ikey`.
    pub ikey: String,
    /// `--skey`.
    pub skey: String,
    /// `--approve-delay-ms`: how long an ordinary user's push waits before approval.
    pub approve_delay_ms: Option<u64>,
    /// `--clock-offset-secs`: skews the mock's clock (for date-window tests).
    pub clock_offset_secs: Option<i64>,
    /// `--cert-san`: the DNS name in the server certificate. The control client then connects
    /// to that name, resolved to 127.0.0.1.
    pub cert_san: Option<String>,
    /// Further arguments passed as they are.
    pub extra_args: Vec<String>,
}

impl Default for MockOpts {
    fn default() -> Self {
        MockOpts {
            ikey: TEST_IKEY.to_string(),
            skey: TEST_SKEY.to_string(),
            approve_delay_ms: None,
            clock_offset_secs: None,
            cert_san: None,
            extra_args: Vec::new(),
        }
    }
}

/// A mock-duo server on 127.0.0.1, killed on drop.
///
/// The binary is `$DUO_PUSH_MOCK_BIN` if set, else `mock-duo` next to the test executable.
#[derive(Debug)]
pub struct MockDuo {
    child: Child,
    dir: TempDir,
    port: u16,
    opts: MockOpts,
    client: reqwest::Client,
    base: String,
    runtime: tokio::runtime::Runtime,
}

fn tls_client(ca_pem: &Path, san: Option<&str>, port: u16) -> reqwest::Client {
    let pem = fs::read(ca_pem).unwrap_or_else(|e| panic!("reading {}: {e}", ca_pem.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.unwrap_or_else(|e| panic!("{}: bad PEM: {e}", ca_pem.display()));
        roots
            .add(cert)
            .unwrap_or_else(|e| panic!("{}: bad CA certificate: {e}", ca_pem.display()));
    }
    assert!(
        !roots.is_empty(),
        "{} holds no certificate",
        ca_pem.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("TLS config: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .no_proxy();
    if let Some(name) = san {
        builder = builder.resolve(name, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    builder
        .build()
        .unwrap_or_else(|e| panic!("HTTPS client: {e}"))
}

impl MockDuo {
    /// Starts mock-duo and waits (at most 10 s) until it listens.
    pub fn start(opts: MockOpts) -> MockDuo {
        let bin = binary_path("mock-duo", "DUO_PUSH_MOCK_BIN");
        MockDuo::start_with(&bin, opts)
    }

    /// Starts the mock-duo binary at `bin` (integration tests of this package may pass
    /// `env!("CARGO_BIN_EXE_mock-duo")`).
    pub fn start_with(bin: &Path, opts: MockOpts) -> MockDuo {
        let dir = TempDir::new("mock-duo-");
        let log = fs::File::create(dir.path().join("mock.log"))
            .unwrap_or_else(|e| panic!("mock log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("mock log: {e}"));
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--ikey",
            &opts.ikey,
            "--skey",
            &opts.skey,
        ])
        .arg("--state-dir")
        .arg(dir.path());
        if let Some(ms) = opts.approve_delay_ms {
            cmd.args(["--approve-delay-ms", &ms.to_string()]);
        }
        if let Some(secs) = opts.clock_offset_secs {
            cmd.args(["--clock-offset-secs", &secs.to_string()]);
        }
        if let Some(san) = &opts.cert_san {
            cmd.args(["--cert-san", san]);
        }
        cmd.args(&opts.extra_args);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let port_file = dir.path().join("port");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(port) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
            {
                break port;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = fs::read_to_string(dir.path().join("mock.log")).unwrap_or_default();
                panic!(
                    "mock-duo did not write {} ({}); its output:\n{log}",
                    port_file.display(),
                    match exited {
                        Some(status) => format!("it exited: {status}"),
                        None => "timeout after 10 s".to_string(),
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let ca = dir.path().join("ca.pem");
        let client = tls_client(&ca, opts.cert_san.as_deref(), port);
        let base = format!(
            "https://{}:{port}",
            opts.cert_san.as_deref().unwrap_or("127.0.0.1")
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        MockDuo {
            child,
            dir,
            port,
            opts,
            client,
            base,
            runtime,
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for the `host =` key of a test config.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The mock's CA certificate (PEM), for the `cafile =` key of a test config.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The integration key the mock accepts.
    pub fn ikey(&self) -> &str {
        &self.opts.ikey
    }

    /// The secret key the mock verifies signatures with.
    pub fn skey(&self) -> &str {
        &self.opts.skey
    }

    /// The mock's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("mock.log")).unwrap_or_default()
    }

    /// Sends a control request; returns the status and the body parsed as JSON (`Null` when
    /// the body is empty or not JSON).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .unwrap_or_else(|e| panic!("bad method {method}: {e}"));
        let mut req = self.client.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let result = self.runtime.block_on(async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        });
        let (status, bytes) = result.unwrap_or_else(|e| {
            panic!(
                "mock-duo control {method} {url}: {e}\nmock output:\n{}",
                self.log_text()
            )
        });
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self.request(method, path, body);
        assert!(
            (200..300).contains(&status),
            "mock-duo control {method} {path} answered {status}: {value}"
        );
        value
    }

    fn array(&self, path: &str) -> Vec<Value> {
        match self.ok("GET", path, None) {
            Value::Array(items) => items,
            other => panic!("mock-duo {path} did not answer a JSON array: {other}"),
        }
    }

    /// Every push sent so far, in order (`GET /mock/pushes`): objects with `txid`, `username`,
    /// `type`, `pushinfo`, `result`, ...
    pub fn pushes(&self) -> Vec<Value> {
        self.array("/mock/pushes")
    }

    /// Pushes waiting for an answer (`GET /mock/pending`).
    pub fn pending(&self) -> Vec<Value> {
        self.array("/mock/pending")
    }

    /// Waits up to `secs` seconds for a pending push and returns it.
    pub fn wait_for_pending(&self, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(push) = self.pending().into_iter().next() {
                return push;
            }
            assert!(
                Instant::now() < deadline,
                "no pending push within {secs} s; pushes so far: {:?}",
                self.pushes()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Approves a pending push.
    pub fn approve(&self, txid: &str) {
        self.ok("POST", &format!("/mock/pushes/{txid}/approve"), None);
    }

    /// Denies a pending push.
    pub fn deny(&self, txid: &str) {
        self.ok("POST", &format!("/mock/pushes/{txid}/deny"), None);
    }

    /// Scripts `user`'s next push outcomes, in order (`allow`, `deny`, `timeout`, `fraud`,
    /// `manual`, `slow`): `POST /mock/script` with `{"username": user, "outcomes": [...]}`.
    pub fn script(&self, user: &str, outcomes: &[&str]) {
        let body = serde_json::json!({ "username": user, "outcomes": outcomes });
        self.ok("POST", "/mock/script", Some(&body));
    }

    /// Every request the mock received, in order (`GET /mock/requests`).
    pub fn requests(&self) -> Vec<Value> {
        self.array("/mock/requests")
    }

    /// Forgets pushes, scripts, the request log and the counters (`POST /mock/reset`).
    pub fn reset(&self) {
        self.ok("POST", "/mock/reset", None);
    }

    /// The process id of the mock-duo process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Request counters (`GET /mock/stats`).
    pub fn stats(&self) -> Value {
        self.ok("GET", "/mock/stats", None)
    }
}

impl Drop for MockDuo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
