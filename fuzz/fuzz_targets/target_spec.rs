//! The shim's `SSH_ORIGINAL_COMMAND` parser (`proxy_shim::command::parse`) and the catalog
//! lookup that follows it. Never panics; every accepted name (target/host, login) is non-empty,
//! holds no whitespace, control or shell metacharacter, and does not start with '-' (so it can
//! never become an ssh option); a port is never 0; a resolved target is one the user is on the
//! allow list of, and on the requested port.
//!
//! Input: the raw bytes of `SSH_ORIGINAL_COMMAND` (not necessarily UTF-8).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use duo_push_common::config::{Config, Target};
use libfuzzer_sys::fuzz_target;
use proxy_shim::catalog::{self, Invoker};
use proxy_shim::command::{self, Command, ParseError, MAX_COMMAND_LEN};

/// A catalog with names that overlap by host, port and allow list, like the unit tests'.
const CATALOG: &str = "\
[duo]
host = api-12345678.duosecurity.com
ikey = DIXXXXXXXXXXXXXXXXXX
skey = deadbeefdeadbeefdeadbeefdeadbeefdeadbeef

[target web01]
host = 10.0.0.5
login = deploy
allow = alice @ops

[target web01-alt]
host = 10.0.0.5
port = 2222
allow = alice

[target db01]
host = db01.internal
allow = @dba

[target twin-a]
host = 10.0.0.7
allow = carol

[target twin-b]
host = 10.0.0.7
allow = carol alice

[target v6]
host = ::1
allow = alice
";

fn catalog() -> &'static [Target] {
    static TARGETS: OnceLock<Vec<Target>> = OnceLock::new();
    TARGETS.get_or_init(
        || match Config::parse(CATALOG.as_bytes(), Path::new("fuzz.conf")) {
            Ok(config) => config.targets,
            Err(e) => panic!("the fuzz catalog does not parse: {e}"),
        },
    )
}

/// A word that is safe to put in an argv or a log line as it is.
fn assert_safe_word(what: &str, word: &str) {
    assert!(!word.is_empty(), "empty {what} accepted");
    assert!(!word.starts_with('-'), "{what} {word:?} starts with '-'");
    for c in word.chars() {
        assert!(
            !c.is_whitespace() && !c.is_control(),
            "{what} {word:?} holds whitespace or a control character"
        );
        assert!(
            !"`$;&|<>()[]{}*?!~'\"\\#=%^,/@".contains(c),
            "{what} {word:?} holds the shell metacharacter {c:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = command::parse(Some(OsStr::from_bytes(data)));
    if data.len() > MAX_COMMAND_LEN {
        assert_eq!(parsed, Err(ParseError::TooLong));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // The OsStr and &str entry points agree.
        assert_eq!(parsed, command::parse_str(text));
    } else if data.len() <= MAX_COMMAND_LEN {
        assert_eq!(parsed, Err(ParseError::NotUtf8));
    }
    let Ok(cmd) = parsed else { return };
    let user = Invoker {
        name: "alice".to_owned(),
        groups: vec!["alice".to_owned(), "staff".to_owned()],
    };
    match &cmd {
        Command::Menu | Command::Help | Command::List => {}
        Command::Connect(spec) => {
            assert_safe_word("host", spec.host.as_ref());
            assert_ne!(spec.port, Some(0));
            if let Ok(target) = catalog::resolve_connect(catalog(), spec, &user) {
                assert!(
                    target.allows(&user.name, &user.groups),
                    "{cmd:?} reached {target:?}"
                );
                if let Some(port) = spec.port {
                    assert_eq!(port, target.port, "{cmd:?} reached {target:?}");
                }
            }
        }
        Command::Session(spec) | Command::Exec { target: spec, .. } => {
            assert_safe_word("host", spec.host.as_ref());
            if let Some(login) = &spec.login {
                assert_safe_word("login", login.as_ref());
            }
            assert_ne!(spec.port, Some(0));
            if let Command::Exec { command, .. } = &cmd {
                let text = command.as_str();
                assert!(!text.trim().is_empty(), "empty remote command accepted");
                assert!(
                    !text
                        .chars()
                        .any(|c| c.is_control() && c != '\t' && c != '\n'),
                    "control character in remote command {text:?}"
                );
            }
            if let Ok(resolved) = catalog::resolve(catalog(), spec, &user) {
                let target = resolved.target;
                assert!(
                    target.allows(&user.name, &user.groups),
                    "{cmd:?} reached {target:?}"
                );
                if let Some(port) = spec.port {
                    assert_eq!(port, target.port, "{cmd:?} reached {target:?}");
                }
                if let Some(login) = &spec.login {
                    assert_eq!(login.as_ref(), resolved.login);
                }
                assert_safe_word("login", resolved.login);
            }
        }
    }
});
