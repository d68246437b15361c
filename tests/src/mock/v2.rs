//! Auth API v2: ping, check, preauth (with duo_unix 2.x's `text_prompt`), auth, auth_status.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Response;
use serde_json::{json, Value};

use crate::mock::behavior::{
    preauth_for, transport_for, PreauthKind, PushOutcome, Transport, HOSTILE_STATUS_MSG,
};
use crate::mock::fault::{fault_for, Fault, FaultSpec, Stage, WriteFault};
use crate::mock::reply::{self, param, pushinfo_map, HttpResponse};
use crate::mock::server::{Ctx, Handled, Reply};
use crate::mock::state::{Api, MockState, NewPush, TxResult, TxState};
use crate::mock::verify::{RequestParts, Verified};

/// The one device every ordinary user has.
pub const DEVICE_ID: &str = "DPFZRS9FB0D46QFTM891";
/// The device of `nopush` users (no push capability).
pub const NOPUSH_DEVICE_ID: &str = "DPNOPUSHMOCKDEVICE01";
/// The only passcode mock-duo accepts.
pub const VALID_PASSCODE: &str = "123456";

fn push_device() -> Value {
    json!({
        "device": DEVICE_ID,
        "type": "phone",
        "number": "XXX-XXX-1234",
        "name": "iOS",
        "display_name": "iOS (XXX-XXX-1234)",
        "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"],
    })
}

fn nopush_device() -> Value {
    json!({
        "device": NOPUSH_DEVICE_ID,
        "type": "phone",
        "number": "XXX-XXX-5678",
        "name": "Landline",
        "display_name": "Landline (XXX-XXX-5678)",
        "capabilities": ["phone", "sms", "mobile_otp"],
    })
}

/// The text menu duo_unix 2.x shows (`text_prompt=1`).
pub fn prompt_text(username: &str) -> String {
    format!(
        "Duo two-factor login for {username}\n\nEnter a passcode or select one of the following \
         options:\n\n 1. Duo Push to XXX-XXX-1234\n\nPasscode or option (1-1): "
    )
}

