//! The workspace's artifacts that this package does not depend on (`libpam_duo_push.so`,
//! `duo-proxy-shim`), rebuilt on demand.
//!
//! `cargo test -p duo_push_tests` alone does not rebuild the PAM module or the shim, so a test
//! that runs them asks for a fresh copy here: [`pam_module`] and [`proxy_shim`] rebuild the
//! artifact (once per process, for the profile this process was built with) when it is
//! missing or older than a source file of its crate or of `common`, and return its absolute
//! path. The build runs only when it is stale, not every time: `cargo build -p pam_duo_push`
//! resolves features differently from a workspace build and would relink the library on every
//! call. Outside cargo (`CARGO` unset, e.g. `./target/debug/duo-demo`) nothing is built and
//! the existing artifact is used; [`artifact_path`] panics with a hint when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::SystemTime;

use super::artifact_path;
use super::paths::{build_dir, workspace_dir};

/// A workspace artifact built by a crate this package does not depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// `libpam_duo_push.so` of the `pam_duo_push` crate.
    PamModule,
    /// `duo-proxy-shim` of the `proxy_shim` crate.
    ProxyShim,
}

impl Artifact {
    /// The file name in the target directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Artifact::PamModule => "libpam_duo_push.so",
            Artifact::ProxyShim => "duo-proxy-shim",
        }
    }

    /// The cargo package that builds it.
    pub fn package(self) -> &'static str {
        match self {
            Artifact::PamModule => "pam_duo_push",
            Artifact::ProxyShim => "proxy_shim",
        }
    }

    /// The package's directory in the workspace.
    fn crate_dir(self) -> &'static str {
        match self {
            Artifact::PamModule => "pam_duo_push",
            Artifact::ProxyShim => "proxy_shim",
        }
    }

    fn once(self) -> &'static Once {
        static MODULE: Once = Once::new();
        static SHIM: Once = Once::new();
        match self {
            Artifact::PamModule => &MODULE,
            Artifact::ProxyShim => &SHIM,
        }
    }
}

/// Newest modification time of the files under `dir` (recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Whether `artifact` in `dir` is missing or older than a source of its crate or of `common`
/// (sources and manifests).
fn is_stale(artifact: Artifact, dir: &Path) -> bool {
    let workspace = workspace_dir();
    let built_at = std::fs::metadata(dir.join(artifact.file_name()))
        .and_then(|m| m.modified())
        .ok();
    let crates = [artifact.crate_dir(), "common"];
    let sources = crates
        .iter()
        .filter_map(|c| newest_mtime(&workspace.join(c).join("src")))
        .chain(crates.iter().filter_map(|c| {
            std::fs::metadata(workspace.join(c).join("Cargo.toml"))
                .ok()?
                .modified()
                .ok()
        }))
        .max();
    built_at.is_none() || built_at < sources
}

/// The absolute path of an up-to-date `artifact`, built first if stale (see the module
/// documentation). Panics when the build fails or the artifact does not exist.
pub fn fresh_artifact(artifact: Artifact) -> PathBuf {
    artifact.once().call_once(|| {
        let dir = build_dir();
        if !is_stale(artifact, &dir) {
            return;
        }
        let Some(cargo) = std::env::var_os("CARGO") else {
            // Not run by cargo: use what is there (artifact_path panics if it is missing).
            return;
        };
        let package = artifact.package();
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package])
            .current_dir(workspace_dir());
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo build -p {package}: {e}"));
        assert!(status.success(), "cargo build -p {package} failed");
    });
    let path = artifact_path(artifact.file_name());
    assert!(path.is_absolute(), "{}", path.display());
    path
}

/// An up-to-date `libpam_duo_push.so` (see [`fresh_artifact`]).
pub fn pam_module() -> PathBuf {
    fresh_artifact(Artifact::PamModule)
}

/// An up-to-date `duo-proxy-shim` (see [`fresh_artifact`]).
pub fn proxy_shim() -> PathBuf {
    fresh_artifact(Artifact::ProxyShim)
}
