//! Streaming big objects without holding them: deterministic data generated and hashed on the
//! fly (`Pattern`, `Verifier`, `StreamMd5`), a minimal HTTP/1.1 client over `TcpStream` that
//! streams request and response bodies (`upload`, `download`), and `Cleanup` of the objects a
//! test made. Used by the tests that move 1 GiB objects.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use swiftfed_tests::http_request;

/// Client write/read buffer: large, so the client is not what limits throughput.
pub const BLOCK: usize = 256 * 1024;
/// A socket operation that stalls this long means a hang, not a slow transfer.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Deterministic data

/// Pseudo-random bytes, reproducible from a seed, and cheap enough to produce at wire speed
/// even in an unoptimized test build: a 1 MiB table of splitmix64 output (made once per stream)
/// from which the stream copies 4 KiB segments at offsets splitmix64 picks, each segment stamped
/// with its own position in the stream, so that no two segments are alike and a lost, repeated,
/// shifted or reordered segment shows.
pub struct Pattern {
    pub table: Vec<u8>,
    pub rng: u64,
    pub position: u64,
}

pub const TABLE: usize = 1 << 20;
pub const SEGMENT: usize = 4096;
// `%` rather than `is_multiple_of`, which needs Rust 1.87 (the workspace's MSRV is 1.85).
#[allow(clippy::manual_is_multiple_of)]
const _: () = assert!(BLOCK % SEGMENT == 0);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut pattern = Pattern {
            table: vec![0; TABLE],
            rng: seed,
            position: 0,
        };
        for i in 0..TABLE / 8 {
            let word = pattern.next();
            pattern.table[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        pattern
    }

    /// splitmix64.
    pub fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `out` (whole segments) with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        assert_eq!(out.len() % SEGMENT, 0, "pattern blocks are whole segments");
        for segment in out.chunks_exact_mut(SEGMENT) {
            let from = (self.next() % (TABLE - SEGMENT + 1) as u64) as usize;
            segment.copy_from_slice(&self.table[from..from + SEGMENT]);
            segment[..8].copy_from_slice(&self.position.to_le_bytes());
            self.position += SEGMENT as u64;
        }
    }
}

/// Checks a byte stream against the pattern it should be, wherever its reads happen to split.
pub struct Verifier {
    pub pattern: Pattern,
    pub expected: Vec<u8>,
    /// Position inside `expected` of the next byte to compare.
    pub pos: usize,
    pub offset: u64,
    pub first_mismatch: Option<u64>,
    pub md5: StreamMd5,
}

impl Verifier {
    pub fn new(seed: u64) -> Verifier {
        Verifier {
            pattern: Pattern::new(seed),
            expected: vec![0; BLOCK],
            pos: BLOCK,
            offset: 0,
            first_mismatch: None,
            md5: StreamMd5::new(),
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        self.md5.update(data);
        while !data.is_empty() {
            if self.pos == self.expected.len() {
                self.pattern.fill(&mut self.expected);
                self.pos = 0;
            }
            let n = data.len().min(self.expected.len() - self.pos);
            let want = &self.expected[self.pos..self.pos + n];
            // Slice equality is a memcmp; the byte-wise search only runs on a difference.
            if self.first_mismatch.is_none() && data[..n] != *want {
                let i = data[..n].iter().zip(want).position(|(a, b)| a != b);
                self.first_mismatch = i.map(|i| self.offset + i as u64);
            }
            self.pos += n;
            self.offset += n as u64;
            data = &data[n..];
        }
    }
}

/// The MD5 of a byte stream, computed while it streams by coreutils' `md5sum` in a child
/// process. Not the md-5 crate: its hashing code is all `#[inline]`, so in a test build it is
/// compiled at this crate's opt-level 0 and hashes at about 40 MB/s, which would make the test
/// client the bottleneck (28 s per GiB); md5sum does several hundred MB/s on the other core.
pub struct StreamMd5 {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
}

impl StreamMd5 {
    pub fn new() -> StreamMd5 {
        let mut child = Command::new("md5sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn md5sum (coreutils)");
        let stdin = child.stdin.take().expect("md5sum stdin");
        // Best effort: a 1 MiB pipe takes a whole client block per write.
        unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        StreamMd5 {
            child,
            stdin: Some(stdin),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.stdin
            .as_mut()
            .expect("md5sum still open")
            .write_all(data)
            .expect("feed md5sum");
    }

    /// Lowercase hex digest.
    pub fn finish(&mut self) -> String {
        drop(self.stdin.take());
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("md5sum stdout")
            .read_to_string(&mut out)
            .expect("read md5sum output");
        let status = self.child.wait().expect("wait for md5sum");
        assert!(status.success(), "md5sum failed: {status}");
        let digest = out
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            digest.len() == 32 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "md5sum printed {out:?}"
        );
        digest
    }
}

impl Drop for StreamMd5 {
    fn drop(&mut self) {
        // Only if `finish` was not reached (a failing test): stop our own child.
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal streaming HTTP/1.1 client

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    Sized,
    Chunked,
}

pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn framing(&self) -> Framing {
        match self.header("transfer-encoding") {
            Some(te) if te.to_ascii_lowercase().contains("chunked") => Framing::Chunked,
            _ => Framing::Sized,
        }
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
        })
    }

    /// Swift's ETag without the quotes it may carry.
    pub fn etag(&self) -> Option<String> {
        self.header("etag").map(|e| e.trim_matches('"').to_string())
    }
}

