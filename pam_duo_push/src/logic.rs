//! `pam_sm_authenticate` in plain Rust, behind the [`Environment`] trait, so that every branch
//! can be tested without libpam.
//!
//! Order of work, and why:
//! 1. Module arguments. A bad argument fails closed before anything else happens.
//! 2. The user name from PAM, checked for length and control characters before it is used
//!    anywhere (log lines escape it anyway).
//! 3. The configuration; an unusable one goes to the policy (deny, or fail-open only when the
//!    file itself explicitly allows it and MFA is not forced).
//! 4. `groups` (never with force_mfa): a user outside the groups gets PAM_IGNORE.
//! 5. The Duo username (PAM_USER, or from GECOS).
//! 6. The shared push flow on a current-thread tokio runtime built here and shut down with a
//!    timeout before returning, so no thread or task outlives the hook. Nothing is kept for
//!    later hooks: OpenSSH authenticates in a forked child.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use duo_push_common::api::{DuoApi, DuoError, PushRequest, Subject, Timeouts};
use duo_push_common::audit::{AuditEvent, Hop, Logger, Severity, Who};
use duo_push_common::config::{Config, ConfigError, FailMode};
use duo_push_common::flow::{self, FlowSettings, UserChannel};
use duo_push_common::identity;
use duo_push_common::policy::{decide, ApprovalKind, Decision, PolicyInput, Situation};

use crate::args::{self, ModuleArgs};
use crate::codes::{decision_code, PamCode};
use crate::ffi::{LookupError, PasswdEntry};
use crate::groups::user_in_groups;

/// The `type` of the push: the label Duo Mobile shows.
pub const PUSH_TYPE: &str = "Vault login";
/// Longest user name (PAM_USER or Duo username) accepted, in bytes.
pub const MAX_USER_BYTES: usize = 256;
/// Longest rhost passed on to Duo in pushinfo `from`, in characters.
const MAX_RHOST_CHARS: usize = 255;
/// How long shutting the runtime down may wait for its blocking threads (DNS lookups).
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);

/// Everything the authentication needs from PAM and from the system. The PAM implementation is
/// [`crate::hooks::PamEnvironment`]; tests use a double. The conversation is the
/// [`UserChannel`] supertrait.
pub trait Environment: UserChannel {
    /// The Duo client type.
    type Api: DuoApi;

    /// PAM_SERVICE.
    fn service(&self) -> Option<String>;
    /// PAM_USER, through `pam_get_user` (which may prompt). `Err` carries an operator message.
    fn user(&mut self) -> Result<String, String>;
    /// PAM_RHOST.
    fn rhost(&self) -> Option<String>;
    /// The audit logger for this service.
    fn logger(&self, service: &str) -> Logger;
    /// Reads the configuration (the real one opens it securely).
    fn load_config(&self, path: &Path) -> Result<Config, ConfigError>;
    /// The passwd entry of `user`; `Ok(None)` when there is none.
    fn passwd(&self, user: &str) -> Result<Option<PasswdEntry>, LookupError>;
    /// Names of the user's primary and supplementary groups.
    fn group_names(&self, user: &str, primary_gid: u32) -> Result<Vec<Vec<u8>>, LookupError>;
    /// The proxy's name for Duo (`[proxy] name` or the system host name).
    fn proxy_name(&self, config: &Config) -> Result<String, String>;
    /// Builds the Duo client from the configuration.
    fn duo_client(&self, config: &Config) -> Result<Self::Api, DuoError>;
}

/// Why a user name is refused before anything else looks at it.
fn user_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty user name")
    } else if name.len() > MAX_USER_BYTES {
        Some("user name longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("user name contains control characters")
    } else {
        None
    }
}

/// `ipaddr` for Duo: the rhost when it is an IP literal; otherwise, with `fallback_local_ip`,
/// this host's address (duo_unix does the same).
fn duo_ipaddr(rhost: Option<&str>, fallback_local_ip: bool) -> Option<String> {
    let client = rhost.and_then(|r| r.parse::<IpAddr>().ok());
    identity::duo_ipaddr(client, fallback_local_ip).map(|ip| ip.to_string())
}

/// The operator sees the whole problem, the user a short line.
fn log_config_problem(logger: &Logger, path: &Path, error: &ConfigError) {
    logger.log(&AuditEvent::ConfigProblem {
        path: path.display().to_string(),
        detail: error.to_string(),
    });
}

