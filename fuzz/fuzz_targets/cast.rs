//! The asciicast writer: whatever a session sends (output, input, resizes, markers, in any
//! chunks), the transcript is a header and then one valid JSON event per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podgate::recording::cast::{CastHeader, CastWriter};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.cast");
    let header = CastHeader {
        width: 80,
        height: 24,
        timestamp: 1,
        command: None,
        title: None,
        env: Default::default(),
    };
    let mut w = CastWriter::create(&path, &header).unwrap();
    // Each chunk: a kind byte, a length byte, then that many bytes.
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        match kind % 4 {
            0 => w.output(chunk).unwrap(),
            1 => w.input(chunk).unwrap(),
            2 => w.resize(u16::from(*len), u16::from(*kind)).unwrap(),
            _ => w.marker(&String::from_utf8_lossy(chunk)).unwrap(),
        }
        rest = after;
    }
    w.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if i > 0 {
            let event = v.as_array().unwrap();
            assert_eq!(event.len(), 3, "{line}");
            assert!(event[0].as_f64().is_some() && event[1].is_string() && event[2].is_string());
        }
    }
});
