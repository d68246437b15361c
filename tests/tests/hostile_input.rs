//! Hostile input through the real binaries (hardening issue, part 3): user names through
//! `pam_duo_push.so` (pam-driver and pamtester in the lab), target specs through
//! `duo-proxy-shim` behind a real sshd, configuration files through `Config::load` and the
//! module, a client-controlled environment (HOME, PATH, LD_PRELOAD, http_proxy) through the
//! shim, and terminal escapes in Duo's `status_msg`.
//!
//! Every case must end in a clear refusal or denial (or, for input that is merely unusual, the
//! exact value passed on as data), with nothing executed and no log line an attacker could
//! forge: every syslog line of ours is printable ASCII, one datagram is one line, and it parses
//! as `key=value` pairs in which the attacker's text stays inside one quoted value.
//!
//! What the unit and existing end-to-end tests already cover is not repeated here: shapes of
//! names in `proxy_shim::command`, INI details in `common/tests/config_parse.rs`, file modes in
//! `pam_module.rs`, `LD_PRELOAD`/`http_proxy` through `AcceptEnv` in `shim_e2e.rs`.
//! Needs root (the lab's namespaces).

#[path = "pam_support.rs"]
mod pam_support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use duo_push_common::config::Config;
use duo_push_tests::lab::{
    Lab, MockDuo, MockOpts, PamConfDir, PamDriver, ProxyWorld, SshClient, Sshd, SshdSpec,
};
use pam_support::*;

// Log lines ---------------------------------------------------------------------------------

/// The `key=value` pairs of one of our syslog lines (after `<PRI>TAG[PID]: ` and an optional
/// `pam_duo_push(...): ` prefix), or an error saying why it does not parse.
fn log_pairs(line: &str) -> Result<Vec<(String, String)>, String> {
    let (_, rest) = line
        .split_once("]: ")
        .ok_or_else(|| format!("no syslog frame: {line:?}"))?;
    let body = match rest.strip_prefix("pam_duo_push(") {
        Some(after) => after
            .split_once("): ")
            .map(|(_, body)| body)
            .ok_or_else(|| format!("bad module prefix: {line:?}"))?,
        None => rest,
    };
    let mut pairs = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.next_if_eq(&' ').is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ' ') {
            key.push(c);
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("not key=value at {key:?}: {line:?}"));
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err(format!("dangling escape: {line:?}")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quote: {line:?}")),
                }
            }
            if chars.peek().is_some_and(|c| *c != ' ') {
                return Err(format!("text after a quoted value: {line:?}"));
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                if c == '"' {
                    return Err(format!("quote inside an unquoted value: {line:?}"));
                }
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

/// Asserts the invariants of every line of ours: printable ASCII only (so no newline, CR, ESC,
/// DEL or raw UTF-8), `key=value` syntax, every key at most once, and `needle` (an attacker's
/// text) never starts a key.
fn assert_clean_log_lines(lines: &[String], needle: &str, context: &str) {
    for line in lines {
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{context}: a log line with a control or non-ASCII byte: {line:?}"
        );
        let pairs = log_pairs(line).unwrap_or_else(|e| panic!("{context}: {e}"));
        let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        let total = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), total, "{context}: a repeated key in {line:?}");
        if !needle.is_empty() {
            assert!(
                !pairs.iter().any(|(k, _)| k.contains(needle)),
                "{context}: attacker text became a key in {line:?}"
            );
        }
    }
}

/// Our lines (module and shim) received by `all` after the first `skip`.
fn our_lines(all: &[String], skip: usize) -> Vec<String> {
    all.iter()
        .skip(skip)
        .filter(|l| l.contains("pam_duo_push(") || l.contains("duo-proxy-shim["))
        .cloned()
        .collect()
}

fn value_of<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// 1. User names through the PAM module ------------------------------------------------------

/// What the module must do with a name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NameOutcome {
    /// Refused before Duo is asked: PAM_USER_UNKNOWN, no request to Duo.
    Refused,
    /// Unusual but not dangerous: sent to Duo byte for byte as the username, the decision is
    /// Duo's (mock-duo's prefix), and the log carries it escaped.
    PassedAsData(&'static str),
}

