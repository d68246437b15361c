//! duo-demo: the whole duo-push system on one machine, without a Duo account.
//!
//! It uses the test lab (`duo_push_tests::lab`) to start, all on 127.0.0.1 and in private
//! namespaces (no file of the host changes):
//!
//! * mock-duo with `--manual-all` (every push waits for a live decision) and its phone
//!   simulator page, also over plain HTTP on a second loopback port;
//! * a target sshd, "web01";
//! * a proxy sshd whose PAM stack asks for the password and then sends a Duo Push through
//!   `pam_duo_push.so`, with `ForceCommand` a setgid copy of `duo-proxy-shim`;
//! * a user `demo` with password `demo` (and a key for the hop to web01).
//!
//! Then it prints the phone page's address and the ssh commands to try, and answers pushes
//! from the terminal too (y/n) when its standard input is a terminal. Ctrl-C, SIGTERM or the
//! end of input stops everything.
//!
//! `duo-demo --self-test` runs a scripted two-hop login instead and exits 0 when it worked.
//! Run it as root (the lab's namespaces); `scripts/demo` builds what it needs and runs it.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duo_push_common::audit::sanitize_for_terminal;
use duo_push_tests::lab::{
    artifact_path, Lab, MockDuo, MockOpts, ProxyWorld, SshClient, Sshd, SshdSpec,
};
use serde_json::{json, Value};

const HELP: &str = "\
duo-demo: run duo-push on this machine without a Duo account (as root; see docs/DEMO.md)

USAGE:
  duo-demo                   start everything, print the phone page and the ssh commands, and
                             run until Ctrl-C, SIGTERM or the end of input
  duo-demo --self-test       start everything, log in as demo through both hops with the pushes
                             approved through mock-duo's control API, and exit 0 if it worked

OPTIONS:
  --no-prompt                do not ask y/n for pushes on the terminal (the phone page only)
  --state-file PATH          once running, write the addresses and paths as JSON to PATH
  -h, --help                 this text
";

/// The demo account.
const USER: &str = "demo";
/// Its password.
const PASSWORD: &str = "demo";
/// The target's name in the catalog.
const TARGET: &str = "web01";
/// `[proxy] name`: what the pushes call the proxy.
const PROXY_NAME: &str = "demo-proxy";
/// `[duo] push_timeout`: how long the user has to answer a push.
const PUSH_TIMEOUT_SECS: u64 = 90;
/// mock-duo's push expiry, a little longer than the module's own limit.
const PUSH_EXPIRY_SECS: u64 = 120;
/// How often the terminal fallback looks for new pushes.
const POLL: Duration = Duration::from_millis(300);

/// Why the demo stopped with an error.
#[derive(Debug)]
struct DemoError(String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail(context: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError(format!("{context}: {e}"))
}

#[derive(Debug, Default)]
struct Options {
    self_test: bool,
    no_prompt: bool,
    state_file: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Options>, DemoError> {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--self-test" => opts.self_test = true,
            "--no-prompt" => opts.no_prompt = true,
            "--state-file" => {
                let path = args
                    .next()
                    .ok_or_else(|| DemoError("--state-file needs a path".into()))?;
                opts.state_file = Some(PathBuf::from(path));
            }
            other => {
                return Err(DemoError(format!(
                    "unknown argument {other:?} (see --help)"
                )))
            }
        }
    }
    Ok(Some(opts))
}

/// A small client for mock-duo's control API: HTTPS trusting only the mock's CA, and the
/// phone page's plain-HTTP port. Unlike the lab's `MockDuo` it returns errors instead of
/// panicking, so that a mock that is already stopping (Ctrl-C reaches it too) ends the demo
/// quietly.
struct Control {
    runtime: tokio::runtime::Runtime,
    https: reqwest::Client,
    http: reqwest::Client,
    base: String,
    phone_base: String,
}

