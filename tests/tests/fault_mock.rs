//! mock-duo's stage faults (`f-<fault>-<stage>` users, `--cert-expired`) as the project's own
//! HTTPS client sees them: each fault reaches `duo_push_common::client::DuoClient` as the
//! error it is meant to simulate, within the client's time bound, and at the stage it names
//! only. This checks the mock itself (the fault matrix relies on it) and the client's error
//! classification, in-process and without root.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duo_push_common::api::{
    AuthResult, DuoApi, DuoError, PreauthResult, PushRequest, Subject, Txid,
};
use duo_push_common::client::{ClientSettings, DuoClient};
use duo_push_common::secret::Secret;
use duo_push_common::signing::SignatureVersion;
use duo_push_tests::mock::fault::{Fault, FaultSpec, Stage};
use duo_push_tests::mock::harness::{MockProcess, TEST_IKEY, TEST_SKEY};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");
/// The client's `https_timeout`.
const HTTPS: Duration = Duration::from_secs(2);
/// How long a status-stage call may poll (the flow's push deadline, shortened).
const POLL: Duration = Duration::from_secs(4);
/// Scheduling slack on top of a bound.
const SLACK: Duration = Duration::from_millis(1500);

fn client(mock: &MockProcess) -> DuoClient {
    DuoClient::new(ClientSettings {
        host: format!("127.0.0.1:{}", mock.port()),
        ikey: TEST_IKEY.to_owned(),
        skey: Secret::new(TEST_SKEY.to_owned()),
        signature_version: SignatureVersion::V5,
        https_timeout: HTTPS,
        cafile: Some(mock.ca_path()),
        http_proxy: None,
        user_agent_product: "fault-mock-test",
    })
    .expect("client")
}

fn push_request(user: &str) -> PushRequest {
    PushRequest {
        subject: Subject {
            username: user.to_owned(),
            ipaddr: Some("192.0.2.10".to_owned()),
            hostname: Some("vault.test".to_owned()),
        },
        device: "auto".to_owned(),
        kind: "Vault login".to_owned(),
        display_username: None,
        pushinfo: vec![("hop".to_owned(), "vault".to_owned())],
    }
}

/// What one stage returned, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Preauth(PreauthResult),
    Txid,
    Status(AuthResult),
    Error(DuoError),
}

/// Runs the flow's calls up to `stage` (ping and preauth; then the push; then one status poll
/// bounded by [`POLL`]) and returns what `stage` gave.
async fn drive(client: &DuoClient, user: &str, stage: Stage) -> Got {
    let subject = push_request(user).subject;
    let preauth = match client.preauth(&subject).await {
        Ok(p) => p,
        Err(e) => return Got::Error(e),
    };
    if stage == Stage::Preauth {
        return Got::Preauth(preauth.result);
    }
    let txid: Txid = match client.push(&push_request(user)).await {
        Ok(t) => t,
        Err(e) => return Got::Error(e),
    };
    if stage == Stage::Auth {
        return Got::Txid;
    }
    let deadline = tokio::time::Instant::now() + POLL;
    match client.auth_status_until(&txid, deadline).await {
        Ok(status) => Got::Status(status.result),
        Err(e) => Got::Error(e),
    }
}

/// What a fault at a stage must look like to the client.
fn expected(fault: Fault, stage: Stage) -> fn(&Got) -> bool {
    use Fault::*;
    use Stage::*;
    match (fault, stage) {
        // Lost mid-reply: a readable call may be retried, the push may have reached Duo.
        (ResetHead | ResetBody, Preauth | Status | All) => {
            |g| matches!(g, Got::Error(DuoError::Connect(_)))
        }
        (ResetHead | ResetBody | Stall | DripHead | Drip, Auth) => {
            |g| matches!(g, Got::Error(DuoError::Lost(_)))
        }
        (Stall | DripHead | Drip, _) => |g| matches!(g, Got::Error(DuoError::Timeout)),
        (E500, _) => |g| matches!(g, Got::Error(DuoError::Http { status: 500, .. })),
        (E503, _) => |g| matches!(g, Got::Error(DuoError::Http { status: 503, .. })),
        (E429, _) => |g| matches!(g, Got::Error(DuoError::RateLimited)),
        (Truncated | NoResult, _) | (UnknownResult, Auth) => {
            |g| matches!(g, Got::Error(DuoError::Malformed(_)))
        }
        (UnknownResult, Preauth) => {
            |g| matches!(g, Got::Preauth(PreauthResult::Unknown(v)) if v == "maybe")
        }
        (UnknownResult, _) => |g| matches!(g, Got::Status(AuthResult::Unknown(v)) if v == "maybe"),
        (Huge | Flood, _) => |g| matches!(g, Got::Error(DuoError::TooLarge)),
        (Late, Preauth) => |g| matches!(g, Got::Preauth(PreauthResult::Auth)),
        (Late, Auth) => |g| matches!(g, Got::Txid),
        (Late, _) => |g| matches!(g, Got::Status(AuthResult::Allow)),
        // An approval naming another transaction is no approval of ours.
        (OtherTxid, _) => |g| matches!(g, Got::Error(DuoError::Malformed(_))),
        // Checked through the status poll: the push itself was denied.
        (EarlyAllow, _) => |g| matches!(g, Got::Status(AuthResult::Deny)),
    }
}

