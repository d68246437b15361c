//! The Duo Auth API v2 over HTTPS: [`DuoClient`] implements [`DuoApi`].
//!
//! What this client guarantees, and why:
//!
//! - **Own trust only.** rustls with the ring provider and the roots of [`crate::tls`] (or the
//!   operator's `cafile`); the system store is never read and verification cannot be turned off.
//! - **Bounded time.** Every call finishes within `https_timeout` (connect, retries, the whole
//!   reply), except `auth_status`, which is bounded by the caller's push deadline instead.
//! - **One connection per login.** One `reqwest::Client` per [`DuoClient`], HTTP/1.1 keep-alive:
//!   ping, preauth, auth and auth_status share one TLS session.
//! - **Corrected clock.** Before the first signed call an unsigned `/auth/v2/ping` measures the
//!   offset between Duo's clock and ours; every signature date is corrected by it, so a host
//!   whose clock drifted does not get 401s.
//! - **No duplicate pushes.** An `/auth` is resent only when the connection was never
//!   established; once its bytes may have reached Duo, a failure is [`DuoError::Lost`].
//! - **Environment ignored.** `http_proxy`/`HTTPS_PROXY` variables are never honoured: in sshd
//!   and PAM the environment may come from the connecting user. Only the configured proxy is used.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::api::{
    AuthResult, AuthStatus, Device, DuoApi, DuoError, Preauth, PreauthResult, PushRequest, Subject,
    Txid,
};
use crate::secret::Secret;
use crate::signing::{self, SignatureVersion};
use crate::tls;

/// Largest reply body accepted. Duo's replies are a few KiB; anything bigger is not Duo.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// `pushinfo` must stay below 20,000 bytes (Duo's limit), measured before the second encoding.
pub const MAX_PUSHINFO_BYTES: usize = 19_999;

/// Longest 429 backoff step; one more 429 after waiting this long gives up.
const MAX_BACKOFF: Duration = Duration::from_secs(32);

/// Attempts for a connection that could not be established (refused, reset during connect).
const CONNECT_ATTEMPTS: u32 = 3;

/// Pause before the first connect retry; doubled for the next.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A retry needs at least this much time left before the deadline to be worth sending; with
/// less, a 429 ends as `RateLimited` now rather than as a timeout of the retry later.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(250);

/// Pause before retrying an idempotent GET after a 5xx.
const SERVER_ERROR_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Shortest interval between two `auth_status` polls in [`DuoClient::wait_for_push`], so that a
/// server answering `waiting` at once is not hammered.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Longest Duo error message kept (they go into logs).
const MAX_MESSAGE_CHARS: usize = 256;

/// Everything the client needs, independent of how the configuration file is parsed.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// API host name as configured (`api-xxxxxxxx.duosecurity.com`), optionally with a port
    /// (`127.0.0.1:8443` in tests). No scheme, no path.
    pub host: String,
    /// Integration key.
    pub ikey: String,
    /// Secret key.
    pub skey: Secret,
    /// How requests are signed.
    pub signature_version: SignatureVersion,
    /// Bound on every call except `auth_status`; also the connect timeout.
    pub https_timeout: Duration,
    /// PEM file of trusted roots that replaces the built-in list.
    pub cafile: Option<PathBuf>,
    /// Proxy URL (`http://proxy:3128`); without it, connections are direct.
    pub http_proxy: Option<String>,
    /// First word of the User-Agent: `pam_duo_push` or `duo-proxy-shim`.
    pub user_agent_product: &'static str,
}

impl ClientSettings {
    /// The client settings of a loaded configuration's `[duo]` section; `product` names the
    /// program in the User-Agent (`pam_duo_push`, `duo-proxy-shim`).
    pub fn from_config(duo: &crate::config::DuoSettings, product: &'static str) -> Self {
        Self {
            host: duo.host.authority().to_owned(),
            ikey: duo.ikey.as_str().to_owned(),
            skey: duo.skey.clone(),
            signature_version: duo.signature_version,
            https_timeout: duo.https_timeout,
            cafile: duo.cafile.clone(),
            http_proxy: duo.http_proxy.clone(),
            user_agent_product: product,
        }
    }
}

/// An HTTPS client for one Duo integration. Create one per login (or per shim run): it keeps
/// the connection and the measured clock offset.
#[derive(Debug)]
pub struct DuoClient {
    http: reqwest::Client,
    /// `https://host[:port]`.
    base_url: String,
    /// The host line of the canonical string: lowercase, without the port.
    sign_host: String,
    ikey: String,
    skey: Secret,
    version: SignatureVersion,
    https_timeout: Duration,
    /// Duo's clock minus ours, in seconds; measured once by the first ping.
    clock_offset: OnceCell<i64>,
}

