//! Every entry of the official Duo signing vectors (`shared/duo/vectors.json`, copied to
//! `tests/data/vectors.json`), both `vectors` and `derived_vectors`, must pass.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers: a malformed vector file must fail the test loudly"
)]

use duo_push_common::secret::Secret;
use duo_push_common::signing::{
    authorization, canon_params, canonicalize, hmac_hex, sha512_hex, x_duo_headers_hash, Canon,
    CanonicalInput, HmacAlg,
};
use serde_json::Value;

fn load() -> Value {
    let text = include_str!("data/vectors.json");
    serde_json::from_str(text).expect("vectors.json parses")
}

/// Params as (key, value) pairs: a list of strings per key, or a bare string.
fn params(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(obj) = v.as_object() else { return out };
    for (k, vals) in obj {
        match vals {
            Value::Array(items) => {
                for item in items {
                    out.push((k.clone(), scalar(item)));
                }
            }
            other => out.push((k.clone(), scalar(other))),
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("unexpected param value {other}"),
    }
}

fn headers(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn canon_of(version: u64) -> Canon {
    match version {
        1 => Canon::V1,
        2 => Canon::V2,
        4 => Canon::V4,
        5 => Canon::V5,
        v => panic!("unknown sig_version {v}"),
    }
}

/// The canonical string for a vector whose parameters are placed the way that vector says.
fn canonical_for(v: &Value) -> String {
    let input = &v["input"];
    let version = v["sig_version"].as_u64().expect("sig_version");
    let date = input["date"].as_str().unwrap_or("");
    let method = input["method"].as_str().expect("method");
    let host = input["host"].as_str().expect("host");
    let path = input["path"].as_str().expect("path");
    let body = input["body"].as_str().unwrap_or("");
    let location = input["params_location"].as_str().unwrap_or("query");
    // A JSON body carries the parameters itself: the parameter line is then empty.
    let param_line = if location == "json_body" {
        String::new()
    } else {
        canon_params(&params(&input["params"]))
    };
    // duo_hmac_python vectors name the headers that were signed; others give x_duo_headers.
    let hdrs = if input.get("x_duo_headers_signed").is_some() {
        headers(input.get("x_duo_headers_signed"))
    } else {
        headers(input.get("x_duo_headers"))
    };
    let hash = x_duo_headers_hash(&hdrs);
    let body_bytes = if version == 5 && location == "form_body" {
        ""
    } else {
        body
    };
    canonicalize(
        canon_of(version),
        &CanonicalInput {
            date,
            method,
            host,
            path,
            params: &param_line,
            body: body_bytes.as_bytes(),
            x_duo_hash: &hash,
        },
    )
}

#[test]
fn every_official_and_derived_vector_passes() {
    let all = load();
    let mut checked = 0;
    for group in ["vectors", "derived_vectors"] {
        for v in all[group].as_array().expect("array") {
            let id = v["id"].as_str().expect("id");
            match v["kind"].as_str().expect("kind") {
                "canon_params" => {
                    let input = v
                        .get("input_params_normalized")
                        .or_else(|| v.get("input_params_raw"))
                        .expect("params");
                    assert_eq!(
                        canon_params(&params(input)),
                        v["expected_canon_params"].as_str().expect("expected"),
                        "{id}"
                    );
                }
                "canonical_string" => {
                    assert_eq!(
                        canonical_for(v),
                        v["expected_canonical"].as_str().expect("expected"),
                        "{id}"
                    );
                    if let Some(h) = v.get("expected_x_duo_headers_sha512_hex") {
                        let hdrs = headers(v["input"].get("x_duo_headers"));
                        assert_eq!(x_duo_headers_hash(&hdrs), h.as_str().unwrap(), "{id}");
                    }
                    if let Some(h) = v.get("expected_body_sha512_hex") {
                        let body = v["input"]["body"].as_str().unwrap_or("");
                        assert_eq!(sha512_hex(body.as_bytes()), h.as_str().unwrap(), "{id}");
                    }
                }
                "signature" => {
                    let canonical = canonical_for(v);
                    if let Some(expected) = v.get("canonical_string") {
                        assert_eq!(canonical, expected.as_str().unwrap(), "{id} canonical");
                    }
                    let alg = match v["hmac"].as_str().expect("hmac") {
                        "HMAC-SHA1" => HmacAlg::Sha1,
                        "HMAC-SHA512" => HmacAlg::Sha512,
                        other => panic!("{id}: unknown hmac {other}"),
                    };
                    let skey = Secret::new(v["input"]["skey"].as_str().unwrap().to_owned());
                    let sig = hmac_hex(alg, skey.expose(), &canonical);
                    assert_eq!(
                        sig,
                        v["expected_hex_signature"].as_str().unwrap(),
                        "{id} sig"
                    );
                    let ikey = v["input"]["ikey"].as_str().unwrap();
                    assert_eq!(
                        authorization(ikey, &sig),
                        v["expected_authorization"].as_str().unwrap(),
                        "{id} authorization"
                    );
                }
                "body_hash" => {
                    let body = v["input"]["body"].as_str().expect("body");
                    assert_eq!(
                        sha512_hex(body.as_bytes()),
                        v["expected_sha512_hex"].as_str().unwrap(),
                        "{id}"
                    );
                }
                "hash_constants" => {
                    assert_eq!(sha512_hex(b""), v["EMPTY_STRING_HASH"].as_str().unwrap());
                    assert_eq!(sha512_hex(b"{}"), v["EMPTY_JSON_HASH"].as_str().unwrap());
                }
                other => panic!("{id}: vector kind {other} is not handled"),
            }
            checked += 1;
        }
    }
    // 35 official vectors and 11 derived ones as shipped in shared/duo/vectors.json.
    assert_eq!(checked, 46, "every vector in the file was checked");
}
