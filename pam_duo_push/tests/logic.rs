//! The authentication logic with test doubles for the PAM environment and for Duo: no libpam,
//! no network.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use duo_push_common::api::{
    AuthResult, AuthStatus, Device, DuoApi, DuoError, Preauth, PreauthResult, PushRequest, Subject,
    Txid,
};
use duo_push_common::audit::{Logger, Sink};
use duo_push_common::config::{Config, ConfigError};
use duo_push_common::flow::UserChannel;
use duo_push_common::secret::Secret;
use pam_duo_push::ffi::{LookupError, PasswdEntry};
use pam_duo_push::hooks::authenticate_in;
use pam_duo_push::{Environment, PamCode};

const IKEY: &str = "DIXXXXXXXXXXXXXXXXXX";
const SKEY: &str = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

/// What the fake Duo answers and what it saw.
#[derive(Default)]
struct DuoState {
    preauth: Option<Result<Preauth, DuoError>>,
    /// Final status of every push (after one `waiting`).
    push_final: Option<AuthStatus>,
    pushes: Vec<PushRequest>,
    preauths: Vec<Subject>,
    passcodes: Vec<String>,
    calls: u32,
}

#[derive(Clone)]
struct FakeDuo(Rc<RefCell<DuoState>>);

fn status(result: AuthResult, st: &str) -> AuthStatus {
    AuthStatus {
        result,
        status: st.into(),
        status_msg: format!("status {st}"),
    }
}

impl DuoApi for FakeDuo {
    async fn ping(&self) -> Result<i64, DuoError> {
        Ok(0)
    }

    async fn check(&self) -> Result<i64, DuoError> {
        Ok(0)
    }

    async fn preauth(&self, subject: &Subject) -> Result<Preauth, DuoError> {
        let mut s = self.0.borrow_mut();
        s.calls += 1;
        s.preauths.push(subject.clone());
        s.preauth.clone().unwrap_or_else(|| Ok(auth_preauth()))
    }

    async fn push(&self, request: &PushRequest) -> Result<Txid, DuoError> {
        let mut s = self.0.borrow_mut();
        s.calls += 1;
        s.pushes.push(request.clone());
        Ok(Txid(format!("txid-{}", s.pushes.len())))
    }

    async fn passcode(
        &self,
        _subject: &Subject,
        passcode: &Secret,
    ) -> Result<AuthStatus, DuoError> {
        let mut s = self.0.borrow_mut();
        s.calls += 1;
        s.passcodes.push(passcode.expose_str().to_owned());
        Ok(if passcode.expose_str() == "123456" {
            status(AuthResult::Allow, "allow")
        } else {
            status(AuthResult::Deny, "deny")
        })
    }

    async fn auth_status(
        &self,
        _txid: &Txid,
        _deadline: tokio::time::Instant,
    ) -> Result<AuthStatus, DuoError> {
        let mut s = self.0.borrow_mut();
        s.calls += 1;
        Ok(s.push_final
            .clone()
            .unwrap_or_else(|| status(AuthResult::Allow, "allow")))
    }
}

fn auth_preauth() -> Preauth {
    Preauth {
        result: PreauthResult::Auth,
        status_msg: "Account is active".into(),
        devices: vec![Device {
            device: "DPFZRS9FB0D46QFTM891".into(),
            kind: "phone".into(),
            display_name: "iOS (XXX-XXX-1234)".into(),
            number: "XXX-XXX-1234".into(),
            capabilities: vec!["auto".into(), "push".into(), "sms".into()],
        }],
        enroll_portal_url: None,
    }
}

