//! A gateway shipping to the local S3 server: the real `podgate serve` process (credentials
//! in its environment only), its spool, and what the tests compare between spool and bucket.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::gateway_process::{events, get, parse_metrics, process_config};
use super::gateway_support::{ServeProcess, TestGateway};
use super::s3_server::S3Server;
use super::support::{DEADLINE, text};

/// The key prefix every store test ships under (as `incident open` would: one per incident).
pub const PREFIX: &str = "incidents/inc-42";

/// Poll `probe` every 100 ms until it returns `Ok`, for at most [`DEADLINE`]; on time out,
/// fail with `what` and the last thing `probe` saw.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("waited {DEADLINE:?} for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The file `DATE/SESSION.EXT` of `session` in the recordings directory `root`, if it exists.
pub fn session_file(root: &Path, session: &str, ext: &str) -> Option<PathBuf> {
    let name = format!("{session}.{ext}");
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|day| day.path().join(&name))
        .find(|p| p.is_file())
}

pub struct StoreGateway {
    /// The cluster, the user CA and keys, the `ssh` client (and an in-process gateway
    /// without a store, unused here).
    pub gw: TestGateway,
    pub s3: S3Server,
    pub config: PathBuf,
    pub spool: PathBuf,
    pub process: ServeProcess,
}

impl StoreGateway {
    /// A `podgate serve` process shipping to a fresh S3 server under [`PREFIX`], with
    /// `extra` `recordings_store` settings.
    pub async fn start(extra: &[&str]) -> StoreGateway {
        let gw = TestGateway::start().await;
        let s3 = S3Server::start(&gw.dir.path().join("s3")).await;
        let config = process_config(&gw, &s3.config_yaml(PREFIX, extra));
        let spool = gw.dir.path().join("process-recordings");
        let process = ServeProcess::start_with(&config, true, |c| s3.credentials(c)).await;
        gw.trust_port(process.ssh_port);
        StoreGateway {
            gw,
            s3,
            config,
            spool,
            process,
        }
    }

    /// SIGKILL the gateway process and wait (bounded) until it is gone.
    pub async fn kill(&mut self) {
        self.process.child.start_kill().unwrap();
        tokio::time::timeout(DEADLINE, self.process.child.wait())
            .await
            .expect("the gateway died in time")
            .unwrap();
    }

    /// Start the gateway process again on the same configuration and spool.
    pub async fn restart_gateway(&mut self) {
        let s3 = &self.s3;
        self.process = ServeProcess::start_with(&self.config, true, |c| s3.credentials(c)).await;
        self.gw.trust_port(self.process.ssh_port);
    }

    /// Move the (stopped) gateway to a fresh spool `name`, as the next pod of the same
    /// incident would start.
    pub fn new_spool(&mut self, name: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let old = format!(
            "recordings: {}\n",
            self.spool.file_name().unwrap().display()
        );
        assert!(text.contains(&old), "{text}");
        let text = text.replace(&old, &format!("recordings: {name}\n"));
        std::fs::write(&self.config, text).unwrap();
        self.spool = self.spool.with_file_name(name);
    }

    /// `ssh` to the gateway process.
    pub fn ssh(&self, cert: &Path, login: &str, args: &[&str]) -> tokio::process::Command {
        self.gw.ssh_to(self.process.ssh_port, cert, login, args)
    }

    /// The process's audit events (its spool's audit.jsonl).
    pub fn events(&self) -> Vec<Value> {
        events(&self.spool)
    }

    /// The first audit event `name` (with `field` = (key, value), if given).
    pub fn event(&self, name: &str, field: Option<(&str, &str)>) -> Option<Value> {
        self.events()
            .into_iter()
            .find(|e| e["event"] == name && field.is_none_or(|(k, v)| e[k].as_str() == Some(v)))
    }

    /// Wait until an audit event `name` (with `field`, if given) is written; return it.
    pub async fn wait_event(&self, name: &str, field: Option<(&str, &str)>) -> Value {
        wait_for(&format!("a {name} audit event {field:?}"), || async move {
            self.event(name, field).ok_or_else(|| {
                let events = self.events();
                let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
                format!("events {names:?}")
            })
        })
        .await
    }

