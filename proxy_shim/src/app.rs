//! The ForceCommand flow: from `SSH_ORIGINAL_COMMAND` to a decision and a connection.
//!
//! Order of events (see also [`crate::privilege`]): the command is parsed, the configuration
//! read with the group privilege, the privilege dropped, the user looked up; then the request
//! is checked against the catalog (refusals end here, before any push), the target push is
//! sent, and only an [`Approval`] opens the connection. Every refusal, decision and connection
//! end is an audit line.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use duo_push_common::api::Timeouts;
use duo_push_common::audit::{
    AuditEvent, ConnectionKind, EndStatus, Hop, Logger, Severity, Who, DEV_LOG,
};
use duo_push_common::client::{ClientSettings, DuoClient};
use duo_push_common::config::{Config, FailMode, Target};
use duo_push_common::flow::FlowSettings;
use duo_push_common::identity;
use duo_push_common::policy::{decide, Approval, Decision, PolicyInput, Situation};

use crate::catalog::{self, Invoker};
use crate::command::{self, Command, ParseError, RemoteCommand};
use crate::connect;
use crate::environment;
use crate::menu;
use crate::privilege;
use crate::push::{self, PushContext, StatusChannel};
use crate::target_ssh::{self, Destination, SshSettings};

/// Exit status for a refusal or denial.
pub const EXIT_DENIED: u8 = 1;
/// Exit status for a usage error (no command without a TTY).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the shim itself cannot work (privileges, configuration).
pub const EXIT_FAILURE: u8 = 3;

/// `login` shown in the push for `connect`: the end-to-end SSH session chooses its own login.
const CONNECT_LOGIN: &str = "(end-to-end)";

/// The help text (`help`, or no command without a TTY).
pub const HELP: &str = "\
This proxy reaches target devices; each connection is approved with Duo Push.

  ssh -t PROXY                      menu of the targets you may reach
  ssh -t PROXY TARGET               interactive session (also LOGIN@TARGET, TARGET:PORT)
  ssh PROXY TARGET COMMAND...       run a command on the target
  ssh -o ProxyCommand='ssh PROXY connect %h:%p' TARGET
                                    end-to-end SSH through the proxy (scp, sftp, rsync)
  ssh PROXY list                    the targets you may reach
  ssh PROXY help                    this text
";

fn say(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "duo-proxy-shim: {msg}");
    let _ = err.flush();
}

/// Runs the ForceCommand flow. `main` calls it after making the process non-dumpable and
/// clearing the environment.
pub fn run_forced() -> ExitCode {
    run_with_config_path(Path::new(duo_push_common::config::DEFAULT_PATH))
}

