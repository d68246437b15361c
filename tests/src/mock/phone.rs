//! The phone simulator: a small web page that lists pending pushes live and approves or denies
//! them, for the demo (`scripts/demo`).
//!
//! - `GET /phone`: the page; `GET /phone/app.js`, `GET /phone/app.css`: its script and style.
//!   No external resources, no framework, a strict Content-Security-Policy (scripts and styles
//!   from the page's own origin only, `fetch` to it only, no frames, no forms, no plugins).
//! - The script polls `GET /mock/pending` every 500 ms and shows one card per pending push:
//!   user, type ("Vault login", "Target access"), every pushinfo key and value, age, and
//!   Approve and Deny buttons that `POST /mock/pushes/{txid}/approve|deny`.
//!
//! Everything shown comes from the push requests, which an attacker influences (the target a
//! user typed, a remote address, a username): the script only ever sets `textContent`, never
//! HTML, so every value is shown as text.
//!
//! mock-duo serves the page on its HTTPS port and, with `--phone-listen`, also over plain HTTP
//! on a second loopback port ([`serve_http`]) so that a browser shows it without a certificate
//! warning. That listener serves only the page, `GET /mock/pending` and the approve/deny
//! calls; it refuses a `Host` header that is not a loopback name for its port (DNS
//! rebinding). Both listeners refuse a request whose `Origin` is another origin (a page of
//! another site cannot press the buttons through the visitor's browser).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST, ORIGIN};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::mock::control;
use crate::mock::reply::{self, HttpResponse};
use crate::mock::server::stopped;
use crate::mock::state::MockState;

/// The Content-Security-Policy of the page and its resources.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Largest request body the plain-HTTP listener reads (approve and deny carry none).
const MAX_PHONE_BODY: usize = 4096;

const PAGE_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Duo Push phone simulator</title>
<link rel="stylesheet" href="/phone/app.css">
</head>
<body>
<div class="phone">
  <div class="notch" aria-hidden="true"></div>
  <header>
    <h1>Duo Mobile <span class="sim">simulator</span></h1>
    <p id="status" class="status" role="status">Connecting to mock-duo...</p>
  </header>
  <main id="list" aria-live="polite"></main>
  <p id="empty" class="empty">No pending login requests.<br>Log in with ssh and a push appears here.</p>
  <footer>mock-duo phone simulator &middot; not a real Duo device</footer>
</div>
<noscript><p class="noscript">This page needs JavaScript (its own script only).</p></noscript>
<script src="/phone/app.js"></script>
</body>
</html>
"#;

