//! Config::load's file checks, on real files. These tests run as root (they chown files to
//! other users); they fail loudly, never skip, when not root.
#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use duo_push_common::config::{Config, ConfigError};

const VALID: &str = "[duo]
host = api-12345678.duosecurity.com
ikey = DIXXXXXXXXXXXXXXXXXX
skey = abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123
";

/// A private directory under the system temp dir, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        assert_eq!(
            fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .ok(),
            Some(0),
            "these tests must run as root (they chown files)"
        );
        let dir = std::env::temp_dir().join(format!("duo_push_cfg_{}_{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self { dir }
    }

    /// Writes `name` with `text`, owner `uid:gid`, permissions `mode`.
    fn file(&self, name: &str, text: &[u8], mode: u32, uid: u32, gid: u32) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        chown(&path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        path
    }

    /// A fake group(5) database.
    fn groups(&self, text: &str) -> PathBuf {
        let path = self.dir.join("group");
        fs::write(&path, text).unwrap_or_else(|e| panic!("write group: {e}"));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const GROUPS: &str = "root:x:0:\nwheel:x:10:alice\nduo-push:x:4242:\njump:x:4343:\n";

fn load(path: &Path, groups: &Path) -> Result<Config, ConfigError> {
    Config::load_with_group_file(path, groups)
}

fn refused(path: &Path, groups: &Path) -> ConfigError {
    match load(path, groups) {
        Ok(c) => panic!("{} was accepted: {c:?}", path.display()),
        Err(e) => {
            assert_eq!(e.file, path);
            assert_eq!(e.line, None, "{e}");
            assert!(!e.fail_open_allowed, "{e}");
            assert!(!e.to_string().contains("abcdefghij"), "{e}");
            e
        }
    }
}

#[test]
fn a_root_owned_0600_file_loads() {
    let s = Scratch::new("ok0600");
    let groups = s.groups(GROUPS);
    let path = s.file("duo_push.conf", VALID.as_bytes(), 0o600, 0, 0);
    let c = load(&path, &groups).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.duo.ikey.as_str(), "DIXXXXXXXXXXXXXXXXXX");
    // 0400 too.
    let path = s.file("ro.conf", VALID.as_bytes(), 0o400, 0, 4242);
    assert!(load(&path, &groups).is_ok());
}

#[test]
fn the_default_load_uses_etc_group() {
    let s = Scratch::new("etcgroup");
    let path = s.file("duo_push.conf", VALID.as_bytes(), 0o600, 0, 0);
    assert!(Config::load(&path).is_ok());
}

#[test]
fn a_symbolic_link_is_refused() {
    let s = Scratch::new("symlink");
    let groups = s.groups(GROUPS);
    let real = s.file("real.conf", VALID.as_bytes(), 0o600, 0, 0);
    let link = s.dir.join("link.conf");
    symlink(&real, &link).unwrap_or_else(|e| panic!("symlink: {e}"));
    let e = refused(&link, &groups);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is a symbolic link; refusing to follow it",
            link.display()
        )
    );
}

#[test]
fn a_directory_is_refused() {
    let s = Scratch::new("dir");
    let groups = s.groups(GROUPS);
    let dir = s.dir.join("conf.d");
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).ok();
    let e = refused(&dir, &groups);
    assert!(e.message.contains("not a regular file"), "{e}");
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let s = Scratch::new("fifo");
    let groups = s.groups(GROUPS);
    let fifo = s.dir.join("fifo.conf");
    let status = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(&fifo)
        .status()
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(status.success());
    let e = refused(&fifo, &groups);
    assert!(e.message.contains("not a regular file"), "{e}");
}

#[test]
fn a_file_not_owned_by_root_is_refused() {
    let s = Scratch::new("owner");
    let groups = s.groups(GROUPS);
    let path = s.file("duo_push.conf", VALID.as_bytes(), 0o600, 1000, 0);
    let e = refused(&path, &groups);
    assert_eq!(
        e.to_string(),
        format!("{}: owned by uid 1000, must be root", path.display())
    );
}

