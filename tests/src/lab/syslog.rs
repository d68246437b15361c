//! A `/dev/log` stand-in: a Unix datagram socket whose messages a thread collects as lines.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The syslog facility `LOG_AUTHPRIV` (10), as found in the `<PRI>` of a line.
pub const LOG_AUTHPRIV: u8 = 10;

/// Receives syslog datagrams on a socket and keeps them, in order, as text lines of the form
/// syslog(3) sends: `<PRI>Mmm dd hh:mm:ss ident[pid]: message`.
#[derive(Debug)]
pub struct SyslogCatcher {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogCatcher {
    /// Binds a datagram socket at `path` (mode 0666, so that processes running as test users,
    /// like the shim, can log) and starts collecting.
    pub fn bind(path: &Path) -> SyslogCatcher {
        let sock = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("cannot bind syslog socket {}: {e}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap_or_else(|e| panic!("syslog socket timeout: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (Arc::clone(&lines), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    let line = text.trim_end_matches(['\n', '\0']).to_string();
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        });
        SyslogCatcher {
            path: path.to_path_buf(),
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// The socket's path (what is bind-mounted onto `/dev/log`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `secs` seconds for a line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SyslogCatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The (facility, severity) of a syslog line, from its leading `<PRI>`.
/// `syslog_priority("<86>Jan  1 ...")` is `Some((10, 6))`: authpriv, info.
pub fn syslog_priority(line: &str) -> Option<(u8, u8)> {
    let rest = line.strip_prefix('<')?;
    let (num, _) = rest.split_once('>')?;
    let pri: u16 = num.parse().ok()?;
    let facility = u8::try_from(pri / 8).ok()?;
    let severity = u8::try_from(pri % 8).ok()?;
    Some((facility, severity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_splits_into_facility_and_severity() {
        assert_eq!(
            syslog_priority("<86>Jan  1 00:00:00 x: y"),
            Some((LOG_AUTHPRIV, 6))
        );
        assert_eq!(syslog_priority("<83>m"), Some((LOG_AUTHPRIV, 3)));
        assert_eq!(syslog_priority("no pri"), None);
    }
}
