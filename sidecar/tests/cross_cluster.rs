//! Operations that involve two containers, through the real sidecar binary, against real Swift
//! clusters: segment containers that follow their parent's route.

mod support;

use support::*;
use swiftfed_tests::{scratch_dir, shared_pair, swift_cli, unique_name, HttpResponse};

fn ok(r: &HttpResponse, what: &str) {
    assert!(
        r.status / 100 == 2,
        "{what}: {} {}",
        r.status,
        r.body_text()
    );
}

/// Deterministic bytes that differ everywhere (a repeated block would hide misplaced segments).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

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
    let listed = cli(&["list", &format!("{c}_segments")]);
    assert_eq!(listed.lines().count(), 4, "{listed}");

    cli(&["delete", c, "big.bin"]);
    assert!(names(&url_b, &token_b, &format!("{moved}_segments")).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
