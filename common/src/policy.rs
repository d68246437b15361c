//! The forced-MFA policy: one pure function, [`decide`], that turns a situation (what happened
//! with the configuration or with Duo) into a [`Decision`].
//!
//! This is the only place in the code base that can construct an [`Approval`], the value that
//! means "approved". PAM_SUCCESS and "open the target connection" both require one by value,
//! so every grant in the system can be traced back to a row of the table in DESIGN.md
//! ("The forced-MFA policy check"):
//!
//! | situation | force_mfa = yes | force_mfa = no |
//! |---|---|---|
//! | config unusable | deny | failmode (safe and allowed: fail-open grant) |
//! | user outside `groups` | deny (contradiction) | ignore, never grant |
//! | target `mfa = no` | deny (contradiction) | grant, MFA not required |
//! | Duo unavailable before any push | deny | failmode |
//! | preauth allow | deny unless `allow_bypass` | grant (bypass) |
//! | preauth deny / enroll / unknown | deny | deny |
//! | preauth auth | continue and push | continue and push |
//! | push or passcode `result: allow` | grant | grant |
//! | anything else final | deny | deny |
//! | any error after a push | deny | deny |
//!
//! Decisions are made on Duo's `result`, never on `status`; `status` only picks the message.

use std::fmt;

use crate::api::{AuthResult, AuthStatus, DuoError, Preauth, PreauthResult, Txid};
use crate::audit::sanitize_for_terminal;

/// Longest user-facing text taken from Duo (status_msg, enrollment URL), in characters.
const MAX_DUO_TEXT: usize = 300;

/// The configuration the policy depends on. Kept independent of the config file types so the
/// policy stays a pure function of plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyInput {
    /// `[policy] force_mfa`: Duo is mandatory, no bypass, no fail-open, no exemptions.
    pub force_mfa: bool,
    /// `[policy] allow_bypass`: honour preauth `allow` even when `force_mfa` is set.
    pub allow_bypass: bool,
    /// `[duo] failmode = safe`: let users in when Duo cannot be reached (never under force_mfa).
    pub fail_open: bool,
}

/// What happened, as far as the policy is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Situation<'a> {
    /// The config is missing, unreadable, has bad permissions or is invalid.
    /// `fail_open_allowed` says whether the caller could establish that failing open is
    /// permitted (e.g. a parsed `failmode = safe` from an otherwise unusable file); when the
    /// config cannot be read at all, pass `false`.
    ConfigUnusable {
        /// Whether failing open is permitted in this case at all.
        fail_open_allowed: bool,
    },
    /// The user is outside `groups` (only meaningful without force_mfa).
    UserExempt,
    /// The chosen target has `mfa = no` (only meaningful without force_mfa).
    TargetMfaOff,
    /// A Duo call failed before any push was sent.
    DuoUnavailable(&'a DuoError),
    /// Preauth answered.
    Preauth(&'a Preauth),
    /// auth_status reported something final for a push.
    PushFinal {
        /// The transaction that was polled.
        txid: &'a Txid,
        /// Duo's reply.
        status: &'a AuthStatus,
    },
    /// A synchronous passcode `/auth` answered.
    PasscodeFinal(&'a AuthStatus),
    /// Any error after a push (or passcode) was sent.
    ErrorAfterPush(&'a DuoError),
}

/// How the user got in. Logged with every grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalKind {
    /// Approved on the phone.
    Push,
    /// A valid passcode.
    Passcode,
    /// Duo's preauth said `allow`.
    Bypass,
    /// Duo or the config was unavailable and `failmode = safe` let the user in.
    FailOpen,
    /// The target has `mfa = no` (never under force_mfa).
    MfaNotRequired,
}

impl ApprovalKind {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Passcode => "passcode",
            Self::Bypass => "bypass",
            Self::FailOpen => "fail_open",
            Self::MfaNotRequired => "mfa_not_required",
        }
    }
}

