//! Extract-archive (`?extract-archive=tar|tar.gz|tar.bz2`) whose entries land in containers of
//! several clusters, through the real sidecar binary: the answer is the one a single cluster
//! holding every container gives (a reference account on one cluster, same archive), in each
//! format, and each object is read back from the cluster its container lives in, with its
//! bytes and the metadata from the archive's pax xattrs.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;
use swiftfed_tests::{shared_pair, unique_name, venv_bin, HttpResponse, SwiftCluster};

/// One archive member: name, kind (`file`, `dir`, `symlink`), content, pax headers.
struct Member<'a> {
    name: String,
    kind: &'a str,
    data: Vec<u8>,
    pax: Vec<(&'a str, &'a str)>,
}

fn file(name: String, data: &[u8]) -> Member<'static> {
    Member {
        name,
        kind: "file",
        data: data.to_vec(),
        pax: vec![],
    }
}

/// The archive Python's `tarfile` (pax format, as GNU tar 1.27+ writes by default) makes of
/// `members`, compressed by `mode` (`""`, `"gz"`, `"bz2"`).
fn archive(members: &[Member<'_>], mode: &str) -> Vec<u8> {
    let spec: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "kind": m.kind,
                "data": m.data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "pax": m.pax.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    let script = r#"
import io, json, sys, tarfile
spec = json.loads(sys.stdin.read())
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w:" + sys.argv[1], format=tarfile.PAX_FORMAT) as t:
    for m in spec:
        info = tarfile.TarInfo(m["name"])
        info.pax_headers = m["pax"]
        data = bytes.fromhex(m["data"])
        if m["kind"] == "dir":
            info.type = tarfile.DIRTYPE
            t.addfile(info)
        elif m["kind"] == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = "elsewhere"
            t.addfile(info)
        else:
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
sys.stdout.buffer.write(out.getvalue())
"#;
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", script, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::Value::Array(spec).to_string().as_bytes())
        .expect("spec");
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "archive creation failed");
    out.stdout
}

/// Both answers, compared as a client sees them (Swift may prefix whitespace while it works;
/// the reference account's name stands where the client's would).
fn same_answer(got: &HttpResponse, want: &HttpResponse, what: &str) {
    assert_eq!(got.status, want.status, "{what}");
    assert_eq!(
        got.header("content-type"),
        want.header("content-type"),
        "{what}"
    );
    assert_eq!(
        got.body_text().trim_start(),
        want.body_text()
            .trim_start()
            .replace("/AUTH_test2/", "/AUTH_test/"),
        "{what}"
    );
}

fn extract(
    base: &str,
    token: &str,
    format: &str,
    accept: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let mut headers = vec![("X-Object-Meta-From-Request", "yes")];
    if let Some(accept) = accept {
        headers.push(("Accept", accept));
    }
    req(
        "PUT",
        &format!("{base}?extract-archive={format}"),
        token,
        &headers,
        body,
    )
}

