//! `pam_duo_push.so` through real libpam (`pam-driver`, `pam_start_confdir`) against mock-duo.
//!
//! Every test runs pam-driver inside a lab namespace, so lab users exist for PAM and the
//! module's syslog lines are captured. Configs are root-owned 0600 files in the lab.

#[path = "pam_support.rs"]
mod pam_support;

use std::os::unix::fs::{chown, symlink};
use std::time::Duration;

use duo_push_tests::lab::{Lab, MockDuo, MockOpts, PamConfDir, PamDriver, PamHook};
use pam_support::*;

fn setup(duo_extra: &str, policy: &str) -> (MockDuo, Lab, String) {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, duo_extra, policy),
    );
    let service = required_stack(&conf, "");
    (mock, lab, service)
}

fn conv_text(run: &duo_push_tests::lab::PamRun) -> String {
    run.conv_lines.join("\n")
}

#[test]
fn an_approved_push_is_pam_success_and_names_the_vault_hop() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    let run = run_pam(&lab, &service, "alice", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    let pushes = pushes_of(&mock, "alice");
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_vault_push(&pushes[0], RHOST, PamConfDir::DEFAULT_SERVICE);
    assert_eq!(pushes[0]["result"], "allow");
    assert!(
        run.conv_lines.iter().any(|l| l.starts_with(
            "PAM_TEXT_INFO Duo Push sent to iOS (XXX-XXX-1234). Approve it on your phone"
        )),
        "{run}"
    );
    let log = module_log(&lab);
    let line = log
        .lines()
        .find(|l| l.contains("event=decision"))
        .unwrap_or_else(|| panic!("no decision line in:\n{log}"));
    assert!(line.contains("pam_duo_push(duo-test:auth)"), "{line}");
    assert!(line.contains("user=alice"), "{line}");
    assert!(line.contains(&format!("from={RHOST}")), "{line}");
    assert!(line.contains("result=allow"), "{line}");
    let txid = pushes[0]["txid"].as_str().unwrap();
    assert!(line.contains(&format!("txid={txid}")), "{line}");
    // LOG_AUTHPRIV (10 << 3) | LOG_INFO (6) = 86.
    assert!(line.starts_with("<86>"), "{line}");
}

#[test]
fn a_denied_push_is_pam_auth_err_with_an_error_message() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    let run = run_pam(&lab, &service, "deny-bob", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    let pushes = pushes_of(&mock, "deny-bob");
    assert_eq!(pushes.len(), 1);
    assert_vault_push(&pushes[0], RHOST, PamConfDir::DEFAULT_SERVICE);
    assert_eq!(pushes[0]["result"], "deny");
    assert!(
        conv_text(&run).contains("PAM_ERROR_MSG Duo Push denied."),
        "{run}"
    );
    assert!(module_log(&lab).contains("reason=push_denied"));
}