/// Whether a request may be sent again after its bytes may have left this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Reading calls: resending changes nothing at Duo.
    Safe,
    /// `/auth`: a second copy could push the phone twice or replay a passcode.
    Never,
}

/// One API endpoint.
#[derive(Debug, Clone, Copy)]
struct Endpoint {
    method: &'static str,
    path: &'static str,
    signed: bool,
    resend: Resend,
}

const PING: Endpoint = Endpoint {
    method: "GET",
    path: "/auth/v2/ping",
    signed: false,
    resend: Resend::Safe,
};
const CHECK: Endpoint = Endpoint {
    method: "GET",
    path: "/auth/v2/check",
    signed: true,
    resend: Resend::Safe,
};
// preauth changes nothing at Duo, so a connect retry is safe.
const PREAUTH: Endpoint = Endpoint {
    method: "POST",
    path: "/auth/v2/preauth",
    signed: true,
    resend: Resend::Safe,
};
const AUTH: Endpoint = Endpoint {
    method: "POST",
    path: "/auth/v2/auth",
    signed: true,
    resend: Resend::Never,
};
const AUTH_STATUS: Endpoint = Endpoint {
    method: "GET",
    path: "/auth/v2/auth_status",
    signed: true,
    resend: Resend::Safe,
};

/// A reply as received, before the envelope is read.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// The connection was never established: nothing was sent, a retry is safe for any call.
    NotConnected(String),
    /// Anything else; returned as is.
    Final(DuoError),
}

impl DuoClient {
    /// Builds the client: validates the host, loads `cafile` (the only I/O), and sets up TLS
    /// and the connection pool. Nothing is sent until the first call.
    pub fn new(settings: ClientSettings) -> Result<Self, DuoError> {
        let (base_url, sign_host) = parse_host(&settings.host)?;
        if settings.https_timeout.is_zero() {
            return Err(DuoError::Setup("https_timeout must be positive".to_owned()));
        }
        let roots = match &settings.cafile {
            Some(path) => tls::roots_from_pem_file(path)?,
            None => tls::default_roots(),
        };
        let tls_config = tls::client_config(roots)?;
        let user_agent = format!(
            "{}/{} (duo_push; rust)",
            settings.user_agent_product,
            env!("CARGO_PKG_VERSION")
        );
        let builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config)
            .https_only(true)
            .connect_timeout(settings.https_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .tcp_nodelay(true)
            .user_agent(user_agent);
        // `no_proxy()` also switches off reqwest's reading of proxy environment variables;
        // `proxy()` does the same and adds only ours (with an empty no-proxy list, not NO_PROXY).
        let builder = match &settings.http_proxy {
            None => builder.no_proxy(),
            Some(url) => {
                // The URL may carry credentials: never echo it.
                let proxy = reqwest::Proxy::all(url.as_str()).map_err(|_| {
                    DuoError::Setup("http_proxy is not a valid proxy URL".to_owned())
                })?;
                builder.proxy(proxy)
            }
        };
        let http = builder
            .build()
            .map_err(|e| DuoError::Setup(format!("cannot build the HTTPS client: {e}")))?;
        Ok(Self {
            http,
            base_url,
            sign_host,
            ikey: settings.ikey,
            skey: settings.skey,
            version: settings.signature_version,
            https_timeout: settings.https_timeout,
            clock_offset: OnceCell::new(),
        })
    }

    /// Duo's clock minus the local clock in seconds, once a ping has measured it.
    pub fn clock_offset(&self) -> Option<i64> {
        self.clock_offset.get().copied()
    }

    /// One `auth_status` long-poll bounded by `deadline` (the remaining push time) instead of
    /// `https_timeout`. Past the deadline: [`DuoError::Timeout`].
    pub async fn auth_status_until(
        &self,
        txid: &Txid,
        deadline: Instant,
    ) -> Result<AuthStatus, DuoError> {
        self.ensure_clock(Some(deadline)).await?;
        let params = vec![("txid".to_owned(), txid.0.clone())];
        let reply = self.call(AUTH_STATUS, &params, deadline).await?;
        about_txid(&reply, txid)?;
        auth_status_from(&reply)
    }

