//! duo-bench: the benchmarks behind `docs/PERFORMANCE.md`, run by `bench/run`.
//!
//! ```text
//! duo-bench run [--quick] [--out FILE]      every benchmark, interleaved with its peer; prints
//!                                           a Markdown report (and writes it to FILE)
//! duo-bench pam-login --confdir DIR --service NAME --user USER [--rhost IP]
//!                                           one pam_start_confdir + pam_authenticate + pam_end;
//!                                           prints one `pam-login ...` line of measurements
//! duo-bench dlopen PATH [--preload LIB]     one dlopen(PATH, RTLD_NOW) in this fresh process
//! ```
//!
//! `run` needs root. It re-executes itself under `unshare --mount --propagation private` and
//! mounts an overlay over `/etc` inside that namespace (so it can add a bench user to
//! `/etc/passwd` and write `/etc/duo_push/duo_push.conf` for the shim); nothing on the host
//! changes. Everything it starts is on loopback.
//!
//! Every comparison is interleaved (ours, peer, ours, peer, ...) in the same run on the same
//! machine and reports medians; see `docs/PERFORMANCE.md` for what each figure means.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a setup that cannot work stops the run with a message"
)]
#![allow(
    clippy::zombie_processes,
    reason = "children are reaped with wait4(2), which also returns their resource usage"
)]

use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duo_push_common::config::Config;
use duo_push_common::signing::SignatureVersion;
use duo_push_tests::lab::{EtcFile, Lab, MockDuo, MockOpts, Sshd, SshdSpec, DEFAULT_PAM_SSHD};
use duo_push_tests::mock::harness::{DuoTestClient, TEST_IKEY, TEST_SKEY};