#[test]
fn archives_extracted_across_clusters_answer_like_one_cluster() {
    let [a, b] = shared_pair();
    let u = unique_name("ea").replace('-', "");
    let routes = [
        prefix_route(&format!("{u}fed-")),
        format!(
            "- {{match: {{account: AUTH_test, container: {{prefix: \"{u}docs\"}}}}, target: {{cluster: b, container: \"{u}renamed\"}}}}"
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_ref, token_ref) = a.auth("test2:tester", "testing").expect("auth reference");

    for (round, (mode, format, accept)) in [
        ("", "tar", None),
        ("", "tar", Some("application/json")),
        ("", "tar", Some("application/xml")),
        ("gz", "tar.gz", Some("text/xml")),
        ("bz2", "tar.bz2", Some("text/plain")),
    ]
    .into_iter()
    .enumerate()
    {
        let n = |s: &str| format!("{u}{s}{round}");
        let (local, fed, docs) = (n("local"), n("fed-a"), n("docs"));
        // An existing container (not created by the extraction), the others are created.
        for (base, tok) in [(&url, &token), (&url_ref, &token_ref)] {
            ok(
                &req("PUT", &format!("{base}/{local}"), tok, &[], b""),
                &local,
            );
        }
        let members = vec![
            file(format!("{local}/one.txt"), b"one"),
            Member {
                name: format!("./{fed}/dir/two.txt"),
                kind: "file",
                data: b"two, with xattrs".to_vec(),
                pax: vec![
                    ("SCHILY.xattr.user.meta.color", "blue"),
                    ("SCHILY.xattr.user.mime_type", "application/x-test"),
                    ("SCHILY.xattr.user.other", "ignored"),
                ],
            },
            Member {
                name: format!("{fed}/dir"),
                kind: "dir",
                data: vec![],
                pax: vec![],
            },
            Member {
                name: format!("{fed}/link"),
                kind: "symlink",
                data: vec![],
                pax: vec![],
            },
            file(format!("{docs}/d.bin"), &[0u8, 1, 2, 255]),
            file(format!("{docs}/empty"), b""),
            file("top-level-ignored.txt".into(), b"nothing"),
            // Refused by Swift: an object name too long, a container name too long.
            file(format!("{local}/{}", "x".repeat(1100)), b"long"),
            file(format!("{}/o", "c".repeat(300)), b"long container"),
        ];
        let body = archive(&members, mode);
        let got = extract(&url, &token, format, accept, &body);
        let want = extract(&url_ref, &token_ref, format, accept, &body);
        let what = format!("{format} {accept:?}");
        same_answer(&got, &want, &what);
        assert!(
            want.body_text().contains("Number Files Created")
                || want.body_text().contains("number_files_created"),
            "{what}: {}",
            want.body_text()
        );
        assert!(
            want.body_text().contains('4'),
            "four files created: {}",
            want.body_text()
        );

        // Each object where its container lives, with the archive's and the request's metadata.
        for (base, tok, path, data) in [
            (&url_a, &token_a, format!("{local}/one.txt"), &b"one"[..]),
            (
                &url_b,
                &token_b,
                format!("{fed}/dir/two.txt"),
                &b"two, with xattrs"[..],
            ),
            (
                &url_b,
                &token_b,
                format!("{u}renamed{round}/d.bin"),
                &[0u8, 1, 2, 255][..],
            ),
            (
                &url_b,
                &token_b,
                format!("{u}renamed{round}/empty"),
                &b""[..],
            ),
        ] {
            let r = req("GET", &format!("{base}/{path}"), tok, &[], b"");
            ok(&r, &path);
            assert_eq!(r.body, data, "{path}");
            assert_eq!(
                r.header("x-object-meta-from-request"),
                Some("yes"),
                "{path}"
            );
        }
        let two = req(
            "HEAD",
            &format!("{url_b}/{fed}/dir/two.txt"),
            &token_b,
            &[],
            b"",
        );
        let two_ref = req(
            "HEAD",
            &format!("{url_ref}/{fed}/dir/two.txt"),
            &token_ref,
            &[],
            b"",
        );
        for h in ["content-type", "x-object-meta-color", "etag"] {
            assert_eq!(two.header(h), two_ref.header(h), "{h}");
        }
        assert_eq!(two.header("x-object-meta-color"), Some("blue"));
        assert_eq!(two.header("content-type"), Some("application/x-test"));
        // Nothing of the routed containers in the local cluster; the skipped entries nowhere.
        for path in [
            format!("{fed}/dir/two.txt"),
            format!("{docs}/d.bin"),
            format!("{fed}/link"),
        ] {
            assert_eq!(
                req("HEAD", &format!("{url_a}/{path}"), &token_a, &[], b"").status,
                404,
                "{path}"
            );
        }
        assert_eq!(
            req("HEAD", &format!("{url_b}/{fed}/link"), &token_b, &[], b"").status,
            404
        );
    }
}

#[test]
fn container_level_archives_go_to_the_container_cluster() {
    let [a, b] = shared_pair();
    let u = unique_name("eac").replace('-', "");
    let routes = [
        exact_route(&format!("{u}plain")),
        format!(
            "- {{match: {{account: AUTH_test, container: {{exact: \"{u}docs\"}}}}, target: {{cluster: b, container: \"{u}renamed\"}}}}"
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_ref, token_ref) = a.auth("test2:tester", "testing").expect("auth reference");
    let members = vec![
        file("a.txt".into(), b"first"),
        file("./sub/b.txt".into(), b"second"),
        file("y".repeat(1100), b"too long a name"),
    ];
    let body = archive(&members, "gz");
    // Plain routing (Swift on b extracts), and a renamed container (the sidecar extracts, so
    // that the answer names the client's container).
    for (container, landed) in [
        (format!("{u}plain"), format!("{u}plain")),
        (format!("{u}docs"), format!("{u}renamed")),
    ] {
        for accept in [Some("application/json"), None] {
            let got = extract(
                &format!("{url}/{container}/pre/"),
                &token,
                "tar.gz",
                accept,
                &body,
            );
            let want = extract(
                &format!("{url_ref}/{container}/pre/"),
                &token_ref,
                "tar.gz",
                accept,
                &body,
            );
            same_answer(&got, &want, &format!("{container} {accept:?}"));
            assert!(
                want.body_text().contains("400 Bad Request"),
                "{}",
                want.body_text()
            );
        }
        for (path, data) in [
            ("pre/a.txt", &b"first"[..]),
            ("pre/sub/b.txt", &b"second"[..]),
        ] {
            let r = req(
                "GET",
                &format!("{url_b}/{landed}/{path}"),
                &token_b,
                &[],
                b"",
            );
            ok(&r, path);
            assert_eq!(r.body, data);
            assert_eq!(
                req(
                    "HEAD",
                    &format!("{url_a}/{container}/{path}"),
                    &token_a,
                    &[],
                    b""
                )
                .status,
                404
            );
        }
    }
}

/// Archives cut short, corrupt or empty end as Python's `tarfile` (Swift's reader) ends them:
/// errors at the first header, `unexpected end of data` inside a member, and a missing or
/// invalid header after a member simply ends the archive; the whole answer is the reference's.
#[test]
fn damaged_archives_end_like_swift() {
    let [a, b] = shared_pair();
    let u = unique_name("eab").replace('-', "");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_ref, token_ref) = a.auth("test2:tester", "testing").expect("auth reference");
    let members = [
        file(format!("{u}fed-x/a"), &[b'a'; 700]),
        file(format!("{u}loc/b"), &[b'b'; 700]),
    ];
    // Member one: header 0..512, data to 1212, padding to 1536; member two: header to 2048,
    // data to 2748, padding to 3072; then zero blocks.
    let two = archive(&members, "");
    let gz = archive(&members, "gz");
    let bz2 = archive(&members, "bz2");
    let mut garbage_second = two[..1536].to_vec();
    garbage_second.extend_from_slice(&b"garbage!".repeat(64));
    garbage_second.extend_from_slice(&two[2048..]);
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not a header", "tar", b"garbage!".repeat(128)),
        ("not gzip", "tar.gz", b"garbage!".repeat(128)),
        (
            "corrupt gzip",
            "tar.gz",
            [&gz[..20], &b"garbage!".repeat(64)[..]].concat(),
        ),
        (
            "corrupt bzip2",
            "tar.bz2",
            [&bz2[..20], &b"garbage!".repeat(64)[..]].concat(),
        ),
        ("empty", "tar", Vec::new()),
        ("empty gzip", "tar.gz", Vec::new()),
        ("empty bzip2", "tar.bz2", Vec::new()),
        ("no files", "tar", archive(&[], "")),
        ("cut in the first header", "tar", two[..100].to_vec()),
        ("cut in the first data", "tar", two[..1000].to_vec()),
        ("cut in the second header", "tar", two[..1636].to_vec()),
        ("second header invalid", "tar", garbage_second),
        ("cut after the first member", "tar", two[..1536].to_vec()),
        ("cut in the second data", "tar", two[..2148].to_vec()),
        ("cut in the second padding", "tar", two[..2758].to_vec()),
        ("cut without end blocks", "tar", two[..3072].to_vec()),
        ("gzip cut", "tar.gz", gz[..gz.len() / 2].to_vec()),
        ("bzip2 cut", "tar.bz2", bz2[..bz2.len() / 2].to_vec()),
    ];
    for (what, format, body) in cases {
        let got = extract(&url, &token, format, Some("application/json"), &body);
        let want = extract(
            &url_ref,
            &token_ref,
            format,
            Some("application/json"),
            &body,
        );
        assert_eq!(got.status, want.status, "{what}");
        let parsed = |r: &HttpResponse| -> serde_json::Value {
            serde_json::from_slice(r.body_text().trim_start().as_bytes())
                .unwrap_or_else(|e| panic!("{what}: {e}: {}", r.body_text()))
        };
        assert_eq!(parsed(&got), parsed(&want), "{what}");
    }
}

