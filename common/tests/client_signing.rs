//! What the Duo client puts on the wire: valid signatures for every signature version, the
//! User-Agent and Host, the push parameters and the double encoding of pushinfo, and a signing
//! date corrected by the clock offset measured with ping.

mod client_support;

use std::time::Duration;

use client_support::*;
use duo_push_common::api::{AuthResult, DuoApi, PushRequest, Txid};
use duo_push_common::client::DuoClient;
use duo_push_common::signing::{self, SignatureVersion};
use serde_json::json;

const T: Duration = Duration::from_secs(3);

/// A strict server: every call but ping must carry a valid signature for `version` and a
/// date within 60 s of the server's clock, which runs `skew` seconds ahead of ours; otherwise
/// 401 in Duo's shape.
fn strict(version: SignatureVersion, skew: i64) -> impl Fn(&Request) -> Action + Send + Sync {
    move |req: &Request| {
        if req.path == "/auth/v2/ping" {
            return Action::ping(skew);
        }
        if let Err(why) = verify_signature(req, version) {
            return Action::json(
                401,
                json!({"stat": "FAIL", "code": 40103, "message": format!("Invalid signature: {why}")}),
            );
        }
        let header = match version {
            SignatureVersion::V5 => "x-duo-date",
            _ => "date",
        };
        let date = req.header(header).and_then(signing::parse_rfc2822_date);
        let in_window = date.is_some_and(|d| (d.unix_timestamp() - (now() + skew)).abs() <= 60);
        if !in_window {
            return Action::json(
                401,
                json!({"stat": "FAIL", "code": 40105, "message": "Request has expired"}),
            );
        }
        match req.path.as_str() {
            "/auth/v2/check" => Action::ok(json!({"time": now() + skew})),
            "/auth/v2/preauth" => Action::ok(json!({"result": "auth", "status_msg": "ok"})),
            "/auth/v2/auth" if req.param("factor").as_deref() == Some("passcode") => {
                Action::ok(json!({"result": "allow", "status": "allow", "status_msg": "ok"}))
            }
            "/auth/v2/auth" => Action::ok(json!({"txid": "tx-signed"})),
            "/auth/v2/auth_status" => {
                Action::ok(json!({"result": "allow", "status": "allow", "status_msg": "ok"}))
            }
            _ => Action::json(404, json!({"stat": "FAIL", "code": 40401, "message": "?"})),
        }
    }
}

#[allow(
    clippy::unwrap_used,
    reason = "test helper: a failure is a test failure"
)]
fn client_with(server: &Server, pki: &Pki, version: SignatureVersion) -> DuoClient {
    let mut s = settings(&server.host(), Some(pki.ca_file.clone()), T);
    s.signature_version = version;
    s.user_agent_product = "duo-proxy-shim";
    DuoClient::new(s).unwrap()
}

fn push_request() -> PushRequest {
    PushRequest {
        subject: alice(),
        device: "DPFZRS9FB0D46QFTM891".into(),
        kind: "Target access".into(),
        display_username: Some("Alice A.".into()),
        pushinfo: vec![
            ("hop".into(), "target".into()),
            ("target".into(), "web 01".into()),
            ("address".into(), "10.0.0.5:22".into()),
            ("note".into(), "a&b=c%d".into()),
        ],
    }
}

