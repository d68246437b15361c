//! Typed configuration: `/etc/duo_push/duo_push.conf` (see DESIGN.md, "Configuration").
//!
//! The `[duo]` section accepts an unmodified duo_unix `pam_duo.conf`. Defaults that differ from
//! duo_unix are deliberate and documented on each field: `failmode` defaults to `secure`,
//! `autopush` to `yes` and `https_timeout` to 15 seconds.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::ini;
use crate::ini::{Entry, EntryKind};
use crate::secret::Secret;
use crate::signing::SignatureVersion;

/// Where the configuration lives unless the PAM module is given `conf=PATH`.
pub const DEFAULT_PATH: &str = "/etc/duo_push/duo_push.conf";

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[duo]`: the duo_unix keys plus our own.
    pub duo: DuoSettings,
    /// `[policy]`: forced MFA.
    pub policy: PolicySettings,
    /// `[proxy]`: how the shim reaches targets.
    pub proxy: ProxySettings,
    /// Every `[target NAME]`, in file order.
    pub targets: Vec<Target>,
    /// Things that are accepted but probably not what the operator meant; log them.
    pub warnings: Vec<String>,
}

/// `[duo]` settings.
#[derive(Debug, Clone)]
pub struct DuoSettings {
    /// `host`: the Duo API host name, optionally with `:port`.
    pub host: DuoHost,
    /// `ikey`: the integration key (not secret).
    pub ikey: Ikey,
    /// `skey`: the secret key; never logged, zeroed on drop.
    pub skey: Secret,
    /// `failmode`: what to do when Duo cannot be asked. Default [`FailMode::Secure`] here
    /// (pam_duo defaults to safe). Ignored, with a warning, when `force_mfa = yes`.
    pub failmode: FailMode,
    /// `signature_version`: `5` (default), `2` (HMAC-SHA512) or `2-sha1`.
    pub signature_version: SignatureVersion,
    /// `https_timeout`: every call except waiting for the phone. Default 15 s (duo_unix: no
    /// timeout), 1 to 300 s.
    pub https_timeout: Duration,
    /// `push_timeout`: how long to wait for an approval. Default 75 s, 10 to 600 s.
    pub push_timeout: Duration,
    /// `pushinfo` (duo_unix key, default no). Accepted for compatibility: this module always
    /// sends its own pushinfo (hop, host, from, service) whatever the value.
    pub pushinfo: bool,
    /// `autopush`: send the push without asking first. Default yes here (duo_unix: no).
    pub autopush: bool,
    /// `prompts`: 1 to 3, default 3.
    pub prompts: u8,
    /// `groups` (alias `group`): duo_unix group pattern lists (`*`, `?`, `!`, `,`), one entry
    /// per space-separated word (`\ ` escapes a space). Repeated keys and continuation lines
    /// append. Only allowed when `force_mfa = no`.
    pub groups: Vec<String>,
    /// `http_proxy`: `http://host:port` only (no credentials, no https).
    pub http_proxy: Option<String>,
    /// `cafile`: PEM file that replaces the built-in Duo roots (absolute path).
    pub cafile: Option<PathBuf>,
    /// `fallback_local_ip`: send this host's address when the client's is unknown.
    pub fallback_local_ip: bool,
    /// `send_gecos`: use the GECOS field as the Duo username.
    pub send_gecos: bool,
    /// `gecos_username_pos`: 1-based field of the GECOS entry holding the Duo username.
    pub gecos_username_pos: Option<u32>,
    /// `gecos_delim`: GECOS field separator; one ASCII punctuation character other than `:`.
    /// Default `,`.
    pub gecos_delim: char,
}

/// What happens when Duo cannot be asked (unreachable, 5xx, bad keys, invalid config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Allow the login without a second factor (logged as fail-open). Only honoured when
    /// `force_mfa = no`.
    Safe,
    /// Deny the login.
    Secure,
}

/// `[policy]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// `force_mfa`: every session needs an approved push. Default yes.
    pub force_mfa: bool,
    /// `allow_bypass`: honour Duo's preauth `allow` when `force_mfa = yes`. Default no.
    pub allow_bypass: bool,
    /// `shim_group`: the group the shim runs setgid as; the only group that may read this
    /// file. Default `duo-push`.
    pub shim_group: String,
}