    /// Session ids in the order their `session.started` events were written.
    pub fn sessions(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "session.started")
            .map(|e| e["session"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `/readyz` of the process: status and body.
    pub async fn readyz(&self) -> (u16, String) {
        get(self.process.metrics.unwrap(), "/readyz").await
    }

    /// The value of the metric sample `series`, and the whole exposition for messages.
    pub async fn metric(&self, series: &str) -> (Option<f64>, String) {
        let (code, body) = get(self.process.metrics.unwrap(), "/metrics").await;
        assert_eq!(code, 200, "{body}");
        (parse_metrics(&body).get(series).copied(), body)
    }

    /// Wait until the metric `series` is `value`.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        wait_for(&format!("{series} = {value}"), || async move {
            match self.metric(series).await {
                (Some(v), _) if v == value => Ok(()),
                (v, _) => Err(format!("{v:?}")),
            }
        })
        .await
    }

    /// The spool file `DATE/SESSION.EXT` of `session`, if it exists.
    pub fn spool_file(&self, session: &str, ext: &str) -> Option<PathBuf> {
        session_file(&self.spool, session, ext)
    }

    /// The key of a spool file, relative to the prefix (the layout mirrors the spool).
    pub fn rel(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.spool).unwrap();
        rel.to_str().unwrap().to_owned()
    }

    /// The `DATE/SESSION` part of `session`'s keys.
    pub fn stem(&self, session: &str) -> String {
        let json = self
            .spool_file(session, "json")
            .unwrap_or_else(|| panic!("no metadata for {session} in the spool"));
        self.rel(&json).trim_end_matches(".json").to_owned()
    }

    /// The keys of `session`'s live parts in the bucket, relative to the prefix.
    pub fn parts(&self, session: &str) -> Vec<String> {
        let prefix = format!("{}.cast.parts/", self.stem(session));
        self.s3
            .keys_under(PREFIX)
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect()
    }

    /// Wait until `session`'s `.shipped` marker is in the spool; return it.
    pub async fn wait_shipped(&self, session: &str) -> Value {
        wait_for(&format!("{session}.shipped in the spool"), || async move {
            match self.spool_file(session, "shipped") {
                Some(p) => Ok(serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()),
                None => Err(format!(
                    "spool files {:?}, bucket keys {:?}",
                    self.spool_files(),
                    self.s3.keys()
                )),
            }
        })
        .await
    }

    fn spool_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for day in std::fs::read_dir(&self.spool)
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(day.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(self.rel(&f.path()));
            }
        }
        out
    }

    /// Wait until `session` is shipped: its `.cast` and `.json` are in the bucket byte for
    /// byte as in the spool, the marker names them with their sizes and SHA-256, and (once
    /// deleted, after the marker) no live part is left. Returns the marker.
    pub async fn wait_shipped_identical(&self, session: &str) -> Value {
        let marker = self.wait_shipped(session).await;
        for ext in ["cast", "json"] {
            let path = self.spool_file(session, ext).unwrap();
            let rel = self.rel(&path);
            let spooled = std::fs::read(&path).unwrap();
            let stored = self
                .s3
                .object(PREFIX, &rel)
                .unwrap_or_else(|| panic!("{rel} is not in the bucket: {:?}", self.s3.keys()));
            assert!(
                stored == spooled,
                "{rel}: the bucket holds {} bytes, the spool {}:\n{}\n---\n{}",
                stored.len(),
                spooled.len(),
                String::from_utf8_lossy(&stored),
                String::from_utf8_lossy(&spooled)
            );
            let listed = marker["objects"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["key"].as_str().is_some_and(|k| k.ends_with(&rel)))
                .unwrap_or_else(|| panic!("the marker does not name {rel}: {marker}"));
            assert_eq!(
                listed["size"].as_u64(),
                Some(spooled.len() as u64),
                "{marker}"
            );
            assert_eq!(listed["sha256"], sha256_hex(&spooled), "{marker}");
        }
        wait_for(&format!("the parts of {session} deleted"), || async move {
            let parts = self.parts(session);
            if parts.is_empty() {
                Ok(())
            } else {
                Err(format!("{parts:?}"))
            }
        })
        .await;
        marker
    }

    /// The audit segments of this spool in the bucket, concatenated in offset order, after
    /// checking they follow each other without gap or overlap and are the start of the
    /// spool's audit.jsonl.
    pub fn shipped_audit(&self) -> Vec<u8> {
        let id = std::fs::read_to_string(self.spool.join("spool.id")).unwrap();
        let prefix = format!("audit/{}/", id.trim());
        let mut segments: Vec<(u64, String)> = self
            .s3
            .keys_under(PREFIX)
            .into_iter()
            .filter_map(|k| {
                let name = k.strip_prefix(&prefix)?.strip_suffix(".jsonl")?;
                Some((name.parse().unwrap(), k.clone()))
            })
            .collect();
        segments.sort();
        let mut all = Vec::new();
        for (offset, key) in &segments {
            assert_eq!(
                *offset,
                all.len() as u64,
                "segment {key} does not follow the previous ones: {segments:?}"
            );
            all.extend(self.s3.object(PREFIX, key).unwrap());
        }
        let log = std::fs::read(self.spool.join("audit.jsonl")).unwrap();
        assert!(
            log.starts_with(&all),
            "the shipped audit segments ({} bytes) are not the start of audit.jsonl ({} bytes)",
            all.len(),
            log.len()
        );
        all
    }

    /// Wait until the shipped audit segments hold an event `name` for `session`.
    pub async fn wait_audit_shipped(&self, name: &str, session: &str) {
        wait_for(
            &format!("{name} of {session} in the bucket's audit segments"),
            || async move {
                let shipped = self.shipped_audit();
                let found = String::from_utf8(shipped.clone())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .any(|e| e["event"] == name && e["session"] == session);
                if found {
                    Ok(())
                } else {
                    Err(format!("{} bytes of audit shipped", shipped.len()))
                }
            },
        )
        .await
    }

    /// `podgate recordings verify --store ...` accepts the bucket.
    pub async fn assert_store_verifies(&self) {
        let out = super::support::run(self.offline(&["recordings", "verify"]), None).await;
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "verify --store: {said}");
    }

    /// `podgate ARGS... --store ...` for this bucket, with the credentials.
    pub fn offline(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = super::support::podgate(args);
        cmd.args(self.s3.store_args(PREFIX));
        self.s3.credentials(&mut cmd);
        cmd
    }
}