/// Runs one `pam_sm_authenticate`. `raw_args` are the module arguments as PAM gives them.
pub fn authenticate<'a, E: Environment>(
    env: &mut E,
    raw_args: impl IntoIterator<Item = &'a [u8]>,
) -> PamCode {
    let service = env.service().unwrap_or_else(|| "unknown".to_owned());
    let logger = env.logger(&service);

    let args = match args::parse(raw_args) {
        Ok(args) => args,
        Err(e) => {
            logger.message(Severity::Err, &format!("refusing to run: {e}"));
            return PamCode::AuthErr;
        }
    };
    let debug = |text: &str| {
        if args.debug {
            logger.message(Severity::Debug, text);
        }
    };

    let user = match env.user() {
        Ok(user) => user,
        Err(e) => {
            logger.message(Severity::Notice, &format!("no user name from PAM: {e}"));
            return PamCode::AuthErr;
        }
    };
    let rhost = env.rhost().filter(|r| !r.is_empty());
    let who = Who {
        user: user.clone(),
        from: rhost.clone(),
        target: None,
    };
    if let Some(problem) = user_name_problem(&user) {
        logger.message(
            Severity::Notice,
            &format!("refusing user name ({problem}): {}", truncated(&user)),
        );
        return PamCode::UserUnknown;
    }
    debug(&format!(
        "authenticating user={user} rhost={} service={service} conf={}",
        rhost.as_deref().unwrap_or("-"),
        args.conf.display()
    ));

    let config = match env.load_config(&args.conf) {
        Ok(config) => config,
        Err(error) => return config_unusable(env, &logger, &args, who, &error),
    };
    for warning in &config.warnings {
        logger.message(Severity::Warning, &format!("config: {warning}"));
    }
    let policy = PolicyInput {
        force_mfa: config.policy.force_mfa,
        allow_bypass: config.policy.allow_bypass,
        fail_open: config.duo.failmode == FailMode::Safe,
    };

    // The passwd entry is needed for `groups` and GECOS only.
    let needs_passwd = !config.duo.groups.is_empty()
        || config.duo.send_gecos
        || config.duo.gecos_username_pos.is_some();
    let entry = if needs_passwd {
        match env.passwd(&user) {
            Ok(Some(entry)) => Some(entry),
            Ok(None) => {
                logger.message(
                    Severity::Notice,
                    &format!("user {user} is not in the passwd database; denied"),
                );
                env.error("Access denied.");
                return PamCode::UserUnknown;
            }
            Err(e) => {
                logger.message(
                    Severity::Err,
                    &format!("passwd lookup of {user}: {e}; denied"),
                );
                env.error("Access denied.");
                return PamCode::AuthErr;
            }
        }
    } else {
        None
    };

    if let (false, Some(entry)) = (config.duo.groups.is_empty(), entry.as_ref()) {
        let names = match env.group_names(&user, entry.gid) {
            Ok(names) => names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>(),
            Err(e) => {
                logger.message(
                    Severity::Err,
                    &format!("group lookup of {user}: {e}; denied"),
                );
                env.error("Access denied.");
                return PamCode::AuthErr;
            }
        };
        debug(&format!("groups of {user}: {}", names.join(" ")));
        if !user_in_groups(&config.duo.groups, &names) {
            let decision = decide(&policy, Situation::UserExempt);
            report_early(env, &decision);
            return finish(&logger, who, decision, None, None);
        }
    }

    // Without the passwd entry (not needed, so not read) the GECOS field is empty, which is
    // an error exactly when send_gecos or gecos_username_pos asks for it.
    let gecos = entry
        .as_ref()
        .map(|entry| String::from_utf8_lossy(&entry.gecos).into_owned())
        .unwrap_or_default();
    let duo_user = match identity::duo_username(
        &user,
        &gecos,
        config.duo.send_gecos,
        config.duo.gecos_username_pos,
        config.duo.gecos_delim,
    ) {
        Ok(name) => name,
        Err(e) => {
            logger.log(&AuditEvent::Refused {
                hop: Hop::Vault,
                who,
                reason: "no_duo_username",
                detail: e.to_string(),
            });
            env.error("Access denied: no Duo username is configured for you.");
            return PamCode::AuthErr;
        }
    };
    if let Some(problem) = user_name_problem(&duo_user) {
        logger.message(
            Severity::Notice,
            &format!(
                "refusing Duo username of {user} ({problem}): {}",
                truncated(&duo_user)
            ),
        );
        env.error("Access denied.");
        return PamCode::AuthErr;
    }
    let who = Who {
        user: duo_user.clone(),
        from: rhost.clone(),
        target: None,
    };
    if duo_user != user {
        debug(&format!("Duo username of {user} is {duo_user}"));
    }

    let proxy = match env.proxy_name(&config) {
        Ok(name) => name,
        Err(e) => {
            logger.message(Severity::Err, &format!("proxy name: {e}"));
            let decision = decide(
                &policy,
                Situation::ConfigUnusable {
                    fail_open_allowed: false,
                },
            );
            report_early(env, &decision);
            return finish(&logger, who, decision, None, None);
        }
    };

    let request = push_request(
        &duo_user,
        rhost.as_deref(),
        &proxy,
        &service,
        config.duo.fallback_local_ip,
    );
    let settings = FlowSettings {
        policy,
        timeouts: Timeouts {
            https: config.duo.https_timeout,
            push: config.duo.push_timeout,
        },
        autopush: config.duo.autopush,
        prompts: config.duo.prompts,
    };
    debug(&format!(
        "push: hostname={proxy} ipaddr={} autopush={} push_timeout={}s",
        request.subject.ipaddr.as_deref().unwrap_or("-"),
        settings.autopush,
        settings.timeouts.push.as_secs()
    ));

    let (decision, txid, device) = run_flow(env, &config, &settings, &request);
    if let Some(txid) = &txid {
        logger.log(&AuditEvent::PushSent {
            hop: Hop::Vault,
            who: who.clone(),
            device: device.clone(),
            txid: txid.clone(),
        });
    }
    finish(&logger, who, decision, txid, None)
}

