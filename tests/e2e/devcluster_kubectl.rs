//! Real kubectl against the devcluster: what a person would run, with exit codes, output
//! and the audit log asserted.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::support::{DEADLINE, TestCluster, run, text};

/// `kubectl get pods -A` prints every pod with the columns of a real server's Table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_all_namespaces_looks_like_a_real_cluster() {
    let c = TestCluster::start().await;
    let mut cmd = c.kubectl();
    cmd.args(["get", "pods", "-A"]);
    let out = run(cmd, None).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let row = stdout
        .lines()
        .find(|l| l.contains("payments-api-0"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        ["payments", "payments-api-0", "1/1", "Running", "0"]
    );
    assert!(stdout.contains("checkout-web-0"));
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("payments-worker-0") && l.contains("2/2"))
    );

    let mut cmd = c.kubectl();
    cmd.args([
        "get",
        "pods",
        "-n",
        "payments",
        "-o",
        "wide",
        "-l",
        "app=payments-api",
    ]);
    let out = run(cmd, None).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.lines().next().unwrap().contains("IP"), "{stdout}");
    assert!(
        stdout.contains("devcluster") && stdout.contains("10.244."),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "label selector: {stdout}");
}

/// `kubectl get pod -o yaml` returns a full Pod with status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pod_yaml_has_spec_and_status() {
    let c = TestCluster::start().await;
    let mut cmd = c.kubectl();
    cmd.args([
        "get",
        "pod",
        "payments-api-0",
        "-n",
        "payments",
        "-o",
        "json",
    ]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["name"], "api");
    assert!(pod["status"]["startTime"].is_string());
    assert_eq!(
        pod["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );

    let mut cmd = c.kubectl();
    cmd.args([
        "get",
        "pod",
        "payments-api-0",
        "-n",
        "payments",
        "-o",
        "yaml",
    ]);
    let out = run(cmd, None).await;
    assert!(text(&out.stdout).contains("phase: Running"));

    let mut cmd = c.kubectl();
    cmd.args(["get", "pod", "nope", "-n", "payments"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Error from server (NotFound): pods \"nope\" not found"));
}

/// `kubectl logs` and `--tail`, with the default-container annotation honoured by kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_tail() {
    let c = TestCluster::start().await;
    let mut cmd = c.kubectl();
    cmd.args(["logs", "-n", "payments", "payments-api-0"]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("starting payments-api\nlistening on :8080\n"));

    let mut cmd = c.kubectl();
    cmd.args(["logs", "-n", "payments", "payments-worker-0", "--tail=1"]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "worker up\n");

    let mut cmd = c.kubectl();
    cmd.args([
        "logs",
        "-n",
        "payments",
        "payments-worker-0",
        "-c",
        "metrics",
        "--timestamps",
    ]);
    let out = run(cmd, None).await;
    let line = text(&out.stdout);
    let (ts, rest) = line.trim_end().split_once(' ').unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{line}");
    assert_eq!(rest, "metrics up");

    let mut cmd = c.kubectl();
    cmd.args(["logs", "-n", "payments", "payments-api-0", "--previous"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("previous terminated container \"api\" in pod \"payments-api-0\" not found")
    );
}

/// `kubectl logs -f` receives heartbeat lines as they are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_heartbeats() {
    let c = TestCluster::start().await;
    let mut cmd = c.kubectl();
    cmd.args(["logs", "-f", "-n", "payments", "payments-api-0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let done = l.starts_with("heartbeat ")
                && seen
                    .iter()
                    .filter(|s: &&String| s.starts_with("heartbeat "))
                    .count()
                    >= 2;
            seen.push(l);
            if done {
                break;
            }
        }
    })
    .await
    .expect("heartbeats did not arrive");
    let beats: Vec<u64> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("heartbeat ")?.parse().ok())
        .collect();
    assert!(beats.len() >= 3, "{seen:?}");
    assert!(
        beats.windows(2).all(|w| w[1] == w[0] + 1),
        "numbered in order: {seen:?}"
    );
    child.kill().await.unwrap();
}