fn bound(stage: Stage) -> Duration {
    match stage {
        // ping + preauth share nothing: each has https_timeout; with a fault only one is slow.
        Stage::Preauth | Stage::Auth | Stage::All => HTTPS + SLACK,
        Stage::Status => POLL + SLACK,
    }
}

fn cases() -> Vec<FaultSpec> {
    let mut cases = Vec::new();
    for fault in Fault::ALL {
        for stage in [Stage::Preauth, Stage::Auth, Stage::Status] {
            if fault.valid_at(stage) {
                cases.push(FaultSpec { fault, stage });
            }
        }
    }
    cases
}

#[test]
fn every_stage_fault_reaches_the_client_as_the_error_it_simulates() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(
        MockProcess::spawn(Path::new(BIN), dir.path(), &["--fault-delay-ms", "1000"]).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for spec in cases() {
            let mock = Arc::clone(&mock);
            tasks.push(tokio::spawn(async move {
                let user = format!("{}-m", spec.username_prefix());
                let client = client(&mock);
                // EarlyAllow hits the auth reply, but what matters is the status of the push.
                let stage = if spec.fault == Fault::EarlyAllow {
                    Stage::Status
                } else {
                    spec.stage
                };
                let started = Instant::now();
                let got = drive(&client, &user, stage).await;
                (spec, user, got, started.elapsed())
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    });

    let pushes: Vec<Value> = runtime.block_on(async {
        let reply = mock.client().unwrap().get("/mock/pushes").await.unwrap();
        serde_json::from_slice(&reply.body).unwrap()
    });
    let pushes_of = |user: &str| pushes.iter().filter(|p| p["username"] == user).count();

    let mut failures = Vec::new();
    for (spec, user, got, elapsed) in &results {
        let ok = expected(spec.fault, spec.stage)(got);
        let in_time = *elapsed < bound(spec.stage);
        println!(
            "{:<24} {:<50} {:>6.2}s {}",
            spec.username_prefix(),
            format!("{got:?}").chars().take(50).collect::<String>(),
            elapsed.as_secs_f64(),
            if ok && in_time { "ok" } else { "FAIL" }
        );
        if !ok || !in_time {
            failures.push(format!("{user}: got {got:?} after {elapsed:?}"));
        }
        // The push is made before a lost auth reply, not before a refused one; preauth faults
        // never push.
        let want_pushes = match (spec.fault, spec.stage) {
            (_, Stage::Preauth) => 0,
            (Fault::E500 | Fault::E503 | Fault::E429, Stage::Auth) => 0,
            (Fault::OtherTxid, _) => 2,
            _ => 1,
        };
        if pushes_of(user) != want_pushes {
            failures.push(format!(
                "{user}: {} push(es) in the mock's log, expected {want_pushes}",
                pushes_of(user)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn faults_hit_only_the_stage_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::spawn(Path::new(BIN), dir.path(), &[]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A status fault leaves preauth and the push alone, and an auth fault leaves preauth.
        let c = client(&mock);
        assert_eq!(drive(&c, "f-stall-status-o1", Stage::Auth).await, Got::Txid);
        let c = client(&mock);
        assert_eq!(
            drive(&c, "f-e500-auth-o2", Stage::Preauth).await,
            Got::Preauth(PreauthResult::Auth)
        );
        // A stage fault hits its own stage, whatever came before.
        let c = client(&mock);
        assert_eq!(
            drive(&c, "f-huge-auth-o3", Stage::Status).await,
            Got::Error(DuoError::TooLarge)
        );
        let c = client(&mock);
        assert_eq!(drive(&c, "f-huge-status-o4", Stage::Auth).await, Got::Txid);
        // `all` hits the first signed call.
        let c = client(&mock);
        assert_eq!(
            drive(&c, "f-e503-all-o5", Stage::Status).await,
            Got::Error(DuoError::Http {
                status: 503,
                code: "50301".into(),
                message: "Service Unavailable".into()
            })
        );
    });
}

#[test]
fn an_expired_server_certificate_is_a_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::spawn(Path::new(BIN), dir.path(), &["--cert-expired"]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let got = runtime.block_on(client(&mock).ping());
    match got {
        Err(DuoError::Tls(detail)) => {
            assert!(detail.to_ascii_lowercase().contains("expired"), "{detail}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(started.elapsed() < HTTPS + SLACK);
}
