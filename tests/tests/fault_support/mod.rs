//! Shared setup of the fault tests (`fault_matrix.rs`, `fault_bounds.rs`): mock-duo instances,
//! one lab with the shim installed `root:duo-push` 2755, and the two hops run for real:
//!
//! * vault: `pam_duo_push.so` through libpam (`pam-driver`, `pam_start_confdir`) inside the
//!   lab's namespace;
//! * target: the real `duo-proxy-shim` run as the lab user (`setpriv` inside the namespace,
//!   setgid copy, `/etc/duo_push/duo_push.conf` root:duo-push 0640) with
//!   `SSH_ORIGINAL_COMMAND="connect web01:PORT"`, against a TCP target that counts connections.
//!
//! Each run is one child process tree; its wall time and its peak RSS (from `wait4`, which
//! covers the namespace's processes once they are reaped) are measured.

#![allow(dead_code, reason = "each test binary uses a different part")]

#[path = "../pam_support.rs"]
mod pam_support;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duo_push_tests::lab::{proxy_shim, EtcFile, Lab, MockDuo, MockOpts, PamConfDir, User};
use duo_push_tests::mock::cert::Pki;

pub use pam_support::{PROXY, RHOST};

/// `[duo] https_timeout` of every fault config, in seconds.
pub const HTTPS_TIMEOUT: u64 = 2;
/// `[duo] push_timeout` of every fault config, in seconds (the smallest allowed).
pub const PUSH_TIMEOUT: u64 = 10;
/// Allowance on top of a time bound for process start, namespace setup and a loaded machine
/// (a cell's Duo calls run while a few dozen other cells start processes on two cores).
pub const SLACK: Duration = Duration::from_secs(4);
/// A run taking longer than this is killed (and fails its cell).
pub const KILL_AFTER: Duration = Duration::from_secs(60);

/// `https_timeout` as a duration.
pub fn https() -> Duration {
    Duration::from_secs(HTTPS_TIMEOUT)
}

/// `push_timeout` as a duration.
pub fn push() -> Duration {
    Duration::from_secs(PUSH_TIMEOUT)
}

/// The policy columns of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Policy {
    /// `failmode = safe` (else `secure`).
    pub safe: bool,
    /// `force_mfa = yes`.
    pub forced: bool,
}

impl Policy {
    /// All four combinations.
    pub const ALL: [Policy; 4] = [
        Policy {
            safe: true,
            forced: false,
        },
        Policy {
            safe: true,
            forced: true,
        },
        Policy {
            safe: false,
            forced: false,
        },
        Policy {
            safe: false,
            forced: true,
        },
    ];

    /// Two letters for user names: failmode `s`afe / se`c`ure, force_mfa `y`es / `n`o.
    pub fn code(self) -> &'static str {
        match (self.safe, self.forced) {
            (true, false) => "sn",
            (true, true) => "sy",
            (false, false) => "cn",
            (false, true) => "cy",
        }
    }

    /// Column heading.
    pub fn label(self) -> String {
        format!(
            "{}/{}",
            if self.safe { "safe" } else { "secure" },
            if self.forced { "mfa" } else { "-" }
        )
    }
}

/// Which hop runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hop {
    /// `pam_duo_push.so` through libpam.
    Vault,
    /// `duo-proxy-shim connect`.
    Target,
}

impl Hop {
    /// Both hops.
    pub const ALL: [Hop; 2] = [Hop::Vault, Hop::Target];

    /// One letter for user names.
    pub fn code(self) -> &'static str {
        match self {
            Hop::Vault => "v",
            Hop::Target => "t",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Hop::Vault => "vault",
            Hop::Target => "target",
        }
    }
}

/// Where a run's config sends the Duo calls.
#[derive(Clone, Debug)]
pub struct DuoEndpoint {
    /// `host =` (`127.0.0.1:PORT`).
    pub host: String,
    /// `cafile =`.
    pub cafile: PathBuf,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Access granted: PAM_SUCCESS (vault) or a connection to the target (target).
    pub granted: bool,
    /// Wall time of the whole run (namespace setup included).
    pub elapsed: Duration,
    /// Killed at [`KILL_AFTER`].
    pub killed: bool,
    /// PAM code name (vault) or exit status (target).
    pub result: String,
    /// Connections the target saw (target hop; 0 for the vault).
    pub connections: usize,
    /// Exit status of the shim (target hop).
    pub exit: Option<i32>,
    /// Peak resident set of the run's process tree, KiB.
    pub max_rss_kib: u64,
    /// stdout and stderr, for failure messages.
    pub output: String,
}

