//! A real OpenSSH sshd on a loopback port, inside a private namespace of the lab.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::namespace::command_in_namespace;
use super::paths::TempDir;
use super::process::run_ok;
use super::syslog::SyslogCatcher;
use super::users::Lab;

/// The PAM stack used when [`SshdSpec::pam_service`] is `None`: Debian 12's `/etc/pam.d/sshd`
/// and the `common-*` files it includes, reduced to pam_unix and the modules that work without
/// systemd, SELinux, loginuid or a kernel keyring.
pub const DEFAULT_PAM_SSHD: &str = "\
# duo_push test lab: Debian's sshd stack without systemd, SELinux, loginuid or keyrings
auth     [success=1 default=ignore]  pam_unix.so nullok
auth     requisite                   pam_deny.so
auth     required                    pam_permit.so
account  required                    pam_nologin.so
account  [success=1 new_authtok_reqd=done default=ignore]  pam_unix.so
account  requisite                   pam_deny.so
account  required                    pam_permit.so
session  required                    pam_unix.so
session  required                    pam_limits.so
session  required                    pam_env.so
password requisite                   pam_deny.so
";

/// A file placed into the namespace's `/etc` (through the overlay), e.g.
/// `EtcFile::new("duo_push/duo_push.conf", text, 0o640, 0, duo_push_gid)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFile {
    /// Path relative to `/etc`; parent directories are created (root, 0755).
    pub path: String,
    /// The contents.
    pub contents: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl EtcFile {
    /// A file at `/etc/<path>`.
    pub fn new(path: &str, contents: &str, mode: u32, uid: u32, gid: u32) -> EtcFile {
        EtcFile {
            path: path.to_string(),
            contents: contents.to_string(),
            mode,
            uid,
            gid,
        }
    }
}

/// What sshd to start.
///
/// `sshd_config_extra` is split at its first `Match` line: the part before it goes at the top of
/// the generated sshd_config (sshd keeps the first value it reads for most keywords, so it
/// overrides the lab's defaults), the `Match` blocks go at the end. It must not set `Port`,
/// `ListenAddress`, `HostKey` or `PidFile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshdSpec {
    /// A short name for logs and directories (`[a-z0-9_-]`), e.g. "proxy" or "target".
    pub name: String,
    /// sshd_config text added to the lab's defaults (see above).
    pub sshd_config_extra: String,
    /// The text of `/etc/pam.d/sshd` inside the namespace; `None`: [`DEFAULT_PAM_SSHD`].
    /// The host's other PAM files (`common-auth`, ...) are visible for `@include`.
    pub pam_service: Option<String>,
    /// Extra files placed under the namespace's `/etc`.
    pub etc_files: Vec<EtcFile>,
}

impl SshdSpec {
    /// A spec with defaults only.
    pub fn named(name: &str) -> SshdSpec {
        SshdSpec {
            name: name.to_string(),
            ..SshdSpec::default()
        }
    }

    /// Adds sshd_config text (see the type's documentation for where it goes).
    pub fn config(mut self, extra: &str) -> SshdSpec {
        self.sshd_config_extra.push_str(extra);
        if !self.sshd_config_extra.ends_with('\n') {
            self.sshd_config_extra.push('\n');
        }
        self
    }

    /// Sets the PAM stack (`/etc/pam.d/sshd`).
    pub fn pam(mut self, service_text: &str) -> SshdSpec {
        self.pam_service = Some(service_text.to_string());
        self
    }

    /// Adds a file under the namespace's `/etc`.
    pub fn etc_file(mut self, file: EtcFile) -> SshdSpec {
        self.etc_files.push(file);
        self
    }
}

/// A running sshd. Killed, with every process of its namespace, on drop.
#[derive(Debug)]
pub struct Sshd {
    _lab: Lab,
    name: String,
    dir: TempDir,
    port: u16,
    child: Child,
    syslog: SyslogCatcher,
    host_public_key: String,
}

/// Splits sshd_config text before its first `Match` line.
fn split_at_match(extra: &str) -> (String, String) {
    let mut head = String::new();
    let mut tail = String::new();
    let mut in_match = false;
    for line in extra.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if word.eq_ignore_ascii_case("match") {
            in_match = true;
        }
        let part = if in_match { &mut tail } else { &mut head };
        part.push_str(line);
        part.push('\n');
    }
    (head, tail)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

fn write_with(path: &Path, contents: &str, mode: u32, uid: u32, gid: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown: {e}"));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
}