/// `[proxy]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `name`: the proxy's name sent to Duo (`hostname`, pushinfo `host`). Default: the system
    /// host name (see [`ProxySettings::effective_name`]).
    pub name: Option<String>,
    /// `ssh`: the OpenSSH client. Default `/usr/bin/ssh`.
    pub ssh: PathBuf,
    /// `ssh_config`: passed as `ssh -F`. Default `/etc/duo_push/ssh_config`.
    pub ssh_config: PathBuf,
    /// `known_hosts`: the admin-owned known_hosts file. Default `/etc/duo_push/known_hosts`.
    pub known_hosts: PathBuf,
    /// `connect_timeout`: TCP connect to a target. Default 10 s, 1 to 300 s.
    pub connect_timeout: Duration,
}

/// One `[target NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The section's name.
    pub name: TargetName,
    /// `host` (required): host name or IP literal; never starts with `-`, no whitespace,
    /// control or shell metacharacters.
    pub host: String,
    /// `port`: default 22.
    pub port: u16,
    /// `login`: login name on the target; default: the proxy user's name.
    pub login: Option<String>,
    /// `allow`: users and `@groups` allowed; default nobody.
    pub allow: Vec<Principal>,
    /// `mfa`: push before connecting. Default yes; `no` only when `force_mfa = no`.
    pub mfa: bool,
}

/// An entry of a target's `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `alice`
    User(String),
    /// `@ops`
    Group(String),
}

/// A target's name: `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`. Only [`FromStr`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetName(String);

/// The Duo API host: lowercase host name characters and an optional `:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuoHost {
    authority: String,
    host_len: usize,
}

/// An integration key: exactly 20 characters `A-Z0-9`. Not secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ikey(String);

/// A configuration problem. `Display` gives `FILE:LINE: key `KEY`: MESSAGE`; it never holds a
/// secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    /// The key concerned, when there is one.
    pub key: Option<String>,
    /// What is wrong, for the operator.
    pub message: String,
    /// True only when the file passed the secure-open checks and its parsable lines
    /// explicitly say `force_mfa = no` and `failmode = safe`: then the policy may apply
    /// failmode to this otherwise unusable configuration. False in every other case, so the
    /// default is deny.
    pub fail_open_allowed: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about the file as a whole (opening, permissions, size).
    pub(crate) fn about_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
            fail_open_allowed: false,
        }
    }

    fn at(file: &Path, line: Option<usize>, key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            key: key.map(str::to_owned),
            message: message.into(),
            fail_open_allowed: false,
        }
    }
}

impl FromStr for TargetName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && s.len() <= 63 {
            Ok(Self(s.to_owned()))
        } else {
            Err("a target name is 1 to 63 characters A-Z a-z 0-9 . _ -, starting with a letter or digit".to_owned())
        }
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TargetName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TargetName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Host name characters, as Duo and DNS use them: letters, digits, `.`, `-`; not starting
/// with `.` or `-`; at most 253 characters.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// A decimal TCP port 1 to 65535 (digits only, no sign).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

impl FromStr for DuoHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let (host, port_ok) = match lower.split_once(':') {
            Some((host, port)) => (host, parse_port(port).is_some()),
            None => (lower.as_str(), true),
        };
        if !port_ok || !is_dns_name(host) {
            return Err(
                "must be a host name with an optional :port, like api-xxxxxxxx.duosecurity.com"
                    .to_owned(),
            );
        }
        let host_len = host.len();
        Ok(Self {
            authority: lower,
            host_len,
        })
    }
}

impl DuoHost {
    /// The host name alone, lowercase (what the request signature covers).
    pub fn host_without_port(&self) -> &str {
        self.authority
            .get(..self.host_len)
            .unwrap_or(&self.authority)
    }

    /// `host` or `host:port`, lowercase (what the URL and the `Host` header carry).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The explicit port, if one was given.
    pub fn port(&self) -> Option<u16> {
        self.authority
            .get(self.host_len..)
            .and_then(|p| p.strip_prefix(':'))
            .and_then(parse_port)
    }
}

impl fmt::Display for DuoHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

impl FromStr for Ikey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 20
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "must be exactly 20 characters A-Z and 0-9 (found {} characters)",
                s.chars().count()
            ))
        }
    }
}

impl Ikey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ikey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Target {
    /// Whether `user`, member of `user_groups`, is on this target's `allow` list.
    pub fn allows(&self, user: &str, user_groups: &[String]) -> bool {
        self.allow.iter().any(|p| match p {
            Principal::User(u) => u == user,
            Principal::Group(g) => user_groups.iter().any(|ug| ug == g),
        })
    }