/// Debian's libpam-duo 1.11.3 module (duo_unix, REST v1 + BSON).
const PEER_SO: &str = "/lib/x86_64-linux-gnu/security/pam_duo.so";
/// The bench user that exists in the namespace's /etc/passwd (the peer calls getpwnam).
const BENCH_USER: &str = "duobench";
/// The uid given to BENCH_USER and, counting up, to the scale users.
const BENCH_UID: u32 = 64100;
/// The PAM service name used for both modules: with `sshd`, pam_duo 1.11.3 authenticates
/// synchronously (one auth.bson that returns the result), which is its fastest path.
const SERVICE: &str = "sshd";
const RHOST: &str = "192.0.2.10";
const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Small statistics and formatting helpers.

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    // Nearest rank; for the median of an even count, the mean of the two middle values.
    if (p - 50.0).abs() < f64::EPSILON && v.len() % 2 == 0 {
        let hi = v.len() / 2;
        return (v[hi - 1] + v[hi]) / 2.0;
    }
    let rank = ((p / 100.0) * (v.len() as f64)).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ratio(ours: f64, peer: f64) -> String {
    if peer > 0.0 && ours.is_finite() && peer.is_finite() {
        format!("{:.2}x", ours / peer)
    } else {
        "n/a".to_owned()
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn threads_now() -> usize {
    fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

// ---------------------------------------------------------------------------------------------
// Running a child and collecting its resource usage with wait4(2).

/// What one child process cost.
#[derive(Debug, Clone, Default)]
struct Measured {
    wall: Duration,
    /// user + sys CPU seconds of the child (and its waited-for descendants).
    cpu: f64,
    /// Exit code, or 128 + signal.
    code: i32,
    stdout: String,
    stderr: String,
}

fn wait4(pid: u32) -> (i32, libc::rusage) {
    let mut status: c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child that nobody else waits for; the pointers are valid.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            panic!("wait4({pid}): {err}");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, usage)
}

fn cpu_of(u: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs `cmd` to completion, collecting stdout and stderr, and returns its cost.
fn run_measured(cmd: &mut Command) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut err_pipe = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let (code, usage) = wait4(child.id());
    let wall = start.elapsed();
    Measured {
        wall,
        cpu: cpu_of(&usage),
        code,
        stdout,
        stderr: err_thread.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// `pam-login`: the per-login driver (the same binary drives ours, the peer and pam_permit).

mod pam_ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub const PAM_SUCCESS: c_int = 0;
    pub const PAM_CONV_ERR: c_int = 19;
    pub const PAM_BUF_ERR: c_int = 5;
    pub const PAM_RHOST: c_int = 4;
    pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
    pub const PAM_PROMPT_ECHO_ON: c_int = 2;
    pub const PAM_MAX_NUM_MSG: c_int = 32;

    #[repr(C)]
    pub struct PamHandle {
        _private: [u8; 0],
    }

    #[repr(C)]
    pub struct PamMessage {
        pub msg_style: c_int,
        pub msg: *const c_char,
    }

    #[repr(C)]
    pub struct PamResponse {
        pub resp: *mut c_char,
        pub resp_retcode: c_int,
    }

    pub type ConvFn = unsafe extern "C" fn(
        c_int,
        *mut *const PamMessage,
        *mut *mut PamResponse,
        *mut c_void,
    ) -> c_int;

    #[repr(C)]
    pub struct PamConv {
        pub conv: Option<ConvFn>,
        pub appdata_ptr: *mut c_void,
    }

    #[link(name = "pam")]
    extern "C" {
        pub fn pam_start_confdir(
            service_name: *const c_char,
            user: *const c_char,
            pam_conversation: *const PamConv,
            confdir: *const c_char,
            pamh: *mut *mut PamHandle,
        ) -> c_int;
        pub fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
        pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
        pub fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    }
}

static CONV_MESSAGES: AtomicUsize = AtomicUsize::new(0);

/// Counts messages and answers every prompt with an empty string (Enter).
///
/// # Safety
/// Called by libpam with `num_msg` valid message pointers and a valid `resp` out-pointer.
unsafe extern "C" fn bench_conversation(
    num_msg: c_int,
    _msg: *mut *const pam_ffi::PamMessage,
    resp: *mut *mut pam_ffi::PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || num_msg > pam_ffi::PAM_MAX_NUM_MSG || resp.is_null() || _msg.is_null() {
        return pam_ffi::PAM_CONV_ERR;
    }
    let count = num_msg as usize;
    CONV_MESSAGES.fetch_add(count, Ordering::Relaxed);
    // SAFETY: calloc returns NULL (checked) or zeroed memory for `count` responses.
    let replies = unsafe { libc::calloc(count, std::mem::size_of::<pam_ffi::PamResponse>()) }
        .cast::<pam_ffi::PamResponse>();
    if replies.is_null() {
        return pam_ffi::PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: i < num_msg; libpam passes num_msg valid message pointers.
        let style = unsafe { (**_msg.add(i)).msg_style };
        if style == pam_ffi::PAM_PROMPT_ECHO_OFF || style == pam_ffi::PAM_PROMPT_ECHO_ON {
            // SAFETY: a 1-byte zeroed buffer is the empty C string; libpam frees it.
            let empty = unsafe { libc::calloc(1, 1) }.cast::<c_char>();
            // SAFETY: i < count, inside the array we allocated.
            unsafe { (*replies.add(i)).resp = empty };
        }
    }
    // SAFETY: resp is a valid out-pointer; libpam takes ownership.
    unsafe { *resp = replies };
    pam_ffi::PAM_SUCCESS
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// One login; prints
/// `pam-login code=N start_us=.. auth_us=.. end_us=.. threads_start=.. threads_auth=..
/// threads_end=.. conv=..`.
fn cmd_pam_login(args: &[String]) -> ExitCode {
    let (Some(confdir), Some(service), Some(user)) = (
        flag_value(args, "--confdir"),
        flag_value(args, "--service"),
        flag_value(args, "--user"),
    ) else {
        eprintln!(
            "usage: duo-bench pam-login --confdir DIR --service NAME --user USER [--rhost IP]"
        );
        return ExitCode::from(2);
    };
    let rhost = flag_value(args, "--rhost");
    let c_confdir = CString::new(confdir).unwrap();
    let c_service = CString::new(service).unwrap();
    let c_user = CString::new(user).unwrap();
    let c_rhost = rhost.map(|r| CString::new(r).unwrap());
    let conv = pam_ffi::PamConv {
        conv: Some(bench_conversation),
        appdata_ptr: std::ptr::null_mut(),
    };
    let mut pamh: *mut pam_ffi::PamHandle = std::ptr::null_mut();
    let t0 = Instant::now();
    // SAFETY: valid NUL-terminated strings and a conversation struct that outlive the handle.
    let rc = unsafe {
        pam_ffi::pam_start_confdir(
            c_service.as_ptr(),
            c_user.as_ptr(),
            &conv,
            c_confdir.as_ptr(),
            &mut pamh,
        )
    };
    let start_us = t0.elapsed().as_micros();
    if rc != pam_ffi::PAM_SUCCESS || pamh.is_null() {
        println!("pam-login code={rc} failed=pam_start");
        return ExitCode::from(1);
    }
    if let Some(r) = &c_rhost {
        // SAFETY: live handle; libpam copies the string.
        unsafe { pam_ffi::pam_set_item(pamh, pam_ffi::PAM_RHOST, r.as_ptr().cast()) };
    }
    let threads_start = threads_now();
    let t1 = Instant::now();
    // SAFETY: live handle.
    let code = unsafe { pam_ffi::pam_authenticate(pamh, 0) };
    let auth_us = t1.elapsed().as_micros();
    let threads_auth = threads_now();
    let t2 = Instant::now();
    // SAFETY: live handle, not used afterwards.
    unsafe { pam_ffi::pam_end(pamh, code) };
    let end_us = t2.elapsed().as_micros();
    let threads_end = threads_now();
    // VmHWM: this process's own peak RSS since exec. (ru_maxrss seen by the parent is not:
    // Linux carries the spawning parent's high-water mark into the child at exec.)
    let hwm_kb = vm_status_kb("self", "VmHWM:");
    println!(
        "pam-login code={code} start_us={start_us} auth_us={auth_us} end_us={end_us} \
         threads_start={threads_start} threads_auth={threads_auth} threads_end={threads_end} \
         hwm_kb={hwm_kb} conv={}",
        CONV_MESSAGES.load(Ordering::Relaxed)
    );
    let _ = std::io::stdout().flush();
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A `kB` line (`VmHWM:`, `VmRSS:`) of /proc/PID/status; 0 when unreadable.
fn vm_status_kb(pid: &str, key: &str) -> i64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `key=value` fields of a `pam-login` line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// `dlopen`: the cost of loading a module in a fresh process.

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a valid C string.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown".to_owned()
    } else {
        // SAFETY: non-NULL dlerror strings are NUL-terminated.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn cmd_dlopen(args: &[String]) -> ExitCode {
    let Some(path) = args.first() else {
        eprintln!("usage: duo-bench dlopen PATH [--preload LIB]");
        return ExitCode::from(2);
    };
    if let Some(lib) = flag_value(args, "--preload") {
        let c = CString::new(lib.clone()).unwrap();
        // SAFETY: a valid path string.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            println!("dlopen failed=preload {lib}: {}", dl_error());
            return ExitCode::from(1);
        }
    }
    let c = CString::new(path.clone()).unwrap();
    let t0 = Instant::now();
    // SAFETY: a valid path string; the library's constructors run (that is the point).
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    let ns = t0.elapsed().as_nanos();
    if h.is_null() {
        println!("dlopen failed={}", dl_error());
        return ExitCode::from(1);
    }
    println!("dlopen ns={ns}");
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// The `run` orchestration.

/// Everything a section needs.
struct Ctx {
    quick: bool,
    /// Directory of this run's files (configs, confdirs, logs).
    work: PathBuf,
    /// This executable.
    exe: PathBuf,
    /// Directory of the built artifacts (this executable's directory).
    bin_dir: PathBuf,
    /// Our PAM module (release build).
    module: PathBuf,
    /// The shim (release build).
    shim: PathBuf,
    /// The report, Markdown.
    out: String,
    /// Targets that were missed, for the summary.
    missed: Vec<String>,
}

impl Ctx {
    fn say(&mut self, text: &str) {
        eprintln!("{text}");
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn progress(&self, text: &str) {
        eprintln!("duo-bench: {text}");
    }

    fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.work.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        chown(&path, Some(0), Some(0)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A PAM confdir holding service `sshd` with this text.
    fn confdir(&self, name: &str, service_text: &str) -> PathBuf {
        let dir = self.work.join("pam").join(name);
        fs::create_dir_all(&dir).unwrap();
        self.file(&format!("pam/{name}/{SERVICE}"), service_text, 0o644);
        dir
    }

    fn login_cmd(&self, confdir: &Path, user: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("pam-login")
            .arg("--confdir")
            .arg(confdir)
            .args(["--service", SERVICE, "--user", user, "--rhost", RHOST])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }

    fn miss(&mut self, what: String) {
        self.missed.push(what);
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Err(_) => String::new(),
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Re-executes under a private mount namespace (once), then overlays /etc there.
fn enter_namespace(args: &[String], work: &Path) {
    if std::env::var_os("DUO_BENCH_NS").is_none() {
        let exe = std::env::current_exe().unwrap();
        let err = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(exe)
            .arg("run")
            .args(args)
            .env("DUO_BENCH_NS", "1")
            .exec();
        panic!("cannot re-execute under unshare: {err}");
    }
    let own = fs::read_link("/proc/self/ns/mnt").ok();
    let init = fs::read_link("/proc/1/ns/mnt").ok();
    assert!(
        own.is_some() && own != init,
        "duo-bench run must be in a private mount namespace (it mounts over /etc)"
    );
    let upper = work.join("etc-upper");
    let wdir = work.join("etc-work");
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&wdir).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir=/etc,upperdir={},workdir={}",
                upper.display(),
                wdir.display()
            ))
            .arg("/etc"),
    );
}

/// Adds passwd entries (inside the namespace's /etc overlay only).
fn add_passwd_users(names: &[(String, u32)]) {
    let mut text = fs::read_to_string("/etc/passwd").unwrap();
    for (name, uid) in names {
        if !text.lines().any(|l| l.starts_with(&format!("{name}:"))) {
            let _ = writeln!(
                text,
                "{name}:x:{uid}:{uid}:duo-bench user:/nonexistent:/usr/sbin/nologin"
            );
        }
    }
    fs::write("/etc/passwd", text).unwrap();
}

fn machine_description() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let cores = sh("nproc");
    let mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo");
    let kernel = sh("uname -r");
    let os = sh(". /etc/os-release; echo \"$PRETTY_NAME\"");
    let load = sh("cut -d' ' -f1-3 /proc/loadavg");
    let rustc = sh("rustc --version 2>/dev/null");
    let peer = sh("dpkg-query -W -f='${Version}' libpam-duo 2>/dev/null");
    let ssh = sh("dpkg-query -W -f='${Version}' openssh-server 2>/dev/null");
    let socat = sh("dpkg-query -W -f='${Version}' socat 2>/dev/null");
    let libpam = sh("dpkg-query -W -f='${Version}' libpam0g 2>/dev/null");
    format!(
        "- CPU: {cpu} ({cores} cores), RAM {mem}; kernel {kernel}; {os}\n\
         - load average at start: {load}\n\
         - {rustc}; libpam0g {libpam}; libpam-duo {peer}; openssh-server {ssh}; socat {socat}\n"
    )
}

fn cmd_run(args: &[String]) -> ExitCode {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("duo-bench run needs root (namespaces, bind mounts, sshd): use sudo bench/run");
        return ExitCode::from(2);
    }
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().unwrap().to_path_buf();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let work = workspace
        .join("target")
        .join("bench")
        .join(format!("run-{}", std::process::id()));
    if std::env::var_os("DUO_BENCH_NS").is_some() {
        fs::create_dir_all(&work).unwrap();
    }
    enter_namespace(args, &work);
    let quick = args.iter().any(|a| a == "--quick");
    let out_file = flag_value(args, "--out").map(PathBuf::from);
    let only: Option<BTreeSet<String>> =
        flag_value(args, "--only").map(|s| s.split(',').map(str::to_owned).collect());
    let wants = |n: &str| only.as_ref().is_none_or(|o| o.contains(n));

    let module = bin_dir.join("libpam_duo_push.so");
    let shim = bin_dir.join("duo-proxy-shim");
    for p in [
        &module,
        &shim,
        &bin_dir.join("mock-duo"),
        &bin_dir.join("pam-driver"),
    ] {
        assert!(
            p.exists(),
            "{} is missing: build first (bench/run does: cargo build --release -p pam_duo_push \
             -p proxy_shim -p duo_push_tests --bins)",
            p.display()
        );
    }
    assert!(
        Path::new(PEER_SO).exists(),
        "{PEER_SO} missing: apt-get install libpam-duo"
    );
    // The lab finds mock-duo and pam-driver next to this executable.
    std::env::set_var("DUO_PUSH_MOCK_BIN", bin_dir.join("mock-duo"));
    std::env::set_var("DUO_PUSH_PAM_DRIVER_BIN", bin_dir.join("pam-driver"));

    let mut ctx = Ctx {
        quick,
        work: work.clone(),
        exe,
        bin_dir,
        module,
        shim,
        out: String::new(),
        missed: Vec::new(),
    };
    let started = Instant::now();
    let when = sh("date -u '+%Y-%m-%d %H:%M UTC'");
    ctx.say(&format!(
        "## Latest results ({when}{})\n",
        if quick {
            ", --quick: fewer repetitions"
        } else {
            ""
        }
    ));
    ctx.say(&machine_description());

    add_passwd_users(&[(BENCH_USER.to_owned(), BENCH_UID)]);
    let mock = MockDuo::start(MockOpts {
        ikey: TEST_IKEY.to_owned(),
        skey: TEST_SKEY.to_owned(),
        extra_args: vec!["--quiet".to_owned()],
        ..MockOpts::default()
    });
    let ours_conf = ctx.file("ours.conf", &ours_config(&mock, ""), 0o600);
    let peer_conf = ctx.file(
        "peer.conf",
        &format!(
            "[duo]\nikey = {TEST_IKEY}\nskey = {TEST_SKEY}\nhost = localhost:{}\ncafile = {}\n\
             autopush = yes\nprompts = 1\nfailmode = secure\n",
            mock.port(),
            mock.ca_pem_path().display()
        ),
        0o600,
    );
    let ours_dir = ctx.confdir(
        "ours",
        &format!(
            "auth required {} conf={}\n",
            ctx.module.display(),
            ours_conf.display()
        ),
    );
    let peer_dir = ctx.confdir(
        "peer",
        &format!("auth required {PEER_SO} conf={}\n", peer_conf.display()),
    );
    let permit_dir = ctx.confdir("permit", "auth required pam_permit.so\n");

    if wants("login") {
        section_logins(&mut ctx, &mock, &ours_dir, &peer_dir, &permit_dir);
    }
    if wants("load") {
        section_loading(&mut ctx);
    }
    if wants("where") {
        section_where(&mut ctx, &mock, &ours_conf, &ours_dir, &peer_dir);
    }
    if wants("relay") || wants("session") {
        let setup = start_lab(&ctx, &mock);
        if wants("relay") {
            section_relay(&mut ctx, &mock, &setup);
        }
        if wants("session") {
            section_session(&mut ctx, &mock, &setup);
        }
        drop(setup);
    }
    if wants("scale") {
        section_scale(&mut ctx);
    }
    drop(mock);

    ctx.say("### Summary\n");
    if ctx.missed.is_empty() {
        ctx.say("Every target was met.\n");
    } else {
        let list = ctx
            .missed
            .iter()
            .map(|m| format!("- {m}"))
            .collect::<Vec<_>>()
            .join("\n");
        ctx.say(&format!("Targets missed in this run:\n\n{list}\n"));
    }
    let load = sh("cut -d' ' -f1-3 /proc/loadavg");
    ctx.say(&format!(
        "Whole run: {:.0} s (load average at the end: {load}).\n",
        started.elapsed().as_secs_f64()
    ));
    if let Some(path) = out_file {
        fs::write(&path, &ctx.out).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("duo-bench: report written to {}", path.display());
    }
    if std::env::var_os("DUO_BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&work);
    }
    ExitCode::SUCCESS
}

fn ours_config(mock: &MockDuo, extra: &str) -> String {
    format!(
        "[duo]\nhost = {}\nikey = {TEST_IKEY}\nskey = {TEST_SKEY}\ncafile = {}\n\
         [policy]\nforce_mfa = yes\n[proxy]\nname = vault.bench\n{extra}",
        mock.host(),
        mock.ca_pem_path().display()
    )
}

/// Per-login figures from one `pam-login` run plus mock-duo's request log.
#[derive(Debug, Clone, Default)]
struct Login {
    m: Measured,
    auth_ms: f64,
    start_ms: f64,
    end_ms: f64,
    threads_start: f64,
    threads_auth: f64,
    threads_end: f64,
    hwm_kb: f64,
    requests: usize,
    connections: usize,
    paths: Vec<String>,
}

fn one_login(ctx: &Ctx, mock: &MockDuo, confdir: &Path, what: &str) -> Login {
    mock.reset();
    let m = run_measured(&mut ctx.login_cmd(confdir, BENCH_USER));
    let line = m
        .stdout
        .lines()
        .find(|l| l.starts_with("pam-login "))
        .unwrap_or("")
        .to_owned();
    assert!(
        m.code == 0 && field(&line, "code") == Some(0.0),
        "{what} login failed (exit {}): {}\n{}",
        m.code,
        m.stdout,
        m.stderr
    );
    let log = mock.requests();
    let connections: BTreeSet<u64> = log
        .iter()
        .filter_map(|r| r["connection"].as_u64())
        .collect();
    Login {
        auth_ms: field(&line, "auth_us").unwrap_or(f64::NAN) / 1000.0,
        start_ms: field(&line, "start_us").unwrap_or(f64::NAN) / 1000.0,
        end_ms: field(&line, "end_us").unwrap_or(f64::NAN) / 1000.0,
        threads_start: field(&line, "threads_start").unwrap_or(f64::NAN),
        threads_auth: field(&line, "threads_auth").unwrap_or(f64::NAN),
        threads_end: field(&line, "threads_end").unwrap_or(f64::NAN),
        hwm_kb: field(&line, "hwm_kb").unwrap_or(f64::NAN),
        requests: log.len(),
        connections: connections.len(),
        paths: log
            .iter()
            .map(|r| r["path"].as_str().unwrap_or("?").to_owned())
            .collect(),
        m,
    }
}

/// Results of section 1, kept for section 3.
static LOGIN_RESULTS: Mutex<Vec<(String, Vec<Login>)>> = Mutex::new(Vec::new());

fn col(logins: &[Login], f: impl Fn(&Login) -> f64) -> Vec<f64> {
    logins.iter().map(f).collect()
}

fn section_logins(ctx: &mut Ctx, mock: &MockDuo, ours: &Path, peer: &Path, permit: &Path) {
    let n = ctx.n(50, 10);
    ctx.progress(&format!(
        "1-2: {n} interleaved logins each (ours, peer, pam_permit)"
    ));
    // Warm-up: page cache, the mock's first connections.
    for dir in [ours, peer, permit] {
        for _ in 0..3 {
            one_login(ctx, mock, dir, "warm-up");
        }
    }
    let mut o = Vec::new();
    let mut p = Vec::new();
    let mut b = Vec::new();
    for _ in 0..n {
        o.push(one_login(ctx, mock, ours, "ours"));
        p.push(one_login(ctx, mock, peer, "peer"));
        b.push(one_login(ctx, mock, permit, "pam_permit"));
    }
    let med = |v: &[Login], f: &dyn Fn(&Login) -> f64| median(&col(v, f));
    let p90 = |v: &[Login], f: &dyn Fn(&Login) -> f64| percentile(&col(v, f), 90.0);
    let auth = |l: &Login| l.auth_ms;
    let wall = |l: &Login| l.m.wall.as_secs_f64() * 1000.0;
    let cpu = |l: &Login| l.m.cpu * 1000.0;
    let rss = |l: &Login| l.hwm_kb;

    let (oa, pa) = (med(&o, &auth), med(&p, &auth));
    let latency_ok = oa <= 0.5 * pa;
    if !latency_ok {
        ctx.miss(format!(
            "1. vault-login latency: ours {oa:.2} ms vs peer {pa:.2} ms = {} (target <= 0.50x)",
            ratio(oa, pa)
        ));
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 1. Vault login: one `pam_authenticate` against mock-duo, instant approval\n\n\
         {n} logins each, interleaved (ours, peer, pam_permit, ours, ...), each in a fresh \
         `duo-bench pam-login` process (libpam `pam_start_confdir`, service `{SERVICE}`, \
         user `{BENCH_USER}`, rhost {RHOST}), loopback TLS to mock-duo. \
         Peer: Debian libpam-duo `pam_duo.so` (`autopush = yes`; under service `sshd` it \
         authenticates synchronously).\n"
    );
    let _ = writeln!(t, "| figure | ours | peer | ours/peer | target |");
    let _ = writeln!(t, "|---|---:|---:|---:|---|");
    let _ = writeln!(
        t,
        "| `pam_authenticate` median (ms) | {oa:.2} | {pa:.2} | {} | <= 0.50x: {} |",
        ratio(oa, pa),
        verdict(latency_ok)
    );
    let _ = writeln!(
        t,
        "| `pam_authenticate` p90 (ms) | {:.2} | {:.2} | {} | |",
        p90(&o, &auth),
        p90(&p, &auth),
        ratio(p90(&o, &auth), p90(&p, &auth))
    );
    let _ = writeln!(
        t,
        "| whole login process, exec to exit, median (ms) | {:.2} | {:.2} | {} | |",
        med(&o, &wall),
        med(&p, &wall),
        ratio(med(&o, &wall), med(&p, &wall))
    );
    let _ = writeln!(
        t,
        "| `pam_start_confdir` (loads the module) median (ms) | {:.2} | {:.2} | {} | |",
        med(&o, &|l| l.start_ms),
        med(&p, &|l| l.start_ms),
        ratio(med(&o, &|l| l.start_ms), med(&p, &|l| l.start_ms))
    );
    let _ = writeln!(
        t,
        "| same process with `pam_permit.so` instead (baseline), wall median (ms) | {:.2} | {:.2} | | |",
        med(&b, &wall),
        med(&b, &wall)
    );
    ctx.say(&t);

    let (oc, pc, bc) = (med(&o, &cpu), med(&p, &cpu), med(&b, &cpu));
    let (or, pr, br) = (med(&o, &rss), med(&p, &rss), med(&b, &rss));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 2. Cost per login (same runs)\n\n\
         CPU = user + sys of the login process from `wait4(2)`; peak RSS = its own `VmHWM` \
         (read by the process at its end). \
         \"Added\" subtracts the same process running `pam_permit.so` (exec, libc, libpam).\n"
    );
    let _ = writeln!(
        t,
        "| figure | ours | peer | ours/peer | pam_permit baseline |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|");
    let _ = writeln!(
        t,
        "| CPU per login, median (ms) | {oc:.2} | {pc:.2} | {} | {bc:.2} |",
        ratio(oc, pc)
    );
    let _ = writeln!(
        t,
        "| CPU added by the module, median (ms) | {:.2} | {:.2} | {} | |",
        oc - bc,
        pc - bc,
        ratio(oc - bc, pc - bc)
    );
    let _ = writeln!(
        t,
        "| peak RSS of the login process, median (MiB) | {:.1} | {:.1} | {} | {:.1} |",
        or / 1024.0,
        pr / 1024.0,
        ratio(or, pr),
        br / 1024.0
    );
    let _ = writeln!(
        t,
        "| RSS added by the module, median (MiB) | {:.1} | {:.1} | {} | |",
        (or - br) / 1024.0,
        (pr - br) / 1024.0,
        ratio(or - br, pr - br)
    );
    ctx.say(&t);
    let mut results = LOGIN_RESULTS.lock().unwrap();
    results.push(("ours".to_owned(), o));
    results.push(("peer".to_owned(), p));
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Size after `strip --strip-all` of a copy (the file itself is not changed).
fn stripped_size(ctx: &Ctx, path: &Path) -> u64 {
    let copy = ctx.work.join(format!(
        "stripped-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    let ok = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&copy)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        file_size(&copy)
    } else {
        file_size(path)
    }
}

/// Shared libraries `path` needs (ldd), resolved paths.
fn needed_libs(path: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(|p| fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
        .collect()
}

fn section_loading(ctx: &mut Ctx) {
    let n = ctx.n(40, 10);
    ctx.progress(&format!(
        "2: sizes and {n} interleaved dlopen processes per module"
    ));
    let ours_size = stripped_size(ctx, &ctx.module);
    let peer_size = stripped_size(ctx, Path::new(PEER_SO));
    // What the peer pulls in that ours does not (libduo, libssl, libcrypto).
    let ours_libs = needed_libs(&ctx.module);
    let peer_extra: Vec<PathBuf> = needed_libs(Path::new(PEER_SO))
        .into_iter()
        .filter(|l| !ours_libs.contains(l))
        .collect();
    let peer_closure = peer_size + peer_extra.iter().map(|l| file_size(l)).sum::<u64>();
    let extra_names = peer_extra
        .iter()
        .map(|l| l.file_name().unwrap().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let crypto = "libcrypto.so.3";
    let mut times: [Vec<f64>; 4] = Default::default();
    for _ in 0..n {
        for (i, (so, preload)) in [
            (ctx.module.clone(), None),
            (PathBuf::from(PEER_SO), None),
            (ctx.module.clone(), Some(crypto)),
            (PathBuf::from(PEER_SO), Some(crypto)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut cmd = Command::new(&ctx.exe);
            cmd.arg("dlopen").arg(&so).env_clear();
            if let Some(lib) = preload {
                cmd.args(["--preload", lib]);
            }
            let m = run_measured(&mut cmd);
            let ns = field(m.stdout.trim(), "ns")
                .unwrap_or_else(|| panic!("dlopen {}: {}{}", so.display(), m.stdout, m.stderr));
            times[i].push(ns / 1e6);
        }
    }
    let [o, p, oc, pc] = times.map(|v| median(&v));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 2b. Module size and load time\n\n\
         Size: the file after `strip --strip-all` (ours: `cargo build --release -p pam_duo_push`, \
         LTO, symbols stripped). The peer's 18 KiB module is a thin wrapper: its TLS and Duo \
         code live in {extra_names}, which ours does not load, so the \"with libraries\" row \
         adds them. Load: one `dlopen(RTLD_NOW)` per fresh process, {n} processes each, \
         interleaved; median. \"libcrypto already loaded\" is sshd's situation (Debian's sshd \
         links libcrypto.so.3).\n"
    );
    let _ = writeln!(t, "| figure | ours | peer | ours/peer |");
    let _ = writeln!(t, "|---|---:|---:|---:|");
    let _ = writeln!(
        t,
        "| stripped module (KiB) | {} | {} | {} |",
        ours_size / 1024,
        peer_size / 1024,
        ratio(ours_size as f64, peer_size as f64)
    );
    let _ = writeln!(
        t,
        "| module + libraries ours does not need (KiB) | {} | {} | {} |",
        ours_size / 1024,
        peer_closure / 1024,
        ratio(ours_size as f64, peer_closure as f64)
    );
    let _ = writeln!(
        t,
        "| dlopen in a fresh process, median (ms) | {o:.3} | {p:.3} | {} |",
        ratio(o, p)
    );
    let _ = writeln!(
        t,
        "| dlopen with libcrypto already loaded, median (ms) | {oc:.3} | {pc:.3} | {} |",
        ratio(oc, pc)
    );
    ctx.say(&t);
}

/// Files opened under `strace -f -e trace=openat,open`: (all opened paths, trust-store paths).
fn traced_opens(ctx: &Ctx, confdir: &Path, name: &str) -> (usize, Vec<String>) {
    let log = ctx.work.join(format!("strace-{name}.log"));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=openat,open", "-o"])
        .arg(&log)
        .arg(&ctx.exe)
        .arg("pam-login")
        .arg("--confdir")
        .arg(confdir)
        .args(["--service", SERVICE, "--user", BENCH_USER, "--rhost", RHOST])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let m = run_measured(&mut cmd);
    assert_eq!(m.code, 0, "strace {name}: {}{}", m.stdout, m.stderr);
    let text = fs::read_to_string(&log).unwrap_or_default();
    let opened: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("ENOENT") || l.contains("ssl") || l.contains("cert"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    let trust: Vec<String> = opened
        .iter()
        .filter(|p| {
            p.starts_with("/etc/ssl")
                || p.starts_with("/usr/lib/ssl")
                || p.contains("ca-certificates")
                || p.starts_with("/usr/share/ca-certificates")
                || p.contains("openssl.cnf")
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (opened.len(), trust)
}

/// One login's worth of work done in this process with the common crate, timed step by step.
#[derive(Debug, Default, Clone)]
struct Breakdown {
    config_load: f64,
    runtime: f64,
    client_new: f64,
    preauth_first: f64,
    push: f64,
    auth_status: f64,
    shutdown: f64,
}

fn in_process_login(conf: &Path) -> Breakdown {
    use duo_push_common::api::{DuoApi, PushRequest, Subject};
    use duo_push_common::client::{ClientSettings, DuoClient};
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let mut b = Breakdown::default();
    let t = Instant::now();
    let config = Config::load(conf).unwrap_or_else(|e| panic!("{e}"));
    b.config_load = ms(t);
    let t = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    b.runtime = ms(t);
    let t = Instant::now();
    let api = DuoClient::new(ClientSettings {
        host: config.duo.host.authority().to_owned(),
        ikey: config.duo.ikey.as_str().to_owned(),
        skey: config.duo.skey.clone(),
        signature_version: config.duo.signature_version,
        https_timeout: config.duo.https_timeout,
        cafile: config.duo.cafile.clone(),
        http_proxy: config.duo.http_proxy.clone(),
        user_agent_product: "pam_duo_push",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    b.client_new = ms(t);
    runtime.block_on(async {
        let subject = Subject {
            username: BENCH_USER.to_owned(),
            ipaddr: Some(RHOST.to_owned()),
            hostname: Some("vault.bench".to_owned()),
        };
        let t = Instant::now();
        api.preauth(&subject)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        b.preauth_first = ms(t);
        let t = Instant::now();
        let txid = api
            .push(&PushRequest {
                subject,
                device: "auto".to_owned(),
                kind: "Vault login".to_owned(),
                display_username: None,
                pushinfo: vec![("hop".to_owned(), "vault".to_owned())],
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        b.push = ms(t);
        let t = Instant::now();
        api.auth_status(&txid, tokio::time::Instant::now() + Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        b.auth_status = ms(t);
        drop(api);
    });
    let t = Instant::now();
    runtime.shutdown_timeout(Duration::from_secs(2));
    b.shutdown = ms(t);
    b
}

fn section_where(ctx: &mut Ctx, mock: &MockDuo, ours_conf: &Path, ours: &Path, peer: &Path) {
    ctx.progress("3: requests, handshakes, threads, trust store, config loading, breakdown");
    let mut results = LOGIN_RESULTS.lock().unwrap().clone();
    if results.is_empty() {
        let o = (0..5).map(|_| one_login(ctx, mock, ours, "ours")).collect();
        let p = (0..5).map(|_| one_login(ctx, mock, peer, "peer")).collect();
        results = vec![("ours".to_owned(), o), ("peer".to_owned(), p)];
    }
    let o = &results[0].1;
    let p = &results[1].1;
    let maxf = |v: &[Login], f: &dyn Fn(&Login) -> f64| col(v, f).into_iter().fold(0.0, f64::max);
    let med = |v: &[Login], f: &dyn Fn(&Login) -> f64| median(&col(v, f));
    let o_conn = med(o, &|l| l.connections as f64);
    let p_conn = med(p, &|l| l.connections as f64);
    let o_conn_max = maxf(o, &|l| l.connections as f64);
    let o_req = med(o, &|l| l.requests as f64);
    let p_req = med(p, &|l| l.requests as f64);
    let o_threads = maxf(o, &|l| l.threads_auth);
    let o_threads_start = maxf(o, &|l| l.threads_start);
    let p_threads = maxf(p, &|l| l.threads_auth);
    let (o_opens, o_trust) = traced_opens(ctx, ours, "ours");
    let (p_opens, p_trust) = traced_opens(ctx, peer, "peer");

    let handshake_ok = o_conn_max <= 1.0;
    let threads_ok = o_threads <= o_threads_start;
    let trust_ok = o_trust.is_empty();
    if !handshake_ok {
        ctx.miss(format!(
            "3. TLS handshakes per login: ours up to {o_conn_max} (target 1)"
        ));
    }
    if !threads_ok {
        ctx.miss(format!(
            "3. threads after pam_authenticate: ours {o_threads} vs {o_threads_start} before"
        ));
    }
    if !trust_ok {
        ctx.miss(format!("3. ours opened trust-store files: {o_trust:?}"));
    }

    // Config::load micro-benchmark, and a catalog of 200 targets.
    let n = ctx.n(2000, 300);
    let mut big = ours_config(mock, "");
    for i in 0..200 {
        let _ = write!(
            big,
            "[target t{i:03}]\nhost = 10.1.{}.{}\nport = 22\nallow = alice bob @ops\n",
            i / 250,
            i % 250
        );
    }
    let big_conf = ctx.file("ours-200-targets.conf", &big, 0o600);
    let time_load = |path: &Path| {
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                let c = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
                let us = t.elapsed().as_secs_f64() * 1e6;
                drop(c);
                us
            })
            .collect();
        median(&v)
    };
    let load_small = time_load(ours_conf);
    let load_big = time_load(&big_conf);

    // In-process breakdown of ours.
    let reps = ctx.n(30, 8);
    mock.reset();
    let bd: Vec<Breakdown> = (0..reps).map(|_| in_process_login(ours_conf)).collect();
    let bd_log = mock.requests();
    let bd_conns: BTreeSet<u64> = bd_log
        .iter()
        .filter_map(|r| r["connection"].as_u64())
        .collect();
    let bm = |f: &dyn Fn(&Breakdown) -> f64| median(&bd.iter().map(f).collect::<Vec<_>>());

    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 3. Where the latency goes\n\n\
         Requests and TLS connections per login are read from mock-duo's request log (each \
         request carries the id of the TLS connection it came on; the log is reset before each \
         login of section 1). Threads are counted from `/proc/self/task` inside the login \
         process. Trust store: `strace -f -e trace=openat,open` of one login each.\n"
    );
    let _ = writeln!(t, "| figure | ours | peer | target |");
    let _ = writeln!(t, "|---|---:|---:|---|");
    let _ = writeln!(
        t,
        "| Duo API requests per login (median) | {o_req} | {p_req} | |"
    );
    let _ = writeln!(
        t,
        "| request sequence | {} | {} | |",
        o.first().map(|l| l.paths.join(", ")).unwrap_or_default(),
        p.first().map(|l| l.paths.join(", ")).unwrap_or_default()
    );
    let _ = writeln!(
        t,
        "| TLS handshakes per login (median / max) | {o_conn} / {o_conn_max} | {p_conn} / {} | ours 1: {} |",
        maxf(p, &|l| l.connections as f64),
        verdict(handshake_ok)
    );
    let _ = writeln!(
        t,
        "| threads in the login process before / after `pam_authenticate` (max) | {o_threads_start} / {o_threads} | {} / {p_threads} | none left behind: {} |",
        maxf(p, &|l| l.threads_start),
        verdict(threads_ok)
    );
    let _ = writeln!(
        t,
        "| threads after `pam_end` (max) | {} | {} | |",
        maxf(o, &|l| l.threads_end),
        maxf(p, &|l| l.threads_end)
    );
    let _ = writeln!(
        t,
        "| `pam_end` (unloads the module), median (ms) | {:.3} | {:.3} | |",
        med(o, &|l| l.end_ms),
        med(p, &|l| l.end_ms)
    );
    let _ = writeln!(
        t,
        "| trust-store files opened (`/etc/ssl`, `/usr/lib/ssl`, CA bundles, openssl.cnf) | {} | {} | ours none: {} |",
        if o_trust.is_empty() { "none".to_owned() } else { o_trust.join(" ") },
        if p_trust.is_empty() { "none".to_owned() } else { p_trust.join(" ") },
        verdict(trust_ok)
    );
    let _ = writeln!(
        t,
        "| files opened in the whole login process | {o_opens} | {p_opens} | |"
    );
    let _ = writeln!(
        t,
        "| `Config::load` (secure open + parse), bench config, median (µs) | {load_small:.1} | | |"
    );
    let _ = writeln!(
        t,
        "| `Config::load`, config with 200 targets, median (µs) | {load_big:.1} | | |"
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Ours, step by step ({reps} logins run in-process with the common crate exactly as the \
         module does it; {} requests on {} TLS connections in total, i.e. {:.1} requests and \
         {:.1} connections per login), median ms:\n",
        bd_log.len(),
        bd_conns.len(),
        bd_log.len() as f64 / reps as f64,
        bd_conns.len() as f64 / reps as f64
    );
    let _ = writeln!(
        t,
        "| Config::load | runtime build | DuoClient::new | first call: connect + TLS + ping + preauth | push (/auth) | auth_status | runtime shutdown |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        t,
        "| {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
        bm(&|b| b.config_load),
        bm(&|b| b.runtime),
        bm(&|b| b.client_new),
        bm(&|b| b.preauth_first),
        bm(&|b| b.push),
        bm(&|b| b.auth_status),
        bm(&|b| b.shutdown)
    );
    ctx.say(&t);
}

// ---------------------------------------------------------------------------------------------
// The lab: a target sshd, a plain jump sshd and the Duo proxy sshd (sections 4 and 5).

struct LabSetup {
    _lab: Lab,
    _target: Sshd,
    jump: Sshd,
    proxy: Sshd,
    /// ssh client config naming `proxy`, `jump` and `web01`.
    client_cfg: PathBuf,
}

const LAB_USER: &str = "benchu";

fn start_lab(ctx: &Ctx, mock: &MockDuo) -> LabSetup {
    ctx.progress("lab: starting the target, jump and proxy sshds");
    let lab = Lab::new();
    let duo_gid = lab.add_group("duo-push");
    let user = lab.add_user(LAB_USER, None, &[]);
    let (key, public) = lab.user_keypair(&user);
    lab.authorize_key(&user, &public);
    let target =
        lab.start_sshd(SshdSpec::named("web01").config("AuthenticationMethods publickey\n"));
    let jump = lab.start_sshd(
        SshdSpec::named("jump").config("AuthenticationMethods publickey\nAllowTcpForwarding yes\n"),
    );
    let shim = lab.install_copy(&ctx.shim, "duo-proxy-shim", 0o2755, 0, duo_gid);
    let conf = format!(
        "{}[target web01]\nhost = 127.0.0.1\nport = {}\nlogin = {LAB_USER}\nallow = {LAB_USER}\n",
        ours_config(mock, ""),
        target.port()
    );
    let pam: String = std::iter::once(format!(
        "auth required {} conf=/etc/duo_push/duo_push.conf\n",
        ctx.module.display()
    ))
    .chain(
        DEFAULT_PAM_SSHD
            .lines()
            .filter(|l| l.starts_with("account") || l.starts_with("session"))
            .map(|l| format!("{l}\n")),
    )
    .collect();
    let proxy = lab.start_sshd(
        SshdSpec::named("proxy")
            .config(&format!(
                "AuthenticationMethods publickey,keyboard-interactive\n\
                 KbdInteractiveAuthentication yes\nDisableForwarding yes\nForceCommand {}\n",
                shim.display()
            ))
            .pam(&pam)
            .etc_file(EtcFile::new(
                "duo_push/duo_push.conf",
                &conf,
                0o640,
                0,
                duo_gid,
            ))
            .etc_file(EtcFile::new(
                "duo_push/known_hosts",
                &format!("{}\n", target.known_hosts_line()),
                0o644,
                0,
                0,
            ))
            .etc_file(EtcFile::new(
                "duo_push/ssh_config",
                "Host *\n    BatchMode yes\n",
                0o644,
                0,
                0,
            )),
    );
    let known = ctx.file(
        "client_known_hosts",
        &format!(
            "{}\n{}\n{}\n",
            target.known_hosts_line(),
            jump.known_hosts_line(),
            proxy.known_hosts_line()
        ),
        0o644,
    );
    let client_cfg = ctx.file(
        "client_ssh_config",
        &format!(
            "Host proxy\n    Port {}\nHost jump\n    Port {}\nHost web01\n    Port {}\n\
             Host *\n    HostName 127.0.0.1\n    User {LAB_USER}\n    IdentityFile {}\n\
             \x20   IdentitiesOnly yes\n    IdentityAgent none\n    UserKnownHostsFile {}\n\
             \x20   GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n\
             \x20   UpdateHostKeys no\n    CheckHostIP no\n    ControlMaster no\n\
             \x20   ControlPath none\n    GSSAPIAuthentication no\n    LogLevel ERROR\n",
            proxy.port(),
            jump.port(),
            target.port(),
            key.display(),
            known.display()
        ),
        0o600,
    );
    LabSetup {
        _lab: lab,
        _target: target,
        jump,
        proxy,
        client_cfg,
    }
}

fn ssh_cmd(setup: &LabSetup, args: &[&str]) -> Command {
    let mut cmd = Command::new("/usr/bin/ssh");
    cmd.arg("-F")
        .arg(&setup.client_cfg)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SSH_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    cmd
}

/// CPU seconds an sshd and its reaped children used so far (utime + stime + cutime + cstime
/// of the listener, found by its config path on the command line).
fn sshd_cpu(sshd: &Sshd) -> f64 {
    let needle = sshd.dir().join("sshd_config").display().to_string();
    let ticks = clock_ticks();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains("sshd")
            || !cmdline.contains(&needle)
            || cmdline.starts_with("unshare")
            || cmdline.starts_with("/bin/sh")
        {
            continue;
        }
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: state is field 3; utime..cstime are 14..17.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        if f.len() > 14 {
            return (f[11] + f[12] + f[13] + f[14]) / ticks;
        }
    }
    panic!("no sshd process found for {needle}");
}

// ---------------------------------------------------------------------------------------------
// Section 4: relay throughput.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EndMode {
    /// Read until EOF.
    Sink,
    /// Send this many bytes, then half-close and wait for EOF.
    Source(u64),
}

/// A TCP endpoint on loopback that sinks or sources bytes; reports (bytes, first-to-last).
struct Endpoint {
    port: u16,
    mode: Arc<Mutex<EndMode>>,
    done: std::sync::mpsc::Receiver<(u64, Duration)>,
}

const CHUNK: usize = 1 << 20;

fn start_endpoint() -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mode = Arc::new(Mutex::new(EndMode::Sink));
    let (tx, rx) = std::sync::mpsc::channel();
    let m = Arc::clone(&mode);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mode = *m.lock().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0x5au8; CHUNK];
                let result = match mode {
                    EndMode::Sink => {
                        let mut total = 0u64;
                        let mut first = None;
                        loop {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => {
                                    first.get_or_insert_with(Instant::now);
                                    total += k as u64;
                                }
                            }
                        }
                        (total, first.map(|f| f.elapsed()).unwrap_or_default())
                    }
                    EndMode::Source(n) => {
                        let start = Instant::now();
                        let mut left = n;
                        while left > 0 {
                            let k = left.min(CHUNK as u64) as usize;
                            if stream.write_all(&buf[..k]).is_err() {
                                break;
                            }
                            left -= k as u64;
                        }
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        let elapsed = start.elapsed();
                        while matches!(stream.read(&mut buf), Ok(k) if k > 0) {}
                        (n - left, elapsed)
                    }
                };
                let _ = tx.send(result);
            });
        }
    });
    Endpoint {
        port,
        mode,
        done: rx,
    }
}

#[derive(Debug, Clone, Default)]
struct RelayRun {
    wall: f64,
    cpu: f64,
    bytes: u64,
}

/// Runs one relay command moving `bytes` in `dir` ("up": client -> endpoint, "down": endpoint
/// -> client). `extra_cpu` is read before and after (for sshd's share).
fn relay_once(
    cmd: &mut Command,
    ep: &Endpoint,
    bytes: u64,
    up: bool,
    extra_cpu: &dyn Fn() -> f64,
) -> RelayRun {
    *ep.mode.lock().unwrap() = if up {
        EndMode::Sink
    } else {
        EndMode::Source(bytes)
    };
    while ep.done.try_recv().is_ok() {}
    let cpu_before = extra_cpu();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let received = if up {
        let writer = std::thread::spawn(move || {
            let buf = vec![0xa5u8; CHUNK];
            let mut left = bytes;
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                if stdin.write_all(&buf[..k]).is_err() {
                    break;
                }
                left -= k as u64;
            }
            drop(stdin);
        });
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
        let _ = writer.join();
        ep.done
            .recv_timeout(Duration::from_secs(120))
            .map(|(n, _)| n)
            .unwrap_or(0)
    } else {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => total += k as u64,
            }
        }
        drop(stdin);
        total
    };
    let (code, usage) = wait4(child.id());
    let wall = start.elapsed().as_secs_f64();
    let stderr = err_thread.join().unwrap_or_default();
    assert!(
        received == bytes,
        "{cmd:?} moved {received} of {bytes} bytes (exit {code}): {stderr}"
    );
    // sshd reaps its session processes shortly after the client is gone.
    let extra = if cpu_before > 0.0 {
        std::thread::sleep(Duration::from_millis(300));
        extra_cpu() - cpu_before
    } else {
        0.0
    };
    RelayRun {
        wall,
        cpu: cpu_of(&usage) + extra,
        bytes: received,
    }
}

