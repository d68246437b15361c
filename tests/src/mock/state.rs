//! Shared state: transactions (pushes and passcodes), scripted outcomes, the request log and
//! counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::mock::behavior::{push_outcome_for, PushOutcome};
use crate::mock::reply::new_txid;

/// Delays that shape the mock's answers.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Delay before an ordinary user's push is approved.
    pub approve_delay: Duration,
    /// When an unanswered push expires (denied with status `timeout`).
    pub push_expiry: Duration,
    /// How long `auth_status`/`status.bson` hold a pending transaction before answering
    /// "waiting".
    pub long_poll: Duration,
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxResult {
    /// Not answered yet.
    Pending,
    /// Approved.
    Allow,
    /// Denied (by the user, as fraud, by lockout, or by timeout).
    Deny,
}

/// A transaction's current state: `result`, Duo's `status` word and `status_msg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxState {
    /// Pending, allow or deny.
    pub result: TxResult,
    /// Duo's machine-readable status (`pushed`, `allow`, `deny`, `fraud`, `timeout`, ...).
    pub status: &'static str,
    /// The human-readable message.
    pub status_msg: &'static str,
}

impl TxState {
    /// Waiting for the phone.
    pub const PUSHED: Self = Self {
        result: TxResult::Pending,
        status: "pushed",
        status_msg: "Pushed a login request to your device...",
    };
    /// Approved.
    pub const ALLOW: Self = Self {
        result: TxResult::Allow,
        status: "allow",
        status_msg: "Success. Logging you in...",
    };
    /// Allowed without a second factor.
    pub const BYPASS: Self = Self {
        result: TxResult::Allow,
        status: "bypass",
        status_msg: "Allowing unknown user (bypass)",
    };
    /// Denied by the user.
    pub const DENY: Self = Self {
        result: TxResult::Deny,
        status: "deny",
        status_msg: "Login request denied.",
    };
    /// Reported as fraud.
    pub const FRAUD: Self = Self {
        result: TxResult::Deny,
        status: "fraud",
        status_msg: "Login request reported as fraudulent.",
    };
    /// Locked out.
    pub const LOCKED_OUT: Self = Self {
        result: TxResult::Deny,
        status: "locked_out",
        status_msg: "Your account is locked",
    };
    /// Expired unanswered.
    pub const TIMEOUT: Self = Self {
        result: TxResult::Deny,
        status: "timeout",
        status_msg: "Login request timed out.",
    };
    /// Wrong passcode.
    pub const BAD_PASSCODE: Self = Self {
        result: TxResult::Deny,
        status: "deny",
        status_msg: "Incorrect passcode. Please try again.",
    };

    /// Whether the transaction has ended.
    pub fn is_final(&self) -> bool {
        self.result != TxResult::Pending
    }
}

/// Which protocol created a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Api {
    /// Auth API v2 (JSON).
    #[serde(rename = "v2")]
    V2,
    /// Legacy REST v1 (BSON).
    #[serde(rename = "v1")]
    V1,
}

/// What a new push is about.
#[derive(Clone, Debug)]
pub struct NewPush {
    /// Duo username.
    pub username: String,
    /// The `type` parameter (push title label); `legacy` for REST v1.
    pub kind: Option<String>,
    /// `display_username`, if sent.
    pub display_username: Option<String>,
    /// The decoded `pushinfo`.
    pub pushinfo: BTreeMap<String, String>,
    /// Device id or token (`auto`, `DP...`, `push1`).
    pub device: String,
    /// The factor as sent (`push`, `auto`, `prompt`).
    pub factor: String,
    /// The protocol.
    pub api: Api,
}

/// One entry of `GET /mock/pushes`.
#[derive(Clone, Debug, Serialize)]
pub struct PushRecord {
    /// Transaction id.
    pub txid: String,
    /// Duo username.
    pub username: String,
    /// The `type` parameter.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `display_username`, if sent.
    pub display_username: Option<String>,
    /// The decoded `pushinfo`.
    pub pushinfo: BTreeMap<String, String>,
    /// Device.
    pub device: String,
    /// Factor as sent.
    pub factor: String,
    /// pending / allow / deny.
    pub result: TxResult,
    /// Duo's status word.
    pub status: &'static str,
    /// `v2` or `v1`.
    pub api: Api,
    /// Milliseconds since the push was made (the phone page shows it).
    pub age_ms: u64,
}

