use std::path::Path;
use std::sync::Arc;

use object_store::memory::InMemory;

use super::*;
use crate::recording::offline::tests::{DAY, Spec, cast_of, fixture, session as record};

const GW1: &str = "11111111111111111111111111111111";
const GW2: &str = "22222222222222222222222222222222";
const DATE: &str = "2026-11-22";

fn store() -> Store {
    Store::from_object_store(Arc::new(InMemory::new()), "prefix", "s3://test/prefix")
}

/// Split `bytes` into pieces of `lines` whole lines each, with their offsets.
fn pieces(bytes: &[u8], lines: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let (mut start, mut count) = (0usize, 0usize);
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            count += 1;
            if count == lines {
                out.push((start as u64, bytes[start..=i].to_vec()));
                (start, count) = (i + 1, 0);
            }
        }
    }
    if start < bytes.len() {
        out.push((start as u64, bytes[start..].to_vec()));
    }
    out
}

/// Upload a recordings directory as a gateway ships it: metadata and whole recordings,
/// and the audit log as segments of two lines under `gateway`.
async fn upload(store: &Store, root: &Path, gateway: &str) {
    for (date, dir) in meta::date_dirs(root).unwrap() {
        for name in meta::file_names(&dir).unwrap() {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            store
                .put_bytes(&format!("{date}/{name}"), bytes)
                .await
                .unwrap();
        }
    }
    let audit = std::fs::read(root.join("audit.jsonl")).unwrap();
    for (offset, bytes) in pieces(&audit, 2) {
        let key = keys::audit_segment(gateway, offset);
        store.put_bytes(&key, bytes).await.unwrap();
    }
}

/// Replace a session's whole recording by its live parts (two lines each).
async fn to_parts(store: &Store, root: &Path, m: &Metadata) -> u64 {
    let cast = std::fs::read(cast_of(root, m)).unwrap();
    store
        .delete(&keys::session_cast(DATE, &m.session))
        .await
        .unwrap();
    for (offset, bytes) in pieces(&cast, 2) {
        let key = keys::part(DATE, &m.session, offset);
        store.put_bytes(&key, bytes).await.unwrap();
    }
    cast.len() as u64
}

fn cat_of(cast: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    offline::cat(cast, &mut out).unwrap();
    out
}

/// A directory with two ended sessions and one still running, and the same in a store.
async fn recorded() -> (tempfile::TempDir, Vec<Metadata>, Store) {
    let (root, audit) = fixture();
    let r = root.path();
    let made = vec![
        record(r, &audit, Spec::default()),
        record(
            r,
            &audit,
            Spec {
                identity: "bob",
                action: "exec",
                start: DAY + 60,
                output: &["a\r\n", "b\r\n", "c\r\n", "d\r\n", "e\r\n"],
                ..Spec::default()
            },
        ),
        record(
            r,
            &audit,
            Spec {
                end_reason: None,
                ..Spec::default()
            },
        ),
    ];
    let store = store();
    upload(&store, r, GW1).await;
    (root, made, store)
}

#[tokio::test]
async fn list_and_verify_through_a_store_match_the_directory() {
    let (root, made, store) = recorded().await;
    let r = root.path();
    for filter in [
        Filter::default(),
        Filter {
            identity: Some("bob".into()),
            ..Filter::default()
        },
    ] {
        assert_eq!(
            list(&store, &filter).await.unwrap(),
            offline::list(r, &filter).unwrap()
        );
    }
    // Objects podgate does not write are ignored.
    store.put_bytes("README", b"hi".to_vec()).await.unwrap();
    store
        .put_bytes(&format!("{DATE}/notes.json"), b"{".to_vec())
        .await
        .unwrap();
    let local = offline::verify(r).unwrap();
    let remote = verify(&store).await.unwrap();
    assert!(remote.ok(), "{:?}", remote.problems);
    assert_eq!(remote, local);
    assert_eq!(remote.in_progress, [format!("{DATE}/{}", made[2].session)]);
    assert!(remote.from_parts.is_empty());
}

/// How an object in the bucket is damaged, and the problem verify must name.
enum Damage {
    FlipCastByte(usize),
    DropAuditSegment(u64),
    EditAuditSegment(u64),
    CastToParts(usize),
}

