//! The review server: answers GET requests for the pages of `html` from a recordings
//! directory, read-only.
//!
//! Routes: `/` (the index, filtered by the query: `identity`, `target`, `action`, `since`,
//! `incident`, `end_reason`, as `recordings list`), `/session/ID`, `/cast/ID` (the
//! transcript as recorded, for the player), `/incident?id=ID` (the incident's timeline).
//!
//! Guarantees: nothing is written; only GET and HEAD are answered; session ids must be
//! generated ids (32 hex digits) before they reach a path; every response carries a
//! Content-Security-Policy allowing nothing but this origin, `nosniff` and no referrer.
//! Verification (the checks of `recordings verify`) runs again only when the directory
//! changed (a fingerprint of its metadata and transcripts' sizes and times), not on every
//! page view.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::html::{self, Badge, FilterValues};
use super::{assets, cast_view};
use crate::recording::meta::{self, Metadata};
use crate::recording::offline::{self, Filter, VerifyReport};

/// Most transcript text shown on a session page.
const MAX_TEXT: usize = 4 << 20;

/// A response before it meets HTTP: status, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
}

/// A response body: bytes, or a file to stream (a transcript can be gigabytes).
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    Bytes(Vec<u8>),
    Static(&'static [u8]),
    File(PathBuf),
}

const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

fn reply(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        content_type,
        body: Body::Bytes(body.into()),
    }
}

/// Headers every response carries.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    (
        "content-security-policy",
        // The player runs its terminal emulator as WebAssembly (compiled from its own
        // bundle, so 'wasm-unsafe-eval' lets no other code in) and positions its
        // elements with style attributes.
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// Each file that matters for verification: its path, size and modification time (ns).
type Fingerprint = Vec<(String, u64, u128)>;

/// The directory under review, and the last verification of it.
pub struct Review {
    root: PathBuf,
    verified: Mutex<Option<(Fingerprint, VerifyReport)>>,
    /// The directory does not change (a snapshot of a bucket): `verified` stays as given.
    fixed: bool,
}

impl Review {
    pub fn new(root: &Path) -> Review {
        Review {
            root: root.to_owned(),
            verified: Mutex::new(None),
            fixed: false,
        }
    }

    /// A directory that will not change, already verified (`store::fetch::snapshot`,
    /// whose audit chains are per gateway, which `offline::verify` of a directory would
    /// not find).
    pub fn fixed(root: &Path, report: VerifyReport) -> Review {
        Review {
            root: root.to_owned(),
            verified: Mutex::new(Some((Fingerprint::new(), report))),
            fixed: true,
        }
    }

