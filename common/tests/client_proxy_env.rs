//! Proxy environment variables must never be honoured: under sshd and PAM the environment can
//! come from the connecting user, who could otherwise route the Duo traffic through a host of
//! their choice. This file holds a single test because it changes the process environment,
//! which must not race with other tests' threads.

mod client_support;

use std::time::Duration;

use client_support::*;
use duo_push_common::api::DuoApi;

#[test]
fn proxy_environment_variables_are_ignored() {
    // A dead address: honouring any of these would make the call fail.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        // Safe in edition 2021 and race-free here: no other thread exists yet.
        std::env::set_var(name, &dead_url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pki = pki(&["127.0.0.1"]);
        let server = Server::start(pki.server.clone(), |_: &Request| Action::ping(0)).await;
        let client = client(&server, &pki, Duration::from_secs(3));
        let time = client.ping().await.unwrap();
        assert!((time - now()).abs() <= 2);
        assert_eq!(
            server.connections(),
            1,
            "the call went directly to the server"
        );
    });
}
