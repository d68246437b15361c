//! The audit log: typed events, formatted as one line of `key=value` pairs, sent to syslog
//! (facility LOG_AUTHPRIV) over the local datagram socket.
//!
//! Why not libc's syslog(3): `openlog` would rename the host's log identity inside sshd, and
//! calling it would need unsafe code. The message format follows pam_syslog:
//! `<PRI>TAG[PID]: PREFIX: key=value ...`.
//!
//! Every value is escaped ([`escape_value`]): a user name, rhost, target or Duo text can neither
//! forge a second log line nor carry terminal escapes into an operator's terminal. Logging never
//! fails for the caller: a missing or full socket drops the line silently, so a logging problem
//! can neither crash an authentication nor turn into a grant.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::policy::{Decision, DenyReason};

/// syslog facility LOG_AUTHPRIV (10 << 3).
const LOG_AUTHPRIV: u8 = 10 << 3;
/// Longest value kept in a log line, in characters, before escaping.
pub const MAX_VALUE_CHARS: usize = 256;
/// Marker appended (inside the quotes) to a truncated value.
const TRUNCATED_MARKER: &str = "...[truncated]";
/// Longest datagram sent to syslog, in bytes.
const MAX_MESSAGE_BYTES: usize = 8192;
/// How long one send to the syslog socket may block before the line is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// The standard local syslog socket.
pub const DEV_LOG: &str = "/dev/log";
/// The shim's syslog tag.
pub const SHIM_TAG: &str = "duo-proxy-shim";

/// syslog severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// LOG_ERR: the configuration is unusable.
    Err = 3,
    /// LOG_WARNING: a fail-open grant and other things an operator must look at.
    Warning = 4,
    /// LOG_NOTICE: denials.
    Notice = 5,
    /// LOG_INFO: approvals, pushes, connections.
    Info = 6,
    /// LOG_DEBUG: details logged only with `debug`.
    Debug = 7,
}

impl Severity {
    /// The syslog priority value with facility LOG_AUTHPRIV.
    pub fn priority(self) -> u8 {
        LOG_AUTHPRIV | self as u8
    }
}

/// Which of the two pushes an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Logging in to the proxy (the PAM module).
    Vault,
    /// Reaching a target through the shim.
    Target,
}

impl Hop {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vault => "vault",
            Self::Target => "target",
        }
    }
}

/// Who and where, common to most events. All strings are user-controlled and get escaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Who {
    /// The user (Duo username).
    pub user: String,
    /// Client address (PAM_RHOST, SSH_CONNECTION).
    pub from: Option<String>,
    /// Target name, for the target hop.
    pub target: Option<String>,
}

/// What a target connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// An interactive session through the OpenSSH client (menu, `ssh -t proxy TARGET`).
    Session,
    /// A remote command through the OpenSSH client (`ssh proxy TARGET COMMAND`).
    Command,
    /// A raw byte relay (`connect HOST:PORT`).
    Connect,
}

impl ConnectionKind {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Command => "command",
            Self::Connect => "connect",
        }
    }
}

/// How a target connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStatus {
    /// The OpenSSH client exited with this status (255: ssh's own error).
    Exited {
        /// The exit status.
        code: i32,
    },
    /// The OpenSSH client was killed by this signal.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The `connect` relay ended.
    Relayed {
        /// Bytes from the target to the user.
        bytes_in: u64,
        /// Bytes from the user to the target.
        bytes_out: u64,
        /// What ended a direction other than end-of-file, if anything did.
        error: Option<String>,
    },
    /// The connection could not be made or run (ssh cannot be executed, the target cannot be
    /// resolved or reached, the relay cannot start).
    Failed {
        /// What went wrong.
        detail: String,
    },
}