    /// What changes when a recording or the audit log does.
    fn fingerprint(&self) -> Fingerprint {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| {
                    let t = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    (m.len(), t)
                })
                .unwrap_or((0, 0))
        };
        let mut out = Vec::new();
        let audit = self.root.join("audit.jsonl");
        let (len, t) = stat(&audit);
        out.push(("audit.jsonl".to_owned(), len, t));
        for json in meta::session_jsons(&self.root).unwrap_or_default() {
            for p in [json.clone(), json.with_extension("cast")] {
                let (len, t) = stat(&p);
                out.push((p.display().to_string(), len, t));
            }
        }
        out
    }

    fn report(&self) -> Result<VerifyReport, String> {
        let print = if self.fixed {
            Fingerprint::new()
        } else {
            self.fingerprint()
        };
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, report)) = cache.as_ref()
            && *seen == print
        {
            return Ok(report.clone());
        }
        let report = offline::verify(&self.root).map_err(|e| e.to_string())?;
        *cache = Some((print, report.clone()));
        Ok(report)
    }

    fn badge(report: &VerifyReport, m: &Metadata) -> Badge {
        let problems: Vec<String> = report
            .problems
            .iter()
            .filter(|p| p.contains(&m.session))
            .cloned()
            .collect();
        if !problems.is_empty() {
            Badge::Broken(problems)
        } else if report.in_progress.iter().any(|s| s.ends_with(&m.session)) {
            Badge::InProgress
        } else {
            Badge::Verified
        }
    }

    /// Answer `GET path?query`.
    pub fn get(&self, path: &str, query: Option<&str>) -> Reply {
        let params: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if path == "/" {
            let values = FilterValues {
                identity: param("identity"),
                target: param("target"),
                action: param("action"),
                since: param("since"),
                incident: param("incident"),
                end_reason: param("end_reason"),
            };
            return self.index(&values);
        }
        if path == "/incident" {
            return self.incident(&param("id"));
        }
        if let Some(id) = path.strip_prefix("/session/") {
            return self.session(id);
        }
        if let Some(id) = path.strip_prefix("/cast/") {
            return self.cast(id);
        }
        if let Some(name) = path.strip_prefix("/assets/") {
            return match assets::get(name) {
                Some((content_type, bytes)) => Reply {
                    status: 200,
                    content_type,
                    body: Body::Static(bytes),
                },
                None => reply(404, TEXT, "not found\n"),
            };
        }
        reply(404, TEXT, "not found\n")
    }

    fn index(&self, values: &FilterValues) -> Reply {
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        let mut error = None;
        let since = match some(&values.since) {
            None => None,
            Some(text) => match offline::parse_since(&text, SystemTime::now()) {
                Ok(t) => Some(t),
                Err(e) => {
                    error = Some(e);
                    None
                }
            },
        };
        let filter = Filter {
            identity: some(&values.identity),
            target: some(&values.target),
            action: some(&values.action),
            since,
            incident: some(&values.incident),
            end_reason: some(&values.end_reason),
        };
        let listed = offline::list(&self.root, &filter).map_err(|e| e.to_string());
        let report = self.report();
        match (listed, report) {
            (Ok(items), Ok(report)) => {
                let rows: Vec<(Metadata, Badge)> = items
                    .into_iter()
                    .map(|m| {
                        let b = Self::badge(&report, &m);
                        (m, b)
                    })
                    .collect();
                let chain: Vec<&String> = report
                    .problems
                    .iter()
                    .filter(|p| p.starts_with("audit"))
                    .collect();
                if error.is_none() && !chain.is_empty() {
                    error = Some(format!(
                        "the audit chain is broken: {}",
                        chain
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
                reply(200, HTML, html::index(&rows, values, error.as_deref()))
            }
            (Err(e), _) | (_, Err(e)) => reply(500, TEXT, format!("{e}\n")),
        }
    }

    fn find(&self, id: &str) -> Result<(Metadata, PathBuf), Reply> {
        if !meta::is_session_id(id) {
            return Err(reply(404, TEXT, "no such session\n"));
        }
        offline::find(&self.root, id).map_err(|e| reply(404, TEXT, format!("{e}\n")))
    }

    fn session(&self, id: &str) -> Reply {
        let (m, cast) = match self.find(id) {
            Ok(found) => found,
            Err(r) => return r,
        };
        let badge = match self.report() {
            Ok(report) => Self::badge(&report, &m),
            Err(e) => Badge::Broken(vec![e]),
        };
        let view = std::fs::File::open(&cast)
            .and_then(|f| cast_view::read(std::io::BufReader::new(f), MAX_TEXT))
            .unwrap_or_default();
        let mut text = view.text;
        if view.truncated {
            text.push_str(
                "\n[… the rest is in the recording; see the player or `podgate replay`]\n",
            );
        }
        reply(
            200,
            HTML,
            html::session(
                &m,
                &badge,
                &view.markers,
                view.duration,
                &text,
                assets::have_player(),
            ),
        )
    }

    fn cast(&self, id: &str) -> Reply {
        match self.find(id) {
            Ok((_, cast)) if cast.is_file() => Reply {
                status: 200,
                content_type: "application/x-asciicast",
                body: Body::File(cast),
            },
            Ok((m, _)) => reply(404, TEXT, format!("{}: no recording\n", m.session)),
            Err(r) => r,
        }
    }

    fn incident(&self, id: &str) -> Reply {
        if id.is_empty() {
            return reply(400, TEXT, "which incident? /incident?id=ID\n");
        }
        let filter = Filter {
            incident: Some(id.to_owned()),
            ..Filter::default()
        };
        match offline::list(&self.root, &filter) {
            Ok(items) => reply(200, HTML, html::incident(id, &items)),
            Err(e) => reply(500, TEXT, format!("{e}\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::cast::CastHeader;
    use crate::recording::session::{Recorder, Stream};

    fn recorded(root: &Path, identity: &str, incident: Option<&str>) -> String {
        let m = Metadata {
            session: meta::new_session_id(),
            identity: identity.into(),
            action: "exec".into(),
            namespace: "payments".into(),
            pod: "api-0".into(),
            incident: incident.map(str::to_owned),
            ..Default::default()
        };
        let id = m.session.clone();
        let header = CastHeader {
            width: 80,
            height: 24,
            ..Default::default()
        };
        let r = Recorder::start(root, 0, m, &header, None).unwrap();
        r.output(
            Stream::Stdout,
            format!("hello from {identity}\n").as_bytes(),
        )
        .unwrap();
        r.marker("expiry warning").unwrap();
        r.finish("exited", Some(0)).unwrap();
        id
    }

    fn body(r: &Reply) -> String {
        match &r.body {
            Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Body::Static(b) => String::from_utf8_lossy(b).into_owned(),
            Body::File(p) => std::fs::read_to_string(p).unwrap(),
        }
    }

    #[test]
    fn pages_filter_show_and_refuse_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let a = recorded(dir.path(), "alice", Some("INC-7"));
        let b = recorded(dir.path(), "bob", None);
        let review = Review::new(dir.path());

        let all = review.get("/", None);
        assert_eq!(all.status, 200);
        assert!(body(&all).contains(&a) && body(&all).contains(&b));
        let only = review.get("/", Some("identity=alice&since=1h"));
        assert!(body(&only).contains(&a) && !body(&only).contains(&b));
        let bad = review.get("/", Some("since=yesterday"));
        assert!(body(&bad).contains("class=\"error\""), "{}", body(&bad));

        let page = review.get(&format!("/session/{a}"), None);
        assert_eq!(page.status, 200);
        assert!(body(&page).contains("hello from alice"));
        assert!(body(&page).contains("expiry warning"));
        let cast = review.get(&format!("/cast/{a}"), None);
        assert_eq!(cast.content_type, "application/x-asciicast");
        assert!(body(&cast).starts_with("{\"version\":2"));

        let timeline = review.get("/incident", Some("id=INC-7"));
        assert!(body(&timeline).contains(&a) && !body(&timeline).contains(&b));

        for (path, status) in [
            ("/session/../../etc/passwd", 404),
            ("/cast/0123", 404),
            ("/session/0123456789abcdef0123456789abcdef", 404),
            ("/nothing", 404),
        ] {
            assert_eq!(review.get(path, None).status, status, "{path}");
        }
        assert_eq!(review.get("/incident", None).status, 400);
    }

    #[test]
    fn badges_follow_verification_and_notice_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = recorded(dir.path(), "alice", None);
        let review = Review::new(dir.path());
        assert!(body(&review.get("/", None)).contains("badge ok"));
        let (_, cast) = offline::find(dir.path(), &a).unwrap();
        let mut bytes = std::fs::read(&cast).unwrap();
        let i = bytes.iter().rposition(|b| *b == b'h').unwrap();
        bytes[i] = b'H';
        std::fs::write(&cast, bytes).unwrap();
        let page = body(&review.get("/", None));
        assert!(page.contains("badge broken"), "{page}");
    }
}