    /// `host:port` for logs and pushinfo (IPv6 literals in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl ProxySettings {
    /// The name to send to Duo: `name` if set, else the kernel's host name.
    pub fn effective_name(&self) -> std::io::Result<String> {
        if let Some(name) = &self.name {
            return Ok(name.clone());
        }
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        let name = raw.trim();
        if is_dns_name(name) {
            Ok(name.to_owned())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the system host name is empty or has unexpected characters; set [proxy] name",
            ))
        }
    }
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            force_mfa: true,
            allow_bypass: false,
            shim_group: "duo-push".to_owned(),
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            name: None,
            ssh: PathBuf::from("/usr/bin/ssh"),
            ssh_config: PathBuf::from("/etc/duo_push/ssh_config"),
            known_hosts: PathBuf::from("/etc/duo_push/known_hosts"),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// [`DEFAULT_PATH`], as an associated constant.
    pub const DEFAULT_PATH: &'static str = DEFAULT_PATH;

    /// Opens `path` securely (see [`crate::secure_open`]), parses and validates it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_group_file(path, Path::new(crate::secure_open::GROUP_FILE))
    }

    /// [`Config::load`] with the group database read from `group_file` instead of
    /// `/etc/group` (to resolve `shim_group` when the file is group-readable). For tests and
    /// `duo-proxy-shim check`.
    pub fn load_with_group_file(path: &Path, group_file: &Path) -> Result<Config, ConfigError> {
        let file = crate::secure_open::read_config_file(path)?;
        let doc = ini::parse(file.bytes());
        let explicit_fail_open = explicit_fail_open(&doc.entries);
        match build(&doc, path) {
            Ok(config) => {
                crate::secure_open::check_group_access(
                    &file,
                    path,
                    &config.policy.shim_group,
                    group_file,
                )?;
                Ok(config)
            }
            Err(mut error) => {
                // A group-readable file whose shim_group could not be read has not passed
                // every secure-open check.
                error.fail_open_allowed = explicit_fail_open && !file.is_group_readable();
                Err(error)
            }
        }
    }

    /// Parses and validates configuration text without any file checks; `origin` names the
    /// file in messages. Errors from here never allow failing open.
    pub fn parse(text: &[u8], origin: &Path) -> Result<Config, ConfigError> {
        build(&ini::parse(text), origin)
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name.as_str() == name)
    }
}

/// Whether a key takes one value or a list that repeats and continues on indented lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    List,
    /// A duo_unix key that no longer does anything; accepted with a warning.
    Obsolete,
}

const DUO_KEYS: &[(&str, Kind)] = &[
    ("host", Kind::Scalar),
    ("ikey", Kind::Scalar),
    ("skey", Kind::Scalar),
    ("failmode", Kind::Scalar),
    ("signature_version", Kind::Scalar),
    ("https_timeout", Kind::Scalar),
    ("push_timeout", Kind::Scalar),
    ("pushinfo", Kind::Scalar),
    ("autopush", Kind::Scalar),
    ("prompts", Kind::Scalar),
    ("groups", Kind::List),
    ("http_proxy", Kind::Scalar),
    ("cafile", Kind::Scalar),
    ("noverify", Kind::Scalar),
    ("accept_env_factor", Kind::Scalar),
    ("verified_push", Kind::Scalar),
    ("fallback_local_ip", Kind::Scalar),
    ("send_gecos", Kind::Scalar),
    ("gecos_username_pos", Kind::Scalar),
    ("gecos_delim", Kind::Scalar),
    ("gecos_parsed", Kind::Obsolete),
    ("dev_fips_mode", Kind::Obsolete),
];
const POLICY_KEYS: &[(&str, Kind)] = &[
    ("force_mfa", Kind::Scalar),
    ("allow_bypass", Kind::Scalar),
    ("shim_group", Kind::Scalar),
];
const PROXY_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Scalar),
    ("ssh", Kind::Scalar),
    ("ssh_config", Kind::Scalar),
    ("known_hosts", Kind::Scalar),
    ("connect_timeout", Kind::Scalar),
];
const TARGET_KEYS: &[(&str, Kind)] = &[
    ("host", Kind::Scalar),
    ("port", Kind::Scalar),
    ("login", Kind::Scalar),
    ("allow", Kind::List),
    ("mfa", Kind::Scalar),
];

/// The lines of one section, borrowed from the parsed document.
struct RawSection<'a> {
    title: String,
    header_line: usize,
    known: &'static [(&'static str, Kind)],
    /// (canonical key, line, value), in file order.
    values: Vec<(&'static str, usize, &'a str)>,
}