pub(crate) async fn handle(ctx: &Ctx, req: &RequestParts<'_>) -> Handled {
    let expected_method = match req.path {
        "/auth/v2/ping" | "/auth/v2/check" | "/auth/v2/auth_status" => "GET",
        "/auth/v2/preauth" | "/auth/v2/auth" => "POST",
        other => {
            return Handled::unsigned(reply::json_fail(
                404,
                40401,
                "Resource not found",
                Some(other),
            ))
        }
    };
    if req.method != expected_method {
        return Handled::unsigned(reply::json_fail(
            405,
            40501,
            "Method not allowed",
            Some(req.method),
        ));
    }
    if req.path == "/auth/v2/ping" {
        return Handled::unsigned(reply::json_ok(
            json!({"time": ctx.verifier.now().unix_timestamp()}),
        ));
    }
    let verified = match ctx.verifier.verify_v2(req) {
        Ok(v) => v,
        Err(rej) => {
            if rej.status == 401 {
                ctx.state.count_signature_failure();
            }
            return Handled {
                reply: Reply::Now(reply::json_fail(
                    rej.status,
                    rej.code,
                    rej.message,
                    Some(&rej.detail),
                )),
                signature: rej.version,
                verified: false,
                username: None,
                param_names: Vec::new(),
            };
        }
    };
    let username = param(&verified.params, "username")
        .or_else(|| param(&verified.params, "user_id"))
        .map(str::to_owned);
    let reply = match req.path {
        "/auth/v2/check" => Reply::Now(reply::json_ok(
            json!({"time": ctx.verifier.now().unix_timestamp()}),
        )),
        "/auth/v2/auth_status" => {
            let spec = param(&verified.params, "txid")
                .and_then(|txid| ctx.state.username_of(txid))
                .and_then(|user| fault_for(&user));
            match spec {
                Some(spec) if spec.hits(Stage::Status) => {
                    faulty(ctx, spec, Stage::Status, "", &verified).await
                }
                _ => Reply::Now(auth_status(&ctx.state, &verified).await),
            }
        }
        path => match username.as_deref() {
            None => Reply::Now(reply::json_fail(
                400,
                40001,
                "Missing required request parameters",
                Some("username"),
            )),
            Some(user) => {
                let stage = if path == "/auth/v2/preauth" {
                    Stage::Preauth
                } else {
                    Stage::Auth
                };
                match fault_for(user) {
                    Some(spec) if spec.hits(stage) => {
                        faulty(ctx, spec, stage, user, &verified).await
                    }
                    Some(spec) if spec.fault == Fault::OtherTxid && stage == Stage::Auth => {
                        Reply::Now(decoy_pushes(&ctx.state, user, &verified))
                    }
                    _ => match transport_for(user) {
                        Transport::Normal if stage == Stage::Preauth => {
                            Reply::Now(preauth(user, &verified))
                        }
                        Transport::Normal => Reply::Now(auth(&ctx.state, user, &verified).await),
                        other => transport_reply(other),
                    },
                }
            }
        },
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

/// The replies of the `http*`, `badjson`, `huge` and `hang` users.
fn transport_reply(transport: Transport) -> Reply {
    match transport {
        Transport::HttpError {
            status,
            retry_after,
        } => {
            let (code, message) = match status {
                429 => (42901, "Too Many Requests"),
                503 => (50301, "Service Unavailable"),
                _ => (50001, "Internal Server Error"),
            };
            let resp = reply::json_fail(status, code, message, Some("simulated by mock-duo"));
            Reply::Now(if retry_after {
                reply::with_retry_after(resp)
            } else {
                resp
            })
        }
        Transport::BadBody => Reply::Now(reply::bad_json()),
        Transport::Huge => Reply::Now(reply::huge_json()),
        Transport::Hang => Reply::Hang,
        Transport::Normal => {
            Reply::Now(reply::json_fail(500, 50001, "Internal Server Error", None))
        }
    }
}

/// What an ordinary user would get at `stage` (at `auth`, this makes the push).
async fn real_reply(ctx: &Ctx, stage: Stage, user: &str, verified: &Verified) -> HttpResponse {
    match stage {
        Stage::Preauth => preauth(user, verified),
        Stage::Auth => auth(&ctx.state, user, verified).await,
        Stage::Status | Stage::All => auth_status(&ctx.state, verified).await,
    }
}

/// The reply of a user whose fault hits this `stage` (see [`crate::mock::fault`]); `user` is
/// empty at the status stage.
async fn faulty(
    ctx: &Ctx,
    spec: FaultSpec,
    stage: Stage,
    user: &str,
    verified: &Verified,
) -> Reply {
    let http_error = |status: u16| {
        transport_reply(Transport::HttpError {
            status,
            retry_after: status == 429,
        })
    };
    match spec.fault {
        // Refused: nothing happens at Duo.
        Fault::E500 => return http_error(500),
        Fault::E503 => return http_error(503),
        Fault::E429 => return http_error(429),
        Fault::EarlyAllow => return Reply::Now(early_allow(&ctx.state, user, verified)),
        // Push A is pending: answer at once rather than after its long-poll.
        Fault::OtherTxid => return Reply::Now(other_txid_allow(&ctx.state, verified)),
        Fault::Late => tokio::time::sleep(ctx.fault_delay).await,
        _ => {}
    }
    // The request reached Duo (at `auth`: the push is made); the reply goes wrong.
    let real = real_reply(ctx, stage, user, verified).await;
    let allow_msg = TxState::ALLOW.status_msg;
    match spec.fault {
        Fault::ResetHead => Reply::Faulty(real, WriteFault::CutHead),
        Fault::ResetBody => Reply::Faulty(real, WriteFault::CutBody(8)),
        Fault::DripHead => Reply::Faulty(real, WriteFault::DripAll),
        Fault::Drip => Reply::Faulty(real, WriteFault::DripBody),
        Fault::Stall => Reply::Hang,
        Fault::Huge => Reply::Now(reply::huge_json()),
        Fault::Flood => Reply::Flood,
        Fault::Truncated => Reply::Now(truncated(real).await),
        Fault::NoResult => Reply::Now(reply::json_ok(match stage {
            Stage::Preauth => {
                json!({"status_msg": "Account is active", "devices": [push_device()]})
            }
            _ => json!({"status": "allow", "status_msg": allow_msg}),
        })),
        Fault::UnknownResult => Reply::Now(reply::json_ok(match stage {
            Stage::Preauth => json!({
                "result": "maybe",
                "status_msg": "Account is active",
                "devices": [push_device()],
            }),
            _ => json!({"result": "maybe", "status": "allow", "status_msg": allow_msg}),
        })),
        Fault::E500
        | Fault::E503
        | Fault::E429
        | Fault::EarlyAllow
        | Fault::OtherTxid
        | Fault::Late => Reply::Now(real),
    }
}

/// `othertx`, stage status: `result: allow` for the asked txid A, with a `txid` field naming
/// the user's approved decoy B (see `decoy_pushes`).
fn other_txid_allow(state: &MockState, verified: &Verified) -> HttpResponse {
    let asked = param(&verified.params, "txid").unwrap_or("");
    let owner = state.username_of(asked);
    let decoy = state
        .pushes()
        .into_iter()
        .find(|p| {
            Some(&p.username) == owner.as_ref() && p.txid != asked && p.result == TxResult::Allow
        })
        .map(|p| p.txid)
        .unwrap_or_else(reply::new_txid);
    reply::json_ok(json!({
        "result": "allow",
        "status": "allow",
        "status_msg": TxState::ALLOW.status_msg,
        "txid": decoy,
    }))
}

/// The same reply with the second half of its body cut off (the length is that of the half).
async fn truncated(resp: HttpResponse) -> HttpResponse {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    Response::from_parts(parts, Full::<Bytes>::new(half))
}

/// The push record for a push request of `username`.
fn new_push(username: &str, params: &[(String, String)]) -> NewPush {
    NewPush {
        username: username.to_owned(),
        kind: param(params, "type").map(str::to_owned),
        display_username: param(params, "display_username").map(str::to_owned),
        pushinfo: param(params, "pushinfo")
            .map(pushinfo_map)
            .unwrap_or_default(),
        device: param(params, "device").unwrap_or("auto").to_owned(),
        factor: param(params, "factor").unwrap_or("push").to_owned(),
        api: Api::V2,
    }
}

/// `othertx`, stage auth: a decoy push B of the same user approved at once, and the push A
/// the reply names, which waits (and expires unanswered).
fn decoy_pushes(
    state: &std::sync::Arc<MockState>,
    username: &str,
    verified: &Verified,
) -> HttpResponse {
    let mut decoy = new_push(username, &verified.params);
    decoy.kind = Some("Decoy (othertx fault)".to_owned());
    let _ = state.start_push_as(decoy, PushOutcome::Allow(std::time::Duration::ZERO));
    let (txid, _) = state.start_push_as(new_push(username, &verified.params), PushOutcome::Manual);
    reply::json_ok(json!({"txid": txid}))
}

/// `earlyallow`, stage auth: the push is denied at once, but the asynchronous reply claims
/// `result: allow` next to its txid.
fn early_allow(
    state: &std::sync::Arc<MockState>,
    username: &str,
    verified: &Verified,
) -> HttpResponse {
    let (txid, _) = state.start_push_as(new_push(username, &verified.params), PushOutcome::Deny);
    reply::json_ok(json!({
        "txid": txid,
        "result": "allow",
        "status": "allow",
        "status_msg": TxState::ALLOW.status_msg,
    }))
}

fn preauth(username: &str, verified: &Verified) -> HttpResponse {
    let mut response = match preauth_for(username) {
        PreauthKind::Lockout => json!({"result": "deny", "status_msg": "Your account is locked"}),
        PreauthKind::EscapeMessage => json!({"result": "deny", "status_msg": HOSTILE_STATUS_MSG}),
        PreauthKind::Enroll => json!({
            "result": "enroll",
            "status_msg": "Enroll an authentication device to proceed",
            "enroll_portal_url": format!(
                "https://enroll.mock-duo.invalid/portal?code={}",
                reply::new_txid().replace('-', "")
            ),
        }),
        PreauthKind::Bypass => json!({"result": "allow", "status_msg": "Allowing unknown user"}),
        PreauthKind::NoPush => json!({
            "result": "auth",
            "status_msg": "Account is active",
            "devices": [nopush_device()],
        }),
        PreauthKind::Auth => json!({
            "result": "auth",
            "status_msg": "Account is active",
            "devices": [push_device()],
        }),
    };
    let wants_prompt = matches!(param(&verified.params, "text_prompt"), Some("1" | "true"));
    if wants_prompt && response.get("result").and_then(Value::as_str) == Some("auth") {
        if let Some(obj) = response.as_object_mut() {
            obj.insert(
                "prompt".to_owned(),
                json!({"text": prompt_text(username), "factors": {"1": "push1", "default": "push1"}}),
            );
        }
    }
    reply::json_ok(response)
}

fn state_json(state: TxState) -> Value {
    let result = match state.result {
        TxResult::Pending => "waiting",
        TxResult::Allow => "allow",
        TxResult::Deny => "deny",
    };
    json!({"result": result, "status": state.status, "status_msg": state.status_msg})
}

fn bad_param(detail: &str) -> HttpResponse {
    reply::json_fail(400, 40002, "Invalid request parameters", Some(detail))
}

fn is_async(params: &[(String, String)]) -> bool {
    matches!(param(params, "async"), Some("1" | "true"))
}

async fn auth(
    state: &std::sync::Arc<MockState>,
    username: &str,
    verified: &Verified,
) -> HttpResponse {
    let params = &verified.params;
    let Some(factor) = param(params, "factor") else {
        return reply::json_fail(
            400,
            40001,
            "Missing required request parameters",
            Some("factor"),
        );
    };
    enum Action<'a> {
        Push(&'a str),
        Passcode(&'a str),
    }
    let action = match factor {
        "push" | "auto" => Action::Push(param(params, "device").unwrap_or("auto")),
        "passcode" => match param(params, "passcode") {
            Some(code) => Action::Passcode(code),
            None => {
                return reply::json_fail(
                    400,
                    40001,
                    "Missing required request parameters",
                    Some("passcode"),
                )
            }
        },
        "prompt" => match param(params, "prompt") {
            Some("push1" | "1") => Action::Push("auto"),
            Some(code) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) => {
                Action::Passcode(code)
            }
            _ => return bad_param("prompt: mock-duo offers only option 1 (push1) or a passcode"),
        },
        _ => return bad_param("factor: mock-duo supports push, auto, passcode and prompt"),
    };
    match action {
        Action::Passcode(code) => {
            let end = if code == VALID_PASSCODE {
                TxState::ALLOW
            } else {
                TxState::BAD_PASSCODE
            };
            if is_async(params) {
                reply::json_ok(json!({"txid": state.finished_tx(username, end)}))
            } else {
                reply::json_ok(state_json(end))
            }
        }
        Action::Push(device) => {
            if preauth_for(username) == PreauthKind::NoPush {
                return bad_param("device: this user has no push-capable device");
            }
            if device != "auto" && device != DEVICE_ID {
                return bad_param("device: unknown device id");
            }
            let mut push = new_push(username, params);
            push.device = device.to_owned();
            push.factor = factor.to_owned();
            let (txid, rx) = state.start_push(push);
            if is_async(params) {
                reply::json_ok(json!({"txid": txid}))
            } else {
                reply::json_ok(state_json(MockState::wait(rx, None).await))
            }
        }
    }
}

async fn auth_status(state: &MockState, verified: &Verified) -> HttpResponse {
    let Some(txid) = param(&verified.params, "txid") else {
        return reply::json_fail(
            400,
            40001,
            "Missing required request parameters",
            Some("txid"),
        );
    };
    let Some(rx) = state.watch(txid) else {
        return bad_param("txid: unknown transaction");
    };
    reply::json_ok(state_json(
        MockState::wait(rx, Some(state.timing().long_poll)).await,
    ))
}