impl fmt::Display for ApprovalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one value that means "approved".
///
/// It has no public constructor and cannot be cloned, copied or defaulted: the only way to get
/// one is a [`Decision::Grant`] from [`decide`]. Granting access (PAM_SUCCESS, opening a target
/// connection) takes it by value.
///
/// Outside this module it cannot be built:
///
/// ```compile_fail
/// use duo_push_common::policy::{Approval, ApprovalKind};
/// let forged = Approval { kind: ApprovalKind::Push, txid: None };
/// ```
///
/// nor duplicated:
///
/// ```compile_fail
/// use duo_push_common::policy::{decide, Decision, PolicyInput, Situation};
/// let input = PolicyInput { force_mfa: false, allow_bypass: false, fail_open: false };
/// if let Decision::Grant(approval) = decide(&input, Situation::TargetMfaOff) {
///     let copy = approval.clone();
///     drop((approval, copy));
/// }
/// ```
///
/// while the same code without the copy compiles:
///
/// ```
/// use duo_push_common::policy::{decide, ApprovalKind, Decision, PolicyInput, Situation};
/// let input = PolicyInput { force_mfa: false, allow_bypass: false, fail_open: false };
/// let Decision::Grant(approval) = decide(&input, Situation::TargetMfaOff) else { panic!() };
/// assert_eq!(approval.kind(), ApprovalKind::MfaNotRequired);
/// drop(approval);
/// ```
#[derive(Debug)]
#[must_use = "an approval that is not consumed grants nothing"]
pub struct Approval {
    kind: ApprovalKind,
    txid: Option<Txid>,
}

impl Approval {
    /// How the approval was obtained.
    pub fn kind(&self) -> ApprovalKind {
        self.kind
    }

    /// The Duo transaction behind a push approval.
    pub fn txid(&self) -> Option<&Txid> {
        self.txid.as_ref()
    }
}

/// Why access was denied. Operators see [`DenyReason::as_str`] and the denial's detail in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The config is missing, unreadable, badly permissioned or invalid.
    ConfigUnusable,
    /// The config exempts a user or target although force_mfa is set.
    ConfigContradiction,
    /// Duo could not be reached or answered with an error before any push.
    DuoUnavailable,
    /// Preauth said `allow` but force_mfa forbids bypass.
    BypassRefused,
    /// Preauth said `deny` (locked out, disabled, policy).
    PreauthDeny,
    /// The user has to enroll first.
    Enroll {
        /// Enrollment portal URL from Duo, if any.
        url: Option<String>,
    },
    /// Preauth returned a result this code does not know.
    PreauthUnknown,
    /// The user denied the push.
    PushDenied,
    /// The user marked the push as fraud.
    Fraud,
    /// The Duo account is locked out.
    LockedOut,
    /// Nobody answered the push in time.
    PushTimedOut,
    /// auth or auth_status returned a result this code does not know, or `waiting` as final.
    UnknownResult,
    /// A Duo call failed after the push or passcode was sent.
    ErrorAfterPush,
    /// The user has no device that can receive a push.
    NoPushDevice,
    /// Duo rejected the passcode.
    PasscodeRejected,
    /// Too many wrong passcodes or invalid answers.
    TooManyAttempts,
    /// The user gave no answer (the conversation failed or was closed).
    NoAnswer,
}

