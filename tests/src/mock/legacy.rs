//! The legacy REST v1 protocol of duo_unix 1.x (Debian's libpam-duo 1.11.3): form-encoded
//! requests signed with HMAC-SHA1 over `METHOD\nhost\npath\nparams` (no date), BSON replies.

use bson::{doc, Document};

use crate::mock::behavior::{
    preauth_for, transport_for, PreauthKind, Transport, HOSTILE_STATUS_MSG,
};
use crate::mock::reply::{self, param, pushinfo_map, HttpResponse};
use crate::mock::server::{Ctx, Handled, Reply};
use crate::mock::state::{Api, MockState, NewPush, TxResult, TxState};
use crate::mock::v2::VALID_PASSCODE;
use crate::mock::verify::RequestParts;

/// What libduo shows while a push is pending (it prints every `status` it gets).
const PENDING_STATUS: &str = "Pushed a login request to your phone...";

fn menu(username: &str, option: &str) -> String {
    format!(
        "Duo two-factor login for {username}\n\nEnter a passcode or select one of the following \
         options:\n\n 1. {option}\n\nPasscode or option (1-1): "
    )
}

pub(crate) async fn handle(ctx: &Ctx, req: &RequestParts<'_>) -> Handled {
    let expected_method = match req.path {
        "/rest/v1/preauth.bson" | "/rest/v1/auth.bson" => "POST",
        "/rest/v1/status.bson" => "GET",
        _ => return Handled::unsigned(reply::bson_fail(404, 40401, "Resource not found")),
    };
    if req.method != expected_method {
        return Handled::unsigned(reply::bson_fail(405, 40501, "Method not allowed"));
    }
    let verified = match ctx.verifier.verify_v1(req) {
        Ok(v) => v,
        Err(rej) => {
            if rej.status == 401 {
                ctx.state.count_signature_failure();
            }
            let code = i32::try_from(rej.code).unwrap_or(40103);
            let message = format!("{} ({})", rej.message, rej.detail);
            return Handled {
                reply: Reply::Now(reply::bson_fail(rej.status, code, &message)),
                signature: rej.version,
                verified: false,
                username: None,
                param_names: Vec::new(),
            };
        }
    };
    let params = &verified.params;
    let username = param(params, "user").map(str::to_owned);
    let reply = if req.path == "/rest/v1/status.bson" {
        Reply::Now(status(&ctx.state, params).await)
    } else {
        match username.as_deref() {
            None => Reply::Now(reply::bson_fail(
                400,
                40001,
                "Missing required request parameters: user",
            )),
            Some(user) => match transport_for(user) {
                Transport::Normal if req.path == "/rest/v1/preauth.bson" => {
                    Reply::Now(preauth(user))
                }
                Transport::Normal => Reply::Now(auth(&ctx.state, user, params).await),
                Transport::HttpError {
                    status,
                    retry_after,
                } => {
                    let resp = reply::bson_fail(
                        status,
                        i32::from(status) * 100 + 1,
                        "simulated server error (mock-duo)",
                    );
                    Reply::Now(if retry_after {
                        reply::with_retry_after(resp)
                    } else {
                        resp
                    })
                }
                Transport::BadBody => Reply::Now(reply::bad_bson()),
                Transport::Huge => Reply::Now(reply::huge_bson()),
                Transport::Hang => Reply::Hang,
            },
        }
    };
    let mut param_names: Vec<String> = verified.params.iter().map(|(k, _)| k.clone()).collect();
    param_names.sort();
    Handled {
        reply,
        signature: verified.version,
        verified: true,
        username,
        param_names,
    }
}

fn preauth(username: &str) -> HttpResponse {
    let response = match preauth_for(username) {
        PreauthKind::Lockout => doc! {"result": "deny", "status": "Your account is locked"},
        PreauthKind::EscapeMessage => doc! {"result": "deny", "status": HOSTILE_STATUS_MSG},
        PreauthKind::Enroll => doc! {
            "result": "enroll",
            "status": "Please enroll at https://enroll.mock-duo.invalid/portal",
        },
        PreauthKind::Bypass => doc! {"result": "allow", "status": "Allowing unknown user"},
        PreauthKind::NoPush => doc! {
            "result": "auth",
            "prompt": menu(username, "Phone call to XXX-XXX-5678"),
            "factors": {"1": "phone1", "default": "phone1"},
        },
        PreauthKind::Auth => doc! {
            "result": "auth",
            "prompt": menu(username, "Duo Push to XXX-XXX-1234"),
            "factors": {"1": "push1", "default": "push1"},
        },
    };
    reply::bson_ok(response)
}

fn final_doc(state: TxState) -> Document {
    match state.result {
        TxResult::Pending => doc! {"status": PENDING_STATUS},
        TxResult::Allow => doc! {"result": "allow", "status": state.status_msg},
        TxResult::Deny => doc! {"result": "deny", "status": state.status_msg},
    }
}

async fn auth(
    state: &std::sync::Arc<MockState>,
    username: &str,
    params: &[(String, String)],
) -> HttpResponse {
    let is_async = param(params, "async") == Some("1");
    if param(params, "factor") != Some("auto") {
        return reply::bson_fail(
            400,
            40002,
            "Invalid request parameters: factor must be auto",
        );
    }
    let token = param(params, "auto").unwrap_or("");
    let end_at_once = if token.starts_with("push") {
        if preauth_for(username) == PreauthKind::NoPush {
            Some(TxState {
                status_msg: "No push-capable device",
                ..TxState::DENY
            })
        } else {
            None
        }
    } else if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        Some(if token == VALID_PASSCODE {
            TxState::ALLOW
        } else {
            TxState::BAD_PASSCODE
        })
    } else {
        Some(TxState {
            status_msg: "mock-duo supports only push1 and passcodes",
            ..TxState::DENY
        })
    };
    if let Some(end) = end_at_once {
        return if is_async {
            reply::bson_ok(doc! {"txid": state.finished_tx(username, end)})
        } else {
            reply::bson_ok(final_doc(end))
        };
    }
    let (txid, rx) = state.start_push(NewPush {
        username: username.to_owned(),
        kind: Some("legacy".to_owned()),
        display_username: None,
        pushinfo: param(params, "pushinfo")
            .map(pushinfo_map)
            .unwrap_or_default(),
        device: token.to_owned(),
        factor: "auto".to_owned(),
        api: Api::V1,
    });
    if is_async {
        reply::bson_ok(doc! {"txid": txid})
    } else {
        reply::bson_ok(final_doc(MockState::wait(rx, None).await))
    }
}

async fn status(state: &MockState, params: &[(String, String)]) -> HttpResponse {
    let Some(rx) = param(params, "txid").and_then(|txid| state.watch(txid)) else {
        return reply::bson_fail(400, 40002, "Invalid request parameters: unknown txid");
    };
    reply::bson_ok(final_doc(
        MockState::wait(rx, Some(state.timing().long_poll)).await,
    ))
}
