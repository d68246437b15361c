//! The lab's handle on mock-duo: start, control API over HTTPS with the mock's CA, kill on drop.

use std::path::Path;

use duo_push_tests::lab::{MockDuo, MockOpts, TEST_IKEY, TEST_SKEY};

fn start(opts: MockOpts) -> MockDuo {
    MockDuo::start_with(Path::new(env!("CARGO_BIN_EXE_mock-duo")), opts)
}

#[test]
fn the_mock_starts_with_the_test_keys_and_answers_its_control_api() {
    let mock = start(MockOpts::default());
    assert_eq!(TEST_IKEY.len(), 20);
    assert!(TEST_IKEY
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(TEST_SKEY.len(), 40);
    assert_eq!((mock.ikey(), mock.skey()), (TEST_IKEY, TEST_SKEY));
    assert_ne!(mock.port(), 0);
    assert_eq!(mock.host(), format!("127.0.0.1:{}", mock.port()));
    let ca = std::fs::read_to_string(mock.ca_pem_path()).expect("ca.pem");
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert!(mock.pushes().is_empty());
    assert!(mock.pending().is_empty());
    assert!(mock.stats().is_object(), "{}", mock.stats());
    mock.script("alice", &["deny", "allow"]);
    mock.reset();
}

#[test]
fn control_errors_are_reported_not_hidden() {
    let mock = start(MockOpts::default());
    let (status, _) = mock.request("POST", "/mock/pushes/no-such-txid/approve", None);
    assert!(status >= 400, "approving an unknown push answered {status}");
    let (status, _) = mock.request(
        "POST",
        "/mock/script",
        Some(&serde_json::json!({"username": "x", "outcomes": ["explode"]})),
    );
    assert!(status >= 400, "an unknown outcome was accepted ({status})");
}

#[test]
fn a_named_certificate_is_reached_by_that_name() {
    let mock = start(MockOpts {
        cert_san: Some("api-lab.duosecurity.test".to_string()),
        ..MockOpts::default()
    });
    assert!(mock.pushes().is_empty());
}

#[test]
fn dropping_the_mock_kills_it() {
    let mock = start(MockOpts::default());
    let pid = mock.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(mock);
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Gone, or at most a zombie of a reaped-later child.
    assert!(state.is_empty() || state.contains(") Z"), "{state}");
}
