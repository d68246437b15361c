//! The bodies of the `pam_sm_*` entry points: gather what PAM offers, run the logic, contain
//! panics.
//!
//! Panics: every hook runs inside `catch_unwind`; a panic is logged (payload and location) to
//! syslog and becomes [`PamCode::AuthErr`]. A panic hook keeps the default hook from writing
//! to the host's stderr. It is installed once per loaded copy of this library and handles only
//! panics raised while one of our hooks runs on that thread; any other panic goes to the hook
//! that was installed before. A cdylib carries its own copy of the Rust runtime, so even a
//! Rust host program's own panic hook is not touched; for the rlib (tests) the chaining keeps
//! the host's behaviour.

use std::cell::Cell;
use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use duo_push_common::api::DuoError;
use duo_push_common::audit::{Logger, Severity, Sink, DEV_LOG};
use duo_push_common::client::{ClientSettings, DuoClient};
use duo_push_common::config::{Config, ConfigError};
use duo_push_common::flow::UserChannel;
use pam::constants::{PamFlag, PAM_SILENT};
use pam::items::{RHost, Service};
use pam::module::PamHandle;

use crate::codes::PamCode;
use crate::conv::PamConversation;
use crate::ffi::{self, LookupError, PasswdEntry};
use crate::logic::{self, Environment};

/// `User-Agent` product token sent to Duo.
pub const USER_AGENT_PRODUCT: &str = "pam_duo_push";

thread_local! {
    /// True while one of this module's hooks runs on this thread.
    static IN_MODULE: Cell<bool> = const { Cell::new(false) };
}

static PANIC_HOOK: Once = Once::new();

/// Installs the panic hook once (see the module documentation).
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_MODULE.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let logger = Logger::new(
                    &process_name(),
                    Some("pam_duo_push(panic)"),
                    Sink::Syslog {
                        path: DEV_LOG.into(),
                    },
                );
                logger.message(
                    Severity::Err,
                    &format!("panic at {location}: {}", payload_text(info.payload())),
                );
            } else {
                previous(info);
            }
        }));
    });
}

fn process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_owned()
    }
}

/// Runs `body` with panics contained: `Err` carries the panic message. The thread-local
/// marker that routes the panic hook to syslog is set for the duration and reset however
/// `body` ends.
pub fn contain(body: impl FnOnce() -> PamCode) -> Result<PamCode, String> {
    install_panic_hook();
    let was_inside = IN_MODULE.with(|flag| flag.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(body));
    IN_MODULE.with(|flag| flag.set(was_inside));
    result.map_err(|payload| payload_text(payload.as_ref()))
}

/// Logs a contained panic and returns the hook's documented code for it.
fn panicked(logger: &Logger, message: &str, code: PamCode) -> PamCode {
    logger.message(
        Severity::Err,
        &format!(
            "internal error (panic: {message}); returning {}",
            code.name()
        ),
    );
    code
}

/// `pam_sm_authenticate` for any [`Environment`]: the logic, with panics turned into
/// PAM_AUTH_ERR. Everything, even reading PAM_SERVICE, runs inside the guard.
pub fn authenticate_in<'a, E: Environment>(
    env: &mut E,
    args: impl IntoIterator<Item = &'a [u8]>,
) -> PamCode {
    match contain(|| logic::authenticate(env, args)) {
        Ok(code) => code,
        Err(message) => {
            let service = env.service().unwrap_or_else(|| "unknown".to_owned());
            panicked(&env.logger(&service), &message, PamCode::AuthErr)
        }
    }
}

/// The real environment: one PAM handle, NSS, the config file, HTTPS.
pub struct PamEnvironment<'a> {
    pamh: &'a mut PamHandle,
    silent: bool,
}

impl std::fmt::Debug for PamEnvironment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PamEnvironment")
            .field("silent", &self.silent)
            .finish_non_exhaustive()
    }
}

impl<'a> PamEnvironment<'a> {
    /// Wraps the handle; `flags` are the hook's flags (PAM_SILENT is honoured).
    pub fn new(pamh: &'a mut PamHandle, flags: PamFlag) -> Self {
        Self {
            pamh,
            silent: flags & PAM_SILENT != 0,
        }
    }
}

impl UserChannel for PamEnvironment<'_> {
    fn info(&mut self, msg: &str) {
        PamConversation::new(self.pamh, self.silent).info(msg);
    }

    fn error(&mut self, msg: &str) {
        PamConversation::new(self.pamh, self.silent).error(msg);
    }

    fn prompt(&mut self, msg: &str) -> Option<String> {
        PamConversation::new(self.pamh, self.silent).prompt(msg)
    }
}

