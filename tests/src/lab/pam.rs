//! Running PAM stacks through the `pam-driver` binary (libpam's `pam_start_confdir()`).
//!
//! pam-driver prints one line per event:
//! `conv: <STYLE> <message>` for each conversation message (newlines as `\n`), and
//! `result: <hook> <PAM_CODE_NAME> <number>` for each libpam call; its exit code is 0 iff the
//! last call returned PAM_SUCCESS.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::paths::{binary_path, TempDir};
use super::process::{collect, join_for, run_with_timeout, wait_until, Collected};
use super::users::Lab;

/// A PAM configuration directory with one service file.
#[derive(Debug)]
pub struct PamConfDir {
    dir: TempDir,
    service: String,
}

impl PamConfDir {
    /// The service name used by [`PamConfDir::new`].
    pub const DEFAULT_SERVICE: &'static str = "duo-test";

    /// A confdir holding the service [`PamConfDir::DEFAULT_SERVICE`] with this text.
    pub fn new(service_text: &str) -> PamConfDir {
        PamConfDir::with_service(PamConfDir::DEFAULT_SERVICE, service_text)
    }

    /// A confdir holding the service `service` with this text.
    pub fn with_service(service: &str, service_text: &str) -> PamConfDir {
        assert!(
            !service.is_empty() && !service.contains(['/', '\0']),
            "bad service name {service:?}"
        );
        let dir = TempDir::new("pam-confdir-");
        let path = dir.path().join(service);
        fs::write(&path, service_text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        PamConfDir {
            dir,
            service: service.to_string(),
        }
    }

    /// The directory (what pam-driver gets as `--confdir`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// Which libpam calls pam-driver makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PamHook {
    /// pam_authenticate.
    #[default]
    Auth,
    /// pam_acct_mgmt.
    Acct,
    /// pam_open_session, then pam_close_session.
    Session,
    /// authenticate, acct_mgmt, setcred(ESTABLISH), open_session, close_session,
    /// setcred(DELETE): stops at the first failure.
    All,
}

impl PamHook {
    fn word(self) -> &'static str {
        match self {
            PamHook::Auth => "auth",
            PamHook::Acct => "acct",
            PamHook::Session => "session",
            PamHook::All => "all",
        }
    }
}

/// The outcome of a pam-driver run.
#[derive(Debug, Clone)]
pub struct PamRun {
    /// The name of the last libpam call's return code, e.g. `PAM_SUCCESS`, `PAM_AUTH_ERR`
    /// (empty if pam-driver printed no result: it crashed or was killed).
    pub code_name: String,
    /// Its number (-1 if none).
    pub code: i32,
    /// Every `result:` line, as (hook, code name, code).
    pub results: Vec<(String, String, i32)>,
    /// The conversation messages, `<STYLE> <message>` (the `conv: ` prefix removed), in order.
    pub conv_lines: Vec<String>,
    /// pam-driver's exit code (None: killed by a signal).
    pub exit: Option<i32>,
    /// Whether the lab killed it at the timeout.
    pub timed_out: bool,
    /// Raw stdout.
    pub stdout: String,
    /// Raw stderr.
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl PamRun {
    fn parse(
        stdout: String,
        stderr: String,
        exit: Option<i32>,
        timed_out: bool,
        elapsed: Duration,
    ) -> PamRun {
        let mut results = Vec::new();
        let mut conv_lines = Vec::new();
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("conv: ") {
                conv_lines.push(rest.to_string());
            } else if let Some(rest) = line.strip_prefix("result: ") {
                let mut words = rest.split(' ');
                if let (Some(hook), Some(name), Some(num)) =
                    (words.next(), words.next(), words.next())
                {
                    results.push((
                        hook.to_string(),
                        name.to_string(),
                        num.parse().unwrap_or(-1),
                    ));
                }
            }
        }
        let (code_name, code) = results
            .last()
            .map_or((String::new(), -1), |(_, n, c)| (n.clone(), *c));
        PamRun {
            code_name,
            code,
            results,
            conv_lines,
            exit,
            timed_out,
            stdout,
            stderr,
            elapsed,
        }
    }

    /// The result of one hook (`authenticate`, `acct_mgmt`, `setcred`, `open_session`,
    /// `close_session`), if it ran.
    pub fn result_of(&self, hook: &str) -> Option<&str> {
        self.results
            .iter()
            .find(|(h, _, _)| h == hook)
            .map(|(_, n, _)| n.as_str())
    }
}

impl fmt::Display for PamRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pam-driver {} ({}) exit {:?}{} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code_name,
            self.code,
            self.exit,
            if self.timed_out {
                " (killed at timeout)"
            } else {
                ""
            },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// A builder for one pam-driver run.
#[derive(Debug, Clone)]
pub struct PamDriver {
    confdir: PathBuf,
    service: String,
    user: String,
    rhost: Option<String>,
    tty: Option<String>,
    answers: Vec<String>,
    hook: PamHook,
    silent: bool,
    lab: Option<Lab>,
    timeout: Duration,
    env: Vec<(String, String)>,
}

impl PamDriver {
    /// Runs the confdir's service for `user`.
    pub fn new(confdir: &PamConfDir, user: &str) -> PamDriver {
        PamDriver::with_service(confdir.path(), confdir.service(), user)
    }

