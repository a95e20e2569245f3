//! What a new observer is shown first: a terminal model of a PTY session's screen, or the
//! tail of a session without a PTY.
//!
//! The terminal model (`vt100`) is exact but not cheap: 20 to 35 MiB/s of ordinary text on
//! this project's machines, and some sequences cost far more than their size (a 4-byte
//! clear-screen rewrites every cell: 40 µs per byte on a 500x200 screen). So parsing is
//! lazy and has a CPU-time budget:
//! * `feed` copies output into a backlog of at most `BACKLOG` unparsed bytes; that is all
//!   it does while the backlog has room. A session that ends before its backlog fills and
//!   is never watched is never parsed and never allocates a parser.
//! * When the backlog is full, the oldest output is parsed, in slices of `SLICE` bytes,
//!   for at most `PER_CALL` per call and within the session's budget (a `1 / SHARE` part
//!   of wall time, saved up to `BURST`). What cannot be parsed in time is skipped: dropped
//!   from the backlog's front, so the session never slows down to the parser's speed.
//! * A watch start (or a lagging watcher's redraw) parses what is left, the newest part
//!   only if not all of it fits in the budget or `RENDER_MIN`, whichever is larger.
//! * Size changes are queued with the output and applied when parsing reaches them.
//!
//! So the screen is exact while the session's output costs less than its share to parse:
//! interactive work, full-screen programs, bursts of several MiB. After skipped output the
//! model goes on from its state before the skip with the newest output, from a line
//! boundary on. For floods of text (what causes skips) that draws the same screen; modes
//! changed and text drawn only inside the skipped output are lost.
//!
//! Memory: the backlog (up to 1.5 x `BACKLOG`, as parsed output is let go of in batches),
//! and once needed the parser, 64 bytes per cell.
//!
//! Not reproduced: the inactive screen (an observer joining while a full-screen program
//! runs sees the alternate screen only), the scroll region, input modes (mouse reporting,
//! bracketed paste: the observer's keys go nowhere, and mouse reporting would stop them
//! selecting text) and scrollback. Screens larger than `MAX_COLS` x `MAX_ROWS` are modelled
//! at that size: memory and the cost of whole-screen operations grow with the cell count,
//! which the client chooses.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Raw PTY output kept before it is parsed.
/// 256 KiB: a thousand busy PTY sessions then keep at most ~384 MiB between them (see
/// Memory above), and interactive output is parsed only once that much has built up.
pub(super) const BACKLOG: usize = 256 << 10;
/// Output parsed between two looks at the clock: 1 KiB of the costliest input takes about
/// 13 ms on the largest screen modelled, of ordinary text about 50 µs.
const SLICE: usize = 1 << 10;
/// The most parsing one `feed` does, so the session's task does not hold its thread long.
const PER_CALL: Duration = Duration::from_millis(5);
/// The share of wall time a session's model may spend parsing (1/20: 50 ms per second) ...
const SHARE: u32 = 20;
/// ... saved up to this much, which is also the most debt a render may run up.
const BURST: Duration = Duration::from_millis(250);
/// What a watch start may always spend, whatever the budget.
const RENDER_MIN: Duration = Duration::from_millis(20);
/// Size changes queued before parsing reaches them; more replace the newest.
const MAX_RESIZES: usize = 8;
/// Output kept for sessions without a PTY.
pub(super) const TAIL: usize = 64 << 10;
/// The largest screen modelled.
pub(super) const MAX_COLS: u16 = 300;
pub(super) const MAX_ROWS: u16 = 100;

/// The session's output as a new watcher needs it.
pub(super) enum Model {
    Screen(Screen),
    Tail(Tail),
}

