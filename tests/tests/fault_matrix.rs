//! The fault matrix (hardening issue, part 2): every transport and reply fault, at every stage
//! where it means something, against both hops (the PAM module through libpam, the shim as the
//! lab user), under every combination of `failmode` and `force_mfa`.
//!
//! Rows: connection faults (refused; a port that accepts and never speaks; TLS from another
//! CA; an expired certificate; a certificate for another name) and mock-duo's stage faults
//! (see `duo_push_tests::mock::fault`) at preauth, auth and auth_status.
//!
//! Each cell asserts the decision (computed here from DESIGN.md's policy table by
//! [`expected`], independently of `common::policy`), that it came within its time bound, that
//! it left an audit line saying so (a fail-open says `reason=fail_open`), and for the target
//! hop that the target saw a connection exactly when access was granted.
//!
//! Cells run concurrently, each with its own user (the user name selects the mock's fault), so
//! the whole matrix takes about as long as its slowest cells (`push_timeout` plus a little).
//! Run with `--nocapture` to see the table; `FAULT_MATRIX_ROWS=stall@status,refused` runs
//! only the rows named. Needs root (the lab's namespaces).

mod fault_support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duo_push_tests::lab::{MockDuo, MockOpts};
use duo_push_tests::mock::fault::{Fault, FaultSpec, Stage};
use fault_support::{
    endpoint_of, foreign_ca_pem, https, push, refused_port, DuoEndpoint, Hop, Outcome, Policy,
    World, SLACK,
};

/// How many cells run at once. Most of a cell's time is spent waiting on a stuck Duo, so this
/// can be well above the number of cores.
const PARALLEL: usize = 32;

/// Where a row's fault comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A mock-duo stage fault chosen by username.
    Stage(FaultSpec),
    /// Nothing listens on Duo's port.
    Refused,
    /// Duo's port accepts the connection and never says anything (not even the TLS handshake).
    Silent,
    /// The config's `cafile` is another CA than the one that issued the mock's certificate.
    ForeignCa,
    /// The mock's certificate expired yesterday.
    Expired,
    /// The mock's certificate names `other.example`, the config `127.0.0.1`.
    WrongName,
}

/// When, relative to the push, the fault happens; what the policy table keys on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Duo could not be used before any push: the `failmode` row of the policy table.
    BeforePush,
    /// Duo answered preauth, with something that is not `auth` or `allow`: never approval.
    PreauthVerdict,
    /// The push request was sent (it may have reached the phone): always deny.
    AfterPush,
}

/// What a cell must decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Granted, logged as fail-open.
    FailOpen,
    /// Denied.
    Deny,
}

/// The phase of a fault, from what the fault does (not from the code under test).
fn phase(source: Source) -> Phase {
    match source {
        // Connection-level faults hit the first contact (ping, then preauth).
        Source::Refused
        | Source::Silent
        | Source::ForeignCa
        | Source::Expired
        | Source::WrongName => Phase::BeforePush,
        Source::Stage(spec) => match spec.stage {
            // A reply that says "maybe" is an answer, not an outage.
            Stage::Preauth if spec.fault == Fault::UnknownResult => Phase::PreauthVerdict,
            Stage::Preauth => Phase::BeforePush,
            // At /auth the request was sent: the phone may buzz, so it counts as after the push
            // (also for 5xx and 429, where Duo says it did nothing: denying is always allowed).
            Stage::Auth | Stage::Status | Stage::All => Phase::AfterPush,
        },
    }
}

/// DESIGN.md, "The forced-MFA policy check": Duo unreachable, TLS failure, timeout, 5xx,
/// malformed reply before any push -> deny under force_mfa, else failmode (safe: allow, logged
/// as fail-open); any error after a push -> deny; an unknown preauth verdict is no approval.
fn expected(phase: Phase, policy: Policy) -> Expect {
    match phase {
        Phase::BeforePush if policy.safe && !policy.forced => Expect::FailOpen,
        Phase::BeforePush | Phase::PreauthVerdict | Phase::AfterPush => Expect::Deny,
    }
}

