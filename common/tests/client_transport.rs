//! Transport faults of the Duo client against a raw loopback HTTPS server: refused
//! connections, certificate failures, silence, trickles, resets, oversized replies, and
//! connection reuse. Each failure is a typed error and arrives within its time bound.

mod client_support;

use std::time::{Duration, Instant};

use client_support::*;
use duo_push_common::api::{DuoApi, DuoError, PushRequest, Txid};
use duo_push_common::client::DuoClient;
use serde_json::json;

const T: Duration = Duration::from_secs(2);

/// Answers ping, preauth, auth and auth_status like a cooperative Duo.
fn cooperative(req: &Request) -> Action {
    match req.path.as_str() {
        "/auth/v2/ping" => Action::ping(0),
        "/auth/v2/preauth" => Action::ok(json!({"result": "auth", "status_msg": "ok",
            "devices": [{"device": "auto", "type": "phone", "capabilities": ["push"]}]})),
        "/auth/v2/auth" => Action::ok(json!({"txid": "tx-1"})),
        "/auth/v2/auth_status" => {
            Action::ok(json!({"result": "allow", "status": "allow", "status_msg": "ok"}))
        }
        _ => Action::json(
            404,
            json!({"stat": "FAIL", "code": 40401, "message": "nope"}),
        ),
    }
}

fn push_request() -> PushRequest {
    PushRequest {
        subject: alice(),
        device: "auto".into(),
        kind: "Vault login".into(),
        display_username: None,
        pushinfo: vec![("hop".into(), "vault".into())],
    }
}

#[tokio::test]
async fn server_down_is_a_connect_error_within_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let pki = pki(&["127.0.0.1"]);
    let client = DuoClient::new(settings(
        &format!("127.0.0.1:{port}"),
        Some(pki.ca_file.clone()),
        T,
    ))
    .unwrap();
    let start = Instant::now();
    let err = client.preauth(&alice()).await.unwrap_err();
    assert!(matches!(err, DuoError::Connect(_)), "{err:?}");
    assert_within(start.elapsed(), T);
}

#[tokio::test]
async fn certificate_from_another_ca_is_a_tls_error() {
    let served = pki(&["127.0.0.1", "localhost"]);
    let other = pki(&["127.0.0.1", "localhost"]);
    let server = Server::start(served.server.clone(), cooperative).await;
    let client = client(&server, &other, T);
    let start = Instant::now();
    let err = client.preauth(&alice()).await.unwrap_err();
    assert!(matches!(err, DuoError::Tls(_)), "{err:?}");
    assert_within(start.elapsed(), T);
    assert!(
        server.requests().is_empty(),
        "a request passed a failed handshake"
    );
}

#[tokio::test]
async fn certificate_for_another_host_name_is_a_tls_error() {
    let pki = pki(&["other.example"]);
    let server = Server::start(pki.server.clone(), cooperative).await;
    let client = client(&server, &pki, T);
    let err = client.check().await.unwrap_err();
    match &err {
        DuoError::Tls(msg) => assert!(msg.to_lowercase().contains("not valid for name"), "{msg}"),
        other => panic!("expected Tls, got {other:?}"),
    }
}

#[tokio::test]
async fn default_trust_does_not_accept_the_test_ca() {
    let pki = pki(&["127.0.0.1", "localhost"]);
    let server = Server::start(pki.server.clone(), cooperative).await;
    let client = DuoClient::new(settings(&server.host(), None, T)).unwrap();
    let err = client.ping().await.unwrap_err();
    match &err {
        DuoError::Tls(msg) => assert!(msg.to_lowercase().contains("issuer"), "{msg}"),
        other => panic!("expected Tls, got {other:?}"),
    }
}

#[tokio::test]
async fn cafile_without_certificates_or_missing_is_a_setup_error() {
    let empty = temp_file("empty.pem", b"# nothing here\n");
    let err = DuoClient::new(settings("127.0.0.1:1", Some(empty), T)).unwrap_err();
    assert!(matches!(err, DuoError::Setup(_)), "{err:?}");
    let missing = std::path::PathBuf::from("/nonexistent/duo-ca.pem");
    let err = DuoClient::new(settings("127.0.0.1:1", Some(missing), T)).unwrap_err();
    assert!(matches!(err, DuoError::Setup(_)), "{err:?}");
}

