//! `SSH_ORIGINAL_COMMAND` parsed into a typed [`Command`], as data: it never reaches a shell.
//!
//! Grammar (words are separated by ASCII spaces and tabs):
//!
//! ```text
//! (nothing)                        the menu on a TTY, help otherwise
//! help | list                      reserved words, no arguments
//! connect HOST[:PORT]              raw relay; HOST is a catalog name or a catalog host,
//!                                  an IPv6 literal in brackets: connect [::1]:22
//! [LOGIN@]TARGET[:PORT]            interactive session
//! [LOGIN@]TARGET[:PORT] COMMAND... remote command; the text after TARGET is kept verbatim
//! ```
//!
//! Names are checked here only for their shape (so that `-oProxyCommand=x`, `web01;id`,
//! `$(id)`, `../x` or control characters are refused with a clear message); whether a name is in
//! the catalog and allowed for the user is decided by [`crate::catalog`].

use std::fmt;

/// Longest `SSH_ORIGINAL_COMMAND` accepted, in bytes. Far above what scp, rsync or a typed
/// command need; a bound keeps audit lines and argv sizes reasonable.
pub const MAX_COMMAND_LEN: usize = 32 * 1024;
/// Longest host or target name (a DNS name is at most 253 bytes).
pub const MAX_HOST_LEN: usize = 253;
/// Longest login name (Linux `LOGIN_NAME_MAX` is 256, useradd allows 32).
pub const MAX_LOGIN_LEN: usize = 32;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// No command: the menu (on a TTY) or the help text.
    Menu,
    /// `help`.
    Help,
    /// `list`.
    List,
    /// `connect HOST[:PORT]`: a raw byte relay.
    Connect(ConnectSpec),
    /// `[LOGIN@]TARGET[:PORT]`: an interactive session.
    Session(TargetSpec),
    /// `[LOGIN@]TARGET[:PORT] COMMAND...`: a command on the target.
    Exec {
        /// Where.
        target: TargetSpec,
        /// What, verbatim.
        command: RemoteCommand,
    },
}

/// A target as the user named it for a session or a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// `LOGIN@`, when given.
    pub login: Option<LoginName>,
    /// A catalog name or a catalog host.
    pub host: HostName,
    /// `:PORT`, when given.
    pub port: Option<u16>,
}

/// The argument of `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSpec {
    /// A catalog name or a catalog host.
    pub host: HostName,
    /// `:PORT`, when given (OpenSSH's `%p` always gives it).
    pub port: Option<u16>,
}

/// A host or target name of a safe shape: ASCII letters, digits, `.`, `-`, `_`, and `:` inside
/// an IPv6 literal; starts with a letter or digit (or is an IPv6 literal); at most
/// [`MAX_HOST_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostName(String);

impl HostName {
    /// Checks the shape of `word`.
    pub fn parse(word: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::BadName(Shown::new(word));
        if word.is_empty() || word.len() > MAX_HOST_LEN {
            return Err(bad());
        }
        let first_ok = word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let is_ipv6 = word.contains(':');
        let chars_ok = word.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' || (is_ipv6 && c == ':')
        });
        let start_ok = first_ok || (is_ipv6 && word.starts_with(':'));
        if !start_ok || !chars_ok || word.contains("..") {
            return Err(bad());
        }
        if is_ipv6 && word.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        Ok(Self(word.to_owned()))
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A login name of a safe shape: `[A-Za-z0-9_][A-Za-z0-9._-]*`, at most [`MAX_LOGIN_LEN`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginName(String);

impl LoginName {
    /// Checks the shape of `word`.
    pub fn parse(word: &str) -> Result<Self, ParseError> {
        let first_ok = word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let chars_ok = word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !first_ok || !chars_ok || word.len() > MAX_LOGIN_LEN {
            return Err(ParseError::BadLogin(Shown::new(word)));
        }
        Ok(Self(word.to_owned()))
    }
}

impl AsRef<str> for LoginName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The remote command, exactly as the user's ssh client sent it after the target word.
///
/// It goes to the target's sshd as one argv word after `--` and the host, so the target's
/// shell sees the same string it would see from a plain `ssh target COMMAND`. It never goes
/// through a shell on the proxy. Control characters other than tab and newline are refused.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteCommand(String);

impl RemoteCommand {
    /// The command text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteCommand({:?})", self.0)
    }
}

