//! Typed configuration rules: every key, range, default, rejection and policy consequence.
#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use std::path::Path;
use std::time::Duration;

use duo_push_common::config::{Config, ConfigError, FailMode, Principal, TargetName};
use duo_push_common::signing::SignatureVersion;

const ORIGIN: &str = "/etc/duo_push/duo_push.conf";
const IKEY: &str = "DIXXXXXXXXXXXXXXXXXX";
const SKEY: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123";

fn base() -> String {
    format!("[duo]\nhost = api-12345678.duosecurity.com\nikey = {IKEY}\nskey = {SKEY}\n")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text.as_bytes(), Path::new(ORIGIN))
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("unexpected error: {e}\n--- in ---\n{text}"),
    }
}

fn error(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}\n--- in ---\n{text}"),
        Err(e) => e,
    }
}

/// `base()` plus one line under [duo]; returns the typed result.
fn with_duo(line: &str) -> Result<Config, ConfigError> {
    parse(&format!("{}{line}\n", base()))
}

/// Asserts that `line` under [duo] fails on line 5 naming `key`.
fn duo_rejects(line: &str, key: &str) -> ConfigError {
    match with_duo(line) {
        Ok(_) => panic!("`{line}` was accepted"),
        Err(e) => {
            assert_eq!(e.line, Some(5), "{e}");
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(!e.fail_open_allowed);
            e
        }
    }
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let c = ok(&base());
    assert_eq!(c.duo.host.authority(), "api-12345678.duosecurity.com");
    assert_eq!(c.duo.ikey.as_str(), IKEY);
    assert_eq!(c.duo.skey.expose_str(), SKEY);
    assert_eq!(c.duo.failmode, FailMode::Secure);
    assert_eq!(c.duo.signature_version, SignatureVersion::V5);
    assert_eq!(c.duo.https_timeout, Duration::from_secs(15));
    assert_eq!(c.duo.push_timeout, Duration::from_secs(75));
    assert!(!c.duo.pushinfo);
    assert!(c.duo.autopush);
    assert_eq!(c.duo.prompts, 3);
    assert!(c.duo.groups.is_empty());
    assert_eq!(c.duo.http_proxy, None);
    assert_eq!(c.duo.cafile, None);
    assert!(!c.duo.fallback_local_ip);
    assert!(!c.duo.send_gecos);
    assert_eq!(c.duo.gecos_username_pos, None);
    assert_eq!(c.duo.gecos_delim, ',');
    assert!(c.policy.force_mfa);
    assert!(!c.policy.allow_bypass);
    assert_eq!(c.policy.shim_group, "duo-push");
    assert_eq!(c.proxy.name, None);
    assert_eq!(c.proxy.ssh, Path::new("/usr/bin/ssh"));
    assert_eq!(c.proxy.ssh_config, Path::new("/etc/duo_push/ssh_config"));
    assert_eq!(c.proxy.known_hosts, Path::new("/etc/duo_push/known_hosts"));
    assert_eq!(c.proxy.connect_timeout, Duration::from_secs(10));
    assert!(c.targets.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_key_is_read() {
    let text = format!(
        "{}failmode = secure\nsignature_version = 2-sha1\nhttps_timeout = 30\npush_timeout = 120\n\
         pushinfo = yes\nautopush = no\nprompts = 2\nhttp_proxy = http://proxy.example:3128\n\
         cafile = /etc/duo_push/ca.pem\nfallback_local_ip = yes\nsend_gecos = yes\n\
         gecos_username_pos = 2\ngecos_delim = /\nnoverify = no\naccept_env_factor = no\n\
         verified_push = no\n\
         [policy]\nforce_mfa = yes\nallow_bypass = yes\nshim_group = jump\n\
         [proxy]\nname = jump.example.com\nssh = /opt/ssh/bin/ssh\nssh_config = /etc/x/ssh_config\n\
         known_hosts = /etc/x/known_hosts\nconnect_timeout = 5\n\
         [target web01]\nhost = 10.0.0.5\nport = 2222\nlogin = deploy\nallow = alice @ops\nmfa = yes\n",
        base()
    );
    let c = ok(&text);
    assert_eq!(c.duo.signature_version, SignatureVersion::V2Sha1);
    assert_eq!(c.duo.https_timeout, Duration::from_secs(30));
    assert_eq!(c.duo.push_timeout, Duration::from_secs(120));
    assert!(c.duo.pushinfo);
    assert!(!c.duo.autopush);
    assert_eq!(c.duo.prompts, 2);
    assert_eq!(
        c.duo.http_proxy.as_deref(),
        Some("http://proxy.example:3128")
    );
    assert_eq!(
        c.duo.cafile.as_deref(),
        Some(Path::new("/etc/duo_push/ca.pem"))
    );
    assert!(c.duo.fallback_local_ip);
    assert!(c.duo.send_gecos);
    assert_eq!(c.duo.gecos_username_pos, Some(2));
    assert_eq!(c.duo.gecos_delim, '/');
    assert!(c.policy.allow_bypass);
    assert_eq!(c.policy.shim_group, "jump");
    assert_eq!(c.proxy.name.as_deref(), Some("jump.example.com"));
    assert_eq!(
        c.proxy.effective_name().ok().as_deref(),
        Some("jump.example.com")
    );
    assert_eq!(c.proxy.ssh, Path::new("/opt/ssh/bin/ssh"));
    assert_eq!(c.proxy.ssh_config, Path::new("/etc/x/ssh_config"));
    assert_eq!(c.proxy.known_hosts, Path::new("/etc/x/known_hosts"));
    assert_eq!(c.proxy.connect_timeout, Duration::from_secs(5));
    let t = c.target("web01").cloned();
    let Some(t) = t else {
        panic!("no target web01")
    };
    assert_eq!(t.name.as_str(), "web01");
    assert_eq!(t.host, "10.0.0.5");
    assert_eq!(t.port, 2222);
    assert_eq!(t.login.as_deref(), Some("deploy"));
    assert_eq!(
        t.allow,
        vec![
            Principal::User("alice".into()),
            Principal::Group("ops".into())
        ]
    );
    assert!(t.mfa);
    assert_eq!(t.address(), "10.0.0.5:2222");
    assert!(c.target("web02").is_none());
    assert!(c.target("WEB01").is_none());
}

#[test]
fn display_names_file_line_and_key() {
    let e = duo_rejects("https_timeout = 0", "https_timeout");
    assert_eq!(
        e.to_string(),
        "/etc/duo_push/duo_push.conf:5: key `https_timeout`: must be a number of seconds from 1 to 300"
    );
}

#[test]
fn host_is_lowercased_and_may_carry_a_port() {
    let c = ok("[duo]\nhost = API-ABC.DuoSecurity.com\nikey = DIXXXXXXXXXXXXXXXXXX\nskey = abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123\n");
    assert_eq!(c.duo.host.authority(), "api-abc.duosecurity.com");
    assert_eq!(c.duo.host.host_without_port(), "api-abc.duosecurity.com");
    assert_eq!(c.duo.host.port(), None);
    let c = ok(&base().replace("api-12345678.duosecurity.com", "127.0.0.1:8443"));
    assert_eq!(c.duo.host.authority(), "127.0.0.1:8443");
    assert_eq!(c.duo.host.host_without_port(), "127.0.0.1");
    assert_eq!(c.duo.host.port(), Some(8443));
    assert_eq!(c.duo.host.to_string(), "127.0.0.1:8443");
    for bad in [
        "",
        "https://api-x.duosecurity.com",
        "api-x.duosecurity.com/",
        "api x",
        "-api",
        ".api",
        "api:0",
        "api:65536",
        "api:",
        "api:+1",
        "api:1:2",
        "api_x.duosecurity.com",
    ] {
        let e = error(&base().replace("api-12345678.duosecurity.com", bad));
        assert_eq!(e.key.as_deref(), Some("host"), "{bad}: {e}");
        assert_eq!(e.line, Some(2), "{bad}: {e}");
    }
}

#[test]
fn ikey_must_be_20_uppercase_letters_or_digits() {
    for bad in [
        "DIXXXXXXXXXXXXXXXXX",
        "DIXXXXXXXXXXXXXXXXXXX",
        "dixxxxxxxxxxxxxxxxxx",
        "DIXXXXXXXXXXXXXXXXX-",
    ] {
        let e = error(&base().replace(IKEY, bad));
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("ikey")),
            "{bad}: {e}"
        );
    }
    let c = ok(&base());
    assert_eq!(c.duo.ikey.to_string(), IKEY);
}

