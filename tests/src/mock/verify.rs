//! Checks a request's credentials the way Duo does: integration key, date window, signature.
//!
//! The canonical strings come from `duo_push_common::signing`, the same code the client signs
//! with; what this module adds is reading them back out of a received request.

use base64::Engine as _;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HOST};
use hyper::HeaderMap;
use time::OffsetDateTime;

use duo_push_common::secret::Secret;
use duo_push_common::signing::{
    canon_params, canonicalize, parse_rfc2822_date, signature_matches, x_duo_headers_hash, Canon,
    CanonicalInput, HmacAlg,
};

use crate::mock::reply::form_decode;

/// How far the request date may be from the mock's clock, as at Duo.
pub const DATE_WINDOW_SECS: i64 = 300;

/// The signature scheme a request was found to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigVersion {
    /// No credentials were checked (ping, control API) or none were sent.
    None,
    /// REST v1: HMAC-SHA1, no date.
    V1,
    /// v2 canonical string, HMAC-SHA1.
    V2Sha1,
    /// v2 canonical string, HMAC-SHA512.
    V2Sha512,
    /// v5 canonical string, HMAC-SHA512.
    V5,
    /// A 128-hex signature that matched neither v2-SHA512 nor v5.
    Sha512Unmatched,
    /// A signature of another length or not hex.
    Malformed,
}

impl SigVersion {
    /// The label used in the request log.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::V1 => "v1",
            Self::V2Sha1 => "v2-sha1",
            Self::V2Sha512 => "v2-sha512",
            Self::V5 => "v5",
            Self::Sha512Unmatched => "v2-sha512/v5?",
            Self::Malformed => "malformed",
        }
    }
}

/// A received request, as far as verification needs it.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Raw query string (without `?`), empty if none.
    pub query: &'a str,
    /// All request headers.
    pub headers: &'a HeaderMap,
    /// The body bytes.
    pub body: &'a [u8],
}

/// A request whose credentials checked out, with its decoded parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The scheme that matched.
    pub version: SigVersion,
    /// The parameters (from the query, the form body or the JSON body).
    pub params: Vec<(String, String)>,
}

/// Why a request was refused: an HTTP status and Duo's error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status (401 for credentials, 400 for unreadable parameters).
    pub status: u16,
    /// Duo-style error code (40101 missing credentials, 40102 unknown ikey, 40103 bad
    /// signature, 40105 bad date, 40002 bad parameters).
    pub code: u32,
    /// The message.
    pub message: &'static str,
    /// What exactly was wrong (for the operator reading test output).
    pub detail: String,
    /// The scheme detected, as far as it got.
    pub version: SigVersion,
}

fn reject(
    status: u16,
    code: u32,
    message: &'static str,
    detail: String,
    v: SigVersion,
) -> Rejection {
    Rejection {
        status,
        code,
        message,
        detail,
        version: v,
    }
}

fn unauthorized(code: u32, detail: String, v: SigVersion) -> Rejection {
    let message = match code {
        40101 => "Missing request credentials",
        40102 => "Invalid integration key in request credentials",
        40105 => "Invalid or expired date in request credentials",
        _ => "Invalid signature in request credentials",
    };
    reject(401, code, message, detail, v)
}

/// The keys and clock a verifier checks against.
#[derive(Debug)]
pub struct Verifier {
    ikey: String,
    skey: Secret,
    clock_offset_secs: i64,
}

/// Where the parameters of a request came from.
enum ParamSource {
    /// Query string or form body: the parameter line is their canonical form.
    Form(Vec<(String, String)>),
    /// A JSON object body (v5): empty parameter line.
    Json(Vec<(String, String)>),
}

impl Verifier {
    /// A verifier for one integration.
    pub fn new(ikey: String, skey: Secret, clock_offset_secs: i64) -> Self {
        Self {
            ikey,
            skey,
            clock_offset_secs,
        }
    }