#[tokio::test]
async fn verify_names_the_damaged_object() {
    let seg = |offset| keys::audit_segment(GW1, offset);
    for (damage, wanted) in [
        (
            Damage::FlipCastByte(0),
            vec!["{0}.cast: sha256 differs from its metadata"],
        ),
        (
            Damage::EditAuditSegment(1),
            vec!["{seg1} line 2: prev does not match the line before"],
        ),
        (
            Damage::DropAuditSegment(1),
            vec![
                "{seg0} ends at byte {end0} but {seg2} starts at byte {end1} (gap of {len1} bytes)",
                "{seg2} line 1: prev does not match the line before",
                "{1}.json: no session.started audit event names this session",
            ],
        ),
        (
            Damage::CastToParts(1),
            vec![
                "{1}.cast: missing, though its metadata says the session ended (only {size1} bytes of live parts are there)",
            ],
        ),
    ] {
        let (root, made, store) = recorded().await;
        let segments = store.list(&keys::audit_prefix(GW1)).await.unwrap();
        let offsets: Vec<u64> = segments
            .iter()
            .map(|(k, _)| match keys::parse(k) {
                keys::Key::Audit { offset, .. } => offset,
                other => panic!("{other:?}"),
            })
            .collect();
        let cast_key = |i: usize| keys::session_cast(DATE, &made[i].session);
        let mut size1 = 0;
        match damage {
            Damage::FlipCastByte(i) => {
                let mut bytes = store.get_bytes(&cast_key(i), 1 << 20).await.unwrap();
                let at = bytes.len() - 5;
                bytes[at] ^= 1;
                store.put_bytes(&cast_key(i), bytes).await.unwrap();
            }
            Damage::DropAuditSegment(i) => {
                store.delete(&seg(offsets[i as usize])).await.unwrap();
            }
            Damage::EditAuditSegment(i) => {
                let key = seg(offsets[i as usize]);
                let text = String::from_utf8(store.get_bytes(&key, 1 << 20).await.unwrap())
                    .unwrap()
                    .replacen("\"exec\"", "\"exex\"", 1);
                store.put_bytes(&key, text.into_bytes()).await.unwrap();
            }
            Damage::CastToParts(i) => size1 = to_parts(&store, root.path(), &made[i]).await,
        }
        let wanted: Vec<String> = wanted
            .iter()
            .map(|w| {
                w.replace("{0}", &format!("{DATE}/{}", made[0].session))
                    .replace("{1}", &format!("{DATE}/{}", made[1].session))
                    .replace("{seg0}", &seg(offsets[0]))
                    .replace("{seg1}", &seg(offsets[1]))
                    .replace("{seg2}", &seg(offsets[2]))
                    .replace("{end0}", &offsets[1].to_string())
                    .replace("{end1}", &offsets[2].to_string())
                    .replace("{len1}", &(offsets[2] - offsets[1]).to_string())
                    .replace("{size1}", &size1.to_string())
            })
            .collect();
        let report = verify(&store).await.unwrap();
        assert_eq!(report.problems, wanted);
    }
}