#[test]
fn an_unanswered_push_times_out_after_push_timeout() {
    let (mock, lab, service) = setup("push_timeout = 10", "force_mfa = yes");
    let run = run_pam(&lab, &service, "timeout-carl", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(run.elapsed >= Duration::from_secs(10), "{run}");
    assert!(run.elapsed < Duration::from_secs(25), "{run}");
    assert_eq!(pushes_of(&mock, "timeout-carl").len(), 1);
    assert!(conv_text(&run).contains("timed out"), "{run}");
    assert!(module_log(&lab).contains("reason=push_timeout"));
}

#[test]
fn a_push_reported_as_fraud_is_pam_auth_err() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    let run = run_pam(&lab, &service, "fraud-dan", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert_eq!(pushes_of(&mock, "fraud-dan")[0]["status"], "fraud");
    assert!(conv_text(&run).contains("fraud"), "{run}");
    assert!(module_log(&lab).contains("reason=fraud"));
}

#[test]
fn a_locked_out_user_is_refused_without_a_push() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    let run = run_pam(&lab, &service, "lockout-eve", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(pushes_of(&mock, "lockout-eve").is_empty());
    assert!(
        conv_text(&run).contains("PAM_ERROR_MSG Your account is locked"),
        "{run}"
    );
}

#[test]
fn an_unenrolled_user_gets_the_enrollment_url_and_no_access() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    let run = run_pam(&lab, &service, "enroll-fay", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(pushes_of(&mock, "enroll-fay").is_empty());
    assert!(
        conv_text(&run).contains("PAM_ERROR_MSG Access denied: enroll in Duo first: https://enroll.mock-duo.invalid/portal?code="),
        "{run}"
    );
    assert!(module_log(&lab).contains("reason=enroll"));
}

#[test]
fn bypass_needs_allow_bypass_under_force_mfa() {
    for (policy, expected) in [
        ("force_mfa = yes", "PAM_AUTH_ERR"),
        ("force_mfa = yes\nallow_bypass = yes", "PAM_SUCCESS"),
        ("force_mfa = no", "PAM_SUCCESS"),
    ] {
        let (mock, lab, service) = setup("", policy);
        let run = run_pam(&lab, &service, "bypass-gus", &[]);
        assert_eq!(run.code_name, expected, "{policy}: {run}");
        assert!(pushes_of(&mock, "bypass-gus").is_empty(), "{policy}");
        let log = module_log(&lab);
        if expected == "PAM_SUCCESS" {
            assert!(log.contains("reason=bypass"), "{log}");
        } else {
            assert!(log.contains("reason=bypass_refused"), "{log}");
        }
    }
}

/// `[success=done ignore=ignore default=die]` then `next_module`: PAM_IGNORE falls through to
/// the next line, PAM_SUCCESS ends the stack.
fn groups_stack(conf: &std::path::Path, next_module: &str) -> String {
    format!(
        "auth [success=done ignore=ignore default=die] {} conf={}\nauth required {next_module}\n",
        module_path().display(),
        conf.display()
    )
}

#[test]
fn a_user_outside_groups_gets_pam_ignore_never_success() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    lab.add_user("grp-out", None, &["staff"]);
    lab.add_user("grp-in", None, &["staff", "duo-users"]);
    lab.add_user("grp-neg", None, &["duo-users", "contractors"]);
    let conf = write_config(
        &lab,
        "groups.conf",
        &config_text(&mock, "groups = duo-users,!contractors", "force_mfa = no"),
    );

    // Outside groups: the module ignores, pam_deny decides.
    let run = run_pam(&lab, &groups_stack(&conf, "pam_deny.so"), "grp-out", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    // ... and with pam_permit next, the same user passes: the module did not fail either.
    let run = run_pam(&lab, &groups_stack(&conf, "pam_permit.so"), "grp-out", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert!(pushes_of(&mock, "grp-out").is_empty());
    assert!(
        module_log(&lab).contains("result=ignore"),
        "{}",
        module_log(&lab)
    );

    // Negated group: outside too.
    let run = run_pam(&lab, &groups_stack(&conf, "pam_deny.so"), "grp-neg", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(pushes_of(&mock, "grp-neg").is_empty());

    // Inside groups: pushed, approved, done before pam_deny.
    let run = run_pam(&lab, &groups_stack(&conf, "pam_deny.so"), "grp-in", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert_eq!(pushes_of(&mock, "grp-in").len(), 1);
}

#[test]
fn groups_under_force_mfa_is_a_config_error_that_denies() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    lab.add_user("grp-forced", None, &["staff"]);
    let conf = write_config(
        &lab,
        "forced-groups.conf",
        &config_text(
            &mock,
            "groups = duo-users\nfailmode = safe",
            "force_mfa = yes",
        ),
    );
    let run = run_pam(
        &lab,
        &groups_stack(&conf, "pam_permit.so"),
        "grp-forced",
        &[],
    );
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(module_log(&lab).contains("event=config_problem"));
}

/// The Duo-unavailable matrix: (duo extra, policy, expected).
fn unavailable_matrix() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("failmode = secure", "force_mfa = yes", "PAM_AUTH_ERR"),
        ("failmode = safe", "force_mfa = yes", "PAM_AUTH_ERR"),
        ("failmode = secure", "force_mfa = no", "PAM_AUTH_ERR"),
        ("failmode = safe", "force_mfa = no", "PAM_SUCCESS"),
    ]
}

#[test]
fn duo_down_denies_unless_failmode_safe_without_forced_mfa() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let mut services = Vec::new();
    for (i, (duo, policy, expected)) in unavailable_matrix().into_iter().enumerate() {
        let conf = write_config(
            &lab,
            &format!("down-{i}.conf"),
            &config_text(&mock, &format!("{duo}\nhttps_timeout = 3"), policy),
        );
        services.push((required_stack(&conf, ""), duo, policy, expected));
    }
    drop(mock); // Duo is down: connection refused.
    for (service, duo, policy, expected) in services {
        let run = run_pam(&lab, &service, "hana", &[]);
        assert_eq!(run.code_name, expected, "{duo} {policy}: {run}");
        assert!(run.elapsed < Duration::from_secs(15), "{run}");
    }
    let log = module_log(&lab);
    assert!(log.contains("reason=duo_unavailable"), "{log}");
    assert!(log.contains("event=fail_open"), "{log}");
}

