//! The proxy world of the end-to-end tests and the demo: a target sshd, and a proxy sshd whose
//! PAM stack asks for the password and then runs `pam_duo_push.so`, with `ForceCommand` a lab
//! copy of `duo-proxy-shim` installed `root:duo-push` 2755, configured through
//! `/etc/duo_push/duo_push.conf` to reach the target.
//!
//! ```no_run
//! use duo_push_tests::lab::{MockDuo, MockOpts, ProxyWorld, SshClient, SshdSpec};
//!
//! let mock = MockDuo::start(MockOpts::default());
//! let world = ProxyWorld::spec()
//!     .user("alice", "pw-alice", &["ops"])
//!     .target_sshd(SshdSpec::named("target").config("AcceptEnv *\n"))
//!     .target("web01", "127.0.0.1", "alice")
//!     .start(&mock);
//! let run = SshClient::new(&world.proxy, "alice").password("pw-alice").args(["list"]).run();
//! ```
//!
//! What [`ProxyWorldSpec::start`] sets up, in this order:
//!
//! 1. a new [`Lab`] with the group `duo-push`, the extra groups, and the users (each with the
//!    password, the groups, and an ed25519 key pair authorized for itself: the shim's hop to
//!    the target uses `~/.ssh/id_ed25519`);
//! 2. the target sshd;
//! 3. under the namespaces' `/etc/duo_push/`: `ca.pem` (mock-duo's CA), `known_hosts` (the
//!    target's host key), `ssh_config` (the shim's ssh: batch mode, the user's key only) and
//!    `duo_push.conf` (`root:duo-push` 0640: [`ProxyWorldSpec::config_text`]);
//! 4. the shim copy and the proxy sshd (PAM: [`proxy_pam_stack`]; sshd_config:
//!    `ForceCommand <shim>` and [`ProxyWorldSpec::sshd_config`]).

use std::fs;
use std::path::{Path, PathBuf};

use super::build::{pam_module, proxy_shim};
use super::mock::MockDuo;
use super::sshd::{EtcFile, Sshd, SshdSpec};
use super::users::Lab;

/// The documented sshd_config of the proxy (docs/sshd_config.md) after its `ForceCommand`
/// line, without `AcceptEnv` (the documented value is `AcceptEnv LANG LC_*`).
pub const PROXY_SSHD_HARDENING: &str = "DisableForwarding yes\n\
     AllowTcpForwarding no\n\
     AllowStreamLocalForwarding no\n\
     AllowAgentForwarding no\n\
     X11Forwarding no\n\
     PermitTunnel no\n\
     PermitUserRC no\n\
     PermitUserEnvironment no\n\
     PermitTTY yes\n\
     AuthenticationMethods keyboard-interactive\n\
     KbdInteractiveAuthentication yes\n\
     PasswordAuthentication no\n\
     PubkeyAuthentication no\n";

/// The proxy's PAM service (`/etc/pam.d/sshd`): the password (`pam_unix`), then a Duo Push
/// through `module` with `/etc/duo_push/duo_push.conf`, and the usual account and session
/// modules.
pub fn proxy_pam_stack(module: &Path) -> String {
    format!(
        "auth     requisite  pam_unix.so\n\
         auth     required   {} conf=/etc/duo_push/duo_push.conf\n\
         account  required   pam_nologin.so\n\
         account  required   pam_unix.so\n\
         session  required   pam_unix.so\n\
         session  required   pam_limits.so\n\
         password requisite  pam_deny.so\n",
        module.display()
    )
}

/// A running proxy world (see the module documentation). Dropping it stops both sshds and
/// removes the lab.
#[derive(Debug)]
pub struct ProxyWorld {
    /// The lab (users, `/etc` overlay).
    pub lab: Lab,
    /// The target device's sshd.
    pub target: Sshd,
    /// The proxy sshd (`ForceCommand` = [`ProxyWorld::shim`]).
    pub proxy: Sshd,
    /// The installed shim copy (`root:duo-push` 2755).
    pub shim: PathBuf,
    /// gid of `duo-push`.
    pub shim_gid: u32,
}