fn section_relay(ctx: &mut Ctx, mock: &MockDuo, setup: &LabSetup) {
    let rounds = ctx.n(3, 1);
    let bytes = if ctx.quick { GIB / 4 } else { GIB };
    ctx.progress(&format!(
        "4: relay throughput, {} MiB per run, {rounds} interleaved rounds",
        bytes >> 20
    ));
    let ep = start_endpoint();
    // The shim's configuration, in this namespace's /etc overlay: a target without MFA under
    // force_mfa = no, so `connect` sends no push and the figure is the relay alone.
    fs::create_dir_all("/etc/duo_push").unwrap();
    let conf = ours_config(mock, "").replace("force_mfa = yes", "force_mfa = no")
        + &format!(
            "[target sink]\nhost = 127.0.0.1\nport = {}\nallow = root\nmfa = no\n",
            ep.port
        );
    fs::write("/etc/duo_push/duo_push.conf", conf).unwrap();
    fs::set_permissions(
        "/etc/duo_push/duo_push.conf",
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    chown("/etc/duo_push/duo_push.conf", Some(0), Some(0)).unwrap();
    let target = format!("127.0.0.1:{}", ep.port);
    let shim_cmd = || {
        let mut c = Command::new(&ctx.shim);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SSH_ORIGINAL_COMMAND", format!("connect {target}"))
            .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22");
        c
    };
    let socat_cmd = || {
        let mut c = Command::new("socat");
        c.arg("STDIO").arg(format!("TCP:{target}"));
        c
    };
    let socat_big_cmd = || {
        let mut c = Command::new("socat");
        c.args(["-b", "262144", "STDIO"])
            .arg(format!("TCP:{target}"));
        c
    };
    let ssh_cmd_w = || ssh_cmd(setup, &["-W", &target, "jump"]);
    let none = || 0.0;
    let jump_cpu = || sshd_cpu(&setup.jump);
    let tools = [
        "duo-proxy-shim connect",
        "socat STDIO TCP: (defaults)",
        "ssh -W (client + sshd)",
        "socat -b 262144 STDIO TCP: (256 KiB buffer, for reference)",
    ];
    let mut runs: Vec<Vec<Vec<RelayRun>>> = vec![vec![Vec::new(); 2]; 4];
    for _ in 0..rounds {
        for (d, up) in [true, false].into_iter().enumerate() {
            runs[0][d].push(relay_once(&mut shim_cmd(), &ep, bytes, up, &none));
            runs[1][d].push(relay_once(&mut socat_cmd(), &ep, bytes, up, &none));
            runs[2][d].push(relay_once(&mut ssh_cmd_w(), &ep, bytes, up, &jump_cpu));
            runs[3][d].push(relay_once(&mut socat_big_cmd(), &ep, bytes, up, &none));
        }
    }
    let mibps = |v: &[RelayRun]| {
        median(
            &v.iter()
                .map(|r| r.bytes as f64 / r.wall / (1 << 20) as f64)
                .collect::<Vec<_>>(),
        )
    };
    let cpu_gib = |v: &[RelayRun]| {
        median(
            &v.iter()
                .map(|r| r.cpu / (r.bytes as f64 / GIB as f64))
                .collect::<Vec<_>>(),
        )
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 4. Relay throughput\n\n\
         {} MiB per run through each relay between this process (writing to the relay's stdin \
         pipe, or reading its stdout pipe) and a TCP endpoint on 127.0.0.1; {rounds} rounds, \
         interleaved (shim, socat, ssh -W, socat -b), median. Throughput counts the whole run, process \
         start to exit. \"up\" = client -> target, \"down\" = target -> client. CPU = user + \
         sys of the relay process (`wait4`); for ssh -W the jump sshd's share (its session \
         processes, read from the listener's reaped-children times) is added. The shim runs as \
         root with `SSH_ORIGINAL_COMMAND=connect {target}` and a config whose target has \
         `mfa = no` under `force_mfa = no` (no push: the relay alone). socat runs with its \
         defaults (8 KiB buffer); ssh with OpenSSH's default cipher.\n",
        bytes >> 20
    );
    let _ = writeln!(
        t,
        "| relay | up MiB/s | down MiB/s | up CPU s/GiB | down CPU s/GiB |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|");
    for (i, tool) in tools.iter().enumerate() {
        let _ = writeln!(
            t,
            "| {tool} | {:.0} | {:.0} | {:.3} | {:.3} |",
            mibps(&runs[i][0]),
            mibps(&runs[i][1]),
            cpu_gib(&runs[i][0]),
            cpu_gib(&runs[i][1])
        );
    }
    let (su, sd) = (mibps(&runs[0][0]), mibps(&runs[0][1]));
    let (cu, cd) = (mibps(&runs[1][0]), mibps(&runs[1][1]));
    let ok = su >= cu && sd >= cd;
    let _ = writeln!(
        t,
        "\nShim / socat throughput: up {}, down {} (target >= 1.00x: {}). Shim / socat CPU per \
         GiB: up {}, down {}. Shim / ssh -W throughput: up {}, down {}.\n",
        ratio(su, cu),
        ratio(sd, cd),
        verdict(ok),
        ratio(cpu_gib(&runs[0][0]), cpu_gib(&runs[1][0])),
        ratio(cpu_gib(&runs[0][1]), cpu_gib(&runs[1][1])),
        ratio(su, mibps(&runs[2][0])),
        ratio(sd, mibps(&runs[2][1]))
    );
    if !ok {
        ctx.miss(format!(
            "4. relay throughput vs socat: up {}, down {} (target >= 1.00x)",
            ratio(su, cu),
            ratio(sd, cd)
        ));
    }
    ctx.say(&t);
}

// ---------------------------------------------------------------------------------------------
// Section 5: session setup.

fn section_session(ctx: &mut Ctx, mock: &MockDuo, setup: &LabSetup) {
    let n = ctx.n(10, 3);
    ctx.progress(&format!(
        "5: session setup, {n} interleaved runs per variant"
    ));
    // (name, ssh arguments, pushes expected). The last two are one hop each, to split the
    // difference: plain login + command vs Duo vault login + the shim (`list`, no target push).
    let variants: [(&str, Vec<&str>, usize); 5] = [
        (
            "ours: `ssh -tt proxy web01 true`",
            vec!["-tt", "proxy", "web01", "true"],
            2,
        ),
        (
            "ours without a pty: `ssh -T proxy web01 true`",
            vec!["-T", "proxy", "web01", "true"],
            2,
        ),
        (
            "plain OpenSSH jump: `ssh -J jump web01 true`",
            vec!["-J", "jump", "web01", "true"],
            0,
        ),
        (
            "one hop, ours: `ssh -T proxy list` (vault push + shim, no target)",
            vec!["-T", "proxy", "list"],
            1,
        ),
        (
            "one hop, plain: `ssh -T jump true`",
            vec!["-T", "jump", "true"],
            0,
        ),
    ];
    let check = |name: &str, m: &Measured, want: usize| {
        assert_eq!(
            m.code,
            0,
            "{name} failed: {}{}\n--- proxy log ---\n{}\n--- proxy syslog ---\n{}",
            m.stdout,
            m.stderr,
            setup.proxy.log_text(),
            setup.proxy.syslog_lines().join("\n")
        );
        let pushes = mock.pushes();
        assert_eq!(
            pushes.len(),
            want,
            "{name}: expected {want} pushes: {pushes:?}"
        );
    };
    // Warm-up, and a check that each variant works.
    for (name, args, want) in &variants {
        mock.reset();
        check(name, &run_measured(&mut ssh_cmd(setup, args)), *want);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..n {
        for (i, (name, args, want)) in variants.iter().enumerate() {
            mock.reset();
            let m = run_measured(&mut ssh_cmd(setup, args));
            check(name, &m, *want);
            times[i].push(m.wall.as_secs_f64() * 1000.0);
        }
    }
    let med: Vec<f64> = times.iter().map(|v| median(v)).collect();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 5. Session setup through the proxy\n\n\
         Three lab sshds on loopback (tests/src/lab): `web01` (the target), `proxy` (our PAM \
         module for keyboard-interactive after publickey, `ForceCommand duo-proxy-shim`, \
         forwarding disabled) and `jump` (plain sshd, publickey only, forwarding allowed). The \
         same user and key everywhere; mock-duo approves every push at once. Wall time of the \
         client from exec to exit; {n} runs each, interleaved; median. Every run is checked for \
         exit 0 and the number of pushes (2 for ours through to web01: vault, then target).\n"
    );
    let _ = writeln!(
        t,
        "| command | pushes | median (ms) | p90 (ms) | added (ms) |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|");
    for (i, (name, _, want)) in variants.iter().enumerate() {
        let base = if i >= 3 { med[4] } else { med[2] };
        let _ = writeln!(
            t,
            "| {name} | {want} | {:.0} | {:.0} | {:+.0} |",
            med[i],
            percentile(&times[i], 90.0),
            med[i] - base
        );
    }
    let _ = writeln!(
        t,
        "\n\"added\": against plain `-J` for the two-hop rows, against plain `ssh -T jump true` \
         for the one-hop rows. The one-hop difference ({:+.0} ms) is the vault side: the \
         keyboard-interactive round after publickey with our PAM module and its push, and \
         the shim starting instead of `true`; the rest of the two-hop difference ({:+.0} ms) is \
         the target side: the target push, and the proxy starting its own `ssh` client to web01 \
         (where `-J` has the user's client connect through a forwarded channel).\n",
        med[3] - med[4],
        (med[1] - med[2]) - (med[3] - med[4])
    );
    ctx.say(&t);
}

// ---------------------------------------------------------------------------------------------
// Section 6: scale.

/// One burst of concurrent logins.
#[derive(Debug, Clone, Default)]
struct Burst {
    /// First spawn to last exit (s).
    wall: f64,
    /// Time to spawn all processes (s).
    spawn: f64,
    /// Completion time (result line written) after the first spawn: median and max (s).
    done_median: f64,
    done_max: f64,
    /// Logins that printed PAM_SUCCESS.
    ok: usize,
    /// CPU of all processes (s).
    cpu: f64,
    /// Largest VmHWM seen of one process (KiB).
    max_hwm: f64,
    /// Largest sum of VmRSS over the live processes at one sampling instant (KiB).
    peak_sum_rss: f64,
}

/// Runs `count` pam-driver logins at once. Memory is sampled from /proc every 20 ms: VmHWM per
/// process (its own peak since exec) and the sum of VmRSS of those alive.
fn burst(ctx: &Ctx, confdir: &Path, count: usize, tag: &str) -> Burst {
    let dir = ctx.work.join(format!("burst-{tag}"));
    fs::create_dir_all(&dir).unwrap();
    let driver = ctx.bin_dir.join("pam-driver");
    let start = Instant::now();
    let pids: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let pids = Arc::clone(&pids);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut hwm: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
            let mut peak_sum = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let now: Vec<u32> = pids.lock().unwrap().clone();
                let mut sum = 0;
                for pid in now {
                    let status =
                        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    // Only pam-driver itself, not the moment between fork and exec.
                    if !status.starts_with("Name:\tpam-driver") {
                        continue;
                    }
                    let kb = |key: &str| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix(key))
                            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
                            .unwrap_or(0)
                    };
                    sum += kb("VmRSS:");
                    let h = hwm.entry(pid).or_insert(0);
                    *h = (*h).max(kb("VmHWM:"));
                }
                peak_sum = peak_sum.max(sum);
                std::thread::sleep(Duration::from_millis(20));
            }
            (hwm.values().copied().max().unwrap_or(0), peak_sum)
        })
    };
    for i in 0..count {
        let out = fs::File::create(dir.join(format!("{i}.out"))).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(&driver)
            .arg("--confdir")
            .arg(confdir)
            .args([
                "--service",
                SERVICE,
                "--user",
                &format!("load{i:03}"),
                "--rhost",
                RHOST,
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run pam-driver: {e}"));
        pids.lock().unwrap().push(child.id());
    }
    let spawn = start.elapsed().as_secs_f64();
    let all: Vec<u32> = pids.lock().unwrap().clone();
    let mut cpu = 0.0;
    for pid in &all {
        let (_code, usage) = wait4(*pid);
        cpu += cpu_of(&usage);
    }
    let wall = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (max_hwm, peak_sum) = sampler.join().unwrap();
    let started = std::time::SystemTime::now() - start.elapsed();
    let mut ok = 0;
    let mut done = Vec::new();
    for i in 0..count {
        let path = dir.join(format!("{i}.out"));
        if fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("result: authenticate PAM_SUCCESS")
        {
            ok += 1;
        }
        if let Ok(t) = fs::metadata(&path).and_then(|m| m.modified()) {
            done.push(t.duration_since(started).unwrap_or_default().as_secs_f64());
        }
    }
    Burst {
        wall,
        spawn,
        done_median: median(&done),
        done_max: done.iter().copied().fold(0.0, f64::max),
        ok,
        cpu,
        max_hwm: max_hwm as f64,
        peak_sum_rss: peak_sum as f64,
    }
}

fn mock_throughput(mock: &MockDuo, total: usize, workers: usize, fresh: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca = mock.ca_pem_path();
    let port = mock.port();
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..workers {
            let ca = ca.clone();
            let done = Arc::clone(&done);
            tasks.push(tokio::spawn(async move {
                let mut client = DuoTestClient::new(&ca, "127.0.0.1", port).unwrap();
                for i in 0..(total / workers) {
                    if fresh {
                        client = DuoTestClient::new(&ca, "127.0.0.1", port).unwrap();
                    }
                    let user = format!("tp{w}x{i}");
                    let reply = client
                        .call(
                            SignatureVersion::V5,
                            "POST",
                            "/auth/v2/preauth",
                            &[("username", &user)],
                        )
                        .await
                        .unwrap();
                    assert_eq!(reply.json()["response"]["result"], "auth");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    })
}

fn section_scale(ctx: &mut Ctx) {
    let count = 200;
    let rounds = ctx.n(2, 1);
    ctx.progress(&format!(
        "6: {count} logins at once through pam-driver, 1 s approval delay, {rounds} rounds each"
    ));
    let users: Vec<(String, u32)> = (0..count)
        .map(|i| (format!("load{i:03}"), BENCH_UID + 1 + i as u32))
        .collect();
    add_passwd_users(&users);
    let mock = MockDuo::start(MockOpts {
        ikey: TEST_IKEY.to_owned(),
        skey: TEST_SKEY.to_owned(),
        approve_delay_ms: Some(1000),
        extra_args: vec!["--quiet".to_owned()],
        ..MockOpts::default()
    });
    let ours_conf = ctx.file("scale-ours.conf", &ours_config(&mock, ""), 0o600);
    let peer_conf = ctx.file(
        "scale-peer.conf",
        &format!(
            "[duo]\nikey = {TEST_IKEY}\nskey = {TEST_SKEY}\nhost = localhost:{}\ncafile = {}\n\
             autopush = yes\nprompts = 1\nfailmode = secure\n",
            mock.port(),
            mock.ca_pem_path().display()
        ),
        0o600,
    );
    let ours_dir = ctx.confdir(
        "scale-ours",
        &format!(
            "auth required {} conf={}\n",
            ctx.module.display(),
            ours_conf.display()
        ),
    );
    let peer_dir = ctx.confdir(
        "scale-peer",
        &format!("auth required {PEER_SO} conf={}\n", peer_conf.display()),
    );
    let mut res: [Vec<Burst>; 2] = Default::default();
    for r in 0..rounds {
        mock.reset();
        res[0].push(burst(ctx, &ours_dir, count, &format!("ours-{r}")));
        let pushes = mock.pushes();
        assert_eq!(
            pushes.len(),
            count,
            "ours: {} pushes for {count} logins",
            pushes.len()
        );
        mock.reset();
        res[1].push(burst(ctx, &peer_dir, count, &format!("peer-{r}")));
    }
    let mock_hwm = vm_status_kb(&mock.pid().to_string(), "VmHWM:");
    drop(mock);

    let tp_mock = MockDuo::start(MockOpts {
        ikey: TEST_IKEY.to_owned(),
        skey: TEST_SKEY.to_owned(),
        extra_args: vec!["--quiet".to_owned()],
        ..MockOpts::default()
    });
    let keepalive = mock_throughput(&tp_mock, 2000, 16, false);
    let fresh = mock_throughput(&tp_mock, ctx.n(400, 160), 16, true);
    drop(tp_mock);

    let all_ok = res.iter().all(|v| v.iter().all(|r| r.ok == count));
    let ours_ok = res[0].iter().all(|r| r.ok == count);
    if !ours_ok {
        ctx.miss(format!(
            "6. not every one of {count} concurrent logins succeeded: {:?}",
            res[0].iter().map(|r| r.ok).collect::<Vec<_>>()
        ));
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### 6. Scale: {count} logins at once\n\n\
         {count} `pam-driver` processes (libpam `pam_start_confdir`, service `{SERVICE}`, one \
         user each) started back to back, mock-duo approving every push 1 s after it was sent \
         (`--approve-delay-ms 1000`); {rounds} round(s), interleaved (ours, peer), median. A \
         login's completion time is when its result line was written. Memory is sampled from \
         `/proc` every 20 ms: `VmHWM` per process, and the sum of `VmRSS` over the processes \
         alive at one instant (what the {count} logins held at once).\n"
    );
    let _ = writeln!(t, "| figure | ours | peer | ours/peer |");
    let _ = writeln!(t, "|---|---:|---:|---:|");
    let row =
        |t: &mut String, name: &str, f: &dyn Fn(&Burst) -> f64, fmt: &dyn Fn(f64) -> String| {
            let o = median(&res[0].iter().map(f).collect::<Vec<_>>());
            let p = median(&res[1].iter().map(f).collect::<Vec<_>>());
            let _ = writeln!(t, "| {name} | {} | {} | {} |", fmt(o), fmt(p), ratio(o, p));
        };
    let secs = |v: f64| format!("{v:.2}");
    let mib = |v: f64| format!("{:.1}", v / 1024.0);
    row(&mut t, "logins that succeeded", &|r| r.ok as f64, &|v| {
        format!("{v:.0} / {count}")
    });
    row(
        &mut t,
        "wall time, first start to last exit (s)",
        &|r| r.wall,
        &secs,
    );
    row(
        &mut t,
        "time to start all processes (s)",
        &|r| r.spawn,
        &secs,
    );
    row(
        &mut t,
        "login completion after the first start, median (s)",
        &|r| r.done_median,
        &secs,
    );
    row(&mut t, "login completion, last (s)", &|r| r.done_max, &secs);
    row(&mut t, "CPU, all processes together (s)", &|r| r.cpu, &secs);
    row(
        &mut t,
        "peak RSS of one login process, largest (MiB)",
        &|r| r.max_hwm,
        &mib,
    );
    row(
        &mut t,
        "RSS of all live login processes at the peak instant (MiB)",
        &|r| r.peak_sum_rss,
        &mib,
    );
    let mock_need = (4 * count) as f64 / keepalive + count as f64 / fresh;
    let _ = writeln!(
        t,
        "\nAll {count} succeeded in every round: {} (ours: {}). mock-duo's own peak RSS over \
         these rounds: {:.0} MiB.\n\n\
         mock-duo's capacity, measured from this process on the same 2 cores: **{keepalive:.0} \
         signed preauths/s** (2000 requests, 16 concurrent keep-alive connections, signature \
         v5) and **{fresh:.0} preauths/s with a new TLS connection each** (16 concurrent). \
         {count} of our logins need {} requests and {count} handshakes: about {:.2} s of \
         mock-duo's capacity against a burst that lasted {:.2} s: {}.\n",
        verdict(all_ok),
        verdict(ours_ok),
        mock_hwm as f64 / 1024.0,
        4 * count,
        mock_need,
        median(&res[0].iter().map(|r| r.wall).collect::<Vec<_>>()),
        if mock_need * 4.0 < median(&res[0].iter().map(|r| r.wall).collect::<Vec<_>>()) {
            "mock-duo is not what limits the figures above"
        } else {
            "**mock-duo may be a limit here** (is it a debug build?)"
        }
    );
    ctx.say(&t);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default().to_vec();
    match args.first().map(String::as_str) {
        Some("run") => cmd_run(&rest),
        Some("pam-login") => cmd_pam_login(&rest),
        Some("dlopen") => cmd_dlopen(&rest),
        _ => {
            eprintln!(
                "usage: duo-bench run [--quick] [--only login,load,where,relay,session,scale] \
                 [--out FILE]\n       duo-bench pam-login --confdir DIR --service NAME --user \
                 USER [--rhost IP]\n       duo-bench dlopen PATH [--preload LIB]"
            );
            ExitCode::from(2)
        }
    }
}
