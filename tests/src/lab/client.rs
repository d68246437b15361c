//! The real OpenSSH client, driven without a person at the keyboard.
//!
//! Password and keyboard-interactive prompts are answered by an `SSH_ASKPASS` script that the
//! lab writes per run (`SSH_ASKPASS_REQUIRE=force`, so ssh never reads a terminal): each prompt
//! is recorded (see [`SshRun::prompts`]) and answered with the next of [`SshClient::answers`];
//! when the answers run out the script fails, which ssh takes as "no answer".

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::paths::{sh_quote, TempDir};
use super::process::{collect, join_for, run_with_timeout, wait_until, Collected};
use super::sshd::Sshd;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A builder for one run of `/usr/bin/ssh USER@127.0.0.1 -p PORT [ARGS...]` against a lab sshd.
///
/// Defaults: `-F /dev/null`, the sshd's own known_hosts file with `StrictHostKeyChecking yes`,
/// no public key authentication unless [`SshClient::identity`] is set, one password prompt,
/// no connection sharing, a 30 s timeout after which ssh is killed.
#[derive(Debug, Clone)]
pub struct SshClient {
    user: String,
    port: u16,
    known_hosts: PathBuf,
    work: PathBuf,
    answers: Vec<String>,
    identity: Option<PathBuf>,
    tty: Option<bool>,
    local_pty: bool,
    options: Vec<String>,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// The result of a client run.
#[derive(Debug, Clone)]
pub struct SshRun {
    /// The exit code; None if ssh was killed by a signal (for example at the timeout).
    pub status: Option<i32>,
    /// Whether the lab killed ssh at the timeout.
    pub timed_out: bool,
    /// Standard output (with a local pty: everything the terminal showed, stderr included).
    pub stdout: String,
    /// Standard error (empty with a local pty).
    pub stderr: String,
    /// The prompts ssh passed to the askpass script, in order (e.g. `alice@127.0.0.1's
    /// password: ` or a keyboard-interactive prompt).
    pub prompts: Vec<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl SshRun {
    /// Exit code 0 and not timed out.
    pub fn success(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }
}

impl fmt::Display for SshRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ssh exit {:?}{} after {:?}\nprompts: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            if self.timed_out {
                " (killed at timeout)"
            } else {
                ""
            },
            self.elapsed,
            self.prompts,
            self.stdout,
            self.stderr
        )
    }
}

