//! Operations that involve two containers, through the real sidecar binary, against real Swift
//! clusters: segment containers that follow their parent's route.

mod support;

use support::stream::{
    connect, download, mib_per_s, read_head, read_small_body, request_head, upload, Cleanup,
    Framing,
};
use support::*;
use swiftfed_tests::{scratch_dir, shared_pair, swift_cli, unique_name, HttpResponse};

/// Object names of a container, read directly from a cluster (JSON listing).
fn names(url: &str, token: &str, container: &str) -> Vec<String> {
    let r = req(
        "GET",
        &format!("{url}/{container}?format=json"),
        token,
        &[],
        b"",
    );
    if r.status == 404 {
        return vec![];
    }
    ok(&r, "listing");
    let items: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("json listing");
    items
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// `swift upload --segment-size` (SLO, python-swiftclient's default) into a routed container:
/// the segments go to `<container>_segments`, which follows its parent to the target cluster.
#[test]
fn slo_segments_of_a_routed_container_land_with_it_on_the_target() {
    let c = unique_name("slo");
    upload_segmented(&c, &c, &[], "x-static-large-object", "True");
}

/// `swift upload --segment-size` (SLO) into a routed and renamed container: the manifest's
/// segment paths are renamed on the way in and back out (`?multipart-manifest=get`).
#[test]
fn slo_segments_of_a_renamed_container_follow_the_new_name() {
    let c = unique_name("slor");
    let moved = format!("{c}-moved");
    upload_segmented(&c, &moved, &[], "x-static-large-object", "True");
}

/// `swift upload --use-dlo --segment-size` into a routed and renamed container: the segment
/// container follows under the renamed name, the manifest header points at it there, and the
/// client sees its own names back.
#[test]
fn dlo_segments_of_a_renamed_container_follow_the_new_name() {
    let c = unique_name("dlo");
    let moved = format!("{c}-moved");
    upload_segmented(&c, &moved, &["--use-dlo"], "x-object-manifest", "");
}

/// Uploads a 3 MiB+ file in 1 MiB segments to `c` (routed to b as `moved`) through the sidecar,
/// checks where everything landed, the header `marker` the client sees (`value` empty: it names
/// the client's segment container), the download, then deletes it all through the sidecar.
fn upload_segmented(c: &str, moved: &str, flags: &[&str], marker: &str, value: &str) {
    let [a, b] = shared_pair();
    let rename = if moved == c {
        String::new()
    } else {
        format!(", container: \"{moved}\"")
    };
    let route = format!(
        "- {{match: {{account: AUTH_test, container: {{exact: \"{c}\"}}}}, target: {{cluster: b{rename}}}}}"
    );
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let dir = scratch_dir()
        .expect("scratch")
        .join(unique_name("seg-files"));
    std::fs::create_dir_all(&dir).expect("dir");
    let data = pattern(3 * 1024 * 1024 + 12345, 7);
    let file = dir.join("big.bin");
    std::fs::write(&file, &data).expect("write");
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
    let file_arg = file.to_str().expect("utf-8 path");
    let mut upload = vec!["upload", "--segment-size", "1048576"];
    upload.extend_from_slice(flags);
    upload.extend_from_slice(&["--object-name", "big.bin", c, file_arg]);
    cli(&upload);

    // Where it landed: manifest and segments on b, under the renamed names; nothing on a.
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    assert_eq!(names(&url_b, &token_b, moved), vec!["big.bin".to_string()]);
    let segments = names(&url_b, &token_b, &format!("{moved}_segments"));
    assert_eq!(segments.len(), 4, "segments on b: {segments:?}");
    for container in [c.to_string(), format!("{c}_segments")] {
        assert_eq!(
            req("HEAD", &format!("{url_a}/{container}"), &token_a, &[], b"").status,
            404,
            "{container} must not exist on a"
        );
    }
    if value.is_empty() {
        let manifest = req(
            "HEAD",
            &format!("{url_b}/{moved}/big.bin"),
            &token_b,
            &[],
            b"",
        );
        let on_b = manifest.header(marker).unwrap_or_default();
        assert!(
            on_b.starts_with(&format!("{moved}_segments/")),
            "manifest on b points at {on_b:?}"
        );
    }

    // What the client sees: its own names, the whole object.
    let (url, token) = auth_via(&sidecar, TESTER);
    let head = req("HEAD", &format!("{url}/{c}/big.bin"), &token, &[], b"");
    ok(&head, "HEAD through the sidecar");
    let seen = head.header(marker).unwrap_or_default();
    if value.is_empty() {
        assert!(
            seen.starts_with(&format!("{c}_segments/")),
            "client sees {marker}: {seen:?}"
        );
    } else {
        assert_eq!(seen, value, "{marker}");
    }
    assert_eq!(
        head.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    let out = dir.join("back.bin");
    cli(&[
        "download",
        c,
        "big.bin",
        "-o",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(
        std::fs::read(&out).expect("downloaded") == data,
        "downloaded bytes differ"
    );
    if marker == "x-static-large-object" {
        // The manifest names segments by the client's names, and by the target's on b.
        let names_in = |r: HttpResponse| -> Vec<String> {
            let items: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("manifest");
            items
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        };
        let seen = names_in(req(
            "GET",
            &format!("{url}/{c}/big.bin?multipart-manifest=get"),
            &token,
            &[],
            b"",
        ));
        let stored = names_in(req(
            "GET",
            &format!("{url_b}/{moved}/big.bin?multipart-manifest=get"),
            &token_b,
            &[],
            b"",
        ));
        assert_eq!(seen.len(), 4);
        for (s, b) in seen.iter().zip(&stored) {
            assert!(s.starts_with(&format!("/{c}_segments/")), "{s}");
            assert_eq!(
                b.replacen(
                    &format!("/{moved}_segments/"),
                    &format!("/{c}_segments/"),
                    1
                ),
                *s
            );
        }
    }
    let listed = cli(&["list", &format!("{c}_segments")]);
    assert_eq!(listed.lines().count(), 4, "{listed}");

    cli(&["delete", c, "big.bin"]);
    assert!(names(&url_b, &token_b, &format!("{moved}_segments")).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Server-side copy across clusters, compared with the same copy inside one cluster.

/// What a copy's answer or a copied object says that must not depend on where it happened.
fn copy_view(r: &HttpResponse) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.starts_with("x-object-meta-")
                || k == "x-delete-at"
                || k == "content-type"
                || k == "content-length"
                || k == "etag"
                || k == "content-disposition"
                || k == "content-encoding"
                || k == "x-copied-from-account"
                || k == "x-copied-from-last-modified"
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    out.push(("status".into(), r.status.to_string()));
    out.sort();
    out
}

#[test]
fn copies_between_clusters_behave_like_copies_inside_one() {
    let [a, b] = shared_pair();
    let u = unique_name("cp").replace('-', "");
    let fed = format!("{u}fed-dst");
    let local = format!("{u}loc");
    let reference = format!("{u}ref");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    for c in [&local, &reference, &fed] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    let delete_at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 86_400)
        .to_string();
    let data = pattern(300_000, 3);
    ok(
        &req(
            "PUT",
            &format!("{url}/{local}/src"),
            &token,
            &[
                ("Content-Type", "text/x-src"),
                ("X-Object-Meta-Color", "blue"),
                ("X-Object-Meta-Shape", "round"),
                ("Content-Disposition", "attachment; filename=src"),
                ("X-Delete-At", &delete_at),
            ],
            &data,
        ),
        "source",
    );

    // COPY from the local cluster into a container routed to b, vs. the same COPY on a alone.
    let extra = [("X-Object-Meta-Shape", "square")];
    let dest = |c: &str| format!("{c}/copied");
    let mut copy_headers = extra.to_vec();
    let fed_dest = dest(&fed);
    copy_headers.push(("Destination", &fed_dest));
    let crossed = req(
        "COPY",
        &format!("{url}/{local}/src"),
        &token,
        &copy_headers,
        b"",
    );
    let mut copy_headers = extra.to_vec();
    let ref_dest = dest(&reference);
    copy_headers.push(("Destination", &ref_dest));
    let single = req(
        "COPY",
        &format!("{url_a}/{local}/src"),
        &token_a,
        &copy_headers,
        b"",
    );
    assert_eq!(
        crossed.status,
        201,
        "{}\n{}",
        crossed.body_text(),
        sidecar.log()
    );
    assert_eq!(copy_view(&crossed), copy_view(&single), "COPY answers");
    assert_eq!(
        crossed.header("x-copied-from"),
        Some(format!("{local}/src").as_str())
    );
    let on_b = req("GET", &format!("{url_b}/{fed}/copied"), &token_b, &[], b"");
    assert!(on_b.status == 200 && on_b.body == data, "copy on b");
    assert_eq!(
        req("HEAD", &format!("{url_a}/{fed}/copied"), &token_a, &[], b"").status,
        404,
        "nothing on a"
    );
    let got = req("HEAD", &format!("{url}/{fed}/copied"), &token, &[], b"");
    let want = req(
        "HEAD",
        &format!("{url_a}/{reference}/copied"),
        &token_a,
        &[],
        b"",
    );
    assert_eq!(copy_view(&got), copy_view(&want), "copied objects");

    // PUT + X-Copy-From from b back into the local cluster, fresh metadata, new type.
    let fed_src = format!("/{fed}/copied");
    let ref_src = format!("/{reference}/copied");
    let fresh = |src: &str| {
        [
            ("X-Copy-From", src.to_string()),
            ("X-Fresh-Metadata", "true".into()),
            ("Content-Type", "text/x-new".into()),
            ("X-Object-Meta-Only", "this".into()),
        ]
    };
    let pairs = |h: &[(&'static str, String)]| -> Vec<(&'static str, String)> { h.to_vec() };
    let put_copy = |url: &str, token: &str, src: &str| {
        let h = pairs(&fresh(src));
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        req("PUT", url, token, &h, b"")
    };
    let crossed = put_copy(&format!("{url}/{local}/back"), &token, &fed_src);
    let single = put_copy(&format!("{url_a}/{local}/back-ref"), &token_a, &ref_src);
    assert_eq!(crossed.status, 201, "{}", crossed.body_text());
    let strip_lm = |v: Vec<(String, String)>| {
        v.into_iter()
            .filter(|(k, _)| k != "x-copied-from-last-modified")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip_lm(copy_view(&crossed)),
        strip_lm(copy_view(&single)),
        "PUT + X-Copy-From answers"
    );
    let got = req("GET", &format!("{url_a}/{local}/back"), &token_a, &[], b"");
    let want = req(
        "GET",
        &format!("{url_a}/{local}/back-ref"),
        &token_a,
        &[],
        b"",
    );
    assert_eq!(got.body, data);
    assert_eq!(copy_view(&got), copy_view(&want), "fresh copies");

    // Errors as Swift gives them: a missing source, a failed If-Match.
    for (headers, what) in [
        (vec![("Destination", "x/y")], "missing source"),
        (vec![("If-Match", "\"nope\"")], "If-Match"),
    ] {
        let (src, dst) = if what == "missing source" {
            ("nothing-here", fed_dest.clone())
        } else {
            ("src", format!("{fed}/never"))
        };
        let mut h = headers.clone();
        h.retain(|(k, _)| *k != "Destination");
        h.push(("Destination", &dst));
        let crossed = req("COPY", &format!("{url}/{local}/{src}"), &token, &h, b"");
        let mut h = headers.clone();
        h.retain(|(k, _)| *k != "Destination");
        let ref_dst = format!("{reference}/never");
        h.push(("Destination", &ref_dst));
        let single = req("COPY", &format!("{url_a}/{local}/{src}"), &token_a, &h, b"");
        assert_eq!(
            crossed.status,
            single.status,
            "{what}: {}",
            crossed.body_text()
        );
        assert!(crossed.status == 404 || crossed.status == 412, "{what}");
    }
    assert_eq!(
        req("HEAD", &format!("{url_b}/{fed}/never"), &token_b, &[], b"").status,
        404
    );

    // python-swiftclient's `swift copy` across clusters, then a byte-identical download.
    let out = swift_cli(
        &sidecar.auth_url(),
        TESTER.0,
        TESTER.1,
        &["copy", "-d", &format!("/{fed}/by-cli"), &local, "src"],
    )
    .expect("swift copy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = req("GET", &format!("{url_b}/{fed}/by-cli"), &token_b, &[], b"");
    assert_eq!(cli.body, data, "swift copy landed on b");
}

/// A copy streams: a 1 GiB object crosses clusters while the sidecar's peak memory stays below
/// 64 MiB, and the copy read back from b is the same bytes. The test holds no object in memory
/// either (`support::stream`).
#[test]
fn cross_cluster_copies_stream() {
    const SIZE: u64 = 1 << 30;
    const SEED: u64 = 0x5eed_c0b1;
    let [a, b] = shared_pair();
    let u = unique_name("big").replace('-', "");
    let fed = format!("{u}fed");
    let local = format!("{u}loc");
    let route = exact_route(&fed);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    ok(
        &req("PUT", &format!("{url}/{fed}"), &token, &[], b""),
        "fed",
    );
    ok(
        &req("PUT", &format!("{url_a}/{local}"), &token_a, &[], b""),
        "local",
    );
    // Swift's devices are in RAM: both 1 GiB objects go, whatever happens.
    let _cleanup = [
        Cleanup {
            container_url: format!("{url_a}/{local}"),
            token: token_a.clone(),
            objects: vec!["big".into()],
        },
        Cleanup {
            container_url: format!("{url_b}/{fed}"),
            token: token_b.clone(),
            objects: vec!["big".into()],
        },
    ];
    let path_of = |base: &str, rest: &str| {
        let after_host = base.splitn(4, '/').nth(3).unwrap_or_default();
        format!("/{after_host}/{rest}")
    };
    let addr_a = format!("127.0.0.1:{}", a.proxy_port());
    let addr_b = format!("127.0.0.1:{}", b.proxy_port());
    // Straight to a: the upload does not pass the sidecar.
    let source = format!("{local}/big");
    let up = upload(
        &addr_a,
        &path_of(&url_a, &source),
        &token_a,
        SEED,
        Framing::Sized,
        SIZE,
    );
    assert_eq!(up.status, 201, "upload: {}", up.body);

    let before = sidecar.peak_rss_kib();
    let start = std::time::Instant::now();
    let copy_path = path_of(&url, &format!("{fed}/big"));
    let head = request_head(
        "PUT",
        &sidecar.addr(),
        &copy_path,
        &token,
        &[
            ("X-Copy-From", source.clone()),
            ("Content-Length", "0".into()),
        ],
    );
    let mut stream = connect(&sidecar.addr());
    std::io::Write::write_all(&mut stream, head.as_bytes()).expect("send COPY");
    let mut reader = std::io::BufReader::new(stream);
    let answer = read_head(&mut reader);
    let text = read_small_body(&mut reader, &answer);
    assert_eq!(answer.status, 201, "{text}");
    let copied_in = start.elapsed();
    let peak = sidecar.peak_rss_kib();
    println!(
        "1 GiB cross-cluster copy in {copied_in:.1?} ({:.0} MiB/s), sidecar VmHWM {peak} KiB \
         (before {before} KiB)",
        mib_per_s(SIZE, copied_in)
    );
    assert!(
        peak < 64 * 1024,
        "sidecar peak RSS {peak} KiB (before the copy {before} KiB)"
    );

    // Read back from b directly: every byte, and its MD5, as uploaded.
    let down = download(
        &addr_b,
        &path_of(&url_b, &format!("{fed}/big")),
        &token_b,
        SEED,
    );
    assert_eq!(down.bytes, SIZE, "bytes on b");
    assert_eq!(down.first_mismatch, None, "first differing byte on b");
    assert_eq!(down.md5, up.md5, "MD5 of the copy read back from b");
    assert_eq!(down.etag.as_deref(), Some(up.md5.as_str()), "b's ETag");
}

/// A copy inside one cluster whose source is the sidecar's stand-in (a DLO with segments in
/// another cluster, a link to another cluster) copies what it stands for, as Swift copies its
/// own DLOs and links; `?multipart-manifest=get` / `?symlink=get` copy the stand-in itself.
#[test]
fn copies_inside_one_cluster_copy_what_a_stand_in_stands_for() {
    let [a, b] = shared_pair();
    let u = unique_name("si").replace('-', "");
    let route = exact_route(&format!("{u}far"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (near, far) = (format!("{u}near"), format!("{u}far"));
    for c in [&near, &far] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    let put = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        ok(
            &req("PUT", &format!("{url}/{path}"), &token, headers, body),
            path,
        );
    };
    put(&format!("{far}/seg/000"), &[], &[b'x'; 700]);
    put(&format!("{far}/seg/001"), &[], b"tail");
    let whole = [vec![b'x'; 700], b"tail".to_vec()].concat();
    put(&format!("{far}/t"), &[], b"the target's bytes");
    let segs = format!("{far}/seg/");
    let target = format!("{far}/t");
    put(&format!("{near}/dlo"), &[("X-Object-Manifest", &segs)], b"");
    put(
        &format!("{near}/link"),
        &[("X-Symlink-Target", &target)],
        b"",
    );

    let copy = |from: &str, to: &str| {
        let r = req(
            "COPY",
            &format!("{url}/{near}/{from}"),
            &token,
            &[("Destination", &format!("{near}/{to}"))],
            b"",
        );
        ok(&r, to);
        assert_eq!(
            r.header("x-copied-from"),
            Some(format!("{near}/{}", from.split('?').next().unwrap_or(from)).as_str())
        );
    };
    // What the copy is, read directly from the cluster it lives in: no stand-in left.
    let stored = |name: &str, expected: &[u8]| {
        let r = req("GET", &format!("{url_a}/{near}/{name}"), &token_a, &[], b"");
        ok(&r, name);
        let marks: Vec<&String> = r
            .headers
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.to_ascii_lowercase().starts_with("x-object-meta-swiftfed"))
            .collect();
        assert!(marks.is_empty(), "{name} is a plain object: {marks:?}");
        assert!(
            r.body == expected,
            "{name} holds {} bytes, not the {} expected",
            r.body.len(),
            expected.len()
        );
    };
    copy("dlo", "dlo-copy");
    stored("dlo-copy", &whole);
    copy("link", "link-copy");
    stored("link-copy", b"the target's bytes");
    // The stand-ins themselves, when asked for: still read as what they stand for.
    copy("dlo?multipart-manifest=get", "dlo-manifest");
    copy("link?symlink=get", "link-link");
    let read = |name: &str| req("GET", &format!("{url}/{near}/{name}"), &token, &[], b"");
    assert!(read("dlo-manifest").body == whole);
    assert_eq!(read("link-link").body, b"the target's bytes");
    let link = req(
        "HEAD",
        &format!("{url}/{near}/link-link?symlink=get"),
        &token,
        &[],
        b"",
    );
    assert_eq!(link.header("x-symlink-target"), Some(target.as_str()));
    // A copy of a stand-in is a copy: the segments going away leaves it whole.
    for s in ["seg/000", "seg/001"] {
        ok(
            &req("DELETE", &format!("{url}/{far}/{s}"), &token, &[], b""),
            s,
        );
    }
    assert!(
        read("dlo-copy").body == whole,
        "the copy outlives the segments"
    );
}

/// The access-log line of `method path`, once the sidecar has written it.
fn logged_line(sidecar: &Sidecar, method: &str, path: &str) -> String {
    let wanted = format!("method={method} path={path} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = sidecar.log();
        if let Some(line) = log.lines().find(|l| l.contains(&wanted)) {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for {wanted:?}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Answers the sidecar makes itself (here a DLO assembled from another cluster) are logged
/// when their body ends, with the bytes really sent, and as incomplete when the client leaves.
#[test]
fn the_sidecars_own_answers_are_logged_when_they_end() {
    use std::io::{Read, Write};
    let [a, b] = shared_pair();
    let u = unique_name("lg").replace('-', "");
    let route = exact_route(&format!("{u}far"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (near, far) = (format!("{u}near"), format!("{u}far"));
    for c in [&near, &far] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    let segment = vec![b'x'; 4 << 20];
    for i in 0..4 {
        let path = format!("{url}/{far}/seg/{i:03}");
        ok(&req("PUT", &path, &token, &[], &segment), &path);
    }
    let total = 4 * segment.len();
    let segs = format!("{far}/seg/");
    let manifest = [("X-Object-Manifest", segs.as_str())];
    ok(
        &req(
            "PUT",
            &format!("{url}/{near}/whole"),
            &token,
            &manifest,
            b"",
        ),
        "manifest",
    );
    ok(
        &req("PUT", &format!("{url}/{near}/cut"), &token, &manifest, b""),
        "manifest",
    );

    let read = req("GET", &format!("{url}/{near}/whole"), &token, &[], b"");
    assert_eq!((read.status, read.body.len()), (200, total));
    let line = logged_line(&sidecar, "GET", &format!("/v1/AUTH_test/{near}/whole"));
    assert!(
        line.contains(&format!(" status=200 bytes_in=0 bytes_out={total} ")),
        "{line}"
    );
    assert!(line.ends_with("complete=true"), "{line}");

    // A client that reads the head and a little of the body, then goes away.
    let mut s = std::net::TcpStream::connect(sidecar.addr()).expect("connect");
    let request = format!(
        "GET /v1/AUTH_test/{near}/cut HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\r\n"
    );
    s.write_all(request.as_bytes()).expect("send");
    let mut got = vec![0u8; 64 << 10];
    s.read_exact(&mut got)
        .expect("the head and some of the body");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got[..64])
    );
    drop(s);
    let line = logged_line(&sidecar, "GET", &format!("/v1/AUTH_test/{near}/cut"));
    assert!(line.ends_with("complete=false"), "{line}");
    let sent: usize = line
        .split(" bytes_out=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("bytes_out in the line");
    assert!(sent < total, "{line}");
}