/// An entry streams: a 256 MiB file in an archive sent to a routed container crosses the
/// sidecar while its peak memory stays below 64 MiB, and b holds the same bytes. The test
/// generates the archive as it sends it (`support::stream`).
#[test]
fn large_entries_stream_with_bounded_memory() {
    use std::io::Write;
    use support::stream::{
        connect, download, read_head, read_small_body, request_head, Cleanup, Pattern, BLOCK,
    };
    const SIZE: u64 = 256 << 20;
    const SEED: u64 = 0x5eed_7a12;
    let [a, b] = shared_pair();
    let u = unique_name("eabig").replace('-', "");
    let fed = format!("{u}fed");
    let route = exact_route(&fed);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let _cleanup = Cleanup {
        container_url: format!("{url_b}/{fed}"),
        token: token_b.clone(),
        objects: vec!["big".into()],
    };
    let mut header = tar::Header::new_ustar();
    header.set_path(format!("{fed}/big")).expect("path");
    header.set_size(SIZE);
    header.set_mode(0o644);
    header.set_cksum();
    // Header, data (a multiple of 512 bytes: no padding), two zero blocks.
    let length = 512 + SIZE + 1024;

    let before = sidecar.peak_rss_kib();
    let account_path = url.splitn(4, '/').nth(3).expect("account path");
    let head = request_head(
        "PUT",
        &sidecar.addr(),
        &format!("/{account_path}?extract-archive=tar"),
        &token,
        &[
            ("Content-Length", length.to_string()),
            ("Accept", "application/json".into()),
        ],
    );
    let mut stream = connect(&sidecar.addr());
    stream.write_all(head.as_bytes()).expect("send head");
    stream
        .write_all(header.as_bytes())
        .expect("send tar header");
    let mut pattern = Pattern::new(SEED);
    let mut block = vec![0u8; BLOCK];
    let mut sent = 0u64;
    while sent < SIZE {
        pattern.fill(&mut block);
        stream.write_all(&block).expect("send entry bytes");
        sent += BLOCK as u64;
    }
    stream.write_all(&[0u8; 1024]).expect("send end of archive");
    let mut reader = std::io::BufReader::new(stream);
    let answer = read_head(&mut reader);
    let text = read_small_body(&mut reader, &answer);
    assert_eq!(answer.status, 200, "{text}");
    let outcome: serde_json::Value = serde_json::from_str(text.trim_start()).expect("JSON");
    assert_eq!(outcome["Response Status"], "201 Created", "{text}");
    assert_eq!(outcome["Number Files Created"], 1, "{text}");
    let peak = sidecar.peak_rss_kib();
    assert!(
        peak < 64 * 1024,
        "sidecar peak RSS {peak} KiB (before {before} KiB)"
    );

    let path_b = format!("/{}/{fed}/big", url_b.splitn(4, '/').nth(3).expect("path"));
    let down = download(
        &format!("127.0.0.1:{}", b.proxy_port()),
        &path_b,
        &token_b,
        SEED,
    );
    assert_eq!(down.bytes, SIZE, "bytes on b");
    assert_eq!(down.first_mismatch, None, "first differing byte on b");
}

