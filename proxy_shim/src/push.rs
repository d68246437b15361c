//! The target-hop push: the request Duo Mobile shows, the policy check, and the live status on
//! the user's stderr.
//!
//! The push goes through the same flow and policy as the vault login
//! (`duo_push_common::flow::authenticate`): preauth, policy, push, auth_status until a final
//! answer or `push_timeout`. A target with `mfa = no` is the policy's `TargetMfaOff` situation
//! (a contradiction under `force_mfa`, otherwise a grant without any Duo call).
//!
//! The shim always sends the push (no passcode prompt): in the command and `connect` flows
//! stdin carries the user's data and must not be read. `autopush`/`prompts` apply to the vault
//! login only.

use std::io::Write;
use std::net::IpAddr;

use duo_push_common::api::{DuoApi, PushRequest, Subject, Txid};
use duo_push_common::audit::sanitize_for_terminal;
use duo_push_common::config::Target;
use duo_push_common::flow::{self, FlowSettings, UserChannel};
use duo_push_common::policy::{decide, Decision, Situation};

/// `type` of the target push, shown by Duo Mobile.
pub const PUSH_TYPE: &str = "Target access";

/// Who asks, from where, through which proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushContext {
    /// The Duo username.
    pub username: String,
    /// The client's address from `SSH_CONNECTION` (pushinfo `from`).
    pub from: Option<IpAddr>,
    /// Duo's `ipaddr`: `from`, or this host's address with `fallback_local_ip`
    /// (`duo_push_common::identity::duo_ipaddr`).
    pub ipaddr: Option<IpAddr>,
    /// This proxy's name (`[proxy] name` or the host name).
    pub proxy: String,
}

/// The push request for `target` with `login`.
pub fn target_request(ctx: &PushContext, target: &Target, login: &str) -> PushRequest {
    let mut pushinfo = vec![
        ("hop".to_owned(), "target".to_owned()),
        ("target".to_owned(), target.name.to_string()),
        ("address".to_owned(), target.address()),
        ("login".to_owned(), login.to_owned()),
        ("host".to_owned(), ctx.proxy.clone()),
    ];
    if let Some(from) = ctx.from {
        pushinfo.push(("from".to_owned(), from.to_string()));
    }
    PushRequest {
        subject: Subject {
            username: ctx.username.clone(),
            ipaddr: ctx.ipaddr.map(|ip| ip.to_string()),
            hostname: Some(ctx.proxy.clone()),
        },
        device: "auto".to_owned(),
        kind: PUSH_TYPE.to_owned(),
        display_username: None,
        pushinfo,
    }
}

/// Live status for the user, on stderr: each line names the target. Never prompts.
#[derive(Debug)]
pub struct StatusChannel<W: Write> {
    target: String,
    out: W,
}

impl<W: Write> StatusChannel<W> {
    /// Lines go to `out` (stderr in the shim), prefixed with the target's name.
    pub fn new(target: &str, out: W) -> Self {
        Self {
            target: target.to_owned(),
            out,
        }
    }

    fn line(&mut self, msg: &str) {
        let text = sanitize_for_terminal(msg);
        let _ = writeln!(self.out, "{}: {}", self.target, text.trim());
        let _ = self.out.flush();
    }

    /// The sink, for tests.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> UserChannel for StatusChannel<W> {
    fn info(&mut self, msg: &str) {
        self.line(msg);
    }

    fn error(&mut self, msg: &str) {
        self.line(msg);
    }

    fn prompt(&mut self, _msg: &str) -> Option<String> {
        None
    }
}

/// What the target check decided.
#[derive(Debug)]
pub struct Verdict {
    /// Grant (with the [`duo_push_common::policy::Approval`]) or deny.
    pub decision: Decision,
    /// The push's transaction id, when a push was sent.
    pub txid: Option<Txid>,
    /// The device the push went to.
    pub device: Option<String>,
}