impl<'a> RawSection<'a> {
    fn new(title: String, header_line: usize, known: &'static [(&'static str, Kind)]) -> Self {
        Self {
            title,
            header_line,
            known,
            values: Vec::new(),
        }
    }

    fn first(&self, key: &str) -> Option<(usize, &'a str)> {
        self.values
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, line, value)| (*line, *value))
    }

    fn all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = (usize, &'a str)> + 's {
        self.values
            .iter()
            .filter(move |(k, _, _)| *k == key)
            .map(|(_, line, value)| (*line, *value))
    }
}

#[derive(Clone, Copy)]
enum Current {
    Nothing,
    Duo,
    Policy,
    Proxy,
    Target(usize),
}

/// Sorts the document's lines into sections, with the syntax-level checks: unknown or
/// duplicate sections and keys, continuations of single-value keys.
struct Sorter<'a> {
    origin: &'a Path,
    current: Current,
    duo: Option<RawSection<'a>>,
    policy: Option<RawSection<'a>>,
    proxy: Option<RawSection<'a>>,
    targets: Vec<(TargetName, RawSection<'a>)>,
    warnings: Vec<String>,
}

impl<'a> Sorter<'a> {
    fn err(&self, line: usize, key: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.origin, Some(line), key, message)
    }

    fn section(&mut self, line: usize, name: &str, arg: Option<&str>) -> Result<(), ConfigError> {
        let single = |slot: &Option<RawSection<'a>>, s: &Self| -> Result<(), ConfigError> {
            if let Some(arg) = arg {
                return Err(s.err(
                    line,
                    None,
                    format!("section [{name}] takes no name (found `{}`)", escape(arg)),
                ));
            }
            match slot {
                Some(first) => Err(s.err(
                    line,
                    None,
                    format!(
                        "duplicate section [{name}]; it already appears on line {}",
                        first.header_line
                    ),
                )),
                None => Ok(()),
            }
        };
        match name {
            "duo" => {
                single(&self.duo, self)?;
                self.duo = Some(RawSection::new("[duo]".into(), line, DUO_KEYS));
                self.current = Current::Duo;
            }
            "policy" => {
                single(&self.policy, self)?;
                self.policy = Some(RawSection::new("[policy]".into(), line, POLICY_KEYS));
                self.current = Current::Policy;
            }
            "proxy" => {
                single(&self.proxy, self)?;
                self.proxy = Some(RawSection::new("[proxy]".into(), line, PROXY_KEYS));
                self.current = Current::Proxy;
            }
            "target" => {
                let Some(arg) = arg else {
                    return Err(self.err(
                        line,
                        None,
                        "a target section needs a name: [target NAME]",
                    ));
                };
                let target_name = TargetName::from_str(arg).map_err(|e| {
                    self.err(
                        line,
                        None,
                        format!("bad target name `{}`: {e}", escape(arg)),
                    )
                })?;
                if let Some((_, first)) = self.targets.iter().find(|(n, _)| *n == target_name) {
                    return Err(self.err(
                        line,
                        None,
                        format!(
                            "duplicate section [target {target_name}]; it already appears on line {}",
                            first.header_line
                        ),
                    ));
                }
                self.current = Current::Target(self.targets.len());
                self.targets.push((
                    target_name.clone(),
                    RawSection::new(format!("[target {target_name}]"), line, TARGET_KEYS),
                ));
            }
            other => {
                return Err(self.err(
                    line,
                    None,
                    format!(
                        "unknown section [{}]; expected [duo], [policy], [proxy] or [target NAME]",
                        escape(other)
                    ),
                ))
            }
        }
        Ok(())
    }

    fn current_section(&mut self) -> Option<&mut RawSection<'a>> {
        match self.current {
            Current::Nothing => None,
            Current::Duo => self.duo.as_mut(),
            Current::Policy => self.policy.as_mut(),
            Current::Proxy => self.proxy.as_mut(),
            Current::Target(i) => self.targets.get_mut(i).map(|(_, s)| s),
        }
    }

    fn value(
        &mut self,
        line: usize,
        key: &str,
        value: &'a str,
        continuation: bool,
    ) -> Result<(), ConfigError> {
        let origin = self.origin;
        let err = |message: String| ConfigError::at(origin, Some(line), Some(key), message);
        // duo_unix reads `group` as `groups`.
        let canonical_input = if key == "group" && matches!(self.current, Current::Duo) {
            "groups"
        } else {
            key
        };
        let Some(section) = self.current_section() else {
            return Err(err(
                "key outside any section; put it under [duo], [policy], [proxy] or [target NAME]"
                    .to_owned(),
            ));
        };
        let Some(&(canonical, kind)) = section.known.iter().find(|(k, _)| *k == canonical_input)
        else {
            return Err(err(format!("unknown key in {}", section.title)));
        };
        match kind {
            Kind::List => {}
            Kind::Scalar | Kind::Obsolete if continuation => {
                return Err(err(
                    "an indented line continues this key, but it takes a single value; remove \
                     the indentation or join the lines"
                        .to_owned(),
                ));
            }
            Kind::Scalar | Kind::Obsolete => {
                if let Some((first_line, _)) = section.first(canonical) {
                    return Err(err(format!(
                        "duplicate key; it is already set on line {first_line}"
                    )));
                }
            }
        }
        section.values.push((canonical, line, value));
        if kind == Kind::Obsolete {
            self.warnings.push(format!(
                "{}:{line}: `{key}` is an obsolete duo_unix key and has no effect",
                origin.display()
            ));
        }
        Ok(())
    }
}

