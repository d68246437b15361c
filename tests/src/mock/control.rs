//! The unsigned control API under `/mock/` (JSON), for tests and benchmarks.
//!
//! - `GET /mock/pushes`: every push in order; `GET /mock/pending`: those still pending.
//! - `POST /mock/pushes/{txid}/approve`, `POST /mock/pushes/{txid}/deny`: end a pending push.
//! - `POST /mock/script` `{"username": "...", "outcomes": ["allow","deny","timeout","fraud",
//!   "manual","slow"]}`: the user's next pushes end that way, in order.
//! - `GET /mock/requests`: the request log; `GET /mock/stats`: the counters.
//! - `POST /mock/reset`: forget pushes, scripts, the request log and the counters.

use serde::Deserialize;
use serde_json::json;

use crate::mock::behavior::PushOutcome;
use crate::mock::reply::{self, HttpResponse};
use crate::mock::state::{MockState, ResolveError, TxResult, TxState};

#[derive(Deserialize)]
struct Script {
    username: String,
    outcomes: Vec<String>,
}

fn not_found(path: &str) -> HttpResponse {
    reply::json_fail(404, 40401, "Resource not found", Some(path))
}

pub(crate) fn handle(state: &MockState, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    match (method, path) {
        ("GET", "/mock/pushes") => reply::json_value(200, &json!(state.pushes())),
        ("GET", "/mock/pending") => {
            let pending: Vec<_> = state
                .pushes()
                .into_iter()
                .filter(|p| p.result == TxResult::Pending)
                .collect();
            reply::json_value(200, &json!(pending))
        }
        ("GET", "/mock/requests") => reply::json_value(200, &json!(state.requests())),
        ("GET", "/mock/stats") => reply::json_value(200, &json!(state.stats())),
        ("POST", "/mock/reset") => {
            state.reset();
            reply::json_value(200, &json!({"ok": true}))
        }
        ("POST", "/mock/script") => script(state, body),
        ("POST", _) => match path
            .strip_prefix("/mock/pushes/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((txid, "approve")) => resolve(state, txid, TxState::ALLOW),
            Some((txid, "deny")) => resolve(state, txid, TxState::DENY),
            _ => not_found(path),
        },
        _ => not_found(path),
    }
}

fn script(state: &MockState, body: &[u8]) -> HttpResponse {
    let script: Script = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => {
            let detail = format!("expected {{\"username\": ..., \"outcomes\": [...]}}: {e}");
            return reply::json_fail(400, 40002, "Invalid request parameters", Some(&detail));
        }
    };
    let delay = state.timing().approve_delay;
    let mut outcomes = Vec::with_capacity(script.outcomes.len());
    for word in &script.outcomes {
        match PushOutcome::from_script(word, delay) {
            Some(o) => outcomes.push(o),
            None => {
                let detail = format!(
                    "unknown outcome {word:?}; use allow, deny, timeout, fraud, manual or slow"
                );
                return reply::json_fail(400, 40002, "Invalid request parameters", Some(&detail));
            }
        }
    }
    let count = outcomes.len();
    state.script(&script.username, outcomes);
    reply::json_value(
        200,
        &json!({"ok": true, "username": script.username, "queued": count}),
    )
}

fn resolve(state: &MockState, txid: &str, end: TxState) -> HttpResponse {
    match state.resolve(txid, end) {
        Ok(()) => reply::json_value(
            200,
            &json!({"ok": true, "txid": txid, "result": end.result}),
        ),
        Err(ResolveError::Unknown) => reply::json_fail(404, 40401, "Unknown txid", Some(txid)),
        Err(ResolveError::AlreadyFinal) => {
            reply::json_fail(409, 40901, "Transaction already ended", Some(txid))
        }
    }
}