fn preauth(result: PreauthResult, msg: &str) -> Preauth {
    Preauth {
        result,
        status_msg: msg.into(),
        devices: vec![],
        enroll_portal_url: Some("https://enroll.example/portal?code=abc".into()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Info(String),
    Error(String),
    Prompt(String),
}

struct TestEnv {
    user: Result<String, String>,
    rhost: Option<String>,
    config: Result<String, ConfigError>,
    passwd: HashMap<String, PasswdEntry>,
    groups: HashMap<String, Vec<String>>,
    client_error: Option<DuoError>,
    panic_in_user: bool,
    answers: VecDeque<Option<String>>,
    messages: Vec<Msg>,
    duo: FakeDuo,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestEnv {
    fn new(user: &str, config: &str) -> Self {
        Self {
            user: Ok(user.to_owned()),
            rhost: Some("192.0.2.10".into()),
            config: Ok(config.to_owned()),
            passwd: HashMap::new(),
            groups: HashMap::new(),
            client_error: None,
            panic_in_user: false,
            answers: VecDeque::new(),
            messages: Vec::new(),
            duo: FakeDuo(Rc::new(RefCell::new(DuoState::default()))),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn with_preauth(self, p: Result<Preauth, DuoError>) -> Self {
        self.duo.0.borrow_mut().preauth = Some(p);
        self
    }

    fn with_push_final(self, s: AuthStatus) -> Self {
        self.duo.0.borrow_mut().push_final = Some(s);
        self
    }

    fn with_user(mut self, name: &str, gid: u32, gecos: &str, groups: &[&str]) -> Self {
        self.passwd.insert(
            name.to_owned(),
            PasswdEntry {
                name: name.as_bytes().to_vec(),
                gid,
                gecos: gecos.as_bytes().to_vec(),
            },
        );
        self.groups.insert(
            name.to_owned(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
        );
        self
    }

    fn run(&mut self, args: &[&str]) -> PamCode {
        authenticate_in(self, args.iter().map(|a| a.as_bytes()))
    }

    fn pushes(&self) -> Vec<PushRequest> {
        self.duo.0.borrow().pushes.clone()
    }

    fn duo_calls(&self) -> u32 {
        self.duo.0.borrow().calls
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn errors(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Msg::Error(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    fn infos(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Msg::Info(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }
}

impl UserChannel for TestEnv {
    fn info(&mut self, msg: &str) {
        self.messages.push(Msg::Info(msg.to_owned()));
    }

    fn error(&mut self, msg: &str) {
        self.messages.push(Msg::Error(msg.to_owned()));
    }

    fn prompt(&mut self, msg: &str) -> Option<String> {
        self.messages.push(Msg::Prompt(msg.to_owned()));
        self.answers.pop_front().flatten()
    }
}

impl Environment for TestEnv {
    type Api = FakeDuo;

    fn service(&self) -> Option<String> {
        Some("sshd".into())
    }

    fn user(&mut self) -> Result<String, String> {
        if self.panic_in_user {
            panic!("injected panic in user()");
        }
        self.user.clone()
    }

    fn rhost(&self) -> Option<String> {
        self.rhost.clone()
    }

    fn logger(&self, service: &str) -> Logger {
        Logger::new(
            "sshd",
            Some(&format!("pam_duo_push({service}:auth)")),
            Sink::Memory(self.log.clone()),
        )
    }

    fn load_config(&self, path: &Path) -> Result<Config, ConfigError> {
        let text = self.config.clone()?;
        Config::parse(text.as_bytes(), path)
    }

    fn passwd(&self, user: &str) -> Result<Option<PasswdEntry>, LookupError> {
        Ok(self.passwd.get(user).cloned())
    }

    fn group_names(&self, user: &str, _gid: u32) -> Result<Vec<Vec<u8>>, LookupError> {
        Ok(self
            .groups
            .get(user)
            .map(|g| g.iter().map(|n| n.as_bytes().to_vec()).collect())
            .unwrap_or_default())
    }

    fn proxy_name(&self, config: &Config) -> Result<String, String> {
        Ok(config
            .proxy
            .name
            .clone()
            .unwrap_or_else(|| "vault.example.com".into()))
    }

    fn duo_client(&self, _config: &Config) -> Result<FakeDuo, DuoError> {
        match &self.client_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.duo.clone()),
        }
    }
}

fn config(extra_duo: &str, policy: &str) -> String {
    format!(
        "[duo]\nhost = api-test.duosecurity.com\nikey = {IKEY}\nskey = {SKEY}\n{extra_duo}\n\
         [policy]\n{policy}\n[proxy]\nname = vault.example.com\n"
    )
}

fn forced() -> String {
    config("", "force_mfa = yes")
}

fn relaxed(extra_duo: &str) -> String {
    config(extra_duo, "force_mfa = no")
}

fn pushinfo(req: &PushRequest, key: &str) -> Option<String> {
    req.pushinfo
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

#[test]
fn an_approved_push_is_success_and_carries_the_vault_labels() {
    let mut env = TestEnv::new("alice", &forced());
    assert_eq!(env.run(&["conf=/etc/duo_push/test.conf"]), PamCode::Success);
    let pushes = env.pushes();
    assert_eq!(pushes.len(), 1);
    let p = &pushes[0];
    assert_eq!(p.kind, "Vault login");
    assert_eq!(p.subject.username, "alice");
    assert_eq!(p.subject.ipaddr.as_deref(), Some("192.0.2.10"));
    assert_eq!(p.subject.hostname.as_deref(), Some("vault.example.com"));
    assert_eq!(p.display_username, None);
    assert_eq!(p.device, "DPFZRS9FB0D46QFTM891");
    assert_eq!(pushinfo(p, "hop").as_deref(), Some("vault"));
    assert_eq!(pushinfo(p, "host").as_deref(), Some("vault.example.com"));
    assert_eq!(pushinfo(p, "from").as_deref(), Some("192.0.2.10"));
    assert_eq!(pushinfo(p, "service").as_deref(), Some("sshd"));
    let infos = env.infos();
    assert!(
        infos
            .iter()
            .any(|m| m.starts_with("Duo Push sent to iOS (XXX-XXX-1234). Approve it on your phone")),
        "{infos:?}"
    );
    let log = env.log_text();
    assert!(log.contains("pam_duo_push(sshd:auth)"), "{log}");
    assert!(log.contains("event=decision"), "{log}");
    assert!(log.contains("user=alice"), "{log}");
    assert!(log.contains("from=192.0.2.10"), "{log}");
    assert!(log.contains("result=allow"), "{log}");
    assert!(log.contains("txid=txid-1"), "{log}");
}

#[test]
fn denied_fraud_and_locked_out_pushes_are_auth_err_with_a_message() {
    for (st, needle) in [
        ("deny", "denied"),
        ("fraud", "fraud"),
        ("locked_out", "locked out"),
        ("timeout", "timed out"),
    ] {
        let mut env = TestEnv::new("bob", &forced()).with_push_final(status(AuthResult::Deny, st));
        assert_eq!(env.run(&[]), PamCode::AuthErr, "{st}");
        assert_eq!(env.pushes().len(), 1);
        let errors = env.errors();
        assert!(
            errors.iter().any(|e| e.to_lowercase().contains(needle)),
            "{st}: {errors:?}"
        );
        assert!(env.log_text().contains("result=deny"), "{st}");
    }
}

#[test]
fn an_unknown_or_waiting_final_result_is_never_success() {
    let mut env = TestEnv::new("carol", &forced())
        .with_push_final(status(AuthResult::Unknown("allowish".into()), "allow"));
    assert_eq!(env.run(&[]), PamCode::AuthErr);
}

#[test]
fn preauth_deny_and_enroll_deny_without_a_push() {
    let mut env = TestEnv::new("lockout-x", &forced())
        .with_preauth(Ok(preauth(PreauthResult::Deny, "Your account is locked")));
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert!(env.pushes().is_empty());
    assert!(env.errors().iter().any(|e| e.contains("locked")));

    let mut env =
        TestEnv::new("enroll-x", &forced()).with_preauth(Ok(preauth(PreauthResult::Enroll, "")));
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert!(env.pushes().is_empty());
    assert!(
        env.errors()
            .iter()
            .any(|e| e.contains("https://enroll.example/portal?code=abc")),
        "{:?}",
        env.errors()
    );
}

#[test]
fn bypass_is_refused_under_force_mfa_unless_allow_bypass() {
    let bypass = || Ok(preauth(PreauthResult::Allow, "bypass"));
    let mut env = TestEnv::new("bypass-a", &forced()).with_preauth(bypass());
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    let mut env = TestEnv::new(
        "bypass-a",
        &config("", "force_mfa = yes\nallow_bypass = yes"),
    )
    .with_preauth(bypass());
    assert_eq!(env.run(&[]), PamCode::Success);
    let mut env = TestEnv::new("bypass-a", &relaxed("")).with_preauth(bypass());
    assert_eq!(env.run(&[]), PamCode::Success);
    assert!(env.pushes().is_empty());
    assert!(env.log_text().contains("reason=bypass"));
}

#[test]
fn duo_down_follows_failmode_only_without_force_mfa() {
    let down = || Err(DuoError::Connect("connection refused".into()));
    let cases = [
        (
            config("failmode = safe", "force_mfa = yes"),
            PamCode::AuthErr,
        ),
        (
            config("failmode = secure", "force_mfa = yes"),
            PamCode::AuthErr,
        ),
        (relaxed("failmode = secure"), PamCode::AuthErr),
        (relaxed("failmode = safe"), PamCode::Success),
    ];
    for (cfg, expected) in cases {
        let mut env = TestEnv::new("dave", &cfg).with_preauth(down());
        assert_eq!(env.run(&[]), expected, "{cfg}");
        assert!(env.pushes().is_empty());
        if expected == PamCode::Success {
            assert!(
                env.log_text().contains("event=fail_open"),
                "{}",
                env.log_text()
            );
        }
    }
    // 401 (bad keys) and 5xx are "Duo unavailable" too.
    for err in [
        DuoError::Unauthorized {
            code: "40101".into(),
            message: "Missing request credentials".into(),
        },
        DuoError::Http {
            status: 503,
            code: "".into(),
            message: "unavailable".into(),
        },
    ] {
        let mut env = TestEnv::new("dave", &forced()).with_preauth(Err(err.clone()));
        assert_eq!(env.run(&[]), PamCode::AuthErr);
        let mut env = TestEnv::new("dave", &relaxed("failmode = safe")).with_preauth(Err(err));
        assert_eq!(env.run(&[]), PamCode::Success);
    }
}

#[test]
fn a_client_that_cannot_be_built_is_duo_unavailable() {
    let mut env = TestEnv::new("erin", &forced());
    env.client_error = Some(DuoError::Setup("bad cafile".into()));
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert_eq!(env.duo_calls(), 0);
    assert!(env.log_text().contains("bad cafile"));
}

fn config_error(fail_open_allowed: bool) -> ConfigError {
    ConfigError {
        file: PathBuf::from("/etc/duo_push/duo_push.conf"),
        line: Some(3),
        key: Some("ikey".into()),
        message: "must be 20 characters".into(),
        fail_open_allowed,
    }
}

#[test]
fn an_unusable_config_denies_unless_the_file_itself_allows_failing_open() {
    let mut env = TestEnv::new("frank", "");
    env.config = Err(config_error(false));
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert_eq!(env.duo_calls(), 0);
    let log = env.log_text();
    assert!(log.contains("event=config_problem"), "{log}");
    assert!(log.contains("ikey"), "{log}");
    assert!(!env.errors().is_empty());

    let mut env = TestEnv::new("frank", "");
    env.config = Err(config_error(true));
    assert_eq!(env.run(&[]), PamCode::Success);
    assert!(env.log_text().contains("event=fail_open"));
}

#[test]
fn real_config_parse_errors_deny() {
    // Unknown key, missing key: Config::parse errors never allow failing open.
    for text in [
        config("colour = blue", "force_mfa = no"),
        "[duo]\nhost = api-test.duosecurity.com\nikey = DIXXXXXXXXXXXXXXXXXX\n".to_owned(),
        config("", "force_mfa = yes\n[duo]\ngroups = ops"),
    ] {
        let mut env = TestEnv::new("frank", &text);
        assert_eq!(env.run(&[]), PamCode::AuthErr, "{text}");
        assert_eq!(env.duo_calls(), 0);
    }
}

#[test]
fn an_unknown_module_argument_fails_closed_before_anything_else() {
    for args in [
        &["nullok"][..],
        &["conf=/a", "debug", "try_first_pass"],
        &["conf=relative"],
    ] {
        let mut env = TestEnv::new("gina", &relaxed("failmode = safe"));
        assert_eq!(env.run(args), PamCode::AuthErr, "{args:?}");
        assert_eq!(env.duo_calls(), 0);
        assert!(
            env.log_text().contains("refusing to run"),
            "{}",
            env.log_text()
        );
    }
}

#[test]
fn debug_adds_detail_lines() {
    let mut quiet = TestEnv::new("alice", &forced());
    quiet.run(&[]);
    let mut loud = TestEnv::new("alice", &forced());
    loud.run(&["debug"]);
    assert!(loud.log.lock().unwrap().len() > quiet.log.lock().unwrap().len());
    assert!(loud.log_text().contains("authenticating"));
}

#[test]
fn hostile_user_names_are_refused_before_duo_is_asked() {
    for name in [
        "evil\nuser".to_owned(),
        "a\u{1b}[2Jb".to_owned(),
        "x".repeat(4000),
        String::new(),
    ] {
        let mut env = TestEnv::new(&name, &forced());
        assert_eq!(env.run(&[]), PamCode::UserUnknown, "{name:?}");
        assert_eq!(env.duo_calls(), 0);
        let log = env.log_text();
        assert!(!log.contains('\u{1b}'));
        assert!(log.lines().count() >= 1);
        for line in env.log.lock().unwrap().iter() {
            assert!(!line.contains('\n'), "{line:?}");
            assert!(line.len() < 2048);
        }
    }
}

#[test]
fn no_user_from_pam_denies() {
    let mut env = TestEnv::new("x", &forced());
    env.user = Err("pam_get_user failed".into());
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert_eq!(env.duo_calls(), 0);
}

#[test]
fn users_outside_groups_are_ignored_never_granted() {
    let cfg = relaxed("groups = duo-users,!contractors ops");
    let mut env = TestEnv::new("henry", &cfg).with_user("henry", 100, "", &["staff"]);
    assert_eq!(env.run(&[]), PamCode::Ignore);
    assert_eq!(env.duo_calls(), 0);
    assert!(env.log_text().contains("result=ignore"));

    let mut env = TestEnv::new("ivy", &cfg).with_user("ivy", 100, "", &["staff", "duo-users"]);
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(env.pushes().len(), 1);

    // Negated: a duo-users member who is a contractor is outside that entry.
    let mut env =
        TestEnv::new("jack", &cfg).with_user("jack", 100, "", &["duo-users", "contractors"]);
    assert_eq!(env.run(&[]), PamCode::Ignore);
    // ...but the second entry still catches ops.
    let mut env = TestEnv::new("kim", &cfg).with_user("kim", 100, "", &["ops", "contractors"]);
    assert_eq!(env.run(&[]), PamCode::Success);
}

#[test]
fn with_groups_an_unknown_local_user_is_refused() {
    let cfg = relaxed("groups = ops");
    let mut env = TestEnv::new("nobody-here", &cfg);
    assert_eq!(env.run(&[]), PamCode::UserUnknown);
    assert_eq!(env.duo_calls(), 0);
}

#[test]
fn gecos_gives_the_duo_username() {
    let mut env =
        TestEnv::new("lee", &relaxed("send_gecos = yes")).with_user("lee", 100, "lee.duo", &[]);
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(env.pushes()[0].subject.username, "lee.duo");
    assert_eq!(env.duo.0.borrow().preauths[0].username, "lee.duo");

    let mut env = TestEnv::new(
        "mia",
        &forced().replace(
            "[policy]",
            "gecos_username_pos = 3\ngecos_delim = /\n[policy]",
        ),
    )
    .with_user("mia", 100, "Mia M/Room 4/mia-duo", &[]);
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(env.pushes()[0].subject.username, "mia-duo");
    assert_eq!(env.pushes()[0].display_username, None);

    // No such field: denied, no fallback to the login name.
    let mut env = TestEnv::new("ned", &relaxed("gecos_username_pos = 4")).with_user(
        "ned",
        100,
        "Ned,Room",
        &[],
    );
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert_eq!(env.duo_calls(), 0);
}

#[test]
fn without_autopush_enter_sends_the_push() {
    let mut env = TestEnv::new("olga", &relaxed("autopush = no"));
    env.answers.push_back(Some(String::new()));
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(env.pushes().len(), 1);
    let prompt = env
        .messages
        .iter()
        .find_map(|m| match m {
            Msg::Prompt(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        prompt
            .contains("Press Enter to send a Duo Push to iOS (XXX-XXX-1234), or type a passcode:"),
        "{prompt}"
    );
}

#[test]
fn without_autopush_a_passcode_is_checked_instead_of_a_push() {
    let mut env = TestEnv::new("pete", &relaxed("autopush = no"));
    env.answers.push_back(Some("123456".into()));
    assert_eq!(env.run(&[]), PamCode::Success);
    assert!(env.pushes().is_empty());
    assert_eq!(env.duo.0.borrow().passcodes, vec!["123456".to_owned()]);
}

#[test]
fn used_up_prompts_are_maxtries() {
    let mut env = TestEnv::new("quinn", &relaxed("autopush = no\nprompts = 2"));
    env.answers.push_back(Some("000000".into()));
    env.answers.push_back(Some("111111".into()));
    assert_eq!(env.run(&[]), PamCode::MaxTries);
    assert!(env.pushes().is_empty());
}

#[test]
fn a_closed_conversation_denies() {
    let mut env = TestEnv::new("rita", &relaxed("autopush = no"));
    env.answers.push_back(None);
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert!(env.pushes().is_empty());
}

#[test]
fn a_host_name_rhost_goes_to_pushinfo_but_not_to_ipaddr() {
    let mut env = TestEnv::new("sam", &forced());
    env.rhost = Some("client.example.net".into());
    assert_eq!(env.run(&[]), PamCode::Success);
    let p = &env.pushes()[0];
    assert_eq!(p.subject.ipaddr, None);
    assert_eq!(pushinfo(p, "from").as_deref(), Some("client.example.net"));

    let mut env = TestEnv::new("sam", &forced());
    env.rhost = Some("2001:db8::7".into());
    env.run(&[]);
    assert_eq!(
        env.pushes()[0].subject.ipaddr.as_deref(),
        Some("2001:db8::7")
    );

    let mut env = TestEnv::new("sam", &forced());
    env.rhost = None;
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(pushinfo(&env.pushes()[0], "from"), None);
}

#[test]
fn with_fallback_local_ip_an_unknown_client_address_becomes_this_hosts() {
    let local = duo_push_common::identity::local_ipv4().map(|ip| ip.to_string());
    for rhost in [Some("client.example.net"), None] {
        let mut env = TestEnv::new("sam", &relaxed("fallback_local_ip = yes"));
        env.rhost = rhost.map(str::to_owned);
        assert_eq!(env.run(&[]), PamCode::Success);
        let p = &env.pushes()[0];
        assert_eq!(p.subject.ipaddr, local, "rhost {rhost:?}");
        // pushinfo `from` still says what PAM said, not the proxy's own address.
        assert_eq!(pushinfo(p, "from").as_deref(), rhost);
    }
    // An IP rhost is sent as it is.
    let mut env = TestEnv::new("sam", &relaxed("fallback_local_ip = yes"));
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(
        env.pushes()[0].subject.ipaddr.as_deref(),
        Some("192.0.2.10")
    );
}

#[test]
fn a_gecos_part_is_sent_as_it_is_and_a_blank_one_is_a_logged_refusal() {
    let mut env = TestEnv::new("pat", &relaxed("gecos_username_pos = 2")).with_user(
        "pat",
        100,
        "Pat P, pat-duo ,x",
        &[],
    );
    assert_eq!(env.run(&[]), PamCode::Success);
    assert_eq!(env.pushes()[0].subject.username, " pat-duo ");

    let mut env = TestEnv::new("pat", &relaxed("gecos_username_pos = 2")).with_user(
        "pat",
        100,
        "Pat P,  ,x",
        &[],
    );
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert_eq!(env.duo_calls(), 0);
    let log = env.log_text();
    assert!(
        log.contains(
            "event=refused hop=vault user=pat from=192.0.2.10 reason=no_duo_username \
             detail=\"the GECOS field has no non-empty part at gecos_username_pos = 2\""
        ),
        "{log}"
    );
    assert_eq!(
        env.errors(),
        ["Access denied: no Duo username is configured for you."]
    );
}

#[test]
fn a_panic_inside_the_logic_becomes_auth_err() {
    let mut env = TestEnv::new("tom", &relaxed("failmode = safe"));
    env.panic_in_user = true;
    assert_eq!(env.run(&[]), PamCode::AuthErr);
    assert!(
        env.log_text().contains("injected panic"),
        "{}",
        env.log_text()
    );
    // The next call on the same thread works normally.
    env.panic_in_user = false;
    assert_eq!(env.run(&[]), PamCode::Success);
}