/// One entry of `GET /mock/requests`.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Order of arrival (from 1).
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Signature version detected (`v1`, `v2-sha1`, `v2-sha512`, `v5`, `none`, ...).
    pub signature: &'static str,
    /// Whether the credentials checked out.
    pub verified: bool,
    /// HTTP status answered; 0 for a request that was never answered (`hang`).
    pub status: u16,
    /// Which TLS connection carried it (handshake count, from 1).
    pub connection: u64,
    /// The username parameter, when there was one.
    pub username: Option<String>,
    /// Names of the parameters received, sorted (values are not logged: passcodes).
    pub params: Vec<String>,
}

/// `GET /mock/stats`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Requests to the Duo API paths (control API excluded).
    pub requests: u64,
    /// Completed TLS handshakes.
    pub tls_handshakes: u64,
    /// Requests refused for their credentials.
    pub signature_failures: u64,
}

/// Why a control-API approve/deny did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No such transaction.
    Unknown,
    /// It had already ended.
    AlreadyFinal,
}

struct Tx {
    record: NewPush,
    is_push: bool,
    started: Instant,
    state: watch::Sender<TxState>,
}

#[derive(Default)]
struct Inner {
    txs: HashMap<String, Tx>,
    push_order: Vec<String>,
    scripts: HashMap<String, VecDeque<PushOutcome>>,
    requests: Vec<RequestRecord>,
}

/// Everything the handlers share.
pub struct MockState {
    timing: Timing,
    inner: Mutex<Inner>,
    requests: AtomicU64,
    tls_handshakes: AtomicU64,
    signature_failures: AtomicU64,
    /// Connection ids; never reset, so ids stay unique across `/mock/reset`.
    next_connection: AtomicU64,
    /// `--manual-all`: every unscripted push waits for a live decision.
    manual_all: AtomicBool,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockState")
            .field("timing", &self.timing)
            .field("stats", &self.stats())
            .finish()
    }
}

