//! `duo-proxy-shim`, the sshd `ForceCommand` of the Duo Push terminal proxy. This entry point
//! only orders the first steps; the logic is in the library (`proxy_shim`).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use proxy_shim::{app, check, environment, privilege};

fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "duo-proxy-shim: {msg}");
    ExitCode::from(app::EXIT_FAILURE)
}

fn main() -> ExitCode {
    // First: no core dumps or ptrace while the configuration's secret key may be in memory.
    if let Err(e) = privilege::make_undumpable() {
        return fail(&e.to_string());
    }
    // Second, while the process has a single thread: only allow-listed variables remain.
    if let Err(e) = environment::scrub() {
        return fail(&e.to_string());
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        None => app::run_forced(),
        Some("check") => check::run(args.get(1..).unwrap_or_default()),
        Some(_) => {
            // sshd runs the ForceCommand without arguments; the target comes from
            // SSH_ORIGINAL_COMMAND. Anything else is a mistake: refuse.
            if privilege::drop_group_privilege().is_err() {
                return fail("cannot drop the group privilege");
            }
            let _ = writeln!(
                std::io::stderr(),
                "usage: duo-proxy-shim                    (as sshd's ForceCommand)\n       duo-proxy-shim check [--config PATH]"
            );
            ExitCode::from(app::EXIT_USAGE)
        }
    }
}
