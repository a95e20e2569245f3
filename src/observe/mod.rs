//! Live observation: a second person (an observer) follows a running session's output,
//! read-only, starting from what its user sees now.
//!
//! The session registers with the `Hub` as it starts and feeds its output (`Live`); an
//! observer asks the hub for a `Watch` by session id or id prefix and is sent the current
//! screen (`Watch::initial`), then the output, size changes and the end as they happen.
//! The observed user is told who starts and stops watching (`Live::notices`).
//!
//! Guarantees:
//! * The observed session never waits for an observer to read. Each watcher has a
//!   bounded queue; one that falls behind loses output and is told so once
//!   (`WatchEvent::Lagged`), and a PTY watcher is then sent the current screen again so
//!   its terminal is right. A watch start and such a redraw hold the session's lock while
//!   the screen model catches up, for a bounded time (see `screen`).
//! * Output after `initial` is delivered in order, with nothing lost or repeated between
//!   the two (both are taken under the session's lock).
//! * Every watch of a session ends with `WatchEvent::Ended` when the session does.
//! * Everything is bounded: live sessions, watchers per session, each watcher's queue,
//!   the screen model (`screen`), the tail, the notices and the list of past observers.
//!
//! Not provided: sessions of other gateway processes (this is in memory); the observed
//! session's input (observers see output, never keystrokes); any way for an observer to
//! write to the observed session: nothing here reaches its stdin. Who may watch whom is
//! the caller's decision.

mod screen;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use screen::Model;

/// The most sessions registered at once.
pub const MAX_LIVE: usize = 4096;
/// The most observers of one session at once.
pub const MAX_WATCHERS: usize = 16;
/// The shortest id prefix `Hub::watch` accepts.
pub const MIN_ID_PREFIX: usize = 6;
/// A watcher's queue: at most this many events ...
const QUEUE_EVENTS: usize = 256;
/// ... holding at most this many bytes of output (one larger chunk fits an empty queue).
const QUEUE_BYTES: usize = 4 << 20;
/// Notices waiting for the observed session; more are dropped.
const NOTICE_SLOTS: usize = 16;
/// Distinct identities kept by `Live::observers_ever`.
const MAX_EVER: usize = 64;
/// How much of an unusable id an error repeats.
const SHOWN_ID: usize = 64;

/// Bytes that put an observer's terminal back in order after a watch: the normal screen,
/// default attributes, a visible cursor, no mouse reporting or bracketed paste (any of
/// which the observed program may have turned on).
pub const RESTORE_TERMINAL: &[u8] =
    b"\x1b[?1049l\x1b[m\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\r\n";

