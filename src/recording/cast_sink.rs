//! Where a transcript's bytes go: the file, its running SHA-256, and write-behind syncing —
//! written inline while a session is interactive, and by a writer thread of its own once the
//! session produces bulk output, so that hashing and `write(2)` run beside the session's
//! copy loop instead of on it.
//!
//! Guarantees:
//! - Buffers reach the file whole (one `write_all` each) and in the order they were handed
//!   over; the hash covers exactly the bytes written, in that order.
//! - At most `QUEUED` buffers wait for the writer thread (each about `cast::WRITE_AT` bytes
//!   plus one event); a session that outruns the disk waits in `write`, as it would writing
//!   inline: memory stays bounded and nothing is dropped.
//! - `flush` returns once everything handed over before it is in the file (in the kernel):
//!   what survives the process being killed is the same as with inline writes.
//! - Every `SYNC_EVERY` bytes an `fdatasync` starts on a short-lived thread of its own (one
//!   at a time), so the final `fsync`, which the user's exit status waits for, has
//!   little left to do.
//! - The first I/O error poisons the sink: it is reported by the next call (a write already
//!   queued may be what failed, so a session can show up to `QUEUED` buffers more than was
//!   recorded before it is ended), and nothing more is written.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Buffers that may wait for the writer thread (about 1 MiB): enough to ride out a slow
/// write without stalling the session, little enough to bound what a full disk lets
/// through unrecorded.
const QUEUED: usize = 16;
/// Bytes written between two `fdatasync`s.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;
/// An inline buffer grown past this by one huge event is given back after it is written.
const KEEP_AT_MOST: usize = 256 * 1024;
/// The capacity of a fresh buffer after one went to the writer thread: a full buffer and
/// the event that tips it over, without growing.
const NEXT_BUFFER: usize = 192 * 1024;

/// The file and its hash.
struct FileState {
    file: File,
    hasher: Sha256,
    unsynced: u64,
    /// Set while a write-behind sync runs on its own thread.
    syncing: Arc<AtomicBool>,
}

