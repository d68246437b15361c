//! The target catalog (`[target NAME]` sections) and who may reach what.
//!
//! Rules, all decided before any push:
//!
//! * A target is named by its catalog name (exact) or by its `host` (ASCII case-insensitive; IP
//!   literals compared as addresses). A name that is not in the catalog is refused.
//! * A port, when given, must equal the target's configured `port`. Any other port is refused:
//!   the catalog entry is the unit of authorization, so a user allowed on `web01:22` gets
//!   nothing on `web01:8080`. To allow another port, the admin adds a second `[target]` with
//!   that port.
//! * The user must be on the target's `allow` list, by name or through a `@group` (from
//!   getgrouplist). An empty list allows nobody.
//! * `LOGIN@TARGET` is allowed only when LOGIN equals the target's `login`, or, when `login` is
//!   unset, the user's own name. The login used is the target's `login`, else the user's name.
//! * When a host matches more than one allowed entry (same host and port), the request is
//!   refused as ambiguous: the user must use the catalog name.
//!
//! Users are told only "unknown target or access denied" (so the catalog cannot be probed);
//! the audit log gets the exact [`Refusal`].

use std::fmt;
use std::net::IpAddr;

use duo_push_common::config::Target;

use crate::command::{ConnectSpec, HostName, Shown, TargetSpec};

/// The user the shim runs for: the real uid's passwd name and group names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    /// Login name on the proxy (the Duo username).
    pub name: String,
    /// Names of the user's groups (primary and supplementary).
    pub groups: Vec<String>,
}

/// A target the user may reach, with the login to use there.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'c> {
    /// The catalog entry.
    pub target: &'c Target,
    /// The login on the target.
    pub login: &'c str,
}

/// Why a request was refused. For the audit log; the user sees [`Refusal::user_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither a catalog name nor a catalog host.
    NotInCatalog(Shown),
    /// In the catalog, but not with this port.
    PortNotAllowed {
        /// What the user named.
        requested: Shown,
        /// The port asked for.
        port: u16,
    },
    /// In the catalog, but the user is not on its `allow` list.
    NotAllowed {
        /// What the user named.
        requested: Shown,
        /// The catalog entry (for the log only: a host match must not reveal the name).
        target: String,
    },
    /// `LOGIN@` other than the target's login (or the user's own name).
    LoginNotAllowed {
        /// The target.
        target: String,
        /// The login asked for.
        login: String,
    },
    /// A host that matches several allowed entries.
    Ambiguous(Shown),
}

impl Refusal {
    /// Stable name for the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotInCatalog(_) => "not_in_catalog",
            Self::PortNotAllowed { .. } => "port_not_allowed",
            Self::NotAllowed { .. } => "not_allowed",
            Self::LoginNotAllowed { .. } => "login_not_allowed",
            Self::Ambiguous(_) => "ambiguous",
        }
    }

    /// The short message for the user. It does not say whether the target exists.
    pub fn user_message(&self) -> String {
        match self {
            Self::NotInCatalog(name)
            | Self::PortNotAllowed {
                requested: name, ..
            }
            | Self::NotAllowed {
                requested: name, ..
            } => format!("unknown target or access denied: {name}"),
            Self::LoginNotAllowed { target, login } => {
                format!("login \"{login}\" is not allowed on {target}")
            }
            Self::Ambiguous(name) => {
                format!("\"{name}\" matches several targets; use the target's name (see `list`)")
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInCatalog(name) => write!(f, "\"{name}\" is not in the target catalog"),
            Self::PortNotAllowed { requested, port } => {
                write!(
                    f,
                    "port {port} is not the configured port of \"{requested}\""
                )
            }
            Self::NotAllowed { target, .. } => {
                write!(f, "user is not on the allow list of {target}")
            }
            Self::LoginNotAllowed { target, login } => {
                write!(f, "login \"{login}\" is not allowed on {target}")
            }
            Self::Ambiguous(name) => write!(f, "\"{name}\" matches several allowed targets"),
        }
    }
}

/// The targets `user` may reach, in catalog order.
pub fn reachable<'c>(targets: &'c [Target], user: &Invoker) -> Vec<&'c Target> {
    targets
        .iter()
        .filter(|t| t.allows(&user.name, &user.groups))
        .collect()
}

/// Whether `requested` names `target`'s host.
fn host_matches(target: &Target, requested: &str) -> bool {
    match (target.host.parse::<IpAddr>(), requested.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => target.host.eq_ignore_ascii_case(requested),
    }
}

