//! mock-duo: a strict simulated Duo Auth API server on loopback, for tests and benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use duo_push_tests::mock::{MockConfig, MockServer};

const HELP: &str = "\
mock-duo: a strict simulated Duo Auth API server (HTTPS on loopback, its own CA)

USAGE:
  mock-duo --listen 127.0.0.1:PORT --ikey IKEY --skey SKEY --state-dir DIR [OPTIONS]

REQUIRED:
  --listen ADDR:PORT        loopback address to listen on (127.0.0.0/8 or [::1]); port 0 picks
                            a free port. Other addresses are refused.
  --ikey IKEY               integration key requests must carry
  --skey SKEY               secret key signatures are verified with
  --state-dir DIR           created if missing; mock-duo writes DIR/ca.pem (the CA that issued
                            its server certificate) and then DIR/port (the bound port, written
                            atomically once the socket listens)

OPTIONS:
  --approve-delay-ms N      ordinary users' pushes are approved after N ms (default 0)
  --clock-offset-secs N     the mock's clock is real time + N seconds (may be negative), for
                            date-window tests (default 0)
  --cert-san NAME           subjectAltName of the server certificate (DNS name or IP); repeat
                            for several; replaces the default localhost and 127.0.0.1
  --cert-expired            serve a server certificate whose validity ended yesterday (the CA
                            in DIR/ca.pem is valid): clients must refuse it
  --fault-delay-ms N        how late the `late` fault answers (default 1500)
  --push-expiry-secs N      unanswered pushes (timeout, manual users) are denied with status
                            timeout after N s (default 60)
  --long-poll-secs N        auth_status / status.bson hold a pending push up to N s (default 20)
  --manual-all              every push waits for a live decision (control API or the phone
                            page), whatever the username prefix; scripted outcomes still come
                            first, and preauth and transport behaviours still follow the prefix
  --phone-listen ADDR:PORT  also serve the phone page over plain HTTP on this loopback address
                            (port 0 picks one, written to DIR/phone-port)
  --quiet                   do not log one line per request to stderr
  -h, --help                this text

