//! Tests of `policy`: decisions, denial messages, explain, and the example policies.
//! Diagnostics of `policy check` are tested in `policy/check_tests.rs`.

use std::time::Duration;

use super::*;

const PAYMENTS: &str = r#"
rules:
  - name: payments-oncall
    groups: [oncall-payments]
    namespaces: [payments]
    pods: ["payments-*"]
    containers: [api, worker]
    actions: [list, logs, exec]
    commands:
      - 'ls( -l)?'
      - '(ls|cat)'
      - 'cat /var/log/[a-z0-9._/-]+'
      - 'ps aux'
    deny_commands: ['.*\.\..*']
    impersonate_groups: ["jit:oncall:payments"]
    max_session: 30m
  - name: payments-pf
    groups: [oncall-payments]
    namespaces: [payments]
    pods: ["payments-api-*"]
    actions: [port-forward]
    ports: [8080, 9000]
    impersonate_groups: ["jit:oncall:payments"]
    record_input: false
  - name: payments-logs-all
    groups: [sre]
    namespaces: [payments]
    actions: [logs]
    impersonate_groups: ["jit:readonly"]
"#;

const SRE: &str = r#"
rules:
  - name: sre-shell
    groups: [sre, sre-leads]
    namespaces: ["pay*", checkout, "team-{a,b}"]
    actions: [list, logs, shell, exec]
    commands: ['uptime']
    shell: /bin/bash
    impersonate_groups: ["jit:debug", "jit:audit"]
    max_session: 1h
  - name: sre-wide-logs
    groups: [sre]
    namespaces: ["*"]
    actions: [logs]
    impersonate_groups: ["jit:readonly"]
"#;

fn policy() -> Policy {
    // Given out of order on purpose: files are evaluated sorted by name.
    let sources = [
        ("20-sre.yaml".to_owned(), SRE.to_owned()),
        ("10-payments.yaml".to_owned(), PAYMENTS.to_owned()),
    ];
    Policy::parse(&sources).unwrap()
}

/// One decision: `groups` comma-separated, `action`, target `NS[/POD[:CONTAINER]]`, then
/// the command line (exec) or the port (port-forward).
pub(crate) fn decide(
    p: &Policy,
    groups: &str,
    action: &str,
    target: &str,
    extra: &str,
) -> Decision {
    let groups: Vec<String> = groups
        .split(',')
        .filter(|g| !g.is_empty())
        .map(Into::into)
        .collect();
    let action: Action = action.parse().unwrap();
    let (namespace, rest) = target.split_once('/').unwrap_or((target, ""));
    let (pod, container) = match rest.split_once(':') {
        Some((pod, c)) => (pod, Some(c)),
        None => (rest, None),
    };
    let argv = shell_words::split(extra).unwrap();
    let ask = Ask {
        groups: &groups,
        action,
        namespace,
        pod,
        container,
        argv: (action == Action::Exec).then_some(argv.as_slice()),
        port: (action == Action::PortForward).then(|| extra.parse().unwrap()),
    };
    p.decide(&ask)
}

const OC: &str = "oncall-payments";
const API: &str = "payments/payments-api-0";
type Case<'a> = (&'a str, &'a str, &'a str, &'a str, Result<&'a str, &'a str>);

