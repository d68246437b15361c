//! The private mount namespace a lab process runs in.
//!
//! `unshare --mount --pid --fork --kill-child --mount-proc` gives the process its own mount
//! table and PID namespace: when the `unshare` process is killed, the kernel kills the child
//! (PID 1 of the namespace) and with it every process in the namespace, including sshd's
//! per-connection children, which call `setsid()` and so escape process-group kills.
//!
//! Inside, a shell script mounts (none of this is visible on the host):
//! * an overlay over `/etc` whose upper layer is a lab directory (files the test adds, like
//!   `pam.d/sshd` or `duo_push/duo_push.conf`, are written there before the start);
//! * the lab's `passwd`, `shadow`, `group`, `gshadow` bound over the overlay's (so users added
//!   later are visible at once: the lab rewrites those files in place);
//! * tmpfs over `/run` (with `/run/sshd`) and `/var/log` (with empty wtmp, btmp, lastlog, so
//!   login records do not reach the host's);
//! * tmpfs over `/dev` with the usual device nodes, a new devpts instance (for ptys), a tmpfs
//!   `/dev/shm`, and the lab's syslog socket bound onto `/dev/log`.
//!
//! and then `exec "$@"`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::paths::sh_quote;

/// What a namespace needs from the lab.
#[derive(Debug, Clone)]
pub(crate) struct NsLayout {
    /// Overlay upper directory for `/etc`.
    pub(crate) etc_upper: PathBuf,
    /// Overlay work directory (same filesystem as `etc_upper`).
    pub(crate) etc_work: PathBuf,
    /// Directory holding the lab's `passwd`, `shadow`, `group`, `gshadow`.
    pub(crate) accounts_dir: PathBuf,
    /// The syslog socket to bind onto `/dev/log`.
    pub(crate) syslog_socket: PathBuf,
}

fn quoted(p: &Path) -> String {
    let s = p
        .to_str()
        .unwrap_or_else(|| panic!("lab path is not UTF-8: {p:?}"));
    // The overlay's mount options are separated by commas and colons.
    assert!(
        !s.contains([',', ':', '\n']),
        "lab path must not contain ',', ':' or newlines: {s}"
    );
    sh_quote(s)
}

/// The script that sets up the namespace, then runs `"$@"`.
pub(crate) fn setup_script(layout: &NsLayout) -> String {
    let up = quoted(&layout.etc_upper);
    let work = quoted(&layout.etc_work);
    let acc = quoted(&layout.accounts_dir);
    let sock = quoted(&layout.syslog_socket);
    format!(
        r#"set -eu
mount -t overlay overlay -o lowerdir=/etc,upperdir={up},workdir={work} /etc
for f in passwd shadow group gshadow; do mount --bind {acc}/"$f" /etc/"$f"; done
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -m 0755 /run/sshd
: > /run/utmp
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/log
: > /var/log/wtmp; : > /var/log/btmp; : > /var/log/lastlog
chmod 0600 /var/log/btmp
mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
mknod -m 0666 /dev/null c 1 3
mknod -m 0666 /dev/zero c 1 5
mknod -m 0666 /dev/full c 1 7
mknod -m 0666 /dev/random c 1 8
mknod -m 0666 /dev/urandom c 1 9
mknod -m 0666 /dev/tty c 5 0
mkdir -m 0755 /dev/pts
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mkdir -m 1777 /dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
: > /dev/log
mount --bind {sock} /dev/log
exec "$@"
"#
    )
}

/// A command that runs `program args...` inside a namespace laid out as `layout`.
pub(crate) fn command_in_namespace(layout: &NsLayout, program: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--mount-proc",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
    ]);
    cmd.arg(setup_script(layout));
    cmd.arg("lab-namespace");
    cmd.arg(program);
    cmd
}
