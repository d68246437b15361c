//! `duo-proxy-shim` end to end: a real proxy sshd (PAM stack with `pam_duo_push.so`, the
//! documented sshd_config, `ForceCommand` = a lab copy of the shim installed root:duo-push
//! 2755), a second real sshd as the target device, the real OpenSSH client, scp and sftp, and
//! mock-duo as Duo. Needs root (the lab's namespaces).

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use duo_push_tests::lab::{
    Lab, MockDuo, MockOpts, ProxyWorld, SshClient, Sshd, SshdSpec, User, PROXY_SSHD_HARDENING,
};
use serde_json::Value;

const PROXY_NAME: &str = "vault.test";

/// What a test may change in the standard setup.
#[derive(Default)]
struct Options {
    /// `[duo] push_timeout` (default 20).
    push_timeout: Option<u64>,
}

/// The whole system: mock-duo, the lab with users, a target sshd and the proxy sshd.
struct System {
    mock: MockDuo,
    lab: Lab,
    target: Sshd,
    proxy: Sshd,
    shim_gid: u32,
}

fn password_of(user: &str) -> String {
    format!("pw-{user}")
}

impl System {
    fn start(opts: Options) -> System {
        let mock = MockDuo::start(MockOpts::default());
        let mut spec = ProxyWorld::spec()
            .proxy_name(PROXY_NAME)
            .push_timeout(opts.push_timeout.unwrap_or(20))
            .group("dba");
        for name in ["alice", "denyuser", "manualcarol"] {
            spec = spec.user(name, &password_of(name), &["ops"]);
        }
        // `AcceptEnv` is widened on purpose: the environment test must be able to try.
        let world = spec
            .target_sshd(SshdSpec::named("target").config("AcceptEnv *\n"))
            .send_all_env()
            .target("web01", "127.0.0.1", "alice denyuser manualcarol")
            .target("db01", "localhost", "@dba")
            .sshd_config(&format!(
                "{PROXY_SSHD_HARDENING}AcceptEnv LANG LC_* LD_PRELOAD http_proxy HTTPS_PROXY\n"
            ))
            .start(&mock);
        System {
            mock,
            lab: world.lab,
            target: world.target,
            proxy: world.proxy,
            shim_gid: world.shim_gid,
        }
    }

    fn user(&self, name: &str) -> User {
        self.lab.user(name)
    }

    /// An ssh client logging in to the proxy as `user` with the user's password.
    fn client(&self, user: &str) -> SshClient {
        SshClient::new(&self.proxy, user)
            .password(&password_of(user))
            .timeout_secs(60)
    }

