//! The lab itself: a real sshd with a pam_unix stack in a private namespace, driven by the real
//! OpenSSH client. Needs root.

use std::fs;
use std::time::Duration;

use duo_push_tests::lab::{syslog_priority, EtcFile, Lab, SshClient, SshdSpec, LOG_AUTHPRIV};

fn sha256_of(path: &str) -> String {
    // Content and metadata: a changed mode or owner counts as a change too.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("sha256sum {path} && stat -c '%a %u %g %i' {path}"),
        ])
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tree_digest(dir: &str) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "find {dir} -xdev -printf '%p %m %u %g %s %T@\\n' | sort; \
                 find {dir} -xdev -type f -exec sha256sum {{}} + | sort"
            ),
        ])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_password_user_logs_in_and_a_wrong_password_is_refused() {
    let lab = Lab::new();
    let alice = lab.add_user("alice", Some("correct horse"), &["ops"]);
    let sshd = lab.start_sshd(SshdSpec::named("proxy"));

    let ok = SshClient::new(&sshd, &alice.name)
        .password("correct horse")
        .args(["id", "-un;", "id", "-Gn;", "echo", "$HOME"])
        .run();
    assert!(ok.success(), "{ok}\nsshd log:\n{}", sshd.log_text());
    let lines: Vec<&str> = ok.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"alice"), "{ok}");
    assert!(
        lines
            .get(1)
            .is_some_and(|g| g.split(' ').any(|g| g == "ops")),
        "{ok}"
    );
    assert_eq!(lines.get(2).copied(), alice.home.to_str(), "{ok}");
    assert_eq!(ok.prompts.len(), 1, "{ok}");

    let bad = SshClient::new(&sshd, &alice.name)
        .password("wrong")
        .args(["true"])
        .run();
    assert!(!bad.success(), "{bad}");
    assert_eq!(bad.status, Some(255), "{bad}");
    assert!(bad.stderr.contains("Permission denied"), "{bad}");
    assert!(
        sshd.wait_for_log("Failed password for alice", 5)
            || sshd.wait_for_log("Failed keyboard-interactive/pam for alice", 5),
        "{}",
        sshd.log_text()
    );
}

#[test]
fn a_key_only_user_logs_in_with_publickey_and_has_no_password() {
    let lab = Lab::new();
    let bob = lab.add_user("bob", None, &[]);
    let (key, public) = lab.user_keypair(&bob);
    lab.authorize_key(&bob, &public);
    let sshd = lab.start_sshd(SshdSpec::named("keys"));

    let ok = SshClient::new(&sshd, &bob.name)
        .identity(&key)
        .args(["echo", "key-ok"])
        .run();
    assert!(ok.success(), "{ok}\nsshd log:\n{}", sshd.log_text());
    assert_eq!(ok.stdout.trim(), "key-ok");
    assert!(ok.prompts.is_empty(), "{ok}");
    assert!(
        sshd.log_text().contains("Accepted publickey for bob"),
        "{}",
        sshd.log_text()
    );

    // Without the key the locked account cannot get in with any password.
    let no_key = SshClient::new(&sshd, &bob.name)
        .password("")
        .args(["true"])
        .run();
    assert!(!no_key.success(), "{no_key}");
}

#[test]
fn two_sshds_run_at_once_and_count_their_own_connections() {
    let lab = Lab::new();
    let carol = lab.add_user("carol", Some("pw-carol"), &[]);
    let first = lab.start_sshd(SshdSpec::named("one"));
    let second = lab.start_sshd(SshdSpec::named("two"));
    assert_ne!(first.port(), second.port());
    assert_eq!(first.connections_seen(), 0, "{}", first.log_text());
    assert_eq!(second.connections_seen(), 0);

    for sshd in [&first, &second] {
        let run = SshClient::new(sshd, &carol.name)
            .password("pw-carol")
            .args(["true"])
            .run();
        assert!(run.success(), "{run}");
    }
    let again = SshClient::new(&second, &carol.name)
        .password("pw-carol")
        .args(["true"])
        .run();
    assert!(again.success(), "{again}");
    assert_eq!(first.connections_seen(), 1, "{}", first.log_text());
    assert_eq!(second.connections_seen(), 2, "{}", second.log_text());
}

