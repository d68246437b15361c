//! The setgid privilege model.
//!
//! The shim is installed `root:duo-push` mode 2755: it runs with the user's real uid and gid and
//! the effective (and saved) gid `duo-push`, which may read the configuration file and nothing
//! else. The order in `main`:
//!
//! 1. [`make_undumpable`]: no core dump, no ptrace, no `/proc/PID/mem` for the user while the
//!    secret key is in memory;
//! 2. clear the environment (`environment::scrub`);
//! 3. read the configuration with the group privilege;
//! 4. [`drop_group_privilege`] for good: real, effective and saved gid all become the real gid,
//!    verified, before any network I/O, target connection or exec;
//! 5. look up the user ([`invoker`]) from the real uid.
//!
//! Changing the effective gid makes the kernel reset the dumpable flag to
//! `fs.suid_dumpable`, which may be 1, so the drop sets it to 0 again and verifies it.

use std::ffi::CString;
use std::fmt;

use nix::sys::prctl;
use nix::unistd::{self, Gid, Group, User};

use crate::catalog::Invoker;

/// A privilege operation failed. The shim exits on any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeError {
    /// prctl(PR_SET_DUMPABLE, 0) failed or did not stick.
    Dumpable(String),
    /// setresgid failed or the gids are not all equal afterwards.
    GroupDrop(String),
    /// The real uid has no passwd entry, or its lookup failed.
    NoPasswdEntry(String),
    /// getgrouplist failed.
    Groups(String),
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dumpable(e) => write!(f, "cannot make the process non-dumpable: {e}"),
            Self::GroupDrop(e) => write!(f, "cannot drop the group privilege: {e}"),
            Self::NoPasswdEntry(e) => write!(f, "cannot find the user's passwd entry: {e}"),
            Self::Groups(e) => write!(f, "cannot list the user's groups: {e}"),
        }
    }
}

impl std::error::Error for PrivilegeError {}

/// Marks the process non-dumpable and checks that it is.
pub fn make_undumpable() -> Result<(), PrivilegeError> {
    prctl::set_dumpable(false).map_err(|e| PrivilegeError::Dumpable(e.to_string()))?;
    match prctl::get_dumpable() {
        Ok(false) => Ok(()),
        Ok(true) => Err(PrivilegeError::Dumpable(
            "still dumpable after PR_SET_DUMPABLE 0".to_owned(),
        )),
        Err(e) => Err(PrivilegeError::Dumpable(e.to_string())),
    }
}

/// Whether the process runs with a group privilege it has not dropped (effective or saved gid
/// different from the real gid).
pub fn holds_group_privilege() -> Result<bool, PrivilegeError> {
    let ids = unistd::getresgid().map_err(|e| PrivilegeError::GroupDrop(e.to_string()))?;
    Ok(ids.effective != ids.real || ids.saved != ids.real)
}

/// Sets real, effective and saved gid to the real gid, verifies all three and that the
/// effective gid equals `getgid()`, then makes the process non-dumpable again.
pub fn drop_group_privilege() -> Result<(), PrivilegeError> {
    let real = unistd::getgid();
    unistd::setresgid(real, real, real).map_err(|e| PrivilegeError::GroupDrop(e.to_string()))?;
    let ids = unistd::getresgid().map_err(|e| PrivilegeError::GroupDrop(e.to_string()))?;
    if ids.real != real
        || ids.effective != real
        || ids.saved != real
        || unistd::getegid() != unistd::getgid()
    {
        return Err(PrivilegeError::GroupDrop(format!(
            "gids are real {} effective {} saved {} after setresgid",
            ids.real, ids.effective, ids.saved
        )));
    }
    // Regaining the old egid must now be impossible (unless the user is root, who could anyway).
    make_undumpable()
}

/// The user the shim runs for, from the real uid's passwd entry and getgrouplist, with the
/// passwd GECOS field. Never from the environment or the command.
pub fn invoker() -> Result<(Invoker, String), PrivilegeError> {
    let uid = unistd::getuid();
    let user = User::from_uid(uid)
        .map_err(|e| PrivilegeError::NoPasswdEntry(e.to_string()))?
        .ok_or_else(|| PrivilegeError::NoPasswdEntry(format!("no entry for uid {uid}")))?;
    let groups = group_names(&user.name, user.gid)?;
    let gecos = user.gecos.to_string_lossy().into_owned();
    Ok((
        Invoker {
            name: user.name,
            groups,
        },
        gecos,
    ))
}

/// Names of the groups `name` belongs to (primary `gid` included). Gids without a name are
/// skipped: an `@group` entry can only match a named group.
fn group_names(name: &str, gid: Gid) -> Result<Vec<String>, PrivilegeError> {
    let c_name = CString::new(name).map_err(|e| PrivilegeError::Groups(e.to_string()))?;
    let gids =
        unistd::getgrouplist(&c_name, gid).map_err(|e| PrivilegeError::Groups(e.to_string()))?;
    let mut names = Vec::with_capacity(gids.len());
    for gid in gids {
        if let Ok(Some(group)) = Group::from_gid(gid) {
            if !names.contains(&group.name) {
                names.push(group.name);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_process_can_be_made_undumpable() {
        make_undumpable().unwrap();
        assert!(!prctl::get_dumpable().unwrap());
    }

    #[test]
    fn dropping_an_unheld_privilege_succeeds_and_leaves_none() {
        drop_group_privilege().unwrap();
        assert!(!holds_group_privilege().unwrap());
    }

    #[test]
    fn invoker_is_the_real_uids_passwd_entry() {
        let (me, _gecos) = invoker().unwrap();
        let expected = User::from_uid(unistd::getuid()).unwrap().unwrap();
        assert_eq!(me.name, expected.name);
        let primary = Group::from_gid(expected.gid).unwrap().unwrap();
        assert!(me.groups.contains(&primary.name), "{:?}", me.groups);
    }
}