/// Live sessions of this gateway process that may be observed, and their observers.
pub struct Hub {
    /// In registration order.
    live: Mutex<Vec<Arc<Entry>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveInfo {
    /// 32-hex session id.
    pub session: String,
    /// The observed user's key id.
    pub identity: String,
    /// "exec" | "shell" | "logs" | ...
    pub action: String,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub command: Option<String>,
    pub started: SystemTime,
    /// (cols, rows) if the session has a PTY.
    pub pty: Option<(u16, u16)>,
    /// Identities currently watching.
    pub observers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("no live session {0} on this gateway")]
    NotFound(String),
    #[error("{0} matches more than one live session; give more of the id")]
    Ambiguous(String),
    #[error("session ids are hexadecimal, at least 6 characters: {0:?}")]
    BadId(String),
    #[error("too many live sessions")]
    TooMany,
    #[error("too many observers of this session")]
    TooManyWatchers,
    #[error("session {0} is already live")]
    AlreadyLive(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Output(Bytes),
    Resized { cols: u16, rows: u16 },
    Lagged { dropped_bytes: u64 },
    Ended,
}

/// One live session, shared by its `Live`, the hub and its watches.
struct Entry {
    session: String,
    state: Mutex<State>,
    notices: mpsc::Sender<String>,
}

struct State {
    /// `observers` is left empty here and filled from `watchers` when asked.
    info: LiveInfo,
    /// `None` once the session ended: nobody can start watching it any more.
    model: Option<Model>,
    watchers: Vec<Slot>,
    ever: Vec<(String, SystemTime)>,
    ended: bool,
    next_slot: u64,
}

/// One watcher's queue.
struct Slot {
    id: u64,
    identity: String,
    queue: VecDeque<WatchEvent>,
    queued_bytes: usize,
    /// Set when something was dropped; nothing more is queued until the watcher has read
    /// all that is queued and been told (`WatchEvent::Lagged`).
    lagged: bool,
    dropped: u64,
    resize_dropped: bool,
    wake: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Control characters in an identity would reach the observed user's terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn shown(id: &str) -> String {
    id.chars().take(SHOWN_ID).collect()
}

fn is_hex_id(id: &str) -> bool {
    id.len() >= MIN_ID_PREFIX && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The one id in `ids` that is `query` or starts with it (case-insensitively; an exact
/// match wins over longer ids it prefixes).
fn resolve<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    query: &str,
) -> Result<&'a str, ObserveError> {
    if !is_hex_id(query) {
        return Err(ObserveError::BadId(shown(query)));
    }
    let query = query.to_ascii_lowercase();
    let mut found: Option<&'a str> = None;
    let mut more = false;
    for id in ids {
        let lower = id.to_ascii_lowercase();
        if lower == query {
            return Ok(id);
        }
        if lower.starts_with(&query) {
            more |= found.is_some();
            found = Some(id);
        }
    }
    match found {
        Some(_) if more => Err(ObserveError::Ambiguous(query)),
        Some(id) => Ok(id),
        None => Err(ObserveError::NotFound(query)),
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            live: Mutex::new(Vec::new()),
        }
    }

    /// Register a session as it starts. Dropping the returned `Live` unregisters it and
    /// ends every watch of it. The id must be hexadecimal (it is what `watch` matches).
    pub fn register(self: &Arc<Self>, mut info: LiveInfo) -> Result<Live, ObserveError> {
        if !is_hex_id(&info.session) {
            return Err(ObserveError::BadId(shown(&info.session)));
        }
        let mut live = lock(&self.live);
        if live.len() >= MAX_LIVE {
            return Err(ObserveError::TooMany);
        }
        if live.iter().any(|e| e.session == info.session) {
            return Err(ObserveError::AlreadyLive(info.session));
        }
        info.observers.clear();
        let (tx, rx) = mpsc::channel(NOTICE_SLOTS);
        let entry = Arc::new(Entry {
            session: info.session.clone(),
            state: Mutex::new(State {
                model: Some(Model::new(info.pty)),
                info,
                watchers: Vec::new(),
                ever: Vec::new(),
                ended: false,
                next_slot: 0,
            }),
            notices: tx,
        });
        live.push(entry.clone());
        Ok(Live {
            hub: self.clone(),
            entry,
            notices: Mutex::new(Some(rx)),
        })
    }

    /// The live sessions, oldest first.
    pub fn list(&self) -> Vec<LiveInfo> {
        let entries = lock(&self.live).clone();
        let mut out: Vec<LiveInfo> = entries.iter().map(|e| e.info()).collect();
        out.sort_by_key(|i| i.started);
        out
    }

