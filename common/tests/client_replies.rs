//! How the Duo client reads replies: HTTP errors, 429 backoff, Duo's error envelope,
//! malformed JSON, unknown values, and the long-poll helper.

mod client_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_support::*;
use duo_push_common::api::{AuthResult, DuoApi, DuoError, PreauthResult, Txid};
use serde_json::json;

const T: Duration = Duration::from_secs(3);

/// A push deadline for one `auth_status` call.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + T
}

/// A server whose ping is fine and whose other endpoints all answer with `reply`.
async fn server_answering(
    pki: &Pki,
    reply: impl Fn(&Request) -> Action + Send + Sync + 'static,
) -> Server {
    Server::start(pki.server.clone(), move |req: &Request| {
        if req.path == "/auth/v2/ping" {
            Action::ping(0)
        } else {
            reply(req)
        }
    })
    .await
}

#[tokio::test]
async fn http_500_and_503_are_http_errors_with_duo_codes() {
    let pki = pki(&["127.0.0.1"]);
    for status in [500u16, 503] {
        let server = server_answering(&pki, move |_: &Request| {
            Action::json(
                status,
                json!({"stat": "FAIL", "code": u32::from(status) * 100 + 1, "message": "down"}),
            )
        })
        .await;
        let client = client(&server, &pki, T);
        let err = client.preauth(&alice()).await.unwrap_err();
        assert_eq!(
            err,
            DuoError::Http {
                status,
                code: format!("{status}01"),
                message: "down".into()
            }
        );
        assert_eq!(
            server.count("/auth/v2/preauth"),
            1,
            "POST retried after {status}"
        );
        // A GET may be retried once.
        let err = client.check().await.unwrap_err();
        assert!(
            matches!(err, DuoError::Http { status: s, .. } if s == status),
            "{err:?}"
        );
        assert_eq!(server.count("/auth/v2/check"), 2);
    }
}

#[tokio::test]
async fn http_5xx_on_auth_is_not_retried() {
    let pki = pki(&["127.0.0.1"]);
    let server = server_answering(&pki, |_: &Request| Action::json(503, json!({}))).await;
    let client = client(&server, &pki, T);
    let err = client
        .passcode(
            &alice(),
            &duo_push_common::secret::Secret::new("123456".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DuoError::Http { status: 503, .. }), "{err:?}");
    assert_eq!(server.count("/auth/v2/auth"), 1);
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_honoured_then_succeeds() {
    let pki = pki(&["127.0.0.1"]);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = server_answering(&pki, move |_: &Request| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::Reply {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: json!({"stat": "FAIL", "code": 42901, "message": "Too Many Requests"})
                    .to_string()
                    .into_bytes(),
            }
        } else {
            Action::ok(json!({"result": "auth", "status_msg": "ok", "devices": []}))
        }
    })
    .await;
    let client = client(&server, &pki, T);
    let start = Instant::now();
    let preauth = client.preauth(&alice()).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(preauth.result, PreauthResult::Auth);
    assert!(
        elapsed >= Duration::from_secs(1),
        "did not wait: {elapsed:?}"
    );
    assert_within(elapsed, T);
    assert_eq!(server.count("/auth/v2/preauth"), 2);
}

#[tokio::test]
async fn rate_limit_on_auth_is_retried_because_duo_did_not_act_on_it() {
    let pki = pki(&["127.0.0.1"]);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = server_answering(&pki, move |_: &Request| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::Reply {
                status: 429,
                headers: vec![("Retry-After".into(), "0".into())],
                body: b"{}".to_vec(),
            }
        } else {
            Action::ok(json!({"txid": "t-429"}))
        }
    })
    .await;
    let client = client(&server, &pki, T);
    let request = duo_push_common::api::PushRequest {
        subject: alice(),
        device: "auto".into(),
        ..Default::default()
    };
    assert_eq!(client.push(&request).await.unwrap(), Txid("t-429".into()));
    assert_eq!(server.count("/auth/v2/auth"), 2);
}