/// Makes operator-supplied text safe to print in one log line.
fn escape(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).take(200).collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["yes", "true", "on", "1"];
    const FALSE: [&str; 4] = ["no", "false", "off", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

fn parse_failmode(s: &str) -> Option<FailMode> {
    if s.eq_ignore_ascii_case("safe") {
        Some(FailMode::Safe)
    } else if s.eq_ignore_ascii_case("secure") {
        Some(FailMode::Secure)
    } else {
        None
    }
}

/// Whether the lines that parsed say, without contradiction, `force_mfa = no` in [policy] and
/// `failmode = safe` in [duo].
fn explicit_fail_open(entries: &[Entry]) -> bool {
    let mut section: Option<&str> = None;
    let (mut force_no, mut force_other) = (false, false);
    let (mut safe, mut not_safe) = (false, false);
    for entry in entries {
        match &entry.kind {
            EntryKind::Section { name, arg } => {
                section = if arg.is_none() { Some(name) } else { None };
            }
            EntryKind::Pair { key, value } | EntryKind::Continuation { key, value } => {
                let continuation = matches!(entry.kind, EntryKind::Continuation { .. });
                match (section, key.as_str()) {
                    (Some("policy"), "force_mfa") => {
                        if !continuation && parse_bool(value) == Some(false) {
                            force_no = true;
                        } else {
                            force_other = true;
                        }
                    }
                    (Some("duo"), "failmode") => {
                        if !continuation && parse_failmode(value) == Some(FailMode::Safe) {
                            safe = true;
                        } else {
                            not_safe = true;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    force_no && !force_other && safe && !not_safe
}

fn build(doc: &ini::Document, origin: &Path) -> Result<Config, ConfigError> {
    if let Some(e) = doc.errors.first() {
        return Err(ConfigError::at(origin, e.line, None, e.message.clone()));
    }
    let mut sorter = Sorter {
        origin,
        current: Current::Nothing,
        duo: None,
        policy: None,
        proxy: None,
        targets: Vec::new(),
        warnings: Vec::new(),
    };
    for entry in &doc.entries {
        match &entry.kind {
            EntryKind::Section { name, arg } => sorter.section(entry.line, name, arg.as_deref())?,
            EntryKind::Pair { key, value } => sorter.value(entry.line, key, value, false)?,
            EntryKind::Continuation { key, value } => sorter.value(entry.line, key, value, true)?,
        }
    }
    let mut warnings = std::mem::take(&mut sorter.warnings);
    let Some(duo_raw) = &sorter.duo else {
        return Err(ConfigError::at(
            origin,
            None,
            Some("host"),
            "no [duo] section; host, ikey and skey are required",
        ));
    };
    let typed = Typed { origin };
    let policy = match &sorter.policy {
        Some(raw) => typed.policy(raw)?,
        None => PolicySettings::default(),
    };
    let duo = typed.duo(duo_raw)?;
    let proxy = match &sorter.proxy {
        Some(raw) => typed.proxy(raw)?,
        None => ProxySettings::default(),
    };
    let mut targets = Vec::with_capacity(sorter.targets.len());
    for (name, raw) in &sorter.targets {
        let target = typed.target(name.clone(), raw)?;
        if target.allow.is_empty() {
            warnings.push(format!(
                "{}:{}: [target {name}] has no `allow` list, so nobody may use it",
                origin.display(),
                raw.header_line
            ));
        }
        targets.push(target);
    }

    // Policy consequences.
    if policy.force_mfa {
        if let Some((line, _)) = duo_raw.first("groups") {
            if !duo.groups.is_empty() {
                return Err(ConfigError::at(
                    origin,
                    Some(line),
                    Some("groups"),
                    "groups exempts users from Duo, which contradicts force_mfa = yes",
                ));
            }
        }
        for (name, raw) in &sorter.targets {
            if let Some((line, value)) = raw.first("mfa") {
                if parse_bool(value) == Some(false) {
                    return Err(ConfigError::at(
                        origin,
                        Some(line),
                        Some("mfa"),
                        format!("[target {name}] mfa = no contradicts force_mfa = yes"),
                    ));
                }
            }
        }
        if duo.failmode == FailMode::Safe {
            warnings.push("failmode = safe is ignored because force_mfa = yes".to_owned());
        }
    }

    Ok(Config {
        duo,
        policy,
        proxy,
        targets,
        warnings,
    })
}

/// Turns raw sections into typed settings.
struct Typed<'p> {
    origin: &'p Path,
}

impl Typed<'_> {
    /// Reads `key` with `parse`, or gives `default` when the key is absent.
    fn scalar<T>(
        &self,
        raw: &RawSection<'_>,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match raw.first(key) {
            None => Ok(default),
            Some((line, value)) => {
                parse(value).map_err(|m| ConfigError::at(self.origin, Some(line), Some(key), m))
            }
        }
    }

    fn required<T>(
        &self,
        raw: &RawSection<'_>,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match raw.first(key) {
            None => Err(ConfigError::at(
                self.origin,
                Some(raw.header_line),
                Some(key),
                format!("required key is missing from {}", raw.title),
            )),
            Some((line, value)) => {
                parse(value).map_err(|m| ConfigError::at(self.origin, Some(line), Some(key), m))
            }
        }
    }

    fn duo(&self, raw: &RawSection<'_>) -> Result<DuoSettings, ConfigError> {
        let host = self.required(raw, "host", DuoHost::from_str)?;
        let ikey = self.required(raw, "ikey", Ikey::from_str)?;
        let skey = self.required(raw, "skey", parse_skey)?;
        for (key, reason) in [
            (
                "noverify",
                "TLS verification cannot be turned off; use cafile to trust a private CA",
            ),
            (
                "accept_env_factor",
                "lets the client pick the factor through an environment variable",
            ),
            (
                "verified_push",
                "this module uses the standard Duo Push only",
            ),
        ] {
            self.scalar(raw, key, (), |v| match parse_bool(v) {
                Some(false) => Ok(()),
                Some(true) => Err(format!("`{key} = yes` is not supported: {reason}")),
                None => Err(bool_message()),
            })?;
        }
        let mut groups = Vec::new();
        for (line, value) in raw.all("groups") {
            split_groups(value, &mut groups)
                .map_err(|m| ConfigError::at(self.origin, Some(line), Some("groups"), m))?;
        }
        Ok(DuoSettings {
            host,
            ikey,
            skey,
            failmode: self.scalar(raw, "failmode", FailMode::Secure, |v| {
                parse_failmode(v).ok_or_else(|| "must be `safe` or `secure`".to_owned())
            })?,
            signature_version: self.scalar(
                raw,
                "signature_version",
                SignatureVersion::V5,
                SignatureVersion::from_str,
            )?,
            https_timeout: self.scalar(raw, "https_timeout", Duration::from_secs(15), |v| {
                seconds(v, 1, 300)
            })?,
            push_timeout: self.scalar(raw, "push_timeout", Duration::from_secs(75), |v| {
                seconds(v, 10, 600)
            })?,
            pushinfo: self.scalar(raw, "pushinfo", false, boolean)?,
            autopush: self.scalar(raw, "autopush", true, boolean)?,
            prompts: self.scalar(raw, "prompts", 3, |v| match v {
                "1" => Ok(1),
                "2" => Ok(2),
                "3" => Ok(3),
                _ => Err("must be 1, 2 or 3".to_owned()),
            })?,
            groups,
            http_proxy: self.scalar(raw, "http_proxy", None, |v| http_proxy(v).map(Some))?,
            cafile: self.scalar(raw, "cafile", None, |v| absolute_path(v).map(Some))?,
            fallback_local_ip: self.scalar(raw, "fallback_local_ip", false, boolean)?,
            send_gecos: self.scalar(raw, "send_gecos", false, boolean)?,
            gecos_username_pos: self.scalar(raw, "gecos_username_pos", None, |v| {
                number::<u32>(v)
                    .filter(|n| *n >= 1)
                    .map(Some)
                    .ok_or_else(|| "must be a field number, 1 or more".to_owned())
            })?,
            gecos_delim: self.scalar(raw, "gecos_delim", ',', |v| {
                let mut chars = v.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_punctuation() && c != ':' => Ok(c),
                    _ => Err("must be one punctuation character other than `:`".to_owned()),
                }
            })?,
        })
    }

    fn policy(&self, raw: &RawSection<'_>) -> Result<PolicySettings, ConfigError> {
        let defaults = PolicySettings::default();
        Ok(PolicySettings {
            force_mfa: self.scalar(raw, "force_mfa", defaults.force_mfa, boolean)?,
            allow_bypass: self.scalar(raw, "allow_bypass", defaults.allow_bypass, boolean)?,
            shim_group: self.scalar(raw, "shim_group", defaults.shim_group, |v| {
                if is_unix_name(v) {
                    Ok(v.to_owned())
                } else {
                    Err("must be a group name".to_owned())
                }
            })?,
        })
    }

    fn proxy(&self, raw: &RawSection<'_>) -> Result<ProxySettings, ConfigError> {
        let d = ProxySettings::default();
        Ok(ProxySettings {
            name: self.scalar(raw, "name", d.name, |v| {
                if is_dns_name(v) {
                    Ok(Some(v.to_owned()))
                } else {
                    Err("must be a host name (letters, digits, `.` and `-`)".to_owned())
                }
            })?,
            ssh: self.scalar(raw, "ssh", d.ssh, absolute_path)?,
            ssh_config: self.scalar(raw, "ssh_config", d.ssh_config, absolute_path)?,
            known_hosts: self.scalar(raw, "known_hosts", d.known_hosts, absolute_path)?,
            connect_timeout: self.scalar(raw, "connect_timeout", d.connect_timeout, |v| {
                seconds(v, 1, 300)
            })?,
        })
    }

    fn target(&self, name: TargetName, raw: &RawSection<'_>) -> Result<Target, ConfigError> {
        let host = self.required(raw, "host", |v| {
            if is_target_host(v) {
                Ok(v.to_owned())
            } else {
                Err("must be a host name or an IP address".to_owned())
            }
        })?;
        let mut allow = Vec::new();
        for (line, value) in raw.all("allow") {
            for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
                let principal = match word.strip_prefix('@') {
                    Some(group) if is_unix_name(group) => Principal::Group(group.to_owned()),
                    None if is_unix_name(word) => Principal::User(word.to_owned()),
                    _ => {
                        return Err(ConfigError::at(
                            self.origin,
                            Some(line),
                            Some("allow"),
                            format!("`{}` is neither a user name nor @group", escape(word)),
                        ))
                    }
                };
                if !allow.contains(&principal) {
                    allow.push(principal);
                }
            }
        }
        Ok(Target {
            name,
            host,
            port: self.scalar(raw, "port", 22, |v| {
                parse_port(v).ok_or_else(|| "must be a port number from 1 to 65535".to_owned())
            })?,
            login: self.scalar(raw, "login", None, |v| {
                if is_unix_name(v) {
                    Ok(Some(v.to_owned()))
                } else {
                    Err("must be a user name".to_owned())
                }
            })?,
            allow,
            mfa: self.scalar(raw, "mfa", true, boolean)?,
        })
    }
}

fn bool_message() -> String {
    "must be yes/true/on/1 or no/false/off/0".to_owned()
}

fn boolean(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(bool_message)
}

/// Decimal digits only (no sign, no blanks).
fn number<T: FromStr>(v: &str) -> Option<T> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn seconds(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    number::<u64>(v)
        .filter(|n| (min..=max).contains(n))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("must be a number of seconds from {min} to {max}"))
}

