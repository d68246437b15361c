//! mock-duo accepts every signature version Duo accepts and refuses what Duo refuses, with
//! Duo's error codes. Runs the real binary over real HTTPS.

use std::path::Path;

use duo_push_common::signing::{rfc2822_date, SignatureVersion};
use duo_push_tests::mock::harness::{MockProcess, Reply, TEST_IKEY, TEST_SKEY};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");

fn start(dir: &Path, extra: &[&str]) -> MockProcess {
    MockProcess::spawn(Path::new(BIN), dir, extra).expect("mock-duo starts")
}

fn code(reply: &Reply) -> Value {
    reply.json()["code"].clone()
}

const VERSIONS: [(SignatureVersion, &str); 3] = [
    (SignatureVersion::V2Sha1, "v2-sha1"),
    (SignatureVersion::V2Sha512, "v2-sha512"),
    (SignatureVersion::V5, "v5"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_signature_version_is_accepted_for_check_and_preauth() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path(), &[]);
    let client = mock.client().unwrap();
    for (version, label) in VERSIONS {
        let check = client
            .call(version, "GET", "/auth/v2/check", &[])
            .await
            .unwrap();
        assert_eq!(check.status, 200, "{label} check: {:?}", check.json());
        assert!(check.json()["response"]["time"].as_i64().unwrap() > 1_600_000_000);
        let pre = client
            .call(
                version,
                "POST",
                "/auth/v2/preauth",
                &[("username", "alice"), ("ipaddr", "10.1.2.3")],
            )
            .await
            .unwrap();
        assert_eq!(pre.status, 200, "{label} preauth: {:?}", pre.json());
        assert_eq!(pre.json()["response"]["result"], "auth");
        // GET with parameters (the query is signed too).
        let status = client
            .call(
                version,
                "GET",
                "/auth/v2/auth_status",
                &[("txid", "no-such-tx")],
            )
            .await
            .unwrap();
        assert_eq!(status.status, 400, "{label} auth_status");
        assert_eq!(code(&status), 40002);
    }
    let log: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/requests").await.unwrap().body).unwrap();
    let labels: Vec<&str> = log
        .iter()
        .map(|r| r["signature"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "v2-sha1",
            "v2-sha1",
            "v2-sha1",
            "v2-sha512",
            "v2-sha512",
            "v2-sha512",
            "v5",
            "v5",
            "v5"
        ]
    );
    assert!(log.iter().all(|r| r["verified"] == true));
    assert_eq!(log[1]["params"], serde_json::json!(["ipaddr", "username"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_get_401_with_duos_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path(), &[]);
    let client = mock.client().unwrap();
    let now = rfc2822_date(time::OffsetDateTime::now_utc());
    let params = [("username", "alice")];
    for (version, label) in VERSIONS {
        // Wrong secret key.
        let signed = client.sign_with(
            version,
            TEST_IKEY,
            "Wrong5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ",
            &now,
            "POST",
            "/auth/v2/preauth",
            &params,
        );
        let r = client
            .send("POST", "/auth/v2/preauth", &signed, true)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code(&r)),
            (401, 40103.into()),
            "{label} wrong skey"
        );
        assert_eq!(
            r.json()["message"],
            "Invalid signature in request credentials"
        );

        // Unknown integration key.
        let signed = client.sign_with(
            version,
            "DIXXXXXXXXXXXXXXXXXX",
            TEST_SKEY,
            &now,
            "POST",
            "/auth/v2/preauth",
            &params,
        );
        let r = client
            .send("POST", "/auth/v2/preauth", &signed, true)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code(&r)),
            (401, 40102.into()),
            "{label} wrong ikey"
        );

        // A parameter changed after signing.
        let mut signed = client.sign(version, "POST", "/auth/v2/preauth", &params);
        let (body, _) = signed.body.as_mut().unwrap();
        let text = String::from_utf8(body.clone())
            .unwrap()
            .replace("alice", "mallory");
        *body = text.into_bytes();
        let r = client
            .send("POST", "/auth/v2/preauth", &signed, true)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code(&r)),
            (401, 40103.into()),
            "{label} tampered body"
        );
        let mut signed = client.sign(version, "GET", "/auth/v2/auth_status", &[("txid", "a")]);
        signed.query = "txid=b".into();
        let r = client
            .send("GET", "/auth/v2/auth_status", &signed, true)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code(&r)),
            (401, 40103.into()),
            "{label} tampered query"
        );

        // Signed and sent ten minutes off.
        let off = rfc2822_date(time::OffsetDateTime::now_utc() - time::Duration::minutes(10));
        let signed = client.sign_with(
            version,
            TEST_IKEY,
            TEST_SKEY,
            &off,
            "GET",
            "/auth/v2/check",
            &[],
        );
        let r = client
            .send("GET", "/auth/v2/check", &signed, true)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code(&r)),
            (401, 40105.into()),
            "{label} old date"
        );

        // No date header at all.
        let signed = client.sign(version, "GET", "/auth/v2/check", &[]);
        let r = client
            .send("GET", "/auth/v2/check", &signed, false)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code(&r)),
            (401, 40105.into()),
            "{label} missing date"
        );
    }
    // No Authorization header.
    let r = client.get("/auth/v2/check").await.unwrap();
    assert_eq!((r.status, code(&r)), (401, 40101.into()));
    let stats = client.get("/mock/stats").await.unwrap().json();
    assert_eq!(stats["signature_failures"], 3 * 6 + 1);
    let log: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/requests").await.unwrap().body).unwrap();
    assert!(log
        .iter()
        .all(|r| r["verified"] == false && r["status"] == 401));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_date_window_follows_the_mocks_clock_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path(), &["--clock-offset-secs", "600"]);
    let client = mock.client().unwrap();
    let r = client
        .call(SignatureVersion::V5, "GET", "/auth/v2/check", &[])
        .await
        .unwrap();
    assert_eq!((r.status, code(&r)), (401, 40105.into()));
    // ping reports the skewed clock, so a client can correct for it.
    let ping = client.get("/auth/v2/ping").await.unwrap().json();
    let mock_time = ping["response"]["time"].as_i64().unwrap();
    let skew = mock_time - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((595..=605).contains(&skew), "skew {skew}");
    let later = rfc2822_date(time::OffsetDateTime::now_utc() + time::Duration::seconds(600));
    let signed = client.sign_with(
        SignatureVersion::V5,
        TEST_IKEY,
        TEST_SKEY,
        &later,
        "GET",
        "/auth/v2/check",
        &[],
    );
    let r = client
        .send("GET", "/auth/v2/check", &signed, true)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_get_404_and_ping_needs_no_signature() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path(), &[]);
    let client = mock.client().unwrap();
    let r = client.get("/auth/v2/nothing").await.unwrap();
    assert_eq!((r.status, code(&r)), (404, 40401.into()));
    let r = client.get("/elsewhere").await.unwrap();
    assert_eq!((r.status, code(&r)), (404, 40401.into()));
    let r = client.get("/auth/v2/ping").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["stat"], "OK");
    // The state dir holds the CA and the port.
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let port: u16 = std::fs::read_to_string(dir.path().join("port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(port, mock.port());
}

#[test]
fn the_binary_refuses_non_loopback_addresses_and_documents_its_flags() {
    let out = std::process::Command::new(BIN)
        .args([
            "--listen",
            "0.0.0.0:0",
            "--ikey",
            "a",
            "--skey",
            "b",
            "--state-dir",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--listen",
        "--ikey",
        "--skey",
        "--state-dir",
        "--approve-delay-ms",
        "--clock-offset-secs",
        "--cert-san",
        "--push-expiry-secs",
        "/mock/script",
        "http429noretry",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_san_replaces_the_default_names() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path(), &["--cert-san", "duo.example.test"]);
    // localhost is no longer in the certificate: the handshake must fail.
    let client = mock.client().unwrap();
    assert!(client.get("/auth/v2/ping").await.is_err());
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ikey",
            TEST_IKEY,
            "--skey",
            TEST_SKEY,
            "--quiet",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .spawn()
        .unwrap();
    let port_file = dir.path().join("port");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !port_file.exists() {
        assert!(std::time::Instant::now() < deadline, "no port file");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mock-duo ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