impl Sshd {
    pub(crate) fn start(lab: &Lab, spec: SshdSpec) -> Sshd {
        let name = if spec.name.is_empty() {
            "sshd".to_string()
        } else {
            spec.name.clone()
        };
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
            "sshd name must be [a-z0-9_-]: {name:?}"
        );
        let dir = lab.new_run_dir(&format!("sshd-{name}-"));
        let syslog = SyslogCatcher::bind(&lab.socket_dir().join(
            format!("{}.sock", dir.path().file_name().map_or_else(
                    || name.clone(),
                    |n| n.to_string_lossy().into_owned(),
                )),
        ));
        let layout = lab.layout_in(dir.path(), syslog.path());
        let pam_text = spec.pam_service.as_deref().unwrap_or(DEFAULT_PAM_SSHD);
        write_with(
            &layout.etc_upper.join("pam.d").join("sshd"),
            pam_text,
            0o644,
            0,
            0,
        );
        for f in &spec.etc_files {
            assert!(
                !f.path.starts_with('/') && !f.path.split('/').any(|c| c == ".."),
                "EtcFile path must be relative to /etc: {}",
                f.path
            );
            write_with(
                &layout.etc_upper.join(&f.path),
                &f.contents,
                f.mode,
                f.uid,
                f.gid,
            );
        }
        let key = dir.path().join("ssh_host_ed25519_key");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "lab-host"])
                .arg("-f")
                .arg(&key),
        );
        let host_public_key = fs::read_to_string(dir.path().join("ssh_host_ed25519_key.pub"))
            .unwrap_or_else(|e| panic!("host key: {e}"))
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let (head, tail) = split_at_match(&spec.sshd_config_extra);
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let config = format!(
                "# duo_push test lab sshd {name}\n\
                 Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {key}\n\
                 PidFile {pid}\n\
                 {head}\
                 UsePAM yes\n\
                 LogLevel VERBOSE\n\
                 PermitRootLogin no\n\
                 StrictModes {strict}\n\
                 AuthorizedKeysFile .ssh/authorized_keys\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication yes\n\
                 KbdInteractiveAuthentication yes\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 UseDNS no\n\
                 X11Forwarding no\n\
                 MaxStartups 100:30:200\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n\
                 {tail}",
                key = key.display(),
                pid = dir.path().join("sshd.pid").display(),
                strict = if lab.strict_modes() { "yes" } else { "no" },
            );
            let config_path = dir.path().join("sshd_config");
            write_with(&config_path, &config, 0o644, 0, 0);
            let log_path = dir.path().join("sshd.log");
            let log = fs::File::create(&log_path).unwrap_or_else(|e| panic!("sshd log: {e}"));
            let log2 = log.try_clone().unwrap_or_else(|e| panic!("sshd log: {e}"));
            let mut cmd = command_in_namespace(&layout, Path::new("/usr/sbin/sshd"));
            cmd.args(["-D", "-e", "-f"])
                .arg(&config_path)
                .env_clear()
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run unshare/sshd: {e}"));
            let listening = format!("Server listening on 127.0.0.1 port {port}");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let text = fs::read_to_string(&log_path).unwrap_or_default();
                if text.contains(&listening) {
                    let sshd = Sshd {
                        _lab: lab.clone(),
                        name,
                        dir,
                        port,
                        child,
                        syslog,
                        host_public_key,
                    };
                    sshd.write_known_hosts();
                    return sshd;
                }
                let exited = matches!(child.try_wait(), Ok(Some(_)));
                if exited && text.contains("Address already in use") {
                    // The port was taken between our probe and sshd's bind: try another.
                    last_log = text;
                    break;
                }
                if exited || Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sshd {name} did not start listening on port {port} ({}); its log:\n{text}",
                        if exited { "it exited" } else { "timeout" }
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("sshd {name} could not bind a free port in 3 attempts; last log:\n{last_log}");
    }

    fn write_known_hosts(&self) {
        write_with(
            &self.known_hosts_path(),
            &format!("{}\n", self.known_hosts_line()),
            0o644,
            0,
            0,
        );
    }

    /// The sshd's name from its spec.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding the sshd's config, keys, log and known_hosts file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host public key (`ssh-ed25519 AAAA...`).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// A known_hosts line for this sshd: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_public_key)
    }

    /// A known_hosts file holding only this sshd's host key.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Everything sshd wrote to stderr (`-e`: its whole log, at LogLevel VERBOSE).
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// How many TCP connections sshd accepted ("Connection from" lines in its log).
    pub fn connections_seen(&self) -> usize {
        self.log_text().matches("Connection from ").count()
    }

    /// Every syslog line sent to `/dev/log` inside the namespace (PAM modules, the shim).
    pub fn syslog_lines(&self) -> Vec<String> {
        self.syslog.lines()
    }

    /// Waits up to `secs` seconds for a syslog line containing `needle`.
    pub fn wait_for_syslog(&self, needle: &str, secs: u64) -> Option<String> {
        self.syslog.wait_for(needle, secs)
    }

    /// Waits up to `secs` seconds for the sshd log to contain `needle`.
    pub fn wait_for_log(&self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Killing unshare makes the kernel kill its child (--kill-child), PID 1 of the
        // namespace, and so every process in the namespace.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_blocks_go_to_the_end_of_the_config() {
        let (head, tail) =
            split_at_match("AllowUsers alice\nMatch User bob\n  ForceCommand /bin/false\n");
        assert_eq!(head, "AllowUsers alice\n");
        assert_eq!(tail, "Match User bob\n  ForceCommand /bin/false\n");
    }
}