/// A user-supplied word made safe to print: escaped and cut to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown(String);

impl Shown {
    /// Escapes `word` for a terminal or a log line.
    pub fn new(word: &str) -> Self {
        let mut out = String::new();
        for (i, c) in word.chars().enumerate() {
            if i >= 64 {
                out.push_str("...");
                break;
            }
            out.extend(c.escape_debug());
        }
        Self(out)
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a command was refused. `Display` is the one-line message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Longer than [`MAX_COMMAND_LEN`].
    TooLong,
    /// Not UTF-8.
    NotUtf8,
    /// A control character in the command.
    ControlCharacter,
    /// A target or host name of a bad shape.
    BadName(Shown),
    /// A login of a bad shape.
    BadLogin(Shown),
    /// A port that is not a number in 1..=65535.
    BadPort(Shown),
    /// `connect` without exactly one `HOST[:PORT]`.
    ConnectUsage,
    /// `list` or `help` with arguments.
    UnexpectedArguments(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "command longer than {MAX_COMMAND_LEN} bytes"),
            Self::NotUtf8 => f.write_str("command is not valid UTF-8"),
            Self::ControlCharacter => f.write_str("command contains a control character"),
            Self::BadName(w) => write!(f, "\"{w}\" is not a valid target name"),
            Self::BadLogin(w) => write!(f, "\"{w}\" is not a valid login name"),
            Self::BadPort(w) => write!(f, "\"{w}\" is not a valid port"),
            Self::ConnectUsage => f.write_str("usage: connect HOST[:PORT]"),
            Self::UnexpectedArguments(word) => write!(f, "\"{word}\" takes no arguments"),
        }
    }
}

impl std::error::Error for ParseError {}

fn is_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits off the first word; returns it and the rest with leading separators removed.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(is_separator);
    match s.find(is_separator) {
        Some(at) => {
            let (word, rest) = s.split_at(at);
            (word, rest.trim_start_matches(is_separator))
        }
        None => (s, ""),
    }
}

/// Parses `SSH_ORIGINAL_COMMAND` (`None` when sshd did not set it).
pub fn parse(original: Option<&std::ffi::OsStr>) -> Result<Command, ParseError> {
    let Some(original) = original else {
        return Ok(Command::Menu);
    };
    if original.len() > MAX_COMMAND_LEN {
        return Err(ParseError::TooLong);
    }
    let text = original.to_str().ok_or(ParseError::NotUtf8)?;
    parse_str(text)
}

/// Parses the command text.
pub fn parse_str(text: &str) -> Result<Command, ParseError> {
    if text.len() > MAX_COMMAND_LEN {
        return Err(ParseError::TooLong);
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(ParseError::ControlCharacter);
    }
    let (word, rest) = first_word(text.trim_end_matches(is_separator));
    // A newline is only allowed inside the remote command, never in the target word.
    if word.contains('\n') {
        return Err(ParseError::ControlCharacter);
    }
    match word {
        "" if rest.trim().is_empty() => Ok(Command::Menu),
        "help" => no_arguments(rest, "help", Command::Help),
        "list" => no_arguments(rest, "list", Command::List),
        "connect" => {
            let (spec, extra) = first_word(rest);
            if spec.is_empty() || !extra.is_empty() {
                return Err(ParseError::ConnectUsage);
            }
            if spec.contains('\n') {
                return Err(ParseError::ControlCharacter);
            }
            let (host, port) = split_host_port(spec)?;
            Ok(Command::Connect(ConnectSpec { host, port }))
        }
        _ => {
            let target = parse_target(word)?;
            if rest.trim().is_empty() {
                Ok(Command::Session(target))
            } else {
                Ok(Command::Exec {
                    target,
                    command: RemoteCommand(rest.to_owned()),
                })
            }
        }
    }
}

fn no_arguments(rest: &str, word: &'static str, command: Command) -> Result<Command, ParseError> {
    if rest.trim().is_empty() {
        Ok(command)
    } else {
        Err(ParseError::UnexpectedArguments(word))
    }
}