/// The world of the fault tests.
pub struct World {
    /// The lab (users, namespace, syslog).
    pub lab: Lab,
    /// The ordinary mock-duo (stage faults by username).
    pub mock: MockDuo,
    /// The installed shim copy (root:duo-push 2755).
    pub shim: PathBuf,
    /// gid of `duo-push`.
    pub shim_gid: u32,
    /// Serializes writing `/etc/duo_push/duo_push.conf` and copying it into a namespace.
    etc_lock: Mutex<()>,
    users: Mutex<Vec<String>>,
}

/// The shim binary, rebuilt first if a source of `proxy_shim` or `common` is newer (see
/// [`duo_push_tests::lab::build`]).
pub fn shim_binary() -> PathBuf {
    proxy_shim()
}

/// The PAM module, rebuilt first if stale.
pub fn module_binary() -> PathBuf {
    pam_support::module_path()
}

/// A fresh CA that signed nothing the mocks serve: "TLS from another CA".
pub fn foreign_ca_pem() -> String {
    Pki::generate(&["localhost".to_owned()])
        .expect("a CA")
        .ca_pem
}

/// A loopback port with nothing listening: "connection refused".
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

impl World {
    /// Starts the ordinary mock (with `mock_args`), a lab with the group `duo-push`, and
    /// installs the shim.
    pub fn start(mock_args: &[&str]) -> World {
        let shim_src = shim_binary();
        let _ = module_binary();
        let mock = MockDuo::start(MockOpts {
            extra_args: mock_args.iter().map(|a| (*a).to_owned()).collect(),
            ..MockOpts::default()
        });
        let lab = Lab::new();
        let shim_gid = lab.add_group("duo-push");
        let shim = lab.install_copy(&shim_src, "duo-proxy-shim", 0o2755, 0, shim_gid);
        World {
            lab,
            mock,
            shim,
            shim_gid,
            etc_lock: Mutex::new(()),
            users: Mutex::new(Vec::new()),
        }
    }

    /// Where the ordinary mock is.
    pub fn endpoint(&self) -> DuoEndpoint {
        endpoint_of(&self.mock)
    }