#[test]
fn duo_5xx_and_bad_keys_follow_the_same_matrix() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    for (i, (duo, policy, expected)) in unavailable_matrix().into_iter().enumerate() {
        // 503 for this user prefix.
        let conf = write_config(
            &lab,
            &format!("5xx-{i}.conf"),
            &config_text(&mock, duo, policy),
        );
        let run = run_pam(&lab, &required_stack(&conf, ""), "http503-ivan", &[]);
        assert_eq!(run.code_name, expected, "503 {duo} {policy}: {run}");

        // A wrong secret key: mock-duo answers 401.
        let text = config_text(&mock, duo, policy)
            .replace(mock.skey(), "0123456789012345678901234567890123456789");
        let conf = write_config(&lab, &format!("badkey-{i}.conf"), &text);
        let run = run_pam(&lab, &required_stack(&conf, ""), "jill", &[]);
        assert_eq!(run.code_name, expected, "bad skey {duo} {policy}: {run}");
    }
    assert!(pushes_of(&mock, "jill").is_empty());
    assert!(mock.stats()["signature_failures"].as_u64().unwrap() >= 4);
}

#[test]
fn an_unusable_config_file_denies() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let good = config_text(&mock, "", "force_mfa = yes");
    let mut cases = Vec::new();

    let p = lab.write_file("world-readable.conf", &good, 0o644, 0, 0);
    cases.push(("mode 0644", p));
    let p = lab.write_file("group-writable.conf", &good, 0o620, 0, 0);
    cases.push(("mode 0620", p));
    let p = lab.write_file("not-root.conf", &good, 0o600, 65534, 65534);
    cases.push(("owned by nobody", p));
    let target = write_config(&lab, "real.conf", &good);
    let link = target.with_file_name("link.conf");
    symlink(&target, &link).unwrap();
    cases.push(("symlink", link));
    let p = write_config(
        &lab,
        "missing-skey.conf",
        &good.replace(&format!("skey = {}\n", mock.skey()), ""),
    );
    cases.push(("missing skey", p));
    let p = write_config(
        &lab,
        "unknown-key.conf",
        &good.replace("[policy]", "colour = blue\n[policy]"),
    );
    cases.push(("unknown key", p));
    cases.push(("missing file", target.with_file_name("does-not-exist.conf")));
    let p = lab.write_file("dir.conf/x", "", 0o600, 0, 0);
    cases.push(("a directory", p.parent().unwrap().to_path_buf()));

    for (what, path) in &cases {
        let run = run_pam(&lab, &required_stack(path, ""), "kate", &[]);
        assert_eq!(run.code_name, "PAM_AUTH_ERR", "{what}: {run}");
        assert!(
            conv_text(&run).contains(
                "PAM_ERROR_MSG Access denied: the two-factor configuration cannot be used"
            ),
            "{what}: {run}"
        );
    }
    assert!(pushes_of(&mock, "kate").is_empty());
    let log = module_log(&lab);
    assert!(
        log.matches("event=config_problem").count() >= cases.len(),
        "{log}"
    );
    // The sanity case: the real file works.
    let run = run_pam(&lab, &required_stack(&target, ""), "kate", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
}

