//! The push flow shared by the PAM module (vault hop) and the shim (target hop):
//! preauth, device choice, optional passcode prompt, push, and polling until a final answer or
//! `push_timeout`.
//!
//! Every Duo call is bounded here with `tokio::time::timeout` even though the client has its
//! own timeouts, so a hung call can only end in the policy's answer for an unavailable Duo
//! (before the push) or in a denial (after it). All outcomes go through [`decide`], which is the
//! only source of an [`Approval`](crate::policy::Approval).

use std::time::Duration;

use tokio::time::{sleep_until, timeout, Instant};
use zeroize::Zeroize;

use crate::api::{AuthResult, Device, DuoApi, DuoError, PushRequest, Timeouts, Txid};
use crate::audit::sanitize_for_terminal;
use crate::policy::{decide, ApprovalKind, Decision, Denial, DenyReason, PolicyInput, Situation};
use crate::secret::Secret;

/// Minimum time between the starts of two auth_status polls, so that a server answering
/// `waiting` instantly cannot make the flow spin.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest device or user name shown in a message, in characters.
const MAX_NAME_CHARS: usize = 80;

/// How the flow talks to the user (PAM conversation, the shim's terminal).
pub trait UserChannel {
    /// An informational message.
    fn info(&mut self, msg: &str);
    /// An error message (denials).
    fn error(&mut self, msg: &str);
    /// Asks a question and returns the answer; `None` means no answer (the conversation
    /// failed or was closed), which denies.
    fn prompt(&mut self, msg: &str) -> Option<String>;
}

/// The settings the flow needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSettings {
    /// The policy switches.
    pub policy: PolicyInput,
    /// `https_timeout` for every call, `push_timeout` for waiting on the phone.
    pub timeouts: Timeouts,
    /// Push at once (true) or first offer the choice between a push and a passcode (false).
    pub autopush: bool,
    /// How many passcode attempts (or invalid answers) before giving up; 0 counts as 1.
    pub prompts: u8,
}

/// What the flow did.
#[derive(Debug)]
pub struct FlowOutcome {
    /// The decision. A `Grant` carries the [`Approval`](crate::policy::Approval).
    pub decision: Decision,
    /// The push's transaction id, when a push was sent (also on denial).
    pub txid: Option<Txid>,
    /// The device id the push went to (or would have gone to).
    pub device: Option<String>,
    /// How many Duo requests were made.
    pub requests: u32,
    /// How many passcodes were submitted to Duo.
    pub passcode_attempts: u32,
}

/// Runs the flow for one hop. `push` carries the subject and the push's labels; its `device`
/// field is replaced by the chosen push-capable device.
pub async fn authenticate<A: DuoApi, U: UserChannel>(
    api: &A,
    settings: &FlowSettings,
    push: &PushRequest,
    ui: &mut U,
) -> FlowOutcome {
    let mut run = Run {
        api,
        settings,
        overall: Instant::now() + settings.timeouts.https + settings.timeouts.push,
        outcome_txid: None,
        device: None,
        requests: 0,
        passcode_attempts: 0,
    };
    let decision = run.steps(push, ui).await;
    report(&decision, ui);
    FlowOutcome {
        decision,
        txid: run.outcome_txid,
        device: run.device,
        requests: run.requests,
        passcode_attempts: run.passcode_attempts,
    }
}

/// Tells the user the outcome.
fn report<U: UserChannel>(decision: &Decision, ui: &mut U) {
    match decision {
        Decision::Grant(approval) => match approval.kind() {
            ApprovalKind::Push => ui.info("Duo Push approved."),
            ApprovalKind::Passcode => ui.info("Duo passcode accepted."),
            // Bypass, fail-open and mfa = no are logged for operators, not announced.
            ApprovalKind::Bypass | ApprovalKind::FailOpen | ApprovalKind::MfaNotRequired => {}
        },
        Decision::Deny(denial) => ui.error(&sanitize_for_terminal(&denial.user_message)),
        Decision::Continue | Decision::Ignore => {}
    }
}

struct Run<'a, A> {
    api: &'a A,
    settings: &'a FlowSettings,
    /// The login's overall bound: start + `https_timeout` + `push_timeout`, moved later by the
    /// time spent waiting for the user at a prompt. However slowly Duo answers at each stage,
    /// the flow ends by then.
    overall: Instant,
    outcome_txid: Option<Txid>,
    device: Option<String>,
    requests: u32,
    passcode_attempts: u32,
}