    /// Runs `service` from the directory `confdir` for `user`.
    pub fn with_service(confdir: &Path, service: &str, user: &str) -> PamDriver {
        PamDriver {
            confdir: confdir.to_path_buf(),
            service: service.to_string(),
            user: user.to_string(),
            rhost: None,
            tty: None,
            answers: Vec::new(),
            hook: PamHook::Auth,
            silent: false,
            lab: None,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// Sets PAM_RHOST.
    pub fn rhost(mut self, rhost: &str) -> PamDriver {
        self.rhost = Some(rhost.to_string());
        self
    }

    /// Sets PAM_TTY.
    pub fn tty(mut self, tty: &str) -> PamDriver {
        self.tty = Some(tty.to_string());
        self
    }

    /// Adds an answer for the next prompt (prompts beyond the answers get an empty answer).
    pub fn answer(mut self, text: &str) -> PamDriver {
        self.answers.push(text.to_string());
        self
    }

    /// Which calls to make (default [`PamHook::Auth`]).
    pub fn hook(mut self, hook: PamHook) -> PamDriver {
        self.hook = hook;
        self
    }

    /// Passes PAM_SILENT to every call.
    pub fn silent(mut self) -> PamDriver {
        self.silent = true;
        self
    }

    /// Runs inside the lab's namespace: the lab's users and groups exist, `/etc` is the lab
    /// overlay, and `/dev/log` goes to [`Lab::syslog_lines`].
    pub fn in_lab(mut self, lab: &Lab) -> PamDriver {
        self.lab = Some(lab.clone());
        self
    }

    /// Kills pam-driver after this many seconds (default 60).
    pub fn timeout_secs(mut self, secs: u64) -> PamDriver {
        self.timeout = Duration::from_secs(secs);
        self
    }

    /// Sets an environment variable for pam-driver (its environment is otherwise only PATH).
    pub fn env(mut self, key: &str, value: &str) -> PamDriver {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The command that runs pam-driver as configured.
    pub fn command(&self) -> Command {
        let bin = binary_path("pam-driver", "DUO_PUSH_PAM_DRIVER_BIN");
        let mut cmd = match &self.lab {
            Some(lab) => lab.command_in_namespace(&bin),
            None => Command::new(&bin),
        };
        cmd.arg("--confdir")
            .arg(&self.confdir)
            .args(["--service", &self.service, "--user", &self.user, "--hook"])
            .arg(self.hook.word());
        if let Some(rhost) = &self.rhost {
            cmd.args(["--rhost", rhost]);
        }
        if let Some(tty) = &self.tty {
            cmd.args(["--tty", tty]);
        }
        for a in &self.answers {
            cmd.args(["--answer", a]);
        }
        if self.silent {
            cmd.arg("--silent");
        }
        cmd.env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs pam-driver to completion (or the timeout).
    pub fn run(&self) -> PamRun {
        let f = run_with_timeout(&mut self.command(), None, self.timeout);
        PamRun::parse(f.stdout, f.stderr, f.status.code(), f.timed_out, f.elapsed)
    }

    /// Starts pam-driver in the background (e.g. to approve its push through mock-duo's
    /// control API meanwhile); collect it with [`PamChild::wait`].
    pub fn spawn(&self) -> PamChild {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let (out, out_thread) = collect(child.stdout.take().expect("stdout is piped"));
        let (err, err_thread) = collect(child.stderr.take().expect("stderr is piped"));
        PamChild {
            child,
            out,
            err,
            threads: vec![out_thread, err_thread],
            start: Instant::now(),
            timeout: self.timeout,
        }
    }
}

/// A pam-driver running in the background.
#[derive(Debug)]
pub struct PamChild {
    child: Child,
    out: Arc<Collected>,
    err: Arc<Collected>,
    threads: Vec<JoinHandle<()>>,
    start: Instant,
    timeout: Duration,
}

impl PamChild {
    /// Its stdout so far (e.g. to see a `conv:` line before the push is answered).
    pub fn stdout_so_far(&self) -> String {
        self.out.text()
    }

    /// Waits for it to finish (killing it at the builder's timeout, counted from the start).
    pub fn wait(mut self) -> PamRun {
        let (status, timed_out) = wait_until(&mut self.child, self.start + self.timeout);
        for t in self.threads.drain(..) {
            join_for(t, Duration::from_secs(2));
        }
        PamRun::parse(
            self.out.text(),
            self.err.text(),
            status.code(),
            timed_out,
            self.start.elapsed(),
        )
    }
}

impl Drop for PamChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `service` from `confdir` for `user` with pam-driver, outside any namespace, with extra
/// pam-driver arguments (`--rhost IP`, `--answer TEXT`, `--hook all`, ...).
pub fn pam_driver(confdir: &Path, service: &str, user: &str, args: &[&str]) -> PamRun {
    let bin = binary_path("pam-driver", "DUO_PUSH_PAM_DRIVER_BIN");
    let mut cmd = Command::new(bin);
    cmd.arg("--confdir")
        .arg(confdir)
        .args(["--service", service, "--user", user])
        .args(args);
    let f = run_with_timeout(&mut cmd, None, Duration::from_secs(60));
    PamRun::parse(f.stdout, f.stderr, f.status.code(), f.timed_out, f.elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_result_line_is_the_outcome() {
        let run = PamRun::parse(
            "conv: PAM_PROMPT_ECHO_OFF Password: \nresult: authenticate PAM_SUCCESS 0\n\
             result: acct_mgmt PAM_PERM_DENIED 6\n"
                .to_string(),
            String::new(),
            Some(1),
            false,
            Duration::ZERO,
        );
        assert_eq!(run.code_name, "PAM_PERM_DENIED");
        assert_eq!(run.code, 6);
        assert_eq!(run.conv_lines, vec!["PAM_PROMPT_ECHO_OFF Password: "]);
        assert_eq!(run.result_of("authenticate"), Some("PAM_SUCCESS"));
    }
}