const APP_CSS: &str = r#"* { box-sizing: border-box; }
html { background: #d7dce1; }
body { margin: 0; font: 15px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1c2430; }
.phone { max-width: 390px; min-height: 100vh; margin: 0 auto; background: #f4f6f8; border-left: 1px solid #c3c9cf; border-right: 1px solid #c3c9cf; padding: 0 14px 24px; }
.notch { width: 120px; height: 18px; margin: 0 auto 6px; background: #1c2430; border-radius: 0 0 12px 12px; }
header { padding: 6px 2px 10px; }
h1 { margin: 0; font-size: 20px; color: #2c7a3f; }
h1 .sim { font-size: 12px; font-weight: normal; color: #6b7682; text-transform: uppercase; letter-spacing: 0.08em; }
.status { margin: 4px 0 0; font-size: 13px; color: #6b7682; }
.status.error { color: #b3261e; font-weight: bold; }
.empty { margin: 40px 8px; text-align: center; color: #6b7682; }
.card { background: #fff; border-radius: 14px; box-shadow: 0 1px 4px rgba(0, 0, 0, 0.18); padding: 14px 14px 12px; margin: 0 0 14px; }
.card .app { margin: 0; font-size: 11px; font-weight: bold; letter-spacing: 0.1em; color: #2c7a3f; }
.card h2 { margin: 2px 0 6px; font-size: 19px; }
.card .user { margin: 0 0 8px; color: #3b4652; overflow-wrap: anywhere; }
.card dl { margin: 0 0 8px; padding: 8px 10px; background: #f4f6f8; border-radius: 8px; font-size: 13px; }
.card .kv { display: flex; gap: 8px; padding: 2px 0; }
.card dt { flex: 0 0 34%; color: #6b7682; overflow-wrap: anywhere; }
.card dd { margin: 0; flex: 1; font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; white-space: pre-wrap; }
.card .age { margin: 0 0 10px; font-size: 12px; color: #6b7682; }
.buttons { display: flex; gap: 10px; }
.buttons button { flex: 1; border: 0; border-radius: 10px; padding: 12px 0; font-size: 16px; font-weight: bold; cursor: pointer; }
button.deny { background: #fbe3e1; color: #b3261e; }
button.approve { background: #2c7a3f; color: #fff; }
button:disabled { opacity: 0.45; cursor: default; }
.card .result { margin: 8px 0 0; font-weight: bold; }
.card.approved .result { color: #2c7a3f; }
.card.denied .result, .card.failed .result { color: #b3261e; }
.card.gone { opacity: 0.6; }
footer { margin-top: 24px; text-align: center; font-size: 11px; color: #8a949e; }
.noscript { text-align: center; color: #b3261e; }
"#;

const APP_JS: &str = r#""use strict";
// mock-duo phone simulator. Every value shown comes from a push request and may be hostile:
// it is only ever placed with textContent, never parsed as HTML.
(function () {
  var POLL_MS = 500;
  var KEEP_DECIDED_MS = 2000;
  var list = document.getElementById("list");
  var empty = document.getElementById("empty");
  var statusLine = document.getElementById("status");
  var cards = new Map();

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function ageText(ms) {
    var s = Math.max(0, Math.floor(Number(ms) / 1000) || 0);
    if (s < 60) { return s + " s ago"; }
    return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
  }

  function setButtons(entry, enabled) {
    entry.approve.disabled = !enabled;
    entry.deny.disabled = !enabled;
  }

  function decide(txid, action, entry) {
    if (entry.busy || entry.finished) { return; }
    entry.busy = true;
    setButtons(entry, false);
    entry.result.textContent = action === "approve" ? "Approving..." : "Denying...";
    var url = "/mock/pushes/" + encodeURIComponent(txid) + "/" + action;
    fetch(url, { method: "POST", cache: "no-store", credentials: "omit" }).then(function (resp) {
      entry.busy = false;
      if (resp.ok) {
        entry.finished = true;
        entry.card.classList.add(action === "approve" ? "approved" : "denied");
        entry.result.textContent = action === "approve" ? "Approved" : "Denied";
      } else if (resp.status === 409) {
        entry.finished = true;
        entry.card.classList.add("gone");
        entry.result.textContent = "Already answered or expired";
      } else {
        entry.card.classList.add("failed");
        entry.result.textContent = "Failed: HTTP " + resp.status;
        setButtons(entry, true);
      }
    }, function (err) {
      entry.busy = false;
      entry.card.classList.add("failed");
      entry.result.textContent = "Failed: " + err.message;
      setButtons(entry, true);
    });
  }

  function makeCard(push) {
    var card = el("article", "card");
    card.setAttribute("data-txid", push.txid);
    card.appendChild(el("p", "app", "DUO PUSH"));
    var type = (typeof push.type === "string" && push.type !== "") ? push.type : "Login request";
    card.appendChild(el("h2", "type", type));
    var who = el("p", "user");
    who.appendChild(el("span", "label", "User "));
    who.appendChild(el("strong", "username", push.username));
    if (typeof push.display_username === "string" && push.display_username !== "") {
      who.appendChild(el("span", "display", " (" + push.display_username + ")"));
    }
    card.appendChild(who);
    var info = push.pushinfo && typeof push.pushinfo === "object" ? push.pushinfo : {};
    var keys = Object.keys(info);
    if (keys.length > 0) {
      var dl = el("dl", "pushinfo");
      keys.forEach(function (k) {
        var row = el("div", "kv");
        row.appendChild(el("dt", null, k));
        row.appendChild(el("dd", null, info[k]));
        dl.appendChild(row);
      });
      card.appendChild(dl);
    }
    var age = el("p", "age", ageText(push.age_ms));
    card.appendChild(age);
    var buttons = el("div", "buttons");
    var deny = el("button", "deny", "Deny");
    deny.type = "button";
    var approve = el("button", "approve", "Approve");
    approve.type = "button";
    buttons.appendChild(deny);
    buttons.appendChild(approve);
    card.appendChild(buttons);
    var result = el("p", "result", "");
    card.appendChild(result);
    var entry = { card: card, age: age, result: result, approve: approve, deny: deny,
                  busy: false, finished: false, goneAt: 0 };
    approve.addEventListener("click", function () { decide(push.txid, "approve", entry); });
    deny.addEventListener("click", function () { decide(push.txid, "deny", entry); });
    return entry;
  }

  function render(pending) {
    var now = Date.now();
    var live = new Set();
    pending.forEach(function (push) {
      if (!push || typeof push.txid !== "string") { return; }
      live.add(push.txid);
      var entry = cards.get(push.txid);
      if (!entry) {
        entry = makeCard(push);
        cards.set(push.txid, entry);
        list.insertBefore(entry.card, list.firstChild);
      }
      entry.age.textContent = ageText(push.age_ms);
    });
    cards.forEach(function (entry, txid) {
      if (live.has(txid)) { return; }
      if (!entry.goneAt) {
        entry.goneAt = now;
        if (!entry.finished) {
          entry.finished = true;
          setButtons(entry, false);
          entry.card.classList.add("gone");
          entry.result.textContent = "Answered elsewhere or expired";
        }
      } else if (now - entry.goneAt > KEEP_DECIDED_MS) {
        entry.card.remove();
        cards.delete(txid);
      }
    });
    var n = live.size;
    statusLine.className = "status";
    statusLine.textContent = n === 0 ? "Waiting for login requests" :
      (n === 1 ? "1 pending login request" : n + " pending login requests");
  }

  function poll() {
    fetch("/mock/pending", { cache: "no-store", credentials: "omit" }).then(function (resp) {
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
      return resp.json();
    }).then(function (pending) {
      if (!Array.isArray(pending)) { throw new Error("unexpected reply"); }
      render(pending);
    }).catch(function (err) {
      statusLine.className = "status error";
      statusLine.textContent = "mock-duo unreachable: " + err.message;
    }).then(function () {
      empty.hidden = cards.size !== 0;
      window.setTimeout(poll, POLL_MS);
    });
  }

  poll();
})();
"#;

fn with_headers(status: u16, content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let fixed: [(&'static str, &'static str); 6] = [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("cross-origin-resource-policy", "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// Answers a request under `/phone`: the page, its script and style (GET or HEAD), 405 for
/// other methods, 404 for other paths.
pub(crate) fn page(method: &str, path: &str) -> HttpResponse {
    let found = match path {
        "/phone" | "/phone/" => Some(("text/html; charset=utf-8", PAGE_HTML)),
        "/phone/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/phone/app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        _ => None,
    };
    match (method, found) {
        ("GET" | "HEAD", Some((content_type, body))) => with_headers(200, content_type, body),
        (_, Some(_)) => with_headers(405, "text/plain; charset=utf-8", "method not allowed\n"),
        (_, None) => with_headers(404, "text/plain; charset=utf-8", "not found\n"),
    }
}

/// A 403 when the request carries an `Origin` other than `scheme://HOST` (its own `Host`
/// header): a browser always sends `Origin` on a cross-origin request and on every POST, and
/// a page of another site must not approve pushes through the visitor's browser. Requests
/// without `Origin` (test clients, curl, same-origin GETs) pass.
pub(crate) fn cross_origin_refusal(headers: &HeaderMap, scheme: &str) -> Option<HttpResponse> {
    let origin = headers.get(ORIGIN)?;
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let same = origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix(scheme))
        .and_then(|o| o.strip_prefix("://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
    if same {
        None
    } else {
        Some(reply::json_fail(
            403,
            40301,
            "Cross-origin request refused",
            None,
        ))
    }
}

/// Whether `host` (a `Host` header) names a loopback address with `port`: `127.0.0.1:PORT`
/// (any of 127.0.0.0/8), `localhost:PORT` or `[::1]:PORT`.
fn is_loopback_host(host: &str, port: u16) -> bool {
    let Some((name, host_port)) = host.rsplit_once(':') else {
        return false;
    };
    if host_port.parse::<u16>().ok() != Some(port) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Serves the phone page over plain HTTP on `listener` until shutdown: the page, `GET
/// /mock/pending`, `POST /mock/pushes/{txid}/approve|deny`; nothing else.
pub(crate) async fn serve_http(
    listener: TcpListener,
    state: Arc<MockState>,
    mut shutdown: watch::Receiver<bool>,
    log: bool,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    tokio::spawn(serve_http_connection(
                        tcp,
                        Arc::clone(&state),
                        shutdown.clone(),
                        port,
                        log,
                    ));
                }
                Err(e) => {
                    eprintln!("mock-duo: phone listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_http_connection(
    tcp: TcpStream,
    state: Arc<MockState>,
    mut shutdown: watch::Receiver<bool>,
    port: u16,
    log: bool,
) {
    let _ = tcp.set_nodelay(true);
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle_http(&state, port, log, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::select! {
        _ = conn => {}
        _ = stopped(&mut shutdown) => {}
    }
}

async fn handle_http(
    state: &MockState,
    port: u16,
    log: bool,
    req: Request<Incoming>,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let resp = 'answer: {
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host, port) {
            break 'answer reply::json_fail(421, 42101, "Not a loopback host name", None);
        }
        if let Some(refusal) = cross_origin_refusal(&parts.headers, "http") {
            break 'answer refusal;
        }
        let body: Bytes = match Limited::new(body, MAX_PHONE_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                break 'answer reply::json_fail(413, 41301, "Request body too large", None);
            }
        };
        if path == "/phone" || path.starts_with("/phone/") {
            break 'answer page(&method, &path);
        }
        let allowed = match method.as_str() {
            "GET" => path == "/mock/pending",
            "POST" => path
                .strip_prefix("/mock/pushes/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, action)| action == "approve" || action == "deny"),
            _ => false,
        };
        if allowed {
            control::handle(state, &method, &path, &body)
        } else {
            reply::json_fail(404, 40401, "Resource not found", Some(&path))
        }
    };
    if log {
        eprintln!(
            "mock-duo: phone-http {method} {path} status={}",
            resp.status().as_u16()
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names_with_the_right_port_only() {
        assert!(is_loopback_host("127.0.0.1:8080", 8080));
        assert!(is_loopback_host("127.1.2.3:8080", 8080));
        assert!(is_loopback_host("localhost:8080", 8080));
        assert!(is_loopback_host("[::1]:8080", 8080));
        assert!(!is_loopback_host("127.0.0.1:8081", 8080));
        assert!(!is_loopback_host("127.0.0.1", 8080));
        assert!(!is_loopback_host("evil.example:8080", 8080));
        assert!(!is_loopback_host("10.0.0.1:8080", 8080));
        assert!(!is_loopback_host("", 8080));
    }

    #[test]
    fn other_origins_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:4000"));
        assert!(cross_origin_refusal(&h, "http").is_none(), "no Origin");
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:4000"));
        assert!(cross_origin_refusal(&h, "http").is_none(), "same origin");
        assert!(cross_origin_refusal(&h, "https").is_some(), "other scheme");
        h.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(cross_origin_refusal(&h, "http").is_some());
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_origin_refusal(&h, "http").is_some());
    }

    #[test]
    fn the_script_never_writes_html() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(forbidden), "{forbidden}");
        }
        assert!(!PAGE_HTML.contains("<script>"), "no inline script");
        assert!(!PAGE_HTML.contains("style="), "no inline style");
        assert!(!PAGE_HTML.contains("http"), "no external resource");
    }

    #[test]
    fn the_page_carries_a_strict_policy() {
        let resp = page("GET", "/phone");
        assert_eq!(resp.status().as_u16(), 200);
        let csp = resp
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(page("POST", "/phone").status().as_u16(), 405);
        assert_eq!(page("GET", "/phone/other").status().as_u16(), 404);
    }
}
