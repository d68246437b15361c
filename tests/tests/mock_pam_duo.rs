//! Debian's pam_duo.so (libpam-duo 1.11.3, duo_unix's legacy REST v1 + BSON client) logs in
//! against mock-duo through pamtester, inside a private mount namespace whose /etc/pam.d and
//! /etc/passwd are bind-mounted copies: the host's files are never changed.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use duo_push_tests::mock::harness::{MockProcess, TEST_IKEY, TEST_SKEY};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mock-duo");
const PAM_DUO: &str = "/lib/x86_64-linux-gnu/security/pam_duo.so";

fn require_tools() {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (unshare --mount, bind mounts); the suite runs as root"
    );
    assert!(
        Path::new(PAM_DUO).exists(),
        "{PAM_DUO} is missing: apt-get install libpam-duo (1.11.3)"
    );
    for tool in ["pamtester", "unshare", "mount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "{tool} is missing: apt-get install pamtester util-linux"
        );
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn conf(ca: &Path, port: u16, skey: &str) -> String {
    format!(
        "[duo]\nikey = {TEST_IKEY}\nskey = {skey}\nhost = localhost:{port}\ncafile = {}\n\
         autopush = yes\nprompts = 1\nfailmode = secure\n",
        ca.display()
    )
}

/// Runs `pamtester SERVICE USER authenticate` for each case inside one private mount
/// namespace and returns each case's exit status.
fn run_pamtester(root: &Path, cases: &[(&str, &str)]) -> (Vec<i32>, String) {
    let mut script = String::from("set -u\n");
    let _ = writeln!(
        script,
        "mount --bind {0}/pam.d /etc/pam.d || exit 90",
        root.display()
    );
    let _ = writeln!(
        script,
        "mount --bind {0}/passwd /etc/passwd || exit 91",
        root.display()
    );
    for (service, user) in cases {
        let _ = writeln!(
            script,
            "pamtester -v {service} {user} authenticate </dev/null; echo \"RESULT {service} {user} $?\""
        );
    }
    let out = Command::new("timeout")
        .args([
            "180",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "namespace script failed ({}):\n{text}",
        out.status
    );
    let codes = cases
        .iter()
        .map(|(service, user)| {
            let prefix = format!("RESULT {service} {user} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|rc| rc.trim().parse().ok())
                .unwrap_or_else(|| panic!("no result for {service}/{user}:\n{text}"))
        })
        .collect();
    (codes, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn debians_pam_duo_authenticates_against_mock_duo_over_rest_v1() {
    require_tools();
    let state = tempfile::tempdir().unwrap();
    let mock = MockProcess::spawn(Path::new(BIN), state.path(), &[]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir(r.join("pam.d")).unwrap();
    for (service, conf_file) in [
        ("duotest", "pam_duo.conf"),
        ("sshd", "pam_duo.conf"),
        ("duobadkey", "bad.conf"),
    ] {
        write(
            &r.join("pam.d").join(service),
            &format!(
                "auth required pam_duo.so conf={}\naccount required pam_permit.so\n",
                r.join(conf_file).display()
            ),
            0o644,
        );
    }
    write(
        &r.join("pam_duo.conf"),
        &conf(&mock.ca_path(), mock.port(), TEST_SKEY),
        0o600,
    );
    write(
        &r.join("bad.conf"),
        &conf(&mock.ca_path(), mock.port(), &"W".repeat(40)),
        0o600,
    );
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for (i, user) in ["pamalice", "pamsync", "denypam", "lockoutpam", "pambadkey"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            passwd,
            "{user}:x:{0}:{0}:mock-duo test:/nonexistent:/usr/sbin/nologin",
            64000 + i
        );
    }
    write(&r.join("passwd"), &passwd, 0o644);

    let (codes, text) = run_pamtester(
        r,
        &[
            ("duotest", "pamalice"),
            ("sshd", "pamsync"),
            ("duotest", "denypam"),
            ("duotest", "lockoutpam"),
            ("duobadkey", "pambadkey"),
        ],
    );
    assert_eq!(codes[0], 0, "normal user must authenticate:\n{text}");
    assert_eq!(
        codes[1], 0,
        "normal user under service sshd must authenticate:\n{text}"
    );
    assert_ne!(codes[2], 0, "deny user must fail:\n{text}");
    assert_ne!(codes[3], 0, "lockout user must fail:\n{text}");
    assert_ne!(
        codes[4], 0,
        "wrong skey must fail (failmode secure):\n{text}"
    );
    assert!(text.contains("Success. Logging you in..."), "{text}");
    assert!(text.contains("Login request denied."), "{text}");

    let client = mock.client().unwrap();
    let pushes: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/pushes").await.unwrap().body).unwrap();
    let users: Vec<&str> = pushes
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["pamalice", "pamsync", "denypam"], "{pushes:?}");
    for p in &pushes {
        assert_eq!(p["api"], "v1");
        assert_eq!(p["type"], "legacy");
        assert_eq!(p["factor"], "auto");
        assert_eq!(p["device"], "push1");
        // duo_unix sends pushinfo "Server+IP=<ip>&Command=<cmd>": decoded, "Server IP".
        assert!(p["pushinfo"].get("Server IP").is_some(), "{p}");
        assert!(p["pushinfo"].get("Command").is_some(), "{p}");
    }
    assert_eq!(pushes[0]["result"], "allow");
    assert_eq!(pushes[1]["result"], "allow");
    assert_eq!(pushes[2]["result"], "deny");

    let log: Vec<Value> =
        serde_json::from_slice(&client.get("/mock/requests").await.unwrap().body).unwrap();
    let of = |user: &str| -> Vec<String> {
        // status.bson carries no user; attribute it to the preceding auth.bson's user.
        let mut current = String::new();
        let mut paths = Vec::new();
        for r in &log {
            if r["verified"] == false {
                current.clear();
                continue;
            }
            if let Some(u) = r["username"].as_str() {
                current = u.to_owned();
            }
            if current == user {
                paths.push(r["path"].as_str().unwrap().to_owned());
            }
        }
        paths
    };
    // Not sshd: async=1, then the status long-poll. sshd: synchronous auth.
    assert_eq!(
        of("pamalice"),
        [
            "/rest/v1/preauth.bson",
            "/rest/v1/auth.bson",
            "/rest/v1/status.bson"
        ]
    );
    assert_eq!(
        of("pamsync"),
        ["/rest/v1/preauth.bson", "/rest/v1/auth.bson"]
    );
    assert_eq!(of("lockoutpam"), ["/rest/v1/preauth.bson"]);
    let auth = log
        .iter()
        .find(|r| r["path"] == "/rest/v1/auth.bson")
        .unwrap();
    let params: Vec<&str> = auth["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in ["async", "auto", "factor", "pushinfo", "user"] {
        assert!(
            params.contains(&name),
            "auth.bson lacked {name}: {params:?}"
        );
    }
    let verified: Vec<bool> = log
        .iter()
        .map(|r| r["verified"].as_bool().unwrap())
        .collect();
    assert!(log.iter().all(|r| r["signature"] == "v1"), "{log:?}");
    assert_eq!(
        verified.iter().filter(|v| !**v).count(),
        1,
        "only the bad-key request fails: {log:?}"
    );
    assert_eq!(
        client.get("/mock/stats").await.unwrap().json()["signature_failures"],
        1
    );
}
