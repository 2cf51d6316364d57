//! Forwarding against two real Swift clusters: requests for routed containers land in cluster
//! b, everything else stays in cluster a (the sidecar's local proxy).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;
use swiftfed_tests::{scratch_dir, shared_pair, swift_cli, unique_name};

#[test]
fn routed_container_lives_on_the_target_and_others_stay_local() {
    let [a, b] = shared_pair();
    let prefix = unique_name("fed");
    let route = prefix_route(&prefix);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    assert!(
        url.starts_with(&sidecar.url()),
        "storage URL {url} must point at the sidecar"
    );
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");

    let routed = format!("{prefix}-c");
    let local = unique_name("local");
    for c in [&routed, &local] {
        ok(
            &req("PUT", &format!("{url}/{c}"), &token, &[], b""),
            "container PUT",
        );
        ok(
            &req(
                "PUT",
                &format!("{url}/{c}/dir/obj%20one"),
                &token,
                &[("Content-Type", "text/x-test")],
                b"payload",
            ),
            "object PUT",
        );
        ok(
            &req(
                "POST",
                &format!("{url}/{c}/dir/obj%20one"),
                &token,
                &[("X-Object-Meta-Color", "blue")],
                b"",
            ),
            "object POST",
        );
        ok(
            &req(
                "POST",
                &format!("{url}/{c}"),
                &token,
                &[("X-Container-Meta-Kind", "fed")],
                b"",
            ),
            "container POST",
        );
    }

    // Where things are, read directly from each cluster.
    for (c, home, away) in [
        (&routed, (&url_b, &token_b), (&url_a, &token_a)),
        (&local, (&url_a, &token_a), (&url_b, &token_b)),
    ] {
        let got = req(
            "GET",
            &format!("{}/{c}/dir/obj%20one", home.0),
            home.1,
            &[],
            b"",
        );
        assert_eq!(
            (got.status, got.body.as_slice()),
            (200, &b"payload"[..]),
            "{c} on its home cluster"
        );
        assert_eq!(got.header("x-object-meta-color"), Some("blue"));
        assert_eq!(got.header("content-type"), Some("text/x-test"));
        let meta = req("HEAD", &format!("{}/{c}", home.0), home.1, &[], b"");
        assert_eq!(meta.header("x-container-meta-kind"), Some("fed"));
        assert_eq!(
            req("HEAD", &format!("{}/{c}", away.0), away.1, &[], b"").status,
            404,
            "{c} must not exist on the other cluster"
        );
    }

    // Reads through the sidecar come from the right place.
    let got = req(
        "GET",
        &format!("{url}/{routed}/dir/obj%20one"),
        &token,
        &[],
        b"",
    );
    assert_eq!(got.body, b"payload");
    assert!(
        got.header("x-trans-id").is_some(),
        "X-Trans-Id passes through"
    );
    assert!(got.header("etag").is_some());
    let head = req(
        "HEAD",
        &format!("{url}/{routed}/dir/obj%20one"),
        &token,
        &[],
        b"",
    );
    assert_eq!(head.header("content-length"), Some("7"));
    let listing = req(
        "GET",
        &format!("{url}/{routed}?format=json"),
        &token,
        &[],
        b"",
    );
    assert_eq!(listing.status, 200);
    let names: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&listing.body)
        .expect("json listing")
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, vec!["dir/obj one".to_string()]);
    let head = req("HEAD", &format!("{url}/{routed}"), &token, &[], b"");
    assert_eq!(head.header("x-container-object-count"), Some("1"));

    // Deletes through the sidecar remove them where they live.
    for c in [&routed, &local] {
        assert_eq!(
            req(
                "DELETE",
                &format!("{url}/{c}/dir/obj%20one"),
                &token,
                &[],
                b""
            )
            .status,
            204
        );
        assert_eq!(
            req("DELETE", &format!("{url}/{c}"), &token, &[], b"").status,
            204
        );
    }
    assert_eq!(
        req("HEAD", &format!("{url_b}/{routed}"), &token_b, &[], b"").status,
        404
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{local}"), &token_a, &[], b"").status,
        404
    );
}