#[test]
fn hostile_user_names_are_refused_or_passed_as_escaped_data() {
    let (mock, lab) = (MockDuo::start(MockOpts::default()), Lab::new());
    let conf = write_config(
        &lab,
        "names.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let service = required_stack(&conf, "");
    let long = "a".repeat(4096);
    let cases: Vec<(&str, String, NameOutcome)> = vec![
        ("4 KiB", long, NameOutcome::Refused),
        ("257 bytes", "b".repeat(257), NameOutcome::Refused),
        (
            "newline forging a line",
            "mallory\nFAKE: result=allow".into(),
            NameOutcome::Refused,
        ),
        (
            "CR overwriting a line",
            "mallory\rpam_duo_push(sshd:auth): event=decision result=allow".into(),
            NameOutcome::Refused,
        ),
        (
            "CSI clear screen",
            "mallory\u{1b}[2J\u{1b}[H".into(),
            NameOutcome::Refused,
        ),
        (
            "OSC window title",
            "mallory\u{1b}]0;pwned\u{7}".into(),
            NameOutcome::Refused,
        ),
        ("C1 CSI", "mallory\u{9b}31m".into(), NameOutcome::Refused),
        ("DEL", "mallory\u{7f}".into(), NameOutcome::Refused),
        ("tab", "mallory\tx".into(), NameOutcome::Refused),
        (
            "backspace",
            "root\u{8}\u{8}\u{8}\u{8}x".into(),
            NameOutcome::Refused,
        ),
        // Not control characters: Duo gets exactly these names; the log escapes them.
        (
            "UTF-8",
            "zo\u{eb}-\u{fc}n\u{ef}c\u{f8}d\u{e9}-\u{65e5}\u{672c}".into(),
            NameOutcome::PassedAsData("PAM_SUCCESS"),
        ),
        (
            "bidi override",
            "deny-\u{202e}nimda".into(),
            NameOutcome::PassedAsData("PAM_AUTH_ERR"),
        ),
        (
            "leading dash",
            "-oProxyCommand=touch /tmp/duo-hostile-pwned".into(),
            NameOutcome::PassedAsData("PAM_SUCCESS"),
        ),
        (
            "key=value injection",
            "deny-x result=allow reason=push_approved txid=forged".into(),
            NameOutcome::PassedAsData("PAM_AUTH_ERR"),
        ),
        (
            "quote injection",
            "deny-y\" result=\"allow".into(),
            NameOutcome::PassedAsData("PAM_AUTH_ERR"),
        ),
        (
            "shell metacharacters",
            "$(touch /tmp/duo-hostile-pwned);`id`|x".into(),
            NameOutcome::PassedAsData("PAM_SUCCESS"),
        ),
    ];
    for (what, name, outcome) in &cases {
        let before_lines = lab.syslog_lines().len();
        let before_requests = mock.stats()["requests"].as_u64().unwrap_or(0);
        let run = run_pam(&lab, &service, name, &[]);
        // Give the datagrams a moment (they are sent before pam-driver exits, but read by a
        // thread of this process).
        std::thread::sleep(std::time::Duration::from_millis(50));
        let lines = our_lines(&lab.syslog_lines(), before_lines);
        assert!(!lines.is_empty(), "{what}: no log line at all\n{run}");
        assert_clean_log_lines(&lines, "FAKE", what);
        for l in &run.conv_lines {
            assert!(
                !l.contains(['\u{1b}', '\u{9b}', '\u{7}']),
                "{what}: raw escape in the conversation: {l:?}"
            );
        }
        match outcome {
            NameOutcome::Refused => {
                assert_eq!(run.code_name, "PAM_USER_UNKNOWN", "{what}: {run}");
                let after = mock.stats()["requests"].as_u64().unwrap_or(0);
                assert_eq!(after, before_requests, "{what}: Duo was asked");
                assert!(
                    lines.iter().any(|l| l.contains("refusing user name")),
                    "{what}: {lines:#?}"
                );
            }
            NameOutcome::PassedAsData(code) => {
                assert_eq!(run.code_name, *code, "{what}: {run}");
                let pushes = pushes_of(&mock, name);
                assert_eq!(pushes.len(), 1, "{what}: {:?}", mock.pushes());
                // The decision line names the real result once, and the name sits in one
                // quoted `user` value.
                let decision = lines
                    .iter()
                    .find(|l| l.contains("event=decision"))
                    .unwrap_or_else(|| panic!("{what}: no decision in {lines:#?}"));
                let pairs = log_pairs(decision).unwrap();
                let expected = if *code == "PAM_SUCCESS" {
                    "allow"
                } else {
                    "deny"
                };
                assert_eq!(value_of(&pairs, "result"), Some(expected), "{decision}");
                let user = value_of(&pairs, "user").unwrap();
                assert!(
                    decision.contains(&format!("user=\"{user}\"")),
                    "{what}: the user value is not quoted: {decision}"
                );
            }
        }
    }
    assert!(!Path::new("/tmp/duo-hostile-pwned").exists());
}

/// A PAM service file `name` in the lab's `/etc/pam.d` (for pamtester, which has no confdir).
fn pamtester_service(lab: &Lab, name: &str, text: &str) {
    let pam_d = lab.etc_upper().join("pam.d");
    fs::create_dir_all(&pam_d).unwrap();
    let service = pam_d.join(name);
    fs::write(&service, text).unwrap();
    fs::set_permissions(&service, fs::Permissions::from_mode(0o644)).unwrap();
}

/// pamtester in the lab namespace, with a user name of arbitrary bytes.
fn pamtester(lab: &Lab, service: &str, user: &[u8]) -> Output {
    let mut cmd = lab.command_in_namespace(Path::new("/usr/bin/pamtester"));
    cmd.args(["-I", &format!("rhost={RHOST}"), service])
        .arg(OsStr::from_bytes(user))
        .arg("authenticate")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd.output().expect("run pamtester in the lab namespace")
}

#[test]
fn empty_and_invalid_utf8_user_names_are_denied_without_duo() {
    // pam-driver takes only non-empty UTF-8 names; pamtester passes any bytes to pam_start.
    let (mock, lab) = (MockDuo::start(MockOpts::default()), Lab::new());
    let conf = write_config(
        &lab,
        "bytes.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    pamtester_service(&lab, "duo-hostile", &required_stack(&conf, ""));
    let cases: [(&str, &[u8]); 3] = [
        ("empty", b""),
        ("invalid UTF-8", b"mallory\xff\xfe"),
        ("invalid UTF-8 with ESC", b"\xc3\x28\x1b[2Jroot"),
    ];
    for (what, name) in cases {
        let before = lab.syslog_lines().len();
        let out = pamtester(&lab, "duo-hostile", name);
        let text = format!(
            "exit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{what}: {text}");
        assert!(
            !text.contains("successfully authenticated"),
            "{what}: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        let lines = our_lines(&lab.syslog_lines(), before);
        assert!(!lines.is_empty(), "{what}: the module logged nothing");
        assert_clean_log_lines(&lines, "", what);
    }
    assert_eq!(mock.stats()["requests"], 0, "Duo was asked");
    assert!(mock.pushes().is_empty());
}

// 2. Configuration files --------------------------------------------------------------------

#[test]
fn hostile_config_files_are_refused_naming_file_and_line_by_load_and_the_module() {
    let (mock, lab) = (MockDuo::start(MockOpts::default()), Lab::new());
    let good = config_text(&mock, "", "force_mfa = yes");
    let good_lines = good.lines().count();
    let huge_line = format!("{good}; {}\n", "x".repeat(1024 * 1024));
    // 1-based line numbers of two lines of `good`.
    let policy_line = good.lines().position(|l| l == "[policy]").unwrap() + 1;
    let force_line = good.lines().position(|l| l == "force_mfa = yes").unwrap() + 1;
    // (what, bytes, expected line in the error, a word of the message)
    let mut cases: Vec<(&str, Vec<u8>, Option<usize>, &str)> = vec![
        (
            "invalid UTF-8 in a value",
            good.replacen("[policy]", "[policy]\nshim_group = du@o", 1)
                .into_bytes()
                .into_iter()
                .map(|b| if b == b'@' { 0xff } else { b })
                .collect(),
            Some(policy_line + 1),
            "UTF-8",
        ),
        (
            "a 1 MiB line",
            huge_line.into_bytes(),
            None,
            "larger than the limit",
        ),
        (
            "a 100 KiB line",
            format!("{good}; {}\n", "y".repeat(100 * 1024)).into_bytes(),
            Some(good_lines + 1),
            "longer than the limit",
        ),
        (
            "a duplicate section",
            format!("{good}[duo]\n").into_bytes(),
            Some(good_lines + 1),
            "duplicate section",
        ),
        (
            "a duplicate key (skey twice, the second one an attacker's)",
            good.replacen(
                "[policy]",
                "skey = 0000000000000000000000000000000000000000\n[policy]",
                1,
            )
            .into_bytes(),
            Some(policy_line),
            "duplicate key",
        ),
        (
            "a BOM in the middle",
            good.replacen("[policy]", "\u{feff}[policy]", 1)
                .into_bytes(),
            Some(policy_line),
            "",
        ),
        (
            "a NUL byte",
            good.replacen("[policy]", "[policy]\nforce_mfa\0 = no", 1)
                .into_bytes(),
            Some(policy_line + 1),
            "",
        ),
        (
            "a lone CR (old Mac line end hiding a line)",
            good.replacen("force_mfa = yes", "force_mfa = yes\rforce_mfa = no", 1)
                .into_bytes(),
            Some(force_line),
            "",
        ),
        (
            "an escape sequence in a value",
            good.replacen("[policy]", "[policy]\nshim_group = \u{1b}]0;x\u{7}", 1)
                .into_bytes(),
            Some(policy_line + 1),
            "",
        ),
    ];
    cases.push((
        "a duplicate force_mfa",
        good.replacen("force_mfa = yes", "force_mfa = yes\nforce_mfa = no", 1)
            .into_bytes(),
        Some(force_line + 1),
        "duplicate key",
    ));

    for (i, (what, bytes, line, word)) in cases.iter().enumerate() {
        let path = lab.root().join("files").join(format!("hostile-{i}.conf"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        chown(&path, Some(0), Some(0)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

        // Config::load: an error naming the file and (when it is about a line) the line.
        let e = match Config::load(&path) {
            Ok(_) => panic!("{what}: the file was accepted"),
            Err(e) => e,
        };
        assert!(!e.fail_open_allowed, "{what}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&path.display().to_string()),
            "{what}: {shown}"
        );
        assert_eq!(e.line, *line, "{what}: {shown}");
        if let Some(n) = line {
            assert!(
                shown.contains(&format!("{}:{n}: ", path.display())),
                "{what}: {shown}"
            );
        }
        assert!(shown.contains(word), "{what}: {shown}");
        assert!(
            !shown.contains(mock.skey()),
            "{what}: the skey is in the message"
        );
        assert!(shown.len() < 1024, "{what}: a {} byte message", shown.len());

        // The module: denial, and a log line naming the file and line.
        let before = lab.syslog_lines().len();
        let run = run_pam(&lab, &required_stack(&path, ""), "kate", &[]);
        assert_eq!(run.code_name, "PAM_AUTH_ERR", "{what}: {run}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let lines = our_lines(&lab.syslog_lines(), before);
        assert_clean_log_lines(&lines, "", what);
        let problem = lines
            .iter()
            .find(|l| l.contains("event=config_problem"))
            .unwrap_or_else(|| panic!("{what}: {lines:#?}"));
        let needle = match line {
            Some(n) => format!("{}:{n}: ", path.display()),
            None => path.display().to_string(),
        };
        assert!(problem.contains(&needle), "{what}: {problem}");
    }
    assert!(pushes_of(&mock, "kate").is_empty());

    // BOM at the start and CRLF line ends are duo_unix syntax: accepted.
    let crlf = format!("\u{feff}{}", good.replace('\n', "\r\n"));
    let path = write_config(&lab, "bom-crlf.conf", &crlf);
    let config = Config::load(&path).unwrap_or_else(|e| panic!("BOM + CRLF: {e}"));
    assert_eq!(config.duo.skey.expose_str(), mock.skey());
    let run = run_pam(&lab, &required_stack(&path, ""), "kate", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
}

// 3. Target specs and the environment through the shim ---------------------------------------

const PROXY_NAME: &str = "vault.test";

/// mock-duo, a target sshd and a proxy sshd whose ForceCommand is the setgid shim.
struct Proxy {
    mock: MockDuo,
    lab: Lab,
    target: Sshd,
    proxy: Sshd,
    /// A world-writable directory for markers and the attacker's files.
    work: PathBuf,
}

impl Proxy {
    /// `sshd_extra`: added to the documented proxy sshd_config (e.g. a wider `AcceptEnv`).
    fn start(sshd_extra: &str) -> Proxy {
        let mock = MockDuo::start(MockOpts::default());
        let world = ProxyWorld::spec()
            .proxy_name(PROXY_NAME)
            .user("alice", "pw-alice", &["ops"])
            .target_sshd(SshdSpec::named("target").config("AcceptEnv *\n"))
            .send_all_env()
            .target("web01", "127.0.0.1", "alice")
            .sshd_config(&format!(
                "DisableForwarding yes\nPermitUserRC no\nPermitTTY yes\n\
                 AuthenticationMethods keyboard-interactive\nKbdInteractiveAuthentication yes\n\
                 PasswordAuthentication no\nPubkeyAuthentication no\n{sshd_extra}"
            ))
            .start(&mock);
        let work = world.lab.root().join("files").join("hostile");
        fs::create_dir_all(&work).unwrap();
        fs::set_permissions(&work, fs::Permissions::from_mode(0o1777)).unwrap();
        Proxy {
            mock,
            lab: world.lab,
            target: world.target,
            proxy: world.proxy,
            work,
        }
    }

    fn client(&self) -> SshClient {
        SshClient::new(&self.proxy, "alice")
            .password("pw-alice")
            .timeout_secs(60)
    }

    fn hops(&self) -> Vec<String> {
        self.mock
            .pushes()
            .iter()
            .filter(|p| p["username"] == "alice")
            .map(|p| p["pushinfo"]["hop"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

/// Runs ssh as the lab client would, with `raw` (arbitrary bytes) as the remote command.
fn run_raw(p: &Proxy, raw: &[u8]) -> Output {
    let mut cmd = p.client().command();
    cmd.arg("--").arg(OsStr::from_bytes(raw));
    cmd.stdin(std::process::Stdio::null());
    cmd.output().expect("ssh")
}

#[test]
fn hostile_target_specs_are_refused_before_any_push_and_nothing_runs() {
    let p = Proxy::start("");
    let marker = p.work.join("pwned");
    let m = marker.display().to_string();
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "option injection".into(),
            format!("-oProxyCommand=touch {m}").into_bytes(),
            "not a valid target name",
        ),
        (
            "option injection with a login".into(),
            format!("-lroot@web01 touch {m}").into_bytes(),
            "not a valid",
        ),
        (
            "login option injection".into(),
            format!("-oProxyCommand=x@web01 touch {m}").into_bytes(),
            "not a valid login name",
        ),
        (
            "connect option injection".into(),
            format!("connect -oProxyCommand=touch\t{m}").into_bytes(),
            "usage: connect",
        ),
        (
            "connect with a dash host".into(),
            b"connect -web01".to_vec(),
            "not a valid target name",
        ),
        (
            "semicolon".into(),
            format!("web01;touch {m}").into_bytes(),
            "not a valid target name",
        ),
        (
            "pipe".into(),
            format!("web01|touch {m}").into_bytes(),
            "not a valid target name",
        ),
        (
            "and".into(),
            format!("web01&&touch {m}").into_bytes(),
            "not a valid target name",
        ),
        (
            "subshell".into(),
            format!("$(touch {m})").into_bytes(),
            "not a valid target name",
        ),
        (
            "backticks".into(),
            format!("`touch {m}`").into_bytes(),
            "not a valid target name",
        ),
        (
            "redirect".into(),
            format!("web01>{m}").into_bytes(),
            "not a valid target name",
        ),
        ("glob".into(), b"web0*".to_vec(), "not a valid target name"),
        ("dot dot".into(), b"..".to_vec(), "not a valid target name"),
        (
            "path traversal".into(),
            b"../../etc/passwd".to_vec(),
            "not a valid target name",
        ),
        (
            "dots in a name".into(),
            b"web01/../web01".to_vec(),
            "not a valid target name",
        ),
        (
            "dot dot in connect".into(),
            b"connect ..:22".to_vec(),
            "not a valid target name",
        ),
        (
            "very long name".into(),
            "w".repeat(4000).into_bytes(),
            "not a valid target name",
        ),
        (
            "very long command".into(),
            format!("web01 {}", "x".repeat(40 * 1024)).into_bytes(),
            "command longer than",
        ),
        (
            "NUL-free binary".into(),
            (1u8..=255).filter(|b| *b != b' ').collect(),
            "not valid UTF-8",
        ),
        (
            "binary as the remote command".into(),
            [b"web01 ".as_slice(), &[0xde, 0xad, 0xbe, 0xef]].concat(),
            "not valid UTF-8",
        ),
        (
            "ESC in the name".into(),
            b"web01\x1b[2J".to_vec(),
            "control character",
        ),
        (
            "ESC in the remote command".into(),
            b"web01 echo \x1b]0;pwned\x07".to_vec(),
            "control character",
        ),
        (
            "newline in the name".into(),
            format!("web01\ntouch {m}").into_bytes(),
            "control character",
        ),
        ("CR".into(), b"web01\rlist".to_vec(), "control character"),
        (
            "newline forging a log line".into(),
            b"x\nFAKE: result=allow".to_vec(),
            "control character",
        ),
        (
            "empty login".into(),
            b"@web01".to_vec(),
            "not a valid login name",
        ),
        ("port zero".into(), b"web01:0".to_vec(), "not a valid port"),
        (
            "port overflow".into(),
            b"web01:65536".to_vec(),
            "not a valid port",
        ),
        (
            "negative port".into(),
            b"web01:-22".to_vec(),
            "not a valid port",
        ),
        (
            "list with arguments".into(),
            format!("list;touch {m}").into_bytes(),
            "not a valid target name",
        ),
        (
            "list with words".into(),
            format!("list touch {m}").into_bytes(),
            "takes no arguments",
        ),
        (
            "UTF-8 look-alike".into(),
            "w\u{435}b01".into(),
            "not a valid target name",
        ),
        (
            "bidi override".into(),
            "\u{202e}10bew".into(),
            "not a valid target name",
        ),
        (
            "key=value injection".into(),
            b"x=1 result=allow".to_vec(),
            "not a valid target name",
        ),
    ];
    for (what, raw, message) in &cases {
        let before = p.proxy.syslog_lines().len();
        let out = run_raw(&p, raw);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: stdout {stdout}\nstderr {stderr}\n{}",
            p.proxy.log_text()
        );
        assert!(stderr.contains(message), "{what}: {stderr}");
        assert!(stderr.contains("refused"), "{what}: {stderr}");
        // What the user's terminal gets back has no raw control characters of theirs.
        for b in out.stderr.iter().chain(out.stdout.iter()) {
            assert!(
                *b == b'\n' || *b == b'\r' || (0x20..0x7f).contains(b) || *b >= 0x80,
                "{what}: control byte {b:#04x} echoed: {stderr:?}"
            );
        }
        assert!(
            !stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'),
            "{what}: {stderr:?}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let lines = loop {
            let lines = our_lines(&p.proxy.syslog_lines(), before);
            if lines
                .iter()
                .any(|l| l.contains("refused") && l.contains("user=alice"))
            {
                break lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: no refusal line in {lines:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_clean_log_lines(&lines, "FAKE", what);
    }
    assert_eq!(
        p.hops(),
        vec!["vault"; cases.len()],
        "only vault pushes, no target push"
    );
    assert_eq!(p.target.connections_seen(), 0, "{}", p.target.log_text());
    assert!(!marker.exists(), "a marker command ran");
}

/// A hostile `~`: an ssh config that runs a marker command, and a fake `ssh` and `sh` in a
/// `bin` directory that would too.
fn hostile_home(p: &Proxy, marker: &Path) -> (PathBuf, PathBuf) {
    let home = p.work.join("evil-home");
    let bin = p.work.join("evil-bin");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        home.join(".ssh/config"),
        format!(
            "Host *\n    ProxyCommand /bin/sh -c 'echo home-config >> {m}'\n    \
             PermitLocalCommand yes\n    LocalCommand /bin/sh -c 'echo local-command >> {m}'\n",
            m = marker.display()
        ),
    )
    .unwrap();
    for program in ["ssh", "sh", "bash", "env", "nc"] {
        let path = bin.join(program);
        fs::write(
            &path,
            format!(
                "#!/bin/sh\necho path-{program} >> {}\nexit 0\n",
                marker.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The user owns these, as an attacker would.
    let alice = p.lab.user("alice");
    for dir in [&home, &bin] {
        Command::new("chown")
            .args(["-R", &format!("{}:{}", alice.uid, alice.gid)])
            .arg(dir)
            .status()
            .unwrap();
    }
    fs::set_permissions(home.join(".ssh/config"), fs::Permissions::from_mode(0o600)).unwrap();
    (home, bin)
}

#[test]
fn sshd_itself_overrides_home_and_path_sent_by_the_client() {
    // Why the HOME/PATH case below goes through ~/.ssh/environment: a client's SetEnv of HOME
    // and PATH, even when AcceptEnv lists them, is overwritten by sshd with the passwd home and
    // its default PATH. (LD_PRELOAD and http_proxy through AcceptEnv: shim_e2e.rs.)
    let lab = Lab::new();
    let alice = lab.add_user("alice", Some("pw-alice"), &[]);
    let plain = lab.start_sshd(SshdSpec::named("plain").config("AcceptEnv LANG LC_* HOME PATH\n"));
    let seen = SshClient::new(&plain, "alice")
        .password("pw-alice")
        .option(
            "SetEnv",
            "HOME=/tmp/evil-home PATH=/tmp/evil-bin LANG=C.UTF-8",
        )
        .args(["/usr/bin/printenv HOME PATH LANG"])
        .run();
    assert!(seen.success(), "{seen}");
    assert!(!seen.stdout.contains("evil"), "{seen}");
    assert!(
        seen.stdout.contains(&alice.home.display().to_string()),
        "{seen}"
    );
    // The same sshd does take variables it is not overriding: the client's SetEnv arrived.
    assert!(seen.stdout.contains("C.UTF-8"), "{seen}");
}

/// The hostile environment file's lines.
fn hostile_environment(home: &Path, bin: &Path, marker: &Path) -> String {
    format!(
        "HOME={}\nPATH={}:/usr/bin:/bin\nhttp_proxy=http://127.0.0.1:9\n\
         HTTPS_PROXY=http://127.0.0.1:9\nALL_PROXY=http://127.0.0.1:9\n\
         SSL_CERT_FILE={m}\nRUST_LOG=trace\nLD_LIBRARY_PATH={b}\nMALLOC_CHECK_=3\n",
        home.display(),
        bin.display(),
        m = marker.display(),
        b = bin.display()
    )
}

#[test]
fn a_users_ssh_environment_file_cannot_reach_the_shim_or_its_ssh() {
    // PermitUserEnvironment (off in the documented config) lets a user set the session's
    // environment from ~/.ssh/environment, and there HOME and PATH do win over sshd's.
    let p = Proxy::start("PermitUserEnvironment yes\n");
    let marker = p.work.join("ran");
    let (home, bin) = hostile_home(&p, &marker);
    let alice = p.lab.user("alice");
    let env_file = alice.home.join(".ssh/environment");
    fs::create_dir_all(env_file.parent().unwrap()).unwrap();
    fs::write(&env_file, hostile_environment(&home, &bin, &marker)).unwrap();
    chown(&env_file, Some(alice.uid), Some(alice.gid)).unwrap();

    // Sanity: a plain sshd with PermitUserEnvironment hands all of it to the session, so the
    // shim really receives it below.
    let plain = p
        .lab
        .start_sshd(SshdSpec::named("plain").config("PermitUserEnvironment yes\n"));
    let seen = SshClient::new(&plain, "alice")
        .password("pw-alice")
        .args(["/usr/bin/env"])
        .run();
    assert!(seen.success(), "{seen}");
    for word in [
        format!("HOME={}", home.display()),
        format!("PATH={}", bin.display()),
        "http_proxy=".to_owned(),
    ] {
        assert!(
            seen.stdout.contains(&word),
            "sshd did not pass {word}; the test would prove nothing: {seen}"
        );
    }

    let run = p.client().args(["web01", "/usr/bin/env"]).run();
    assert!(run.success(), "{run}\n{}", p.proxy.log_text());
    // The target sees the shim's ssh child's environment (SendEnv * / AcceptEnv *).
    for word in [
        "evil-home",
        "evil-bin",
        "http_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "SSL_CERT_FILE",
        "RUST_LOG",
        "LD_LIBRARY_PATH",
        "MALLOC_CHECK_",
    ] {
        assert!(
            !run.stdout.contains(word),
            "{word} reached the target: {run}"
        );
    }
    let ran = fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        !ran.contains("path-ssh") && !ran.contains("home-config") && !ran.contains("local-command"),
        "a program from the user's PATH or ~/.ssh/config ran: {ran:?}"
    );
    // http_proxy to a closed port did not divert the Duo calls: both pushes happened.
    assert_eq!(p.hops(), ["vault", "target"]);
    assert_eq!(p.target.connections_seen(), 1);

    // connect: no child process at all; the relay works the same.
    let run = p
        .client()
        .args(["connect", &format!("web01:{}", p.target.port())])
        .stdin(b"SSH-2.0-hostile-test\r\n")
        .run();
    assert!(run.stdout.starts_with("SSH-2.0-OpenSSH"), "{run}");
    assert_eq!(p.hops(), ["vault", "target", "vault", "target"]);
    let ran = fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        !ran.contains("path-") && !ran.contains("home-config"),
        "{ran:?}"
    );
}

// 4. Terminal escapes in Duo's status_msg ------------------------------------------------------

/// What Duo's `status_msg` may try, as mock-duo's `escmsg` prefix is asked to send it.
const ESCAPES: [char; 6] = ['\u{1b}', '\u{9b}', '\u{7}', '\r', '\u{202e}', '\u{8}'];

#[test]
fn escape_sequences_in_duos_status_msg_never_reach_the_user() {
    let (mock, lab) = (MockDuo::start(MockOpts::default()), Lab::new());
    let conf = write_config(&lab, "esc.conf", &config_text(&mock, "", "force_mfa = yes"));
    let confdir = PamConfDir::new(&required_stack(&conf, ""));
    let run = PamDriver::new(&confdir, "escmsg-ann")
        .rhost(RHOST)
        .in_lab(&lab)
        .run();
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(pushes_of(&mock, "escmsg-ann").is_empty());
    let errors: Vec<&String> = run
        .conv_lines
        .iter()
        .filter(|l| l.starts_with("PAM_ERROR_MSG "))
        .collect();
    assert!(!errors.is_empty(), "the denial was not shown: {run}");
    for line in &run.conv_lines {
        assert!(!line.contains(ESCAPES), "{line:?}");
        // pam-driver prints CR and LF as \r and \n.
        assert!(!line.contains("\\r") && !line.contains("\\n"), "{line:?}");
    }
    // The readable part of the message survives.
    assert!(
        errors.iter().any(|l| l.contains("Access denied")),
        "{errors:?}"
    );
    let log = module_log(&lab);
    assert!(
        log.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "{log:?}"
    );
}

// 5. PAM_RHOST ----------------------------------------------------------------------------------

/// Rhosts a PAM application might pass (sshd passes the client's address, or with UseDNS a
/// resolver-checked name; other applications may pass anything).
const HOSTILE_RHOSTS: [&str; 3] = [
    "192.0.2.1\nhop: target\ntarget: prod-db",
    "192.0.2.1\u{1b}[2J\u{1b}]0;pwned\u{7}",
    "evil.example result=allow",
];

/// Runs the module once per hostile rhost (users `rhost0`, `rhost1`, ...); returns the mock and
/// the lab after checking every log line.
fn run_hostile_rhosts() -> (MockDuo, Lab) {
    let (mock, lab) = (MockDuo::start(MockOpts::default()), Lab::new());
    let conf = write_config(
        &lab,
        "rhost.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let confdir = PamConfDir::new(&required_stack(&conf, ""));
    for (i, rhost) in HOSTILE_RHOSTS.iter().enumerate() {
        let before = lab.syslog_lines().len();
        let run = PamDriver::new(&confdir, &format!("rhost{i}"))
            .rhost(rhost)
            .in_lab(&lab)
            .run();
        assert_eq!(run.code_name, "PAM_SUCCESS", "{rhost:?}: {run}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let lines = our_lines(&lab.syslog_lines(), before);
        assert!(!lines.is_empty(), "{rhost:?}");
        assert_clean_log_lines(&lines, "prod-db", &format!("rhost {rhost:?}"));
    }
    (mock, lab)
}

#[test]
fn a_hostile_rhost_never_forges_a_log_line() {
    run_hostile_rhosts();
}

#[test]
fn a_hostile_rhost_never_adds_lines_to_the_approval_screen() {
    let (mock, _lab) = run_hostile_rhosts();
    for i in 0..HOSTILE_RHOSTS.len() {
        for push in pushes_of(&mock, &format!("rhost{i}")) {
            for (k, v) in push["pushinfo"].as_object().unwrap() {
                let v = v.as_str().unwrap_or_default();
                assert!(
                    !v.chars().any(char::is_control),
                    "pushinfo {k} carries control characters to the phone: {v:?}"
                );
            }
        }
    }
}
