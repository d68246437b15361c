//! What a username's prefix makes mock-duo do.
//!
//! | prefix | preauth | push |
//! |---|---|---|
//! | `lockout` | deny ("Your account is locked") | deny, status `locked_out` |
//! | `escmsg` | deny, with terminal escapes, OSC, CR, C1 and a bidi override in `status_msg` (hostile text for display tests) | deny |
//! | `enroll` | enroll, with `enroll_portal_url` | deny |
//! | `bypass` | allow | allow, status `bypass` |
//! | `nopush` | auth, one device without the push capability | push refused (400) |
//! | `http500` / `http503` / `http429` | that HTTP status, Duo-shaped FAIL body (429 with `Retry-After: 1` unless `http429noretry`) | same |
//! | `badjson` | 200 with a body that is not JSON (not BSON on REST v1) | same |
//! | `huge` | 200 with a 2 MiB body | same |
//! | `hang` | never answers while the client waits | same |
//! | `deny` | auth | deny, status `deny` |
//! | `fraud` | auth | deny, status `fraud` |
//! | `timeout` | auth | pending until the push expiry, then deny, status `timeout` |
//! | `slow` | auth | allow after 2 s |
//! | `manual` | auth | pending until approved or denied through the control API; expires like `timeout` |
//! | `f-<fault>-<stage>` | the fault at that stage (see [`crate::mock::fault`]), otherwise as for anyone else | same |
//! | anything else | auth | allow after `--approve-delay-ms` |
//!
//! A scripted outcome (`POST /mock/script`) replaces the prefix's push outcome for that user's
//! next pushes, in order.

use std::time::Duration;

/// What an endpoint answers before any Duo logic runs, chosen by username prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Answer normally.
    Normal,
    /// Answer this HTTP status with a FAIL body; `retry_after` adds `Retry-After: 1`.
    HttpError {
        /// The HTTP status.
        status: u16,
        /// Whether to send `Retry-After: 1`.
        retry_after: bool,
    },
    /// A 200 whose body cannot be parsed.
    BadBody,
    /// A 200 with a 2 MiB body.
    Huge,
    /// Never answer.
    Hang,
}

/// Chooses the transport behaviour for `username`.
pub fn transport_for(username: &str) -> Transport {
    if username.starts_with("http500") {
        Transport::HttpError {
            status: 500,
            retry_after: false,
        }
    } else if username.starts_with("http503") {
        Transport::HttpError {
            status: 503,
            retry_after: false,
        }
    } else if username.starts_with("http429noretry") {
        Transport::HttpError {
            status: 429,
            retry_after: false,
        }
    } else if username.starts_with("http429") {
        Transport::HttpError {
            status: 429,
            retry_after: true,
        }
    } else if username.starts_with("badjson") {
        Transport::BadBody
    } else if username.starts_with("huge") {
        Transport::Huge
    } else if username.starts_with("hang") {
        Transport::Hang
    } else {
        Transport::Normal
    }
}

/// The preauth answer for a username.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreauthKind {
    /// `result: deny`, locked out.
    Lockout,
    /// `result: deny` with a hostile `status_msg` ([`HOSTILE_STATUS_MSG`]).
    EscapeMessage,
    /// `result: enroll`.
    Enroll,
    /// `result: allow` (bypass).
    Bypass,
    /// `result: auth` with a device that cannot receive pushes.
    NoPush,
    /// `result: auth` with the standard push-capable device.
    Auth,
}

/// Chooses the preauth answer for `username`.
pub fn preauth_for(username: &str) -> PreauthKind {
    if username.starts_with("lockout") {
        PreauthKind::Lockout
    } else if username.starts_with("escmsg") {
        PreauthKind::EscapeMessage
    } else if username.starts_with("enroll") {
        PreauthKind::Enroll
    } else if username.starts_with("bypass") {
        PreauthKind::Bypass
    } else if username.starts_with("nopush") {
        PreauthKind::NoPush
    } else {
        PreauthKind::Auth
    }
}

/// How a push ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Approved after the delay.
    Allow(Duration),
    /// Approved at once with status `bypass` (bypass users).
    Bypass,
    /// Denied by the user.
    Deny,
    /// Denied and reported as fraud.
    Fraud,
    /// Denied: the account is locked out.
    LockedOut,
    /// Never answered: denied with status `timeout` at the push expiry.
    Timeout,
    /// Waits for the control API; denied with status `timeout` at the push expiry.
    Manual,
}

impl PushOutcome {
    /// Parses a scripted outcome (`allow`, `deny`, `timeout`, `fraud`, `manual`, `slow`).
    pub fn from_script(word: &str, approve_delay: Duration) -> Option<Self> {
        match word {
            "allow" => Some(Self::Allow(approve_delay)),
            "slow" => Some(Self::Allow(SLOW_DELAY)),
            "deny" => Some(Self::Deny),
            "fraud" => Some(Self::Fraud),
            "timeout" => Some(Self::Timeout),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// The `status_msg` of an `escmsg` user's preauth deny: a screen clear, an OSC window-title
/// set, a carriage return and cursor-up that would overwrite the previous line with a fake
/// approval, an 8-bit CSI and a right-to-left override. A display that shows Duo's text must
/// strip all of it.
pub const HOSTILE_STATUS_MSG: &str = "Access denied\x1b[2J\x1b]0;pwned-title\x07\r\x1b[1A\x1b[2KFAKE: Duo Push approved.\x1b[0m\u{9b}31m\u{202e}";

/// The delay before a `slow` user's push is approved.
pub const SLOW_DELAY: Duration = Duration::from_secs(2);

/// The push outcome a username's prefix chooses.
pub fn push_outcome_for(username: &str, approve_delay: Duration) -> PushOutcome {
    if username.starts_with("deny") {
        PushOutcome::Deny
    } else if username.starts_with("fraud") {
        PushOutcome::Fraud
    } else if username.starts_with("timeout") {
        PushOutcome::Timeout
    } else if username.starts_with("slow") {
        PushOutcome::Allow(SLOW_DELAY)
    } else if username.starts_with("manual") {
        PushOutcome::Manual
    } else if username.starts_with("lockout") {
        PushOutcome::LockedOut
    } else if username.starts_with("bypass") {
        PushOutcome::Bypass
    } else if username.starts_with("enroll") || username.starts_with("escmsg") {
        PushOutcome::Deny
    } else {
        PushOutcome::Allow(approve_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_prefixes_win_over_shorter_ones() {
        assert_eq!(
            transport_for("http429noretry-a"),
            Transport::HttpError {
                status: 429,
                retry_after: false
            }
        );
        assert_eq!(
            transport_for("http429-a"),
            Transport::HttpError {
                status: 429,
                retry_after: true
            }
        );
        assert_eq!(transport_for("alice"), Transport::Normal);
        assert_eq!(
            push_outcome_for("denyme", Duration::ZERO),
            PushOutcome::Deny
        );
        assert_eq!(preauth_for("nopush1"), PreauthKind::NoPush);
    }
}