    /// Start watching the session whose id is `id` or starts with `id` (at least
    /// `MIN_ID_PREFIX` hex characters). `observer` is the watcher's identity; watching
    /// one's own session is allowed here (policy is the caller's). The observed session
    /// is told through `Live::notices`.
    pub fn watch(&self, id: &str, observer: &str) -> Result<Watch, ObserveError> {
        let entry = {
            let live = lock(&self.live);
            let session = resolve(live.iter().map(|e| e.session.as_str()), id)?;
            live.iter().find(|e| e.session == session).cloned()
        }
        .ok_or_else(|| ObserveError::NotFound(shown(id)))?;
        let mut guard = lock(&entry.state);
        let st = &mut *guard;
        let model = match (&mut st.model, st.ended) {
            (Some(model), false) => model,
            _ => return Err(ObserveError::NotFound(shown(id))),
        };
        if st.watchers.len() >= MAX_WATCHERS {
            return Err(ObserveError::TooManyWatchers);
        }
        let initial = model.initial();
        let wake = Arc::new(Notify::new());
        let slot = st.next_slot;
        st.next_slot += 1;
        st.watchers.push(Slot {
            id: slot,
            identity: observer.to_owned(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            lagged: false,
            dropped: 0,
            resize_dropped: false,
            wake: wake.clone(),
        });
        if st.ever.len() < MAX_EVER && !st.ever.iter().any(|(who, _)| who == observer) {
            st.ever.push((observer.to_owned(), SystemTime::now()));
        }
        entry.notice(format!(
            "{} is now watching this session",
            printable(observer)
        ));
        drop(guard);
        Ok(Watch {
            entry,
            slot,
            wake,
            initial,
            pending: VecDeque::new(),
        })
    }
}

impl Entry {
    fn info(&self) -> LiveInfo {
        let st = lock(&self.state);
        let mut info = st.info.clone();
        info.observers = st.watchers.iter().map(|s| s.identity.clone()).collect();
        info
    }

    /// Never waits: a full queue (nobody reading) drops the notice.
    fn notice(&self, text: String) {
        let _ = self.notices.try_send(text);
    }
}

/// The observed session's side. Dropping it ends the session's observation.
pub struct Live {
    hub: Arc<Hub>,
    entry: Arc<Entry>,
    notices: Mutex<Option<mpsc::Receiver<String>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("session", &self.entry.session)
            .finish_non_exhaustive()
    }
}

impl Live {
    pub fn session(&self) -> &str {
        &self.entry.session
    }

    /// Output as the user sees it (stdout and stderr, in order). Never waits for a
    /// watcher. With nobody watching it copies `bytes` into the tail, or into the screen
    /// model's backlog (parsed only once that is full, and then for a bounded time: see
    /// `screen`), and allocates nothing once those have grown; with watchers, one copy of
    /// `bytes` is shared by all of them.
    pub fn output(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut st = lock(&self.entry.state);
        let st = &mut *st;
        if let Some(model) = &mut st.model {
            model.feed(bytes);
        }
        let mut chunk: Option<Bytes> = None;
        for slot in &mut st.watchers {
            slot.offer_output(bytes, &mut chunk);
        }
    }

    /// The session's terminal changed size. Ignored for a session without a PTY.
    pub fn resize(&self, cols: u16, rows: u16) {
        let mut st = lock(&self.entry.state);
        let st = &mut *st;
        if st.info.pty.is_none() {
            return;
        }
        st.info.pty = Some((cols, rows));
        if let Some(model) = &mut st.model {
            model.resize(cols, rows);
        }
        for slot in &mut st.watchers {
            slot.offer(WatchEvent::Resized { cols, rows }, 0);
        }
    }

    /// Lines for the observed user, such as "alice@corp.example is now watching this
    /// session" and "alice@corp.example stopped watching". The channel is bounded and
    /// notices that find it full are dropped. Only the first call gets the receiver.
    pub fn notices(&self) -> Option<mpsc::Receiver<String>> {
        lock(&self.notices).take()
    }

    /// Everyone who watched at any point (each identity once, with the first time it
    /// started), for the session's metadata.
    pub fn observers_ever(&self) -> Vec<(String, SystemTime)> {
        lock(&self.entry.state).ever.clone()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        lock(&self.hub.live).retain(|e| !Arc::ptr_eq(e, &self.entry));
        let mut st = lock(&self.entry.state);
        st.ended = true;
        // Watchers may outlive the session by a while; the screen is of no use to them now.
        st.model = None;
        for slot in &st.watchers {
            slot.wake.notify_one();
        }
    }
}

