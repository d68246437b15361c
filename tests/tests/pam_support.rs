//! Shared helpers of the `pam_*` end-to-end tests of `pam_duo_push.so` (included by them with
//! `#[path = "pam_support.rs"] mod pam_support;`; as a test target of its own it has no tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::SystemTime;

use duo_push_tests::lab::{artifact_path, Lab, MockDuo, PamConfDir, PamDriver, PamRun};
use serde_json::Value;

/// The PAM client address every pam-driver test uses.
pub const RHOST: &str = "192.0.2.10";
/// `[proxy] name` of the test configs.
pub const PROXY: &str = "vault.test";

static BUILD: Once = Once::new();

/// Newest modification time of the files under `dir` (recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// The absolute path of an up-to-date `libpam_duo_push.so`.
///
/// The tests package does not depend on the module crate, so `cargo test -p duo_push_tests`
/// alone would not rebuild it. When the library is missing or older than a source file of
/// `pam_duo_push` or `common`, build it here (once per test binary), for the profile the
/// tests were built with. (Not unconditionally: `cargo build -p pam_duo_push` resolves
/// features differently from a workspace build and would relink the library every time.)
pub fn module_path() -> PathBuf {
    BUILD.call_once(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace dir")
            .to_path_buf();
        let release = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent()?.parent().map(|d| d.ends_with("release")))
            .unwrap_or(false);
        let built = workspace
            .join("target")
            .join(if release { "release" } else { "debug" })
            .join("libpam_duo_push.so");
        let built_at = std::fs::metadata(&built).and_then(|m| m.modified()).ok();
        let sources = ["pam_duo_push/src", "common/src"]
            .iter()
            .filter_map(|d| newest_mtime(&workspace.join(d)))
            .chain(
                ["pam_duo_push/Cargo.toml", "common/Cargo.toml"]
                    .iter()
                    .filter_map(|f| std::fs::metadata(workspace.join(f)).ok()?.modified().ok()),
            )
            .max();
        if built_at.is_some() && built_at >= sources {
            return;
        }
        let Some(cargo) = std::env::var_os("CARGO") else {
            // Not run by cargo: use what is there (artifact_path panics if it is missing).
            return;
        };
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "pam_duo_push"])
            .current_dir(&workspace);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p pam_duo_push");
        assert!(status.success(), "cargo build -p pam_duo_push failed");
    });
    let path = artifact_path("libpam_duo_push.so");
    assert!(path.is_absolute(), "{}", path.display());
    path
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
