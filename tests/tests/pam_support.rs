//! Shared helpers of the `pam_*` end-to-end tests of `pam_duo_push.so` (included by them with
//! `#[path = "pam_support.rs"] mod pam_support;`; as a test target of its own it has no tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use duo_push_tests::lab::{pam_module, Lab, MockDuo, PamConfDir, PamDriver, PamRun};
use serde_json::Value;

/// The PAM client address every pam-driver test uses.
pub const RHOST: &str = "192.0.2.10";
/// `[proxy] name` of the test configs.
pub const PROXY: &str = "vault.test";

/// The absolute path of an up-to-date `libpam_duo_push.so` (built first if a source of
/// `pam_duo_push` or `common` is newer: see [`duo_push_tests::lab::build`]).
pub fn module_path() -> PathBuf {
    pam_module()
}

/// A `[duo]` section pointing at `mock`, plus `extra` lines.
pub fn duo_section(mock: &MockDuo, extra: &str) -> String {
    format!(
        "[duo]\nhost = {}\nikey = {}\nskey = {}\ncafile = {}\n{extra}\n",
        mock.host(),
        mock.ikey(),
        mock.skey(),
        mock.ca_pem_path().display()
    )
}

/// A whole config: `[duo]` for `mock` with `duo_extra`, `[policy]` with `policy`, `[proxy]`
/// naming the proxy [`PROXY`].
pub fn config_text(mock: &MockDuo, duo_extra: &str, policy: &str) -> String {
    format!(
        "{}[policy]\n{policy}\n[proxy]\nname = {PROXY}\n",
        duo_section(mock, duo_extra)
    )
}

/// Writes a config into the lab, root-owned 0600, and returns its path.
pub fn write_config(lab: &Lab, name: &str, text: &str) -> PathBuf {
    lab.write_file(name, text, 0o600, 0, 0)
}

/// The PAM service text `auth required MODULE conf=CONF [args]`.
pub fn required_stack(conf: &Path, args: &str) -> String {
    format!(
        "auth required {} conf={} {args}\n",
        module_path().display(),
        conf.display()
    )
}

/// Runs the service for `user` from [`RHOST`] inside the lab (lab users exist, syslog is
/// captured by the lab).
pub fn run_pam(lab: &Lab, service: &str, user: &str, answers: &[&str]) -> PamRun {
    let confdir = PamConfDir::new(service);
    let mut driver = PamDriver::new(&confdir, user).rhost(RHOST).in_lab(lab);
    for a in answers {
        driver = driver.answer(a);
    }
    driver.run()
}

/// Pushes of `user` in the mock's log.
pub fn pushes_of(mock: &MockDuo, user: &str) -> Vec<Value> {
    mock.pushes()
        .into_iter()
        .filter(|p| p["username"] == user)
        .collect()
}

/// Asserts the push carries the vault-hop labels.
pub fn assert_vault_push(push: &Value, from: &str, service: &str) {
    assert_eq!(push["type"], "Vault login", "{push}");
    assert_eq!(push["factor"], "push", "{push}");
    assert_eq!(push["pushinfo"]["hop"], "vault", "{push}");
    assert_eq!(push["pushinfo"]["host"], PROXY, "{push}");
    assert_eq!(push["pushinfo"]["from"], from, "{push}");
    assert_eq!(push["pushinfo"]["service"], service, "{push}");
    assert!(push["display_username"].is_null(), "{push}");
}

/// The lab's syslog lines of the module, joined.
pub fn module_log(lab: &Lab) -> String {
    lab.syslog_lines()
        .into_iter()
        .filter(|l| l.contains("pam_duo_push("))
        .collect::<Vec<_>>()
        .join("\n")
}
