//! The forced-MFA policy table (DESIGN.md, "The forced-MFA policy check"): one test per row and
//! column, plus exhaustive checks over every input combination.

#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use duo_push_common::api::{
    AuthResult, AuthStatus, Device, DuoError, Preauth, PreauthResult, Txid,
};
use duo_push_common::policy::{
    decide, ApprovalKind, Decision, Denial, DenyReason, PolicyInput, Situation,
};

const FORCED: PolicyInput = PolicyInput {
    force_mfa: true,
    allow_bypass: false,
    fail_open: false,
};
const FORCED_SAFE: PolicyInput = PolicyInput {
    force_mfa: true,
    allow_bypass: false,
    fail_open: true,
};
const FORCED_BYPASS: PolicyInput = PolicyInput {
    force_mfa: true,
    allow_bypass: true,
    fail_open: true,
};
const OPTIONAL_SECURE: PolicyInput = PolicyInput {
    force_mfa: false,
    allow_bypass: false,
    fail_open: false,
};
const OPTIONAL_SAFE: PolicyInput = PolicyInput {
    force_mfa: false,
    allow_bypass: false,
    fail_open: true,
};

/// Every combination of the three switches.
fn all_inputs() -> Vec<PolicyInput> {
    let mut v = Vec::new();
    for force_mfa in [false, true] {
        for allow_bypass in [false, true] {
            for fail_open in [false, true] {
                v.push(PolicyInput {
                    force_mfa,
                    allow_bypass,
                    fail_open,
                });
            }
        }
    }
    v
}

fn forced_inputs() -> Vec<PolicyInput> {
    all_inputs().into_iter().filter(|i| i.force_mfa).collect()
}

fn optional_inputs() -> Vec<PolicyInput> {
    all_inputs().into_iter().filter(|i| !i.force_mfa).collect()
}

fn all_errors() -> Vec<DuoError> {
    vec![
        DuoError::Connect("connection refused".into()),
        DuoError::Tls("unknown issuer".into()),
        DuoError::Timeout,
        DuoError::Unauthorized {
            code: "40103".into(),
            message: "Invalid signature".into(),
        },
        DuoError::RateLimited,
        DuoError::Http {
            status: 503,
            code: "".into(),
            message: "unavailable".into(),
        },
        DuoError::Malformed("expected value".into()),
        DuoError::TooLarge,
        DuoError::Lost("connection reset".into()),
        DuoError::Setup("bad cafile".into()),
    ]
}

fn preauth(result: PreauthResult) -> Preauth {
    Preauth {
        result,
        status_msg: String::new(),
        devices: vec![Device {
            device: "DPFZRS9FB0D46QFTM891".into(),
            kind: "phone".into(),
            display_name: "iOS (XXX-XXX-1234)".into(),
            number: "XXX-XXX-1234".into(),
            capabilities: vec!["auto".into(), "push".into()],
        }],
        enroll_portal_url: None,
    }
}

fn status(result: AuthResult, status: &str) -> AuthStatus {
    AuthStatus {
        result,
        status: status.into(),
        status_msg: format!("status {status}"),
    }
}

fn txid() -> Txid {
    Txid("45f7c92b-f45f-4862-8545-e0f58e78075a".into())
}

fn granted(d: &Decision) -> Option<ApprovalKind> {
    match d {
        Decision::Grant(a) => Some(a.kind()),
        _ => None,
    }
}

