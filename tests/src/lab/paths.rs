//! Where the lab finds the workspace's binaries, and the temporary directories it creates.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace root (the parent of this package's directory).
pub(crate) fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The directory holding the workspace's built binaries and libraries: the directory of the
/// running test executable's parent (`target/debug/deps/x` -> `target/debug`) when that holds
/// build output, otherwise `<workspace>/target/debug`.
pub(crate) fn build_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            let dir = if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent().map(Path::to_path_buf)
            } else {
                Some(deps.to_path_buf())
            };
            if let Some(dir) = dir {
                if dir.join(".fingerprint").is_dir() {
                    return dir;
                }
            }
        }
    }
    workspace_dir().join("target").join("debug")
}

/// The path of a build artifact of the workspace, e.g. `artifact_path("libpam_duo_push.so")`,
/// `artifact_path("duo-proxy-shim")`, `artifact_path("mock-duo")`. Panics with a hint if it
/// has not been built (`cargo build --workspace` builds all of them).
pub fn artifact_path(name: &str) -> PathBuf {
    let path = build_dir().join(name);
    assert!(
        path.exists(),
        "{} does not exist: build the workspace first (cargo build --workspace --all-targets)",
        path.display()
    );
    path
}

/// A binary of this package: the path in `env_var` if set, else the built artifact.
pub(crate) fn binary_path(name: &str, env_var: &str) -> PathBuf {
    match std::env::var_os(env_var) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.exists(), "{env_var}={} does not exist", path.display());
            path
        }
        None => artifact_path(name),
    }
}

/// A directory removed (recursively) on drop, unless `DUO_PUSH_LAB_KEEP=1` is set.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    /// Creates a new, uniquely named directory with `mode` under `base` (created if missing).
    pub fn new_in(base: &Path, prefix: &str, mode: u32) -> TempDir {
        fs::create_dir_all(base)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}{}-{n}-{nanos:x}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
                    return TempDir { path };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
        panic!("cannot find a free directory name under {}", base.display());
    }

    /// A new directory in the system temporary directory (`/tmp`), mode 0755.
    pub fn new(prefix: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), prefix, 0o755)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("DUO_PUSH_LAB_KEEP").is_some_and(|v| v == "1") {
            eprintln!("lab: keeping {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The base directory for lab roots: `DUO_PUSH_LAB_DIR` or `<workspace>/target/lab`.
pub(crate) fn lab_base_dir() -> PathBuf {
    std::env::var_os("DUO_PUSH_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target").join("lab"))
}

/// Whether sshd's `StrictModes` would accept files below `dir`: every directory from `dir` up
/// to `/` is owned by root and not writable by group or others.
pub(crate) fn is_strict_modes_safe(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| fs::metadata(d).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

/// Quotes `s` for a POSIX shell (single quotes).
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Copies the tree `src` into `dst` (created), keeping modes and owners; symlinks are copied
/// as symlinks. Used to give each namespace its own overlay upper layer.
pub(crate) fn copy_tree(src: &Path, dst: &Path) {
    use std::os::unix::fs::chown;
    let meta =
        fs::symlink_metadata(src).unwrap_or_else(|e| panic!("cannot stat {}: {e}", src.display()));
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).unwrap_or_else(|e| panic!("readlink: {e}"));
        std::os::unix::fs::symlink(target, dst).unwrap_or_else(|e| panic!("symlink: {e}"));
        return;
    }
    if meta.is_dir() {
        fs::create_dir(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
        let entries = fs::read_dir(src).unwrap_or_else(|e| panic!("readdir: {e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("readdir: {e}"));
            copy_tree(&entry.path(), &dst.join(entry.file_name()));
        }
    } else {
        fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    chown(dst, Some(meta.uid()), Some(meta.gid())).unwrap_or_else(|e| panic!("chown: {e}"));
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
}
