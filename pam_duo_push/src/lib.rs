//! `pam_duo_push.so`: the vault-login Duo Push as a PAM module.
//!
//! ```text
//! auth required pam_unix.so
//! auth required pam_duo_push.so conf=/etc/duo_push/duo_push.conf
//! ```
//!
//! # Arguments
//!
//! `conf=PATH` (absolute; default `/etc/duo_push/duo_push.conf`) and `debug` (more log lines).
//! Any other argument, a repeated `conf=`, or a relative path makes `pam_sm_authenticate` log
//! the problem and return PAM_AUTH_ERR: a typo in a `required` line locks the door.
//!
//! # What `pam_sm_authenticate` returns
//!
//! | outcome | code |
//! |---|---|
//! | push approved, passcode accepted | PAM_SUCCESS |
//! | preauth `allow` (bypass): force_mfa = no, or allow_bypass = yes | PAM_SUCCESS |
//! | Duo or config unusable, `failmode = safe`, force_mfa = no (logged as fail-open) | PAM_SUCCESS |
//! | user outside `groups` (only possible with force_mfa = no) | PAM_IGNORE, never PAM_SUCCESS |
//! | push denied, fraud, locked out, timed out; preauth deny or enroll | PAM_AUTH_ERR |
//! | Duo unreachable, 5xx, 401 (bad keys), malformed reply, config unusable | PAM_AUTH_ERR (unless fail-open above) |
//! | any error after the push was sent | PAM_AUTH_ERR |
//! | `prompts` passcode attempts used up (`autopush = no`) | PAM_MAXTRIES |
//! | user name empty, over 256 bytes or with control characters; user not in passwd when `groups` or GECOS needs it | PAM_USER_UNKNOWN |
//! | unknown module argument, no user name, group/passwd lookup error, bad GECOS | PAM_AUTH_ERR |
//! | a panic (a bug) | PAM_AUTH_ERR, logged |
//!
//! The one mapping from a policy decision to a code is [`codes::decision_code`]; only a
//! [`Decision::Grant`](duo_push_common::policy::Decision::Grant), which carries the policy's
//! `Approval`, becomes PAM_SUCCESS.
//!
//! To see PAM_IGNORE is not success: with
//! `auth [success=done ignore=ignore default=die] pam_duo_push.so` followed by
//! `auth required pam_deny.so`, an exempt user falls through to pam_deny.
//!
//! # The other hooks
//!
//! - `pam_sm_setcred`: PAM_SUCCESS. There are no credentials to establish or delete; failing
//!   here would break `pam_setcred` after a successful login.
//! - `pam_sm_acct_mgmt`: PAM_IGNORE. This module does no account management; stack it with
//!   `account required pam_unix.so` (if every account module ignores, libpam denies).
//! - `pam_sm_open_session`, `pam_sm_close_session`: PAM_IGNORE.
//! - `pam_sm_chauthtok`: PAM_IGNORE; Duo has no password to change here.
//! - A panic in any hook: PAM_AUTH_ERR, logged.
//!
//! # Messages and sshd
//!
//! The user sees messages through the PAM conversation: "Duo Push sent to iOS (XXX-XXX-1234).
//! Approve it on your phone..." as PAM_TEXT_INFO, denials and enrollment URLs as PAM_ERROR_MSG
//! (and in the log). sshd shows PAM_TEXT_INFO only together with the next prompt, so with
//! `autopush = yes` (the default) that line arrives after the phone was answered. With
//! `autopush = no` the module first asks (PAM_PROMPT_ECHO_ON) "Press Enter to send a Duo Push to
//! <device>, or type a passcode:"; Enter sends the push, a Duo passcode is checked instead.
//!
//! # Logs
//!
//! syslog, facility LOG_AUTHPRIV, prefix `pam_duo_push(<service>:auth)`, over `/dev/log`
//! without `openlog` (the host's identity stays). One line per decision with user, rhost,
//! result, reason and txid; user-controlled strings are escaped. `debug` adds detail lines.
//!
//! # Process model
//!
//! Each call builds its own current-thread tokio runtime and shuts it down (with a timeout)
//! before returning; nothing is kept between hooks, because OpenSSH authenticates in a forked
//! child. All unsafe code is in [`ffi`].
#![deny(unsafe_code)]

pub mod args;
pub mod codes;
pub mod conv;
#[allow(unsafe_code)]
pub mod ffi;
pub mod groups;
pub mod hooks;
pub mod logic;

pub use codes::PamCode;
pub use logic::Environment;