/// The longest a cell may take: `https_timeout` for a fault before or at the push request,
/// `push_timeout + https_timeout` for one while waiting for the phone; plus [`SLACK`].
fn bound(source: Source) -> Duration {
    let stage_bound = match source {
        Source::Stage(FaultSpec {
            stage: Stage::Status,
            ..
        }) => push() + https(),
        _ => https(),
    };
    stage_bound + SLACK
}

struct Row {
    label: String,
    source: Source,
    /// Prefix of the cell's user names.
    user_prefix: String,
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (source, label, prefix) in [
        (Source::Refused, "refused", "c-refused"),
        (Source::Silent, "tcp-silent", "c-silent"),
        (Source::ForeignCa, "tls-other-ca", "c-otherca"),
        (Source::Expired, "tls-expired", "c-expired"),
        (Source::WrongName, "tls-wrong-name", "c-wrongname"),
    ] {
        rows.push(Row {
            label: label.to_owned(),
            source,
            user_prefix: prefix.to_owned(),
        });
    }
    for stage in [Stage::Preauth, Stage::Auth, Stage::Status] {
        for fault in Fault::ALL {
            // `late` is slowness that still answers, not a failure (see fault_bounds.rs).
            if fault == Fault::Late || !fault.valid_at(stage) {
                continue;
            }
            let spec = FaultSpec { fault, stage };
            rows.push(Row {
                label: format!("{}@{}", fault.word(), stage.word()),
                source: Source::Stage(spec),
                user_prefix: spec.username_prefix(),
            });
        }
    }
    rows
}

struct Cell<'r> {
    row: &'r Row,
    hop: Hop,
    policy: Policy,
    user: String,
}

struct Verdict {
    outcome: Outcome,
    expect: Expect,
    problems: Vec<String>,
}

/// Where each source's config points.
struct Endpoints {
    normal: DuoEndpoint,
    refused: DuoEndpoint,
    silent: DuoEndpoint,
    foreign_ca: DuoEndpoint,
    expired: DuoEndpoint,
    wrong_name: DuoEndpoint,
}

impl Endpoints {
    fn of(&self, source: Source) -> &DuoEndpoint {
        match source {
            Source::Stage(_) => &self.normal,
            Source::Refused => &self.refused,
            Source::Silent => &self.silent,
            Source::ForeignCa => &self.foreign_ca,
            Source::Expired => &self.expired,
            Source::WrongName => &self.wrong_name,
        }
    }
}

fn judge(world: &World, cell: &Cell<'_>, outcome: Outcome) -> Verdict {
    let expect = expected(phase(cell.row.source), cell.policy);
    let mut problems = Vec::new();
    let granted_expected = expect == Expect::FailOpen;
    if outcome.granted != granted_expected {
        problems.push(format!(
            "{} where the policy says {}",
            if outcome.granted { "GRANTED" } else { "denied" },
            if granted_expected {
                "allow (fail-open)"
            } else {
                "deny"
            }
        ));
    }
    if outcome.killed {
        problems.push("still running when killed".to_owned());
    }
    let limit = bound(cell.row.source);
    if outcome.elapsed >= limit {
        problems.push(format!(
            "took {:.1} s, bound {:.1} s",
            outcome.elapsed.as_secs_f64(),
            limit.as_secs_f64()
        ));
    }
    if cell.hop == Hop::Target {
        let want_connections = usize::from(granted_expected);
        if outcome.connections != want_connections {
            problems.push(format!(
                "the target saw {} connection(s), expected {want_connections}",
                outcome.connections
            ));
        }
        let want_exit = if granted_expected { Some(0) } else { Some(1) };
        if outcome.exit != want_exit {
            problems.push(format!(
                "the shim ended with {}, expected exit {:?}",
                outcome.result, want_exit
            ));
        }
    }
    match world.decision_line(cell.hop, &cell.user, 5) {
        None => problems.push("no audit line with the decision".to_owned()),
        Some(line) => {
            let wanted = match expect {
                Expect::FailOpen => "result=allow reason=fail_open",
                Expect::Deny => "result=deny",
            };
            if !line.contains(wanted) {
                problems.push(format!("audit line lacks {wanted:?}: {line}"));
            }
        }
    }
    Verdict {
        outcome,
        expect,
        problems,
    }
}