#[tokio::test]
async fn configured_proxy_is_used_and_a_dead_one_is_a_connect_error() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), cooperative).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut s = settings(&server.host(), Some(pki.ca_file.clone()), T);
    s.http_proxy = Some(format!("http://127.0.0.1:{dead_port}"));
    let client = DuoClient::new(s).unwrap();
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err, DuoError::Connect(_)), "{err:?}");
    assert_eq!(server.connections(), 0, "bypassed the configured proxy");
}

#[tokio::test]
async fn silent_server_times_out_within_https_timeout() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), |_: &Request| Action::Hang).await;
    let client = client(&server, &pki, T);
    let start = Instant::now();
    let err = client.preauth(&alice()).await.unwrap_err();
    assert_eq!(err, DuoError::Timeout);
    assert!(start.elapsed() >= T - Duration::from_millis(100));
    assert_within(start.elapsed(), T);
}

#[tokio::test]
async fn trickling_body_times_out_within_https_timeout() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), |_: &Request| Action::Trickle {
        len: 1000,
        every: Duration::from_millis(100),
    })
    .await;
    let client = client(&server, &pki, T);
    let start = Instant::now();
    let err = client.ping().await.unwrap_err();
    assert_eq!(err, DuoError::Timeout);
    assert_within(start.elapsed(), T);
}

#[tokio::test]
async fn reset_after_the_auth_request_is_lost_and_never_resent() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), |req: &Request| {
        if req.path == "/auth/v2/auth" {
            Action::Close
        } else {
            cooperative(req)
        }
    })
    .await;
    let client = client(&server, &pki, T);
    let start = Instant::now();
    let err = client.push(&push_request()).await.unwrap_err();
    assert!(matches!(err, DuoError::Lost(_)), "{err:?}");
    assert_within(start.elapsed(), T);
    // Give a (wrong) retry time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.count("/auth/v2/auth"), 1);
}

#[tokio::test]
async fn silence_after_the_auth_request_is_lost_not_a_plain_timeout() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), |req: &Request| {
        if req.path == "/auth/v2/auth" {
            Action::Hang
        } else {
            cooperative(req)
        }
    })
    .await;
    let client = client(&server, &pki, T);
    let start = Instant::now();
    let err = client.push(&push_request()).await.unwrap_err();
    assert!(matches!(err, DuoError::Lost(_)), "{err:?}");
    assert_within(start.elapsed(), T);
    assert_eq!(server.count("/auth/v2/auth"), 1);
}

#[tokio::test]
async fn oversized_reply_is_too_large() {
    let pki = pki(&["127.0.0.1"]);
    let big = vec![b' '; 1024 * 1024];
    let server = Server::start(pki.server.clone(), move |req: &Request| {
        if req.path == "/auth/v2/ping" {
            Action::Reply {
                status: 200,
                headers: vec![],
                body: big.clone(),
            }
        } else {
            cooperative(req)
        }
    })
    .await;
    let client = client(&server, &pki, T);
    assert_eq!(client.ping().await.unwrap_err(), DuoError::TooLarge);
}

#[tokio::test]
async fn oversized_reply_without_length_is_cut_off_while_streaming() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), |_: &Request| {
        let mut raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                .to_vec();
        raw.extend(std::iter::repeat_n(b' ', 1024 * 1024));
        Action::Raw(raw)
    })
    .await;
    let client = client(&server, &pki, T);
    assert_eq!(client.ping().await.unwrap_err(), DuoError::TooLarge);
}

#[tokio::test]
async fn one_connection_serves_ping_preauth_auth_and_auth_status() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), cooperative).await;
    let client = client(&server, &pki, T);
    let preauth = client.preauth(&alice()).await.unwrap();
    assert_eq!(preauth.devices.len(), 1);
    let txid = client.push(&push_request()).await.unwrap();
    assert_eq!(txid, Txid("tx-1".into()));
    let status = client
        .auth_status(&txid, tokio::time::Instant::now() + T)
        .await
        .unwrap();
    assert_eq!(status.status, "allow");
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/auth/v2/ping",
            "/auth/v2/preauth",
            "/auth/v2/auth",
            "/auth/v2/auth_status"
        ]
    );
    assert_eq!(server.connections(), 1, "one TLS handshake per login");
}