#[tokio::test]
async fn replay_from_parts_plays_the_same_bytes_and_refuses_gaps() {
    let (root, made, store) = recorded().await;
    let r = root.path();
    let m = &made[1];
    let whole = cat_of(&cast_of(r, m));
    let found = session(&store, &m.session[..8]).await.unwrap();
    assert!(!found.from_parts);
    assert_eq!(found.meta, *m);
    assert_eq!(cat_of(&found.cast), whole);

    to_parts(&store, r, m).await;
    let found = session(&store, &m.session.to_uppercase()).await.unwrap();
    assert!(found.from_parts);
    assert_eq!(
        std::fs::read(&found.cast).unwrap(),
        std::fs::read(cast_of(r, m)).unwrap()
    );
    assert_eq!(cat_of(&found.cast), whole);
    let mut played = Vec::new();
    offline::play(&found.cast, 1000.0, None, &mut played)
        .await
        .unwrap();
    assert_eq!(played, whole);
    let dir = found.dir.path.clone();
    drop(found);
    assert!(!dir.exists(), "{dir:?} left behind");

    let parts = store
        .list(&keys::parts_prefix(DATE, &m.session))
        .await
        .unwrap();
    assert!(parts.len() >= 3, "{parts:?}");
    store.delete(&parts[1].0).await.unwrap();
    match session(&store, &m.session).await {
        Err(FetchError::Gap { url, problems }) => {
            assert_eq!(url, "s3://test/prefix");
            assert_eq!(problems.len(), 1);
            assert!(
                problems[0].starts_with(&format!("{} ends at byte", parts[0].0))
                    && problems[0].contains(&parts[2].0),
                "{problems:?}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a gap was played"),
    }
    for (prefix, want) in [
        ("", "no session starts with"),
        ("zz", "no session starts with"),
    ] {
        match session(&store, prefix).await {
            Err(e) => assert!(e.to_string().contains(want), "{e}"),
            Ok(_) => panic!("{prefix:?} found a session"),
        }
    }
}

#[tokio::test]
async fn a_lost_gateway_leaves_parts_reported_as_in_progress() {
    let (root, made, store) = recorded().await;
    let running = &made[2];
    let size = to_parts(&store, root.path(), running).await;
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let id = format!("{DATE}/{}", running.session);
    assert_eq!(report.in_progress, std::slice::from_ref(&id));
    assert_eq!(report.from_parts.get(&id), Some(&size));
    let found = session(&store, &running.session).await.unwrap();
    assert_eq!(cat_of(&found.cast), cat_of(&cast_of(root.path(), running)));
}

#[tokio::test]
async fn two_gateways_chains_are_each_checked_and_cross_checked_together() {
    let (root, made, store) = recorded().await;
    let (other, audit2) = fixture();
    let o = other.path();
    let theirs = record(o, &audit2, Spec::default());
    upload(&store, o, GW2).await;
    let report = verify(&store).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.sessions, made.len() + 1);
    assert_eq!(
        report.audit_lines,
        offline::verify(root.path()).unwrap().audit_lines + 2
    );
    // The second gateway's chain broken; a session known to neither chain.
    let key = keys::audit_segment(GW2, 0);
    let text = String::from_utf8(store.get_bytes(&key, 1 << 20).await.unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    store
        .put_bytes(&key, format!("{}\n", lines[1]).into_bytes())
        .await
        .unwrap();
    let report = verify(&store).await.unwrap();
    assert_eq!(
        report.problems,
        [
            format!("{key} line 1: prev does not match the line before"),
            format!(
                "{DATE}/{}.json: no session.started audit event names this session",
                theirs.session
            ),
        ]
    );
}

#[tokio::test]
async fn oversized_metadata_is_refused_by_list_and_reported_by_verify() {
    let (_root, _made, store) = recorded().await;
    let key = keys::session_json(DATE, &"f".repeat(32));
    store
        .put_bytes(&key, vec![b' '; MAX_JSON as usize + 1])
        .await
        .unwrap();
    match list(&store, &Filter::default()).await {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("s3://test/prefix") && text.contains(&key),
                "{text}"
            );
        }
        Ok(_) => panic!("listed"),
    }
    let report = verify(&store).await.unwrap();
    assert_eq!(
        report.problems,
        [format!("{key}: larger than {MAX_JSON} bytes, not read")]
    );
    // An empty bucket has no chain.
    let report = verify(&self::store()).await.unwrap();
    assert_eq!(
        report.problems,
        ["audit/: missing (no audit segments in the store)"]
    );
}

#[test]
fn breaks_name_gaps_overlaps_and_a_late_start() {
    let p = |key: &str, offset, size| Piece {
        key: key.into(),
        offset,
        size,
    };
    let cases: [(Vec<Piece>, Vec<&str>); 4] = [
        (vec![p("a", 0, 10), p("b", 10, 5), p("c", 15, 1)], vec![]),
        (
            vec![p("a", 0, 10), p("c", 15, 1)],
            vec!["a ends at byte 10 but c starts at byte 15 (gap of 5 bytes)"],
        ),
        (
            vec![p("a", 0, 10), p("b", 8, 5)],
            vec!["a ends at byte 10 but b starts at byte 8 (overlap of 2 bytes)"],
        ),
        (
            vec![p("b", 4, 1)],
            vec!["b: the first piece starts at byte 4, not 0"],
        ),
    ];
    for (pieces, want) in cases {
        assert_eq!(breaks(&pieces), want);
    }
}

#[tokio::test]
async fn the_temporary_directory_is_private_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let store = store();
    let reader = Reader::new(&store).unwrap();
    let dir = reader.root().to_owned();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(dir.starts_with(std::env::temp_dir()));
    drop(reader);
    assert!(!dir.exists());
}

#[tokio::test]
async fn an_ambiguous_prefix_is_refused_without_downloading() {
    let (root, audit) = fixture();
    let r = root.path();
    let ids = [
        format!("abc1{}", "0".repeat(28)),
        format!("abc2{}", "0".repeat(28)),
    ];
    for id in &ids {
        record(
            r,
            &audit,
            Spec {
                id: Some(id),
                ..Spec::default()
            },
        );
    }
    let store = store();
    upload(&store, r, GW1).await;
    match session(&store, "ABC").await {
        Err(FetchError::Offline {
            url,
            error: OfflineError::Ambiguous { matches, .. },
        }) => {
            assert_eq!(url, "s3://test/prefix");
            assert_eq!(matches, ids);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("one of several played"),
    }
    assert_eq!(session(&store, "abc2").await.unwrap().meta.session, ids[1]);
}
