//! pam-driver: runs a PAM service from a private configuration directory, for tests.
//!
//! ```text
//! pam-driver --confdir DIR --service NAME --user USER [--rhost IP] [--tty TTY]
//!            [--answer TEXT]... [--hook auth|acct|session|all] [--silent]
//! ```
//!
//! It calls libpam's `pam_start_confdir()` (Linux-PAM >= 1.4), so the service file is read from
//! DIR and no system file is involved, sets PAM_RHOST and PAM_TTY, and makes the calls the hook
//! names (`all`: authenticate, acct_mgmt, setcred(ESTABLISH_CRED), open_session, close_session,
//! setcred(DELETE_CRED), stopping at the first failure). It prints, flushed as they happen:
//!
//! ```text
//! conv: PAM_PROMPT_ECHO_OFF Password:
//! result: authenticate PAM_SUCCESS 0
//! ```
//!
//! Messages have `\` and newlines escaped (`\\`, `\n`, `\r`). Prompts are answered with the next
//! `--answer`, or with an empty string when none is left. The exit code is 0 iff the last call
//! returned PAM_SUCCESS, 1 if it returned anything else, 2 for a usage error.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::process::ExitCode;

/// The few libpam declarations this driver needs (libpam is not covered by the libc crate).
/// Values from Linux-PAM's `<security/_pam_types.h>`.
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub const PAM_SUCCESS: c_int = 0;
    pub const PAM_CONV_ERR: c_int = 19;
    pub const PAM_BUF_ERR: c_int = 5;

    pub const PAM_TTY: c_int = 3;
    pub const PAM_RHOST: c_int = 4;

    pub const PAM_SILENT: c_int = 0x8000;
    pub const PAM_ESTABLISH_CRED: c_int = 0x0002;
    pub const PAM_DELETE_CRED: c_int = 0x0004;

    pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
    pub const PAM_PROMPT_ECHO_ON: c_int = 2;
    pub const PAM_ERROR_MSG: c_int = 3;
    pub const PAM_TEXT_INFO: c_int = 4;

    /// Linux-PAM caps a conversation at this many messages.
    pub const PAM_MAX_NUM_MSG: c_int = 32;

    /// `struct pam_handle` is opaque.
    #[repr(C)]
    pub struct PamHandle {
        _private: [u8; 0],
    }

    /// `struct pam_message`.
    #[repr(C)]
    pub struct PamMessage {
        pub msg_style: c_int,
        pub msg: *const c_char,
    }

    /// `struct pam_response`; `resp` must be allocated with malloc (libpam frees it).
    #[repr(C)]
    pub struct PamResponse {
        pub resp: *mut c_char,
        pub resp_retcode: c_int,
    }

    /// The conversation callback's type.
    pub type ConvFn = unsafe extern "C" fn(
        num_msg: c_int,
        msg: *mut *const PamMessage,
        resp: *mut *mut PamResponse,
        appdata_ptr: *mut c_void,
    ) -> c_int;

    /// `struct pam_conv`.
    #[repr(C)]
    pub struct PamConv {
        pub conv: Option<ConvFn>,
        pub appdata_ptr: *mut c_void,
    }

    #[link(name = "pam")]
    extern "C" {
        pub fn pam_start_confdir(
            service_name: *const c_char,
            user: *const c_char,
            pam_conversation: *const PamConv,
            confdir: *const c_char,
            pamh: *mut *mut PamHandle,
        ) -> c_int;
        pub fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
        pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
        pub fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
        pub fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
        pub fn pam_setcred(pamh: *mut PamHandle, flags: c_int) -> c_int;
        pub fn pam_open_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
        pub fn pam_close_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    }
}

/// The symbolic name of a PAM return code.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "PAM_SUCCESS",
        1 => "PAM_OPEN_ERR",
        2 => "PAM_SYMBOL_ERR",
        3 => "PAM_SERVICE_ERR",
        4 => "PAM_SYSTEM_ERR",
        5 => "PAM_BUF_ERR",
        6 => "PAM_PERM_DENIED",
        7 => "PAM_AUTH_ERR",
        8 => "PAM_CRED_INSUFFICIENT",
        9 => "PAM_AUTHINFO_UNAVAIL",
        10 => "PAM_USER_UNKNOWN",
        11 => "PAM_MAXTRIES",
        12 => "PAM_NEW_AUTHTOK_REQD",
        13 => "PAM_ACCT_EXPIRED",
        14 => "PAM_SESSION_ERR",
        15 => "PAM_CRED_UNAVAIL",
        16 => "PAM_CRED_EXPIRED",
        17 => "PAM_CRED_ERR",
        18 => "PAM_NO_MODULE_DATA",
        19 => "PAM_CONV_ERR",
        20 => "PAM_AUTHTOK_ERR",
        21 => "PAM_AUTHTOK_RECOVERY_ERR",
        22 => "PAM_AUTHTOK_LOCK_BUSY",
        23 => "PAM_AUTHTOK_DISABLE_AGING",
        24 => "PAM_TRY_AGAIN",
        25 => "PAM_IGNORE",
        26 => "PAM_ABORT",
        27 => "PAM_AUTHTOK_EXPIRED",
        28 => "PAM_MODULE_UNKNOWN",
        29 => "PAM_BAD_ITEM",
        30 => "PAM_CONV_AGAIN",
        31 => "PAM_INCOMPLETE",
        _ => "PAM_UNKNOWN_CODE",
    }
}

