//! Test helpers: run the `mock-duo` binary and talk to it over real HTTPS with signed requests
//! (signed by `duo_push_common::signing`, as the project's client signs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

use duo_push_common::secret::Secret;
use duo_push_common::signing::{
    canon_params, canonicalize, rfc2822_date, sign, sign_request, Canon, CanonicalInput, HmacAlg,
    SignatureVersion, SignedRequest,
};

/// The integration key the tests use.
pub const TEST_IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
/// The secret key the tests use.
pub const TEST_SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";

/// A `mock-duo` child process; killed when dropped.
#[derive(Debug)]
pub struct MockProcess {
    child: Child,
    port: u16,
    state_dir: PathBuf,
}

/// Why the mock could not be started or reached.
#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

fn herr(context: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError(format!("{context}: {e}"))
}

impl MockProcess {
    /// Starts `bin` on 127.0.0.1 port 0 with the test keys and `extra` arguments, and waits
    /// (up to 15 s) for `state_dir/port`.
    pub fn spawn(bin: &Path, state_dir: &Path, extra: &[&str]) -> Result<Self, HarnessError> {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--ikey",
            TEST_IKEY,
            "--skey",
            TEST_SKEY,
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .args(extra)
        .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| herr(&format!("cannot run {}", bin.display()), e))?;
        let port_file = state_dir.join("port");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let port = text.trim().parse().map_err(|e| herr("bad port file", e))?;
                return Ok(Self {
                    child,
                    port,
                    state_dir: state_dir.to_path_buf(),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(HarnessError(format!("mock-duo exited early: {status}")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError(
                    "mock-duo did not write its port file in 15 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `DIR/ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.state_dir.join("ca.pem")
    }

    /// A client for this mock that sends `Host: localhost:PORT`.
    pub fn client(&self) -> Result<DuoTestClient, HarnessError> {
        DuoTestClient::new(&self.ca_path(), "localhost", self.port)
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply: status, headers, body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Value::Null` if it does not parse).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A small HTTPS client that signs Duo requests.
#[derive(Debug, Clone)]
pub struct DuoTestClient {
    http: reqwest::Client,
    host: String,
    port: u16,
}

impl DuoTestClient {
    /// A client trusting only the CA in `ca_pem`, connecting to `host:port` (host must resolve
    /// to loopback).
    pub fn new(ca_pem: &Path, host: &str, port: u16) -> Result<Self, HarnessError> {
        let pem = std::fs::read(ca_pem).map_err(|e| herr("cannot read ca.pem", e))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| herr("bad ca.pem", e))?;
            roots.add(cert).map_err(|e| herr("bad CA certificate", e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| herr("TLS config", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| herr("cannot build the HTTP client", e))?;
        Ok(Self {
            http,
            host: host.to_owned(),
            port,
        })
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("https://{}:{}{}", self.host, self.port, path_and_query)
    }

    /// Signs a request now with the test keys (the host line is the bare host, as Duo's
    /// clients sign).
    pub fn sign(
        &self,
        version: SignatureVersion,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> SignedRequest {
        self.sign_with(
            version,
            TEST_IKEY,
            TEST_SKEY,
            &rfc2822_date(time::OffsetDateTime::now_utc()),
            method,
            path,
            params,
        )
    }

    /// Signs with explicit keys and date.
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors sign_request plus the keys"
    )]
    pub fn sign_with(
        &self,
        version: SignatureVersion,
        ikey: &str,
        skey: &str,
        date: &str,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> SignedRequest {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        sign_request(
            version,
            ikey,
            &Secret::new(skey.to_owned()),
            date,
            method,
            &self.host,
            path,
            &owned,
        )
    }

    /// Sends a signed request as built (tests may have tampered with it); `send_date` false
    /// leaves the date header out.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        signed: &SignedRequest,
        send_date: bool,
    ) -> Result<Reply, HarnessError> {
        let url = if signed.query.is_empty() {
            self.url(path)
        } else {
            self.url(&format!("{path}?{}", signed.query))
        };
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| herr("method", e))?;
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", &signed.authorization);
        if send_date {
            req = req.header(signed.date_header, &signed.date);
        }
        if let Some((body, content_type)) = &signed.body {
            req = req.header("Content-Type", *content_type).body(body.clone());
        }
        self.finish(req).await
    }

    /// Signs and sends.
    pub async fn call(
        &self,
        version: SignatureVersion,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Reply, HarnessError> {
        let signed = self.sign(version, method, path, params);
        self.send(method, path, &signed, true).await
    }

    /// A REST v1 call as duo_unix 1.x makes it: HMAC-SHA1 over `METHOD\nhost\npath\nparams`
    /// with `skey`, no date header, parameters in the query (GET) or a form body (POST).
    pub async fn legacy_call(
        &self,
        skey: &str,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Reply, HarnessError> {
        let line = canon_params(params);
        let canonical = canonicalize(
            Canon::V1,
            &CanonicalInput {
                date: "",
                method,
                host: &self.host,
                path,
                params: &line,
                body: b"",
                x_duo_hash: "",
            },
        );
        let authorization = sign(
            HmacAlg::Sha1,
            TEST_IKEY,
            &Secret::new(skey.to_owned()),
            &canonical,
        );
        let is_get = method.eq_ignore_ascii_case("GET");
        let url = if is_get && !line.is_empty() {
            self.url(&format!("{path}?{line}"))
        } else {
            self.url(path)
        };
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| herr("method", e))?;
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", authorization);
        if !is_get {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(line.into_bytes());
        }
        self.finish(req).await
    }

    /// An unsigned GET (ping, control API).
    pub async fn get(&self, path: &str) -> Result<Reply, HarnessError> {
        self.finish(self.http.get(self.url(path))).await
    }

    /// An unsigned POST with a JSON body (control API).
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Reply, HarnessError> {
        let bytes = serde_json::to_vec(body).map_err(|e| herr("json", e))?;
        self.finish(
            self.http
                .post(self.url(path))
                .header("Content-Type", "application/json")
                .body(bytes),
        )
        .await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Reply, HarnessError> {
        let resp = req.send().await.map_err(|e| herr("request failed", e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| herr("reading the body failed", e))?
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}