/// What the user chose at the prompt.
enum Choice {
    Push,
    Finished(Decision),
}

impl<A: DuoApi> Run<'_, A> {
    fn policy(&self) -> &PolicyInput {
        &self.settings.policy
    }

    /// The bound of one call to Duo: `https_timeout`, or less when the login's overall bound
    /// is nearer.
    fn call_bound(&self) -> Duration {
        self.settings
            .timeouts
            .https
            .min(self.overall.saturating_duration_since(Instant::now()))
    }

    async fn steps<U: UserChannel>(&mut self, push: &PushRequest, ui: &mut U) -> Decision {
        let https = self.settings.timeouts.https;
        self.overall = Instant::now() + https + self.settings.timeouts.push;

        self.requests = self.requests.saturating_add(1);
        let preauth = match timeout(https, self.api.preauth(&push.subject)).await {
            Ok(Ok(preauth)) => preauth,
            Ok(Err(e)) => return decide(self.policy(), Situation::DuoUnavailable(&e)),
            Err(_elapsed) => {
                return decide(self.policy(), Situation::DuoUnavailable(&DuoError::Timeout))
            }
        };
        match decide(self.policy(), Situation::Preauth(&preauth)) {
            Decision::Continue => {}
            other => return other,
        }

        let Some(device) = preauth.devices.iter().find(|d| d.can_push()) else {
            return Decision::Deny(Denial::new(
                DenyReason::NoPushDevice,
                format!(
                    "preauth listed {} device(s), none with the push capability",
                    preauth.devices.len()
                ),
            ));
        };
        self.device = Some(device.device.clone());
        let device_name = shown_device_name(device);

        if !self.settings.autopush {
            match self.prompt_for_choice(push, &device_name, ui).await {
                Choice::Push => {}
                Choice::Finished(decision) => return decision,
            }
        }

        let mut request = push.clone();
        request.device = device.device.clone();
        self.push_and_wait(&request, &device_name, ui).await
    }

    /// Offers a push or a passcode; handles passcodes until one is accepted, the user asks for
    /// a push, or the attempts run out.
    async fn prompt_for_choice<U: UserChannel>(
        &mut self,
        push: &PushRequest,
        device_name: &str,
        ui: &mut U,
    ) -> Choice {
        let user = push
            .display_username
            .as_deref()
            .unwrap_or(&push.subject.username);
        let question = format!(
            "Duo two-factor login for {}\n\nPress Enter to send a Duo Push to {device_name}, or type a passcode: ",
            shown_name(user)
        );
        let allowed = u32::from(self.settings.prompts.max(1));
        let mut failures: u32 = 0;
        loop {
            let asked = Instant::now();
            let answered = ui.prompt(&question);
            // Time the user spends typing is not Duo's: it does not count against the bound.
            self.overall += asked.elapsed();
            let Some(mut answer) = answered else {
                return Choice::Finished(Decision::Deny(Denial::new(
                    DenyReason::NoAnswer,
                    "the conversation returned no answer",
                )));
            };
            let trimmed = answer.trim();
            if trimmed.is_empty() {
                answer.zeroize();
                return Choice::Push;
            }
            if is_passcode(trimmed) {
                let passcode = Secret::new(trimmed.to_owned());
                answer.zeroize();
                self.passcode_attempts = self.passcode_attempts.saturating_add(1);
                self.requests = self.requests.saturating_add(1);
                let reply = timeout(
                    self.call_bound(),
                    self.api.passcode(&push.subject, &passcode),
                )
                .await;
                drop(passcode);
                let decision = match reply {
                    Ok(Ok(status)) => decide(self.policy(), Situation::PasscodeFinal(&status)),
                    // The passcode may have reached Duo: never fail open after it.
                    Ok(Err(e)) => decide(self.policy(), Situation::ErrorAfterPush(&e)),
                    Err(_elapsed) => {
                        decide(self.policy(), Situation::ErrorAfterPush(&DuoError::Timeout))
                    }
                };
                match decision {
                    Decision::Deny(denial) if denial.reason == DenyReason::PasscodeRejected => {
                        failures = failures.saturating_add(1);
                        if failures >= allowed {
                            return Choice::Finished(too_many(failures, &denial.detail));
                        }
                        ui.error(&denial.user_message);
                    }
                    other => return Choice::Finished(other),
                }
            } else {
                answer.zeroize();
                failures = failures.saturating_add(1);
                if failures >= allowed {
                    return Choice::Finished(too_many(failures, "invalid answer at the prompt"));
                }
                ui.error("Press Enter for a Duo Push, or type a passcode of 6 to 8 digits.");
            }
        }
    }

    async fn push_and_wait<U: UserChannel>(
        &mut self,
        request: &PushRequest,
        device_name: &str,
        ui: &mut U,
    ) -> Decision {
        let push_timeout = self.settings.timeouts.push;

        self.requests = self.requests.saturating_add(1);
        let txid = match timeout(self.call_bound(), self.api.push(request)).await {
            Ok(Ok(txid)) => txid,
            // Whatever failed, the push may have reached Duo (and the phone): never fail open.
            Ok(Err(e)) => return decide(self.policy(), Situation::ErrorAfterPush(&e)),
            Err(_elapsed) => {
                return decide(self.policy(), Situation::ErrorAfterPush(&DuoError::Timeout))
            }
        };
        self.outcome_txid = Some(txid.clone());
        let deadline = (Instant::now() + push_timeout).min(self.overall);
        ui.info(&format!(
            "Duo Push sent to {device_name}. Approve it on your phone (waiting up to {} s)...",
            push_timeout.as_secs()
        ));

        loop {
            let poll_start = Instant::now();
            let Some(remaining) = deadline
                .checked_duration_since(poll_start)
                .filter(|d| !d.is_zero())
            else {
                return timed_out(push_timeout, &txid);
            };
            self.requests = self.requests.saturating_add(1);
            // The client stops at the deadline itself; the timeout also bounds an API double
            // that ignores it.
            let poll = self.api.auth_status(&txid, deadline);
            let status = match timeout(remaining, poll).await {
                Ok(Ok(status)) => status,
                // The client's own deadline expiring is the push timing out, not a Duo error.
                Ok(Err(DuoError::Timeout)) if Instant::now() >= deadline => {
                    return timed_out(push_timeout, &txid)
                }
                Ok(Err(e)) => return decide(self.policy(), Situation::ErrorAfterPush(&e)),
                Err(_elapsed) => return timed_out(push_timeout, &txid),
            };
            if status.result != AuthResult::Waiting {
                return decide(
                    self.policy(),
                    Situation::PushFinal {
                        txid: &txid,
                        status: &status,
                    },
                );
            }
            // Still waiting: poll again, but not more often than MIN_POLL_INTERVAL.
            let next = poll_start + MIN_POLL_INTERVAL;
            if next >= deadline {
                sleep_until(deadline).await;
                return timed_out(push_timeout, &txid);
            }
            sleep_until(next).await;
        }
    }
}