impl SshClient {
    /// A client logging in as `user` to `sshd`.
    pub fn new(sshd: &Sshd, user: &str) -> SshClient {
        SshClient {
            user: user.to_string(),
            port: sshd.port(),
            known_hosts: sshd.known_hosts_path(),
            work: sshd.dir().join("clients"),
            answers: Vec::new(),
            identity: None,
            tty: None,
            local_pty: false,
            options: Vec::new(),
            args: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Answers the first prompt with `password`.
    pub fn password(mut self, password: &str) -> SshClient {
        self.answers = vec![password.to_string()];
        self
    }

    /// Answers prompts in order with these (password, then keyboard-interactive answers...).
    pub fn answers<I, S>(mut self, answers: I) -> SshClient
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.answers = answers.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates with this private key (`-i KEY -o IdentitiesOnly=yes`).
    pub fn identity(mut self, key: &Path) -> SshClient {
        self.identity = Some(key.to_path_buf());
        self
    }

    /// `true`: `-tt` (the server allocates a pty even without a local terminal);
    /// `false`: `-T`. Unset: ssh's default.
    pub fn tty(mut self, tty: bool) -> SshClient {
        self.tty = Some(tty);
        self
    }

    /// Runs ssh inside a local pseudo-terminal (util-linux `script -qfec`), as a person's
    /// terminal would be. stderr is then part of stdout.
    pub fn local_pty(mut self, on: bool) -> SshClient {
        self.local_pty = on;
        self
    }

    /// Adds `-o KEY=VALUE`. These come before the lab's own options and ssh keeps the first
    /// value it reads, so they override the lab's defaults (e.g. `NumberOfPasswordPrompts=3`,
    /// `ProxyCommand=...`, `PreferredAuthentications=keyboard-interactive`).
    pub fn option(mut self, key: &str, value: &str) -> SshClient {
        self.options.push(format!("{key}={value}"));
        self
    }

    /// Adds one argument after the destination (the remote command's words).
    pub fn arg(mut self, arg: &str) -> SshClient {
        self.args.push(arg.to_string());
        self
    }

    /// Adds arguments after the destination.
    pub fn args<I, S>(mut self, args: I) -> SshClient
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sends these bytes on ssh's stdin, then closes it (default: /dev/null).
    pub fn stdin(mut self, data: &[u8]) -> SshClient {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Kills ssh after this many seconds (default 30).
    pub fn timeout_secs(mut self, secs: u64) -> SshClient {
        self.timeout = Duration::from_secs(secs);
        self
    }

    /// Writes the askpass script and its answers into a fresh directory.
    fn prepare_askpass(&self) -> PathBuf {
        let dir = TempDir::new_in(&self.work, "c-", 0o700);
        let path = dir.path().to_path_buf();
        // Kept with the sshd's directory for post-mortem reading; removed with the lab.
        std::mem::forget(dir);
        let d = path
            .to_str()
            .unwrap_or_else(|| panic!("lab path not UTF-8"));
        let script = format!(
            "#!/bin/sh\n\
             # duo_push lab askpass: record the prompt, answer the next scripted answer\n\
             d={d}\n\
             n=$(cat \"$d/count\")\n\
             n=$((n+1))\n\
             echo \"$n\" > \"$d/count\"\n\
             printf '%s' \"$1\" > \"$d/prompt.$n\"\n\
             if [ -f \"$d/answer.$n\" ]; then cat \"$d/answer.$n\"; echo; exit 0; fi\n\
             exit 1\n",
            d = sh_quote(d)
        );
        let askpass = path.join("askpass");
        fs::write(&askpass, script).unwrap_or_else(|e| panic!("askpass: {e}"));
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("askpass: {e}"));
        fs::write(path.join("count"), "0\n").unwrap_or_else(|e| panic!("askpass: {e}"));
        for (i, answer) in self.answers.iter().enumerate() {
            let file = path.join(format!("answer.{}", i + 1));
            fs::write(&file, answer).unwrap_or_else(|e| panic!("askpass: {e}"));
        }
        path
    }

    /// The ssh argv (without the program), as the lab would run it.
    fn ssh_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-F".into(), "/dev/null".into()];
        a.extend(
            self.options
                .iter()
                .flat_map(|o| ["-o".to_string(), o.clone()]),
        );
        let mut opt = |s: String| a.extend(["-o".to_string(), s]);
        opt(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        opt("GlobalKnownHostsFile=/dev/null".into());
        opt("StrictHostKeyChecking=yes".into());
        opt("UpdateHostKeys=no".into());
        opt("CheckHostIP=no".into());
        opt("ConnectTimeout=10".into());
        opt("GSSAPIAuthentication=no".into());
        opt("NumberOfPasswordPrompts=1".into());
        opt("ControlMaster=no".into());
        opt("ControlPath=none".into());
        opt("IdentitiesOnly=yes".into());
        opt("IdentityAgent=none".into());
        match &self.identity {
            Some(key) => opt(format!("IdentityFile={}", key.display())),
            None => opt("PubkeyAuthentication=no".into()),
        }
        match self.tty {
            Some(true) => a.push("-tt".into()),
            Some(false) => a.push("-T".into()),
            None => {}
        }
        a.extend(["-p".to_string(), self.port.to_string()]);
        a.push(format!("{}@127.0.0.1", self.user));
        a.extend(self.args.iter().cloned());
        a
    }

    /// The command the lab runs (ssh, or `script` around it for a local pty), with the
    /// askpass environment for the prompts answered from `askpass_dir`.
    fn command_with(&self, askpass_dir: &Path) -> Command {
        let args = self.ssh_args();
        let mut cmd = if self.local_pty {
            let line = std::iter::once("/usr/bin/ssh".to_string())
                .chain(args)
                .map(|w| sh_quote(&w))
                .collect::<Vec<_>>()
                .join(" ");
            let mut c = Command::new("script");
            c.args(["-qfec", &line, "/dev/null"]);
            c
        } else {
            let mut c = Command::new("/usr/bin/ssh");
            c.args(args);
            c
        };
        cmd.env_clear()
            .env("PATH", PATH)
            .env("HOME", askpass_dir)
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm")
            .env("LANG", "C.UTF-8")
            .env("DISPLAY", ":0")
            .env("SSH_ASKPASS", askpass_dir.join("askpass"))
            .env("SSH_ASKPASS_REQUIRE", "force");
        cmd
    }

    /// The command the lab would run (a fresh askpass directory is prepared), for tests that
    /// need to run it themselves.
    pub fn command(&self) -> Command {
        let dir = self.prepare_askpass();
        self.command_with(&dir)
    }

    /// Runs ssh to completion (or the timeout).
    pub fn run(&self) -> SshRun {
        let dir = self.prepare_askpass();
        let mut cmd = self.command_with(&dir);
        let f = run_with_timeout(&mut cmd, self.stdin.clone(), self.timeout);
        SshRun {
            status: f.status.code(),
            timed_out: f.timed_out,
            stdout: f.stdout,
            stderr: f.stderr,
            prompts: read_prompts(&dir),
            elapsed: f.elapsed,
        }
    }

    /// Starts ssh for a conversation: write with [`SshSession::send`], read with
    /// [`SshSession::expect`], end with [`SshSession::finish`]. The builder's `stdin` is ignored.
    pub fn spawn(&self) -> SshSession {
        let dir = self.prepare_askpass();
        let mut cmd = self.command_with(&dir);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let (out, out_thread) = collect(child.stdout.take().expect("stdout is piped"));
        let (err, err_thread) = collect(child.stderr.take().expect("stderr is piped"));
        SshSession {
            child,
            stdin,
            out,
            err,
            threads: vec![out_thread, err_thread],
            mark: 0,
            askpass_dir: dir,
            start: Instant::now(),
            timeout: self.timeout,
        }
    }
}

fn read_prompts(dir: &Path) -> Vec<String> {
    (1..)
        .map_while(|n| fs::read_to_string(dir.join(format!("prompt.{n}"))).ok())
        .collect()
}

/// A running ssh client for interactive tests.
#[derive(Debug)]
pub struct SshSession {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Collected>,
    err: Arc<Collected>,
    threads: Vec<JoinHandle<()>>,
    mark: usize,
    askpass_dir: PathBuf,
    start: Instant,
    timeout: Duration,
}

impl SshSession {
    /// Writes `text` to ssh's stdin.
    pub fn send(&mut self, text: &str) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of the ssh session is closed"));
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to ssh: {e}\n{}", self.transcript()));
    }

    /// Writes `line` and a newline.
    pub fn send_line(&mut self, line: &str) {
        self.send(&format!("{line}\n"));
    }

    /// Closes ssh's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Everything ssh wrote to stdout so far.
    pub fn output(&self) -> String {
        self.out.text()
    }

    /// Everything ssh wrote to stderr so far.
    pub fn error_output(&self) -> String {
        self.err.text()
    }

    fn transcript(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.output(),
            self.error_output()
        )
    }