impl ProxyWorld {
    /// A spec with the defaults (see [`ProxyWorldSpec`]).
    pub fn spec() -> ProxyWorldSpec {
        ProxyWorldSpec::default()
    }
}

/// One `[target NAME]` of the config; its port is the target sshd's.
#[derive(Debug, Clone)]
struct TargetEntry {
    name: String,
    host: String,
    allow: String,
}

/// What [`ProxyWorldSpec::start`] sets up; every knob has a default.
#[derive(Debug, Clone)]
pub struct ProxyWorldSpec {
    proxy_name: String,
    push_timeout: u64,
    groups: Vec<String>,
    users: Vec<(String, String, Vec<String>)>,
    target_sshd: SshdSpec,
    targets: Vec<TargetEntry>,
    send_all_env: bool,
    sshd_config: String,
    config_comment: String,
    pam_comment: String,
    module: Option<PathBuf>,
    shim: Option<PathBuf>,
}

impl Default for ProxyWorldSpec {
    fn default() -> ProxyWorldSpec {
        ProxyWorldSpec {
            proxy_name: "vault.test".to_owned(),
            push_timeout: 20,
            groups: Vec::new(),
            users: Vec::new(),
            target_sshd: SshdSpec::named("target"),
            targets: Vec::new(),
            send_all_env: false,
            sshd_config: format!("{PROXY_SSHD_HARDENING}AcceptEnv LANG LC_*\n"),
            config_comment: String::new(),
            pam_comment: String::new(),
            module: None,
            shim: None,
        }
    }
}

impl ProxyWorldSpec {
    /// `[proxy] name` (default `vault.test`).
    pub fn proxy_name(mut self, name: &str) -> ProxyWorldSpec {
        self.proxy_name = name.to_owned();
        self
    }

    /// `[duo] push_timeout` in seconds (default 20).
    pub fn push_timeout(mut self, secs: u64) -> ProxyWorldSpec {
        self.push_timeout = secs;
        self
    }

    /// A group created right after `duo-push` (before the users).
    pub fn group(mut self, name: &str) -> ProxyWorldSpec {
        self.groups.push(name.to_owned());
        self
    }

