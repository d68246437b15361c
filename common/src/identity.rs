//! Who Duo is asked about, and from where. The PAM module and the shim both call these
//! functions, so one proxy user is the same Duo user, seen from the same address, at both hops.
//!
//! # The Duo username
//!
//! duo_unix's keys, with duo_unix's meaning:
//!
//! * neither `send_gecos` nor `gecos_username_pos`: the login name;
//! * `gecos_username_pos = N`: the GECOS field is split at every `gecos_delim` (default `,`)
//!   and part N, counting from 1, is the Duo username (this wins over `send_gecos`, as in
//!   duo_unix);
//! * `send_gecos = yes` alone: the whole GECOS field.
//!
//! The chosen text is used **as it is**, surrounding blanks included, exactly like duo_unix's
//! `duo_split_at()`: a site moving from pam_duo sends Duo the same names it sent before.
//!
//! Where duo_unix would fall back to the login name (empty field, too few parts, empty part),
//! this code returns an error and the caller denies: an administrator maps login names through
//! GECOS because the two differ, and the login name could be another person's Duo account. A
//! part that is only blanks counts as empty. A name longer than [`MAX_DUO_USERNAME_BYTES`] or
//! with a control character is refused too (no Duo username looks like that; it would only
//! reach Duo's logs and the phone's screen).
//!
//! # `ipaddr`
//!
//! Duo's `ipaddr` is the client's address. When it is unknown (PAM_RHOST is empty or a host
//! name; no `SSH_CONNECTION` for the shim) and `fallback_local_ip = yes`, duo_unix sends this
//! host's own address instead; [`duo_ipaddr`] does the same with [`local_ipv4`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};

/// Longest Duo username accepted, in bytes.
pub const MAX_DUO_USERNAME_BYTES: usize = 256;

/// Where [`local_ipv4`] pretends to send to: TEST-NET-1 (RFC 5737), the discard port. A UDP
/// `connect` only picks a route and a source address; no packet leaves the host.
const ROUTE_PROBE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9);

