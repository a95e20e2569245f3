//! Tests of the object store (see store.rs).
use super::*;

fn store() -> Store {
    Store::new(&Fixture::demo().unwrap(), CancellationToken::new())
}

#[test]
fn fixture_pods_look_like_real_pods() {
    let s = store();
    let pod = s.get(core("pods"), "payments", "payments-api-0").unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(pod["spec"]["nodeName"], NODE_NAME);
    assert!(
        pod["status"]["podIP"]
            .as_str()
            .unwrap()
            .starts_with("10.244.")
    );
    let restarted = s.get(core("pods"), "payments", "payments-api-1").unwrap();
    assert_eq!(
        restarted["status"]["containerStatuses"][0]["restartCount"],
        1
    );
}

#[test]
fn list_filters_by_namespace_and_selectors() {
    let s = store();
    let all = Selector::default();
    let (every, _) = s.list(core("pods"), "", &all, &all);
    let (payments, _) = s.list(core("pods"), "payments", &all, &all);
    assert!(every.len() > payments.len());
    let worker = Selector::parse_labels("app=payments-worker").unwrap();
    let (w, _) = s.list(core("pods"), "", &worker, &all);
    assert_eq!(w.len(), 1);
    let done = Selector::parse_fields("status.phase=Succeeded").unwrap();
    let (d, _) = s.list(core("pods"), "", &all, &done);
    assert_eq!(d.len(), 1);
}

#[test]
fn create_get_patch_delete_round_trip() {
    let s = store();
    let svc = discovery::lookup("", "v1", "services").unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"generateName": "gw-"}, "spec": {"ports": [{"port": 22}]}});
    let made = s.create(svc, "podgate", body).unwrap();
    let name = made["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("gw-"));
    assert_eq!(made["metadata"]["namespace"], "podgate");
    let again = json!({"metadata": {"name": name}});
    assert_eq!(s.create(svc, "podgate", again).unwrap_err().code, 409);
    let patched = s
        .update(
            svc,
            "podgate",
            &name,
            json!({"metadata": {"labels": {"a": "b"}}}),
            true,
        )
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["a"], "b");
    s.delete(svc, "podgate", &name).unwrap();
    assert_eq!(s.get(svc, "podgate", &name).unwrap_err().code, 404);
    assert_eq!(
        s.create(svc, "nope", json!({"metadata": {"name": "x"}}))
            .unwrap_err()
            .code,
        404
    );
}

#[test]
fn deleting_a_pod_cancels_its_streams_and_created_pods_run() {
    let s = store();
    let pods = core("pods");
    let made = s
        .create(pods, "default", json!({"metadata": {"name": "gw"}, "spec": {"containers": [{"name": "podgate", "image": "podgate"}]}}))
        .unwrap();
    assert_eq!(made["status"]["phase"], "Running");
    let rt = s.pod("default", "gw").unwrap();
    assert!(!rt.deleted.is_cancelled());
    s.delete(pods, "default", "gw").unwrap();
    assert!(rt.deleted.is_cancelled());
    assert!(s.pod("default", "gw").is_none());
}

#[test]
fn container_resolution_matches_the_api_server() {
    let s = store();
    let worker = s.pod("payments", "payments-worker-0").unwrap();
    let err = worker.container("").unwrap_err();
    assert!(
        err.message.contains("choose one of: [worker metrics]"),
        "{}",
        err.message
    );
    assert!(
        worker
            .container("nope")
            .unwrap_err()
            .message
            .contains("is not valid for pod")
    );
    let api = s.pod("payments", "payments-api-0").unwrap();
    assert_eq!(api.container("").unwrap().name, "api");
}