    /// A user with `password`, member of `groups`, with a key pair authorized for itself.
    pub fn user(mut self, name: &str, password: &str, groups: &[&str]) -> ProxyWorldSpec {
        self.users.push((
            name.to_owned(),
            password.to_owned(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
        ));
        self
    }

    /// The target sshd (default `SshdSpec::named("target")`).
    pub fn target_sshd(mut self, spec: SshdSpec) -> ProxyWorldSpec {
        self.target_sshd = spec;
        self
    }

    /// A `[target NAME]` with `host`, the target sshd's port, and `allow`.
    pub fn target(mut self, name: &str, host: &str, allow: &str) -> ProxyWorldSpec {
        self.targets.push(TargetEntry {
            name: name.to_owned(),
            host: host.to_owned(),
            allow: allow.to_owned(),
        });
        self
    }

    /// `SendEnv *` in the shim's ssh_config (tests of what the environment can reach).
    pub fn send_all_env(mut self) -> ProxyWorldSpec {
        self.send_all_env = true;
        self
    }

    /// The proxy's sshd_config after `ForceCommand <shim>` (default: the documented one,
    /// [`PROXY_SSHD_HARDENING`] and `AcceptEnv LANG LC_*`).
    pub fn sshd_config(mut self, text: &str) -> ProxyWorldSpec {
        self.sshd_config = text.to_owned();
        self
    }

    /// A comment line put at the top of `duo_push.conf` (without the `# `).
    pub fn config_comment(mut self, text: &str) -> ProxyWorldSpec {
        self.config_comment = format!("# {text}\n");
        self
    }

    /// A comment line put at the top of the proxy's PAM service (without the `# `).
    pub fn pam_comment(mut self, text: &str) -> ProxyWorldSpec {
        self.pam_comment = format!("# {text}\n");
        self
    }

    /// The PAM module to load (default: [`pam_module`], rebuilt if stale).
    pub fn module(mut self, path: &Path) -> ProxyWorldSpec {
        self.module = Some(path.to_path_buf());
        self
    }

    /// The shim to install (default: [`proxy_shim`], rebuilt if stale).
    pub fn shim(mut self, path: &Path) -> ProxyWorldSpec {
        self.shim = Some(path.to_path_buf());
        self
    }

    /// The text of `/etc/duo_push/duo_push.conf` for `mock` and a target sshd on
    /// `target_port`: Duo through `/etc/duo_push/ca.pem`, `force_mfa = yes`, the shim's ssh
    /// with `/etc/duo_push/ssh_config` and `/etc/duo_push/known_hosts`, and the targets.
    pub fn config_text(&self, mock: &MockDuo, target_port: u16) -> String {
        let mut text = format!(
            "{comment}\
             [duo]\nhost = {host}\nikey = {ikey}\nskey = {skey}\ncafile = /etc/duo_push/ca.pem\n\
             push_timeout = {push_timeout}\n\
             [policy]\nforce_mfa = yes\n\
             [proxy]\nname = {name}\nssh = /usr/bin/ssh\nssh_config = /etc/duo_push/ssh_config\n\
             known_hosts = /etc/duo_push/known_hosts\nconnect_timeout = 5\n",
            comment = self.config_comment,
            host = mock.host(),
            ikey = mock.ikey(),
            skey = mock.skey(),
            push_timeout = self.push_timeout,
            name = self.proxy_name,
        );
        for t in &self.targets {
            text.push_str(&format!(
                "[target {}]\nhost = {}\nport = {target_port}\nallow = {}\n",
                t.name, t.host, t.allow
            ));
        }
        text
    }

    /// Sets the world up (see the module documentation) with Duo at `mock`.
    pub fn start(self, mock: &MockDuo) -> ProxyWorld {
        let module = self.module.clone().unwrap_or_else(pam_module);
        let shim_src = self.shim.clone().unwrap_or_else(proxy_shim);
        let lab = Lab::new();
        let shim_gid = lab.add_group("duo-push");
        for group in &self.groups {
            lab.add_group(group);
        }
        for (name, password, groups) in &self.users {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let user = lab.add_user(name, Some(password), &groups);
            let (_key, public) = lab.user_keypair(&user);
            lab.authorize_key(&user, &public);
        }
        let target = lab.start_sshd(self.target_sshd.clone());

        let ca = fs::read_to_string(mock.ca_pem_path())
            .unwrap_or_else(|e| panic!("mock-duo's CA {}: {e}", mock.ca_pem_path().display()));
        let send_env = if self.send_all_env {
            "    SendEnv *\n"
        } else {
            ""
        };
        for file in [
            EtcFile::new("duo_push/ca.pem", &ca, 0o644, 0, 0),
            EtcFile::new(
                "duo_push/known_hosts",
                &format!("{}\n", target.known_hosts_line()),
                0o644,
                0,
                0,
            ),
            EtcFile::new(
                "duo_push/ssh_config",
                &format!(
                    "Host *\n    BatchMode yes\n    IdentitiesOnly yes\n    \
                     IdentityFile ~/.ssh/id_ed25519\n    PasswordAuthentication no\n    \
                     KbdInteractiveAuthentication no\n{send_env}"
                ),
                0o644,
                0,
                0,
            ),
            EtcFile::new(
                "duo_push/duo_push.conf",
                &self.config_text(mock, target.port()),
                0o640,
                0,
                shim_gid,
            ),
        ] {
            lab.etc_file(&file);
        }

        let shim = lab.install_copy(&shim_src, "duo-proxy-shim", 0o2755, 0, shim_gid);
        let pam = format!("{}{}", self.pam_comment, proxy_pam_stack(&module));
        let sshd_config = format!("ForceCommand {}\n{}", shim.display(), self.sshd_config);
        let proxy = lab.start_sshd(SshdSpec::named("proxy").pam(&pam).config(&sshd_config));
        ProxyWorld {
            lab,
            target,
            proxy,
            shim,
            shim_gid,
        }
    }
}
