//! The push flow against an in-memory Duo double: scripted replies, recorded calls, and
//! simulated hangs (real tokio time, short timeouts).

#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use duo_push_common::api::{
    AuthResult, AuthStatus, Device, DuoApi, DuoError, Preauth, PreauthResult, PushRequest, Subject,
    Timeouts, Txid,
};
use duo_push_common::flow::{authenticate, FlowOutcome, FlowSettings, UserChannel};
use duo_push_common::policy::{ApprovalKind, Decision, DenyReason, PolicyInput};
use duo_push_common::secret::Secret;

const TXID: &str = "45f7c92b-f45f-4862-8545-e0f58e78075a";
const HANG: Duration = Duration::from_secs(3600);

/// One scripted reply: a value, an error, or a hang (sleep far beyond any timeout). For
/// auth_status also `UntilDeadline`: wait for the deadline the flow passed, then time out, as
/// the real client does.
#[derive(Clone, Debug)]
enum Reply<T> {
    Ok(T),
    Err(DuoError),
    Hang,
    UntilDeadline,
    /// The value, after a delay (a slow but answering Duo).
    Late(Duration, T),
}

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Preauth(String),
    Push { device: String, kind: String },
    Passcode(String),
    AuthStatus(String),
}

struct FakeDuo {
    preauth: Reply<Preauth>,
    push: Reply<Txid>,
    /// Replies to auth_status in order; the last one repeats.
    statuses: RefCell<VecDeque<Reply<AuthStatus>>>,
    /// Replies to passcode in order; when empty, compares with `good_passcode`.
    good_passcode: String,
    passcode_replies: RefCell<VecDeque<Reply<AuthStatus>>>,
    calls: RefCell<Vec<Call>>,
    /// The deadline passed with each auth_status call.
    deadlines: RefCell<Vec<Instant>>,
}

impl FakeDuo {
    fn new() -> Self {
        Self {
            preauth: Reply::Ok(preauth_auth(vec![phone("DPHONE1", "iOS (XXX-XXX-1234)")])),
            push: Reply::Ok(Txid(TXID.into())),
            statuses: RefCell::new(VecDeque::from([Reply::Ok(status(
                AuthResult::Allow,
                "allow",
            ))])),
            good_passcode: "123456".into(),
            passcode_replies: RefCell::new(VecDeque::new()),
            calls: RefCell::new(Vec::new()),
            deadlines: RefCell::new(Vec::new()),
        }
    }

    fn with_preauth(mut self, reply: Reply<Preauth>) -> Self {
        self.preauth = reply;
        self
    }

    fn with_push(mut self, reply: Reply<Txid>) -> Self {
        self.push = reply;
        self
    }

    fn with_statuses(self, replies: Vec<Reply<AuthStatus>>) -> Self {
        *self.statuses.borrow_mut() = replies.into();
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.calls.borrow().iter().filter(|c| f(c)).count()
    }

    fn pushes(&self) -> usize {
        self.count(|c| matches!(c, Call::Push { .. }))
    }

    fn polls(&self) -> usize {
        self.count(|c| matches!(c, Call::AuthStatus(_)))
    }

    fn passcodes(&self) -> usize {
        self.count(|c| matches!(c, Call::Passcode(_)))
    }
}

async fn play<T: Clone>(reply: Reply<T>) -> Result<T, DuoError> {
    match reply {
        Reply::Ok(v) => Ok(v),
        Reply::Err(e) => Err(e),
        Reply::Hang => {
            tokio::time::sleep(HANG).await;
            Err(DuoError::Timeout)
        }
        Reply::UntilDeadline => panic!("UntilDeadline is only for auth_status"),
        Reply::Late(delay, v) => {
            tokio::time::sleep(delay).await;
            Ok(v)
        }
    }
}

impl DuoApi for FakeDuo {
    async fn ping(&self) -> Result<i64, DuoError> {
        panic!("the flow must not call ping");
    }

