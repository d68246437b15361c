//! `duo-proxy-shim check [--config PATH]`: is this proxy ready?
//!
//! Validates the configuration file and its permissions (the same secure open as every run),
//! the `[proxy]` files ssh will use, lists the targets, and calls Duo's `/auth/v2/check` with
//! the configured keys. Prints one line per finding and exits non-zero if anything is wrong.
//!
//! `--config` is honoured only for root: the shim is setgid `duo-push`, and letting any user
//! point it at a file would let them read (parts of) files of that group. A non-root user may
//! check the default file; the target list then shows only the targets that user may reach.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use duo_push_common::api::DuoApi;
use duo_push_common::client::{ClientSettings, DuoClient};
use duo_push_common::config::{Config, Principal, DEFAULT_PATH};

use crate::app::{EXIT_DENIED, EXIT_FAILURE, EXIT_USAGE};
use crate::catalog;
use crate::privilege;
use crate::target_ssh::{self, Destination, SshSettings};

/// Parses `[--config PATH]`.
pub fn parse_args(args: &[OsString]) -> Result<Option<PathBuf>, String> {
    match args {
        [] => Ok(None),
        [flag, path] if flag == "--config" => Ok(Some(PathBuf::from(path))),
        [one] => match one.to_str().and_then(|s| s.strip_prefix("--config=")) {
            Some(path) if !path.is_empty() => Ok(Some(PathBuf::from(path))),
            _ => Err("usage: duo-proxy-shim check [--config PATH]".to_owned()),
        },
        _ => Err("usage: duo-proxy-shim check [--config PATH]".to_owned()),
    }
}

/// Whether `--config` may be honoured for this real uid.
pub fn may_choose_config(real_uid_is_root: bool, requested: Option<&Path>) -> bool {
    requested.is_none() || real_uid_is_root
}

/// Problems with a file ssh will read as the user: it must be a regular file owned by root,
/// writable by nobody else (a writable ssh_config could add a `ProxyCommand`), and readable
/// by the users.
pub fn file_problems(path: &Path, what: &str) -> Vec<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return vec![format!("{what} {}: {e}", path.display())],
    };
    let mut problems = Vec::new();
    let mode = meta.permissions().mode();
    if !meta.is_file() {
        problems.push(format!("{what} {} is not a regular file", path.display()));
    }
    if meta.uid() != 0 {
        problems.push(format!("{what} {} is not owned by root", path.display()));
    }
    if mode & 0o022 != 0 {
        problems.push(format!(
            "{what} {} is writable by group or others (mode {:o})",
            path.display(),
            mode & 0o7777
        ));
    }
    if mode & 0o004 == 0 {
        problems.push(format!(
            "{what} {} is not readable by the users (mode {:o}); ssh runs as the user",
            path.display(),
            mode & 0o7777
        ));
    }
    problems
}