/// An audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// A policy decision. Build it from a [`Decision`] with [`AuditEvent::decision`].
    Decision {
        /// Which hop.
        hop: Hop,
        /// Who.
        who: Who,
        /// `allow`, `deny`, `ignore` or `continue`.
        result: &'static str,
        /// The approval kind (`push`, `bypass`, `fail_open`, ...) or the deny reason.
        reason: &'static str,
        /// Operator detail (a Duo error, status and status_msg).
        detail: Option<String>,
        /// Duo transaction id, when there was a push.
        txid: Option<String>,
    },
    /// A push was sent to the user's phone.
    PushSent {
        /// Which hop.
        hop: Hop,
        /// Who.
        who: Who,
        /// Device id the push went to.
        device: Option<String>,
        /// Duo transaction id.
        txid: String,
    },
    /// Access was granted without Duo because Duo or the config was unavailable
    /// (`failmode = safe`, never under force_mfa).
    FailOpen {
        /// Which hop.
        hop: Hop,
        /// Who.
        who: Who,
        /// What was unavailable.
        cause: String,
    },
    /// A request refused before any push: a malformed command, a target the user may not
    /// reach, no usable Duo username. Nothing was sent to Duo and nothing reached a target.
    Refused {
        /// Which hop.
        hop: Hop,
        /// Who. `target` is left empty: the name the user typed is in `detail`.
        who: Who,
        /// Stable name of the refusal (`bad_command`, `not_in_catalog`, `no_duo_username`, ...).
        reason: &'static str,
        /// Operator detail.
        detail: String,
    },
    /// The user listed the targets they may reach (`list`).
    TargetList {
        /// Who.
        who: Who,
        /// How many targets were listed.
        count: usize,
    },
    /// A target connection started (after an approval).
    ConnectionStart {
        /// Who.
        who: Who,
        /// Session, command or `connect` relay.
        kind: ConnectionKind,
        /// Login on the target; `None` for `connect` (the end-to-end session picks it).
        login: Option<String>,
        /// `host:port` of the target.
        address: String,
        /// Duo transaction id of the target push.
        txid: Option<String>,
    },
    /// A target connection ended. Every `ConnectionStart` is followed by exactly one.
    ConnectionEnd {
        /// Who.
        who: Who,
        /// Session, command or `connect` relay.
        kind: ConnectionKind,
        /// How it ended.
        status: EndStatus,
        /// How long the connection lasted.
        duration: Duration,
    },
    /// The configuration cannot be used.
    ConfigProblem {
        /// The file.
        path: String,
        /// What is wrong (file, line, key).
        detail: String,
    },
    /// A free-form operator message (bad module argument, debug detail).
    Message {
        /// How serious.
        severity: Severity,
        /// The text (escaped like any value).
        text: String,
    },
}

impl AuditEvent {
    /// The event for a policy decision.
    pub fn decision(hop: Hop, who: Who, decision: &Decision) -> Self {
        let (reason, detail, txid) = match decision {
            Decision::Continue => ("preauth_auth", None, None),
            Decision::Ignore => ("user_exempt", None, None),
            Decision::Grant(approval) => (
                approval.kind().as_str(),
                None,
                approval.txid().map(|t| t.0.clone()),
            ),
            Decision::Deny(denial) => (
                denial.reason.as_str(),
                Some(denial.detail.clone()).filter(|d| !d.is_empty()),
                None,
            ),
        };
        Self::Decision {
            hop,
            who,
            result: decision.as_str(),
            reason,
            detail,
            txid,
        }
    }

    /// The event's syslog severity.
    pub fn severity(&self) -> Severity {
        match self {
            Self::Decision { result, reason, .. } => match *result {
                "allow" if *reason == crate::policy::ApprovalKind::FailOpen.as_str() => {
                    Severity::Warning
                }
                "allow" | "ignore" | "continue" => Severity::Info,
                _ if *reason == DenyReason::ConfigUnusable.as_str()
                    || *reason == DenyReason::ConfigContradiction.as_str() =>
                {
                    Severity::Err
                }
                _ => Severity::Notice,
            },
            Self::Refused { .. } => Severity::Notice,
            Self::ConnectionEnd {
                status: EndStatus::Failed { .. },
                ..
            } => Severity::Warning,
            Self::PushSent { .. }
            | Self::TargetList { .. }
            | Self::ConnectionStart { .. }
            | Self::ConnectionEnd { .. } => Severity::Info,
            Self::FailOpen { .. } => Severity::Warning,
            Self::ConfigProblem { .. } => Severity::Err,
            Self::Message { severity, .. } => *severity,
        }
    }

