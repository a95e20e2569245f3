//! The shipper against an in-memory object store: live parts, the whole recording at the
//! end, byte for byte, the audit log in segments, markers, and the spool cleaned up.

use std::sync::Arc;
use std::sync::Mutex;

use object_store::memory::InMemory;

use super::*;
use crate::recording::cast::CastHeader;
use crate::recording::session::{Recorder, Stream};

struct Sink {
    audit: crate::recording::audit::AuditLog,
    events: Mutex<Vec<(String, serde_json::Value)>>,
    metrics: StoreMetrics,
}

impl Outlet for Sink {
    fn event(&self, event: &str, fields: serde_json::Value) {
        self.audit.write(event, fields.clone()).unwrap();
        self.events.lock().unwrap().push((event.to_owned(), fields));
    }
    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }
}

fn config(keep: Duration) -> StoreConfig {
    let mut c = StoreConfig::for_reading("s3://rec/gw", None, None, false, false).unwrap();
    c.keep_shipped = keep;
    c
}

/// A new `exec` recording of `session` in the spool `root`.
fn exec_recording(root: &Path, session: &str) -> Recorder {
    let m = meta::Metadata {
        session: session.to_owned(),
        identity: "alice".into(),
        action: "exec".into(),
        ..Default::default()
    };
    let header = CastHeader {
        width: 80,
        height: 24,
        ..Default::default()
    };
    Recorder::start(root, 0, m, &header, None).unwrap()
}

async fn object(store: &Store, rel: &str) -> Vec<u8> {
    store.get_bytes(rel, u64::MAX).await.unwrap()
}

#[tokio::test]
async fn a_session_ships_in_parts_then_whole_and_the_spool_drains() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let audit = crate::recording::audit::AuditLog::open(&root.join("audit.jsonl")).unwrap();
    let session = meta::new_session_id();
    audit
        .write(
            "session.started",
            serde_json::json!({"session": session, "action": "exec"}),
        )
        .unwrap();
    let store = Store::from_object_store(Arc::new(InMemory::new()), "gw", "s3://rec/gw");
    let shipping = Shipping::new(store.clone(), root, config(Duration::ZERO)).unwrap();
    let sink = Sink {
        audit,
        events: Mutex::default(),
        metrics: StoreMetrics::default(),
    };
    let mut state = RoundState::default();

    let recorder = exec_recording(root, &session);
    recorder.output(Stream::Stdout, b"first line\n").unwrap();
    recorder.tick().unwrap();
    // The writer flushes at least every second; finish a line and flush by closing the
    // round only once the bytes are on disk.
    let (date, cast_path) = {
        let (entries, _) = spool::scan(root).unwrap();
        let e = entries.into_iter().next().unwrap();
        (e.date.clone(), e.cast.clone())
    };
    assert!(shipping.round(&sink, &mut state).await, "first round");
    let json_rel = keys::session_json(&date, &session);
    let live_json = object(&store, &json_rel).await;
    assert!(
        String::from_utf8_lossy(&live_json).contains("\"complete\": false")
            || String::from_utf8_lossy(&live_json).contains("\"complete\":false")
    );
    let parts = store
        .list(&keys::parts_prefix(&date, &session))
        .await
        .unwrap();
    let on_disk = std::fs::read(&cast_path).unwrap();
    let shipped: usize = parts.iter().map(|(_, n)| *n as usize).sum();
    assert!(shipped > 0 && shipped <= on_disk.len(), "{parts:?}");
    assert_eq!(
        object(&store, &parts[0].0).await,
        on_disk[..shipped].to_vec(),
        "the first part is the transcript's beginning"
    );

    recorder.output(Stream::Stdout, b"second line\n").unwrap();
    recorder.finish("exited", Some(0)).unwrap();
    assert!(shipping.round(&sink, &mut state).await, "second round");

    // Whole objects, byte-identical; parts gone; the marker and the event written.
    let cast = std::fs::read(&cast_path).unwrap();
    assert_eq!(
        object(&store, &keys::session_cast(&date, &session)).await,
        cast
    );
    let json_path = cast_path.with_extension("json");
    let marker = spool::read_marker(&json_path).unwrap().unwrap();
    assert_eq!(marker.objects.len(), 2);
    assert_eq!(marker.problem, None);
    assert!(
        store
            .list(&keys::parts_prefix(&date, &session))
            .await
            .unwrap()
            .is_empty()
    );
    let events = sink.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|(e, f)| e == "recording.shipped" && f["session"] == session.as_str())
    );

    // The audit log: segments that concatenate to the spool's log.
    let id = spool::spool_id(root).unwrap();
    let mut joined = Vec::new();
    for (rel, _) in store.list(&keys::audit_prefix(&id)).await.unwrap() {
        joined.extend(object(&store, &rel).await);
    }
    let log = std::fs::read(root.join("audit.jsonl")).unwrap();
    assert_eq!(joined, log[..joined.len()].to_vec());
    assert_eq!(spool::audit_shipped(root).unwrap(), joined.len() as u64);

    // keep_shipped 0: the next round removes the session from the spool.
    assert!(shipping.round(&sink, &mut state).await, "third round");
    assert!(!cast_path.exists() && !json_path.exists());
    assert!(!spool::marker_path(&json_path).exists());
    assert!(shipping.admit().is_ok());
    // The spool still verifies: the audit log says where the session went.
    let report = crate::recording::offline::verify(root).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.shipped_away, 1);
}

#[tokio::test]
async fn stopping_ships_what_ended_since_the_last_round() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let audit = crate::recording::audit::AuditLog::open(&root.join("audit.jsonl")).unwrap();
    let store = Store::from_object_store(Arc::new(InMemory::new()), "gw", "s3://rec/gw");
    // ship_every 30 s and no wake: only the last round, on stop, can ship the session.
    let shipping =
        Arc::new(Shipping::new(store.clone(), &root, config(Duration::from_secs(3600))).unwrap());
    let sink = Arc::new(Sink {
        audit,
        events: Mutex::default(),
        metrics: StoreMetrics::default(),
    });
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(shipping.clone().run(sink.clone(), stop.clone(), tx));
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();

    let recorder = exec_recording(&root, &meta::new_session_id());
    recorder.output(Stream::Stdout, b"late\n").unwrap();
    recorder.finish("shutdown", Some(124)).unwrap();
    let (entries, _) = spool::scan(&root).unwrap();
    let entry = entries.into_iter().next().unwrap();
    let key = keys::session_cast(&entry.date, &entry.session);
    assert!(
        store.get_bytes(&key, u64::MAX).await.is_err(),
        "not shipped yet"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        object(&store, &key).await,
        std::fs::read(&entry.cast).unwrap()
    );
    assert!(spool::read_marker(&entry.json).unwrap().is_some());
}