/// `[LOGIN@]HOST[:PORT]`.
fn parse_target(word: &str) -> Result<TargetSpec, ParseError> {
    let (login, hostport) = match word.split_once('@') {
        Some((login, hostport)) => (Some(LoginName::parse(login)?), hostport),
        None => (None, word),
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(TargetSpec { login, host, port })
}

/// `HOST`, `HOST:PORT`, `[IPV6]`, `[IPV6]:PORT`. A bare IPv6 literal (more than one colon)
/// is taken as a host without a port.
fn split_host_port(word: &str) -> Result<(HostName, Option<u16>), ParseError> {
    if let Some(inner) = word.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| ParseError::BadName(Shown::new(word)))?;
        if !host.contains(':') {
            return Err(ParseError::BadName(Shown::new(word)));
        }
        let host = HostName::parse(host)?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(parse_port(port)?))),
                None => Err(ParseError::BadName(Shown::new(word))),
            },
        };
    }
    if word.matches(':').count() > 1 {
        return Ok((HostName::parse(word)?, None));
    }
    match word.split_once(':') {
        Some((host, port)) => Ok((HostName::parse(host)?, Some(parse_port(port)?))),
        None => Ok((HostName::parse(word)?, None)),
    }
}

fn parse_port(word: &str) -> Result<u16, ParseError> {
    let bad = || ParseError::BadPort(Shown::new(word));
    if word.is_empty() || word.len() > 5 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match word.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> HostName {
        HostName::parse(s).unwrap()
    }

    fn target(login: Option<&str>, h: &str, port: Option<u16>) -> TargetSpec {
        TargetSpec {
            login: login.map(|l| LoginName::parse(l).unwrap()),
            host: host(h),
            port,
        }
    }

    #[test]
    fn no_command_or_blank_command_is_the_menu() {
        assert_eq!(parse(None).unwrap(), Command::Menu);
        assert_eq!(parse_str("").unwrap(), Command::Menu);
        assert_eq!(parse_str("   \t ").unwrap(), Command::Menu);
    }

    #[test]
    fn reserved_words_parse() {
        assert_eq!(parse_str("help").unwrap(), Command::Help);
        assert_eq!(parse_str("list").unwrap(), Command::List);
        assert_eq!(parse_str("  list  ").unwrap(), Command::List);
        assert_eq!(
            parse_str("list web01").unwrap_err(),
            ParseError::UnexpectedArguments("list")
        );
        assert_eq!(
            parse_str("help me").unwrap_err(),
            ParseError::UnexpectedArguments("help")
        );
    }

    #[test]
    fn every_target_form_is_accepted() {
        assert_eq!(
            parse_str("web01").unwrap(),
            Command::Session(target(None, "web01", None))
        );
        assert_eq!(
            parse_str("root@web01").unwrap(),
            Command::Session(target(Some("root"), "web01", None))
        );
        assert_eq!(
            parse_str("web01:2222").unwrap(),
            Command::Session(target(None, "web01", Some(2222)))
        );
        assert_eq!(
            parse_str("deploy@web-01.example.com:22").unwrap(),
            Command::Session(target(Some("deploy"), "web-01.example.com", Some(22)))
        );
        assert_eq!(
            parse_str("10.0.0.5").unwrap(),
            Command::Session(target(None, "10.0.0.5", None))
        );
    }

    #[test]
    fn remote_command_is_kept_verbatim() {
        let parsed = parse_str("web01 ls -l  \"a b\" | wc -l; echo $HOME").unwrap();
        let Command::Exec { target: t, command } = parsed else {
            panic!("not an exec: {parsed:?}");
        };
        assert_eq!(t, target(None, "web01", None));
        assert_eq!(command.as_str(), "ls -l  \"a b\" | wc -l; echo $HOME");
        let parsed = parse_str("web01\tuptime").unwrap();
        assert!(
            matches!(parsed, Command::Exec { ref command, .. } if command.as_str() == "uptime")
        );
        let parsed = parse_str("web01 printf 'a\\n'\necho two").unwrap();
        assert!(
            matches!(parsed, Command::Exec { ref command, .. } if command.as_str() == "printf 'a\\n'\necho two")
        );
    }

    #[test]
    fn connect_forms_parse() {
        assert_eq!(
            parse_str("connect web01:22").unwrap(),
            Command::Connect(ConnectSpec {
                host: host("web01"),
                port: Some(22)
            })
        );
        assert_eq!(
            parse_str("connect web01").unwrap(),
            Command::Connect(ConnectSpec {
                host: host("web01"),
                port: None
            })
        );
        assert_eq!(
            parse_str("connect [::1]:2222").unwrap(),
            Command::Connect(ConnectSpec {
                host: host("::1"),
                port: Some(2222)
            })
        );
        assert_eq!(
            parse_str("connect fe80::1").unwrap(),
            Command::Connect(ConnectSpec {
                host: host("fe80::1"),
                port: None
            })
        );
        assert_eq!(parse_str("connect").unwrap_err(), ParseError::ConnectUsage);
        assert_eq!(
            parse_str("connect web01:22 extra").unwrap_err(),
            ParseError::ConnectUsage
        );
    }

    #[test]
    fn option_injection_is_refused() {
        for bad in [
            "-oProxyCommand=x",
            "-oProxyCommand=sh -c id",
            "connect -oProxyCommand=x",
            "-l root web01",
            "-W web01:22",
        ] {
            assert!(
                matches!(parse_str(bad), Err(ParseError::BadName(_))),
                "{bad} accepted"
            );
        }
        assert!(matches!(
            parse_str("-root@web01"),
            Err(ParseError::BadLogin(_))
        ));
    }

    #[test]
    fn shell_metacharacters_in_the_target_are_refused() {
        for bad in [
            "web01;id",
            "$(id)",
            "`id`",
            "web01|id",
            "web01&",
            "web01>x",
            "web01*",
            "web01'",
            "web01\"",
            "web01\\",
            "../x",
            "web01/x",
            "..",
            ".",
            "web01..example",
            "~root",
            "web01%h",
            "connect web01;id",
            "connect $(id):22",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} accepted");
        }
        // `web01 $(id)` is a remote command for web01 (the target's shell runs it, as with plain
        // ssh), but `$(id)` can never be the target.
        assert!(matches!(
            parse_str("web01 $(id)").unwrap(),
            Command::Exec { .. }
        ));
        assert!(parse_str("$(id) web01").is_err());
    }

    #[test]
    fn bad_logins_and_ports_are_refused() {
        for bad in ["@web01", "ro;ot@web01", "root@@web01", "a@b@web01", "root@"] {
            assert!(parse_str(bad).is_err(), "{bad:?} accepted");
        }
        for bad in [
            "web01:",
            "web01:0",
            "web01:65536",
            "web01:+22",
            "web01:-1",
            "web01:22a",
            "web01:000022",
            "web01:1:2",
            "[::1]x",
            "[web01]:22",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_str(&format!("{}@web01", "a".repeat(33))).unwrap_err(),
            ParseError::BadLogin(Shown::new(&"a".repeat(33)))
        );
    }

    #[test]
    fn control_characters_and_whitespace_in_names_are_refused() {
        for bad in [
            "web\u{1b}[31m01",
            "web01\r",
            "web\u{0}01",
            "web\u{7f}01",
            "web01\nid",
            "connect web01\n:22",
            "web01 ls \u{1b}",
            "\u{a0}web01",
            "wéb01",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn very_long_input_is_refused() {
        assert_eq!(
            parse_str(&"a".repeat(MAX_COMMAND_LEN + 1)).unwrap_err(),
            ParseError::TooLong
        );
        assert!(matches!(
            parse_str(&"a".repeat(MAX_HOST_LEN + 1)),
            Err(ParseError::BadName(_))
        ));
        assert!(parse_str(&"a".repeat(MAX_HOST_LEN)).is_ok());
        let long = std::ffi::OsString::from("x".repeat(MAX_COMMAND_LEN + 1));
        assert_eq!(parse(Some(&long)).unwrap_err(), ParseError::TooLong);
    }

    #[test]
    fn non_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"web\xff01");
        assert_eq!(parse(Some(raw)).unwrap_err(), ParseError::NotUtf8);
    }

    #[test]
    fn refusal_messages_escape_what_the_user_sent() {
        let err = parse_str("web01;\u{7}").unwrap_err();
        assert_eq!(err, ParseError::ControlCharacter);
        let err = parse_str(&format!("x;{}", "y".repeat(200))).unwrap_err();
        let shown = err.to_string();
        assert!(shown.len() < 120, "{shown}");
        assert!(shown.contains("..."));
    }
}
