//! The archive side of an extraction, on a blocking thread: the client's body decompressed and
//! parsed as tar, reported entry by entry as [`Event`]s, ending as Python's `tarfile` ends.

use std::io::Read;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use tokio::sync::mpsc;

use super::{Compression, CHUNK};

/// What the archive reader reports, in archive order.
pub(super) enum Event {
    /// A regular file; its `size` bytes follow as `Data`.
    File {
        name: Vec<u8>,
        size: u64,
        /// Headers from its pax xattrs (`user.mime_type`, `user.meta.*`).
        meta: Vec<(HeaderName, HeaderValue)>,
    },
    Data(Bytes),
    /// The archive cannot be read further: Swift's `Invalid Tar File: ...` reason.
    Failed(String),
    End,
}

/// The client's body as a blocking `Read`, for the decompressors and the tar parser.
pub(super) struct ChannelReader {
    pub(super) rx: mpsc::Receiver<Result<Bytes, String>>,
    pub(super) current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(data)) => self.current = data,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The decompressed stream, counting what it gave. A compressed stream cut short reads as its
/// end (as Python's `tarfile` reads it: what follows decides whether that is an error); a
/// corrupt one or a failed client body is an error, remembered as the decompressor's.
pub(super) struct Tapped<R> {
    inner: R,
    bytes: u64,
    failed: bool,
    /// The decompressor refused the stream's header.
    bad_header: bool,
}

impl<R: Read> Read for Tapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.bytes > 0 => Ok(0),
            Err(e) => {
                self.failed = true;
                // No gzip header: none at all, or flate2's words for one that is not.
                self.bad_header = self.bytes == 0
                    && (e.kind() == std::io::ErrorKind::UnexpectedEof
                        || e.to_string().contains("gzip header"));
                Err(e)
            }
        }
    }
}

/// Where the archive reader stopped, for Python's `tarfile` reasons.
#[derive(Default)]
pub(super) struct Position {
    /// A member header was read.
    seen: bool,
    /// Where the last member's data and padding end.
    expected_end: u64,
    /// Inside a member's data.
    in_data: bool,
}

/// What ends the archive, in Python's `tarfile` terms: after the first member, a header that
/// is missing, cut or invalid just ends it, data or padding cut short is `unexpected end of
/// data`; the first header's failures and corrupt compressed data are errors of their own.
/// `parsed`: the tar reader ended without an error (end blocks, or no more input).
pub(super) fn ending(
    compression: Compression,
    tapped: &Tapped<Box<dyn Read>>,
    at: &Position,
    parsed: bool,
) -> Event {
    let reason = if tapped.failed {
        match compression {
            Compression::Gzip if tapped.bad_header => "not a gzip file",
            Compression::Bzip2 if tapped.bytes == 0 => "empty file",
            _ if at.in_data => "unexpected end of data",
            _ => "invalid compressed data",
        }
    } else if at.in_data || (at.seen && tapped.bytes < at.expected_end) {
        "unexpected end of data"
    } else if at.seen || (parsed && tapped.bytes > 0) {
        return Event::End;
    } else if tapped.bytes == 0 {
        match compression {
            Compression::Gzip => "not a gzip file",
            _ => "empty file",
        }
    } else if tapped.bytes < 512 {
        "truncated header"
    } else {
        "invalid header"
    };
    Event::Failed(reason.into())
}

/// The blocking side: parses the (decompressed) archive and reports its regular files with
/// their bytes. Stops quietly when the extraction stops listening.
pub(super) fn read_archive(
    input: ChannelReader,
    compression: Compression,
    events: &mpsc::Sender<Event>,
) {
    let decoded: Box<dyn Read> = match compression {
        Compression::Plain => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(input)),
    };
    let mut archive = tar::Archive::new(Tapped {
        inner: decoded,
        bytes: 0,
        failed: false,
        bad_header: false,
    });
    let mut at = Position::default();
    let mut buf = vec![0u8; CHUNK];
    // `Ok(false)`: the extraction stopped listening.
    let result = (|| -> Result<bool, std::io::Error> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let header = entry.header();
            at.seen = true;
            let stored = header.entry_size().unwrap_or(0);
            at.expected_end = entry.raw_file_position() + stored.div_ceil(512) * 512;
            let kind = header.entry_type();
            let name = entry.path_bytes().into_owned();
            // Python's tarfile: an old-style regular file named with a trailing `/` is a
            // directory.
            let old_style_dir = header.as_bytes()[156] == 0 && name.ends_with(b"/");
            let regular = matches!(
                kind,
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
            );
            if !regular || old_style_dir {
                continue;
            }
            let size = entry.size();
            let meta = pax_meta(&mut entry);
            if events
                .blocking_send(Event::File { name, size, meta })
                .is_err()
            {
                return Ok(false);
            }
            at.in_data = true;
            let mut left = size;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = entry.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "entry ended early",
                    ));
                }
                left -= n as u64;
                if events
                    .blocking_send(Event::Data(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return Ok(false);
                }
            }
            at.in_data = false;
        }
        Ok(true)
    })();
    if matches!(result, Ok(false)) {
        return;
    }
    let tapped = archive.into_inner();
    let _ = events.blocking_send(ending(compression, &tapped, &at, result.is_ok()));
}

/// Swift's `pax_key_to_swift_header`: GNU and BSD tar xattrs `user.mime_type` and
/// `user.meta.*` become `Content-Type` and `X-Object-Meta-*`.
pub(super) fn pax_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return out;
    };
    for ext in extensions.flatten() {
        let Ok(key) = ext.key() else { continue };
        let name =
            if key == "SCHILY.xattr.user.mime_type" || key == "LIBARCHIVE.xattr.user.mime_type" {
                "content-type".to_string()
            } else if let Some(rest) = key
                .strip_prefix("SCHILY.xattr.user.meta.")
                .or_else(|| key.strip_prefix("LIBARCHIVE.xattr.user.meta."))
            {
                format!("x-object-meta-{rest}")
            } else {
                continue;
            };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(ext.value_bytes()),
        ) {
            out.push((n, v));
        }
    }
    out
}