fn parse_skey(v: &str) -> Result<Secret, String> {
    // The message gives the length only, never the value.
    if v.len() == 40 && v.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(Secret::new(v.to_owned()))
    } else {
        Err(format!(
            "must be exactly 40 printable characters without blanks (found {} characters)",
            v.chars().count()
        ))
    }
}

fn absolute_path(v: &str) -> Result<PathBuf, String> {
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err("must be an absolute path".to_owned())
    }
}

/// `http://host:port`, optionally with a trailing `/`: no credentials, no https, no path.
fn http_proxy(v: &str) -> Result<String, String> {
    let message = || "must be http://host:port (no https, credentials or path)".to_owned();
    let rest = v
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .and_then(|_| v.get(7..))
        .ok_or_else(message)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(message)?;
    if is_dns_name(host) && parse_port(port).is_some() {
        Ok(v.to_owned())
    } else {
        Err(message())
    }
}

/// duo_unix's splitting of `groups`: words separated by spaces, where `\ ` is a space inside
/// a word. Each word is a comma-separated pattern list (`*`, `?`, `!`).
fn split_groups(value: &str, out: &mut Vec<String>) -> Result<(), String> {
    /// duo_unix's MAX_GROUPS.
    const MAX_GROUPS: usize = 256;
    let mut word = String::new();
    let mut chars = value.chars().peekable();
    let flush = |word: &mut String, out: &mut Vec<String>| -> Result<(), String> {
        if !word.is_empty() {
            if out.len() >= MAX_GROUPS {
                return Err(format!("more than {MAX_GROUPS} group patterns"));
            }
            out.push(std::mem::take(word));
        }
        Ok(())
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            ' ' | '\t' => flush(&mut word, out)?,
            other => word.push(other),
        }
    }
    flush(&mut word, out)
}

