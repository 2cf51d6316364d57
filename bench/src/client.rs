//! The load client: plain HTTP/1.1 over tokio sockets, identical for every candidate, lean
//! enough that it costs the proxy under test as little CPU as possible on this small machine.
//!
//! Every transfer is checked: status codes, body lengths, GET bodies byte for byte against the
//! origin's pattern, and PUT bodies by the count the origin reports back (`X-Bytes-Received`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub type Error = String;

/// What a request's response said, once its head is read.
#[derive(Debug, Default, Clone)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
    pub bytes_received: Option<u64>,
}

/// One keep-alive connection with its read buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    pub async fn connect(addr: &str, read_buf: usize) -> Result<Conn, Error> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        Conn::from_stream(stream, read_buf)
    }

    /// A connection whose kernel receive buffer is small, so a slow reader pushes back on the
    /// proxy quickly instead of being absorbed by loopback buffers.
    pub async fn connect_small_rcvbuf(addr: &str, rcvbuf: u32) -> Result<Conn, Error> {
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.set_recv_buffer_size(rcvbuf)
            .map_err(|e| e.to_string())?;
        let a = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let stream = sock
            .connect(a)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        Conn::from_stream(stream, 16 * 1024)
    }

    fn from_stream(stream: TcpStream, read_buf: usize) -> Result<Conn, Error> {
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: vec![0; read_buf],
            start: 0,
            end: 0,
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("send: {e}"))
    }

    async fn fill(&mut self) -> Result<usize, Error> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                let n = self.buf.len();
                self.buf.resize(n * 2, 0);
            }
        }
        let n = self
            .stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        self.end += n;
        Ok(n)
    }

    /// Reads a response head (skipping `1xx` interim responses).
    pub async fn read_head(&mut self) -> Result<Head, Error> {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 128];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let mut head = Head {
                            status: resp.code.unwrap_or(0),
                            ..Head::default()
                        };
                        for h in resp.headers.iter() {
                            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                            if h.name.eq_ignore_ascii_case("content-length") {
                                head.content_length = v.parse().ok();
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                head.chunked = v.to_ascii_lowercase().contains("chunked");
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                head.close = v.eq_ignore_ascii_case("close");
                            } else if h.name.eq_ignore_ascii_case("x-bytes-received") {
                                head.bytes_received = v.parse().ok();
                            }
                        }
                        Some((len, head))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => return Err(format!("bad response head: {e}")),
                }
            };
            match parsed {
                Some((len, head)) => {
                    self.start += len;
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    return Ok(head);
                }
                None => {
                    self.fill().await?;
                }
            }
        }
    }

    /// Reads the body that `head` announces, handing each piece to `sink`. Returns its length.
    pub async fn read_body(
        &mut self,
        head: &Head,
        head_request: bool,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<u64, Error> {
        if head_request || head.status == 204 || head.status == 304 {
            return Ok(0);
        }
        if head.chunked {
            return self.read_chunked(sink).await;
        }
        let Some(mut left) = head.content_length else {
            return Err("response without Content-Length or chunked encoding".into());
        };
        let total = left;
        while left > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let n = ((self.end - self.start) as u64).min(left) as usize;
            sink(&self.buf[self.start..self.start + n]);
            self.start += n;
            left -= n as u64;
        }
        Ok(total)
    }

    async fn read_line(&mut self) -> Result<String, Error> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = String::from_utf8_lossy(&self.buf[self.start..self.start + i]).into();
                self.start += i + 2;
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn read_chunked(&mut self, mut sink: impl FnMut(&[u8])) -> Result<u64, Error> {
        let mut total = 0;
        loop {
            let line = self.read_line().await?;
            let size = u64::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // trailers, up to the empty line
                while !self.read_line().await?.is_empty() {}
                return Ok(total);
            }
            let mut left = size;
            while left > 0 {
                if self.start == self.end {
                    self.fill().await?;
                }
                let n = ((self.end - self.start) as u64).min(left) as usize;
                sink(&self.buf[self.start..self.start + n]);
                self.start += n;
                left -= n as u64;
            }
            total += size;
            if !self.read_line().await?.is_empty() {
                return Err("chunk not followed by CRLF".into());
            }
        }
    }

    /// Reads at most `max` body bytes that are already there or arrive next (slow readers).
    pub async fn read_some(&mut self, max: usize) -> Result<usize, Error> {
        if self.start == self.end {
            let cap = self.buf.len().min(max);
            let n = self
                .stream
                .read(&mut self.buf[..cap])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            return Ok(n);
        }
        let n = (self.end - self.start).min(max);
        self.start += n;
        Ok(n)
    }
}

/// Checks a body against the origin's pattern, wherever reads split it.
pub struct Checker {
    pattern: Arc<Vec<u8>>,
    offset: usize,
    pub bad_at: Option<u64>,
    seen: u64,
}

