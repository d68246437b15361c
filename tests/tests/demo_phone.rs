//! The demo (`duo-demo`, what `scripts/demo` runs) and its phone simulator page, driven in
//! headless Chromium through chromedriver's WebDriver HTTP API: a real ssh login through the
//! demo's proxy sshd shows a card on the page, a click on Approve lets it through, a click on
//! Deny refuses it. Needs root (the lab) and Debian's `chromium` and `chromium-driver`.
//!
//! The page's screenshot with a pending push is written to `target/demo-phone.png`.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use duo_push_common::signing::SignatureVersion;
use duo_push_tests::lab::{pam_module, proxy_shim, MockDuo, MockOpts};
use duo_push_tests::mock::harness::DuoTestClient;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace dir")
        .to_path_buf()
}

/// Brings the PAM module and the shim up to date (this package does not depend on them; see
/// [`duo_push_tests::lab::build`]).
fn build_artifacts() {
    pam_module();
    proxy_shim();
}

/// The browser is required, not optional: a missing one fails the test with the fix.
fn require_browser() {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install Debian's chromium and chromium-driver packages \
             (apt-get install chromium chromium-driver; scripts/test installs them)"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A reqwest client for plain-HTTP loopback services (reqwest wants a TLS config anyway).
fn http_client() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM (or SIGKILL) to a process group / process.
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of our children.
    unsafe {
        libc::kill(pid, sig);
    }
}

// The demo process -------------------------------------------------------------------------

/// A running `duo-demo --no-prompt --state-file ...`; SIGKILLed on drop if still running.
struct Demo {
    child: Child,
    state: Value,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        build_artifacts();
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state.json");
        let log = fs::File::create(dir.path().join("demo.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_duo-demo"))
            .args(["--no-prompt", "--state-file"])
            .arg(&state_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run duo-demo");
        let deadline = Instant::now() + Duration::from_secs(90);
        let state = loop {
            if let Some(v) = fs::read_to_string(&state_path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            {
                break v;
            }
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "duo-demo did not come up ({exited:?}):\n{}",
                    fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Demo { child, state, dir }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("demo.log")).unwrap_or_default()
    }

    fn str(&self, key: &str) -> String {
        self.state[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.state))
            .to_owned()
    }

    fn port(&self, key: &str) -> u16 {
        self.state[key].as_u64().unwrap() as u16
    }

    /// `ssh` to the proxy as demo, password from SSH_ASKPASS, one password attempt.
    fn ssh(&self, tty: bool, args: &[&str]) -> Command {
        let askpass = self.dir.path().join("askpass");
        fs::write(
            &askpass,
            format!("#!/bin/sh\necho '{}'\n", self.str("password")),
        )
        .unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();
        let mut cmd = Command::new("/usr/bin/ssh");
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("DISPLAY", ":0")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .args(["-F", "/dev/null", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.str("known_hosts")))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "NumberOfPasswordPrompts=1",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "ConnectTimeout=10",
            ]);
        if tty {
            cmd.arg("-tt");
        }
        cmd.args(["-p", &self.port("proxy_port").to_string()])
            .arg(format!("{}@127.0.0.1", self.str("user")))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// SIGTERM, then the exit status and the log.
    fn stop(mut self) -> (Option<i32>, String) {
        signal(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, self.log())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id() as i32, libc::SIGTERM);
            std::thread::sleep(Duration::from_secs(1));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An ssh run in a thread: its exit code and output when it ends.
struct Login {
    handle: std::thread::JoinHandle<(Option<i32>, String)>,
}

impl Login {
    fn start(mut cmd: Command) -> Login {
        let handle = std::thread::spawn(move || {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run ssh");
            let mut out = String::new();
            let mut err = String::new();
            let mut stdout = child.stdout.take().unwrap();
            let mut stderr = child.stderr.take().unwrap();
            let t = std::thread::spawn(move || {
                let mut s = String::new();
                let _ = stderr.read_to_string(&mut s);
                s
            });
            let _ = stdout.read_to_string(&mut out);
            let status = child.wait().unwrap();
            err.push_str(&t.join().unwrap());
            (
                status.code(),
                format!("--- stdout ---\n{out}\n--- stderr ---\n{err}"),
            )
        });
        Login { handle }
    }