    async fn check(&self) -> Result<i64, DuoError> {
        panic!("the flow must not call check");
    }

    async fn preauth(&self, subject: &Subject) -> Result<Preauth, DuoError> {
        self.calls
            .borrow_mut()
            .push(Call::Preauth(subject.username.clone()));
        play(self.preauth.clone()).await
    }

    async fn push(&self, request: &PushRequest) -> Result<Txid, DuoError> {
        self.calls.borrow_mut().push(Call::Push {
            device: request.device.clone(),
            kind: request.kind.clone(),
        });
        play(self.push.clone()).await
    }

    async fn passcode(
        &self,
        _subject: &Subject,
        passcode: &Secret,
    ) -> Result<AuthStatus, DuoError> {
        self.calls
            .borrow_mut()
            .push(Call::Passcode(passcode.expose_str().to_owned()));
        let scripted = self.passcode_replies.borrow_mut().pop_front();
        let reply = scripted.unwrap_or_else(|| {
            if passcode.expose_str() == self.good_passcode {
                Reply::Ok(status(AuthResult::Allow, "allow"))
            } else {
                Reply::Ok(AuthStatus {
                    result: AuthResult::Deny,
                    status: "deny".into(),
                    status_msg: "Incorrect passcode. Please try again.".into(),
                })
            }
        });
        play(reply).await
    }

    async fn auth_status(&self, txid: &Txid, deadline: Instant) -> Result<AuthStatus, DuoError> {
        self.calls
            .borrow_mut()
            .push(Call::AuthStatus(txid.0.clone()));
        self.deadlines.borrow_mut().push(deadline);
        let reply = {
            let mut q = self.statuses.borrow_mut();
            if q.len() > 1 {
                q.pop_front()
            } else {
                q.front().cloned()
            }
        };
        match reply.expect("a scripted auth_status reply") {
            Reply::UntilDeadline => {
                tokio::time::sleep_until(deadline).await;
                Err(DuoError::Timeout)
            }
            other => play(other).await,
        }
    }
}

#[derive(Default)]
struct FakeUser {
    answers: VecDeque<Option<String>>,
    prompts: Vec<String>,
    infos: Vec<String>,
    errors: Vec<String>,
}

impl FakeUser {
    fn answering(answers: &[Option<&str>]) -> Self {
        Self {
            answers: answers.iter().map(|a| a.map(str::to_owned)).collect(),
            ..Self::default()
        }
    }
}

impl UserChannel for FakeUser {
    fn info(&mut self, msg: &str) {
        self.infos.push(msg.to_owned());
    }

    fn error(&mut self, msg: &str) {
        self.errors.push(msg.to_owned());
    }

    fn prompt(&mut self, msg: &str) -> Option<String> {
        self.prompts.push(msg.to_owned());
        self.answers.pop_front().flatten()
    }
}

fn phone(id: &str, name: &str) -> Device {
    Device {
        device: id.into(),
        kind: "phone".into(),
        display_name: name.into(),
        number: "XXX-XXX-1234".into(),
        capabilities: vec!["auto".into(), "push".into(), "sms".into()],
    }
}

fn token(id: &str) -> Device {
    Device {
        device: id.into(),
        kind: "token".into(),
        display_name: "Yubikey".into(),
        number: String::new(),
        capabilities: vec!["mobile_otp".into()],
    }
}

fn preauth_auth(devices: Vec<Device>) -> Preauth {
    Preauth {
        result: PreauthResult::Auth,
        status_msg: "Account is active".into(),
        devices,
        enroll_portal_url: None,
    }
}

fn preauth_with(result: PreauthResult, status_msg: &str) -> Preauth {
    Preauth {
        result,
        status_msg: status_msg.into(),
        devices: Vec::new(),
        enroll_portal_url: None,
    }
}

