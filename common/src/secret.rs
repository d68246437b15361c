//! Secrets: the integration secret key and Duo passcodes.
//!
//! A [`Secret`] never prints its contents (`Debug` and `Display` show `<secret>`), is zeroed when
//! dropped, and is compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string (the `skey`, a passcode). Zeroed on drop, redacted in every format.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value. The caller's copy should not outlive this one.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret's bytes, for HMAC keys only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret as text, for building a request parameter (a passcode).
    pub fn expose_str(&self) -> &str {
        &self.0
    }

    /// Length in bytes (for validation messages, never the value).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{s}"), "<secret>");
        assert!(!format!("{s:#?}").contains("hunter2"));
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(Secret::new("a".into()), Secret::new("a".into()));
        assert_ne!(Secret::new("a".into()), Secret::new("b".into()));
        assert_ne!(Secret::new("a".into()), Secret::new("ab".into()));
    }
}
