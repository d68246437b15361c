//! The lab: account files with test users and groups, their homes and keys.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::namespace::{command_in_namespace, NsLayout};
use super::paths::{copy_tree, is_strict_modes_safe, lab_base_dir, TempDir};
use super::process::run_ok;
use super::sshd::{EtcFile, Sshd, SshdSpec};
use super::syslog::SyslogCatcher;

/// The first uid and gid given to lab users and groups.
const FIRST_ID: u32 = 20000;

/// A test user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id (20000 and up).
    pub uid: u32,
    /// Primary group id (a group of the same name).
    pub gid: u32,
    /// Home directory, under the lab root, owned by the user, mode 0755.
    pub home: PathBuf,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// The password, if the account has one (None: locked, `!` in shadow).
    pub password: Option<String>,
}

#[derive(Debug)]
struct Accounts {
    passwd: Vec<String>,
    shadow: Vec<String>,
    group: Vec<String>,
    gshadow: Vec<String>,
    users: Vec<User>,
}

#[derive(Debug)]
pub(crate) struct LabInner {
    root: TempDir,
    /// Short directory in /tmp for sockets (a Unix socket path is limited to 108 bytes).
    sockets: TempDir,
    accounts: Mutex<Accounts>,
    strict_modes: bool,
    syslog: SyslogCatcher,
}

/// A laboratory: its own copies of the account files with test users, a syslog catcher, and
/// the sshd instances started from it. See the [module documentation](super) for examples.
///
/// Dropping the lab removes its directory once every [`Sshd`] started from it is gone too.
#[derive(Debug, Clone)]
pub struct Lab {
    pub(crate) inner: Arc<LabInner>,
}

fn read_lines(path: &str) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn field(line: &str, n: usize) -> Option<&str> {
    line.split(':').nth(n)
}

fn ids_in_use(lines: &[String], n: usize) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| field(l, n)?.parse().ok())
        .collect()
}

/// Adds `user` to the member list (fourth field) of `group` in group or gshadow lines.
fn add_member(lines: &mut [String], group: &str, user: &str) {
    if let Some(line) = lines.iter_mut().find(|l| field(l, 0) == Some(group)) {
        let mut parts: Vec<String> = line.split(':').map(str::to_string).collect();
        if let Some(members) = parts.get_mut(3) {
            if members.is_empty() {
                *members = user.to_string();
            } else if !members.split(',').any(|m| m == user) {
                members.push(',');
                members.push_str(user);
            }
        }
        *line = parts.join(":");
    }
}

fn days_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86400)
        .unwrap_or(19000)
}

