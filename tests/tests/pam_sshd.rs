//! `pam_duo_push.so` inside a real OpenSSH sshd (the lab's, in a private namespace) with the
//! real ssh client, against mock-duo.
//!
//! The ssh client's stderr at each outcome is printed (run with `--nocapture` to read it): it
//! is what a user sees.

#[path = "pam_support.rs"]
mod pam_support;

use std::path::Path;

use duo_push_tests::lab::{Lab, MockDuo, MockOpts, SshClient, SshRun, Sshd, SshdSpec, User};
use pam_support::*;

/// pam_unix first (the password), then the push; account and session from pam_unix.
fn pam_stack(conf: &Path) -> String {
    format!(
        "auth     required pam_unix.so\n\
         auth     required {} conf={}\n\
         account  required pam_unix.so\n\
         session  required pam_unix.so\n",
        module_path().display(),
        conf.display()
    )
}

const KBD_ONLY: &str = "KbdInteractiveAuthentication yes\n\
                        PasswordAuthentication no\n\
                        AuthenticationMethods keyboard-interactive\n";

const KEY_THEN_KBD: &str = "KbdInteractiveAuthentication yes\n\
                            PasswordAuthentication no\n\
                            AuthenticationMethods publickey,keyboard-interactive\n";

fn start(lab: &Lab, conf: &Path, sshd_config: &str) -> Sshd {
    lab.start_sshd(
        SshdSpec::named("proxy")
            .config(sshd_config)
            .pam(&pam_stack(conf)),
    )
}

fn client(sshd: &Sshd, user: &User) -> SshClient {
    SshClient::new(sshd, &user.name)
        .option("PreferredAuthentications", "publickey,keyboard-interactive")
        .password(user.password.as_deref().unwrap_or(""))
        .timeout_secs(60)
}

fn show(label: &str, run: &SshRun) {
    println!(
        "===== {label}: ssh exit {:?}\n--- ssh stderr ---\n{}--- end ---",
        run.status, run.stderr
    );
}

#[test]
fn password_then_an_approved_push_logs_in_and_runs_the_command() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let alice = lab.add_user("alice", Some("pw-alice-1"), &[]);
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let sshd = start(&lab, &conf, KBD_ONLY);
    let marker = alice.home.join("marker");
    let run = client(&sshd, &alice)
        .args(["touch", marker.to_str().unwrap()])
        .run();
    show("approve", &run);
    assert!(run.success(), "{run}\nsshd log:\n{}", sshd.log_text());
    assert!(marker.exists(), "the command did not run");
    let pushes = pushes_of(&mock, "alice");
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_vault_push(&pushes[0], "127.0.0.1", "sshd");
    let line = sshd
        .wait_for_syslog("event=decision", 5)
        .unwrap_or_else(|| panic!("no decision line: {:?}", sshd.syslog_lines()));
    assert!(line.contains("pam_duo_push(sshd:auth)"), "{line}");
    assert!(line.contains("user=alice from=127.0.0.1"), "{line}");
    assert!(line.contains("result=allow reason=push"), "{line}");
}

#[test]
fn password_then_a_denied_push_is_refused_and_the_command_never_runs() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let bob = lab.add_user("deny-bob", Some("pw-bob-1"), &[]);
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let sshd = start(&lab, &conf, KBD_ONLY);
    let marker = bob.home.join("marker");
    let run = client(&sshd, &bob)
        .args(["touch", marker.to_str().unwrap()])
        .run();
    show("deny", &run);
    assert_eq!(run.status, Some(255), "{run}");
    assert!(run.stderr.contains("Permission denied"), "{run}");
    assert!(!marker.exists(), "the command ran after a denied push");
    assert_eq!(pushes_of(&mock, "deny-bob").len(), 1);
    assert!(sshd
        .wait_for_syslog("result=deny reason=push_denied", 5)
        .is_some());
}