fn status(result: AuthResult, status: &str) -> AuthStatus {
    AuthStatus {
        result,
        status: status.into(),
        status_msg: format!("status {status}"),
    }
}

fn waiting() -> Reply<AuthStatus> {
    Reply::Ok(status(AuthResult::Waiting, "pushed"))
}

fn settings(force_mfa: bool, fail_open: bool) -> FlowSettings {
    FlowSettings {
        policy: PolicyInput {
            force_mfa,
            allow_bypass: false,
            fail_open,
        },
        timeouts: Timeouts {
            https: Duration::from_millis(200),
            push: Duration::from_secs(1),
        },
        autopush: true,
        prompts: 3,
    }
}

fn interactive(prompts: u8) -> FlowSettings {
    FlowSettings {
        autopush: false,
        prompts,
        ..settings(true, false)
    }
}

fn request() -> PushRequest {
    PushRequest {
        subject: Subject {
            username: "alice".into(),
            ipaddr: Some("192.0.2.7".into()),
            hostname: Some("proxy.example.com".into()),
        },
        device: "auto".into(),
        kind: "Vault login".into(),
        display_username: None,
        pushinfo: vec![("hop".into(), "vault".into())],
    }
}

/// Runs the flow, failing the test (instead of hanging it) if the flow's own bounds do not hold.
async fn run(duo: &FakeDuo, settings: &FlowSettings, ui: &mut FakeUser) -> FlowOutcome {
    tokio::time::timeout(
        Duration::from_secs(10),
        authenticate(duo, settings, &request(), ui),
    )
    .await
    .expect("the flow ends within its own timeouts")
}