    /// The event as one line of escaped `key=value` pairs (without syslog framing).
    pub fn to_line(&self) -> String {
        let mut line = Line::default();
        match self {
            Self::Decision {
                hop,
                who,
                result,
                reason,
                detail,
                txid,
            } => {
                line.raw("event", "decision");
                line.raw("hop", hop.as_str());
                line.who(who);
                line.raw("result", result);
                line.raw("reason", reason);
                line.opt("txid", txid.as_deref());
                line.opt("detail", detail.as_deref());
            }
            Self::PushSent {
                hop,
                who,
                device,
                txid,
            } => {
                line.raw("event", "push_sent");
                line.raw("hop", hop.as_str());
                line.who(who);
                line.opt("device", device.as_deref());
                line.value("txid", txid);
            }
            Self::FailOpen { hop, who, cause } => {
                line.raw("event", "fail_open");
                line.raw("hop", hop.as_str());
                line.who(who);
                line.value("cause", cause);
            }
            Self::Refused {
                hop,
                who,
                reason,
                detail,
            } => {
                line.raw("event", "refused");
                line.raw("hop", hop.as_str());
                line.who(who);
                line.raw("reason", reason);
                line.value("detail", detail);
            }
            Self::TargetList { who, count } => {
                line.raw("event", "list");
                line.raw("hop", Hop::Target.as_str());
                line.who(who);
                line.raw("targets", &count.to_string());
            }
            Self::ConnectionStart {
                who,
                kind,
                login,
                address,
                txid,
            } => {
                line.raw("event", "connection_start");
                line.raw("hop", Hop::Target.as_str());
                line.who(who);
                line.raw("kind", kind.as_str());
                line.opt("login", login.as_deref());
                line.value("address", address);
                line.opt("txid", txid.as_deref());
            }
            Self::ConnectionEnd {
                who,
                kind,
                status,
                duration,
            } => {
                line.raw("event", "connection_end");
                line.raw("hop", Hop::Target.as_str());
                line.who(who);
                line.raw("kind", kind.as_str());
                let detail = match status {
                    EndStatus::Exited { code } => {
                        line.raw("result", "exit");
                        line.raw("exit_status", &code.to_string());
                        None
                    }
                    EndStatus::Signaled { signal } => {
                        line.raw("result", "signal");
                        line.raw("signal", &signal.to_string());
                        None
                    }
                    EndStatus::Relayed {
                        bytes_in,
                        bytes_out,
                        error,
                    } => {
                        let result = if error.is_some() {
                            "relay_error"
                        } else {
                            "closed"
                        };
                        line.raw("result", result);
                        line.raw("bytes_in", &bytes_in.to_string());
                        line.raw("bytes_out", &bytes_out.to_string());
                        error.as_deref()
                    }
                    EndStatus::Failed { detail } => {
                        line.raw("result", "failed");
                        Some(detail.as_str())
                    }
                };
                line.raw(
                    "duration_ms",
                    &duration.as_millis().min(u128::from(u64::MAX)).to_string(),
                );
                line.opt("detail", detail);
            }
            Self::ConfigProblem { path, detail } => {
                line.raw("event", "config_problem");
                line.value("path", path);
                line.value("detail", detail);
            }
            Self::Message { text, .. } => {
                line.raw("event", "message");
                line.value("msg", text);
            }
        }
        line.0
    }
}

/// Builds a `key=value` line. Keys are static and trusted; values are escaped.
#[derive(Default)]
struct Line(String);