/// With `auth required pam_unix.so` Linux-PAM runs the rest of the stack after a wrong
/// password (so that the failing module is not revealed): the push is sent, and even an
/// approval does not log in. `requisite` stops at the wrong password: no push. The README
/// recommends `requisite` so that a password guesser cannot make phones buzz.
#[test]
fn a_wrong_password_is_refused_and_with_requisite_never_reaches_duo() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let carl = lab.add_user("carl", Some("pw-carl-1"), &[]);
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let sshd = start(&lab, &conf, KBD_ONLY);
    let run = SshClient::new(&sshd, &carl.name)
        .password("wrong password")
        .args(["true"])
        .run();
    show("wrong password, pam_unix required", &run);
    assert_eq!(run.status, Some(255), "{run}");
    assert_eq!(
        pushes_of(&mock, "carl").len(),
        1,
        "required runs the whole stack"
    );
    drop(sshd);

    let requisite = pam_stack(&conf).replace(
        "auth     required pam_unix.so",
        "auth     requisite pam_unix.so",
    );
    assert!(requisite.contains("requisite"));
    let sshd = lab.start_sshd(SshdSpec::named("proxy").config(KBD_ONLY).pam(&requisite));
    let run = SshClient::new(&sshd, &carl.name)
        .password("wrong password")
        .args(["true"])
        .run();
    show("wrong password, pam_unix requisite", &run);
    assert_eq!(run.status, Some(255), "{run}");
    assert_eq!(pushes_of(&mock, "carl").len(), 1, "no second push");
    // The right password with requisite: pushed and in.
    let run = client(&sshd, &carl).args(["true"]).run();
    assert!(run.success(), "{run}");
    assert_eq!(pushes_of(&mock, "carl").len(), 2);
}

#[test]
fn a_key_then_password_and_push_logs_in() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let dana = lab.add_user("dana", Some("pw-dana-1"), &[]);
    let (key, public) = lab.user_keypair(&dana);
    lab.authorize_key(&dana, &public);
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let sshd = start(&lab, &conf, KEY_THEN_KBD);
    let marker = dana.home.join("marker");
    let run = client(&sshd, &dana)
        .identity(&key)
        .args(["touch", marker.to_str().unwrap()])
        .run();
    show("publickey + push approve", &run);
    assert!(run.success(), "{run}\nsshd log:\n{}", sshd.log_text());
    assert!(marker.exists());
    assert_eq!(pushes_of(&mock, "dana").len(), 1);
    assert!(
        sshd.log_text().contains("Partial publickey"),
        "{}",
        sshd.log_text()
    );

    // Without the key, the keyboard-interactive step alone is not enough.
    let run = client(&sshd, &dana).args(["true"]).run();
    show("no key", &run);
    assert_eq!(run.status, Some(255), "{run}");
}

#[test]
fn duo_down_with_forced_mfa_refuses_the_login() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let erin = lab.add_user("erin", Some("pw-erin-1"), &[]);
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(
            &mock,
            "failmode = safe\nhttps_timeout = 3",
            "force_mfa = yes",
        ),
    );
    drop(mock);
    let sshd = start(&lab, &conf, KBD_ONLY);
    let marker = erin.home.join("marker");
    let run = client(&sshd, &erin)
        .args(["touch", marker.to_str().unwrap()])
        .run();
    show("duo down", &run);
    assert_eq!(run.status, Some(255), "{run}");
    assert!(!marker.exists());
    assert!(
        sshd.wait_for_syslog("reason=duo_unavailable", 5).is_some(),
        "{:?}",
        sshd.syslog_lines()
    );
}

#[test]
fn without_autopush_the_user_is_asked_before_the_phone_buzzes() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let fred = lab.add_user("fred", Some("pw-fred-1"), &[]);
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, "autopush = no", "force_mfa = yes"),
    );
    let sshd = start(&lab, &conf, KBD_ONLY);
    // Password, then Enter at the Duo prompt.
    let run = client(&sshd, &fred)
        .answers(["pw-fred-1", ""])
        .args(["true"])
        .run();
    show("autopush = no, Enter", &run);
    println!("prompts: {:?}", run.prompts);
    assert!(run.success(), "{run}");
    assert!(
        run.prompts.iter().any(|p| p
            .contains("Press Enter to send a Duo Push to iOS (XXX-XXX-1234), or type a passcode:")),
        "{:?}",
        run.prompts
    );
    assert_eq!(pushes_of(&mock, "fred").len(), 1);

    // A passcode instead of the push.
    let run = client(&sshd, &fred)
        .answers(["pw-fred-1", "123456"])
        .args(["true"])
        .run();
    show("autopush = no, passcode", &run);
    assert!(run.success(), "{run}");
    assert_eq!(pushes_of(&mock, "fred").len(), 1);
}