/// exec: output, stdin through `cat`, exit status passthrough, missing executable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_stdin_and_exit_status() {
    let c = TestCluster::start().await;
    let mut cmd = c.kubectl();
    cmd.args([
        "exec",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "echo",
        "hello world",
    ]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello world\n");

    let mut cmd = c.kubectl();
    cmd.args([
        "exec",
        "-i",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "cat",
    ]);
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = run(cmd, Some(&input)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, input);

    let mut cmd = c.kubectl();
    cmd.args([
        "exec",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    let mut cmd = c.kubectl();
    cmd.args([
        "exec",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "sh",
        "-c",
        "echo $POD_NAMESPACE/$POD_NAME; pwd",
    ]);
    let out = run(cmd, None).await;
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("payments/payments-api-0\n"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("sandbox/payments/payments-api-0/api"),
        "{stdout}"
    );

    let mut cmd = c.kubectl();
    cmd.args([
        "exec",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "no-such-binary",
    ]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("executable file not found in $PATH"),
        "{}",
        text(&out.stderr)
    );
}

/// `kubectl exec -it` through a real PTY (kubectl itself under `script`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_tty_gets_a_terminal() {
    let c = TestCluster::start().await;
    let kubectl = format!(
        "stty cols 91 rows 33; kubectl --kubeconfig {} --cache-dir {} exec -it -n payments payments-api-0 -- sh -c 'tty; stty size; exit 4'",
        c.kubeconfig.display(),
        c.dir.path().join("kube-cache").display()
    );
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", &kubectl, "/dev/null"])
        .env("HOME", c.dir.path());
    let out = run(cmd, None).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("/dev/pts/"), "{stdout}");
    assert!(
        stdout.contains("33 91"),
        "resize reached the remote PTY: {stdout}"
    );
    assert_eq!(out.status.code(), Some(4), "{stdout}");
}

fn exec_events(c: &TestCluster, who: &str) -> Vec<Value> {
    c.audit_events()
        .into_iter()
        .filter(|e| {
            e["objectRef"]["subresource"] == "exec" && e["impersonatedUser"]["username"] == who
        })
        .collect()
}

/// The gateway's identity impersonating a user: forbidden without an exec grant, allowed
/// with the group's RoleBinding; the audit log names both identities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonated_exec_is_authorized_as_the_impersonated_user() {
    let c = TestCluster::start().await;
    let mut cmd = c.kubectl();
    cmd.args([
        "--context",
        "gateway",
        "--as",
        "mallory@corp.example",
        "--as-group",
        "jit:readonly",
        "exec",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "id",
    ]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Error from server (Forbidden): pods \"payments-api-0\" is forbidden: User \"mallory@corp.example\" cannot"),
        "{stderr}"
    );
    assert!(
        stderr.contains("resource \"pods/exec\" in API group \"\" in the namespace \"payments\""),
        "{stderr}"
    );
    let denied = exec_events(&c, "mallory@corp.example");
    assert!(!denied.is_empty());
    for e in &denied {
        assert_eq!(
            e["user"]["username"],
            "system:serviceaccount:podgate:podgate"
        );
        assert_eq!(e["responseStatus"]["code"], 403);
        assert_eq!(e["objectRef"]["resource"], "pods");
        assert_eq!(e["objectRef"]["namespace"], "payments");
        let groups = e["impersonatedUser"]["groups"].as_array().unwrap();
        assert!(groups.iter().any(|g| g == "jit:readonly"), "{e}");
    }
    assert!(denied.iter().any(|e| e["verb"] == "get"));

    let mut cmd = c.kubectl();
    cmd.args([
        "--context",
        "gateway",
        "--as",
        "alice@corp.example",
        "--as-group",
        "jit:oncall:payments",
        "exec",
        "-n",
        "payments",
        "payments-api-0",
        "--",
        "echo",
        "allowed",
    ]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "allowed\n");
    let allowed = exec_events(&c, "alice@corp.example");
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    let e = &allowed[0];
    assert_eq!(e["verb"], "get");
    assert_eq!(e["responseStatus"]["code"], 101);
    assert_eq!(
        e["user"]["username"],
        "system:serviceaccount:podgate:podgate"
    );
    assert!(
        e["impersonatedUser"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "jit:oncall:payments")
    );

    // The same group has no rights in another namespace.
    let mut cmd = c.kubectl();
    cmd.args([
        "--context",
        "gateway",
        "--as",
        "alice@corp.example",
        "--as-group",
        "jit:oncall:payments",
        "exec",
        "-n",
        "checkout",
        "checkout-web-0",
        "--",
        "true",
    ]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Forbidden"));
}

/// A bad bearer token is a 401, which kubectl reports as "Unauthorized".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_unauthorized() {
    let c = TestCluster::start().await;
    let kc = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let mut v: serde_json::Value = serde_yaml::from_str(&kc).unwrap();
    v["users"][0]["user"]["token"] = "not-a-token".into();
    let bad = c.dir.path().join("bad.yaml");
    std::fs::write(&bad, serde_yaml::to_string(&v).unwrap()).unwrap();
    let mut cmd = c.kubectl();
    cmd.arg("--kubeconfig")
        .arg(&bad)
        .args(["get", "pods", "-A"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("You must be logged in to the server"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        c.audit_events()
            .iter()
            .any(|e| e["responseStatus"]["code"] == 401)
    );
}