#[tokio::test]
async fn endless_rate_limit_gives_up_before_the_deadline() {
    let pki = pki(&["127.0.0.1"]);
    let server = server_answering(&pki, |_: &Request| {
        Action::json(
            429,
            json!({"stat": "FAIL", "code": 42901, "message": "slow down"}),
        )
    })
    .await;
    let timeout = Duration::from_secs(2);
    let client = client(&server, &pki, timeout);
    // Measure the clock first, so that the timer below covers the check call alone.
    client.ping().await.unwrap();
    let start = Instant::now();
    let err = client.check().await.unwrap_err();
    assert_eq!(err, DuoError::RateLimited);
    assert!(server.count("/auth/v2/check") >= 1);
    assert!(
        start.elapsed() < timeout,
        "slept past the deadline: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn unauthorized_carries_duos_code_and_message() {
    let pki = pki(&["127.0.0.1"]);
    let server = server_answering(&pki, |_: &Request| {
        Action::json(
            401,
            json!({"stat": "FAIL", "code": 40101, "message": "Missing request credentials",
                   "message_detail": "x"}),
        )
    })
    .await;
    let client = client(&server, &pki, T);
    let err = client.check().await.unwrap_err();
    assert_eq!(
        err,
        DuoError::Unauthorized {
            code: "40101".into(),
            message: "Missing request credentials".into()
        }
    );
}

#[tokio::test]
async fn malformed_json_is_malformed() {
    let pki = pki(&["127.0.0.1"]);
    let server = server_answering(&pki, |_: &Request| Action::Reply {
        status: 200,
        headers: vec![],
        body: b"{\"stat\": \"OK\", \"response\": {".to_vec(),
    })
    .await;
    let client = client(&server, &pki, T);
    let err = client.preauth(&alice()).await.unwrap_err();
    assert!(matches!(err, DuoError::Malformed(_)), "{err:?}");
}

#[tokio::test]
async fn stat_ok_without_result_is_malformed_not_approval() {
    let pki = pki(&["127.0.0.1"]);
    let server = server_answering(&pki, |_: &Request| {
        Action::ok(json!({"status": "allow", "status_msg": "Success. Logging you in..."}))
    })
    .await;
    let client = client(&server, &pki, T);
    let err = client
        .auth_status(&Txid("t".into()), deadline())
        .await
        .unwrap_err();
    assert!(matches!(err, DuoError::Malformed(_)), "{err:?}");
    let err = client
        .passcode(&alice(), &duo_push_common::secret::Secret::new("1".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, DuoError::Malformed(_)), "{err:?}");
}

#[tokio::test]
async fn unknown_result_value_is_unknown() {
    let pki = pki(&["127.0.0.1"]);
    let server = server_answering(&pki, |req: &Request| match req.path.as_str() {
        "/auth/v2/preauth" => Action::ok(json!({"result": "quarantine", "status_msg": "?"})),
        _ => Action::ok(
            json!({"result": "approve-maybe", "status": "new", "status_msg": "?",
                               "new_field": {"nested": true}}),
        ),
    })
    .await;
    let client = client(&server, &pki, T);
    let status = client
        .auth_status(&Txid("t".into()), deadline())
        .await
        .unwrap();
    assert_eq!(status.result, AuthResult::Unknown("approve-maybe".into()));
    let preauth = client.preauth(&alice()).await.unwrap();
    assert_eq!(preauth.result, PreauthResult::Unknown("quarantine".into()));
    // wait_for_push returns an unknown value as final (never keeps polling, never allows).
    let deadline = tokio::time::Instant::now() + T;
    let status = client
        .wait_for_push(&Txid("t".into()), deadline)
        .await
        .unwrap();
    assert_eq!(status.result, AuthResult::Unknown("approve-maybe".into()));
}

#[tokio::test]
async fn wait_for_push_polls_until_a_final_result() {
    let pki = pki(&["127.0.0.1"]);
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let server = server_answering(&pki, move |_: &Request| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Action::ok(json!({"result": "waiting", "status": "pushed", "status_msg": "Pushed"}))
        } else {
            Action::ok(json!({"result": "deny", "status": "deny", "status_msg": "Denied"}))
        }
    })
    .await;
    let client = client(&server, &pki, T);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = client
        .wait_for_push(&Txid("t".into()), deadline)
        .await
        .unwrap();
    assert_eq!(status.result, AuthResult::Deny);
    assert_eq!(server.count("/auth/v2/auth_status"), 3);
    let txids: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.param("txid"))
        .collect();
    assert_eq!(txids, ["t", "t", "t"]);
}

#[tokio::test]
async fn wait_for_push_stops_at_the_push_deadline_not_https_timeout() {
    let pki = pki(&["127.0.0.1"]);
    // auth_status long-polls longer than https_timeout: only the push deadline may end it.
    let server = Server::start(pki.server.clone(), |req: &Request| {
        if req.path == "/auth/v2/ping" {
            Action::ping(0)
        } else {
            Action::Hang
        }
    })
    .await;
    let https_timeout = Duration::from_secs(1);
    let client = client(&server, &pki, https_timeout);
    client.ping().await.unwrap();
    let push_time = Duration::from_secs(3);
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + push_time;
    let err = client
        .wait_for_push(&Txid("t".into()), deadline)
        .await
        .unwrap_err();
    assert_eq!(err, DuoError::Timeout);
    assert!(start.elapsed() >= push_time - Duration::from_millis(100));
    assert_within(start.elapsed(), push_time);
}