#[test]
fn the_dev_log_catcher_receives_pam_unix_lines_at_authpriv() {
    let lab = Lab::new();
    let dave = lab.add_user("dave", Some("pw-dave"), &[]);
    let sshd = lab.start_sshd(SshdSpec::named("syslog"));
    let run = SshClient::new(&sshd, &dave.name)
        .password("pw-dave")
        .args(["true"])
        .run();
    assert!(run.success(), "{run}");
    let line = sshd
        .wait_for_syslog("pam_unix(sshd:session): session opened for user dave", 10)
        .unwrap_or_else(|| panic!("no session line in {:?}", sshd.syslog_lines()));
    assert_eq!(
        syslog_priority(&line).map(|p| p.0),
        Some(LOG_AUTHPRIV),
        "{line}"
    );

    let bad = SshClient::new(&sshd, &dave.name)
        .password("nope")
        .args(["true"])
        .run();
    assert!(!bad.success(), "{bad}");
    assert!(
        sshd.wait_for_syslog("pam_unix(sshd:auth): authentication failure", 10)
            .is_some(),
        "{:?}",
        sshd.syslog_lines()
    );
    // Another sshd's catcher saw none of it.
    let other = lab.start_sshd(SshdSpec::named("quiet"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        other.syslog_lines().is_empty(),
        "{:?}",
        other.syslog_lines()
    );
}

#[test]
fn tt_gives_the_session_a_pty() {
    let lab = Lab::new();
    let erin = lab.add_user("erin", Some("pw-erin"), &[]);
    let sshd = lab.start_sshd(SshdSpec::named("pty"));
    let with = SshClient::new(&sshd, &erin.name)
        .password("pw-erin")
        .tty(true)
        .args(["tty"])
        .run();
    assert!(with.success(), "{with}\n{}", sshd.log_text());
    assert!(with.stdout.trim().starts_with("/dev/pts/"), "{with}");

    let without = SshClient::new(&sshd, &erin.name)
        .password("pw-erin")
        .args(["tty"])
        .run();
    assert!(without.stdout.contains("not a tty"), "{without}");
}

#[test]
fn an_interactive_shell_works_through_a_local_pty() {
    let lab = Lab::new();
    let frank = lab.add_user("frank", Some("pw-frank"), &[]);
    let sshd = lab.start_sshd(SshdSpec::named("interactive"));
    let mut session = SshClient::new(&sshd, &frank.name)
        .password("pw-frank")
        .local_pty(true)
        .spawn();
    session.send_line("PS1='READY> '");
    session.expect("READY> ", 15);
    session.send_line("echo sum-$((40+2)); tty");
    session.expect("sum-42", 10);
    session.expect("/dev/pts/", 10);
    session.send_line("exit 3");
    let run = session.finish(10);
    assert_eq!(run.status, Some(3), "{run}");
}

#[test]
fn sshd_config_extra_and_etc_files_take_effect() {
    let lab = Lab::new();
    let gina = lab.add_user("gina", Some("pw-gina"), &["jump"]);
    let hank = lab.add_user("hank", Some("pw-hank"), &[]);
    let spec = SshdSpec::named("custom")
        .config("AllowGroups jump\nMatch User gina\n    ForceCommand cat /etc/duo_push/hello\n")
        .etc_file(EtcFile::new(
            "duo_push/hello",
            "hello from the lab\n",
            0o640,
            0,
            gina.gid,
        ));
    let sshd = lab.start_sshd(spec);

    let forced = SshClient::new(&sshd, &gina.name)
        .password("pw-gina")
        .args(["true"])
        .run();
    assert!(forced.success(), "{forced}\n{}", sshd.log_text());
    assert_eq!(forced.stdout, "hello from the lab\n");
    let refused = SshClient::new(&sshd, &hank.name)
        .password("pw-hank")
        .args(["true"])
        .run();
    assert!(!refused.success(), "{refused}");
    assert!(!std::path::Path::new("/etc/duo_push/hello").exists());
}

#[test]
fn a_custom_pam_stack_replaces_pam_unix() {
    let lab = Lab::new();
    let ivy = lab.add_user("ivy", Some("pw-ivy"), &[]);
    // The right password, then a module that denies: the stack, not the password, decides.
    let deny_after_unix = "auth required pam_unix.so\nauth required pam_deny.so\n\
                           account required pam_permit.so\nsession required pam_permit.so\n";
    let sshd = lab.start_sshd(
        SshdSpec::named("denyall")
            .pam(deny_after_unix)
            .config("PasswordAuthentication no\n"),
    );
    let run = SshClient::new(&sshd, &ivy.name)
        .password("pw-ivy")
        .args(["true"])
        .run();
    assert!(!run.success(), "{run}");
    assert!(run.prompts.iter().any(|p| p.contains("Password")), "{run}");

    // A stack that permits everyone lets ivy in without any prompt.
    let permit = "auth required pam_permit.so\naccount required pam_permit.so\n\
                  session required pam_permit.so\n";
    let open = lab.start_sshd(
        SshdSpec::named("permit")
            .pam(permit)
            .config("PasswordAuthentication no\n"),
    );
    let run = SshClient::new(&open, &ivy.name).args(["echo", "in"]).run();
    assert!(run.success(), "{run}\n{}", open.log_text());
    assert!(run.prompts.is_empty(), "{run}");
}

#[test]
fn the_hosts_account_and_pam_files_are_unchanged_afterwards() {
    let files = ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"];
    let before: Vec<String> = files.iter().map(|f| sha256_of(f)).collect();
    let pam_before = tree_digest("/etc/pam.d");
    let records = ["/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog"];
    let records_before: Vec<String> = records.iter().map(|f| sha256_of(f)).collect();
    let run_sshd_before = std::path::Path::new("/run/sshd").exists();
    let dev_log_before = fs::symlink_metadata("/dev/log").is_ok();
    {
        let lab = Lab::new();
        let jack = lab.add_user("jack", Some("pw-jack"), &["staff2"]);
        let sshd = lab.start_sshd(SshdSpec::named("pristine"));
        let run = SshClient::new(&sshd, &jack.name)
            .password("pw-jack")
            .tty(true)
            .args(["true"])
            .run();
        assert!(run.success(), "{run}");
        let bad = SshClient::new(&sshd, &jack.name)
            .password("x")
            .args(["true"])
            .run();
        assert!(!bad.success());
        let passwd = fs::read_to_string("/etc/passwd").expect("passwd");
        assert!(
            !passwd.contains("jack:"),
            "the host's passwd must not see lab users"
        );
    }
    let after: Vec<String> = files.iter().map(|f| sha256_of(f)).collect();
    assert_eq!(before, after);
    assert_eq!(pam_before, tree_digest("/etc/pam.d"));
    let records_after: Vec<String> = records.iter().map(|f| sha256_of(f)).collect();
    assert_eq!(
        records_before, records_after,
        "login records must stay in the lab"
    );
    assert_eq!(dev_log_before, fs::symlink_metadata("/dev/log").is_ok());
    assert_eq!(run_sshd_before, std::path::Path::new("/run/sshd").exists());
}