impl Model {
    /// A terminal model of `(cols, rows)` for PTY sessions, a tail otherwise.
    pub(super) fn new(pty: Option<(u16, u16)>) -> Model {
        match pty {
            Some((cols, rows)) => Model::Screen(Screen::new(cols, rows)),
            None => Model::Tail(Tail::default()),
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        match self {
            Model::Screen(s) => s.feed(bytes),
            Model::Tail(t) => t.feed(bytes),
        }
    }

    /// A tail has no size: a window change without a PTY means nothing to it.
    pub(super) fn resize(&mut self, cols: u16, rows: u16) {
        if let Model::Screen(s) = self {
            s.resize(cols, rows);
        }
    }

    /// What a new watcher is sent first.
    pub(super) fn initial(&mut self) -> Vec<u8> {
        match self {
            Model::Screen(s) => s.render(false),
            Model::Tail(t) => t.tail(),
        }
    }

    /// What puts a lagging watcher's terminal right again: the current screen. A tail
    /// cannot: the lost lines stay lost.
    pub(super) fn redraw(&mut self) -> Option<Vec<u8>> {
        match self {
            Model::Screen(s) => Some(s.render(true)),
            Model::Tail(_) => None,
        }
    }
}

/// Parsing time a session may still spend: `SHARE` of wall time, at most `BURST`, and at
/// most `BURST` in debt.
struct Budget {
    nanos: i64,
    at: Option<Instant>,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Budget {
    fn full() -> Budget {
        Budget {
            nanos: nanos(BURST),
            at: None,
        }
    }

    fn available(&mut self, now: Instant) -> Duration {
        if let Some(at) = self.at {
            let earned = nanos(now.saturating_duration_since(at)) / i64::from(SHARE);
            self.nanos = self.nanos.saturating_add(earned).min(nanos(BURST));
        }
        self.at = Some(now);
        Duration::from_nanos(u64::try_from(self.nanos).unwrap_or(0))
    }

    fn charge(&mut self, spent: Duration) {
        self.nanos = self.nanos.saturating_sub(nanos(spent)).max(-nanos(BURST));
    }
}

/// The screen of a PTY session, parsed lazily (see the module comment).
///
/// Output is numbered by its position in the session's stream: `buf` holds it from
/// `buf_at`, everything before `parsed` has been parsed or dropped, and `fed` is the end.
pub(super) struct Screen {
    /// The size the parser has (or gets when created).
    rows: NonZeroU16,
    cols: NonZeroU16,
    /// Created on the first parse: most sessions never need one.
    parser: Option<Box<vt100::Parser>>,
    buf: Vec<u8>,
    buf_at: u64,
    parsed: u64,
    /// Size changes at stream positions not parsed yet, in order.
    resizes: VecDeque<(u64, NonZeroU16, NonZeroU16)>,
    /// Output was dropped right before `parsed`: the parser may be inside a sequence and
    /// the text resumes mid-line.
    gap: bool,
    budget: Budget,
    /// Recent parsing cost, for deciding how much a render can parse in time.
    nanos_per_byte: u64,
    /// Output skipped since the last render, for the log.
    skipped: u64,
}

fn clamp(n: u16, max: u16) -> NonZeroU16 {
    NonZeroU16::new(n.min(max)).unwrap_or(NonZeroU16::MIN)
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Screen {
    pub(super) fn new(cols: u16, rows: u16) -> Screen {
        Screen {
            rows: clamp(rows, MAX_ROWS),
            cols: clamp(cols, MAX_COLS),
            parser: None,
            buf: Vec::new(),
            buf_at: 0,
            parsed: 0,
            resizes: VecDeque::new(),
            gap: false,
            budget: Budget::full(),
            nanos_per_byte: 50,
            skipped: 0,
        }
    }

    fn fed(&self) -> u64 {
        self.buf_at + len64(self.buf.len())
    }

    fn pending(&self) -> usize {
        usize::try_from(self.fed() - self.parsed).unwrap_or(usize::MAX)
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if self.pending() + bytes.len() <= BACKLOG {
            self.buf.extend_from_slice(bytes);
            return;
        }
        let allowed = self.budget.available(Instant::now()).min(PER_CALL);
        self.feed_within(bytes, allowed);
    }

    /// `feed` with the backlog full and `allowed` parsing time.
    pub(super) fn feed_within(&mut self, bytes: &[u8], allowed: Duration) {
        let spent = self.advance(allowed);
        self.budget.charge(spent);
        let pending = self.pending();
        let over = (pending + bytes.len()).saturating_sub(BACKLOG);
        self.skip(len64(over));
        // A write larger than the backlog keeps its end only.
        let (_, kept) = bytes.split_at(over.saturating_sub(pending).min(bytes.len()));
        self.buf.extend_from_slice(kept);
    }

    /// Size changes apply to output given after them.
    pub(super) fn resize(&mut self, cols: u16, rows: u16) {
        let size = (self.fed(), clamp(rows, MAX_ROWS), clamp(cols, MAX_COLS));
        if self.resizes.len() >= MAX_RESIZES {
            self.resizes.pop_back();
        }
        self.resizes.push_back(size);
    }

    /// Bytes that draw the current screen on a terminal: clear it, the contents with their
    /// attributes, the cursor. `redraw` is for a terminal that has been following the
    /// session, so it may be on the alternate screen when the session no longer is.
    pub(super) fn render(&mut self, redraw: bool) -> Vec<u8> {
        let allowed = self.budget.available(Instant::now()).max(RENDER_MIN);
        self.render_within(redraw, allowed)
    }

    /// `render` with `allowed` parsing time.
    pub(super) fn render_within(&mut self, redraw: bool, allowed: Duration) -> Vec<u8> {
        // Parse the newest output if not all of it can be parsed in time.
        let affordable =
            u64::try_from(allowed.as_nanos()).unwrap_or(u64::MAX) / self.nanos_per_byte;
        self.skip(len64(self.pending()).saturating_sub(affordable));
        let spent = self.advance(allowed);
        self.budget.charge(spent);
        if self.skipped > 0 {
            tracing::debug!(
                skipped = std::mem::take(&mut self.skipped),
                "output skipped by the terminal model of a live session"
            );
        }
        guarded(&mut self.parser, self.rows, self.cols, |p| {
            let screen = p.screen();
            let mut out = Vec::new();
            if screen.alternate_screen() {
                out.extend_from_slice(b"\x1b[?1049h");
            } else if redraw {
                out.extend_from_slice(b"\x1b[?1049l");
            }
            out.extend_from_slice(screen.contents_formatted().as_bytes());
            out
        })
        .unwrap_or_default()
    }

    /// Forget the next `n` bytes of output, which may go past what was fed so far (the
    /// front of a write larger than the backlog).
    fn skip(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.parsed += n;
        self.skipped += n;
        self.gap = true;
        // Of the size changes in the skipped output only the last still matters.
        while self
            .resizes
            .get(1)
            .is_some_and(|next| next.0 <= self.parsed)
        {
            self.resizes.pop_front();
        }
        self.compact();
    }

    /// Parse from `parsed` on until all is parsed or `allowed` is spent, at least one
    /// slice unless `allowed` is zero; returns the time spent.
    fn advance(&mut self, allowed: Duration) -> Duration {
        if allowed.is_zero() {
            return Duration::ZERO;
        }
        let start = Instant::now();
        let from = self.parsed;
        loop {
            while let Some(&(_, rows, cols)) = self.resizes.front().filter(|r| r.0 <= self.parsed) {
                self.resizes.pop_front();
                self.rows = rows;
                self.cols = cols;
                if self.parser.is_some() {
                    guarded(&mut self.parser, rows, cols, |p| p.set_size(rows, cols));
                }
            }
            if self.parsed == self.fed() {
                break;
            }
            if std::mem::take(&mut self.gap) {
                self.resume_after_gap();
                continue;
            }
            let end = self
                .fed()
                .min(self.parsed + len64(SLICE))
                .min(self.next_resize());
            let bytes = slice(&self.buf, self.buf_at, self.parsed, end);
            guarded(&mut self.parser, self.rows, self.cols, |p| p.process(bytes));
            self.parsed = end;
            if start.elapsed() >= allowed {
                break;
            }
        }
        let spent = start.elapsed();
        let parsed = self.parsed - from;
        if parsed >= len64(SLICE) {
            let per_byte = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX) / parsed;
            self.nanos_per_byte = (self.nanos_per_byte + per_byte).div_ceil(2).max(1);
        }
        self.compact();
        spent
    }

    fn next_resize(&self) -> u64 {
        self.resizes.front().map_or(u64::MAX, |r| r.0)
    }

    /// After dropped output: end any sequence the parser is inside (CAN), and skip to the
    /// next line, so the newest output is not drawn from a wrong place mid-line.
    fn resume_after_gap(&mut self) {
        guarded(&mut self.parser, self.rows, self.cols, |p| {
            p.process(b"\x18")
        });
        let end = self.fed().min(self.next_resize());
        let rest = slice(&self.buf, self.buf_at, self.parsed, end);
        if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.parsed += len64(nl + 1);
        }
    }