/// Why no Duo username could be chosen. `Display` is for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// `send_gecos` or `gecos_username_pos` is set and the GECOS field is empty or blank.
    EmptyGecos,
    /// `gecos_username_pos` is 0 (positions count from 1; the parser never produces it).
    ZeroPosition,
    /// The GECOS field has fewer parts than `gecos_username_pos`, or that part is blank.
    NoSuchPart {
        /// `gecos_username_pos`.
        position: u32,
    },
    /// The chosen name cannot be a Duo username.
    Unusable {
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyGecos => f.write_str("the GECOS field is empty"),
            Self::ZeroPosition => f.write_str("gecos_username_pos counts from 1, got 0"),
            Self::NoSuchPart { position } => write!(
                f,
                "the GECOS field has no non-empty part at gecos_username_pos = {position}"
            ),
            Self::Unusable { problem } => write!(f, "the Duo username {problem}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// The Duo username of the local user `login` whose passwd GECOS field is `gecos`, following
/// `send_gecos`, `gecos_username_pos` (from 1) and `gecos_delim` (see the module docs).
pub fn duo_username(
    login: &str,
    gecos: &str,
    send_gecos: bool,
    gecos_username_pos: Option<u32>,
    gecos_delim: char,
) -> Result<String, IdentityError> {
    let chosen = match (gecos_username_pos, send_gecos) {
        (None, false) => login,
        _ if is_blank(gecos) => return Err(IdentityError::EmptyGecos),
        (None, true) => gecos,
        (Some(position), _) => {
            let index = position
                .checked_sub(1)
                .ok_or(IdentityError::ZeroPosition)
                .and_then(|i| {
                    usize::try_from(i).map_err(|_| IdentityError::NoSuchPart { position })
                })?;
            gecos
                .split(gecos_delim)
                .nth(index)
                .filter(|part| !is_blank(part))
                .ok_or(IdentityError::NoSuchPart { position })?
        }
    };
    if let Some(problem) = name_problem(chosen) {
        return Err(IdentityError::Unusable { problem });
    }
    Ok(chosen.to_owned())
}

fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_DUO_USERNAME_BYTES {
        Some("is longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    }
}

/// `ipaddr` for a Duo request: the client's address when known; otherwise, with
/// `fallback_local_ip`, this host's address ([`local_ipv4`]); otherwise none (Duo then sees
/// no address, as with duo_unix).
pub fn duo_ipaddr(client: Option<IpAddr>, fallback_local_ip: bool) -> Option<IpAddr> {
    choose_ipaddr(client, fallback_local_ip, local_ipv4)
}

fn choose_ipaddr(
    client: Option<IpAddr>,
    fallback_local_ip: bool,
    local: impl FnOnce() -> Option<Ipv4Addr>,
) -> Option<IpAddr> {
    match client {
        Some(ip) => Some(ip),
        None if fallback_local_ip => local().map(IpAddr::V4),
        None => None,
    }
}

/// This host's IPv4 address on the route to the outside world: the source address the kernel
/// picks for a UDP socket "connected" to a documentation address. No packet is sent. `None`
/// without such a route, or when the address found is loopback or unspecified.
pub fn local_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect(ROUTE_PROBE).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gecos(field: &str, pos: Option<u32>, delim: char) -> Result<String, IdentityError> {
        duo_username("login", field, pos.is_none(), pos, delim)
    }

    #[test]
    fn without_gecos_settings_the_login_name_is_the_duo_username() {
        assert_eq!(
            duo_username("alice", "Alice A,,,", false, None, ',').unwrap(),
            "alice"
        );
        // The GECOS field is not even looked at.
        assert_eq!(
            duo_username("alice", "", false, None, ',').unwrap(),
            "alice"
        );
    }

    #[test]
    fn send_gecos_uses_the_whole_field_as_it_is() {
        assert_eq!(gecos("alice.smith", None, ',').unwrap(), "alice.smith");
        assert_eq!(
            gecos("Alice Smith,Room 1,555", None, ',').unwrap(),
            "Alice Smith,Room 1,555"
        );
        // Like duo_unix: surrounding blanks are kept, not trimmed.
        assert_eq!(gecos(" alice ", None, ',').unwrap(), " alice ");
    }

    #[test]
    fn a_position_picks_that_part_counting_from_one_as_it_is() {
        let field = "Alice Smith,Room 1,555-1234,asmith";
        assert_eq!(gecos(field, Some(1), ',').unwrap(), "Alice Smith");
        assert_eq!(gecos(field, Some(4), ',').unwrap(), "asmith");
        assert_eq!(gecos("x/y/duo-alice", Some(3), '/').unwrap(), "duo-alice");
        assert_eq!(gecos("a, bob ,c", Some(2), ',').unwrap(), " bob ");
        // The position wins over send_gecos, as in duo_unix.
        assert_eq!(duo_username("l", "a,b", true, Some(2), ',').unwrap(), "b");
    }

    #[test]
    fn missing_or_blank_parts_are_errors_not_a_fallback_to_the_login_name() {
        assert_eq!(gecos("", None, ','), Err(IdentityError::EmptyGecos));
        assert_eq!(gecos("  ", None, ','), Err(IdentityError::EmptyGecos));
        assert_eq!(gecos("", Some(1), ','), Err(IdentityError::EmptyGecos));
        assert_eq!(
            gecos("a,b", Some(3), ','),
            Err(IdentityError::NoSuchPart { position: 3 })
        );
        assert_eq!(
            gecos("a,,c", Some(2), ','),
            Err(IdentityError::NoSuchPart { position: 2 })
        );
        assert_eq!(
            gecos("a, ,c", Some(2), ','),
            Err(IdentityError::NoSuchPart { position: 2 })
        );
        assert_eq!(gecos("a,b", Some(0), ','), Err(IdentityError::ZeroPosition));
        assert!(gecos("a,b", Some(u32::MAX), ',').is_err());
    }

    #[test]
    fn names_no_duo_account_can_have_are_refused() {
        assert!(matches!(
            gecos("alice\nroot", None, ','),
            Err(IdentityError::Unusable { .. })
        ));
        assert!(matches!(
            gecos(&"x".repeat(MAX_DUO_USERNAME_BYTES + 1), None, ','),
            Err(IdentityError::Unusable { .. })
        ));
        assert!(gecos(&"x".repeat(MAX_DUO_USERNAME_BYTES), None, ',').is_ok());
        assert!(matches!(
            duo_username("", "", false, None, ','),
            Err(IdentityError::Unusable {
                problem: "is empty"
            })
        ));
        assert_eq!(
            gecos("a\u{7}b", None, ',').unwrap_err().to_string(),
            "the Duo username contains control characters"
        );
    }

    #[test]
    fn the_local_address_is_used_only_when_the_client_is_unknown_and_fallback_is_on() {
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let local = || Some(Ipv4Addr::new(198, 51, 100, 4));
        let never = || -> Option<Ipv4Addr> { panic!("must not look up the local address") };
        assert_eq!(choose_ipaddr(Some(client), true, never), Some(client));
        assert_eq!(choose_ipaddr(Some(client), false, never), Some(client));
        assert_eq!(choose_ipaddr(None, false, never), None);
        assert_eq!(
            choose_ipaddr(None, true, local),
            Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 4)))
        );
        assert_eq!(choose_ipaddr(None, true, || None), None);
    }

    #[test]
    fn the_local_address_is_never_loopback_or_unspecified() {
        // Depends on the machine's routes: with a default route it is that route's source
        // address, without one None. Either way never 127.x or 0.0.0.0.
        match local_ipv4() {
            Some(ip) => assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}"),
            None => eprintln!("no IPv4 route out of this machine: local_ipv4() is None"),
        }
        assert_eq!(
            duo_ipaddr(None, true),
            local_ipv4().map(IpAddr::V4),
            "duo_ipaddr falls back to local_ipv4"
        );
    }
}