fn denial_reason(outcome: &FlowOutcome) -> DenyReason {
    match &outcome.decision {
        Decision::Deny(d) => d.reason.clone(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn grant_kind(outcome: &FlowOutcome) -> ApprovalKind {
    match &outcome.decision {
        Decision::Grant(a) => a.kind(),
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[tokio::test]
async fn an_approved_push_grants_with_its_txid() {
    let duo = FakeDuo::new();
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(true, false), &mut ui).await;
    match &outcome.decision {
        Decision::Grant(a) => {
            assert_eq!(a.kind(), ApprovalKind::Push);
            assert_eq!(a.txid(), Some(&Txid(TXID.into())));
        }
        other => panic!("expected a grant, got {other:?}"),
    }
    assert_eq!(outcome.txid, Some(Txid(TXID.into())));
    assert_eq!(outcome.device.as_deref(), Some("DPHONE1"));
    assert_eq!(outcome.requests, 3);
    assert_eq!(
        duo.calls(),
        vec![
            Call::Preauth("alice".into()),
            Call::Push {
                device: "DPHONE1".into(),
                kind: "Vault login".into()
            },
            Call::AuthStatus(TXID.into()),
        ]
    );
    assert_eq!(
        ui.infos,
        vec![
            "Duo Push sent to iOS (XXX-XXX-1234). Approve it on your phone (waiting up to 1 s)..."
                .to_owned(),
            "Duo Push approved.".to_owned(),
        ]
    );
    assert!(ui.errors.is_empty());
}

#[tokio::test]
async fn the_push_goes_to_the_first_push_capable_device() {
    let duo = FakeDuo::new().with_preauth(Reply::Ok(preauth_auth(vec![
        token("DTOKEN"),
        phone("DPHONE2", "Android"),
        phone("DPHONE3", "iPad"),
    ])));
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(true, false), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Push);
    assert!(duo.calls().contains(&Call::Push {
        device: "DPHONE2".into(),
        kind: "Vault login".into()
    }));
}

#[tokio::test]
async fn approval_after_some_waiting_grants() {
    let duo = FakeDuo::new().with_statuses(vec![
        waiting(),
        waiting(),
        Reply::Ok(status(AuthResult::Allow, "allow")),
    ]);
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(true, false), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Push);
    assert_eq!(duo.polls(), 3);
}

#[tokio::test]
async fn denied_fraud_and_timed_out_pushes_deny() {
    for (st, reason) in [
        ("deny", DenyReason::PushDenied),
        ("fraud", DenyReason::Fraud),
        ("timeout", DenyReason::PushTimedOut),
        ("locked_out", DenyReason::LockedOut),
    ] {
        for (force, safe) in [(true, false), (false, true)] {
            let duo = FakeDuo::new()
                .with_statuses(vec![waiting(), Reply::Ok(status(AuthResult::Deny, st))]);
            let mut ui = FakeUser::default();
            let outcome = run(&duo, &settings(force, safe), &mut ui).await;
            assert_eq!(denial_reason(&outcome), reason);
            assert_eq!(outcome.txid, Some(Txid(TXID.into())));
            assert_eq!(ui.errors.len(), 1, "{:?}", ui.errors);
            assert!(!ui.infos.iter().any(|m| m.contains("approved")));
        }
    }
}

#[tokio::test]
async fn an_unknown_auth_status_result_denies() {
    let duo = FakeDuo::new().with_statuses(vec![Reply::Ok(status(
        AuthResult::from_wire("allowish"),
        "allow",
    ))]);
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::UnknownResult);
}

#[tokio::test]
async fn preauth_allow_is_refused_under_forced_mfa_without_a_push() {
    let duo = FakeDuo::new().with_preauth(Reply::Ok(preauth_with(PreauthResult::Allow, "Bypass")));
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(true, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::BypassRefused);
    assert_eq!(duo.pushes(), 0);
    assert_eq!(ui.errors.len(), 1);
}

#[tokio::test]
async fn preauth_allow_grants_bypass_with_allow_bypass_or_without_forced_mfa() {
    let mut with_bypass = settings(true, false);
    with_bypass.policy.allow_bypass = true;
    for s in [with_bypass, settings(false, false)] {
        let duo =
            FakeDuo::new().with_preauth(Reply::Ok(preauth_with(PreauthResult::Allow, "Bypass")));
        let mut ui = FakeUser::default();
        let outcome = run(&duo, &s, &mut ui).await;
        assert_eq!(grant_kind(&outcome), ApprovalKind::Bypass);
        assert_eq!(duo.pushes(), 0);
        assert_eq!(outcome.requests, 1);
    }
}

#[tokio::test]
async fn preauth_deny_shows_duos_sanitized_message_and_sends_no_push() {
    let duo = FakeDuo::new().with_preauth(Reply::Ok(preauth_with(
        PreauthResult::Deny,
        "\u{1b}[2JYour account is locked.\u{1b}]0;x\u{7}",
    )));
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::PreauthDeny);
    assert_eq!(ui.errors, vec!["Your account is locked.".to_owned()]);
    assert_eq!(duo.pushes(), 0);
}

#[tokio::test]
async fn preauth_enroll_denies_and_shows_the_url() {
    let mut p = preauth_with(PreauthResult::Enroll, "Enroll");
    p.enroll_portal_url = Some("https://api-x.duosecurity.com/portal?code=abc".into());
    let duo = FakeDuo::new().with_preauth(Reply::Ok(p));
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert!(matches!(
        denial_reason(&outcome),
        DenyReason::Enroll { url: Some(_) }
    ));
    assert!(ui.errors[0].contains("https://api-x.duosecurity.com/portal?code=abc"));
    assert_eq!(duo.pushes(), 0);
}

