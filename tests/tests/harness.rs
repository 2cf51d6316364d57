//! The harness itself: clusters are real, separate, and survive a proxy restart.

use std::fs;

use swiftfed_tests::{
    http_request, scratch_dir, shared_pair, swift_cli, swift_cli_ok, unique_name, Server,
    SwiftCluster,
};

const TESTER: (&str, &str) = ("test:tester", "testing");

fn head(url: &str, token: &str) -> u16 {
    http_request("HEAD", url, &[("X-Auth-Token", token)], b"")
        .unwrap_or_else(|e| panic!("{e}"))
        .status
}

#[test]
fn clusters_are_separate() {
    let [a, b] = shared_pair();
    assert_ne!(a.proxy_port(), b.proxy_port());

    let container = unique_name("harness");
    let file = scratch_dir().unwrap().join(unique_name("obj"));
    fs::write(&file, b"hello from a").unwrap();
    let path = file.to_str().unwrap();
    swift_cli_ok(
        a,
        TESTER.0,
        TESTER.1,
        &["upload", &container, path, "--object-name", "o"],
    )
    .unwrap_or_else(|e| panic!("{e}\nproxy log:\n{}", a.log_tail(Server::Proxy)));

    // on a: the swift CLI sees it and plain HTTP reads the same bytes back
    let listing = swift_cli_ok(a, TESTER.0, TESTER.1, &["list", &container]).unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout).trim(), "o");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).unwrap();
    assert_eq!(url_a, a.storage_url("AUTH_test"));
    let got = http_request(
        "GET",
        &format!("{url_a}/{container}/o"),
        &[("X-Auth-Token", &token_a)],
        b"",
    )
    .unwrap();
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"hello from a"[..])
    );

    // on b: neither container nor object exist
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).unwrap();
    assert_eq!(url_b, b.storage_url("AUTH_test"));
    assert_eq!(head(&format!("{url_b}/{container}"), &token_b), 404);
    assert_eq!(head(&format!("{url_b}/{container}/o"), &token_b), 404);
    let stat = swift_cli(b, TESTER.0, TESTER.1, &["stat", &container, "o"]).unwrap();
    assert!(!stat.status.success(), "swift stat on b should fail");

    // separate token stores: a's token means nothing to b, and vice versa
    assert_ne!(token_a, token_b);
    assert_eq!(head(&url_b, &token_a), 401);
    assert_eq!(head(&url_a, &token_b), 401);
    assert_eq!(head(&url_a, &token_a), 204);
}

#[test]
fn users_and_accounts() {
    let [a, _] = shared_pair();
    let (url, _) = a.auth("test:tester2", "testing2").unwrap();
    assert_eq!(url, a.storage_url("AUTH_test"));
    let (url, _) = a.auth("test2:tester", "testing").unwrap();
    assert_eq!(url, a.storage_url("AUTH_test2"));
    let (url, _) = a.auth("test:sidecar", "sidecar-key").unwrap();
    assert_eq!(url, a.storage_url("AUTH_test"));
    let (url, _) = a.auth("admin:admin", "admin").unwrap();
    assert_eq!(url, a.storage_url("AUTH_admin"));
    let err = a.auth("test:tester", "wrong").unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
}

#[test]
fn proxy_outage_and_restart() {
    // own cluster: stopping a shared proxy would break concurrent tests
    let mut c = SwiftCluster::builder("outage")
        .token_life(3600)
        .constraint("max_container_name_length", 100)
        .start()
        .unwrap();

    // the cluster's own swift.conf rules, not /etc/swift/swift.conf
    let info = http_request("GET", &format!("{}/info", c.proxy_url()), &[], b"").unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(info["swift"]["max_container_name_length"], 100);
    assert_eq!(
        info["swift"]["max_file_size"], 5368709122u64,
        "defaults kept"
    );
    let (url, token) = c.auth(TESTER.0, TESTER.1).unwrap();
    let container = unique_name("outage");
    let put = http_request(
        "PUT",
        &format!("{url}/{container}"),
        &[("X-Auth-Token", &token)],
        b"",
    )
    .unwrap();
    assert_eq!(put.status, 201);
    let too_long = format!("{url}/{}", "x".repeat(101));
    let put = http_request("PUT", &too_long, &[("X-Auth-Token", &token)], b"").unwrap();
    assert_eq!(put.status, 400, "constraint enforced");

    c.stop_proxy();
    let err = http_request("HEAD", &url, &[("X-Auth-Token", &token)], b"").unwrap_err();
    assert!(err.to_string().contains("connect"), "{err}");

    c.start_proxy().unwrap();
    // same port, same memcached: the old token still works and data is there
    assert_eq!(
        c.proxy_url(),
        format!("http://127.0.0.1:{}", c.proxy_port())
    );
    assert_eq!(head(&format!("{url}/{container}"), &token), 204);
    assert!(
        c.log_tail(Server::Proxy).contains("PUT /v1/AUTH_test/"),
        "log kept across restart"
    );

    let dir = c.dir().to_path_buf();
    drop(c);
    assert!(!dir.exists(), "cluster dir removed on drop");
    let gone = http_request("HEAD", &url, &[], b"");
    assert!(gone.is_err(), "proxy still answers after drop: {gone:?}");
}
