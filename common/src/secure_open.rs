//! Opening the configuration file without trusting the path: no symbolic link is followed, and
//! the checks are made with fstat on the descriptor that is read, so the file cannot be swapped
//! between the check and the read.
//!
//! The file must be a regular file owned by root, not writable by group or others, not
//! readable by others, and readable by its group only when that group is `shim_group` (checked
//! by [`check_group_access`] once the file is parsed, because `shim_group` is in the file).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::config::ConfigError;
use crate::ini::MAX_FILE_BYTES;

/// The group database used to resolve `shim_group` to a gid.
pub const GROUP_FILE: &str = "/etc/group";

/// The largest group database read.
const MAX_GROUP_FILE_BYTES: u64 = 16 * 1024 * 1024;

const CHMOD_HINT: &str = "chmod 0600, or 0640 with the group set to shim_group (default duo-push)";

/// A configuration file that passed the owner, type, mode and size checks, with what fstat
/// said about it. The contents are zeroed on drop (they hold the skey).
#[derive(Debug)]
pub struct ConfigFile {
    bytes: Zeroizing<Vec<u8>>,
    mode: u32,
    gid: u32,
}

impl ConfigFile {
    /// The file's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Permission bits (`st_mode & 0o7777`).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The owning group.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Whether the group read bit is set.
    pub fn is_group_readable(&self) -> bool {
        self.mode & 0o040 != 0
    }
}

/// Opens and reads `path` with `O_NOFOLLOW`, checking the opened descriptor: a regular file,
/// owned by uid 0, not group- or world-writable, not world-readable, at most 1 MiB.
pub fn read_config_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let fail = |message: String| ConfigError::about_file(path, message);
    let mut file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO must not hang the login; fstat then refuses it.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(open_error_message(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat the opened file: {e}")))?;

    let file_type = meta.file_type();
    if file_type.is_dir() {
        return Err(fail("is a directory, not a regular file".to_owned()));
    }
    if !file_type.is_file() {
        return Err(fail("is not a regular file".to_owned()));
    }
    if meta.uid() != 0 {
        return Err(fail(format!("owned by uid {}, must be root", meta.uid())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(fail(format!(
            "mode {mode:04o} is writable by group or others; {CHMOD_HINT}"
        )));
    }
    if mode & 0o004 != 0 {
        return Err(fail(format!(
            "mode {mode:04o} is readable by others; {CHMOD_HINT}"
        )));
    }
    let limit = MAX_FILE_BYTES as u64;
    let too_big = || fail(format!("larger than the limit of {MAX_FILE_BYTES} bytes"));
    if meta.len() > limit {
        return Err(too_big());
    }
    // Sized up front so the secret is not left behind in a reallocated buffer.
    let capacity = usize::try_from(meta.len())
        .unwrap_or(MAX_FILE_BYTES)
        .saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.by_ref()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(ConfigFile {
        bytes,
        mode,
        gid: meta.gid(),
    })
}

fn open_error_message(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return "is a symbolic link; refusing to follow it".to_owned();
    }
    match e.kind() {
        ErrorKind::NotFound => "does not exist".to_owned(),
        ErrorKind::PermissionDenied => "cannot open: permission denied".to_owned(),
        _ => format!("cannot open: {e}"),
    }
}

/// When `file` is group-readable, its group must be `shim_group` as listed in `group_file`;
/// a group that does not exist there means group-readable is refused.
pub fn check_group_access(
    file: &ConfigFile,
    path: &Path,
    shim_group: &str,
    group_file: &Path,
) -> Result<(), ConfigError> {
    if !file.is_group_readable() {
        return Ok(());
    }
    let mode = file.mode();
    let fail = |message: String| ConfigError::about_file(path, message);
    let wanted = group_gid(group_file, shim_group).map_err(|e| {
        fail(format!(
            "mode {mode:04o} is readable by its group, and shim_group `{shim_group}` cannot be \
             looked up in {}: {e}; chmod 0600",
            group_file.display()
        ))
    })?;
    match wanted {
        None => Err(fail(format!(
            "mode {mode:04o} is readable by its group, but shim_group `{shim_group}` does not \
             exist in {}; chmod 0600 or create the group",
            group_file.display()
        ))),
        Some(gid) if gid != file.gid() => Err(fail(format!(
            "mode {mode:04o} is readable by group gid {}, which is not shim_group \
             `{shim_group}` (gid {gid}); chmod 0600 or chgrp {shim_group}",
            file.gid()
        ))),
        Some(_) => Ok(()),
    }
}

/// Looks a group name up in a group(5) file. `Ok(None)` when it is not listed.
pub fn group_gid(group_file: &Path, name: &str) -> std::io::Result<Option<u32>> {
    let mut text = String::new();
    File::open(group_file)?
        .take(MAX_GROUP_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let group = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?;
        if group == name {
            gid.parse::<u32>().ok()
        } else {
            None
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lookup_reads_name_and_gid() {
        let dir = std::env::temp_dir().join(format!("duo_push_group_{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let file = dir.join("group");
        std::fs::write(
            &file,
            "root:x:0:\nduo-push:x:998:alice,bob\nbroken\nodd:x:nan:\n",
        )
        .ok();
        assert_eq!(group_gid(&file, "duo-push").ok(), Some(Some(998)));
        assert_eq!(group_gid(&file, "root").ok(), Some(Some(0)));
        assert_eq!(group_gid(&file, "odd").ok(), Some(None));
        assert_eq!(group_gid(&file, "missing").ok(), Some(None));
        assert_eq!(group_gid(&file, "duo").ok(), Some(None));
        assert!(group_gid(&dir.join("absent"), "root").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
