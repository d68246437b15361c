//! Duo request signing: canonical strings for signature versions 1, 2, 4 and 5, HMAC-SHA1 and
//! HMAC-SHA512, and the `Authorization` header.
//!
//! Shared by the client (which signs) and mock-duo (which verifies), so both sides build the
//! canonical string the same way; the vectors in `shared/duo/vectors.json` and the official Python
//! client, run against mock-duo, keep this honest.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha512};
use time::OffsetDateTime;

use crate::secret::Secret;

/// The signature scheme used for requests to Duo (`signature_version` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// v2 canonical string, HMAC-SHA1 (legacy; `2-sha1`).
    V2Sha1,
    /// v2 canonical string, HMAC-SHA512 (`2`), as duo_unix 2.x signs.
    V2Sha512,
    /// v5: v2 lines plus body and x-duo header hashes, HMAC-SHA512, JSON bodies (`5`, default).
    #[default]
    V5,
}

impl FromStr for SignatureVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "5" => Ok(Self::V5),
            "2" => Ok(Self::V2Sha512),
            "2-sha1" => Ok(Self::V2Sha1),
            other => Err(format!(
                "unsupported signature_version {other:?}: use 5 (default), 2 (HMAC-SHA512) or 2-sha1"
            )),
        }
    }
}

impl fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V2Sha1 => "2-sha1",
            Self::V2Sha512 => "2",
            Self::V5 => "5",
        })
    }
}

/// Which canonical string layout to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canon {
    /// `METHOD\nhost\npath\nparams` (REST v1 of duo_unix 1.x; no date). The host is
    /// lowercased as the official clients do; a verifier of a peer that keeps the host's case
    /// should compare against both.
    V1,
    /// `date\nMETHOD\nhost\npath\nparams`.
    V2,
    /// v2 then `sha512hex(body)`.
    V4,
    /// v4 then `sha512hex(x-duo headers)`.
    V5,
}

/// The HMAC digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmacAlg {
    /// HMAC-SHA1 (40 hex digits).
    Sha1,
    /// HMAC-SHA512 (128 hex digits).
    Sha512,
}

impl SignatureVersion {
    /// The canonical layout and digest this version uses.
    pub fn scheme(self) -> (Canon, HmacAlg) {
        match self {
            Self::V2Sha1 => (Canon::V2, HmacAlg::Sha1),
            Self::V2Sha512 => (Canon::V2, HmacAlg::Sha512),
            Self::V5 => (Canon::V5, HmacAlg::Sha512),
        }
    }
}

/// Percent-encodes UTF-8 bytes, leaving only `A-Z a-z 0-9 - _ . ~` as they are (uppercase hex).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from(if nibble < 10 {
        b'0' + nibble
    } else {
        b'A' + nibble - 10
    })
}

/// Canonical parameter line: encode every key and value, sort by key then value, join `k=v`
/// with `&`. Repeated keys are allowed.
pub fn canon_params<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k.as_ref()), percent_encode(v.as_ref())))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lowercase hex SHA-512 of `data`.
pub fn sha512_hex(data: &[u8]) -> String {
    hex::encode(Sha512::digest(data))
}

/// Hash of the `x-duo-*` headers for v5: names lowercased and sorted, `name\0value` pairs joined
/// by `\0`. Headers not starting with `x-duo` are ignored.
pub fn x_duo_headers_hash<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> String {
    let mut duo: Vec<(String, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_ref().to_ascii_lowercase(), v.as_ref()))
        .filter(|(n, _)| n.starts_with("x-duo"))
        .collect();
    duo.sort();
    let joined = duo
        .iter()
        .map(|(n, v)| format!("{n}\0{v}"))
        .collect::<Vec<_>>()
        .join("\0");
    sha512_hex(joined.as_bytes())
}