/// Runs `check` with the arguments after `check`.
pub fn run(args: &[OsString]) -> ExitCode {
    let requested = match parse_args(args) {
        Ok(p) => p,
        Err(usage) => {
            let _ = privilege::drop_group_privilege();
            eprintln!("{usage}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let is_root = nix::unistd::getuid().is_root();
    if !may_choose_config(is_root, requested.as_deref()) {
        let _ = privilege::drop_group_privilege();
        eprintln!("duo-proxy-shim check: --config is only honoured for root");
        return ExitCode::from(EXIT_USAGE);
    }
    let path = requested.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let loaded = Config::load(&path);
    if let Err(e) = privilege::drop_group_privilege() {
        eprintln!("duo-proxy-shim check: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let mut out = io::stdout().lock();
    let config = match loaded {
        Ok(config) => {
            let _ = writeln!(out, "ok: configuration {}", path.display());
            config
        }
        Err(e) => {
            let _ = writeln!(out, "FAIL: configuration: {e}");
            return ExitCode::from(EXIT_DENIED);
        }
    };
    let mut problems: Vec<String> = Vec::new();
    for warning in &config.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    if let Err(e) = config.proxy.effective_name() {
        problems.push(format!("proxy name: {e}"));
    }

    let proxy = &config.proxy;
    match std::fs::metadata(&proxy.ssh) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => problems.push(format!(
            "ssh {} is not an executable file",
            proxy.ssh.display()
        )),
        Err(e) => problems.push(format!("ssh {}: {e}", proxy.ssh.display())),
    }
    problems.extend(file_problems(&proxy.ssh_config, "ssh_config"));
    problems.extend(file_problems(&proxy.known_hosts, "known_hosts"));
    let ssh = SshSettings {
        program: proxy.ssh.clone(),
        config: proxy.ssh_config.clone(),
        known_hosts: proxy.known_hosts.clone(),
        connect_timeout: proxy.connect_timeout,
    };

    let user = privilege::invoker().ok().map(|(user, _)| user);
    let shown: Vec<_> = match (&user, is_root) {
        (_, true) => config.targets.iter().collect(),
        (Some(user), false) => catalog::reachable(&config.targets, user),
        (None, false) => Vec::new(),
    };
    let _ = writeln!(
        out,
        "targets: {} configured{}",
        config.targets.len(),
        if is_root {
            String::new()
        } else {
            format!(", {} reachable by you", shown.len())
        }
    );
    for target in shown {
        let allow: Vec<String> = target
            .allow
            .iter()
            .map(|p| match p {
                Principal::User(u) => u.clone(),
                Principal::Group(g) => format!("@{g}"),
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}  {}@{}  mfa={}  allow={}",
            target.name,
            target.login.as_deref().unwrap_or("(user)"),
            target.address(),
            if target.mfa { "yes" } else { "no" },
            if allow.is_empty() {
                "(nobody)".to_owned()
            } else {
                allow.join(" ")
            }
        );
        let destination = Destination {
            host: target.host.clone(),
            port: target.port,
            login: target.login.clone().unwrap_or_else(|| "user".to_owned()),
        };
        if let Err(e) = target_ssh::arguments(&ssh, &destination, false, None) {
            problems.push(format!("target {}: {e}", target.name));
        }
    }

    let duo = &config.duo;
    let client = DuoClient::new(ClientSettings::from_config(duo, crate::USER_AGENT_PRODUCT));
    let duo_result = client.map_err(|e| e.to_string()).and_then(|client| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let result = runtime.block_on(async {
            tokio::time::timeout(duo.https_timeout.saturating_mul(2), client.check()).await
        });
        match result {
            Ok(Ok(_time)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in time".to_owned()),
        }
    });
    match duo_result {
        Ok(()) => {
            let _ = writeln!(out, "ok: Duo /auth/v2/check at {}", duo.host);
        }
        Err(e) => problems.push(format!("Duo /auth/v2/check at {}: {e}", duo.host)),
    }

    for problem in &problems {
        let _ = writeln!(out, "FAIL: {problem}");
    }
    let _ = out.flush();
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn arguments_are_config_or_nothing() {
        assert_eq!(parse_args(&[]).unwrap(), None);
        assert_eq!(
            parse_args(&["--config".into(), "/x".into()]).unwrap(),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            parse_args(&["--config=/y".into()]).unwrap(),
            Some(PathBuf::from("/y"))
        );
        assert!(parse_args(&["--config".into()]).is_err());
        assert!(parse_args(&["--config=".into()]).is_err());
        assert!(parse_args(&["-v".into()]).is_err());
        assert!(parse_args(&["--config".into(), "/x".into(), "more".into()]).is_err());
    }

    #[test]
    fn only_root_may_choose_the_config_file() {
        assert!(may_choose_config(true, Some(Path::new("/tmp/x"))));
        assert!(!may_choose_config(false, Some(Path::new("/etc/shadow"))));
        assert!(may_choose_config(false, None));
    }

    #[test]
    fn ssh_files_writable_by_others_or_unreadable_are_problems() {
        let dir = std::env::temp_dir().join(format!("shim-check-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ssh_config");
        fs::write(&file, "Host *\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let expect_owner_ok = nix::unistd::getuid().is_root();
        assert_eq!(
            file_problems(&file, "ssh_config").is_empty(),
            expect_owner_ok
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(file_problems(&file, "ssh_config")
            .iter()
            .any(|p| p.contains("writable")));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(file_problems(&file, "ssh_config")
            .iter()
            .any(|p| p.contains("not readable")));
        assert!(!file_problems(&dir.join("missing"), "known_hosts").is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
