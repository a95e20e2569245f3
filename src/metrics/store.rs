//! Metrics of shipping recordings to the object store (issue 9), set by `store::ship`
//! after every round. Labels come from fixed vocabularies (`kind`, `result`).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    kind: &'static str,
    result: &'static str,
}

/// What an upload was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Cast,
    Json,
    Part,
    Audit,
}

impl UploadKind {
    fn label(self) -> &'static str {
        match self {
            UploadKind::Cast => "cast",
            UploadKind::Json => "json",
            UploadKind::Part => "part",
            UploadKind::Audit => "audit",
        }
    }
}

#[derive(Default)]
pub struct StoreMetrics {
    up: Gauge<i64, AtomicI64>,
    uploads: Family<UploadLabels, Counter>,
    uploaded_bytes: Counter<u64, AtomicU64>,
    unshipped_bytes: Gauge<i64, AtomicI64>,
    oldest_unshipped: Gauge<i64, AtomicI64>,
    over_limit: Gauge<i64, AtomicI64>,
}

impl StoreMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "store_up",
            "1 when the last round of shipping recordings to the store succeeded",
            self.up.clone(),
        );
        r.register(
            "store_uploads",
            "Objects uploaded to the recordings store, by kind and result (read back and compared)",
            self.uploads.clone(),
        );
        r.register(
            "store_uploaded_bytes",
            "Bytes uploaded to the recordings store and verified",
            self.uploaded_bytes.clone(),
        );
        r.register(
            "spool_unshipped_bytes",
            "Bytes in the spool not yet in the recordings store",
            self.unshipped_bytes.clone(),
        );
        r.register(
            "spool_oldest_unshipped_seconds",
            "Age of the oldest data in the spool not yet in the recordings store",
            self.oldest_unshipped.clone(),
        );
        r.register(
            "spool_over_limit",
            "1 while the spool is over spool_max_size or spool_max_age (when_spool_full applies)",
            self.over_limit.clone(),
        );
    }

    pub fn upload(&self, kind: UploadKind, ok: bool, bytes: u64) {
        let labels = UploadLabels {
            kind: kind.label(),
            result: if ok { "ok" } else { "failed" },
        };
        self.uploads.get_or_create(&labels).inc();
        if ok {
            self.uploaded_bytes.inc_by(bytes);
        }
    }

    pub fn round(&self, up: bool, unshipped: u64, oldest_secs: u64, over_limit: bool) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.up.set(i64::from(up));
        self.unshipped_bytes.set(clamp(unshipped));
        self.oldest_unshipped.set(clamp(oldest_secs));
        self.over_limit.set(i64::from(over_limit));
    }
}