/// Everything a canonical string is made of.
#[derive(Clone, Copy, Debug)]
pub struct CanonicalInput<'a> {
    /// The date line (absent for v1).
    pub date: &'a str,
    /// HTTP method, any case (uppercased here).
    pub method: &'a str,
    /// API host, any case, no port (lowercased here for v2+).
    pub host: &'a str,
    /// Request path.
    pub path: &'a str,
    /// The already-canonical parameter line (see [`canon_params`]).
    pub params: &'a str,
    /// Request body bytes (v4, v5).
    pub body: &'a [u8],
    /// The `x-duo-*` header hash line (v5), from [`x_duo_headers_hash`].
    pub x_duo_hash: &'a str,
}

/// Builds the canonical string for `canon`.
pub fn canonicalize(canon: Canon, input: &CanonicalInput<'_>) -> String {
    let method = input.method.to_ascii_uppercase();
    match canon {
        Canon::V1 => format!(
            "{method}\n{}\n{}\n{}",
            input.host.to_ascii_lowercase(),
            input.path,
            input.params
        ),
        Canon::V2 => format!(
            "{}\n{method}\n{}\n{}\n{}",
            input.date,
            input.host.to_ascii_lowercase(),
            input.path,
            input.params
        ),
        Canon::V4 => format!(
            "{}\n{method}\n{}\n{}\n{}\n{}",
            input.date,
            input.host.to_ascii_lowercase(),
            input.path,
            input.params,
            sha512_hex(input.body)
        ),
        Canon::V5 => format!(
            "{}\n{method}\n{}\n{}\n{}\n{}\n{}",
            input.date,
            input.host.to_ascii_lowercase(),
            input.path,
            input.params,
            sha512_hex(input.body),
            input.x_duo_hash
        ),
    }
}

/// Lowercase hex HMAC of `canonical` under `key`.
pub fn hmac_hex(alg: HmacAlg, key: &[u8], canonical: &str) -> String {
    match alg {
        HmacAlg::Sha1 => mac_hex::<Hmac<sha1::Sha1>>(key, canonical),
        HmacAlg::Sha512 => mac_hex::<Hmac<Sha512>>(key, canonical),
    }
}

