//! Property test of the asciicast writer: whatever bytes a session produces, in whatever
//! chunks, the transcript is a header and then one valid JSON event per line, and the
//! output events decode to exactly what a UTF-8 decoder makes of the whole stream.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Event {
    Output(Vec<u8>),
    Input(Vec<u8>),
    Resize(u16, u16),
    Marker(String),
}

fn event() -> impl Strategy<Value = Event> {
    // Bytes biased towards UTF-8 lead/continuation bytes, escapes and controls.
    let bytes = proptest::collection::vec(
        prop_oneof![
            any::<u8>(),
            0x80u8..0xc0,
            0xc2u8..0xf5,
            Just(0x1b),
            Just(b'"'),
            Just(b'\\')
        ],
        0..24,
    );
    prop_oneof![
        6 => bytes.clone().prop_map(Event::Output),
        2 => bytes.prop_map(Event::Input),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(c, r)| Event::Resize(c, r)),
        1 => any::<String>().prop_map(Event::Marker),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_line_is_json_and_output_decodes_like_the_whole_stream(
        events in proptest::collection::vec(event(), 0..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let header = CastHeader {
            width: 80, height: 24, timestamp: 1, command: None, title: None,
            env: Default::default(),
        };
        let mut w = CastWriter::create(&path, &header).unwrap();
        let mut all_output = Vec::new();
        for e in &events {
            match e {
                Event::Output(b) => { all_output.extend_from_slice(b); w.output(b).unwrap() }
                Event::Input(b) => w.input(b).unwrap(),
                Event::Resize(c, r) => w.resize(*c, *r).unwrap(),
                Event::Marker(m) => w.marker(m).unwrap(),
            }
        }
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        prop_assert_eq!(&head["version"], 2);
        let mut decoded = String::new();
        let mut last = 0.0f64;
        for line in lines {
            let (t, code, data): (f64, String, String) = serde_json::from_str(line)
                .map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
            prop_assert!(t >= last, "time went back in {line:?}");
            last = t;
            prop_assert!(["o", "i", "r", "m"].contains(&code.as_str()), "{line}");
            if code == "o" {
                decoded.push_str(&data);
            }
        }
        prop_assert_eq!(decoded, String::from_utf8_lossy(&all_output).into_owned());
    }
}