#[tokio::test]
async fn every_signature_version_verifies_on_get_and_post() {
    for version in [
        SignatureVersion::V2Sha1,
        SignatureVersion::V2Sha512,
        SignatureVersion::V5,
    ] {
        let pki = pki(&["127.0.0.1"]);
        let server = Server::start(pki.server.clone(), strict(version, 0)).await;
        let client = client_with(&server, &pki, version);
        client
            .check()
            .await
            .unwrap_or_else(|e| panic!("{version}: check: {e}"));
        client
            .preauth(&alice())
            .await
            .unwrap_or_else(|e| panic!("{version}: preauth: {e}"));
        let txid = client
            .push(&push_request())
            .await
            .unwrap_or_else(|e| panic!("{version}: push: {e}"));
        let status = client
            .auth_status(&txid, tokio::time::Instant::now() + Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(status.result, AuthResult::Allow);
        let requests = server.requests();
        for req in &requests {
            assert_eq!(
                req.header("user-agent"),
                Some(
                    format!(
                        "duo-proxy-shim/{} (duo_push; rust)",
                        env!("CARGO_PKG_VERSION")
                    )
                    .as_str()
                )
            );
            assert_eq!(req.header("host"), Some(server.host().as_str()));
        }
        let ping = &requests[0];
        assert_eq!(ping.path, "/auth/v2/ping");
        assert_eq!(ping.header("authorization"), None, "ping is unsigned");
        let post = requests
            .iter()
            .find(|r| r.path == "/auth/v2/preauth")
            .unwrap();
        let content_type = post.header("content-type").unwrap();
        match version {
            SignatureVersion::V5 => assert_eq!(content_type, "application/json"),
            _ => assert_eq!(content_type, "application/x-www-form-urlencoded"),
        }
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_verifier() {
    // Guards the verifier itself: if it accepted anything, the test above would prove nothing.
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), strict(SignatureVersion::V5, 0)).await;
    let mut s = settings(&server.host(), Some(pki.ca_file.clone()), T);
    s.skey = duo_push_common::secret::Secret::new("not-the-secret".into());
    let client = DuoClient::new(s).unwrap();
    let err = client.check().await.unwrap_err();
    assert!(
        matches!(&err, duo_push_common::api::DuoError::Unauthorized { code, .. } if code == "40103"),
        "{err:?}"
    );
}

#[tokio::test]
async fn signing_date_is_corrected_by_the_clock_offset_from_ping() {
    let skew = 600;
    for version in [SignatureVersion::V2Sha512, SignatureVersion::V5] {
        let pki = pki(&["127.0.0.1"]);
        let server = Server::start(pki.server.clone(), strict(version, skew)).await;
        let client = client_with(&server, &pki, version);
        assert_eq!(client.clock_offset(), None);
        client.preauth(&alice()).await.unwrap();
        let offset = client.clock_offset().unwrap();
        assert!((offset - skew).abs() <= 2, "offset {offset}");
        client.check().await.unwrap();
        // The offset is measured once per client: one ping for all calls.
        assert_eq!(server.count("/auth/v2/ping"), 1);
    }
}

#[test]
fn without_correction_the_skewed_server_would_refuse() {
    // Proves the strict server's date check works: a correctly signed request dated by our
    // own clock is 10 minutes behind the server's.
    let signed = signing::sign_request(
        SignatureVersion::V5,
        IKEY,
        &duo_push_common::secret::Secret::new(SKEY.into()),
        &signing::rfc2822_date(time::OffsetDateTime::now_utc()),
        "GET",
        "127.0.0.1",
        "/auth/v2/check",
        &[],
    );
    let req = Request {
        conn: 0,
        method: "GET".into(),
        path: "/auth/v2/check".into(),
        query: String::new(),
        headers: vec![
            ("x-duo-date".into(), signed.date.clone()),
            ("authorization".into(), signed.authorization.clone()),
            ("host".into(), "127.0.0.1:1".into()),
        ],
        body: vec![],
    };
    assert_eq!(verify_signature(&req, SignatureVersion::V5), Ok(()));
    match strict(SignatureVersion::V5, 600)(&req) {
        Action::Reply { status, body, .. } => {
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("40105"), "{body}");
        }
        _ => panic!("expected a reply"),
    }
    match strict(SignatureVersion::V5, 0)(&req) {
        Action::Reply { status, .. } => assert_eq!(status, 200),
        _ => panic!("expected a reply"),
    }
}

#[tokio::test]
async fn push_sends_every_field_and_double_encodes_pushinfo() {
    for version in [SignatureVersion::V2Sha512, SignatureVersion::V5] {
        let pki = pki(&["127.0.0.1"]);
        let server = Server::start(pki.server.clone(), strict(version, 0)).await;
        let client = client_with(&server, &pki, version);
        let txid = client.push(&push_request()).await.unwrap();
        assert_eq!(txid, Txid("tx-signed".into()));
        let auth = server
            .requests()
            .into_iter()
            .find(|r| r.path == "/auth/v2/auth")
            .unwrap();
        let mut params = auth.params();
        params.sort();
        let pushinfo = "hop=target&target=web%2001&address=10.0.0.5%3A22&note=a%26b%3Dc%25d";
        let mut expected: Vec<(String, String)> = [
            ("async", "1"),
            ("device", "DPFZRS9FB0D46QFTM891"),
            ("display_username", "Alice A."),
            ("factor", "push"),
            ("hostname", "proxy.example"),
            ("ipaddr", "192.0.2.7"),
            ("pushinfo", pushinfo),
            ("type", "Target access"),
            ("username", "alice"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        expected.sort();
        assert_eq!(params, expected, "{version}");
        // Decoding pushinfo once more gives back the pairs.
        let pairs = parse_form(&auth.param("pushinfo").unwrap());
        assert_eq!(pairs[1], ("target".into(), "web 01".into()));
        assert_eq!(pairs[3], ("note".into(), "a&b=c%d".into()));
        let wire = String::from_utf8(auth.body.clone()).unwrap();
        match version {
            // Form body: the second encoding is visible on the wire (%20 -> %2520).
            SignatureVersion::V2Sha512 => {
                assert!(
                    wire.contains("pushinfo=hop%3Dtarget%26target%3Dweb%252001"),
                    "{wire}"
                )
            }
            // JSON body: the value is the once-encoded string.
            _ => assert!(
                wire.contains(&format!("\"pushinfo\":\"{pushinfo}\"")),
                "{wire}"
            ),
        }
    }
}

#[tokio::test]
async fn passcode_is_sent_as_a_passcode_factor() {
    let pki = pki(&["127.0.0.1"]);
    let server = Server::start(pki.server.clone(), strict(SignatureVersion::V5, 0)).await;
    let client = client_with(&server, &pki, SignatureVersion::V5);
    let status = client
        .passcode(
            &alice(),
            &duo_push_common::secret::Secret::new("123456".into()),
        )
        .await
        .unwrap();
    assert_eq!(status.result, AuthResult::Allow);
    let auth = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/auth/v2/auth")
        .unwrap();
    assert_eq!(auth.param("factor").as_deref(), Some("passcode"));
    assert_eq!(auth.param("passcode").as_deref(), Some("123456"));
    assert_eq!(auth.param("async"), None);
}
