//! Duo's official Python client (duo_client 5.7.0) is accepted by mock-duo with signature v2
//! (HMAC-SHA1 and HMAC-SHA512) and v5, and refused with a wrong secret key.

use std::path::{Path, PathBuf};
use std::process::Command;

use duo_push_tests::mock::harness::{MockProcess, TEST_IKEY, TEST_SKEY};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");

/// `DUO_PUSH_TEST_PYTHON`, else the workspace venv; neither existing fails the test.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DUO_PUSH_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "DUO_PUSH_TEST_PYTHON={} does not exist",
            p.display()
        );
        return p;
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python");
    assert!(
        fallback.exists(),
        "no Python with duo_client: set DUO_PUSH_TEST_PYTHON or create the venv at {} \
         (python3 -m venv target/py && target/py/bin/pip install duo_client==5.7.0)",
        fallback.display()
    );
    fallback
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_client_is_accepted_with_every_signature_version() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::spawn(Path::new(BIN), dir.path(), &[]).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/duo_client_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["localhost", &mock.port().to_string()])
        .arg(mock.ca_path())
        .args([TEST_IKEY, TEST_SKEY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "duo_client_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for line in [
        "OK v2-sha1 check",
        "OK v2-sha1 preauth",
        "OK v2-sha512 check",
        "OK v2-sha512 preauth",
        "OK v5 check",
        "OK v5 preauth",
        "OK v5 preauth deny",
        "ALL OK",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("OK wrong skey rejected"), "{stdout}");

    // mock-duo saw each version, verified, and one refusal.
    let client = mock.client().unwrap();
    let log: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/requests").await.unwrap().body).unwrap();
    let seen: Vec<(String, bool)> = log
        .iter()
        .map(|r| {
            (
                r["signature"].as_str().unwrap().to_owned(),
                r["verified"].as_bool().unwrap(),
            )
        })
        .collect();
    for version in ["v2-sha1", "v2-sha512", "v5"] {
        assert_eq!(
            seen.iter().filter(|(v, ok)| v == version && *ok).count(),
            3,
            "{version}: {seen:?}"
        );
    }
    assert_eq!(
        client.get("/mock/stats").await.unwrap().json()["signature_failures"],
        1
    );
}