impl DenyReason {
    /// Stable name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ConfigUnusable => "config_unusable",
            Self::ConfigContradiction => "config_contradiction",
            Self::DuoUnavailable => "duo_unavailable",
            Self::BypassRefused => "bypass_refused",
            Self::PreauthDeny => "preauth_deny",
            Self::Enroll { .. } => "enroll",
            Self::PreauthUnknown => "preauth_unknown",
            Self::PushDenied => "push_denied",
            Self::Fraud => "fraud",
            Self::LockedOut => "locked_out",
            Self::PushTimedOut => "push_timeout",
            Self::UnknownResult => "unknown_result",
            Self::ErrorAfterPush => "error_after_push",
            Self::NoPushDevice => "no_push_device",
            Self::PasscodeRejected => "passcode_rejected",
            Self::TooManyAttempts => "too_many_attempts",
            Self::NoAnswer => "no_answer",
        }
    }

    /// The standard short message for the user.
    fn default_message(&self) -> String {
        let text = match self {
            Self::ConfigUnusable => {
                "Access denied: the two-factor configuration cannot be used. Contact your administrator."
            }
            Self::ConfigContradiction => {
                "Access denied: the two-factor configuration is inconsistent. Contact your administrator."
            }
            Self::DuoUnavailable => "Access denied: Duo cannot be reached. Try again later.",
            Self::BypassRefused => "Access denied: multi-factor authentication is required.",
            Self::PreauthDeny => "Access denied by Duo.",
            Self::Enroll { url: Some(url) } => {
                return format!(
                    "Access denied: enroll in Duo first: {}",
                    sanitize_for_terminal(&truncate_chars(url, MAX_DUO_TEXT))
                )
            }
            Self::Enroll { url: None } => {
                "Access denied: enroll in Duo first; contact your administrator."
            }
            Self::PreauthUnknown | Self::UnknownResult => {
                "Access denied: unexpected answer from Duo."
            }
            Self::PushDenied => "Duo Push denied.",
            Self::Fraud => "Duo Push reported as fraudulent. Access denied.",
            Self::LockedOut => "Access denied: your Duo account is locked out.",
            Self::PushTimedOut => "Duo Push timed out. Access denied.",
            Self::ErrorAfterPush => "Access denied: Duo did not confirm the login.",
            Self::NoPushDevice => {
                "Access denied: no device that can receive a Duo Push is enrolled for you."
            }
            Self::PasscodeRejected => "Incorrect passcode.",
            Self::TooManyAttempts => "Access denied: too many failed attempts.",
            Self::NoAnswer => "Access denied: no answer.",
        };
        text.to_owned()
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A denial: a reason for logs and a short message that is safe to show to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub reason: DenyReason,
    /// Short, safe to show: no terminal escapes or control characters.
    pub user_message: String,
    /// Operator-facing detail for the log (a Duo error, `status`, `status_msg`); may contain
    /// text from Duo, so it must be escaped when logged (the audit layer does that). Never a
    /// secret.
    pub detail: String,
}

impl Denial {
    /// A denial with the standard user message for `reason`.
    pub fn new(reason: DenyReason, detail: impl Into<String>) -> Self {
        Self {
            user_message: reason.default_message(),
            reason,
            detail: detail.into(),
        }
    }

    /// A denial whose user message is text from Duo (sanitized); falls back to the standard
    /// message when Duo's text is empty after sanitizing.
    fn with_duo_message(reason: DenyReason, duo_text: &str, detail: impl Into<String>) -> Self {
        let shown = sanitize_for_terminal(&truncate_chars(duo_text, MAX_DUO_TEXT));
        let shown = shown.trim();
        let mut denial = Self::new(reason, detail);
        if !shown.is_empty() {
            denial.user_message = shown.to_owned();
        }
        denial
    }
}

/// What to do.
#[derive(Debug)]
#[must_use]
pub enum Decision {
    /// Preauth said `auth`: go on and send the push.
    Continue,
    /// Access granted.
    Grant(Approval),
    /// Not our business (user outside `groups`): PAM_IGNORE, never PAM_SUCCESS.
    Ignore,
    /// Access denied.
    Deny(Denial),
}

impl Decision {
    /// Whether this decision grants access.
    pub fn is_grant(&self) -> bool {
        matches!(self, Self::Grant(_))
    }

    /// Stable name for logs: `continue`, `allow`, `ignore` or `deny`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::Grant(_) => "allow",
            Self::Ignore => "ignore",
            Self::Deny(_) => "deny",
        }
    }
}

