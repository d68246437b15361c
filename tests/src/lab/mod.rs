//! The test laboratory: a real OpenSSH `sshd`, real libpam, test users and a running mock-duo,
//! all set up without changing a single file of the host.
//!
//! Everything here is test-support code. Setting up a lab that cannot work (a missing binary, a
//! port that never opens) aborts the test with a message that says what went wrong and shows the
//! relevant log, so the functions panic instead of returning errors.
//!
//! # What is real and what is isolated
//!
//! * [`Lab`] keeps copies of the host's `/etc/passwd`, `/etc/shadow`, `/etc/group` and
//!   `/etc/gshadow` plus the test users and groups you add, under a lab directory (in
//!   `<workspace>/target/lab/`, so that sshd's `StrictModes` accepts the home directories).
//! * [`Lab::start_sshd`] runs Debian's `/usr/sbin/sshd` on a free loopback port inside a private
//!   mount and PID namespace (`unshare --mount --pid --fork`). There, `/etc` is an overlay whose
//!   writes land in the lab, the lab's account files are bind-mounted over the host's,
//!   `/etc/pam.d/sshd` is your PAM stack, `/run`, `/var/log` and `/dev` are private tmpfs
//!   mounts (with a fresh devpts for ptys), and `/dev/log` is a socket read by the test process:
//!   [`Sshd::syslog_lines`] holds every syslog datagram (the PAM module's and the shim's audit
//!   lines). Dropping the [`Sshd`] kills the namespace and every process in it.
//! * [`SshClient`] runs the host's real `/usr/bin/ssh` as root with `-F /dev/null`, a
//!   known_hosts file holding the lab sshd's host key, and answers password and
//!   keyboard-interactive prompts through `SSH_ASKPASS` (no `sshpass`, no terminal needed).
//! * [`MockDuo`] runs the `mock-duo` binary and talks to its control API over HTTPS.
//! * [`PamDriver`] runs the `pam-driver` binary (libpam's `pam_start_confdir()`), with a
//!   [`PamConfDir`] holding the PAM stack under test, optionally inside the lab's namespace so
//!   that lab users exist for PAM.
//! * [`build`] ([`pam_module`], [`proxy_shim`]) returns the PAM module and the shim, rebuilt
//!   first when a source is newer (this package does not depend on their crates).
//! * [`ProxyWorld`] sets up the whole proxy: a target sshd, and a proxy sshd with the password
//!   and `pam_duo_push.so` in its PAM stack, `ForceCommand` a setgid copy of the shim and
//!   `/etc/duo_push/duo_push.conf` naming the target (the knobs are on [`ProxyWorldSpec`]).
//!
//! All of it needs root (as the test command `sudo ./scripts/test` provides).
//!
//! # Example: log in over a real sshd with a password
//!
//! ```no_run
//! use duo_push_tests::lab::{Lab, SshClient, SshdSpec};
//!
//! let lab = Lab::new();
//! let alice = lab.add_user("alice", Some("correct horse"), &["ops"]);
//! let sshd = lab.start_sshd(SshdSpec::named("proxy"));
//! let run = SshClient::new(&sshd, &alice.name).password("correct horse").args(["true"]).run();
//! assert!(run.success(), "{run}");
//! assert!(sshd.wait_for_syslog("session opened for user alice", 5).is_some());
//! ```
//!
//! # Example: a PAM stack with the module under test and mock-duo
//!
//! ```no_run
//! use duo_push_tests::lab::{artifact_path, Lab, MockDuo, MockOpts, PamConfDir, PamDriver};
//!
//! let mock = MockDuo::start(MockOpts::default());
//! let lab = Lab::new();
//! lab.add_user("alice", None, &[]);
//! let module = artifact_path("libpam_duo_push.so");
//! let conf = lab.write_file("duo_push.conf", "[duo]\n...", 0o600, 0, 0);
//! let confdir = PamConfDir::new(&format!(
//!     "auth required {} conf={}\n",
//!     module.display(),
//!     conf.display()
//! ));
//! let run = PamDriver::new(&confdir, "alice").rhost("192.0.2.10").in_lab(&lab).run();
//! assert_eq!(run.code_name, "PAM_SUCCESS", "{run}");
//! assert_eq!(mock.pushes().len(), 1);
//! assert!(lab.wait_for_syslog("alice", 5).is_some());
//! ```
//!
//! # Example: an interactive menu through a pty
//!
//! ```no_run
//! use duo_push_tests::lab::{Lab, SshClient, SshdSpec};
//!
//! let lab = Lab::new();
//! let alice = lab.add_user("alice", Some("pw"), &[]);
//! let sshd = lab.start_sshd(SshdSpec::named("proxy"));
//! let mut session = SshClient::new(&sshd, &alice.name).password("pw").local_pty(true).spawn();
//! session.expect("$ ", 10);
//! session.send_line("echo hello-$((40+2))");
//! session.expect("hello-42", 10);
//! session.send_line("exit");
//! let run = session.finish(10);
//! assert_eq!(run.status, Some(0), "{run}");
//! ```
//!
//! `local_pty(true)` runs ssh under util-linux `script -qfec`, so the client has a real local
//! terminal (as a person's would) and the server allocates a pty; its stderr is then part of the
//! terminal output. Without it, `tty(true)` passes `-tt`: the server still allocates a pty and
//! the client relays plain pipes, which is enough for most menu tests and keeps stderr apart.
//!
//! # Environment
//!
//! * `DUO_PUSH_MOCK_BIN`, `DUO_PUSH_PAM_DRIVER_BIN`: paths of the binaries (default: next to the
//!   running test executable, in `target/debug/`).
//! * `DUO_PUSH_LAB_DIR`: where lab directories are created (default `<workspace>/target/lab`).
//! * `DUO_PUSH_LAB_KEEP=1`: keep lab directories after the test, to read the logs.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test-support code: a lab that cannot be set up must stop the test with a clear message"
)]

pub mod build;
mod client;
mod mock;
mod namespace;
mod pam;
mod paths;
mod process;
mod proxy;
mod sshd;
mod syslog;
mod users;

pub use build::{fresh_artifact, pam_module, proxy_shim, Artifact};
pub use client::{SshClient, SshRun, SshSession};
pub use mock::{MockDuo, MockOpts, TEST_IKEY, TEST_SKEY};
pub use pam::{pam_driver, PamChild, PamConfDir, PamDriver, PamHook, PamRun};
pub use paths::{artifact_path, TempDir};
pub use proxy::{proxy_pam_stack, ProxyWorld, ProxyWorldSpec, PROXY_SSHD_HARDENING};
pub use sshd::{EtcFile, Sshd, SshdSpec, DEFAULT_PAM_SSHD};
pub use syslog::{syslog_priority, SyslogCatcher, LOG_AUTHPRIV};
pub use users::{Lab, User};