#[tokio::test]
async fn a_duo_error_before_the_push_follows_failmode_only_without_forced_mfa() {
    let errors = [
        DuoError::Connect("refused".into()),
        DuoError::Tls("bad certificate".into()),
        DuoError::Http {
            status: 503,
            code: "".into(),
            message: "".into(),
        },
        DuoError::Unauthorized {
            code: "40103".into(),
            message: "Invalid signature".into(),
        },
        DuoError::Malformed("not json".into()),
    ];
    for e in errors {
        for (force, safe, grants) in [
            (true, false, false),
            (true, true, false),
            (false, false, false),
            (false, true, true),
        ] {
            let duo = FakeDuo::new().with_preauth(Reply::Err(e.clone()));
            let mut ui = FakeUser::default();
            let outcome = run(&duo, &settings(force, safe), &mut ui).await;
            if grants {
                assert_eq!(grant_kind(&outcome), ApprovalKind::FailOpen);
                assert!(ui.errors.is_empty());
            } else {
                assert_eq!(denial_reason(&outcome), DenyReason::DuoUnavailable);
                assert_eq!(ui.errors.len(), 1);
            }
            assert_eq!(duo.pushes(), 0, "{e}");
        }
    }
}

#[tokio::test]
async fn an_error_after_the_push_denies_even_with_failmode_safe() {
    let duo = FakeDuo::new().with_statuses(vec![
        waiting(),
        Reply::Err(DuoError::Connect("refused".into())),
    ]);
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::ErrorAfterPush);
    assert_eq!(outcome.txid, Some(Txid(TXID.into())));
}

#[tokio::test]
async fn a_failed_push_call_denies_even_with_failmode_safe() {
    for e in [
        DuoError::Lost("reset after send".into()),
        DuoError::Connect("refused".into()),
        DuoError::Http {
            status: 500,
            code: "".into(),
            message: "".into(),
        },
    ] {
        let duo = FakeDuo::new().with_push(Reply::Err(e));
        let mut ui = FakeUser::default();
        let outcome = run(&duo, &settings(false, true), &mut ui).await;
        assert_eq!(denial_reason(&outcome), DenyReason::ErrorAfterPush);
        assert_eq!(duo.polls(), 0);
    }
}

#[tokio::test]
async fn a_hanging_preauth_ends_after_https_timeout_with_a_denial() {
    let duo = FakeDuo::new().with_preauth(Reply::Hang);
    let mut ui = FakeUser::default();
    let started = Instant::now();
    let outcome = run(&duo, &settings(true, true), &mut ui).await;
    let took = started.elapsed();
    assert_eq!(denial_reason(&outcome), DenyReason::DuoUnavailable);
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(duo.pushes(), 0);
}

#[tokio::test]
async fn a_hanging_preauth_fails_open_only_with_failmode_safe_without_forced_mfa() {
    let duo = FakeDuo::new().with_preauth(Reply::Hang);
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::FailOpen);
}

#[tokio::test]
async fn a_hanging_push_call_ends_after_https_timeout_and_denies_even_with_failmode_safe() {
    let duo = FakeDuo::new().with_push(Reply::Hang);
    let mut ui = FakeUser::default();
    let started = Instant::now();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(denial_reason(&outcome), DenyReason::ErrorAfterPush);
}

#[tokio::test]
async fn a_duo_slow_at_every_stage_cannot_hold_the_login_past_https_plus_push_timeout() {
    // Each call answers just inside https_timeout (200 ms); the push then stays pending.
    // Separate bounds per call would allow push_timeout + 2 x https_timeout (1.4 s).
    let late = Duration::from_millis(180);
    let duo = FakeDuo::new()
        .with_preauth(Reply::Late(
            late,
            preauth_auth(vec![phone("DPHONE1", "iOS (XXX-XXX-1234)")]),
        ))
        .with_push(Reply::Late(late, Txid(TXID.into())))
        .with_statuses(vec![waiting()]);
    let mut ui = FakeUser::default();
    let started = Instant::now();
    let outcome = run(&duo, &settings(true, false), &mut ui).await;
    let took = started.elapsed();
    assert_eq!(denial_reason(&outcome), DenyReason::PushTimedOut);
    assert_eq!(duo.pushes(), 1);
    assert!(
        took < Duration::from_millis(1200) + Duration::from_millis(60),
        "{took:?}"
    );
}