/// The push: `type` "Vault login" and pushinfo hop, host, from, service. `ipaddr` is the
/// rhost when it is an IP address, else this host's with `fallback_local_ip`.
pub fn push_request(
    duo_user: &str,
    rhost: Option<&str>,
    proxy: &str,
    service: &str,
    fallback_local_ip: bool,
) -> PushRequest {
    let mut pushinfo = vec![
        ("hop".to_owned(), "vault".to_owned()),
        ("host".to_owned(), proxy.to_owned()),
    ];
    if let Some(rhost) = rhost {
        pushinfo.push(("from".to_owned(), shown_rhost(rhost)));
    }
    pushinfo.push(("service".to_owned(), service.to_owned()));
    PushRequest {
        subject: Subject {
            username: duo_user.to_owned(),
            ipaddr: duo_ipaddr(rhost, fallback_local_ip),
            hostname: Some(proxy.to_owned()),
        },
        device: "auto".to_owned(),
        kind: PUSH_TYPE.to_owned(),
        display_username: None,
        pushinfo,
    }
}

/// PAM_RHOST as Duo Mobile shows it: the address when it is one, otherwise the text without
/// control characters or terminal escapes, so that an application passing an arbitrary rhost
/// cannot add fake lines ("hop: target") to the approval screen.
fn shown_rhost(rhost: &str) -> String {
    match rhost.trim().parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => duo_push_common::audit::sanitize_for_terminal(rhost)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_RHOST_CHARS)
            .collect(),
    }
}

/// Builds the runtime, runs the flow, shuts the runtime down. Errors before the push go to the
/// policy as "Duo unavailable" (failmode applies).
fn run_flow<E: Environment>(
    env: &mut E,
    config: &Config,
    settings: &FlowSettings,
    request: &PushRequest,
) -> (Decision, Option<String>, Option<String>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let error = DuoError::Setup(format!("cannot start the async runtime: {e}"));
            let decision = decide(&settings.policy, Situation::DuoUnavailable(&error));
            report_early(env, &decision);
            return (decision, None, None);
        }
    };
    let api = match env.duo_client(config) {
        Ok(api) => api,
        Err(error) => {
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            let decision = decide(&settings.policy, Situation::DuoUnavailable(&error));
            report_early(env, &decision);
            return (decision, None, None);
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = flow::authenticate(&api, settings, request, env).await;
        // Dropped inside the runtime: its connections close here, not in a dead reactor.
        drop(api);
        outcome
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    (outcome.decision, outcome.txid.map(|t| t.0), outcome.device)
}

/// Tells the user about a decision made outside the flow (the flow reports its own).
fn report_early<U: UserChannel>(ui: &mut U, decision: &Decision) {
    if let Decision::Deny(denial) = decision {
        ui.error(&denial.user_message);
    }
}

/// The configuration could not be used: log it, ask the policy, tell the user.
fn config_unusable<E: Environment>(
    env: &mut E,
    logger: &Logger,
    args: &ModuleArgs,
    who: Who,
    error: &ConfigError,
) -> PamCode {
    log_config_problem(logger, &args.conf, error);
    // Only a file that passed the secure-open checks and explicitly says force_mfa = no and
    // failmode = safe may fail open; the policy gets exactly that.
    let policy = PolicyInput {
        force_mfa: !error.fail_open_allowed,
        allow_bypass: false,
        fail_open: error.fail_open_allowed,
    };
    let decision = decide(
        &policy,
        Situation::ConfigUnusable {
            fail_open_allowed: error.fail_open_allowed,
        },
    );
    report_early(env, &decision);
    finish(logger, who, decision, None, Some(error.to_string()))
}

/// Logs the decision (and a fail-open event) and maps it to the PAM code.
fn finish(
    logger: &Logger,
    who: Who,
    decision: Decision,
    txid: Option<String>,
    cause: Option<String>,
) -> PamCode {
    let mut event = AuditEvent::decision(Hop::Vault, who.clone(), &decision);
    if let AuditEvent::Decision { txid: slot, .. } = &mut event {
        if slot.is_none() {
            *slot = txid;
        }
    }
    if let Decision::Grant(approval) = &decision {
        if approval.kind() == ApprovalKind::FailOpen {
            logger.log(&AuditEvent::FailOpen {
                hop: Hop::Vault,
                who,
                cause: cause.unwrap_or_else(|| "Duo unavailable".to_owned()),
            });
        }
    }
    logger.log(&event);
    decision_code(decision)
}

/// The first 64 characters of a user-supplied string, for a log line (escaped by the logger).
fn truncated(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}
