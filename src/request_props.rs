//! Property tests of the request parser: any bytes are refused or parsed without panic,
//! nothing outside printable ASCII is ever accepted, and an exec argv survives the trip
//! through its canonical command line.

use proptest::prelude::*;

use super::*;

/// Words of printable ASCII, including quotes, backslashes and `#`.
fn word() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~]{1,12}").unwrap_or_else(|_| unreachable!())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_are_parsed_or_refused_without_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let accepted = parse(&line).is_ok();
        if accepted {
            prop_assert!(line.len() <= MAX_LINE);
            prop_assert!(line.iter().all(|b| (0x20..=0x7e).contains(b)), "{line:?}");
        }
        let _ = parse_prompt_line(&line);
    }

    #[test]
    fn one_control_or_non_ascii_byte_anywhere_is_refused(
        argv in proptest::collection::vec(word(), 1..5),
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![0u8..0x20, 0x7fu8..=0xff],
    ) {
        let mut line = format!("exec payments/api-0 -- {}", command_line(&argv)).into_bytes();
        let i = at.index(line.len() + 1);
        line.insert(i, bad);
        prop_assert!(parse(&line).is_err(), "{line:?} was accepted");
    }

    #[test]
    fn an_exec_argv_round_trips_through_its_command_line(argv in proptest::collection::vec(word(), 1..6)) {
        let line = command_line(&argv);
        prop_assert_eq!(shell_words::split(&line).ok(), Some(argv.clone()));
        let request = format!("exec payments/api-0:app -- {line}");
        match parse(request.as_bytes()) {
            Ok(Command::Exec { target, argv: parsed }) => {
                prop_assert_eq!(target.to_string(), "payments/api-0:app");
                prop_assert_eq!(parsed, argv);
            }
            other => prop_assert!(false, "{request:?} gave {other:?}"),
        }
    }

    #[test]
    fn forward_targets_are_names_or_refused(host in "[ -~]{0,40}", port in any::<u32>()) {
        if let Ok((target, p)) = parse_forward(&host, port) {
            prop_assert!(p != 0 && u32::from(p) == port);
            prop_assert_eq!(format!("{}.{}", target.pod, target.namespace), host);
            let as_target = format!("{}/{}", target.namespace, target.pod);
            prop_assert!(Target::parse(&as_target).is_ok(), "{}", as_target);
        }
    }
}
