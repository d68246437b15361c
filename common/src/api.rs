//! The Duo Auth API v2 as this project uses it: typed requests, typed replies, the transport
//! error, and the [`DuoApi`] trait that the HTTPS client implements and tests can double.
//!
//! Replies ignore unknown fields. An unknown enum value becomes `Unknown(..)`, which no code path
//! treats as approval.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// What preauth says about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreauthResult {
    /// The user must complete a second factor.
    Auth,
    /// Duo lets the user skip the second factor (bypass, trusted network, remembered device).
    Allow,
    /// Locked out, disabled, or denied by policy.
    Deny,
    /// No Duo account yet; the enrollment URL may be shown.
    Enroll,
    /// A value this code does not know. Never approval.
    Unknown(String),
}

impl PreauthResult {
    /// Maps Duo's `result` string.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "auth" => Self::Auth,
            "allow" => Self::Allow,
            "deny" => Self::Deny,
            "enroll" => Self::Enroll,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// One of the user's devices from preauth.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
pub struct Device {
    /// Device id, or `auto`.
    pub device: String,
    /// `phone`, `token`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Human name, e.g. `iOS (XXX-XXX-1234)`.
    pub display_name: String,
    /// Masked phone number.
    pub number: String,
    /// `auto`, `push`, `sms`, `phone`, `mobile_otp`.
    pub capabilities: Vec<String>,
}

impl Device {
    /// Whether the device can receive a Duo Push.
    pub fn can_push(&self) -> bool {
        self.capabilities.iter().any(|c| c == "push")
    }
}

/// The preauth reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preauth {
    /// The decision.
    pub result: PreauthResult,
    /// Text for the user.
    pub status_msg: String,
    /// Devices, for `auth`.
    pub devices: Vec<Device>,
    /// Enrollment URL, for `enroll`.
    pub enroll_portal_url: Option<String>,
}

/// The final or interim result of an authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// Approved on the phone (or a valid passcode).
    Allow,
    /// Denied, fraud, timed out on Duo's side, locked out.
    Deny,
    /// Still waiting for the user.
    Waiting,
    /// A value this code does not know. Never approval.
    Unknown(String),
}

impl AuthResult {
    /// Maps Duo's `result` string.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "allow" => Self::Allow,
            "deny" => Self::Deny,
            "waiting" => Self::Waiting,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// An auth or auth_status reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStatus {
    /// Decide on this, never on `status`.
    pub result: AuthResult,
    /// `pushed`, `allow`, `deny`, `fraud`, `timeout`, `locked_out`, ... (for messages and logs).
    pub status: String,
    /// Text for the user.
    pub status_msg: String,
}

/// A transaction id returned by an asynchronous `/auth`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Txid(pub String);

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is logging in, from where: the fields of preauth and auth.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// Duo username.
    pub username: String,
    /// Client IP address (`ipaddr`), when known.
    pub ipaddr: Option<String>,
    /// This proxy's host name (`hostname`).
    pub hostname: Option<String>,
}

/// A push to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushRequest {
    /// Who and from where.
    pub subject: Subject,
    /// `device`: an id from preauth, or `auto`.
    pub device: String,
    /// `type`: the label Duo Mobile shows ("Vault login", "Target access").
    pub kind: String,
    /// `display_username`, when different from the username.
    pub display_username: Option<String>,
    /// `pushinfo` pairs, URL-encoded into one parameter by the client.
    pub pushinfo: Vec<(String, String)>,
}

/// Errors talking to Duo. `Display` is meant for operators and never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuoError {
    /// TCP connect failed or was refused (retried where safe before this is returned).
    Connect(String),
    /// TLS handshake or certificate verification failed.
    Tls(String),
    /// No complete reply within `https_timeout`.
    Timeout,
    /// 401: bad integration key, secret key or signature, or the clock is off.
    Unauthorized { code: String, message: String },
    /// 429 after the retry budget was spent.
    RateLimited,
    /// Any other non-2xx HTTP status, with Duo's code and message when the body had them.
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The reply was not the JSON Duo sends (or `stat` was not OK without a status).
    Malformed(String),
    /// The reply body exceeded the size limit.
    TooLarge,
    /// The request was lost after it may have reached Duo (an `/auth` is never resent).
    Lost(String),
    /// A local problem building the client or request (bad cafile, proxy URL, ...).
    Setup(String),
}

impl fmt::Display for DuoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect to Duo: {e}"),
            Self::Tls(e) => write!(f, "TLS failure talking to Duo: {e}"),
            Self::Timeout => f.write_str("Duo did not answer within https_timeout"),
            Self::Unauthorized { code, message } => write!(
                f,
                "Duo rejected our credentials (401 {code}: {message}); check ikey, skey, host and the clock"
            ),
            Self::RateLimited => f.write_str("Duo kept answering 429 (rate limited); gave up"),
            Self::Http {
                status,
                code,
                message,
            } => write!(f, "Duo answered HTTP {status} {code}: {message}"),
            Self::Malformed(e) => write!(f, "malformed reply from Duo: {e}"),
            Self::TooLarge => f.write_str("reply from Duo exceeded the size limit"),
            Self::Lost(e) => write!(f, "reply from Duo was lost after the request was sent: {e}"),
            Self::Setup(e) => write!(f, "cannot set up the Duo client: {e}"),
        }
    }
}

impl std::error::Error for DuoError {}

/// The Duo Auth API calls the flow needs. [`crate::client::DuoClient`] implements it over
/// HTTPS; tests may implement it in memory.
pub trait DuoApi {
    /// `GET /auth/v2/ping`: Duo's clock, used to correct the signing date.
    fn ping(&self) -> impl Future<Output = Result<i64, DuoError>>;
    /// `GET /auth/v2/check`: keys and signature are valid.
    fn check(&self) -> impl Future<Output = Result<i64, DuoError>>;
    /// `POST /auth/v2/preauth`.
    fn preauth(&self, subject: &Subject) -> impl Future<Output = Result<Preauth, DuoError>>;
    /// `POST /auth/v2/auth` with `factor=push`, `async=1`: returns the txid.
    fn push(&self, request: &PushRequest) -> impl Future<Output = Result<Txid, DuoError>>;
    /// `POST /auth/v2/auth` with `factor=passcode` (synchronous).
    fn passcode(
        &self,
        subject: &Subject,
        passcode: &Secret,
    ) -> impl Future<Output = Result<AuthStatus, DuoError>>;
    /// `GET /auth/v2/auth_status`: one long-poll; returns when something changes, or
    /// [`DuoError::Timeout`] once `deadline` (the end of `push_timeout`) has passed.
    fn auth_status(
        &self,
        txid: &Txid,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<AuthStatus, DuoError>>;
}

/// Bounds on how long any one push may take, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Every call except waiting for the phone.
    pub https: Duration,
    /// Waiting for the user to approve.
    pub push: Duration,
}
