//! What recording costs on the output path: the same stream of 32 KiB chunks handed to the
//! channel with the session recorder in front (on) and without it (off), interleaved and
//! repeated, medians reported; and `.cast` bytes per byte of output.
//!
//! Run with `cargo bench --bench recording`. Under `cargo test --all-targets` (no `--bench`
//! argument) it does one small round as a smoke test, so the harness cannot rot.
//!
//! Recording cannot be switched off in the gateway (fail closed, DESIGN.md §6), so "off" is
//! measured here, in process, on the exact code the exec bridge calls (`Recorder::output`),
//! with the transcript written to a real file on the same file system as `target/`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use podgate::recording::cast::CastHeader;
use podgate::recording::meta::{self, Metadata};
use podgate::recording::session::{Recorder, Stream};

const CHUNK: usize = 32 * 1024;

fn plain_text(len: usize) -> Vec<u8> {
    // What `seq 1 N` prints: short decimal lines, the common case of command output.
    let mut out = Vec::with_capacity(len + 16);
    let mut n = 1u64;
    while out.len() < len {
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'\n');
        n += 1;
    }
    out.truncate(len);
    out
}

/// Hand `data` to a stand-in for the SSH channel (a copy into `Bytes`, as `ChannelIo`
/// does), with or without the recorder in front. Returns the elapsed time and the `.cast`
/// size.
fn run(dir: &std::path::Path, data: &[u8], record: bool) -> (Duration, u64) {
    let recorder = record.then(|| {
        let meta = Metadata {
            session: meta::new_session_id(),
            identity: "bench@podgate".into(),
            action: "exec".into(),
            ..Default::default()
        };
        let header = CastHeader {
            width: 80,
            height: 24,
            ..Default::default()
        };
        Recorder::start(dir, 0, meta, &header, None).unwrap_or_else(|e| panic!("start: {e}"))
    });
    let mut sent = 0usize;
    let start = Instant::now();
    for chunk in data.chunks(CHUNK) {
        if let Some(r) = &recorder {
            r.output(Stream::Stdout, chunk)
                .unwrap_or_else(|e| panic!("output: {e}"));
        }
        let b = Bytes::copy_from_slice(chunk);
        sent += std::hint::black_box(b).len();
    }
    let size = match &recorder {
        Some(r) => {
            r.finish("exited", Some(0))
                .unwrap_or_else(|e| panic!("finish: {e}"))
                .size
        }
        None => 0,
    };
    let elapsed = start.elapsed();
    assert_eq!(sent, data.len(), "every byte handed on");
    (elapsed, size)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (len, rounds) = if bench {
        (256 * 1024 * 1024, 5)
    } else {
        (1024 * 1024, 1)
    };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (name, data) in [
        ("plain text", plain_text(len)),
        ("NUL bytes", vec![0u8; len]),
    ] {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        let mut cast_size = 0;
        for _ in 0..rounds {
            off.push(run(dir.path(), &data, false).0);
            let (d, size) = run(dir.path(), &data, true);
            on.push(d);
            cast_size = size;
        }
        let (on, off) = (median(on), median(off));
        let ratio = cast_size as f64 / data.len() as f64;
        println!(
            "{name:>10}: {} MiB in {CHUNK} B chunks, {rounds} rounds: off {:.0} MiB/s, on {:.0} MiB/s (on/off {:.3}), .cast {:.3} bytes per output byte",
            len / (1024 * 1024),
            mib_s(len, off),
            mib_s(len, on),
            off.as_secs_f64() / on.as_secs_f64(),
            ratio,
        );
        if name == "plain text" {
            assert!(
                (1.0..1.3).contains(&ratio),
                "plain text .cast overhead out of range: {ratio}"
            );
        }
    }
}