#[test]
fn a_group_or_world_writable_file_is_refused() {
    let s = Scratch::new("writable");
    let groups = s.groups(GROUPS);
    for mode in [0o620, 0o602, 0o660, 0o622, 0o640 | 0o020] {
        let path = s.file("duo_push.conf", VALID.as_bytes(), mode, 0, 4242);
        let e = refused(&path, &groups);
        assert!(
            e.message.contains("writable by group or others"),
            "{mode:o}: {e}"
        );
        assert!(e.message.contains(&format!("{mode:04o}")), "{e}");
    }
}

#[test]
fn a_world_readable_file_is_refused() {
    let s = Scratch::new("worldread");
    let groups = s.groups(GROUPS);
    for mode in [0o644, 0o604, 0o444] {
        let path = s.file("duo_push.conf", VALID.as_bytes(), mode, 0, 0);
        let e = refused(&path, &groups);
        assert!(
            e.message.starts_with(&format!(
                "mode {mode:04o} is readable by others; chmod 0600"
            )),
            "{e}"
        );
    }
}

#[test]
fn group_readable_by_another_group_is_refused() {
    let s = Scratch::new("wronggroup");
    let groups = s.groups(GROUPS);
    // Group root (0) may not read it: it is not shim_group.
    let path = s.file("duo_push.conf", VALID.as_bytes(), 0o640, 0, 0);
    let e = refused(&path, &groups);
    assert!(
        e.message.contains("not shim_group `duo-push` (gid 4242)"),
        "{e}"
    );
    // A custom shim_group moves the permission to that group only.
    let text = format!("{VALID}[policy]\nshim_group = jump\n");
    let path = s.file("jump.conf", text.as_bytes(), 0o640, 0, 4242);
    let e = refused(&path, &groups);
    assert!(e.message.contains("`jump`"), "{e}");
}

#[test]
fn group_readable_when_shim_group_does_not_exist_is_refused() {
    let s = Scratch::new("nogroup");
    let groups = s.groups("root:x:0:\nwheel:x:10:\n");
    let path = s.file("duo_push.conf", VALID.as_bytes(), 0o640, 0, 4242);
    let e = refused(&path, &groups);
    assert!(e.message.contains("does not exist"), "{e}");
    // An unreadable group database refuses too.
    let e = refused(&path, &s.dir.join("no-such-group-file"));
    assert!(e.message.contains("cannot be looked up"), "{e}");
}

#[test]
fn group_readable_by_shim_group_is_accepted() {
    let s = Scratch::new("rightgroup");
    let groups = s.groups(GROUPS);
    let path = s.file("duo_push.conf", VALID.as_bytes(), 0o640, 0, 4242);
    assert!(load(&path, &groups).is_ok());
    let text = format!("{VALID}[policy]\nshim_group = jump\n");
    let path = s.file("jump.conf", text.as_bytes(), 0o640, 0, 4343);
    let c = load(&path, &groups).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.policy.shim_group, "jump");
}

#[test]
fn an_oversized_file_is_refused() {
    let s = Scratch::new("big");
    let groups = s.groups(GROUPS);
    let limit = duo_push_common::ini::MAX_FILE_BYTES;
    // Exactly the limit: the config plus comment lines.
    let mut text = VALID.as_bytes().to_vec();
    while text.len() < limit {
        let room = limit - text.len();
        let line_len = room.min(1000);
        text.extend(std::iter::repeat_n(b';', line_len - 1));
        text.push(b'\n');
    }
    assert_eq!(text.len(), limit);
    let path = s.file("limit.conf", &text, 0o600, 0, 0);
    assert!(load(&path, &groups).is_ok());
    text.push(b'\n');
    let path = s.file("big.conf", &text, 0o600, 0, 0);
    let e = refused(&path, &groups);
    assert!(e.message.contains("larger than"), "{e}");
}

#[test]
fn a_missing_file_is_refused() {
    let s = Scratch::new("missing");
    let groups = s.groups(GROUPS);
    let path = s.dir.join("nope.conf");
    let e = refused(&path, &groups);
    assert_eq!(e.to_string(), format!("{}: does not exist", path.display()));
}

const EXPLICIT_FAIL_OPEN: &str = "[duo]
host = api-12345678.duosecurity.com
ikey = DIXXXXXXXXXXXXXXXXXX
skey = abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123
failmode = safe
[policy]
force_mfa = no
";