/// A long extraction is answered as Swift answers it: after 10 s the status line and
/// whitespace come while the archive is still being read (a client waiting on a slow upload is
/// not timed out), then the outcome after `\r\n\r\n`.
#[test]
fn long_extractions_answer_early_with_whitespace() {
    use std::io::Write;
    use support::stream::{connect, read_head, read_small_body, request_head};
    let [a, b] = shared_pair();
    let u = unique_name("easlow").replace('-', "");
    let fed = format!("{u}fed");
    let route = exact_route(&fed);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let body = archive(&[file(format!("{fed}/slow"), &data)], "");
    let account_path = url.splitn(4, '/').nth(3).expect("account path");
    let head = request_head(
        "PUT",
        &sidecar.addr(),
        &format!("/{account_path}?extract-archive=tar"),
        &token,
        &[
            ("Content-Length", body.len().to_string()),
            ("Accept", "application/json".into()),
        ],
    );
    let mut stream = connect(&sidecar.addr());
    stream.write_all(head.as_bytes()).expect("send head");
    let half = body.len() / 2;
    stream
        .write_all(&body[..half])
        .expect("send half the archive");
    // The answer starts while half the archive is still to come.
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let answer = read_head(&mut reader);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    stream.write_all(&body[half..]).expect("send the rest");
    let text = read_small_body(&mut reader, &answer);
    assert!(text.starts_with(' '), "whitespace first: {text:?}");
    let (heartbeat, outcome) = text.split_once("\r\n\r\n").expect("separator");
    assert!(heartbeat.trim().is_empty(), "{heartbeat:?}");
    let outcome: serde_json::Value = serde_json::from_str(outcome).expect("JSON");
    assert_eq!(outcome["Response Status"], "201 Created", "{text}");
    assert_eq!(outcome["Number Files Created"], 1, "{text}");
    let r = req("GET", &format!("{url_b}/{fed}/slow"), &token_b, &[], b"");
    assert!(r.body == data, "the object on b");
}