/// Finds the one target named by `host` (and `port`, when given) that `user` may reach.
fn find<'c>(
    targets: &'c [Target],
    host: &HostName,
    port: Option<u16>,
    user: &Invoker,
) -> Result<&'c Target, Refusal> {
    let requested = host.as_ref();
    let by_name: Vec<&Target> = targets
        .iter()
        .filter(|t| t.name.as_str() == requested)
        .collect();
    let named: Vec<&Target> = if by_name.is_empty() {
        targets
            .iter()
            .filter(|t| host_matches(t, requested))
            .collect()
    } else {
        by_name
    };
    if named.is_empty() {
        return Err(Refusal::NotInCatalog(Shown::new(requested)));
    }
    let on_port: Vec<&Target> = named
        .iter()
        .copied()
        .filter(|t| port.is_none_or(|p| p == t.port))
        .collect();
    if on_port.is_empty() {
        return Err(Refusal::PortNotAllowed {
            requested: Shown::new(requested),
            port: port.unwrap_or_default(),
        });
    }
    let allowed: Vec<&Target> = on_port
        .iter()
        .copied()
        .filter(|t| t.allows(&user.name, &user.groups))
        .collect();
    match allowed.as_slice() {
        [one] => Ok(one),
        [] => Err(Refusal::NotAllowed {
            requested: Shown::new(requested),
            target: on_port
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }),
        _ => Err(Refusal::Ambiguous(Shown::new(requested))),
    }
}

/// Resolves `[LOGIN@]TARGET[:PORT]` for a session or a command.
pub fn resolve<'c>(
    targets: &'c [Target],
    spec: &TargetSpec,
    user: &'c Invoker,
) -> Result<Resolved<'c>, Refusal> {
    let target = find(targets, &spec.host, spec.port, user)?;
    let login: &'c str = target.login.as_deref().unwrap_or(&user.name);
    if let Some(asked) = &spec.login {
        if asked.as_ref() != login {
            return Err(Refusal::LoginNotAllowed {
                target: target.name.to_string(),
                login: asked.to_string(),
            });
        }
    }
    Ok(Resolved { target, login })
}

/// Resolves the argument of `connect`.
pub fn resolve_connect<'c>(
    targets: &'c [Target],
    spec: &ConnectSpec,
    user: &Invoker,
) -> Result<&'c Target, Refusal> {
    find(targets, &spec.host, spec.port, user)
}

#[cfg(test)]
mod tests {
    use duo_push_common::config::Principal;

    use super::*;
    use crate::command::{parse_str, Command};

    fn target(name: &str, host: &str, port: u16, login: Option<&str>, allow: &[&str]) -> Target {
        Target {
            name: name.parse().unwrap(),
            host: host.to_owned(),
            port,
            login: login.map(str::to_owned),
            allow: allow
                .iter()
                .map(|a| match a.strip_prefix('@') {
                    Some(g) => Principal::Group(g.to_owned()),
                    None => Principal::User((*a).to_owned()),
                })
                .collect(),
            mfa: true,
        }
    }

    fn catalog() -> Vec<Target> {
        vec![
            target("web01", "10.0.0.5", 22, Some("deploy"), &["alice", "@ops"]),
            target("web01-alt", "10.0.0.5", 2222, None, &["alice"]),
            target("db01", "db01.internal", 22, None, &["@dba"]),
            target("nobody", "10.0.0.9", 22, None, &[]),
            target("twin-a", "10.0.0.7", 22, None, &["carol"]),
            target("twin-b", "10.0.0.7", 22, None, &["carol", "alice"]),
            target("v6", "::1", 22, None, &["alice"]),
        ]
    }

    fn alice() -> Invoker {
        Invoker {
            name: "alice".into(),
            groups: vec!["alice".into(), "staff".into()],
        }
    }

    fn bob_ops() -> Invoker {
        Invoker {
            name: "bob".into(),
            groups: vec!["bob".into(), "ops".into()],
        }
    }

    fn spec(text: &str) -> TargetSpec {
        match parse_str(text).unwrap() {
            Command::Session(t) | Command::Exec { target: t, .. } => t,
            other => panic!("{other:?}"),
        }
    }