    /// Waits up to `secs` seconds until stdout, after the end of the previous match, contains
    /// `needle`; returns that output up to and including the match. Panics with the transcript
    /// if it does not appear.
    pub fn expect(&mut self, needle: &str, secs: u64) -> String {
        match self.try_expect(needle, secs) {
            Some(text) => text,
            None => panic!(
                "ssh output did not show {needle:?} within {secs} s\n{}",
                self.transcript()
            ),
        }
    }

    /// Like [`SshSession::expect`], returning None instead of panicking.
    pub fn try_expect(&mut self, needle: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut data = self.out.data.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let text = String::from_utf8_lossy(data.get(self.mark..).unwrap_or_default());
            if let Some(pos) = text.find(needle) {
                let end = pos + needle.len();
                let found = text.get(..end).unwrap_or_default().to_string();
                self.mark += found.len();
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            data = self
                .out
                .grew
                .wait_timeout(data, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Closes stdin, waits up to `secs` seconds for ssh to exit (killing it then), and returns
    /// the whole run.
    pub fn finish(mut self, secs: u64) -> SshRun {
        self.stdin = None;
        let (status, timed_out) =
            wait_until(&mut self.child, Instant::now() + Duration::from_secs(secs));
        for t in self.threads.drain(..) {
            join_for(t, Duration::from_secs(2));
        }
        SshRun {
            status: status.code(),
            timed_out,
            stdout: self.out.text(),
            stderr: self.err.text(),
            prompts: read_prompts(&self.askpass_dir),
            elapsed: self.start.elapsed(),
        }
    }

    /// The builder's timeout, for callers that want to reuse it.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