    /// Polls `auth_status` until Duo gives a final result (anything but `waiting`, including
    /// an unknown value, which is never approval) or `deadline` passes ([`DuoError::Timeout`]).
    pub async fn wait_for_push(
        &self,
        txid: &Txid,
        deadline: Instant,
    ) -> Result<AuthStatus, DuoError> {
        loop {
            let started = Instant::now();
            let status = self.auth_status_until(txid, deadline).await?;
            if status.result != AuthResult::Waiting {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(DuoError::Timeout);
            }
            tokio::time::sleep_until((started + MIN_POLL_INTERVAL).min(deadline)).await;
        }
    }

    /// A deadline `https_timeout` from now.
    fn call_deadline(&self) -> Instant {
        Instant::now() + self.https_timeout
    }

    /// Measures the clock offset with an unsigned ping if that has not been done yet. The ping
    /// is a call of its own (its own `https_timeout`), capped by `outer` when given.
    async fn ensure_clock(&self, outer: Option<Instant>) -> Result<i64, DuoError> {
        self.clock_offset
            .get_or_try_init(|| async {
                let deadline = match outer {
                    Some(outer) => self.call_deadline().min(outer),
                    None => self.call_deadline(),
                };
                let server = self.ping_until(deadline).await?;
                Ok(server - OffsetDateTime::now_utc().unix_timestamp())
            })
            .await
            .copied()
    }

    async fn ping_until(&self, deadline: Instant) -> Result<i64, DuoError> {
        let reply = self.call(PING, &[], deadline).await?;
        let server = time_from(&reply)?;
        // Also proves the value can be added to our clock without overflowing a date.
        if OffsetDateTime::from_unix_timestamp(server).is_err() {
            return Err(DuoError::Malformed(
                "response.time is not a plausible Unix time".to_owned(),
            ));
        }
        Ok(server)
    }

    /// The local time corrected by the measured offset (uncorrected before the first ping).
    fn duo_now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        let offset = self.clock_offset.get().copied().unwrap_or(0);
        now.checked_add(time::Duration::seconds(offset))
            .unwrap_or(now)
    }

    /// Sends one logical call with retries where safe, all within `deadline`, and returns the
    /// `response` object of a `stat: OK` reply.
    async fn call(
        &self,
        endpoint: Endpoint,
        params: &[(String, String)],
        deadline: Instant,
    ) -> Result<Map<String, Value>, DuoError> {
        let mut connect_failures: u32 = 0;
        let mut rate_limited: u32 = 0;
        let mut server_error_retried = false;
        loop {
            let reply = match self.attempt(endpoint, params, deadline).await {
                Ok(reply) => reply,
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::NotConnected(detail)) => {
                    connect_failures += 1;
                    let pause = CONNECT_RETRY_PAUSE * 2u32.saturating_pow(connect_failures - 1);
                    if connect_failures >= CONNECT_ATTEMPTS || Instant::now() + pause >= deadline {
                        return Err(DuoError::Connect(detail));
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                rate_limited += 1;
                let Some(pause) = rate_limit_pause(rate_limited, reply.retry_after) else {
                    return Err(DuoError::RateLimited);
                };
                // Sleeping past the deadline would only end in a timeout: give up now.
                // checked_add: a hostile Retry-After must not overflow the clock arithmetic.
                let resume = Instant::now()
                    .checked_add(pause)
                    .and_then(|t| t.checked_add(MIN_ATTEMPT_TIME));
                if resume.is_none_or(|t| t >= deadline) {
                    return Err(DuoError::RateLimited);
                }
                tokio::time::sleep(pause).await;
                continue;
            }
            if reply.status.is_server_error()
                && endpoint.method == "GET"
                && endpoint.resend == Resend::Safe
                && !server_error_retried
                && Instant::now() + SERVER_ERROR_RETRY_PAUSE < deadline
            {
                server_error_retried = true;
                tokio::time::sleep(SERVER_ERROR_RETRY_PAUSE).await;
                continue;
            }
            return parse_envelope(reply.status, &reply.body);
        }
    }

    /// One HTTP exchange: sign (with a fresh date), send, read the bounded body.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        params: &[(String, String)],
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            // Nothing has been sent for this attempt.
            return Err(Failure::Final(DuoError::Timeout));
        }
        let method = Method::from_bytes(endpoint.method.as_bytes())
            .map_err(|_| Failure::Final(DuoError::Setup("bad HTTP method".to_owned())))?;
        let mut url = format!("{}{}", self.base_url, endpoint.path);
        let mut headers = HeaderMap::new();
        let mut body = None;
        if endpoint.signed {
            let date = signing::rfc2822_date(self.duo_now());
            let signed = signing::sign_request(
                self.version,
                &self.ikey,
                &self.skey,
                &date,
                endpoint.method,
                &self.sign_host,
                endpoint.path,
                params,
            );
            let mut authorization = HeaderValue::from_str(&signed.authorization).map_err(|_| {
                Failure::Final(DuoError::Setup(
                    "ikey contains characters not allowed in a header".to_owned(),
                ))
            })?;
            // Keeps the credential out of any Debug output of the request.
            authorization.set_sensitive(true);
            headers.insert(AUTHORIZATION, authorization);
            let date_value = HeaderValue::from_str(&signed.date)
                .map_err(|_| Failure::Final(DuoError::Setup("bad date header".to_owned())))?;
            headers.insert(signed.date_header, date_value);
            if !signed.query.is_empty() {
                url.push('?');
                url.push_str(&signed.query);
            }
            if let Some((bytes, content_type)) = signed.body {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                body = Some(bytes);
            }
        } else if !params.is_empty() {
            url.push('?');
            url.push_str(&signing::canon_params(params));
        }
        let mut request = self
            .http
            .request(method, url)
            .headers(headers)
            .timeout(remaining);
        if let Some(bytes) = body {
            request = request.body(bytes);
        }
        // reqwest's own timeout and this one end together; this one also covers the pool wait.
        let response = match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_elapsed) => return Err(Failure::Final(timed_out(endpoint.resend))),
            Ok(Err(e)) => return Err(classify(&e, endpoint.resend)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), self.duo_now());
        let body = read_limited(response, deadline, endpoint.resend).await?;
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