fn timed_out(push_timeout: Duration, txid: &Txid) -> Decision {
    Decision::Deny(Denial::new(
        DenyReason::PushTimedOut,
        format!(
            "no final answer for txid {txid} within push_timeout ({} s)",
            push_timeout.as_secs()
        ),
    ))
}

fn too_many(failures: u32, last: &str) -> Decision {
    Decision::Deny(Denial::new(
        DenyReason::TooManyAttempts,
        format!("{failures} failed attempt(s); last: {last}"),
    ))
}

/// A passcode is 6 to 8 ASCII digits.
fn is_passcode(s: &str) -> bool {
    (6..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn shown_name(s: &str) -> String {
    sanitize_for_terminal(&s.chars().take(MAX_NAME_CHARS).collect::<String>())
}

fn shown_device_name(device: &Device) -> String {
    let name = shown_name(&device.display_name);
    let name = name.trim();
    if name.is_empty() {
        "your phone".to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passcodes_are_six_to_eight_digits() {
        assert!(is_passcode("123456"));
        assert!(is_passcode("12345678"));
        assert!(!is_passcode("12345"));
        assert!(!is_passcode("123456789"));
        assert!(!is_passcode("12345a"));
        assert!(!is_passcode("\u{661}23456"));
    }

    #[test]
    fn device_names_are_sanitized_and_never_empty() {
        let mut d = Device {
            display_name: "iOS \u{1b}[31m(XXX-1234)".to_owned(),
            ..Device::default()
        };
        assert_eq!(shown_device_name(&d), "iOS (XXX-1234)");
        d.display_name = "\u{1b}[2J".to_owned();
        assert_eq!(shown_device_name(&d), "your phone");
    }
}
