//! `SESSION.cast`: a streaming asciicast v2 writer (one JSON header line, then one
//! `[time, code, data]` line per event: `"o"` output, `"i"` input, `"r"` resize `"COLSxROWS"`,
//! `"m"` marker).
//!
//! Guarantees:
//! - The file is created with `create_new` and mode 0600: an existing file is never
//!   overwritten. The header line is written and flushed before `create` returns, so even a
//!   session cut off at once leaves a file the player opens.
//! - Every line is valid JSON: bytes are decoded with one incremental UTF-8 decoder per
//!   stream, so a multi-byte character split across reads is kept whole; bytes that can never
//!   be UTF-8 become U+FFFD (one per maximal invalid sequence, as `String::from_utf8_lossy`).
//!   Terminal escapes (OSC 52, title changes, clears) are recorded as they came: the file is a
//!   faithful transcript, so it is hostile data to whoever replays it.
//! - Event times are seconds since `create` on the monotonic clock (never go back, immune to
//!   wall-clock steps), rounded to the microsecond.
//! - Events are built in place in one buffer of whole lines (the output bytes escaped
//!   straight into it, `json_text`), which goes to the file in one `write_all` when it holds
//!   `WRITE_AT` bytes or on a flush: the file only grows by whole lines as far as this
//!   process is concerned, and output is copied once on its way to the file.
//! - `finish` returns the SHA-256 and size of exactly the bytes written (hashed as they are
//!   written, never re-read).
//!
//! Not guaranteed:
//! - Durability before `finish`: `flush`/`flush_if_due` move data to the kernel (it survives
//!   the process being killed) but do not fsync (a power loss can lose or tear the tail;
//!   bulk output is synced every few MiB behind the session, see `cast_sink`). Bulk output
//!   is written by a writer thread (`cast_sink`), at most a few buffers behind.
//!   A torn last line (power loss, disk full mid-write) is trimmed by `recover`.
//! - After an I/O error the writer is poisoned: what reached the file is unknown, so every
//!   later call fails with `CastError::Failed` and the session should end ("write failed").

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cast_sink::Sink;

use super::json_text::{Utf8Decoder, escape_into};

/// Buffered lines are written out once they reach this many bytes (or on a flush).
const WRITE_AT: usize = 64 * 1024;

/// What the header says about the session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CastHeader {
    pub width: u16,
    pub height: u16,
    /// Unix seconds of the start (the player requires an integer).
    pub timestamp: u64,
    pub command: Option<String>,
    pub title: Option<String>,
    /// A few variables such as `TERM` and `SHELL`.
    pub env: BTreeMap<String, String>,
}

/// The v2 header as written.
#[derive(Serialize)]
struct V2Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: &'a BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CastError {
    #[error("recording {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recording {path}: cannot encode an event: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("recording {path}: an earlier write failed, the recording is incomplete")]
    Failed { path: PathBuf },
}

/// What `finish` knows about the finished file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastSummary {
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    pub size: u64,
}

/// Writes one session's `.cast` file as the session runs.
pub struct CastWriter {
    path: PathBuf,
    sink: Sink,
    /// Whole lines not yet handed to the file.
    buf: Vec<u8>,
    start: Instant,
    last_flush: Instant,
    out: Utf8Decoder,
    inp: Utf8Decoder,
    written: u64,
    failed: bool,
}