fn run_with_config_path(path: &Path) -> ExitCode {
    let original: Option<OsString> = std::env::var_os("SSH_ORIGINAL_COMMAND");
    let parsed = command::parse(original.as_deref());
    let from = environment::client_ip(std::env::var_os("SSH_CONNECTION").as_deref());
    let tty = io::stdin().is_terminal();

    // The only thing done with the group privilege.
    let loaded = Config::load(path);
    if let Err(e) = privilege::drop_group_privilege() {
        say(&e.to_string());
        Logger::for_shim(DEV_LOG).message(Severity::Err, &e.to_string());
        return ExitCode::from(EXIT_FAILURE);
    }
    let logger = Logger::for_shim(DEV_LOG);
    let (invoker, gecos) = match privilege::invoker() {
        Ok(found) => found,
        Err(e) => {
            say(&e.to_string());
            logger.message(Severity::Err, &e.to_string());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            logger.log(&AuditEvent::ConfigProblem {
                path: path.display().to_string(),
                detail: e.to_string(),
            });
            say("the proxy's configuration cannot be used; contact your administrator.");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let shim = Shim {
        config,
        invoker,
        gecos,
        from,
        logger,
    };
    shim.dispatch(parsed, tty, original)
}

/// Everything the flow needs after the privilege drop.
struct Shim {
    config: Config,
    invoker: Invoker,
    gecos: String,
    from: Option<IpAddr>,
    logger: Logger,
}

impl Shim {
    fn who(&self, target: Option<&str>) -> Who {
        Who {
            user: self.invoker.name.clone(),
            from: self.from.map(|ip| ip.to_string()),
            target: target.map(str::to_owned),
        }
    }

    /// Logs and shows a refusal made before any push.
    fn refuse(&self, reason: &'static str, detail: &str, user_message: &str) -> ExitCode {
        self.logger.log(&AuditEvent::Refused {
            hop: Hop::Target,
            who: self.who(None),
            reason,
            detail: detail.to_owned(),
        });
        say(user_message);
        ExitCode::from(EXIT_DENIED)
    }

    fn dispatch(
        self,
        parsed: Result<Command, ParseError>,
        tty: bool,
        original: Option<OsString>,
    ) -> ExitCode {
        let command = match parsed {
            Ok(command) => command,
            Err(e) => {
                let shown = original
                    .as_deref()
                    .map(|o| command::Shown::new(&o.to_string_lossy()).to_string())
                    .unwrap_or_default();
                return self.refuse(
                    "bad_command",
                    &format!("{e}; command={shown}"),
                    &format!("refused: {e}"),
                );
            }
        };
        match command {
            Command::Help => {
                print!("{HELP}");
                ExitCode::SUCCESS
            }
            Command::Menu if !tty => {
                eprint!("{HELP}");
                say("no command given and no terminal: nothing to do (see above).");
                ExitCode::from(EXIT_USAGE)
            }
            Command::Menu => self.menu(),
            Command::List => self.list(),
            Command::Session(spec) => {
                match catalog::resolve(&self.config.targets, &spec, &self.invoker) {
                    Ok(resolved) => {
                        let (name, login) =
                            (resolved.target.name.to_string(), resolved.login.to_owned());
                        self.session(&name, &login, tty, None)
                    }
                    Err(r) => self.refuse(r.as_str(), &r.to_string(), &r.user_message()),
                }
            }
            Command::Exec { target, command } => {
                match catalog::resolve(&self.config.targets, &target, &self.invoker) {
                    Ok(resolved) => {
                        let (name, login) =
                            (resolved.target.name.to_string(), resolved.login.to_owned());
                        self.session(&name, &login, tty, Some(command))
                    }
                    Err(r) => self.refuse(r.as_str(), &r.to_string(), &r.user_message()),
                }
            }
            Command::Connect(spec) => {
                match catalog::resolve_connect(&self.config.targets, &spec, &self.invoker) {
                    Ok(target) => {
                        let name = target.name.to_string();
                        self.connect(&name)
                    }
                    Err(r) => self.refuse(r.as_str(), &r.to_string(), &r.user_message()),
                }
            }
        }
    }

    fn list(&self) -> ExitCode {
        let targets = catalog::reachable(&self.config.targets, &self.invoker);
        self.logger.log(&AuditEvent::TargetList {
            who: self.who(None),
            count: targets.len(),
        });
        let mut out = io::stdout().lock();
        if targets.is_empty() {
            let _ = writeln!(out, "You may not reach any target through this proxy.");
        }
        for target in targets {
            let _ = writeln!(out, "{}\t{}", target.name, self.describe(target));
        }
        let _ = out.flush();
        ExitCode::SUCCESS
    }

    fn describe(&self, target: &Target) -> String {
        let login = target.login.as_deref().unwrap_or(&self.invoker.name);
        format!("{login}@{}", target.address())
    }

    fn menu(self) -> ExitCode {
        let targets = catalog::reachable(&self.config.targets, &self.invoker);
        let entries: Vec<menu::Entry> = targets
            .iter()
            .map(|t| menu::Entry {
                name: t.name.to_string(),
                detail: self.describe(t),
            })
            .collect();
        let choice = menu::choose(&entries, io::stdin().lock(), io::stdout().lock());
        match choice {
            Ok(menu::Choice::Target(i)) => {
                let Some(target) = targets.get(i) else {
                    return ExitCode::from(EXIT_DENIED);
                };
                let name = target.name.to_string();
                let login = target
                    .login
                    .clone()
                    .unwrap_or_else(|| self.invoker.name.clone());
                self.session(&name, &login, true, None)
            }
            Ok(menu::Choice::Quit) => ExitCode::SUCCESS,
            Err(e) => {
                say(&format!("menu: {e}"));
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }

    /// The target push for `target`; `Ok` only with an approval.
    fn authorize(&self, target: &Target, login: &str) -> Result<Approval, ExitCode> {
        let who = self.who(Some(target.name.as_str()));
        let duo = &self.config.duo;
        let policy = PolicyInput {
            force_mfa: self.config.policy.force_mfa,
            allow_bypass: self.config.policy.allow_bypass,
            fail_open: duo.failmode == FailMode::Safe,
        };
        let deny = |shim: &Self, decision: &Decision| {
            shim.logger
                .log(&AuditEvent::decision(Hop::Target, who.clone(), decision));
            ExitCode::from(EXIT_DENIED)
        };
        if !target.mfa {
            let decision = decide(&policy, Situation::TargetMfaOff);
            self.logger
                .log(&AuditEvent::decision(Hop::Target, who.clone(), &decision));
            return match decision {
                Decision::Grant(approval) => Ok(approval),
                Decision::Deny(denial) => {
                    say(&denial.user_message);
                    Err(ExitCode::from(EXIT_DENIED))
                }
                other => Err(deny(self, &other)),
            };
        }
        let proxy = match self.config.proxy.effective_name() {
            Ok(name) => name,
            Err(e) => {
                self.logger.log(&AuditEvent::ConfigProblem {
                    path: "[proxy] name".to_owned(),
                    detail: e.to_string(),
                });
                say("the proxy's configuration cannot be used; contact your administrator.");
                return Err(ExitCode::from(EXIT_FAILURE));
            }
        };
        let username = match identity::duo_username(
            &self.invoker.name,
            &self.gecos,
            duo.send_gecos,
            duo.gecos_username_pos,
            duo.gecos_delim,
        ) {
            Ok(username) => username,
            Err(e) => {
                return Err(self.refuse(
                    "no_duo_username",
                    &e.to_string(),
                    "access denied: your Duo username cannot be determined; contact your administrator.",
                ));
            }
        };
        let ctx = PushContext {
            username,
            from: self.from,
            ipaddr: identity::duo_ipaddr(self.from, duo.fallback_local_ip),
            proxy,
        };
        let request = push::target_request(&ctx, target, login);
        let settings = FlowSettings {
            policy,
            timeouts: Timeouts {
                https: duo.https_timeout,
                push: duo.push_timeout,
            },
            autopush: true,
            prompts: duo.prompts,
        };
        let mut ui = StatusChannel::new(target.name.as_str(), io::stderr());
        let client = DuoClient::new(ClientSettings::from_config(duo, crate::USER_AGENT_PRODUCT));
        let verdict = match client {
            Ok(client) => {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        say(&format!("cannot start: {e}"));
                        return Err(ExitCode::from(EXIT_FAILURE));
                    }
                };
                let verdict = runtime.block_on(push::authorize(
                    &client, &settings, target, &request, &mut ui,
                ));
                drop(client);
                runtime.shutdown_timeout(Duration::from_secs(1));
                verdict
            }
            Err(e) => {
                let decision = decide(&policy, Situation::DuoUnavailable(&e));
                if let Decision::Deny(d) = &decision {
                    say(&d.user_message);
                }
                push::Verdict {
                    decision,
                    txid: None,
                    device: None,
                }
            }
        };
        if let Some(txid) = &verdict.txid {
            self.logger.log(&AuditEvent::PushSent {
                hop: Hop::Target,
                who: who.clone(),
                device: verdict.device.clone(),
                txid: txid.0.clone(),
            });
        }
        let mut event = AuditEvent::decision(Hop::Target, who, &verdict.decision);
        if let AuditEvent::Decision { txid, .. } = &mut event {
            if txid.is_none() {
                *txid = verdict.txid.as_ref().map(|t| t.0.clone());
            }
        }
        self.logger.log(&event);
        match verdict.decision {
            Decision::Grant(approval) => Ok(approval),
            // The flow already showed the reason on stderr.
            Decision::Deny(_) | Decision::Continue | Decision::Ignore => {
                Err(ExitCode::from(EXIT_DENIED))
            }
        }
    }

    /// Interactive session or command on `name` through the OpenSSH client.
    fn session(
        self,
        name: &str,
        login: &str,
        tty: bool,
        command: Option<RemoteCommand>,
    ) -> ExitCode {
        let Some(target) = self.config.target(name) else {
            return ExitCode::from(EXIT_DENIED);
        };
        let proxy = &self.config.proxy;
        let ssh = SshSettings {
            program: proxy.ssh.clone(),
            config: proxy.ssh_config.clone(),
            known_hosts: proxy.known_hosts.clone(),
            connect_timeout: proxy.connect_timeout,
        };
        let destination = Destination {
            host: target.host.clone(),
            port: target.port,
            login: login.to_owned(),
        };
        // Built before the push: a configuration problem must not cost the user a push.
        let args = match target_ssh::arguments(&ssh, &destination, tty, command.as_ref()) {
            Ok(args) => args,
            Err(e) => {
                self.logger.log(&AuditEvent::ConfigProblem {
                    path: "[proxy]".to_owned(),
                    detail: e.to_string(),
                });
                say("the proxy's configuration cannot be used; contact your administrator.");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let approval = match self.authorize(target, login) {
            Ok(approval) => approval,
            Err(code) => return code,
        };
        let who = self.who(Some(name));
        let kind = if command.is_some() {
            ConnectionKind::Command
        } else {
            ConnectionKind::Session
        };
        self.logger.log(&AuditEvent::ConnectionStart {
            who: who.clone(),
            kind,
            login: Some(login.to_owned()),
            address: target.address(),
            txid: approval.txid().map(|t| t.0.clone()),
        });
        let logger = self.logger.clone();
        // The configuration, with the secret key, is gone before the child runs.
        drop(self);
        let started = Instant::now();
        let result = target_ssh::run(approval, &ssh, args);
        let (status, exit) = match result {
            Ok(end) => (
                match end.signal {
                    Some(signal) => EndStatus::Signaled { signal },
                    None => EndStatus::Exited {
                        code: end.exit_code,
                    },
                },
                ExitCode::from(u8::try_from(end.exit_code).unwrap_or(255)),
            ),
            Err(e) => {
                say(&format!("cannot connect to {name}."));
                (
                    EndStatus::Failed {
                        detail: e.to_string(),
                    },
                    ExitCode::from(EXIT_FAILURE),
                )
            }
        };
        logger.log(&AuditEvent::ConnectionEnd {
            who,
            kind,
            status,
            duration: started.elapsed(),
        });
        exit
    }

    /// `connect`: a raw relay to `name`.
    fn connect(self, name: &str) -> ExitCode {
        let Some(target) = self.config.target(name) else {
            return ExitCode::from(EXIT_DENIED);
        };
        let approval = match self.authorize(target, CONNECT_LOGIN) {
            Ok(approval) => approval,
            Err(code) => return code,
        };
        let who = self.who(Some(name));
        let host = target.host.clone();
        let port = target.port;
        let timeout = self.config.proxy.connect_timeout;
        let logger = self.logger.clone();
        logger.log(&AuditEvent::ConnectionStart {
            who: who.clone(),
            kind: ConnectionKind::Connect,
            login: None,
            address: target.address(),
            txid: approval.txid().map(|t| t.0.clone()),
        });
        // The configuration, with the secret key, is gone before any byte is relayed.
        drop(self);
        let started = Instant::now();
        let end = |status: EndStatus, duration: Duration| {
            logger.log(&AuditEvent::ConnectionEnd {
                who: who.clone(),
                kind: ConnectionKind::Connect,
                status,
                duration,
            });
        };
        let socket = match connect::open(approval, &host, port, timeout) {
            Ok(socket) => socket,
            Err(e) => {
                end(
                    EndStatus::Failed {
                        detail: e.to_string(),
                    },
                    started.elapsed(),
                );
                say(&format!("{name}: {e}"));
                return ExitCode::from(EXIT_DENIED);
            }
        };
        match connect::relay_stdio(&socket) {
            Ok(report) => {
                let clean = report.clean();
                let error = [
                    report
                        .to_target
                        .error
                        .as_ref()
                        .map(|e| format!("to target: {e}")),
                    report
                        .from_target
                        .error
                        .as_ref()
                        .map(|e| format!("from target: {e}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
                end(
                    EndStatus::Relayed {
                        bytes_in: report.from_target.bytes,
                        bytes_out: report.to_target.bytes,
                        error: (!error.is_empty()).then(|| error.join("; ")),
                    },
                    report.duration,
                );
                if clean {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_DENIED)
                }
            }
            Err(e) => {
                end(
                    EndStatus::Failed {
                        detail: e.to_string(),
                    },
                    started.elapsed(),
                );
                say(&e.to_string());
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}