fn style_name(style: i32) -> String {
    match style {
        ffi::PAM_PROMPT_ECHO_OFF => "PAM_PROMPT_ECHO_OFF".to_string(),
        ffi::PAM_PROMPT_ECHO_ON => "PAM_PROMPT_ECHO_ON".to_string(),
        ffi::PAM_ERROR_MSG => "PAM_ERROR_MSG".to_string(),
        ffi::PAM_TEXT_INFO => "PAM_TEXT_INFO".to_string(),
        other => format!("PAM_STYLE_{other}"),
    }
}

/// Keeps a message on one line.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Debug, Default)]
struct Args {
    confdir: String,
    service: String,
    user: String,
    rhost: Option<String>,
    tty: Option<String>,
    answers: VecDeque<String>,
    hook: String,
    silent: bool,
}

const USAGE: &str = "usage: pam-driver --confdir DIR --service NAME --user USER [--rhost IP] \
                     [--tty TTY] [--answer TEXT]... [--hook auth|acct|session|all] [--silent]";

const VALUE_FLAGS: [&str; 7] = [
    "--confdir",
    "--service",
    "--user",
    "--rhost",
    "--tty",
    "--answer",
    "--hook",
];

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        hook: "auth".to_string(),
        ..Args::default()
    };
    while let Some(flag) = argv.next() {
        if flag == "--silent" {
            args.silent = true;
            continue;
        }
        if !VALUE_FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag}"));
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--confdir" => args.confdir = value,
            "--service" => args.service = value,
            "--user" => args.user = value,
            "--rhost" => args.rhost = Some(value),
            "--tty" => args.tty = Some(value),
            "--answer" => args.answers.push_back(value),
            "--hook" => args.hook = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.confdir.is_empty() || args.service.is_empty() || args.user.is_empty() {
        return Err("--confdir, --service and --user are required".to_string());
    }
    if !["auth", "acct", "session", "all"].contains(&args.hook.as_str()) {
        return Err(format!("unknown hook {}", args.hook));
    }
    Ok(args)
}

/// Builds one reply for a message: a malloc'ed copy of the next answer for a prompt, NULL
/// otherwise. Returns false if malloc failed.
fn fill_reply(style: i32, reply: &mut ffi::PamResponse, answers: &mut VecDeque<String>) -> bool {
    reply.resp_retcode = 0;
    reply.resp = std::ptr::null_mut();
    if style != ffi::PAM_PROMPT_ECHO_OFF && style != ffi::PAM_PROMPT_ECHO_ON {
        return true;
    }
    let answer = answers.pop_front().unwrap_or_default();
    // An answer with an interior NUL cannot be passed to C; it is cut at the NUL.
    let bytes = answer.as_bytes();
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    // SAFETY: calloc(len + 1, 1) returns either NULL (checked) or a zeroed buffer of len + 1
    // bytes that we own until libpam frees it with free(), as the conversation contract says.
    let buf = unsafe { libc::calloc(len + 1, 1) }.cast::<u8>();
    if buf.is_null() {
        return false;
    }
    // SAFETY: buf has room for len + 1 bytes, bytes has at least len bytes, and the regions do
    // not overlap (buf is fresh); the last byte stays 0, terminating the string.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, len) };
    reply.resp = buf.cast();
    true
}

