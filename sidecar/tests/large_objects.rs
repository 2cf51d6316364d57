//! 1 GiB objects through the real sidecar binary into a routed container on cluster b and back:
//! uploaded once sized (`Content-Length`) and once `Transfer-Encoding: chunked`, downloaded
//! back (Swift answers a whole-object GET with `Content-Length`, and the sidecar keeps it),
//! byte-identical, with the sidecar's peak resident memory bounded whatever the object size.
//!
//! The client is plain `std::net::TcpStream` with its own minimal HTTP/1.1. No object is ever
//! held in memory by the test: the bytes are generated on the fly from a seed, hashed while they
//! are generated, and compared with a regeneration of the same stream as they come back.

mod support;

use std::io::BufReader;
use std::time::Instant;

use support::stream::*;
use support::*;
use swiftfed_tests::{shared_pair, unique_name};

const OBJECT_SIZE: u64 = 1 << 30;
/// What the sidecar may use at its peak, after 1 GiB up and down twice.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn one_gib_objects_stream_through_the_sidecar_sized_and_chunked() {
    let test_start = Instant::now();
    let [a, b] = shared_pair();
    let container = unique_name("big");
    let route = exact_route(&container);
    // Passthrough: the client's token is b's, and the sidecar passes it on.
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&route])),
    );
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let via = format!("{}/v1/AUTH_test/{container}", sidecar.url());
    let on_b = format!("{url_b}/{container}");
    let addr = sidecar.addr();
    let path = |object: &str| format!("/v1/AUTH_test/{container}/{object}");

    let cases = [
        ("sized", Framing::Sized, 0x5eed_0001_u64),
        ("chunked", Framing::Chunked, 0x5eed_0002_u64),
    ];
    let _cleanup = Cleanup {
        container_url: on_b.clone(),
        token: token_b.clone(),
        objects: cases.iter().map(|(name, ..)| name.to_string()).collect(),
    };

    let created = req("PUT", &via, &token_b, &[], b"");
    assert_eq!(
        created.status,
        201,
        "container PUT via sidecar: {}",
        created.body_text()
    );

    for (object, framing, seed) in cases {
        // Up through the sidecar.
        let up = upload(&addr, &path(object), &token_b, seed, framing, OBJECT_SIZE);
        assert_eq!(
            up.status, 201,
            "PUT {object} ({framing:?}) via sidecar: {}",
            up.body
        );
        println!(
            "PUT {object} ({framing:?}): 1 GiB in {:.1?} ({:.0} MiB/s), md5 {}",
            up.elapsed,
            mib_per_s(OBJECT_SIZE, up.elapsed),
            up.md5
        );
        assert_eq!(
            up.etag.as_deref(),
            Some(up.md5.as_str()),
            "Swift's ETag for {object} is the MD5 of the bytes sent"
        );

        // It landed on b, whole.
        let head = req("HEAD", &format!("{on_b}/{object}"), &token_b, &[], b"");
        assert_eq!(head.status, 200, "HEAD {object} on b");
        assert_eq!(
            head.header("content-length"),
            Some(OBJECT_SIZE.to_string().as_str()),
            "{object} size on b"
        );
        assert_eq!(
            head.header("etag").map(|e| e.trim_matches('"')),
            Some(up.md5.as_str()),
            "{object} etag on b"
        );

        // Down through the sidecar, compared byte for byte as it streams.
        let down = download(&addr, &path(object), &token_b, seed);
        println!(
            "GET {object}: {} bytes ({:?} response, Content-Length {:?}) in {:.1?} ({:.0} MiB/s), md5 {}",
            down.bytes,
            down.framing,
            down.content_length,
            down.elapsed,
            mib_per_s(down.bytes, down.elapsed),
            down.md5
        );
        assert_eq!(down.bytes, OBJECT_SIZE, "{object}: bytes downloaded");
        assert_eq!(
            down.first_mismatch, None,
            "{object}: first differing byte offset"
        );
        assert_eq!(down.md5, up.md5, "{object}: MD5 of the download");
        assert_eq!(
            down.etag.as_deref(),
            Some(up.md5.as_str()),
            "{object}: ETag on GET"
        );
        assert_eq!(
            (down.framing, down.content_length),
            (Framing::Sized, Some(OBJECT_SIZE)),
            "{object}: Swift's Content-Length survives the sidecar"
        );
        println!(
            "sidecar VmHWM after {object}: {} KiB",
            sidecar.peak_rss_kib()
        );

        // Deleted through the sidecar (one GiB of /dev/shm back), gone from b.
        let deleted = req("DELETE", &format!("{via}/{object}"), &token_b, &[], b"");
        assert_eq!(
            deleted.status,
            204,
            "DELETE {object} via sidecar: {}",
            deleted.body_text()
        );
        assert_eq!(
            req("HEAD", &format!("{on_b}/{object}"), &token_b, &[], b"").status,
            404,
            "{object} still on b"
        );
    }

    // Nothing of it went to a.
    assert_eq!(
        req("HEAD", &format!("{url_a}/{container}"), &token_a, &[], b"").status,
        404,
        "container must not exist on a"
    );
    assert_eq!(
        req("DELETE", &via, &token_b, &[], b"").status,
        204,
        "container DELETE via sidecar"
    );
    assert_eq!(
        req("HEAD", &on_b, &token_b, &[], b"").status,
        404,
        "container still on b"
    );

    let peak_kib = sidecar.peak_rss_kib();
    println!(
        "sidecar peak RSS (VmHWM) after 2 x 1 GiB up and down: {peak_kib} KiB ({:.1} MiB)",
        peak_kib as f64 / 1024.0
    );
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "sidecar peak RSS {peak_kib} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
    println!("total test time: {:.1?}", test_start.elapsed());
}