impl Control {
    fn new(ca_pem: &Path, port: u16, phone_port: u16) -> Result<Self, DemoError> {
        let pem = std::fs::read(ca_pem).map_err(|e| fail(&ca_pem.display().to_string(), e))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| fail("mock-duo CA", e))?;
            roots.add(cert).map_err(|e| fail("mock-duo CA", e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| fail("HTTPS client", e))?;
        // reqwest wants a TLS configuration even for plain HTTP (no default crypto provider).
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| fail("HTTP client", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("tokio runtime", e))?;
        Ok(Self {
            runtime,
            https,
            http,
            base: format!("https://127.0.0.1:{port}"),
            phone_base: format!("http://127.0.0.1:{phone_port}"),
        })
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value), DemoError> {
        self.runtime.block_on(async {
            let resp = req.send().await.map_err(|e| fail("mock-duo", e))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| fail("mock-duo", e))?;
            Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
        })
    }

    /// Every push so far (`GET /mock/pushes`).
    fn pushes(&self) -> Result<Vec<Value>, DemoError> {
        match self.send(self.https.get(format!("{}/mock/pushes", self.base)))? {
            (200, Value::Array(items)) => Ok(items),
            (status, body) => Err(DemoError(format!(
                "mock-duo /mock/pushes answered {status}: {body}"
            ))),
        }
    }

    /// Approves (`true`) or denies a push over the HTTPS control API; returns the HTTP status
    /// (409: it had already ended).
    fn decide(&self, txid: &str, approve: bool) -> Result<u16, DemoError> {
        let action = if approve { "approve" } else { "deny" };
        let url = format!("{}/mock/pushes/{txid}/{action}", self.base);
        Ok(self.send(self.https.post(url))?.0)
    }

    /// Approves a push the way the phone page does: a same-origin POST to the plain-HTTP port.
    fn approve_like_the_page(&self, txid: &str) -> Result<u16, DemoError> {
        let url = format!("{}/mock/pushes/{txid}/approve", self.phone_base);
        let req = self.http.post(url).header("Origin", &self.phone_base);
        Ok(self.send(req)?.0)
    }
}

/// Everything that runs. Dropping it stops the sshds (and every process of their
/// namespaces), mock-duo, and removes the lab directory.
struct Demo {
    // Field order is drop order: the sshds first, then mock-duo, then the lab.
    proxy: Sshd,
    target: Sshd,
    mock: MockDuo,
    lab: Lab,
    phone_port: u16,
    known_hosts: PathBuf,
    control: Control,
}