fn error_of(s: &Scratch, name: &str, text: &str, mode: u32, gid: u32) -> ConfigError {
    let groups = s.groups(GROUPS);
    let path = s.file(name, text.as_bytes(), mode, 0, gid);
    match load(&path, &groups) {
        Ok(c) => panic!("{name} was accepted: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn an_invalid_file_that_explicitly_fails_open_allows_failmode() {
    let s = Scratch::new("failopen");
    // An unknown key after the explicit settings.
    let e = error_of(
        &s,
        "a.conf",
        &format!("{EXPLICIT_FAIL_OPEN}bogus = 1\n"),
        0o600,
        0,
    );
    assert_eq!((e.line, e.key.as_deref()), (Some(8), Some("bogus")));
    assert!(e.fail_open_allowed, "{e}");
    // A syntax error elsewhere (the broken line is skipped, the rest still counts).
    let e = error_of(
        &s,
        "b.conf",
        &format!("{EXPLICIT_FAIL_OPEN}no separator here\n"),
        0o600,
        0,
    );
    assert!(e.fail_open_allowed, "{e}");
    // A bad ikey.
    let text = EXPLICIT_FAIL_OPEN.replace("DIXXXXXXXXXXXXXXXXXX", "short");
    let e = error_of(&s, "c.conf", &text, 0o600, 0);
    assert_eq!(e.key.as_deref(), Some("ikey"));
    assert!(e.fail_open_allowed, "{e}");
}

#[test]
fn fail_open_is_never_allowed_by_default_or_with_bad_permissions() {
    let s = Scratch::new("failclosed");
    let broken = |text: &str| format!("{text}bogus = 1\n");
    // Bad permissions.
    let e = error_of(&s, "perm.conf", &broken(EXPLICIT_FAIL_OPEN), 0o644, 0);
    assert!(!e.fail_open_allowed, "{e}");
    // force_mfa not set (defaults to yes).
    let text = EXPLICIT_FAIL_OPEN.replace("force_mfa = no\n", "");
    assert!(!error_of(&s, "a.conf", &broken(&text), 0o600, 0).fail_open_allowed);
    // failmode not set (defaults to secure).
    let text = EXPLICIT_FAIL_OPEN.replace("failmode = safe\n", "");
    assert!(!error_of(&s, "b.conf", &broken(&text), 0o600, 0).fail_open_allowed);
    // failmode = secure.
    let text = EXPLICIT_FAIL_OPEN.replace("failmode = safe", "failmode = secure");
    assert!(!error_of(&s, "c.conf", &broken(&text), 0o600, 0).fail_open_allowed);
    // force_mfa contradicted by a second line.
    let text = format!("{EXPLICIT_FAIL_OPEN}force_mfa = yes\n");
    assert!(!error_of(&s, "d.conf", &text, 0o600, 0).fail_open_allowed);
    // force_mfa misspelled value.
    let text = EXPLICIT_FAIL_OPEN.replace("force_mfa = no", "force_mfa = nope");
    assert!(!error_of(&s, "e.conf", &text, 0o600, 0).fail_open_allowed);
    // The keys in the wrong sections do not count.
    let text = "[duo]\nforce_mfa = no\n[policy]\nfailmode = safe\n";
    assert!(!error_of(&s, "f.conf", text, 0o600, 0).fail_open_allowed);
    // The line carrying failmode is itself broken (invalid UTF-8 would be skipped).
    let text = EXPLICIT_FAIL_OPEN.replace("failmode = safe", "failmode = safe\u{200b}");
    assert!(!error_of(&s, "g.conf", &text, 0o600, 0).fail_open_allowed);
    // Group-readable: shim_group could not be trusted from an invalid file, so deny.
    let e = error_of(&s, "h.conf", &broken(EXPLICIT_FAIL_OPEN), 0o640, 4242);
    assert!(!e.fail_open_allowed, "{e}");
    // A file that is not there.
    let groups = s.groups(GROUPS);
    assert!(!refused(&s.dir.join("absent.conf"), &groups).fail_open_allowed);
}