/// The checking machinery of the test above can fail: a single changed byte is found at its
/// offset however the reads split the stream, the stream depends on the seed, the chunked
/// reader reassembles, and `md5sum` agrees with the md-5 crate.
#[test]
fn the_stream_checks_catch_what_they_claim_to() {
    use md5::{Digest, Md5};

    let mut data = vec![0u8; 4 * BLOCK];
    Pattern::new(7).fill(&mut data);
    let mut again = vec![0u8; 4 * BLOCK];
    Pattern::new(7).fill(&mut again);
    assert_eq!(data, again, "same seed, same bytes");
    Pattern::new(8).fill(&mut again);
    assert_ne!(
        data[..SEGMENT],
        again[..SEGMENT],
        "another seed, other bytes"
    );

    let feed_in_odd_pieces = |bytes: &[u8]| {
        let mut verifier = Verifier::new(7);
        for piece in bytes.chunks(12_345) {
            verifier.feed(piece);
        }
        (verifier.first_mismatch, verifier.md5.finish())
    };
    let (mismatch, digest) = feed_in_odd_pieces(&data);
    assert_eq!(mismatch, None);
    assert_eq!(
        digest,
        format!("{:x}", Md5::digest(&data)),
        "md5sum agrees with md-5"
    );
    let flipped_at = 3 * BLOCK + 777;
    let mut corrupted = data.clone();
    corrupted[flipped_at] ^= 0x01;
    assert_eq!(feed_in_odd_pieces(&corrupted).0, Some(flipped_at as u64));
    // A repeated segment (a re-sent block) differs in its position stamp at least.
    let mut repeated = data.clone();
    repeated.copy_within(..SEGMENT, SEGMENT);
    let found = feed_in_odd_pieces(&repeated)
        .0
        .expect("a repeated segment is a mismatch");
    assert!(
        (SEGMENT as u64..SEGMENT as u64 + 8).contains(&found),
        "found at {found}"
    );

    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let mut reader = BufReader::new(&raw[..]);
    let head = read_head(&mut reader);
    assert_eq!((head.status, head.framing()), (200, Framing::Chunked));
    assert_eq!(read_small_body(&mut reader, &head), "abcde");
    let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    let mut reader = BufReader::new(&cut[..]);
    let head = read_head(&mut reader);
    assert_eq!(
        try_read_body(&mut reader, &head, |_| {}),
        Err("response body ended 7 bytes early (after 3 bytes)".to_string()),
        "a body shorter than its Content-Length is an error"
    );
}