/// Waits up to 10 s for mock-duo's `phone-port` file (written before `port`, so it is
/// normally there already).
fn read_phone_port(state_dir: &Path) -> Result<u16, DemoError> {
    let path = state_dir.join("phone-port");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
        {
            return Ok(port);
        }
        if Instant::now() >= deadline {
            return Err(DemoError(format!(
                "mock-duo did not write {} (is it older than --phone-listen?)",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Demo {
    fn start() -> Result<Demo, DemoError> {
        // Fail early, with a hint, when the workspace was not built.
        let module = artifact_path("libpam_duo_push.so");
        let shim_src = artifact_path("duo-proxy-shim");

        let mock = MockDuo::start(MockOpts {
            extra_args: vec![
                "--manual-all".into(),
                "--phone-listen".into(),
                "127.0.0.1:0".into(),
                "--push-expiry-secs".into(),
                PUSH_EXPIRY_SECS.to_string(),
            ],
            ..MockOpts::default()
        });
        let ca_path = mock.ca_pem_path();
        let state_dir = ca_path
            .parent()
            .ok_or_else(|| DemoError("mock-duo has no state directory".into()))?;
        let phone_port = read_phone_port(state_dir)?;
        let control = Control::new(&ca_path, mock.port(), phone_port)?;

        // The documented proxy: sshd_config of docs/sshd_config.md, the password then a push.
        let world = ProxyWorld::spec()
            .proxy_name(PROXY_NAME)
            .push_timeout(PUSH_TIMEOUT_SECS)
            .user(USER, PASSWORD, &[])
            .target_sshd(SshdSpec::named(TARGET))
            .target(TARGET, "127.0.0.1", USER)
            .config_comment("duo-demo: mock-duo stands in for Duo")
            .pam_comment("duo-demo: the password, then a Duo Push")
            .module(&module)
            .shim(&shim_src)
            .start(&mock);
        let ProxyWorld {
            lab, target, proxy, ..
        } = world;
        // One known_hosts file for every command the demo prints: the proxy, the target by
        // address (ssh -p) and by name (the ProxyCommand form).
        let known_hosts = lab.write_file(
            "demo_known_hosts",
            &format!(
                "{}\n{}\n{TARGET} {}\n",
                proxy.known_hosts_line(),
                target.known_hosts_line(),
                target.host_public_key()
            ),
            0o644,
            0,
            0,
        );
        Ok(Demo {
            proxy,
            target,
            mock,
            lab,
            phone_port,
            known_hosts,
            control,
        })
    }

    fn phone_url(&self) -> String {
        format!("http://127.0.0.1:{}/phone", self.phone_port)
    }

    fn ssh_prefix(&self) -> String {
        format!("ssh -o UserKnownHostsFile={}", self.known_hosts.display())
    }

    fn banner(&self) -> String {
        let kh = self.ssh_prefix();
        let pport = self.proxy.port();
        format!(
            "\
duo-demo: duo-push is running on this machine (loopback only, private namespaces)

  mock-duo (stands in for Duo)  https://127.0.0.1:{mport}  (every push waits for you)
  proxy sshd {PROXY_NAME:<18} 127.0.0.1:{pport}  password, then a push (pam_duo_push.so);
                                ForceCommand duo-proxy-shim (setgid duo-push)
  target sshd {TARGET:<17} 127.0.0.1:{tport}
  user                          {USER}, password {PASSWORD}
  config                        {conf}

Phone simulator: open in a browser on this machine
  {phone}
  (also https://127.0.0.1:{mport}/phone: the browser warns about its certificate, which
   mock-duo's own CA issued: {ca})

Try these in another terminal (password: {PASSWORD}; answer each push on the phone page):
  {kh} -p {pport} {USER}@127.0.0.1
      a menu of targets: vault push, then pick {TARGET} for the target push
  {kh} -t -p {pport} {USER}@127.0.0.1 {TARGET}
      a shell on {TARGET}: both hops in one command
  {kh} -p {pport} {USER}@127.0.0.1 {TARGET} uptime
      one command on {TARGET}
  {kh} -p {pport} {USER}@127.0.0.1 list
      the targets {USER} may reach
  {kh} -o ProxyCommand='{kh} -p {pport} {USER}@127.0.0.1 connect %h' {USER}@{TARGET}
      end-to-end SSH to {TARGET} through the proxy (scp, sftp and rsync work the same way);
      {TARGET} asks for the password too
",
            mport = self.mock.port(),
            tport = self.target.port(),
            conf = self
                .lab
                .etc_upper()
                .join("duo_push/duo_push.conf")
                .display(),
            phone = self.phone_url(),
            ca = self.mock.ca_pem_path().display(),
        )
    }

    fn state_json(&self) -> Value {
        json!({
            "phone_url": self.phone_url(),
            "phone_https_url": format!("https://127.0.0.1:{}/phone", self.mock.port()),
            "mock_port": self.mock.port(),
            "phone_port": self.phone_port,
            "ca_pem": self.mock.ca_pem_path(),
            "ikey": self.mock.ikey(),
            "skey": self.mock.skey(),
            "proxy_port": self.proxy.port(),
            "target_port": self.target.port(),
            "known_hosts": self.known_hosts,
            "user": USER,
            "password": PASSWORD,
            "target": TARGET,
            "lab_root": self.lab.root(),
            "pid": std::process::id(),
        })
    }
}

/// One line about a push for the terminal; every value is sanitized (it came from the
/// network).
fn describe(push: &Value) -> String {
    let text = |v: &Value| sanitize_for_terminal(v.as_str().unwrap_or("?"));
    let kind = text(&push["type"]);
    let target = match push["pushinfo"]["target"].as_str() {
        Some(t) => format!(" to {}", sanitize_for_terminal(t)),
        None => String::new(),
    };
    format!(
        "{}: {kind}{target} (from {})",
        text(&push["username"]),
        text(&push["pushinfo"]["from"])
    )
}

enum Event {
    Signal(&'static str),
    Line(String),
    Eof,
}

/// Catches SIGINT, SIGTERM and SIGHUP from now on and reports them on `tx`.
fn catch_signals(tx: Sender<Event>) -> Result<(), DemoError> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("tokio runtime", e))?;
    let (mut int, mut term, mut hup) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })
        .map_err(|e| fail("cannot catch signals", e))?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "interrupted",
                    _ = term.recv() => "terminated",
                    _ = hup.recv() => "hung up",
                };
                if tx.send(Event::Signal(name)).is_err() {
                    break;
                }
            }
        });
    });
    Ok(())
}