impl FileState {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        self.unsynced += buf.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            // Not here, even on the writer thread: a sync waits for the disk, and a writer
            // waiting for the disk would fill the queue and stall the session.
            self.unsynced = 0;
            self.sync_behind();
        }
        Ok(())
    }

    /// Start an `fdatasync` on a thread of its own unless one is running; its result is not
    /// needed (the final `fsync` reports).
    fn sync_behind(&self) {
        if self.syncing.swap(true, Ordering::AcqRel) {
            return;
        }
        let syncing = self.syncing.clone();
        let Ok(file) = self.file.try_clone() else {
            syncing.store(false, Ordering::Release);
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("cast-sync".into())
            .spawn(move || {
                let _ = file.sync_data();
                syncing.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.syncing.store(false, Ordering::Release);
        }
    }
}

enum Job {
    Write(Vec<u8>),
    /// Answer once everything before it is written.
    Flush(SyncSender<()>),
}

struct Threaded {
    jobs: SyncSender<Job>,
    /// Written buffers coming back for reuse: a bulk session then allocates (and faults in)
    /// no new buffer memory after its first few.
    recycled: Receiver<Vec<u8>>,
    thread: JoinHandle<FileState>,
    /// The writer thread's first error.
    error: Arc<Mutex<Option<std::io::Error>>>,
}

enum Mode {
    Inline(FileState),
    Threaded(Threaded),
    /// Between states, or after `finish`.
    Gone,
}

/// A transcript file being written.
pub struct Sink {
    mode: Mode,
}

/// Why the sink failed: the first I/O error (kept as its kind and text, so that it can be
/// reported more than once).
pub type SinkError = std::io::Error;

fn copy_error(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

fn gone() -> std::io::Error {
    std::io::Error::other("the recording writer stopped")
}

impl Sink {
    pub fn new(file: File) -> Sink {
        Sink {
            mode: Mode::Inline(FileState {
                file,
                hasher: Sha256::new(),
                unsynced: 0,
                syncing: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// The writer thread's error, if it had one.
    fn thread_error(t: &Threaded) -> Option<std::io::Error> {
        t.error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(copy_error)
    }

    /// Hand over the whole lines in `buf`, leaving it empty. `bulk` asks for the writer
    /// thread: the caller's buffer filled up, so this session produces output faster than
    /// a person types.
    pub fn write(&mut self, buf: &mut Vec<u8>, bulk: bool) -> Result<(), SinkError> {
        if bulk && let Mode::Inline(_) = self.mode {
            self.start_thread()?;
        }
        match &mut self.mode {
            Mode::Inline(state) => {
                let result = state.write(buf);
                buf.clear();
                if buf.capacity() > KEEP_AT_MOST {
                    *buf = Vec::new();
                }
                result
            }
            Mode::Threaded(t) => {
                if let Some(e) = Self::thread_error(t) {
                    return Err(e);
                }
                let next = t
                    .recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(NEXT_BUFFER));
                let full = std::mem::replace(buf, next);
                t.jobs.send(Job::Write(full)).map_err(|_| gone())
            }
            Mode::Gone => Err(gone()),
        }
    }

    /// Everything handed over so far is in the file when this returns.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        match &mut self.mode {
            Mode::Inline(_) => Ok(()),
            Mode::Threaded(t) => {
                let (done_tx, done_rx) = sync_channel(1);
                t.jobs.send(Job::Flush(done_tx)).map_err(|_| gone())?;
                done_rx.recv().map_err(|_| gone())?;
                match Self::thread_error(t) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Mode::Gone => Err(gone()),
        }
    }

    /// Wait for every write, `fsync`, and return the SHA-256 of the file.
    pub fn finish(&mut self) -> Result<sha2::digest::Output<Sha256>, SinkError> {
        let state = match std::mem::replace(&mut self.mode, Mode::Gone) {
            Mode::Inline(state) => state,
            Mode::Threaded(t) => {
                drop(t.jobs);
                let state = t.thread.join().map_err(|_| gone())?;
                if let Some(e) = t.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Err(e);
                }
                state
            }
            Mode::Gone => return Err(gone()),
        };
        state.file.sync_all()?;
        Ok(state.hasher.finalize())
    }

    fn start_thread(&mut self) -> Result<(), SinkError> {
        let Mode::Inline(state) = std::mem::replace(&mut self.mode, Mode::Gone) else {
            return Ok(());
        };
        let (jobs, queue) = sync_channel(QUEUED);
        let (give_back, recycled) = sync_channel(QUEUED + 2);
        let error = Arc::new(Mutex::new(None));
        let seen = error.clone();
        let spawned = std::thread::Builder::new()
            .name("cast-writer".into())
            .spawn(move || write_loop(state, queue, give_back, seen));
        // If the thread cannot start, the file state went with it: the sink stays `Gone`
        // and the recording fails (closed), which ends the session.
        let thread = spawned?;
        self.mode = Mode::Threaded(Threaded {
            jobs,
            recycled,
            thread,
            error,
        });
        Ok(())
    }
}

fn write_loop(
    mut state: FileState,
    queue: Receiver<Job>,
    give_back: SyncSender<Vec<u8>>,
    error: Arc<Mutex<Option<std::io::Error>>>,
) -> FileState {
    let mut failed = false;
    while let Ok(job) = queue.recv() {
        match job {
            Job::Write(mut buf) => {
                if !failed && let Err(e) = state.write(&buf) {
                    failed = true;
                    *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
                buf.clear();
                if buf.capacity() <= KEEP_AT_MOST {
                    // Full (the session has enough spares) or gone: dropped here.
                    let _ = give_back.try_send(buf);
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
    state
}

impl Drop for Sink {
    /// A sink dropped without `finish` (an aborted session) waits for its writer thread to
    /// write what is queued (at most `QUEUED` buffers), so the file holds every line handed
    /// over, as with inline writes; `recover` closes it later.
    fn drop(&mut self) {
        if let Mode::Threaded(t) = std::mem::replace(&mut self.mode, Mode::Gone) {
            drop(t.jobs);
            let _ = t.thread.join();
        }
    }
}