pub fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(SOCKET_TIMEOUT))
        .expect("write timeout");
    stream
}

pub fn request_head(
    method: &str,
    addr: &str,
    path: &str,
    token: &str,
    extra: &[(&str, String)],
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\nConnection: close\r\n"
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Reads a final response head (interim 1xx responses are skipped).
pub fn try_read_head(reader: &mut impl BufRead) -> Result<Head, String> {
    loop {
        let status_line = next_line(reader)
            .map_err(|e| format!("reading the status line: {e}"))?
            .ok_or("connection closed before a response head")?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let line = next_line(reader)
                .map_err(|e| format!("reading the response head: {e}"))?
                .ok_or("connection closed inside the response head")?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        if !(100..200).contains(&status) {
            return Ok(Head { status, headers });
        }
    }
}

pub fn read_head(reader: &mut impl BufRead) -> Head {
    try_read_head(reader).unwrap_or_else(|e| panic!("{e}"))
}

/// One CRLF-terminated line without its terminator; `None` at EOF.
pub fn next_line(reader: &mut (impl BufRead + ?Sized)) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "line cut off or not CRLF-terminated: {:?}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    line.truncate(line.len() - 2);
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Streams a response body (sized or chunked, as announced in `head`) into `sink`, in reads of
/// at most `BLOCK` bytes; returns the number of body bytes.
pub fn read_body(reader: &mut impl BufRead, head: &Head, sink: impl FnMut(&[u8])) -> u64 {
    try_read_body(reader, head, sink).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_read_body(
    reader: &mut impl BufRead,
    head: &Head,
    mut sink: impl FnMut(&[u8]),
) -> Result<u64, String> {
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    let mut copy = |reader: &mut dyn Read, mut left: u64, total: &mut u64| {
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = reader
                .read(&mut buf[..want])
                .map_err(|e| format!("reading the response body after {total} bytes: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "response body ended {left} bytes early (after {total} bytes)"
                ));
            }
            sink(&buf[..n]);
            left -= n as u64;
            *total += n as u64;
        }
        Ok(())
    };
    let line = |reader: &mut dyn BufRead, what: &str, total: u64| match next_line(reader) {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(format!(
            "connection closed before {what} (after {total} bytes)"
        )),
        Err(e) => Err(format!("reading {what} (after {total} bytes): {e}")),
    };
    match head.framing() {
        Framing::Sized => {
            let length = head
                .content_length()
                .ok_or("a sized response without Content-Length")?;
            copy(reader, length, &mut total)?;
        }
        Framing::Chunked => loop {
            let size_line = line(reader, "a chunk size line", total)?;
            let size_text = size_line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size line {size_line:?} after {total} bytes"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !line(reader, "the end of the chunked body", total)?.is_empty() {}
                break;
            }
            copy(reader, size, &mut total)?;
            let crlf = line(reader, "the CRLF after a chunk", total)?;
            if !crlf.is_empty() {
                return Err(format!("chunk not followed by CRLF: {crlf:?}"));
            }
        },
    }
    Ok(total)
}

/// A small response body as text (error pages, PUT answers).
pub fn read_small_body(reader: &mut impl BufRead, head: &Head) -> String {
    let mut body = Vec::new();
    read_body(reader, head, |d| body.extend_from_slice(d));
    String::from_utf8_lossy(&body).into_owned()
}

pub struct Upload {
    pub status: u16,
    pub etag: Option<String>,
    pub body: String,
    /// MD5 of exactly the bytes written.
    pub md5: String,
    pub elapsed: Duration,
}