#[test]
fn a_broken_config_fails_open_only_when_it_says_so_and_passes_the_file_checks() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let text = config_text(&mock, "failmode = safe\ncolour = blue", "force_mfa = no");
    let secure = write_config(&lab, "open.conf", &text);
    let run = run_pam(&lab, &required_stack(&secure, ""), "liam", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert!(module_log(&lab).contains("event=fail_open"));
    assert!(pushes_of(&mock, "liam").is_empty());

    // The same text in a world-readable file: no fail-open.
    let loose = lab.write_file("open-loose.conf", &text, 0o644, 0, 0);
    let run = run_pam(&lab, &required_stack(&loose, ""), "liam", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    // And under force_mfa: no fail-open either.
    let forced = write_config(
        &lab,
        "open-forced.conf",
        &config_text(&mock, "failmode = safe\ncolour = blue", "force_mfa = yes"),
    );
    let run = run_pam(&lab, &required_stack(&forced, ""), "liam", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
}

#[test]
fn an_unknown_module_argument_fails_closed() {
    let (mock, lab, _) = setup("failmode = safe", "force_mfa = no");
    let conf = write_config(
        &lab,
        "args.conf",
        &config_text(&mock, "failmode = safe", "force_mfa = no"),
    );
    for args in ["nullok", "debug try_first_pass", "config=/etc/x"] {
        let run = run_pam(&lab, &required_stack(&conf, args), "mona", &[]);
        assert_eq!(run.code_name, "PAM_AUTH_ERR", "{args}: {run}");
    }
    // conf= given twice.
    let run = run_pam(
        &lab,
        &required_stack(&conf, &format!("conf={}", conf.display())),
        "mona",
        &[],
    );
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(pushes_of(&mock, "mona").is_empty());
    assert_eq!(mock.stats()["requests"], 0);
    let log = module_log(&lab);
    assert!(log.contains("unknown module argument"), "{log}");
    // <83> = LOG_AUTHPRIV | LOG_ERR.
    assert!(
        log.lines()
            .any(|l| l.starts_with("<83>") && l.contains("nullok")),
        "{log}"
    );
}

#[test]
fn hostile_user_names_are_refused_before_duo_is_asked() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    for user in ["evil\u{1b}[2J\nuser", &"x".repeat(4000), "tab\tuser"] {
        let run = run_pam(&lab, &service, user, &[]);
        assert_eq!(run.code_name, "PAM_USER_UNKNOWN", "{run}");
    }
    assert_eq!(mock.stats()["requests"], 0);
    assert!(mock.pushes().is_empty());
    let log = module_log(&lab);
    assert!(log.contains("refusing user name"), "{log}");
    for line in lab.syslog_lines() {
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert!(line.len() <= 2048, "{} bytes", line.len());
    }
}

#[test]
fn debug_adds_detail_lines() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let conf = write_config(
        &lab,
        "debug.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let run = run_pam(&lab, &required_stack(&conf, "debug"), "nina", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    let log = module_log(&lab);
    assert!(log.contains("authenticating user=nina"), "{log}");
    // <87> = LOG_AUTHPRIV | LOG_DEBUG.
    assert!(log.lines().any(|l| l.starts_with("<87>")), "{log}");
}

#[test]
fn without_autopush_enter_sends_a_push_and_a_passcode_is_checked() {
    let (mock, lab, service) = setup("autopush = no", "force_mfa = yes");
    let run = run_pam(&lab, &service, "olga", &[""]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert!(
        conv_text(&run).contains(
            "PAM_PROMPT_ECHO_ON Duo two-factor login for olga\\n\\nPress Enter to send a Duo Push to iOS (XXX-XXX-1234), or type a passcode:"
        ),
        "{run}"
    );
    assert_eq!(pushes_of(&mock, "olga").len(), 1);

    let run = run_pam(&lab, &service, "pavel", &["123456"]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert!(pushes_of(&mock, "pavel").is_empty());

    let run = run_pam(&lab, &service, "quinn", &["000000", "111111", "222222"]);
    assert_eq!(run.code_name, "PAM_MAXTRIES", "{run}");
    assert!(pushes_of(&mock, "quinn").is_empty());
}

#[test]
fn gecos_names_the_duo_user() {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    // Lab users have the GECOS field "Lab user NAME": word 3 with a space... use the whole
    // field with send_gecos, which mock-duo approves like any other name.
    lab.add_user("rosa", None, &[]);
    let conf = write_config(
        &lab,
        "gecos.conf",
        &config_text(&mock, "send_gecos = yes", "force_mfa = yes"),
    );
    let run = run_pam(&lab, &required_stack(&conf, ""), "rosa", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert_eq!(
        pushes_of(&mock, "Lab user rosa").len(),
        1,
        "{:?}",
        mock.pushes()
    );
    assert!(pushes_of(&mock, "rosa").is_empty());

    // A field that does not exist: denied, not sent as "rosa".
    let conf = write_config(
        &lab,
        "gecos-pos.conf",
        &config_text(&mock, "gecos_username_pos = 2", "force_mfa = yes"),
    );
    let run = run_pam(&lab, &required_stack(&conf, ""), "rosa", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(pushes_of(&mock, "rosa").is_empty());
}

#[test]
fn the_other_hooks_return_their_documented_codes() {
    let (mock, lab, _) = setup("", "force_mfa = yes");
    let conf = write_config(
        &lab,
        "hooks.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let m = module_path();
    let c = conf.display();
    let m = m.display();
    // Every hook of the module is followed by pam_permit, so an IGNORE passes and anything
    // else (a failure) shows up in the result.
    let service = format!(
        "auth     [success=ok ignore=ignore default=die] {m} conf={c}\n\
         account  [success=ok ignore=ignore default=die] {m} conf={c}\n\
         account  required pam_permit.so\n\
         session  [success=ok ignore=ignore default=die] {m} conf={c}\n\
         session  required pam_permit.so\n"
    );
    let confdir = PamConfDir::new(&service);
    let run = PamDriver::new(&confdir, "sven")
        .rhost(RHOST)
        .hook(PamHook::All)
        .in_lab(&lab)
        .run();
    assert_eq!(run.result_of("authenticate"), Some("PAM_SUCCESS"), "{run}");
    assert_eq!(run.result_of("acct_mgmt"), Some("PAM_SUCCESS"), "{run}");
    assert_eq!(run.result_of("setcred"), Some("PAM_SUCCESS"), "{run}");
    assert_eq!(run.result_of("open_session"), Some("PAM_SUCCESS"), "{run}");
    assert_eq!(run.result_of("close_session"), Some("PAM_SUCCESS"), "{run}");
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    // Only authenticate pushed.
    assert_eq!(pushes_of(&mock, "sven").len(), 1);

    // acct_mgmt alone (every account module ignores): libpam does not grant.
    let alone = PamConfDir::new(&format!("account required {m} conf={c}\n"));
    let run = PamDriver::new(&alone, "sven")
        .hook(PamHook::Acct)
        .in_lab(&lab)
        .run();
    assert_ne!(run.code_name, "PAM_SUCCESS", "{run}");
}

#[test]
fn pam_silent_suppresses_messages_but_not_the_decision() {
    let (mock, lab, service) = setup("", "force_mfa = yes");
    let confdir = PamConfDir::new(&service);
    let run = PamDriver::new(&confdir, "deny-tina")
        .rhost(RHOST)
        .silent()
        .in_lab(&lab)
        .run();
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert!(run.conv_lines.is_empty(), "{run}");
    assert_eq!(pushes_of(&mock, "deny-tina").len(), 1);
}

/// Debian's `/etc/security/pam_duo.conf` from libpam-duo 1.11.3, byte for byte, except for the
/// values of host, ikey and skey (empty or an example in the package) and an added `cafile`
/// line (a documented pam_duo key) for mock-duo's CA.
const DEBIAN_PAM_DUO_CONF: &str = "[duo]
; Duo API host
host = @HOST@

; Duo integration key
ikey = @IKEY@
; Duo secret key
skey = @SKEY@

; failmode = safe
;     In the event of errors with this configuration file or connection to the
;     Duo service this mode will allow login without 2FA.
; failmode = secure
;     This mode will deny access in the above cases. Misconfigurations with
;     this setting enabled may result in you being locked out of your system.
failmode = safe

; Send command for Duo Push authentication
;pushinfo = yes
cafile = @CAFILE@
";

#[test]
fn a_debian_pam_duo_conf_works_as_this_modules_config() {
    // Real-looking keys, not the lab's test keys.
    let opts = MockOpts {
        ikey: "DI9FD6NAKXN4B5IMV7QE".to_owned(),
        skey: "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ecvwmVh3wZb".to_owned(),
        ..MockOpts::default()
    };
    let mock = MockDuo::start(opts);
    let lab = Lab::new();
    let text = DEBIAN_PAM_DUO_CONF
        .replace("@HOST@", &mock.host())
        .replace("@IKEY@", mock.ikey())
        .replace("@SKEY@", mock.skey())
        .replace("@CAFILE@", &mock.ca_pem_path().display().to_string());
    let conf = write_config(&lab, "pam_duo.conf", &text);
    let service = required_stack(&conf, "");
    let run = run_pam(&lab, &service, "uma", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    let pushes = pushes_of(&mock, "uma");
    assert_eq!(pushes.len(), 1);
    // No [proxy] name: the system host name goes to Duo.
    assert_eq!(pushes[0]["type"], "Vault login");
    assert_eq!(pushes[0]["pushinfo"]["hop"], "vault");
    let run = run_pam(&lab, &service, "deny-vera", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    // failmode = safe from the Debian file is ignored under the default force_mfa = yes.
    let log = module_log(&lab);
    assert!(log.contains("failmode = safe is ignored"), "{log}");
}

#[test]
fn a_group_readable_config_is_refused_unless_its_group_is_shim_group() {
    // A root-owned file whose group is not shim_group but group-readable: refused.
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let p = lab.write_file(
        "grp.conf",
        &config_text(&mock, "", "force_mfa = yes"),
        0o640,
        0,
        0,
    );
    let run = run_pam(&lab, &required_stack(&p, ""), "walt", &[]);
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    // The same file, 0600: accepted.
    chown(&p, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = run_pam(&lab, &required_stack(&p, ""), "walt", &[]);
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
}