/// A user or group name as Linux tools accept them: 1 to 32 of `A-Za-z0-9._-`, not starting
/// with `-` or a digit-only name, optionally ending in `$` (machine accounts).
fn is_unix_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut chars = body.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A target host: an IP literal or a host name of letters, digits, `.`, `-`, `_`, never
/// starting with `-` (it would become an ssh option) or `.`.
fn is_target_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn groups(value: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        split_groups(value, &mut out).map(|()| out)
    }

    #[test]
    fn groups_split_on_blanks_with_backslash_space_escapes() {
        assert_eq!(
            groups("a  b\tc"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            groups("domain\\ users x"),
            Ok(vec!["domain users".into(), "x".into()])
        );
        assert_eq!(groups("a\\b"), Ok(vec!["a\\b".into()]));
        assert_eq!(groups("trailing\\"), Ok(vec!["trailing\\".into()]));
        assert_eq!(groups(""), Ok(vec![]));
        assert!(groups(&"g ".repeat(257)).is_err());
        assert_eq!(groups(&"g ".repeat(256)).map(|g| g.len()), Ok(256));
    }

    #[test]
    fn unix_names_follow_the_usual_rules() {
        for good in ["alice", "_x", "a-b.c_d", "machine$", "A", &"a".repeat(32)] {
            assert!(is_unix_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "1a",
            ".a",
            "a b",
            "a:b",
            "$",
            "a$b",
            &"a".repeat(33),
            "é",
        ] {
            assert!(!is_unix_name(bad), "{bad}");
        }
    }

    #[test]
    fn explicit_fail_open_needs_both_keys_in_their_sections() {
        let scan = |text: &str| explicit_fail_open(&ini::parse(text.as_bytes()).entries);
        assert!(scan("[duo]\nfailmode = safe\n[policy]\nforce_mfa = no\n"));
        assert!(scan("[policy]\nforce_mfa = OFF\n[duo]\nfailmode = SAFE\n"));
        assert!(!scan("[duo]\nfailmode = safe\n"));
        assert!(!scan("[policy]\nforce_mfa = no\n"));
        assert!(!scan(
            "[duo]\nfailmode = safe\n[policy]\nforce_mfa = no\n  yes\n"
        ));
        assert!(!scan(
            "[duo]\nfailmode = safe\nfailmode = secure\n[policy]\nforce_mfa = no\n"
        ));
        assert!(!scan(
            "[duo x]\nfailmode = safe\n[policy]\nforce_mfa = no\n"
        ));
        assert!(!scan(""));
    }

    #[test]
    fn escape_keeps_operator_text_on_one_line() {
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn random_mutations_of_a_valid_file_never_panic() {
        let seed = "[duo]\nhost = api-1.duosecurity.com:443\nikey = DIXXXXXXXXXXXXXXXXXX\n\
                    skey = abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123\ngroups = a !b\n  c\n\
                    [policy]\nforce_mfa = no\n[target t-1]\nhost = ::1\nallow = a @b\nport=22\n";
        let alphabet = b"[]=:;# \t\n\r\\@!-._aZ09\xff\xc3\xa9";
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..3000 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let pos = rng.gen_range(0..=bytes.len());
                let b = alphabet[rng.gen_range(0..alphabet.len())];
                match rng.gen_range(0..3) {
                    0 => bytes.insert(pos, b),
                    1 if pos < bytes.len() => {
                        bytes.remove(pos);
                    }
                    _ if pos < bytes.len() => bytes[pos] = b,
                    _ => {}
                }
            }
            let _ = Config::parse(&bytes, Path::new("/fuzz"));
        }
    }
}