/// A client the cluster does not know gets Swift's bulk answer (`200`, `401 Unauthorized` in
/// the body), also when the sidecar's own credentials would reach the target, and nothing is
/// written anywhere.
#[test]
fn unknown_clients_are_refused_in_the_answer_like_swift() {
    let [a, b] = shared_pair();
    let u = unique_name("eaauth").replace('-', "");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, _) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_ref, _) = a.auth("test2:tester", "testing").expect("auth reference");
    let body = archive(&[file(format!("{u}fed-x/o"), b"data")], "");
    for accept in [None, Some("application/json"), Some("text/xml")] {
        let got = extract(&url, "AUTH_tk_not_a_token", "tar", accept, &body);
        let want = extract(&url_ref, "AUTH_tk_not_a_token", "tar", accept, &body);
        same_answer(&got, &want, &format!("{accept:?}"));
        assert!(
            want.body_text().contains("401 Unauthorized"),
            "{}",
            want.body_text()
        );
    }
    let r = req("HEAD", &format!("{url_b}/{u}fed-x"), &token_b, &[], b"");
    assert_eq!(r.status, 404, "no container made on b");
}

/// Swift's limits, as the local cluster sets them: more containers to create than
/// `max_containers_per_extraction` stops the extraction, files above `max_file_size` are 413s,
/// and `max_failed_extractions` failures stop it. Own local cluster (the limits are small).
#[test]
fn swift_limits_apply_across_clusters() {
    let local = SwiftCluster::builder("ealimits")
        .bulk("max_containers_per_extraction", 2)
        .bulk("max_failed_extractions", 3)
        .constraint("max_file_size", 1024 * 1024)
        .start()
        .expect("local cluster");
    let [_, b] = shared_pair();
    let u = unique_name("ealim").replace('-', "");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(
        local.proxy_port(),
        Some(&routing_credentials(1, b, &[&route])),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_ref, token_ref) = local
        .auth("test2:tester", "testing")
        .expect("auth reference");

    // Three containers to create, two allowed: the third stops it.
    let three = archive(
        &[
            file(format!("{u}loc/a"), b"a"),
            file(format!("{u}fed-1/b"), b"b"),
            file(format!("{u}fed-2/c"), b"c"),
            file(format!("{u}fed-1/d"), b"d"),
        ],
        "",
    );
    let got = extract(&url, &token, "tar", Some("application/json"), &three);
    let want = extract(
        &url_ref,
        &token_ref,
        "tar",
        Some("application/json"),
        &three,
    );
    same_answer(&got, &want, "max containers");
    assert!(
        want.body_text().contains("More than 2 containers"),
        "{}",
        want.body_text()
    );
    let r = req("HEAD", &format!("{url_b}/{u}fed-1/b"), &token_b, &[], b"");
    assert_eq!(r.status, 200, "the entry before the limit landed on b");

    // Four files above max_file_size (413 each, never sent), the third failure stops it.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let mut members: Vec<Member<'_>> = (0..4)
        .map(|i| file(format!("{u}fed-3/big{i}"), &big))
        .collect();
    members.push(file(format!("{u}fed-3/after"), b"never read"));
    let body = archive(&members, "gz");
    let got = extract(&url, &token, "tar.gz", None, &body);
    let want = extract(&url_ref, &token_ref, "tar.gz", None, &body);
    same_answer(&got, &want, "max file size, max failures");
    assert!(
        want.body_text().contains("413 Request Entity Too Large"),
        "{}",
        want.body_text()
    );
    let r = req(
        "HEAD",
        &format!("{url_b}/{u}fed-3/after"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "nothing after the last allowed failure");
}

/// A known client without rights in the account gets Swift's answer for it (`200`, each entry
/// refused with 403 in the body), also for containers the sidecar reaches with its own
/// credentials, which are not asked; nothing is written anywhere.
#[test]
fn clients_without_rights_get_swifts_per_entry_refusals() {
    let [a, b] = shared_pair();
    let u = unique_name("eaforbid").replace('-', "");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER2);
    // The reference: the same user on the same account, straight to one cluster.
    let (url_a, token_a) = a.auth(TESTER2.0, TESTER2.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let body = archive(
        &[
            file(format!("{u}fed-x/one"), b"1"),
            file(format!("{u}fed-x/two"), b"2"),
            file(format!("{u}loc/three"), b"3"),
        ],
        "",
    );
    for accept in [None, Some("application/json")] {
        let got = extract(&url, &token, "tar", accept, &body);
        let want = extract(&url_a, &token_a, "tar", accept, &body);
        same_answer(&got, &want, &format!("{accept:?}"));
        assert!(
            want.body_text().contains("403 Forbidden"),
            "{}",
            want.body_text()
        );
    }
    let r = req("HEAD", &format!("{url_b}/{u}fed-x"), &token_b, &[], b"");
    assert_eq!(r.status, 404, "no container made on b");
}

/// A target that forgot the sidecar's token (its cache emptied) refuses it once: the sidecar
/// fetches a new one and the extraction goes on, the client never sees the 401. Own target
/// cluster (emptying the shared one's cache would log other tests out).
#[test]
fn a_forgotten_sidecar_token_is_renewed() {
    let [a, _] = shared_pair();
    let target = SwiftCluster::start("eatoken").expect("target cluster");
    let u = unique_name("eatok").replace('-', "");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing_credentials(1, &target, &[&route])),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let fetches = || {
        sidecar.metric(
            "swiftfed_sidecar_auth_token_fetches_total",
            &[("cluster", "b")],
        )
    };
    for (round, forget) in [(1, false), (2, true)] {
        if forget {
            target.forget_tokens().expect("flush the target's cache");
        }
        let body = archive(&[file(format!("{u}fed-{round}/o"), b"data")], "");
        let got = extract(&url, &token, "tar", Some("application/json"), &body);
        let outcome: serde_json::Value =
            serde_json::from_str(got.body_text().trim_start()).expect("JSON");
        assert_eq!(
            outcome["Response Status"],
            "201 Created",
            "round {round}: {}",
            got.body_text()
        );
        assert_eq!(fetches(), round as f64, "token fetches after round {round}");
    }
    let (url_t, token_t) = target.auth(TESTER.0, TESTER.1).expect("auth target");
    for round in [1, 2] {
        let r = req(
            "GET",
            &format!("{url_t}/{u}fed-{round}/o"),
            &token_t,
            &[],
            b"",
        );
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"data"[..]),
            "round {round}"
        );
    }
}