#[tokio::test]
async fn waiting_forever_ends_at_push_timeout_without_spinning() {
    let duo = FakeDuo::new().with_statuses(vec![waiting()]);
    let mut ui = FakeUser::default();
    let started = Instant::now();
    let outcome = run(&duo, &settings(true, false), &mut ui).await;
    let took = started.elapsed();
    assert_eq!(denial_reason(&outcome), DenyReason::PushTimedOut);
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // One second at no more than one poll per 250 ms: about 4 polls, never a hot loop.
    let polls = duo.polls();
    assert!((2..=5).contains(&polls), "{polls} polls");
    assert_eq!(
        ui.errors,
        vec!["Duo Push timed out. Access denied.".to_owned()]
    );
}

#[tokio::test]
async fn a_hanging_auth_status_ends_at_push_timeout() {
    let duo = FakeDuo::new().with_statuses(vec![Reply::Hang]);
    let mut ui = FakeUser::default();
    let started = Instant::now();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    let took = started.elapsed();
    assert_eq!(denial_reason(&outcome), DenyReason::PushTimedOut);
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(duo.polls(), 1);
}

#[tokio::test]
async fn every_poll_gets_the_same_deadline_push_timeout_after_the_push() {
    let waiting = Reply::Ok(status(AuthResult::Waiting, "pushed"));
    let allow = Reply::Ok(status(AuthResult::Allow, "allow"));
    let duo = FakeDuo::new().with_statuses(vec![waiting.clone(), waiting, allow]);
    let mut ui = FakeUser::default();
    let started = Instant::now();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Push);
    let deadlines = duo.deadlines.borrow().clone();
    assert_eq!(deadlines.len(), 3);
    assert!(
        deadlines.iter().all(|d| *d == deadlines[0]),
        "{deadlines:?}"
    );
    let push_timeout = settings(false, true).timeouts.push;
    let after_start = deadlines[0] - started;
    assert!(
        after_start >= push_timeout && after_start < push_timeout + Duration::from_millis(200),
        "deadline {after_start:?} after the start, push_timeout {push_timeout:?}"
    );
}

#[tokio::test]
async fn the_client_stopping_at_the_deadline_is_a_push_timeout_not_a_duo_error() {
    let duo = FakeDuo::new().with_statuses(vec![Reply::UntilDeadline]);
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::PushTimedOut);
    assert_eq!(duo.polls(), 1);
    // A Duo timeout before the deadline is an error after the push.
    let duo = FakeDuo::new().with_statuses(vec![Reply::Err(DuoError::Timeout)]);
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::ErrorAfterPush);
}

#[tokio::test]
async fn no_push_capable_device_denies_and_sends_no_push() {
    let duo = FakeDuo::new().with_preauth(Reply::Ok(preauth_auth(vec![token("DTOKEN")])));
    let mut ui = FakeUser::default();
    let outcome = run(&duo, &settings(false, true), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::NoPushDevice);
    assert_eq!(duo.pushes(), 0);
    assert_eq!(outcome.device, None);
}

#[tokio::test]
async fn without_autopush_enter_sends_the_push() {
    let duo = FakeDuo::new();
    let mut ui = FakeUser::answering(&[Some("")]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Push);
    assert_eq!(
        ui.prompts,
        vec!["Duo two-factor login for alice\n\nPress Enter to send a Duo Push to iOS (XXX-XXX-1234), or type a passcode: ".to_owned()]
    );
    assert_eq!(duo.pushes(), 1);
    assert_eq!(duo.passcodes(), 0);
}