/// HMAC accepts keys of any length, so the error arm cannot happen; it still never panics, and
/// an empty signature matches nothing (see [`signature_matches`]).
fn mac_hex<M: Mac + hmac::digest::KeyInit>(key: &[u8], canonical: &str) -> String {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(canonical.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The `Authorization` header value: `Basic base64(ikey ":" hex_signature)`.
pub fn authorization(ikey: &str, hex_signature: &str) -> String {
    let raw = format!("{ikey}:{hex_signature}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Signs a canonical string with the secret key and returns the `Authorization` header value.
pub fn sign(alg: HmacAlg, ikey: &str, skey: &Secret, canonical: &str) -> String {
    authorization(ikey, &hmac_hex(alg, skey.expose(), canonical))
}

/// Checks a received hex signature against the expected one in constant time.
pub fn signature_matches(alg: HmacAlg, key: &[u8], canonical: &str, received_hex: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = hmac_hex(alg, key, canonical);
    !expected.is_empty()
        && expected
            .as_bytes()
            .ct_eq(received_hex.to_ascii_lowercase().as_bytes())
            .into()
}

/// RFC 2822 date in UTC as the reference clients sign it: `Tue, 21 Aug 2012 17:29:18 +0000`.
pub fn rfc2822_date(at: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = at.to_offset(time::UtcOffset::UTC);
    let day = DAYS
        .get(usize::from(at.weekday().number_days_from_monday()))
        .copied()
        .unwrap_or("Mon");
    let month = MONTHS
        .get(usize::from(u8::from(at.month())).saturating_sub(1))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} +0000",
        at.day(),
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Parses the date line of a request (RFC 2822, `+0000`/`-0000`/`GMT` accepted).
pub fn parse_rfc2822_date(s: &str) -> Option<OffsetDateTime> {
    let normalized = s
        .trim()
        .replace(" -0000", " +0000")
        .replace(" GMT", " +0000");
    OffsetDateTime::parse(&normalized, &time::format_description::well_known::Rfc2822).ok()
}

/// A request ready to send: where the parameters go and the headers that authenticate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// `Authorization` header value.
    pub authorization: String,
    /// Name of the date header (`Date` for v2, `X-Duo-Date` for v5).
    pub date_header: &'static str,
    /// The date header's value, byte-for-byte the canonical date line.
    pub date: String,
    /// Query string (GET), already canonical and encoded, without `?`.
    pub query: String,
    /// Body (POST): bytes and content type.
    pub body: Option<(Vec<u8>, &'static str)>,
}

/// Signs a request for the Duo Auth API with `version`.
///
/// GET: parameters go in the query. POST: v2 sends them form-encoded in the body, v5 as a JSON
/// object (keys sorted) with an empty parameter line, as Duo's clients do.
#[allow(
    clippy::too_many_arguments,
    reason = "each argument is one line of the canonical string; a struct would only rename them"
)]
pub fn sign_request(
    version: SignatureVersion,
    ikey: &str,
    skey: &Secret,
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &[(String, String)],
) -> SignedRequest {
    let (canon, alg) = version.scheme();
    let is_get = method.eq_ignore_ascii_case("GET");
    let canonical_params = canon_params(params);
    let (param_line, body) = match (version, is_get) {
        (_, true) => (canonical_params.clone(), None),
        (SignatureVersion::V5, false) => {
            let object: std::collections::BTreeMap<&str, &str> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let json = serde_json::to_vec(&object).unwrap_or_else(|_| b"{}".to_vec());
            (String::new(), Some((json, "application/json")))
        }
        (_, false) => (
            canonical_params.clone(),
            Some((
                canonical_params.clone().into_bytes(),
                "application/x-www-form-urlencoded",
            )),
        ),
    };
    let date_header = match version {
        SignatureVersion::V5 => "X-Duo-Date",
        _ => "Date",
    };
    let x_duo_hash = x_duo_headers_hash(&[("x-duo-date", date)]);
    let body_bytes: &[u8] = body.as_ref().map(|(b, _)| b.as_slice()).unwrap_or(b"");
    let canonical = canonicalize(
        canon,
        &CanonicalInput {
            date,
            method,
            host,
            path,
            params: &param_line,
            body: body_bytes,
            x_duo_hash: &x_duo_hash,
        },
    );
    SignedRequest {
        authorization: sign(alg, ikey, skey, &canonical),
        date_header,
        date: date.to_owned(),
        query: if is_get {
            canonical_params
        } else {
            String::new()
        },
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("a b+c/~_-."), "a%20b%2Bc%2F~_-.");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn rfc2822_date_matches_reference_format() {
        let at = time::macros::datetime!(2012-08-21 17:29:18 UTC);
        assert_eq!(rfc2822_date(at), "Tue, 21 Aug 2012 17:29:18 +0000");
        assert_eq!(
            parse_rfc2822_date("Tue, 21 Aug 2012 17:29:18 -0000"),
            Some(at)
        );
    }

    #[test]
    fn signature_version_parses_config_values() {
        assert_eq!("5".parse(), Ok(SignatureVersion::V5));
        assert_eq!("2".parse(), Ok(SignatureVersion::V2Sha512));
        assert_eq!("2-sha1".parse(), Ok(SignatureVersion::V2Sha1));
        assert!("4".parse::<SignatureVersion>().is_err());
    }

    #[test]
    fn v5_post_signs_a_sorted_json_body_with_empty_param_line() {
        let skey = Secret::new("Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep".into());
        let params = vec![
            ("username".to_owned(), "narroway".to_owned()),
            ("factor".to_owned(), "push".to_owned()),
        ];
        let r = sign_request(
            SignatureVersion::V5,
            "DIWJ8X6AEYOR5OMC6TQ1",
            &skey,
            "Tue, 21 Aug 2012 17:29:18 -0000",
            "POST",
            "api-x.duosecurity.com",
            "/auth/v2/auth",
            &params,
        );
        let (body, ct) = r.body.expect("body");
        assert_eq!(ct, "application/json");
        assert_eq!(body, br#"{"factor":"push","username":"narroway"}"#);
        assert_eq!(r.date_header, "X-Duo-Date");
        assert!(r.query.is_empty());
    }
}