/// Decides on access to `target`: no Duo call for `mfa = no` (policy `TargetMfaOff`), else the
/// push flow with autopush.
pub async fn authorize<A: DuoApi, U: UserChannel>(
    api: &A,
    settings: &FlowSettings,
    target: &Target,
    request: &PushRequest,
    ui: &mut U,
) -> Verdict {
    if !target.mfa {
        return Verdict {
            decision: decide(&settings.policy, Situation::TargetMfaOff),
            txid: None,
            device: None,
        };
    }
    let settings = FlowSettings {
        autopush: true,
        ..*settings
    };
    ui.info("Duo approval required for this target.");
    let outcome = flow::authenticate(api, &settings, request, ui).await;
    Verdict {
        decision: outcome.decision,
        txid: outcome.txid,
        device: outcome.device,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use duo_push_common::api::{
        AuthResult, AuthStatus, Device, DuoError, Preauth, PreauthResult, Timeouts,
    };
    use duo_push_common::config::Config;
    use duo_push_common::policy::PolicyInput;
    use duo_push_common::secret::Secret;

    use super::*;

    const CONFIG: &str = "[duo]\nhost = api-test.duosecurity.com\nikey = DIXXXXXXXXXXXXXXXXXX\nskey = deadbeefdeadbeefdeadbeefdeadbeefdeadbeef\n\
        [policy]\nforce_mfa = no\n\
        [target web01]\nhost = 10.0.0.5\nlogin = deploy\nallow = alice\n\
        [target lab]\nhost = ::1\nport = 2222\nallow = alice\nmfa = no\n";

    fn config() -> Config {
        Config::parse(CONFIG.as_bytes(), std::path::Path::new("test.conf")).unwrap()
    }

    /// An in-memory Duo: preauth `auth` with one push device, then the scripted final result.
    struct FakeDuo {
        result: AuthResult,
        calls: RefCell<Vec<String>>,
        pushes: RefCell<Vec<PushRequest>>,
    }

    impl FakeDuo {
        fn new(result: AuthResult) -> Self {
            Self {
                result,
                calls: RefCell::new(Vec::new()),
                pushes: RefCell::new(Vec::new()),
            }
        }
    }

    impl DuoApi for FakeDuo {
        async fn ping(&self) -> Result<i64, DuoError> {
            self.calls.borrow_mut().push("ping".into());
            Ok(0)
        }
        async fn check(&self) -> Result<i64, DuoError> {
            self.calls.borrow_mut().push("check".into());
            Ok(0)
        }
        async fn preauth(&self, _subject: &Subject) -> Result<Preauth, DuoError> {
            self.calls.borrow_mut().push("preauth".into());
            Ok(Preauth {
                result: PreauthResult::Auth,
                status_msg: String::new(),
                devices: vec![Device {
                    device: "DPFAKE".into(),
                    kind: "phone".into(),
                    display_name: "iOS (XXX-XXX-1234)\u{1b}[2J".into(),
                    number: String::new(),
                    capabilities: vec!["auto".into(), "push".into()],
                }],
                enroll_portal_url: None,
            })
        }
        async fn push(&self, request: &PushRequest) -> Result<Txid, DuoError> {
            self.calls.borrow_mut().push("push".into());
            self.pushes.borrow_mut().push(request.clone());
            Ok(Txid("tx-1".into()))
        }
        async fn passcode(&self, _s: &Subject, _p: &Secret) -> Result<AuthStatus, DuoError> {
            self.calls.borrow_mut().push("passcode".into());
            Err(DuoError::Malformed("unexpected".into()))
        }
        async fn auth_status(
            &self,
            _txid: &Txid,
            _deadline: tokio::time::Instant,
        ) -> Result<AuthStatus, DuoError> {
            self.calls.borrow_mut().push("auth_status".into());
            Ok(AuthStatus {
                result: self.result.clone(),
                status: "x".into(),
                status_msg: "Duo says \u{1b}]0;pwned\u{7}hello".into(),
            })
        }
    }

    fn settings(force_mfa: bool) -> FlowSettings {
        FlowSettings {
            policy: PolicyInput {
                force_mfa,
                allow_bypass: false,
                fail_open: false,
            },
            timeouts: Timeouts {
                https: Duration::from_secs(2),
                push: Duration::from_secs(2),
            },
            autopush: false,
            prompts: 3,
        }
    }

    fn ctx() -> PushContext {
        PushContext {
            username: "alice".into(),
            from: Some("192.0.2.7".parse().unwrap()),
            ipaddr: Some("192.0.2.7".parse().unwrap()),
            proxy: "vault.example.com".into(),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_push_names_the_hop_target_address_login_proxy_and_client() {
        let cfg = config();
        let web01 = cfg.target("web01").unwrap();
        let request = target_request(&ctx(), web01, "deploy");
        assert_eq!(request.kind, "Target access");
        assert_eq!(request.subject.username, "alice");
        assert_eq!(request.subject.ipaddr.as_deref(), Some("192.0.2.7"));
        let info: Vec<(&str, &str)> = request
            .pushinfo
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            info,
            [
                ("hop", "target"),
                ("target", "web01"),
                ("address", "10.0.0.5:22"),
                ("login", "deploy"),
                ("host", "vault.example.com"),
                ("from", "192.0.2.7"),
            ]
        );
        let lab = cfg.target("lab").unwrap();
        let request = target_request(&ctx(), lab, "alice");
        assert!(request
            .pushinfo
            .contains(&("address".to_owned(), "[::1]:2222".to_owned())));
    }

    #[test]
    fn approval_grants_and_the_status_is_shown_sanitized() {
        let cfg = config();
        let web01 = cfg.target("web01").unwrap();
        let duo = FakeDuo::new(AuthResult::Allow);
        let mut ui = StatusChannel::new("web01", Vec::new());
        let request = target_request(&ctx(), web01, "deploy");
        let verdict = block_on(authorize(&duo, &settings(true), web01, &request, &mut ui));
        assert!(verdict.decision.is_grant(), "{verdict:?}");
        assert_eq!(verdict.txid, Some(Txid("tx-1".into())));
        assert_eq!(duo.pushes.borrow().len(), 1);
        assert_eq!(duo.pushes.borrow()[0].device, "DPFAKE");
        let shown = String::from_utf8(ui.into_inner()).unwrap();
        assert!(
            shown.contains("web01: Duo Push sent to iOS (XXX-XXX-1234)"),
            "{shown}"
        );
        assert!(shown.contains("web01: Duo Push approved."), "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
    }

    #[test]
    fn denial_denies_with_a_one_line_reason() {
        let cfg = config();
        let web01 = cfg.target("web01").unwrap();
        let duo = FakeDuo::new(AuthResult::Deny);
        let mut ui = StatusChannel::new("web01", Vec::new());
        let request = target_request(&ctx(), web01, "deploy");
        let verdict = block_on(authorize(&duo, &settings(true), web01, &request, &mut ui));
        let Decision::Deny(denial) = &verdict.decision else {
            panic!("{verdict:?}");
        };
        assert!(!denial.user_message.contains('\n'));
        let shown = String::from_utf8(ui.into_inner()).unwrap();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown:?}"
        );
        assert!(
            shown.lines().last().unwrap().starts_with("web01: "),
            "{shown}"
        );
    }

    #[test]
    fn the_fallback_address_goes_to_duo_but_not_into_pushinfo_from() {
        let cfg = config();
        let web01 = cfg.target("web01").unwrap();
        let ctx = PushContext {
            from: None,
            ipaddr: Some("198.51.100.4".parse().unwrap()),
            ..ctx()
        };
        let request = target_request(&ctx, web01, "deploy");
        assert_eq!(request.subject.ipaddr.as_deref(), Some("198.51.100.4"));
        assert!(request.pushinfo.iter().all(|(k, _)| k != "from"));
    }

    #[test]
    fn mfa_off_grants_without_any_duo_call_when_mfa_is_not_forced() {
        let cfg = config();
        let lab = cfg.target("lab").unwrap();
        let duo = FakeDuo::new(AuthResult::Deny);
        let mut ui = StatusChannel::new("lab", Vec::new());
        let request = target_request(&ctx(), lab, "alice");
        let verdict = block_on(authorize(&duo, &settings(false), lab, &request, &mut ui));
        assert!(verdict.decision.is_grant());
        assert!(duo.calls.borrow().is_empty());
        // Under force_mfa the same target is a contradiction: denied, still no Duo call.
        let verdict = block_on(authorize(&duo, &settings(true), lab, &request, &mut ui));
        assert!(!verdict.decision.is_grant());
        assert!(duo.calls.borrow().is_empty());
    }
}
