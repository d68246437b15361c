//! The Debian package and the documentation that ships in it.
//!
//! Fast checks (no package needed): the configuration template installed as
//! `/etc/duo_push/duo_push.conf` fails closed as shipped, shows the real defaults, and names
//! every key `common/src/config.rs` accepts; CONFIGURATION.md and duo_push.conf(5) document
//! every key; the man pages format without groff warnings; the maintainer scripts parse and
//! the PAM profile is not enabled by default.
//!
//! The install test (`installed_package_works_and_purges_without_a_trace`) installs
//! `target/debian/duo-push_*.deb` on THIS machine with dpkg, uses it (the shim's `check`
//! against mock-duo, a pamtester login through the installed module), and purges it, checking
//! that nothing is left. It changes the real system, so it is `#[ignore]`d and run explicitly
//! by `scripts/test` after `scripts/package` (CI machines are throwaway):
//!
//! ```text
//! sudo ./scripts/package
//! sudo cargo test -p duo_push_tests --test package_deb -- --ignored
//! ```
//!
//! `DUO_PUSH_DEB=/path/to/duo-push_X_arch.deb` tests another build of the package.

#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed step must stop the test with its message"
)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use duo_push_common::config::{Config, FailMode, PolicySettings, ProxySettings};
use duo_push_common::signing::SignatureVersion;
use duo_push_tests::lab::{MockDuo, MockOpts, SyslogCatcher, TempDir};

/// The Debian package name (`[package.metadata.deb] name` in proxy_shim/Cargo.toml).
const PACKAGE: &str = "duo-push";
const GROUP: &str = "duo-push";
const SHIM: &str = "/usr/sbin/duo-proxy-shim";
const CONF: &str = "/etc/duo_push/duo_push.conf";
const CONF_DIR: &str = "/etc/duo_push";
const PAM_PROFILE: &str = "/usr/share/pam-configs/duo-push";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = workspace().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Keys, taken from the source so that a key added to config.rs without documentation fails here.

/// The keys of one `const NAME_KEYS: &[(&str, Kind)] = &[ ... ];` table of config.rs.
fn keys_of(table: &str) -> Vec<String> {
    let source = read("common/src/config.rs");
    let start = source
        .find(&format!("const {table}: &[(&str, Kind)] = &["))
        .unwrap_or_else(|| panic!("config.rs has no table {table}"));
    let body = &source[start..];
    let end = body.find("];").expect("table ends with ];");
    let keys: Vec<String> = body[..end]
        .split("(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().expect("quoted key").to_owned())
        .collect();
    assert!(
        keys.len() >= 3,
        "too few keys parsed from {table}: {keys:?}"
    );
    keys
}

/// Every key of every section, as (section, key).
fn all_keys() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (section, table) in [
        ("duo", "DUO_KEYS"),
        ("policy", "POLICY_KEYS"),
        ("proxy", "PROXY_KEYS"),
        ("target", "TARGET_KEYS"),
    ] {
        for key in keys_of(table) {
            out.push((section, key));
        }
    }
    out
}

/// duo_unix keys that are refused when `yes` or accepted without effect: documented in prose.
const PROSE_ONLY: [&str; 5] = [
    "noverify",
    "accept_env_factor",
    "verified_push",
    "gecos_parsed",
    "dev_fips_mode",
];

fn template() -> String {
    read("docs/examples/duo_push.conf")
}

