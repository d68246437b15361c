//! Building replies (JSON and BSON envelopes) and decoding form-encoded text.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// The response type every handler returns.
pub type HttpResponse = Response<Full<Bytes>>;

/// Size of the body sent to `huge` users.
pub const HUGE_BODY_BYTES: usize = 2 * 1024 * 1024;

fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Adds `Retry-After: 1`.
pub fn with_retry_after(mut resp: HttpResponse) -> HttpResponse {
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A JSON body with any status.
pub fn json_value(status: u16, value: &Value) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    response(status, "application/json", body)
}

/// `{"stat":"OK","response":...}` with 200.
pub fn json_ok(response_value: Value) -> HttpResponse {
    json_value(200, &json!({"stat": "OK", "response": response_value}))
}

/// Duo's failure envelope; the HTTP status is `status`.
pub fn json_fail(status: u16, code: u32, message: &str, detail: Option<&str>) -> HttpResponse {
    let mut body = json!({"stat": "FAIL", "code": code, "message": message});
    if let (Some(detail), Some(obj)) = (detail, body.as_object_mut()) {
        obj.insert(
            "message_detail".to_owned(),
            Value::String(detail.to_owned()),
        );
    }
    json_value(status, &body)
}

/// A 200 whose body is not valid JSON.
pub fn bad_json() -> HttpResponse {
    response(
        200,
        "application/json",
        b"{\"stat\": \"OK\", \"response\": {\"result\": ".to_vec(),
    )
}

/// A 200 with a 2 MiB body (valid JSON, so only a size limit rejects it).
pub fn huge_json() -> HttpResponse {
    let head = br#"{"stat":"OK","response":{"result":"auth","padding":""#;
    let tail = br#""}}"#;
    let mut body = Vec::with_capacity(HUGE_BODY_BYTES);
    body.extend_from_slice(head);
    body.resize(HUGE_BODY_BYTES.saturating_sub(tail.len()), b'x');
    body.extend_from_slice(tail);
    response(200, "application/json", body)
}

/// A BSON document with any status.
pub fn bson_doc(status: u16, doc: &bson::Document) -> HttpResponse {
    let mut body = Vec::new();
    if doc.to_writer(&mut body).is_err() {
        return response(500, "text/plain", b"BSON encoding failed".to_vec());
    }
    response(status, "application/bson", body)
}

/// `{stat: "OK", response: ...}` in BSON with 200.
pub fn bson_ok(response_doc: bson::Document) -> HttpResponse {
    bson_doc(200, &bson::doc! {"stat": "OK", "response": response_doc})
}

/// The REST v1 failure envelope in BSON (`code` is an int32, as libduo requires).
pub fn bson_fail(status: u16, code: i32, message: &str) -> HttpResponse {
    bson_doc(
        status,
        &bson::doc! {"stat": "FAIL", "code": code, "message": message},
    )
}

/// A 200 whose body is not a BSON document.
pub fn bad_bson() -> HttpResponse {
    response(
        200,
        "application/bson",
        b"\x05\x00\x00\x00\x02garbage".to_vec(),
    )
}

/// A 200 BSON reply of 2 MiB.
pub fn huge_bson() -> HttpResponse {
    let padding = "x".repeat(HUGE_BODY_BYTES);
    bson_ok(bson::doc! {"result": "auth", "padding": padding})
}

/// Why form-encoded text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form component: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn form_unescape(s: &str) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(DecodeError(format!("bad percent escape in {s:?}"))),
                }
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError(format!("{s:?} is not UTF-8 once decoded")))
}

/// Decodes `k=v&k=v` (application/x-www-form-urlencoded) into pairs, keeping repeats and order.
pub fn form_decode(s: &str) -> Result<Vec<(String, String)>, DecodeError> {
    s.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((form_unescape(k)?, form_unescape(v)?))
        })
        .collect()
}

/// Decodes a `pushinfo` value (itself form-encoded) into an object for the push log; a value
/// that does not decode is kept whole under `"_raw"`.
pub fn pushinfo_map(pushinfo: &str) -> BTreeMap<String, String> {
    match form_decode(pushinfo) {
        Ok(pairs) => pairs.into_iter().collect(),
        Err(_) => BTreeMap::from([("_raw".to_owned(), pushinfo.to_owned())]),
    }
}

/// A fresh uuid-like transaction id (random, version-4 layout).
pub fn new_txid() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    let part = |a: usize, b: usize| h.get(a..b).unwrap_or("0");
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// The first value of `key` in decoded parameters.
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        let pairs = form_decode("a=b+c&pushinfo=Server%2BIP%3D1.2.3.4%26Command%3D&x").unwrap();
        assert_eq!(pairs[0], ("a".into(), "b c".into()));
        assert_eq!(pairs[1].1, "Server+IP=1.2.3.4&Command=");
        assert_eq!(pairs[2], ("x".into(), "".into()));
        let info = pushinfo_map(&pairs[1].1);
        assert_eq!(info.get("Server IP").map(String::as_str), Some("1.2.3.4"));
        assert!(form_decode("a=%zz").is_err());
    }

    #[test]
    fn txids_look_like_uuids() {
        let t = new_txid();
        assert_eq!(t.len(), 36);
        assert_eq!(t.matches('-').count(), 4);
        assert_ne!(t, new_txid());
    }

    #[test]
    fn huge_body_is_two_mebibytes() {
        let r = huge_json();
        let len = hyper::body::Body::size_hint(r.body()).exact();
        assert_eq!(len, Some(HUGE_BODY_BYTES as u64));
    }
}