/// PUTs `size` bytes (whole 4 KiB segments) of `Pattern::new(seed)` to `path`, generated and
/// hashed on the fly.
pub fn upload(
    addr: &str,
    path: &str,
    token: &str,
    seed: u64,
    framing: Framing,
    size: u64,
) -> Upload {
    assert_eq!(
        size % SEGMENT as u64,
        0,
        "uploads are whole pattern segments"
    );
    let start = Instant::now();
    let stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::with_capacity(BLOCK, stream);
    let framing_header = match framing {
        Framing::Sized => ("Content-Length", size.to_string()),
        Framing::Chunked => ("Transfer-Encoding", "chunked".to_string()),
    };
    let head = request_head(
        "PUT",
        addr,
        path,
        token,
        &[
            framing_header,
            ("Content-Type", "application/octet-stream".into()),
        ],
    );
    writer.write_all(head.as_bytes()).expect("send PUT head");

    let mut pattern = Pattern::new(seed);
    let mut md5 = StreamMd5::new();
    let mut data = vec![0u8; BLOCK];
    // One write per block, chunk framing included.
    let mut wire = Vec::with_capacity(BLOCK + 32);
    let mut sent = 0u64;
    let mut send_error = None;
    while sent < size {
        let n = (size - sent).min(BLOCK as u64) as usize;
        pattern.fill(&mut data[..n]);
        md5.update(&data[..n]);
        let block: &[u8] = match framing {
            Framing::Sized => &data[..n],
            Framing::Chunked => {
                wire.clear();
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&data[..n]);
                wire.extend_from_slice(b"\r\n");
                &wire
            }
        };
        if let Err(e) = writer.write_all(block) {
            send_error = Some(format!("body write failed after {sent} bytes: {e}"));
            break;
        }
        sent += n as u64;
    }
    if send_error.is_none() && framing == Framing::Chunked {
        if let Err(e) = writer.write_all(b"0\r\n\r\n") {
            send_error = Some(format!("last-chunk write failed: {e}"));
        }
    }
    let response = match (try_read_head(&mut reader), send_error) {
        (Ok(head), None) => head,
        // The far end answered early (and closed): its answer explains more than EPIPE.
        (Ok(head), Some(e)) => panic!(
            "PUT {path}: {e}; the answer was {} {}",
            head.status,
            read_small_body(&mut reader, &head)
        ),
        (Err(no_answer), Some(e)) => panic!("PUT {path}: {e}; and no answer: {no_answer}"),
        (Err(no_answer), None) => panic!("PUT {path}: body sent, but no answer: {no_answer}"),
    };
    let body = read_small_body(&mut reader, &response);
    Upload {
        status: response.status,
        etag: response.etag(),
        body,
        md5: md5.finish(),
        elapsed: start.elapsed(),
    }
}

pub struct Download {
    pub framing: Framing,
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    pub bytes: u64,
    pub md5: String,
    pub first_mismatch: Option<u64>,
    pub elapsed: Duration,
}

/// GETs `path`, hashing the body and comparing it with `Pattern::new(seed)` as it streams in.
pub fn download(addr: &str, path: &str, token: &str, seed: u64) -> Download {
    let start = Instant::now();
    let mut stream = connect(addr);
    stream
        .write_all(request_head("GET", addr, path, token, &[]).as_bytes())
        .expect("send GET head");
    let mut reader = BufReader::with_capacity(BLOCK, stream);
    let head = read_head(&mut reader);
    assert_eq!(
        head.status,
        200,
        "GET {path}: {}",
        read_small_body(&mut reader, &head)
    );
    let mut verifier = Verifier::new(seed);
    let bytes = read_body(&mut reader, &head, |d| verifier.feed(d));
    Download {
        framing: head.framing(),
        content_length: head.content_length(),
        etag: head.etag(),
        bytes,
        md5: verifier.md5.finish(),
        first_mismatch: verifier.first_mismatch,
        elapsed: start.elapsed(),
    }
}

pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Cleanup

/// Deletes the test's objects and container on cluster b directly, whatever happens to the
/// test: Swift's devices are on /dev/shm and each object is 1 GiB of RAM.
pub struct Cleanup {
    pub container_url: String,
    pub token: String,
    pub objects: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let auth = [("X-Auth-Token", self.token.as_str())];
        for object in &self.objects {
            let _ = http_request(
                "DELETE",
                &format!("{}/{object}", self.container_url),
                &auth,
                b"",
            );
        }
        let _ = http_request("DELETE", &self.container_url, &auth, b"");
    }
}