/// The template with every `;key = default` line uncommented.
fn template_with_defaults() -> String {
    template()
        .lines()
        .map(|line| match line.strip_prefix(';') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_config_template_denies_until_the_duo_keys_are_filled_in() {
    let err = Config::parse(template().as_bytes(), Path::new(CONF))
        .expect_err("the shipped template must not be a usable configuration");
    assert_eq!(err.key.as_deref(), Some("host"), "{err}");
    assert!(err.message.contains("required key is missing"), "{err}");
    assert!(!err.fail_open_allowed);
}

#[test]
fn template_shows_the_real_default_of_every_key() {
    let config = Config::parse(template_with_defaults().as_bytes(), Path::new(CONF))
        .unwrap_or_else(|e| panic!("template with its defaults uncommented: {e}"));
    let duo = &config.duo;
    assert_eq!(duo.failmode, FailMode::Secure);
    assert_eq!(duo.signature_version, SignatureVersion::V5);
    assert_eq!(duo.https_timeout, Duration::from_secs(15));
    assert_eq!(duo.push_timeout, Duration::from_secs(75));
    assert!(!duo.pushinfo);
    assert!(duo.autopush);
    assert_eq!(duo.prompts, 3);
    assert!(duo.groups.is_empty());
    assert_eq!(duo.http_proxy, None);
    assert_eq!(duo.cafile, None);
    assert!(!duo.fallback_local_ip);
    assert!(!duo.send_gecos);
    assert_eq!(duo.gecos_username_pos, None);
    assert_eq!(duo.gecos_delim, ',');
    assert_eq!(config.policy, PolicySettings::default());
    assert_eq!(config.proxy, ProxySettings::default());
    assert!(config.targets.is_empty());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn every_example_in_the_template_is_accepted() {
    // The `; e.g. key = value` lines (outside the target example), with force_mfa = no so that
    // `groups` is allowed.
    let mut text = String::new();
    for line in template_with_defaults().lines() {
        let line = line.strip_prefix("; e.g. ").unwrap_or(line);
        text.push_str(if line == "force_mfa = yes" {
            "force_mfa = no"
        } else {
            line
        });
        text.push('\n');
    }
    // The target example: the lines after "; [target web01]".
    let tpl = template();
    let start = tpl
        .find("; [target web01]")
        .expect("the template has a target example");
    for line in tpl[start..].lines() {
        text.push_str(line.strip_prefix("; ").unwrap_or(line));
        text.push('\n');
    }
    let config = Config::parse(text.as_bytes(), Path::new(CONF))
        .unwrap_or_else(|e| panic!("template examples: {e}\n{text}"));
    assert_eq!(config.duo.groups, vec!["users,!wheel,!*admin", "guests"]);
    assert_eq!(
        config.duo.http_proxy.as_deref(),
        Some("http://proxy.example.com:3128")
    );
    assert_eq!(
        config.duo.cafile.as_deref(),
        Some(Path::new("/etc/duo_push/ca.pem"))
    );
    assert_eq!(config.duo.gecos_username_pos, Some(2));
    assert_eq!(config.proxy.name.as_deref(), Some("vault.example.com"));
    let web01 = config.target("web01").expect("target web01");
    assert_eq!(web01.host, "10.0.0.5");
    assert_eq!(web01.port, 22);
    assert_eq!(web01.login.as_deref(), Some("deploy"));
    assert_eq!(web01.allow.len(), 2);
    assert!(web01.mfa);
}

#[test]
fn template_names_every_key_the_parser_accepts() {
    let tpl = template();
    for (section, key) in all_keys() {
        let shown = if section == "target" {
            tpl.contains(&format!(";   {key} ")) && tpl.contains(&format!("; {key} = "))
        } else if PROSE_ONLY.contains(&key.as_str()) {
            tpl.contains(&format!(" {key}"))
        } else {
            tpl.contains(&format!("\n;{key} = ")) || tpl.contains(&format!("; e.g. {key} = "))
        };
        assert!(
            shown,
            "docs/examples/duo_push.conf does not show [{section}] {key}"
        );
    }
}

#[test]
fn configuration_guide_and_man_page_document_every_key() {
    let guide = read("docs/CONFIGURATION.md");
    let man = read("docs/man/duo_push.conf.5");
    for (section, key) in all_keys() {
        assert!(
            guide.contains(&format!("`{key}`")),
            "docs/CONFIGURATION.md does not document [{section}] `{key}`"
        );
        assert!(
            man.contains(&format!(".B {key}\n")) || man.contains(&format!("\\fB{key}\\fR")),
            "docs/man/duo_push.conf.5 does not document [{section}] {key}"
        );
    }
}

#[test]
fn man_pages_format_without_warnings() {
    for page in [
        "docs/man/pam_duo_push.8",
        "docs/man/duo-proxy-shim.8",
        "docs/man/duo_push.conf.5",
    ] {
        let path = workspace().join(page);
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run groff (apt-get install groff-base): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "groff warnings for {page}:\n{stderr}"
        );
    }
}

#[test]
fn maintainer_scripts_parse_and_the_pam_profile_is_off_by_default() {
    for script in ["postinst", "prerm", "postrm"] {
        let path = workspace().join("debian-pkg").join(script);
        let mode = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{} is not executable", path.display());
        let status = Command::new("sh").arg("-n").arg(&path).status().unwrap();
        assert!(status.success(), "sh -n {} failed", path.display());
    }
    let profile = read("debian-pkg/pam-configs/duo-push");
    let fields: Vec<&str> = profile.lines().collect();
    assert!(fields.contains(&"Default: no"), "{profile}");
    assert!(fields.contains(&"Auth-Type: Additional"), "{profile}");
    // `required`: PAM_IGNORE (a user outside `groups`) is ignored, every failure denies.
    assert!(fields.contains(&"\trequired\tpam_duo_push.so"), "{profile}");
}

// ---------------------------------------------------------------------------------------------
// The install test.

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn multiarch() -> String {
    run_ok("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"])
        .trim()
        .to_owned()
}

/// The package under test: `$DUO_PUSH_DEB`, or the newest `target/debian/duo-push_*.deb`.
fn package_file() -> PathBuf {
    if let Some(path) = std::env::var_os("DUO_PUSH_DEB") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "DUO_PUSH_DEB={} is not a file",
            path.display()
        );
        return path;
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debian");
    let newest = fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("duo-push_") && n.ends_with(".deb"))
        })
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| {
        panic!(
            "no {}/duo-push_*.deb: build it first with `sudo ./scripts/package`",
            dir.display()
        )
    })
}