impl Line {
    fn sep(&mut self) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
    }

    /// A value produced by this code (a fixed name or a number); escaped anyway.
    fn raw(&mut self, key: &str, value: &str) {
        self.value(key, value);
    }

    fn value(&mut self, key: &str, value: &str) {
        self.sep();
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&escape_value(value));
    }

    fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.value(key, v);
        }
    }

    fn who(&mut self, who: &Who) {
        self.value("user", &who.user);
        self.opt("from", who.from.as_deref());
        self.opt("target", who.target.as_deref());
    }
}

/// Escapes one log value.
///
/// Printable ASCII other than space, `"`, `\` and `=` passes through unquoted. Otherwise the
/// value is quoted; `"` and `\` become `\"` and `\\`; control characters, DEL and every byte of
/// a non-ASCII character become `\xNN`. Values longer than [`MAX_VALUE_CHARS`] characters are
/// cut and marked. The result is always printable ASCII without newlines.
pub fn escape_value(value: &str) -> String {
    let mut chars = value.chars();
    let kept: String = chars.by_ref().take(MAX_VALUE_CHARS).collect();
    let truncated = chars.next().is_some();

    let mut out = String::with_capacity(kept.len() + 2);
    let mut quote = kept.is_empty() || truncated;
    for c in kept.chars() {
        match c {
            '"' => {
                out.push_str("\\\"");
                quote = true;
            }
            '\\' => {
                out.push_str("\\\\");
                quote = true;
            }
            ' ' | '=' => {
                out.push(c);
                quote = true;
            }
            '!'..='~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
                quote = true;
            }
        }
    }
    if truncated {
        out.push_str(TRUNCATED_MARKER);
    }
    if quote {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// Removes terminal escape sequences and control characters from text meant for a user's
/// terminal (Duo's `status_msg`, an enrollment URL, a device name).
///
/// Drops CSI (`ESC [` and C1 `0x9b`) sequences, string sequences (OSC, DCS, SOS, PM, APC) up to
/// their terminator, two-character escapes, all other C0/C1 controls and DEL, and Unicode
/// bidirectional overrides. Tabs, newlines and carriage returns become spaces.
pub fn sanitize_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string_sequence(&mut chars),
                Some(' '..='/') => {
                    // nF escape: intermediates, then one final byte.
                    while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                    chars.next();
                }
                // Two-character escape (or a lone ESC at the end): drop both.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => {
                skip_string_sequence(&mut chars)
            }
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            '\u{200e}'
            | '\u{200f}'
            | '\u{061c}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    // Parameter bytes 0x30-0x3f, intermediates 0x20-0x2f, final byte 0x40-0x7e. Anything
    // else ends the sequence and is processed normally.
    while chars.next_if(|c| matches!(c, ' '..='?')).is_some() {}
    chars.next_if(|c| matches!(c, '@'..='~'));
}

fn skip_string_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    // Up to BEL, ST (ESC \) or C1 ST; an unterminated sequence swallows the rest.
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' if chars.next_if_eq(&'\\').is_some() => return,
            _ => {}
        }
    }
}

/// Keeps a syslog tag or prefix component to a safe character set.
fn safe_token(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where log lines go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A syslog datagram socket, normally [`DEV_LOG`].
    Syslog {
        /// The socket path.
        path: PathBuf,
    },
    /// Kept in memory (tests): each entry is the full syslog message.
    Memory(Arc<Mutex<Vec<String>>>),
    /// Dropped.
    Discard,
}

/// The audit logger: a syslog tag, an optional pam_syslog-style prefix and a sink.
#[derive(Debug, Clone)]
pub struct Logger {
    tag: String,
    prefix: Option<String>,
    sink: Sink,
}

