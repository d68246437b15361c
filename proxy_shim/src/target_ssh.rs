//! Interactive and command flows: the OpenSSH client, with an argv built here.
//!
//! ```text
//! ssh -F <[proxy] ssh_config>
//!     -o UserKnownHostsFile=<[proxy] known_hosts> -o GlobalKnownHostsFile=/dev/null
//!     -o StrictHostKeyChecking=yes -o UpdateHostKeys=no -o ConnectTimeout=N
//!     -o ClearAllForwardings=yes -o ForwardAgent=no -o ForwardX11=no
//!     -o PermitLocalCommand=no -e none
//!     -p PORT (-t | -T) -l LOGIN -- HOST [COMMAND]
//! ```
//!
//! * The user's `~/.ssh/config` is never read (`-F`), host keys are checked against the
//!   admin-owned known_hosts only, forwardings and local commands are off, and the escape
//!   character is disabled, so that `~C` on the proxy cannot open forwardings there (the user's
//!   own client still handles its escapes).
//! * HOST, PORT and LOGIN come from the catalog (LOGIN may be the user's own passwd name); HOST
//!   follows `--` so it can never be taken as an option.
//! * COMMAND is the text the user's ssh client sent after the target word, passed as ONE argv
//!   word after HOST. ssh joins its command words with spaces and the target's sshd runs the
//!   result with the login's shell, so the target sees exactly the string a plain
//!   `ssh target COMMAND` would have sent; the target's own shell, authorization and
//!   `ForceCommand` apply. Nothing on the proxy interprets it.
//!
//! The child runs with the environment allow-list (without `SSH_ORIGINAL_COMMAND`) and a fixed
//! `PATH`. The shim spawns it and waits (rather than exec) so that the audit log gets the
//! connection's end and exit status; SIGHUP, SIGTERM, SIGINT and SIGQUIT sent to the shim are
//! forwarded to ssh, and ssh's exit status becomes the shim's (128+N for a signal N).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use duo_push_common::policy::Approval;

use crate::command::RemoteCommand;

/// What is needed to build the ssh argv, copied out of the configuration so that the
/// configuration (and its secret key) can be dropped before the child runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// `[proxy] ssh`.
    pub program: PathBuf,
    /// `[proxy] ssh_config`.
    pub config: PathBuf,
    /// `[proxy] known_hosts`.
    pub known_hosts: PathBuf,
    /// `[proxy] connect_timeout`.
    pub connect_timeout: Duration,
}

/// The destination, from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// The login on the target.
    pub login: String,
}

/// The ssh child could not be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshError {
    /// A configured path would be misread by ssh's option parser.
    UnsafePath(String),
    /// A value from the catalog would be misread (should be impossible after config checks).
    UnsafeValue(String),
    /// spawn or wait failed.
    Run(String),
}

impl fmt::Display for SshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsafePath(p) => write!(
                f,
                "path {p:?} contains whitespace, quotes, % or control characters, which ssh would misread"
            ),
            Self::UnsafeValue(v) => write!(f, "value {v:?} is not safe to pass to ssh"),
            Self::Run(e) => write!(f, "cannot run ssh: {e}"),
        }
    }
}

impl std::error::Error for SshError {}

/// ssh splits `-o` values on whitespace and expands `%` tokens in file options.
fn option_path(path: &Path) -> Result<&str, SshError> {
    let text = path
        .to_str()
        .ok_or_else(|| SshError::UnsafePath(path.display().to_string()))?;
    if !text.starts_with('/')
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '%' | '"' | '\'' | '\\'))
    {
        return Err(SshError::UnsafePath(text.to_owned()));
    }
    Ok(text)
}

fn catalog_value(value: &str) -> Result<&str, SshError> {
    let ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(value)
    } else {
        Err(SshError::UnsafeValue(value.to_owned()))
    }
}

/// The argv after the program name.
pub fn arguments(
    settings: &SshSettings,
    destination: &Destination,
    tty: bool,
    command: Option<&RemoteCommand>,
) -> Result<Vec<OsString>, SshError> {
    let config = option_path(&settings.config)?;
    let known_hosts = option_path(&settings.known_hosts)?;
    let host = catalog_value(&destination.host)?;
    let login = catalog_value(&destination.login)?;
    let timeout = settings.connect_timeout.as_secs().max(1);
    let mut args: Vec<OsString> = Vec::with_capacity(32);
    let mut push = |s: &str| args.push(OsString::from(s));
    push("-F");
    push(config);
    for option in [
        format!("UserKnownHostsFile={known_hosts}"),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        "UpdateHostKeys=no".to_owned(),
        format!("ConnectTimeout={timeout}"),
        "ClearAllForwardings=yes".to_owned(),
        "ForwardAgent=no".to_owned(),
        "ForwardX11=no".to_owned(),
        "PermitLocalCommand=no".to_owned(),
    ] {
        push("-o");
        push(&option);
    }
    push("-e");
    push("none");
    push("-p");
    push(&destination.port.to_string());
    push(if tty { "-t" } else { "-T" });
    push("-l");
    push(login);
    push("--");
    push(host);
    if let Some(command) = command {
        push(command.as_str());
    }
    Ok(args)
}

