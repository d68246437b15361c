//! The INI reader (`duo_push_common::ini::parse`) and the typed configuration
//! (`Config::parse`). Never panic, whatever the bytes. Also checked:
//! - entry and error line numbers lie within the file;
//! - the skey value never shows up in an error message, a warning or the `Debug` of the result;
//! - accepted timeouts and prompts lie within their documented ranges;
//! - every accepted target's name, host and login are safe argv words for ssh (non-empty, no
//!   whitespace or control character, no leading '-'), its port is not 0;
//! - parsing is deterministic.
//!
//! Input: the configuration file's bytes.
#![no_main]

use std::path::Path;

use duo_push_common::config::Config;
use duo_push_common::ini::{self, EntryKind};
use libfuzzer_sys::fuzz_target;

fn assert_argv_safe(what: &str, word: &str) {
    assert!(!word.is_empty(), "empty {what} accepted");
    assert!(!word.starts_with('-'), "{what} {word:?} starts with '-'");
    assert!(
        !word.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{what} {word:?} holds whitespace or a control character"
    );
}

fuzz_target!(|data: &[u8]| {
    let doc = ini::parse(data);
    // Upper bound on line numbers: one per LF, plus the last line.
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut skey: Option<String> = None;
    let mut previous_line = 0;
    for entry in &doc.entries {
        assert!(
            entry.line >= 1 && entry.line <= lines,
            "entry line {} of {lines}",
            entry.line
        );
        assert!(
            entry.line > previous_line,
            "entries out of order or duplicated"
        );
        previous_line = entry.line;
        match &entry.kind {
            EntryKind::Section { name, .. } => assert!(!name.is_empty(), "empty section name"),
            EntryKind::Pair { key, value } => {
                assert!(!key.is_empty(), "empty key accepted");
                if key == "skey" {
                    skey = Some(value.clone());
                }
            }
            EntryKind::Continuation { key, .. } => assert!(!key.is_empty()),
        }
    }
    for error in &doc.errors {
        if let Some(line) = error.line {
            assert!(line >= 1 && line <= lines, "error line {line} of {lines}");
        }
    }

    let origin = Path::new("fuzz.conf");
    let result = Config::parse(data, origin);
    // A secret worth checking for: long enough not to appear by chance inside a message, and
    // written only once in the file (so no other key can legitimately echo the same text).
    let secret = skey.filter(|s| {
        s.len() >= 12 && data.windows(s.len()).filter(|w| *w == s.as_bytes()).count() == 1
    });
    match &result {
        Ok(config) => {
            let shown = format!("{config:?}");
            for warning in &config.warnings {
                if let Some(s) = &secret {
                    assert!(!warning.contains(s.as_str()), "skey in warning {warning:?}");
                }
            }
            if let Some(s) = &secret {
                assert!(!shown.contains(s.as_str()), "skey in Debug of Config");
            }
            // The documented ranges; the client and the flow add these to `Instant::now()`.
            let secs = |d: std::time::Duration| d.as_secs_f64();
            assert!(
                (1.0..=300.0).contains(&secs(config.duo.https_timeout)),
                "https_timeout"
            );
            assert!(
                (10.0..=600.0).contains(&secs(config.duo.push_timeout)),
                "push_timeout"
            );
            assert!(
                (1.0..=300.0).contains(&secs(config.proxy.connect_timeout)),
                "connect_timeout"
            );
            assert!((1..=3).contains(&config.duo.prompts), "prompts");
            for target in &config.targets {
                assert_argv_safe("target name", target.name.as_str());
                assert_argv_safe("target host", &target.host);
                if let Some(login) = &target.login {
                    assert_argv_safe("target login", login);
                }
                assert_ne!(target.port, 0, "port 0 accepted for {}", target.name);
            }
        }
        Err(error) => {
            assert!(
                !error.fail_open_allowed,
                "Config::parse errors never allow failing open"
            );
            if let Some(s) = &secret {
                let shown = format!("{error} {error:?}");
                assert!(!shown.contains(s.as_str()), "skey in error {error}");
            }
        }
    }
    if std::env::var_os("FUZZ_SHOW").is_some() {
        // For triaging seeds and crashes: `FUZZ_SHOW=1 scripts/fuzz --show ini_config FILE`.
        match &result {
            Ok(c) => eprintln!("ok: {} targets, warnings {:?}", c.targets.len(), c.warnings),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    // Deterministic: the same bytes give the same answer.
    let again = Config::parse(data, origin);
    assert_eq!(format!("{result:?}"), format!("{again:?}"));
});