impl CastWriter {
    /// Create `path` (which must not exist; mode 0600; the directory must exist, see
    /// `meta::create_dir`) and write the header. The event clock starts now.
    pub fn create(path: &Path, header: &CastHeader) -> Result<CastWriter, CastError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| CastError::Io {
                path: path.to_owned(),
                source,
            })?;
        let now = Instant::now();
        let mut w = CastWriter {
            path: path.to_owned(),
            sink: Sink::new(file),
            buf: Vec::new(),
            start: now,
            last_flush: now,
            out: Utf8Decoder::default(),
            inp: Utf8Decoder::default(),
            written: 0,
            failed: false,
        };
        let v2 = V2Header {
            version: 2,
            width: header.width,
            height: header.height,
            timestamp: header.timestamp,
            command: header.command.as_deref(),
            title: header.title.as_deref(),
            env: &header.env,
        };
        serde_json::to_writer(&mut w.buf, &v2).map_err(|source| CastError::Json {
            path: path.to_owned(),
            source,
        })?;
        w.buf.push(b'\n');
        w.written = w.buf.len() as u64;
        w.flush()?;
        Ok(w)
    }

    /// Terminal output (or stdout/stderr of a non-tty session) as an `"o"` event.
    pub fn output(&mut self, bytes: &[u8]) -> Result<(), CastError> {
        self.check()?;
        let start = self.begin_event("o")?;
        let wrote = self.out.feed_escaped(bytes, &mut self.buf);
        self.end_event(start, wrote)
    }

    /// Keystrokes as an `"i"` event, with a decoder of their own. Call it only when the
    /// rule records input.
    pub fn input(&mut self, bytes: &[u8]) -> Result<(), CastError> {
        self.check()?;
        let start = self.begin_event("i")?;
        let wrote = self.inp.feed_escaped(bytes, &mut self.buf);
        self.end_event(start, wrote)
    }

    /// A window change as an `"r"` event.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<(), CastError> {
        self.event("r", &format!("{cols}x{rows}"))
    }

    /// A marker (`"m"`): a note on the timeline, such as the end reason.
    pub fn marker(&mut self, text: &str) -> Result<(), CastError> {
        self.event("m", text)
    }

    /// Hand buffered lines to the kernel: they survive the process being killed, not a power
    /// loss (no fsync; `finish` does that once).
    pub fn flush(&mut self) -> Result<(), CastError> {
        self.check()?;
        self.write_out(false)?;
        let result = self.sink.flush();
        self.io(result)?;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// `flush` if the last one is older than `every`: bounds what a crash can lose without a
    /// write per keystroke.
    pub fn flush_if_due(&mut self, every: Duration) -> Result<(), CastError> {
        if self.last_flush.elapsed() >= every {
            self.flush()?;
        }
        Ok(())
    }

    /// End the file: a character left incomplete in either stream is written as U+FFFD,
    /// everything is flushed and fsync'd. Returns the SHA-256 and size of the file.
    pub fn finish(mut self) -> Result<CastSummary, CastError> {
        self.check()?;
        if let Some(c) = self.out.drain() {
            self.event("o", &c.to_string())?;
        }
        if let Some(c) = self.inp.drain() {
            self.event("i", &c.to_string())?;
        }
        self.flush()?;
        let result = self.sink.finish();
        let digest = self.io(result)?;
        Ok(CastSummary {
            sha256: hex(&digest),
            size: self.written,
        })
    }

    /// Bytes handed to the file so far (header included), buffered or not.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn event(&mut self, code: &str, data: &str) -> Result<(), CastError> {
        self.check()?;
        let start = self.begin_event(code)?;
        escape_into(&mut self.buf, data);
        let wrote = !data.is_empty();
        self.end_event(start, wrote)
    }

    /// Start a line `[TIME,"CODE","` in the buffer; returns where it starts.
    fn begin_event(&mut self, code: &str) -> Result<usize, CastError> {
        let start = self.buf.len();
        let time = seconds(self.start.elapsed());
        self.buf.push(b'[');
        serde_json::to_writer(&mut self.buf, &time).map_err(|source| CastError::Json {
            path: self.path.clone(),
            source,
        })?;
        self.buf.extend_from_slice(b",\"");
        escape_into(&mut self.buf, code);
        self.buf.extend_from_slice(b"\",\"");
        Ok(start)
    }

    /// Close the line begun at `start`, or take it back when no data was written (half a
    /// character so far: no line rather than an empty event). Writes the buffer out once
    /// it is large enough.
    fn end_event(&mut self, start: usize, wrote: bool) -> Result<(), CastError> {
        if !wrote {
            self.buf.truncate(start);
            return Ok(());
        }
        self.buf.extend_from_slice(b"\"]\n");
        self.written += (self.buf.len() - start) as u64;
        if self.buf.len() >= WRITE_AT {
            self.write_out(true)?;
        }
        Ok(())
    }

    /// Hand the buffered lines to the sink (in one piece). `bulk`: the buffer filled up.
    fn write_out(&mut self, bulk: bool) -> Result<(), CastError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.sink.write(&mut self.buf, bulk);
        self.io(result)
    }

    fn check(&self) -> Result<(), CastError> {
        if self.failed {
            return Err(CastError::Failed {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn io<T>(&mut self, result: std::io::Result<T>) -> Result<T, CastError> {
        result.map_err(|source| {
            self.failed = true;
            CastError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

impl Drop for CastWriter {
    /// A writer dropped without `finish` (a session task that panicked or was aborted)
    /// still hands its buffered lines to the file, so `recover` finds them.
    fn drop(&mut self) {
        if !self.failed && !self.buf.is_empty() {
            let _ = self.sink.write(&mut self.buf, false);
        }
    }
}

/// Seconds as f64 rounded to the microsecond (the v2 precision; serde_json prints the
/// shortest form, e.g. `1.234567`).
fn seconds(d: Duration) -> f64 {
    d.as_micros() as f64 / 1_000_000.0
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 (hex) and size of a file, read in chunks (recordings can be large).
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

#[cfg(test)]
#[path = "cast_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "cast_props.rs"]
mod props;