impl DuoApi for DuoClient {
    /// Unsigned; also records the clock offset if it was not measured yet.
    async fn ping(&self) -> Result<i64, DuoError> {
        let server = self.ping_until(self.call_deadline()).await?;
        // A concurrent first call may have set it already; either measurement will do.
        let _ = self
            .clock_offset
            .set(server - OffsetDateTime::now_utc().unix_timestamp());
        Ok(server)
    }

    async fn check(&self) -> Result<i64, DuoError> {
        self.ensure_clock(None).await?;
        let reply = self.call(CHECK, &[], self.call_deadline()).await?;
        time_from(&reply)
    }

    async fn preauth(&self, subject: &Subject) -> Result<Preauth, DuoError> {
        let params = subject_params(subject)?;
        self.ensure_clock(None).await?;
        let reply = self.call(PREAUTH, &params, self.call_deadline()).await?;
        preauth_from(reply)
    }

    /// Sends the push (`async=1`) and returns its txid.
    ///
    /// For the caller deciding whether the phone may have been pushed: `Connect`, `Tls`,
    /// `Timeout`, `RateLimited`, `Unauthorized`, `Setup` and a 4xx `Http` mean the request
    /// was not acted on; `Lost`, a 5xx `Http`, `Malformed` and `TooLarge` mean it may have been.
    async fn push(&self, request: &PushRequest) -> Result<Txid, DuoError> {
        let mut params = subject_params(&request.subject)?;
        params.push(("factor".to_owned(), "push".to_owned()));
        let device = if request.device.is_empty() {
            "auto"
        } else {
            request.device.as_str()
        };
        params.push(("device".to_owned(), device.to_owned()));
        params.push(("async".to_owned(), "1".to_owned()));
        if !request.kind.is_empty() {
            params.push(("type".to_owned(), request.kind.clone()));
        }
        if let Some(name) = &request.display_username {
            params.push(("display_username".to_owned(), name.clone()));
        }
        let pushinfo = encode_pushinfo(&request.pushinfo);
        if !pushinfo.is_empty() {
            params.push(("pushinfo".to_owned(), pushinfo));
        }
        self.ensure_clock(None).await?;
        let reply = self.call(AUTH, &params, self.call_deadline()).await?;
        match reply.get("txid") {
            Some(Value::String(txid)) if !txid.is_empty() => Ok(Txid(txid.clone())),
            _ => Err(DuoError::Malformed(
                "asynchronous auth reply has no txid".to_owned(),
            )),
        }
    }

    async fn passcode(&self, subject: &Subject, passcode: &Secret) -> Result<AuthStatus, DuoError> {
        let mut params = subject_params(subject)?;
        params.push(("factor".to_owned(), "passcode".to_owned()));
        params.push(("passcode".to_owned(), passcode.expose_str().to_owned()));
        self.ensure_clock(None).await?;
        let result = self.call(AUTH, &params, self.call_deadline()).await;
        // The parameter list held a copy of the passcode.
        for (_, value) in params.iter_mut() {
            zeroize::Zeroize::zeroize(value);
        }
        auth_status_from(&result?)
    }