impl Environment for PamEnvironment<'_> {
    type Api = DuoClient;

    fn service(&self) -> Option<String> {
        match self.pamh.get_item::<Service<'_>>() {
            Ok(Some(service)) => Some(service.0.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    fn user(&mut self) -> Result<String, String> {
        self.pamh
            .get_user(None)
            .map_err(|code| format!("pam_get_user failed ({code:?})"))
    }

    fn rhost(&self) -> Option<String> {
        match self.pamh.get_item::<RHost<'_>>() {
            Ok(Some(rhost)) => Some(rhost.0.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    fn logger(&self, service: &str) -> Logger {
        Logger::for_pam(service, DEV_LOG)
    }

    fn load_config(&self, path: &Path) -> Result<Config, ConfigError> {
        Config::load(path)
    }

    fn passwd(&self, user: &str) -> Result<Option<PasswdEntry>, LookupError> {
        ffi::passwd_by_name(user)
    }

    fn group_names(&self, user: &str, primary_gid: u32) -> Result<Vec<Vec<u8>>, LookupError> {
        ffi::group_names(user, primary_gid)
    }

    fn proxy_name(&self, config: &Config) -> Result<String, String> {
        config.proxy.effective_name().map_err(|e| e.to_string())
    }

    fn duo_client(&self, config: &Config) -> Result<DuoClient, DuoError> {
        DuoClient::new(ClientSettings::from_config(&config.duo, USER_AGENT_PRODUCT))
    }
}

fn arg_bytes<'a>(args: &'a [&'a CStr]) -> impl Iterator<Item = &'a [u8]> {
    args.iter().map(|a| a.to_bytes())
}

/// `pam_sm_authenticate`.
pub fn authenticate(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamCode {
    let mut env = PamEnvironment::new(pamh, flags);
    authenticate_in(&mut env, arg_bytes(args))
}

/// The hooks that do no authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `pam_sm_setcred`.
    Setcred,
    /// `pam_sm_acct_mgmt`.
    AcctMgmt,
    /// `pam_sm_open_session`.
    OpenSession,
    /// `pam_sm_close_session`.
    CloseSession,
    /// `pam_sm_chauthtok`.
    Chauthtok,
}

impl Hook {
    /// What the hook returns (see the crate documentation for why).
    pub fn code(self) -> PamCode {
        match self {
            // Nothing to establish or delete; success lets the auth stack's setcred pass.
            Self::Setcred => PamCode::Success,
            // No account management: the decision belongs to pam_unix and friends.
            Self::AcctMgmt | Self::OpenSession | Self::CloseSession | Self::Chauthtok => {
                PamCode::Ignore
            }
        }
    }
}

/// Every hook but authenticate. Keeps no state and needs none: OpenSSH calls these in other
/// processes than the one that authenticated.
pub fn other(hook: Hook, pamh: &mut PamHandle, _args: &[&CStr], _flags: PamFlag) -> PamCode {
    match contain(|| hook.code()) {
        Ok(code) => code,
        Err(message) => {
            let env = PamEnvironment::new(pamh, 0);
            let service = env.service().unwrap_or_else(|| "unknown".to_owned());
            panicked(&env.logger(&service), &message, PamCode::AuthErr)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn memory_logger() -> (Logger, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Logger::new(
                "test",
                Some("pam_duo_push(test:auth)"),
                Sink::Memory(lines.clone()),
            ),
            lines,
        )
    }

    #[test]
    fn a_panic_is_contained_with_its_message() {
        let result = contain(|| panic!("boom {}", 42));
        assert_eq!(result, Err("boom 42".to_owned()));
        assert!(!IN_MODULE.with(Cell::get));
        let result = contain(|| std::panic::panic_any(7_u8));
        assert_eq!(result, Err("(non-text panic payload)".to_owned()));
    }

    #[test]
    fn a_contained_panic_is_logged_as_an_error_with_the_code() {
        let (logger, lines) = memory_logger();
        assert_eq!(
            panicked(&logger, "boom", PamCode::AuthErr),
            PamCode::AuthErr
        );
        let lines = lines.lock().unwrap();
        assert!(lines[0].starts_with("<83>"), "{lines:?}");
        assert!(lines[0].contains("panic: boom") && lines[0].contains("PAM_AUTH_ERR"));
    }

    /// Re-runs this test binary on one test with `--nocapture`: the default panic hook would
    /// print the message on stderr; ours must not.
    #[test]
    fn a_panic_inside_the_module_writes_nothing_to_stderr() {
        const CHILD: &str = "PAM_DUO_PUSH_PANIC_CHILD";
        const NAME: &str = "hooks::tests::a_panic_inside_the_module_writes_nothing_to_stderr";
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(
                contain(|| panic!("boom-child")),
                Err("boom-child".to_owned())
            );
            // A panic outside the module still reaches the previous hook.
            let _ = std::panic::catch_unwind(|| panic!("outside-child"));
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}");
        assert!(!stderr.contains("boom-child"), "{stderr}");
        assert!(stderr.contains("outside-child"), "{stderr}");
    }

    #[test]
    fn without_a_panic_the_body_decides() {
        assert_eq!(contain(|| PamCode::Ignore), Ok(PamCode::Ignore));
        assert!(!IN_MODULE.with(Cell::get));
    }

    #[test]
    fn the_other_hooks_have_documented_codes() {
        assert_eq!(Hook::Setcred.code(), PamCode::Success);
        for hook in [
            Hook::AcctMgmt,
            Hook::OpenSession,
            Hook::CloseSession,
            Hook::Chauthtok,
        ] {
            assert_eq!(hook.code(), PamCode::Ignore);
        }
    }
}
