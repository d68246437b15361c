//! The process environment: cut to a short allow-list first thing in `main`, and the inputs the
//! shim takes from it.
//!
//! The shim is setgid, and sshd may pass client variables (`AcceptEnv`, `SetEnv`,
//! `PermitUserEnvironment`). glibc already drops `LD_*` and friends for a setgid program, but
//! not, for example, `http_proxy`, which HTTP clients honour. So everything outside
//! [`ALLOWED`] (and `LC_*`) is removed from the process before anything else runs, and the ssh
//! child gets only the allow-list plus a fixed `PATH`.
//!
//! `std::env::remove_var` is only sound while no other thread reads the environment (it is
//! `unsafe` from edition 2024 for that reason): [`scrub`] must run at the very start of `main`,
//! before any thread or runtime exists. It also panics on a name that is empty or contains `=`
//! or NUL; such names are never passed to it, and their presence makes [`scrub`] fail, which
//! ends the shim (fail closed).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

/// Variables kept, besides `LC_*`.
pub const ALLOWED: [&str; 6] = [
    "TERM",
    "LANG",
    "SSH_CONNECTION",
    "SSH_ORIGINAL_COMMAND",
    "SSH_AUTH_SOCK",
    "TZ",
];

/// `PATH` for the ssh child (it may run an admin-configured `ProxyCommand`).
pub const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment could not be cut down to the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError(String);

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot clean the environment: {}", self.0)
    }
}

impl std::error::Error for EnvError {}

/// Whether `name` is on the allow-list.
pub fn is_allowed(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    ALLOWED.contains(&name)
        || name.strip_prefix("LC_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
}

/// Whether an allowed variable's value is acceptable. Terminal and locale values must be short
/// printable ASCII; `TZ` must not name a file (`:path`, `/path` or `..`), so that nothing reads
/// a file chosen by the user while the group privilege is held. `SSH_ORIGINAL_COMMAND` is
/// checked by the command parser; the rest are checked where they are used.
pub fn value_ok(name: &OsStr, value: &OsStr) -> bool {
    let bytes = value.as_bytes();
    let printable = bytes.len() <= 256 && bytes.iter().all(|b| b.is_ascii_graphic());
    match name.as_bytes() {
        b"TERM" | b"LANG" => printable,
        b"TZ" => {
            printable
                && !bytes.starts_with(b":")
                && !bytes.starts_with(b"/")
                && !bytes.windows(2).any(|w| w == b"..")
        }
        n if n.starts_with(b"LC_") => printable,
        _ => true,
    }
}

/// Whether `std::env::remove_var` may be called with `name` without panicking.
fn removable(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && !b.contains(&b'=') && !b.contains(&0)
}

/// Removes every variable that is not allowed, or whose value is not acceptable. Call first
/// thing in `main`, while the process has one thread.
pub fn scrub() -> Result<(), EnvError> {
    let doomed: Vec<OsString> = std::env::vars_os()
        .filter(|(k, v)| !is_allowed(k) || !value_ok(k, v))
        .map(|(k, _)| k)
        .collect();
    for name in &doomed {
        if !removable(name) {
            return Err(EnvError(format!(
                "a variable name cannot be removed: {:?}",
                name
            )));
        }
        std::env::remove_var(name);
    }
    if let Some((k, _)) = std::env::vars_os().find(|(k, v)| !is_allowed(k) || !value_ok(k, v)) {
        return Err(EnvError(format!("{k:?} is still set")));
    }
    Ok(())
}

/// The ssh child's environment: the allowed variables except `SSH_ORIGINAL_COMMAND`, plus
/// [`CHILD_PATH`]. Use with `Command::env_clear`.
pub fn child_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, v)| is_allowed(k) && value_ok(k, v) && k != "SSH_ORIGINAL_COMMAND")
        .collect();
    env.push(("PATH".into(), CHILD_PATH.into()));
    env
}

/// The client's IP address: the first word of `SSH_CONNECTION` ("client port server port"),
/// when it is an IP address.
pub fn client_ip(ssh_connection: Option<&OsStr>) -> Option<IpAddr> {
    let text = ssh_connection?.to_str()?;
    text.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_keeps_terminal_locale_and_ssh_variables_only() {
        for ok in [
            "TERM",
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "LC_MEASUREMENT",
            "TZ",
            "SSH_CONNECTION",
            "SSH_ORIGINAL_COMMAND",
            "SSH_AUTH_SOCK",
        ] {
            assert!(is_allowed(OsStr::new(ok)), "{ok}");
        }
        for bad in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "http_proxy",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "HOME",
            "PATH",
            "SHELL",
            "SSL_CERT_FILE",
            "LC_",
            "LC_x",
            "LC_ALL=x",
            "TERMINFO",
            "SSH_ASKPASS",
            "BASH_ENV",
            "",
        ] {
            assert!(!is_allowed(OsStr::new(bad)), "{bad}");
        }
    }

    #[test]
    fn tz_may_not_name_a_file_and_terminal_values_must_be_printable() {
        let tz = OsStr::new("TZ");
        assert!(value_ok(tz, OsStr::new("UTC")));
        assert!(value_ok(tz, OsStr::new("Europe/Paris")));
        assert!(value_ok(tz, OsStr::new("CET-1CEST,M3.5.0,M10.5.0/3")));
        assert!(!value_ok(tz, OsStr::new(":/etc/duo_push/duo_push.conf")));
        assert!(!value_ok(tz, OsStr::new("/etc/duo_push/duo_push.conf")));
        assert!(!value_ok(
            tz,
            OsStr::new("../../etc/duo_push/duo_push.conf")
        ));
        let term = OsStr::new("TERM");
        assert!(value_ok(term, OsStr::new("xterm-256color")));
        assert!(!value_ok(term, OsStr::new("xterm\u{1b}]0;x\u{7}")));
        assert!(!value_ok(term, OsStr::new("a b")));
        assert!(value_ok(
            OsStr::new("SSH_ORIGINAL_COMMAND"),
            OsStr::new("a b")
        ));
    }

    #[test]
    fn names_remove_var_would_panic_on_are_not_removable() {
        assert!(!removable(OsStr::new("")));
        assert!(!removable(OsStr::new("A=B")));
        assert!(!removable(OsStr::from_bytes(b"A\0B")));
        assert!(removable(OsStr::new("LD_PRELOAD")));
    }

    #[test]
    fn client_ip_comes_from_ssh_connection() {
        assert_eq!(
            client_ip(Some(OsStr::new("192.0.2.7 51234 10.0.0.1 22"))),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(OsStr::new("::1 51234 ::1 22"))),
            Some("::1".parse().unwrap())
        );
        assert_eq!(client_ip(Some(OsStr::new("bogus 1 2 3"))), None);
        assert_eq!(client_ip(Some(OsStr::new(""))), None);
        assert_eq!(client_ip(None), None);
    }

    // `scrub` itself changes the test process's environment and is exercised end to end
    // (shim_e2e's environment test); its filter is the two functions tested above.
}
