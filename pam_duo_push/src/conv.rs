//! The PAM conversation as the flow's [`UserChannel`].
//!
//! Under sshd, PAM_TEXT_INFO and PAM_ERROR_MSG are queued and shown with the next prompt (or at
//! the end of keyboard-interactive authentication). With `autopush = yes` the "Duo Push sent"
//! line therefore reaches the user after the phone has been answered; with `autopush = no` the
//! flow asks first (PAM_PROMPT_ECHO_ON), so the user sees what is about to happen.
//!
//! With `PAM_SILENT` informational and error messages are not sent; prompts still are (they
//! need an answer). Messages longer than `PAM_MAX_MSG_SIZE` (512 bytes) are cut, since some
//! applications refuse longer ones.

use duo_push_common::flow::UserChannel;
use pam::constants::{PamMessageStyle, PAM_ERROR_MSG, PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO};
use pam::conv::Conv;
use pam::module::PamHandle;

/// `PAM_MAX_MSG_SIZE` from `<security/_pam_types.h>`, including the terminating NUL.
pub const MAX_MSG_BYTES: usize = 512;

/// Cuts `msg` to fit a PAM message (on a character boundary) and removes NUL bytes, which a C
/// string cannot carry.
pub fn fit_message(msg: &str) -> String {
    let mut out: String = msg.chars().filter(|&c| c != '\0').collect();
    if out.len() >= MAX_MSG_BYTES {
        let mut cut = MAX_MSG_BYTES - 1;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// The conversation of one PAM handle.
pub struct PamConversation<'a> {
    pamh: &'a PamHandle,
    silent: bool,
}

impl std::fmt::Debug for PamConversation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PamConversation")
            .field("silent", &self.silent)
            .finish_non_exhaustive()
    }
}

impl<'a> PamConversation<'a> {
    /// A conversation over `pamh`'s `PAM_CONV` item; `silent` is the `PAM_SILENT` flag.
    pub fn new(pamh: &'a PamHandle, silent: bool) -> Self {
        Self { pamh, silent }
    }

    /// Sends one message; `Some(answer)` only for prompts that were answered.
    fn send(&self, style: PamMessageStyle, msg: &str) -> Option<String> {
        let conv = match self.pamh.get_item::<Conv<'_>>() {
            Ok(Some(conv)) => conv,
            _ => return None,
        };
        let reply = conv.send(style, &fit_message(msg)).ok()??;
        // The SecretBytes buffer is zeroed when dropped; the flow zeroes the copy.
        reply.as_str().ok().map(str::to_owned)
    }
}

impl UserChannel for PamConversation<'_> {
    fn info(&mut self, msg: &str) {
        if !self.silent {
            let _ = self.send(PAM_TEXT_INFO, msg);
        }
    }

    fn error(&mut self, msg: &str) {
        if !self.silent {
            let _ = self.send(PAM_ERROR_MSG, msg);
        }
    }

    fn prompt(&mut self, msg: &str) -> Option<String> {
        self.send(PAM_PROMPT_ECHO_ON, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_pass_unchanged() {
        assert_eq!(fit_message("Duo Push sent."), "Duo Push sent.");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let fitted = fit_message(&long);
        assert!(fitted.len() < MAX_MSG_BYTES);
        assert!(fitted.len() >= MAX_MSG_BYTES - 2);
        assert!(fitted.chars().all(|c| c == 'é'));
    }

    #[test]
    fn nul_bytes_are_removed() {
        assert_eq!(fit_message("a\0b"), "ab");
    }
}
