//! Tests of `policy check` diagnostics: every error and warning, with FILE:LINE.

use super::super::{Policy, PolicyError, Severity};

/// A rule with `extra` lines (4-space indented keys) added; the rule starts at line 2.
fn rule(extra: &str) -> String {
    format!(
        "rules:\n  - name: r\n    groups: [g]\n    namespaces: [n]\n    impersonate_groups: [k]\n{extra}"
    )
}

fn check(files: &[(&str, &str)]) -> Vec<String> {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    Policy::check(&sources)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn check_one(text: &str) -> Vec<String> {
    check(&[("p.yaml", text)])
}

#[track_caller]
fn assert_has(diags: &[String], want: &str) {
    assert!(
        diags.iter().any(|d| d.contains(want)),
        "{want:?} not in {diags:#?}"
    );
}

#[test]
fn schema_errors_have_locations() {
    let cases: &[(String, &str)] = &[
        ("rulez: []\n".to_owned(), "p.yaml:1: error: unknown field `rulez`, expected `rules`"),
        (rule("    actions: [list]\n    comands: ['ls']\n"), "p.yaml:7: error: rules[0]: unknown field `comands`"),
        (rule("    actions: [delete]\n"), "p.yaml:6: error: rules[0].actions[0]: unknown variant `delete`"),
        (rule("    actions: [port-forward]\n    ports: [70000]\n"), "p.yaml:7: error: rules[0].ports[0]: invalid value: integer `70000`, expected u16"),
        (rule("    actions: [list]\n    record_input: maybe\n"), "p.yaml:7: error: rules[0].record_input: invalid type"),
        ("rules:\n  - name: r\n    namespaces: [n]\n    actions: [list]\n    impersonate_groups: [k]\n".to_owned(), "p.yaml:2: error: rules[0]: missing field `groups`"),
        ("rules:\n  - name: r\n    groups: [g]\n    namespaces: [n]\n    actions: [list]\n".to_owned(), "p.yaml:2: error: rules[0]: missing field `impersonate_groups`"),
        ("rules:\n  - groups: [g]\n    namespaces: [n]\n    actions: [list]\n    impersonate_groups: [k]\n".to_owned(), "missing field `name`"),
        (rule("    actions: [list]\n  other: 1\n"), "p.yaml:7: error:"),
        ("rules: [\n".to_owned(), "p.yaml:2: error:"),
        ("rules: []\n---\nrules: []\n".to_owned(), "more than one document"),
    ];
    for (text, want) in cases {
        let diags = check_one(text);
        assert_eq!(diags.len(), 1, "{text}: {diags:#?}");
        assert!(
            diags[0].starts_with(want) || diags[0].contains(want),
            "{text}: {diags:#?}"
        );
    }
}

#[test]
fn value_errors_have_locations() {
    let cases: &[(&str, &str)] = &[
        (
            "    actions: [exec]\n    commands:\n      - 'ls'\n      - 'ls('\n",
            r#"p.yaml:9: error: rule "r": commands pattern: "ls(" is not a valid regex: unclosed group"#,
        ),
        (
            "    actions: [exec]\n    commands: ['']\n",
            "p.yaml:7: error: rule \"r\": commands pattern: empty pattern",
        ),
        (
            "    actions: [exec]\n    commands: ['ls)|(.*']\n",
            "is not a valid regex: unopened group",
        ),
        (
            "    actions: [exec]\n    commands: [\"ls\\nrm\"]\n",
            "pattern has byte 0x0a",
        ),
        (
            "    actions: [exec]\n    commands: ['ps aux|id']\n",
            "p.yaml:7: error: rule \"r\": commands pattern: \"ps aux|id\" has a top-level '|'",
        ),
        (
            "    actions: [exec]\n    commands: ['^ls|cat /tmp/x$']\n",
            "has a top-level '|'",
        ),
        (
            "    actions: [exec]\n    commands: ['ls( -l$)? /tmp']\n",
            "has an anchor inside it",
        ),
        (
            "    actions: [exec]\n    commands: ['ls ^/tmp']\n",
            "has an anchor inside it",
        ),
        (
            "    actions: [exec]\n    commands: ['x']\n    deny_commands: ['rm|(^.*\\A)']\n",
            "p.yaml:8: error: rule \"r\": deny_commands pattern: \"rm|(^.*\\\\A)\" has a top-level '|'",
        ),
        (
            "    actions: [exec]\n    commands: ['x']\n    deny_commands: ['[a-']\n",
            "p.yaml:8: error: rule \"r\": deny_commands pattern:",
        ),
        (
            "    actions: [exec]\n    commands: ['\\w{1000}\\w{1000}\\w{1000}']\n",
            "is not a valid regex",
        ),
        (
            "    actions: [list]\n    pods: ['api-[']\n",
            "p.yaml:7: error: rule \"r\": invalid glob in pods: error parsing glob 'api-['",
        ),
        (
            "    actions: [list]\n    containers: []\n",
            "p.yaml:7: error: rule \"r\": containers is empty",
        ),
        (
            "    actions: [list]\n    pods: ['']\n",
            "empty pattern in pods",
        ),
        (
            "    actions: []\n",
            "p.yaml:6: error: rule \"r\": actions is empty",
        ),
        (
            "    actions: [port-forward]\n    ports: [0]\n",
            "p.yaml:7: error: rule \"r\": port 0 is not a port",
        ),
        (
            "    actions: [shell]\n    shell: bash\n",
            "p.yaml:7: error: rule \"r\": shell \"bash\" must be an absolute path",
        ),
        (
            "    actions: [shell]\n    shell: /bin/../bin/sh\n",
            "must be a normalized path",
        ),
        (
            "    actions: [list]\n    max_session: '30'\n",
            "p.yaml:7: error: rule \"r\": max_session \"30\" is not a duration",
        ),
        (
            "    actions: [list]\n    max_session: 0s\n",
            "max_session is zero",
        ),
    ];
    for (extra, want) in cases {
        let diags = check_one(&rule(extra));
        assert_has(&diags, want);
        assert!(diags.iter().any(|d| d.contains(": error: ")), "{diags:#?}");
    }
    let long = format!(
        "    actions: [exec]\n    commands: ['{}']\n",
        "a".repeat(4097)
    );
    assert_has(
        &check_one(&rule(&long)),
        "pattern is 4097 bytes long; at most 4096",
    );
    let fits = format!(
        "    actions: [exec]\n    commands: ['{}']\n",
        "a".repeat(4096)
    );
    assert!(check_one(&rule(&fits)).is_empty());
}

#[test]
fn names_and_groups() {
    let text = "\
rules:
  - name: Payments_OnCall
    groups: [\"oncall-*\", \"\", \"a b\", \"a,b\", ok, ok]
    namespaces: [n]
    actions: [list]
    impersonate_groups: [\"system:masters\", \"x,y\", \"system:nodes\"]
  - name: empty-groups
    groups: []
    namespaces: []
    actions: [list]
    impersonate_groups: []
";
    let diags = check_one(text);
    for want in [
        r#"p.yaml:2: error: rule name "Payments_OnCall" must match [a-z0-9][a-z0-9-]*"#,
        r#"p.yaml:3: error: rule "Payments_OnCall": group "oncall-*": groups are exact names, not globs"#,
        r#"p.yaml:3: error: rule "Payments_OnCall": group "" is empty"#,
        r#"group "a b" must be printable ASCII without spaces"#,
        r#"group "a,b" must not contain a comma"#,
        r#"p.yaml:3: warning: rule "Payments_OnCall": group "ok" listed twice"#,
        r#"p.yaml:6: error: rule "Payments_OnCall": impersonating system:masters would bypass RBAC"#,
        r#"impersonate group "x,y" must not contain a comma"#,
        r#"p.yaml:6: warning: rule "Payments_OnCall": "system:nodes" is a Kubernetes built-in group"#,
        r#"p.yaml:8: error: rule "empty-groups": groups is empty"#,
        r#"p.yaml:9: error: rule "empty-groups": namespaces is empty"#,
        r#"p.yaml:11: error: rule "empty-groups": impersonate_groups is empty"#,
    ] {
        assert_has(&diags, want);
    }
    let long_name = format!(
        "rules:\n  - name: {}\n    groups: [g]\n    namespaces: [n]\n    actions: [list]\n    impersonate_groups: [k]\n",
        "a".repeat(64)
    );
    assert_has(&check_one(&long_name), "at most 63 characters");
}

#[test]
fn duplicate_names_across_files() {
    let a = rule("    actions: [list]\n");
    let b = format!("# second file\n{}", rule("    actions: [logs]\n"));
    let diags = check(&[("b.yaml", &b), ("a.yaml", &a)]);
    assert_eq!(
        diags,
        [r#"b.yaml:3: error: duplicate rule name "r" (first defined at a.yaml:2)"#]
    );
    let err = Policy::parse(&[("b.yaml".into(), b), ("a.yaml".into(), a)]).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }));
    assert_eq!(
        err.to_string(),
        r#"b.yaml:3:11: duplicate rule name "r" (first defined at a.yaml:2)"#
    );
}

#[test]
fn parse_reports_the_first_error_with_column() {
    let sources = [
        (
            "b.yaml".to_owned(),
            rule("    actions: [exec]\n    commands: ['ls(']\n"),
        ),
        (
            "a.yaml".to_owned(),
            rule("    actions: [list]\n    bogus: 1\n"),
        ),
    ];
    let err = Policy::parse(&sources).unwrap_err();
    assert!(matches!(err, PolicyError::Schema { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("a.yaml:7:5: rules[0]: unknown field `bogus`"),
        "{err}"
    );
    let warn_only = [("a.yaml".to_owned(), rule("    actions: [exec]\n"))];
    assert!(
        Policy::parse(&warn_only).is_ok(),
        "warnings do not stop loading"
    );
}

#[test]
fn interpreter_warnings() {
    // (commands, deny_commands, extra actions, expected warning fragment or None)
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "'.*'",
            "",
            "",
            Some(r#"commands pattern ".*" allows any command"#),
        ),
        ("'(ls|sh)( .*)?'", "", "", Some(r#"allows "sh""#)),
        ("'[a-z]+ -c .*'", "", "", Some(r#"allows "sh -c x""#)),
        ("'env .*'", "", "", Some(r#"allows "env sh""#)),
        ("'busybox .*'", "", "", Some(r#"allows "busybox sh""#)),
        ("'python3( .*)?'", "", "", Some(r#"allows "python3""#)),
        (
            "'/usr/bin/[a-z]+ .*'",
            "",
            "",
            Some(r#"allows "/usr/bin/bash -c x""#),
        ),
        (
            "'(nice|timeout [0-9]+) .*'",
            "",
            "",
            Some("an interpreter or wrapper"),
        ),
        ("'xargs .*'", "", "", Some(r#"allows "xargs sh""#)),
        ("'sudo .*'", "", "", Some(r#"allows "sudo sh""#)),
        (
            "'find [^ ]+ .*'",
            "",
            "",
            Some(r#"allows "find . -exec sh ';'""#),
        ),
        ("'awk .*'", "", "", Some("allows \"awk 'BEGIN{system(")),
        ("'ls( -l)?'", "", "", None),
        ("'cat /var/log/[a-z.]+'", "", "", None),
        ("'ps( aux)?'", "", "", None),
        // a deny pattern that refuses every sample the allowlist lets through
        (
            "'[a-z]+( [a-z]+)?'",
            "'(sh|su|bash|python3|env|nice|xargs|nohup|setsid|watch|sudo|less|vi|vim|busybox)( .*)?'",
            "",
            None,
        ),
        // the rule grants shell anyway: only the any-command warning remains
        ("'[a-z]+ -c .*'", "", ", shell", None),
        ("'.*'", "", ", shell", Some("allows any command")),
    ];
    for (commands, deny, actions, want) in cases {
        let mut extra = format!("    actions: [exec{actions}]\n    commands: [{commands}]\n");
        if !deny.is_empty() {
            extra.push_str(&format!("    deny_commands: [{deny}]\n"));
        }
        let diags = check_one(&rule(&extra));
        assert!(
            diags.iter().all(|d| d.contains(": warning: ")),
            "{diags:#?}"
        );
        match want {
            Some(w) => {
                assert_eq!(diags.len(), 1, "{commands}: {diags:#?}");
                assert!(diags[0].starts_with("p.yaml:7: warning: "), "{diags:#?}");
                assert_has(&diags, w);
            }
            None => assert!(diags.is_empty(), "{commands}: {diags:#?}"),
        }
    }
}

#[test]
fn meaningless_keys_warn() {
    let cases: &[(&str, &str)] = &[
        (
            "    actions: [exec]\n",
            r#"p.yaml:6: warning: rule "r" grants exec but lists no commands: it allows no exec"#,
        ),
        (
            "    actions: [list]\n    commands: [ls]\n",
            r#"p.yaml:7: warning: rule "r": commands is ignored, the rule does not grant exec"#,
        ),
        (
            "    actions: [list]\n    deny_commands: [ls]\n",
            "deny_commands is ignored",
        ),
        (
            "    actions: [list]\n    ports: [80]\n",
            r#"p.yaml:7: warning: rule "r": ports is ignored, the rule does not grant port-forward"#,
        ),
        (
            "    actions: [port-forward]\n",
            r#"p.yaml:6: warning: rule "r" grants port-forward but lists no ports: it allows none"#,
        ),
        (
            "    actions: [port-forward]\n    ports: [80, 80]\n",
            "port 80 listed twice",
        ),
        (
            "    actions: [list]\n    shell: /bin/bash\n",
            "shell is ignored, the rule does not grant shell",
        ),
        ("    actions: [list, list]\n", "action list listed twice"),
        (
            "    actions: [shell]\n    record_input: false\n",
            "p.yaml:7: warning: rule \"r\": record_input is false",
        ),
        (
            "    actions: [list]\n    namespaces_x: 1\n",
            "unknown field",
        ),
        (
            "    actions: [list]\n    pods: ['Payments-*']\n",
            "has characters that never appear in Kubernetes names",
        ),
    ];
    for (extra, want) in cases {
        assert_has(&check_one(&rule(extra)), want);
    }
}

#[test]
fn empty_files_and_clean_files() {
    assert_eq!(
        check_one("# only a comment\n"),
        ["p.yaml: warning: no rules in this file"]
    );
    assert_eq!(check_one(""), ["p.yaml: warning: no rules in this file"]);
    assert_eq!(
        check_one("rules: []\n"),
        ["p.yaml: warning: no rules in this file"]
    );
    assert!(check_one(&rule("    actions: [list, logs]\n    pods: ['api-*']\n")).is_empty());
    let d = &Policy::check(&[("p.yaml".to_owned(), "rulez: 1\n".to_owned())])[0];
    assert_eq!(
        (d.severity, d.location.as_str()),
        (Severity::Error, "p.yaml:1")
    );
}