    /// `hop` of each push of `user`, in order.
    fn hops(&self, user: &str) -> Vec<String> {
        self.pushes(user)
            .iter()
            .map(|p| p["pushinfo"]["hop"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    fn pushes(&self, user: &str) -> Vec<Value> {
        self.mock
            .pushes()
            .into_iter()
            .filter(|p| p["username"] == user)
            .collect()
    }

    /// The shim's audit lines.
    fn shim_log(&self) -> String {
        self.proxy
            .syslog_lines()
            .into_iter()
            .filter(|l| l.contains("duo-proxy-shim["))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_shim_log(&self, needle: &str) -> String {
        self.proxy
            .wait_for_syslog(needle, 10)
            .unwrap_or_else(|| panic!("no shim line with {needle:?} in:\n{}", self.shim_log()))
    }

    /// An OpenSSH `ProxyCommand` that reaches the target through the proxy's `connect`, with
    /// the environment its inner ssh needs (askpass for the proxy password).
    fn proxy_command(&self, user: &str) -> (String, Vec<(String, String)>) {
        let cmd = self.client(user).args(["connect", "%h:%p"]).command();
        let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
        words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        let line = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let env = cmd
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        (line, env)
    }

    /// scp/sftp options for the end-to-end hop to the target through `connect`.
    fn end_to_end(&self, program: &str, user: &User, args: &[&str]) -> Command {
        let (proxy_command, env) = self.proxy_command(&user.name);
        let key = user.home.join(".ssh/id_ed25519");
        let mut cmd = Command::new(program);
        cmd.env_clear().envs(env).args([
            "-F",
            "/dev/null",
            "-o",
            &format!(
                "UserKnownHostsFile={}",
                self.target.known_hosts_path().display()
            ),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=no",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
            &format!("ProxyCommand={proxy_command}"),
            "-i",
        ]);
        cmd.arg(key).args(args);
        cmd
    }
}

fn target_pushes(system: &System, user: &str) -> Vec<Value> {
    system
        .pushes(user)
        .into_iter()
        .filter(|p| p["pushinfo"]["hop"] == "target")
        .collect()
}

// 1. Multi-hop -------------------------------------------------------------------------------

#[test]
fn multi_hop_command_gets_two_pushes_in_order_and_the_exit_status_back() {
    let s = System::start(Options::default());
    let run = s
        .client("alice")
        .tty(true)
        .args([
            "web01",
            "echo",
            "hello-from-$(hostname)-$((6*7));",
            "exit",
            "7",
        ])
        .run();
    eprintln!(
        "--- what alice sees (approve, command) ---\n{}{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.status, Some(7), "{run}\n{}", s.proxy.log_text());
    assert!(run.stdout.contains("-42"), "{run}");
    let pushes = s.pushes("alice");
    assert_eq!(s.hops("alice"), ["vault", "target"], "{pushes:?}");
    let target = &pushes[1];
    assert_eq!(target["type"], "Target access", "{target}");
    assert_eq!(target["pushinfo"]["target"], "web01", "{target}");
    assert_eq!(
        target["pushinfo"]["address"],
        format!("127.0.0.1:{}", s.target.port()),
        "{target}"
    );
    assert_eq!(target["pushinfo"]["login"], "alice", "{target}");
    assert_eq!(target["pushinfo"]["host"], PROXY_NAME, "{target}");
    assert_eq!(target["pushinfo"]["from"], "127.0.0.1", "{target}");
    // With a pty, the shim's stderr reaches the client through the terminal (stdout).
    assert!(run.stdout.contains("web01: Duo Push approved."), "{run}");
    let txid = target["txid"].as_str().unwrap();
    let decision = s.wait_shim_log("event=decision hop=target");
    assert!(decision.contains("result=allow"), "{decision}");
    assert!(decision.contains(&format!("txid={txid}")), "{decision}");
    let start = s.wait_shim_log("event=connection_start");
    assert!(
        start.contains("target=web01 kind=command login=alice address=127.0.0.1:"),
        "{start}"
    );
    assert!(start.contains(&format!("txid={txid}")), "{start}");
    let end = s.wait_shim_log("event=connection_end");
    assert!(
        end.contains("target=web01 kind=command result=exit exit_status=7 duration_ms="),
        "{end}"
    );
    assert_eq!(s.target.connections_seen(), 1, "{}", s.target.log_text());
}

#[test]
fn multi_hop_interactive_session_runs_a_shell_on_the_target() {
    let s = System::start(Options::default());
    let mut session = s.client("alice").tty(true).args(["web01"]).spawn();
    session.expect("Duo Push approved.", 30);
    session.send_line("echo interactive-$((40+2))");
    session.expect("interactive-42", 30);
    session.send_line("exit 3");
    let run = session.finish(20);
    assert_eq!(run.status, Some(3), "{run}\n{}", s.proxy.log_text());
    assert_eq!(s.hops("alice"), ["vault", "target"]);
    let end = s.wait_shim_log("event=connection_end");
    assert!(
        end.contains("target=web01 kind=session result=exit exit_status=3"),
        "{end}"
    );
    // LOGIN@TARGET with the user's own name and TARGET:PORT with the configured port work too.
    let port = s.target.port();
    for spec in ["alice@web01".to_owned(), format!("web01:{port}")] {
        let run = s.client("alice").args([spec.as_str(), "true"]).run();
        assert!(run.success(), "{spec}: {run}");
    }
    assert_eq!(s.target.connections_seen(), 3, "{}", s.target.log_text());
}

#[test]
fn a_real_terminal_shows_both_approvals_then_the_output_or_the_denial() {
    let s = System::start(Options::default());
    let run = s
        .client("alice")
        .local_pty(true)
        .args(["-t", "web01", "uptime", ">/dev/null;", "echo", "uptime-ok"])
        .run();
    eprintln!(
        "--- terminal: ssh -t alice@proxy web01 ... (approved) ---\n{}",
        run.stdout
    );
    assert_eq!(run.status, Some(0), "{run}");
    let vault = run.stdout.find("Duo Push approved.").unwrap();
    let target = run.stdout.find("web01: Duo Push approved.").unwrap();
    let output = run.stdout.find("uptime-ok").unwrap();
    assert!(vault < target && target < output, "{run}");

    s.mock.script("alice", &["allow", "deny"]);
    let run = s
        .client("alice")
        .local_pty(true)
        .args(["-t", "web01", "echo", "SHOULD-NOT-RUN"])
        .run();
    eprintln!(
        "--- terminal: ssh -t alice@proxy web01 ... (denied) ---\n{}",
        run.stdout
    );
    assert_eq!(run.status, Some(1), "{run}");
    assert!(run.stdout.contains("web01: Duo Push denied."), "{run}");
    assert!(!run.stdout.contains("SHOULD-NOT-RUN\r\n"), "{run}");
    assert_eq!(s.target.connections_seen(), 1);
}

// 2. Denials ---------------------------------------------------------------------------------

#[test]
fn a_denied_vault_push_fails_the_login_and_sends_no_second_push() {
    let s = System::start(Options::default());
    let run = s.client("denyuser").args(["web01", "true"]).run();
    assert_eq!(run.status, Some(255), "{run}");
    assert!(run.stderr.contains("Permission denied"), "{run}");
    assert_eq!(s.hops("denyuser"), ["vault"]);
    assert_eq!(s.target.connections_seen(), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.shim_log().contains("user=denyuser"), "{}", s.shim_log());
}

#[test]
fn a_denied_target_push_never_contacts_the_target() {
    let s = System::start(Options::default());
    s.mock.script("alice", &["allow", "deny"]);
    let run = s
        .client("alice")
        .tty(true)
        .args(["web01", "echo", "SHOULD-NOT-RUN"])
        .run();
    eprintln!(
        "--- what alice sees (deny) ---\n{}{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.status, Some(1), "{run}");
    assert!(!run.stdout.contains("SHOULD-NOT-RUN"), "{run}");
    assert!(run.stdout.contains("web01: Duo Push denied."), "{run}");
    assert_eq!(s.hops("alice"), ["vault", "target"]);
    let decision = s.wait_shim_log("event=decision hop=target");
    assert!(decision.contains("result=deny"), "{decision}");
    assert_eq!(s.target.connections_seen(), 0, "{}", s.target.log_text());
    assert!(
        !s.shim_log().contains("connection_start"),
        "{}",
        s.shim_log()
    );
}

#[test]
fn a_timed_out_target_push_never_contacts_the_target() {
    let s = System::start(Options {
        push_timeout: Some(10),
    });
    s.mock.script("alice", &["allow", "timeout"]);
    let started = Instant::now();
    let run = s.client("alice").args(["web01", "true"]).run();
    assert_eq!(run.status, Some(1), "{run}");
    assert!(run.stderr.to_lowercase().contains("timed out"), "{run}");
    assert!(started.elapsed() < Duration::from_secs(40), "{run}");
    assert_eq!(s.target.connections_seen(), 0, "{}", s.target.log_text());
}

#[test]
fn connect_relays_the_targets_banner() {
    let s = System::start(Options::default());
    let run = s
        .client("alice")
        .args(["connect", &format!("web01:{}", s.target.port())])
        .stdin(b"SSH-2.0-relay-test\r\n")
        .run();
    assert!(
        run.stdout.starts_with("SSH-2.0-OpenSSH"),
        "{run}\n{}",
        s.shim_log()
    );
    let start = s.wait_shim_log("event=connection_start");
    assert!(start.contains("kind=connect address="), "{start}");
    assert!(!start.contains("login="), "{start}");
    let end = s.wait_shim_log("event=connection_end");
    assert!(
        end.contains("kind=connect result=closed bytes_in="),
        "{end}"
    );
    assert!(end.contains("bytes_out=20 duration_ms="), "{end}");
    assert_eq!(s.target.connections_seen(), 1);
}

#[test]
fn a_denied_connect_push_opens_no_relay() {
    let s = System::start(Options::default());
    s.mock.script("alice", &["allow", "deny"]);
    let run = s
        .client("alice")
        .args(["connect", &format!("web01:{}", s.target.port())])
        .stdin(b"SSH-2.0-test\r\n")
        .run();
    assert_eq!(run.status, Some(1), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    assert_eq!(s.target.connections_seen(), 0);
}

// 3. The menu through a pty -------------------------------------------------------------------

#[test]
fn the_menu_offers_the_users_targets_and_opens_the_chosen_one() {
    let s = System::start(Options::default());
    let mut session = s.client("alice").local_pty(true).spawn();
    let menu = session.expect("Choose a target", 30);
    assert!(menu.contains("1) web01"), "{menu}");
    assert!(
        !menu.contains("db01"),
        "alice is not allowed on db01: {menu}"
    );
    session.send_line("nonsense");
    session.expect("No such choice", 10);
    session.send_line("1");
    session.expect("Duo Push approved.", 30);
    session.send_line("echo menu-$((6*7))");
    session.expect("menu-42", 20);
    session.send_line("exit 0");
    let run = session.finish(20);
    assert_eq!(run.status, Some(0), "{run}");
    assert_eq!(s.hops("alice"), ["vault", "target"]);
    assert_eq!(target_pushes(&s, "alice")[0]["pushinfo"]["target"], "web01");
    // q leaves without a second push.
    let mut session = s.client("alice").local_pty(true).spawn();
    session.expect("Choose a target", 30);
    session.send_line("q");
    let run = session.finish(20);
    assert_eq!(run.status, Some(0), "{run}");
    assert_eq!(s.hops("alice"), ["vault", "target", "vault"]);
}

#[test]
fn no_command_without_a_terminal_prints_help_and_fails() {
    let s = System::start(Options::default());
    let run = s.client("alice").tty(false).run();
    assert_eq!(run.status, Some(2), "{run}");
    assert!(run.stderr.contains("connect %h:%p"), "{run}");
    let run = s.client("alice").args(["list"]).run();
    assert!(run.success(), "{run}");
    assert!(run.stdout.starts_with("web01\talice@127.0.0.1:"), "{run}");
    assert!(!run.stdout.contains("db01"), "{run}");
    assert_eq!(
        s.hops("alice"),
        ["vault", "vault"],
        "list sends no target push"
    );
    let list = s.wait_shim_log("event=list");
    assert!(
        list.contains("hop=target user=alice from=127.0.0.1 targets=1"),
        "{list}"
    );
}

// 4. connect: scp and sftp end to end ---------------------------------------------------------

#[test]
fn scp_and_sftp_work_end_to_end_through_connect() {
    let s = System::start(Options::default());
    let alice = s.user("alice");
    let work = s.lab.root().join("files").join("scp-work");
    fs::create_dir_all(&work).unwrap();
    let original = work.join("ten-mib.bin");
    let mut data = vec![0u8; 10 * 1024 * 1024];
    let mut state: u32 = 0x1234_5678;
    for b in &mut data {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *b = state as u8;
    }
    fs::write(&original, &data).unwrap();
    let port = s.target.port().to_string();

    let up = s
        .end_to_end("scp", &alice, &["-P", &port])
        .arg(&original)
        .arg("alice@127.0.0.1:up.bin")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "scp up: {}\nshim log:\n{}\ntarget log:\n{}",
        String::from_utf8_lossy(&up.stderr),
        s.shim_log(),
        s.target.log_text()
    );
    assert_eq!(fs::read(alice.home.join("up.bin")).unwrap(), data);

    let back = work.join("back.bin");
    let down = s
        .end_to_end("scp", &alice, &["-P", &port])
        .arg("alice@127.0.0.1:up.bin")
        .arg(&back)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "scp down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(
        fs::read(&back).unwrap(),
        data,
        "the round trip is byte-identical"
    );

    let mut sftp = s.end_to_end("sftp", &alice, &["-P", &port, "-b", "-", "alice@127.0.0.1"]);
    sftp.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = sftp.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ls -l up.bin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sftp: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("10485760") && text.contains("up.bin"),
        "{text}"
    );

    // Three end-to-end connections, each a vault and a target push, and a relay audit line
    // with the byte counts.
    assert_eq!(
        s.hops("alice"),
        ["vault", "target", "vault", "target", "vault", "target"]
    );
    assert!(target_pushes(&s, "alice")
        .iter()
        .all(|p| p["pushinfo"]["target"] == "web01"));
    assert_eq!(s.target.connections_seen(), 3, "{}", s.target.log_text());
    s.wait_shim_log("event=connection_end");
    let all = s.shim_log();
    assert!(
        all.lines()
            .filter(|l| l.contains("event=connection_end"))
            .any(|l| l
                .split(' ')
                .find_map(|kv| kv.strip_prefix("bytes_out="))
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 10_000_000)),
        "no relay carried the 10 MiB upload:\n{all}"
    );
}

// 5. Refusals ---------------------------------------------------------------------------------

#[test]
fn refused_requests_send_no_push_and_make_no_connection() {
    let s = System::start(Options::default());
    let port = s.target.port();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["web99".into(), "true".into()],
            "unknown target or access denied: web99",
        ),
        (
            vec!["db01".into(), "true".into()],
            "unknown target or access denied: db01",
        ),
        // `--` keeps the client's own ssh from reading these as its options.
        (
            vec!["--".into(), "-oProxyCommand=touch /tmp/pwned".into()],
            "not a valid target name",
        ),
        (vec!["web01;id".into()], "not a valid target name"),
        (vec!["$(id)".into()], "not a valid target name"),
        (
            vec!["root@web01".into(), "true".into()],
            "login \"root\" is not allowed on web01",
        ),
        (
            vec!["web01:1".into(), "true".into()],
            "unknown target or access denied",
        ),
        (
            vec!["connect".into(), format!("127.0.0.1:{}", port + 1)],
            "unknown target or access denied",
        ),
        (
            vec!["connect".into(), "10.9.9.9:22".into()],
            "unknown target or access denied",
        ),
    ];
    let mut logins = 0;
    for (args, message) in &cases {
        let run = s.client("alice").args(args.clone()).run();
        logins += 1;
        assert_eq!(run.status, Some(1), "{args:?}: {run}");
        assert!(run.stderr.contains(message), "{args:?}: {run}");
        assert!(!run.stderr.contains("for this target"), "{args:?}: {run}");
    }
    assert_eq!(s.hops("alice"), vec!["vault"; logins], "only vault pushes");
    assert_eq!(s.target.connections_seen(), 0, "{}", s.target.log_text());
    assert!(!Path::new("/tmp/pwned").exists());
    let refusals = s
        .shim_log()
        .lines()
        .filter(|l| l.contains("event=refused hop=target user=alice from=127.0.0.1 reason="))
        .count();
    assert_eq!(refusals, cases.len(), "{}", s.shim_log());
}

#[test]
fn forwarding_through_the_proxy_is_refused_by_sshd() {
    let s = System::start(Options::default());
    let target = format!("127.0.0.1:{}", s.target.port());
    // -W (what -J uses for each jump).
    let run = s
        .client("alice")
        .args(["-W", target.as_str()])
        .stdin(b"")
        .run();
    assert_ne!(run.status, Some(0), "{run}");
    assert!(
        run.stderr.contains("administratively prohibited") || run.stderr.contains("open failed"),
        "{run}"
    );
    // -J with the lab's client options for the jump host, through a ProxyCommand spelling of
    // the same jump (ssh -J runs `ssh -W %h:%p JUMP`).
    let (jump, env) = {
        let cmd = s.client("alice").args(["-W", "%h:%p"]).command();
        let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
        words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        let env: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        (words.join(" "), env)
    };
    let alice = s.user("alice");
    let out = Command::new("ssh")
        .env_clear()
        .envs(env)
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=no",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            s.target.known_hosts_path().display()
        ))
        .arg("-o")
        .arg(format!("ProxyCommand={jump}"))
        .arg("-i")
        .arg(alice.home.join(".ssh/id_ed25519"))
        .args([
            "-p",
            &s.target.port().to_string(),
            "alice@127.0.0.1",
            "true",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // -L: the forward is refused when used.
    let local_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let forward = format!("{local_port}:{target}");
    let session = s
        .client("alice")
        .args(["-N", "-L", forward.as_str()])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", local_port)) {
            break stream;
        }
        assert!(Instant::now() < deadline, "ssh -L never listened");
        std::thread::sleep(Duration::from_millis(100));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "the forwarded connection must carry nothing (no target banner)"
    );
    drop(stream);
    // ssh -N runs until killed; finish() kills it after the grace period.
    session.finish(1);
    assert_eq!(s.target.connections_seen(), 0, "{}", s.target.log_text());
    assert!(
        s.hops("alice").iter().all(|h| h == "vault"),
        "{:?}",
        s.hops("alice")
    );
}