fn read_stdin(tx: Sender<Event>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(line) => {
                    if tx.send(Event::Line(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Eof);
    });
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn prompt(push: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "Push for {} — approve? [y/n] ", describe(push));
    let _ = out.flush();
}

/// The interactive demo: report pushes, ask y/n on a terminal, stop on a signal or EOF.
fn serve(demo: &Demo, events: &Receiver<Event>, ask: bool) -> Result<(), DemoError> {
    let mut results: BTreeMap<String, String> = BTreeMap::new();
    let mut asked: HashSet<String> = HashSet::new();
    let mut question: Option<Value> = None;
    loop {
        match events.recv_timeout(POLL) {
            Ok(Event::Signal(name)) => {
                say(&format!("\nduo-demo: {name}: stopping"));
                return Ok(());
            }
            Ok(Event::Eof) => {
                say("\nduo-demo: end of input: stopping");
                return Ok(());
            }
            Ok(Event::Line(line)) => {
                let answer = line.trim().to_ascii_lowercase();
                match (question.take(), answer.as_str()) {
                    (Some(push), "y" | "yes" | "n" | "no") => {
                        let approve = answer.starts_with('y');
                        let txid = push["txid"].as_str().unwrap_or_default();
                        let status = demo.control.decide(txid, approve)?;
                        if status == 409 {
                            say("  (already answered on the phone page, or expired)");
                        }
                    }
                    (Some(push), _) => {
                        say("  please answer y or n");
                        prompt(&push);
                        question = Some(push);
                    }
                    (None, "") => {}
                    (None, _) => say("  (no push is waiting; Ctrl-C stops the demo)"),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let pushes = demo.control.pushes()?;
        for push in &pushes {
            let txid = push["txid"].as_str().unwrap_or_default().to_owned();
            let status = push["status"].as_str().unwrap_or("?").to_owned();
            if results.get(&txid) == Some(&status) {
                continue;
            }
            let first = !results.contains_key(&txid);
            results.insert(txid.clone(), status.clone());
            if question
                .as_ref()
                .is_some_and(|q| q["txid"] == push["txid"] && push["result"] != "pending")
            {
                question = None;
                say("");
            }
            let word = match status.as_str() {
                "pushed" if first => "waiting",
                "allow" => "approved",
                "deny" => "denied",
                "timeout" => "timed out",
                other => other,
            };
            say(&format!("push {word}: {}", describe(push)));
        }
        if ask && question.is_none() {
            if let Some(push) = pushes.iter().find(|p| {
                p["result"] == "pending" && !asked.contains(p["txid"].as_str().unwrap_or_default())
            }) {
                asked.insert(push["txid"].as_str().unwrap_or_default().to_owned());
                prompt(push);
                question = Some(push.clone());
            }
        }
    }
}

/// Waits up to `secs` for a pending push of the demo user with `type` = `kind`.
fn wait_for_push(demo: &Demo, kind: &str, secs: u64) -> Result<Value, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let pushes = demo.control.pushes()?;
        if let Some(push) = pushes
            .iter()
            .find(|p| p["result"] == "pending" && p["username"] == USER && p["type"] == kind)
        {
            return Ok(push.clone());
        }
        if Instant::now() >= deadline {
            return Err(DemoError(format!(
                "no pending {kind:?} push within {secs} s; pushes: {}",
                Value::Array(pushes)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scripted login: `ssh -tt -p PROXY demo@127.0.0.1 web01 echo demo-ok`, the password
/// from SSH_ASKPASS, both pushes approved through mock-duo (the vault push over the HTTPS
/// control API, the target push the way the phone page does it).
fn self_test(demo: &Demo) -> Result<(), DemoError> {
    say(&format!(
        "self-test: {} -tt -p {} {USER}@127.0.0.1 {TARGET} echo demo-ok   (password from SSH_ASKPASS)",
        demo.ssh_prefix(),
        demo.proxy.port()
    ));
    let session = SshClient::new(&demo.proxy, USER)
        .password(PASSWORD)
        .tty(true)
        .args([TARGET, "echo", "demo-ok"])
        .timeout_secs(120)
        .spawn();
    let vault = wait_for_push(demo, "Vault login", 60)?;
    say(&format!("self-test: pending push  {}", describe(&vault)));
    let txid = vault["txid"].as_str().unwrap_or_default();
    let status = demo.control.decide(txid, true)?;
    if status != 200 {
        return Err(DemoError(format!("approving {txid} answered {status}")));
    }
    say("self-test: approved it through the control API (POST /mock/pushes/TXID/approve)");
    let target = wait_for_push(demo, "Target access", 60)?;
    say(&format!("self-test: pending push  {}", describe(&target)));
    let txid = target["txid"].as_str().unwrap_or_default();
    let status = demo.control.approve_like_the_page(txid)?;
    if status != 200 {
        return Err(DemoError(format!("approving {txid} answered {status}")));
    }
    say("self-test: approved it as the phone page does (same-origin POST on the phone port)");
    let run = session.finish(60);
    say("--- what the user's terminal showed ---");
    // The login's messages (the vault push) come on stderr before the session's output.
    for line in run.stderr.lines().chain(run.stdout.lines()) {
        say(&format!(
            "  {}",
            sanitize_for_terminal(line.trim_end_matches('\r'))
        ));
    }
    say("--- end ---");
    let pushes = demo.control.pushes()?;
    let summary: Vec<String> = pushes
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["type"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    say(&format!("self-test: pushes: {}", summary.join(", ")));
    if run.status != Some(0) || !run.stdout.contains("demo-ok") {
        return Err(DemoError(format!(
            "the login did not bring demo-ok back (ssh exit {:?}, timed out: {})\nproxy sshd log:\n{}",
            run.status,
            run.timed_out,
            demo.proxy.log_text()
        )));
    }
    if summary != ["Vault login allow", "Target access allow"] {
        return Err(DemoError(format!("unexpected pushes: {summary:?}")));
    }
    say("self-test: OK (two pushes approved, demo-ok came back from web01, ssh exit 0)");
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(opts: &Options) -> Result<(), DemoError> {
    if !is_root() {
        return Err(DemoError(
            "must run as root (sudo): the demo runs sshd in private mount namespaces".into(),
        ));
    }
    let (tx, events) = mpsc::channel();
    catch_signals(tx.clone())?;
    say("duo-demo: starting mock-duo, the target sshd and the proxy sshd...");
    let started = Instant::now();
    let demo = Demo::start()?;
    say(&format!(
        "duo-demo: ready in {:.1} s\n",
        started.elapsed().as_secs_f64()
    ));
    say(&demo.banner());
    if let Some(path) = &opts.state_file {
        let text = serde_json::to_string_pretty(&demo.state_json()).map_err(|e| fail("json", e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| fail(&tmp.display().to_string(), e))?;
        std::fs::rename(&tmp, path).map_err(|e| fail(&path.display().to_string(), e))?;
    }
    let result = if opts.self_test {
        self_test(&demo)
    } else {
        let terminal = std::io::stdin().is_terminal();
        let ask = terminal && !opts.no_prompt;
        if terminal {
            // Without a terminal (CI, a pipe) only a signal stops the demo.
            read_stdin(tx);
        } else {
            drop(tx);
        }
        if ask {
            say("Pushes can also be answered here: y or n at the prompt. Ctrl-C or Ctrl-D stops the demo.\n");
        } else {
            say("Ctrl-C stops the demo.\n");
        }
        serve(&demo, &events, ask)
    };
    let root = demo.lab.root().to_path_buf();
    drop(demo);
    let gone = !root.exists();
    say(&format!(
        "duo-demo: stopped: mock-duo and both sshds ended{}",
        if gone { ", lab directory removed" } else { "" }
    ));
    result
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("duo-demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duo-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
