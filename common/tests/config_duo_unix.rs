//! An unmodified duo_unix `pam_duo.conf` reads here with the same meaning.
#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use std::path::Path;
use std::time::Duration;

use duo_push_common::config::{Config, FailMode};

/// Debian's stock /etc/security/pam_duo.conf (libpam-duo), verbatim except for real-looking
/// keys in place of the empty ones.
const DEBIAN_STOCK: &str = "[duo]
; Duo API host
host = api-eval.duosecurity.com

; Duo integration key
ikey = DI9ABCDEFGHIJKLMNOPQ
; Duo secret key
skey = Zx8Qm3Lp0Rt6Vb2Nc7Wd1Yf5Gh4Jk9As3De8Fg0H

; failmode = safe
;     In the event of errors with this configuration file or connection to the
;     Duo service this mode will allow login without 2FA.
; failmode = secure
;     This mode will deny access in the above cases. Misconfigurations with
;     this setting enabled may result in you being locked out of your system.
failmode = safe

; Send command for Duo Push authentication
;pushinfo = yes
";

#[test]
fn debian_stock_pam_duo_conf_parses_unchanged() {
    let c = Config::parse(
        DEBIAN_STOCK.as_bytes(),
        Path::new("/etc/security/pam_duo.conf"),
    );
    let c = match c {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.duo.host.authority(), "api-eval.duosecurity.com");
    assert_eq!(c.duo.ikey.as_str(), "DI9ABCDEFGHIJKLMNOPQ");
    assert_eq!(
        c.duo.skey.expose_str(),
        "Zx8Qm3Lp0Rt6Vb2Nc7Wd1Yf5Gh4Jk9As3De8Fg0H"
    );
    assert_eq!(c.duo.failmode, FailMode::Safe);
    assert!(!c.duo.pushinfo, "the commented-out pushinfo must stay off");
    // force_mfa defaults to yes, so failmode = safe is reported as ignored.
    assert!(c.policy.force_mfa);
    assert_eq!(
        c.warnings,
        vec!["failmode = safe is ignored because force_mfa = yes".to_owned()]
    );
}

#[test]
fn duo_unix_style_options_keep_their_meaning_when_mfa_is_not_forced() {
    let text = "[duo]
host = API-XXXXXXXX.duosecurity.com
ikey = DIXXXXXXXXXXXXXXXXXX
skey = deadbeefdeadbeefdeadbeefdeadbeefdeadbeef
failmode = safe
pushinfo = yes
autopush = yes
prompts = 1
groups = users !wheel
https_timeout = 30
send_gecos = yes
gecos_username_pos = 3
gecos_delim = ;
fallback_local_ip = yes
cafile = /etc/duo/ca.pem
http_proxy = http://squid.internal:3128

[policy]
force_mfa = no
";
    let c = match Config::parse(text.as_bytes(), Path::new("/etc/duo_push/duo_push.conf")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.duo.host.authority(), "api-xxxxxxxx.duosecurity.com");
    assert_eq!(c.duo.failmode, FailMode::Safe);
    assert!(c.duo.pushinfo);
    assert!(c.duo.autopush);
    assert_eq!(c.duo.prompts, 1);
    assert_eq!(c.duo.groups, vec!["users".to_owned(), "!wheel".to_owned()]);
    assert_eq!(c.duo.https_timeout, Duration::from_secs(30));
    assert!(c.duo.send_gecos);
    assert_eq!(c.duo.gecos_username_pos, Some(3));
    assert_eq!(c.duo.gecos_delim, ';');
    assert!(c.duo.fallback_local_ip);
    assert_eq!(c.duo.cafile.as_deref(), Some(Path::new("/etc/duo/ca.pem")));
    assert_eq!(
        c.duo.http_proxy.as_deref(),
        Some("http://squid.internal:3128")
    );
    assert!(!c.policy.force_mfa);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