/// How the ssh child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshEnd {
    /// The shim's exit code: ssh's, or 128+N if ssh died of signal N.
    pub exit_code: i32,
    /// The signal that killed ssh, if one did.
    pub signal: Option<i32>,
}

/// Maps ssh's wait status to the shim's exit code.
pub fn exit_code(status: ExitStatus) -> SshEnd {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => SshEnd {
            exit_code: code,
            signal: None,
        },
        (None, Some(sig)) => SshEnd {
            exit_code: 128_i32.saturating_add(sig),
            signal: Some(sig),
        },
        (None, None) => SshEnd {
            exit_code: 255,
            signal: None,
        },
    }
}

/// Runs ssh and waits for it, forwarding termination signals. Takes the target push's
/// [`Approval`] by value: there is no way to reach this without one.
pub fn run(
    approval: Approval,
    settings: &SshSettings,
    args: Vec<OsString>,
) -> Result<SshEnd, SshError> {
    // The approval has done its job once the child is about to start.
    drop(approval);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SshError::Run(format!("runtime: {e}")))?;
    runtime.block_on(spawn_and_wait(settings.program.clone(), args))
}

async fn spawn_and_wait(program: PathBuf, args: Vec<OsString>) -> Result<SshEnd, SshError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use tokio::signal::unix::{signal, SignalKind};

    let sig = |kind: SignalKind| signal(kind).map_err(|e| SshError::Run(format!("signals: {e}")));
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut quit = sig(SignalKind::quit())?;

    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .env_clear()
        .envs(crate::environment::child_env())
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| SshError::Run(format!("{}: {e}", program.display())))?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let forward = |signal: Signal| {
        if let Some(pid) = pid {
            let _ = kill(pid, signal);
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| SshError::Run(format!("wait: {e}")))?;
                return Ok(exit_code(status));
            }
            _ = hup.recv() => forward(Signal::SIGHUP),
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = int.recv() => forward(Signal::SIGINT),
            _ = quit.recv() => forward(Signal::SIGQUIT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{parse_str, Command};

    fn settings() -> SshSettings {
        SshSettings {
            program: "/usr/bin/ssh".into(),
            config: "/etc/duo_push/ssh_config".into(),
            known_hosts: "/etc/duo_push/known_hosts".into(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn dest() -> Destination {
        Destination {
            host: "10.0.0.5".into(),
            port: 2222,
            login: "deploy".into(),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn interactive_argv_is_fixed_and_ends_with_the_host() {
        let args = strings(&arguments(&settings(), &dest(), true, None).unwrap());
        assert_eq!(
            args,
            [
                "-F",
                "/etc/duo_push/ssh_config",
                "-o",
                "UserKnownHostsFile=/etc/duo_push/known_hosts",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UpdateHostKeys=no",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ClearAllForwardings=yes",
                "-o",
                "ForwardAgent=no",
                "-o",
                "ForwardX11=no",
                "-o",
                "PermitLocalCommand=no",
                "-e",
                "none",
                "-p",
                "2222",
                "-t",
                "-l",
                "deploy",
                "--",
                "10.0.0.5"
            ]
        );
    }

    #[test]
    fn the_remote_command_is_one_word_after_the_host() {
        let Command::Exec { command, .. } =
            parse_str("web01 ls -la; id $(whoami) -oProxyCommand=x").unwrap()
        else {
            panic!()
        };
        let args = strings(&arguments(&settings(), &dest(), false, Some(&command)).unwrap());
        let n = args.len();
        assert_eq!(
            &args[n - 3..],
            ["--", "10.0.0.5", "ls -la; id $(whoami) -oProxyCommand=x"]
        );
        assert!(args.contains(&"-T".to_owned()));
        assert!(!args.contains(&"-t".to_owned()));
    }

    #[test]
    fn paths_ssh_would_misread_are_refused() {
        for bad in [
            "/etc/duo push/known_hosts",
            "/etc/%d/known_hosts",
            "relative/known_hosts",
            "/etc/\"x",
        ] {
            let mut s = settings();
            s.known_hosts = bad.into();
            assert!(
                matches!(
                    arguments(&s, &dest(), true, None),
                    Err(SshError::UnsafePath(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn catalog_values_that_look_like_options_are_refused() {
        for bad in ["-oProxyCommand=x", "a b", "", "x;y"] {
            let mut d = dest();
            d.host = bad.into();
            assert!(arguments(&settings(), &d, true, None).is_err(), "{bad}");
            let mut d = dest();
            d.login = bad.into();
            assert!(arguments(&settings(), &d, true, None).is_err(), "{bad}");
        }
        let mut d = dest();
        d.host = "::1".into();
        assert!(arguments(&settings(), &d, true, None).is_ok());
    }

    #[test]
    fn exit_status_passes_through_and_signals_become_128_plus_n() {
        let status = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .status()
            .unwrap();
        assert_eq!(exit_code(status).exit_code, 7);
        let status = std::process::Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .unwrap();
        assert_eq!(
            exit_code(status),
            SshEnd {
                exit_code: 143,
                signal: Some(15)
            }
        );
    }
}