#[test]
fn skey_must_be_40_characters_and_is_never_shown() {
    let short = "s3cr3tPASSWORDs3cr3tPASSWORD";
    let e = error(&base().replace(SKEY, short));
    assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("skey")));
    assert!(!e.to_string().contains(short), "{e}");
    assert!(e.message.contains("28"), "{e}");
    let e = error(&base().replace(SKEY, &format!("{SKEY}x")));
    assert_eq!(e.key.as_deref(), Some("skey"));
    let e = error(&base().replace(SKEY, "abcdefghijklmnopqrst vwxyzABCDEFGHIJ0123"));
    assert_eq!(e.key.as_deref(), Some("skey"));

    let c = ok(&base());
    let debug = format!("{c:?}");
    assert!(!debug.contains(SKEY), "{debug}");
    assert!(debug.contains("<secret>"));
}

#[test]
fn missing_required_keys_are_named() {
    for key in ["host", "ikey", "skey"] {
        let text: String = base()
            .lines()
            .filter(|l| !l.starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(text.lines().count(), 3, "{text}");
        let e = error(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("required"), "{e}");
    }
    let e = error("[policy]\nforce_mfa = yes\n");
    assert_eq!(e.key.as_deref(), Some("host"));
    assert_eq!(e.line, None);
    let e = error("");
    assert!(e.message.contains("[duo]"), "{e}");
}

#[test]
fn unknown_keys_and_sections_are_errors() {
    let e = duo_rejects("dev_fakeduo = yes", "dev_fakeduo");
    assert!(e.message.contains("unknown key"), "{e}");
    duo_rejects("motd = yes", "motd");
    duo_rejects("Host = x", "Host"); // keys are case-sensitive
    duo_rejects("force_mfa = yes", "force_mfa"); // right key, wrong section

    let e = error(&format!("{}[policy]\nfailmode = safe\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("failmode")));
    let e = error(&format!("{}[proxy]\nhostname = x\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("hostname")));
    let e = error(&format!("{}[target a]\nhost = h\nuser = x\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(7), Some("user")));

    let e = error(&format!("{}[global]\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(5), None));
    assert!(e.message.contains("unknown section"), "{e}");
    let e = error(&format!("{}[Duo]\n", base()));
    assert_eq!(e.line, Some(5));

    let e = error(&format!("host = x\n{}", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("host")));
    assert!(e.message.contains("outside"), "{e}");
}

#[test]
fn duplicate_keys_name_both_lines() {
    let e = duo_rejects("host = api-other.duosecurity.com", "host");
    assert!(e.message.contains("line 2"), "{e}");
    let e = error(&format!(
        "{}[policy]\nforce_mfa = yes\nforce_mfa = yes\n",
        base()
    ));
    assert_eq!(e.line, Some(7));
    assert!(e.message.contains("line 6"), "{e}");
}

#[test]
fn duplicate_sections_are_errors() {
    let e = error(&format!("{}[duo]\n", base()));
    assert_eq!(e.line, Some(5));
    assert!(e.message.contains("line 1"), "{e}");
    let e = error(&format!("{}[policy]\n[proxy]\n[policy]\n", base()));
    assert_eq!(e.line, Some(7));
    let e = error(&format!("{}[proxy]\n[proxy]\n", base()));
    assert_eq!(e.line, Some(6));
    let e = error(&format!(
        "{}[target web01]\nhost = a\n[target web01]\nhost = b\n",
        base()
    ));
    assert_eq!(e.line, Some(7));
    assert!(e.message.contains("line 5"), "{e}");
    // Target names are case-sensitive: these are two targets.
    let c = ok(&format!(
        "{}[target web]\nhost = a\n[target WEB]\nhost = b\n",
        base()
    ));
    assert_eq!(c.targets.len(), 2);
}

#[test]
fn section_names_and_arguments_are_checked() {
    let e = error(&format!("{}[target]\nhost = a\n", base()));
    assert_eq!(e.line, Some(5));
    let e = error(&format!("{}[duo extra]\n", base()));
    assert_eq!(e.line, Some(5));
    let e = error(&format!("{}[policy x]\n", base()));
    assert_eq!(e.line, Some(5));
    for bad in ["-web", ".web", "web 01", "web/01", "web;01", "wéb"] {
        let e = error(&format!("{}[target {bad}]\nhost = a\n", base()));
        assert_eq!(e.line, Some(5), "{bad}: {e}");
    }
    let long = "a".repeat(64);
    assert_eq!(
        error(&format!("{}[target {long}]\nhost = a\n", base())).line,
        Some(5)
    );
    let max = "a".repeat(63);
    assert_eq!(
        ok(&format!("{}[target {max}]\nhost = a\n", base()))
            .targets
            .len(),
        1
    );
}

#[test]
fn target_names_only_come_from_valid_text() {
    for good in ["web01", "a", "A.b_c-d", "0", &"z".repeat(63)] {
        let name: Result<TargetName, _> = good.parse();
        assert_eq!(name.map(|n| n.to_string()).ok().as_deref(), Some(good));
    }
    for bad in ["", "-a", "_a", ".a", "a b", "a\n", "a$", &"z".repeat(64)] {
        assert!(bad.parse::<TargetName>().is_err(), "{bad:?}");
    }
    let name: Result<TargetName, _> = "web01".parse();
    assert_eq!(name.as_ref().map(AsRef::as_ref).ok(), Some("web01"));
}

#[test]
fn booleans_take_the_four_spellings_each_way() {
    for (text, expected) in [
        ("yes", true),
        ("true", true),
        ("on", true),
        ("1", true),
        ("YES", true),
        ("On", true),
        ("no", false),
        ("false", false),
        ("off", false),
        ("0", false),
        ("NO", false),
        ("False", false),
    ] {
        let c = with_duo(&format!("pushinfo = {text}")).map(|c| c.duo.pushinfo);
        assert_eq!(c.ok(), Some(expected), "{text}");
    }
    for bad in ["", "y", "n", "2", "yes please", "enabled", "none"] {
        let e = duo_rejects(&format!("autopush = {bad}"), "autopush");
        assert!(e.message.contains("yes"), "{e}");
    }
}

#[test]
fn number_ranges_are_enforced() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "https_timeout",
            &["1", "300", "15"],
            &["0", "301", "-1", "+5", "1.5", "abc", "", " 1 0"],
        ),
        ("push_timeout", &["10", "600"], &["9", "601", "0"]),
        ("prompts", &["1", "2", "3"], &["0", "4", "-1", "01"]),
        (
            "gecos_username_pos",
            &["1", "7", "4294967295"],
            &["0", "-1", "4294967296", "x"],
        ),
    ];
    for (key, good, bad) in cases {
        for v in *good {
            assert!(with_duo(&format!("{key} = {v}")).is_ok(), "{key} = {v}");
        }
        for v in *bad {
            duo_rejects(&format!("{key} = {v}"), key);
        }
    }
    let proxy = |v: &str| parse(&format!("{}[proxy]\nconnect_timeout = {v}\n", base()));
    assert_eq!(
        proxy("1").ok().map(|c| c.proxy.connect_timeout),
        Some(Duration::from_secs(1))
    );
    assert!(proxy("300").is_ok());
    for bad in ["0", "301", "ten"] {
        let e = proxy(bad).err();
        assert_eq!(
            e.and_then(|e| e.key),
            Some("connect_timeout".into()),
            "{bad}"
        );
    }
    let port = |v: &str| parse(&format!("{}[target t]\nhost = h\nport = {v}\n", base()));
    assert_eq!(
        port("1")
            .ok()
            .and_then(|c| c.targets.first().map(|t| t.port)),
        Some(1)
    );
    assert_eq!(
        port("65535")
            .ok()
            .and_then(|c| c.targets.first().map(|t| t.port)),
        Some(65535)
    );
    for bad in ["0", "65536", "-22", "22x", "ssh"] {
        let e = port(bad).err();
        assert_eq!(e.and_then(|e| e.key), Some("port".into()), "{bad}");
    }
}

#[test]
fn gecos_delim_is_one_punctuation_character_other_than_colon() {
    for good in [",", ";", "/", "|", "#"] {
        let c = with_duo(&format!("gecos_delim = {good}"));
        assert_eq!(
            c.ok().map(|c| c.duo.gecos_delim.to_string()).as_deref(),
            Some(good)
        );
    }
    for bad in [":", "a", "1", ",,", "", "é"] {
        duo_rejects(&format!("gecos_delim = {bad}"), "gecos_delim");
    }
}

#[test]
fn failmode_and_signature_version_values() {
    assert_eq!(
        with_duo("failmode = secure").ok().map(|c| c.duo.failmode),
        Some(FailMode::Secure)
    );
    duo_rejects("failmode = open", "failmode");
    duo_rejects("failmode = ", "failmode");
    for (text, v) in [
        ("5", SignatureVersion::V5),
        ("2", SignatureVersion::V2Sha512),
        ("2-sha1", SignatureVersion::V2Sha1),
    ] {
        let c = with_duo(&format!("signature_version = {text}"));
        assert_eq!(c.ok().map(|c| c.duo.signature_version), Some(v));
    }
    duo_rejects("signature_version = 4", "signature_version");
    duo_rejects("signature_version = 1", "signature_version");
}

#[test]
fn unsafe_duo_unix_options_are_refused_with_a_reason() {
    let e = duo_rejects("noverify = yes", "noverify");
    assert!(e.message.contains("cafile"), "{e}");
    let e = duo_rejects("accept_env_factor = yes", "accept_env_factor");
    assert!(e.message.contains("environment variable"), "{e}");
    let e = duo_rejects("verified_push = yes", "verified_push");
    assert!(e.message.contains("standard Duo Push"), "{e}");
    for key in ["noverify", "accept_env_factor", "verified_push"] {
        assert!(with_duo(&format!("{key} = no")).is_ok(), "{key}");
        duo_rejects(&format!("{key} = maybe"), key);
    }
}

#[test]
fn http_proxy_accepts_plain_http_host_and_port_only() {
    for good in [
        "http://proxy:3128",
        "http://10.0.0.1:8080",
        "http://proxy.example.com:80/",
        "HTTP://p:1",
    ] {
        assert!(with_duo(&format!("http_proxy = {good}")).is_ok(), "{good}");
    }
    for bad in [
        "https://proxy:3128",
        "http://user:pass@proxy:3128",
        "http://proxy",
        "http://proxy:3128/path",
        "proxy:3128",
        "socks5://proxy:1080",
        "http://:3128",
        "http://proxy:0",
    ] {
        duo_rejects(&format!("http_proxy = {bad}"), "http_proxy");
    }
}

#[test]
fn paths_must_be_absolute() {
    duo_rejects("cafile = ca.pem", "cafile");
    for key in ["ssh", "ssh_config", "known_hosts"] {
        let e = error(&format!("{}[proxy]\n{key} = relative/path\n", base()));
        assert_eq!(e.key.as_deref(), Some(key));
    }
    let e = error(&format!("{}[proxy]\nname = -bad\n", base()));
    assert_eq!(e.key.as_deref(), Some("name"));
}

#[test]
fn groups_contradict_forced_mfa() {
    let e = duo_rejects("groups = users", "groups");
    assert_eq!(
        e.message,
        "groups exempts users from Duo, which contradicts force_mfa = yes"
    );
    // An empty groups line exempts nobody.
    assert!(with_duo("groups =").is_ok());
}

#[test]
fn groups_split_like_duo_unix_and_continue_on_indented_lines() {
    let c = ok(&format!(
        "{}groups = users !wheel\n  admin,!guest\n\tdomain\\ users\ngroup = extra\n[policy]\nforce_mfa = no\n",
        base()
    ));
    assert_eq!(
        c.duo.groups,
        vec!["users", "!wheel", "admin,!guest", "domain users", "extra"]
    );
    let many: String = (0..257).map(|i| format!("g{i} ")).collect();
    let e = error(&format!(
        "{}groups = {many}\n[policy]\nforce_mfa = no\n",
        base()
    ));
    assert_eq!(e.key.as_deref(), Some("groups"));
}

#[test]
fn a_scalar_key_cannot_continue_on_an_indented_line() {
    let e = error(&format!("{}https_timeout = 10\n  20\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("https_timeout")));
    assert!(e.message.contains("indented"), "{e}");
    // Blank and comment lines between do not end a continuation (inih's rule).
    let e = error(&format!("{}prompts = 1\n\n; note\n   2\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(8), Some("prompts")));
}

#[test]
fn target_mfa_no_contradicts_forced_mfa() {
    let e = error(&format!("{}[target t]\nhost = h\nmfa = no\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(7), Some("mfa")));
    let c = ok(&format!(
        "{}[policy]\nforce_mfa = no\n[target t]\nhost = h\nmfa = no\nallow = a\n",
        base()
    ));
    assert_eq!(c.targets.first().map(|t| t.mfa), Some(false));
}

#[test]
fn allow_bypass_without_forced_mfa_is_fine() {
    let c = ok(&format!(
        "{}[policy]\nforce_mfa = no\nallow_bypass = yes\n",
        base()
    ));
    assert!(!c.policy.force_mfa);
    assert!(c.policy.allow_bypass);
}

#[test]
fn failmode_safe_under_forced_mfa_is_a_warning() {
    let c = ok(&format!("{}failmode = safe\n", base()));
    assert_eq!(c.duo.failmode, FailMode::Safe);
    assert!(c
        .warnings
        .iter()
        .any(|w| w == "failmode = safe is ignored because force_mfa = yes"));
    let c = ok(&format!(
        "{}failmode = safe\n[policy]\nforce_mfa = no\n",
        base()
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn target_hosts_refuse_option_and_shell_injection() {
    for good in [
        "10.0.0.5",
        "fe80::1",
        "::1",
        "web01.internal",
        "web_01",
        "WEB",
    ] {
        let c = ok(&format!("{}[target t]\nhost = {good}\n", base()));
        assert_eq!(c.targets.first().map(|t| t.host.as_str()), Some(good));
    }
    for bad in [
        "-oProxyCommand=sh",
        "a b",
        "a;b",
        "$(id)",
        "`id`",
        "a|b",
        "a&b",
        "a>b",
        "user@host",
        "host:22",
        "[::1]",
        ".host",
        "hóst",
        "",
    ] {
        let e = error(&format!("{}[target t]\nhost = {bad}\n", base()));
        assert_eq!(e.key.as_deref(), Some("host"), "{bad}: {e}");
        assert_eq!(e.line, Some(6), "{bad}: {e}");
    }
    let e = error(&format!("{}[target t]\nport = 22\n", base()));
    assert_eq!((e.line, e.key.as_deref()), (Some(5), Some("host")));
    let c = ok(&format!(
        "{}[target t]\nhost = fe80::1\nport = 2200\n",
        base()
    ));
    assert_eq!(
        c.targets.first().map(|t| t.address()).as_deref(),
        Some("[fe80::1]:2200")
    );
}

#[test]
fn target_login_and_allow_are_validated() {
    for good in ["deploy", "_svc", "a.b-c_d", "host$"] {
        assert!(
            parse(&format!("{}[target t]\nhost = h\nlogin = {good}\n", base())).is_ok(),
            "{good}"
        );
    }
    for bad in ["-l", "root;id", "a b", "1abc", "", &"a".repeat(33)] {
        let e = error(&format!("{}[target t]\nhost = h\nlogin = {bad}\n", base()));
        assert_eq!(e.key.as_deref(), Some("login"), "{bad:?}");
    }
    for bad in ["@", "-alice", "@-ops", "al!ce", "@@ops"] {
        let e = error(&format!(
            "{}[target t]\nhost = h\nallow = bob {bad}\n",
            base()
        ));
        assert_eq!(e.key.as_deref(), Some("allow"), "{bad:?}");
    }
}

#[test]
fn allow_lists_append_and_match_users_and_groups() {
    let c = ok(&format!(
        "{}[target t]\nhost = h\nallow = alice\n  @ops bob\nallow = carol alice\n",
        base()
    ));
    let Some(t) = c.targets.first() else {
        panic!("no target")
    };
    assert_eq!(
        t.allow,
        vec![
            Principal::User("alice".into()),
            Principal::Group("ops".into()),
            Principal::User("bob".into()),
            Principal::User("carol".into()),
        ]
    );
    assert!(t.allows("alice", &[]));
    assert!(t.allows("dave", &["wheel".into(), "ops".into()]));
    assert!(!t.allows("dave", &["wheel".into()]));
    assert!(!t.allows("ops", &[]));
    assert!(!t.allows("Alice", &[]));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let c = ok(&format!("{}[target t]\nhost = h\n", base()));
    assert!(c
        .targets
        .first()
        .is_some_and(|t| !t.allows("alice", &["ops".into()])));
    assert!(
        c.warnings.iter().any(|w| w.contains("nobody")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn obsolete_duo_unix_keys_are_accepted_with_a_warning() {
    for key in ["gecos_parsed", "dev_fips_mode"] {
        let c = with_duo(&format!("{key} = yes"));
        let warnings = c.map(|c| c.warnings).unwrap_or_default();
        assert!(
            warnings.iter().any(|w| w.contains(key)),
            "{key}: {warnings:?}"
        );
    }
}

#[test]
fn syntax_errors_from_the_reader_carry_the_line() {
    let e = parse_bytes(b"[duo]\nhost = \xff\n");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("UTF-8"), "{e}");
    let e = error(&format!("{}this line has no separator\n", base()));
    assert_eq!(e.line, Some(5));
    assert!(!e.fail_open_allowed);
}

#[test]
fn parse_errors_never_allow_failing_open() {
    // Config::parse makes no file checks, so even an explicit fail-open file says deny.
    let e = error(&format!(
        "{}failmode = safe\nbogus = 1\n[policy]\nforce_mfa = no\n",
        base()
    ));
    assert!(!e.fail_open_allowed);
}

#[test]
fn comments_bom_crlf_and_colon_separators_work_through_the_typed_layer() {
    let text = format!(
        "\u{feff}; header\r\n[duo] ; main\r\nhost: api-12345678.duosecurity.com ; the host\r\n\
         ikey = {IKEY}\r\nskey = {SKEY}\r\n# done\r\nprompts=1;not a comment\r\n"
    );
    // `1;not a comment` is one value (no blank before `;`), so it is not a number.
    let e = error(&text);
    assert_eq!((e.line, e.key.as_deref()), (Some(7), Some("prompts")));
    let c = ok(&text.replace("prompts=1;not a comment", "prompts=1 ;a comment"));
    assert_eq!(c.duo.prompts, 1);
    assert_eq!(c.duo.host.authority(), "api-12345678.duosecurity.com");
}

fn parse_bytes(bytes: &[u8]) -> ConfigError {
    match Config::parse(bytes, Path::new(ORIGIN)) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}