impl MockState {
    /// Empty state with these delays.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            inner: Mutex::new(Inner::default()),
            requests: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            signature_failures: AtomicU64::new(0),
            next_connection: AtomicU64::new(0),
            manual_all: AtomicBool::new(false),
        }
    }

    /// With `on`, every push that has no scripted outcome waits for a live decision (approve
    /// or deny through the control API or the phone page) whatever the username's prefix, and
    /// expires like `manual` pushes. Preauth and transport behaviours keep following the
    /// prefix.
    pub fn set_manual_all(&self, on: bool) {
        self.manual_all.store(on, Ordering::Relaxed);
    }

    /// The delays in force.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A handler that panicked mid-update leaves plain data behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a push, picks its outcome (script first, then username prefix) and starts the
    /// task that ends it. Returns the txid and a receiver of its state.
    pub fn start_push(self: &Arc<Self>, push: NewPush) -> (String, watch::Receiver<TxState>) {
        self.start_push_with(push, None)
    }

    /// Creates a push that ends as `outcome`, whatever the script or the username say (for
    /// the faults of [`crate::mock::fault`]).
    pub fn start_push_as(
        self: &Arc<Self>,
        push: NewPush,
        outcome: PushOutcome,
    ) -> (String, watch::Receiver<TxState>) {
        self.start_push_with(push, Some(outcome))
    }

    fn start_push_with(
        self: &Arc<Self>,
        push: NewPush,
        forced: Option<PushOutcome>,
    ) -> (String, watch::Receiver<TxState>) {
        let txid = new_txid();
        let (tx, rx) = watch::channel(TxState::PUSHED);
        let outcome = {
            let mut inner = self.lock();
            let scripted = match forced {
                Some(outcome) => Some(outcome),
                None => inner
                    .scripts
                    .get_mut(&push.username)
                    .and_then(VecDeque::pop_front),
            };
            let outcome = scripted.unwrap_or_else(|| {
                if self.manual_all.load(Ordering::Relaxed) {
                    PushOutcome::Manual
                } else {
                    push_outcome_for(&push.username, self.timing.approve_delay)
                }
            });
            inner.txs.insert(
                txid.clone(),
                Tx {
                    record: push,
                    is_push: true,
                    started: Instant::now(),
                    state: tx,
                },
            );
            inner.push_order.push(txid.clone());
            outcome
        };
        let state = Arc::clone(self);
        let id = txid.clone();
        tokio::spawn(async move {
            let end = match outcome {
                PushOutcome::Allow(delay) => {
                    tokio::time::sleep(delay).await;
                    TxState::ALLOW
                }
                PushOutcome::Bypass => TxState::BYPASS,
                PushOutcome::Deny => TxState::DENY,
                PushOutcome::Fraud => TxState::FRAUD,
                PushOutcome::LockedOut => TxState::LOCKED_OUT,
                PushOutcome::Timeout | PushOutcome::Manual => {
                    tokio::time::sleep(state.timing.push_expiry).await;
                    TxState::TIMEOUT
                }
            };
            // Already ended (approved live) or reset: nothing to do.
            let _ = state.resolve(&id, end);
        });
        (txid, rx)
    }

    /// Records a transaction that ended at once (a passcode); it is not a push.
    pub fn finished_tx(&self, username: &str, end: TxState) -> String {
        let txid = new_txid();
        let (tx, _) = watch::channel(end);
        let record = NewPush {
            username: username.to_owned(),
            kind: None,
            display_username: None,
            pushinfo: BTreeMap::new(),
            device: String::new(),
            factor: "passcode".to_owned(),
            api: Api::V2,
        };
        self.lock().txs.insert(
            txid.clone(),
            Tx {
                record,
                is_push: false,
                started: Instant::now(),
                state: tx,
            },
        );
        txid
    }

    /// Ends a pending transaction.
    pub fn resolve(&self, txid: &str, end: TxState) -> Result<(), ResolveError> {
        let inner = self.lock();
        let tx = inner.txs.get(txid).ok_or(ResolveError::Unknown)?;
        let mut changed = false;
        tx.state.send_if_modified(|s| {
            if s.is_final() {
                false
            } else {
                *s = end;
                changed = true;
                true
            }
        });
        if changed {
            Ok(())
        } else {
            Err(ResolveError::AlreadyFinal)
        }
    }

    /// The username of a transaction, if it exists.
    pub fn username_of(&self, txid: &str) -> Option<String> {
        self.lock()
            .txs
            .get(txid)
            .map(|tx| tx.record.username.clone())
    }

    /// A receiver of a transaction's state, if it exists.
    pub fn watch(&self, txid: &str) -> Option<watch::Receiver<TxState>> {
        self.lock().txs.get(txid).map(|tx| tx.state.subscribe())
    }

    /// Waits until the transaction ends, or `limit` elapses (`None`: no limit), and returns its
    /// state then.
    pub async fn wait(mut rx: watch::Receiver<TxState>, limit: Option<Duration>) -> TxState {
        let wait = async {
            // A closed channel (reset) leaves the last state in place.
            let _ = rx.wait_for(TxState::is_final).await;
        };
        match limit {
            Some(limit) => {
                let _ = tokio::time::timeout(limit, wait).await;
            }
            None => wait.await,
        }
        let state = *rx.borrow();
        state
    }

    /// Queues scripted outcomes for a user's next pushes.
    pub fn script(&self, username: &str, outcomes: Vec<PushOutcome>) {
        self.lock()
            .scripts
            .entry(username.to_owned())
            .or_default()
            .extend(outcomes);
    }

    /// All pushes, in the order they were made.
    pub fn pushes(&self) -> Vec<PushRecord> {
        let inner = self.lock();
        inner
            .push_order
            .iter()
            .filter_map(|txid| {
                let tx = inner.txs.get(txid).filter(|tx| tx.is_push)?;
                let state = *tx.state.borrow();
                Some(PushRecord {
                    txid: txid.clone(),
                    username: tx.record.username.clone(),
                    kind: tx.record.kind.clone(),
                    display_username: tx.record.display_username.clone(),
                    pushinfo: tx.record.pushinfo.clone(),
                    device: tx.record.device.clone(),
                    factor: tx.record.factor.clone(),
                    result: state.result,
                    status: state.status,
                    api: tx.record.api,
                    age_ms: u64::try_from(tx.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect()
    }

    /// Appends to the request log.
    pub fn record_request(&self, mut record: RequestRecord) {
        let seq = self
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        record.seq = seq;
        self.lock().requests.push(record);
    }

    /// The request log.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Counts a refused signature.
    pub fn count_signature_failure(&self) {
        self.signature_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a TLS handshake and returns the connection's id.
    pub fn count_handshake(&self) -> u64 {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
        self.next_connection
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            tls_handshakes: self.tls_handshakes.load(Ordering::Relaxed),
            signature_failures: self.signature_failures.load(Ordering::Relaxed),
        }
    }

    /// Forgets every transaction, script, logged request and counter (connection ids go on
    /// counting). Pending waits end with the state they last saw.
    pub fn reset(&self) {
        let mut inner = self.lock();
        *inner = Inner::default();
        self.requests.store(0, Ordering::Relaxed);
        self.tls_handshakes.store(0, Ordering::Relaxed);
        self.signature_failures.store(0, Ordering::Relaxed);
    }
}
