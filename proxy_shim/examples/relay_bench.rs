//! Throughput of the `connect` relay against socat, on loopback, in the same run.
//!
//! ```text
//! cargo run --release -p proxy_shim --example relay_bench [-- MIB [RUNS]]
//! ```
//!
//! What is measured, per direction, MIB mebibytes (default 1024), best of RUNS (default 3):
//!
//! * user -> target: `head -c N /dev/zero` feeds a pipe, as sshd's channel pipe feeds the shim's
//!   stdin; the relay (or `socat -u STDIN TCP:...`) moves it into a TCP connection to a
//!   `socat -u TCP-LISTEN:... /dev/null` sink.
//! * target -> user: a `socat -u STDIN TCP-LISTEN:...` source sends N bytes; the relay (or
//!   `socat -u TCP:... STDOUT`) moves them into a pipe read by `wc -c`, as sshd reads the
//!   shim's stdout.
//!
//! The relay is the library function `proxy_shim::relay::relay` (splice and read/write modes),
//! called in this process: no sshd, no Duo, no privilege handling, just the byte mover. Timing
//! starts when the TCP connection is up and ends when every byte has arrived.

use std::error::Error;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use proxy_shim::relay::{relay, Mode};

type Res<T> = Result<T, Box<dyn Error>>;

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn connect_retry(port: u16) -> Res<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => sleep(Duration::from_millis(10)),
        }
    }
}

fn sink(port: u16) -> Res<Child> {
    Ok(Command::new("socat")
        .args([
            "-u",
            &format!("TCP-LISTEN:{port},reuseaddr"),
            "GOPEN:/dev/null",
        ])
        .spawn()?)
}

fn source(port: u16, bytes: u64) -> Res<Child> {
    Ok(Command::new("sh")
        .args([
            "-c",
            &format!("head -c {bytes} /dev/zero | socat -u STDIN TCP-LISTEN:{port},reuseaddr"),
        ])
        .spawn()?)
}

fn wait_listening(port: u16) -> Res<()> {
    // socat's listener is up when /proc/net/tcp shows the port in state 0A (LISTEN).
    let hex = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/tcp")?;
        if table
            .lines()
            .any(|l| l.contains(&hex) && l.split_whitespace().nth(3) == Some("0A"))
        {
            return Ok(());
        }
        sleep(Duration::from_millis(5));
    }
    Err("listener did not start".into())
}

/// user -> target through the relay.
fn relay_up(bytes: u64, mode: Mode) -> Res<Duration> {
    let port = free_port()?;
    let mut sink = sink(port)?;
    wait_listening(port)?;
    let mut head = Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()?;
    let input: OwnedFd = head.stdout.take().ok_or("no stdout")?.into();
    let output: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")?
        .into();
    let socket = connect_retry(port)?;
    let start = Instant::now();
    let report = relay(input, output, &socket, mode);
    let elapsed = start.elapsed();
    head.wait()?;
    sink.wait()?;
    if report.to_target.bytes != bytes || !report.clean() {
        return Err(format!("relay moved {report}").into());
    }
    Ok(elapsed)
}

/// user -> target through socat.
fn socat_up(bytes: u64, buffer: Option<usize>) -> Res<Duration> {
    let port = free_port()?;
    let mut sink = sink(port)?;
    wait_listening(port)?;
    let b = buffer.map(|b| format!("-b {b}")).unwrap_or_default();
    let start = Instant::now();
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("head -c {bytes} /dev/zero | socat {b} -u STDIN TCP:127.0.0.1:{port}"),
        ])
        .status()?;
    sink.wait()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err("socat failed".into());
    }
    Ok(elapsed)
}

/// target -> user through the relay.
fn relay_down(bytes: u64, mode: Mode) -> Res<Duration> {
    let port = free_port()?;
    let mut source = source(port, bytes)?;
    wait_listening(port)?;
    let mut wc = Command::new("wc")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let output: OwnedFd = wc.stdin.take().ok_or("no stdin")?.into();
    let (input_r, input_w) = nix::unistd::pipe()?;
    drop(input_w);
    let socket = connect_retry(port)?;
    let start = Instant::now();
    let report = relay(input_r, output, &socket, mode);
    let out = wc.wait_with_output()?;
    let elapsed = start.elapsed();
    source.wait()?;
    let counted: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    if counted != bytes || report.from_target.bytes != bytes {
        return Err(format!("relay moved {report}, wc counted {counted}").into());
    }
    Ok(elapsed)
}

/// target -> user through socat.
fn socat_down(bytes: u64, buffer: Option<usize>) -> Res<Duration> {
    let port = free_port()?;
    let mut source = source(port, bytes)?;
    wait_listening(port)?;
    let b = buffer.map(|b| format!("-b {b}")).unwrap_or_default();
    let start = Instant::now();
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("socat {b} -u TCP:127.0.0.1:{port} STDOUT | wc -c"),
        ])
        .output()?;
    let elapsed = start.elapsed();
    source.wait()?;
    let counted: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    if counted != bytes {
        return Err(format!("socat moved {counted}").into());
    }
    Ok(elapsed)
}

fn best(runs: u32, mut f: impl FnMut() -> Res<Duration>) -> Res<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        best = best.min(f()?);
    }
    Ok(best)
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let runs: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let bytes = mib * 1024 * 1024;
    let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
    println!("{mib} MiB over loopback, best of {runs}");
    println!("{:<44} {:>10} {:>12}", "mover", "seconds", "MiB/s");
    type Case<'a> = (&'a str, Box<dyn Fn() -> Res<Duration>>);
    let cases: Vec<Case> = vec![
        (
            "user->target  relay (splice)",
            Box::new(move || relay_up(bytes, Mode::Auto)),
        ),
        (
            "user->target  relay (read/write 256 KiB)",
            Box::new(move || relay_up(bytes, Mode::Copy)),
        ),
        (
            "user->target  socat -u (default 8 KiB)",
            Box::new(move || socat_up(bytes, None)),
        ),
        (
            "user->target  socat -u -b 262144",
            Box::new(move || socat_up(bytes, Some(262_144))),
        ),
        (
            "target->user  relay (splice)",
            Box::new(move || relay_down(bytes, Mode::Auto)),
        ),
        (
            "target->user  relay (read/write 256 KiB)",
            Box::new(move || relay_down(bytes, Mode::Copy)),
        ),
        (
            "target->user  socat -u (default 8 KiB)",
            Box::new(move || socat_down(bytes, None)),
        ),
        (
            "target->user  socat -u -b 262144",
            Box::new(move || socat_down(bytes, Some(262_144))),
        ),
    ];
    for (name, case) in cases {
        let d = best(runs, case)?;
        println!("{name:<44} {:>10.3} {:>12.0}", d.as_secs_f64(), rate(d));
    }
    Ok(())
}