    /// Let go of parsed output once it is a large part of the buffer (copying the rest
    /// down at most once per `BACKLOG / 2` bytes parsed).
    fn compact(&mut self) {
        let done = usize::try_from(self.parsed - self.buf_at).unwrap_or(usize::MAX);
        if done >= self.buf.len() {
            self.buf.clear();
            self.buf_at = self.parsed;
        } else if done >= BACKLOG / 2 {
            self.buf.drain(..done);
            self.buf_at = self.parsed;
        }
    }

    /// How far output has been parsed or skipped, how much was skipped, and whether a
    /// parser exists.
    #[cfg(test)]
    pub(super) fn progress(&self) -> (u64, u64, bool) {
        (self.parsed, self.skipped, self.parser.is_some())
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        (self.buf.len(), self.resizes.len())
    }
}

/// Output between stream positions `from` and `to` of a buffer starting at `buf_at`.
fn slice(buf: &[u8], buf_at: u64, from: u64, to: u64) -> &[u8] {
    let at = |pos: u64| usize::try_from(pos.saturating_sub(buf_at)).unwrap_or(usize::MAX);
    buf.get(at(from)..at(to)).unwrap_or_default()
}

/// Run `f` on the parser, creating it at `rows` x `cols` first. The parser is a dependency
/// fed with whatever the session prints; should it panic, observation must not take the
/// observed session down with it, so the model starts again blank.
fn guarded<T>(
    parser: &mut Option<Box<vt100::Parser>>,
    rows: NonZeroU16,
    cols: NonZeroU16,
    f: impl FnOnce(&mut vt100::Parser) -> T,
) -> Option<T> {
    let p = parser.get_or_insert_with(|| Box::new(vt100::Parser::new(rows, cols, 0)));
    match catch_unwind(AssertUnwindSafe(|| f(p))) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!("the terminal model of a live session failed; it starts blank");
            *parser = Some(Box::new(vt100::Parser::new(rows, cols, 0)));
            None
        }
    }
}

/// The last `TAIL` bytes of a session without a PTY.
#[derive(Default)]
pub(super) struct Tail {
    buf: VecDeque<u8>,
    /// Output was dropped from the front, so the buffer may start mid-line.
    cut: bool,
}

impl Tail {
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL {
            let (_, last) = bytes.split_at(bytes.len() - TAIL);
            self.buf.clear();
            self.buf.extend(last);
            self.cut = true;
            return;
        }
        let over = (self.buf.len() + bytes.len()).saturating_sub(TAIL);
        if over > 0 {
            self.buf.drain(..over);
            self.cut = true;
        }
        self.buf.extend(bytes);
    }

    /// The kept output, from the first line boundary in it when the front was cut.
    pub(super) fn tail(&self) -> Vec<u8> {
        let (a, b) = self.buf.as_slices();
        let mut out = Vec::with_capacity(a.len() + b.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        if self.cut
            && let Some(nl) = out.iter().position(|&c| c == b'\n')
        {
            out.drain(..=nl);
        }
        out
    }
}