SIGNATURES (like Duo):
  /auth/v2/* (except ping): Authorization Basic ikey:hexsig, v2 HMAC-SHA1 (40 hex), v2
  HMAC-SHA512 or v5 (128 hex), Date or X-Duo-Date within 5 minutes of the mock's clock.
  /rest/v1/*.bson: signature v1 (HMAC-SHA1, no date), BSON replies.
  Failures: 401 with code 40101 (no credentials), 40102 (unknown ikey), 40103 (bad signature),
  40105 (missing, unparsable or out-of-window date).

ENDPOINTS:
  GET  /auth/v2/ping, GET /auth/v2/check            {\"time\": now}
  POST /auth/v2/preauth  username [text_prompt=1]
  POST /auth/v2/auth     factor=push|auto|passcode|prompt, device, type, display_username,
                         pushinfo, async=1, passcode (123456 is valid), prompt=push1
  GET  /auth/v2/auth_status?txid=                   long-poll; unknown txid: 400 40002
  POST /rest/v1/preauth.bson, POST /rest/v1/auth.bson, GET /rest/v1/status.bson?txid=
  Any other path: 404 40401.

BEHAVIOUR BY USERNAME PREFIX:
  lockout  preauth deny            enroll   preauth enroll (enroll_portal_url)
  bypass   preauth allow           nopush   device without push capability
  http500, http503, http429        that HTTP status (429 with Retry-After: 1 unless the name
                                   starts with http429noretry)
  badjson  200 with an unparsable body      huge  200 with a 2 MiB body
  hang     never answers
  escmsg   preauth deny whose status_msg carries terminal escapes, OSC, CR, C1 and bidi text
  deny     push denied             fraud    push denied, status fraud
  timeout  push expires (see --push-expiry-secs)
  slow     push approved after 2 s manual   push waits for the control API, then expires
  others   push approved after --approve-delay-ms

FAULTS AT ONE STAGE (Auth API v2), USERNAME f-FAULT-STAGE[-anything]:
  STAGE: preauth, auth (the push is made first, except for e500/e503/e429), status
  (auth_status of the user's transactions), or all. Other stages behave as for an ordinary
  user (push approved).
  resethead   half of the status line and headers, then a TCP reset
  resetbody   the headers and 8 bytes of the body, then a TCP reset
  stall       never answers (slow headers)
  driphead    the reply one byte per second from its first byte
  drip        the headers at once, then the body one byte per second (slow body)
  e500, e503  that status;  e429  429 with Retry-After: 1, every time (a 429 storm)
  trunc       the real reply's JSON cut in half (valid HTTP)
  noresult    stat OK without result (auth and status: status allow, no result, no txid)
  maybe       result \"maybe\" (auth: without a txid)
  huge        2 MiB body with a Content-Length
  flood       chunked body without a length, 256 MiB
  late        the real reply after --fault-delay-ms
  othertx     stage status only: /auth also makes an approved decoy push B of the user and
              returns a pending txid A; auth_status for A answers result allow, txid B
  earlyallow  stage auth only: the async /auth reply says result allow next to txid A, and A
              is denied

CONTROL API (unsigned JSON, same port):
  GET  /mock/pushes, GET /mock/pending        push log in order
  POST /mock/pushes/TXID/approve|deny         end a pending push
  POST /mock/script  {\"username\":\"u\",\"outcomes\":[\"allow\",\"deny\",\"timeout\",\"fraud\"]}
  GET  /mock/requests                         path, signature version, verified, status, TLS
                                              connection id of every Duo API request
  GET  /mock/stats                            {requests, tls_handshakes, signature_failures}
  POST /mock/reset                            clear logs, scripts and counters
  A request whose Origin header is not its own origin is refused (403).

PHONE SIMULATOR:
  GET  /phone       a page listing pending pushes live (user, type, pushinfo, age) with Approve
                    and Deny buttons; strict CSP, no external resources. Also over plain HTTP
                    with --phone-listen (that port serves only the page, GET /mock/pending and
                    approve/deny, and only to a loopback Host header).

Runs until SIGTERM or SIGINT.
";

#[derive(Debug)]
struct UsageError(String);

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, UsageError> {
    value
        .parse()
        .map_err(|_| UsageError(format!("{flag}: {value:?} is not a valid number")))
}

fn parse_args(args: Vec<String>) -> Result<Option<MockConfig>, UsageError> {
    let mut listen: Option<SocketAddr> = None;
    let mut ikey = None;
    let mut skey = None;
    let mut state_dir: Option<PathBuf> = None;
    let mut sans = Vec::new();
    let mut config = MockConfig::new("", "");
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--quiet" {
            config.log_to_stderr = false;
            continue;
        }
        if flag == "--manual-all" {
            config.manual_all = true;
            continue;
        }
        if flag == "--cert-expired" {
            config.cert_expired = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| UsageError(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--listen" => {
                listen =
                    Some(value.parse().map_err(|_| {
                        UsageError(format!("--listen: {value:?} is not ADDRESS:PORT"))
                    })?)
            }
            "--ikey" => ikey = Some(value),
            "--skey" => skey = Some(value),
            "--state-dir" => state_dir = Some(PathBuf::from(value)),
            "--approve-delay-ms" => {
                config.approve_delay = Duration::from_millis(number(&flag, &value)?)
            }
            "--clock-offset-secs" => config.clock_offset_secs = number(&flag, &value)?,
            "--cert-san" => sans.push(value),
            "--push-expiry-secs" => {
                config.push_expiry = Duration::from_secs(number(&flag, &value)?)
            }
            "--long-poll-secs" => config.long_poll = Duration::from_secs(number(&flag, &value)?),
            "--fault-delay-ms" => {
                config.fault_delay = Duration::from_millis(number(&flag, &value)?)
            }
            "--phone-listen" => {
                let addr: SocketAddr = value.parse().map_err(|_| {
                    UsageError(format!("--phone-listen: {value:?} is not ADDRESS:PORT"))
                })?;
                if !addr.ip().is_loopback() {
                    return Err(UsageError(format!(
                        "--phone-listen {addr}: the phone page is served on loopback addresses only"
                    )));
                }
                config.phone_listen = Some(addr);
            }
            other => return Err(UsageError(format!("unknown option {other:?} (see --help)"))),
        }
    }
    config.listen = listen.ok_or_else(|| UsageError("--listen is required".into()))?;
    config.ikey = ikey.ok_or_else(|| UsageError("--ikey is required".into()))?;
    config.skey = skey.ok_or_else(|| UsageError("--skey is required".into()))?;
    config.state_dir = Some(state_dir.ok_or_else(|| UsageError("--state-dir is required".into()))?);
    if !sans.is_empty() {
        config.cert_sans = sans;
    }
    if !config.listen.ip().is_loopback() {
        return Err(UsageError(format!(
            "--listen {}: mock-duo listens on loopback addresses only",
            config.listen
        )));
    }
    Ok(Some(config))
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1).collect()) {
        Ok(Some(config)) => config,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(UsageError(msg)) => {
            eprintln!("mock-duo: {msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mock-duo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match MockServer::start(config).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("mock-duo: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("mock-duo: listening on https://{}", server.addr());
        let result = wait_for_signal().await;
        server.shutdown().await;
        match result {
            Ok(()) => {
                eprintln!("mock-duo: stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mock-duo: cannot wait for signals: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
