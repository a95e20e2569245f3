//! Object storage for recordings (issue 9): the client (`Store`), the layout of keys in the
//! bucket (`keys`), the shipper that drains the local spool into it (`ship`), and the
//! reader the offline tools use to look at a bucket as if it were a recordings directory
//! (`fetch`).
//!
//! The client is `object_store`'s S3 implementation, configured explicitly: bucket,
//! endpoint, region and request style come from `recordings_store`; from the environment
//! only the credential chain is read (a whitelist of `AWS_*` variables, see
//! [`CREDENTIAL_ENV`]), so no stray `AWS_ENDPOINT` or `AWS_ALLOW_HTTP` can redirect where
//! recordings go. Every transfer is streamed with bounded buffers and hashed on the way;
//! nothing here holds a whole recording in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub use crate::config::StoreConfig;

pub mod fetch;
mod health;
pub mod keys;
pub mod ship;
pub mod spool;

/// Environment variables passed to the S3 client: credentials (static, web identity,
/// container), the region, and the STS endpoint web identity uses. Nothing else.
pub const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Objects up to this size are sent with one PUT; larger ones as a multipart upload.
const SINGLE_PUT_MAX: u64 = 8 << 20;
/// Multipart part size (S3's minimum is 5 MiB) and file read size.
const PART: usize = 8 << 20;
const READ: usize = 1 << 20;
/// Parts of one upload in flight at once: memory per upload is about PART × this.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("recordings store {url}: {message}")]
    Setup { url: String, message: String },
    /// `error` is not a `#[source]`: its text is already in the message, and chained
    /// error printing would repeat it.
    #[error("recordings store: {key}: {error}")]
    Remote {
        key: String,
        error: object_store::Error,
    },
    #[error("recordings store: {key} is missing")]
    NotFound { key: String },
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recordings store: {key} does not match what was sent: {message}")]
    Mismatch { key: String, message: String },
    #[error("recordings store: {key} is larger than {max} bytes")]
    TooLarge { key: String, max: u64 },
    /// The spool's own files (state, markers, a recording read for shipping).
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
}

/// Size and SHA-256 (hex) of an object or of what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest256 {
    pub size: u64,
    pub sha256: String,
}