impl Logger {
    /// A logger with an explicit tag, prefix and sink. The tag and prefix are reduced to a safe
    /// character set.
    pub fn new(tag: &str, prefix: Option<&str>, sink: Sink) -> Self {
        let tag = safe_token(tag, 32);
        Self {
            tag: if tag.is_empty() {
                "pam_duo_push".to_owned()
            } else {
                tag
            },
            prefix: prefix.map(|p| {
                p.chars()
                    .take(96)
                    .map(|c| {
                        if c.is_ascii_graphic() && c != '\\' && c != '"' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            }),
            sink,
        }
    }

    /// The PAM module's logger: tag = this process's name, prefix
    /// `pam_duo_push(<service>:auth)`, sink `socket` (normally [`DEV_LOG`]).
    pub fn for_pam(service: &str, socket: impl Into<PathBuf>) -> Self {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        let prefix = format!("pam_duo_push({}:auth)", safe_token(service, 64));
        Self::new(
            comm.trim_end_matches('\n'),
            Some(&prefix),
            Sink::Syslog {
                path: socket.into(),
            },
        )
    }

    /// The shim's logger: tag `duo-proxy-shim`, no prefix.
    pub fn for_shim(socket: impl Into<PathBuf>) -> Self {
        Self::new(
            SHIM_TAG,
            None,
            Sink::Syslog {
                path: socket.into(),
            },
        )
    }

    /// Logs an event. Never fails for the caller.
    pub fn log(&self, event: &AuditEvent) {
        self.emit(event.severity(), &event.to_line());
    }

    /// Logs a free-form operator message (escaped).
    pub fn message(&self, severity: Severity, text: &str) {
        self.log(&AuditEvent::Message {
            severity,
            text: text.to_owned(),
        });
    }

    /// The full syslog message for a line: `<PRI>TAG[PID]: PREFIX: line`.
    pub fn frame(&self, severity: Severity, line: &str) -> String {
        let mut msg = format!(
            "<{}>{}[{}]: ",
            severity.priority(),
            self.tag,
            std::process::id()
        );
        if let Some(prefix) = &self.prefix {
            msg.push_str(prefix);
            msg.push_str(": ");
        }
        msg.push_str(line);
        if msg.len() > MAX_MESSAGE_BYTES {
            // Everything above is ASCII (escaped), so any byte index is a char boundary; the
            // fallback keeps the line intact rather than panicking if that ever changed.
            let mut cut = MAX_MESSAGE_BYTES;
            while !msg.is_char_boundary(cut) {
                cut = cut.saturating_sub(1);
            }
            msg.truncate(cut);
        }
        msg
    }

    fn emit(&self, severity: Severity, line: &str) {
        let msg = self.frame(severity, line);
        match &self.sink {
            Sink::Syslog { path } => {
                // Errors are deliberately ignored: no syslog daemon, a full queue or a
                // timeout drops the line; it must never change the outcome.
                if let Ok(sock) = UnixDatagram::unbound() {
                    let _ = sock.set_write_timeout(Some(SEND_TIMEOUT));
                    let _ = sock.send_to(msg.as_bytes(), path);
                }
            }
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(msg);
                }
            }
            Sink::Discard => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> Who {
        Who {
            user: user.to_owned(),
            from: Some("192.0.2.7".to_owned()),
            target: None,
        }
    }

    #[test]
    fn plain_values_are_not_quoted() {
        assert_eq!(escape_value("alice"), "alice");
        assert_eq!(escape_value("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn values_with_spaces_quotes_or_equals_are_quoted_and_escaped() {
        assert_eq!(escape_value("a b"), "\"a b\"");
        assert_eq!(escape_value("a=b"), "\"a=b\"");
        assert_eq!(escape_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(escape_value("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(escape_value(""), "\"\"");
    }

    #[test]
    fn a_newline_in_a_user_name_cannot_forge_a_log_line() {
        let forged = "alice\nJan  1 00:00:00 host sshd[1]: Accepted password for root";
        let line = AuditEvent::PushSent {
            hop: Hop::Vault,
            who: who(forged),
            device: None,
            txid: "tx".to_owned(),
        }
        .to_line();
        assert!(!line.contains('\n'));
        assert!(line.contains("user=\"alice\\x0aJan  1"));
        assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "{line}");
    }

    #[test]
    fn terminal_escapes_and_non_ascii_become_hex() {
        assert_eq!(escape_value("\u{1b}[2J"), "\"\\x1b[2J\"");
        assert_eq!(escape_value("jos\u{e9}"), "\"jos\\xc3\\xa9\"");
        assert_eq!(escape_value("a\u{7f}"), "\"a\\x7f\"");
        assert_eq!(escape_value("\u{9b}31m"), "\"\\xc2\\x9b31m\"");
    }

    #[test]
    fn an_injected_key_value_pair_stays_inside_its_value() {
        let line = AuditEvent::Decision {
            hop: Hop::Target,
            who: Who {
                user: "bob".to_owned(),
                from: None,
                target: Some("web01 result=allow".to_owned()),
            },
            result: "deny",
            reason: "push_denied",
            detail: None,
            txid: None,
        }
        .to_line();
        assert_eq!(
            line,
            "event=decision hop=target user=bob target=\"web01 result=allow\" result=deny reason=push_denied"
        );
    }

    #[test]
    fn long_values_are_truncated_with_a_marker() {
        let long = "x".repeat(10_000);
        let escaped = escape_value(&long);
        assert!(escaped.len() < MAX_VALUE_CHARS + 32);
        assert!(escaped.ends_with("...[truncated]\""));
        assert_eq!(
            escape_value(&"y".repeat(MAX_VALUE_CHARS)).len(),
            MAX_VALUE_CHARS
        );
    }

    #[test]
    fn frame_looks_like_pam_syslog_with_authpriv_priority() {
        let logger = Logger::new("sshd", Some("pam_duo_push(sshd:auth)"), Sink::Discard);
        let msg = logger.frame(Severity::Notice, "event=x");
        let expected = format!(
            "<85>sshd[{}]: pam_duo_push(sshd:auth): event=x",
            std::process::id()
        );
        assert_eq!(msg, expected);
        assert_eq!(Severity::Info.priority(), 86);
        assert_eq!(Severity::Err.priority(), 83);
    }

    #[test]
    fn a_hostile_service_name_cannot_break_the_prefix() {
        let logger = Logger::for_pam("sshd): x\n<0>evil", "/nonexistent/dev/log");
        let msg = logger.frame(Severity::Info, "event=x");
        assert!(!msg.contains('\n'));
        assert!(
            msg.contains("pam_duo_push(sshd___x__0_evil:auth): event=x"),
            "{msg}"
        );
    }

    #[test]
    fn memory_sink_records_every_event_with_its_severity() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let logger = Logger::new(SHIM_TAG, None, Sink::Memory(Arc::clone(&lines)));
        logger.log(&AuditEvent::ConfigProblem {
            path: "/etc/duo_push/duo_push.conf".to_owned(),
            detail: "line 3: unknown key `foo`".to_owned(),
        });
        logger.log(&AuditEvent::ConnectionEnd {
            who: Who {
                user: "alice".to_owned(),
                from: None,
                target: Some("web01".to_owned()),
            },
            kind: ConnectionKind::Connect,
            status: EndStatus::Relayed {
                bytes_in: 10,
                bytes_out: 20,
                error: None,
            },
            duration: Duration::from_millis(1500),
        });
        let lines = lines.lock().unwrap();
        let pid = std::process::id();
        assert_eq!(
            lines[0],
            format!(
                "<83>duo-proxy-shim[{pid}]: event=config_problem path=/etc/duo_push/duo_push.conf detail=\"line 3: unknown key `foo`\""
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "<86>duo-proxy-shim[{pid}]: event=connection_end hop=target user=alice target=web01 kind=connect result=closed bytes_in=10 bytes_out=20 duration_ms=1500"
            )
        );
    }

    #[test]
    fn syslog_sink_sends_one_datagram_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("duo-audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let logger = Logger::for_pam("sshd", &path);
        logger.message(Severity::Warning, "bad argument \"foo\"");
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<84>"), "{got}");
        assert!(
            got.ends_with(
                "]: pam_duo_push(sshd:auth): event=message msg=\"bad argument \\\"foo\\\"\""
            ),
            "{got}"
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn decision_events_carry_reason_txid_and_severity() {
        use crate::api::{AuthResult, AuthStatus, DuoError, Txid};
        use crate::policy::{decide, PolicyInput, Situation};

        let forced = PolicyInput {
            force_mfa: true,
            allow_bypass: false,
            fail_open: false,
        };
        let txid = Txid("tx-1".to_owned());
        let allow = AuthStatus {
            result: AuthResult::Allow,
            status: "allow".to_owned(),
            status_msg: "Success. Logging you in...".to_owned(),
        };
        let d = decide(
            &forced,
            Situation::PushFinal {
                txid: &txid,
                status: &allow,
            },
        );
        let event = AuditEvent::decision(Hop::Vault, who("alice"), &d);
        assert_eq!(event.severity(), Severity::Info);
        assert_eq!(
            event.to_line(),
            "event=decision hop=vault user=alice from=192.0.2.7 result=allow reason=push txid=tx-1"
        );

        let e = DuoError::Tls("unknown issuer".to_owned());
        let d = decide(&forced, Situation::DuoUnavailable(&e));
        let event = AuditEvent::decision(Hop::Vault, who("alice"), &d);
        assert_eq!(event.severity(), Severity::Notice);
        assert!(event
            .to_line()
            .ends_with("result=deny reason=duo_unavailable detail=\"TLS failure talking to Duo: unknown issuer\""));

        let safe = PolicyInput {
            force_mfa: false,
            allow_bypass: false,
            fail_open: true,
        };
        let d = decide(&safe, Situation::DuoUnavailable(&e));
        let event = AuditEvent::decision(Hop::Target, who("alice"), &d);
        assert_eq!(event.severity(), Severity::Warning);
        assert!(event.to_line().contains("result=allow reason=fail_open"));

        let d = decide(
            &forced,
            Situation::ConfigUnusable {
                fail_open_allowed: true,
            },
        );
        let event = AuditEvent::decision(Hop::Vault, who("alice"), &d);
        assert_eq!(event.severity(), Severity::Err);
    }

    #[test]
    fn a_refusal_is_a_typed_notice_with_its_reason_and_detail() {
        let event = AuditEvent::Refused {
            hop: Hop::Target,
            who: who("alice"),
            reason: "bad_command",
            detail: "\"web01;id\" is not a valid target name; command=web01;id".to_owned(),
        };
        assert_eq!(event.severity(), Severity::Notice);
        assert_eq!(
            event.to_line(),
            "event=refused hop=target user=alice from=192.0.2.7 reason=bad_command \
             detail=\"\\\"web01;id\\\" is not a valid target name; command=web01;id\""
        );
        let list = AuditEvent::TargetList {
            who: who("alice"),
            count: 3,
        };
        assert_eq!(list.severity(), Severity::Info);
        assert_eq!(
            list.to_line(),
            "event=list hop=target user=alice from=192.0.2.7 targets=3"
        );
    }

    #[test]
    fn connection_lines_carry_kind_login_and_how_the_connection_ended() {
        let web01 = Who {
            target: Some("web01".to_owned()),
            ..who("alice")
        };
        let start = AuditEvent::ConnectionStart {
            who: web01.clone(),
            kind: ConnectionKind::Command,
            login: Some("deploy".to_owned()),
            address: "10.0.0.5:22".to_owned(),
            txid: Some("tx-9".to_owned()),
        };
        assert_eq!(
            start.to_line(),
            "event=connection_start hop=target user=alice from=192.0.2.7 target=web01 \
             kind=command login=deploy address=10.0.0.5:22 txid=tx-9"
        );
        let connect = AuditEvent::ConnectionStart {
            who: web01.clone(),
            kind: ConnectionKind::Connect,
            login: None,
            address: "10.0.0.5:22".to_owned(),
            txid: None,
        };
        assert!(connect.to_line().contains(" kind=connect address="));

        let end = |kind, status| AuditEvent::ConnectionEnd {
            who: web01.clone(),
            kind,
            status,
            duration: Duration::from_millis(2500),
        };
        let prefix = "event=connection_end hop=target user=alice from=192.0.2.7 target=web01";
        let exited = end(ConnectionKind::Session, EndStatus::Exited { code: 7 });
        assert_eq!(exited.severity(), Severity::Info);
        assert_eq!(
            exited.to_line(),
            format!("{prefix} kind=session result=exit exit_status=7 duration_ms=2500")
        );
        let signaled = end(ConnectionKind::Command, EndStatus::Signaled { signal: 9 });
        assert_eq!(
            signaled.to_line(),
            format!("{prefix} kind=command result=signal signal=9 duration_ms=2500")
        );
        let relay_error = end(
            ConnectionKind::Connect,
            EndStatus::Relayed {
                bytes_in: 5,
                bytes_out: 6,
                error: Some("to target: broken pipe".to_owned()),
            },
        );
        assert_eq!(
            relay_error.to_line(),
            format!(
                "{prefix} kind=connect result=relay_error bytes_in=5 bytes_out=6 \
                 duration_ms=2500 detail=\"to target: broken pipe\""
            )
        );
        let failed = end(
            ConnectionKind::Connect,
            EndStatus::Failed {
                detail: "cannot connect to the target: connection refused".to_owned(),
            },
        );
        assert_eq!(failed.severity(), Severity::Warning);
        assert!(failed
            .to_line()
            .ends_with("result=failed duration_ms=2500 detail=\"cannot connect to the target: connection refused\""));
    }

    #[test]
    fn a_missing_syslog_socket_is_silently_ignored() {
        let logger = Logger::for_shim("/nonexistent/duo-push-test/log");
        logger.message(Severity::Err, "nobody listens");
    }

    #[test]
    fn sanitize_strips_csi_osc_and_controls() {
        assert_eq!(sanitize_for_terminal("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(sanitize_for_terminal("a\u{1b}]0;pwned title\u{7}b"), "ab");
        assert_eq!(
            sanitize_for_terminal("a\u{1b}]8;;http://evil\u{1b}\\link\u{1b}]8;;\u{1b}\\b"),
            "alinkb"
        );
        assert_eq!(sanitize_for_terminal("x\u{9b}2Jy"), "xy");
        assert_eq!(sanitize_for_terminal("bell\u{7}\u{8}\u{0}\u{7f}!"), "bell!");
        assert_eq!(sanitize_for_terminal("line1\nline2\r\tz"), "line1 line2  z");
        assert_eq!(sanitize_for_terminal("\u{1b}Pq#0;2;0;0;0\u{1b}\\ok"), "ok");
        assert_eq!(sanitize_for_terminal("\u{1b}(Bok\u{1b}c"), "ok");
        assert_eq!(
            sanitize_for_terminal("unterminated\u{1b}]52;c;AAAA"),
            "unterminated"
        );
        assert_eq!(sanitize_for_terminal("trailing\u{1b}"), "trailing");
    }

    #[test]
    fn sanitize_removes_bidi_overrides_but_keeps_ordinary_unicode() {
        assert_eq!(
            sanitize_for_terminal("caf\u{e9} \u{202e}txt.exe"),
            "caf\u{e9} txt.exe"
        );
        assert_eq!(
            sanitize_for_terminal("Zugriff verweigert \u{2014} ok"),
            "Zugriff verweigert \u{2014} ok"
        );
    }

    #[test]
    fn sanitized_output_never_contains_control_characters() {
        let mut hostile = String::new();
        for c in (0u32..0x200).filter_map(char::from_u32) {
            hostile.push(c);
            hostile.push('a');
        }
        let clean = sanitize_for_terminal(&hostile);
        assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
    }
}