/// Passthrough: the client's own token goes with every container check and entry to the
/// target (here into a renamed container), and the answer names the client's container.
#[test]
fn passthrough_extractions_carry_the_clients_token() {
    let [a, b] = shared_pair();
    let u = unique_name("eapass").replace('-', "");
    let route = format!(
        "- {{match: {{account: AUTH_test, container: {{exact: \"{u}docs\"}}}}, target: {{cluster: b, container: \"{u}renamed\"}}}}"
    );
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&route])),
    );
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_ref, token_ref) = b.auth("test2:tester", "testing").expect("auth reference");
    let url = format!("{}/v1/AUTH_test", sidecar.url());
    let body = archive(
        &[
            file("a.txt".into(), b"first"),
            file("y".repeat(1100), b"too long a name"),
        ],
        "gz",
    );
    let got = extract(
        &format!("{url}/{u}docs/pre"),
        &token_b,
        "tar.gz",
        None,
        &body,
    );
    let want = extract(
        &format!("{url_ref}/{u}docs/pre"),
        &token_ref,
        "tar.gz",
        None,
        &body,
    );
    same_answer(&got, &want, "passthrough");
    assert!(
        want.body_text().contains("Number Files Created: 1"),
        "{}",
        want.body_text()
    );
    let r = req(
        "GET",
        &format!("{url_b}/{u}renamed/pre/a.txt"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"first"[..]));
}
