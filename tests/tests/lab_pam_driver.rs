//! pam-driver against stock Linux-PAM modules: return codes and the conversation pass through.
//! Needs root (pam_unix reads the shadow file; the lab's namespace needs CAP_SYS_ADMIN).

use std::process::Command;

use duo_push_tests::lab::{pam_driver, Lab, PamConfDir, PamDriver, PamHook};

const DRIVER: &str = env!("CARGO_BIN_EXE_pam-driver");

fn driver(confdir: &PamConfDir, user: &str) -> PamDriver {
    std::env::set_var("DUO_PUSH_PAM_DRIVER_BIN", DRIVER);
    PamDriver::new(confdir, user)
}

#[test]
fn pam_permit_succeeds_through_every_hook() {
    let confdir = PamConfDir::new(
        "auth required pam_permit.so\naccount required pam_permit.so\n\
         session required pam_permit.so\n",
    );
    let run = driver(&confdir, "nobody").hook(PamHook::All).run();
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert_eq!(run.exit, Some(0), "{run}");
    let hooks: Vec<&str> = run.results.iter().map(|(h, _, _)| h.as_str()).collect();
    assert_eq!(
        hooks,
        [
            "start",
            "authenticate",
            "acct_mgmt",
            "setcred",
            "open_session",
            "close_session",
            "setcred"
        ],
        "{run}"
    );
}

#[test]
fn pam_deny_is_an_authentication_error_and_a_nonzero_exit() {
    let confdir = PamConfDir::new("auth required pam_deny.so\n");
    let run = driver(&confdir, "nobody").run();
    assert_eq!(
        (run.code_name.as_str(), run.code),
        ("PAM_AUTH_ERR", 7),
        "{run}"
    );
    assert_eq!(run.exit, Some(1), "{run}");
}

#[test]
fn all_stops_at_the_first_failing_hook() {
    let confdir = PamConfDir::new("auth required pam_permit.so\naccount required pam_deny.so\n");
    let run = driver(&confdir, "nobody").hook(PamHook::All).run();
    assert_eq!(run.result_of("authenticate"), Some("PAM_SUCCESS"), "{run}");
    assert_eq!(run.result_of("acct_mgmt"), Some("PAM_AUTH_ERR"), "{run}");
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert_eq!(run.result_of("open_session"), None, "{run}");
    assert_ne!(run.exit, Some(0));
}

#[test]
fn succeed_if_on_the_user_name_decides() {
    let text = "auth [success=ignore default=bad] pam_succeed_if.so quiet user = nobody\n\
                auth required pam_permit.so\n";
    let confdir = PamConfDir::new(text);
    assert_eq!(driver(&confdir, "nobody").run().code_name, "PAM_SUCCESS");
    let other = driver(&confdir, "daemon").run();
    assert_eq!(other.code_name, "PAM_AUTH_ERR", "{other}");
}

#[test]
fn an_optional_success_does_not_override_a_required_failure() {
    let confdir = PamConfDir::new("auth optional pam_permit.so\nauth required pam_deny.so\n");
    let run = driver(&confdir, "nobody").run();
    assert_ne!(run.code_name, "PAM_SUCCESS", "{run}");
}

#[test]
fn info_messages_reach_the_conversation() {
    let confdir =
        PamConfDir::new("auth optional pam_echo.so Hello %u\nauth required pam_permit.so\n");
    let run = driver(&confdir, "nobody").run();
    assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
    assert_eq!(run.conv_lines, ["PAM_TEXT_INFO Hello nobody"], "{run}");
}

#[test]
fn a_missing_service_fails_closed() {
    let confdir = PamConfDir::new("auth required pam_permit.so\n");
    let run = PamDriver::with_service(confdir.path(), "no-such-service", "nobody").run();
    assert_ne!(run.code_name, "PAM_SUCCESS", "{run}");
    assert_ne!(run.exit, Some(0), "{run}");
}

#[test]
fn a_module_that_does_not_exist_is_a_failure() {
    let confdir = PamConfDir::new("auth required /nonexistent/pam_nothing.so\n");
    let run = driver(&confdir, "nobody").run();
    assert_ne!(run.code_name, "PAM_SUCCESS", "{run}");
}

#[test]
fn pam_unix_prompts_for_the_password_and_checks_it_for_a_lab_user() {
    let lab = Lab::new();
    lab.add_user("pdalice", Some("s3cret pass"), &[]);
    let confdir = PamConfDir::new(
        "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n",
    );
    let good = driver(&confdir, "pdalice")
        .answer("s3cret pass")
        .hook(PamHook::All)
        .in_lab(&lab)
        .run();
    assert_eq!(good.code_name, "PAM_SUCCESS", "{good}");
    assert_eq!(
        good.conv_lines,
        ["PAM_PROMPT_ECHO_OFF Password: "],
        "{good}"
    );

    let bad = driver(&confdir, "pdalice")
        .answer("wrong")
        .in_lab(&lab)
        .run();
    assert_eq!(bad.code_name, "PAM_AUTH_ERR", "{bad}");
    // pam_unix logs the failure through /dev/log, which the lab catches.
    let line = lab
        .wait_for_syslog("authentication failure", 5)
        .unwrap_or_else(|| panic!("no syslog line; got {:?}", lab.syslog_lines()));
    assert!(line.contains("user=pdalice"), "{line}");

    // Outside the namespace the lab user does not exist: the host is untouched.
    let outside = driver(&confdir, "pdalice").answer("s3cret pass").run();
    assert_ne!(outside.code_name, "PAM_SUCCESS", "{outside}");
}

#[test]
fn rhost_and_tty_are_set_as_items() {
    // pam_succeed_if can test PAM_RHOST and PAM_TTY.
    let confdir = PamConfDir::new(
        "auth requisite pam_succeed_if.so quiet rhost = 192.0.2.7\n\
         auth requisite pam_succeed_if.so quiet tty = pts/9\n\
         auth required pam_permit.so\n",
    );
    let ok = driver(&confdir, "nobody")
        .rhost("192.0.2.7")
        .tty("pts/9")
        .run();
    assert_eq!(ok.code_name, "PAM_SUCCESS", "{ok}");
    let wrong = driver(&confdir, "nobody")
        .rhost("192.0.2.8")
        .tty("pts/9")
        .run();
    assert_eq!(wrong.code_name, "PAM_AUTH_ERR", "{wrong}");
}

#[test]
fn the_plain_function_form_passes_arguments_through() {
    std::env::set_var("DUO_PUSH_PAM_DRIVER_BIN", DRIVER);
    let confdir = PamConfDir::with_service("plain", "auth required pam_unix.so\n");
    let run = pam_driver(
        confdir.path(),
        "plain",
        "nobody",
        &["--answer", "x", "--hook", "auth"],
    );
    assert_eq!(run.code_name, "PAM_AUTH_ERR", "{run}");
    assert_eq!(run.conv_lines, ["PAM_PROMPT_ECHO_OFF Password: "], "{run}");
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::new(DRIVER)
        .arg("--bogus")
        .output()
        .expect("run pam-driver");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(DRIVER)
        .args([
            "--confdir",
            "/x",
            "--service",
            "s",
            "--user",
            "u",
            "--hook",
            "nope",
        ])
        .output()
        .expect("run pam-driver");
    assert_eq!(out.status.code(), Some(2));
}
