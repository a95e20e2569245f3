//! The payload every transfer moves, and the check applied to every byte received.
//!
//! The payload is printable text (lines of 76 pseudo-random base64 characters and `\n`),
//! the common case of command output, so that the gateway's transcript writer sees what it
//! usually sees; it lives in `/dev/shm` so that reading it costs no disk I/O on any path
//! (`cat FILE` in the pod, in the sshd session, and the port-forward source all read the
//! same bytes). The file is removed when the `Payload` is dropped.
//!
//! Every byte received is counted and the first and last 64 KiB are compared with the
//! payload as they arrive: a short, long, truncated or garbled transfer fails the run.
//! The bytes in between are only counted (comparing all 256 MiB on every path would make
//! the harness, not the paths, the bottleneck).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of each end of the payload is compared byte for byte.
const EDGE: u64 = 64 * 1024;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub struct Payload {
    pub path: PathBuf,
    pub size: u64,
    head: Vec<u8>,
    /// The last `min(EDGE, size)` bytes, starting at `size - tail.len()`.
    tail: Vec<u8>,
}

/// splitmix64: cheap, and good enough that no compressor or cache sees a pattern.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Payload {
    /// Write `size` bytes of text to a new file in `/dev/shm`.
    pub fn create(size: u64) -> Result<Payload> {
        let path = PathBuf::from(format!(
            "/dev/shm/podgate-bench-gateway-{}.txt",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating the payload {}", path.display()))?;
        // From here on the file is removed on every way out, including errors below.
        let mut payload = Payload {
            path,
            size,
            head: Vec::new(),
            tail: Vec::new(),
        };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        let mut rng = Rng(seed);
        let edge = EDGE.min(size);
        let tail_start = size - edge;
        let mut line = [b'\n'; 77];
        let mut written = 0u64;
        while written < size {
            for pair in line[..76].chunks_mut(10) {
                let mut bits = rng.next();
                for c in pair {
                    *c = ALPHABET[(bits & 63) as usize];
                    bits >>= 6;
                }
            }
            let n = (size - written).min(77) as usize;
            let bytes = &line[..n];
            for (i, &b) in bytes.iter().enumerate() {
                let at = written + i as u64;
                if at < edge {
                    payload.head.push(b);
                }
                if at >= tail_start {
                    payload.tail.push(b);
                }
            }
            out.write_all(bytes)
                .with_context(|| format!("writing the payload {}", payload.path.display()))?;
            written += n as u64;
        }
        out.flush()
            .with_context(|| format!("writing the payload {}", payload.path.display()))?;
        Ok(payload)
    }

    pub fn check(&self) -> Check<'_> {
        Check {
            payload: self,
            seen: 0,
            bad: None,
        }
    }

    pub fn mib(&self) -> f64 {
        self.size as f64 / (1024.0 * 1024.0)
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Counts and compares the bytes of one transfer as they arrive.
pub struct Check<'a> {
    payload: &'a Payload,
    pub seen: u64,
    bad: Option<String>,
}

impl Check<'_> {
    pub fn feed(&mut self, buf: &[u8]) {
        let size = self.payload.size;
        let tail_start = size - self.payload.tail.len() as u64;
        self.compare(buf, 0, true);
        self.compare(buf, tail_start, false);
        self.seen += buf.len() as u64;
    }

    fn compare(&mut self, buf: &[u8], region_start: u64, head: bool) {
        let region = if head {
            &self.payload.head
        } else {
            &self.payload.tail
        };
        let off = self.seen;
        let lo = off.max(region_start);
        let hi = (off + buf.len() as u64).min(region_start + region.len() as u64);
        if lo >= hi || self.bad.is_some() {
            return;
        }
        let got = &buf[(lo - off) as usize..(hi - off) as usize];
        let want = &region[(lo - region_start) as usize..(hi - region_start) as usize];
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            self.bad = Some(format!(
                "byte {} differs from the payload ({:?} instead of {:?})",
                lo + first as u64,
                char::from(got[first]),
                char::from(want[first])
            ));
        }
    }

    /// Every byte arrived, and no other.
    pub fn finish(&self, what: &str) -> Result<()> {
        if let Some(bad) = &self.bad {
            bail!("{what}: {bad}");
        }
        if self.seen != self.payload.size {
            bail!(
                "{what}: received {} bytes, expected {}",
                self.seen,
                self.payload.size
            );
        }
        Ok(())
    }
}

/// Read `reader` to its end into `check`. Returns when the payload's last byte arrived
/// (`None` if it never did), so that a path whose close lags behind its data can be
/// timed on the data alone.
pub async fn receive(
    mut reader: impl AsyncRead + Unpin,
    check: &mut Check<'_>,
) -> std::io::Result<Option<Instant>> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut full_at = None;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(full_at);
        }
        check.feed(&buf[..n]);
        if full_at.is_none() && check.seen >= check.payload.size {
            full_at = Some(Instant::now());
        }
    }
}