#[tokio::test]
async fn without_autopush_a_right_passcode_grants_without_a_push() {
    let duo = FakeDuo::new();
    let mut ui = FakeUser::answering(&[Some(" 123456\n")]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Passcode);
    assert_eq!(duo.pushes(), 0);
    assert_eq!(duo.calls()[1], Call::Passcode("123456".into()));
    assert_eq!(outcome.passcode_attempts, 1);
    assert_eq!(outcome.txid, None);
    assert_eq!(ui.infos, vec!["Duo passcode accepted.".to_owned()]);
}

#[tokio::test]
async fn without_autopush_a_wrong_then_right_passcode_grants() {
    let duo = FakeDuo::new();
    let mut ui = FakeUser::answering(&[Some("654321"), Some("123456")]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Passcode);
    assert_eq!(outcome.passcode_attempts, 2);
    assert_eq!(ui.errors, vec!["Incorrect passcode.".to_owned()]);
}

#[tokio::test]
async fn without_autopush_wrong_passcodes_run_out_after_prompts_attempts() {
    for prompts in [1u8, 3] {
        let duo = FakeDuo::new();
        let answers = vec![Some("000000"); 5];
        let mut ui = FakeUser::answering(&answers);
        let outcome = run(&duo, &interactive(prompts), &mut ui).await;
        assert_eq!(denial_reason(&outcome), DenyReason::TooManyAttempts);
        assert_eq!(duo.passcodes(), usize::from(prompts));
        assert_eq!(ui.prompts.len(), usize::from(prompts));
        assert_eq!(duo.pushes(), 0);
    }
}

#[tokio::test]
async fn without_autopush_invalid_answers_count_as_attempts() {
    let duo = FakeDuo::new();
    let mut ui = FakeUser::answering(&[Some("yes please"), Some("12"), Some("1234567890")]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::TooManyAttempts);
    assert_eq!(duo.passcodes(), 0);
    assert_eq!(duo.pushes(), 0);
}

#[tokio::test]
async fn without_autopush_no_answer_denies_without_a_push() {
    let duo = FakeDuo::new();
    let mut ui = FakeUser::answering(&[None]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::NoAnswer);
    assert_eq!(duo.pushes(), 0);
    assert_eq!(duo.passcodes(), 0);
}

#[tokio::test]
async fn a_locked_out_passcode_reply_stops_at_once() {
    let duo = FakeDuo::new();
    duo.passcode_replies
        .borrow_mut()
        .push_back(Reply::Ok(status(AuthResult::Deny, "locked_out")));
    let mut ui = FakeUser::answering(&[Some("111111"), Some("123456")]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::LockedOut);
    assert_eq!(duo.passcodes(), 1);
}

#[tokio::test]
async fn a_passcode_error_denies_even_with_failmode_safe() {
    let duo = FakeDuo::new();
    duo.passcode_replies
        .borrow_mut()
        .push_back(Reply::Err(DuoError::Connect("refused".into())));
    let mut ui = FakeUser::answering(&[Some("123456")]);
    let mut s = interactive(3);
    s.policy = PolicyInput {
        force_mfa: false,
        allow_bypass: false,
        fail_open: true,
    };
    let outcome = run(&duo, &s, &mut ui).await;
    assert_eq!(denial_reason(&outcome), DenyReason::ErrorAfterPush);
}

#[tokio::test]
async fn a_hostile_device_name_is_sanitized_in_the_prompt_and_messages() {
    let duo = FakeDuo::new().with_preauth(Reply::Ok(preauth_auth(vec![phone(
        "DPHONE1",
        "Evil\u{1b}]0;pwn\u{7}\nPhone",
    )])));
    let mut ui = FakeUser::answering(&[Some("")]);
    let outcome = run(&duo, &interactive(3), &mut ui).await;
    assert_eq!(grant_kind(&outcome), ApprovalKind::Push);
    for m in ui.prompts.iter().chain(&ui.infos) {
        assert!(!m.contains('\u{1b}') && !m.contains('\u{7}'), "{m:?}");
    }
    assert!(ui.infos[0].starts_with("Duo Push sent to Evil Phone."));
}