    fn finish(self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.handle.is_finished() {
            assert!(Instant::now() < deadline, "ssh did not end within {secs} s");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.handle.join().unwrap()
    }
}

// The browser -------------------------------------------------------------------------------

/// chromedriver with one headless Chromium session; both killed on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        require_browser();
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(Stdio::null())
            // Its own process group, so that the browser's processes die with it on drop.
            .process_group(0)
            .spawn()
            .expect("run chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: http_client(),
            rt: runtime(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = browser
                .raw("GET", "/status", None)
                .ok()
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=430,900".to_owned(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let created = browser
            .raw("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {created}"))
            .to_owned();
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let value: Value = resp.json().await.map_err(|e| e.to_string())?;
            if status == 200 {
                Ok(value)
            } else {
                Err(format!("WebDriver {status}: {value}"))
            }
        })
    }

    /// A session command; returns its `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        match self.raw(method, &path, body) {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns its result.
    fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The element ids matching `css`.
    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
            .collect()
    }

    fn text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn attr(&self, element: &str, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{element}/attribute/{name}"), None)
            .as_str()
            .map(str::to_owned)
    }

    fn click(&self, element: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        fs::write(path, png).unwrap();
    }

    /// Waits for a card whose text has every one of `needles`, without a decision yet;
    /// returns (element id, txid, card text).
    fn wait_for_card(&self, needles: &[&str], secs: u64) -> (String, String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            for card in self.find_all("article.card") {
                let text = self.text(&card);
                let txid = self.attr(&card, "data-txid").unwrap_or_default();
                let undecided = !self
                    .find_all(&format!(
                        "article.card[data-txid=\"{txid}\"] button.approve:not([disabled])"
                    ))
                    .is_empty();
                if undecided && needles.iter().all(|n| text.contains(n)) {
                    return (card, txid, text);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no card with {needles:?} within {secs} s; page text:\n{}",
                self.exec("return document.body.innerText;", json!([]))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Clicks a button (`approve` or `deny`) of the card for `txid` and waits for its result.
    fn decide(&self, txid: &str, button: &str, expect: &str) {
        let css = format!("article.card[data-txid=\"{txid}\"]");
        let buttons = self.find_all(&format!("{css} button.{button}"));
        assert_eq!(buttons.len(), 1, "{css} button.{button}");
        self.click(&buttons[0]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self
                .find_all(&format!("{css} .result"))
                .first()
                .map(|r| self.text(r))
                .unwrap_or_default();
            if shown == expect {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the card shows {shown:?}, not {expect:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.raw("DELETE", &path, None);
        }
        let pgid = self.driver.id() as i32;
        signal(-pgid, libc::SIGKILL);
        let _ = self.driver.wait();
    }
}

// Tests ---------------------------------------------------------------------------------------

#[test]
fn approve_and_deny_on_the_phone_page_decide_real_ssh_logins() {
    require_browser();
    let demo = Demo::start();
    let browser = Browser::start();
    let phone = demo.str("phone_url");
    browser.goto(&phone);
    let title = browser.cmd("GET", "/title", None);
    assert_eq!(title, "Duo Push phone simulator");
    let status = browser.find_all("#status");
    assert_eq!(status.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser
        .text(&status[0])
        .contains("Waiting for login requests")
    {
        assert!(Instant::now() < deadline, "{}", browser.text(&status[0]));
        std::thread::sleep(Duration::from_millis(100));
    }

    // 1. Both hops approved on the page: the command runs on web01.
    let login = Login::start(demo.ssh(true, &["web01", "echo", "phone-$((6*7))-ok"]));
    let (_card, vault, text) = browser.wait_for_card(&["Vault login", "demo"], 60);
    assert!(text.contains("User demo"), "{text}");
    for kv in [
        "hop\nvault",
        "from\n127.0.0.1",
        "host\ndemo-proxy",
        "service\nsshd",
    ] {
        assert!(text.contains(kv), "pushinfo {kv:?} not shown:\n{text}");
    }
    assert!(text.contains(" s ago"), "{text}");
    let png = workspace().join("target/demo-phone.png");
    browser.screenshot(&png);
    eprintln!("screenshot: {}", png.display());
    browser.decide(&vault, "approve", "Approved");
    let (_card, target, text) = browser.wait_for_card(&["Target access", "web01"], 60);
    assert!(text.contains("target\nweb01"), "{text}");
    assert!(text.contains("login\ndemo"), "{text}");
    browser.decide(&target, "approve", "Approved");
    let (code, output) = login.finish(60);
    assert_eq!(code, Some(0), "{output}\n{}", demo.log());
    assert!(output.contains("phone-42-ok"), "{output}");

    // 2. Deny on the page: the login is refused and runs nothing.
    let login = Login::start(demo.ssh(false, &["list"]));
    let (_card, vault2, _text) = browser.wait_for_card(&["Vault login", "demo"], 60);
    assert_ne!(vault2, vault);
    browser.decide(&vault2, "deny", "Denied");
    let (code, output) = login.finish(60);
    assert_eq!(code, Some(255), "{output}");
    assert!(output.contains("Permission denied"), "{output}");
    assert!(
        !output.contains("web01\t"),
        "list ran after a denial: {output}"
    );

    // The demo's own log saw all three decisions; SIGTERM stops it cleanly.
    let lab_root = PathBuf::from(demo.str("lab_root"));
    drop(browser);
    let (code, log) = demo.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("push approved: demo: Vault login"), "{log}");
    assert!(
        log.contains("push approved: demo: Target access to web01"),
        "{log}"
    );
    assert!(log.contains("push denied: demo: Vault login"), "{log}");
    assert!(log.contains("duo-demo: stopped"), "{log}");
    assert!(!lab_root.exists(), "{} is left behind", lab_root.display());
}

/// Percent-encodes everything but unreserved characters (for the form-encoded pushinfo).
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn hostile_push_values_are_shown_as_text_and_the_page_is_locked_down() {
    require_browser();
    let mock = MockDuo::start(MockOpts {
        extra_args: vec![
            "--manual-all".into(),
            "--phone-listen".into(),
            "127.0.0.1:0".into(),
        ],
        ..MockOpts::default()
    });
    let phone_port: u16 = fs::read_to_string(mock.ca_pem_path().with_file_name("phone-port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let base = format!("http://127.0.0.1:{phone_port}");

    // A push whose labels carry markup, as a hostile target name or client would.
    let evil_from = "<img src=x onerror=\"document.title='pwned'\">";
    let evil_target = "<b id=bold>web01</b><script>document.title='pwned'</script>";
    let pushinfo = format!(
        "from={}&target={}",
        form_encode(evil_from),
        form_encode(evil_target)
    );
    let client = DuoTestClient::new(&mock.ca_pem_path(), "127.0.0.1", mock.port()).unwrap();
    let date = duo_push_common::signing::rfc2822_date(time::OffsetDateTime::now_utc());
    let params = [
        ("username", "mallory<i>x</i>"),
        ("factor", "push"),
        ("device", "auto"),
        ("type", "Vault login"),
        ("pushinfo", pushinfo.as_str()),
        ("async", "1"),
    ];
    let signed = client.sign_with(
        SignatureVersion::V2Sha512,
        mock.ikey(),
        mock.skey(),
        &date,
        "POST",
        "/auth/v2/auth",
        &params,
    );
    let rt = runtime();
    let reply = rt
        .block_on(client.send("POST", "/auth/v2/auth", &signed, true))
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let pending = mock.pending();
    assert_eq!(
        pending.len(),
        1,
        "--manual-all keeps it pending: {pending:?}"
    );
    assert_eq!(pending[0]["pushinfo"]["from"], evil_from);

    let browser = Browser::start();
    browser.goto(&format!("{base}/phone"));
    let (_card, txid, text) = browser.wait_for_card(&["Vault login"], 20);
    assert!(text.contains(evil_from), "{text}");
    assert!(text.contains(evil_target), "{text}");
    assert!(text.contains("mallory<i>x</i>"), "{text}");
    let injected = browser.exec(
        "return document.querySelectorAll('main img, main b, main i, main script').length;",
        json!([]),
    );
    assert_eq!(injected, 0, "markup from the push became elements");
    assert_eq!(
        browser.cmd("GET", "/title", None),
        "Duo Push phone simulator"
    );
    browser.decide(&txid, "deny", "Denied");
    assert_eq!(mock.pushes()[0]["status"], "deny");

    // The page's headers, and what the plain-HTTP listener refuses.
    let http = http_client();
    let (csp, others) = rt.block_on(async {
        let page = http.get(format!("{base}/phone")).send().await.unwrap();
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let foreign_origin = http
            .post(format!("{base}/mock/pushes/{txid}/approve"))
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let rebound_host = http
            .get(format!("{base}/mock/pending"))
            .header("Host", format!("evil.example:{phone_port}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let script = http
            .post(format!("{base}/mock/script"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (csp, [foreign_origin, rebound_host, script])
    });
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(others, [403, 421, 404], "origin, host, other control paths");
}

#[test]
fn the_demo_self_test_passes() {
    build_artifacts();
    let out = Command::new(env!("CARGO_BIN_EXE_duo-demo"))
        .arg("--self-test")
        .stdin(Stdio::null())
        .output()
        .expect("run duo-demo --self-test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("self-test: pushes: Vault login allow, Target access allow"),
        "{text}"
    );
    assert!(text.contains("  demo-ok"), "{text}");
    assert!(text.contains("self-test: OK"), "{text}");
    assert!(text.contains("lab directory removed"), "{text}");
}