impl Checker {
    pub fn new(pattern: Arc<Vec<u8>>) -> Checker {
        Checker {
            pattern,
            offset: 0,
            bad_at: None,
            seen: 0,
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = data.len().min(self.pattern.len() - self.offset);
            let want = &self.pattern[self.offset..self.offset + n];
            if self.bad_at.is_none() && data[..n] != *want {
                let i = data[..n].iter().zip(want).position(|(a, b)| a != b);
                self.bad_at = i.map(|i| self.seen + i as u64);
            }
            self.seen += n as u64;
            self.offset = (self.offset + n) % self.pattern.len();
            data = &data[n..];
        }
    }
}

/// A request head. `extra` are additional header lines (`Name: value`).
pub fn request_head(method: &str, path: &str, host: &str, extra: &[String]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: swiftfed-bench\r\n");
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Downloads `path` once and checks it is `size` bytes of the pattern.
pub async fn get_checked(
    conn: &mut Conn,
    host: &str,
    path: &str,
    size: u64,
    extra: &[String],
    pattern: &Arc<Vec<u8>>,
) -> Result<u64, Error> {
    conn.send(&request_head("GET", path, host, extra)).await?;
    let head = conn.read_head().await?;
    if head.status != 200 {
        return Err(format!("GET {path}: status {}", head.status));
    }
    let mut check = Checker::new(pattern.clone());
    let n = conn.read_body(&head, false, |d| check.feed(d)).await?;
    if n != size {
        return Err(format!("GET {path}: {n} bytes, expected {size}"));
    }
    if let Some(at) = check.bad_at {
        return Err(format!(
            "GET {path}: body differs from the origin's at byte {at}"
        ));
    }
    Ok(n)
}

/// Uploads `size` bytes of the pattern, sized (`Content-Length`) or chunked (256 KiB chunks),
/// and checks the answer (`expect_status`; the origin's byte count when it reports one).
#[allow(clippy::too_many_arguments)]
pub async fn put_checked(
    conn: &mut Conn,
    host: &str,
    path: &str,
    size: u64,
    chunked: bool,
    extra: &[String],
    pattern: &Arc<Vec<u8>>,
    expect_status: u16,
) -> Result<u64, Error> {
    const CHUNK: usize = 256 * 1024;
    let mut lines = extra.to_vec();
    if chunked {
        lines.push("Transfer-Encoding: chunked".into());
    } else {
        lines.push(format!("Content-Length: {size}"));
    }
    conn.send(&request_head("PUT", path, host, &lines)).await?;
    let mut sent: u64 = 0;
    let mut offset = 0usize;
    let mut frame = Vec::with_capacity(CHUNK + 16);
    while sent < size {
        let n = (CHUNK as u64).min(size - sent) as usize;
        frame.clear();
        if chunked {
            frame.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        }
        let mut left = n;
        while left > 0 {
            let m = left.min(pattern.len() - offset);
            frame.extend_from_slice(&pattern[offset..offset + m]);
            offset = (offset + m) % pattern.len();
            left -= m;
        }
        if chunked {
            frame.extend_from_slice(b"\r\n");
        }
        conn.send(&frame).await?;
        sent += n as u64;
    }
    if chunked {
        conn.send(b"0\r\n\r\n").await?;
    }
    let head = conn.read_head().await?;
    conn.read_body(&head, false, |_| {}).await?;
    if head.status != expect_status {
        return Err(format!(
            "PUT {path}: status {}, expected {expect_status}",
            head.status
        ));
    }
    if let Some(got) = head.bytes_received {
        if got != size {
            return Err(format!("PUT {path}: origin received {got} of {size} bytes"));
        }
    }
    Ok(sent)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeOp {
    Get,
    PutSized,
    PutChunked,
}

impl LargeOp {
    pub fn label(self) -> &'static str {
        match self {
            LargeOp::Get => "GET",
            LargeOp::PutSized => "PUT sized",
            LargeOp::PutChunked => "PUT chunked",
        }
    }
}

/// `streams` concurrent transfers of `size` bytes each, one connection per stream. Returns
/// (bytes moved, wall time).
pub async fn large(
    addr: &str,
    path: &str,
    op: LargeOp,
    streams: usize,
    size: u64,
    extra: &[String],
    pattern: &Arc<Vec<u8>>,
) -> Result<(u64, Duration), Error> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let addr = addr.to_string();
        let path = path.to_string();
        let extra = extra.to_vec();
        let pattern = pattern.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(&addr, 256 * 1024).await?;
            match op {
                LargeOp::Get => get_checked(&mut conn, &addr, &path, size, &extra, &pattern).await,
                LargeOp::PutSized | LargeOp::PutChunked => {
                    put_checked(
                        &mut conn,
                        &addr,
                        &path,
                        size,
                        op == LargeOp::PutChunked,
                        &extra,
                        &pattern,
                        201,
                    )
                    .await
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok((total, start.elapsed()))
}

/// Latencies (µs) and request count of a small-request run.
#[derive(Debug, Default)]
pub struct SmallRun {
    pub latencies_us: Vec<u32>,
    pub requests: u64,
    pub elapsed: Duration,
    /// Paced runs: sends that started more than 2 ms after their slot (the load was too high).
    pub late: u64,
}

/// One small request on `conn`; checks the status and (GET) the body length.
async fn small_once(
    conn: &mut Conn,
    request: &[u8],
    head_request: bool,
    size: u64,
) -> Result<(), Error> {
    conn.send(request).await?;
    let head = conn.read_head().await?;
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    let n = conn.read_body(&head, head_request, |_| {}).await?;
    if !head_request && n != size {
        return Err(format!("{n} bytes, expected {size}"));
    }
    if head.close {
        return Err("server closed a keep-alive connection".into());
    }
    Ok(())
}

/// `conns` keep-alive connections, each sending `method path` back to back (closed loop) for
/// `duration` after a short warm-up; or, with `rate` (requests/s over all connections), at
/// evenly spaced moments (open loop), latency counted from the actual send.
#[allow(clippy::too_many_arguments)]
pub async fn small(
    addr: &str,
    method: &str,
    path: &str,
    size: u64,
    conns: usize,
    duration: Duration,
    rate: Option<f64>,
    extra: &[String],
) -> Result<SmallRun, Error> {
    let request = Arc::new(request_head(method, path, addr, extra));
    let head_request = method == "HEAD";
    let mut connections = Vec::new();
    for _ in 0..conns {
        let mut c = Conn::connect(addr, 16 * 1024).await?;
        for _ in 0..3 {
            small_once(&mut c, &request, head_request, size).await?;
        }
        connections.push(c);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let mut tasks = Vec::new();
    for (i, mut conn) in connections.into_iter().enumerate() {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut late = 0u64;
            let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
            let mut slot = match interval {
                Some(iv) => start + iv.mul_f64(i as f64 / conns as f64),
                None => start,
            };
            tokio::time::sleep_until(start.into()).await;
            loop {
                if let Some(iv) = interval {
                    if slot >= end {
                        break;
                    }
                    tokio::time::sleep_until(slot.into()).await;
                    let now = Instant::now();
                    if now > slot + Duration::from_millis(2) {
                        late += 1;
                    }
                    slot += iv;
                }
                let t0 = Instant::now();
                if interval.is_none() && t0 >= end {
                    break;
                }
                small_once(&mut conn, &request, head_request, size).await?;
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok::<_, Error>((lat, late))
        }));
    }
    let mut run = SmallRun::default();
    for t in tasks {
        let (lat, late) = t.await.map_err(|e| e.to_string())??;
        run.requests += lat.len() as u64;
        run.latencies_us.extend(lat);
        run.late += late;
    }
    run.elapsed = Instant::now().saturating_duration_since(start);
    Ok(run)
}

/// `n` slow readers of a large object: each reads `chunk` bytes every `interval` until `stop`
/// says so. Returns once every stream is open and has received its first bytes, with a handle
/// that ends them.
pub async fn slow_streams(
    addr: &str,
    path: &str,
    n: usize,
    chunk: usize,
    interval: Duration,
) -> Result<SlowStreams, Error> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), Error>>(n);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let addr = addr.to_string();
        let path = path.to_string();
        let mut stop = stop_rx.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let setup = async {
                let mut conn = Conn::connect_small_rcvbuf(&addr, 64 * 1024).await?;
                conn.send(&request_head("GET", &path, &addr, &[])).await?;
                let head = conn.read_head().await?;
                if head.status != 200 {
                    return Err(format!("slow GET: status {}", head.status));
                }
                Ok(conn)
            };
            let mut conn = match setup.await {
                Ok(c) => {
                    let _ = ready.send(Ok(())).await;
                    c
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return;
                }
            };
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if conn.read_some(chunk).await.is_err() {
                            return;
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                let _ = stop_tx.send(true);
                return Err(e);
            }
            None => return Err("slow stream task ended".into()),
        }
    }
    Ok(SlowStreams {
        stop: stop_tx,
        tasks,
    })
}

pub struct SlowStreams {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SlowStreams {
    pub async fn end(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_finds_the_first_wrong_byte_across_reads() {
        let pattern = Arc::new((0..=255u8).cycle().take(1000).collect::<Vec<u8>>());
        let mut c = Checker::new(pattern.clone());
        let mut stream: Vec<u8> = pattern.iter().chain(pattern.iter()).copied().collect();
        c.feed(&stream[..700]);
        c.feed(&stream[700..]);
        assert_eq!(c.bad_at, None);
        stream[1500] ^= 1;
        let mut c = Checker::new(pattern);
        for piece in stream.chunks(333) {
            c.feed(piece);
        }
        assert_eq!(c.bad_at, Some(1500));
    }
}
