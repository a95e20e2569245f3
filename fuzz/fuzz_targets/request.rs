//! The SSH command grammar: any bytes, as a command line, a prompt line or a forward
//! target, give a value or a usage error, never a panic; an accepted exec's argv re-joins
//! into a line that parses back to the same argv.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podgate::request::{self, Command};

fuzz_target!(|data: &[u8]| {
    let _ = request::parse_prompt_line(data);
    if let Ok(Command::Exec { target, argv }) = request::parse(data) {
        let line = format!(
            "exec {}/{} -- {}",
            target.namespace,
            target.pod,
            request::command_line(&argv)
        );
        let line = match &target.container {
            Some(c) => line.replacen(
                &format!("/{}", target.pod),
                &format!("/{}:{c}", target.pod),
                1,
            ),
            None => line,
        };
        match request::parse(line.as_bytes()) {
            Ok(Command::Exec { argv: again, .. }) => assert_eq!(again, argv, "{line}"),
            other => panic!("{line:?} did not parse back: {other:?}"),
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (host, port) = text.split_once('\n').unwrap_or((text, "22"));
        let _ = request::parse_forward(host, port.parse().unwrap_or(0));
    }
});