fn package_status() -> String {
    let out = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        "unknown".to_owned()
    }
}

fn group_gid(name: &str) -> Option<u32> {
    let out = run("getent", &["group", name]);
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
}

/// Purges the package when dropped, so that a failed assertion still cleans the machine.
struct PurgeOnDrop {
    armed: bool,
}

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let out = run("dpkg", &["--purge", PACKAGE]);
            eprintln!("cleanup: dpkg --purge {PACKAGE}: {}", text(&out));
        }
    }
}

/// What `pam-auth-update --enable duo-push` writes into common-auth, computed on copies of
/// /etc/pam.d, /var/lib/pam and debconf's database mounted over the real ones in a private
/// mount namespace (the host's PAM configuration and debconf are untouched).
fn common_auth_with_profile_enabled() -> String {
    const SCRIPT: &str = r#"set -eu
work=$1
cp -a /etc/pam.d "$work/pam.d"
cp -a /var/lib/pam "$work/lib-pam"
cp -a /var/cache/debconf "$work/debconf"
mount --bind "$work/pam.d" /etc/pam.d
mount --bind "$work/lib-pam" /var/lib/pam
mount --bind "$work/debconf" /var/cache/debconf
pam-auth-update --package --enable duo-push >&2
cat /etc/pam.d/common-auth
"#;
    let work = TempDir::new("pkg-pam-auth-update-");
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
            "ns",
        ])
        .arg(work.path())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
    assert!(
        out.status.success(),
        "pam-auth-update --enable duo-push: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `argv` in a private mount namespace where `pam_dir` is /etc/pam.d and `/dev/log` is
/// `log_socket`; the host's /etc/pam.d and /dev are untouched.
fn in_namespace(pam_dir: &Path, log_socket: &Path, argv: &[&str], stdin: &str) -> Output {
    const SETUP: &str = r#"set -eu
mount --bind "$1" /etc/pam.d
mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
mknod -m 0666 /dev/null c 1 3
mknod -m 0666 /dev/zero c 1 5
mknod -m 0666 /dev/random c 1 8
mknod -m 0666 /dev/urandom c 1 9
ln -s /proc/self/fd /dev/fd
: > /dev/log
mount --bind "$2" /dev/log
shift 2
exec "$@"
"#;
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SETUP,
            "ns",
        ])
        .arg(pam_dir)
        .arg(log_socket)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin is piped");
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("waiting for unshare")
}

fn test_config(mock: &MockDuo) -> String {
    format!(
        "[duo]\nhost = {}\nikey = {}\nskey = {}\ncafile = {}\npush_timeout = 20\n\n\
         [proxy]\nname = package-test-proxy\n\n\
         [target web01]\nhost = 127.0.0.1\nallow = root\n",
        mock.host(),
        mock.ikey(),
        mock.skey(),
        mock.ca_pem_path().display()
    )
}

fn assert_owner_mode(path: &str, uid: u32, gid: u32, mode: u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (uid, gid, mode),
        "{path}: owner, group, mode"
    );
}

#[test]
#[ignore = "installs and purges the .deb on this machine with dpkg (root, a throwaway CI \
            machine): run by scripts/test with --ignored after scripts/package"]
