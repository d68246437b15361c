//! Resource bounds (hardening issue, part 4), through both hops (the PAM module through libpam,
//! the shim as the lab user): a stuck Duo cannot hold a login past `push_timeout` +
//! `https_timeout`; a 429 storm and a Duo answering `waiting` at once are polled a bounded
//! number of times; a huge or endless reply is cut at the client's limit with the process's
//! memory staying small. Needs root (the lab's namespaces).

mod fault_support;

use std::time::Duration;

use duo_push_tests::lab::{MockDuo, MockOpts};
use fault_support::{endpoint_of, https, push, Hop, Outcome, Policy, World, SLACK};
use serde_json::Value;

/// The strict policy: every fault is a denial.
const STRICT: Policy = Policy {
    safe: false,
    forced: true,
};

/// Runs `users` (one per hop, named `<prefix>-v` / `<prefix>-t`) concurrently.
fn run_both(world: &World, prefix: &str, mock: Option<&MockDuo>) -> Vec<(Hop, Outcome)> {
    let duo = mock.map_or_else(|| world.endpoint(), endpoint_of);
    let users: Vec<(Hop, String)> = Hop::ALL
        .iter()
        .map(|&hop| (hop, format!("{prefix}-{}", hop.code())))
        .collect();
    world.add_users(users.iter().map(|(_, u)| u.as_str()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .iter()
            .map(|(hop, user)| {
                let duo = duo.clone();
                scope.spawn(move || (*hop, world.run(*hop, user, &duo, STRICT)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn show(hop: Hop, o: &Outcome) -> String {
    format!(
        "{} {} granted={} after {:.2} s, max RSS {} KiB\n{}",
        hop.label(),
        o.result,
        o.granted,
        o.elapsed.as_secs_f64(),
        o.max_rss_kib,
        o.output
    )
}

fn requests_to(mock: &MockDuo, path: &str) -> usize {
    mock.requests().iter().filter(|r| r["path"] == path).count()
}

#[test]
fn a_stuck_duo_cannot_hold_a_login_past_push_timeout_plus_https_timeout() {
    let world = World::start(&[]);
    // (user prefix, least time: the bound that must have cut it, most time)
    let cases = [
        ("f-stall-preauth-b", https(), https() + SLACK),
        ("f-stall-auth-b", https(), https() + SLACK),
        ("f-stall-status-b", push(), push() + https() + SLACK),
        ("f-drip-status-b", push(), push() + https() + SLACK),
        ("f-driphead-auth-b", https(), https() + SLACK),
    ];
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(prefix, least, most)| {
                let world = &world;
                scope.spawn(move || (*prefix, *least, *most, run_both(world, prefix, None)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (prefix, least, most, outcomes) in results {
        for (hop, o) in outcomes {
            println!(
                "{prefix} {}: {:.2} s (allowed {:.1} to {:.1} s)",
                hop.label(),
                o.elapsed.as_secs_f64(),
                least.as_secs_f64() - 0.2,
                most.as_secs_f64()
            );
            assert!(!o.granted, "{prefix}: {}", show(hop, &o));
            assert!(
                o.elapsed < most && o.elapsed + Duration::from_millis(200) >= least,
                "{prefix}: {}",
                show(hop, &o)
            );
        }
    }
}

#[test]
fn a_429_storm_ends_within_its_bound_after_a_bounded_number_of_retries() {
    let world = World::start(&[]);
    // Own mocks, so their request logs hold only these runs.
    let at_preauth = MockDuo::start(MockOpts::default());
    let at_status = MockDuo::start(MockOpts::default());
    let (first, second) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run_both(&world, "f-e429-all-r", Some(&at_preauth)));
        let b = scope.spawn(|| run_both(&world, "f-e429-status-r", Some(&at_status)));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (hop, o) in &first {
        assert!(!o.granted, "{}", show(*hop, o));
        assert!(o.elapsed < https() + SLACK, "{}", show(*hop, o));
    }
    for (hop, o) in &second {
        assert!(!o.granted, "{}", show(*hop, o));
        // A tight margin on purpose: without the overall bound this took about 13.7 s
        // (push_timeout + 2 x https_timeout) and must fail here.
        assert!(
            o.elapsed < push() + https() + Duration::from_millis(1200),
            "{}",
            show(*hop, o)
        );
    }
    // Two runs each: with https_timeout = 2 and Retry-After: 1, preauth is tried twice at most;
    // auth_status (bounded by the push deadline) at most seven times (six backoff steps).
    let preauths = requests_to(&at_preauth, "/auth/v2/preauth");
    let polls = requests_to(&at_status, "/auth/v2/auth_status");
    println!("429 storm: {preauths} preauth requests, {polls} auth_status requests (2 runs each)");
    assert!(
        (2..=2 * 3).contains(&preauths),
        "{preauths} preauth requests"
    );
    assert!(
        (2 * 2..=2 * 7).contains(&polls),
        "{polls} auth_status requests"
    );
    assert_eq!(requests_to(&at_preauth, "/auth/v2/auth"), 0);
}

#[test]
fn a_duo_answering_waiting_at_once_is_polled_a_bounded_number_of_times() {
    let world = World::start(&[]);
    // auth_status answers `waiting` at once; `timeout-` pushes stay pending for 60 s.
    let eager = MockDuo::start(MockOpts {
        extra_args: vec!["--long-poll-secs".to_owned(), "0".to_owned()],
        ..MockOpts::default()
    });
    let outcomes = run_both(&world, "timeout-poll", Some(&eager));
    for (hop, o) in &outcomes {
        assert!(!o.granted, "{}", show(*hop, o));
        assert!(
            o.elapsed >= push() && o.elapsed < push() + https() + SLACK,
            "{}",
            show(*hop, o)
        );
    }
    // The flow polls at most every 250 ms: 40 polls per push_timeout of 10 s, plus one.
    let polls = requests_to(&eager, "/auth/v2/auth_status");
    let most = 2 * (push().as_millis() / 250 + 1) as usize;
    println!("eager Duo: {polls} auth_status requests in 2 runs (at most {most})");
    assert!((2..=most).contains(&polls), "{polls} auth_status requests");
}

#[test]
fn a_huge_or_endless_reply_is_cut_at_the_limit_and_memory_stays_small() {
    let world = World::start(&[]);
    let baseline = run_both(&world, "plain-rss", None);
    for (hop, o) in &baseline {
        assert!(o.granted, "the baseline login works: {}", show(*hop, o));
    }
    let rss_of = |hop: Hop, runs: &[(Hop, Outcome)]| {
        runs.iter()
            .find(|(h, _)| *h == hop)
            .map(|(_, o)| o.max_rss_kib)
            .unwrap()
    };
    for prefix in [
        "f-flood-preauth-m",
        "f-flood-status-m",
        "f-huge-preauth-m",
        "f-huge-auth-m",
    ] {
        let outcomes = run_both(&world, prefix, None);
        for (hop, o) in &outcomes {
            let base = rss_of(*hop, &baseline);
            println!(
                "{prefix} {}: max RSS {} KiB (approved login: {base} KiB), {:.2} s",
                hop.label(),
                o.max_rss_kib,
                o.elapsed.as_secs_f64()
            );
            assert!(!o.granted, "{prefix}: {}", show(*hop, o));
            // Cut at the limit, not read to the end (256 MiB) nor waited out (https_timeout).
            assert!(o.elapsed < https(), "{prefix}: {}", show(*hop, o));
            assert!(
                o.max_rss_kib > 0 && o.max_rss_kib < base + 16 * 1024,
                "{prefix}: peak RSS {} KiB against {base} KiB for an approved login\n{}",
                o.max_rss_kib,
                show(*hop, o)
            );
            // The operator learns why.
            let line = world
                .decision_line(*hop, &format!("{prefix}-{}", hop.code()), 5)
                .unwrap_or_else(|| panic!("{prefix}: no decision line"));
            assert!(
                line.contains("result=deny") && line.contains("exceeded the size limit"),
                "{line}"
            );
        }
    }
}

/// A Duo that is slow (not stuck) at every stage: each answer comes just inside
/// `https_timeout`. The flow keeps one overall bound, start + `https_timeout` + `push_timeout`,
/// so even then the login ends by `push_timeout + https_timeout` (the hardening issue's bound).
#[test]
fn a_slow_duo_at_every_stage_is_bounded_by_push_timeout_plus_https_timeout() {
    // Every answer comes 1.8 s late (https_timeout is 2 s), and the push stays pending.
    let world = World::start(&["--fault-delay-ms", "1800"]);
    let prefix = "f-late-all-s";
    for hop in Hop::ALL {
        world
            .mock
            .script(&format!("{prefix}-{}", hop.code()), &["manual"]);
    }
    let outcomes = run_both(&world, prefix, None);
    for (hop, o) in &outcomes {
        println!(
            "{prefix} {}: {:.2} s (push_timeout + https_timeout = {} s)",
            hop.label(),
            o.elapsed.as_secs_f64(),
            (push() + https()).as_secs()
        );
        assert!(!o.granted, "{}", show(*hop, o));
        // A tight margin on purpose: without the overall bound this took about 13.7 s
        // (push_timeout + 2 x https_timeout) and must fail here.
        assert!(
            o.elapsed < push() + https() + Duration::from_millis(1200),
            "{}",
            show(*hop, o)
        );
    }
    let pushes: Vec<Value> = world.mock.pushes();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
}