fn denial(d: Decision) -> Denial {
    match d {
        Decision::Deny(denial) => denial,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn assert_denied(d: Decision, reason: DenyReason) -> Denial {
    let denial = denial(d);
    assert_eq!(denial.reason, reason);
    assert!(!denial.user_message.is_empty());
    assert!(!denial.user_message.chars().any(char::is_control));
    denial
}

// Row: config missing, unreadable, bad permissions, invalid.

#[test]
fn unusable_config_is_denied_under_forced_mfa_even_with_failmode_safe() {
    for input in forced_inputs() {
        for fail_open_allowed in [false, true] {
            let d = decide(&input, Situation::ConfigUnusable { fail_open_allowed });
            assert_denied(d, DenyReason::ConfigUnusable);
        }
    }
}

#[test]
fn unusable_config_fails_open_without_forced_mfa_when_failmode_is_safe() {
    let d = decide(
        &OPTIONAL_SAFE,
        Situation::ConfigUnusable {
            fail_open_allowed: true,
        },
    );
    assert_eq!(granted(&d), Some(ApprovalKind::FailOpen));
    if let Decision::Grant(a) = d {
        assert!(a.txid().is_none());
    }
}

#[test]
fn unusable_config_is_denied_without_forced_mfa_when_failmode_is_secure() {
    for fail_open_allowed in [false, true] {
        let d = decide(
            &OPTIONAL_SECURE,
            Situation::ConfigUnusable { fail_open_allowed },
        );
        assert_denied(d, DenyReason::ConfigUnusable);
    }
}

#[test]
fn unusable_config_is_denied_when_failing_open_was_not_established_as_allowed() {
    let d = decide(
        &OPTIONAL_SAFE,
        Situation::ConfigUnusable {
            fail_open_allowed: false,
        },
    );
    assert_denied(d, DenyReason::ConfigUnusable);
}

// Row: `groups` / target `mfa = no`.

#[test]
fn a_user_exemption_contradicts_forced_mfa_and_denies() {
    for input in forced_inputs() {
        assert_denied(
            decide(&input, Situation::UserExempt),
            DenyReason::ConfigContradiction,
        );
    }
}

#[test]
fn a_user_outside_groups_is_ignored_and_never_granted_without_forced_mfa() {
    for input in optional_inputs() {
        assert!(matches!(
            decide(&input, Situation::UserExempt),
            Decision::Ignore
        ));
    }
}

#[test]
fn a_target_with_mfa_off_contradicts_forced_mfa_and_denies() {
    for input in forced_inputs() {
        assert_denied(
            decide(&input, Situation::TargetMfaOff),
            DenyReason::ConfigContradiction,
        );
    }
}

#[test]
fn a_target_with_mfa_off_needs_no_push_without_forced_mfa() {
    for input in optional_inputs() {
        let d = decide(&input, Situation::TargetMfaOff);
        assert_eq!(granted(&d), Some(ApprovalKind::MfaNotRequired));
    }
}

// Row: Duo unavailable before any push.

#[test]
fn duo_unavailable_before_the_push_denies_under_forced_mfa_even_with_failmode_safe() {
    for input in forced_inputs() {
        for e in all_errors() {
            let denial = assert_denied(
                decide(&input, Situation::DuoUnavailable(&e)),
                DenyReason::DuoUnavailable,
            );
            assert_eq!(denial.detail, e.to_string());
        }
    }
}

#[test]
fn duo_unavailable_before_the_push_fails_open_with_failmode_safe_without_forced_mfa() {
    for e in all_errors() {
        let d = decide(&OPTIONAL_SAFE, Situation::DuoUnavailable(&e));
        assert_eq!(granted(&d), Some(ApprovalKind::FailOpen), "{e}");
    }
}

#[test]
fn duo_unavailable_before_the_push_denies_with_failmode_secure_without_forced_mfa() {
    for e in all_errors() {
        assert_denied(
            decide(&OPTIONAL_SECURE, Situation::DuoUnavailable(&e)),
            DenyReason::DuoUnavailable,
        );
    }
}

// Row: preauth allow (bypass).

#[test]
fn bypass_is_refused_under_forced_mfa() {
    let p = preauth(PreauthResult::Allow);
    for input in [FORCED, FORCED_SAFE] {
        assert_denied(
            decide(&input, Situation::Preauth(&p)),
            DenyReason::BypassRefused,
        );
    }
}

#[test]
fn bypass_is_honoured_under_forced_mfa_only_when_allow_bypass_is_set() {
    let p = preauth(PreauthResult::Allow);
    let d = decide(&FORCED_BYPASS, Situation::Preauth(&p));
    assert_eq!(granted(&d), Some(ApprovalKind::Bypass));
}

#[test]
fn bypass_is_granted_without_forced_mfa() {
    let p = preauth(PreauthResult::Allow);
    for input in optional_inputs() {
        let d = decide(&input, Situation::Preauth(&p));
        assert_eq!(granted(&d), Some(ApprovalKind::Bypass));
    }
}

// Row: preauth deny.

#[test]
fn preauth_deny_denies_and_shows_duos_status_msg_in_both_columns() {
    let mut p = preauth(PreauthResult::Deny);
    p.status_msg = "Your account is disabled.".into();
    for input in all_inputs() {
        let denial = assert_denied(
            decide(&input, Situation::Preauth(&p)),
            DenyReason::PreauthDeny,
        );
        assert_eq!(denial.user_message, "Your account is disabled.");
    }
}

#[test]
fn preauth_deny_status_msg_is_stripped_of_terminal_escapes() {
    let mut p = preauth(PreauthResult::Deny);
    p.status_msg = "\u{1b}]0;owned\u{7}Locked\u{1b}[2J out\n".into();
    let denial = assert_denied(
        decide(&FORCED, Situation::Preauth(&p)),
        DenyReason::PreauthDeny,
    );
    assert_eq!(denial.user_message, "Locked out");
}

#[test]
fn preauth_deny_without_a_status_msg_still_explains() {
    let p = preauth(PreauthResult::Deny);
    let denial = assert_denied(
        decide(&OPTIONAL_SAFE, Situation::Preauth(&p)),
        DenyReason::PreauthDeny,
    );
    assert_eq!(denial.user_message, "Access denied by Duo.");
}

// Row: preauth enroll.

#[test]
fn preauth_enroll_denies_and_shows_the_enrollment_url_in_both_columns() {
    let mut p = preauth(PreauthResult::Enroll);
    p.enroll_portal_url =
        Some("https://api-xxxxxxxx.duosecurity.com/portal?code=48bac5d9393fb2c2".into());
    for input in all_inputs() {
        let denial = denial(decide(&input, Situation::Preauth(&p)));
        assert_eq!(
            denial.reason,
            DenyReason::Enroll {
                url: p.enroll_portal_url.clone()
            }
        );
        assert!(denial
            .user_message
            .contains("https://api-xxxxxxxx.duosecurity.com/portal?code=48bac5d9393fb2c2"));
    }
}

#[test]
fn preauth_enroll_without_a_url_still_denies() {
    let p = preauth(PreauthResult::Enroll);
    for input in all_inputs() {
        let denial = denial(decide(&input, Situation::Preauth(&p)));
        assert_eq!(denial.reason, DenyReason::Enroll { url: None });
    }
}

#[test]
fn a_hostile_enrollment_url_is_sanitized_in_the_user_message() {
    let mut p = preauth(PreauthResult::Enroll);
    p.enroll_portal_url = Some("https://x/\u{1b}[8mhidden\u{1b}[0m".into());
    let denial = denial(decide(&FORCED, Situation::Preauth(&p)));
    assert!(!denial.user_message.contains('\u{1b}'));
    assert!(denial.user_message.ends_with("https://x/hidden"));
}

// Row: preauth auth.

#[test]
fn preauth_auth_continues_to_the_push_in_both_columns() {
    let p = preauth(PreauthResult::Auth);
    for input in all_inputs() {
        assert!(matches!(
            decide(&input, Situation::Preauth(&p)),
            Decision::Continue
        ));
    }
}

#[test]
fn an_unknown_preauth_result_denies_in_both_columns() {
    let p = preauth(PreauthResult::Unknown("allow_maybe".into()));
    for input in all_inputs() {
        assert_denied(
            decide(&input, Situation::Preauth(&p)),
            DenyReason::PreauthUnknown,
        );
    }
}

// Row: push approved.

#[test]
fn an_approved_push_grants_with_its_txid_in_both_columns() {
    let t = txid();
    let s = status(AuthResult::Allow, "allow");
    for input in all_inputs() {
        match decide(
            &input,
            Situation::PushFinal {
                txid: &t,
                status: &s,
            },
        ) {
            Decision::Grant(a) => {
                assert_eq!(a.kind(), ApprovalKind::Push);
                assert_eq!(a.txid(), Some(&t));
            }
            other => panic!("expected a grant, got {other:?}"),
        }
    }
}

// Row: push denied, fraud, locked out, timed out.

#[test]
fn a_denied_push_denies_in_both_columns() {
    let t = txid();
    let s = status(AuthResult::Deny, "deny");
    for input in all_inputs() {
        assert_denied(
            decide(
                &input,
                Situation::PushFinal {
                    txid: &t,
                    status: &s,
                },
            ),
            DenyReason::PushDenied,
        );
    }
}

#[test]
fn fraud_locked_out_and_timeout_statuses_deny_with_their_own_reason() {
    let t = txid();
    for (st, reason) in [
        ("fraud", DenyReason::Fraud),
        ("locked_out", DenyReason::LockedOut),
        ("timeout", DenyReason::PushTimedOut),
        ("something_new", DenyReason::PushDenied),
    ] {
        let s = status(AuthResult::Deny, st);
        for input in all_inputs() {
            let denial = assert_denied(
                decide(
                    &input,
                    Situation::PushFinal {
                        txid: &t,
                        status: &s,
                    },
                ),
                reason.clone(),
            );
            assert!(denial.detail.contains(st));
        }
    }
}

#[test]
fn the_decision_follows_result_never_status() {
    let t = txid();
    let s = status(AuthResult::Deny, "allow");
    for input in all_inputs() {
        assert!(!decide(
            &input,
            Situation::PushFinal {
                txid: &t,
                status: &s,
            },
        )
        .is_grant());
        assert!(!decide(&input, Situation::PasscodeFinal(&s)).is_grant());
    }
}

#[test]
fn waiting_reported_as_final_denies() {
    let t = txid();
    let s = status(AuthResult::Waiting, "pushed");
    for input in all_inputs() {
        assert_denied(
            decide(
                &input,
                Situation::PushFinal {
                    txid: &t,
                    status: &s,
                },
            ),
            DenyReason::UnknownResult,
        );
        assert_denied(
            decide(&input, Situation::PasscodeFinal(&s)),
            DenyReason::UnknownResult,
        );
    }
}

// Passcodes (same row as the push).

#[test]
fn an_accepted_passcode_grants_without_a_txid() {
    let s = status(AuthResult::Allow, "allow");
    for input in all_inputs() {
        match decide(&input, Situation::PasscodeFinal(&s)) {
            Decision::Grant(a) => {
                assert_eq!(a.kind(), ApprovalKind::Passcode);
                assert!(a.txid().is_none());
            }
            other => panic!("expected a grant, got {other:?}"),
        }
    }
}

#[test]
fn a_rejected_passcode_denies_and_a_locked_out_account_says_so() {
    for input in all_inputs() {
        let s = status(AuthResult::Deny, "deny");
        assert_denied(
            decide(&input, Situation::PasscodeFinal(&s)),
            DenyReason::PasscodeRejected,
        );
        let s = status(AuthResult::Deny, "locked_out");
        assert_denied(
            decide(&input, Situation::PasscodeFinal(&s)),
            DenyReason::LockedOut,
        );
    }
}

// Row: any error after a push was sent.

#[test]
fn any_error_after_the_push_denies_in_both_columns_even_with_failmode_safe() {
    for input in all_inputs() {
        for e in all_errors() {
            assert_denied(
                decide(&input, Situation::ErrorAfterPush(&e)),
                DenyReason::ErrorAfterPush,
            );
        }
    }
}

// Columns, exhaustively.

/// Owned data for every situation, so that they can be listed.
struct Fixtures {
    preauths: Vec<Preauth>,
    statuses: Vec<AuthStatus>,
    errors: Vec<DuoError>,
    txid: Txid,
}

fn fixtures() -> Fixtures {
    let mut preauths: Vec<Preauth> = [
        PreauthResult::Auth,
        PreauthResult::Allow,
        PreauthResult::Deny,
        PreauthResult::Enroll,
        PreauthResult::Unknown("".into()),
        PreauthResult::Unknown("allow ".into()),
    ]
    .into_iter()
    .map(preauth)
    .collect();
    preauths.push(Preauth {
        result: PreauthResult::from_wire("ALLOW"),
        status_msg: "allow".into(),
        devices: Vec::new(),
        enroll_portal_url: None,
    });
    let statuses = vec![
        status(AuthResult::Allow, "allow"),
        status(AuthResult::Deny, "deny"),
        status(AuthResult::Deny, "fraud"),
        status(AuthResult::Waiting, "pushed"),
        status(AuthResult::Unknown("allowed".into()), "allow"),
        status(AuthResult::from_wire("Allow"), "allow"),
    ];
    Fixtures {
        preauths,
        statuses,
        errors: all_errors(),
        txid: txid(),
    }
}

fn all_situations(f: &Fixtures) -> Vec<Situation<'_>> {
    let mut v = vec![
        Situation::ConfigUnusable {
            fail_open_allowed: false,
        },
        Situation::ConfigUnusable {
            fail_open_allowed: true,
        },
        Situation::UserExempt,
        Situation::TargetMfaOff,
    ];
    v.extend(f.errors.iter().map(Situation::DuoUnavailable));
    v.extend(f.errors.iter().map(Situation::ErrorAfterPush));
    v.extend(f.preauths.iter().map(Situation::Preauth));
    v.extend(f.statuses.iter().map(|s| Situation::PushFinal {
        txid: &f.txid,
        status: s,
    }));
    v.extend(f.statuses.iter().map(Situation::PasscodeFinal));
    v
}

#[test]
fn forced_mfa_grants_only_push_passcode_or_an_allowed_bypass() {
    let f = fixtures();
    for input in forced_inputs() {
        for s in all_situations(&f) {
            match granted(&decide(&input, s)) {
                None | Some(ApprovalKind::Push | ApprovalKind::Passcode) => {}
                Some(ApprovalKind::Bypass) => assert!(input.allow_bypass, "{s:?}"),
                Some(other) => panic!("{input:?} {s:?} granted {other:?}"),
            }
            assert!(
                !matches!(decide(&input, s), Decision::Ignore),
                "forced MFA ignored {s:?}"
            );
        }
    }
}

#[test]
fn failmode_secure_never_fails_open() {
    let f = fixtures();
    for input in all_inputs().into_iter().filter(|i| !i.fail_open) {
        for s in all_situations(&f) {
            assert_ne!(
                granted(&decide(&input, s)),
                Some(ApprovalKind::FailOpen),
                "{s:?}"
            );
        }
    }
}

#[test]
fn no_situation_with_an_unknown_value_ever_grants() {
    let f = fixtures();
    for input in all_inputs() {
        for s in all_situations(&f) {
            let unknown = match s {
                Situation::Preauth(p) => matches!(p.result, PreauthResult::Unknown(_)),
                Situation::PushFinal { status, .. } | Situation::PasscodeFinal(status) => {
                    matches!(status.result, AuthResult::Unknown(_))
                }
                _ => false,
            };
            if unknown {
                let d = decide(&input, s);
                assert!(matches!(d, Decision::Deny(_)), "{input:?} {s:?} gave {d:?}");
            }
        }
    }
}

#[test]
fn only_the_approving_situations_ever_grant() {
    let f = fixtures();
    for input in all_inputs() {
        for s in all_situations(&f) {
            let d = decide(&input, s);
            let allowed = match s {
                Situation::ConfigUnusable { fail_open_allowed } => {
                    !input.force_mfa && input.fail_open && fail_open_allowed
                }
                Situation::UserExempt | Situation::ErrorAfterPush(_) => false,
                Situation::TargetMfaOff => !input.force_mfa,
                Situation::DuoUnavailable(_) => !input.force_mfa && input.fail_open,
                Situation::Preauth(p) => {
                    p.result == PreauthResult::Allow && (!input.force_mfa || input.allow_bypass)
                }
                Situation::PushFinal { status, .. } | Situation::PasscodeFinal(status) => {
                    status.result == AuthResult::Allow
                }
            };
            assert_eq!(d.is_grant(), allowed, "{input:?} {s:?} gave {d:?}");
        }
    }
}

#[test]
fn the_decision_is_the_same_every_time() {
    let f = fixtures();
    for input in all_inputs() {
        for s in all_situations(&f) {
            let a = format!("{:?}", decide(&input, s));
            let b = format!("{:?}", decide(&input, s));
            assert_eq!(a, b);
        }
    }
}