    /// One long-poll bounded by the caller's push deadline ([`DuoClient::auth_status_until`]).
    async fn auth_status(&self, txid: &Txid, deadline: Instant) -> Result<AuthStatus, DuoError> {
        self.auth_status_until(txid, deadline).await
    }
}

/// Validates the configured host and returns (`https://host[:port]`, signing host).
fn parse_host(host: &str) -> Result<(String, String), DuoError> {
    let bad = |why: &str| DuoError::Setup(format!("host {host:?} {why}"));
    if host.is_empty() {
        return Err(bad("is empty"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\' | '@' | '?' | '#'))
    {
        return Err(bad(
            "must be a host name with an optional :port, nothing else",
        ));
    }
    let url = reqwest::Url::parse(&format!("https://{host}/"))
        .map_err(|_| bad("is not a valid host name"))?;
    let name = url
        .host_str()
        .ok_or_else(|| bad("has no host name"))?
        .to_ascii_lowercase();
    let base = match url.port() {
        Some(port) => format!("https://{name}:{port}"),
        None => format!("https://{name}"),
    };
    // Duo's canonical string carries the host without a port (duo-auth-api.md, "Signing").
    Ok((base, name))
}

/// The 429 pause before retry number `count` (1-based): `Retry-After` when given, else 1, 2,
/// 4, ... 32 s plus up to a second of jitter (so that many hosts rate-limited together do not
/// return in lockstep). `None` once the budget is spent.
fn rate_limit_pause(count: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let base = Duration::from_secs(1u64.checked_shl(count.saturating_sub(1))?);
    if base > MAX_BACKOFF {
        return None;
    }
    if let Some(pause) = retry_after {
        // Longer than the whole backoff budget: not worth waiting for.
        return (pause <= MAX_BACKOFF).then_some(pause);
    }
    let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..1000));
    Some(base + jitter)
}

/// `Retry-After` as delay-seconds or an HTTP-date (compared with Duo's clock as we know it).
fn retry_after(headers: &HeaderMap, duo_now: OffsetDateTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = signing::parse_rfc2822_date(value)?;
    let delta = at - duo_now;
    if delta.is_negative() {
        Some(Duration::ZERO)
    } else {
        Duration::try_from(delta).ok()
    }
}

/// The error for a deadline that passed after the request may have been sent.
fn timed_out(resend: Resend) -> DuoError {
    match resend {
        Resend::Safe => DuoError::Timeout,
        Resend::Never => DuoError::Lost("no reply within https_timeout".to_owned()),
    }
}

/// Sorts a reqwest error into TLS / not connected / timeout / lost.
fn classify(err: &reqwest::Error, resend: Resend) -> Failure {
    let detail = describe(err);
    // A connect error comes from the connector (TCP, proxy, TLS handshake): no request byte
    // has been written yet.
    let before_sending = err.is_connect();
    if let Some(tls_error) = find_rustls_error(err) {
        return Failure::Final(if before_sending || resend == Resend::Safe {
            DuoError::Tls(tls_error.to_string())
        } else {
            DuoError::Lost(format!("TLS failure after sending: {tls_error}"))
        });
    }
    if err.is_timeout() {
        return Failure::Final(if before_sending {
            DuoError::Timeout
        } else {
            timed_out(resend)
        });
    }
    if before_sending {
        return Failure::NotConnected(detail);
    }
    Failure::Final(match resend {
        Resend::Never => DuoError::Lost(detail),
        Resend::Safe => DuoError::Connect(format!("connection lost: {detail}")),
    })
}

/// The first rustls error in the source chain. `io::Error::source()` skips the error it wraps,
/// so wrapped errors are looked into explicitly.
fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = find_rustls_error(inner) {
                    return Some(found);
                }
            }
        }
        current = e.source();
    }
    None
}

/// The causes of a reqwest error, without its URL (which may carry a txid).
fn describe(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = err.source();
    while let Some(e) = current {
        let text = e.to_string();
        // Wrappers often repeat their cause's text.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    if parts.is_empty() {
        "request failed".to_owned()
    } else {
        parts.join(": ")
    }
}