    /// The mock's clock: real time plus the configured offset.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.clock_offset_secs)
    }

    /// Verifies an Auth API v2 request (v2-SHA1, v2-SHA512 or v5, with a date).
    pub fn verify_v2(&self, req: &RequestParts<'_>) -> Result<Verified, Rejection> {
        let sig = self.credentials(req.headers)?;
        let guess = match sig.len() {
            40 => SigVersion::V2Sha1,
            128 => SigVersion::Sha512Unmatched,
            _ => SigVersion::Malformed,
        };
        let date = date_header(req.headers)
            .ok_or_else(|| unauthorized(40105, "no Date or X-Duo-Date header".into(), guess))?;
        let parsed = parse_rfc2822_date(&date)
            .ok_or_else(|| unauthorized(40105, format!("date {date:?} is not RFC 2822"), guess))?;
        let skew = (parsed - self.now()).whole_seconds();
        if skew.abs() > DATE_WINDOW_SECS {
            return Err(unauthorized(
                40105,
                format!(
                    "date {date:?} is {skew} s from the server clock (limit {DATE_WINDOW_SECS} s)"
                ),
                guess,
            ));
        }
        let source = params_of(req)?;
        let x_duo: Vec<(String, String)> = req
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-duo"))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let x_duo_hash = x_duo_headers_hash(&x_duo);
        let hosts = host_candidates(req.headers);
        let (attempts, detected): (&[(Canon, SigVersion)], SigVersion) = match sig.len() {
            40 => (&[(Canon::V2, SigVersion::V2Sha1)], SigVersion::V2Sha1),
            128 => (
                &[
                    (Canon::V2, SigVersion::V2Sha512),
                    (Canon::V5, SigVersion::V5),
                ],
                SigVersion::Sha512Unmatched,
            ),
            n => {
                return Err(unauthorized(
                    40103,
                    format!("signature has {n} characters; expected 40 (SHA-1) or 128 (SHA-512)"),
                    SigVersion::Malformed,
                ))
            }
        };
        let alg = if sig.len() == 40 {
            HmacAlg::Sha1
        } else {
            HmacAlg::Sha512
        };
        for &(canon, version) in attempts {
            let (line, body): (String, &[u8]) = match (&source, canon) {
                (ParamSource::Form(p), Canon::V5) => (canon_params(p), req.body),
                (ParamSource::Form(p), _) => (canon_params(p), b""),
                (ParamSource::Json(_), Canon::V5) => (String::new(), req.body),
                // v2 has no way to sign a JSON body.
                (ParamSource::Json(_), _) => continue,
            };
            for host in &hosts {
                let canonical = canonicalize(
                    canon,
                    &CanonicalInput {
                        date: &date,
                        method: req.method,
                        host,
                        path: req.path,
                        params: &line,
                        body,
                        x_duo_hash: &x_duo_hash,
                    },
                );
                if signature_matches(alg, self.skey.expose(), &canonical, &sig) {
                    let params = match source {
                        ParamSource::Form(p) | ParamSource::Json(p) => p,
                    };
                    return Ok(Verified { version, params });
                }
            }
        }
        Err(unauthorized(
            40103,
            format!(
                "no canonical string for hosts {hosts:?} matched the {} signature",
                if sig.len() == 40 {
                    "HMAC-SHA1"
                } else {
                    "HMAC-SHA512 (v2 or v5)"
                }
            ),
            detected,
        ))
    }

    /// Verifies a REST v1 request (HMAC-SHA1 over `METHOD\nhost\npath\nparams`, no date).
    pub fn verify_v1(&self, req: &RequestParts<'_>) -> Result<Verified, Rejection> {
        let sig = self.credentials(req.headers)?;
        if sig.len() != 40 {
            return Err(unauthorized(
                40103,
                format!(
                    "REST v1 signature has {} characters; expected 40 (HMAC-SHA1)",
                    sig.len()
                ),
                SigVersion::Malformed,
            ));
        }
        let params = match params_of(req)? {
            ParamSource::Form(p) => p,
            ParamSource::Json(_) => {
                return Err(reject(
                    400,
                    40002,
                    "Invalid request parameters",
                    "REST v1 takes form bodies".into(),
                    SigVersion::V1,
                ))
            }
        };
        let line = canon_params(&params);
        for host in host_candidates(req.headers) {
            let canonical = canonicalize(
                Canon::V1,
                &CanonicalInput {
                    date: "",
                    method: req.method,
                    host: &host,
                    path: req.path,
                    params: &line,
                    body: b"",
                    x_duo_hash: "",
                },
            );
            if signature_matches(HmacAlg::Sha1, self.skey.expose(), &canonical, &sig) {
                return Ok(Verified {
                    version: SigVersion::V1,
                    params,
                });
            }
        }
        Err(unauthorized(
            40103,
            "REST v1 HMAC-SHA1 signature does not match".into(),
            SigVersion::V1,
        ))
    }

    /// Reads `Authorization: Basic base64(ikey:hexsig)`, checks the ikey, returns the signature.
    fn credentials(&self, headers: &HeaderMap) -> Result<String, Rejection> {
        let missing = |detail: &str| unauthorized(40101, detail.to_owned(), SigVersion::None);
        let value = headers
            .get(AUTHORIZATION)
            .ok_or_else(|| missing("no Authorization header"))?
            .to_str()
            .map_err(|_| missing("Authorization header is not ASCII"))?;
        let (scheme, encoded) = value
            .split_once(' ')
            .ok_or_else(|| missing("Authorization header is not Basic"))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(missing("Authorization header is not Basic"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| missing("Authorization value is not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| missing("credentials are not UTF-8"))?;
        let (ikey, sig) = decoded
            .split_once(':')
            .ok_or_else(|| missing("credentials lack ikey:signature"))?;
        if ikey != self.ikey {
            return Err(unauthorized(
                40102,
                format!("unknown integration key {ikey:?}"),
                SigVersion::None,
            ));
        }
        if !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unauthorized(
                40103,
                "signature is not hex".into(),
                SigVersion::Malformed,
            ));
        }
        Ok(sig.to_owned())
    }
}

