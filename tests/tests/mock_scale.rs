//! mock-duo serves 200 concurrent logins, each on its own TLS connection (the scale benchmark
//! relies on this).

use std::path::Path;
use std::time::{Duration, Instant};

use duo_push_common::signing::SignatureVersion::V5;
use duo_push_tests::mock::harness::{DuoTestClient, MockProcess};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");
const LOGINS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_logins_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::spawn(
        Path::new(BIN),
        dir.path(),
        &["--approve-delay-ms", "500", "--quiet"],
    )
    .unwrap();
    let ca = mock.ca_path();
    let port = mock.port();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(LOGINS);
    for i in 0..LOGINS {
        let ca = ca.clone();
        tasks.push(tokio::spawn(async move {
            let client = DuoTestClient::new(&ca, "localhost", port).unwrap();
            let user = format!("user{i}");
            let pre = client
                .call(V5, "POST", "/auth/v2/preauth", &[("username", &user)])
                .await
                .unwrap();
            assert_eq!(pre.json()["response"]["result"], "auth");
            let auth = client
                .call(
                    V5,
                    "POST",
                    "/auth/v2/auth",
                    &[
                        ("username", &user),
                        ("factor", "push"),
                        ("device", "auto"),
                        ("async", "1"),
                    ],
                )
                .await
                .unwrap()
                .json();
            let txid = auth["response"]["txid"].as_str().unwrap().to_owned();
            loop {
                let st = client
                    .call(V5, "GET", "/auth/v2/auth_status", &[("txid", &txid)])
                    .await
                    .unwrap()
                    .json();
                match st["response"]["result"].as_str().unwrap() {
                    "waiting" => continue,
                    other => return other.to_owned(),
                }
            }
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), "allow");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "200 logins took {elapsed:?}"
    );
    let client = mock.client().unwrap();
    let pushes: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/pushes").await.unwrap().body).unwrap();
    assert_eq!(pushes.len(), LOGINS);
    let stats = client.get("/mock/stats").await.unwrap().json();
    assert!(
        stats["tls_handshakes"].as_u64().unwrap() >= LOGINS as u64,
        "{stats}"
    );
    assert_eq!(
        stats["requests"].as_u64().unwrap(),
        3 * LOGINS as u64,
        "{stats}"
    );
    eprintln!("200 concurrent logins in {elapsed:?}");
}
