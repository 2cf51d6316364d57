//! rclone (the Debian package, installed by scripts/install-test-deps), used as a new user would,
//! through the real sidecar with a container routed to another cluster: a tree with a file above
//! the chunk size (a DLO whose segments go to `<container>_segments`, which follows its
//! container), `rclone check`, a download, server-side `copyto` across clusters and inside one,
//! the account listing, and `rclone purge` — checking where the bytes physically are.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;
use swiftfed_tests::{scratch_dir, shared_pair, unique_name};

/// Runs rclone with a `fed:` remote (tempauth through the sidecar) and no user config.
fn rclone(sidecar: &Sidecar, config: &Path, args: &[&str]) -> String {
    let out = Command::new("rclone")
        .arg("--config")
        .arg(config)
        .args(["--retries", "1", "--low-level-retries", "1"])
        .args(args)
        .env("RCLONE_CONFIG_FED_TYPE", "swift")
        .env("RCLONE_CONFIG_FED_AUTH", sidecar.auth_url())
        .env("RCLONE_CONFIG_FED_USER", TESTER.0)
        .env("RCLONE_CONFIG_FED_KEY", TESTER.1)
        .output()
        .expect("rclone runs (scripts/install-test-deps installs it)");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}\n{}\nsidecar log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sidecar.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn names(url: &str, token: &str, container: &str) -> Vec<String> {
    let r = req("GET", &format!("{url}/{container}"), token, &[], b"");
    if r.status == 404 {
        return vec![];
    }
    ok(&r, "listing");
    r.body_text().lines().map(str::to_string).collect()
}

#[test]
fn rclone_works_across_clusters() {
    let [a, b] = shared_pair();
    let u = unique_name("rc").replace('-', "");
    let data = format!("{u}data");
    let local = format!("{u}local");
    let route = exact_route(&data);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let dir = scratch_dir().expect("scratch").join(unique_name("rclone"));
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("tree");
    let config = dir.join("rclone.conf");
    std::fs::write(&config, b"").expect("empty config");
    let files: [(&str, Vec<u8>); 3] = [
        ("small.txt", b"hello from rclone\n".to_vec()),
        ("sub/mid.bin", pattern(300_000, 1)),
        ("big.bin", pattern(3 * 1024 * 1024 + 7, 2)),
    ];
    for (name, bytes) in &files {
        std::fs::write(tree.join(name), bytes).expect("file");
    }
    let tree_arg = tree.to_str().expect("utf-8 path");
    let remote = format!("fed:{data}");

    // Upload: big.bin above the chunk size becomes a DLO with segments in <data>_segments.
    rclone(
        &sidecar,
        &config,
        &["copy", "--swift-chunk-size", "1Mi", tree_arg, &remote],
    );
    let mut on_b = names(&url_b, &token_b, &data);
    on_b.sort();
    assert_eq!(on_b, vec!["big.bin", "small.txt", "sub/mid.bin"]);
    let segments = names(&url_b, &token_b, &format!("{data}_segments"));
    assert_eq!(segments.len(), 4, "segments on b: {segments:?}");
    assert!(names(&url_a, &token_a, &data).is_empty(), "nothing on a");
    assert!(names(&url_a, &token_a, &format!("{data}_segments")).is_empty());

    rclone(&sidecar, &config, &["check", tree_arg, &remote]);
    let back = dir.join("back");
    rclone(
        &sidecar,
        &config,
        &["copy", &remote, back.to_str().expect("utf-8 path")],
    );
    for (name, bytes) in &files {
        assert!(
            std::fs::read(back.join(name)).expect("downloaded") == *bytes,
            "{name} differs"
        );
    }

    // Server-side copies: from b into a local container, and inside b.
    ok(
        &req("PUT", &format!("{url_a}/{local}"), &token_a, &[], b""),
        "local container",
    );
    rclone(
        &sidecar,
        &config,
        &[
            "copyto",
            &format!("{remote}/sub/mid.bin"),
            &format!("fed:{local}/mid-copy.bin"),
        ],
    );
    let copied = req(
        "GET",
        &format!("{url_a}/{local}/mid-copy.bin"),
        &token_a,
        &[],
        b"",
    );
    assert!(copied.body == files[1].1, "cross-cluster copy on a");
    rclone(
        &sidecar,
        &config,
        &[
            "copyto",
            &format!("{remote}/small.txt"),
            &format!("{remote}/small-copy.txt"),
        ],
    );
    let copied = req(
        "GET",
        &format!("{url_b}/{data}/small-copy.txt"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!(copied.body, files[0].1, "same-cluster copy on b");

    // The account lists the routed containers with the local one.
    let listed = rclone(&sidecar, &config, &["lsf", "fed:"]);
    for c in [&data, &format!("{data}_segments"), &local] {
        assert!(
            listed.lines().any(|l| l == format!("{c}/")),
            "{c} in {listed}"
        );
    }

    // Purge: every object, segment and the container go from b.
    rclone(&sidecar, &config, &["purge", &remote]);
    assert_eq!(
        req("HEAD", &format!("{url_b}/{data}"), &token_b, &[], b"").status,
        404,
        "container purged on b"
    );
    assert!(names(&url_b, &token_b, &format!("{data}_segments")).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
