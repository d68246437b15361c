//! Each username prefix gives its documented preauth / auth / auth_status behaviour; the control
//! API approves, denies and scripts pushes; the push log keeps order and decoded pushinfo.

use std::path::Path;
use std::time::{Duration, Instant};

use duo_push_common::signing::SignatureVersion::{self, V2Sha512, V5};
use duo_push_tests::mock::harness::{DuoTestClient, MockProcess, Reply};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");

/// A mock whose pushes expire after 2 s and whose long-polls last 1 s.
fn start(dir: &Path) -> (MockProcess, DuoTestClient) {
    let mock = MockProcess::spawn(
        Path::new(BIN),
        dir,
        &["--push-expiry-secs", "2", "--long-poll-secs", "1"],
    )
    .expect("mock-duo starts");
    let client = mock.client().unwrap();
    (mock, client)
}

async fn preauth(client: &DuoTestClient, user: &str) -> Reply {
    client
        .call(V5, "POST", "/auth/v2/preauth", &[("username", user)])
        .await
        .unwrap()
}

async fn push(
    client: &DuoTestClient,
    version: SignatureVersion,
    user: &str,
    asynchronous: bool,
) -> Reply {
    let mut params = vec![("username", user), ("factor", "push"), ("device", "auto")];
    if asynchronous {
        params.push(("async", "1"));
    }
    client
        .call(version, "POST", "/auth/v2/auth", &params)
        .await
        .unwrap()
}

