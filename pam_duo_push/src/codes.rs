//! PAM return codes: the one place that turns an outcome into a code.
//!
//! [`decision_code`] is the only function that can return [`PamCode::Success`], and only for a
//! [`Decision::Grant`], which it consumes together with its [`Approval`]. Every arm that is not
//! an explicit grant or an explicit ignore is a denial.

use duo_push_common::policy::{Approval, Decision, DenyReason};
use pam::constants::PamResultCode;

/// The PAM codes this module returns. `Copy`, unlike pam-bindings' `PamResultCode`, and small
/// enough that every value is accounted for in the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamCode {
    /// PAM_SUCCESS: an approval (push, passcode, allowed bypass, fail-open).
    Success,
    /// PAM_AUTH_ERR: every denial, every error, every panic.
    AuthErr,
    /// PAM_MAXTRIES: the `prompts` attempts were used up.
    MaxTries,
    /// PAM_USER_UNKNOWN: the user name cannot be a user (too long, control characters), or
    /// the user is not in the passwd database when it must be consulted.
    UserUnknown,
    /// PAM_IGNORE: the user is outside `groups` (never under force_mfa), and the hooks this
    /// module does not implement.
    Ignore,
}

impl PamCode {
    /// The libpam value.
    pub fn into_pam(self) -> PamResultCode {
        match self {
            Self::Success => PamResultCode::PAM_SUCCESS,
            Self::AuthErr => PamResultCode::PAM_AUTH_ERR,
            Self::MaxTries => PamResultCode::PAM_MAXTRIES,
            Self::UserUnknown => PamResultCode::PAM_USER_UNKNOWN,
            Self::Ignore => PamResultCode::PAM_IGNORE,
        }
    }

    /// The numeric value from `<security/_pam_types.h>`.
    pub fn raw(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::AuthErr => 7,
            Self::UserUnknown => 10,
            Self::MaxTries => 11,
            Self::Ignore => 25,
        }
    }

    /// The C name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "PAM_SUCCESS",
            Self::AuthErr => "PAM_AUTH_ERR",
            Self::MaxTries => "PAM_MAXTRIES",
            Self::UserUnknown => "PAM_USER_UNKNOWN",
            Self::Ignore => "PAM_IGNORE",
        }
    }
}

/// Consumes an approval. Taking it by value is the point: PAM_SUCCESS exists only where an
/// [`Approval`] went in.
fn consume(approval: Approval) {
    drop(approval);
}

/// Maps the policy's decision to the code `pam_sm_authenticate` returns.
///
/// `Continue` is not a final decision; should it ever reach this point it is a bug, and like
/// every other unexpected case it denies.
pub fn decision_code(decision: Decision) -> PamCode {
    match decision {
        Decision::Grant(approval) => {
            consume(approval);
            PamCode::Success
        }
        Decision::Ignore => PamCode::Ignore,
        Decision::Deny(denial) if denial.reason == DenyReason::TooManyAttempts => PamCode::MaxTries,
        // The default arm: every other denial, and anything not granted above.
        _ => PamCode::AuthErr,
    }
}

#[cfg(test)]
mod tests {
    use duo_push_common::api::{AuthResult, AuthStatus, DuoError, Preauth, PreauthResult, Txid};
    use duo_push_common::policy::{decide, PolicyInput, Situation};

    use super::*;

    const FORCED: PolicyInput = PolicyInput {
        force_mfa: true,
        allow_bypass: false,
        fail_open: false,
    };
    const RELAXED: PolicyInput = PolicyInput {
        force_mfa: false,
        allow_bypass: false,
        fail_open: true,
    };

    fn preauth(result: PreauthResult) -> Preauth {
        Preauth {
            result,
            status_msg: "msg".into(),
            devices: vec![],
            enroll_portal_url: Some("https://enroll.example/x".into()),
        }
    }

    fn status(result: AuthResult, status: &str) -> AuthStatus {
        AuthStatus {
            result,
            status: status.into(),
            status_msg: String::new(),
        }
    }

    #[test]
    fn only_a_grant_becomes_success() {
        let txid = Txid("t1".into());
        let approved = status(AuthResult::Allow, "allow");
        let grant = decide(
            &FORCED,
            Situation::PushFinal {
                txid: &txid,
                status: &approved,
            },
        );
        assert_eq!(decision_code(grant), PamCode::Success);
        let passcode = decide(&FORCED, Situation::PasscodeFinal(&approved));
        assert_eq!(decision_code(passcode), PamCode::Success);
        let bypass = decide(&RELAXED, Situation::Preauth(&preauth(PreauthResult::Allow)));
        assert_eq!(decision_code(bypass), PamCode::Success);
        let fail_open = decide(&RELAXED, Situation::DuoUnavailable(&DuoError::Timeout));
        assert_eq!(decision_code(fail_open), PamCode::Success);
    }