// 6. Privileges and environment ---------------------------------------------------------------

/// Runs `args` on the host as `uid:gid` with no supplementary groups.
fn as_user(uid: u32, gid: u32, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "--",
        ])
        .args(args)
        .output()
        .expect("setpriv")
}

#[test]
fn the_user_cannot_read_the_config_or_the_shims_memory() {
    let s = System::start(Options::default());
    let carol = s.user("manualcarol");
    // The proxy sshd's own view of /etc/duo_push/duo_push.conf (its /etc overlay's upper layer).
    let conf = s.proxy.dir().join("etc-upper/duo_push/duo_push.conf");
    assert!(conf.exists(), "{}", conf.display());
    let conf_text = conf.to_str().unwrap();
    let denied = as_user(carol.uid, carol.gid, &["cat", conf_text]);
    assert!(!denied.status.success(), "the user read the config!");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"));
    // The same command with the shim's group succeeds: the test can tell the difference.
    let allowed = as_user(carol.uid, s.shim_gid, &["cat", conf_text]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    // Approve the vault push by hand, hold the target push, and look at the running shim.
    let session = s.client("manualcarol").args(["web01", "true"]).spawn();
    let vault = s.mock.wait_for_pending(30);
    s.mock.approve(vault["txid"].as_str().unwrap());
    let pending = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = s
                .mock
                .pending()
                .into_iter()
                .find(|p| p["pushinfo"]["hop"] == "target")
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "no target push: {:?}",
                s.mock.pushes()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let pid = shim_pid(carol.uid).expect("the shim process");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let gids = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    let gids: Vec<&str> = gids.split_whitespace().skip(1).collect();
    assert!(
        gids.iter().all(|g| *g == carol.gid.to_string()),
        "the group privilege is dropped before the push: {gids:?}"
    );
    let environ = format!("/proc/{pid}/environ");
    let mem = as_user(carol.uid, carol.gid, &["cat", &environ]);
    assert!(
        !mem.status.success(),
        "the user could read the non-dumpable shim's /proc/PID/environ"
    );
    s.mock.deny(pending["txid"].as_str().unwrap());
    let run = session.finish(30);
    assert_eq!(run.status, Some(1), "{run}");
    assert_eq!(s.target.connections_seen(), 0);
}

/// The host pid of a `duo-proxy-shim` process of `uid`.
fn shim_pid(uid: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let real_uid = status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse::<u32>().ok());
            if comm.trim() == "duo-proxy-shim" && real_uid == Some(uid) {
                return Some(pid);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_environment_cannot_reach_the_shim_or_its_ssh() {
    let s = System::start(Options::default());
    // A library that, when preloaded, appends the name of the program it was loaded into.
    let work = s.lab.root().join("files").join("preload");
    fs::create_dir_all(&work).unwrap();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = work.join("loaded-into");
    let source = work.join("evil.c");
    let library = work.join("evil.so");
    fs::write(
        &source,
        format!(
            "#define _GNU_SOURCE\n#include <errno.h>\n#include <stdio.h>\n\
             __attribute__((constructor)) static void evil(void) {{\n\
             FILE *f = fopen(\"{}\", \"a\"); if (f) {{ fprintf(f, \"%s\\n\", program_invocation_short_name); fclose(f); }} }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let cc = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("gcc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    fs::set_permissions(&library, fs::Permissions::from_mode(0o755)).unwrap();
    let loaded_into = || fs::read_to_string(&marker).unwrap_or_default();
    // Sanity: the library does run when preloaded into an ordinary program of the user.
    let alice = s.user("alice");
    let sane = as_user(
        alice.uid,
        alice.gid,
        &[
            "env",
            &format!("LD_PRELOAD={}", library.display()),
            "/bin/true",
        ],
    );
    assert!(sane.status.success());
    assert_eq!(
        loaded_into(),
        "true\n",
        "the test library does not work; the test would prove nothing"
    );
    fs::remove_file(&marker).unwrap();

    let set_env = format!(
        "LD_PRELOAD={} http_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 LANG=C.UTF-8",
        library.display()
    );
    // sshd does pass these to the session (AcceptEnv): a plain sshd with the same AcceptEnv
    // shows them. This is what reaches the shim.
    let plain = s.lab.start_sshd(
        SshdSpec::named("plain").config("AcceptEnv LANG LC_* LD_PRELOAD http_proxy HTTPS_PROXY\n"),
    );
    let seen = SshClient::new(&plain, "alice")
        .password(&password_of("alice"))
        .option("SetEnv", &set_env)
        .args(["env"])
        .run();
    assert!(seen.success(), "{seen}");
    assert!(
        seen.stdout.contains("LD_PRELOAD=") && seen.stdout.contains("http_proxy="),
        "{seen}"
    );
    let _ = fs::remove_file(&marker);

    let run = s
        .client("alice")
        .option("SetEnv", &set_env)
        .args(["web01", "env"])
        .run();
    assert!(run.success(), "{run}\n{}", s.proxy.log_text());
    // The target sees the shim's ssh child's environment (SendEnv * / AcceptEnv *).
    assert!(!run.stdout.contains("LD_PRELOAD"), "{run}");
    assert!(!run.stdout.contains("http_proxy"), "{run}");
    assert!(!run.stdout.contains("HTTPS_PROXY"), "{run}");
    assert!(
        run.stdout.contains("LANG=C.UTF-8"),
        "LANG is allowed: {run}"
    );
    // The user's login shell (which runs the ForceCommand) may load it; neither the setgid
    // shim nor its ssh child may.
    let programs = loaded_into();
    assert!(
        !programs
            .lines()
            .any(|p| p == "ssh" || p.starts_with("duo-proxy-shi")),
        "LD_PRELOAD reached the shim or its ssh: {programs:?}"
    );
    assert_eq!(
        s.hops("alice"),
        ["vault", "target"],
        "http_proxy did not divert Duo calls"
    );
}

#[test]
fn check_validates_the_config_and_calls_duo() {
    let s = System::start(Options::default());
    // As root, inside the proxy's view of /etc (the lab namespace has the same files).
    let shim = s.lab.root().join("files/duo-proxy-shim");
    let out = s
        .lab
        .command_in_namespace(&shim)
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ok: configuration /etc/duo_push/duo_push.conf"),
        "{text}"
    );
    assert!(text.contains("web01"), "{text}");
    assert!(text.contains("ok: Duo /auth/v2/check"), "{text}");
    // --config is refused for a non-root user (the shim is setgid).
    let alice = s.user("alice");
    let out = s
        .lab
        .command_in_namespace(Path::new("/usr/bin/setpriv"))
        .args([
            &format!("--reuid={}", alice.uid),
            &format!("--regid={}", alice.gid),
            "--clear-groups",
        ])
        .arg(&shim)
        .args(["check", "--config", "/etc/shadow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only honoured for root"));
}