#[test]
fn python_swiftclient_works_through_the_sidecar() {
    let [a, b] = shared_pair();
    let routed = unique_name("cli");
    let route = exact_route(&routed);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let dir = scratch_dir().expect("scratch").join(unique_name("files"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("report.txt");
    std::fs::write(&file, b"federated bytes\n").expect("write");
    let cli = |args: &[&str]| {
        let out = swift_cli(&sidecar.auth_url(), TESTER.0, TESTER.1, args).expect("swift cli");
        assert!(
            out.status.success(),
            "swift {args:?}: {}{}\nsidecar log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            sidecar.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&[
        "upload",
        &routed,
        file.to_str().expect("utf8"),
        "--object-name",
        "report.txt",
    ]);
    assert_eq!(cli(&["list", &routed]).trim(), "report.txt");
    let stat = cli(&["stat", &routed, "report.txt"]);
    assert!(stat.contains("Content Length: 16"), "{stat}");
    let out = dir.join("downloaded.txt");
    cli(&[
        "download",
        &routed,
        "report.txt",
        "-o",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(std::fs::read(&out).expect("read"), b"federated bytes\n");

    // It is on b, not on a.
    let on_b = swift_cli(b, TESTER.0, TESTER.1, &["list", &routed]).expect("cli");
    assert_eq!(String::from_utf8_lossy(&on_b.stdout).trim(), "report.txt");
    let on_a = swift_cli(a, TESTER.0, TESTER.1, &["stat", &routed]).expect("cli");
    assert!(!on_a.status.success(), "container must not exist on a");
}

#[test]
fn passthrough_forwards_the_clients_token() {
    let [a, b] = shared_pair();
    let routed = unique_name("pass");
    let route = exact_route(&routed);
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&route])),
    );
    let (_, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let url = format!("{}/v1/AUTH_test", sidecar.url());
    assert_eq!(
        req("PUT", &format!("{url}/{routed}"), &token_b, &[], b"").status,
        201
    );
    assert_eq!(
        req("PUT", &format!("{url}/{routed}/o"), &token_b, &[], b"x").status,
        201
    );
    // b's token means nothing to a: unrouted requests are a's to judge.
    assert_eq!(
        req(
            "HEAD",
            &format!("{url}/{}", unique_name("elsewhere")),
            &token_b,
            &[],
            b""
        )
        .status,
        401
    );
    // And a's token means nothing to b.
    let (_, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    assert_eq!(
        req("GET", &format!("{url}/{routed}/o"), &token_a, &[], b"").status,
        401
    );
}

#[test]
fn renamed_accounts_and_containers_including_copies() {
    let [a, b] = shared_pair();
    let prefix = unique_name("ren");
    let renamed = unique_name("renamed");
    // Clients of AUTH_test2 on a; the data lands in AUTH_test on b under other container names.
    let route = format!(
        "- {{match: {{account: AUTH_test2, container: {{prefix: \"{prefix}-\"}}}}, target: {{cluster: b, account: AUTH_test, container: \"{renamed}-\"}}}}"
    );
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, ("test2:tester", "testing"));
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (c1, c2) = (format!("{prefix}-one"), format!("{prefix}-two"));
    for c in [&c1, &c2] {
        assert_eq!(
            req("PUT", &format!("{url}/{c}"), &token, &[], b"").status,
            201
        );
    }
    assert_eq!(
        req("PUT", &format!("{url}/{c1}/o"), &token, &[], b"original").status,
        201
    );
    let on_b = req(
        "GET",
        &format!("{url_b}/{renamed}-one/o"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!((on_b.status, on_b.body.as_slice()), (200, &b"original"[..]));

    // PUT with X-Copy-From inside the target: names rewritten both ways.
    let copy = req(
        "PUT",
        &format!("{url}/{c2}/copied"),
        &token,
        &[("X-Copy-From", &format!("{c1}/o"))],
        b"",
    );
    assert_eq!(copy.status, 201, "{}", copy.body_text());
    assert_eq!(
        copy.header("x-copied-from"),
        Some(format!("{c1}/o").as_str())
    );
    assert_eq!(
        req(
            "GET",
            &format!("{url_b}/{renamed}-two/copied"),
            &token_b,
            &[],
            b""
        )
        .body,
        b"original"
    );

    // COPY with Destination.
    let copy = req(
        "COPY",
        &format!("{url}/{c1}/o"),
        &token,
        &[("Destination", &format!("/{c2}/moved"))],
        b"",
    );
    assert_eq!(copy.status, 201, "{}", copy.body_text());
    assert_eq!(
        req(
            "GET",
            &format!("{url_b}/{renamed}-two/moved"),
            &token_b,
            &[],
            b""
        )
        .body,
        b"original"
    );
    assert_eq!(
        req("GET", &format!("{url}/{c2}/moved"), &token, &[], b"").body,
        b"original"
    );

    // A copy from a container that lives in the other cluster is done by the sidecar
    // (tests/cross_cluster.rs); a missing source is Swift's 404, and nothing is written.
    let local = unique_name("local");
    assert_eq!(
        req("PUT", &format!("{url}/{local}"), &token, &[], b"").status,
        201
    );
    let refused = req(
        "PUT",
        &format!("{url}/{c2}/x"),
        &token,
        &[("X-Copy-From", &format!("{local}/o"))],
        b"",
    );
    assert_eq!(refused.status, 404, "{}", refused.body_text());
    assert_eq!(
        req(
            "HEAD",
            &format!("{url_b}/{renamed}-two/x"),
            &token_b,
            &[],
            b""
        )
        .status,
        404
    );
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn expect_100_continue_is_the_targets_answer() {
    let [a, b] = shared_pair();
    let routed = unique_name("expect");
    let route = exact_route(&routed);
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&route])),
    );
    let (_, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let url = format!("{}/v1/AUTH_test", sidecar.url());
    assert_eq!(
        req("PUT", &format!("{url}/{routed}"), &token_b, &[], b"").status,
        201
    );

    // Authorized: 100 Continue first, then the body, then 201.
    let mut s = TcpStream::connect(sidecar.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "PUT /v1/AUTH_test/{routed}/o HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token_b}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").expect("send");
    let interim = read_head(&mut s);
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "expected 100 Continue first, got {interim:?}"
    );
    s.write_all(b"hello").expect("body");
    let fin = read_head(&mut s);
    assert!(fin.starts_with("HTTP/1.1 201"), "{fin}");
    assert_eq!(
        req(
            "GET",
            &format!("{}/{routed}/o", b.storage_url("AUTH_test")),
            &token_b,
            &[],
            b""
        )
        .body,
        b"hello"
    );

    // Refused by the target: its 401 comes without any 100 Continue.
    let mut s = TcpStream::connect(sidecar.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "PUT /v1/AUTH_test/{routed}/p HTTP/1.1\r\nHost: x\r\nX-Auth-Token: bogus\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").expect("send");
    let first = read_head(&mut s);
    assert!(
        first.starts_with("HTTP/1.1 401"),
        "expected the target's 401 without 100, got {first:?}"
    );
    assert_eq!(
        req(
            "HEAD",
            &format!("{}/{routed}/p", b.storage_url("AUTH_test")),
            &token_b,
            &[],
            b""
        )
        .status,
        404
    );
}