#[test]
fn decisions() {
    let p = policy();
    // (groups, action, target, command or port, Ok(rule) or Err(message fragment))
    #[rustfmt::skip]
    let cases: &[Case<'_>] = &[
        // exec allowlist: whole-string matching
        (OC, "exec", "payments/payments-api-0:api", "ls", Ok("payments-oncall")),
        (OC, "exec", "payments/payments-api-0:api", "ls -l", Ok("payments-oncall")),
        (OC, "exec", API, "ls -l; rm", Err(r#"command "ls '-l;' rm" is not in the allowlist of rule "payments-oncall""#)),
        (OC, "exec", API, "'ls;' rm", Err("is not in the allowlist")),
        (OC, "exec", API, "xls", Err("is not in the allowlist")),
        (OC, "exec", API, "ls -l -a", Err("is not in the allowlist")),
        (OC, "exec", API, "lsx", Err("is not in the allowlist")),
        (OC, "exec", API, "ls; cat x", Err(r#"command "'ls;' cat x""#)),
        (OC, "exec", API, "cat", Ok("payments-oncall")),
        (OC, "exec", API, "cat x", Err("is not in the allowlist")),
        (OC, "exec", API, "ls cat", Err("is not in the allowlist")),
        (OC, "exec", API, "cat /var/log/app.log", Ok("payments-oncall")),
        (OC, "exec", API, "cat /var/log/../../etc/shadow", Err(r#"command "cat /var/log/../../etc/shadow" matches deny_commands of rule "payments-oncall""#)),
        (OC, "exec", API, "cat /etc/passwd", Err("is not in the allowlist")),
        (OC, "exec", API, "rm -rf /", Err(r#"command "rm -rf /" is not in the allowlist of rule "payments-oncall""#)),
        (OC, "exec", API, "sh -c ls", Err("is not in the allowlist")),
        (OC, "exec", API, "ps aux", Ok("payments-oncall")),
        (OC, "exec", API, "ps   aux", Ok("payments-oncall")),
        (OC, "exec", API, "'ps aux'", Err(r#"command "'ps aux'" is not in"#)),
        (OC, "exec", API, "ps aux\\;", Err("is not in the allowlist")),
        // groups: exact names only
        ("oncall-checkout", "exec", API, "ls", Err(r#"no policy rule grants groups [oncall-checkout] action "exec" in namespace "payments""#)),
        ("", "list", "payments", "", Err(r#"no policy rule grants groups [] action "list" in namespace "payments""#)),
        ("Oncall-Payments", "exec", API, "ls", Err("no policy rule grants groups [Oncall-Payments]")),
        ("oncall-*", "exec", API, "ls", Err("no policy rule grants")),
        ("other,oncall-payments", "exec", API, "ls", Ok("payments-oncall")),
        // actions, namespaces, pods, containers
        (OC, "shell", API, "", Err(r#"no policy rule grants groups [oncall-payments] action "shell" in namespace "payments""#)),
        (OC, "exec", "checkout/payments-api-0", "ls", Err(r#"action "exec" in namespace "checkout""#)),
        (OC, "exec", "payments/redis-0", "ls", Err(r#"pod "redis-0" in namespace "payments" is not in the pods of rule "payments-oncall""#)),
        (OC, "exec", "payments/payments-api-0:sidecar", "ls", Err(r#"container "sidecar" is not in the containers of rule "payments-oncall""#)),
        (OC, "exec", "payments/payments-worker-0:worker", "ls", Ok("payments-oncall")),
        (OC, "logs", "payments/payments-worker-0", "", Ok("payments-oncall")),
        (OC, "logs", "payments/payments-worker-0:metrics", "", Err(r#"container "metrics""#)),
        (OC, "list", "payments", "", Ok("payments-oncall")),
        (OC, "list", "payments/payments-api-1", "", Ok("payments-oncall")),
        (OC, "list", "payments/redis-0", "", Err(r#"pod "redis-0" in namespace "payments" is not in the pods"#)),
        (OC, "list", "checkout", "", Err(r#"action "list" in namespace "checkout""#)),
        // ports
        (OC, "port-forward", API, "8080", Ok("payments-pf")),
        (OC, "port-forward", "payments/payments-api-1", "9000", Ok("payments-pf")),
        (OC, "port-forward", API, "5432", Err(r#"port 5432 is not listed in rule "payments-pf""#)),
        (OC, "port-forward", "payments/payments-worker-0", "8080", Err(r#"pod "payments-worker-0" in namespace "payments" is not in the pods of rule "payments-pf""#)),
        (OC, "port-forward", "checkout/payments-api-0", "8080", Err("no policy rule grants")),
        ("sre", "port-forward", API, "8080", Err("no policy rule grants groups [sre]")),
        // globs and several groups
        ("sre", "shell", API, "", Ok("sre-shell")),
        ("sre", "shell", "payments-staging/x", "", Ok("sre-shell")),
        ("sre", "shell", "team-a/x", "", Ok("sre-shell")),
        ("sre", "shell", "team-c/x", "", Err(r#"action "shell" in namespace "team-c""#)),
        ("sre-leads", "shell", "checkout/web-0", "", Ok("sre-shell")),
        ("sre", "exec", "checkout/web-0", "uptime", Ok("sre-shell")),
        ("sre", "exec", "checkout/web-0", "uptime -p", Err(r#"command "uptime -p" is not in the allowlist of rule "sre-shell""#)),
        // first rule wins (files sorted by name: 10-payments before 20-sre)
        ("sre", "logs", API, "", Ok("payments-logs-all")),
        ("sre", "logs", "checkout/web-0", "", Ok("sre-shell")),
        ("sre", "logs", "kube-system/coredns-0", "", Ok("sre-wide-logs")),
        ("sre-leads", "logs", "kube-system/coredns-0", "", Err("no policy rule grants groups [sre-leads]")),
    ];
    assert!(cases.len() >= 40);
    for (groups, action, target, extra, want) in cases {
        let got = decide(&p, groups, action, target, extra);
        match (want, &got) {
            (Ok(rule), Decision::Allow(g)) => {
                assert_eq!(&g.rule, rule, "{groups} {action} {target} {extra}")
            }
            (Err(fragment), Decision::Deny(d)) => assert!(
                d.message.contains(fragment),
                "{groups} {action} {target} {extra}: {:?} lacks {fragment:?}",
                d.message
            ),
            _ => panic!("{groups} {action} {target} {extra}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn grants_carry_the_rule() {
    let p = policy();
    let Decision::Allow(g) = decide(
        &p,
        "oncall-payments",
        "exec",
        "payments/payments-api-0",
        "ls",
    ) else {
        panic!()
    };
    assert_eq!(
        g,
        Grant {
            rule: "payments-oncall".into(),
            impersonate_groups: vec!["jit:oncall:payments".into()],
            shell: "/bin/sh".into(),
            max_session: Some(Duration::from_secs(1800)),
            record_input: true,
            approval: None,
        }
    );
    let Decision::Allow(g) = decide(&p, "sre", "shell", "checkout/web-0", "") else {
        panic!()
    };
    assert_eq!(g.shell, "/bin/bash");
    assert_eq!(g.impersonate_groups, ["jit:debug", "jit:audit"]);
    assert_eq!(g.max_session, Some(Duration::from_secs(3600)));
    let Decision::Allow(g) = decide(
        &p,
        "oncall-payments",
        "port-forward",
        "payments/payments-api-0",
        "8080",
    ) else {
        panic!()
    };
    assert!(!g.record_input);
    assert_eq!(g.max_session, None);
}

#[test]
fn incomplete_requests_are_denied() {
    let p = policy();
    let groups = vec!["oncall-payments".to_owned()];
    let base = Ask {
        groups: &groups,
        action: Action::Exec,
        namespace: "payments",
        pod: "payments-api-0",
        container: None,
        argv: None,
        port: None,
    };
    let deny = |ask: Ask<'_>| match p.decide(&ask) {
        Decision::Deny(d) => d.message,
        other => panic!("{other:?}"),
    };
    assert_eq!(deny(base), "exec request names no command");
    assert_eq!(
        deny(Ask {
            argv: Some(&[]),
            ..base
        }),
        "exec request names no command"
    );
    let forward = Ask {
        action: Action::PortForward,
        ..base
    };
    assert_eq!(deny(forward), "port-forward request names no port");
    assert_eq!(
        deny(Ask {
            action: Action::Logs,
            pod: "",
            ..base
        }),
        "logs request names no pod"
    );
}

#[test]
fn closest_rule_is_named() {
    // Two candidate rules for sre exec in payments: payments-logs-all stops at the action,
    // sre-shell at the command; the denial names sre-shell.
    let p = policy();
    let Decision::Deny(d) = decide(&p, "sre", "exec", "payments/x", "rm") else {
        panic!()
    };
    assert_eq!(
        d.message,
        r#"command "rm" is not in the allowlist of rule "sre-shell""#
    );
    let Decision::Deny(d) = decide(
        &p,
        "oncall-payments",
        "port-forward",
        "payments/payments-api-0",
        "22",
    ) else {
        panic!()
    };
    assert_eq!(
        d.to_string(),
        r#"port 22 is not listed in rule "payments-pf""#
    );
}

#[test]
fn explain_lists_every_rule() {
    let p = policy();
    let groups = vec!["sre".to_owned()];
    let argv = vec!["uptime".to_owned(), "-p".to_owned()];
    let ask = Ask {
        groups: &groups,
        action: Action::Exec,
        namespace: "payments",
        pod: "payments-api-0",
        container: Some("api"),
        argv: Some(&argv),
        port: None,
    };
    let v = p.explain(&ask);
    let names: Vec<&str> = v.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(
        names,
        [
            "payments-oncall",
            "payments-pf",
            "payments-logs-all",
            "sre-shell",
            "sre-wide-logs"
        ]
    );
    assert!(v.iter().all(|v| !v.allowed));
    assert_eq!(
        v[0].reason,
        "groups [sre] are not among the rule's groups [oncall-payments]"
    );
    assert_eq!(
        v[2].reason,
        r#"action "exec" is not among the rule's actions [logs]"#
    );
    assert_eq!(
        v[3].reason,
        r#"command "uptime -p" matches none of the rule's commands"#
    );
    let argv = vec!["uptime".to_owned()];
    let v = p.explain(&Ask {
        argv: Some(&argv),
        ..ask
    });
    assert!(v[3].allowed && v[3].reason == "allowed");
    let v = p.explain(&Ask {
        namespace: "kube-system",
        ..ask
    });
    assert_eq!(
        v[3].reason,
        r#"namespace "kube-system" does not match namespaces [pay*, checkout, team-{a,b}]"#
    );
}

#[test]
fn rules_view() {
    let p = policy();
    let r = &p.rules()[0];
    assert_eq!(
        (r.name.as_str(), r.file.as_str(), r.line),
        ("payments-oncall", "10-payments.yaml", Some(3))
    );
    assert_eq!(r.pods, ["payments-*"]);
    assert_eq!(p.rules()[2].pods, ["*"]);
    assert_eq!(p.rules()[2].containers, ["*"]);
    let sre = vec!["sre".to_owned()];
    let mine: Vec<&str> = p.rules_for(&sre).map(|r| r.name.as_str()).collect();
    assert_eq!(mine, ["payments-logs-all", "sre-shell", "sre-wide-logs"]);
    assert!(Policy::parse(&[]).unwrap().rules().is_empty());
}

#[test]
fn patterns_are_anchored() {
    let yaml = |pattern: &str| {
        format!(
            "rules:\n  - name: r\n    groups: [g]\n    namespaces: [n]\n    actions: [exec]\n    \
             commands: ['{pattern}']\n    impersonate_groups: [k]\n"
        )
    };
    // (pattern, command line, allowed)
    let cases = [
        ("ls( -l)?", "ls -l", true),
        ("ls( -l)?", "xls", false),
        ("ls( -l)?", "ls -l -a", false),
        ("(ls|cat)", "ls", true),
        ("(ls|cat)", "cat", true),
        ("(ls|cat)", "ls; cat x", false),
        ("(ls|cat)", "cat x", false),
        ("^(ls|cat)$", "ls x cat", false),
        ("(?m)^ls$", "ls", true),
        ("(?m)ls$", "ls x", false),
        ("ls.*", "ls -la /tmp", true),
        ("[a-z]+", "ls -l", false),
    ];
    for (pattern, line, allowed) in cases {
        let p = Policy::parse(&[("f.yaml".to_owned(), yaml(pattern))]).unwrap();
        let groups = vec!["g".to_owned()];
        let argv = shell_words::split(line).unwrap();
        let ask = Ask {
            groups: &groups,
            action: Action::Exec,
            namespace: "n",
            pod: "p",
            container: None,
            argv: Some(&argv),
            port: None,
        };
        let got = matches!(p.decide(&ask), Decision::Allow(_));
        assert_eq!(got, allowed, "{pattern:?} vs {line:?}");
    }
}

#[test]
fn example_policies_load() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policy");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            sources.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(sources.len() >= 3, "{dir}");
    let diags = Policy::check(&sources);
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The one intended warning: sre-shell's '.*' (the rule grants shell anyway).
    let warnings: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].starts_with("sre-shell.yaml:"), "{warnings:?}");
    assert!(warnings[0].contains("allows any command"), "{warnings:?}");

    let p = Policy::parse(&sources).unwrap();
    let names: Vec<&str> = p.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["payments-oncall", "payments-port-forward", "sre-shell"]
    );
    let oncall = "oncall-payments";
    let pod = "payments/payments-api-0";
    let allowed = |d: Decision| matches!(d, Decision::Allow(_));
    for ok in [
        "ps aux",
        "ls -la /var/log",
        "cat /var/log/app.log",
        "cat /proc/1/status",
        "df -h",
        "curl -s http://localhost:8080/healthz",
    ] {
        assert!(allowed(decide(&p, oncall, "exec", pod, ok)), "{ok}");
    }
    for no in [
        "env",
        "sh",
        "sh -c id",
        "cat /etc/shadow",
        "cat /var/log/../../etc/shadow",
        "cat /proc/self/environ",
        "curl http://evil.example/",
        "python3 -c x",
    ] {
        assert!(!allowed(decide(&p, oncall, "exec", pod, no)), "{no}");
    }
    assert!(!allowed(decide(&p, oncall, "shell", pod, "")));
    assert!(allowed(decide(&p, oncall, "port-forward", pod, "8080")));
    assert!(!allowed(decide(&p, oncall, "port-forward", pod, "5432")));
    assert!(!allowed(decide(
        &p,
        oncall,
        "port-forward",
        "payments/payments-worker-0",
        "8080"
    )));
    let Decision::Allow(g) = decide(&p, "sre", "shell", "checkout/checkout-web-0", "") else {
        panic!()
    };
    assert_eq!(
        (g.rule.as_str(), g.shell.as_str(), g.record_input),
        ("sre-shell", "/bin/sh", true)
    );
    assert_eq!(g.impersonate_groups, ["jit:debug"]);
}

#[path = "policy/approval_tests.rs"]
mod approval_tests;