#[test]
fn fault_matrix_never_grants_where_the_policy_denies() {
    let started = Instant::now();
    let world = World::start(&[]);
    let expired = MockDuo::start(MockOpts {
        extra_args: vec!["--cert-expired".to_owned()],
        ..MockOpts::default()
    });
    let wrong_name = MockDuo::start(MockOpts {
        cert_san: Some("other.example".to_owned()),
        ..MockOpts::default()
    });
    let silent = SilentListener::start();
    let foreign_ca = world
        .lab
        .write_file("foreign-ca.pem", &foreign_ca_pem(), 0o644, 0, 0);
    let endpoints = Endpoints {
        normal: world.endpoint(),
        refused: DuoEndpoint {
            host: format!("127.0.0.1:{}", refused_port()),
            cafile: world.mock.ca_pem_path(),
        },
        silent: DuoEndpoint {
            host: format!("127.0.0.1:{}", silent.port),
            cafile: world.mock.ca_pem_path(),
        },
        foreign_ca: DuoEndpoint {
            host: world.mock.host(),
            cafile: foreign_ca,
        },
        expired: endpoint_of(&expired),
        wrong_name: DuoEndpoint {
            host: format!("127.0.0.1:{}", wrong_name.port()),
            cafile: wrong_name.ca_pem_path(),
        },
    };

    // FAULT_MATRIX_ROWS=label,label runs only those rows (for debugging one fault).
    let only: Option<Vec<String>> = std::env::var("FAULT_MATRIX_ROWS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| only.as_ref().is_none_or(|o| o.contains(&r.label)))
        .collect();
    let mut cells = Vec::new();
    for row in &rows {
        for hop in Hop::ALL {
            for policy in Policy::ALL {
                let user = format!("{}-{}{}", row.user_prefix, hop.code(), policy.code());
                cells.push(Cell {
                    row,
                    hop,
                    policy,
                    user,
                });
            }
        }
    }
    world.add_users(cells.iter().map(|c| c.user.as_str()));
    let setup = started.elapsed();

    // Longest first (the queue is popped from its end), so that the slow cells overlap
    // everything else.
    cells.sort_by_key(|c| bound(c.row.source));
    let queue = Mutex::new(cells.iter().collect::<Vec<_>>());
    let results: Mutex<Vec<(&Cell<'_>, Verdict)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| loop {
                let Some(cell) = queue.lock().unwrap().pop() else {
                    break;
                };
                let outcome = world.run(
                    cell.hop,
                    &cell.user,
                    endpoints.of(cell.row.source),
                    cell.policy,
                );
                let verdict = judge(&world, cell, outcome);
                results.lock().unwrap().push((cell, verdict));
            });
        }
    });
    let results = results.into_inner().unwrap();

    // The table: one line per row, one column per hop x policy.
    let mut by_cell: BTreeMap<(String, Hop, Policy), &Verdict> = BTreeMap::new();
    for (cell, verdict) in &results {
        by_cell.insert((cell.row.label.clone(), cell.hop, cell.policy), verdict);
    }
    let mut table = String::new();
    table.push_str(&format!("{:<20}", "fault@stage"));
    for hop in Hop::ALL {
        for policy in Policy::ALL {
            table.push_str(&format!(
                " | {:<15}",
                format!("{} {}", hop.label(), policy.label())
            ));
        }
    }
    table.push('\n');
    for row in &rows {
        table.push_str(&format!("{:<20}", row.label));
        for hop in Hop::ALL {
            for policy in Policy::ALL {
                let text = match by_cell.get(&(row.label.clone(), hop, policy)) {
                    None => "missing".to_owned(),
                    Some(v) => format!(
                        "{} {:>5.1}s{}",
                        match (v.outcome.granted, v.expect) {
                            (true, Expect::FailOpen) => "allow*",
                            (true, Expect::Deny) => "ALLOW!",
                            (false, Expect::Deny) => "deny  ",
                            (false, Expect::FailOpen) => "DENY! ",
                        },
                        v.outcome.elapsed.as_secs_f64(),
                        if v.problems.is_empty() { " " } else { "?" }
                    ),
                };
                table.push_str(&format!(" | {text:<15}"));
            }
        }
        table.push('\n');
    }
    let granted = results.iter().filter(|(_, v)| v.outcome.granted).count();
    let wrong_grants: Vec<_> = results
        .iter()
        .filter(|(_, v)| v.outcome.granted && v.expect == Expect::Deny)
        .map(|(c, _)| c.user.clone())
        .collect();
    let slowest = results
        .iter()
        .map(|(_, v)| v.outcome.elapsed)
        .max()
        .unwrap_or_default();
    println!(
        "\nFAULT MATRIX: {} rows x {} columns = {} cells; {} granted (fail-open), {} denied; \
         {} granted where the policy denies; slowest cell {:.1} s; setup {:.1} s, total {:.1} s\n\
         (allow* = fail-open grant as the policy says; ? = a problem listed below)\n{table}",
        rows.len(),
        Hop::ALL.len() * Policy::ALL.len(),
        results.len(),
        granted,
        results.len() - granted,
        wrong_grants.len(),
        slowest.as_secs_f64(),
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );

    let mut failures: Vec<String> = results
        .iter()
        .filter(|(_, v)| !v.problems.is_empty())
        .map(|(c, v)| {
            format!(
                "{} [{} {}] user {}: {}\n    {} after {:.1} s; output:\n{}",
                c.row.label,
                c.hop.label(),
                c.policy.label(),
                c.user,
                v.problems.join("; "),
                v.outcome.result,
                v.outcome.elapsed.as_secs_f64(),
                indent(&v.outcome.output)
            )
        })
        .collect();
    failures.sort();
    assert_eq!(results.len(), rows.len() * 8, "every cell ran");
    assert!(
        wrong_grants.is_empty() && failures.is_empty(),
        "{} cell(s) granted where the policy denies: {wrong_grants:?}\n{} cell(s) failed:\n{}",
        wrong_grants.len(),
        failures.len(),
        failures.join("\n")
    );
}

/// Accepts connections and holds them open without a byte (until dropped).
struct SilentListener {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentListener {
    fn start() -> SilentListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentListener {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .take(30)
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_expected_decisions_follow_the_design_table() {
    // The oracle itself: a fault before the push fails open only with failmode = safe and
    // without force_mfa; nothing after the push, and no unknown verdict, ever grants.
    let before = Source::Stage(FaultSpec {
        fault: Fault::Stall,
        stage: Stage::Preauth,
    });
    let after = Source::Stage(FaultSpec {
        fault: Fault::Stall,
        stage: Stage::Status,
    });
    let verdict = Source::Stage(FaultSpec {
        fault: Fault::UnknownResult,
        stage: Stage::Preauth,
    });
    for policy in Policy::ALL {
        let fail_open = policy.safe && !policy.forced;
        assert_eq!(
            expected(phase(before), policy) == Expect::FailOpen,
            fail_open
        );
        assert_eq!(
            expected(phase(Source::Refused), policy) == Expect::FailOpen,
            fail_open
        );
        assert_eq!(expected(phase(after), policy), Expect::Deny);
        assert_eq!(expected(phase(verdict), policy), Expect::Deny);
    }
    assert_eq!(rows().len(), 5 + 3 * 13 + 2);
}