/// Reads the body, at most [`MAX_REPLY_BYTES`], before `deadline`.
async fn read_limited(
    mut response: reqwest::Response,
    deadline: Instant,
    resend: Resend,
) -> Result<Vec<u8>, Failure> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_REPLY_BYTES as u64)
    {
        return Err(Failure::Final(DuoError::TooLarge));
    }
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_elapsed) => return Err(Failure::Final(timed_out(resend))),
            Ok(Err(e)) => {
                return Err(match classify(&e, resend) {
                    // The connection existed; mid-body nothing is "not connected".
                    Failure::NotConnected(detail) => Failure::Final(match resend {
                        Resend::Never => DuoError::Lost(detail),
                        Resend::Safe => DuoError::Connect(format!("connection lost: {detail}")),
                    }),
                    final_failure => final_failure,
                });
            }
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(chunk))) => {
                if body.len().saturating_add(chunk.len()) > MAX_REPLY_BYTES {
                    return Err(Failure::Final(DuoError::TooLarge));
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// Reads Duo's envelope and returns the `response` object of a `stat: OK` reply.
fn parse_envelope(status: StatusCode, body: &[u8]) -> Result<Map<String, Value>, DuoError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status == StatusCode::UNAUTHORIZED {
        let (code, message) = fail_fields(json.as_ref());
        return Err(DuoError::Unauthorized { code, message });
    }
    // Duo answers every success with 200; any other status, 2xx included, is not a reply this
    // client can trust (found by the duo_replies fuzz target: a 201 with an OK envelope used
    // to be read as a normal answer).
    if status != StatusCode::OK {
        let (code, message) = fail_fields(json.as_ref());
        return Err(DuoError::Http {
            status: status.as_u16(),
            code,
            message,
        });
    }
    let Some(Value::Object(mut envelope)) = json else {
        return Err(DuoError::Malformed("reply is not a JSON object".to_owned()));
    };
    match envelope.get("stat").and_then(Value::as_str) {
        Some("OK") => match envelope.remove("response") {
            Some(Value::Object(response)) => Ok(response),
            _ => Err(DuoError::Malformed(
                "stat OK without a response object".to_owned(),
            )),
        },
        Some("FAIL") => {
            let (code, message) = fail_fields(Some(&Value::Object(envelope)));
            Err(DuoError::Http {
                status: status.as_u16(),
                code,
                message,
            })
        }
        _ => Err(DuoError::Malformed(
            "stat is missing or neither OK nor FAIL".to_owned(),
        )),
    }
}

/// `code` (a number or a string, possibly empty) and `message` of a FAIL reply, leniently.
fn fail_fields(json: Option<&Value>) -> (String, String) {
    let code = match json.and_then(|j| j.get("code")) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let message = match json.and_then(|j| j.get("message")) {
        Some(Value::String(s)) => s.chars().take(MAX_MESSAGE_CHARS).collect(),
        _ => String::new(),
    };
    (code.chars().take(MAX_MESSAGE_CHARS).collect(), message)
}

/// A required string field.
fn required_str(map: &Map<String, Value>, key: &str) -> Result<String, DuoError> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(DuoError::Malformed(format!(
            "response.{key} is missing or not a string"
        ))),
    }
}

/// An optional string field: absent or null is empty, any other type is malformed.
fn optional_str(map: &Map<String, Value>, key: &str) -> Result<String, DuoError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DuoError::Malformed(format!(
            "response.{key} is not a string"
        ))),
    }
}

fn time_from(reply: &Map<String, Value>) -> Result<i64, DuoError> {
    reply
        .get("time")
        .and_then(Value::as_i64)
        .ok_or_else(|| DuoError::Malformed("response.time is missing or not an integer".to_owned()))
}

fn preauth_from(mut reply: Map<String, Value>) -> Result<Preauth, DuoError> {
    let result = PreauthResult::from_wire(&required_str(&reply, "result")?);
    let status_msg = optional_str(&reply, "status_msg")?;
    let enroll_portal_url = match optional_str(&reply, "enroll_portal_url")? {
        url if url.is_empty() => None,
        url => Some(url),
    };
    let devices = match reply.remove("devices") {
        None | Some(Value::Null) => Vec::new(),
        Some(list) => serde_json::from_value::<Vec<Device>>(list).map_err(|e| {
            let text: String = e.to_string().chars().take(MAX_MESSAGE_CHARS).collect();
            DuoError::Malformed(format!("response.devices: {text}"))
        })?,
    };
    Ok(Preauth {
        result,
        status_msg,
        devices,
        enroll_portal_url,
    })
}

/// An `auth` (synchronous) or `auth_status` reply. A missing `result` is malformed, never a
/// decision.
fn auth_status_from(reply: &Map<String, Value>) -> Result<AuthStatus, DuoError> {
    Ok(AuthStatus {
        result: AuthResult::from_wire(&required_str(reply, "result")?),
        status: optional_str(reply, "status")?,
        status_msg: optional_str(reply, "status_msg")?,
    })
}

