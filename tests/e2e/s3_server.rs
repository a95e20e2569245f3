//! An S3-compatible server for the store tests: `s3s-fs` in-process on 127.0.0.1, checking
//! SigV4 signatures with a fixed test key. Objects are plain files under a directory, so a
//! server stopped (every connection dropped, as in a crash) and restarted on the same port
//! and directory keeps what it had, and a test can read or alter an object on disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::support::DEADLINE;

pub const BUCKET: &str = "podgate-recordings";
pub const ACCESS_KEY: &str = "podgate-test-access";
pub const SECRET_KEY: &str = "podgate-test-secret-key";

pub struct S3Server {
    root: PathBuf,
    addr: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl S3Server {
    /// Serve `root` (created if missing, with the bucket directory) on 127.0.0.1:0.
    pub async fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().unwrap();
        let mut server = S3Server {
            root: root.canonicalize().unwrap(),
            addr,
            running: None,
        };
        server.serve(listener);
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop as a crashed server would: the port is closed (connections are refused) and
    /// every open connection is dropped, whatever request it was in.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the S3 server stopped in time")
                .unwrap();
        }
    }

    /// Serve again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        // The port was just ours; the listener is bound with SO_REUSEADDR, but retry
        // (bounded) in case the kernel still holds it.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let listener = loop {
            match try_bind(self.addr) {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind the S3 server on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let fs = s3s_fs::FileSystem::new(&self.root).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            // Dropped when this task ends: every connection is aborted with it.
            let mut connections = JoinSet::new();
            loop {
                let tcp = tokio::select! {
                    () = stopped.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let service = service.clone();
                connections.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service);
                    let _ = conn.await;
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        });
        self.running = Some((stop, task));
    }

    /// The file s3s-fs keeps the object `key` (a full key in the bucket) in.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// Every key in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        let bucket = self.root.join(BUCKET);
        let mut keys = Vec::new();
        let mut dirs = vec![bucket.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    dirs.push(path);
                } else {
                    let key = path.strip_prefix(&bucket).unwrap();
                    keys.push(key.to_str().unwrap().to_owned());
                }
            }
        }
        keys.sort();
        keys
    }

    /// The keys under `prefix/`, relative to it.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        let prefix = format!("{prefix}/");
        self.keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// The object `prefix/rel` as stored, if it is.
    pub fn object(&self, prefix: &str, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.object_path(&format!("{prefix}/{rel}"))).ok()
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The gateway's `recordings_store:` mapping for `prefix`, shipping every second, with
    /// `extra` settings (`key: value` lines).
    pub fn config_yaml(&self, prefix: &str, extra: &[&str]) -> String {
        let mut text = format!(
            "recordings_store:\n  url: {}\n  endpoint: {}\n  region: us-east-1\n  \
             path_style: true\n  allow_http: true\n  ship_every: 1s\n",
            self.url(prefix),
            self.endpoint()
        );
        for line in extra {
            text.push_str(&format!("  {line}\n"));
        }
        text
    }

    /// Give `cmd` (a gateway or an offline tool) the test credentials in its environment
    /// (never in a configuration file), and none of the caller's.
    pub fn credentials(&self, cmd: &mut tokio::process::Command) {
        for name in podgate::store::CREDENTIAL_ENV {
            cmd.env_remove(name);
        }
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }

    /// The offline tools' `--store` options for `prefix`.
    pub fn store_args(&self, prefix: &str) -> Vec<String> {
        vec![
            "--store".into(),
            self.url(prefix),
            "--store-endpoint".into(),
            self.endpoint(),
            "--store-region".into(),
            "us-east-1".into(),
            "--store-path-style".into(),
            "--store-allow-http".into(),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            stop.cancel();
        }
    }
}

fn try_bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn bind(addr: SocketAddr) -> TcpListener {
    try_bind(addr).unwrap()
}

/// A client of `server` under `prefix` signing with `secret`, made directly (credentials
/// given to the builder, not through the environment), retrying nothing.
fn client(server: &S3Server, prefix: &str, secret: &str) -> podgate::store::Store {
    use object_store::aws::AmazonS3Builder;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let inner = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(server.endpoint())
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(secret)
        .with_virtual_hosted_style_request(false)
        .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap();
    let url = server.url(prefix);
    podgate::store::Store::from_object_store(std::sync::Arc::new(inner), prefix, &url)
}

/// The harness itself: signed requests store, list and read objects as files; a wrong
/// secret is refused; a stopped server drops the client's open connection and refuses new
/// ones; restarted on the same port, it still has the objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_store_server_keeps_objects_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(dir.path()).await;
    let store = client(&s3, "p", SECRET_KEY);
    let put = store.put_bytes("2024-01-01/a.cast", b"hello\n".to_vec());
    let sent = tokio::time::timeout(DEADLINE, put).await.unwrap().unwrap();
    assert_eq!(sent.size, 6);
    let listed = tokio::time::timeout(DEADLINE, store.list(""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed, vec![("2024-01-01/a.cast".to_owned(), 6)]);
    assert_eq!(s3.keys(), ["p/2024-01-01/a.cast"]);
    assert_eq!(s3.keys_under("p"), ["2024-01-01/a.cast"]);
    assert_eq!(
        std::fs::read(s3.object_path("p/2024-01-01/a.cast")).unwrap(),
        b"hello\n"
    );
    let forged = client(&s3, "p", "not-the-secret");
    let refused = tokio::time::timeout(DEADLINE, forged.put_bytes("x", b"x".to_vec()))
        .await
        .unwrap();
    assert!(
        refused.is_err(),
        "a request with a wrong signature was accepted"
    );

    s3.stop().await;
    let down = tokio::time::timeout(DEADLINE, store.get_bytes("2024-01-01/a.cast", 100))
        .await
        .unwrap();
    assert!(down.is_err(), "served while stopped: {down:?}");
    assert!(std::net::TcpStream::connect(s3.addr()).is_err());

    s3.restart().await;
    let back = tokio::time::timeout(DEADLINE, store.get_bytes("2024-01-01/a.cast", 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"hello\n");
}