impl Slot {
    fn has_room(&self, len: usize) -> bool {
        self.queue.len() < QUEUE_EVENTS
            && (self.queue.is_empty() || self.queued_bytes + len <= QUEUE_BYTES)
    }

    /// Queue output, copying `bytes` into `chunk` the first time a watcher takes it.
    fn offer_output(&mut self, bytes: &[u8], chunk: &mut Option<Bytes>) {
        if self.lagged || !self.has_room(bytes.len()) {
            self.lag(bytes.len(), false);
            return;
        }
        let chunk = chunk.get_or_insert_with(|| Bytes::copy_from_slice(bytes));
        self.push(WatchEvent::Output(chunk.clone()), bytes.len());
    }

    fn offer(&mut self, event: WatchEvent, len: usize) {
        if self.lagged || !self.has_room(len) {
            self.lag(len, matches!(event, WatchEvent::Resized { .. }));
            return;
        }
        self.push(event, len);
    }

    fn push(&mut self, event: WatchEvent, len: usize) {
        self.queue.push_back(event);
        self.queued_bytes += len;
        self.wake.notify_one();
    }

    fn lag(&mut self, len: usize, resize: bool) {
        self.lagged = true;
        self.dropped = self
            .dropped
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        self.resize_dropped |= resize;
        self.wake.notify_one();
    }
}

/// The observer's side. Dropping it stops the watch and tells the observed session.
pub struct Watch {
    entry: Arc<Entry>,
    slot: u64,
    wake: Arc<Notify>,
    initial: Vec<u8>,
    /// Events decided together with a `Lagged` and sent right after it.
    pending: VecDeque<WatchEvent>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("session", &self.entry.session)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The watched session now, with its current observers.
    pub fn info(&self) -> LiveInfo {
        self.entry.info()
    }

    /// Bytes that draw the session's screen as it was when the watch started: clear the
    /// screen, the contents with colours and attributes, the cursor. For a session without
    /// a PTY, its last output instead (up to 64 KiB, from a line boundary if it was cut).
    pub fn initial(&self) -> &[u8] {
        &self.initial
    }

    /// The next event. After `Ended`, `Ended` again. Cancel-safe: an event is taken only
    /// in the same poll that returns it.
    pub async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            if let Some(event) = self.take() {
                return event;
            }
            self.wake.notified().await;
        }
    }

    fn take(&mut self) -> Option<WatchEvent> {
        let mut st = lock(&self.entry.state);
        let st = &mut *st;
        let Some(slot) = st.watchers.iter_mut().find(|s| s.id == self.slot) else {
            return Some(WatchEvent::Ended);
        };
        if let Some(event) = slot.queue.pop_front() {
            if let WatchEvent::Output(b) = &event {
                slot.queued_bytes = slot.queued_bytes.saturating_sub(b.len());
            }
            return Some(event);
        }
        if slot.lagged {
            slot.lagged = false;
            let dropped_bytes = std::mem::take(&mut slot.dropped);
            let resized = std::mem::take(&mut slot.resize_dropped);
            if let (false, Some(model)) = (st.ended, &mut st.model) {
                if let (true, Some((cols, rows))) = (resized, st.info.pty) {
                    self.pending.push_back(WatchEvent::Resized { cols, rows });
                }
                if let Some(screen) = model.redraw() {
                    self.pending
                        .push_back(WatchEvent::Output(Bytes::from(screen)));
                }
            }
            return Some(WatchEvent::Lagged { dropped_bytes });
        }
        st.ended.then_some(WatchEvent::Ended)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut st = lock(&self.entry.state);
        let Some(at) = st.watchers.iter().position(|s| s.id == self.slot) else {
            return;
        };
        let slot = st.watchers.remove(at);
        drop(st);
        self.entry
            .notice(format!("{} stopped watching", printable(&slot.identity)));
    }
}

#[cfg(test)]
mod tests;