/// Duo's `auth_status` reply carries no `txid`. One that does and names another transaction
/// (a proxy or cache mixing up replies, a forged answer) is not an answer about ours, so its
/// `result: allow` must never approve our push: malformed.
fn about_txid(reply: &Map<String, Value>, asked: &Txid) -> Result<(), DuoError> {
    match reply.get("txid") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(named)) if *named == asked.0 => Ok(()),
        Some(_) => Err(DuoError::Malformed(
            "auth_status reply names another transaction than the one asked about".to_owned(),
        )),
    }
}

/// `username`, and `ipaddr` and `hostname` when known.
fn subject_params(subject: &Subject) -> Result<Vec<(String, String)>, DuoError> {
    if subject.username.is_empty() {
        return Err(DuoError::Setup("empty Duo username".to_owned()));
    }
    let mut params = vec![("username".to_owned(), subject.username.clone())];
    if let Some(ip) = &subject.ipaddr {
        params.push(("ipaddr".to_owned(), ip.clone()));
    }
    if let Some(host) = &subject.hostname {
        params.push(("hostname".to_owned(), host.clone()));
    }
    Ok(params)
}

/// Encodes `pushinfo` pairs as one `k=v&k=v` string (each key and value percent-encoded, space
/// as `%20`), which the signer then encodes a second time as a parameter value. Pairs that
/// would take it to [`MAX_PUSHINFO_BYTES`] or beyond are dropped from the end, so callers put
/// the pairs that identify the request first.
pub fn encode_pushinfo(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        let pair = format!(
            "{}={}",
            signing::percent_encode(key),
            signing::percent_encode(value)
        );
        let separator = usize::from(!out.is_empty());
        if out.len() + separator + pair.len() > MAX_PUSHINFO_BYTES {
            break;
        }
        if separator == 1 {
            out.push('&');
        }
        out.push_str(&pair);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keeps_its_port_for_the_url_but_not_for_signing() {
        let (base, sign) = parse_host("127.0.0.1:8443").expect("host");
        assert_eq!(base, "https://127.0.0.1:8443");
        assert_eq!(sign, "127.0.0.1");
        let (base, sign) = parse_host("API-X.duosecurity.com").expect("host");
        assert_eq!(base, "https://api-x.duosecurity.com");
        assert_eq!(sign, "api-x.duosecurity.com");
    }

    #[test]
    fn hosts_with_paths_users_or_schemes_are_refused() {
        for bad in [
            "",
            "https://api.example",
            "api.example/x",
            "u@api.example",
            "api .example",
            "api.example?x",
        ] {
            assert!(
                matches!(parse_host(bad), Err(DuoError::Setup(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_32_seconds_then_gives_up() {
        for (count, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32)] {
            let pause = rate_limit_pause(count, None).expect("pause");
            assert!(pause >= Duration::from_secs(base), "{count}: {pause:?}");
            assert!(pause < Duration::from_secs(base + 1), "{count}: {pause:?}");
        }
        assert_eq!(rate_limit_pause(7, None), None);
        assert_eq!(rate_limit_pause(7, Some(Duration::from_secs(1))), None);
        assert_eq!(
            rate_limit_pause(1, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn a_retry_after_beyond_the_backoff_budget_gives_up_instead_of_overflowing() {
        // Found by the duo_replies fuzz target: Retry-After: 9999999999999999999 used to
        // overflow `Instant + Duration` and panic.
        let huge = Duration::from_secs(9_999_999_999_999_999_999);
        assert_eq!(rate_limit_pause(1, Some(huge)), None);
        assert_eq!(rate_limit_pause(1, Some(MAX_BACKOFF)), Some(MAX_BACKOFF));
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("9999999999999999999"));
        let now = time::macros::datetime!(2024-01-01 00:00:00 UTC);
        assert_eq!(rate_limit_pause(1, retry_after(&headers, now)), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = time::macros::datetime!(2024-01-01 00:00:00 UTC);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Mon, 01 Jan 2024 00:00:05 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(5)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 31 Dec 2023 23:00:00 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn envelope_codes_may_be_numbers_strings_or_empty() {
        let err = parse_envelope(
            StatusCode::BAD_REQUEST,
            br#"{"stat":"FAIL","code":40002,"message":"Invalid request parameters"}"#,
        );
        assert_eq!(
            err,
            Err(DuoError::Http {
                status: 400,
                code: "40002".into(),
                message: "Invalid request parameters".into()
            })
        );
        let err = parse_envelope(StatusCode::UNAUTHORIZED, br#"{"stat":"FAIL","code":""}"#);
        assert_eq!(
            err,
            Err(DuoError::Unauthorized {
                code: String::new(),
                message: String::new()
            })
        );
        let err = parse_envelope(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(matches!(err, Err(DuoError::Http { status: 502, .. })));
    }

    #[test]
    fn only_http_200_carries_a_reply() {
        let body = br#"{"stat":"OK","response":{"result":"allow"}}"#;
        assert!(parse_envelope(StatusCode::OK, body).is_ok());
        for status in [
            StatusCode::CREATED,
            StatusCode::ACCEPTED,
            StatusCode::NO_CONTENT,
        ] {
            assert!(
                matches!(parse_envelope(status, body), Err(DuoError::Http { .. })),
                "{status}"
            );
        }
    }

    #[test]
    fn ok_without_result_is_malformed_never_a_decision() {
        let reply = parse_envelope(
            StatusCode::OK,
            br#"{"stat":"OK","response":{"status":"allow"}}"#,
        )
        .expect("envelope");
        assert!(matches!(
            auth_status_from(&reply),
            Err(DuoError::Malformed(_))
        ));
        assert!(matches!(
            parse_envelope(StatusCode::OK, br#"{"stat":"OK"}"#),
            Err(DuoError::Malformed(_))
        ));
        assert!(matches!(
            parse_envelope(StatusCode::OK, br#"{"stat":"MAYBE","response":{}}"#),
            Err(DuoError::Malformed(_))
        ));
    }

    #[test]
    fn an_allow_that_names_another_txid_is_malformed_not_approval() {
        let asked = Txid("A".to_owned());
        let reply = parse_envelope(
            StatusCode::OK,
            br#"{"stat":"OK","response":{"result":"allow","status":"allow","txid":"B"}}"#,
        )
        .expect("envelope");
        assert!(matches!(
            about_txid(&reply, &asked),
            Err(DuoError::Malformed(_))
        ));
        let reply = parse_envelope(
            StatusCode::OK,
            br#"{"stat":"OK","response":{"result":"allow","txid":7}}"#,
        )
        .expect("envelope");
        assert!(about_txid(&reply, &asked).is_err());
        // Duo's own shape (no txid), and our own txid echoed, are answers about ours.
        for body in [
            &br#"{"stat":"OK","response":{"result":"allow"}}"#[..],
            &br#"{"stat":"OK","response":{"result":"allow","txid":"A"}}"#[..],
        ] {
            let reply = parse_envelope(StatusCode::OK, body).expect("envelope");
            assert_eq!(about_txid(&reply, &asked), Ok(()));
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_results_stay_unknown() {
        let reply = parse_envelope(
            StatusCode::OK,
            br#"{"stat":"OK","new":1,"response":{"result":"maybe","status":"x","status_msg":"y","extra":[1]}}"#,
        )
        .expect("envelope");
        let status = auth_status_from(&reply).expect("status");
        assert_eq!(status.result, AuthResult::Unknown("maybe".into()));
    }

    #[test]
    fn preauth_devices_parse_and_bad_devices_are_malformed() {
        let reply = parse_envelope(
            StatusCode::OK,
            br#"{"stat":"OK","response":{"result":"auth","status_msg":"ok","devices":[{"device":"D1","type":"phone","capabilities":["push","sms"],"future":true}]}}"#,
        )
        .expect("envelope");
        let preauth = preauth_from(reply).expect("preauth");
        assert_eq!(preauth.result, PreauthResult::Auth);
        assert_eq!(preauth.devices.len(), 1);
        assert!(preauth.devices.iter().all(Device::can_push));
        let reply = parse_envelope(
            StatusCode::OK,
            br#"{"stat":"OK","response":{"result":"auth","devices":"none"}}"#,
        )
        .expect("envelope");
        assert!(matches!(preauth_from(reply), Err(DuoError::Malformed(_))));
    }

    #[test]
    fn pushinfo_is_encoded_once_here_and_capped() {
        let pairs = vec![
            ("hop".to_owned(), "vault".to_owned()),
            ("from".to_owned(), "10.0.0.1 & co=x".to_owned()),
        ];
        assert_eq!(
            encode_pushinfo(&pairs),
            "hop=vault&from=10.0.0.1%20%26%20co%3Dx"
        );
        let big = vec![
            ("a".to_owned(), "x".repeat(15_000)),
            ("b".to_owned(), "y".repeat(6_000)),
            ("c".to_owned(), "z".to_owned()),
        ];
        let encoded = encode_pushinfo(&big);
        assert!(encoded.len() < 20_000);
        assert!(encoded.starts_with("a=xxx"));
        assert!(!encoded.contains("b="));
    }
}