    /// Adds lab users (no password, no groups).
    pub fn add_users<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut known = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            if !known.iter().any(|k| k == name) {
                self.lab.add_user(name, None, &[]);
                known.push(name.to_owned());
            }
        }
    }

    /// A lab user.
    pub fn user(&self, name: &str) -> User {
        self.lab.user(name)
    }

    /// The config text of a run.
    pub fn config_text(
        &self,
        duo: &DuoEndpoint,
        policy: Policy,
        target: Option<(u16, &str)>,
    ) -> String {
        let mut text = format!(
            "[duo]\nhost = {host}\nikey = {ikey}\nskey = {skey}\ncafile = {cafile}\n\
             failmode = {failmode}\nhttps_timeout = {HTTPS_TIMEOUT}\npush_timeout = {PUSH_TIMEOUT}\n\
             [policy]\nforce_mfa = {forced}\n\
             [proxy]\nname = {PROXY}\nconnect_timeout = 5\n",
            host = duo.host,
            ikey = self.mock.ikey(),
            skey = self.mock.skey(),
            cafile = duo.cafile.display(),
            failmode = if policy.safe { "safe" } else { "secure" },
            forced = if policy.forced { "yes" } else { "no" },
        );
        if let Some((port, user)) = target {
            text.push_str(&format!(
                "[target web01]\nhost = 127.0.0.1\nport = {port}\nallow = {user}\n"
            ));
        }
        text
    }

    /// The vault hop for `user`.
    pub fn run_vault(&self, user: &str, duo: &DuoEndpoint, policy: Policy) -> Outcome {
        let conf = self.lab.write_file(
            &format!("conf/{user}.conf"),
            &self.config_text(duo, policy, None),
            0o600,
            0,
            0,
        );
        let confdir = PamConfDir::new(&format!(
            "auth required {} conf={}\n",
            module_binary().display(),
            conf.display()
        ));
        let driver = Path::new(env!("CARGO_BIN_EXE_pam-driver"));
        let mut cmd = self.lab.command_in_namespace(driver);
        cmd.arg("--confdir")
            .arg(confdir.path())
            .args([
                "--service",
                confdir.service(),
                "--user",
                user,
                "--rhost",
                RHOST,
                "--hook",
                "auth",
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let run = run_measured(&mut cmd, KILL_AFTER);
        let result = run
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("result: authenticate "))
            .filter_map(|r| r.split(' ').next())
            .next_back()
            .unwrap_or("")
            .to_owned();
        Outcome {
            granted: result == "PAM_SUCCESS",
            elapsed: run.elapsed,
            killed: run.killed,
            result: if result.is_empty() {
                format!("no result ({})", describe(run.status))
            } else {
                result
            },
            connections: 0,
            exit: run.status.and_then(|s| s.code()),
            max_rss_kib: run.max_rss_kib,
            output: format!("{}{}", run.stdout, run.stderr),
        }
    }

    /// The target hop (`connect web01:PORT`) for `user`, against a fresh counting target.
    pub fn run_target(&self, user: &str, duo: &DuoEndpoint, policy: Policy) -> Outcome {
        let target = CountingTarget::start();
        let u = self.user(user);
        let mut cmd = {
            let _etc = self.etc_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.lab.etc_file(&EtcFile::new(
                "duo_push/duo_push.conf",
                &self.config_text(duo, policy, Some((target.port(), user))),
                0o640,
                0,
                self.shim_gid,
            ));
            // The namespace gets a copy of /etc's upper layer now, with this config.
            self.lab.command_in_namespace(Path::new("/usr/bin/setpriv"))
        };
        cmd.args([
            &format!("--reuid={}", u.uid),
            &format!("--regid={}", u.gid),
            "--clear-groups",
        ])
        .arg(&self.shim)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env(
            "SSH_ORIGINAL_COMMAND",
            format!("connect web01:{}", target.port()),
        )
        .env("SSH_CONNECTION", format!("{RHOST} 50000 127.0.0.1 22"));
        let run = run_measured(&mut cmd, KILL_AFTER);
        let connections = target.finish();
        Outcome {
            granted: connections > 0,
            elapsed: run.elapsed,
            killed: run.killed,
            result: describe(run.status),
            connections,
            exit: run.status.and_then(|s| s.code()),
            max_rss_kib: run.max_rss_kib,
            output: format!("{}{}", run.stdout, run.stderr),
        }
    }

    /// Either hop.
    pub fn run(&self, hop: Hop, user: &str, duo: &DuoEndpoint, policy: Policy) -> Outcome {
        match hop {
            Hop::Vault => self.run_vault(user, duo, policy),
            Hop::Target => self.run_target(user, duo, policy),
        }
    }

    /// The audit line of `user`'s decision, waiting up to `secs` for it (syslog datagrams may
    /// arrive a little after the process ended).
    pub fn decision_line(&self, hop: Hop, user: &str, secs: u64) -> Option<String> {
        let hop_field = format!("hop={}", hop.label());
        let user_field = format!(" user={user} ");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(line) = self.lab.syslog_lines().into_iter().find(|l| {
                l.contains("event=decision") && l.contains(&hop_field) && l.contains(&user_field)
            }) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `host` and `cafile` of a mock.
pub fn endpoint_of(mock: &MockDuo) -> DuoEndpoint {
    DuoEndpoint {
        host: mock.host(),
        cafile: mock.ca_pem_path(),
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        None => "not finished".to_owned(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => format!("{s}"),
        },
    }
}

/// A TCP listener on loopback that accepts, counts and closes connections.
pub struct CountingTarget {
    port: u16,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingTarget {
    /// Starts listening.
    pub fn start() -> CountingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the target");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&count), Arc::clone(&stop));
        let thread = std::thread::spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    c.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => break,
            }
        });
        CountingTarget {
            port,
            count,
            stop,
            thread: Some(thread),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops (after accepting what is queued) and returns the number of connections.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for CountingTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A finished child process tree.
pub struct Measured {
    /// Exit status (None if it could not be collected).
    pub status: Option<ExitStatus>,
    /// Killed at the deadline.
    pub killed: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// Peak RSS of the child and its reaped descendants, KiB (`wait4`'s `ru_maxrss`).
    pub max_rss_kib: u64,
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join_within(handle: JoinHandle<String>, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if handle.is_finished() {
        handle.join().unwrap_or_default()
    } else {
        String::from("(output pipe still open)")
    }
}

/// Runs `cmd` (stdin /dev/null) to completion or `limit` (then SIGKILL), collecting its
/// output, wall time and the peak RSS of its process tree.
pub fn run_measured(cmd: &mut Command, limit: Duration) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    // Reaped below with wait4 (for its rusage), not with Child::wait.
    #[allow(clippy::zombie_processes, reason = "reaped with libc::wait4 below")]
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut killed = false;
    let (status, rusage) = loop {
        let mut raw: libc::c_int = 0;
        // SAFETY: all-zero is a valid `rusage` (plain integers and timevals).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own unreaped child; both out-pointers are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut raw, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break (Some(ExitStatus::from_raw(raw)), usage);
        }
        if reaped < 0 {
            break (None, usage);
        }
        if !killed && started.elapsed() >= limit {
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Measured {
        status,
        killed,
        elapsed,
        stdout: join_within(out, Duration::from_secs(2)),
        stderr: join_within(err, Duration::from_secs(2)),
        max_rss_kib: u64::try_from(rusage.ru_maxrss).unwrap_or(0),
    }
}
