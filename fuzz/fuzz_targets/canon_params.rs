//! `signing::percent_encode` and `signing::canon_params`: never panic; the encoding uses only
//! unreserved characters and `%XX` (uppercase hex); decoding gives back the input bytes; the
//! canonical line has one `k=v` per parameter, sorted, and decodes back to the same multiset.
//!
//! Input: parameters separated by 0x00, each `key 0x01 value` (a missing 0x01 means an empty
//! value). Invalid UTF-8 is replaced (the encoder takes `&str`).
#![no_main]

use duo_push_common::signing::{canon_params, percent_encode};
use libfuzzer_sys::fuzz_target;

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Strict decoder: only unreserved bytes and `%XX` with uppercase hex; anything else is a bug
/// in the encoder.
fn decode(encoded: &str) -> Vec<u8> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => panic!("bad or truncated escape at {i} in {encoded:?}"),
            }
            i += 3;
        } else {
            assert!(
                is_unreserved(b),
                "reserved byte {b:#04x} left unencoded in {encoded:?}"
            );
            out.push(b);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params: Vec<(String, String)> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\0')
            .map(|p| match p.split_once('\x01') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect()
    };

    // Single values: round trip.
    for (k, v) in &params {
        for s in [k, v] {
            let enc = percent_encode(s);
            assert_eq!(decode(&enc), s.as_bytes(), "round trip of {s:?}");
        }
    }

    let line = canon_params(&params);
    if params.is_empty() {
        assert!(
            line.is_empty(),
            "no parameters must give an empty line, got {line:?}"
        );
        return;
    }
    let parts: Vec<(&str, &str)> = line
        .split('&')
        .map(|part| {
            let (k, v) = part
                .split_once('=')
                .unwrap_or_else(|| panic!("part {part:?} has no '='"));
            assert!(!v.contains('='), "part {part:?} has two '='");
            (k, v)
        })
        .collect();
    assert_eq!(
        parts.len(),
        params.len(),
        "one k=v per parameter in {line:?}"
    );
    assert!(
        parts.windows(2).all(|w| w[0] <= w[1]),
        "canonical line not sorted: {line:?}"
    );
    let mut decoded: Vec<(Vec<u8>, Vec<u8>)> =
        parts.iter().map(|(k, v)| (decode(k), decode(v))).collect();
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = params
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    decoded.sort();
    expected.sort();
    assert_eq!(
        decoded, expected,
        "canonical line does not decode to the parameters"
    );
});