    #[test]
    fn ignore_is_never_success() {
        assert_eq!(decision_code(Decision::Ignore), PamCode::Ignore);
        assert_eq!(
            decision_code(decide(&RELAXED, Situation::UserExempt)),
            PamCode::Ignore
        );
        // Under force_mfa an exemption is a contradiction, and denies.
        assert_eq!(
            decision_code(decide(&FORCED, Situation::UserExempt)),
            PamCode::AuthErr
        );
    }

    #[test]
    fn continue_as_a_final_answer_denies() {
        assert_eq!(decision_code(Decision::Continue), PamCode::AuthErr);
    }

    #[test]
    fn every_denial_is_auth_err_except_used_up_prompts() {
        let txid = Txid("t".into());
        let mut denials = Vec::new();
        for (result, st) in [
            (AuthResult::Deny, "deny"),
            (AuthResult::Deny, "fraud"),
            (AuthResult::Deny, "locked_out"),
            (AuthResult::Deny, "timeout"),
            (AuthResult::Waiting, "pushed"),
            (AuthResult::Unknown("maybe".into()), "allow"),
        ] {
            let s = status(result, st);
            denials.push(decide(
                &FORCED,
                Situation::PushFinal {
                    txid: &txid,
                    status: &s,
                },
            ));
        }
        for r in [
            PreauthResult::Deny,
            PreauthResult::Enroll,
            PreauthResult::Unknown("x".into()),
            PreauthResult::Allow,
        ] {
            denials.push(decide(&FORCED, Situation::Preauth(&preauth(r))));
        }
        denials.push(decide(
            &FORCED,
            Situation::DuoUnavailable(&DuoError::Timeout),
        ));
        denials.push(decide(
            &FORCED,
            Situation::ConfigUnusable {
                fail_open_allowed: true,
            },
        ));
        denials.push(decide(
            &RELAXED,
            Situation::ConfigUnusable {
                fail_open_allowed: false,
            },
        ));
        denials.push(decide(
            &RELAXED,
            Situation::ErrorAfterPush(&DuoError::Lost("x".into())),
        ));
        denials.push(decide(
            &RELAXED,
            Situation::PasscodeFinal(&status(AuthResult::Deny, "deny")),
        ));
        for reason in [
            DenyReason::NoPushDevice,
            DenyReason::NoAnswer,
            DenyReason::PushTimedOut,
        ] {
            denials.push(Decision::Deny(duo_push_common::policy::Denial::new(
                reason, "",
            )));
        }
        let count = denials.len();
        for d in denials {
            assert!(matches!(d, Decision::Deny(_)), "{d:?}");
            assert_eq!(decision_code(d), PamCode::AuthErr);
        }
        assert_eq!(count, 18);
    }

    #[test]
    fn every_deny_reason_denies() {
        use DenyReason as R;
        let reasons = [
            R::ConfigUnusable,
            R::ConfigContradiction,
            R::DuoUnavailable,
            R::BypassRefused,
            R::PreauthDeny,
            R::Enroll { url: None },
            R::Enroll {
                url: Some("https://x".into()),
            },
            R::PreauthUnknown,
            R::PushDenied,
            R::Fraud,
            R::LockedOut,
            R::PushTimedOut,
            R::UnknownResult,
            R::ErrorAfterPush,
            R::NoPushDevice,
            R::PasscodeRejected,
            R::TooManyAttempts,
            R::NoAnswer,
        ];
        for reason in reasons {
            let expected = if reason == R::TooManyAttempts {
                PamCode::MaxTries
            } else {
                PamCode::AuthErr
            };
            let code = decision_code(Decision::Deny(duo_push_common::policy::Denial::new(
                reason.clone(),
                "",
            )));
            assert_eq!(code, expected, "{reason:?}");
        }
    }

    #[test]
    fn used_up_prompts_are_maxtries() {
        let d = Decision::Deny(duo_push_common::policy::Denial::new(
            DenyReason::TooManyAttempts,
            "3 failed",
        ));
        assert_eq!(decision_code(d), PamCode::MaxTries);
    }

    #[test]
    fn codes_match_the_libpam_header() {
        for code in [
            PamCode::Success,
            PamCode::AuthErr,
            PamCode::MaxTries,
            PamCode::UserUnknown,
            PamCode::Ignore,
        ] {
            assert_eq!(code.into_pam() as i32, code.raw(), "{}", code.name());
        }
    }
}
