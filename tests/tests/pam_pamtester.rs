//! `pam_duo_push.so` driven by Debian's `pamtester` (which has no confdir option): it runs in
//! the lab's mount namespace, where `/etc` is an overlay and our service file appears as
//! `/etc/pam.d/duo-pamtester` without touching the host's `/etc`.

#[path = "pam_support.rs"]
mod pam_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use duo_push_tests::lab::{Lab, MockDuo, MockOpts};
use pam_support::*;

const SERVICE: &str = "duo-pamtester";

fn pamtester(lab: &Lab, user: &str) -> Output {
    let mut cmd = lab.command_in_namespace(Path::new("/usr/bin/pamtester"));
    cmd.args([
        "-I",
        &format!("rhost={RHOST}"),
        SERVICE,
        user,
        "authenticate",
    ])
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd.output().expect("run pamtester in the lab namespace")
}

fn setup() -> (MockDuo, Lab) {
    let mock = MockDuo::start(MockOpts::default());
    let lab = Lab::new();
    let conf = write_config(
        &lab,
        "duo_push.conf",
        &config_text(&mock, "", "force_mfa = yes"),
    );
    let pam_d = lab.etc_upper().join("pam.d");
    fs::create_dir_all(&pam_d).unwrap();
    let service = pam_d.join(SERVICE);
    fs::write(&service, required_stack(&conf, "")).unwrap();
    fs::set_permissions(&service, fs::Permissions::from_mode(0o644)).unwrap();
    (mock, lab)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn pamtester_authenticates_an_approved_push() {
    let (mock, lab) = setup();
    let out = pamtester(&lab, "alice");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("pamtester: successfully authenticated"),
        "{shown}"
    );
    // pamtester prints the conversation: our PAM_TEXT_INFO lines.
    assert!(
        shown.contains("Duo Push sent to iOS (XXX-XXX-1234). Approve it on your phone"),
        "{shown}"
    );
    let pushes = pushes_of(&mock, "alice");
    assert_eq!(pushes.len(), 1);
    assert_vault_push(&pushes[0], RHOST, SERVICE);
    // The host's /etc/pam.d was not touched.
    assert!(!Path::new("/etc/pam.d").join(SERVICE).exists());
}

#[test]
fn pamtester_fails_a_denied_push() {
    let (mock, lab) = setup();
    let out = pamtester(&lab, "deny-bob");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("Authentication failure"), "{shown}");
    assert!(shown.contains("Duo Push denied."), "{shown}");
    let pushes = pushes_of(&mock, "deny-bob");
    assert_eq!(pushes.len(), 1);
    assert_vault_push(&pushes[0], RHOST, SERVICE);
    assert_eq!(pushes[0]["result"], "deny");
    assert!(module_log(&lab).contains("result=deny"));
}