/// A bucket and prefix, with the operations the shipper and the readers need. Keys given
/// to it are relative to the prefix (`2026-12-02/SESSION.cast`), mirroring the spool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// Build the client. Makes no request: an unreachable store is found by the first
    /// transfer, and the spool takes the sessions meanwhile.
    pub fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        // reqwest is built without a default crypto provider; use ring, as rustls does
        // everywhere else in podgate. Fails only if one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new();
        for name in CREDENTIAL_ENV {
            if let Ok(value) = std::env::var(name)
                && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            {
                builder = builder.with_config(key, value);
            }
        }
        builder = builder
            .with_bucket_name(&config.bucket)
            // x-amz-checksum-sha256 on every upload: the store checks what it received, and
            // buckets with Object Lock accept only uploads that carry a checksum.
            .with_checksum_algorithm(Checksum::SHA256)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            )
            // Few, quick retries: the shipper retries with its own backoff and must notice
            // an unreachable store in seconds, not after object_store's three minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let inner = builder.build().map_err(|e| StoreError::Setup {
            url: config.url.clone(),
            message: e.to_string(),
        })?;
        Ok(Store {
            inner: Arc::new(inner),
            prefix: config.prefix.clone(),
            url: config.url.clone(),
        })
    }

    /// A store over any `object_store` implementation (tests use `InMemory`).
    #[doc(hidden)]
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Store {
        Store {
            inner,
            prefix: prefix.trim_matches('/').to_owned(),
            url: url.to_owned(),
        }
    }

    /// `s3://bucket/prefix` as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The key relative to the prefix of a listed object, if it is under the prefix.
    fn relative(&self, path: &ObjectPath) -> Option<String> {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            return Some(full.to_owned());
        }
        full.strip_prefix(&self.prefix)?
            .strip_prefix('/')
            .map(str::to_owned)
    }

    fn remote(&self, rel: &str) -> impl Fn(object_store::Error) -> StoreError + '_ {
        let key = rel.to_owned();
        move |source| match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound { key: key.clone() },
            error => StoreError::Remote {
                key: key.clone(),
                error,
            },
        }
    }

    /// Upload `bytes` as `rel`.
    pub async fn put_bytes(&self, rel: &str, bytes: Vec<u8>) -> Result<Digest256, StoreError> {
        let digest = Digest256 {
            size: bytes.len() as u64,
            sha256: crate::recording::cast::hex(&Sha256::digest(&bytes)),
        };
        self.inner
            .put(&self.path(rel), PutPayload::from(bytes))
            .await
            .map_err(self.remote(rel))?;
        Ok(digest)
    }

    /// Upload bytes `start..end` of the file at `path` as `rel`, streaming; returns the
    /// size and SHA-256 of what was read and sent.
    pub async fn put_file_range(
        &self,
        rel: &str,
        path: &Path,
        start: u64,
        end: u64,
    ) -> Result<Digest256, StoreError> {
        let local = |source| StoreError::Local {
            path: path.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(local)?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(local)?;
        let len = end.saturating_sub(start);
        let mut hasher = Sha256::new();
        let mut left = len;
        if len <= SINGLE_PUT_MAX {
            let mut buf = vec![0u8; len as usize];
            file.read_exact(&mut buf).await.map_err(local)?;
            hasher.update(&buf);
            self.inner
                .put(&self.path(rel), PutPayload::from(buf))
                .await
                .map_err(self.remote(rel))?;
        } else {
            let upload = self
                .inner
                .put_multipart(&self.path(rel))
                .await
                .map_err(self.remote(rel))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; READ];
            while left > 0 {
                let want = left.min(READ as u64) as usize;
                let chunk = buf.get_mut(..want).unwrap_or_default();
                if let Err(e) = file.read_exact(chunk).await {
                    writer.abort().await.ok();
                    return Err(local(e));
                }
                hasher.update(&*chunk);
                if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    writer.abort().await.ok();
                    return Err(self.remote(rel)(e));
                }
                writer.write(chunk);
                left -= want as u64;
            }
            writer.finish().await.map_err(self.remote(rel))?;
        }
        Ok(Digest256 {
            size: len,
            sha256: crate::recording::cast::hex(&hasher.finalize()),
        })
    }

    /// Read `rel` back and hash it (verification after an upload, and `verify --store`).
    pub async fn digest(&self, rel: &str) -> Result<Digest256, StoreError> {
        self.stream(rel, None::<&mut tokio::fs::File>, u64::MAX)
            .await
    }

    /// Download `rel` into the file `dest` (created or truncated, mode 0600).
    pub async fn get_to_file(&self, rel: &str, dest: &Path) -> Result<Digest256, StoreError> {
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::Local {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let local = |source| StoreError::Local {
            path: dest.to_owned(),
            source,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest)
            .await
            .map_err(local)?;
        let digest = self.stream(rel, Some(&mut file), u64::MAX).await?;
        file.flush().await.map_err(local)?;
        Ok(digest)
    }

    /// Download `rel` onto the end of `sink` (joining live parts or audit segments).
    pub async fn append_to<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        rel: &str,
        sink: &mut W,
    ) -> Result<Digest256, StoreError> {
        self.stream(rel, Some(sink), u64::MAX).await
    }

    /// Download `rel` into memory, refusing objects larger than `max`.
    pub async fn get_bytes(&self, rel: &str, max: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.stream(rel, Some(&mut out), max).await?;
        Ok(out)
    }

    async fn stream<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        rel: &str,
        mut sink: Option<&mut W>,
        max: u64,
    ) -> Result<Digest256, StoreError> {
        let got = self
            .inner
            .get(&self.path(rel))
            .await
            .map_err(self.remote(rel))?;
        if got.meta.size > max {
            return Err(StoreError::TooLarge {
                key: rel.to_owned(),
                max,
            });
        }
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.remote(rel))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(StoreError::TooLarge {
                    key: rel.to_owned(),
                    max,
                });
            }
            hasher.update(&chunk);
            if let Some(w) = sink.as_mut() {
                w.write_all(&chunk)
                    .await
                    .map_err(|source| StoreError::Local {
                        path: PathBuf::from(rel),
                        source,
                    })?;
            }
        }
        Ok(Digest256 {
            size,
            sha256: crate::recording::cast::hex(&hasher.finalize()),
        })
    }

    /// Every object under `rel_prefix` (a directory-like prefix, `""` for all), as keys
    /// relative to the store's prefix with their sizes, sorted by key.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let base = if rel_prefix.is_empty() {
            (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
        } else {
            Some(self.path(rel_prefix))
        };
        let mut stream = self.inner.list(base.as_ref());
        let listed = if rel_prefix.is_empty() {
            "(listing)"
        } else {
            rel_prefix
        };
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(self.remote(listed))?;
            if let Some(rel) = self.relative(&meta.location) {
                out.push((rel, meta.size));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delete `rel`; a missing object is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.remote(rel)(e)),
        }
    }
}

/// Upload, then read back and compare: the object must be exactly what was sent.
pub async fn verified(store: &Store, rel: &str, sent: &Digest256) -> Result<(), StoreError> {
    let got = store.digest(rel).await?;
    if &got != sent {
        return Err(StoreError::Mismatch {
            key: rel.to_owned(),
            message: format!(
                "sent {} bytes with SHA-256 {}, read back {} bytes with {}",
                sent.size, sent.sha256, got.size, got.sha256
            ),
        });
    }
    Ok(())
}
