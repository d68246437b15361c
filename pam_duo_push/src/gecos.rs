//! The Duo username from the GECOS field (`send_gecos`, `gecos_username_pos`, `gecos_delim`).
//!
//! duo_unix semantics: with `send_gecos = yes` the whole GECOS field is the Duo username; with
//! `gecos_username_pos = N` the field is split at `gecos_delim` (default `,`) and the N-th part
//! (counting from 1) is the Duo username.
//!
//! One deliberate difference: duo_unix falls back to the login name when the GECOS field is empty
//! or has fewer parts. An administrator who maps login names to Duo usernames through GECOS does
//! so because the two differ; sending the login name instead could push a different person's
//! phone. Here a missing or empty part is an error and the login is denied.

use std::fmt;

/// Why no Duo username could be taken from GECOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GecosError {
    /// The GECOS field is empty.
    Empty,
    /// `gecos_username_pos` is 0 (positions count from 1).
    ZeroPosition,
    /// The field has fewer parts than `gecos_username_pos`, or that part is empty.
    NoSuchPart { position: u32 },
}

impl fmt::Display for GecosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the GECOS field is empty"),
            Self::ZeroPosition => f.write_str("gecos_username_pos counts from 1, got 0"),
            Self::NoSuchPart { position } => write!(
                f,
                "the GECOS field has no non-empty part at gecos_username_pos = {position}"
            ),
        }
    }
}

impl std::error::Error for GecosError {}

/// Takes the Duo username out of a GECOS field.
///
/// `position` is `gecos_username_pos` (from 1) when set; `None` means the whole field
/// (`send_gecos = yes`). Surrounding white space of the chosen part is kept out of the name.
pub fn username_from_gecos(
    gecos: &str,
    position: Option<u32>,
    delim: char,
) -> Result<String, GecosError> {
    if gecos.is_empty() {
        return Err(GecosError::Empty);
    }
    let Some(position) = position else {
        return Ok(gecos.to_owned());
    };
    let index = usize::try_from(position.checked_sub(1).ok_or(GecosError::ZeroPosition)?)
        .map_err(|_| GecosError::NoSuchPart { position })?;
    gecos
        .split(delim)
        .nth(index)
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .ok_or(GecosError::NoSuchPart { position })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_gecos_uses_the_whole_field() {
        assert_eq!(
            username_from_gecos("alice.smith", None, ',').unwrap(),
            "alice.smith"
        );
        assert_eq!(
            username_from_gecos("Alice Smith,Room 1,555", None, ',').unwrap(),
            "Alice Smith,Room 1,555"
        );
    }

    #[test]
    fn a_position_picks_that_part_counting_from_one() {
        let gecos = "Alice Smith,Room 1,555-1234,asmith";
        assert_eq!(
            username_from_gecos(gecos, Some(1), ',').unwrap(),
            "Alice Smith"
        );
        assert_eq!(username_from_gecos(gecos, Some(4), ',').unwrap(), "asmith");
        assert_eq!(
            username_from_gecos("x/y/duo-alice", Some(3), '/').unwrap(),
            "duo-alice"
        );
        assert_eq!(
            username_from_gecos("a, bob ,c", Some(2), ',').unwrap(),
            "bob"
        );
    }

    #[test]
    fn missing_or_empty_parts_are_errors_not_a_fallback_to_the_login_name() {
        assert_eq!(username_from_gecos("", None, ','), Err(GecosError::Empty));
        assert_eq!(
            username_from_gecos("", Some(1), ','),
            Err(GecosError::Empty)
        );
        assert_eq!(
            username_from_gecos("a,b", Some(3), ','),
            Err(GecosError::NoSuchPart { position: 3 })
        );
        assert_eq!(
            username_from_gecos("a,,c", Some(2), ','),
            Err(GecosError::NoSuchPart { position: 2 })
        );
        assert_eq!(
            username_from_gecos("a,b", Some(0), ','),
            Err(GecosError::ZeroPosition)
        );
        assert!(username_from_gecos("a,b", Some(u32::MAX), ',').is_err());
    }
}