fn installed_package_works_and_purges_without_a_trace() {
    let deb = package_file();
    eprintln!("testing {}", deb.display());
    let status = package_status();
    assert!(
        status == "unknown" || status.ends_with("not-installed"),
        "{PACKAGE} is already on this machine ({status}); this test installs and purges it, so \
         remove it first: dpkg --purge {PACKAGE}"
    );
    assert_eq!(
        group_gid(GROUP),
        None,
        "the group {GROUP} exists already; this test checks that the package creates and \
         removes it, so delete it first"
    );
    let triplet = multiarch();
    let module = format!("/lib/{triplet}/security/pam_duo_push.so");

    // Install.
    let mut guard = PurgeOnDrop { armed: true };
    let deb_arg = deb.to_str().expect("UTF-8 path");
    run_ok("dpkg", &["--install", deb_arg]);
    assert!(
        package_status().ends_with("installed"),
        "{}",
        package_status()
    );
    let gid = group_gid(GROUP).expect("postinst creates the duo-push group");
    assert!(gid < 1000, "duo-push must be a system group, got gid {gid}");

    // Files, owners, modes.
    assert_owner_mode(SHIM, 0, gid, 0o2755);
    assert_owner_mode(CONF, 0, gid, 0o640);
    assert_owner_mode(CONF_DIR, 0, 0, 0o755);
    assert_owner_mode("/etc/duo_push/ssh_config", 0, 0, 0o644);
    assert_owner_mode("/etc/duo_push/known_hosts", 0, 0, 0o644);
    assert_owner_mode(&module, 0, 0, 0o644);
    assert_owner_mode(PAM_PROFILE, 0, 0, 0o644);
    for page in [
        "/usr/share/man/man8/pam_duo_push.8.gz",
        "/usr/share/man/man8/duo-proxy-shim.8.gz",
        "/usr/share/man/man5/duo_push.conf.5.gz",
    ] {
        run_ok("gzip", &["--test", page]);
        let rendered = run_ok("man", &["--warnings", "-l", page]);
        assert!(rendered.len() > 500, "{page} renders to almost nothing");
    }
    let overrides = run_ok("dpkg-statoverride", &["--list"]);
    assert!(
        overrides
            .lines()
            .any(|l| l == format!("root {GROUP} 2755 {SHIM}")),
        "{overrides}"
    );
    assert!(
        overrides
            .lines()
            .any(|l| l == format!("root {GROUP} 640 {CONF}")),
        "{overrides}"
    );
    let conffiles = run_ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    for conf in [CONF, "/etc/duo_push/ssh_config"] {
        assert!(conffiles.contains(&format!(" {conf} ")), "{conffiles}");
    }
    // Default: no. A fresh install must not put the module into every login.
    for common in ["auth", "account", "session", "password"] {
        let stack = read_abs(&format!("/etc/pam.d/common-{common}"));
        assert!(
            !stack.contains("pam_duo_push"),
            "common-{common} enables the module"
        );
    }
    let files: Vec<String> = run_ok("dpkg", &["--listfiles", PACKAGE])
        .lines()
        .map(str::to_owned)
        .filter(|p| !Path::new(p).is_dir())
        .collect();
    assert!(files.contains(&module), "{files:?}");

    // The shipped configuration fails closed.
    let out = run(SHIM, &["check"]);
    assert!(
        !out.status.success(),
        "check passed the shipped template: {}",
        text(&out)
    );

    // A real configuration against mock-duo, written into the installed conffile (the write
    // keeps its owner and mode).
    let mock = MockDuo::start(MockOpts::default());
    fs::write(CONF, test_config(&mock)).expect("writing the test configuration");
    assert_owner_mode(CONF, 0, gid, 0o640);
    let out = run(SHIM, &["check"]);
    assert!(
        out.status.success(),
        "duo-proxy-shim check as root: {}",
        text(&out)
    );
    // As an unprivileged user the setgid bit is what lets the shim read the file.
    let out = run(
        "setpriv",
        &[
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            SHIM,
            "check",
        ],
    );
    assert!(
        out.status.success(),
        "duo-proxy-shim check as nobody (setgid duo-push): {}",
        text(&out)
    );
    let checks = mock
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/auth/v2/check" && r["verified"] == true)
        .count();
    assert!(
        checks >= 2,
        "mock-duo saw {checks} signed /auth/v2/check calls"
    );

    // A pamtester login through the installed module, found by name in the multiarch security
    // directory. The service file lives in a temporary directory mounted over /etc/pam.d in a
    // private mount namespace.
    let pam_dir = TempDir::new("pkg-pam-");
    fs::write(
        pam_dir.path().join("duo-push-pkgtest"),
        "auth required pam_duo_push.so\naccount required pam_permit.so\n",
    )
    .unwrap();
    let log_dir = TempDir::new("pkg-log-");
    let log = SyslogCatcher::bind(&log_dir.path().join("log"));
    let out = in_namespace(
        pam_dir.path(),
        log.path(),
        &[
            "pamtester",
            "-v",
            "duo-push-pkgtest",
            "alice",
            "authenticate",
        ],
        "",
    );
    let shown = text(&out);
    assert!(out.status.success(), "pamtester alice: {shown}");
    assert!(shown.contains("successfully authenticated"), "{shown}");
    let pushes = mock.pushes();
    let alice: Vec<_> = pushes.iter().filter(|p| p["username"] == "alice").collect();
    assert_eq!(alice.len(), 1, "{pushes:?}");
    assert_eq!(alice[0]["pushinfo"]["hop"], "vault", "{pushes:?}");
    assert_eq!(
        alice[0]["pushinfo"]["host"], "package-test-proxy",
        "{pushes:?}"
    );
    assert_eq!(
        alice[0]["pushinfo"]["service"], "duo-push-pkgtest",
        "{pushes:?}"
    );
    let line = log
        .wait_for("event=decision hop=vault user=alice", 5)
        .unwrap_or_else(|| panic!("no audit line; syslog: {:?}", log.lines()));
    assert!(line.contains("result=allow reason=push"), "{line}");

    // And a denied push is a failed login.
    let out = in_namespace(
        pam_dir.path(),
        log.path(),
        &["pamtester", "duo-push-pkgtest", "deny-bob", "authenticate"],
        "",
    );
    assert!(!out.status.success(), "pamtester deny-bob: {}", text(&out));
    let line = log
        .wait_for("event=decision hop=vault user=deny-bob", 5)
        .unwrap_or_else(|| panic!("no audit line; syslog: {:?}", log.lines()));
    assert!(line.contains("result=deny"), "{line}");

    // The pam-auth-update profile, once enabled (on copies), puts the module after the
    // primary block as `required`.
    let common_auth = common_auth_with_profile_enabled();
    let words: Vec<Vec<&str>> = common_auth
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let duo = words
        .iter()
        .position(|w| w.as_slice() == ["auth", "required", "pam_duo_push.so"])
        .unwrap_or_else(|| panic!("enabled profile not in common-auth:\n{common_auth}"));
    let permit = words
        .iter()
        .position(|w| w.as_slice() == ["auth", "required", "pam_permit.so"])
        .unwrap_or_else(|| panic!("no pam_permit in common-auth:\n{common_auth}"));
    assert!(
        permit < duo,
        "the module must follow the primary block:\n{common_auth}"
    );
    for common in ["auth", "account", "session", "password"] {
        let stack = read_abs(&format!("/etc/pam.d/common-{common}"));
        assert!(
            !stack.contains("pam_duo_push"),
            "the host's common-{common} changed"
        );
    }

    // Purge, and nothing is left.
    guard.armed = false;
    run_ok("dpkg", &["--purge", PACKAGE]);
    let status = package_status();
    assert!(
        status == "unknown" || status.ends_with("not-installed"),
        "after purge: {status}"
    );
    let left: Vec<&String> = files.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(left.is_empty(), "files left after purge: {left:?}");
    assert!(!Path::new(CONF_DIR).exists(), "{CONF_DIR} left after purge");
    assert_eq!(group_gid(GROUP), None, "group {GROUP} left after purge");
    let overrides = run_ok("dpkg-statoverride", &["--list"]);
    assert!(
        !overrides.contains(SHIM) && !overrides.contains(CONF),
        "stat overrides left after purge: {overrides}"
    );
    assert!(!Path::new(PAM_PROFILE).exists());
    let seen = fs::read_to_string("/var/lib/pam/seen").unwrap_or_default();
    assert!(
        !seen.lines().any(|l| l == "duo-push"),
        "pam-auth-update still lists duo-push: {seen}"
    );
    for common in ["auth", "account", "session", "password"] {
        let stack = read_abs(&format!("/etc/pam.d/common-{common}"));
        assert!(
            !stack.contains("pam_duo_push"),
            "common-{common} after purge"
        );
    }
}

fn read_abs(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The set of (section, key) pairs is not empty and has no duplicates per section.
#[test]
fn key_tables_are_read_from_config_rs() {
    let keys = all_keys();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len());
    assert!(keys.contains(&("duo", "skey".to_owned())));
    assert!(keys.contains(&("target", "allow".to_owned())));
}