/// A SHA-512 crypt hash of `password` (`openssl passwd -6`, from the openssl package).
fn hash_password(password: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .unwrap_or_else(|e| panic!("writing to openssl: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("openssl passwd: {e}"));
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && hash.starts_with("$6$"),
        "openssl passwd -6 failed: {hash}"
    );
    hash
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-')
}

impl Lab {
    /// A new lab: copies the host's account files (read only) into a fresh lab directory.
    pub fn new() -> Lab {
        let root = TempDir::new_in(&lab_base_dir(), "lab-", 0o755);
        let sockets = TempDir::new("dpl-");
        let strict_modes = is_strict_modes_safe(root.path());
        for dir in ["accounts", "home", "etc-upper", "files", "runs"] {
            let path = root.path().join(dir);
            fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
        let syslog = SyslogCatcher::bind(&sockets.path().join("log"));
        let accounts = Accounts {
            passwd: read_lines("/etc/passwd"),
            shadow: read_lines("/etc/shadow"),
            group: read_lines("/etc/group"),
            gshadow: read_lines("/etc/gshadow"),
            users: Vec::new(),
        };
        let lab = Lab {
            inner: Arc::new(LabInner {
                root,
                sockets,
                accounts: Mutex::new(accounts),
                strict_modes,
                syslog,
            }),
        };
        lab.write_accounts(&lab.accounts());
        lab
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, Accounts> {
        self.inner
            .accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The lab's root directory (mode 0755).
    pub fn root(&self) -> &Path {
        self.inner.root.path()
    }

    /// The short directory (in /tmp) where the lab keeps sockets.
    pub(crate) fn socket_dir(&self) -> &Path {
        self.inner.sockets.path()
    }

    /// Whether sshd runs with `StrictModes yes` (the lab root's ancestors are root-owned and
    /// not group- or world-writable; false, for example, when the lab is under /tmp).
    pub fn strict_modes(&self) -> bool {
        self.inner.strict_modes
    }

    /// The directory holding the lab's `passwd`, `shadow`, `group` and `gshadow`.
    pub fn accounts_dir(&self) -> PathBuf {
        self.root().join("accounts")
    }

    /// Rewrites the account files in place (same inodes: they are bind-mounted in running
    /// namespaces, which then see the change at once).
    fn write_accounts(&self, acc: &Accounts) {
        let dir = self.accounts_dir();
        let files: [(&str, &Vec<String>, u32, &str); 4] = [
            ("passwd", &acc.passwd, 0o644, "root"),
            ("shadow", &acc.shadow, 0o640, "shadow"),
            ("group", &acc.group, 0o644, "root"),
            ("gshadow", &acc.gshadow, 0o640, "shadow"),
        ];
        let shadow_gid = acc
            .group
            .iter()
            .find(|l| field(l, 0) == Some("shadow"))
            .and_then(|l| field(l, 2)?.parse().ok())
            .unwrap_or(0);
        for (name, lines, mode, group) in files {
            let path = dir.join(name);
            let mut text = lines.join("\n");
            text.push('\n');
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            f.write_all(text.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            let gid = if group == "shadow" { shadow_gid } else { 0 };
            chown(&path, Some(0), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
    }

    fn next_id(lines: &[String], n: usize) -> u32 {
        let used = ids_in_use(lines, n);
        (FIRST_ID..)
            .find(|id| !used.contains(id))
            .unwrap_or(FIRST_ID)
    }

    fn add_group_locked(acc: &mut Accounts, name: &str, gid: Option<u32>) -> u32 {
        assert!(valid_name(name), "invalid group name {name:?}");
        if let Some(gid) = acc
            .group
            .iter()
            .find(|l| field(l, 0) == Some(name))
            .and_then(|l| field(l, 2)?.parse().ok())
        {
            return gid;
        }
        let gid = gid.unwrap_or_else(|| Lab::next_id(&acc.group, 2));
        acc.group.push(format!("{name}:x:{gid}:"));
        acc.gshadow.push(format!("{name}:!::"));
        gid
    }

    /// Adds a group (if it does not exist yet) and returns its gid (20000 and up for new ones).
    pub fn add_group(&self, name: &str) -> u32 {
        let mut acc = self.accounts();
        let gid = Lab::add_group_locked(&mut acc, name, None);
        self.write_accounts(&acc);
        gid
    }

    /// The gid of a group in the lab's group file.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.accounts()
            .group
            .iter()
            .find(|l| field(l, 0) == Some(name))
            .and_then(|l| field(l, 2)?.parse().ok())
    }

    /// Adds a user with a primary group of the same name, a home directory under the lab root
    /// (owned by the user, mode 0755), shell `/bin/bash`, and membership of `groups` (groups that
    /// do not exist yet are created). `password: None` makes a locked account (`!`): such a user
    /// can still log in with a key.
    pub fn add_user(&self, name: &str, password: Option<&str>, groups: &[&str]) -> User {
        assert!(valid_name(name), "invalid user name {name:?}");
        let mut acc = self.accounts();
        assert!(
            !acc.passwd.iter().any(|l| field(l, 0) == Some(name)),
            "user {name} already exists (in the host's passwd or the lab's)"
        );
        let uid = Lab::next_id(&acc.passwd, 2);
        let free_gid = !ids_in_use(&acc.group, 2).contains(&uid);
        let gid = Lab::add_group_locked(&mut acc, name, free_gid.then_some(uid));
        let home = self.root().join("home").join(name);
        fs::create_dir(&home).unwrap_or_else(|e| panic!("mkdir {}: {e}", home.display()));
        chown(&home, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown home: {e}"));
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod home: {e}"));
        let home_str = home
            .to_str()
            .unwrap_or_else(|| panic!("home path not UTF-8"));
        acc.passwd.push(format!(
            "{name}:x:{uid}:{gid}:Lab user {name}:{home_str}:/bin/bash"
        ));
        let hash = password.map_or_else(|| "!".to_string(), hash_password);
        acc.shadow.push(format!(
            "{name}:{hash}:{}:0:99999:7:::",
            days_since_epoch() - 1
        ));
        for g in groups {
            Lab::add_group_locked(&mut acc, g, None);
            add_member(&mut acc.group, g, name);
            add_member(&mut acc.gshadow, g, name);
        }
        let user = User {
            name: name.to_string(),
            uid,
            gid,
            home,
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
            password: password.map(str::to_string),
        };
        acc.users.push(user.clone());
        self.write_accounts(&acc);
        user
    }

    /// A user added to this lab, by name.
    pub fn user(&self, name: &str) -> User {
        self.accounts()
            .users
            .iter()
            .find(|u| u.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no lab user {name}"))
    }

    /// Creates `~/.ssh` (0700, owned by the user) if missing and returns it.
    fn ssh_dir(&self, user: &User) -> PathBuf {
        let dir = user.home.join(".ssh");
        if !dir.exists() {
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        chown(&dir, Some(user.uid), Some(user.gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        dir
    }

    /// Generates an ed25519 key pair in the user's `~/.ssh/id_ed25519` (owned by the user,
    /// private key 0600) and returns (private key path, public key line).
    /// The public key is not authorized yet: see [`Lab::authorize_key`].
    pub fn user_keypair(&self, user: &User) -> (PathBuf, String) {
        let dir = self.ssh_dir(user);
        let key = dir.join("id_ed25519");
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(dir.join("id_ed25519.pub"));
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("{}@lab", user.name))
                .arg("-f")
                .arg(&key),
        );
        let public = fs::read_to_string(dir.join("id_ed25519.pub"))
            .unwrap_or_else(|e| panic!("reading public key: {e}"))
            .trim()
            .to_string();
        for f in [key.clone(), dir.join("id_ed25519.pub")] {
            chown(&f, Some(user.uid), Some(user.gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        }
        (key, public)
    }

    /// Appends `public_key` to the user's `~/.ssh/authorized_keys` (0600, owned by the user).
    pub fn authorize_key(&self, user: &User, public_key: &str) {
        let dir = self.ssh_dir(user);
        let path = dir.join("authorized_keys");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        writeln!(f, "{}", public_key.trim()).unwrap_or_else(|e| panic!("write: {e}"));
        chown(&path, Some(user.uid), Some(user.gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
    }

    /// Writes `contents` to `<lab>/files/<name>` with the given mode and owner, and returns the
    /// path (for configs, known_hosts files, scripts that lab processes read).
    pub fn write_file(&self, name: &str, contents: &str, mode: u32, uid: u32, gid: u32) -> PathBuf {
        let path = self.root().join("files").join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        chown(&path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        path
    }

    /// Copies `src` to `<lab>/files/<name>` with the given mode and owner (e.g. the shim,
    /// `root:duo-push` mode 0o2755) and returns the path. The lab is on a filesystem without
    /// `nosuid`, so setuid/setgid bits take effect.
    pub fn install_copy(&self, src: &Path, name: &str, mode: u32, uid: u32, gid: u32) -> PathBuf {
        let path = self.root().join("files").join(name);
        fs::copy(src, &path).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        chown(&path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        // chmod after chown: chown clears the setgid bit.
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        path
    }

    /// Starts a real sshd in a private namespace of this lab. See [`SshdSpec`].
    pub fn start_sshd(&self, spec: SshdSpec) -> Sshd {
        Sshd::start(self, spec)
    }

    /// A command running `program` inside a namespace with this lab's accounts, the host's
    /// `/etc` (under an overlay into `<lab>/etc-upper`) and `/dev/log` read by
    /// [`Lab::syslog_lines`]. Add arguments, stdio and run it as usual.
    pub fn command_in_namespace(&self, program: &Path) -> Command {
        let run_dir = self.new_run_dir("ns-");
        let layout = self.layout_in(run_dir.path(), self.inner.syslog.path());
        // The run directory lives as long as the lab: the namespace may outlive this call.
        std::mem::forget(run_dir);
        command_in_namespace(&layout, program)
    }

    /// A fresh directory under the lab root (removed with the lab).
    pub(crate) fn new_run_dir(&self, prefix: &str) -> TempDir {
        TempDir::new_in(&self.root().join("runs"), prefix, 0o755)
    }

    /// A namespace layout in `dir`: its own copy of the `/etc` overlay's upper layer (overlayfs
    /// refuses, or misbehaves on, an upper directory shared by two mounts) and a work directory.
    pub(crate) fn layout_in(&self, dir: &Path, syslog_socket: &Path) -> NsLayout {
        let etc_upper = dir.join("etc-upper");
        let etc_work = dir.join("etc-work");
        copy_tree(&self.etc_upper(), &etc_upper);
        fs::create_dir(&etc_work).unwrap_or_else(|e| panic!("mkdir {}: {e}", etc_work.display()));
        NsLayout {
            etc_upper,
            etc_work,
            accounts_dir: self.accounts_dir(),
            syslog_socket: syslog_socket.to_path_buf(),
        }
    }

    /// Places a file under `/etc` of every namespace started from now on (pam-driver runs
    /// through [`Lab::command_in_namespace`] and sshd instances), e.g. the module's config at
    /// `duo_push/duo_push.conf`. Files of an [`SshdSpec`] take precedence for that sshd.
    pub fn etc_file(&self, file: &EtcFile) -> PathBuf {
        assert!(
            !file.path.starts_with('/') && !file.path.split('/').any(|c| c == ".." || c.is_empty()),
            "EtcFile path must be relative to /etc: {}",
            file.path
        );
        let path = self.etc_upper().join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        fs::write(&path, &file.contents)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        chown(&path, Some(file.uid), Some(file.gid)).unwrap_or_else(|e| panic!("chown: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        path
    }

    /// The `/etc` overlay upper directory used by [`Lab::command_in_namespace`]: a file written
    /// at `<etc_upper>/duo_push/duo_push.conf` appears as `/etc/duo_push/duo_push.conf` there.
    pub fn etc_upper(&self) -> PathBuf {
        self.root().join("etc-upper")
    }

    /// Syslog lines of processes run through [`Lab::command_in_namespace`] (not of sshd
    /// instances: see [`Sshd::syslog_lines`]).
    pub fn syslog_lines(&self) -> Vec<String> {
        self.inner.syslog.lines()
    }

    /// Waits up to `secs` seconds for a lab syslog line containing `needle`.
    pub fn wait_for_syslog(&self, needle: &str, secs: u64) -> Option<String> {
        self.inner.syslog.wait_for(needle, secs)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}
