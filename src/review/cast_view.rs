//! What the session page shows of a transcript besides the player: its markers, and its
//! output as plain, searchable text (terminal escape sequences removed, `\r\n` folded).
//!
//! Guarantees: bounded: at most `max_text` bytes of text are kept (the page says when the
//! rest was cut) and lines longer than `MAX_LINE` are skipped; a line that does not parse
//! is skipped, as the player skips it. No I/O but reading the given reader.

use std::io::BufRead;

use serde_json::Value;

use super::html::Marker;

/// Longest transcript line read (a single event of the recorder is far smaller).
const MAX_LINE: usize = 16 << 20;

/// The markers and text of a transcript.
#[derive(Debug, Default, PartialEq)]
pub struct CastView {
    pub markers: Vec<Marker>,
    pub text: String,
    /// Output was cut at `max_text` bytes.
    pub truncated: bool,
    /// The time of the last event, in seconds (the recording's length).
    pub duration: f64,
}

/// Read an asciicast v2 transcript (header line first, then events).
pub fn read(reader: impl BufRead, max_text: usize) -> std::io::Result<CastView> {
    let mut view = CastView::default();
    let mut strip = Stripper::default();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if i == 0 || line.len() > MAX_LINE {
            continue;
        }
        let Ok(Value::Array(event)) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let (Some(time), Some(code), Some(data)) = (
            event.first().and_then(Value::as_f64),
            event.get(1).and_then(Value::as_str),
            event.get(2).and_then(Value::as_str),
        ) else {
            continue;
        };
        if time.is_finite() && time > view.duration {
            view.duration = time;
        }
        match code {
            "m" => view.markers.push(Marker {
                time,
                label: data.to_owned(),
            }),
            "o" if !view.truncated => {
                strip.push(data, &mut view.text);
                if view.text.len() > max_text {
                    let mut cut = max_text;
                    while !view.text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    view.text.truncate(cut);
                    view.truncated = true;
                }
            }
            _ => {}
        }
    }
    Ok(view)
}

/// Removes terminal control sequences from output split across events (ECMA-48: CSI,
/// OSC/DCS strings, two-byte escapes, other C0 controls but `\n` and `\t`).
#[derive(Debug, Default)]
struct Stripper {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum State {
    #[default]
    Text,
    Escape,
    Csi,
    /// OSC, DCS, SOS, PM, APC: until BEL or ST (`ESC \`).
    String,
    StringEscape,
}

impl Stripper {
    fn push(&mut self, data: &str, out: &mut String) {
        for c in data.chars() {
            self.state = match (self.state, c) {
                (State::Text, '\u{1b}') => State::Escape,
                (State::Text, '\r') => State::Text,
                (State::Text, c) if c == '\n' || c == '\t' || !c.is_control() => {
                    out.push(c);
                    State::Text
                }
                (State::Text, _) => State::Text,
                (State::Escape, '[') => State::Csi,
                (State::Escape, ']' | 'P' | 'X' | '^' | '_') => State::String,
                (State::Escape, _) => State::Text,
                (State::Csi, '\u{40}'..='\u{7e}') => State::Text,
                (State::Csi, _) => State::Csi,
                (State::String, '\u{7}') => State::Text,
                (State::String, '\u{1b}') => State::StringEscape,
                (State::String, _) => State::String,
                (State::StringEscape, '\\') => State::Text,
                (State::StringEscape, _) => State::String,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(lines: &[&str], max: usize) -> CastView {
        let mut text = String::from("{\"version\":2,\"width\":80,\"height\":24}\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        read(text.as_bytes(), max).unwrap()
    }

    #[test]
    fn text_loses_its_escapes_and_markers_are_kept() {
        let cases: [(&[&str], &str); 6] = [
            (&[r#"[0.1,"o","plain\r\n"]"#], "plain\n"),
            (&[r#"[0.1,"o","\u001b[1;31mred\u001b[0m"]"#], "red"),
            (
                &[r#"[0.1,"o","\u001b[1;3"]"#, r#"[0.2,"o","1mred"]"#],
                "red",
            ),
            (&[r#"[0.1,"o","\u001b]0;title\u0007after"]"#], "after"),
            (&[r#"[0.1,"o","\u001b]52;c;AAAA\u001b\\after"]"#], "after"),
            (
                &[r#"[0.1,"i","typed"]"#, "not json", r#"[0.2,"r","100x40"]"#],
                "",
            ),
        ];
        for (lines, want) in cases {
            assert_eq!(view(lines, 1 << 20).text, want, "{lines:?}");
        }
        let v = view(&[r#"[1.5,"m","recording incomplete"]"#], 1 << 20);
        assert_eq!(
            v.markers,
            vec![Marker {
                time: 1.5,
                label: "recording incomplete".into()
            }]
        );
    }

    #[test]
    fn text_is_bounded() {
        let v = view(&[r#"[0.1,"o","ééééé"]"#, r#"[0.2,"o","more"]"#], 5);
        assert_eq!(v.text, "éé");
        assert!(v.truncated);
    }
}
