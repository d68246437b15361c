//! Running a child process with a deadline while collecting its output.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Output collected from a pipe by a background thread; waiters are woken on each chunk.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) data: Mutex<Vec<u8>>,
    pub(crate) grew: Condvar,
}

impl Collected {
    pub(crate) fn text(&self) -> String {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&data).into_owned()
    }
}

/// Starts a thread that appends everything read from `pipe` to the returned buffer.
pub(crate) fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Collected>, JoinHandle<()>) {
    let buf = Arc::new(Collected::default());
    let sink = Arc::clone(&buf);
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut data = sink.data.lock().unwrap_or_else(|e| e.into_inner());
                    data.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    sink.grew.notify_all();
                }
            }
        }
        sink.grew.notify_all();
    });
    (buf, handle)
}

/// Waits for `child` until `deadline`; kills it (SIGKILL) if it is still running then.
/// Returns the exit status and whether it was killed for the timeout.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> (ExitStatus, bool) {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) => {}
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child
                .wait()
                .unwrap_or_else(|e| panic!("waiting for killed child: {e}"));
            return (status, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The result of [`run_with_timeout`].
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) timed_out: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

/// Runs `cmd` with stdin from `input` (or /dev/null), collecting stdout and stderr, killing it
/// after `timeout`.
pub(crate) fn run_with_timeout(
    cmd: &mut Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> Finished {
    let start = Instant::now();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => Some(std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        })),
        _ => None,
    };
    let (out, out_thread) = collect(child.stdout.take().expect("stdout is piped"));
    let (err, err_thread) = collect(child.stderr.take().expect("stderr is piped"));
    let (status, timed_out) = wait_until(&mut child, start + timeout);
    // Grandchildren may keep the pipes open after a kill; do not wait for them forever.
    join_for(out_thread, Duration::from_secs(2));
    join_for(err_thread, Duration::from_secs(2));
    if let Some(w) = writer {
        join_for(w, Duration::from_secs(1));
    }
    Finished {
        status,
        timed_out,
        stdout: out.text(),
        stderr: err.text(),
        elapsed: start.elapsed(),
    }
}

/// Joins `handle` if it finishes within `limit`; otherwise leaves it running (detached).
pub(crate) fn join_for(handle: JoinHandle<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
}

/// Runs a setup command to completion and panics with its output if it fails.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let f = run_with_timeout(cmd, None, Duration::from_secs(60));
    assert!(
        f.status.success() && !f.timed_out,
        "{cmd:?} failed ({}): stdout: {} stderr: {}",
        f.status,
        f.stdout,
        f.stderr
    );
    f.stdout
}