async fn auth_status(client: &DuoTestClient, txid: &str) -> Value {
    let r = client
        .call(V5, "GET", "/auth/v2/auth_status", &[("txid", txid)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["response"].clone()
}

async fn pushes(client: &DuoTestClient) -> Vec<Value> {
    serde_json::from_slice(&client.get("/mock/pushes").await.unwrap().body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn preauth_answers_follow_the_username_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());

    let r = preauth(&client, "alice").await.json();
    assert_eq!(r["stat"], "OK");
    assert_eq!(r["response"]["result"], "auth");
    let device = &r["response"]["devices"][0];
    assert_eq!(device["device"], "DPFZRS9FB0D46QFTM891");
    assert_eq!(device["display_name"], "iOS (XXX-XXX-1234)");
    assert_eq!(
        device["capabilities"],
        json!(["auto", "push", "sms", "phone", "mobile_otp"])
    );
    assert!(r["response"].get("prompt").is_none());

    let r = preauth(&client, "lockout-carol").await.json();
    assert_eq!(r["response"]["result"], "deny");
    assert_eq!(r["response"]["status_msg"], "Your account is locked");

    let r = preauth(&client, "enroll-dave").await.json();
    assert_eq!(r["response"]["result"], "enroll");
    assert!(r["response"]["enroll_portal_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));

    let r = preauth(&client, "bypass-erin").await.json();
    assert_eq!(r["response"]["result"], "allow");

    let r = preauth(&client, "nopush-frank").await.json();
    assert_eq!(r["response"]["result"], "auth");
    let caps = r["response"]["devices"][0]["capabilities"]
        .as_array()
        .unwrap();
    assert!(!caps.contains(&json!("push")) && !caps.contains(&json!("auto")));

    for (user, status, code) in [
        ("http500-a", 500, 50001),
        ("http503-a", 503, 50301),
        ("http429-a", 429, 42901),
    ] {
        let r = preauth(&client, user).await;
        assert_eq!(r.status, status, "{user}");
        assert_eq!(r.json()["stat"], "FAIL");
        assert_eq!(r.json()["code"], code);
    }
    let r = preauth(&client, "http429-b").await;
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    let r = preauth(&client, "http429noretry-b").await;
    assert_eq!(r.status, 429);
    assert!(r.headers.get("retry-after").is_none());

    let r = preauth(&client, "badjson-g").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    let r = preauth(&client, "huge-h").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 2 * 1024 * 1024);

    // duo_unix 2.x's text menu.
    let r = client
        .call(
            V2Sha512,
            "POST",
            "/auth/v2/preauth",
            &[("username", "ivan"), ("text_prompt", "1")],
        )
        .await
        .unwrap()
        .json();
    let prompt = &r["response"]["prompt"];
    assert!(prompt["text"]
        .as_str()
        .unwrap()
        .starts_with("Duo two-factor login for ivan\n\n"));
    assert!(prompt["text"]
        .as_str()
        .unwrap()
        .contains(" 1. Duo Push to XXX-XXX-1234\n"));
    assert_eq!(prompt["factors"], json!({"1": "push1", "default": "push1"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn push_outcomes_follow_the_username_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());

    let r = push(&client, V5, "alice", false).await.json();
    assert_eq!(
        r["response"],
        json!({"result": "allow", "status": "allow", "status_msg": "Success. Logging you in..."})
    );

    let r = push(&client, V5, "deny-bob", false).await.json();
    assert_eq!(
        (&r["response"]["result"], &r["response"]["status"]),
        (&json!("deny"), &json!("deny"))
    );

    let r = push(&client, V5, "fraud-carl", false).await.json();
    assert_eq!(
        (&r["response"]["result"], &r["response"]["status"]),
        (&json!("deny"), &json!("fraud"))
    );

    let started = Instant::now();
    let r = push(&client, V5, "slow-dan", false).await.json();
    assert_eq!(r["response"]["result"], "allow");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "slow approved too early"
    );

    // timeout: pending (waiting) until the 2 s expiry, then deny/timeout.
    let r = push(&client, V5, "timeout-eve", true).await.json();
    let txid = r["response"]["txid"].as_str().unwrap().to_owned();
    assert_eq!(txid.len(), 36);
    let first = auth_status(&client, &txid).await;
    assert_eq!(
        first,
        json!({"result": "waiting", "status": "pushed", "status_msg": "Pushed a login request to your device..."})
    );
    let mut last = first;
    for _ in 0..5 {
        last = auth_status(&client, &txid).await;
        if last["result"] != "waiting" {
            break;
        }
    }
    assert_eq!(
        (&last["result"], &last["status"]),
        (&json!("deny"), &json!("timeout"))
    );

    // Async push of an ordinary user: auth_status reports allow.
    let r = push(&client, V2Sha512, "frank", true).await.json();
    let st = auth_status(&client, r["response"]["txid"].as_str().unwrap()).await;
    assert_eq!(st["result"], "allow");

    // nopush users cannot be pushed; lockout and bypass users end at once.
    let r = push(&client, V5, "nopush-g", false).await;
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(40002)));
    let r = push(&client, V5, "lockout-h", false).await.json();
    assert_eq!(r["response"]["status"], "locked_out");
    let r = push(&client, V5, "bypass-i", false).await.json();
    assert_eq!(r["response"]["result"], "allow");

    // Passcodes: 123456 only.
    let ok = client
        .call(
            V5,
            "POST",
            "/auth/v2/auth",
            &[
                ("username", "j"),
                ("factor", "passcode"),
                ("passcode", "123456"),
            ],
        )
        .await
        .unwrap()
        .json();
    assert_eq!(ok["response"]["result"], "allow");
    let bad = client
        .call(
            V5,
            "POST",
            "/auth/v2/auth",
            &[
                ("username", "j"),
                ("factor", "passcode"),
                ("passcode", "654321"),
            ],
        )
        .await
        .unwrap()
        .json();
    assert_eq!(bad["response"]["result"], "deny");

    // duo_unix 2.x: factor=prompt&prompt=push1.
    let r = client
        .call(
            V2Sha512,
            "POST",
            "/auth/v2/auth",
            &[
                ("username", "kim"),
                ("factor", "prompt"),
                ("prompt", "push1"),
            ],
        )
        .await
        .unwrap()
        .json();
    assert_eq!(r["response"]["result"], "allow");

    // Unknown txid.
    let r = client
        .call(V5, "GET", "/auth/v2/auth_status", &[("txid", "nope")])
        .await
        .unwrap();
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(40002)));

    // The push log: pushes only (no passcodes), in order, final results.
    let log = pushes(&client).await;
    let users: Vec<&str> = log
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            "alice",
            "deny-bob",
            "fraud-carl",
            "slow-dan",
            "timeout-eve",
            "frank",
            "lockout-h",
            "bypass-i",
            "kim"
        ]
    );
    assert_eq!(log[4]["status"], "timeout");
    assert_eq!(log[8]["factor"], "prompt");
    assert!(log
        .iter()
        .all(|p| p["api"] == "v2" && p["result"] != "pending"));
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_pushes_are_approved_and_denied_live_through_the_control_api() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::spawn(Path::new(BIN), dir.path(), &["--long-poll-secs", "1"]).unwrap();
    let client = mock.client().unwrap();

    let a = push(&client, V5, "manual-1", true).await.json()["response"]["txid"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = push(&client, V5, "manual-2", true).await.json()["response"]["txid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth_status(&client, &a).await["result"], "waiting");
    let pending: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/pending").await.unwrap().body).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0]["txid"], a.as_str());
    assert_eq!(pending[0]["result"], "pending");

    // A long-poll in flight sees the approval as it happens.
    let poller = {
        let client = client.clone();
        let a = a.clone();
        tokio::spawn(async move {
            let r = client
                .call(V5, "GET", "/auth/v2/auth_status", &[("txid", &a)])
                .await
                .unwrap();
            r.json()["response"].clone()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client
        .post_json(&format!("/mock/pushes/{a}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(poller.await.unwrap()["result"], "allow");

    let r = client
        .post_json(&format!("/mock/pushes/{b}/deny"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let st = auth_status(&client, &b).await;
    assert_eq!(
        (&st["result"], &st["status"]),
        (&json!("deny"), &json!("deny"))
    );

    // Already ended, and unknown.
    let r = client
        .post_json(&format!("/mock/pushes/{b}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    let r = client
        .post_json("/mock/pushes/nope/approve", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(
        serde_json::from_slice::<Vec<Value>>(&client.get("/mock/pending").await.unwrap().body)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scripted_outcomes_override_the_prefix_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());
    let r = client
        .post_json(
            "/mock/script",
            &json!({"username": "deny-zed", "outcomes": ["allow", "fraud", "deny", "allow"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses
            .push(push(&client, V5, "deny-zed", false).await.json()["response"]["status"].clone());
    }
    // Four scripted, then the prefix (deny) again.
    assert_eq!(
        statuses,
        [
            json!("allow"),
            json!("fraud"),
            json!("deny"),
            json!("allow"),
            json!("deny")
        ]
    );

    let r = client
        .post_json(
            "/mock/script",
            &json!({"username": "x", "outcomes": ["maybe"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);

    // Reset forgets scripts and logs.
    client
        .post_json(
            "/mock/script",
            &json!({"username": "y", "outcomes": ["deny"]}),
        )
        .await
        .unwrap();
    client.post_json("/mock/reset", &json!({})).await.unwrap();
    assert!(pushes(&client).await.is_empty());
    assert_eq!(
        push(&client, V5, "y", false).await.json()["response"]["result"],
        "allow"
    );
    let stats = client.get("/mock/stats").await.unwrap().json();
    assert_eq!(stats["requests"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_push_log_keeps_type_display_name_and_decoded_pushinfo() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());
    let pushinfo = "hop=vault&host=proxy.example&from=192.0.2.7&service=sshd&note=a%20b%26c";
    let r = client
        .call(
            V5,
            "POST",
            "/auth/v2/auth",
            &[
                ("username", "alice"),
                ("factor", "push"),
                ("device", "DPFZRS9FB0D46QFTM891"),
                ("type", "Vault login"),
                ("display_username", "Alice A."),
                ("pushinfo", pushinfo),
                ("async", "1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    push(&client, V2Sha512, "second", false).await;
    let log = pushes(&client).await;
    assert_eq!(log.len(), 2);
    let first = &log[0];
    assert_eq!(first["type"], "Vault login");
    assert_eq!(first["display_username"], "Alice A.");
    assert_eq!(first["device"], "DPFZRS9FB0D46QFTM891");
    assert_eq!(first["factor"], "push");
    assert_eq!(
        first["pushinfo"],
        json!({"hop": "vault", "host": "proxy.example", "from": "192.0.2.7", "service": "sshd", "note": "a b&c"})
    );
    assert_eq!(log[1]["username"], "second");
    // Unknown device ids are refused.
    let r = client
        .call(
            V5,
            "POST",
            "/auth/v2/auth",
            &[("username", "a"), ("factor", "push"), ("device", "DPOTHER")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pushes_run_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());
    let started = Instant::now();
    let (a, b) = tokio::join!(
        push(&client, V5, "slow-one", false),
        push(&client, V2Sha512, "slow-two", false)
    );
    assert_eq!(a.json()["response"]["result"], "allow");
    assert_eq!(b.json()["response"]["result"], "allow");
    // Each takes 2 s; together well under 4 s.
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "pushes were serialized: {:?}",
        started.elapsed()
    );
    assert_eq!(pushes(&client).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_preauth_does_not_block_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());
    let hanging = {
        let client = client.clone();
        tokio::spawn(async move { preauth(&client, "hang-forever").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            preauth(&client, user).await.json()["response"]["result"],
            "auth"
        );
    }
    assert!(push(&client, V5, "dave", false).await.status == 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!hanging.is_finished(), "the hang request was answered");
    hanging.abort();
    let log: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/requests").await.unwrap().body).unwrap();
    assert_eq!(log[0]["username"], "hang-forever");
    assert_eq!(log[0]["status"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_on_one_connection_share_a_connection_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());
    for _ in 0..3 {
        assert_eq!(preauth(&client, "alice").await.status, 200);
    }
    let log: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/requests").await.unwrap().body).unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|r| r["connection"] == log[0]["connection"]));
    let stats = client.get("/mock/stats").await.unwrap().json();
    assert_eq!(stats["tls_handshakes"], 1);
    assert_eq!(stats["requests"], 3);
    // A second client is a second connection.
    let other = DuoTestClient::new(&dir.path().join("ca.pem"), "localhost", _mock.port()).unwrap();
    preauth(&other, "bob").await;
    assert_eq!(
        other.get("/mock/stats").await.unwrap().json()["tls_handshakes"],
        2
    );
}