#[test]
fn range_requests_single_and_multiple() {
    let [a, b] = shared_pair();
    let routed = unique_name("range");
    let route = exact_route(&routed);
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&route])),
    );
    let (_, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let url = format!("{}/v1/AUTH_test", sidecar.url());
    assert_eq!(
        req("PUT", &format!("{url}/{routed}"), &token_b, &[], b"").status,
        201
    );
    assert_eq!(
        req(
            "PUT",
            &format!("{url}/{routed}/o"),
            &token_b,
            &[],
            b"0123456789abcdef"
        )
        .status,
        201
    );

    let one = req(
        "GET",
        &format!("{url}/{routed}/o"),
        &token_b,
        &[("Range", "bytes=2-5")],
        b"",
    );
    assert_eq!((one.status, one.body.as_slice()), (206, &b"2345"[..]));
    assert_eq!(one.header("content-range"), Some("bytes 2-5/16"));

    let multi = req(
        "GET",
        &format!("{url}/{routed}/o"),
        &token_b,
        &[("Range", "bytes=0-1,-3")],
        b"",
    );
    assert_eq!(multi.status, 206);
    let ctype = multi.header("content-type").expect("content-type");
    assert!(ctype.starts_with("multipart/byteranges"), "{ctype}");
    let text = multi.body_text();
    assert!(
        text.contains("Content-Range: bytes 0-1/16") && text.contains("\r\n01\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Range: bytes 13-15/16") && text.contains("\r\ndef\r\n"),
        "{text}"
    );
}

#[test]
fn bad_input_gets_an_answer_and_the_sidecar_keeps_serving() {
    let [a, _] = shared_pair();
    let sidecar = Sidecar::start(a.proxy_port(), None);
    let addr = sidecar.addr();
    let budget = Duration::from_secs(10);

    // Garbage on the socket: a 400 or a closed connection, never a hang.
    let reply = raw_exchange(&addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n", budget);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    // A header line above Swift's limit: Swift's own 400.
    let big = format!(
        "GET /info HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let reply = raw_exchange(&addr, big.as_bytes(), budget);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.0 400") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    // A request head above --max-head-bytes never reaches Swift: 431 or a closed connection.
    let huge = format!(
        "GET /info HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(40_000)
    );
    let reply = raw_exchange(&addr, huge.as_bytes(), budget);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{}",
        &text[..text.len().min(200)]
    );

    // A header as large as Swift accepts passes (Swift's answer is the answer).
    let (_, token) = a.auth(TESTER.0, TESTER.1).expect("auth");
    let meta = "m".repeat(256);
    let r = req(
        "HEAD",
        &format!("{}/v1/AUTH_test", sidecar.url()),
        &token,
        &[("X-Pad", &"p".repeat(8000)), ("X-Account-Meta-x", &meta)],
        b"",
    );
    assert_eq!(r.status / 100, 2);

    // Odd paths get Swift's own answers, not the sidecar's.
    for (path, direct) in [
        ("/v1/AUTH_test/c%00x", true),
        ("/v1/%ZZ/c", true),
        ("/v1//c", true),
        ("/nothing", true),
    ] {
        let via = req("GET", &format!("{}{path}", sidecar.url()), &token, &[], b"");
        let from_swift = req("GET", &format!("{}{path}", a.proxy_url()), &token, &[], b"");
        assert!(direct);
        assert_eq!(via.status, from_swift.status, "{path}");
    }
    // An unknown method is Swift's to refuse too.
    let via = req(
        "FROB",
        &format!("{}/v1/AUTH_test", sidecar.url()),
        &token,
        &[],
        b"",
    );
    let from_swift = req(
        "FROB",
        &format!("{}/v1/AUTH_test", a.proxy_url()),
        &token,
        &[],
        b"",
    );
    assert_eq!(via.status, from_swift.status);

    // Still serving.
    let info = req("GET", &format!("{}/info", sidecar.url()), "", &[], b"");
    assert_eq!(info.status, 200, "{}", info.body_text());
}
