//! The review pages as HTML text, from values (metadata, verification results, a
//! transcript's markers and text): no I/O here, so every page is unit-tested.
//!
//! Guarantees: every value that came from a recording (identities, commands, reasons,
//! transcript text, marker labels) is HTML-escaped, and attribute values are quoted and
//! escaped too, so a hostile command line or transcript cannot add markup or script to
//! the page. Transcript text is shown as text: escape sequences are not interpreted here
//! (the player interprets them in its own terminal emulator).
//!
//! Not here: the player's assets and the HTTP server (`review::serve`).

use std::fmt::Write as _;

use crate::recording::meta::{self, Metadata};

/// HTML-escape `s` for text and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
pub fn query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What verification says of one session (the checks of `recordings verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Badge {
    Verified,
    /// Not ended yet (or its gateway was lost): nothing to check yet.
    InProgress,
    Broken(Vec<String>),
}

impl Badge {
    fn html(&self) -> String {
        match self {
            Badge::Verified => r#"<span class="badge ok">verified</span>"#.to_owned(),
            Badge::InProgress => r#"<span class="badge live">in progress</span>"#.to_owned(),
            Badge::Broken(problems) => format!(
                r#"<span class="badge broken" title="{}">broken</span>"#,
                escape(&problems.join("\n"))
            ),
        }
    }
}

/// A marker of a transcript: seconds from the start, and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub time: f64,
    pub label: String,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;font-size:14px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}\
.badge{padding:1px 6px;border-radius:4px;font-size:12px;color:#fff}.ok{background:#2a7}.live{background:#888}.broken{background:#c33}\
pre.transcript{background:#111;color:#ddd;padding:1em;max-height:40em;overflow:auto;white-space:pre-wrap}\
mark{background:#fd5;color:#000}mark.current{background:#f80}#player{max-width:960px;margin:1em 0}\
#markers a{font-family:monospace}\
#marker-bar{position:relative;max-width:960px;height:14px;background:#ddd;border-radius:3px;margin:.5em 0 1.5em}\
#marker-bar a{position:absolute;top:-3px;width:6px;height:20px;margin-left:-3px;background:#c33;border-radius:2px}\
#marker-bar .end{position:absolute;right:0;top:16px;font-size:12px;color:#666}\
form.filters input{width:10em;margin-right:.5em}dl{display:grid;grid-template-columns:12em auto;gap:2px 1em}dt{font-weight:600}";

fn page(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · podgate review</title>\
         <style>{STYLE}</style><link rel=\"icon\" href=\"/assets/favicon.svg\">{head_extra}</head><body>\n<p><a href=\"/\">sessions</a></p>\n{body}</body></html>\n",
        escape(title)
    )
}

/// Seconds into a recording as `m:ss.s` (or `h:mm:ss`), as the player shows time.
fn clock(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    let whole = secs as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, secs % 60.0);
    if h > 0 {
        format!("{h}:{m:02}:{:02}", s as u64)
    } else {
        format!("{m}:{s:04.1}")
    }
}

/// The session's short id (as `recordings list` prints it).
fn short(session: &str) -> &str {
    session.get(..12).unwrap_or(session)
}

fn target(m: &Metadata) -> String {
    crate::request::target_text(&m.namespace, &m.pod, m.container.as_deref())
}

fn duration(m: &Metadata) -> String {
    let start = meta::parse_time(&m.start);
    let end = m.end.as_deref().and_then(meta::parse_time);
    match (start, end) {
        (Some(s), Some(e)) => e
            .duration_since(s)
            .map(|d| {
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The filter form's current values, by the names `recordings list` uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterValues {
    pub identity: String,
    pub target: String,
    pub action: String,
    pub since: String,
    pub incident: String,
    pub end_reason: String,
}

/// The index: a filter form and one row per session.
pub fn index(
    sessions: &[(Metadata, Badge)],
    filters: &FilterValues,
    error: Option<&str>,
) -> String {
    let mut body =
        String::from("<h1>Sessions</h1>\n<form class=\"filters\" method=\"get\" action=\"/\">");
    for (name, value) in [
        ("identity", &filters.identity),
        ("target", &filters.target),
        ("action", &filters.action),
        ("since", &filters.since),
        ("incident", &filters.incident),
        ("end_reason", &filters.end_reason),
    ] {
        let _ = write!(
            body,
            "<label>{name} <input name=\"{name}\" value=\"{}\"></label>",
            escape(value)
        );
    }
    body.push_str("<button type=\"submit\">filter</button></form>\n");
    if let Some(e) = error {
        let _ = writeln!(body, "<p class=\"error\">{}</p>", escape(e));
    }
    body.push_str(
        "<table id=\"sessions\"><tr><th>session</th><th>start</th><th>duration</th><th>identity</th>\
         <th>action</th><th>target</th><th>end</th><th>exit</th><th>rule</th><th>serial</th>\
         <th>incident</th><th>recording</th></tr>\n",
    );
    for (m, badge) in sessions {
        let incident = match &m.incident {
            Some(i) => format!(
                "<a href=\"/incident?id={}\">{}</a>",
                query_value(i),
                escape(i)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"/session/{id}\">{short}</a></td><td>{start}</td><td>{dur}</td>\
             <td>{identity}</td><td>{action}</td><td>{target}</td><td>{end}</td><td>{exit}</td>\
             <td>{rule}</td><td>{serial}</td><td>{incident}</td><td>{badge}</td></tr>",
            id = escape(&m.session),
            short = escape(short(&m.session)),
            start = escape(&m.start),
            dur = escape(&duration(m)),
            identity = escape(&m.identity),
            action = escape(&m.action),
            target = escape(&target(m)),
            end = escape(m.end_reason.as_deref().unwrap_or("")),
            exit = m.exit_status.map(|s| s.to_string()).unwrap_or_default(),
            rule = escape(&m.rule),
            serial = m.cert_serial,
            badge = badge.html(),
        );
    }
    body.push_str("</table>\n");
    let _ = writeln!(body, "<p>{} session(s)</p>", sessions.len());
    page("Sessions", "", &body)
}

/// One session: metadata, verification, the player, markers as a timeline that seeks the
/// player, and the transcript as searchable text. `player` is whether the player's assets
/// are available (the page says how to get them otherwise).
pub fn session(
    m: &Metadata,
    badge: &Badge,
    markers: &[Marker],
    length: f64,
    transcript: &str,
    player: bool,
) -> String {
    let mut body = format!(
        "<h1>Session {} {}</h1>\n<dl>",
        escape(short(&m.session)),
        badge.html()
    );
    let rows: [(&str, String); 16] = [
        ("session", m.session.clone()),
        ("identity", m.identity.clone()),
        ("principal", m.principal.clone()),
        ("groups", m.groups.join(", ")),
        ("certificate serial", m.cert_serial.to_string()),
        ("CA", m.ca_fingerprint.clone()),
        ("client", m.client.clone()),
        ("cluster", m.cluster.clone()),
        ("incident", m.incident.clone().unwrap_or_default()),
        ("reason", m.reason.clone().unwrap_or_default()),
        ("action", m.action.clone()),
        ("target", target(m)),
        ("command", m.command.clone().unwrap_or_default()),
        ("rule", m.rule.clone()),
        ("start / duration", format!("{} / {}", m.start, duration(m))),
        (
            "end",
            format!(
                "{} (exit {})",
                m.end_reason.as_deref().unwrap_or("not ended"),
                m.exit_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = write!(body, "<dt>{name}</dt><dd>{}</dd>", escape(&value));
    }
    body.push_str("</dl>\n");
    if let Badge::Broken(problems) = badge {
        body.push_str("<h2>Verification problems</h2><ul class=\"problems\">");
        for p in problems {
            let _ = write!(body, "<li>{}</li>", escape(p));
        }
        body.push_str("</ul>\n");
    }
    if player {
        let _ = writeln!(
            body,
            "<div id=\"player\" data-cast=\"/cast/{}\"></div>",
            escape(&m.session)
        );
    } else {
        body.push_str("<p class=\"noplayer\">This podgate was built without the player (npm was missing; see docs/REVIEW.md): the transcript is below.</p>\n");
    }
    body.push_str("<h2>Markers</h2>");
    if markers.is_empty() {
        body.push_str("<p>none</p>\n");
    } else {
        // The markers on the recording's time axis, each a link that seeks the player.
        body.push_str("<div id=\"marker-bar\">");
        let span = if length > 0.0 { length } else { 1.0 };
        for mk in markers {
            let _ = write!(
                body,
                "<a href=\"#\" data-time=\"{t:.3}\" style=\"left:{left:.2}%\" title=\"{} {}\"></a>",
                clock(mk.time),
                escape(&mk.label),
                t = mk.time,
                left = (mk.time / span * 100.0).clamp(0.0, 100.0),
            );
        }
        let _ = writeln!(body, "<span class=\"end\">{}</span></div>", clock(length));
        body.push_str("<ol id=\"markers\">");
        for mk in markers {
            let _ = write!(
                body,
                "<li><a href=\"#\" data-time=\"{t:.3}\">{}</a> {}</li>",
                clock(mk.time),
                escape(&mk.label),
                t = mk.time
            );
        }
        body.push_str("</ol>\n");
    }
    body.push_str(
        "<h2>Transcript</h2><p><input id=\"search\" type=\"search\" placeholder=\"search the transcript\" \
         autocomplete=\"off\"> <span id=\"search-count\"></span></p>\n",
    );
    let _ = writeln!(
        body,
        "<pre class=\"transcript\" id=\"transcript\">{}</pre>",
        escape(transcript)
    );
    let head = if player {
        "<link rel=\"stylesheet\" href=\"/assets/asciinema-player.css\">\
         <script defer src=\"/assets/asciinema-player.min.js\"></script>"
    } else {
        ""
    };
    body.push_str("<script defer src=\"/assets/review.js\"></script>\n");
    page(&format!("Session {}", short(&m.session)), head, &body)
}

/// All sessions of one incident on one time axis (an SVG bar each, linking to the session).
pub fn incident(id: &str, sessions: &[Metadata]) -> String {
    let times: Vec<(f64, f64)> = sessions
        .iter()
        .map(|m| {
            let secs = |t: Option<std::time::SystemTime>| {
                t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64())
            };
            let start = secs(meta::parse_time(&m.start)).unwrap_or(0.0);
            let end = secs(m.end.as_deref().and_then(meta::parse_time)).unwrap_or(start);
            (start, end.max(start))
        })
        .collect();
    let t0 = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let t1 = times.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
    let span = if t1 > t0 { t1 - t0 } else { 1.0 };
    let (width, row) = (900.0, 22.0);
    let mut svg = format!(
        "<svg id=\"timeline\" width=\"{}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        width + 320.0,
        row * sessions.len() as f64 + 10.0
    );
    for (i, (m, (start, end))) in sessions.iter().zip(&times).enumerate() {
        let x = 300.0 + (start - t0) / span * width;
        let w = ((end - start) / span * width).max(2.0);
        let y = i as f64 * row + 5.0;
        let _ = write!(
            svg,
            "<a href=\"/session/{id}\"><text x=\"0\" y=\"{ty}\" font-size=\"12\">{label}</text>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h}\" fill=\"#47a\"><title>{title}</title></rect></a>",
            id = escape(&m.session),
            ty = y + 13.0,
            label = escape(&format!("{} {} {}", m.identity, m.action, target(m))),
            h = row - 6.0,
            title = escape(&format!(
                "{} – {} ({})",
                m.start,
                m.end.as_deref().unwrap_or("not ended"),
                m.end_reason.as_deref().unwrap_or("running")
            )),
        );
    }
    svg.push_str("</svg>");
    let body = format!(
        "<h1>Incident {}</h1>\n<p>{} session(s) from {} </p>\n{svg}\n",
        escape(id),
        sessions.len(),
        escape(sessions.first().map(|m| m.start.as_str()).unwrap_or(""))
    );
    page(&format!("Incident {id}"), "", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Metadata {
        Metadata {
            session: "0123456789abcdef0123456789abcdef".into(),
            identity: "<script>alert(1)</script>".into(),
            action: "exec".into(),
            namespace: "payments".into(),
            pod: "api-0".into(),
            command: Some("echo \"><img src=x onerror=alert(1)>".into()),
            rule: "payments-oncall".into(),
            incident: Some("INC-1&2".into()),
            start: "2026-12-02T10:00:00.000000Z".into(),
            end: Some("2026-12-02T10:01:05.000000Z".into()),
            end_reason: Some("exited".into()),
            exit_status: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        let cases = [
            ("plain", "plain"),
            ("<b>", "&lt;b&gt;"),
            ("a&b", "a&amp;b"),
            ("\"q\" 'a'", "&quot;q&quot; &#39;a&#39;"),
        ];
        for (raw, want) in cases {
            assert_eq!(escape(raw), want);
        }
        assert_eq!(query_value("INC-1&2 x"), "INC%2D1%262%20x");
    }

    #[test]
    fn the_index_lists_sessions_without_letting_their_values_add_markup() {
        let filters = FilterValues {
            identity: "\"><script>".into(),
            ..Default::default()
        };
        let broken = Badge::Broken(vec!["x.cast: sha256 differs <b>".into()]);
        let html = index(
            &[(hostile(), Badge::Verified), (hostile(), broken)],
            &filters,
            None,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(html.contains("href=\"/session/0123456789abcdef0123456789abcdef\">0123456789ab<"));
        assert!(html.contains("/incident?id=INC%2D1%262\">INC-1&amp;2<"));
        assert!(html.contains("1m 5s"));
        assert!(html.contains("class=\"badge ok\">verified"));
        assert!(html.contains("title=\"x.cast: sha256 differs &lt;b&gt;\""));
        assert!(html.contains("<p>2 session(s)</p>"));
    }

    #[test]
    fn the_session_page_escapes_the_transcript_and_links_markers() {
        let markers = [Marker {
            time: 1.25,
            label: "denied: <rm -rf>".into(),
        }];
        let html = session(
            &hostile(),
            &Badge::Verified,
            &markers,
            2.5,
            "out <script>x</script>\n",
            true,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("out &lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("data-time=\"1.250\">0:01.2</a> denied: &lt;rm -rf&gt;"));
        assert!(html.contains("src=\"/assets/asciinema-player.min.js\""));
        assert!(html.contains(
            "data-time=\"1.250\" style=\"left:50.00%\" title=\"0:01.2 denied: &lt;rm -rf&gt;\""
        ));
        assert!(html.contains("data-cast=\"/cast/0123456789abcdef0123456789abcdef\""));
        let without = session(
            &hostile(),
            &Badge::Broken(vec!["bad".into()]),
            &[],
            0.0,
            "",
            false,
        );
        assert!(without.contains("class=\"noplayer\""));
        assert!(!without.contains("asciinema-player.min.js"));
        assert!(without.contains("<li>bad</li>"));
    }

    #[test]
    fn marker_times_read_like_the_players() {
        for (secs, text) in [
            (0.0, "0:00.0"),
            (1.25, "0:01.2"),
            (61.0, "1:01.0"),
            (3725.4, "1:02:05"),
            (-3.0, "0:00.0"),
            (f64::NAN, "0:00.0"),
        ] {
            assert_eq!(clock(secs), text, "{secs}");
        }
    }

    #[test]
    fn the_incident_timeline_puts_sessions_on_one_axis() {
        let a = hostile();
        let mut b = hostile();
        b.session = "fedcba9876543210fedcba9876543210".into();
        b.start = "2026-12-02T10:01:05.000000Z".into();
        b.end = Some("2026-12-02T10:02:10.000000Z".into());
        let html = incident("INC-1&2", &[a, b]);
        assert!(html.contains("<h1>Incident INC-1&amp;2</h1>"));
        // The first starts at the axis' origin, the second half-way along 900 px.
        assert!(html.contains("x=\"300.0\""), "{html}");
        assert!(html.contains("x=\"750.0\""), "{html}");
        assert!(html.contains("href=\"/session/fedcba9876543210fedcba9876543210\""));
        assert!(!html.contains("<script>"));
    }
}