/// The date a request was signed with: `X-Duo-Date` if present, else `Date`.
fn date_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-duo-date")
        .or_else(|| headers.get(DATE))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Hosts a client may have signed: the Host header as sent and without its port (the official
/// Python client signs `host:port` when the port is part of its host setting; duo_unix and this
/// project's client sign the bare host).
fn host_candidates(headers: &HeaderMap) -> Vec<String> {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return vec![String::new()];
    };
    let mut hosts = vec![host.to_owned()];
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map(|(inner, _)| format!("[{inner}]"))
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h.to_owned())
    };
    if let Some(bare) = bare {
        if bare != host {
            hosts.push(bare);
        }
    }
    hosts
}

fn bad_params(detail: String) -> Rejection {
    reject(
        400,
        40002,
        "Invalid request parameters",
        detail,
        SigVersion::None,
    )
}

/// Decodes a request's parameters: the query for GET, the body for other methods (form or JSON).
fn params_of(req: &RequestParts<'_>) -> Result<ParamSource, Rejection> {
    if req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("DELETE") {
        return form_decode(req.query)
            .map(ParamSource::Form)
            .map_err(|e| bad_params(e.0));
    }
    let content_type = req
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let value: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| bad_params(format!("JSON body does not parse: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad_params("JSON body is not an object".into()))?;
        let mut params = Vec::with_capacity(object.len());
        for (k, v) in object {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(bad_params(format!("JSON parameter {k:?} is not a scalar"))),
            };
            params.push((k.clone(), text));
        }
        return Ok(ParamSource::Json(params));
    }
    let body = std::str::from_utf8(req.body).map_err(|_| bad_params("body is not UTF-8".into()))?;
    form_decode(body)
        .map(ParamSource::Form)
        .map_err(|e| bad_params(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn host_candidates_include_the_bare_host() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8443"));
        assert_eq!(
            host_candidates(&h),
            vec!["127.0.0.1:8443".to_owned(), "127.0.0.1".to_owned()]
        );
        h.insert(HOST, HeaderValue::from_static("[::1]:8443"));
        assert_eq!(
            host_candidates(&h),
            vec!["[::1]:8443".to_owned(), "[::1]".to_owned()]
        );
        h.insert(HOST, HeaderValue::from_static("localhost"));
        assert_eq!(host_candidates(&h), vec!["localhost".to_owned()]);
    }
}
