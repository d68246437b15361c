//! The legacy REST v1 protocol (duo_unix 1.x): v1 signatures, BSON replies of the documented
//! shape, and the username-prefix behaviours.

use std::path::Path;

use duo_push_tests::mock::harness::{DuoTestClient, MockProcess, Reply, TEST_SKEY};

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");

fn start(dir: &Path) -> (MockProcess, DuoTestClient) {
    let mock = MockProcess::spawn(
        Path::new(BIN),
        dir,
        &["--long-poll-secs", "1", "--push-expiry-secs", "2"],
    )
    .unwrap();
    let client = mock.client().unwrap();
    (mock, client)
}

fn bson_of(reply: &Reply) -> bson::Document {
    bson::Document::from_reader(reply.body.as_slice())
        .unwrap_or_else(|e| panic!("not BSON ({e}): {:?}", reply.body))
}

async fn preauth(client: &DuoTestClient, user: &str) -> Reply {
    client
        .legacy_call(
            TEST_SKEY,
            "POST",
            "/rest/v1/preauth.bson",
            &[("user", user), ("hostname", "h"), ("failmode", "closed")],
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_preauth_replies_in_bson_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());

    let r = preauth(&client, "alice").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/bson");
    let doc = bson_of(&r);
    assert_eq!(doc.get_str("stat").unwrap(), "OK");
    let resp = doc.get_document("response").unwrap();
    assert_eq!(resp.get_str("result").unwrap(), "auth");
    assert!(resp.get_str("prompt").unwrap().contains("Duo Push"));
    let factors = resp.get_document("factors").unwrap();
    assert_eq!(factors.get_str("default").unwrap(), "push1");
    assert_eq!(factors.get_str("1").unwrap(), "push1");

    for (user, result) in [
        ("lockout-a", "deny"),
        ("enroll-b", "enroll"),
        ("bypass-c", "allow"),
    ] {
        let doc = bson_of(&preauth(&client, user).await);
        let resp = doc.get_document("response").unwrap();
        assert_eq!(resp.get_str("result").unwrap(), result, "{user}");
        assert!(!resp.get_str("status").unwrap().is_empty());
    }

    let r = preauth(&client, "http503-d").await;
    assert_eq!(r.status, 503);
    let doc = bson_of(&r);
    assert_eq!(doc.get_str("stat").unwrap(), "FAIL");
    assert_eq!(doc.get_i32("code").unwrap(), 50301);
    let r = preauth(&client, "http429-e").await;
    assert_eq!(
        (
            r.status,
            r.headers.get("retry-after").map(|v| v.to_str().unwrap())
        ),
        (429, Some("1"))
    );
    let r = preauth(&client, "badjson-f").await;
    assert_eq!(r.status, 200);
    assert!(bson::Document::from_reader(r.body.as_slice()).is_err());

    // A wrong key: 401 with a BSON FAIL (int32 code), counted.
    let r = client
        .legacy_call(
            "W".repeat(40).as_str(),
            "POST",
            "/rest/v1/preauth.bson",
            &[("user", "alice")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(bson_of(&r).get_i32("code").unwrap(), 40103);
    // A v2 signature is not a v1 signature.
    let r = client
        .call(
            duo_push_common::signing::SignatureVersion::V2Sha1,
            "POST",
            "/rest/v1/preauth.bson",
            &[("user", "alice")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_auth_pushes_and_status_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, client) = start(dir.path());
    let push = |user: &'static str, asynchronous: &'static str| {
        let client = client.clone();
        async move {
            client
                .legacy_call(
                    TEST_SKEY,
                    "POST",
                    "/rest/v1/auth.bson",
                    &[
                        ("user", user),
                        ("factor", "auto"),
                        ("auto", "push1"),
                        ("async", asynchronous),
                        ("pushinfo", "Server+IP=192.0.2.1&Command=ls+-l"),
                    ],
                )
                .await
                .unwrap()
        }
    };
    // Synchronous: the final answer.
    let doc = bson_of(&push("alice", "0").await);
    let resp = doc.get_document("response").unwrap();
    assert_eq!(resp.get_str("result").unwrap(), "allow");
    let doc = bson_of(&push("deny-bob", "0").await);
    assert_eq!(
        doc.get_document("response")
            .unwrap()
            .get_str("result")
            .unwrap(),
        "deny"
    );

    // Asynchronous timeout user: status without result while pending, then deny.
    let doc = bson_of(&push("timeout-carol", "1").await);
    let txid = doc
        .get_document("response")
        .unwrap()
        .get_str("txid")
        .unwrap()
        .to_owned();
    let status = |txid: String| {
        let client = client.clone();
        async move {
            bson_of(
                &client
                    .legacy_call(TEST_SKEY, "GET", "/rest/v1/status.bson", &[("txid", &txid)])
                    .await
                    .unwrap(),
            )
        }
    };
    let first = status(txid.clone()).await;
    let resp = first.get_document("response").unwrap();
    assert!(resp.get("result").is_none(), "{resp}");
    assert!(!resp.get_str("status").unwrap().is_empty());
    let mut last = first.clone();
    for _ in 0..5 {
        last = status(txid.clone()).await;
        if last
            .get_document("response")
            .unwrap()
            .get("result")
            .is_some()
        {
            break;
        }
    }
    assert_eq!(
        last.get_document("response")
            .unwrap()
            .get_str("result")
            .unwrap(),
        "deny"
    );

    // Passcodes through factor=auto.
    let r = client
        .legacy_call(
            TEST_SKEY,
            "POST",
            "/rest/v1/auth.bson",
            &[
                ("user", "d"),
                ("factor", "auto"),
                ("auto", "123456"),
                ("async", "0"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        bson_of(&r)
            .get_document("response")
            .unwrap()
            .get_str("result")
            .unwrap(),
        "allow"
    );

    let pushes: Vec<serde_json::Value> =
        serde_json::from_slice(&client.get("/mock/pushes").await.unwrap().body).unwrap();
    assert_eq!(pushes.len(), 3);
    assert_eq!(
        pushes[0]["pushinfo"],
        serde_json::json!({"Server IP": "192.0.2.1", "Command": "ls -l"})
    );
    assert!(pushes
        .iter()
        .all(|p| p["api"] == "v1" && p["type"] == "legacy"));
    assert_eq!(pushes[2]["status"], "timeout");

    // Unknown txid.
    let r = client
        .legacy_call(
            TEST_SKEY,
            "GET",
            "/rest/v1/status.bson",
            &[("txid", "nope")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(bson_of(&r).get_i32("code").unwrap(), 40002);
}