/// The conversation function: prints each message and answers prompts from the queue in
/// `appdata`.
///
/// # Safety
/// Called by libpam only, with `msg` pointing to `num_msg` message pointers (Linux-PAM's
/// layout), `resp` a valid out-pointer, and `appdata` the `VecDeque<String>` given to
/// `pam_start_confdir`, which outlives the PAM handle.
unsafe extern "C" fn conversation(
    num_msg: std::ffi::c_int,
    msg: *mut *const ffi::PamMessage,
    resp: *mut *mut ffi::PamResponse,
    appdata: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    if num_msg <= 0 || num_msg > ffi::PAM_MAX_NUM_MSG || msg.is_null() || resp.is_null() {
        return ffi::PAM_CONV_ERR;
    }
    let count = usize::try_from(num_msg).unwrap_or(0);
    // SAFETY: appdata is the &mut VecDeque<String> main() passed to pam_start_confdir; libpam
    // calls the conversation from this thread only, while main() does not touch the queue.
    let answers = unsafe { &mut *appdata.cast::<VecDeque<String>>() };
    // SAFETY: calloc returns NULL (checked) or zeroed memory for `count` responses; a zeroed
    // PamResponse is valid (NULL resp, 0 retcode). libpam frees it with free().
    let replies = unsafe { libc::calloc(count, std::mem::size_of::<ffi::PamResponse>()) }
        .cast::<ffi::PamResponse>();
    if replies.is_null() {
        return ffi::PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: i < num_msg, and libpam passes an array of num_msg valid message pointers.
        let message = unsafe { &**msg.add(i) };
        let text = if message.msg.is_null() {
            String::new()
        } else {
            // SAFETY: msg is a NUL-terminated string owned by the module for this call.
            unsafe { CStr::from_ptr(message.msg) }
                .to_string_lossy()
                .into_owned()
        };
        emit(&format!(
            "conv: {} {}",
            style_name(message.msg_style),
            escape(&text)
        ));
        // SAFETY: i < count, within the calloc'ed array; no other reference to it exists.
        let reply = unsafe { &mut *replies.add(i) };
        if !fill_reply(message.msg_style, reply, answers) {
            for j in 0..i {
                // SAFETY: j < i < count; each resp is NULL or a calloc'ed string we made.
                unsafe { libc::free((*replies.add(j)).resp.cast()) };
            }
            // SAFETY: replies came from calloc and is not used after this.
            unsafe { libc::free(replies.cast()) };
            return ffi::PAM_BUF_ERR;
        }
    }
    // SAFETY: resp is a valid out-pointer (checked non-NULL); ownership passes to libpam.
    unsafe { *resp = replies };
    ffi::PAM_SUCCESS
}

fn cstring(what: &str, value: &str) -> Result<CString, String> {
    CString::new(value).map_err(|_| format!("{what} contains a NUL byte"))
}

fn run(mut args: Args) -> Result<i32, String> {
    let service = cstring("--service", &args.service)?;
    let user = cstring("--user", &args.user)?;
    let confdir = cstring("--confdir", &args.confdir)?;
    let rhost = args
        .rhost
        .as_deref()
        .map(|r| cstring("--rhost", r))
        .transpose()?;
    let tty = args
        .tty
        .as_deref()
        .map(|t| cstring("--tty", t))
        .transpose()?;
    let flags = if args.silent { ffi::PAM_SILENT } else { 0 };
    let conv = ffi::PamConv {
        conv: Some(conversation),
        appdata_ptr: std::ptr::from_mut(&mut args.answers).cast(),
    };
    let mut pamh: *mut ffi::PamHandle = std::ptr::null_mut();
    // SAFETY: every pointer is a valid NUL-terminated string or struct that outlives the
    // handle (they live until the end of this function, after pam_end); pamh is an out-pointer.
    let rc = unsafe {
        ffi::pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    emit(&format!("result: start {} {rc}", code_name(rc)));
    if rc != ffi::PAM_SUCCESS || pamh.is_null() {
        return Ok(rc);
    }
    let mut last = rc;
    for (item, value) in [(ffi::PAM_RHOST, &rhost), (ffi::PAM_TTY, &tty)] {
        if let Some(value) = value {
            // SAFETY: pamh is a live handle; libpam copies the string.
            last = unsafe { ffi::pam_set_item(pamh, item, value.as_ptr().cast()) };
            if last != ffi::PAM_SUCCESS {
                emit(&format!("result: set_item {} {last}", code_name(last)));
            }
        }
    }
    if last == ffi::PAM_SUCCESS {
        type Call = unsafe extern "C" fn(*mut ffi::PamHandle, std::ffi::c_int) -> std::ffi::c_int;
        let calls: Vec<(&str, Call, std::ffi::c_int)> = match args.hook.as_str() {
            "auth" => vec![("authenticate", ffi::pam_authenticate, flags)],
            "acct" => vec![("acct_mgmt", ffi::pam_acct_mgmt, flags)],
            "session" => vec![
                ("open_session", ffi::pam_open_session, flags),
                ("close_session", ffi::pam_close_session, flags),
            ],
            _ => vec![
                ("authenticate", ffi::pam_authenticate, flags),
                ("acct_mgmt", ffi::pam_acct_mgmt, flags),
                ("setcred", ffi::pam_setcred, flags | ffi::PAM_ESTABLISH_CRED),
                ("open_session", ffi::pam_open_session, flags),
                ("close_session", ffi::pam_close_session, flags),
                ("setcred", ffi::pam_setcred, flags | ffi::PAM_DELETE_CRED),
            ],
        };
        for (name, call, call_flags) in calls {
            // SAFETY: pamh is a live handle from pam_start_confdir; the conversation's appdata
            // (args.answers) and the strings set as items are still alive.
            last = unsafe { call(pamh, call_flags) };
            emit(&format!("result: {name} {} {last}", code_name(last)));
            if last != ffi::PAM_SUCCESS {
                break;
            }
        }
    }
    // SAFETY: pamh is live and not used after this call.
    let end = unsafe { ffi::pam_end(pamh, last) };
    if end != ffi::PAM_SUCCESS {
        emit(&format!("result: end {} {end}", code_name(end)));
    }
    Ok(last)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("pam-driver: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pam-driver: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