/// The forced-MFA policy check. Pure: same input, same decision.
pub fn decide(input: &PolicyInput, situation: Situation<'_>) -> Decision {
    let forced = input.force_mfa;
    match situation {
        Situation::ConfigUnusable { fail_open_allowed } => {
            if !forced && input.fail_open && fail_open_allowed {
                grant(ApprovalKind::FailOpen, None)
            } else {
                deny(DenyReason::ConfigUnusable, "configuration unusable")
            }
        }
        Situation::UserExempt => {
            if forced {
                deny(
                    DenyReason::ConfigContradiction,
                    "user exempted by groups although force_mfa = yes",
                )
            } else {
                Decision::Ignore
            }
        }
        Situation::TargetMfaOff => {
            if forced {
                deny(
                    DenyReason::ConfigContradiction,
                    "target has mfa = no although force_mfa = yes",
                )
            } else {
                grant(ApprovalKind::MfaNotRequired, None)
            }
        }
        Situation::DuoUnavailable(error) => {
            if !forced && input.fail_open {
                grant(ApprovalKind::FailOpen, None)
            } else {
                deny(DenyReason::DuoUnavailable, error.to_string())
            }
        }
        Situation::Preauth(preauth) => decide_preauth(input, preauth),
        Situation::PushFinal { txid, status } => match status.result {
            AuthResult::Allow => grant(ApprovalKind::Push, Some(txid.clone())),
            _ => Decision::Deny(final_denial(status, DenyReason::PushDenied)),
        },
        Situation::PasscodeFinal(status) => match status.result {
            AuthResult::Allow => grant(ApprovalKind::Passcode, None),
            _ => Decision::Deny(final_denial(status, DenyReason::PasscodeRejected)),
        },
        Situation::ErrorAfterPush(error) => deny(DenyReason::ErrorAfterPush, error.to_string()),
    }
}

fn decide_preauth(input: &PolicyInput, preauth: &Preauth) -> Decision {
    let detail = || {
        format!(
            "preauth result={} status_msg={}",
            preauth_result_name(&preauth.result),
            preauth.status_msg
        )
    };
    match &preauth.result {
        PreauthResult::Auth => Decision::Continue,
        PreauthResult::Allow => {
            if input.force_mfa && !input.allow_bypass {
                deny(DenyReason::BypassRefused, detail())
            } else {
                grant(ApprovalKind::Bypass, None)
            }
        }
        PreauthResult::Deny => Decision::Deny(Denial::with_duo_message(
            DenyReason::PreauthDeny,
            &preauth.status_msg,
            detail(),
        )),
        PreauthResult::Enroll => Decision::Deny(Denial::new(
            DenyReason::Enroll {
                url: preauth.enroll_portal_url.clone(),
            },
            detail(),
        )),
        PreauthResult::Unknown(_) => deny(DenyReason::PreauthUnknown, detail()),
    }
}

/// The denial for a final auth/auth_status answer that is not `allow`. `status` picks the
/// reason (for messages and logs only); `plain` is the reason for an ordinary `deny`.
fn final_denial(status: &AuthStatus, plain: DenyReason) -> Denial {
    let reason = match &status.result {
        AuthResult::Deny => match status.status.as_str() {
            "fraud" => DenyReason::Fraud,
            "locked_out" => DenyReason::LockedOut,
            "timeout" => DenyReason::PushTimedOut,
            _ => plain,
        },
        // `waiting` given as final, an unknown result, or (unreachable here) allow.
        AuthResult::Waiting | AuthResult::Unknown(_) | AuthResult::Allow => {
            DenyReason::UnknownResult
        }
    };
    let result = match &status.result {
        AuthResult::Allow => "allow",
        AuthResult::Deny => "deny",
        AuthResult::Waiting => "waiting",
        AuthResult::Unknown(other) => other.as_str(),
    };
    Denial::new(
        reason,
        format!(
            "result={result} status={} status_msg={}",
            status.status, status.status_msg
        ),
    )
}

fn preauth_result_name(result: &PreauthResult) -> &str {
    match result {
        PreauthResult::Auth => "auth",
        PreauthResult::Allow => "allow",
        PreauthResult::Deny => "deny",
        PreauthResult::Enroll => "enroll",
        PreauthResult::Unknown(other) => other,
    }
}

/// The only constructor of [`Approval`].
fn grant(kind: ApprovalKind, txid: Option<Txid>) -> Decision {
    Decision::Grant(Approval { kind, txid })
}

fn deny(reason: DenyReason, detail: impl Into<String>) -> Decision {
    Decision::Deny(Denial::new(reason, detail))
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