    fn connect_spec(text: &str) -> ConnectSpec {
        match parse_str(text).unwrap() {
            Command::Connect(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn allowed_user_resolves_by_name_with_the_targets_login() {
        let cat = catalog();
        let user = alice();
        let r = resolve(&cat, &spec("web01"), &user).unwrap();
        assert_eq!(r.target.name.as_str(), "web01");
        assert_eq!(r.login, "deploy");
        let r = resolve(&cat, &spec("deploy@web01:22"), &user).unwrap();
        assert_eq!(r.login, "deploy");
    }

    #[test]
    fn group_membership_allows() {
        let cat = catalog();
        let user = bob_ops();
        assert_eq!(
            resolve(&cat, &spec("web01"), &user)
                .unwrap()
                .target
                .name
                .as_str(),
            "web01"
        );
        assert_eq!(
            resolve(&cat, &spec("web01-alt"), &user).unwrap_err(),
            Refusal::NotAllowed {
                requested: Shown::new("web01-alt"),
                target: "web01-alt".into()
            }
        );
    }

    #[test]
    fn unknown_target_is_refused_without_saying_whether_it_exists() {
        let cat = catalog();
        let user = alice();
        let unknown = resolve(&cat, &spec("web99"), &user).unwrap_err();
        assert_eq!(unknown.as_str(), "not_in_catalog");
        let denied = resolve(&cat, &spec("db01"), &user).unwrap_err();
        assert_eq!(denied.as_str(), "not_allowed");
        assert_eq!(
            unknown.user_message(),
            "unknown target or access denied: web99"
        );
        assert_eq!(
            denied.user_message(),
            "unknown target or access denied: db01"
        );
    }

    #[test]
    fn empty_allow_list_allows_nobody() {
        let cat = catalog();
        for user in [alice(), bob_ops()] {
            assert!(matches!(
                resolve(&cat, &spec("nobody"), &user),
                Err(Refusal::NotAllowed { .. })
            ));
        }
    }

    #[test]
    fn a_refused_host_does_not_reveal_the_catalog_name() {
        let cat = catalog();
        let err =
            resolve_connect(&cat, &connect_spec("connect 10.0.0.9:22"), &alice()).unwrap_err();
        assert_eq!(
            err.user_message(),
            "unknown target or access denied: 10.0.0.9"
        );
        assert!(err.to_string().contains("nobody"), "{err}");
    }

    #[test]
    fn other_ports_are_refused() {
        let cat = catalog();
        let user = alice();
        let err = resolve(&cat, &spec("web01:2222"), &user).unwrap_err();
        assert_eq!(err.as_str(), "port_not_allowed");
        assert!(resolve(&cat, &spec("web01:22"), &user).is_ok());
        assert!(resolve_connect(&cat, &connect_spec("connect web01:8080"), &user).is_err());
    }

    #[test]
    fn login_must_be_the_targets_login_or_the_users_own_name() {
        let cat = catalog();
        let user = alice();
        assert_eq!(
            resolve(&cat, &spec("root@web01"), &user).unwrap_err(),
            Refusal::LoginNotAllowed {
                target: "web01".into(),
                login: "root".into()
            }
        );
        // login unset: the user's own name, and only that.
        let r = resolve(&cat, &spec("web01-alt"), &user).unwrap();
        assert_eq!(r.login, "alice");
        assert!(resolve(&cat, &spec("alice@web01-alt"), &user).is_ok());
        assert!(resolve(&cat, &spec("root@web01-alt"), &user).is_err());
        // The target's login is not the user's name: alice@web01 is refused.
        assert!(resolve(&cat, &spec("alice@web01"), &user).is_err());
    }

    #[test]
    fn connect_accepts_the_catalog_name_or_its_host() {
        let cat = catalog();
        let user = alice();
        let t = resolve_connect(&cat, &connect_spec("connect web01:22"), &user).unwrap();
        assert_eq!(t.name.as_str(), "web01");
        let t = resolve_connect(&cat, &connect_spec("connect 10.0.0.5:22"), &user).unwrap();
        assert_eq!(t.name.as_str(), "web01");
        let t = resolve_connect(&cat, &connect_spec("connect 10.0.0.5:2222"), &user).unwrap();
        assert_eq!(t.name.as_str(), "web01-alt");
        let t = resolve_connect(&cat, &connect_spec("connect [0:0::1]:22"), &user).unwrap();
        assert_eq!(t.name.as_str(), "v6");
        let t = resolve_connect(
            &cat,
            &connect_spec("connect DB01.internal"),
            &Invoker {
                name: "dan".into(),
                groups: vec!["dba".into()],
            },
        )
        .unwrap();
        assert_eq!(t.name.as_str(), "db01");
        assert!(resolve_connect(&cat, &connect_spec("connect 10.0.0.6:22"), &user).is_err());
    }

    #[test]
    fn a_host_shared_by_several_allowed_targets_is_ambiguous() {
        let cat = catalog();
        let carol = Invoker {
            name: "carol".into(),
            groups: vec![],
        };
        let err = resolve_connect(&cat, &connect_spec("connect 10.0.0.7:22"), &carol).unwrap_err();
        assert_eq!(err.as_str(), "ambiguous");
        assert!(err.user_message().contains("several"));
        // alice is allowed on only one of the two: no ambiguity for her.
        let t = resolve_connect(&cat, &connect_spec("connect 10.0.0.7:22"), &alice()).unwrap();
        assert_eq!(t.name.as_str(), "twin-b");
        // The catalog name is never ambiguous.
        assert!(resolve_connect(&cat, &connect_spec("connect twin-a:22"), &carol).is_ok());
    }

    #[test]
    fn reachable_lists_only_allowed_targets_in_order() {
        let cat = catalog();
        let names: Vec<&str> = reachable(&cat, &alice())
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["web01", "web01-alt", "twin-b", "v6"]);
        let names: Vec<&str> = reachable(&cat, &bob_ops())
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["web01"]);
    }
}
