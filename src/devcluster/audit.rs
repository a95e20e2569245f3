//! The devcluster's audit log: one JSON object per request, with the field names of
//! Kubernetes' `audit.k8s.io/v1` Event, so tests (and people) can check who did what as
//! whom, exactly as they would in a real cluster's audit log.
//!
//! Written at level `Metadata`: no request or response bodies. Long-running requests
//! (exec, port-forward, followed logs) are logged once, at stage `ResponseStarted`, when
//! the response status is known; everything else at `ResponseComplete`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use super::identity::UserInfo;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseStatus {
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One audit event (a subset of audit.k8s.io/v1 Event).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: &'static str,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: &'static str,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    pub response_status: ResponseStatus,
    pub request_received_timestamp: String,
    pub stage_timestamp: String,
}

impl Event {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_uri: String,
        verb: String,
        user: UserInfo,
        impersonated_user: Option<UserInfo>,
        source_ip: String,
        user_agent: String,
        object_ref: Option<ObjectRef>,
        received: SystemTime,
    ) -> Event {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: uuid::Uuid::new_v4().to_string(),
            stage: "ResponseComplete",
            request_uri,
            verb,
            user,
            impersonated_user,
            source_ips: vec![source_ip],
            user_agent,
            object_ref,
            response_status: ResponseStatus {
                metadata: serde_json::Map::new(),
                code: 0,
                status: None,
                reason: None,
                message: None,
            },
            request_received_timestamp: humantime::format_rfc3339_micros(received).to_string(),
            stage_timestamp: String::new(),
        }
    }
}

/// Appends events to a file, one line each; a no-op sink when no file was configured.
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    pub fn disabled() -> AuditLog {
        AuditLog { file: None }
    }

    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
        })
    }

    /// Write one event. A failed write is logged and otherwise ignored: the devcluster is
    /// a test double, and its audit log must not change the behaviour under test.
    pub fn write(&self, mut event: Event) {
        let Some(file) = &self.file else { return };
        event.stage_timestamp = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let mut line = match serde_json::to_vec(&event) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "audit event not serialisable");
                return;
            }
        };
        line.push(b'\n');
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        // One write call per line on an O_APPEND file keeps lines whole.
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(error = %e, "audit log write failed");
        }
    }
}
